//! The warehouse side of a run: one trait, [`Warehouse`], that each SQL dialect implements in
//! a folder of its own ([`postgres`], [`redshift`]), and the registry below that names them
//! (the only place in the generic code that does).
//!
//! A dialect writes what differs: its session (how it logs in), column types, literals, the
//! current time, bounding lock waits, naming grantees, and how parts get in (`load_segment_once`,
//! `copy_batch`). The rest of the protocol — prepare, the ledger, the completeness gate, the
//! swap, increments, the load of many segments — are the trait's provided methods, written once
//! beside it in SQL both servers read: quoting and sessions ([`sql`]), the ledger and run-marker
//! contract ([`ledger`]), the gate's decisions ([`gate`]), the swap plan ([`swap`]), loads
//! ([`load`]) and increments ([`increment`]). Settings only one dialect reads (Redshift's IAM
//! role, its IAM credentials) are that dialect's own options type, carried opaquely in
//! [`DialectOptions`].
//!
//! Adding a dialect: see "Adding a dialect" in `src/ARCHITECTURE.md`.

pub mod config;
pub mod fingerprint;
pub mod gate;
pub mod increment;
pub mod ledger;
pub mod load;
pub mod sql;
pub mod swap;
pub mod url;

use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub use config::{DialectName, Grantee, WarehouseConfig, WarehouseUrl};
pub use gate::GateRefusal;
pub use load::TableBatch;

use crate::error::{Class, Classify};
use crate::retry::RetryPolicy;
use crate::schema::{Limits, LogicalType};
use crate::staging::commands::Step;
use crate::staging::manifest::{Committed, ManifestError};
use crate::staging::plan::RunPlan;
use crate::staging::Staging;
use crate::storage::StoreError;
use sql::Session;

/// The one trait a dialect implements: the phases' view of a warehouse. A dialect writes the
/// required methods (what its SQL and its loads look like); the provided ones are the protocol
/// every dialect shares, which a dialect overrides only where its server differs.
#[async_trait(?Send)]
pub trait Warehouse {
    // What a dialect writes.

    /// Where the warehouse is and what to call things there.
    fn config(&self) -> &WarehouseConfig;

    /// A new session, logged in and set up for this tool.
    async fn session(&self) -> Result<Session, WarehouseError>;

    /// The column type for a logical type.
    fn column_type(&self, t: LogicalType) -> String;

    /// A string literal.
    fn literal(&self, text: &str) -> String;

    /// The current time as an SQL expression.
    fn now(&self) -> &'static str;

    /// A statement that bounds how long the current transaction waits for locks.
    fn lock_timeout(&self, timeout: Duration) -> String;

    /// A grantee as `GRANT … TO` takes it.
    fn grantee(&self, grantee: &Grantee) -> String;

    /// One attempt of phase 3 for one segment: in one transaction, claim the segment in the
    /// ledger (or find it loaded already), copy every part of its manifest, check the counts,
    /// record them, commit ([`Warehouse::load_segment`] retries it).
    async fn load_segment_once(
        &self,
        staging: &Staging,
        plan: &RunPlan,
        segment: u32,
    ) -> Result<UploadOutcome, WarehouseError>;

    /// Copies every part of `batch` into its staging table, inside the open transaction of a
    /// load of many segments, with as few COPY statements as the dialect allows (one,
    /// normally), verifying each part as phase 3 always does; returns the rows the server
    /// reports as loaded.
    async fn copy_batch(
        &self,
        session: &mut Session,
        staging: &Staging,
        plan: &RunPlan,
        batch: &TableBatch<'_>,
    ) -> Result<u64, WarehouseError>;

    /// How `run` loads a whole run into this warehouse.
    fn run_load(&self) -> RunLoad;

    /// An expression giving the first 15 hex digits of the MD5 of the canonical rendering of
    /// `column`'s stored value of type `t` (`staging::fingerprint`), NULL for NULL; `None` where
    /// the dialect's documentation does not pin a rendering down (the column is count-only).
    fn value_hash_sql(&self, t: LogicalType, column: &str) -> Option<String>;

    /// An expression reading 15 hex digits `hex` as a number whose SUM is exact.
    fn hash_number_sql(&self, hex: &str) -> String;

    /// An expression giving the first 15 hex digits of the MD5 of ASCII text `text`.
    fn text_hash_sql(&self, text: &str) -> String;

    /// An expression, valid in any table's rows (the ledger's included), naming as text the
    /// transaction that wrote the row; `None` where the dialect has none. `verify` measures a
    /// table that failed its proof per writer, to tell which segment's load wrote the rows that
    /// differ (`fingerprint::locate`).
    fn row_writer_sql(&self) -> Option<&'static str> {
        None
    }

    // Where a dialect's SQL may differ from the standard.

    /// The statement that lifts [`Warehouse::lock_timeout`]'s bound again, where that bound also
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

    /// A condition that holds when two key columns of type `t` hold the same key.
    fn key_equals(&self, a: &str, b: &str, _t: LogicalType) -> String {
        format!("{a} = {b}")
    }

    /// The statements that refresh the planner's statistics of `tables` (qualified names), run
    /// one by one outside any transaction.
    fn analyze_tables(&self, tables: &[String]) -> Vec<String> {
        tables.iter().map(|t| format!("ANALYZE {t}")).collect()
    }

    /// The statement that indexes the key columns of staged `table` (`unique`: one row per key,
    /// a guarantee the served tables keep), built after the load and before the swap so that an
    /// increment's or a batch's delete-join costs what its changes cost, not what the table
    /// does. `None`: the dialect shapes tables for that another way (or has no indexes).
    fn key_index(
        &self,
        _table: &str,
        _name: &str,
        _columns: &[String],
        _unique: bool,
    ) -> Option<String> {
        None
    }

    /// What follows `CREATE TABLE …(…)` for a table with a column for every key attribute
    /// (`key_columns`, partition key first): how the dialect lays such a table out so that
    /// joins on the key touch little of it. Empty: nothing (an index does it, see
    /// [`Warehouse::key_index`]).
    fn key_layout(&self, _key_columns: &[String]) -> String {
        String::new()
    }

    // The protocol, the same for every dialect.

    /// Phase 2's statements, as `prepare --dry-run` prints them.
    fn prepare_sql(&self, plan: &RunPlan) -> Vec<String> {
        ledger::prepare_sql(self, plan)
    }

    /// Phase 2: drop and re-create the staging schema with one table per data-schema, the
    /// ledger and the run marker, in one transaction. Never touches the target or previous.
    async fn prepare(&self, plan: &RunPlan) -> Result<(), WarehouseError> {
        let mut session = self.session().await?;
        session
            .in_transaction(&self.prepare_sql(plan), "preparing the staging schema")
            .await
    }

    /// Phase 3 for one segment ([`Warehouse::load_segment_once`]). A transient failure (a body
    /// cut short, a dropped connection) rolls the transaction back and starts the segment's
    /// load again on a fresh session, within `retry`'s budget.
    async fn load_segment(
        &self,
        staging: &Staging,
        plan: &RunPlan,
        segment: u32,
        retry: &RetryPolicy,
    ) -> Result<UploadOutcome, WarehouseError> {
        load::with_retries(retry, plan, segment, || {
            self.load_segment_once(staging, plan, segment)
        })
        .await
    }

    /// Phase 3 for every segment of the run that phase 1 committed and staging does not hold yet,
    /// in one transaction: lock the ledger, load each table with one COPY over all of those
    /// segments' parts ([`Warehouse::copy_batch`]), check each table's count against the sum of
    /// their manifests, record every segment, commit. Segments without a manifest are left out
    /// and listed. A transient failure rolls everything back and the load starts again on a
    /// fresh session, within `retry`'s budget.
    async fn load_segments(
        &self,
        staging: &Staging,
        plan: &RunPlan,
        retry: &RetryPolicy,
    ) -> Result<SegmentsLoaded, WarehouseError> {
        load::load_segments(self, staging, plan, retry).await
    }

    /// The statements that refresh the planner's statistics of the staged tables before a swap,
    /// unless the configuration turned that off.
    fn analyze_sql(&self, plan: &RunPlan) -> Vec<String> {
        swap::analyze_sql(self, plan)
    }

    /// Which runs the target, staging and previous schemas hold, and the staged segments.
    async fn state(&self) -> Result<WarehouseState, WarehouseError> {
        let mut session = self.session().await?;
        ledger::state(self, &mut session).await
    }

    /// The statements of a swap, as `--dry-run` prints them (the target assumed to exist).
    fn swap_sql(&self, kind: swap::SwapKind) -> Vec<String> {
        let mut out = swap::lock_statements(self, kind, true);
        out.extend(swap::statements(self, kind, true));
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
        swap::run(self, swap, retry).await
    }

    /// The previous generation back in (the replaced one kept as previous).
    async fn rollback(&self, retry: &RetryPolicy) -> Result<SwapOutcome, WarehouseError> {
        swap::run(self, swap::Swap::Rollback, retry).await
    }

    /// Applies increment run `plan`, staged in schema `inc`, to the target in one transaction
    /// (see [`increment`]).
    async fn apply_increment(
        &self,
        plan: &RunPlan,
        inc: &str,
        manifests: &[Committed],
    ) -> Result<increment::ApplyOutcome, WarehouseError> {
        increment::apply(self, plan, inc, manifests).await
    }

    /// The increments the target has applied on top of the run it serves, oldest first.
    async fn increments(&self) -> Result<Vec<increment::Applied>, WarehouseError> {
        let mut session = self.session().await?;
        increment::applied(&mut session, &self.config().target).await
    }

    /// Where the stream `follow` applies stands in the target's served tables.
    async fn stream_positions(&self) -> Result<increment::StreamPositions, WarehouseError> {
        let mut session = self.session().await?;
        increment::positions(&mut session, &self.config().target).await
    }
}

// The registry of dialects: the only part of the generic warehouse code that names them. A new
// dialect is a folder beside these two, a `DialectName` (src/schema/limits.rs) and one line in
// each list below. (`tests/it/dialects.rs` checks that nothing outside this part names one.)
// registry:start

pub mod postgres;
pub mod redshift;

/// A dialect's own settings, carried opaquely by [`WarehouseConfig`]: only the dialect reads
/// them.
#[derive(Debug, Clone)]
pub enum DialectOptions {
    Postgres(postgres::Options),
    Redshift(redshift::Options),
}

impl DialectOptions {
    /// The default settings of dialect `name`.
    pub fn default_for(name: DialectName) -> DialectOptions {
        match name {
            DialectName::Postgres => DialectOptions::Postgres(Default::default()),
            DialectName::Redshift => DialectOptions::Redshift(Default::default()),
        }
    }

    /// The dialect these settings are for.
    pub fn name(&self) -> DialectName {
        match self {
            DialectOptions::Postgres(_) => DialectName::Postgres,
            DialectOptions::Redshift(_) => DialectName::Redshift,
        }
    }
}

/// The warehouse for a configuration, speaking its dialect.
pub fn open(config: WarehouseConfig) -> Box<dyn Warehouse> {
    match config.options.clone() {
        DialectOptions::Postgres(o) => Box::new(postgres::Postgres::new(config, o)),
        DialectOptions::Redshift(o) => Box::new(redshift::Redshift::new(config, o)),
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

/// The dialect a URL scheme implies, if any.
pub fn dialect_of_scheme(scheme: &str) -> Option<DialectName> {
    match scheme {
        "postgres" | "postgresql" => Some(DialectName::Postgres),
        "redshift" => Some(DialectName::Redshift),
        _ => None,
    }
}

// registry:end

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
        /// The proof of the staged values, when the gate proved them.
        proof: Option<fingerprint::Proof>,
    },
    Refused(GateRefusal),
    /// The target already serves the run: another process swapped it in meanwhile.
    AlreadyServed,
}

/// The run a schema holds, from its run marker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunMarker {
    pub run_id: String,
    /// When the run was planned.
    pub planned_at: PlannedAt,
}

/// When a generation's run was planned, as its run marker records it (text, RFC 3339).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PlannedAt {
    /// The generation was prepared before run markers recorded it.
    #[default]
    Unrecorded,
    At(chrono::DateTime<chrono::Utc>),
    /// The marker holds text that is no RFC 3339 time: the generation cannot be ordered.
    Unreadable(String),
}

impl PlannedAt {
    /// What a marker's `planned_at` column holds (`None`: no such column, or NULL).
    pub fn from_column(text: Option<&str>) -> PlannedAt {
        match text {
            None => PlannedAt::Unrecorded,
            Some(text) => match crate::staging::rfc3339::parse(text) {
                Ok(t) => PlannedAt::At(t),
                Err(_) => PlannedAt::Unreadable(text.to_string()),
            },
        }
    }

    /// The time, when it was recorded and can be read.
    pub fn time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        match self {
            PlannedAt::At(t) => Some(*t),
            _ => None,
        }
    }

    /// The column text a marker holds for `t`: UTC with `Z`.
    pub fn column_text(t: &chrono::DateTime<chrono::Utc>) -> String {
        t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    }
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
    /// What the served generation keeps of the proof its swap made: per table, its proven and
    /// count-only columns (`None`: none kept, or nothing served).
    pub serving_proof: Option<BTreeMap<String, fingerprint::ProvenColumns>>,
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
    /// A dialect could not get what a session logs in with (e.g. temporary credentials from a
    /// cloud API); it retried what it could already, so a fresh session would not help.
    #[error(transparent)]
    Login(LoginError),
}

/// What a dialect could not log in with: its own error, classified by it.
pub struct LoginError(Box<dyn LoginFailure>);

/// An error a dialect's login may end in.
pub trait LoginFailure: std::error::Error + Classify + Send + Sync + 'static {}

impl<E: std::error::Error + Classify + Send + Sync + 'static> LoginFailure for E {}

impl LoginError {
    pub fn new(e: impl LoginFailure) -> LoginError {
        LoginError(Box::new(e))
    }
}

impl std::fmt::Display for LoginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Debug for LoginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for LoginError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
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
            WarehouseError::Login(e) => e.0.class(),
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
