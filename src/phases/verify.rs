//! `verify`: recomputes the fingerprints of one generation of a target — staging, served or
//! previous — from its stored values, and compares them with its run's manifests. The gate of
//! `replace` runs the same proof inside the swap transaction; this is the command an operator
//! runs to look into a refusal, or to check a served generation on demand.

use super::Context;
use crate::error::Error;
use crate::staging::commands::Step;
use crate::staging::manifest;
use crate::staging::plan::RunPlan;
use crate::warehouse::fingerprint::{self, Proof};
use crate::warehouse::{ledger, Warehouse};

/// Which generation of the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// `<target>_staging`: loaded, not swapped in yet.
    Staging,
    /// `<target>`: what consumers read.
    Served,
    /// `<target>_previous`: kept for rollback.
    Previous,
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub schema: String,
    pub proof: Proof,
    /// Per table that failed its proof, which segment's rows differ, where the dialect can
    /// tell (`fingerprint::locate`); empty when it cannot or all is proven.
    pub located: Vec<(String, Vec<String>)>,
}

/// Proves `generation` of the target against `plan`'s manifests. The schema must hold `plan`'s
/// run (its run marker says so).
pub async fn verify(
    ctx: &Context,
    warehouse: &dyn Warehouse,
    plan: &RunPlan,
    generation: Generation,
) -> Result<Verified, Error> {
    let config = warehouse.config();
    let schema = match generation {
        Generation::Staging => config.staging(),
        Generation::Served => config.target.clone(),
        Generation::Previous => config.previous(),
    };
    let runbook = ctx.runbook(&plan.run_id, Some(&config.target));
    let mut session = warehouse.session().await?;
    let holds = ledger::run_marker(&mut session, &schema).await?;
    match holds {
        Some(m) if m.run_id == plan.run_id => {}
        Some(m) => {
            return Err(Error::fatal(format!(
                "{schema} holds run {}, not run {}: verify the run it holds with --run-id {}",
                m.run_id, plan.run_id, m.run_id
            ))
            .next(runbook.command(Step::Status)))
        }
        None => {
            return Err(Error::fatal(format!(
                "{schema} holds no run of dynamo-etl (it is missing, or has no run marker)"
            ))
            .next(runbook.command(Step::Status)))
        }
    }
    // Increments change the served rows after the swap: each proven apply moved the target's
    // kept fingerprints on by the rows it deleted and inserted, so the served rows are proven
    // against those (the full copy's manifests plus every increment's changes).
    if generation == Generation::Served {
        let mut applied = warehouse.increments().await?;
        // Batches of `follow` change the served rows the same way, and record stream positions.
        let followed = crate::warehouse::increment::positions(&mut session, &schema).await?;
        if let Some(batch) = &followed.batch_id {
            applied.push(crate::warehouse::increment::Applied {
                run_id: batch.clone(),
                base_run: plan.run_id.clone(),
                from: String::new(),
                to: String::new(),
            });
        }
        if let Some(last) = applied.last() {
            let Some(kept) = fingerprint::read_kept(&mut session, &schema).await? else {
                return Err(Error::fatal(format!(
                    "{schema} has taken increments or stream batches since run {} was swapped in (the last: {}) and keeps no fingerprints: one of them or the swap was applied with --skip-verify (or by a version without fingerprints), so there is nothing to prove the served rows against. The next full copy is proven at its swap; verify it before with --generation staging",
                    plan.run_id,
                    last.run_id
                ))
                .next(runbook.command(Step::Status)));
            };
            let proof =
                fingerprint::prove_against(warehouse, &mut session, &schema, plan, &kept).await?;
            // Increments and batches rewrite rows after the loads, so their writers say
            // nothing about segments.
            return Ok(Verified {
                schema,
                proof,
                located: Vec::new(),
            });
        }
    }
    let manifests = manifest::read_all(ctx.staging()?, plan).await?;
    let proof = fingerprint::prove(warehouse, &mut session, &schema, plan, &manifests).await?;
    let mut located = Vec::new();
    if let Proof::Tables(tables) = &proof {
        let committed: Vec<&manifest::SegmentManifest> =
            manifests.iter().filter_map(|m| m.manifest()).collect();
        for table in plan.warehouse_tables() {
            let failed = tables
                .iter()
                .any(|t| t.table == table.table && !t.mismatches().is_empty());
            if !failed {
                continue;
            }
            // Where the rows differ is a help, not the verdict: a failure to tell leaves the
            // mismatch reported as it is.
            match fingerprint::locate(warehouse, &mut session, &schema, &table, &committed).await {
                Ok(Some(found)) => located.push((table.table.clone(), found)),
                Ok(None) => {}
                Err(e) => tracing::warn!(table = %table.table, error = %e,
                    "could not tell which segment's rows differ"),
            }
        }
    }
    Ok(Verified {
        schema,
        proof,
        located,
    })
}
