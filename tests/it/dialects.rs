//! One extension point per dialect: the generic warehouse code names no dialect outside the
//! registry in `src/warehouse/mod.rs`, and every dialect folder is declared there. A third
//! dialect is then a folder implementing `Warehouse` plus its lines in the registry; a shared
//! file that reaches into `redshift::…` or `postgres::…` fails here. (Read from the source text:
//! Rust has no visibility rule that keeps a sibling module out.)

use std::path::Path;

use crate::support::repo_root;

/// The files every dialect shares.
const GENERIC: [&str; 8] = [
    "mod.rs",
    "config.rs",
    "sql.rs",
    "gate.rs",
    "swap.rs",
    "ledger.rs",
    "load.rs",
    "increment.rs",
];

const REGISTRY_START: &str = "// registry:start";
const REGISTRY_END: &str = "// registry:end";

/// `text` without its comments (what follows `//` on a line) and, for `mod.rs`, without the
/// registry.
fn code_of(name: &str, text: &str) -> String {
    let text = match name {
        "mod.rs" => {
            let (before, rest) = text
                .split_once(REGISTRY_START)
                .expect("src/warehouse/mod.rs marks its registry with // registry:start");
            let (_, after) = rest
                .split_once(REGISTRY_END)
                .expect("src/warehouse/mod.rs ends its registry with // registry:end");
            assert!(
                !after.contains(REGISTRY_START),
                "src/warehouse/mod.rs has one registry"
            );
            format!("{before}\n{after}")
        }
        _ => text.to_string(),
    };
    text.lines()
        .map(without_comment)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `line` up to a `//` that stands outside a string literal.
fn without_comment(line: &str) -> &str {
    let (mut in_string, mut escaped) = (false, false);
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if in_string => escaped = true,
            b'"' => in_string = !in_string,
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
    }
    line
}

/// Where `code` names dialect module `dialect` (as a path or a module declaration); the
/// driver's own `sqlx::postgres::` (the wire protocol both dialects speak) is not ours.
fn mentions(code: &str, dialect: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (i, line) in code.lines().enumerate() {
        let path = format!("{dialect}::");
        for (at, _) in line.match_indices(&path) {
            let before = &line[..at];
            let word_start = before
                .chars()
                .last()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
            if word_start && !before.ends_with("sqlx::") {
                found.push(format!("line {}: {}", i + 1, line.trim()));
            }
        }
        if line.contains(&format!("mod {dialect}")) {
            found.push(format!("line {}: {}", i + 1, line.trim()));
        }
    }
    found
}

fn dialect_folders(warehouse: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(warehouse)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn generic_warehouse_code_names_no_dialect_outside_the_registry() {
    let warehouse = repo_root().join("src/warehouse");
    let dialects = dialect_folders(&warehouse);
    assert!(
        dialects.contains(&"postgres".to_string()) && dialects.contains(&"redshift".to_string()),
        "{dialects:?}"
    );
    let mut problems = Vec::new();
    for name in GENERIC {
        let text = std::fs::read_to_string(warehouse.join(name)).unwrap();
        let code = code_of(name, &text);
        for dialect in &dialects {
            for at in mentions(&code, dialect) {
                problems.push(format!("src/warehouse/{name} names {dialect}: {at}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the generic warehouse code reaches into a dialect; move it behind the dialect's \
         `Warehouse` impl or its options (see src/ARCHITECTURE.md, Adding a dialect):\n{}",
        problems.join("\n")
    );
    // Every dialect folder is declared in the registry, and nowhere else.
    let text = std::fs::read_to_string(warehouse.join("mod.rs")).unwrap();
    let registry = text
        .split_once(REGISTRY_START)
        .and_then(|(_, rest)| rest.split_once(REGISTRY_END))
        .map(|(r, _)| r)
        .unwrap();
    for dialect in &dialects {
        assert!(
            registry.contains(&format!("pub mod {dialect};")),
            "src/warehouse/{dialect}/ is not declared in the registry of src/warehouse/mod.rs"
        );
    }
}

/// The check sees what it is meant to see.
#[test]
fn the_check_finds_dialect_paths_and_ignores_the_drivers() {
    let code = code_of(
        "swap.rs",
        "use super::redshift::Options;\nlet e = sqlx::postgres::PgDatabaseError;\n// redshift::x in a comment\nlet s = \"s3://x\"; crate::warehouse::postgres::limits;\nmod redshift;\nlet my_redshift::x = 1;",
    );
    assert_eq!(mentions(&code, "redshift").len(), 2, "{code}");
    assert_eq!(mentions(&code, "postgres").len(), 1, "{code}");
}
