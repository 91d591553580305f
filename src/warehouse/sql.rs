//! Pieces every dialect shares: quoting, sessions over the PostgreSQL wire protocol (both
//! warehouses speak it, so one sqlx `PgConnection` serves both), and reading driver errors.
//!
//! Generated SQL goes over the simple-query protocol (no prepared statements), which Redshift
//! requires for DDL and COPY; identifiers from data always go through [`quote_ident`].

use sqlx::{Connection, PgConnection};

use super::{WarehouseError, WarehouseUrl};

/// `"name"`, with embedded quotes doubled. Every identifier in generated SQL goes through this.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `"schema"."table"`.
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(table))
}

/// `'text'` with embedded quotes doubled: a standard SQL string. Dialects whose literals treat
/// other characters specially say so in their own `literal`.
pub fn standard_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// How a dialect reads its server's errors: which ones are worth another attempt.
pub type Transient = fn(&sqlx::Error) -> bool;

/// One connection to the warehouse, with its dialect's reading of errors. Transactions are
/// explicit `BEGIN` / `COMMIT` / `ROLLBACK` statements; a session dropped inside one is closed,
/// and the server rolls the transaction back.
pub struct Session {
    conn: PgConnection,
    transient: Transient,
}

impl Session {
    /// Opens a session and runs `setup` in it.
    pub async fn open(
        url: &WarehouseUrl,
        setup: &[String],
        transient: Transient,
    ) -> Result<Session, WarehouseError> {
        let conn = PgConnection::connect(&url.for_driver())
            .await
            .map_err(|e| WarehouseError::Connect {
                url: url.to_string(),
                detail: describe(&e),
                retriable: transient(&e) || matches!(e, sqlx::Error::Io(_)),
            })?;
        let mut session = Session { conn, transient };
        for statement in setup {
            session.execute(statement, "setting up the session").await?;
        }
        Ok(session)
    }

    /// This session's reading of errors.
    pub fn transient(&self) -> Transient {
        self.transient
    }

    /// A driver error of this session, with what was being done.
    pub fn error(&self, what: impl Into<String>, err: &sqlx::Error) -> WarehouseError {
        WarehouseError::Sql {
            what: what.into(),
            detail: describe(err),
            retriable: (self.transient)(err),
        }
    }

    /// Runs one statement; returns the rows it affected.
    pub async fn execute(&mut self, sql: &str, what: &str) -> Result<u64, WarehouseError> {
        tracing::debug!(sql, "executing");
        match sqlx::raw_sql(sql).execute(&mut self.conn).await {
            Ok(r) => Ok(r.rows_affected()),
            Err(e) => Err(self.error(what, &e)),
        }
    }

    /// Runs a query and returns every column of every row as text (`None` for NULL). Casting to
    /// a text type in the query keeps this independent of the driver's type support.
    pub async fn query(
        &mut self,
        sql: &str,
        what: &str,
    ) -> Result<Vec<Vec<Option<String>>>, WarehouseError> {
        use sqlx::Row;
        tracing::debug!(sql, "querying");
        let rows = match sqlx::raw_sql(sql).fetch_all(&mut self.conn).await {
            Ok(rows) => rows,
            Err(e) => return Err(self.error(what, &e)),
        };
        Ok(rows
            .iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| row.try_get_unchecked::<Option<String>, _>(i).ok().flatten())
                    .collect()
            })
            .collect())
    }

    /// The first column of the first row, if any.
    pub async fn query_one(
        &mut self,
        sql: &str,
        what: &str,
    ) -> Result<Option<String>, WarehouseError> {
        Ok(self
            .query(sql, what)
            .await?
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten()))
    }

    pub async fn begin(&mut self) -> Result<(), WarehouseError> {
        self.execute("BEGIN", "starting a transaction")
            .await
            .map(drop)
    }

    pub async fn commit(&mut self, what: &str) -> Result<(), WarehouseError> {
        self.execute("COMMIT", &format!("committing ({what})"))
            .await
            .map(drop)
    }

    /// Best effort: the session is closed on failure, which rolls back too.
    pub async fn rollback(&mut self) {
        if let Err(e) = self.execute("ROLLBACK", "rolling back").await {
            tracing::debug!(error = %e, "rollback failed; the transaction ends with the session");
        }
    }

    /// Runs `statements` in one transaction: all of them or none.
    pub async fn in_transaction(
        &mut self,
        statements: &[String],
        what: &str,
    ) -> Result<(), WarehouseError> {
        self.begin().await?;
        for statement in statements {
            if let Err(e) = self.execute(statement, what).await {
                self.rollback().await;
                return Err(e);
            }
        }
        self.commit(what).await
    }

    /// The connection, for protocol features beyond queries (COPY FROM STDIN).
    pub fn connection(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}

/// SQLSTATEs every server of the PostgreSQL protocol uses for "try again": lost connections,
/// resource shortage, serialization failures, deadlocks, lock and statement timeouts.
pub fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || matches!(code.as_str(), "40001" | "40P01" | "55P03" | "57014")
        }
        _ => false,
    }
}

/// The server's message in lowercase, for dialects that recognise errors by their text.
pub fn message_of(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Database(db) => Some(db.message().to_ascii_lowercase()),
        _ => None,
    }
}

/// `message (SQLSTATE code)` plus detail and hint when the server sent them.
pub fn describe(err: &sqlx::Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_ident(r#"we"ird"#), r#""we""ird""#);
        assert_eq!(standard_literal("it's"), "'it''s'");
        assert_eq!(qualified("a b", "c"), r#""a b"."c""#);
    }
}
