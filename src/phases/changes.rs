//! Phase 1 of an increment run: the segment's share of an incremental export's change lines in,
//! the increment layout's parts out (`staging::increment`). Each line's new image is classified
//! and converted exactly as a full copy converts an item (drift, `_extra`, `_overflow` and
//! rejections alike), its key is written in every served table's key columns, and one change row
//! records where the image landed — nowhere for a delete.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::mpsc;

use super::phase1::{SegmentError, SegmentSettings, TransformResult};
use crate::source::export::{read_segment, ChangeLine, Export};
use crate::source::page::RawPage;
use crate::source::{ScanCounters, ScanEnd, ScanError};
use crate::staging::increment::{self, CHANGES_TABLE};
use crate::staging::manifest::TableOutput;
use crate::staging::parts::writer::{upload_chunks, PartWriter, Upload};
use crate::staging::plan::RunPlan;
use crate::staging::Staging;
use crate::storage::ObjectStore;
use crate::transform::Transformer;

/// Change pages waiting for the transform.
const PAGES_IN_FLIGHT: usize = 2;

/// Why the change transform stopped.
enum Stop {
    /// The uploader or the reader failed: their error is the one to report.
    Downstream,
    /// A change cannot be applied: the message says why and what to do.
    Refused(String),
}

/// Phase 1 of an increment run for one segment: reads the segment's share of the incremental
/// export and writes the increment layout's parts. Returns what was written once every part
/// object is complete.
pub async fn stream_changes(
    staging: &Staging,
    settings: &SegmentSettings,
    plan: &RunPlan,
    segment: u32,
    counters: &Arc<ScanCounters>,
    (store, export, stop): (&dyn ObjectStore, &Export, &crate::stop::Stop),
) -> Result<TransformResult, SegmentError> {
    let internal = |problem: String| SegmentError::Internal {
        run_id: plan.run_id.clone(),
        segment,
        problem,
    };
    let schemas = plan.schema_set().map_err(|e| internal(e.to_string()))?;
    let transformer = Transformer::new(
        &schemas,
        &plan.key_attributes,
        crate::warehouse::limits(plan.dialect),
    );
    let (page_tx, page_rx) = mpsc::channel::<RawPage>(PAGES_IN_FLIGHT);
    let (chunk_tx, chunk_rx) = mpsc::channel::<Upload>(1);
    let uploader = tokio::spawn(upload_chunks(
        staging.store.clone(),
        chunk_rx,
        settings.parts.max_in_flight,
    ));
    let names: Vec<String> = plan
        .warehouse_tables()
        .into_iter()
        .map(|t| t.table)
        .collect();
    let transform = {
        let layout = staging.layout.clone();
        let parts = settings.parts;
        let run_id = plan.run_id.clone();
        tokio::task::spawn_blocking(move || {
            let new_writer: WriterOf = Box::new(move |name: &str| {
                let (layout, run_id, name) = (layout.clone(), run_id.clone(), name.to_string());
                PartWriter::new(
                    Box::new(move |index| {
                        layout.part(&run_id, segment, &name, index, parts.compression)
                    }),
                    parts,
                    chunk_tx.clone(),
                )
            });
            Changes {
                transformer,
                writers: names.iter().map(|_| None).collect(),
                names,
                new_writer,
                segment,
                seq: 0,
            }
            .run(page_rx)
        })
    };
    let read = async {
        let result = read_segment(
            store,
            export,
            (segment, plan.total_segments),
            stop,
            counters,
            &page_tx,
            &plan.source_table,
        )
        .await;
        drop(page_tx);
        result
    };
    let read = read.await;
    let transformed = transform
        .await
        .expect("the change transform does not panic");
    let uploaded = uploader.await.expect("the uploader does not panic");
    match (read, transformed, uploaded) {
        (Ok(ScanEnd::Finished), Ok(mut t), Ok(done)) => {
            for file in t.tables.values_mut().flat_map(|o| o.files.iter_mut()) {
                match done.get(&file.key) {
                    Some(etag) => file.etag = etag.clone(),
                    None => {
                        return Err(internal(format!(
                            "part {} was written but its upload did not complete",
                            file.key
                        )))
                    }
                }
            }
            Ok(t)
        }
        (_, Err(Stop::Refused(problem)), _) => Err(internal(problem)),
        (Ok(ScanEnd::Stopped), _, _) => Err(SegmentError::Interrupted {
            run_id: plan.run_id.clone(),
            segment,
            why: stop.why().unwrap_or_else(|| "stop requested".into()),
            items: counters.items.load(std::sync::atomic::Ordering::Relaxed),
            checkpointed: false,
        }),
        (Err(e), _, _) if !matches!(e, ScanError::Downstream { .. }) => Err(e.into()),
        (_, _, Err(e)) => Err(e.into()),
        _ => Err(internal(
            "the change transform stopped without a result".into(),
        )),
    }
}

/// Makes the part writer of a table (the first time a row goes to it).
type WriterOf = Box<dyn Fn(&str) -> PartWriter + Send>;

/// The change transform: pages of change lines in, the increment layout's rows out.
struct Changes {
    transformer: Transformer,
    /// The increment layout's tables, as `RunPlan::warehouse_tables` lists them.
    names: Vec<String>,
    writers: Vec<Option<PartWriter>>,
    new_writer: WriterOf,
    segment: u32,
    /// Change lines read so far by this segment.
    seq: u64,
}

impl Changes {
    fn index_of(&self, table: &str) -> usize {
        self.names
            .iter()
            .position(|n| n == table)
            .expect("every table of the increment layout has a writer")
    }

    fn write(&mut self, table: usize, fields: &[Option<Cow<str>>]) -> Result<(), Stop> {
        let (names, new_writer) = (&self.names, &self.new_writer);
        self.writers[table]
            .get_or_insert_with(|| new_writer(&names[table]))
            .write_row(fields)
            .map_err(|_| Stop::Downstream)
    }

    fn run(mut self, mut pages: mpsc::Receiver<RawPage>) -> Result<TransformResult, Stop> {
        let served: Vec<String> = self.transformer.tables().map(|t| t.table.clone()).collect();
        let overflow = self.transformer.overflow_table();
        let upsert_of: Vec<usize> = served.iter().map(|t| self.index_of(t)).collect();
        let keys_of: Vec<Option<usize>> = (0..served.len())
            .map(|i| (i != overflow).then(|| self.index_of(&increment::keys_table(i))))
            .collect();
        let changes_table = self.index_of(CHANGES_TABLE);
        let mut rejected = Vec::new();
        let mut items = 0u64;
        while let Some(page) = pages.blocking_recv() {
            let lines: Vec<ChangeLine> =
                serde_json::from_slice(page.items_json()).map_err(|e| {
                    Stop::Refused(format!("a page of change lines cannot be read: {e}"))
                })?;
            for line in &lines {
                items += 1;
                self.seq += 1;
                let version = increment::version(
                    line.metadata.write_timestamp_micros.0,
                    self.segment,
                    self.seq,
                );
                let key = self.transformer.item_key(&line.keys);
                for (i, keys_table) in keys_of.iter().enumerate() {
                    let Some(keys_table) = *keys_table else {
                        continue;
                    };
                    let fields = self.transformer.key_fields(i, &line.keys).map_err(|why| {
                        Stop::Refused(format!(
                            "the change of item {key} cannot be applied: {why}; the served tables cannot find this item's row, so run a full copy (dynamo-etl run) instead of an increment"
                        ))
                    })?;
                    // A key this table's columns cannot hold is in no row of it.
                    let Some(fields) = fields else {
                        continue;
                    };
                    let row: Vec<Option<Cow<str>>> =
                        std::iter::once(Some(Cow::Borrowed(key.as_str())))
                            .chain(fields)
                            .collect();
                    self.write(keys_table, &row)?;
                }
                let landed = match &line.new_image {
                    None => None,
                    Some(image) => match self.transformer.convert(image) {
                        Ok(row) => {
                            let lead = [
                                Some(Cow::Borrowed(key.as_str())),
                                Some(Cow::Borrowed(version.as_str())),
                            ];
                            let fields: Vec<Option<Cow<str>>> =
                                lead.iter().cloned().chain(row.fields).collect();
                            self.write(upsert_of[row.table], &fields)?;
                            for piece in row.overflow {
                                let fields: Vec<Option<Cow<str>>> =
                                    lead.iter().cloned().chain(piece).collect();
                                self.write(upsert_of[overflow], &fields)?;
                            }
                            Some(served[row.table].as_str())
                        }
                        // As in a full copy, an image no table can hold is listed, not loaded:
                        // the item leaves the served tables.
                        Err(rejection) => {
                            rejected.push(rejection);
                            None
                        }
                    },
                };
                let change = [
                    Some(Cow::Borrowed(key.as_str())),
                    Some(Cow::Borrowed(version.as_str())),
                    landed.map(Cow::Borrowed),
                ];
                self.write(changes_table, &change)?;
            }
        }
        let drift = self.transformer.drift();
        let mut tables = BTreeMap::new();
        for (name, writer) in self.names.into_iter().zip(self.writers) {
            let output = match writer {
                Some(w) => w.finish().map_err(|_| Stop::Downstream)?,
                None => TableOutput::default(),
            };
            tables.insert(name, output);
        }
        Ok(TransformResult {
            tables,
            rejected,
            drift,
            items,
        })
    }
}
