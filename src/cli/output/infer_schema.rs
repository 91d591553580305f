//! What `infer-schema` prints: the scan's figures, where the data-schemas evolved from, how
//! entities were told apart (with `--explain`, every candidate weighed), what a reviewer should
//! look at, what changed in each table, what narrows (with `--allow-narrowing`), and where they
//! were written.

use std::fmt::Write;

use dynamo_etl::phases::infer_schema::{InferReport, WrittenSnapshot};
use dynamo_etl::schema::entities::{
    is_type_name, Candidate, Decision, Outcome, Scope, Verdict, Weighed,
};
use dynamo_etl::schema::{DataSchema, MatchRule};

pub fn render(r: &InferReport) -> String {
    let mut out = String::new();
    let extent = if r.scan.complete {
        "the whole table".to_string()
    } else {
        format!("a sample: stopped after {} items", r.scan.items)
    };
    let _ = writeln!(
        out,
        "infer-schema {}: {} items in {} segments ({extent}), {:.1} read units, {} pages, {} retries, {} ms",
        r.table,
        r.scan.items,
        r.total_segments,
        r.scan.read_units,
        r.scan.pages,
        r.scan.retries,
        r.scan.duration.as_millis()
    );
    let previous: &[DataSchema] = r
        .previous
        .as_ref()
        .map(|p| &p.schemas.schemas[..])
        .unwrap_or(&[]);
    match (&r.previous, r.allow_narrowing) {
        (None, _) => {
            let _ = writeln!(out, "no previous data-schemas: inferred from scratch");
        }
        (Some(p), false) => {
            let _ = writeln!(
                out,
                "evolved from {} ({}): names and order kept, types only widened",
                p.source, p.reason
            );
        }
        (Some(p), true) => {
            let _ = writeln!(
                out,
                "--allow-narrowing: inferred from scratch, compared with {}",
                p.source
            );
        }
    }
    for decision in &r.plan.decisions {
        let _ = writeln!(out, "entities: {}", outcome(decision));
        if r.explain {
            explain(&mut out, decision);
        }
    }
    for finding in &r.plan.findings {
        let _ = writeln!(out, "drift: {}", finding.describe(&r.table));
    }
    let mut tables: Vec<&DataSchema> = r.next.schemas.iter().collect();
    tables.sort_by(|a, b| a.table.cmp(&b.table));
    for schema in tables {
        let before = previous.iter().find(|p| p.table == schema.table);
        let changes = changes(before, schema);
        let summary = if before.is_none() {
            "new table".to_string()
        } else if changes.is_empty() {
            "unchanged".to_string()
        } else {
            changes.join("; ")
        };
        let _ = writeln!(
            out,
            "  {} ({} columns): {summary}",
            schema.table,
            schema.columns.len()
        );
    }
    if r.allow_narrowing {
        if r.lost.is_empty() {
            let _ = writeln!(
                out,
                "nothing narrows compared with the previous data-schemas"
            );
        } else {
            let _ = writeln!(
                out,
                "{} change(s) narrow the previous data-schemas:",
                r.lost.len()
            );
            for n in &r.lost {
                let _ = writeln!(out, "  {n}\n      would break: {}", n.consequence());
            }
        }
    }
    if let Some(dir) = &r.written_static {
        let _ = writeln!(
            out,
            "static copy written to {}/ ({} files); review it like code",
            dir.display(),
            r.next.schemas.len()
        );
    }
    match &r.snapshot {
        Some(WrittenSnapshot { id, location }) => {
            let _ = writeln!(
                out,
                "snapshot {id} written to {location}{id}/ ({} files); runs planned from now on use it",
                r.next.schemas.len()
            );
        }
        None => {
            let _ = writeln!(out, "no snapshot written (--no-schema-cache)");
        }
    }
    out
}

/// A decision in one sentence.
fn outcome(d: &Decision) -> String {
    let names = || {
        d.tables
            .iter()
            .map(|(t, _, _)| t.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let told_by = d
        .chosen
        .as_ref()
        .map(Candidate::describe)
        .unwrap_or_default();
    match (&d.outcome, &d.scope) {
        (Outcome::Split { fill }, Scope::All) => format!(
            "{told_by} tell them apart: {} tables ({}), {:.0}% of their cells filled ({:.0}% in one table)",
            d.tables.len(),
            names(),
            fill * 100.0,
            d.one_table_fill * 100.0
        ),
        (Outcome::Split { .. }, Scope::Unclaimed) => format!(
            "{} item(s) no previous rule takes: {told_by} name {} new table(s) ({})",
            d.items,
            d.tables.len(),
            names()
        ),
        (Outcome::Split { .. }, Scope::Table(table)) => format!(
            "table {table}: {} item(s) with attributes it never had and little of what it has are new entities, told apart by {told_by}: new table(s) {}, tried before {table}",
            d.tables.iter().map(|(_, _, n)| n).sum::<u64>(),
            names()
        ),
        (Outcome::OneTable { asked: true }, _) => format!(
            "one table, {}: --prefix-delimiter none puts every item in one table",
            names()
        ),
        (Outcome::OneTable { asked: false }, _) => format!(
            "one table, {}: no type attribute or key prefix tells entities apart (see --explain)",
            names()
        ),
        (Outcome::Unclassified, _) => format!(
            "{} item(s) no previous rule takes stay in _unclassified: no type attribute or key prefix names them",
            d.items
        ),
    }
}

/// Every candidate of a decision with its figures, the one-table baseline, and the tables made.
fn explain(out: &mut String, d: &Decision) {
    let scope = match &d.scope {
        Scope::All => "every item".to_string(),
        Scope::Unclaimed => "the items no previous rule takes".to_string(),
        Scope::Table(t) => format!("the items of table {t}"),
    };
    let _ = writeln!(out, "  candidates weighed for {scope} ({} items):", d.items);
    let _ = writeln!(
        out,
        "    {:<44} {:>7} {:>9} {:>10} {:>6}  verdict",
        "candidate", "values", "coverage", "separation", "fill"
    );
    let mut hidden = 0;
    for w in &d.weighed {
        if minor(w) {
            hidden += 1;
            continue;
        }
        let verdict = match &w.verdict {
            Verdict::Chosen => "chosen".to_string(),
            Verdict::Behind(why) => format!("not chosen: {why}"),
            Verdict::Refused(why) => format!("refused: {why}"),
        };
        let _ = writeln!(
            out,
            "    {:<44} {:>7} {:>8.1}% {:>10} {:>6}  {verdict}",
            w.candidate.describe(),
            w.values
                .map_or_else(|| "many".to_string(), |v| v.to_string()),
            w.coverage * 100.0,
            w.separation
                .map_or_else(|| "-".to_string(), |s| format!("{s:.2}")),
            w.fill
                .map_or_else(|| "-".to_string(), |f| format!("{f:.2}")),
        );
    }
    let _ = writeln!(
        out,
        "    {:<44} {:>7} {:>8.1}% {:>10} {:>6.2}",
        "one table", 1, 100.0, "-", d.one_table_fill
    );
    if hidden > 0 {
        let _ = writeln!(
            out,
            "    ({hidden} other attribute(s) refused, in fewer than half the items and not named like a type attribute)"
        );
    }
    for (table, rule, items) in &d.tables {
        let _ = writeln!(
            out,
            "    -> {table}: {} ({items} items)",
            rule.as_ref().map_or_else(
                || "every item no rule takes".to_string(),
                MatchRule::describe
            )
        );
    }
}

/// A refused attribute few items have and whose name says nothing: listing every optional
/// attribute of a wide table would hide the candidates that matter.
fn minor(w: &Weighed) -> bool {
    matches!(&w.candidate, Candidate::Value(a) if !is_type_name(a))
        && !w.eligible()
        && w.coverage < 0.5
}

/// What evolution changed in one table, for the report.
fn changes(before: Option<&DataSchema>, after: &DataSchema) -> Vec<String> {
    let Some(before) = before else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for c in &after.columns {
        match before.columns.iter().find(|p| p.attribute == c.attribute) {
            None => out.push(format!("new column {} {}", c.column, c.logical_type.name())),
            Some(p) => {
                if p.logical_type != c.logical_type {
                    out.push(format!(
                        "{} {} -> {}",
                        c.column,
                        p.logical_type.name(),
                        c.logical_type.name()
                    ));
                }
                if p.nullable != c.nullable {
                    let now = if c.nullable { "nullable" } else { "not null" };
                    out.push(format!("{} now {now}", c.column));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynamo_etl::schema::entities::{infer_items, Strategy};
    use dynamo_etl::testkit::layouts;

    #[test]
    fn explain_lists_every_candidate_with_its_figures_and_the_choice() {
        let layout = layouts::electrodb();
        let plan = infer_items("t", &layout.keys, &[], Strategy::Auto, &layout.items());
        let decision = &plan.decisions[0];
        let mut text = String::new();
        explain(&mut text, decision);
        for expected in [
            "candidates weighed for every item (40 items):",
            "values of __edb_e__",
            "chosen",
            "prefixes of pk",
            "refused: one value (\"$taskapp#\")",
            "prefixes of sk",
            "not chosen: as good",
            "one table",
            "-> employee: __edb_e__ = \"employee\" (12 items)",
        ] {
            assert!(text.contains(expected), "{expected:?} not in\n{text}");
        }
        // The chosen candidate is listed first, with its figures.
        let first = text.lines().nth(2).unwrap();
        assert!(
            first.contains("values of __edb_e__") && first.contains("100.0%"),
            "{text}"
        );
        // Attributes that are plainly not type attributes are counted, not listed.
        assert!(!text.contains("values of firstName"), "{text}");
        assert!(text.contains("other attribute(s) refused"), "{text}");
        let line = outcome(decision);
        assert!(
            line.starts_with(
                "values of __edb_e__ tell them apart: 3 tables (employee, office, task)"
            ),
            "{line}"
        );
    }

    #[test]
    fn one_table_says_why() {
        let items: Vec<_> = layouts::id_prefixes(3).items();
        let keys = ["pk".to_string(), "sk".to_string()];
        let plan = infer_items("t", &keys, &[], Strategy::OneTable, &items);
        let line = outcome(&plan.decisions[0]);
        assert_eq!(
            line,
            "one table, t: --prefix-delimiter none puts every item in one table"
        );
    }
}
