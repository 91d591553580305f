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
        let conn = PgConnection::connect_with(&url.connect_options())
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

/// What a server said when it refused a statement: its SQLSTATE, its message and its detail, for
/// dialects that recognise some errors by their text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerError<'e> {
    pub code: &'e str,
    pub message: &'e str,
    pub detail: Option<&'e str>,
}

/// The server's error inside a driver error, if the server sent one.
pub fn server_error(err: &sqlx::Error) -> Option<ServerError<'_>> {
    let sqlx::Error::Database(db) = err else {
        return None;
    };
    let pg = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()?;
    Some(ServerError {
        code: pg.code(),
        message: pg.message(),
        detail: pg.detail(),
    })
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

/// A stand-in server for unit tests: it speaks just enough of the PostgreSQL protocol to accept
/// one connection and answer its first query with one error, built field by field the way a
/// warehouse sends it, so tests read the driver's error exactly as a real session would get it.
#[cfg(test)]
pub(crate) mod wire_double {
    use sqlx::{Connection, PgConnection};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    async fn skip_message(socket: &mut TcpStream, tagged: bool) -> std::io::Result<()> {
        if tagged {
            socket.read_u8().await?;
        }
        let len = socket.read_i32().await?;
        let mut rest = vec![0; len as usize - 4];
        socket.read_exact(&mut rest).await.map(drop)
    }

    /// The driver error a session gets when the server answers with SQLSTATE `code`, `message`
    /// and, if given, `detail` (the ErrorResponse fields C, M and D).
    pub async fn error_of(code: &str, message_text: &str, detail: Option<&str>) -> sqlx::Error {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut fields = Vec::new();
        let mut field = |kind: u8, text: &str| {
            fields.push(kind);
            fields.extend_from_slice(text.as_bytes());
            fields.push(0);
        };
        field(b'S', "ERROR");
        field(b'V', "ERROR");
        field(b'C', code);
        field(b'M', message_text);
        if let Some(detail) = detail {
            field(b'D', detail);
        }
        fields.push(0);
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await?;
            skip_message(&mut socket, false).await?; // the startup message
            let mut hello = message(b'R', &0i32.to_be_bytes()); // authentication ok
            hello.extend(message(b'K', &[0, 0, 4, 210, 0, 0, 0, 7])); // backend key data
            hello.extend(message(b'Z', b"I")); // ready for query
            socket.write_all(&hello).await?;
            skip_message(&mut socket, true).await?; // the query
            let mut answer = message(b'E', &fields);
            answer.extend(message(b'Z', b"I"));
            socket.write_all(&answer).await?;
            let mut rest = Vec::new();
            socket.read_to_end(&mut rest).await.map(drop)
        });
        let options = sqlx::postgres::PgConnectOptions::new_without_pgpass()
            .host(&addr.ip().to_string())
            .port(addr.port())
            .username("etl")
            .database("dev")
            .ssl_mode(sqlx::postgres::PgSslMode::Disable);
        let mut conn = PgConnection::connect_with(&options).await.unwrap();
        let err = sqlx::raw_sql("SELECT 1")
            .execute(&mut conn)
            .await
            .unwrap_err();
        drop(conn);
        server.abort();
        err
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

    #[tokio::test]
    async fn the_server_error_is_read_field_by_field() {
        let err = wire_double::error_of("40001", "could not serialize access", Some("why")).await;
        assert_eq!(
            server_error(&err),
            Some(ServerError {
                code: "40001",
                message: "could not serialize access",
                detail: Some("why"),
            })
        );
        assert!(is_transient(&err));
        let err = wire_double::error_of("42P01", "relation \"x\" does not exist", None).await;
        assert_eq!(server_error(&err).and_then(|e| e.detail), None);
        assert!(!is_transient(&err));
        assert_eq!(
            describe(&err),
            "relation \"x\" does not exist (SQLSTATE 42P01)"
        );
    }
}
