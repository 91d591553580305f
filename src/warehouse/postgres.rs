//! PostgreSQL: parts are streamed from S3 through zstd or gzip decompression (by the part's key)
//! into `COPY … FROM STDIN`,
//! one megabyte at a time, so nothing touches disk and memory stays flat.

use async_compression::tokio::bufread::{GzipDecoder, ZstdDecoder};
use async_trait::async_trait;
use sqlx::PgConnection;
use std::time::Duration;
use tokio::io::AsyncReadExt;

use super::{
    describe_sql_error, is_retriable_sql, qualified, quote_ident, quote_literal, CopyTarget,
    Dialect, DialectName, WarehouseConfig, WarehouseError, LEDGER_TABLE,
};
use crate::schema::LogicalType;
use crate::stage::codec::PartCompression;
use crate::stage::store::ObjectStore;

/// Bytes handed to the server per CopyData message.
const COPY_CHUNK: usize = 1 << 20;

pub struct Postgres;

#[async_trait(?Send)]
impl Dialect for Postgres {
    fn name(&self) -> DialectName {
        DialectName::Postgres
    }

    fn streams_parts(&self) -> bool {
        true
    }

    fn column_type(&self, t: LogicalType) -> String {
        match t {
            LogicalType::Bigint => "bigint".into(),
            LogicalType::Decimal { precision, scale } => format!("numeric({precision},{scale})"),
            LogicalType::NumericText | LogicalType::Text { .. } | LogicalType::Binary => {
                "text".into()
            }
            LogicalType::Timestamp => "timestamptz".into(),
            LogicalType::Boolean => "boolean".into(),
            LogicalType::Json => "jsonb".into(),
        }
    }

    fn now(&self) -> &'static str {
        "now()"
    }

    fn session_setup(&self, _config: &WarehouseConfig) -> Vec<String> {
        vec!["SET application_name = 'dynamo-etl'".into()]
    }

    fn lock_timeout(&self, timeout: Duration) -> String {
        format!(
            "SET LOCAL lock_timeout = '{}ms'",
            timeout.as_millis().max(1)
        )
    }

    fn claim_segment(&self, schema: &str, run_id: &str, segment: u32) -> Vec<String> {
        vec![format!(
            "INSERT INTO {} (segment, run_id, loaded_at, row_count, table_counts) VALUES ({segment}, {}, now(), -1, '') ON CONFLICT (segment) DO NOTHING",
            qualified(schema, LEDGER_TABLE),
            quote_literal(run_id)
        )]
    }

    async fn copy_parts(
        &self,
        conn: &mut PgConnection,
        store: &ObjectStore,
        _config: &WarehouseConfig,
        target: CopyTarget<'_>,
    ) -> Result<u64, WarehouseError> {
        let columns: Vec<String> = target
            .table
            .column_names()
            .into_iter()
            .map(quote_ident)
            .collect();
        let statement = format!(
            "COPY {} ({}) FROM STDIN WITH (FORMAT csv, NULL '\\N', ENCODING 'UTF8')",
            qualified(target.schema, &target.table.table),
            columns.join(", ")
        );
        let mut rows = 0;
        for file in target.files {
            let load_error = |detail: String, retriable: bool| WarehouseError::Load {
                table: target.table.table.clone(),
                part: format!("s3://{}/{}", store.bucket(), file.key),
                detail,
                retriable,
            };
            let compression =
                PartCompression::of_part(&file.key).map_err(|e| load_error(e, false))?;
            let body = target.reader.open(&file.key).await?.into_async_read();
            let mut decoder: std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>> = match compression
            {
                PartCompression::Zstd => {
                    let mut d = ZstdDecoder::new(body);
                    d.multiple_members(true);
                    Box::pin(d)
                }
                PartCompression::Gzip => {
                    let mut d = GzipDecoder::new(body);
                    d.multiple_members(true);
                    Box::pin(d)
                }
            };
            let mut copy = conn
                .copy_in_raw(&statement)
                .await
                .map_err(|e| load_error(describe_sql_error(&e), is_retriable_sql(&e)))?;
            let mut buf = vec![0u8; COPY_CHUNK];
            loop {
                let mut filled = 0;
                // Fill the buffer as far as the stream allows, so messages stay large.
                while filled < buf.len() {
                    match decoder.read(&mut buf[filled..]).await {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) => {
                            let _ = copy.abort("reading the part failed").await;
                            return Err(load_error(format!("reading or decompressing: {e}"), true));
                        }
                    }
                }
                if filled == 0 {
                    break;
                }
                if let Err(e) = copy.send(&buf[..filled]).await {
                    return Err(load_error(describe_sql_error(&e), is_retriable_sql(&e)));
                }
            }
            let copied = copy
                .finish()
                .await
                .map_err(|e| load_error(describe_sql_error(&e), is_retriable_sql(&e)))?;
            if copied != file.rows {
                return Err(load_error(
                    format!(
                        "the part holds {} rows by its manifest but COPY loaded {copied}",
                        file.rows
                    ),
                    false,
                ));
            }
            rows += copied;
        }
        Ok(rows)
    }
}
