//! The run's objects in the staging area: where they live, what they hold, and how they are
//! read and written. Phase 1 writes parts and manifests here; every later phase reads them.
//!
//! ```text
//! <prefix>/runs/<run-id>/run.json                        the plan (written once)
//! <prefix>/runs/<run-id>/segments/<k>/<table>/part-00000.csv.zst   (.csv.gz with gzip parts)
//! <prefix>/runs/<run-id>/segments/<k>/checkpoint.json    how far phase 1 got (while it runs)
//! <prefix>/runs/<run-id>/segments/<k>/manifest.json      written last: the segment's commit point
//! <prefix>/runs/<run-id>/load/<k>/<table>.manifest       Redshift COPY manifests (phase 3)
//! <prefix>/runs/<run-id>/swapped.json                    written after the swap committed
//! <prefix>/runs/<run-id>/report.json                     the report of `dynamo-etl run`
//! <prefix>/runs/<run-id>/lease.json                      held while `dynamo-etl run` works on it
//! <prefix>/runs/<run-id>/export-started.json            the export `export start` started for it
//! <prefix>/runs/<run-id>/export/AWSDynamoDB/<id>/...     that export, written by DynamoDB
//! <prefix>/schemas/<snapshot-id>/...                     schema cache snapshots
//! ```

pub mod checkpoint;
pub mod commands;
pub mod export;
pub mod fingerprint;
pub mod increment;
pub mod layout;
pub mod lease;
pub mod manifest;
mod md5_lanes;
pub mod parts;
pub mod plan;
pub mod resolve;
pub mod rfc3339;
pub mod runs;
pub mod schema_cache;

pub use layout::{check_run_id, Layout};

use crate::storage::Store;

/// One staging area: a bucket and a prefix in it.
#[derive(Clone)]
pub struct Staging {
    pub store: Store,
    pub layout: Layout,
}

impl Staging {
    pub fn new(store: Store, layout: Layout) -> Self {
        Staging { store, layout }
    }

    /// `s3://<bucket>/<key>`, for messages.
    pub fn url(&self, key: &str) -> String {
        self.store.url(key)
    }
}
