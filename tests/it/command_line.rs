//! The command line through the real binary: a spelling renamed for consistency still works for
//! one release and warns on stderr, naming the spelling that replaces it, while the new spelling
//! works without a warning. (How each old spelling maps to its new field is unit-tested in
//! `src/cli/deprecated.rs`; the reference generated from the flags, in `src/cli/reference.rs`.)

use crate::support::{show, TestEnv};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The JSON log lines of `out` that warn of a deprecated spelling.
fn deprecation_warnings(out: &std::process::Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| l.contains("\"WARN\"") && l.contains("\"deprecated\""))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn infer_schema_takes_segments_and_etl_segments_for_one_more_release() {
    let env = TestEnv::new("oldsegments").await;
    env.load(dynamo_etl::testkit::fixtures::demo_items(3)).await;
    let infer = |extra: &[&str], vars: &[(&str, String)]| {
        let mut args = vec!["infer-schema", "--table", &env.table, "--no-schema-cache"];
        let folder = tempfile::tempdir().unwrap();
        let dir = folder.path().display().to_string();
        args.extend(["--write-static", &dir]);
        args.extend(extra);
        let out = env.run(&args, vars);
        assert!(out.status.success(), "{args:?} {vars:?}: {}", show(&out));
        out
    };
    let old = infer(&["--segments", "3"], &[]);
    assert!(stdout(&old).contains(" in 3 segments "), "{}", show(&old));
    let warned = deprecation_warnings(&old);
    assert!(
        warned.len() == 1 && warned[0].contains("use --total-segments instead"),
        "{}",
        show(&old)
    );
    let old = infer(&[], &[("ETL_SEGMENTS", "2".into())]);
    assert!(stdout(&old).contains(" in 2 segments "), "{}", show(&old));
    let warned = deprecation_warnings(&old);
    assert!(
        warned.len() == 1 && warned[0].contains("use ETL_TOTAL_SEGMENTS instead"),
        "{}",
        show(&old)
    );
    let new = infer(&["--total-segments", "3"], &[]);
    assert!(stdout(&new).contains(" in 3 segments "), "{}", show(&new));
    assert!(deprecation_warnings(&new).is_empty(), "{}", show(&new));
    let new = infer(&[], &[("ETL_TOTAL_SEGMENTS", "2".into())]);
    assert!(stdout(&new).contains(" in 2 segments "), "{}", show(&new));
    assert!(deprecation_warnings(&new).is_empty(), "{}", show(&new));
}

/// A variable renamed to `ETL_<FLAG>` is read under its old name while the new one is unset:
/// the value reaches the flag (a value the flag refuses is refused, naming the flag), and a
/// command that runs warns; with both set, the new one counts and the old one is reported as
/// ignored.
#[tokio::test(flavor = "multi_thread")]
async fn renamed_variables_are_read_for_one_more_release() {
    let env = TestEnv::new("oldvars").await;
    // Refused values prove the old variable reaches the flag; clap names the flag.
    for (var, args, flag) in [
        ("ETL_GC_KEEP", vec!["gc"], "--keep"),
        ("ETL_GC_KEEP_SNAPSHOTS", vec!["gc"], "--keep-snapshots"),
        (
            "ETL_EXPORT_WAIT_SECONDS",
            vec!["export", "wait", "--export-arn", "arn:x"],
            "--wait-seconds",
        ),
        (
            "ETL_EXPORT_POLL_SECONDS",
            vec!["export", "wait", "--export-arn", "arn:x"],
            "--poll-seconds",
        ),
        ("ETL_INCREMENT_VIEW", vec!["increment"], "--view"),
        ("ETL_INCREMENT_TO", vec!["increment"], "--to"),
    ] {
        let out = env.run(&args, &[(var, "0".into())]);
        assert_eq!(out.status.code(), Some(2), "{var}: {}", show(&out));
        assert!(
            stderr(&out).contains(&format!("'{flag}")),
            "{var}: {}",
            show(&out)
        );
    }
    // A run of gc with the old variable: it works and warns.
    let out = env.run(&["gc"], &[("ETL_GC_KEEP", "1".into())]);
    assert!(out.status.success(), "{}", show(&out));
    let warned = deprecation_warnings(&out);
    assert!(
        warned.len() == 1
            && warned[0].contains("ETL_GC_KEEP is deprecated")
            && warned[0].contains("use ETL_KEEP instead"),
        "{}",
        show(&out)
    );
    // Both set: the new one counts (2 is valid, the old 0 would be refused).
    let out = env.run(
        &["gc"],
        &[("ETL_GC_KEEP", "0".into()), ("ETL_KEEP", "2".into())],
    );
    assert!(out.status.success(), "{}", show(&out));
    let warned = deprecation_warnings(&out);
    assert!(
        warned.len() == 1 && warned[0].contains("ETL_GC_KEEP is ignored"),
        "{}",
        show(&out)
    );
    // A variable that only other commands read is no concern of this one.
    let out = env.run(&["gc"], &[("ETL_INCREMENT_VIEW", "new-image".into())]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(deprecation_warnings(&out).is_empty(), "{}", show(&out));
    let out = env.run(&["gc"], &[("ETL_KEEP", "1".into())]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(deprecation_warnings(&out).is_empty(), "{}", show(&out));
}

/// `increment --export-prefix` and `ETL_EXPORT_PREFIX` name an incremental export for one more
/// release, with a warning; `plan --export-prefix` (a full export) keeps its name and warns of
/// nothing.
#[tokio::test(flavor = "multi_thread")]
async fn increment_reads_the_old_export_spellings_and_plan_keeps_its_own() {
    let env = TestEnv::new("oldexport").await;
    let url = format!(
        "s3://{}/nowhere/AWSDynamoDB/01234567890123-abcdefgh",
        env.bucket
    );
    for (args, vars, new) in [
        (
            vec!["increment", "--table", &env.table, "--export-prefix", &url],
            vec![],
            "use --incremental-export-prefix instead",
        ),
        (
            vec!["increment", "--table", &env.table],
            vec![("ETL_EXPORT_PREFIX", url.clone())],
            "use ETL_INCREMENTAL_EXPORT_PREFIX instead",
        ),
        (
            vec!["increment", "--table", &env.table, "--export-arn", "arn:x"],
            vec![],
            "use --incremental-export-arn instead",
        ),
    ] {
        // The target serves no copy, so the increment stops; the warning comes first.
        let mut vars = vars;
        vars.push(("ETL_RETRY_ATTEMPTS", "1".into()));
        let out = env.run(&args, &vars);
        assert!(!out.status.success(), "{args:?}: {}", show(&out));
        let warned = deprecation_warnings(&out);
        assert!(
            warned.len() == 1 && warned[0].contains(new),
            "{args:?} {vars:?}: {}",
            show(&out)
        );
    }
    let new = env.run(
        &[
            "increment",
            "--table",
            &env.table,
            "--incremental-export-prefix",
            &url,
        ],
        &[("ETL_RETRY_ATTEMPTS", "1".into())],
    );
    assert!(!new.status.success(), "{}", show(&new));
    assert!(deprecation_warnings(&new).is_empty(), "{}", show(&new));
    let plan = env.run(
        &[
            "plan",
            "--table",
            &env.table,
            "--total-segments",
            "1",
            "--dialect",
            "postgres",
            "--export-prefix",
            &url,
        ],
        &[],
    );
    assert!(deprecation_warnings(&plan).is_empty(), "{}", show(&plan));
}
