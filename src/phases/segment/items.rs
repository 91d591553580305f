//! The transform of a full copy: each page's items classified and converted into rows of their
//! tables' part writers, with checkpoints — after a page whose rows closed a part, at least every
//! `--checkpoint-seconds`, and when the source stops or fails — so a retry goes on from the last
//! one instead of the first page.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use super::pipeline::{Stage, TransformStop};
use super::{Job, Progress, SegmentError, TransformResult};
use crate::source::page::RawPage;
use crate::source::ScanCounters;
use crate::staging::checkpoint::{Checkpoint, CHECKPOINT_FORMAT};
use crate::staging::fingerprint::Fingerprinter;
use crate::staging::manifest::{Rejection, TableOutput};
use crate::staging::parts::writer::{PartSettings, PartWriter, Upload, Uploaded};
use crate::staging::Layout;
use crate::storage::Store;
use crate::transform::Transformer;

/// The transform thread of a full copy: pages in, chunks and checkpoints out.
pub(super) struct ItemTransform {
    transformer: Transformer,
    /// The tables, as [`Transformer::tables`] lists them, and each one's writer once it has rows.
    names: Vec<String>,
    writers: Vec<Option<PartWriter>>,
    /// A fresh fingerprinter per table, cloned into its writer (none when the job leaves the
    /// fingerprints out).
    fingerprinters: Vec<Option<Fingerprinter>>,
    overflow_table: usize,
    chunks: mpsc::Sender<Upload>,
    settings: PartSettings,
    /// Where the parts go: `layout.part(run_id, segment, table, index, codec)`.
    layout: Layout,
    run_id: String,
    segment: u32,
    checkpoints: Checkpoints,
    rejected: Vec<Rejection>,
    items: u64,
    read_units: f64,
    pages: u64,
    /// The key after the last page whose items are all checkpointed, and after the last page
    /// transformed.
    checkpointed_key: Option<String>,
    last_key: Option<String>,
    last_checkpoint: Instant,
}

/// When and where the transform takes checkpoints.
struct Checkpoints {
    key: String,
    /// Everything that does not change between checkpoints.
    template: Checkpoint,
    every: Duration,
    /// When this attempt started (the checkpoint's duration adds it).
    started: Instant,
    counters: Arc<ScanCounters>,
    /// Its retries count too.
    store: Store,
}

impl ItemTransform {
    /// The transform of `job`'s segment, going on from `resume`'s parts, rejections, drift and
    /// counts when it resumes.
    pub(super) fn new(
        job: &Job,
        resume: Option<&Checkpoint>,
        chunks: mpsc::Sender<Upload>,
    ) -> Result<ItemTransform, SegmentError> {
        let (plan, staging, segment) = (job.plan, job.staging, job.segment);
        let schemas = plan.schema_set().map_err(|e| job.internal(e.to_string()))?;
        let mut transformer = Transformer::new(
            &schemas,
            &plan.key_attributes,
            crate::warehouse::limits(plan.dialect),
        );
        if let Some(c) = resume {
            transformer.restore_drift(&c.drift);
        }
        let progress = Progress::of(resume);
        let checkpoints = Checkpoints {
            key: staging.layout.segment_checkpoint(&plan.run_id, segment),
            template: Checkpoint {
                format: CHECKPOINT_FORMAT,
                run_id: plan.run_id.clone(),
                source_table: plan.source_table.clone(),
                segment,
                total_segments: plan.total_segments,
                plan_fingerprint: plan.fingerprint(),
                compression: job.settings.parts.compression.name().to_string(),
                resume_key: String::new(),
                tables: BTreeMap::new(),
                items_scanned: 0,
                items_rejected: Vec::new(),
                drift: BTreeMap::new(),
                read_units: 0.0,
                pages: 0,
                retries: progress.retries,
                started_at: progress.started_at,
                saved_at: progress.started_at,
                duration_ms: progress.duration_ms,
            },
            every: job.settings.checkpoint_every,
            started: Instant::now(),
            counters: job.counters.clone(),
            store: staging.store.clone(),
        };
        let names: Vec<String> = transformer.tables().map(|s| s.table.clone()).collect();
        let limits = crate::warehouse::limits(plan.dialect);
        let fingerprinters = transformer
            .tables()
            .map(|s| {
                job.fingerprints
                    .then(|| Fingerprinter::for_table(s, limits))
            })
            .collect();
        let overflow_table = transformer.overflow_table();
        let mut stage = ItemTransform {
            writers: Vec::with_capacity(names.len()),
            fingerprinters,
            names,
            overflow_table,
            transformer,
            chunks,
            settings: job.settings.parts,
            layout: staging.layout.clone(),
            run_id: plan.run_id.clone(),
            segment,
            checkpoints,
            rejected: Vec::new(),
            items: 0,
            read_units: 0.0,
            pages: 0,
            checkpointed_key: None,
            last_key: None,
            last_checkpoint: Instant::now(),
        };
        let mut restored = BTreeMap::new();
        if let Some(c) = resume {
            restored = c.tables.clone();
            stage.rejected = c.items_rejected.clone();
            stage.items = c.items_scanned;
            stage.read_units = c.read_units;
            stage.pages = c.pages;
            stage.checkpointed_key = Some(c.resume_key.clone());
            stage.last_key = Some(c.resume_key.clone());
        }
        // A resumed table's writer goes on after the parts its checkpoint names.
        stage.writers = (0..stage.names.len())
            .map(|i| {
                restored
                    .remove(&stage.names[i])
                    .map(|done| stage.writer(i, done))
            })
            .collect();
        Ok(stage)
    }

    fn writer(&self, table: usize, done: TableOutput) -> PartWriter {
        let (layout, run_id, name) = (
            self.layout.clone(),
            self.run_id.clone(),
            self.names[table].clone(),
        );
        let (segment, codec) = (self.segment, self.settings.compression);
        let writer = PartWriter::resume(
            Box::new(move |index| layout.part(&run_id, segment, &name, index, codec)),
            self.settings,
            self.chunks.clone(),
            done,
        );
        match &self.fingerprinters[table] {
            Some(f) => writer.with_fingerprints(f.clone()),
            None => writer,
        }
    }

    fn write(&mut self, table: usize, fields: &[Option<Cow<str>>]) -> Result<(), TransformStop> {
        if self.writers[table].is_none() {
            let writer = self.writer(table, TableOutput::default());
            self.writers[table] = Some(writer);
        }
        self.writers[table]
            .as_mut()
            .expect("the table's writer was just made")
            .write_row(fields)
            .map_err(|_| TransformStop::Downstream)
    }

    fn finished_parts(&self) -> usize {
        self.writers
            .iter()
            .flatten()
            .map(|w| w.finished().files.len())
            .sum()
    }

    /// Closes every open part and hands the uploader a checkpoint naming them all, to be written
    /// once they are complete; the segment resumes after `self.last_key`.
    fn checkpoint(&mut self) -> Result<(), TransformStop> {
        let Some(key) = self.last_key.clone() else {
            return Ok(());
        };
        let mut tables = BTreeMap::new();
        for (name, writer) in self.names.iter().zip(self.writers.iter_mut()) {
            if let Some(w) = writer {
                w.roll().map_err(|_| TransformStop::Downstream)?;
                tables.insert(name.clone(), w.finished().clone());
            }
        }
        let c = &self.checkpoints;
        let mut checkpoint = Checkpoint {
            resume_key: key,
            tables,
            items_scanned: self.items,
            items_rejected: self.rejected.clone(),
            drift: self.transformer.drift(),
            read_units: self.read_units,
            pages: self.pages,
            retries: c.template.retries
                + c.counters.retries.load(Ordering::Relaxed)
                + c.store.retries(),
            saved_at: chrono::Utc::now(),
            duration_ms: c.template.duration_ms + c.started.elapsed().as_millis() as u64,
            ..c.template.clone()
        };
        let content = Box::new(move |done: &Uploaded| {
            for file in checkpoint
                .tables
                .values_mut()
                .flat_map(|t| t.files.iter_mut())
            {
                if let Some(etag) = done.get(&file.key) {
                    file.etag.clone_from(etag);
                }
            }
            checkpoint.to_json()
        });
        self.chunks
            .blocking_send(Upload::Record {
                key: c.key.clone(),
                content,
            })
            .map_err(|_| TransformStop::Downstream)?;
        self.checkpointed_key.clone_from(&self.last_key);
        self.last_checkpoint = Instant::now();
        Ok(())
    }
}

impl Stage for ItemTransform {
    fn page(&mut self, page: RawPage) -> Result<(), TransformStop> {
        self.pages += 1;
        self.read_units += page.read_units;
        let page_items = page.items().map_err(|e| {
            TransformStop::BadPage(format!(
                "scan page {} (after {} items) cannot be read: {e}",
                self.pages, self.items
            ))
        })?;
        let parts_before = self.finished_parts();
        for item in &page_items {
            self.items += 1;
            match self.transformer.convert(item) {
                Ok(row) => {
                    self.write(row.table, &row.fields)?;
                    for fields in &row.overflow {
                        self.write(self.overflow_table, fields)?;
                    }
                }
                Err(rejection) => self.rejected.push(rejection),
            }
        }
        self.last_key.clone_from(&page.last_key);
        let rolled = self.finished_parts() != parts_before;
        let due = rolled || self.last_checkpoint.elapsed() >= self.checkpoints.every;
        if due {
            self.checkpoint()?;
        }
        Ok(())
    }

    fn finish(self) -> Result<TransformResult, TransformStop> {
        let mut tables = BTreeMap::new();
        for (name, writer) in self.names.into_iter().zip(self.writers) {
            let output = match writer {
                Some(w) => w.finish().map_err(|_| TransformStop::Downstream)?,
                None => TableOutput::default(),
            };
            tables.insert(name, output);
        }
        Ok(TransformResult {
            tables,
            rejected: self.rejected,
            drift: self.transformer.drift(),
            items: self.items,
        })
    }

    fn stopped(mut self, failed: bool) -> TransformStop {
        // Save what the pages transformed so far hold, so the retry goes on from here.
        let mut checkpointed =
            self.checkpointed_key.is_some() && self.checkpointed_key == self.last_key;
        if !checkpointed && self.last_key.is_some() {
            if let Err(stop) = self.checkpoint() {
                return stop;
            }
            checkpointed = true;
        }
        match (checkpointed, failed) {
            (true, _) => TransformStop::Stopped {
                items: self.items,
                checkpointed,
            },
            // Nothing to save: dropping the writers leaves their parts unfinished, and the
            // uploader aborts them. A stop is still a stop (an export segment, or a scan stopped
            // before its first page): the retry starts the segment over.
            (false, false) => TransformStop::Stopped {
                items: self.items,
                checkpointed: false,
            },
            (false, true) => TransformStop::Downstream,
        }
    }
}
