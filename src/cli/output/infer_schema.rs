//! What `infer-schema` prints: the scan's figures, where the data-schemas evolved from, what
//! changed in each table, what narrows (with `--allow-narrowing`), and where they were written.

use std::fmt::Write;

use dynamo_etl::phases::infer_schema::{InferReport, WrittenSnapshot};
use dynamo_etl::schema::DataSchema;

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
