//! Steps of phase 3 that every dialect takes the same way: finding a manifest table among the
//! run's tables, and checking what COPY loaded against what the manifest promised.

use super::WarehouseError;
use crate::schema::DataSchema;
use crate::staging::manifest::TableOutput;
use crate::staging::plan::RunPlan;

/// The run's warehouse table a manifest names; a name the plan does not know means the
/// segment was written for another plan.
pub fn table_of<'t>(
    tables: &'t [DataSchema],
    plan: &RunPlan,
    segment: u32,
    name: &str,
) -> Result<&'t DataSchema, WarehouseError> {
    tables
        .iter()
        .find(|t| t.table == name)
        .ok_or_else(|| WarehouseError::BadSegment {
            run_id: plan.run_id.clone(),
            segment,
            problem: format!(
                "its manifest has parts for table {name}, which the run's plan does not have"
            ),
        })
}

/// Fails unless COPY loaded exactly the rows the manifest promised.
pub fn check_copied(
    plan: &RunPlan,
    segment: u32,
    table: &str,
    output: &TableOutput,
    copied: u64,
) -> Result<(), WarehouseError> {
    if copied == output.rows {
        return Ok(());
    }
    Err(WarehouseError::BadSegment {
        run_id: plan.run_id.clone(),
        segment,
        problem: format!(
            "table {table} loaded {copied} rows but the manifest has {}",
            output.rows
        ),
    })
}
