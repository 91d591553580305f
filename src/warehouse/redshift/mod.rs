//! Amazon Redshift: Redshift's column types, literals that treat backslash as an escape, a
//! segment claimed under a table lock on the ledger (Redshift does not enforce primary keys),
//! each table's parts loaded by one `COPY … FROM 's3://…'` ([`copy`]) — the parts of one segment,
//! or of every segment in a load of many ([`Warehouse::load_segments`], which `run` uses) — and a
//! failed COPY explained from the load-error logs ([`load_errors`]).

pub mod copy;
pub mod credentials;
pub mod limits;
pub mod load_errors;

use async_trait::async_trait;
use futures::stream::{self, StreamExt, TryStreamExt};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::ledger::{self, LEDGER_TABLE};
use super::load::SegmentPart;
use super::sql::{self, qualified, quote_ident, Session};
use super::{
    load, Grantee, RunLoad, UploadOutcome, Warehouse, WarehouseConfig, WarehouseError, WarehouseUrl,
};
use crate::schema::{varchar_width, DataSchema, LogicalType};
use crate::staging::manifest;
use crate::staging::parts::codec::PartCompression;
use crate::staging::plan::RunPlan;
use crate::staging::Staging;

pub use limits::MAX_VARCHAR;

use credentials::IamCredentials;

/// Settings only Redshift reads.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The IAM role COPY assumes to read the parts (`default`: the cluster's default role).
    pub iam_role: Option<String>,
    /// The region of the staging bucket, when it differs from the cluster's.
    pub s3_region: Option<String>,
    /// WLM query group for this tool's sessions.
    pub query_group: Option<String>,
    /// How sessions log in.
    pub credentials: Credentials,
}

/// How a Redshift session logs in.
#[derive(Debug, Clone, Default)]
pub enum Credentials {
    /// With the user and password of the URL.
    #[default]
    Url,
    /// With temporary credentials from IAM, shared by every session of the process and
    /// replaced shortly before they expire.
    Iam(Arc<IamCredentials>),
}

pub struct Redshift {
    config: WarehouseConfig,
    options: Options,
}

/// A Redshift string literal: quotes doubled, and backslashes doubled because Redshift literals
/// treat backslash as an escape character.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// Part objects checked (HEAD) at once before a COPY reads them.
const HEADS_IN_FLIGHT: usize = 16;

/// Redshift's "try again" errors: the protocol's standard ones, plus those it reports under the
/// catch-all SQLSTATE XX000, known by their words.
fn transient(err: &sqlx::Error) -> bool {
    sql::is_transient(err) || sql::server_error(err).is_some_and(retriable_report)
}

/// Whether Redshift's report of a failed statement is a fault of the moment, worth the whole
/// transaction again on a fresh session:
///
/// - a serializable isolation violation: `ERROR: 1023` with the words in DETAIL
///   (<https://docs.aws.amazon.com/redshift/latest/dg/c_serial_isolation-serializable-isolation-troubleshooting.html>,
///   which says to retry the canceled transaction);
/// - under snapshot isolation, the default for new clusters and workgroups, a conflict that
///   reads "could not complete because of conflict with concurrent transaction"
///   (<https://docs.aws.amazon.com/redshift/latest/dg/c_serial_isolation.html>);
/// - running out of memory, or a lock wait cut short.
///
/// A COPY's own failure ("Load into table … failed") is never one of them, whatever its detail
/// quotes from the data.
pub fn retriable_report(e: sql::ServerError<'_>) -> bool {
    let message = e.message.to_ascii_lowercase();
    if message.starts_with("load into table") {
        return false;
    }
    let detail = e.detail.unwrap_or_default().to_ascii_lowercase();
    let said = |words: &str| message.contains(words) || detail.contains(words);
    said("serializable isolation violation")
        || said("conflict with concurrent transaction")
        || message.contains("out of memory")
        || message.contains("lock timeout")
}

impl Redshift {
    pub fn new(config: WarehouseConfig, options: Options) -> Self {
        Redshift { config, options }
    }

    /// The URL a new session connects with: the configured one, or the same with temporary
    /// credentials (cached ones while they are good for a while yet, else new ones).
    pub async fn login_url(&self) -> Result<WarehouseUrl, WarehouseError> {
        match &self.options.credentials {
            Credentials::Url => Ok(self.config.url.clone()),
            Credentials::Iam(iam) => Ok(iam.login(&self.config.url).await?),
        }
    }

    /// Statements run once per session.
    pub fn session_setup(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(group) = &self.options.query_group {
            out.push(format!("SET query_group TO {}", literal(group)));
        }
        out
    }

    /// Claims `segment` in the ledger; the insert affects one row when the segment was free.
    pub fn claim_sql(&self, staging: &str, run_id: &str, segment: u32) -> Vec<String> {
        let ledger = qualified(staging, LEDGER_TABLE);
        vec![
            format!("LOCK {ledger}"),
            format!(
                "INSERT INTO {ledger} (segment, run_id, loaded_at, row_count, table_counts) SELECT {segment}, {}, GETDATE(), -1, '' WHERE NOT EXISTS (SELECT 1 FROM {ledger} WHERE segment = {segment})",
                literal(run_id)
            ),
        ]
    }

    /// Loads `parts` (one table's, of one segment or of many) with one COPY per codec among them
    /// — one, unless segments were written with different codecs — each from a COPY manifest
    /// written under `scratch`, and returns the rows Redshift reports. Every part object is
    /// checked first: its size and entity tag must be the manifest's.
    async fn copy_table(
        &self,
        session: &mut Session,
        staging: &Staging,
        plan: &RunPlan,
        scratch: &str,
        table: &DataSchema,
        parts: &[SegmentPart<'_>],
    ) -> Result<u64, WarehouseError> {
        let mut by_codec: BTreeMap<&'static str, (PartCompression, Vec<SegmentPart<'_>>)> =
            BTreeMap::new();
        for part in parts {
            let codec = PartCompression::of_part(&part.file.key).map_err(|problem| {
                WarehouseError::BadSegment {
                    run_id: plan.run_id.clone(),
                    segment: part.segment,
                    problem,
                }
            })?;
            by_codec
                .entry(codec.name())
                .or_insert_with(|| (codec, Vec::new()))
                .1
                .push(*part);
        }
        stream::iter(parts)
            .map(|p| load::check_object(staging, plan, p.segment, p.file))
            .buffer_unordered(HEADS_IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?;
        let single = by_codec.len() == 1;
        let mut rows = 0;
        for (name, (compression, group)) in by_codec {
            let manifest_key = match single {
                true => format!("{scratch}{}.manifest", table.table),
                false => format!("{scratch}{}.{name}.manifest", table.table),
            };
            let files = group.iter().map(|p| p.file);
            staging
                .store
                .put(
                    &manifest_key,
                    copy::copy_manifest(staging.store.bucket(), files).into(),
                    "application/json",
                )
                .await?;
            let manifest_url = staging.url(&manifest_key);
            let statement = copy::copy_statement(
                &self.config.staging(),
                table,
                &manifest_url,
                compression,
                &self.options,
            );
            let mark = load_errors::mark(session).await?;
            if let Err(e) = session.execute(&statement, "COPY").await {
                return Err(self
                    .copy_failed(e, staging, plan, table, &group, &manifest_url, &mark)
                    .await);
            }
            rows += session
                .query_one("SELECT pg_last_copy_count()", "reading the COPY count")
                .await?
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| WarehouseError::Load {
                    table: table.table.clone(),
                    part: manifest_url.clone(),
                    detail: "pg_last_copy_count() returned no number".into(),
                    retriable: false,
                })?;
        }
        Ok(rows)
    }

    /// A failed COPY, explained from the load-error logs when it is not a fault of the moment:
    /// they are read on a second session, since the COPY's own accepts nothing but ROLLBACK now.
    /// When the first logged row names one of the parts, the error is that part's segment's.
    #[allow(clippy::too_many_arguments)]
    async fn copy_failed(
        &self,
        err: WarehouseError,
        staging: &Staging,
        plan: &RunPlan,
        table: &DataSchema,
        parts: &[SegmentPart<'_>],
        manifest_url: &str,
        mark: &load_errors::CopyMark,
    ) -> WarehouseError {
        let (detail, retriable) = match err {
            WarehouseError::Sql {
                detail, retriable, ..
            } => (detail, retriable),
            other => return other,
        };
        let failed = |detail: String| WarehouseError::Load {
            table: table.table.clone(),
            part: manifest_url.to_string(),
            detail,
            retriable,
        };
        if retriable {
            return failed(detail);
        }
        let files = format!(
            "{}segments/",
            staging.url(&staging.layout.run(&plan.run_id))
        );
        let errors = match self.session().await {
            Ok(mut second) => load_errors::read(&mut second, mark, &files).await,
            Err(e) => {
                let why = format!("{detail}\n(the load errors could not be read: {e})");
                return failed(why);
            }
        };
        let detail = format!("{detail}\n{}", load_errors::explain(&errors, mark, &files));
        let at_fault = errors
            .first()
            .and_then(|e| parts.iter().find(|p| staging.url(&p.file.key) == e.file));
        match at_fault {
            Some(part) => WarehouseError::BadSegment {
                run_id: plan.run_id.clone(),
                segment: part.segment,
                problem: format!(
                    "loading {manifest_url} into {} failed: {detail}",
                    table.table
                ),
            },
            None => failed(detail),
        }
    }
}

impl Redshift {
    /// One attempt of phase 3 for a segment.
    async fn load_once(
        &self,
        staging: &Staging,
        plan: &RunPlan,
        segment: u32,
    ) -> Result<UploadOutcome, WarehouseError> {
        let run_id = &plan.run_id;
        let staging_schema = self.config.staging();
        let (manifest, mut session) = tokio::try_join!(
            async { Ok::<_, WarehouseError>(manifest::read(staging, plan, segment).await?) },
            self.session()
        )?;
        let manifest = manifest.ok_or_else(|| WarehouseError::NotCommitted {
            run_id: run_id.clone(),
            segment,
        })?;
        ledger::require_prepared(&mut session, &staging_schema, run_id).await?;
        session.begin().await?;
        let mut claimed = 0;
        for statement in self.claim_sql(&staging_schema, run_id, segment) {
            claimed = session
                .execute(&statement, "claiming the segment in the ledger")
                .await?;
        }
        if claimed == 0 {
            session.rollback().await;
            return Ok(UploadOutcome::AlreadyLoaded);
        }
        let scratch = staging.layout.load_scratch(run_id, segment);
        let result = async {
            let tables = plan.warehouse_tables();
            let mut loaded = BTreeMap::new();
            for (name, output) in &manifest.tables {
                if !output.files.is_empty() {
                    let table = load::table_of(&tables, plan, segment, name)?;
                    let parts = load::parts_of(segment, &output.files);
                    let copied = self
                        .copy_table(&mut session, staging, plan, &scratch, table, &parts)
                        .await?;
                    load::check_copied(plan, segment, name, output, copied)?;
                }
                loaded.insert(name.clone(), output.rows);
            }
            session
                .execute(
                    &ledger::record_segment_sql(self, &staging_schema, segment, &loaded),
                    "recording the segment in the ledger",
                )
                .await?;
            session.commit("committing the segment").await?;
            Ok(loaded)
        }
        .await;
        match result {
            Ok(tables) => Ok(UploadOutcome::Loaded {
                rows: tables.values().sum(),
                tables,
            }),
            Err(e) => {
                session.rollback().await;
                Err(e)
            }
        }
    }
}

#[async_trait(?Send)]
impl Warehouse for Redshift {
    fn config(&self) -> &WarehouseConfig {
        &self.config
    }

    async fn session(&self) -> Result<Session, WarehouseError> {
        let url = self.login_url().await?;
        Session::open(&url, &self.session_setup(), transient).await
    }

    fn column_type(&self, t: LogicalType) -> String {
        match t {
            LogicalType::Bigint => "BIGINT".into(),
            LogicalType::Decimal { precision, scale } => format!("DECIMAL({precision},{scale})"),
            LogicalType::NumericText => format!("VARCHAR({MAX_VARCHAR})"),
            LogicalType::Binary => format!("VARBYTE({})", limits::VARBYTE_BYTES),
            LogicalType::Text { max_bytes } => format!("VARCHAR({})", varchar_width(max_bytes)),
            LogicalType::Timestamp => "TIMESTAMPTZ".into(),
            LogicalType::Boolean => "BOOLEAN".into(),
            LogicalType::Json => "SUPER".into(),
        }
    }

    fn literal(&self, text: &str) -> String {
        literal(text)
    }

    /// Proven: `boolean`, rendered by `CASE` as ASCII `true`/`false` and hashed with `MD5`, whose
    /// page pins the 32 hex digits of an ASCII string's checksum
    /// (<https://docs.aws.amazon.com/redshift/latest/dg/r_MD5.html>). Count-only: every other
    /// type, as no page pins the bytes `MD5` hashes for a non-ASCII VARCHAR, how a BIGINT,
    /// DECIMAL or TIMESTAMPTZ is cast to VARCHAR, how VARBYTE is hashed, or SUPER's
    /// serialisation.
    fn value_hash_sql(&self, t: LogicalType, column: &str) -> Option<String> {
        match t {
            LogicalType::Boolean => Some(format!(
                "LEFT(MD5(CASE {column} WHEN TRUE THEN 'true' WHEN FALSE THEN 'false' END), 15)"
            )),
            _ => None,
        }
    }

    /// `STRTOL(hex, 16)` is a BIGINT (<https://docs.aws.amazon.com/redshift/latest/dg/r_STRTOL.html>);
    /// cast to DECIMAL(38,0) so that the SUM of many cannot overflow a BIGINT
    /// (<https://docs.aws.amazon.com/redshift/latest/dg/r_SUM.html>).
    fn hash_number_sql(&self, hex: &str) -> String {
        format!("CAST(STRTOL({hex}, 16) AS DECIMAL(38,0))")
    }

    fn text_hash_sql(&self, text: &str) -> String {
        format!("LEFT(MD5({text}), 15)")
    }

    fn now(&self) -> &'static str {
        "GETDATE()"
    }

    /// Redshift has no lock_timeout: `statement_timeout` is the only bound on a wait, and it
    /// cancels any statement over the limit, counting planning, WLM queueing and execution
    /// (<https://docs.aws.amazon.com/redshift/latest/dg/r_statement_timeout.html>). So it is
    /// set only around the statements that take locks, and lifted after them.
    fn lock_timeout(&self, timeout: Duration) -> String {
        format!("SET statement_timeout TO {}", timeout.as_millis().max(1))
    }

    /// 0 turns the limit off (r_statement_timeout).
    fn lock_timeout_lifted(&self) -> Option<String> {
        Some("SET statement_timeout TO 0".into())
    }

    fn grantee(&self, grantee: &Grantee) -> String {
        match grantee {
            Grantee::Name(n) => quote_ident(n),
            Grantee::Group(n) => format!("GROUP {}", quote_ident(n)),
            Grantee::Role(n) => format!("ROLE {}", quote_ident(n)),
        }
    }

    /// ANALYZE of each table, after lowering the session's analyze threshold to 0: Redshift
    /// skips a table whose rows changed by less than the threshold (10 % by default) since its
    /// last analysis, and an automatic analysis in the background may have seen a table half
    /// loaded (<https://docs.aws.amazon.com/redshift/latest/dg/r_analyze_threshold_percent.html>,
    /// <https://docs.aws.amazon.com/redshift/latest/dg/t_Analyzing_tables.html>). One ANALYZE per
    /// table, as the command takes one table name
    /// (<https://docs.aws.amazon.com/redshift/latest/dg/r_ANALYZE.html>).
    /// SUPER values (the JSON key columns of `_unclassified`) are compared by their JSON text
    /// (JSON_SERIALIZE, <https://docs.aws.amazon.com/redshift/latest/dg/JSON_SERIALIZE.html>).
    fn key_equals(&self, a: &str, b: &str, t: LogicalType) -> String {
        match t {
            LogicalType::Json => format!("JSON_SERIALIZE({a}) = JSON_SERIALIZE({b})"),
            _ => format!("{a} = {b}"),
        }
    }

    /// (A plain SORTKEY is a compound one.) The partition key distributes the rows (a key's rows, and the delete-join of an
    /// increment's keys on it, stay on one slice) and the key columns sort them, so the
    /// delete-join of an apply reads only the blocks whose zone maps can hold its keys
    /// (<https://docs.aws.amazon.com/redshift/latest/dg/c_best-practices-best-dist-key.html>,
    /// <https://docs.aws.amazon.com/redshift/latest/dg/c_best-practices-sort-key.html>).
    fn key_layout(&self, key_columns: &[String]) -> String {
        let Some(partition) = key_columns.first() else {
            return String::new();
        };
        let sort: Vec<String> = key_columns.iter().map(|c| quote_ident(c)).collect();
        format!(
            " DISTKEY({}) SORTKEY({})",
            quote_ident(partition),
            sort.join(", ")
        )
    }

    fn analyze_tables(&self, tables: &[String]) -> Vec<String> {
        std::iter::once("SET analyze_threshold_percent TO 0".to_string())
            .chain(tables.iter().map(|t| format!("ANALYZE {t}")))
            .collect()
    }

    async fn load_segment_once(
        &self,
        staging: &Staging,
        plan: &RunPlan,
        segment: u32,
    ) -> Result<UploadOutcome, WarehouseError> {
        self.load_once(staging, plan, segment).await
    }

    /// One COPY for the table over a COPY manifest naming every part of the batch (mandatory
    /// entries), written under the run's `load/all/`.
    async fn copy_batch(
        &self,
        session: &mut Session,
        staging: &Staging,
        plan: &RunPlan,
        batch: &super::TableBatch<'_>,
    ) -> Result<u64, WarehouseError> {
        let scratch = staging.layout.load_scratch_all(&plan.run_id);
        self.copy_table(session, staging, plan, &scratch, &batch.table, &batch.parts)
            .await
    }

    /// One transaction and one COPY per table: per-segment loads would each hold the ledger's
    /// lock through their COPYs and run one after another anyway, and Redshift serialises
    /// concurrent COPYs into one table
    /// (<https://docs.aws.amazon.com/redshift/latest/dg/c_best-practices-single-copy-command.html>).
    fn run_load(&self) -> RunLoad {
        RunLoad::OneTransaction
    }
}

#[cfg(test)]
mod tests {
    use super::super::sql::wire_double::error_of;
    use super::*;

    /// Redshift's reports as they come over the wire: SQLSTATE, message, detail.
    #[tokio::test]
    async fn conflicts_are_retried_and_other_internal_errors_are_not() {
        let retried = [
            // Serializable isolation: the message is the error number, the words are in DETAIL.
            (
                "XX000",
                "1023",
                Some("Serializable isolation violation on table - 156487, transactions forming the cycle are: 1051, 1050 (pid:19524)"),
            ),
            // Snapshot isolation (the default for new clusters and workgroups).
            (
                "XX000",
                "could not complete because of conflict with concurrent transaction",
                None,
            ),
            (
                "XX000",
                "1023",
                Some("could not complete because of conflict with concurrent transaction"),
            ),
            // The protocol's own codes still count.
            ("40001", "could not serialize access due to concurrent update", None),
        ];
        for (code, message, detail) in retried {
            let err = error_of(code, message, detail).await;
            assert!(
                transient(&err),
                "{code} {message} {detail:?} must be retried"
            );
        }
        let not_retried = [
            // A COPY that met rows it cannot load: the detail quotes the data, whatever it holds.
            (
                "XX000",
                "Load into table 'org' failed.  Check 'sys_load_error_detail' system table for details.",
                Some("\n  -----------------------------------------------\n  error:  Invalid digit, Value 'c', Pos 0, Type: Long \n  code:      1207\n  context:   conflict with concurrent transaction\n  query:     4242\n  -----------------------------------------------"),
            ),
            // An ordinary internal error.
            ("XX000", "could not open relation with OID 156487", None),
            ("XX000", "Invalid operation: Value too long for character type", Some("1023")),
        ];
        for (code, message, detail) in not_retried {
            let err = error_of(code, message, detail).await;
            assert!(
                !transient(&err),
                "{code} {message} {detail:?} must not be retried"
            );
        }
    }

    #[test]
    fn statistics_are_refreshed_whatever_the_threshold() {
        let redshift = Redshift::new(
            WarehouseConfig {
                url: WarehouseUrl::parse("redshift://cluster:5439/dev").unwrap(),
                target: "t".into(),
                grantees: vec![],
                lock_timeout: Duration::from_secs(1),
                post_swap_sql: None,
                analyze: true,
                verify: true,
                options: super::super::DialectOptions::Redshift(Options::default()),
            },
            Options::default(),
        );
        assert_eq!(
            redshift.analyze_tables(&["\"s\".\"t\"".into()]),
            ["SET analyze_threshold_percent TO 0", "ANALYZE \"s\".\"t\""]
        );
        assert_eq!(redshift.run_load(), RunLoad::OneTransaction);
    }
}
