//! PostgreSQL: the staging tables take PostgreSQL's own types, a segment is claimed with
//! `INSERT … ON CONFLICT DO NOTHING` on the ledger's primary key, and the parts are streamed from
//! the staging area through their decompressor into `COPY … FROM STDIN` ([`copy`]).

mod copy;
pub mod limits;

use async_trait::async_trait;
use std::collections::BTreeMap;
use std::time::Duration;

use super::ledger::{self, LEDGER_TABLE};
use super::sql::{self, qualified, quote_ident, Session};
use super::{load, Grantee, RunLoad, UploadOutcome, Warehouse, WarehouseConfig, WarehouseError};
use crate::schema::LogicalType;
use crate::staging::manifest;
use crate::staging::parts::reader::PartReader;
use crate::staging::plan::RunPlan;
use crate::staging::Staging;

pub struct Postgres {
    config: WarehouseConfig,
}

/// Settings only PostgreSQL reads: none yet (sessions log in with the URL's user and password).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {}

/// PostgreSQL's "try again" errors are the protocol's standard ones.
fn transient(err: &sqlx::Error) -> bool {
    sql::is_transient(err)
}

impl Postgres {
    pub fn new(config: WarehouseConfig, _options: Options) -> Self {
        Postgres { config }
    }

    fn claim_sql(&self, staging: &str, run_id: &str, segment: u32) -> String {
        format!(
            "INSERT INTO {} (segment, run_id, loaded_at, row_count, table_counts) VALUES ({segment}, {}, now(), -1, '') ON CONFLICT (segment) DO NOTHING",
            qualified(staging, LEDGER_TABLE),
            self.literal(run_id)
        )
    }

    /// One attempt of phase 3 for a segment.
    async fn load_once(
        &self,
        staging: &Staging,
        plan: &RunPlan,
        segment: u32,
    ) -> Result<UploadOutcome, WarehouseError> {
        let run_id = &plan.run_id;
        let staging_schema = self.config.staging();
        // The manifest comes from S3 while the session is set up, and the first part's GET
        // starts as soon as the manifest names it.
        let connected = async {
            let mut session = self.session().await?;
            let prepared = ledger::require_prepared(&mut session, &staging_schema, run_id).await;
            Ok::<_, WarehouseError>((session, prepared))
        };
        let with_reader = async {
            let manifest = manifest::read(staging, plan, segment).await?;
            let keys = manifest
                .iter()
                .flat_map(|m| m.tables.values())
                .flat_map(|t| t.files.iter().map(|f| f.key.clone()))
                .collect();
            Ok::<_, WarehouseError>((manifest, PartReader::new(staging.store.clone(), keys)))
        };
        let ((manifest, reader), (mut session, prepared)) =
            tokio::try_join!(with_reader, connected)?;
        let manifest = manifest.ok_or_else(|| WarehouseError::NotCommitted {
            run_id: run_id.clone(),
            segment,
        })?;
        prepared?;
        session.begin().await?;
        let claimed = session
            .execute(
                &self.claim_sql(&staging_schema, run_id, segment),
                "claiming the segment in the ledger",
            )
            .await?;
        if claimed == 0 {
            session.rollback().await;
            return Ok(UploadOutcome::AlreadyLoaded);
        }
        let result = async {
            let tables = plan.warehouse_tables();
            let mut loaded = BTreeMap::new();
            for (name, output) in &manifest.tables {
                if !output.files.is_empty() {
                    let table = load::table_of(&tables, plan, segment, name)?;
                    let started = std::time::Instant::now();
                    let parts = load::parts_of(segment, &output.files);
                    let target = copy::Target {
                        staging,
                        schema: &staging_schema,
                        table,
                        parts: &parts,
                        reader: &reader,
                        plan,
                    };
                    let copied = copy::copy_parts(&mut session, target).await?;
                    load::check_copied(plan, segment, name, output, copied)?;
                    tracing::info!(run_id, segment, table = %name, rows = copied, files = output.files.len(),
                        ms = started.elapsed().as_millis() as u64, "table loaded");
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
impl Warehouse for Postgres {
    fn config(&self) -> &WarehouseConfig {
        &self.config
    }

    async fn session(&self) -> Result<Session, WarehouseError> {
        Session::open(
            &self.config.url,
            &["SET application_name = 'dynamo-etl'".to_string()],
            transient,
        )
        .await
    }

    fn column_type(&self, t: LogicalType) -> String {
        match t {
            LogicalType::Bigint => "bigint".into(),
            LogicalType::Decimal { precision, scale } => format!("numeric({precision},{scale})"),
            LogicalType::NumericText | LogicalType::Text { .. } => "text".into(),
            LogicalType::Binary => "bytea".into(),
            LogicalType::Timestamp => "timestamptz".into(),
            LogicalType::Boolean => "boolean".into(),
            LogicalType::Json => "jsonb".into(),
        }
    }

    /// Every logical type is proven. Pages relied on (PostgreSQL 15 documentation):
    /// `md5(text)`, `md5(bytea)` and `convert_to(text, name)` → bytea
    /// (<https://www.postgresql.org/docs/15/functions-binarystring.html>,
    /// <https://www.postgresql.org/docs/15/functions-string.html>); `trim_scale(numeric)`, the
    /// value with trailing fraction zeros removed
    /// (<https://www.postgresql.org/docs/15/functions-math.html>), printed by numeric's output,
    /// which has no exponent (<https://www.postgresql.org/docs/15/datatype-numeric.html>);
    /// `extract(epoch FROM timestamptz)`, seconds since 1970-01-01 00:00:00 UTC as numeric with
    /// microseconds (<https://www.postgresql.org/docs/15/functions-datetime.html>); jsonb's
    /// text output, which keeps no whitespace, key order or duplicate keys of the input
    /// (<https://www.postgresql.org/docs/15/datatype-json.html>; phase 1 renders it the same
    /// way, checked against the server by `tests/it/fingerprints.rs`); `CASE`
    /// (<https://www.postgresql.org/docs/15/functions-conditional.html>).
    fn value_hash_sql(&self, t: LogicalType, column: &str) -> Option<String> {
        let rendering = match t {
            LogicalType::Bigint => format!("CAST({column} AS text)"),
            LogicalType::Decimal { .. } => format!("CAST(trim_scale({column}) AS text)"),
            LogicalType::NumericText | LogicalType::Text { .. } => {
                format!("convert_to({column}, 'UTF8')")
            }
            LogicalType::Timestamp => {
                format!("CAST(CAST(extract(epoch FROM {column}) * 1000000 AS bigint) AS text)")
            }
            LogicalType::Boolean => {
                format!("CASE {column} WHEN true THEN 'true' WHEN false THEN 'false' END")
            }
            LogicalType::Binary => column.to_string(),
            LogicalType::Json => format!("convert_to(CAST({column} AS text), 'UTF8')"),
        };
        Some(format!("left(md5({rendering}), 15)"))
    }

    /// A hex bit-string constant (`x…`, <https://www.postgresql.org/docs/15/sql-syntax-lexical.html>)
    /// cast to `bit(60)` and then to bigint
    /// (<https://www.postgresql.org/docs/15/functions-bitstring.html>); `sum(bigint)` is
    /// numeric, so exact (<https://www.postgresql.org/docs/15/functions-aggregate.html>).
    fn hash_number_sql(&self, hex: &str) -> String {
        format!("CAST(CAST('x' || {hex} AS bit(60)) AS bigint)")
    }

    fn text_hash_sql(&self, text: &str) -> String {
        format!("left(md5({text}), 15)")
    }

    /// The system column `xmin`, the inserting transaction of each row version
    /// (<https://www.postgresql.org/docs/15/ddl-system-columns.html>). A segment's load copies
    /// its rows and writes its ledger row in one transaction, without savepoints, so they share
    /// it; an UPDATE writes a new row version with the updater's; freezing keeps the original
    /// (<https://www.postgresql.org/docs/15/routine-vacuuming.html>, 25.1.5).
    fn row_writer_sql(&self) -> Option<&'static str> {
        Some("CAST(xmin AS text)")
    }

    /// Standard strings (`standard_conforming_strings` is on by default): quotes doubled.
    fn literal(&self, text: &str) -> String {
        sql::standard_literal(text)
    }

    fn now(&self) -> &'static str {
        "now()"
    }

    fn key_index(
        &self,
        table: &str,
        name: &str,
        columns: &[String],
        unique: bool,
    ) -> Option<String> {
        let columns: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
        Some(format!(
            "CREATE {}INDEX IF NOT EXISTS {} ON {table} ({})",
            if unique { "UNIQUE " } else { "" },
            quote_ident(name),
            columns.join(", ")
        ))
    }

    fn lock_timeout(&self, timeout: Duration) -> String {
        format!(
            "SET LOCAL lock_timeout = '{}ms'",
            timeout.as_millis().max(1)
        )
    }

    /// PostgreSQL has roles only; `group:` and `role:` grantees name roles too.
    fn grantee(&self, grantee: &Grantee) -> String {
        match grantee {
            Grantee::Name(n) | Grantee::Group(n) | Grantee::Role(n) => quote_ident(n),
        }
    }

    async fn load_segment_once(
        &self,
        staging: &Staging,
        plan: &RunPlan,
        segment: u32,
    ) -> Result<UploadOutcome, WarehouseError> {
        self.load_once(staging, plan, segment).await
    }

    /// One `COPY … FROM STDIN` for the table, fed every part of the batch in turn (each GET one
    /// part ahead of the COPY).
    async fn copy_batch(
        &self,
        session: &mut Session,
        staging: &Staging,
        plan: &RunPlan,
        batch: &super::TableBatch<'_>,
    ) -> Result<u64, WarehouseError> {
        let keys = batch.parts.iter().map(|p| p.file.key.clone()).collect();
        let reader = PartReader::new(staging.store.clone(), keys);
        let target = copy::Target {
            staging,
            schema: &self.config.staging(),
            table: &batch.table,
            parts: &batch.parts,
            reader: &reader,
            plan,
        };
        copy::copy_batch(session, target).await
    }

    /// PostgreSQL takes concurrent COPYs into one table well: `run` loads several segments at
    /// once, each in its own transaction.
    fn run_load(&self) -> RunLoad {
        RunLoad::PerSegment
    }
}
