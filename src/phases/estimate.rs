//! `--estimate`: what a full scan of the source table would consume, cost and take, worked out
//! from DescribeTable before a single read unit is spent. Nothing is planned, scanned or written.
//!
//! The figures rest on these documented rules:
//! - A Scan is charged by the size of the items it reads, 4 KB to a read unit for strongly
//!   consistent reads and half that for eventually consistent ones; projections and filters do
//!   not lower it, and every request costs at least one half (eventual) or whole unit
//!   (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html#read-operation-consumption,
//!   https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Scan.html#Scan.CapacityUnits).
//! - DynamoDB's KB and GB are binary: 1 KB = 1024 bytes, 1 GB = 1024 MB
//!   (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Constraints.html).
//! - For a parallel scan DynamoDB suggests starting from one segment per 2 GB of data
//!   (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-query-scan.html#bp-query-scan-parallel-total-segments).
//! - ItemCount and TableSizeBytes are refreshed about every six hours
//!   (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TableDescription.html).
//! - On-demand reads are billed per million read request units
//!   (https://aws.amazon.com/dynamodb/pricing/on-demand/); provisioned tables pay by the hour
//!   for the capacity they provision instead
//!   (https://aws.amazon.com/dynamodb/pricing/provisioned/).

use crate::error::{Class, Error};
use crate::source::table::{describe_table, Billing, TableFacts};

use super::Context;

/// USD per million read request units, on-demand, Standard table class, US East (N. Virginia):
/// the list price of https://aws.amazon.com/dynamodb/pricing/on-demand/, in force since the
/// on-demand price cut of 2024-11-01. Checked on 2026-12-01; that page fills its price table
/// by script, so the figure was confirmed from reports of the cut rather than the rendered
/// table. Other regions, the Standard-IA class and discounts differ:
/// `--read-price-per-million` sets it.
pub const DEFAULT_READ_PRICE_PER_MILLION: f64 = 0.125;

/// Bytes one strongly consistent read unit covers (4 KB, binary).
pub const READ_UNIT_BYTES: u64 = 4 * 1024;

/// Table bytes per segment DynamoDB suggests starting from (2 GB, binary).
pub const BYTES_PER_SEGMENT: u64 = 2 * 1024 * 1024 * 1024;

/// The run's settings the estimate is for.
#[derive(Debug, Clone, PartialEq)]
pub struct EstimateSettings {
    pub total_segments: u32,
    /// Segments scanning at the same time (`run --concurrency`; every segment for AWS Batch).
    pub segments_at_once: u32,
    /// Read units per second per segment (`--max-read-units`); `None` leaves pacing to DynamoDB.
    pub max_read_units: Option<f64>,
    pub consistent_read: bool,
    pub read_price_per_million: f64,
}

impl EstimateSettings {
    /// Rejects settings no estimate can be made for, before any request.
    pub fn check(&self) -> Result<(), Error> {
        if self.total_segments == 0 || self.segments_at_once == 0 {
            return Err(Error::fatal("an estimate needs at least one segment"));
        }
        if !(self.read_price_per_million.is_finite() && self.read_price_per_million >= 0.0) {
            return Err(Error::fatal(format!(
                "--read-price-per-million must be a number of dollars, 0 or more, got {}",
                self.read_price_per_million
            )));
        }
        if let Some(u) = self.max_read_units {
            if !(u.is_finite() && u > 0.0) {
                return Err(Error::fatal(format!(
                    "--max-read-units must be a positive number, got {u}"
                )));
            }
        }
        Ok(())
    }

    /// The read units per second all segments running at once may spend together.
    pub fn summed_budget(&self) -> Option<f64> {
        self.max_read_units
            .map(|u| u * f64::from(self.segments_at_once.min(self.total_segments)))
    }
}

/// What sets the pace of the scan.
#[derive(Debug, Clone, PartialEq)]
pub enum Pace {
    /// The tool's read budget: `seconds` at `rate` read units per second.
    Budget { seconds: f64, rate: f64 },
    /// No budget: DynamoDB throttles the scan at the table's own ceiling, so it takes at least
    /// `seconds` at `rate` read units per second.
    TableCeiling {
        seconds: f64,
        rate: u64,
        on_demand: bool,
    },
    /// No budget and no ceiling on the table: DynamoDB alone decides.
    Unbounded,
}

/// Something to look at before spending.
#[derive(Debug, Clone, PartialEq)]
pub enum Warning {
    /// Fewer segments than one per 2 GB.
    TooFewSegments { segments: u32, recommended: u32 },
    /// The summed budget exceeds what the table serves per second: the scan would be throttled
    /// and take the throughput the table's own readers need.
    BudgetAboveTable {
        summed: f64,
        capacity: u64,
        on_demand: bool,
        segments_at_once: u32,
        /// The largest per-segment budget whose sum fits.
        fitting_budget: f64,
    },
    /// On-demand and no budget: nothing in the tool limits how fast it reads and is billed.
    NoBudgetOnDemand,
    /// DescribeTable's count and size lag writes by up to about six hours.
    StaleFigures,
}

/// The largest per-segment budget whose sum stays within `capacity`, to two decimals.
fn fair_share(capacity: u64, segments_at_once: u32) -> f64 {
    let share = capacity as f64 / f64::from(segments_at_once.max(1));
    (share * 100.0).floor() / 100.0
}

/// The figures of one estimate; the command line prints them as a table.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    pub facts: TableFacts,
    pub settings: EstimateSettings,
    /// Read units a full scan consumes with strongly consistent reads.
    pub strongly_consistent_units: f64,
    /// Read units a full scan consumes with eventually consistent reads (half of the above).
    pub eventually_consistent_units: f64,
    /// Segments at one per 2 GB (at least 1).
    pub recommended_segments: u32,
    pub pace: Pace,
    pub warnings: Vec<Warning>,
}

impl Estimate {
    /// Works out the figures; no I/O.
    pub fn new(facts: TableFacts, settings: EstimateSettings) -> Estimate {
        // Every segment sends at least one request, and each request costs at least one unit.
        let strongly = facts
            .size_bytes
            .div_ceil(READ_UNIT_BYTES)
            .max(u64::from(settings.total_segments)) as f64;
        let eventually = strongly / 2.0;
        let recommended = facts
            .size_bytes
            .div_ceil(BYTES_PER_SEGMENT)
            .clamp(1, 1_000_000) as u32;
        let units = match settings.consistent_read {
            true => strongly,
            false => eventually,
        };
        let ceiling = match facts.billing {
            Billing::Provisioned { read_capacity } if read_capacity > 0 => {
                Some((read_capacity, false))
            }
            Billing::OnDemand {
                max_read_units: Some(max),
            } => Some((max, true)),
            _ => None,
        };
        let pace = match (settings.summed_budget(), ceiling) {
            (Some(rate), _) => Pace::Budget {
                seconds: units / rate,
                rate,
            },
            (None, Some((rate, on_demand))) => Pace::TableCeiling {
                seconds: units / rate as f64,
                rate,
                on_demand,
            },
            (None, None) => Pace::Unbounded,
        };
        let mut warnings = Vec::new();
        if settings.total_segments < recommended {
            warnings.push(Warning::TooFewSegments {
                segments: settings.total_segments,
                recommended,
            });
        }
        if let (Some(summed), Some((capacity, on_demand))) = (settings.summed_budget(), ceiling) {
            if summed > capacity as f64 {
                let at_once = settings.segments_at_once.min(settings.total_segments);
                warnings.push(Warning::BudgetAboveTable {
                    summed,
                    capacity,
                    on_demand,
                    segments_at_once: at_once,
                    fitting_budget: fair_share(capacity, at_once),
                });
            }
        }
        if settings.max_read_units.is_none() && matches!(facts.billing, Billing::OnDemand { .. }) {
            warnings.push(Warning::NoBudgetOnDemand);
        }
        warnings.push(Warning::StaleFigures);
        Estimate {
            facts,
            settings,
            strongly_consistent_units: strongly,
            eventually_consistent_units: eventually,
            recommended_segments: recommended,
            pace,
            warnings,
        }
    }

    /// Read units this run's consistency setting consumes.
    pub fn read_units(&self) -> f64 {
        match self.settings.consistent_read {
            true => self.strongly_consistent_units,
            false => self.eventually_consistent_units,
        }
    }

    /// Dollars `units` cost at the price per million read request units.
    pub fn cost(&self, units: f64) -> f64 {
        units / 1_000_000.0 * self.settings.read_price_per_million
    }
}

/// DescribeTable of the source table and the estimate for `settings`. `command` is how the
/// operator ran it (e.g. `dynamo-etl plan --estimate --table t --total-segments 8`), named in
/// the error when running it again should help.
pub async fn estimate(
    ctx: &Context,
    table: &str,
    settings: EstimateSettings,
    command: &str,
) -> Result<Estimate, Error> {
    settings.check()?;
    let facts = describe_table(&ctx.dynamodb, table, &ctx.retry)
        .await
        .map_err(|e| {
            let err = Error::from(e).context(format!("estimating a full scan of table {table}"));
            match err.class() {
                Class::Retry => err.next(command),
                Class::Fatal => err,
            }
        })?;
    Ok(Estimate::new(facts, settings))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * 1024 * 1024;

    fn facts(size_bytes: u64, billing: Billing) -> TableFacts {
        TableFacts {
            table: "orders".into(),
            item_count: 1_234_567,
            size_bytes,
            billing,
        }
    }

    fn settings(total: u32, at_once: u32, budget: Option<f64>) -> EstimateSettings {
        EstimateSettings {
            total_segments: total,
            segments_at_once: at_once,
            max_read_units: budget,
            consistent_read: false,
            read_price_per_million: DEFAULT_READ_PRICE_PER_MILLION,
        }
    }

    const ON_DEMAND: Billing = Billing::OnDemand {
        max_read_units: None,
    };

    #[test]
    fn read_units_are_one_per_4_kb_strongly_and_half_eventually() {
        // 10 GiB = 2,621,440 blocks of 4 KiB.
        let e = Estimate::new(facts(10 * GIB, ON_DEMAND), settings(8, 8, Some(100.0)));
        assert_eq!(e.strongly_consistent_units, 2_621_440.0);
        assert_eq!(e.eventually_consistent_units, 1_310_720.0);
        assert_eq!(e.read_units(), 1_310_720.0);
        // A partial block is a whole unit.
        let e = Estimate::new(facts(4097, ON_DEMAND), settings(1, 1, None));
        assert_eq!(e.strongly_consistent_units, 2.0);
        assert_eq!(e.eventually_consistent_units, 1.0);
        // Every segment costs at least one request, even on an empty table.
        let e = Estimate::new(facts(0, ON_DEMAND), settings(6, 6, None));
        assert_eq!(e.strongly_consistent_units, 6.0);
        assert_eq!(e.eventually_consistent_units, 3.0);
    }

    #[test]
    fn strongly_consistent_runs_are_charged_twice_the_units() {
        let mut s = settings(8, 8, Some(100.0));
        s.consistent_read = true;
        let e = Estimate::new(facts(10 * GIB, ON_DEMAND), s);
        assert_eq!(e.read_units(), 2_621_440.0);
        assert_eq!(
            e.pace,
            Pace::Budget {
                seconds: 2_621_440.0 / 800.0,
                rate: 800.0
            }
        );
    }

    #[test]
    fn cost_is_units_times_the_price_per_million() {
        let mut s = settings(8, 8, None);
        s.read_price_per_million = 0.25;
        let e = Estimate::new(facts(10 * GIB, ON_DEMAND), s);
        assert!((e.cost(e.eventually_consistent_units) - 0.32768).abs() < 1e-9);
        assert!((e.cost(e.strongly_consistent_units) - 0.65536).abs() < 1e-9);
    }

    #[test]
    fn time_is_units_over_budget_times_the_segments_at_once() {
        let e = Estimate::new(facts(10 * GIB, ON_DEMAND), settings(16, 4, Some(50.0)));
        assert_eq!(
            e.pace,
            Pace::Budget {
                seconds: 1_310_720.0 / 200.0,
                rate: 200.0
            }
        );
        // More at once than there are segments is only the segments.
        let e = Estimate::new(facts(10 * GIB, ON_DEMAND), settings(2, 8, Some(50.0)));
        assert_eq!(e.settings.summed_budget(), Some(100.0));
    }

    #[test]
    fn without_a_budget_the_table_sets_the_pace() {
        let provisioned = Billing::Provisioned { read_capacity: 500 };
        let e = Estimate::new(facts(10 * GIB, provisioned), settings(8, 8, None));
        assert_eq!(
            e.pace,
            Pace::TableCeiling {
                seconds: 1_310_720.0 / 500.0,
                rate: 500,
                on_demand: false
            }
        );
        let capped = Billing::OnDemand {
            max_read_units: Some(1000),
        };
        let e = Estimate::new(facts(10 * GIB, capped), settings(8, 8, None));
        assert!(matches!(
            e.pace,
            Pace::TableCeiling {
                rate: 1000,
                on_demand: true,
                ..
            }
        ));
        let e = Estimate::new(facts(10 * GIB, ON_DEMAND), settings(8, 8, None));
        assert_eq!(e.pace, Pace::Unbounded);
    }

    #[test]
    fn too_few_segments_is_below_one_per_2_gb() {
        // 30 GiB → 15 segments, DynamoDB's own example.
        let e = Estimate::new(facts(30 * GIB, ON_DEMAND), settings(14, 14, Some(10.0)));
        assert_eq!(e.recommended_segments, 15);
        assert!(e.warnings.contains(&Warning::TooFewSegments {
            segments: 14,
            recommended: 15
        }));
        let e = Estimate::new(facts(30 * GIB, ON_DEMAND), settings(15, 15, Some(10.0)));
        assert!(!e
            .warnings
            .iter()
            .any(|w| matches!(w, Warning::TooFewSegments { .. })));
        // A byte over 2 GiB needs a second segment; a tiny table needs one.
        let e = Estimate::new(facts(2 * GIB + 1, ON_DEMAND), settings(1, 1, Some(1.0)));
        assert_eq!(e.recommended_segments, 2);
        let e = Estimate::new(facts(10, ON_DEMAND), settings(1, 1, Some(1.0)));
        assert_eq!(e.recommended_segments, 1);
    }

    #[test]
    fn a_summed_budget_above_provisioned_capacity_warns_with_a_fitting_budget() {
        let provisioned = Billing::Provisioned {
            read_capacity: 1000,
        };
        let e = Estimate::new(facts(GIB, provisioned), settings(16, 8, Some(200.0)));
        let warning = Warning::BudgetAboveTable {
            summed: 1600.0,
            capacity: 1000,
            on_demand: false,
            segments_at_once: 8,
            fitting_budget: 125.0,
        };
        assert!(e.warnings.contains(&warning), "{:?}", e.warnings);
        // Exactly at capacity is fine.
        let e = Estimate::new(facts(GIB, provisioned), settings(16, 8, Some(125.0)));
        assert!(!e
            .warnings
            .iter()
            .any(|w| matches!(w, Warning::BudgetAboveTable { .. })));
        // An on-demand maximum throttles the same way; the fitting budget is rounded down.
        let capped = Billing::OnDemand {
            max_read_units: Some(100),
        };
        let e = Estimate::new(facts(GIB, capped), settings(3, 3, Some(50.0)));
        let w = e
            .warnings
            .iter()
            .find(|w| matches!(w, Warning::BudgetAboveTable { .. }))
            .expect("warned");
        assert_eq!(
            *w,
            Warning::BudgetAboveTable {
                summed: 150.0,
                capacity: 100,
                on_demand: true,
                segments_at_once: 3,
                fitting_budget: 33.33,
            }
        );
    }

    #[test]
    fn no_budget_on_an_on_demand_table_warns_and_a_provisioned_one_does_not() {
        let e = Estimate::new(facts(GIB, ON_DEMAND), settings(1, 1, None));
        assert!(e.warnings.contains(&Warning::NoBudgetOnDemand));
        let e = Estimate::new(facts(GIB, ON_DEMAND), settings(1, 1, Some(10.0)));
        assert!(!e.warnings.contains(&Warning::NoBudgetOnDemand));
        let provisioned = Billing::Provisioned { read_capacity: 10 };
        let e = Estimate::new(facts(GIB, provisioned), settings(1, 1, None));
        assert!(!e.warnings.contains(&Warning::NoBudgetOnDemand));
    }

    #[test]
    fn every_estimate_says_the_figures_may_be_six_hours_old() {
        let e = Estimate::new(facts(GIB, ON_DEMAND), settings(1, 1, Some(1.0)));
        assert_eq!(e.warnings, vec![Warning::StaleFigures]);
    }

    #[test]
    fn settings_that_cannot_be_estimated_are_refused() {
        let mut s = settings(1, 1, None);
        s.read_price_per_million = -1.0;
        assert!(s.check().is_err());
        s.read_price_per_million = f64::NAN;
        assert!(s.check().is_err());
        s.read_price_per_million = 0.0;
        assert!(s.check().is_ok());
        let s = settings(1, 1, Some(0.0));
        assert!(s.check().is_err());
        let s = settings(0, 1, None);
        assert_eq!(s.check().unwrap_err().class(), Class::Fatal);
    }
}
