//! What `run` prints when it ends: the outcome, figures per table and per segment, drift,
//! rejected items and the commands that would finish the run.

use dynamo_etl::phases::run::RunReport;

pub fn render(report: &RunReport) -> String {
    let mut out = format!(
        "run {} of table {} → {} ({} segments, schemas {}): {} in {:.1} s\n",
        report.run_id,
        report.source_table,
        report.target,
        report.total_segments,
        report.schema_source,
        report.outcome,
        report.duration_ms as f64 / 1000.0
    );
    out.push_str(&format!(
        "  items scanned {}, rejected {}, read units {:.1}, retries {}\n",
        report.items_scanned,
        report.items_rejected.len(),
        report.read_units,
        report.retries
    ));
    out.push_str("  rows per table:\n");
    for (table, rows) in &report.rows {
        out.push_str(&format!("    {table:<24} {rows:>12}\n"));
    }
    if !report.proof.is_empty() {
        out.push_str("  values proven equal to phase 1's (columns proven / count-only):\n");
        for (table, p) in &report.proof {
            let counted = match p.count_only.is_empty() {
                true => String::new(),
                false => format!(" ({})", p.count_only.join(", ")),
            };
            out.push_str(&format!(
                "    {table:<24} {:>4} / {}{counted}\n",
                p.proven.len(),
                p.count_only.len()
            ));
        }
    }
    out.push_str("  segments (phase 1 ms / phase 3 ms):\n");
    for s in &report.segments {
        let budget = s.budget_use.map_or(String::new(), |u| {
            format!(" ({:.0}% of the read budget)", u * 100.0)
        });
        let resumed = s
            .resumed_after
            .map_or(String::new(), |n| format!(" (resumed after {n} items)"));
        out.push_str(&format!(
            "    {:>4}: {} items, {:.1} read units{budget}, {} ms{}{resumed} / {}\n",
            s.segment,
            s.items_scanned,
            s.read_units,
            s.phase1_ms,
            if s.reused { " (committed earlier)" } else { "" },
            s.phase3_ms.map_or("-".to_string(), |m| format!("{m} ms"))
        ));
    }
    if report.drift.values().any(|d| !d.is_empty()) {
        out.push_str(
            "  drift (attributes kept in _extra, or in _overflow where the reason says so):\n",
        );
        for (table, entries) in &report.drift {
            for e in entries {
                out.push_str(&format!(
                    "    {table}.{}: {}: {} items, e.g. {}\n",
                    e.attribute,
                    e.reason,
                    e.count,
                    e.examples.join(" ")
                ));
            }
        }
    }
    for r in report.items_rejected.iter().take(10) {
        out.push_str(&format!("  rejected {}: {}\n", r.key, r.reason));
    }
    if report.items_rejected.len() > 10 {
        out.push_str(&format!(
            "  … and {} more rejected items (see report.json)\n",
            report.items_rejected.len() - 10
        ));
    }
    for step in &report.next_steps {
        out.push_str(&format!("  next: {step}\n"));
    }
    out
}
