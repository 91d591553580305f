//! `verify`: the fingerprints of one generation of the target against its run's manifests.

use super::super::flags::{RunFlag, WarehouseFlags};
use super::super::output::{line, verify::lines};
use super::super::Cli;
use dynamo_etl::error::Error;
use dynamo_etl::phases::verify::Generation;
use dynamo_etl::staging::commands::Step;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub run: RunFlag,
    #[command(flatten)]
    pub warehouse: WarehouseFlags,
    /// Which generation of the target to verify: `staging` (loaded, not swapped in), `served`
    /// (what consumers read) or `previous` (kept for rollback). It must hold the run.
    #[arg(long, env = "ETL_GENERATION", value_enum, default_value = "served")]
    pub generation: GenerationArg,
}

/// `--generation`'s values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GenerationArg {
    Staging,
    Served,
    Previous,
}

impl GenerationArg {
    fn generation(self) -> Generation {
        match self {
            GenerationArg::Staging => Generation::Staging,
            GenerationArg::Served => Generation::Served,
            GenerationArg::Previous => Generation::Previous,
        }
    }
}

pub async fn run(cli: &Cli, args: &Args) -> Result<(), Error> {
    let (ctx, plan, warehouse) =
        super::planned_with_warehouse(cli, args.run.required()?, &args.warehouse).await?;
    let generation = args.generation.generation();
    let verified =
        dynamo_etl::phases::verify::verify(&ctx, warehouse.as_ref(), &plan, generation).await?;
    for l in lines(&verified) {
        line(l);
    }
    let mismatches = verified.proof.mismatches();
    if mismatches.is_empty() {
        return Ok(());
    }
    let runbook = ctx.runbook(&plan.run_id, Some(&warehouse.config().target));
    let fix = match generation {
        // Loading the run again replaces what was changed in staging.
        Generation::Staging => vec![
            runbook.command(Step::Prepare),
            runbook.command(Step::UploadAll),
        ],
        Generation::Served | Generation::Previous => vec![runbook.command(Step::Status)],
    };
    let located: Vec<&str> = verified
        .located
        .iter()
        .flat_map(|(_, found)| found.iter().map(String::as_str))
        .collect();
    let located = if located.is_empty() {
        String::new()
    } else {
        format!(" (where: {})", located.join("; "))
    };
    let err = Error::fatal(format!(
        "{} does not hold what phase 1 wrote for run {}: {}{located}",
        verified.schema,
        plan.run_id,
        mismatches.join("; ")
    ));
    Err(fix.into_iter().fold(err, |e, c| e.next(c)))
}
