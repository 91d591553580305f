//! What `--estimate` prints: the figures of a full scan as an aligned table, then the warnings,
//! with numbers, money, sizes and durations written for people.

use dynamo_etl::phases::estimate::{Estimate, Pace, Warning};
use dynamo_etl::source::table::Billing;

/// The table `--estimate` prints, one aligned line per figure.
pub fn render(e: &Estimate) -> String {
    let f = &e.facts;
    let s = &e.settings;
    let mut rows: Vec<(&str, String)> = Vec::new();
    rows.push(("items", number(f.item_count as f64)));
    rows.push((
        "size",
        format!(
            "{} bytes ({})",
            number(f.size_bytes as f64),
            binary_size(f.size_bytes)
        ),
    ));
    rows.push((
        "billing",
        match f.billing {
            Billing::Provisioned { read_capacity } => {
                format!("provisioned, {} read units/s", number(read_capacity as f64))
            }
            Billing::OnDemand {
                max_read_units: None,
            } => "on-demand".to_string(),
            Billing::OnDemand {
                max_read_units: Some(max),
            } => format!("on-demand, at most {} read units/s", number(max as f64)),
        },
    ));
    let at_once = s.segments_at_once.min(s.total_segments);
    rows.push((
        "segments",
        match at_once == s.total_segments {
            true => format!("{}, all at once", s.total_segments),
            false => format!("{}, {at_once} at once", s.total_segments),
        },
    ));
    rows.push((
        "read budget",
        match (s.max_read_units, s.summed_budget()) {
            (Some(each), Some(sum)) => format!(
                "{} read units/s per segment, {} at once",
                number(each),
                number(sum)
            ),
            _ => "none (no --max-read-units)".to_string(),
        },
    ));
    let chosen = |strong: bool| match strong == s.consistent_read {
        true => " (this run)",
        false => "",
    };
    rows.push((
        "read units",
        format!(
            "{} eventually consistent{}, {} strongly consistent{}",
            number(e.eventually_consistent_units),
            chosen(false),
            number(e.strongly_consistent_units),
            chosen(true)
        ),
    ));
    rows.push((
        "cost",
        format!(
            "{} eventually consistent{}, {} strongly consistent{}",
            dollars(e.cost(e.eventually_consistent_units)),
            chosen(false),
            dollars(e.cost(e.strongly_consistent_units)),
            chosen(true)
        ),
    ));
    rows.push((
        "price",
        format!(
            "${} per million read request units, an on-demand list price \
             (--read-price-per-million){}",
            s.read_price_per_million,
            match f.billing {
                Billing::Provisioned { .. } => {
                    "; this provisioned table pays for its capacity instead"
                }
                Billing::OnDemand { .. } => "; provisioned tables pay for capacity instead",
            }
        ),
    ));
    rows.push((
        "time",
        match &e.pace {
            Pace::Budget { seconds, rate } => format!(
                "about {} at {} read units/s",
                duration(*seconds),
                number(*rate)
            ),
            Pace::TableCeiling {
                seconds,
                rate,
                on_demand,
            } => format!(
                "set by DynamoDB, not by this tool: at least {} at the table's {} of {} \
                 read units/s",
                duration(*seconds),
                match on_demand {
                    true => "on-demand maximum",
                    false => "provisioned capacity",
                },
                number(*rate as f64)
            ),
            Pace::Unbounded => {
                "set by DynamoDB, not by this tool (no --max-read-units)".to_string()
            }
        },
    ));
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut text = format!("Estimate of a full scan of table {}\n", f.table);
    for (label, value) in rows {
        text.push_str(&format!("  {label:<width$}  {value}\n"));
    }
    for w in &e.warnings {
        text.push_str(&format!("  {:<width$}  {}\n", "warning", warning(w)));
    }
    text
}

/// One warning of the table, as an operator reads it.
pub fn warning(w: &Warning) -> String {
    match w {
        Warning::TooFewSegments {
            segments,
            recommended,
        } => format!(
            "{segments} segment{} for this size: DynamoDB suggests starting from one segment \
             per 2 GB, {recommended} here (--total-segments {recommended})",
            if *segments == 1 { "" } else { "s" }
        ),
        Warning::BudgetAboveTable {
            summed,
            capacity,
            on_demand,
            segments_at_once,
            fitting_budget,
        } => {
            let what = match on_demand {
                true => "on-demand maximum",
                false => "provisioned read capacity",
            };
            format!(
                "the summed budget ({} read units/s over {segments_at_once} segment{} at \
                 once) is above the table's {what} of {} read units/s: the scan would be \
                 throttled and starve the table's own readers; pass --max-read-units {} or \
                 less",
                number(*summed),
                if *segments_at_once == 1 { "" } else { "s" },
                number(*capacity as f64),
                number(*fitting_budget),
            )
        }
        Warning::NoBudgetOnDemand => "no --max-read-units on an on-demand table: nothing in \
             this tool limits how fast the scan reads and is billed, or how much throughput \
             it takes from the table's other readers"
            .to_string(),
        Warning::StaleFigures => "DynamoDB refreshes the item count and size only about \
             every six hours: writes since then are not in these figures"
            .to_string(),
    }
}

/// `1234567.5` → `1,234,567.5`; whole numbers without decimals, others to two at most.
pub fn number(n: f64) -> String {
    let rounded = (n * 100.0).round() / 100.0;
    let whole = rounded.trunc() as u64;
    let digits = whole.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let fraction = rounded - whole as f64;
    if fraction > 0.0 {
        let decimals = format!("{fraction:.2}");
        grouped.push_str(decimals.trim_start_matches('0').trim_end_matches('0'));
    }
    grouped
}

/// Dollars to the cent, with a floor so that a tiny scan does not read as free.
pub fn dollars(d: f64) -> String {
    if d == 0.0 {
        "$0.00".to_string()
    } else if d < 0.005 {
        "under $0.01".to_string()
    } else {
        let cents = (d * 100.0).round();
        let whole = number((cents / 100.0).trunc());
        format!("${whole}.{:02}", (cents as u64) % 100)
    }
}

/// `1536` → `1.5 KiB`, up to TiB.
pub fn binary_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} bytes"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

/// Seconds in the largest two units that matter: `2h 05m`, `3m 07s`, `12s`.
pub fn duration(seconds: f64) -> String {
    if seconds < 1.0 {
        return "under a second".to_string();
    }
    let s = seconds.ceil() as u64;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec:02}s"),
        (0, _, _) => format!("{h}h {m:02}m"),
        _ => format!("{d}d {h:02}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynamo_etl::phases::estimate::{EstimateSettings, DEFAULT_READ_PRICE_PER_MILLION};
    use dynamo_etl::source::table::TableFacts;

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
    fn a_budget_above_the_table_names_the_budget_that_fits() {
        let text = warning(&Warning::BudgetAboveTable {
            summed: 1600.0,
            capacity: 1000,
            on_demand: false,
            segments_at_once: 8,
            fitting_budget: 125.0,
        });
        assert!(text.contains("pass --max-read-units 125 or less"), "{text}");
        let text = warning(&Warning::BudgetAboveTable {
            summed: 150.0,
            capacity: 100,
            on_demand: true,
            segments_at_once: 3,
            fitting_budget: 33.33,
        });
        assert!(text.contains("on-demand maximum of 100"), "{text}");
        assert!(text.contains("--max-read-units 33.33 or less"), "{text}");
        assert!(warning(&Warning::StaleFigures).contains("six hours"));
    }

    #[test]
    fn numbers_money_sizes_and_durations_read_well() {
        assert_eq!(number(0.0), "0");
        assert_eq!(number(999.0), "999");
        assert_eq!(number(1000.0), "1,000");
        assert_eq!(number(1_234_567.5), "1,234,567.5");
        assert_eq!(number(33.333), "33.33");
        assert_eq!(dollars(0.0), "$0.00");
        assert_eq!(dollars(0.004), "under $0.01");
        assert_eq!(dollars(0.16384), "$0.16");
        assert_eq!(dollars(12_345.678), "$12,345.68");
        assert_eq!(binary_size(512), "512 bytes");
        assert_eq!(binary_size(1536), "1.5 KiB");
        assert_eq!(binary_size(10 * GIB), "10.0 GiB");
        assert_eq!(duration(0.2), "under a second");
        assert_eq!(duration(12.0), "12s");
        assert_eq!(duration(187.0), "3m 07s");
        assert_eq!(duration(7500.0), "2h 05m");
        assert_eq!(duration(3.0 * 86_400.0 + 4.0 * 3600.0), "3d 04h");
    }

    /// The wording and layout operators read; change it on purpose only.
    #[test]
    fn the_printed_table_is_pinned() {
        let provisioned = Billing::Provisioned {
            read_capacity: 1000,
        };
        let e = Estimate::new(facts(10 * GIB, provisioned), settings(4, 4, Some(300.0)));
        let expected = "\
Estimate of a full scan of table orders
  items        1,234,567
  size         10,737,418,240 bytes (10.0 GiB)
  billing      provisioned, 1,000 read units/s
  segments     4, all at once
  read budget  300 read units/s per segment, 1,200 at once
  read units   1,310,720 eventually consistent (this run), 2,621,440 strongly consistent
  cost         $0.16 eventually consistent (this run), $0.33 strongly consistent
  price        $0.125 per million read request units, an on-demand list price (--read-price-per-million); this provisioned table pays for its capacity instead
  time         about 18m 13s at 1,200 read units/s
  warning      4 segments for this size: DynamoDB suggests starting from one segment per 2 GB, 5 here (--total-segments 5)
  warning      the summed budget (1,200 read units/s over 4 segments at once) is above the table's provisioned read capacity of 1,000 read units/s: the scan would be throttled and starve the table's own readers; pass --max-read-units 250 or less
  warning      DynamoDB refreshes the item count and size only about every six hours: writes since then are not in these figures
";
        assert_eq!(render(&e), expected);
    }

    #[test]
    fn an_unpaced_on_demand_estimate_says_dynamodb_sets_the_time() {
        let mut s = settings(1, 1, None);
        s.consistent_read = true;
        let text = render(&Estimate::new(facts(4096, ON_DEMAND), s));
        assert!(text.contains("  billing      on-demand\n"), "{text}");
        assert!(
            text.contains("read budget  none (no --max-read-units)"),
            "{text}"
        );
        assert!(
            text.contains("0.5 eventually consistent, 1 strongly consistent (this run)"),
            "{text}"
        );
        assert!(text.contains("under $0.01 eventually consistent"), "{text}");
        assert!(
            text.contains("time         set by DynamoDB, not by this tool (no --max-read-units)"),
            "{text}"
        );
        assert!(
            text.contains("an on-demand list price (--read-price-per-million); provisioned tables pay for capacity instead\n"),
            "{text}"
        );
        assert!(
            text.contains("warning      no --max-read-units on an on-demand table"),
            "{text}"
        );
    }
}
