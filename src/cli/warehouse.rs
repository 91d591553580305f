//! `prepare`, `upload`, `replace`, `rollback` and `retry phase-3`: the warehouse phases.

use anyhow::anyhow;
use std::path::PathBuf;
use std::time::Duration;

use super::{Cli, CommandResult, Failure, SegmentChoice, Services};
use crate::phases::load::{self, SwapOutcome, UploadOutcome};
use crate::schema::naming;
use crate::stage::check_run_id;
use crate::stage::plan::RunPlan;
use crate::warehouse::{
    dialect_for, DialectName, Grantee, WarehouseConfig, WarehouseError, WarehouseUrl,
};

/// How to reach the warehouse and what to call things there.
#[derive(Debug, Clone, clap::Args)]
pub struct WarehouseArgs {
    /// Connection URL: postgres://user:password@host:port/db, or redshift://… for Redshift.
    /// Never logged with its password.
    #[arg(long, env = "ETL_WAREHOUSE_URL", hide_env_values = true)]
    pub warehouse_url: Option<String>,
    /// SQL dialect; by default taken from the URL's scheme.
    #[arg(long, env = "ETL_DIALECT", value_enum)]
    pub dialect: Option<DialectName>,
    /// Warehouse schema consumers read (default: the source table's name as an identifier).
    /// Staging is `<target>_staging`, the kept generation `<target>_previous`.
    #[arg(long, env = "ETL_TARGET")]
    pub target: Option<String>,
    /// Who gets USAGE and SELECT on the target after each swap, comma-separated:
    /// `name`, `group:name` or `role:name`.
    #[arg(long, env = "ETL_GRANT_SELECT_TO", value_delimiter = ',')]
    pub grant_select_to: Vec<Grantee>,
    /// Longest wait for locks during the swap, in seconds; then it gives up, target untouched.
    #[arg(long, env = "ETL_LOCK_TIMEOUT_SECONDS", default_value_t = 60)]
    pub lock_timeout_seconds: u64,
    /// SQL file run inside the swap transaction after the renames (e.g. re-create views).
    #[arg(long, env = "ETL_POST_SWAP_SQL")]
    pub post_swap_sql: Option<PathBuf>,
    /// Redshift: IAM role ARN that COPY assumes to read the staging bucket (`default` for the
    /// cluster's default role).
    #[arg(long, env = "ETL_REDSHIFT_IAM_ROLE")]
    pub redshift_iam_role: Option<String>,
    /// Redshift: region of the staging bucket when it differs from the cluster's.
    #[arg(long, env = "ETL_REDSHIFT_S3_REGION")]
    pub redshift_s3_region: Option<String>,
    /// Redshift: WLM query group for this tool's sessions.
    #[arg(long, env = "ETL_REDSHIFT_QUERY_GROUP")]
    pub redshift_query_group: Option<String>,
}

impl WarehouseArgs {
    /// Checks the arguments into a ready configuration; `source_table` names the default target.
    pub fn config(&self, source_table: Option<&str>) -> Result<WarehouseConfig, Failure> {
        let fatal = |m: String| Failure::Fatal(anyhow!(m));
        let raw = self.warehouse_url.as_deref().ok_or_else(|| {
            fatal("no warehouse: pass --warehouse-url or set ETL_WAREHOUSE_URL (postgres://… or redshift://…)".into())
        })?;
        let url = WarehouseUrl::new(raw);
        let dialect = match (self.dialect, url.implied_dialect()) {
            (Some(d), _) | (None, Some(d)) => d,
            (None, None) => {
                return Err(fatal(format!(
                    "cannot tell the dialect of {url}; pass --dialect postgres|redshift"
                )))
            }
        };
        let target = match (&self.target, source_table) {
            (Some(t), _) => t.clone(),
            (None, Some(table)) => naming::base_identifier(table),
            (None, None) => {
                return Err(fatal(
                    "pass --target (the warehouse schema), or --run-id so it can be derived".into(),
                ))
            }
        };
        let longest_suffix = crate::warehouse::PREVIOUS_SUFFIX
            .len()
            .max("_rollback".len());
        if !naming::is_safe_identifier(&target)
            || target.len() + longest_suffix > naming::MAX_IDENTIFIER_BYTES
        {
            return Err(fatal(format!(
                "target {target:?} must be lowercase letters, digits and _, at most {} bytes (so {target}_previous fits)",
                naming::MAX_IDENTIFIER_BYTES - longest_suffix
            )));
        }
        let post_swap_sql = match &self.post_swap_sql {
            None => None,
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                fatal(format!(
                    "cannot read --post-swap-sql {}: {e}",
                    path.display()
                ))
            })?),
        };
        if dialect == DialectName::Redshift && self.redshift_iam_role.is_none() {
            return Err(fatal("Redshift COPY needs an IAM role to read the staging bucket: pass --redshift-iam-role ARN (or `default`)".into()));
        }
        Ok(WarehouseConfig {
            url,
            dialect,
            target,
            grantees: self.grant_select_to.clone(),
            lock_timeout: Duration::from_secs(self.lock_timeout_seconds.max(1)),
            iam_role: self.redshift_iam_role.clone(),
            s3_region: self.redshift_s3_region.clone(),
            query_group: self.redshift_query_group.clone(),
            post_swap_sql,
        })
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct PrepareArgs {
    #[arg(long, env = "ETL_RUN_ID")]
    pub run_id: String,
    #[command(flatten)]
    pub warehouse: WarehouseArgs,
    /// Print the SQL instead of running it.
    #[arg(long, env = "ETL_DRY_RUN")]
    pub dry_run: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct UploadArgs {
    #[arg(long, env = "ETL_RUN_ID")]
    pub run_id: String,
    /// Segment to load, from 0, or `auto` for AWS_BATCH_JOB_ARRAY_INDEX.
    #[arg(long, env = "ETL_SEGMENT")]
    pub segment: SegmentChoice,
    #[command(flatten)]
    pub warehouse: WarehouseArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RetryPhase3Args {
    /// The segment to load again.
    pub segment: u32,
    #[arg(long, env = "ETL_RUN_ID")]
    pub run_id: String,
    #[command(flatten)]
    pub warehouse: WarehouseArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ReplaceArgs {
    #[arg(long, env = "ETL_RUN_ID")]
    pub run_id: String,
    #[command(flatten)]
    pub warehouse: WarehouseArgs,
    /// Print the swap SQL instead of running it (the gate is not checked).
    #[arg(long, env = "ETL_DRY_RUN")]
    pub dry_run: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RollbackArgs {
    /// The run whose target to roll back (only used to derive --target).
    #[arg(long, env = "ETL_RUN_ID")]
    pub run_id: Option<String>,
    #[command(flatten)]
    pub warehouse: WarehouseArgs,
    /// Print the SQL instead of running it.
    #[arg(long, env = "ETL_DRY_RUN")]
    pub dry_run: bool,
}

/// Refusals already say what to run; other errors get `context` (what did not happen and how to
/// retry). Refusals and transient errors exit 1, the rest 2.
fn failure(e: WarehouseError, context: String) -> Failure {
    if let WarehouseError::Refused(message) = e {
        return Failure::Retry(anyhow!(message));
    }
    let retriable = e.is_retriable();
    let err = anyhow::Error::new(e).context(context);
    if retriable {
        Failure::Retry(err)
    } else {
        Failure::Fatal(err)
    }
}

async fn plan_of(cli: &Cli, run_id: &str) -> Result<(Services, RunPlan), Failure> {
    check_run_id(run_id).map_err(|e| Failure::Fatal(anyhow!(e)))?;
    let services = Services::connect(cli).await?;
    let plan = RunPlan::require(&services.store, &services.layout, run_id)
        .await
        .map_err(|e| match e {
            crate::stage::plan::PlanError::Store(s) if s.is_retriable() => Failure::Retry(s.into()),
            other => Failure::Fatal(other.into()),
        })?;
    Ok((services, plan))
}

pub async fn prepare(cli: &Cli, args: &PrepareArgs) -> CommandResult {
    let (_services, plan) = plan_of(cli, &args.run_id).await?;
    let config = args.warehouse.config(Some(&plan.source_table))?;
    let dialect = dialect_for(config.dialect);
    if args.dry_run {
        for s in load::prepare_statements(dialect.as_ref(), &config, &plan) {
            println!("{s};");
        }
        return Ok(());
    }
    load::prepare(dialect.as_ref(), &config, &plan)
        .await
        .map_err(|e| failure(e, format!("prepare for run {} did not complete; run it again: dynamo-etl prepare --run-id {}", plan.run_id, plan.run_id)))?;
    println!(
        "prepared {} for run {}: {} tables, ledger empty",
        config.staging(),
        plan.run_id,
        load::run_tables(&plan).len()
    );
    Ok(())
}

pub async fn upload(cli: &Cli, args: &UploadArgs) -> CommandResult {
    let segment = args.segment.resolve()?;
    phase3(cli, &args.run_id, segment, &args.warehouse).await
}

pub async fn retry(cli: &Cli, args: &RetryPhase3Args) -> CommandResult {
    phase3(cli, &args.run_id, args.segment, &args.warehouse).await
}

async fn phase3(cli: &Cli, run_id: &str, segment: u32, warehouse: &WarehouseArgs) -> CommandResult {
    let (services, plan) = plan_of(cli, run_id).await?;
    if segment >= plan.total_segments {
        return Err(Failure::Fatal(anyhow!(
            "segment {segment} does not exist: run {run_id} has segments 0 to {}",
            plan.total_segments - 1
        )));
    }
    let config = warehouse.config(Some(&plan.source_table))?;
    let dialect = dialect_for(config.dialect);
    let started = std::time::Instant::now();
    match load::upload(dialect.as_ref(), &config, &services.store, &services.layout, &plan, segment).await {
        Ok(UploadOutcome::Loaded { rows, tables }) => {
            let detail: Vec<String> = tables.iter().filter(|(_, n)| **n > 0).map(|(t, n)| format!("{t}={n}")).collect();
            println!(
                "segment {segment} of run {run_id} loaded into {}: {rows} rows ({}) in {} ms",
                config.staging(),
                detail.join(", "),
                started.elapsed().as_millis()
            );
            Ok(())
        }
        Ok(UploadOutcome::AlreadyLoaded) => {
            println!("segment {segment} of run {run_id} was already loaded; nothing to do");
            Ok(())
        }
        Err(e) => Err(failure(
            e,
            format!("phase 3 for segment {segment} of run {run_id} did not commit; after fixing the cause run: dynamo-etl retry phase-3 {segment} --run-id {run_id}"),
        )),
    }
}

pub async fn replace(cli: &Cli, args: &ReplaceArgs) -> CommandResult {
    let (services, plan) = plan_of(cli, &args.run_id).await?;
    let config = args.warehouse.config(Some(&plan.source_table))?;
    let dialect = dialect_for(config.dialect);
    if args.dry_run {
        println!(
            "-- gate: every segment 0..{} in the ledger, staged counts equal the manifests",
            plan.total_segments - 1
        );
        for s in load::swap_statements(&config, true) {
            println!("{s};");
        }
        return Ok(());
    }
    let outcome = load::replace(dialect.as_ref(), &config, &services.store, &services.layout, &plan, &cli.retry.policy())
        .await
        .map_err(|e| failure(e, format!("replace for run {} did not happen; {} is unchanged. Retry: dynamo-etl replace --run-id {}", plan.run_id, config.target, plan.run_id)))?;
    if matches!(outcome, SwapOutcome::Swapped { .. }) {
        // The warehouse is the source of truth; this record only helps `gc` and `status`.
        if let Err(e) = crate::stage::runs::record_swap(
            &services.store,
            &services.layout,
            &plan.run_id,
            &config.target,
        )
        .await
        {
            tracing::warn!(run_id = %plan.run_id, error = %e, "the swap committed but its record could not be written");
        }
    }
    swap_result(
        outcome,
        &format!(
            "run {} is now served from {}; the previous generation is kept in {}",
            plan.run_id,
            config.target,
            config.previous()
        ),
        &format!(
            "replace refused for run {}; {} is unchanged",
            plan.run_id, config.target
        ),
    )
}

pub async fn rollback(cli: &Cli, args: &RollbackArgs) -> CommandResult {
    let source_table = match &args.run_id {
        Some(run_id) if args.warehouse.target.is_none() => {
            Some(plan_of(cli, run_id).await?.1.source_table)
        }
        _ => None,
    };
    let config = args.warehouse.config(source_table.as_deref())?;
    let dialect = dialect_for(config.dialect);
    if args.dry_run {
        for s in load::rollback_statements(&config, true) {
            println!("{s};");
        }
        return Ok(());
    }
    let outcome = load::rollback(dialect.as_ref(), &config, &cli.retry.policy())
        .await
        .map_err(|e| failure(e, format!("rollback of {} did not happen; nothing changed. Retry: dynamo-etl rollback --target {}", config.target, config.target)))?;
    swap_result(
        outcome,
        &format!(
            "{} serves the previous generation again; the replaced one is kept in {}",
            config.target,
            config.previous()
        ),
        &format!("rollback of {} refused", config.target),
    )
}

fn swap_result(outcome: SwapOutcome, done: &str, refused: &str) -> CommandResult {
    match outcome {
        SwapOutcome::Swapped { .. } => {
            println!("{done}");
            Ok(())
        }
        SwapOutcome::Refused(r) => Err(Failure::Retry(anyhow!("{refused}: {r}"))),
    }
}
