//! Amazon Redshift: each table's parts of a segment are loaded by one `COPY … FROM 's3://…'` with
//! a COPY manifest listing exactly those parts (mandatory entries, so a missing part fails the
//! load instead of being skipped). No TRUNCATECOLUMNS, no MAXERROR, no ACCEPTINVCHARS: they hide
//! loss. A failed COPY is explained from `stl_load_errors` (provisioned clusters) or
//! `sys_load_error_detail` (Serverless).

use async_trait::async_trait;
use sqlx::PgConnection;
use std::time::Duration;

use super::{
    execute, qualified, query_strings, quote_ident, CopyTarget, Dialect, DialectName,
    WarehouseConfig, WarehouseError, LEDGER_TABLE,
};
use crate::schema::{varchar_width, LogicalType};
use crate::stage::codec::PartCompression;
use crate::stage::store::ObjectStore;

/// Widest VARCHAR Redshift allows, in bytes.
pub const MAX_VARCHAR: u32 = 65535;

pub struct Redshift;

/// A Redshift string literal: quotes doubled, and backslashes doubled because Redshift literals
/// treat backslash as an escape character.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// The COPY statement for one table of one segment.
pub fn copy_statement(
    schema: &str,
    table: &crate::schema::DataSchema,
    manifest_url: &str,
    compression: PartCompression,
    config: &WarehouseConfig,
) -> String {
    let columns: Vec<String> = table.column_names().into_iter().map(quote_ident).collect();
    let mut sql = format!(
        "COPY {} ({}) FROM {} IAM_ROLE {} MANIFEST FORMAT AS CSV {} NULL AS {} TIMEFORMAT 'auto' DATEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF",
        qualified(schema, &table.table),
        columns.join(", "),
        literal(manifest_url),
        match config.iam_role.as_deref() {
            // `IAM_ROLE default` uses the role set as the cluster's default.
            None | Some("default") => "default".to_string(),
            Some(arn) => literal(arn),
        },
        compression.redshift_option(),
        literal(crate::stage::csv::NULL_MARKER),
    );
    if let Some(region) = &config.s3_region {
        sql.push_str(&format!(" REGION {}", literal(region)));
    }
    sql
}

/// The COPY manifest for a set of parts.
pub fn copy_manifest(bucket: &str, files: &[crate::stage::manifest::PartFile]) -> String {
    let entries: Vec<serde_json::Value> = files
        .iter()
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

#[async_trait(?Send)]
impl Dialect for Redshift {
    fn name(&self) -> DialectName {
        DialectName::Redshift
    }

    /// COPY reads the parts from S3 itself.
    fn streams_parts(&self) -> bool {
        false
    }

    fn column_type(&self, t: LogicalType) -> String {
        match t {
            LogicalType::Bigint => "BIGINT".into(),
            LogicalType::Decimal { precision, scale } => format!("DECIMAL({precision},{scale})"),
            LogicalType::NumericText | LogicalType::Binary => format!("VARCHAR({MAX_VARCHAR})"),
            LogicalType::Text { max_bytes } => format!("VARCHAR({})", varchar_width(max_bytes)),
            LogicalType::Timestamp => "TIMESTAMPTZ".into(),
            LogicalType::Boolean => "BOOLEAN".into(),
            LogicalType::Json => "SUPER".into(),
        }
    }

    fn now(&self) -> &'static str {
        "GETDATE()"
    }

    fn session_setup(&self, config: &WarehouseConfig) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(group) = &config.query_group {
            out.push(format!("SET query_group TO {}", literal(group)));
        }
        out
    }

    fn lock_timeout(&self, timeout: Duration) -> String {
        // Redshift has no lock_timeout; a statement timeout bounds the wait (and the swap is only
        // metadata changes, so it never needs long).
        format!("SET statement_timeout TO {}", timeout.as_millis().max(1))
    }

    fn claim_segment(&self, schema: &str, run_id: &str, segment: u32) -> Vec<String> {
        // Redshift does not enforce primary keys: serialise claims with a table lock instead.
        let ledger = qualified(schema, LEDGER_TABLE);
        vec![
            format!("LOCK {ledger}"),
            format!(
                "INSERT INTO {ledger} (segment, run_id, loaded_at, row_count, table_counts) SELECT {segment}, {}, GETDATE(), -1, '' WHERE NOT EXISTS (SELECT 1 FROM {ledger} WHERE segment = {segment})",
                literal(run_id)
            ),
        ]
    }

    async fn copy_parts(
        &self,
        conn: &mut PgConnection,
        store: &ObjectStore,
        config: &WarehouseConfig,
        target: CopyTarget<'_>,
    ) -> Result<u64, WarehouseError> {
        let compression = PartCompression::of_parts(target.files.iter().map(|f| f.key.as_str()))
            .map_err(|detail| WarehouseError::Load {
                table: target.table.table.clone(),
                part: target
                    .files
                    .first()
                    .map(|f| format!("s3://{}/{}", store.bucket(), f.key))
                    .unwrap_or_default(),
                detail,
                retriable: false,
            })?;
        let manifest_key = format!("{}{}.manifest", target.scratch_prefix, target.table.table);
        store
            .put(
                &manifest_key,
                copy_manifest(store.bucket(), target.files).into(),
                "application/json",
            )
            .await?;
        let manifest_url = format!("s3://{}/{manifest_key}", store.bucket());
        let sql = copy_statement(
            target.schema,
            target.table,
            &manifest_url,
            compression,
            config,
        );
        let part = manifest_url.clone();
        execute(conn, &sql, "COPY").await.map_err(|e| match e {
            WarehouseError::Sql {
                detail, retriable, ..
            } => WarehouseError::Load {
                table: target.table.table.clone(),
                part: part.clone(),
                detail,
                retriable,
            },
            other => other,
        })?;
        let rows = query_strings(
            conn,
            "SELECT pg_last_copy_count()",
            "reading the COPY count",
        )
        .await?;
        rows.first()
            .and_then(|r| r.first().cloned().flatten())
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| WarehouseError::Load {
                table: target.table.table.clone(),
                part,
                detail: "pg_last_copy_count() returned no number".into(),
                retriable: false,
            })
    }
}

/// Reads why the session's last COPY failed, in plain words, after its transaction was rolled
/// back. Tries `sys_load_error_detail` (Serverless and newer clusters), then `stl_load_errors`.
pub async fn load_error_report(conn: &mut PgConnection) -> Option<String> {
    const QUERIES: &[&str] = &[
        "SELECT file_name::varchar, line_number::varchar, column_name::varchar, column_type::varchar, error_code::varchar, error_message::varchar, TRIM(column_value)::varchar FROM sys_load_error_detail WHERE query_id = pg_last_copy_id() ORDER BY line_number LIMIT 5",
        "SELECT TRIM(filename)::varchar, line_number::varchar, TRIM(colname)::varchar, TRIM(type)::varchar, err_code::varchar, TRIM(err_reason)::varchar, TRIM(raw_field_value)::varchar FROM stl_load_errors WHERE query = pg_last_copy_id() ORDER BY line_number LIMIT 5",
    ];
    for q in QUERIES {
        let Ok(rows) = query_strings(conn, q, "reading load errors").await else {
            continue;
        };
        if rows.is_empty() {
            continue;
        }
        let lines: Vec<String> = rows
            .iter()
            .map(|r| {
                let f = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                format!(
                    "{} line {}, column {} ({}): {} (error {}); value {:?}",
                    f(0),
                    f(1),
                    f(2),
                    f(3),
                    f(5),
                    f(4),
                    f(6)
                )
            })
            .collect();
        return Some(lines.join("\n"));
    }
    None
}
