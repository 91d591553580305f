//! The warehouse's side of the fingerprints (`staging::fingerprint`): one query per table
//! recomputes, from the stored values, the rows, each column's non-NULL count and digest and the
//! row digest, and compares them with what the run's manifests add up to.
//!
//! Each dialect says, per logical type, how to hash a stored value
//! ([`Warehouse::value_hash_sql`]); where its documentation does not pin the rendering a digest
//! needs, it says `None` and the column is checked by its non-NULL count only ("count-only"),
//! and so is the table's row digest. A proof never guesses: a column is either proven or
//! reported as count-only.

use std::collections::BTreeMap;
use std::fmt;

use super::sql::{qualified, quote_ident, Session};
use super::{Warehouse, WarehouseError};
use crate::schema::{DataSchema, LogicalType};
use crate::staging::fingerprint::{
    covered_columns, covered_types, ColumnFingerprint, Digest, Fingerprint,
};
use crate::staging::manifest::{Committed, SegmentManifest};
use crate::staging::plan::RunPlan;

/// How one column stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnCheck {
    /// Its non-NULL count and digest equal the manifests'.
    Proven,
    /// Its non-NULL count equals the manifests'; the dialect cannot compute its digest.
    CountOnly,
    /// What differs, with both figures.
    Mismatch(String),
}

/// One table's proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableProof {
    pub table: String,
    /// The table's rows, when they differ from the manifests': (expected, found).
    pub rows: Option<(u64, u64)>,
    /// The row digest: proven, count-only (some column is), or a mismatch.
    pub row_digest: ColumnCheck,
    pub columns: Vec<(String, ColumnCheck)>,
}

impl TableProof {
    pub fn mismatches(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some((expected, found)) = self.rows {
            out.push(format!(
                "table {} has {found} rows where the manifests add up to {expected}",
                self.table
            ));
        }
        for (column, check) in &self.columns {
            if let ColumnCheck::Mismatch(what) = check {
                out.push(format!("table {}, column {column}: {what}", self.table));
            }
        }
        if let ColumnCheck::Mismatch(what) = &self.row_digest {
            out.push(format!("table {}, rows: {what}", self.table));
        }
        out
    }

    pub fn proven_columns(&self) -> Vec<&str> {
        self.columns_where(|c| *c == ColumnCheck::Proven)
    }

    pub fn count_only_columns(&self) -> Vec<&str> {
        self.columns_where(|c| *c == ColumnCheck::CountOnly)
    }

    fn columns_where(&self, keep: impl Fn(&ColumnCheck) -> bool) -> Vec<&str> {
        self.columns
            .iter()
            .filter(|(_, c)| keep(c))
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

/// Which columns of one table a swap proved, and which it counted only: what `report.json`
/// records per table.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenColumns {
    pub proven: Vec<String>,
    pub count_only: Vec<String>,
}

/// The proof of a whole generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// Some segment's manifest carries no fingerprints (written by an older version): only the
    /// counts were checked.
    NotFingerprinted,
    Tables(Vec<TableProof>),
}

impl Proof {
    /// Per table, its proven and count-only columns (none when not fingerprinted).
    pub fn columns(&self) -> BTreeMap<String, ProvenColumns> {
        let Proof::Tables(tables) = self else {
            return BTreeMap::new();
        };
        let owned = |v: Vec<&str>| v.into_iter().map(str::to_string).collect();
        tables
            .iter()
            .map(|t| {
                let figures = ProvenColumns {
                    proven: owned(t.proven_columns()),
                    count_only: owned(t.count_only_columns()),
                };
                (t.table.clone(), figures)
            })
            .collect()
    }

    pub fn mismatches(&self) -> Vec<String> {
        match self {
            Proof::NotFingerprinted => Vec::new(),
            Proof::Tables(t) => t.iter().flat_map(TableProof::mismatches).collect(),
        }
    }
}

impl fmt::Display for Proof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proof::NotFingerprinted => f.write_str("not fingerprinted (counts only)"),
            Proof::Tables(tables) => {
                let proven: usize = tables.iter().map(|t| t.proven_columns().len()).sum();
                let counted: usize = tables.iter().map(|t| t.count_only_columns().len()).sum();
                write!(f, "{proven} columns proven, {counted} count-only")
            }
        }
    }
}

/// What the manifests of `plan`'s run add up to per table, or `None` when a segment is not
/// fingerprinted (or not committed).
pub fn expected(plan: &RunPlan, manifests: &[Committed]) -> Option<BTreeMap<String, Fingerprint>> {
    let manifests: Vec<&SegmentManifest> = manifests
        .iter()
        .map(Committed::manifest)
        .collect::<Option<_>>()?;
    expected_of(plan, &manifests)
}

/// What `manifests` (every segment's) add up to per table, or `None` when one is not
/// fingerprinted.
pub fn expected_of(
    plan: &RunPlan,
    manifests: &[&SegmentManifest],
) -> Option<BTreeMap<String, Fingerprint>> {
    let mut out = BTreeMap::new();
    for table in plan.warehouse_tables() {
        let mut sum = Fingerprint::empty(&covered_columns(&table));
        for manifest in manifests {
            sum.add(&manifest.fingerprint(&table)?);
        }
        out.insert(table.table.clone(), sum);
    }
    Some(out)
}

/// The query that measures `table` in `schema`, and which columns it proves. Its one row: the
/// rows; per column its non-NULL count and, for a proven column, its digest; then, when every
/// column is proven, the row digest. Every figure is cast to VARCHAR.
pub fn table_sql(
    dialect: &(impl Warehouse + ?Sized),
    schema: &str,
    table: &DataSchema,
) -> (String, Vec<bool>) {
    rows_sql(dialect, &qualified(schema, &table.table), table)
}

/// [`table_sql`] of the rows `from` gives (a table, or a derived table with `table`'s columns).
pub fn rows_sql(
    dialect: &(impl Warehouse + ?Sized),
    from: &str,
    table: &DataSchema,
) -> (String, Vec<bool>) {
    grouped_rows_sql(dialect, from, table, None)
}

/// [`rows_sql`], with the figures given per value of `group` (an expression over the rows),
/// that value first in each row.
fn grouped_rows_sql(
    dialect: &(impl Warehouse + ?Sized),
    from: &str,
    table: &DataSchema,
    group: Option<&str>,
) -> (String, Vec<bool>) {
    let names = covered_columns(table);
    let types = covered_types(table);
    let mut inner = Vec::new();
    let mut outer = vec!["CAST(COUNT(*) AS VARCHAR)".to_string()];
    let mut proven = Vec::new();
    for (i, (name, t)) in names.iter().zip(&types).enumerate() {
        let column = quote_ident(name);
        let alias = format!("h{i}");
        match dialect.value_hash_sql(*t, &column) {
            Some(hash) => {
                inner.push(format!("{hash} AS {alias}"));
                outer.push(format!("CAST(COUNT({alias}) AS VARCHAR)"));
                outer.push(format!(
                    "CAST(COALESCE(SUM({}), 0) AS VARCHAR)",
                    dialect.hash_number_sql(&alias)
                ));
                proven.push(true);
            }
            None => {
                inner.push(format!(
                    "CASE WHEN {column} IS NULL THEN NULL ELSE 1 END AS {alias}"
                ));
                outer.push(format!("CAST(COUNT({alias}) AS VARCHAR)"));
                proven.push(false);
            }
        }
    }
    if proven.iter().all(|p| *p) {
        let row = (0..names.len())
            .map(|i| format!("COALESCE(h{i}, 'n')"))
            .collect::<Vec<_>>()
            .join(" || ");
        let row = if row.is_empty() {
            "''".to_string()
        } else {
            row
        };
        outer.push(format!(
            "CAST(COALESCE(SUM({}), 0) AS VARCHAR)",
            dialect.hash_number_sql(&dialect.text_hash_sql(&row))
        ));
    }
    if let Some(group) = group {
        inner.push(format!("{group} AS g"));
        outer.insert(0, "g".to_string());
    }
    let inner = if inner.is_empty() {
        "1 AS h".to_string()
    } else {
        inner.join(", ")
    };
    let group_by = if group.is_some() { " GROUP BY g" } else { "" };
    (
        format!(
            "SELECT {} FROM (SELECT {inner} FROM {from}) AS v{group_by}",
            outer.join(", ")
        ),
        proven,
    )
}

/// Measures `table` in `schema` and compares it with `expected`.
pub async fn prove_table(
    dialect: &(impl Warehouse + ?Sized),
    session: &mut Session,
    schema: &str,
    table: &DataSchema,
    expected: &Fingerprint,
) -> Result<TableProof, WarehouseError> {
    let (sql, proven) = table_sql(dialect, schema, table);
    let row = session
        .query(&sql, &format!("fingerprinting {schema}.{}", table.table))
        .await?
        .into_iter()
        .next()
        .unwrap_or_default();
    let mut figures = row.into_iter().map(|f| f.unwrap_or_default());
    let mut next = || figures.next().unwrap_or_default();
    Ok(compare(table, expected, &proven, &mut next))
}

/// Measures the rows `from` gives as phase 1 fingerprints them: the figures the dialect
/// computes, digests absent where it cannot.
pub async fn measure(
    dialect: &(impl Warehouse + ?Sized),
    session: &mut Session,
    from: &str,
    table: &DataSchema,
) -> Result<Fingerprint, WarehouseError> {
    let (sql, proven) = rows_sql(dialect, from, table);
    let row = session
        .query(&sql, &format!("fingerprinting the rows of {from}"))
        .await?
        .into_iter()
        .next()
        .unwrap_or_default();
    let mut figures = row.into_iter().map(|f| f.unwrap_or_default());
    let mut next = || figures.next().unwrap_or_default();
    Ok(read_figures(table, &proven, &mut next))
}

/// The figures of one row of a [`rows_sql`] query, read in its order.
fn read_figures(
    table: &DataSchema,
    proven: &[bool],
    next: &mut dyn FnMut() -> String,
) -> Fingerprint {
    let count = |text: String| text.trim().parse::<u64>().unwrap_or(u64::MAX);
    let digest = |text: String| text.parse::<Digest>().unwrap_or(Digest(u128::MAX));
    let rows = count(next());
    let mut columns = Vec::new();
    for (name, is_proven) in covered_columns(table).into_iter().zip(proven) {
        let non_null = count(next());
        let digest = is_proven.then(|| digest(next()));
        columns.push(ColumnFingerprint {
            column: name,
            non_null,
            digest,
        });
    }
    let row_digest = proven.iter().all(|p| *p).then(|| digest(next()));
    Fingerprint {
        rows,
        row_digest,
        columns,
    }
}

/// Which loads wrote the rows of a table that failed its proof, where the dialect can tell
/// ([`Warehouse::row_writer_sql`]): the table's rows measured per writing transaction, each
/// compared with what the manifests of the segments that transaction loaded (per the ledger in
/// `schema`) add up to. Says, per segment (or segments loaded together) whose rows differ, what
/// differs, and how many rows no segment's load wrote (inserted or updated afterwards). `None`
/// where the dialect cannot tell.
pub async fn locate(
    dialect: &(impl Warehouse + ?Sized),
    session: &mut Session,
    schema: &str,
    table: &DataSchema,
    manifests: &[&SegmentManifest],
) -> Result<Option<Vec<String>>, WarehouseError> {
    let Some(writer) = dialect.row_writer_sql() else {
        return Ok(None);
    };
    if !super::ledger::table_exists(session, schema, super::ledger::LEDGER_TABLE).await? {
        return Ok(None);
    }
    // The ledger row of a segment is written by its load's transaction, like the rows it
    // copied; a load of many segments writes them all in one.
    let ledger = session
        .query(
            &format!(
                "SELECT CAST(segment AS VARCHAR), {writer} FROM {} WHERE row_count >= 0",
                qualified(schema, super::ledger::LEDGER_TABLE)
            ),
            "reading which transaction loaded each segment",
        )
        .await?;
    let mut loads: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for row in ledger {
        let mut fields = row.into_iter().map(Option::unwrap_or_default);
        let (segment, by) = (fields.next(), fields.next());
        if let (Some(segment), Some(by)) = (segment.and_then(|s| s.parse().ok()), by) {
            loads.entry(by).or_default().push(segment);
        }
    }
    let from = qualified(schema, &table.table);
    let (sql, proven) = grouped_rows_sql(dialect, &from, table, Some(writer));
    let mut measured: BTreeMap<String, Fingerprint> = BTreeMap::new();
    for row in session
        .query(
            &sql,
            &format!("fingerprinting {from} per loading transaction"),
        )
        .await?
    {
        let mut figures = row.into_iter().map(|f| f.unwrap_or_default());
        let mut next = || figures.next().unwrap_or_default();
        let by = next();
        measured.insert(by, read_figures(table, &proven, &mut next));
    }
    let names = covered_columns(table);
    let mut out = Vec::new();
    for (by, segments) in &loads {
        let mut want = Fingerprint::empty(&names);
        for m in manifests.iter().filter(|m| segments.contains(&m.segment)) {
            if let Some(f) = m.fingerprint(table) {
                want.add(&f);
            }
        }
        let got = measured
            .remove(by)
            .unwrap_or_else(|| Fingerprint::empty(&names));
        // Rows gone or added change every column's count; the rows say it once.
        let differs = if got.rows != want.rows {
            vec![format!(
                "table {}: {} rows where its manifests record {}",
                table.table, got.rows, want.rows
            )]
        } else {
            differences(&table.table, &want, &got)
        };
        if !differs.is_empty() {
            let which = match segments.as_slice() {
                [one] => format!("segment {one}"),
                many => format!(
                    "segments {} (loaded together)",
                    many.iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            out.push(format!("{which}'s rows differ: {}", differs.join("; ")));
        }
    }
    let foreign: u64 = measured.values().map(|f| f.rows).sum();
    if foreign > 0 {
        out.push(format!(
            "{foreign} row{} of table {} written by {} other than the segments' loads (inserted or updated after phase 3)",
            if foreign == 1 { "" } else { "s" },
            table.table,
            match measured.len() {
                1 => "a transaction".to_string(),
                n => format!("{n} transactions"),
            }
        ));
    }
    Ok(Some(out))
}

/// What differs between two measures of the same table's rows: rows, non-NULL counts, and the
/// digests both have. Empty when they agree.
pub fn differences(table: &str, want: &Fingerprint, got: &Fingerprint) -> Vec<String> {
    let mut out = Vec::new();
    if want.rows != got.rows {
        out.push(format!(
            "table {table}: {} rows where {} were expected",
            got.rows, want.rows
        ));
    }
    for w in &want.columns {
        let g = got.column(&w.column).cloned().unwrap_or_default();
        if g.non_null != w.non_null {
            out.push(format!(
                "table {table}, column {}: {} non-NULL values where {} were expected",
                w.column, g.non_null, w.non_null
            ));
        } else if let (Some(a), Some(b)) = (w.digest, g.digest) {
            if a != b {
                out.push(format!(
                    "table {table}, column {}: digest {b} where {a} was expected",
                    w.column
                ));
            }
        }
    }
    if let (Some(a), Some(b)) = (want.row_digest, got.row_digest) {
        if a != b && want.rows == got.rows {
            out.push(format!(
                "table {table}: row digest {b} where {a} was expected"
            ));
        }
    }
    out
}

/// Compares the figures a table's query returned, in its order, with `expected`.
fn compare(
    table: &DataSchema,
    expected: &Fingerprint,
    proven: &[bool],
    next: &mut dyn FnMut() -> String,
) -> TableProof {
    let count = |text: String| text.trim().parse::<u64>().unwrap_or(u64::MAX);
    let digest = |text: String| text.parse::<Digest>().unwrap_or(Digest(u128::MAX));
    let rows = count(next());
    let mut columns = Vec::new();
    for (name, is_proven) in covered_columns(table).into_iter().zip(proven) {
        let want = expected.column(&name).cloned().unwrap_or_default();
        let non_null = count(next());
        let found = is_proven.then(|| digest(next()));
        let check = if non_null != want.non_null {
            ColumnCheck::Mismatch(format!(
                "{non_null} non-NULL values where the manifests record {}",
                want.non_null
            ))
        } else {
            // A digest the manifests lack (phase 1 counted the column only) proves nothing.
            match (found, want.digest) {
                (None, _) | (_, None) => ColumnCheck::CountOnly,
                (Some(d), Some(w)) if d == w => ColumnCheck::Proven,
                (Some(d), Some(w)) => {
                    ColumnCheck::Mismatch(format!("digest {d} where the manifests record {w}"))
                }
            }
        };
        columns.push((name, check));
    }
    let row_digest = match (proven.iter().all(|p| *p), expected.row_digest) {
        (false, _) => ColumnCheck::CountOnly,
        (true, want) => match (digest(next()), want) {
            (_, None) => ColumnCheck::CountOnly,
            (d, Some(w)) if d == w => ColumnCheck::Proven,
            (d, Some(w)) => {
                ColumnCheck::Mismatch(format!("row digest {d} where the manifests record {w}"))
            }
        },
    };
    TableProof {
        table: table.table.clone(),
        rows: (rows != expected.rows).then_some((expected.rows, rows)),
        row_digest,
        columns,
    }
}

/// The table the proven fingerprints are kept in, beside the tables they describe: renamed with
/// them at the swap, so the target keeps those of the generation it serves, and a downstream
/// job can recompute and compare them.
pub const FINGERPRINTS_TABLE: &str = "_dynamo_etl_fingerprints";

/// The statements that record, in `schema`, the fingerprints `proof` checked against
/// `expected`: per table one `(rows)` line with its rows, per column its non-NULL count and
/// (when proven) digest, and a `(row digest)` line; `proof` says `proven` or `count-only`.
pub fn record_sql(
    dialect: &(impl Warehouse + ?Sized),
    schema: &str,
    expected: &BTreeMap<String, Fingerprint>,
    proof: &[TableProof],
) -> Vec<String> {
    let name = dialect.column_type(LogicalType::Text { max_bytes: 127 });
    let number = dialect.column_type(LogicalType::Decimal {
        precision: 38,
        scale: 0,
    });
    let kind = dialect.column_type(LogicalType::Text { max_bytes: 16 });
    let table = qualified(schema, FINGERPRINTS_TABLE);
    let mut out = vec![format!(
        "CREATE TABLE {table} (\n  \"table_name\" {name},\n  \"column_name\" {name},\n  \"count\" {number},\n  \"digest\" {number},\n  \"proof\" {kind}\n)"
    )];
    // What was proven keeps its digest; what was counted only, its counts.
    let kept: Vec<(&str, Fingerprint)> = proof
        .iter()
        .filter_map(|t| {
            let mut figures = expected.get(&t.table)?.clone();
            for c in &mut figures.columns {
                let check = t
                    .columns
                    .iter()
                    .find(|(n, _)| *n == c.column)
                    .map(|(_, k)| k);
                if check != Some(&ColumnCheck::Proven) {
                    c.digest = None;
                }
            }
            if t.row_digest != ColumnCheck::Proven {
                figures.row_digest = None;
            }
            Some((t.table.as_str(), figures))
        })
        .collect();
    out.extend(insert_kept_sql(
        dialect,
        &table,
        kept.iter().map(|(t, f)| (*t, f)),
    ));
    out
}

/// The insert of `figures` into the kept fingerprints `table`: per table a `(rows)` line, a
/// line per column and a `(row digest)` line; a figure without its digest is `count-only`.
fn insert_kept_sql<'a>(
    dialect: &(impl Warehouse + ?Sized),
    table: &str,
    figures: impl IntoIterator<Item = (&'a str, &'a Fingerprint)>,
) -> Option<String> {
    let lit = |s: &str| dialect.literal(s);
    let line = |name: &str, column: &str, count: u64, digest: Option<Digest>| {
        let (digest, proof) = match digest {
            Some(d) => (d.to_string(), "proven"),
            None => ("NULL".to_string(), "count-only"),
        };
        format!(
            "({}, {}, {count}, {digest}, '{proof}')",
            lit(name),
            lit(column)
        )
    };
    let mut rows = Vec::new();
    for (name, f) in figures {
        rows.push(format!(
            "({}, {}, {}, NULL, 'proven')",
            lit(name),
            lit("(rows)"),
            f.rows
        ));
        for c in &f.columns {
            rows.push(line(name, &c.column, c.non_null, c.digest));
        }
        rows.push(line(name, "(row digest)", f.rows, f.row_digest));
    }
    (!rows.is_empty()).then(|| {
        format!(
            "INSERT INTO {table} (\"table_name\", \"column_name\", \"count\", \"digest\", \"proof\") VALUES\n  {}",
            rows.join(",\n  ")
        )
    })
}

/// The proof `schema` keeps (its [`FINGERPRINTS_TABLE`], written when its generation was
/// proven at the swap): per table, its proven and count-only columns. `None` when it keeps none
/// (swapped with `--skip-verify`, or not fingerprinted).
pub async fn kept(
    session: &mut Session,
    schema: &str,
) -> Result<Option<BTreeMap<String, ProvenColumns>>, WarehouseError> {
    // A kept column is proven when its digest is kept (`insert_kept_sql`).
    Ok(read_kept(session, schema).await?.map(|tables| {
        tables
            .into_iter()
            .map(|(table, figures)| {
                let mut columns = ProvenColumns::default();
                for c in figures.columns {
                    match c.digest {
                        Some(_) => columns.proven.push(c.column),
                        None => columns.count_only.push(c.column),
                    }
                }
                (table, columns)
            })
            .collect()
    }))
}

/// The figures `schema` keeps (its [`FINGERPRINTS_TABLE`]), per table, as the fingerprint they
/// describe: a count-only column or row digest without its digest. `None` when it keeps none.
pub async fn read_kept(
    session: &mut Session,
    schema: &str,
) -> Result<Option<BTreeMap<String, Fingerprint>>, WarehouseError> {
    if !super::ledger::table_exists(session, schema, FINGERPRINTS_TABLE).await? {
        return Ok(None);
    }
    let rows = session
        .query(
            &format!(
                "SELECT \"table_name\", \"column_name\", CAST(\"count\" AS VARCHAR), CAST(\"digest\" AS VARCHAR) FROM {}",
                qualified(schema, FINGERPRINTS_TABLE)
            ),
            "reading the kept fingerprints",
        )
        .await?;
    let mut out: BTreeMap<String, Fingerprint> = BTreeMap::new();
    for row in rows {
        let mut fields = row.into_iter();
        let mut next = || fields.next().flatten();
        let (table, column, count, digest) = (next(), next(), next(), next());
        let (Some(table), Some(column)) = (table, column) else {
            continue;
        };
        let count = count
            .and_then(|c| c.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let digest = digest.and_then(|d| d.parse::<Digest>().ok());
        let figures = out.entry(table).or_default();
        match column.as_str() {
            "(rows)" => figures.rows = count,
            "(row digest)" => figures.row_digest = digest,
            _ => figures.columns.push(ColumnFingerprint {
                column,
                non_null: count,
                digest,
            }),
        }
    }
    Ok(Some(out))
}

/// The statements that replace what `schema` keeps with `figures` (a proven column is one with
/// its digest), after an increment moved the served rows on.
pub fn rewrite_kept_sql(
    dialect: &(impl Warehouse + ?Sized),
    schema: &str,
    figures: &BTreeMap<String, Fingerprint>,
) -> Vec<String> {
    let table = qualified(schema, FINGERPRINTS_TABLE);
    let mut out = vec![format!("DELETE FROM {table}")];
    out.extend(insert_kept_sql(
        dialect,
        &table,
        figures.iter().map(|(t, f)| (t.as_str(), f)),
    ));
    out
}

/// Proves every table of `plan`'s run in `schema` against `manifests`.
pub async fn prove(
    dialect: &(impl Warehouse + ?Sized),
    session: &mut Session,
    schema: &str,
    plan: &RunPlan,
    manifests: &[Committed],
) -> Result<Proof, WarehouseError> {
    let Some(expected) = expected(plan, manifests) else {
        return Ok(Proof::NotFingerprinted);
    };
    prove_against(dialect, session, schema, plan, &expected).await
}

/// Proves every table of `plan`'s run in `schema` against `expected` (a table it lacks is
/// expected empty).
pub async fn prove_against(
    dialect: &(impl Warehouse + ?Sized),
    session: &mut Session,
    schema: &str,
    plan: &RunPlan,
    expected: &BTreeMap<String, Fingerprint>,
) -> Result<Proof, WarehouseError> {
    let mut tables = Vec::new();
    for table in plan.warehouse_tables() {
        let want = match expected.get(&table.table) {
            Some(f) => f.clone(),
            None => Fingerprint::empty(&covered_columns(&table)),
        };
        tables.push(prove_table(dialect, session, schema, &table, &want).await?);
    }
    Ok(Proof::Tables(tables))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Column;

    fn table() -> DataSchema {
        DataSchema {
            columns: vec![Column {
                attribute: "n".into(),
                column: "n".into(),
                logical_type: LogicalType::Bigint,
                nullable: true,
            }],
            ..crate::schema::unclassified_schema("src", &[])
        }
    }

    fn expected() -> Fingerprint {
        Fingerprint {
            rows: 2,
            row_digest: Some(Digest(7)),
            columns: vec![
                ColumnFingerprint {
                    column: "n".into(),
                    non_null: 1,
                    digest: Some(Digest(5)),
                },
                ColumnFingerprint {
                    column: "_extra".into(),
                    non_null: 2,
                    digest: Some(Digest(9)),
                },
            ],
        }
    }

    fn run(figures: &[&str], proven: &[bool]) -> TableProof {
        let mut it = figures.iter().map(|s| s.to_string());
        compare(&table(), &expected(), proven, &mut || {
            it.next().unwrap_or_default()
        })
    }

    #[test]
    fn equal_figures_prove_and_a_differing_one_is_named_with_both_digests() {
        let p = run(&["2", "1", "5", "2", "9", "7"], &[true, true]);
        assert!(p.mismatches().is_empty(), "{p:?}");
        assert_eq!(p.proven_columns(), ["n", "_extra"]);
        let p = run(&["2", "1", "6", "2", "9", "7"], &[true, true]);
        let m = p.mismatches();
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(
            m[0].contains("table _unclassified, column n: digest 6 where the manifests record 5"),
            "{m:?}"
        );
        let p = run(&["2", "1", "5", "2", "9", "8"], &[true, true]);
        assert!(p.mismatches()[0].contains("row digest 8"), "{p:?}");
    }

    #[test]
    fn a_column_the_dialect_cannot_hash_is_count_only_and_so_are_the_rows() {
        let p = run(&["2", "1", "5", "2"], &[true, false]);
        assert!(p.mismatches().is_empty(), "{p:?}");
        assert_eq!(p.count_only_columns(), ["_extra"]);
        assert_eq!(p.row_digest, ColumnCheck::CountOnly);
        // Its count still counts.
        let p = run(&["2", "1", "5", "1"], &[true, false]);
        assert!(p.mismatches()[0].contains("1 non-NULL values where the manifests record 2"));
    }

    #[test]
    fn a_digest_the_manifests_lack_is_count_only_never_a_mismatch() {
        let mut want = expected();
        want.columns[0].digest = None;
        want.row_digest = None;
        let mut it = ["2", "1", "6", "2", "9", "8"].iter().map(|s| s.to_string());
        let p = compare(&table(), &want, &[true, true], &mut || {
            it.next().unwrap_or_default()
        });
        assert!(p.mismatches().is_empty(), "{p:?}");
        assert_eq!(p.count_only_columns(), ["n"]);
        assert_eq!(p.proven_columns(), ["_extra"]);
        assert_eq!(p.row_digest, ColumnCheck::CountOnly);
    }
}
