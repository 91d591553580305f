//! Why a COPY failed, in plain words, from Redshift's load-error tables.

use super::super::sql::Session;

/// Reads why the session's last COPY failed. Tries `sys_load_error_detail` (Serverless and newer
/// clusters), then `stl_load_errors`.
pub async fn report(session: &mut Session) -> Option<String> {
    const QUERIES: &[&str] = &[
        "SELECT file_name::varchar, line_number::varchar, column_name::varchar, column_type::varchar, error_code::varchar, error_message::varchar, TRIM(column_value)::varchar FROM sys_load_error_detail WHERE query_id = pg_last_copy_id() ORDER BY line_number LIMIT 5",
        "SELECT TRIM(filename)::varchar, line_number::varchar, TRIM(colname)::varchar, TRIM(type)::varchar, err_code::varchar, TRIM(err_reason)::varchar, TRIM(raw_field_value)::varchar FROM stl_load_errors WHERE query = pg_last_copy_id() ORDER BY line_number LIMIT 5",
    ];
    for q in QUERIES {
        let Ok(rows) = session.query(q, "reading load errors").await else {
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
