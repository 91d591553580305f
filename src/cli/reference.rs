//! `src/cli/REFERENCE.md`, the command-line reference, written from the clap definitions that
//! `--help` prints: every command with its usage, and every argument with its help, variable,
//! default, values and other spellings. The test below fails when the file differs from what the
//! definitions give; after an intended change, regenerate it with
//! `ETL_BLESS=1 cargo test --bins reference` and review the diff like code.

use std::fmt::Write;

use clap::{Arg, Command, CommandFactory};

use super::deprecated::{RENAMED_FLAGS, RENAMED_VARIABLES};
use super::Cli;

/// Where the reference lives, from the repository's root.
const PATH: &str = "src/cli/REFERENCE.md";

/// The reference as the current definitions give it.
pub fn reference() -> String {
    let mut root = Cli::command();
    root.build();
    let mut out = String::new();
    out.push_str(
        "# Command-line reference\n\n\
         <!-- Generated from the clap definitions by src/cli/reference.rs: do not edit by hand. \
         After changing a flag, run `ETL_BLESS=1 cargo test --bins reference`. -->\n\n\
         Every command of `dynamo-etl`, its usage, and every argument: what it is for, the \
         environment variable it also reads (always `ETL_<FLAG>`), its default and the values it \
         takes. It is what `dynamo-etl <command> --help` prints, gathered in one page; a test \
         fails when the two differ. Which commands to run for a task is in the \
         [operations runbook](../../jobs/README.md); exit codes and configuration are in the \
         [README](../../README.md#exit-codes).\n\n",
    );
    let commands = commands(&root);
    out.push_str("## Commands\n\n");
    for (path, cmd) in &commands {
        let depth = path.split(' ').count() - 2;
        let _ = writeln!(
            out,
            "{}- [`{path}`](#{}): {}",
            "  ".repeat(depth),
            path.replace(' ', "-"),
            prose(&about(cmd))
        );
    }
    out.push_str(
        "\n## Flags of every command\n\n\
         These are taken by every command, before or after its name.\n",
    );
    flags(&mut out, &root, "dynamo-etl", true);
    for (path, cmd) in &commands {
        let _ = write!(out, "\n## `{path}`\n\n");
        let long = cmd.get_long_about().or(cmd.get_about());
        let _ = writeln!(
            out,
            "{}\n",
            prose(&long.map(|t| t.to_string()).unwrap_or_default())
        );
        let usage = cmd.clone().render_usage().to_string();
        let usage = usage.trim_start_matches("Usage: ");
        let _ = writeln!(out, "```text\n{usage}\n```");
        if let Some(after) = cmd.get_after_help() {
            let _ = writeln!(out, "\n```text\n{after}\n```");
        }
        flags(&mut out, cmd, path, false);
    }
    out.push_str(
        "\n## Renamed spellings\n\n\
         One name per concept: these spellings were renamed, and are still read until the next \
         release, with a warning on stderr that names the new one. When both are given, the new \
         one counts and the old one is reported as ignored.\n\n",
    );
    for f in RENAMED_FLAGS {
        let _ = writeln!(
            out,
            "- `{} {}`, `{}` → `{}`, `{}`",
            f.command, f.old_flag, f.old_env, f.new_flag, f.new_env
        );
    }
    for v in RENAMED_VARIABLES {
        let _ = writeln!(out, "- `{}` → `{}`", v.old, v.new);
    }
    out
}

/// Every subcommand, depth first, with its full name (`dynamo-etl retry phase-1`).
fn commands(root: &Command) -> Vec<(String, Command)> {
    fn walk(cmd: &Command, path: &str, out: &mut Vec<(String, Command)>) {
        for sub in cmd.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            let path = format!("{path} {}", sub.get_name());
            out.push((path.clone(), sub.clone()));
            walk(sub, &path, out);
        }
    }
    let mut out = Vec::new();
    walk(root, "dynamo-etl", &mut out);
    out
}

fn about(cmd: &Command) -> String {
    cmd.get_about().map(|t| t.to_string()).unwrap_or_default()
}

/// The arguments `cmd` declares, its own first and then under their headings, as `--help`
/// shows them. The flags every command takes are listed once, under the root.
fn flags(out: &mut String, cmd: &Command, path: &str, root: bool) {
    let mut shown: Vec<&Arg> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
        .filter(|a| a.is_global_set() == root)
        .collect();
    // In the order of --help (mut_arg moves an argument to the end of the list, not of the help).
    shown.sort_by_key(|a| a.get_display_order());
    if shown.is_empty() {
        return;
    }
    let mut headings: Vec<Option<&str>> = Vec::new();
    for a in &shown {
        if !headings.contains(&a.get_help_heading()) {
            headings.push(a.get_help_heading());
        }
    }
    headings.sort_by_key(|h| h.is_some());
    for heading in headings {
        let _ = write!(out, "\n{}:\n\n", heading.unwrap_or("Arguments and flags"));
        for a in shown.iter().filter(|a| a.get_help_heading() == heading) {
            argument(out, a, path);
        }
    }
}

/// One argument: its spelling, variable, default and values, then its help.
fn argument(out: &mut String, arg: &Arg, path: &str) {
    let value = arg
        .get_value_names()
        .map(|names| {
            names
                .iter()
                .map(|n| format!("<{n}>"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| format!("<{}>", arg.get_id().as_str().to_uppercase()));
    let spelling = match arg.get_long() {
        None => value,
        Some(long) if arg.get_action().takes_values() => format!("--{long} {value}"),
        Some(long) => format!("--{long}"),
    };
    let mut facts = Vec::new();
    if arg.is_positional() {
        facts.push(match arg.is_required_set() {
            true => "positional, required".to_string(),
            false => "positional".to_string(),
        });
    }
    if let Some(env) = arg.get_env() {
        facts.push(format!("`{}`", env.to_string_lossy()));
    }
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|d| d.to_string_lossy().into_owned())
        .collect();
    if !defaults.is_empty() && arg.get_action().takes_values() {
        facts.push(format!("default `{}`", defaults.join(",")));
    }
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| format!("`{}`", v.get_name()))
        .collect();
    if !values.is_empty() && arg.get_action().takes_values() {
        facts.push(format!("values {}", values.join(", ")));
    }
    let mut other: Vec<String> = arg
        .get_all_aliases()
        .unwrap_or_default()
        .into_iter()
        .map(|a| format!("`--{a}`"))
        .collect();
    let command = path.split(' ').nth(1).unwrap_or_default();
    for f in RENAMED_FLAGS
        .iter()
        .filter(|f| f.command == command && f.new_id == arg.get_id().as_str())
    {
        other.push(format!("`{}`, `{}` (deprecated)", f.old_flag, f.old_env));
    }
    if let Some(env) = arg.get_env() {
        for v in RENAMED_VARIABLES.iter().filter(|v| env == v.new) {
            other.push(format!("`{}` (deprecated)", v.old));
        }
    }
    if !other.is_empty() {
        facts.push(format!("also {}", other.join(", ")));
    }
    let _ = writeln!(out, "- `{spelling}` ({})  ", facts.join("; "));
    let help = arg
        .get_long_help()
        .or(arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    let _ = writeln!(out, "  {}", prose(help.trim()));
    for v in arg.get_possible_values() {
        if let (Some(help), false) = (v.get_help(), v.is_hide_set()) {
            let _ = writeln!(out, "  - `{}`: {}", v.get_name(), prose(&help.to_string()));
        }
    }
}

/// `text` as markdown prose: outside code spans, `<`, `*` and `_`-free escapes so that
/// placeholders such as runs/<run-id>/ are shown and not taken for HTML.
fn prose(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        if i % 2 == 1 {
            out.push_str(part);
            continue;
        }
        for c in part.chars() {
            match c {
                '<' | '>' | '*' | '[' | ']' => {
                    out.push('\\');
                    out.push(c);
                }
                '\n' => out.push(' '),
                c => out.push(c),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed reference is what the definitions give now; `ETL_BLESS=1` rewrites it.
    #[test]
    fn reference_md_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(PATH);
        let text = reference();
        if std::env::var("ETL_BLESS").is_ok() {
            std::fs::write(&path, &text).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; write it with ETL_BLESS=1 cargo test --bins reference",
                path.display()
            )
        });
        assert!(
            committed == text,
            "{PATH} differs from the command-line definitions; review, then bless with \
             ETL_BLESS=1 cargo test --bins reference"
        );
    }

    /// Every command, every shown argument and every renamed spelling is in the reference.
    #[test]
    fn the_reference_names_every_command_and_argument() {
        let text = reference();
        let mut missing = Vec::new();
        let mut root = Cli::command();
        root.build();
        for (path, cmd) in commands(&root) {
            if !text.contains(&format!("## `{path}`")) {
                missing.push(path.clone());
            }
            let shown = cmd
                .get_arguments()
                .filter(|a| !a.is_hide_set() && a.get_id() != "help");
            for arg in shown {
                let name = match arg.get_long() {
                    Some(long) => format!("`--{long}"),
                    None => format!("`<{}", arg.get_id().as_str().to_uppercase()),
                };
                if !text.contains(&name) {
                    missing.push(format!("{path} {name}"));
                }
                if let Some(env) = arg.get_env() {
                    if !text.contains(&format!("`{}`", env.to_string_lossy())) {
                        missing.push(format!("{path} {env:?}"));
                    }
                }
            }
        }
        for f in RENAMED_FLAGS {
            if !text.contains(&format!("`{}`, `{}` (deprecated)", f.old_flag, f.old_env)) {
                missing.push(f.old_flag.to_string());
            }
        }
        assert!(missing.is_empty(), "{missing:#?}");
        assert!(text.contains("Default for a new run: 4"), "{text}");
    }

    #[test]
    fn prose_escapes_what_markdown_would_eat_but_not_code() {
        assert_eq!(
            prose("runs/<run-id>/ and `<target>_staging`, *.json"),
            "runs/\\<run-id\\>/ and `<target>_staging`, \\*.json"
        );
    }
}
