//! The library's layers, read from the files alone (no local stack needed): every file under
//! `src/` belongs to a row of the layer table in `src/ARCHITECTURE.md` (by its folder, or by its
//! name for the files at the top of `src/`), and no file names a module of a later row, as
//! `use crate::<module>…` or as a `crate::<module>::…` path anywhere in its code.
//!
//! Exempt: the command line and the binaries on top of the library (`src/main.rs`, `src/lib.rs`,
//! `src/cli/`, `src/bin/`), which may use every layer; comments; and test code — a
//! `#[cfg(test)]` module or item, inline or in a `tests.rs` of its own — which may build its fixtures from any layer (the transform's
//! tests take the dialects' limits, the value model's tests the test kit's decoders).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Files and folders on top of the layers: they may import anything.
const ON_TOP: &[&str] = &["main.rs", "lib.rs", "cli/", "bin/"];

/// The layer table of ARCHITECTURE.md: module name → its row (0 is the bottom). A row's first
/// cell names its modules in backticks, folders with a trailing `/`.
fn layer_table() -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(repo().join("src/ARCHITECTURE.md")).unwrap();
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with("Layers and code layout"))
        .expect("src/ARCHITECTURE.md has a section \"Layers and code layout\"");
    let mut layers = BTreeMap::new();
    let rows = section
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(2) // the header and the |---| line
        .enumerate();
    for (row, line) in rows {
        let first = line.trim_start_matches('|').split('|').next().unwrap();
        for name in first.split('`').skip(1).step_by(2) {
            layers.insert(name.trim_end_matches('/').to_string(), row);
        }
    }
    assert!(
        layers.len() >= 10,
        "the layer table of src/ARCHITECTURE.md was not read: {layers:?}"
    );
    layers
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module of the crate a file under `src/` belongs to: its top folder, or its name.
fn module_of(relative: &str) -> &str {
    match relative.split_once('/') {
        Some((folder, _)) => folder,
        None => relative.trim_end_matches(".rs"),
    }
}

/// The lines of `text` that are code outside tests, with their numbers: comments, `#[cfg(test)]`
/// modules and items are left out. A test module ends at the `}` of its own indentation (the
/// files are formatted by rustfmt); a one-line item at its `;`. A file that opens with
/// `#![cfg(test)]` is a test module of its own (a module's tests kept in `tests.rs`).
fn non_test_code(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let first_code = text
        .lines()
        .map(str::trim_start)
        .find(|l| !l.is_empty() && !l.starts_with("//"));
    if first_code.is_some_and(|l| l.starts_with("#![cfg(test)]")) {
        return out;
    }
    let mut lines = text.lines().enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        if trimmed.starts_with("#[cfg(test)]") {
            let indent = &line[..line.len() - trimmed.len()];
            let closing = format!("{indent}}}");
            // Further attributes, then the item itself.
            while let Some((_, next)) = lines.next() {
                let t = next.trim_start();
                if t.starts_with("#[") {
                    continue;
                }
                if t.ends_with(';') {
                    break;
                }
                if t.ends_with('{') {
                    for (_, body) in lines.by_ref() {
                        if body == closing {
                            break;
                        }
                    }
                }
                break;
            }
            continue;
        }
        out.push((i + 1, line));
    }
    out
}

/// A `tests.rs` that its folder's `mod.rs` declares only under `#[cfg(test)]`: test code as a
/// whole, like an inline test module.
fn is_test_module_file(path: &Path) -> bool {
    if path.file_name().is_none_or(|name| name != "tests.rs") {
        return false;
    }
    let parent = path.with_file_name("mod.rs");
    std::fs::read_to_string(parent).is_ok_and(|text| text.contains("#[cfg(test)]\nmod tests;"))
}

/// The crate modules `line` names: `crate::x…` gives `x`; `crate::{x::…, y}` gives `x` and `y`.
fn crate_paths(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in line.match_indices("crate::") {
        // `dynamo_etl::` or an identifier ending in `crate` is not this crate's path.
        let before = line[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &line[at + "crate::".len()..];
        let ident = |s: &str| {
            s.trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<String>()
        };
        match rest.strip_prefix('{') {
            Some(group) => {
                // Top-level names of the group (a group spanning lines is read on this line only).
                let mut depth = 0;
                let mut start = 0;
                for (j, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => {
                            found.push(ident(&group[start..j]));
                            break;
                        }
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            found.push(ident(&group[start..j]));
                            start = j + 1;
                        }
                        _ => {}
                    }
                }
            }
            None => found.push(ident(rest)),
        }
    }
    found.retain(|m| !m.is_empty());
    found
}

#[test]
fn every_import_points_down_the_documented_layers() {
    let layers = layer_table();
    let src = repo().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut unplaced = Vec::new();
    let mut upward = Vec::new();
    let mut checked = 0;
    for path in &files {
        let relative = path
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if ON_TOP.iter().any(|top| match top.strip_suffix('/') {
            Some(folder) => relative.starts_with(&format!("{folder}/")),
            None => relative == *top,
        }) {
            continue;
        }
        let module = module_of(&relative);
        let Some(&own) = layers.get(module) else {
            unplaced.push(relative.clone());
            continue;
        };
        checked += 1;
        if is_test_module_file(path) {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        for (number, line) in non_test_code(&text) {
            for target in crate_paths(line) {
                match layers.get(target.as_str()) {
                    Some(&row) if row > own => upward.push(format!(
                        "src/{relative}:{number}: `{module}` (layer {own}) uses `crate::{target}` \
                         (layer {row}): {}",
                        line.trim()
                    )),
                    Some(_) => {}
                    None => unplaced.push(format!(
                        "crate::{target} (named in src/{relative}:{number})"
                    )),
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} files were checked");
    assert!(
        unplaced.is_empty(),
        "not in the layer table of src/ARCHITECTURE.md (add a row, or put them in a row):\n{}",
        unplaced.join("\n")
    );
    assert!(
        upward.is_empty(),
        "imports that run up the layers of src/ARCHITECTURE.md (move the type down, or the code \
         up):\n{}",
        upward.join("\n")
    );
}

/// The checker itself: what it reads as a path, and what it leaves out as test code.
#[test]
fn the_layer_check_reads_paths_and_skips_tests() {
    let export = repo().join("src/source/export");
    assert!(is_test_module_file(&export.join("tests.rs")));
    assert!(!is_test_module_file(&export.join("mod.rs")));
    assert!(!is_test_module_file(&repo().join("src/testkit/mod.rs")));
    assert_eq!(
        crate_paths("use crate::staging::plan::RunPlan;"),
        vec!["staging"]
    );
    assert_eq!(
        crate_paths("use crate::{value::ItemView, schema};"),
        vec!["value", "schema"]
    );
    assert_eq!(
        crate_paths("let x = crate::warehouse::limits(d); use dynamo_etl::phases;"),
        vec!["warehouse"]
    );
    let text = "use crate::a::X;\n// crate::b::Y\n#[cfg(test)]\nuse crate::c::Z;\n\
                #[cfg(test)]\nmod tests {\n    use crate::d::W;\n}\nfn f() { crate::e::g() }\n";
    let code: Vec<&str> = non_test_code(text).into_iter().map(|(_, l)| l).collect();
    assert_eq!(code, vec!["use crate::a::X;", "fn f() { crate::e::g() }"]);
}
