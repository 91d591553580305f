//! The swap plan, the same for every dialect: renames of whole schemas inside one transaction,
//! with the gate (for `replace`) read in that same transaction, lock waits bounded, grants
//! re-applied and the configured post-swap SQL run before the commit. Conflicts with concurrent
//! transactions are retried on a fresh session; a lock timeout is final (the target is
//! untouched, and the caller says so).

use super::gate::{self, GateRefusal};
use super::ledger;
use super::sql::{quote_ident, Session};
use super::{Dialect, SwapOutcome, WarehouseError};
use crate::error::{Class, Classify};
use crate::retry::RetryPolicy;
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
pub fn statements(dialect: &dyn Dialect, kind: SwapKind, target_exists: bool) -> Vec<String> {
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
    out.extend(config.post_swap_sql.clone());
    out
}

fn is_lock_timeout(e: &WarehouseError) -> bool {
    matches!(e, WarehouseError::Sql { detail, .. } if detail.contains("55P03") || detail.contains("57014") || detail.to_ascii_lowercase().contains("timeout"))
}

/// Runs a swap, retrying conflicts with a fresh session per attempt (a conflict may leave the
/// old one unusable).
pub async fn run(
    dialect: &dyn Dialect,
    swap: Swap<'_>,
    retry: &RetryPolicy,
) -> Result<SwapOutcome, WarehouseError> {
    retry
        .run(
            || async {
                let mut session = dialect.session().await?;
                let result = once(dialect, &mut session, swap).await;
                if result.is_err() {
                    session.rollback().await;
                }
                result
            },
            |e: &WarehouseError| e.class() == Class::Retry && !is_lock_timeout(e),
            |e, delay| tracing::warn!(error = %e, delay_ms = delay.as_millis() as u64, "swap conflicted; retrying"),
        )
        .await
}

/// What stops the swap, read inside its transaction.
async fn check(
    dialect: &dyn Dialect,
    session: &mut Session,
    swap: Swap<'_>,
) -> Result<Option<GateRefusal>, WarehouseError> {
    let config = dialect.config();
    match swap {
        Swap::Replace { plan, manifests } => {
            let staging = config.staging();
            let prepared = ledger::run_marker(session, &staging).await?;
            let loaded = match prepared {
                Some(_) => ledger::loaded_segments(session, &staging).await?,
                None => Default::default(),
            };
            if let Some(r) = gate::check_segments(plan, manifests, prepared.as_deref(), &loaded) {
                return Ok(Some(r));
            }
            let counted =
                ledger::staged_counts(session, &staging, &plan.warehouse_tables()).await?;
            Ok(gate::check_counts(plan, &staging, manifests, &counted))
        }
        Swap::Rollback => Ok(
            (!ledger::schema_exists(session, &config.previous()).await?).then(|| GateRefusal {
                problems: vec![format!(
                    "there is no previous generation ({}) to roll back to",
                    config.previous()
                )],
                steps: vec![],
            }),
        ),
    }
}

/// One attempt: check, then the renames, in one transaction with bounded lock waits.
async fn once(
    dialect: &dyn Dialect,
    session: &mut Session,
    swap: Swap<'_>,
) -> Result<SwapOutcome, WarehouseError> {
    let config = dialect.config();
    session.begin().await?;
    session
        .execute(
            &dialect.lock_timeout(config.lock_timeout),
            "setting the lock timeout",
        )
        .await?;
    if let Some(refusal) = check(dialect, session, swap).await? {
        session.rollback().await;
        return Ok(SwapOutcome::Refused(refusal));
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
    Ok(SwapOutcome::Swapped { statements })
}
