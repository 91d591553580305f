//! Phase 1 of an increment run: the segment's share of an incremental export's change lines in,
//! the increment layout's parts out (`staging::increment`). Each line's new image is classified
//! and converted exactly as a full copy converts an item (drift, `_extra`, `_overflow` and
//! rejections alike), its key is written in every served table's key columns, and one change row
//! records where the image landed — nowhere for a delete.

use std::borrow::Cow;
use std::collections::BTreeMap;
use tokio::sync::mpsc;

use super::pipeline::{Stage, TransformStop};
use super::{Job, SegmentError, TransformResult};
use crate::source::export::ChangeLine;
use crate::source::page::RawPage;
use crate::staging::fingerprint::Fingerprinter;
use crate::staging::increment::{self, CHANGES_TABLE};
use crate::staging::manifest::{Rejection, TableOutput};
use crate::staging::parts::writer::{PartWriter, Upload};
use crate::transform::Transformer;

/// Makes the part writer of a table (the first time a row goes to it).
type WriterOf = Box<dyn Fn(&str) -> PartWriter + Send>;

/// The change transform: pages of change lines in, the increment layout's rows out.
pub(super) struct ChangeTransform {
    transformer: Transformer,
    out: Writers,
    segment: u32,
    /// Change lines read so far by this segment.
    seq: u64,
    /// The served tables, as the transform lists them, and `_overflow`'s index among them.
    served: Vec<String>,
    overflow: usize,
    /// Per served table: its upsert table, and its keys table (none for `_overflow`).
    upsert_of: Vec<usize>,
    keys_of: Vec<Option<usize>>,
    changes_table: usize,
    rejected: Vec<Rejection>,
    items: u64,
}

impl ChangeTransform {
    /// The change transform of `job`'s segment (an increment's segment never resumes).
    pub(super) fn new(
        job: &Job,
        chunks: mpsc::Sender<Upload>,
    ) -> Result<ChangeTransform, SegmentError> {
        let (plan, segment) = (job.plan, job.segment);
        let schemas = plan.schema_set().map_err(|e| job.internal(e.to_string()))?;
        let transformer = Transformer::new(
            &schemas,
            &plan.key_attributes,
            crate::warehouse::limits(plan.dialect),
        );
        let names: Vec<String> = plan
            .warehouse_tables()
            .into_iter()
            .map(|t| t.table)
            .collect();
        let (layout, parts, run_id) = (
            job.staging.layout.clone(),
            job.settings.parts,
            plan.run_id.clone(),
        );
        // Fingerprinted like a full copy's parts, so the apply can prove the staged changes.
        let limits = crate::warehouse::limits(plan.dialect);
        let fingerprinters: BTreeMap<String, Fingerprinter> = plan
            .warehouse_tables()
            .iter()
            .map(|t| (t.table.clone(), Fingerprinter::for_table(t, limits)))
            .collect();
        let new_writer: WriterOf = Box::new(move |name: &str| {
            let (layout, run_id, name) = (layout.clone(), run_id.clone(), name.to_string());
            let fingerprinter = fingerprinters
                .get(&name)
                .expect("every table of the increment layout has a fingerprinter")
                .clone();
            PartWriter::new(
                Box::new(move |index| {
                    layout.part(&run_id, segment, &name, index, parts.compression)
                }),
                parts,
                chunks.clone(),
            )
            .with_fingerprints(fingerprinter)
        });
        let index_of = |table: &str| {
            names
                .iter()
                .position(|n| n == table)
                .expect("every table of the increment layout has a writer")
        };
        let served: Vec<String> = transformer.tables().map(|t| t.table.clone()).collect();
        let overflow = transformer.overflow_table();
        let upsert_of: Vec<usize> = served.iter().map(|t| index_of(t)).collect();
        let keys_of: Vec<Option<usize>> = (0..served.len())
            .map(|i| (i != overflow).then(|| index_of(&increment::keys_table(i))))
            .collect();
        let changes_table = index_of(CHANGES_TABLE);
        Ok(ChangeTransform {
            transformer,
            out: Writers {
                writers: names.iter().map(|_| None).collect(),
                names,
                new_writer,
            },
            segment,
            seq: 0,
            served,
            overflow,
            upsert_of,
            keys_of,
            changes_table,
            rejected: Vec::new(),
            items: 0,
        })
    }
}

/// The part writers of the increment layout's tables, each made when its first row comes.
struct Writers {
    /// The increment layout's tables, as `RunPlan::warehouse_tables` lists them.
    names: Vec<String>,
    writers: Vec<Option<PartWriter>>,
    new_writer: WriterOf,
}

impl Writers {
    fn write(&mut self, table: usize, fields: &[Option<Cow<str>>]) -> Result<(), TransformStop> {
        let (names, new_writer) = (&self.names, &self.new_writer);
        self.writers[table]
            .get_or_insert_with(|| new_writer(&names[table]))
            .write_row(fields)
            .map_err(|_| TransformStop::Downstream)
    }
}

impl Stage for ChangeTransform {
    fn page(&mut self, page: RawPage) -> Result<(), TransformStop> {
        let lines: Vec<ChangeLine> = serde_json::from_slice(page.items_json()).map_err(|e| {
            TransformStop::Refused(format!("a page of change lines cannot be read: {e}"))
        })?;
        let overflow = self.overflow;
        for line in &lines {
            self.items += 1;
            self.seq += 1;
            let version = increment::version(
                line.metadata.write_timestamp_micros.0,
                self.segment,
                self.seq,
            );
            let key = self.transformer.item_key(&line.keys);
            for (i, keys_table) in self.keys_of.iter().enumerate() {
                let Some(keys_table) = *keys_table else {
                    continue;
                };
                let fields = self.transformer.key_fields(i, &line.keys).map_err(|why| {
                    TransformStop::Refused(format!(
                        "the change of item {key} cannot be applied: {why}; the served tables cannot find this item's row, so run a full copy (dynamo-etl run) instead of an increment"
                    ))
                })?;
                // A key this table's columns cannot hold is in no row of it.
                let Some(fields) = fields else {
                    continue;
                };
                let row: Vec<Option<Cow<str>>> = std::iter::once(Some(Cow::Borrowed(key.as_str())))
                    .chain(fields)
                    .collect();
                self.out.write(keys_table, &row)?;
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
                        self.out.write(self.upsert_of[row.table], &fields)?;
                        for piece in row.overflow {
                            let fields: Vec<Option<Cow<str>>> =
                                lead.iter().cloned().chain(piece).collect();
                            self.out.write(self.upsert_of[overflow], &fields)?;
                        }
                        Some(self.served[row.table].as_str())
                    }
                    // As in a full copy, an image no table can hold is listed, not loaded:
                    // the item leaves the served tables.
                    Err(rejection) => {
                        self.rejected.push(rejection);
                        None
                    }
                },
            };
            let change = [
                Some(Cow::Borrowed(key.as_str())),
                Some(Cow::Borrowed(version.as_str())),
                landed.map(Cow::Borrowed),
            ];
            self.out.write(self.changes_table, &change)?;
        }
        Ok(())
    }

    fn finish(self) -> Result<TransformResult, TransformStop> {
        let drift = self.transformer.drift();
        let mut tables = BTreeMap::new();
        for (name, writer) in self.out.names.into_iter().zip(self.out.writers) {
            let output = match writer {
                Some(w) => w.finish().map_err(|_| TransformStop::Downstream)?,
                None => TableOutput::default(),
            };
            tables.insert(name, output);
        }
        Ok(TransformResult {
            tables,
            rejected: self.rejected,
            drift,
            items: self.items,
        })
    }

    fn stopped(self, failed: bool) -> TransformStop {
        // An increment's segment takes no checkpoints: dropping the writers leaves their parts
        // unfinished, the uploader aborts them, and the retry reads the files again.
        match failed {
            true => TransformStop::Downstream,
            false => TransformStop::Stopped {
                items: self.items,
                checkpointed: false,
            },
        }
    }
}
