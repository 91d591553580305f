//! The warehouse side of a run: one trait at the level of the protocol — [`Warehouse`] — and one
//! folder per SQL dialect implementing it ([`postgres`], [`redshift`]), picked by [`open`].
//!
//! Beside the trait lie the pieces every dialect shares, written in SQL both servers read:
//! quoting and sessions ([`sql`]), the ledger and run-marker contract ([`ledger`]), the
//! completeness gate's decision ([`gate`]) and the swap plan ([`swap`]). They ask a dialect
//! what differs through [`Dialect`]: column types, literals, the current time, bounding lock
//! waits, naming grantees. Everything else a dialect needs — how parts get in, how a segment is
//! claimed, how a failed load is explained, which errors are worth a retry — stays in its folder.
//!
//! Adding a dialect: a folder with a type implementing [`Dialect`] and [`Warehouse`], and one line
//! in [`open`] (plus a [`DialectName`] and the URL scheme that implies it).

pub mod config;
pub mod gate;
pub mod increment;
pub mod ledger;
pub mod load;
pub mod postgres;
pub mod redshift;
pub mod sql;
pub mod swap;
pub mod url;

use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub use config::{DialectName, Grantee, WarehouseConfig, WarehouseUrl};
pub use gate::GateRefusal;

use crate::error::{Class, Classify};
use crate::retry::RetryPolicy;
use crate::schema::{Limits, LogicalType};
use crate::staging::commands::Step;
use crate::staging::manifest::{Committed, ManifestError};
use crate::staging::plan::RunPlan;
use crate::staging::Staging;
use crate::storage::StoreError;
use sql::Session;

/// The phases' view of a warehouse. What every dialect does the same way (prepare, state, the
/// swap, increments) is provided here through [`Warehouse::dialect`]; a dialect writes how its
/// parts get in (`load_segment`, `load_segments`) and how `run` should load (`run_load`).
#[async_trait(?Send)]
pub trait Warehouse {
    /// The SQL dialect the shared steps (ledger, gate, swap, increments) speak through.
    fn dialect(&self) -> &dyn Dialect;

    fn config(&self) -> &WarehouseConfig {
        self.dialect().config()
    }

    /// Phase 2's statements, as `prepare --dry-run` prints them.
    fn prepare_sql(&self, plan: &RunPlan) -> Vec<String> {
        ledger::prepare_sql(self.dialect(), plan)
    }

    /// Phase 2: drop and re-create the staging schema with one table per data-schema, the
    /// ledger and the run marker, in one transaction. Never touches the target or previous.
    async fn prepare(&self, plan: &RunPlan) -> Result<(), WarehouseError> {
        let mut session = self.dialect().session().await?;
        session
            .in_transaction(&self.prepare_sql(plan), "preparing the staging schema")
            .await
    }

    /// Phase 3 for one segment: in one transaction, claim the segment in the ledger (or find it
    /// loaded already), copy every part of its manifest, check the counts, record them, commit.
    /// A transient failure (a body cut short, a dropped connection) rolls the transaction back
    /// and starts the segment's load again on a fresh session, within `retry`'s budget.
    async fn load_segment(
        &self,
        staging: &Staging,
        plan: &RunPlan,
        segment: u32,
        retry: &RetryPolicy,
    ) -> Result<UploadOutcome, WarehouseError>;

    /// Phase 3 for every segment of the run that phase 1 committed and staging does not hold yet,
    /// in one transaction: lock the ledger, load each table with one COPY over all of those
    /// segments' parts (every part verified as in [`Warehouse::load_segment`]), check each
    /// table's count against the sum of their manifests, record every segment, commit. Segments
    /// without a manifest are left out and listed. A transient failure rolls everything back and
    /// the load starts again on a fresh session, within `retry`'s budget.
    async fn load_segments(
        &self,
        staging: &Staging,
        plan: &RunPlan,
        retry: &RetryPolicy,
    ) -> Result<SegmentsLoaded, WarehouseError>;

    /// How `run` loads a whole run into this warehouse.
    fn run_load(&self) -> RunLoad;

    /// The statements that refresh the planner's statistics of the staged tables before a swap,
    /// unless the configuration turned that off.
    fn analyze_sql(&self, plan: &RunPlan) -> Vec<String> {
        swap::analyze_sql(self.dialect(), plan)
    }

    /// Which runs the target, staging and previous schemas hold, and the staged segments.
    async fn state(&self) -> Result<WarehouseState, WarehouseError> {
        let mut session = self.dialect().session().await?;
        ledger::state(self.dialect(), &mut session).await
    }

    /// The statements of a swap, as `--dry-run` prints them (the target assumed to exist).
    fn swap_sql(&self, kind: swap::SwapKind) -> Vec<String> {
        let mut out = swap::lock_statements(self.dialect(), kind, true);
        out.extend(swap::statements(self.dialect(), kind, true));
        out
    }

    /// Phase 4: the gate (forward only, complete), then the swap, in one transaction; conflicts
    /// retried. `allow_older` lets a run planned before the served one replace it.
    async fn replace(
        &self,
        plan: &RunPlan,
        manifests: &[Committed],
        allow_older: bool,
        retry: &RetryPolicy,
    ) -> Result<SwapOutcome, WarehouseError> {
        let swap = swap::Swap::Replace {
            plan,
            manifests,
            allow_older,
        };
        swap::run(self.dialect(), swap, retry).await
    }

    /// The previous generation back in (the replaced one kept as previous).
    async fn rollback(&self, retry: &RetryPolicy) -> Result<SwapOutcome, WarehouseError> {
        swap::run(self.dialect(), swap::Swap::Rollback, retry).await
    }

    /// Applies increment run `plan`, staged in schema `inc`, to the target in one transaction
    /// (see [`increment`]).
    async fn apply_increment(
        &self,
        plan: &RunPlan,
        inc: &str,
        manifests: &[Committed],
    ) -> Result<increment::ApplyOutcome, WarehouseError> {
        increment::apply(self.dialect(), plan, inc, manifests).await
    }

    /// The increments the target has applied on top of the run it serves, oldest first.
    async fn increments(&self) -> Result<Vec<increment::Applied>, WarehouseError> {
        let mut session = self.dialect().session().await?;
        increment::applied(&mut session, &self.config().target).await
    }
}

/// The dialect for a configuration: the registry of dialects.
pub fn open(config: WarehouseConfig) -> Box<dyn Warehouse> {
    match config.dialect {
        DialectName::Postgres => Box::new(postgres::Postgres::new(config)),
        DialectName::Redshift => Box::new(redshift::Redshift::new(config)),
    }
}

/// What a dialect's warehouse holds (each dialect's `limits.rs`): phase 1 of a run shapes its
/// values by the limits of the dialect the run is planned for.
pub fn limits(dialect: DialectName) -> &'static Limits {
    match dialect {
        DialectName::Postgres => &postgres::limits::LIMITS,
        DialectName::Redshift => &redshift::limits::LIMITS,
    }
}

/// What the shared pieces ask of a dialect's SQL.
#[async_trait(?Send)]
pub trait Dialect {
    fn config(&self) -> &WarehouseConfig;

    /// A new session, set up for this tool.
    async fn session(&self) -> Result<Session, WarehouseError>;

    /// The column type for a logical type.
    fn column_type(&self, t: LogicalType) -> String;

    /// A string literal.
    fn literal(&self, text: &str) -> String;

    /// The current time as an SQL expression.
    fn now(&self) -> &'static str;

    /// A statement that bounds how long the current transaction waits for locks.
    fn lock_timeout(&self, timeout: Duration) -> String;

    /// The statement that lifts [`Dialect::lock_timeout`]'s bound again, where that bound also
    /// limits how long a statement may run (Redshift); `None` where it bounds lock waits only.
    fn lock_timeout_lifted(&self) -> Option<String> {
        None
    }

    /// `statements` (lock-taking ones) run under the lock-wait bound, which is lifted after
    /// them: whatever runs next — counts, an increment's deletes and inserts, post-swap SQL —
    /// is never cancelled for taking longer than a lock wait may.
    fn lock_bounded(&self, statements: Vec<String>) -> Vec<String> {
        let mut out = vec![self.lock_timeout(self.config().lock_timeout)];
        out.extend(statements);
        out.extend(self.lock_timeout_lifted());
        out
    }

    /// A grantee as `GRANT … TO` takes it.
    fn grantee(&self, grantee: &Grantee) -> String;

    /// The statements that refresh the planner's statistics of `tables` (qualified names), run
    /// one by one outside any transaction.
    /// A condition that holds when two key columns of type `t` hold the same key.
    fn key_equals(&self, a: &str, b: &str, _t: LogicalType) -> String {
        format!("{a} = {b}")
    }

    fn analyze_tables(&self, tables: &[String]) -> Vec<String> {
        tables.iter().map(|t| format!("ANALYZE {t}")).collect()
    }
}

/// How `run` loads a whole run into a warehouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunLoad {
    /// One transaction per segment, several segments at once.
    PerSegment,
    /// Every segment in one transaction, one COPY per table ([`Warehouse::load_segments`]).
    OneTransaction,
}

/// What a load of many segments did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentsLoaded {
    /// Segments this load committed, with their rows by table.
    pub loaded: BTreeMap<u32, BTreeMap<String, u64>>,
    /// Segments staging held already.
    pub already: Vec<u32>,
    /// Segments phase 1 has not committed (left for a later load).
    pub missing: Vec<u32>,
}

/// What phase 3 did for one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadOutcome {
    Loaded {
        rows: u64,
        tables: BTreeMap<String, u64>,
    },
    AlreadyLoaded,
}

/// What `replace` or `rollback` did.
#[derive(Debug)]
pub enum SwapOutcome {
    Swapped {
        statements: Vec<String>,
    },
    Refused(GateRefusal),
    /// The target already serves the run: another process swapped it in meanwhile.
    AlreadyServed,
}

/// The run a schema holds, from its run marker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunMarker {
    pub run_id: String,
    /// When the run was planned (RFC 3339); `None` for generations prepared before the marker
    /// recorded it.
    pub planned_at: Option<String>,
}

/// What the warehouse holds for one target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WarehouseState {
    /// The run the target serves, if the target exists.
    pub serving: Option<RunMarker>,
    /// The run kept in `<target>_previous`.
    pub previous: Option<RunMarker>,
    /// The run staging is prepared for, with the segments loaded into it.
    pub staged: Option<Staged>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Staged {
    pub run_id: String,
    pub loaded: BTreeSet<u32>,
}

/// Errors of the warehouse phases. Each says what failed where; [`Classify`] says whether the
/// same command may succeed when run again, and [`WarehouseError::remedy`] what to run instead.
#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error("cannot connect to the warehouse at {url}: {detail}")]
    Connect {
        url: String,
        detail: String,
        retriable: bool,
    },
    #[error("{what} failed: {detail}")]
    Sql {
        what: String,
        detail: String,
        retriable: bool,
    },
    #[error("loading {part} into {table} failed: {detail}")]
    Load {
        table: String,
        part: String,
        detail: String,
        retriable: bool,
    },
    /// The segment's output cannot be loaded as it is (a damaged part, counts that disagree, a
    /// table the plan does not have): phase 1 must write it again.
    #[error(
        "segment {segment} of run {run_id} cannot be loaded: {problem}; nothing was committed"
    )]
    BadSegment {
        run_id: String,
        segment: u32,
        problem: String,
    },
    /// A load of many segments found a table it cannot load as it is, and cannot tell which of
    /// the segments is at fault: loading them one at a time names it.
    #[error(
        "table {table} of run {run_id} cannot be loaded from segments {}: {problem}; nothing was committed",
        load::listed(segments.iter().copied())
    )]
    BadTable {
        run_id: String,
        table: String,
        segments: Vec<u32>,
        problem: String,
    },
    #[error("segment {segment} of run {run_id} has no manifest (phase 1 did not commit it)")]
    NotCommitted { run_id: String, segment: u32 },
    #[error("staging schema {staging} is {found}, not for run {run_id}")]
    NotPrepared {
        run_id: String,
        staging: String,
        found: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// No temporary credentials to log in with (Redshift IAM); the API calls were retried
    /// already, so a fresh session would not help.
    #[error(transparent)]
    Credentials(Box<redshift::credentials::CredentialsError>),
}

impl From<redshift::credentials::CredentialsError> for WarehouseError {
    fn from(e: redshift::credentials::CredentialsError) -> Self {
        WarehouseError::Credentials(Box::new(e))
    }
}

impl Classify for WarehouseError {
    fn class(&self) -> Class {
        match self {
            WarehouseError::Connect { retriable, .. }
            | WarehouseError::Sql { retriable, .. }
            | WarehouseError::Load { retriable, .. } => {
                if *retriable {
                    Class::Retry
                } else {
                    Class::Fatal
                }
            }
            WarehouseError::BadSegment { .. } | WarehouseError::BadTable { .. } => Class::Fatal,
            // Incomplete work: the named step completes it.
            WarehouseError::NotCommitted { .. } | WarehouseError::NotPrepared { .. } => {
                Class::Retry
            }
            WarehouseError::Store(e) => e.class(),
            WarehouseError::Manifest(e) => e.class(),
            WarehouseError::Credentials(e) => e.class(),
        }
    }
}

impl WarehouseError {
    /// A fault of the moment (network, server, a conflict) that another attempt of the same work
    /// may not meet, as opposed to work that is not done yet.
    pub fn is_transient(&self) -> bool {
        match self {
            WarehouseError::Connect { retriable, .. }
            | WarehouseError::Sql { retriable, .. }
            | WarehouseError::Load { retriable, .. } => *retriable,
            WarehouseError::Store(e) => e.class() == Class::Retry,
            WarehouseError::Manifest(e) => e.class() == Class::Retry,
            _ => false,
        }
    }

    /// The steps that fix this error for segment `segment` of `plan`'s run (`None` for errors of
    /// the whole run), in order. Empty when running the same command again is the fix.
    pub fn remedy(&self, plan: &RunPlan) -> Vec<Step> {
        let n = plan.total_segments;
        let rescan = |segment| Step::RetryPhase1 {
            total_segments: n,
            segment,
        };
        match self {
            WarehouseError::BadSegment { segment, .. } => {
                vec![rescan(*segment), Step::RetryPhase3 { segment: *segment }]
            }
            WarehouseError::Manifest(e) => match e.damaged_segment() {
                Some(segment) => vec![rescan(segment), Step::RetryPhase3 { segment }],
                None => Vec::new(),
            },
            // One segment at a time, the segment at fault is named with its own remedy.
            WarehouseError::BadTable { .. } => vec![Step::UploadEach { total_segments: n }],
            WarehouseError::NotCommitted { segment, .. } => {
                vec![rescan(*segment), Step::RetryPhase3 { segment: *segment }]
            }
            WarehouseError::NotPrepared { .. } => {
                vec![Step::Prepare, Step::UploadEach { total_segments: n }]
            }
            _ => Vec::new(),
        }
    }
}
