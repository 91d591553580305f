//! Why a COPY failed, in plain words, from Redshift's load-error logs.
//!
//! Two logs hold a failed COPY's rows: `SYS_LOAD_ERROR_DETAIL` on provisioned clusters and
//! Serverless alike, `STL_LOAD_ERRORS` on provisioned clusters only
//! (<https://docs.aws.amazon.com/redshift/latest/dg/SYS_LOAD_ERROR_DETAIL.html>,
//! <https://docs.aws.amazon.com/redshift/latest/dg/r_STL_LOAD_ERRORS.html>). Only their
//! documented columns are read: file, line, column and its type, error code and reason (and, from
//! STL, the raw field value, which SYS does not have).
//!
//! Finding this COPY's rows: `pg_last_copy_id()` names the COPY's STL query id, but it is not
//! updated when the COPY's transaction is rolled back
//! (<https://docs.aws.amazon.com/redshift/latest/dg/PG_LAST_COPY_ID.html>), the failed session
//! answers nothing but ROLLBACK until then, and SYS views number queries differently from STL
//! (<https://docs.aws.amazon.com/redshift/latest/dg/r_STL_QUERY.html>). What both logs do record
//! is the loading process (SYS `session_id`, STL `session`), which `pg_backend_pid()` returns
//! (<https://docs.aws.amazon.com/redshift/latest/dg/PG_BACKEND_PID.html>), and the COPY's start
//! time in UTC. So before each COPY the load session notes its process id and the server's time
//! ([`MARK_SQL`]; `GETDATE()` is the statement's start in the session's time zone, UTC unless
//! changed: <https://docs.aws.amazon.com/redshift/latest/dg/r_GETDATE.html>), and after a failure
//! a second session reads the rows of that process since then, for the run's own part files
//! (process ids are reused over time; the time and the file names keep other loads out).

use super::super::sql::Session;
use super::super::WarehouseError;
use super::literal;

/// Noted before each COPY: the session's process id and the server's time.
pub const MARK_SQL: &str = "SELECT pg_backend_pid()::varchar, GETDATE()::varchar";

/// Rows of load errors shown for one failed COPY.
const MAX_ROWS: usize = 10;

/// Which COPY a failure belongs to: the process that ran it and a time before it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyMark {
    pub process: u32,
    pub since: String,
}

/// Notes [`CopyMark`] on the session that is about to COPY.
pub async fn mark(session: &mut Session) -> Result<CopyMark, WarehouseError> {
    let rows = session
        .query(MARK_SQL, "noting the session before COPY")
        .await?;
    let field = |i: usize| rows.first().and_then(|r| r.get(i).cloned().flatten());
    match (field(0).and_then(|p| p.trim().parse().ok()), field(1)) {
        (Some(process), Some(since)) => Ok(CopyMark { process, since }),
        _ => Err(WarehouseError::Sql {
            what: "noting the session before COPY".into(),
            detail: format!("{MARK_SQL} returned {rows:?}"),
            retriable: false,
        }),
    }
}

/// The two reads of a failed COPY's rows, for part files whose URL starts with `files`: the SYS
/// view first (it exists everywhere), then the STL table (provisioned clusters).
pub fn queries(mark: &CopyMark, files: &str) -> [String; 2] {
    let (process, since) = (mark.process, literal(&mark.since));
    let like = literal(&format!("{files}%"));
    [
        format!(
            "SELECT TRIM(file_name)::varchar, line_number::varchar, TRIM(column_name)::varchar, TRIM(column_type)::varchar, error_code::varchar, TRIM(error_message)::varchar, NULL::varchar FROM sys_load_error_detail WHERE session_id = {process} AND start_time >= {since} AND TRIM(file_name) LIKE {like} ORDER BY start_time, line_number LIMIT {MAX_ROWS}"
        ),
        format!(
            "SELECT TRIM(filename)::varchar, line_number::varchar, TRIM(colname)::varchar, TRIM(type)::varchar, err_code::varchar, TRIM(err_reason)::varchar, TRIM(raw_field_value)::varchar FROM stl_load_errors WHERE session = {process} AND starttime >= {since} AND TRIM(filename) LIKE {like} ORDER BY starttime, line_number LIMIT {MAX_ROWS}"
        ),
    ]
}

/// One row of a load-error log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: String,
    pub line: String,
    pub column: String,
    pub column_type: String,
    pub code: String,
    pub reason: String,
    /// The field as read (STL only).
    pub value: Option<String>,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}, line {}, column {} ({}): {} (load error {})",
            self.file, self.line, self.column, self.column_type, self.reason, self.code
        )?;
        if let Some(value) = &self.value {
            write!(f, "; the field read {value:?}")?;
        }
        Ok(())
    }
}

/// The rows of one of [`queries`], as they come back (every column as text).
pub fn from_rows(rows: &[Vec<Option<String>>]) -> Vec<LoadError> {
    rows.iter()
        .map(|r| {
            let f = |i: usize| {
                r.get(i)
                    .cloned()
                    .flatten()
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default()
            };
            LoadError {
                file: f(0),
                line: f(1),
                column: f(2),
                column_type: f(3),
                code: f(4),
                reason: f(5),
                value: r.get(6).cloned().flatten(),
            }
        })
        .collect()
}

/// The failed COPY's rows, read on `session` (another session than the COPY's). A log that
/// cannot be read (STL on Serverless) or has nothing is passed over.
pub async fn read(session: &mut Session, mark: &CopyMark, files: &str) -> Vec<LoadError> {
    for query in queries(mark, files) {
        match session.query(&query, "reading the load errors").await {
            Ok(rows) if !rows.is_empty() => return from_rows(&rows),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "a load-error log could not be read"),
        }
    }
    Vec::new()
}

/// The words added to a failed COPY's error: its rows, or how to look for them.
pub fn explain(errors: &[LoadError], mark: &CopyMark, files: &str) -> String {
    if errors.is_empty() {
        return format!(
            "Redshift logged no load errors for this COPY (yet); look with: {}",
            queries(mark, files)[0]
        );
    }
    let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
    format!("Redshift load errors:\n{}", lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some(text: &str) -> Option<String> {
        Some(text.to_string())
    }

    #[test]
    fn rows_become_file_line_column_and_reason() {
        // As SYS_LOAD_ERROR_DETAIL and STL_LOAD_ERRORS return them: fixed-width text, padded.
        let sys = vec![vec![
            some("s3://etl/dynamo-etl/runs/r/segments/3/org/part-00000.csv.zst"),
            some("17"),
            some("employees"),
            some("int8      "),
            some("1207"),
            some("Invalid digit, Value 'm', Pos 0, Type: Long"),
            None,
        ]];
        let stl = vec![vec![
            some("s3://etl/dynamo-etl/runs/r/segments/3/org/part-00000.csv.zst"),
            some("17"),
            some("employees"),
            some("int8"),
            some("1207"),
            some("Invalid digit, Value 'm', Pos 0, Type: Long"),
            some("many"),
        ]];
        let mark = CopyMark {
            process: 1073815812,
            since: "2026-12-01 02:00:00".into(),
        };
        let files = "s3://etl/dynamo-etl/runs/r/segments/";
        let from_sys = explain(&from_rows(&sys), &mark, files);
        assert_eq!(
            from_sys,
            "Redshift load errors:\n  s3://etl/dynamo-etl/runs/r/segments/3/org/part-00000.csv.zst, line 17, column employees (int8): Invalid digit, Value 'm', Pos 0, Type: Long (load error 1207)"
        );
        let from_stl = explain(&from_rows(&stl), &mark, files);
        assert!(
            from_stl.ends_with("(load error 1207); the field read \"many\""),
            "{from_stl}"
        );
        // Nothing logged: say where to look, for this process, time and run.
        let none = explain(&[], &mark, files);
        assert!(none.contains("FROM sys_load_error_detail WHERE session_id = 1073815812 AND start_time >= '2026-12-01 02:00:00' AND TRIM(file_name) LIKE 's3://etl/dynamo-etl/runs/r/segments/%'"), "{none}");
    }
}
