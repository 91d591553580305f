//! The text of `verify`: per table and column, proven, count-only or MISMATCH.

use dynamo_etl::phases::verify::Verified;
use dynamo_etl::warehouse::fingerprint::{ColumnCheck, Proof};

/// The lines `verify` prints.
pub fn lines(v: &Verified) -> Vec<String> {
    let tables = match &v.proof {
        Proof::NotFingerprinted => {
            return vec![format!(
                "{}: not fingerprinted (a manifest of the run was written without fingerprints); only counts can be checked, by replace's gate",
                v.schema
            )]
        }
        Proof::Tables(t) => t,
    };
    let mut out = vec![format!("{}: {}", v.schema, v.proof)];
    for t in tables {
        if let Some((expected, found)) = t.rows {
            out.push(format!(
                "  {:<24} (rows)  MISMATCH: {found} rows where the manifests add up to {expected}",
                t.table
            ));
        }
        let columns = t
            .columns
            .iter()
            .map(|(c, check)| (c.as_str(), check))
            .chain([("(row digest)", &t.row_digest)]);
        for (column, check) in columns {
            let state = match check {
                ColumnCheck::Proven => "proven".to_string(),
                ColumnCheck::CountOnly => "count-only".to_string(),
                ColumnCheck::Mismatch(what) => format!("MISMATCH: {what}"),
            };
            out.push(format!("  {:<24} {:<24} {state}", t.table, column));
        }
    }
    for (table, found) in &v.located {
        out.extend(found.iter().map(|f| format!("  {table:<24} where: {f}")));
    }
    out
}
