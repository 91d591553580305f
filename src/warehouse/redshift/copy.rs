//! `COPY … FROM 's3://…'`: Redshift reads the parts itself, through a COPY manifest that lists
//! exactly those parts as mandatory (a missing part fails the load instead of being skipped). No
//! TRUNCATECOLUMNS, no MAXERROR, no ACCEPTINVCHARS: they hide loss.

use super::super::sql::{qualified, quote_ident};
use super::literal;
use super::Options;
use crate::schema::DataSchema;
use crate::staging::manifest::PartFile;
use crate::staging::parts::codec::PartCompression;
use crate::staging::parts::csv::NULL_MARKER;

/// The COPY option that names a codec.
pub fn compression_option(codec: PartCompression) -> &'static str {
    match codec {
        PartCompression::Zstd => "ZSTD",
        PartCompression::Gzip => "GZIP",
    }
}

/// The COPY statement for one table, from the COPY manifest at `manifest_url`.
pub fn copy_statement(
    schema: &str,
    table: &DataSchema,
    manifest_url: &str,
    compression: PartCompression,
    options: &Options,
) -> String {
    let columns: Vec<String> = table.column_names().into_iter().map(quote_ident).collect();
    let mut sql = format!(
        "COPY {} ({}) FROM {} IAM_ROLE {} MANIFEST FORMAT AS CSV {} NULL AS {} TIMEFORMAT 'auto' DATEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF",
        qualified(schema, &table.table),
        columns.join(", "),
        literal(manifest_url),
        match options.iam_role.as_deref() {
            // `IAM_ROLE default` uses the role set as the cluster's default.
            None | Some("default") => "default".to_string(),
            Some(arn) => literal(arn),
        },
        compression_option(compression),
        literal(NULL_MARKER),
    );
    if let Some(region) = &options.s3_region {
        sql.push_str(&format!(" REGION {}", literal(region)));
    }
    sql
}

/// The COPY manifest for a set of parts: every entry mandatory, so a missing part fails the COPY
/// instead of being skipped
/// (<https://docs.aws.amazon.com/redshift/latest/dg/loading-data-files-using-manifest.html>).
pub fn copy_manifest<'f>(bucket: &str, files: impl IntoIterator<Item = &'f PartFile>) -> String {
    let entries: Vec<serde_json::Value> = files
        .into_iter()
        .map(|f| {
            serde_json::json!({
                "url": format!("s3://{bucket}/{}", f.key),
                "mandatory": true,
                "meta": { "content_length": f.bytes },
            })
        })
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({ "entries": entries }))
        .expect("manifest serialises")
}
