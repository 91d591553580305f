//! Amazon Redshift: Redshift's column types, literals that treat backslash as an escape, a
//! segment claimed under a table lock on the ledger (Redshift does not enforce primary keys),
//! each table's parts of a segment loaded by one `COPY … FROM 's3://…'` ([`copy`]), and a failed
//! COPY explained from the load-error tables ([`load_errors`]).

pub mod copy;
pub mod credentials;
mod load_errors;

use async_trait::async_trait;
use std::collections::BTreeMap;
use std::time::Duration;

use super::ledger::{self, LEDGER_TABLE};
use super::sql::{self, qualified, quote_ident, Session};
use super::swap::{self, Swap, SwapKind};
use super::{
    load, Dialect, Grantee, SwapOutcome, UploadOutcome, Warehouse, WarehouseConfig, WarehouseError,
    WarehouseState,
};
use crate::retry::RetryPolicy;
use crate::schema::{varchar_width, DataSchema, LogicalType};
use crate::staging::manifest::{self, Committed, PartFile};
use crate::staging::parts::codec::PartCompression;
use crate::staging::plan::RunPlan;
use crate::staging::Staging;

/// Widest VARCHAR Redshift allows, in bytes.
pub const MAX_VARCHAR: u32 = 65535;

/// Settings only Redshift reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// The IAM role COPY assumes to read the parts (`default`: the cluster's default role).
    pub iam_role: Option<String>,
    /// The region of the staging bucket, when it differs from the cluster's.
    pub s3_region: Option<String>,
    /// WLM query group for this tool's sessions.
    pub query_group: Option<String>,
}

pub struct Redshift {
    config: WarehouseConfig,
}

/// A Redshift string literal: quotes doubled, and backslashes doubled because Redshift literals
/// treat backslash as an escape character.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// Redshift's "try again" errors: the protocol's standard ones, plus those it reports by text.
fn transient(err: &sqlx::Error) -> bool {
    sql::is_transient(err)
        || sql::message_of(err).is_some_and(|m| {
            m.contains("serializable isolation violation")
                || m.contains("out of memory")
                || m.contains("lock timeout")
        })
}

impl Redshift {
    pub fn new(config: WarehouseConfig) -> Self {
        Redshift { config }
    }

    /// Statements run once per session.
    pub fn session_setup(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(group) = &self.config.redshift.query_group {
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

    /// Loads one table's parts with one COPY and returns the rows Redshift reports.
    async fn copy_table(
        &self,
        session: &mut Session,
        staging: &Staging,
        scratch: &str,
        table: &DataSchema,
        files: &[PartFile],
        (plan, segment): (&RunPlan, u32),
    ) -> Result<u64, WarehouseError> {
        let compression =
            PartCompression::of_parts(files.iter().map(|f| f.key.as_str())).map_err(|problem| {
                WarehouseError::BadSegment {
                    run_id: plan.run_id.clone(),
                    segment,
                    problem,
                }
            })?;
        for file in files {
            load::check_object(staging, plan, segment, file).await?;
        }
        let manifest_key = format!("{scratch}{}.manifest", table.table);
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
            &self.config.redshift,
        );
        let load_error = |detail: String, retriable: bool| WarehouseError::Load {
            table: table.table.clone(),
            part: manifest_url.clone(),
            detail,
            retriable,
        };
        if let Err(e) = session.execute(&statement, "COPY").await {
            return Err(match e {
                WarehouseError::Sql {
                    detail, retriable, ..
                } => load_error(detail, retriable),
                other => other,
            });
        }
        session
            .query_one("SELECT pg_last_copy_count()", "reading the COPY count")
            .await?
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| load_error("pg_last_copy_count() returned no number".into(), false))
    }
}

/// Adds Redshift's own account of a failed COPY, read after its transaction was rolled back.
async fn explain(session: &mut Session, err: WarehouseError) -> WarehouseError {
    match err {
        WarehouseError::Load {
            table,
            part,
            detail,
            retriable,
        } => {
            let detail = match load_errors::report(session).await {
                Some(report) => format!("{detail}\nRedshift load errors:\n{report}"),
                None => detail,
            };
            WarehouseError::Load {
                table,
                part,
                detail,
                retriable,
            }
        }
        other => other,
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
                    let copied = self
                        .copy_table(
                            &mut session,
                            staging,
                            &scratch,
                            table,
                            &output.files,
                            (plan, segment),
                        )
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
                Err(explain(&mut session, e).await)
            }
        }
    }
}

#[async_trait(?Send)]
impl Dialect for Redshift {
    fn config(&self) -> &WarehouseConfig {
        &self.config
    }

    async fn session(&self) -> Result<Session, WarehouseError> {
        let url = self.config.login_url().await?;
        Session::open(&url, &self.session_setup(), transient).await
    }

    fn column_type(&self, t: LogicalType) -> String {
        match t {
            LogicalType::Bigint => "BIGINT".into(),
            LogicalType::Decimal { precision, scale } => format!("DECIMAL({precision},{scale})"),
            LogicalType::NumericText | LogicalType::Binary => format!("VARCHAR({MAX_VARCHAR})"),
            LogicalType::Text { max_bytes } => format!("VARCHAR({})", varchar_width(max_bytes)),
            LogicalType::Timestamp => "TIMESTAMPTZ".into(),
            LogicalType::Boolean => "BOOLEAN".into(),
            LogicalType::Json => "SUPER".into(),
        }
    }

    fn literal(&self, text: &str) -> String {
        literal(text)
    }

    fn now(&self) -> &'static str {
        "GETDATE()"
    }

    fn lock_timeout(&self, timeout: Duration) -> String {
        // Redshift has no lock_timeout; a statement timeout bounds the wait (and the swap is only
        // metadata changes, so it never needs long).
        format!("SET statement_timeout TO {}", timeout.as_millis().max(1))
    }

    fn grantee(&self, grantee: &Grantee) -> String {
        match grantee {
            Grantee::Name(n) => quote_ident(n),
            Grantee::Group(n) => format!("GROUP {}", quote_ident(n)),
            Grantee::Role(n) => format!("ROLE {}", quote_ident(n)),
        }
    }
}

#[async_trait(?Send)]
impl Warehouse for Redshift {
    fn config(&self) -> &WarehouseConfig {
        &self.config
    }

    fn prepare_sql(&self, plan: &RunPlan) -> Vec<String> {
        ledger::prepare_sql(self, plan)
    }

    async fn prepare(&self, plan: &RunPlan) -> Result<(), WarehouseError> {
        let mut session = self.session().await?;
        session
            .in_transaction(&self.prepare_sql(plan), "preparing the staging schema")
            .await
    }

    async fn load_segment(
        &self,
        staging: &Staging,
        plan: &RunPlan,
        segment: u32,
        retry: &RetryPolicy,
    ) -> Result<UploadOutcome, WarehouseError> {
        load::with_retries(retry, plan, segment, || {
            self.load_once(staging, plan, segment)
        })
        .await
    }

    async fn state(&self) -> Result<WarehouseState, WarehouseError> {
        let mut session = self.session().await?;
        ledger::state(self, &mut session).await
    }

    fn swap_sql(&self, kind: SwapKind) -> Vec<String> {
        swap::statements(self, kind, true)
    }
    async fn replace(
        &self,
        plan: &RunPlan,
        manifests: &[Committed],
        allow_older: bool,
        retry: &RetryPolicy,
    ) -> Result<SwapOutcome, WarehouseError> {
        let swap = Swap::Replace {
            plan,
            manifests,
            allow_older,
        };
        swap::run(self, swap, retry).await
    }

    async fn rollback(&self, retry: &RetryPolicy) -> Result<SwapOutcome, WarehouseError> {
        swap::run(self, Swap::Rollback, retry).await
    }
}
