//! Spellings renamed so that one concept has one name (`--total-segments` everywhere, every
//! variable `ETL_<FLAG>`, an increment's export named as incremental), still read for one more
//! release. Using one logs a warning that names the new spelling; the release after, drop its
//! entry here and its hidden argument.
//!
//! A renamed flag stays declared, hidden, under its old name and variable in its command's
//! `Args`; after parsing, its value moves into the new field, so commands read only the new
//! one. A renamed variable of a flag that kept its name is read by that flag when only the old
//! variable is set (its `env` is switched before parsing, so clap still reads every value).

use std::ffi::{OsStr, OsString};

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use super::{Cli, Command};

/// A flag of one command renamed together with its variable.
#[derive(Debug, Clone, Copy)]
pub struct RenamedFlag {
    /// The subcommand that takes it.
    pub command: &'static str,
    /// The id of the hidden argument that keeps the old spelling.
    pub id: &'static str,
    pub old_flag: &'static str,
    pub old_env: &'static str,
    /// The id of the argument that replaces it.
    pub new_id: &'static str,
    pub new_flag: &'static str,
    pub new_env: &'static str,
}

pub const RENAMED_FLAGS: &[RenamedFlag] = &[
    RenamedFlag {
        command: "infer-schema",
        id: "deprecated_segments",
        old_flag: "--segments",
        old_env: "ETL_SEGMENTS",
        new_id: "total_segments",
        new_flag: "--total-segments",
        new_env: "ETL_TOTAL_SEGMENTS",
    },
    RenamedFlag {
        command: "increment",
        id: "deprecated_export_prefix",
        old_flag: "--export-prefix",
        old_env: "ETL_EXPORT_PREFIX",
        new_id: "incremental_export_prefix",
        new_flag: "--incremental-export-prefix",
        new_env: "ETL_INCREMENTAL_EXPORT_PREFIX",
    },
    RenamedFlag {
        command: "increment",
        id: "deprecated_export_arn",
        old_flag: "--export-arn",
        old_env: "ETL_EXPORT_ARN",
        new_id: "incremental_export_arn",
        new_flag: "--incremental-export-arn",
        new_env: "ETL_INCREMENTAL_EXPORT_ARN",
    },
];

/// A flag a command accepts but never used: kept, hidden, for one release so that a command line
/// that passes it keeps working, with a warning to drop it.
#[derive(Debug, Clone, Copy)]
pub struct NoEffectFlag {
    pub commands: &'static [&'static str],
    /// The id of the hidden argument.
    pub id: &'static str,
    pub flag: &'static str,
}

pub const NO_EFFECT_FLAGS: &[NoEffectFlag] = &[
    NoEffectFlag {
        commands: &["plan", "infer-schema"],
        id: "no_effect_checkpoint_seconds",
        flag: "--checkpoint-seconds",
    },
    NoEffectFlag {
        commands: &["plan", "infer-schema"],
        id: "no_effect_restart",
        flag: "--restart",
    },
    NoEffectFlag {
        commands: &["plan", "infer-schema"],
        id: "no_effect_page_items",
        flag: "--page-items",
    },
];

/// A variable renamed to `ETL_<FLAG>` while its flag kept its name.
#[derive(Debug, Clone, Copy)]
pub struct RenamedVariable {
    pub old: &'static str,
    pub new: &'static str,
}

pub const RENAMED_VARIABLES: &[RenamedVariable] = &[
    RenamedVariable {
        old: "ETL_GC_KEEP",
        new: "ETL_KEEP",
    },
    RenamedVariable {
        old: "ETL_GC_KEEP_SNAPSHOTS",
        new: "ETL_KEEP_SNAPSHOTS",
    },
    RenamedVariable {
        old: "ETL_GC_APPLY",
        new: "ETL_APPLY",
    },
    RenamedVariable {
        old: "ETL_INCREMENT_TO",
        new: "ETL_TO",
    },
    RenamedVariable {
        old: "ETL_INCREMENT_VIEW",
        new: "ETL_VIEW",
    },
    RenamedVariable {
        old: "ETL_EXPORT_POLL_SECONDS",
        new: "ETL_POLL_SECONDS",
    },
    RenamedVariable {
        old: "ETL_EXPORT_WAIT_SECONDS",
        new: "ETL_WAIT_SECONDS",
    },
];

/// One deprecated spelling a command line used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deprecation {
    pub old: String,
    pub new: String,
    pub message: String,
}

impl Deprecation {
    fn renamed(old: &str, new: &str) -> Self {
        Deprecation {
            old: old.to_string(),
            new: new.to_string(),
            message: format!(
                "{old} is deprecated and read only until the next release: use {new} instead"
            ),
        }
    }

    fn no_effect(flag: &str, command: &str) -> Self {
        Deprecation {
            old: flag.to_string(),
            new: String::new(),
            message: format!(
                "{flag} has no effect on {command} and is read only until the next release: drop it"
            ),
        }
    }

    fn ignored(old: &str, new: &str) -> Self {
        Deprecation {
            old: old.to_string(),
            new: new.to_string(),
            message: format!(
                "{old} is ignored: {new}, which replaces it, is given too; drop {old}"
            ),
        }
    }
}

/// A parsed command line and the deprecated spellings it used.
#[derive(Debug)]
pub struct Parsed {
    pub cli: Cli,
    pub deprecations: Vec<Deprecation>,
}

/// Parses `args` (the program name first) as the binary does, old spellings included.
pub fn parse_from<I, T>(args: I) -> Result<Parsed, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut command = Cli::command();
    for v in RENAMED_VARIABLES {
        if is_set(v.old) && !is_set(v.new) {
            command = read_instead(command, v.new, v.old);
        }
    }
    let matches = command.try_get_matches_from_mut(args)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    let (path, leaf) = innermost(&matches);
    let mut deprecations = Vec::new();
    let mut subcommand = &command;
    for name in &path {
        subcommand = subcommand
            .find_subcommand(name)
            .expect("clap matched this subcommand");
    }
    for v in RENAMED_VARIABLES {
        let reads = |env: &str| {
            subcommand
                .get_arguments()
                .chain(command.get_arguments())
                .any(|a| a.get_env() == Some(OsStr::new(env)))
        };
        if !is_set(v.old) || !(reads(v.old) || reads(v.new)) {
            continue;
        }
        deprecations.push(match is_set(v.new) {
            true => Deprecation::ignored(v.old, v.new),
            false => Deprecation::renamed(v.old, v.new),
        });
    }
    for f in RENAMED_FLAGS
        .iter()
        .filter(|f| path.first() == Some(&f.command))
    {
        let (old, new) = match leaf.value_source(f.id) {
            Some(ValueSource::CommandLine) => (f.old_flag, f.new_flag),
            Some(ValueSource::EnvVariable) => (f.old_env, f.new_env),
            _ => continue,
        };
        let new_given = match leaf.value_source(f.new_id) {
            Some(ValueSource::CommandLine) => Some(f.new_flag),
            Some(ValueSource::EnvVariable) => Some(f.new_env),
            _ => None,
        };
        deprecations.push(match new_given {
            Some(given) => Deprecation::ignored(old, given),
            None => Deprecation::renamed(old, new),
        });
        move_old_value(&mut cli, f.id, new_given.is_some());
    }
    for f in NO_EFFECT_FLAGS {
        let Some(command) = path.first().filter(|c| f.commands.contains(c)) else {
            continue;
        };
        if leaf.value_source(f.id) == Some(ValueSource::CommandLine) {
            deprecations.push(Deprecation::no_effect(f.flag, command));
        }
    }
    Ok(Parsed { cli, deprecations })
}

/// Whether a variable is set to something (clap takes an empty one for absent).
fn is_set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

/// Makes every argument that reads the variable `new` read `old` instead, in every subcommand.
fn read_instead(mut command: clap::Command, new: &str, old: &'static str) -> clap::Command {
    let ids: Vec<clap::Id> = command
        .get_arguments()
        .filter(|a| a.get_env() == Some(OsStr::new(new)))
        .map(|a| a.get_id().clone())
        .collect();
    for id in ids {
        command = command.mut_arg(id, |a| a.env(old));
    }
    let names: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in names {
        command = command.mut_subcommand(name, |s| read_instead(s, new, old));
    }
    command
}

/// The names of the subcommands matched, outermost first, and the innermost one's matches.
fn innermost(matches: &ArgMatches) -> (Vec<&str>, &ArgMatches) {
    let mut path = Vec::new();
    let mut leaf = matches;
    while let Some((name, sub)) = leaf.subcommand() {
        path.push(name);
        leaf = sub;
    }
    (path, leaf)
}

/// Moves the value of the hidden argument `id` into the field that replaces it, unless the new
/// spelling was given too (then the new one wins).
fn move_old_value(cli: &mut Cli, id: &str, new_given: bool) {
    match (&mut cli.command, id) {
        (Command::InferSchema(args), "deprecated_segments") => {
            if let Some(old) = args.deprecated_segments.take() {
                if !new_given {
                    args.total_segments = old;
                }
            }
        }
        (Command::Increment(args), "deprecated_export_prefix") => {
            let old = args.deprecated_export_prefix.take();
            if !new_given {
                args.incremental_export_prefix = old;
            }
        }
        (Command::Increment(args), "deprecated_export_arn") => {
            let old = args.deprecated_export_arn.take();
            if !new_given {
                args.incremental_export_arn = old;
            }
        }
        (_, id) => unreachable!("{id} is not a renamed flag of this command"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Parsed {
        parse_from(std::iter::once("dynamo-etl").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn messages(parsed: &Parsed) -> Vec<&str> {
        parsed
            .deprecations
            .iter()
            .map(|d| d.message.as_str())
            .collect()
    }

    #[test]
    fn checkpoint_flags_on_plan_and_infer_schema_are_read_with_a_warning_to_drop_them() {
        for command in ["plan", "infer-schema"] {
            let old = parse(&[
                command,
                "--checkpoint-seconds",
                "5",
                "--restart",
                "--page-items",
                "9",
            ]);
            assert_eq!(
                messages(&old),
                ["checkpoint-seconds", "restart", "page-items"]
                    .map(|f| format!("--{f} has no effect on {command} and is read only until the next release: drop it")),
            );
            assert!(parse(&[command]).deprecations.is_empty());
        }
        let segment = parse(&["segment", "--run-id", "r", "--segment", "0", "--restart"]);
        assert!(
            segment.deprecations.is_empty(),
            "{:?}",
            segment.deprecations
        );
    }

    #[test]
    fn infer_schema_reads_segments_as_total_segments_and_warns() {
        let old = parse(&["infer-schema", "--segments", "7"]);
        let Command::InferSchema(args) = &old.cli.command else {
            panic!("{:?}", old.cli.command)
        };
        assert_eq!(args.total_segments, 7);
        assert_eq!(
            messages(&old),
            ["--segments is deprecated and read only until the next release: use --total-segments instead"]
        );
        let new = parse(&["infer-schema", "--total-segments", "7"]);
        let Command::InferSchema(args) = &new.cli.command else {
            panic!("{:?}", new.cli.command)
        };
        assert_eq!(args.total_segments, 7);
        assert!(new.deprecations.is_empty(), "{:?}", new.deprecations);
        let both = parse(&["infer-schema", "--total-segments", "3", "--segments", "7"]);
        let Command::InferSchema(args) = &both.cli.command else {
            panic!("{:?}", both.cli.command)
        };
        assert_eq!(args.total_segments, 3, "the new spelling wins");
        assert_eq!(
            messages(&both),
            ["--segments is ignored: --total-segments, which replaces it, is given too; drop --segments"]
        );
    }

    #[test]
    fn increment_reads_the_old_export_flags_as_incremental_ones_and_warns() {
        let url = "s3://b/p/AWSDynamoDB/01234567890123-abcdefgh";
        let old = parse(&["increment", "--export-prefix", url]);
        let Command::Increment(args) = &old.cli.command else {
            panic!("{:?}", old.cli.command)
        };
        assert_eq!(args.incremental_export_prefix.as_deref(), Some(url));
        assert_eq!(args.deprecated_export_prefix, None);
        assert!(
            messages(&old)[0].contains("--export-prefix is deprecated")
                && messages(&old)[0].contains("use --incremental-export-prefix"),
            "{:?}",
            old.deprecations
        );
        let old = parse(&["increment", "--export-arn", "arn:x"]);
        let Command::Increment(args) = &old.cli.command else {
            panic!("{:?}", old.cli.command)
        };
        assert_eq!(args.incremental_export_arn.as_deref(), Some("arn:x"));
        assert!(
            messages(&old)[0].contains("use --incremental-export-arn"),
            "{:?}",
            old.deprecations
        );
        let new = parse(&["increment", "--incremental-export-arn", "arn:y"]);
        let Command::Increment(args) = &new.cli.command else {
            panic!("{:?}", new.cli.command)
        };
        assert_eq!(args.incremental_export_arn.as_deref(), Some("arn:y"));
        assert!(new.deprecations.is_empty(), "{:?}", new.deprecations);
        // An incremental export is named one way: the old prefix and the new ARN conflict.
        let err = parse_from([
            "dynamo-etl",
            "increment",
            "--export-prefix",
            url,
            "--incremental-export-arn",
            "arn:y",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    /// `plan --export-prefix` is a full export and keeps its name: no warning.
    #[test]
    fn plan_keeps_its_export_flags() {
        let url = "s3://b/p/AWSDynamoDB/01234567890123-abcdefgh";
        let parsed = parse(&["plan", "--export-prefix", url]);
        let Command::Plan(args) = &parsed.cli.command else {
            panic!("{:?}", parsed.cli.command)
        };
        assert_eq!(args.export.export_prefix.as_deref(), Some(url));
        assert!(parsed.deprecations.is_empty(), "{:?}", parsed.deprecations);
    }

    /// Each renamed flag is declared as the table says: hidden under its old name and variable,
    /// next to its replacement in the same command; a renamed variable is read by no argument.
    #[test]
    fn the_tables_match_the_declarations() {
        let cli = Cli::command();
        for f in RENAMED_FLAGS {
            let command = cli.find_subcommand(f.command).expect(f.command);
            let arg = |id: &str| {
                command
                    .get_arguments()
                    .find(|a| a.get_id() == id)
                    .unwrap_or_else(|| panic!("{} has no argument {id}", f.command))
            };
            let (old, new) = (arg(f.id), arg(f.new_id));
            assert!(old.is_hide_set(), "{}: {} is shown", f.command, f.old_flag);
            assert!(
                !new.is_hide_set(),
                "{}: {} is hidden",
                f.command,
                f.new_flag
            );
            for (arg, flag, env) in [(old, f.old_flag, f.old_env), (new, f.new_flag, f.new_env)] {
                assert_eq!(format!("--{}", arg.get_long().unwrap()), flag);
                assert_eq!(arg.get_env(), Some(OsStr::new(env)));
            }
        }
        for v in RENAMED_VARIABLES {
            let mut readers = (0, 0);
            super::super::tests::walk(&cli, "dynamo-etl", &mut |_, arg| {
                readers.0 += usize::from(arg.get_env() == Some(OsStr::new(v.old)));
                readers.1 += usize::from(arg.get_env() == Some(OsStr::new(v.new)));
            });
            assert_eq!(readers.0, 0, "{} is still declared", v.old);
            assert!(readers.1 > 0, "no flag reads {}", v.new);
        }
    }
}
