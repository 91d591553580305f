//! The swap plan, the same for every dialect: renames of whole schemas inside one transaction,
//! with the gate (for `replace`) read in that same transaction, lock waits bounded (and only
//! they: the gate's counts and the post-swap SQL run unbounded), grants
//! re-applied and the configured post-swap SQL run before the commit. Conflicts with concurrent
//! transactions are retried on a fresh session; a lock timeout is final (the target is
//! untouched, and the caller says so).
//!
//! Two `replace`s of one run at once (a job submitted twice): each first locks the staging
//! ledger, so the second waits for the first to commit; it then finds staging gone and the target
//! serving the run, and reports [`SwapOutcome::AlreadyServed`] instead of swapping again.

use super::fingerprint;
use super::gate::{self, GateRefusal};
use super::ledger::{self, LEDGER_TABLE};
use super::sql::{qualified, quote_ident, Session};
use super::{SwapOutcome, Warehouse, WarehouseError};
use crate::error::{Class, Classify};
use crate::retry::RetryPolicy;
use crate::staging::commands::Step;
use crate::staging::manifest::Committed;
use crate::staging::plan::RunPlan;

/// Which swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapKind {
    /// Staging becomes the target; the target becomes previous (the old previous is dropped).
    Replace,
    /// Previous becomes the target; the target becomes previous.
    Rollback,
}

/// A swap with what its check needs.
#[derive(Clone, Copy)]
pub enum Swap<'a> {
    Replace {
        plan: &'a RunPlan,
        manifests: &'a [Committed],
        /// Serve a run planned before the one the target serves.
        allow_older: bool,
    },
    Rollback,
}

impl Swap<'_> {
    fn kind(&self) -> SwapKind {
        match self {
            Swap::Replace { .. } => SwapKind::Replace,
            Swap::Rollback => SwapKind::Rollback,
        }
    }
}

/// The statements of a swap, after its check passed.
pub fn statements(
    dialect: &(impl Warehouse + ?Sized),
    kind: SwapKind,
    target_exists: bool,
) -> Vec<String> {
    let config = dialect.config();
    let target = quote_ident(&config.target);
    let (staging, previous, parked) = (
        quote_ident(&config.staging()),
        quote_ident(&config.previous()),
        quote_ident(&config.parked()),
    );
    let mut out = Vec::new();
    match kind {
        SwapKind::Replace => {
            out.push(format!("DROP SCHEMA IF EXISTS {previous} CASCADE"));
            if target_exists {
                out.push(format!("ALTER SCHEMA {target} RENAME TO {previous}"));
            }
            out.push(format!("ALTER SCHEMA {staging} RENAME TO {target}"));
        }
        SwapKind::Rollback => {
            if target_exists {
                out.push(format!("DROP SCHEMA IF EXISTS {parked} CASCADE"));
                out.push(format!("ALTER SCHEMA {target} RENAME TO {parked}"));
            }
            out.push(format!("ALTER SCHEMA {previous} RENAME TO {target}"));
            if target_exists {
                out.push(format!("ALTER SCHEMA {parked} RENAME TO {previous}"));
            }
        }
    }
    for grantee in &config.grantees {
        let who = dialect.grantee(grantee);
        out.push(format!("GRANT USAGE ON SCHEMA {target} TO {who}"));
        out.push(format!(
            "GRANT SELECT ON ALL TABLES IN SCHEMA {target} TO {who}"
        ));
    }
    // The renames wait for readers' locks: that wait is bounded. The user's post-swap SQL may
    // run long, so it runs with the bound lifted.
    let mut out = dialect.lock_bounded(out);
    out.extend(config.post_swap_sql.clone());
    out
}

/// What a swap's transaction runs first: for `replace` of a prepared run, the staging ledger
/// locked under the lock-wait bound, lifted again before the gate counts the staged rows.
pub fn lock_statements(
    dialect: &(impl Warehouse + ?Sized),
    kind: SwapKind,
    prepared: bool,
) -> Vec<String> {
    match (kind, prepared) {
        (SwapKind::Replace, true) => dialect.lock_bounded(vec![lock_sql(dialect)]),
        _ => Vec::new(),
    }
}

/// The lock every `replace` of a target takes first: on its staging ledger, which phase 3's
/// loads write too (a load of many segments takes this same lock first and holds it to its
/// commit), so a swap also waits for loads in flight.
pub fn lock_sql(dialect: &(impl Warehouse + ?Sized)) -> String {
    format!(
        "LOCK TABLE {}",
        qualified(&dialect.config().staging(), LEDGER_TABLE)
    )
}

/// The statements that refresh the planner's statistics of every staged table of `plan`'s run
/// (none when the configuration turned that off). COPY leaves statistics alone here (Redshift's
/// runs with STATUPDATE OFF, PostgreSQL's COPY never updates them), so without these the swapped-in
/// tables would serve queries planned without statistics.
pub fn analyze_sql(dialect: &(impl Warehouse + ?Sized), plan: &RunPlan) -> Vec<String> {
    let config = dialect.config();
    if !config.analyze {
        return Vec::new();
    }
    let staging = config.staging();
    let tables: Vec<String> = plan
        .warehouse_tables()
        .iter()
        .map(|t| qualified(&staging, &t.table))
        .collect();
    dialect.analyze_tables(&tables)
}

/// The indexes of the staged tables' key columns (see `Warehouse::key_index`): unique on each
/// table with a column for every key attribute, and on `_overflow`'s item key. Built in the swap's
/// transaction, after the gate.
pub fn key_index_sql(dialect: &(impl Warehouse + ?Sized), plan: &RunPlan) -> Vec<String> {
    let staging = dialect.config().staging();
    let mut out = Vec::new();
    for (index, table) in plan.served_tables().iter().enumerate() {
        let name = format!("_dynamo_etl_key_{index}");
        let qualified_table = qualified(&staging, &table.table);
        if table.table == crate::schema::OVERFLOW_TABLE {
            out.extend(dialect.key_index(
                &qualified_table,
                &name,
                &["item_key".to_string()],
                false,
            ));
            continue;
        }
        // A table without a column for every key attribute holds some keys in `_extra` only.
        let Ok(keys) = crate::staging::increment::key_columns(table, &plan.key_attributes) else {
            continue;
        };
        let columns: Vec<String> = keys.iter().map(|c| c.column.clone()).collect();
        out.extend(dialect.key_index(&qualified_table, &name, &columns, true));
    }
    out
}

/// Refreshes the statistics of the staged tables before the swap, once staging holds every
/// segment of the run (otherwise the gate refuses, and the `replace` after the missing loads
/// analyzes). It runs outside the swap's transaction, each statement on its own: the swap bounds
/// its waits with a timeout (on Redshift a statement timeout, which would cut a long ANALYZE of a
/// large table short), and a conflict retry of the swap must not analyze again.
async fn analyze(
    dialect: &(impl Warehouse + ?Sized),
    plan: &RunPlan,
    retry: &RetryPolicy,
) -> Result<(), WarehouseError> {
    let statements = analyze_sql(dialect, plan);
    if statements.is_empty() {
        return Ok(());
    }
    let staging = dialect.config().staging();
    retry
        .run(
            || async {
                let mut session = dialect.session().await?;
                let prepared = ledger::run_marker(&mut session, &staging).await?;
                if prepared.is_none_or(|m| m.run_id != plan.run_id) {
                    return Ok(());
                }
                let loaded = ledger::loaded_segments(&mut session, &staging).await?;
                if !(0..plan.total_segments).all(|k| loaded.contains(&k)) {
                    return Ok(());
                }
                for statement in &statements {
                    session
                        .execute(
                            statement,
                            "refreshing the statistics of the staged tables (--no-analyze skips this)",
                        )
                        .await?;
                }
                tracing::info!(run_id = %plan.run_id, staging = %staging, tables = statements.len(),
                    "statistics of the staged tables refreshed");
                Ok(())
            },
            |e: &WarehouseError| e.is_transient(),
            |e, delay| tracing::warn!(error = %e, delay_ms = delay.as_millis() as u64, "refreshing statistics failed transiently; retrying"),
        )
        .await
}

fn is_lock_timeout(e: &WarehouseError) -> bool {
    matches!(e, WarehouseError::Sql { detail, .. } if detail.contains("55P03") || detail.contains("57014") || detail.to_ascii_lowercase().contains("timeout"))
}

/// Runs a swap, retrying conflicts with a fresh session per attempt (a conflict may leave the
/// old one unusable).
pub async fn run(
    dialect: &(impl Warehouse + ?Sized),
    swap: Swap<'_>,
    retry: &RetryPolicy,
) -> Result<SwapOutcome, WarehouseError> {
    if let Swap::Replace { plan, .. } = swap {
        if let Err(e) = analyze(dialect, plan, retry).await {
            // A concurrent replace of the same run may have renamed staging away while this one
            // analyzed it: then the swap below finds the run served and does nothing.
            let mut session = dialect.session().await?;
            if !served_by_now(dialect, &mut session, swap).await {
                return Err(e);
            }
        }
    }
    retry
        .run(
            || async {
                let mut session = dialect.session().await?;
                let result = once(dialect, &mut session, swap).await;
                match result {
                    Err(e) => {
                        session.rollback().await;
                        // A concurrent replace of the same run may have made this one fail
                        // (staging renamed away under it): then there is nothing left to do.
                        match served_by_now(dialect, &mut session, swap).await {
                            true => Ok(SwapOutcome::AlreadyServed),
                            false => Err(e),
                        }
                    }
                    ok => ok,
                }
            },
            // Temporary credentials that could not be had were retried by their own call.
            |e: &WarehouseError| {
                e.class() == Class::Retry
                    && !is_lock_timeout(e)
                    && !matches!(e, WarehouseError::Login(_))
            },
            |e, delay| tracing::warn!(error = %e, delay_ms = delay.as_millis() as u64, "swap conflicted; retrying"),
        )
        .await
}

/// Whether the target serves the run a replace was about (outside any transaction).
async fn served_by_now(
    dialect: &(impl Warehouse + ?Sized),
    session: &mut Session,
    swap: Swap<'_>,
) -> bool {
    let Swap::Replace { plan, .. } = swap else {
        return false;
    };
    ledger::run_marker(session, &dialect.config().target)
        .await
        .ok()
        .flatten()
        .is_some_and(|m| m.run_id == plan.run_id)
}

/// What the check inside the swap transaction decided.
enum Decision {
    /// Swap; with the proof of the staged values when the gate proved them.
    Go(Option<fingerprint::Proof>),
    Refuse(GateRefusal),
    /// The target serves the run already (a concurrent replace swapped it in).
    AlreadyServed,
}

/// What stops the swap, read inside its transaction.
async fn check(
    dialect: &(impl Warehouse + ?Sized),
    session: &mut Session,
    swap: Swap<'_>,
) -> Result<Decision, WarehouseError> {
    let config = dialect.config();
    let Swap::Replace {
        plan,
        manifests,
        allow_older,
    } = swap
    else {
        let previous = config.previous();
        return Ok(match ledger::schema_exists(session, &previous).await? {
            true => Decision::Go(None),
            false => Decision::Refuse(GateRefusal {
                problems: vec![format!(
                    "there is no previous generation ({previous}) to roll back to"
                )],
                steps: vec![],
                class: Class::Fatal,
            }),
        });
    };
    let staging = config.staging();
    let prepared = ledger::run_marker(session, &staging).await?;
    // Serialises replaces of this target: the second waits here for the first to commit.
    for statement in lock_statements(dialect, SwapKind::Replace, prepared.is_some()) {
        session
            .execute(&statement, "locking the staging ledger")
            .await?;
    }
    let serving = ledger::run_marker(session, &config.target).await?;
    if serving.as_ref().is_some_and(|s| s.run_id == plan.run_id) {
        return Ok(Decision::AlreadyServed);
    }
    let previous = ledger::run_marker(session, &config.previous()).await?;
    let forward = gate::check_forward(
        plan,
        &config.target,
        serving.as_ref(),
        previous.as_ref(),
        allow_older,
    );
    if let Some(r) = forward {
        return Ok(Decision::Refuse(r));
    }
    let loaded = match prepared {
        Some(_) => ledger::loaded_segments(session, &staging).await?,
        None => Default::default(),
    };
    let prepared = prepared.map(|m| m.run_id);
    if let Some(r) = gate::check_segments(plan, manifests, prepared.as_deref(), &loaded) {
        return Ok(Decision::Refuse(r));
    }
    let counted = ledger::staged_counts(session, &staging, &plan.warehouse_tables()).await?;
    if let Some(r) = gate::check_counts(plan, &staging, manifests, &counted) {
        return Ok(Decision::Refuse(r));
    }
    if !config.verify {
        tracing::error!(run_id = %plan.run_id, target = %config.target,
            "--skip-verify: swapping in without proving that the staged values equal what phase 1 wrote");
        return Ok(Decision::Go(None));
    }
    let proof = fingerprint::prove(dialect, session, &staging, plan, manifests).await?;
    let mismatches = proof.mismatches();
    if mismatches.is_empty() {
        tracing::info!(run_id = %plan.run_id, proof = %proof, "the staged values are what phase 1 wrote");
        // Kept beside the tables, so the target holds the proof of the generation it serves.
        if let (fingerprint::Proof::Tables(tables), Some(expected)) =
            (&proof, fingerprint::expected(plan, manifests))
        {
            for statement in fingerprint::record_sql(dialect, &staging, &expected, tables) {
                session
                    .execute(&statement, "recording the proven fingerprints")
                    .await?;
            }
        }
        return Ok(Decision::Go(Some(proof)));
    }
    Ok(Decision::Refuse(GateRefusal {
        problems: vec![format!(
            "the values staged in {staging} are not what phase 1 wrote: {}",
            mismatches.join("; ")
        )],
        steps: vec![Step::VerifyStaging],
        // Loading again gives the same values until someone finds out why they differ.
        class: Class::Fatal,
    }))
}

/// One attempt: check, then the renames, in one transaction with bounded lock waits.
async fn once(
    dialect: &(impl Warehouse + ?Sized),
    session: &mut Session,
    swap: Swap<'_>,
) -> Result<SwapOutcome, WarehouseError> {
    let config = dialect.config();
    session.begin().await?;
    let proof = match check(dialect, session, swap).await? {
        Decision::Go(proof) => proof,
        Decision::Refuse(refusal) => {
            session.rollback().await;
            return Ok(SwapOutcome::Refused(refusal));
        }
        Decision::AlreadyServed => {
            session.rollback().await;
            return Ok(SwapOutcome::AlreadyServed);
        }
    };
    // The key indexes are built once the gate has proven the staged values (a duplicated row is
    // then reported as the tampering it is, not as a failed index), inside the swap's
    // transaction: they swap in with the tables or not at all.
    if let Swap::Replace { plan, .. } = swap {
        for statement in key_index_sql(dialect, plan) {
            session
                .execute(&statement, "indexing the staged tables' key columns")
                .await?;
        }
    }
    let target_exists = ledger::schema_exists(session, &config.target).await?;
    let statements = statements(dialect, swap.kind(), target_exists);
    let what = match swap.kind() {
        SwapKind::Replace => format!("swapping {} in", config.staging()),
        SwapKind::Rollback => format!("rolling {} back", config.target),
    };
    for statement in &statements {
        session.execute(statement, &what).await?;
    }
    session.commit(&what).await?;
    Ok(SwapOutcome::Swapped { statements, proof })
}
