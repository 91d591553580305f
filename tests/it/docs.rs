//! The documentation's links, read from the files alone (no local stack needed): every relative
//! link in every markdown file of the repository names a file or folder that exists, and every
//! `#anchor` into a markdown file names one of its headings, slugged as GitHub does (lowercase,
//! spaces become `-`, punctuation other than `-` and `_` is dropped, repeats get `-1`, `-2`, …).
//! The README stays a front door: at most [`README_MAX_LINES`] lines.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The README says what the tool is and links to the rest; everything else lives beside what it
/// describes.
const README_MAX_LINES: usize = 250;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every markdown file under `dir`, skipping build output and hidden folders (`.git`, the local
/// stack's `.stack`).
fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            if !name.starts_with('.') && name != "target" && name != "node_modules" {
                markdown_files(&path, out);
            }
        } else if name.ends_with(".md") {
            out.push(path);
        }
    }
}

/// The lines of a markdown file that are prose, with their numbers: fenced code blocks (also
/// indented ones inside list items) are left out.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<&str> = None;
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let opens = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        let closes = |open: &str| {
            let t = trimmed.trim_end();
            t.len() >= open.len() && t.bytes().all(|b| b == open.as_bytes()[0])
        };
        match fence {
            None if opens.is_some() => fence = opens,
            None => lines.push((i + 1, line)),
            Some(open) if closes(open) => fence = None,
            Some(_) => {}
        }
    }
    lines
}

/// `line` without its code spans (a run of backticks up to the next run of the same length), so
/// that link syntax shown as code is not taken for a link.
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let ticks = rest[start..].chars().take_while(|&c| c == '`').count();
        let after = &rest[start + ticks..];
        let closing = "`".repeat(ticks);
        let mut search = 0;
        let mut end = None;
        while let Some(found) = after[search..].find(&closing) {
            let at = search + found;
            let run = after[at..].chars().take_while(|&c| c == '`').count();
            if run == ticks {
                end = Some(at);
                break;
            }
            search = at + run;
        }
        match end {
            Some(at) => rest = &after[at + ticks..],
            None => {
                out.push_str(&rest[start..start + ticks]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The destinations of the inline links and images (`[text](dest "title")`) and of the link
/// reference definitions (`[label]: dest`) on one line of prose.
fn link_destinations(line: &str) -> Vec<String> {
    let line = without_code_spans(line);
    let mut found = Vec::new();
    let trimmed = line.trim_start();
    if trimmed.starts_with('[') {
        if let Some(at) = trimmed.find("]: ") {
            if let Some(dest) = trimmed[at + 3..].split_whitespace().next() {
                found.push(dest.trim_matches(|c| c == '<' || c == '>').to_string());
            }
        }
    }
    let mut rest = line.as_str();
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let mut depth = 0;
        let mut end = after.len();
        for (i, c) in after.char_indices() {
            match c {
                '(' => depth += 1,
                ')' if depth == 0 => {
                    end = i;
                    break;
                }
                ')' => depth -= 1,
                _ => {}
            }
        }
        let inner = after[..end].trim();
        let dest = match inner.strip_prefix('<') {
            Some(angled) => angled.split('>').next().unwrap_or_default(),
            None => inner.split_whitespace().next().unwrap_or_default(),
        };
        found.push(dest.to_string());
        rest = &after[end.min(after.len())..];
    }
    found
}

/// GitHub's anchor for a heading's text: inline links are reduced to their text and code spans
/// to their content first, as GitHub slugs what it renders.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find("](").map(|c| open + c) else {
            break;
        };
        let Some(end) = rest[close..].find(')').map(|e| close + e) else {
            break;
        };
        text.push_str(&rest[..open]);
        text.push_str(&rest[open + 1..close]);
        rest = &rest[end + 1..];
    }
    text.push_str(rest);
    text.to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a markdown file's ATX headings (`#` to `######`), with GitHub's `-1`, `-2`, …
/// for repeats.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let heading = line[hashes..].trim().trim_end_matches('#').trim_end();
        let base = slug(heading);
        let mut anchor = base.clone();
        let mut n = 0;
        while anchors.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        anchors.insert(anchor);
    }
    anchors
}

/// What is wrong with one link of `file` (`None` when it resolves). Links with a scheme are
/// not checked: they leave the repository.
fn broken(root: &Path, file: &Path, dest: &str) -> Option<String> {
    if dest.is_empty() {
        return Some("empty link".into());
    }
    if dest.contains("://") || dest.starts_with("mailto:") {
        return None;
    }
    let (path, anchor) = match dest.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (dest, None),
    };
    let target = if path.is_empty() {
        file.to_path_buf()
    } else if let Some(from_root) = path.strip_prefix('/') {
        root.join(from_root)
    } else {
        file.parent().unwrap().join(path)
    };
    if !target.exists() {
        return Some(format!("{} does not exist", target.display()));
    }
    let anchor = anchor?;
    if target.extension().is_none_or(|e| e != "md") {
        return None;
    }
    let text = std::fs::read_to_string(&target).unwrap();
    let known = anchors(&text);
    (!known.contains(anchor)).then(|| {
        format!(
            "{} has no heading with anchor #{anchor} (its anchors: {})",
            target.display(),
            known.into_iter().collect::<Vec<_>>().join(", ")
        )
    })
}

#[test]
fn every_relative_link_in_the_markdown_files_resolves() {
    let root = repo();
    let mut files = Vec::new();
    markdown_files(&root, &mut files);
    files.sort();
    assert!(
        files.contains(&root.join("README.md")),
        "no README.md among {files:?}"
    );
    let mut checked = 0;
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (number, line) in prose_lines(&text) {
            for dest in link_destinations(line) {
                checked += 1;
                if let Some(why) = broken(&root, file, &dest) {
                    let shown = file.strip_prefix(&root).unwrap().display();
                    failures.push(format!("{shown}:{number}: ({dest}): {why}"));
                }
            }
        }
    }
    assert!(checked > 0, "no links found in {files:?}");
    assert!(
        failures.is_empty(),
        "{} broken link(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_readme_stays_short() {
    let text = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let lines = text.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, more than {README_MAX_LINES}: move the detail to the page \
         beside what it describes and link to it"
    );
}

#[test]
fn anchors_follow_github_slugs() {
    let text = "# Phases 2–4: `prepare`\n## Warehouse limits and `_overflow`\n\
                ```sh\n# a comment, not a heading\n```\n## Quick start (a fresh Debian/Ubuntu machine)\n\
                ## Before spending: `plan --estimate`\n## See [the runbook](jobs/README.md)\n## Views\n## Views\n";
    let expected = [
        "phases-24-prepare",
        "warehouse-limits-and-_overflow",
        "quick-start-a-fresh-debianubuntu-machine",
        "before-spending-plan---estimate",
        "see-the-runbook",
        "views",
        "views-1",
    ];
    assert_eq!(
        anchors(text),
        expected
            .into_iter()
            .map(String::from)
            .collect::<BTreeSet<_>>()
    );
    assert_eq!(
        link_destinations("a [b](c.md#d \"t\"), `[e](f)` and ![g](<h i.png>)"),
        ["c.md#d", "h i.png"]
    );
}
