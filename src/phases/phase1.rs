//! What every phase-1 pipeline shares — a scan of the table, a full export's files, an
//! incremental export's change lines: its settings, its errors, and what its transform hands
//! back for the segment's manifest.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::{Class, Classify};
use crate::source::ScanError;
use crate::staging::manifest::{Rejection, TableDrift, TableOutput};
use crate::staging::parts::writer::PartSettings;
use crate::storage::StoreError;

/// How phase 1 reads and shapes its output.
#[derive(Debug, Clone, Copy)]
pub struct SegmentSettings {
    pub parts: PartSettings,
    pub consistent_read: bool,
    /// Read units per second for this segment.
    pub max_read_units: Option<f64>,
    /// How often progress is logged.
    pub progress_every: Duration,
    /// A checkpoint is taken at least this often (and whenever a part fills up).
    pub checkpoint_every: Duration,
    /// Ignore the segment's checkpoint and scan it from its first page.
    pub restart: bool,
    /// At most this many items per Scan page (`None`: DynamoDB's 1 MB pages).
    pub page_items: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("segment {segment} of run {run_id}: {problem}")]
    Internal {
        run_id: String,
        segment: u32,
        problem: String,
    },
    #[error("segment {segment} of run {run_id} stopped ({why}) after {items} items; {}",
        if *.checkpointed { "a checkpoint holds them, and the retry goes on from there" }
        else { "the retry goes on from the last checkpoint, or from the start when there is none" })]
    Interrupted {
        run_id: String,
        segment: u32,
        why: String,
        items: u64,
        checkpointed: bool,
    },
}

impl Classify for SegmentError {
    fn class(&self) -> Class {
        match self {
            SegmentError::Scan(e) => e.class(),
            SegmentError::Store(e) => e.class(),
            SegmentError::Internal { .. } => Class::Fatal,
            SegmentError::Interrupted { .. } => Class::Retry,
        }
    }
}

/// What the transform thread hands back.
pub struct TransformResult {
    pub tables: BTreeMap<String, TableOutput>,
    pub rejected: Vec<Rejection>,
    pub drift: BTreeMap<String, TableDrift>,
    pub items: u64,
}
