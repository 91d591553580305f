//! The warehouse side: one interface, one module per SQL dialect.
//!
//! Everything shared — naming of the staging/previous schemas, the load ledger, DDL, the swap and
//! its gate — lives here and asks the [`Dialect`] only what differs: column types, how a segment's
//! parts get into a table, how to bound lock waits, how to claim a segment exactly once. Adding a
//! dialect means one new module and one line in [`dialect_for`].
//!
//! Both dialects speak the PostgreSQL wire protocol, so one connection type (sqlx `PgConnection`)
//! serves both; generated SQL is sent as simple queries (no prepared statements), which Redshift
//! requires for DDL and COPY.

pub mod postgres;
pub mod redshift;

use async_trait::async_trait;
use sqlx::{Connection, PgConnection};
use std::fmt;
use std::time::Duration;

use crate::schema::{DataSchema, LogicalType};
use crate::stage::manifest::PartFile;
use crate::stage::store::{ObjectStore, PartReader};

/// Suffix of the schema that a run is loaded into.
pub const STAGING_SUFFIX: &str = "_staging";
/// Suffix of the schema that keeps the generation replaced last, for rollback.
pub const PREVIOUS_SUFFIX: &str = "_previous";
/// Ledger of loaded segments (one row per segment and table), kept in the staging schema and so
/// carried into the target by the swap: it tells which run the live tables came from.
pub const LEDGER_TABLE: &str = "_dynamo_etl_ledger";
/// One row naming the run a staging schema was prepared for.
pub const RUN_TABLE: &str = "_dynamo_etl_run";

/// Which SQL dialect a warehouse speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DialectName {
    Postgres,
    Redshift,
}

/// A connection URL that never shows its password.
#[derive(Clone)]
pub struct WarehouseUrl(String);

impl WarehouseUrl {
    pub fn new(url: &str) -> Self {
        WarehouseUrl(url.to_string())
    }

    /// The URL to hand to the driver (`redshift://` becomes `postgres://`).
    fn for_driver(&self) -> String {
        match self.0.strip_prefix("redshift://") {
            Some(rest) => format!("postgres://{rest}"),
            None => self.0.clone(),
        }
    }

    /// The dialect the URL's scheme implies, if any.
    pub fn implied_dialect(&self) -> Option<DialectName> {
        if self.0.starts_with("redshift://") {
            Some(DialectName::Redshift)
        } else if self.0.starts_with("postgres://") || self.0.starts_with("postgresql://") {
            Some(DialectName::Postgres)
        } else {
            None
        }
    }
}

impl fmt::Display for WarehouseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // scheme://user:password@host/db?params → scheme://user:***@host/db (params dropped: they
        // may hold passwords too).
        let without_query = self.0.split('?').next().unwrap_or_default();
        match (without_query.find("://"), without_query.rfind('@')) {
            (Some(s), Some(at)) if at > s => {
                let userinfo = &without_query[s + 3..at];
                let user = userinfo.split(':').next().unwrap_or_default();
                let masked = if userinfo.contains(':') { ":***" } else { "" };
                write!(
                    f,
                    "{}{user}{masked}{}",
                    &without_query[..s + 3],
                    &without_query[at..]
                )
            }
            _ => f.write_str(without_query),
        }
    }
}

impl fmt::Debug for WarehouseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WarehouseUrl({self})")
    }
}

/// Who gets read access to the target after each swap. `group:NAME` and `role:NAME` become
/// Redshift's `GROUP "NAME"` / `ROLE "NAME"`; anything else is a user or PostgreSQL role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grantee {
    Name(String),
    Group(String),
    Role(String),
}

impl std::str::FromStr for Grantee {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (kind, name) = match s.split_once(':') {
            Some(("group", n)) => (1, n),
            Some(("role", n)) => (2, n),
            Some((other, _)) => {
                return Err(format!(
                    "grantee {s:?}: unknown kind {other:?} (use group:NAME, role:NAME or NAME)"
                ))
            }
            None => (0, s),
        };
        if name.is_empty() {
            return Err(format!("grantee {s:?} has no name"));
        }
        Ok(match kind {
            1 => Grantee::Group(name.to_string()),
            2 => Grantee::Role(name.to_string()),
            _ => Grantee::Name(name.to_string()),
        })
    }
}

impl Grantee {
    pub fn sql_name(&self) -> String {
        match self {
            Grantee::Name(n) => quote_ident(n),
            Grantee::Group(n) => format!("GROUP {}", quote_ident(n)),
            Grantee::Role(n) => format!("ROLE {}", quote_ident(n)),
        }
    }
}

/// Everything the warehouse phases need to know about the warehouse.
#[derive(Debug, Clone)]
pub struct WarehouseConfig {
    pub url: WarehouseUrl,
    pub dialect: DialectName,
    /// The schema consumers read; staging and previous are derived from it.
    pub target: String,
    pub grantees: Vec<Grantee>,
    /// How long the swap may wait for locks before it gives up with the target untouched.
    pub lock_timeout: Duration,
    /// Redshift: the IAM role COPY assumes to read the parts.
    pub iam_role: Option<String>,
    /// Redshift: the region of the staging bucket, when it differs from the cluster's.
    pub s3_region: Option<String>,
    /// Redshift: WLM query group for this tool's sessions.
    pub query_group: Option<String>,
    /// SQL run inside the swap transaction after the renames (e.g. re-creating views).
    pub post_swap_sql: Option<String>,
}

impl WarehouseConfig {
    pub fn staging(&self) -> String {
        format!("{}{STAGING_SUFFIX}", self.target)
    }
    pub fn previous(&self) -> String {
        format!("{}{PREVIOUS_SUFFIX}", self.target)
    }
}

/// Errors of the warehouse phases. Each says what failed where; [`WarehouseError::is_retriable`]
/// says whether running the same command again may succeed.
#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error("cannot connect to the warehouse at {url}: {detail}")]
    Connect {
        url: String,
        detail: String,
        retriable: bool,
    },
    #[error("{what} failed: {detail}")]
    Sql {
        what: String,
        detail: String,
        retriable: bool,
    },
    #[error("loading {part} into {table} failed: {detail}")]
    Load {
        table: String,
        part: String,
        detail: String,
        retriable: bool,
    },
    #[error(transparent)]
    Store(#[from] crate::stage::store::StoreError),
    #[error("{0}")]
    Refused(String),
}

impl WarehouseError {
    pub fn is_retriable(&self) -> bool {
        match self {
            WarehouseError::Connect { retriable, .. }
            | WarehouseError::Sql { retriable, .. }
            | WarehouseError::Load { retriable, .. } => *retriable,
            WarehouseError::Store(e) => e.is_retriable(),
            WarehouseError::Refused(_) => false,
        }
    }

    /// Wraps a driver error with what was being done.
    pub fn sql(what: impl Into<String>, err: &sqlx::Error) -> WarehouseError {
        WarehouseError::Sql {
            what: what.into(),
            detail: describe_sql_error(err),
            retriable: is_retriable_sql(err),
        }
    }
}

/// SQLSTATEs and messages that mean "try again": serialization failures, deadlocks, lock
/// timeouts, lost connections, resource shortage (Redshift's "Out of Memory" among them).
pub fn is_retriable_sql(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            let message = db.message().to_ascii_lowercase();
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || matches!(code.as_str(), "40001" | "40P01" | "55P03" | "57014")
                || message.contains("serializable isolation violation")
                || message.contains("out of memory")
                || message.contains("lock timeout")
        }
        _ => false,
    }
}

/// `message (SQLSTATE code)` plus detail and hint when the server sent them.
pub fn describe_sql_error(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Database(db) => {
            let mut text = db.message().to_string();
            if let Some(code) = db.code() {
                text.push_str(&format!(" (SQLSTATE {code})"));
            }
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                if let Some(detail) = pg.detail() {
                    text.push_str(&format!("; {detail}"));
                }
                if let Some(hint) = pg.hint() {
                    text.push_str(&format!("; hint: {hint}"));
                }
                if let Some(where_) = pg.r#where() {
                    text.push_str(&format!("; at {where_}"));
                }
            }
            text
        }
        other => crate::retry::error_chain(other),
    }
}

/// `"name"`, with embedded quotes doubled. Every identifier in generated SQL goes through this.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'`, with embedded quotes doubled (standard SQL strings, as PostgreSQL reads them; Redshift
/// literals also treat backslash as an escape, see `redshift::literal`).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `"schema"."table"`.
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(table))
}

/// What differs between warehouses.
#[async_trait(?Send)]
pub trait Dialect: Send + Sync {
    fn name(&self) -> DialectName;

    /// Whether [`Dialect::copy_parts`] reads the parts through [`CopyTarget::reader`] (and so
    /// benefits from reading ahead), rather than letting the warehouse fetch them from S3.
    fn streams_parts(&self) -> bool;

    /// The column type for a logical type.
    fn column_type(&self, t: LogicalType) -> String;

    /// The current time as an SQL expression.
    fn now(&self) -> &'static str;

    /// Statements run once per session (e.g. Redshift's WLM query group).
    fn session_setup(&self, config: &WarehouseConfig) -> Vec<String>;

    /// A statement that bounds how long the current transaction waits for locks.
    fn lock_timeout(&self, timeout: Duration) -> String;

    /// Statements that claim `segment` in the ledger inside the load transaction; the claim
    /// query returns one row when the segment was free (and is now claimed) and none when it
    /// was loaded already. Runs before any data is copied.
    fn claim_segment(&self, schema: &str, run_id: &str, segment: u32) -> Vec<String>;

    /// Copies the given parts into `schema.table` on `conn` (inside the caller's transaction) and
    /// returns the number of rows the warehouse reports as loaded.
    async fn copy_parts(
        &self,
        conn: &mut PgConnection,
        store: &ObjectStore,
        config: &WarehouseConfig,
        target: CopyTarget<'_>,
    ) -> Result<u64, WarehouseError>;
}

/// Where [`Dialect::copy_parts`] loads to and from.
pub struct CopyTarget<'a> {
    pub schema: &'a str,
    pub table: &'a DataSchema,
    pub files: &'a [PartFile],
    /// A key prefix under which the dialect may write helper objects (Redshift COPY manifests).
    pub scratch_prefix: &'a str,
    /// Opens the parts for dialects that stream them themselves (PostgreSQL), reading ahead
    /// across the segment's tables.
    pub reader: &'a PartReader,
}

/// The dialect implementation for a name.
pub fn dialect_for(name: DialectName) -> Box<dyn Dialect> {
    match name {
        DialectName::Postgres => Box::new(postgres::Postgres),
        DialectName::Redshift => Box::new(redshift::Redshift),
    }
}

/// `CREATE TABLE` for one data-schema in `schema`; every identifier quoted.
pub fn create_table_sql(dialect: &dyn Dialect, schema: &str, table: &DataSchema) -> String {
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                quote_ident(&c.column),
                dialect.column_type(c.logical_type)
            )
        })
        .chain(std::iter::once(format!(
            "{} {}",
            quote_ident(crate::schema::EXTRA_COLUMN),
            dialect.column_type(LogicalType::Json)
        )))
        .collect();
    format!(
        "CREATE TABLE {} (\n  {}\n)",
        qualified(schema, &table.table),
        columns.join(",\n  ")
    )
}

/// Opens a session and runs the dialect's session setup.
pub async fn connect(
    config: &WarehouseConfig,
    dialect: &dyn Dialect,
) -> Result<PgConnection, WarehouseError> {
    let mut conn = PgConnection::connect(&config.url.for_driver())
        .await
        .map_err(|e| WarehouseError::Connect {
            url: config.url.to_string(),
            detail: describe_sql_error(&e),
            retriable: is_retriable_sql(&e) || matches!(e, sqlx::Error::Io(_)),
        })?;
    for statement in dialect.session_setup(config) {
        execute(&mut conn, &statement, "setting up the session").await?;
    }
    Ok(conn)
}

/// Runs one statement over the simple-query protocol.
pub async fn execute(
    conn: &mut PgConnection,
    sql: &str,
    what: &str,
) -> Result<u64, WarehouseError> {
    tracing::debug!(sql, "executing");
    sqlx::raw_sql(sql)
        .execute(&mut *conn)
        .await
        .map(|r| r.rows_affected())
        .map_err(|e| WarehouseError::sql(what, &e))
}

/// Runs a query over the simple-query protocol and returns its first column as text.
pub async fn query_strings(
    conn: &mut PgConnection,
    sql: &str,
    what: &str,
) -> Result<Vec<Vec<Option<String>>>, WarehouseError> {
    use sqlx::Row;
    tracing::debug!(sql, "querying");
    let rows = sqlx::raw_sql(sql)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| WarehouseError::sql(what, &e))?;
    Ok(rows
        .iter()
        .map(|row| {
            (0..row.len())
                .map(|i| row.try_get_unchecked::<Option<String>, _>(i).ok().flatten())
                .collect()
        })
        .collect())
}

/// Whether a schema exists.
pub async fn schema_exists(conn: &mut PgConnection, schema: &str) -> Result<bool, WarehouseError> {
    let rows = query_strings(
        conn,
        &format!(
            "SELECT nspname::varchar FROM pg_namespace WHERE nspname = {}",
            quote_literal(schema)
        ),
        "looking up a schema",
    )
    .await?;
    Ok(!rows.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_never_show_passwords() {
        let u = WarehouseUrl::new("postgres://etl:s3cret@db.example:5432/warehouse?password=x");
        assert_eq!(
            u.to_string(),
            "postgres://etl:***@db.example:5432/warehouse"
        );
        assert!(!format!("{u:?}").contains("s3cret"));
        let r = WarehouseUrl::new("redshift://etl:p%40ss@cluster:5439/dev");
        assert_eq!(r.to_string(), "redshift://etl:***@cluster:5439/dev");
        assert_eq!(r.for_driver(), "postgres://etl:p%40ss@cluster:5439/dev");
        assert_eq!(r.implied_dialect(), Some(DialectName::Redshift));
        assert_eq!(
            WarehouseUrl::new("postgres://host/db").to_string(),
            "postgres://host/db"
        );
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_ident(r#"we"ird"#), r#""we""ird""#);
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(qualified("a b", "c"), r#""a b"."c""#);
    }

    #[test]
    fn grantees_parse() {
        assert_eq!(
            "group:analysts".parse::<Grantee>().unwrap().sql_name(),
            r#"GROUP "analysts""#
        );
        assert_eq!(
            "role:bi".parse::<Grantee>().unwrap().sql_name(),
            r#"ROLE "bi""#
        );
        assert_eq!("alice".parse::<Grantee>().unwrap().sql_name(), r#""alice""#);
        assert!("team:x".parse::<Grantee>().is_err());
    }
}
