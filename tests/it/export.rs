//! Phase 1 from a DynamoDB export: a table's items written as an export laid out as the AWS
//! documentation describes (test kit, `testkit::export`), loaded through the whole pipeline,
//! give the same warehouse tables as a scan of the table, also with its keys spelled as the
//! page's full export example spells them; a data file that does not match its manifest line, or
//! whose gzip data is cut short, stops phase 1 with exit 2, naming the file and its manifest line.

use crate::support::{show, TestEnv};
use dynamo_etl::retry::RetryPolicy;
use dynamo_etl::source::export::DataFile;
use dynamo_etl::testkit::export::{
    md5_base64, write_export, write_export_in, write_manifests, Form, KeyForm, WrittenExport,
};

const TABLES: [&str; 5] = ["org", "group", "fin", "vuln", "_unclassified"];

/// The demo table's items written as an export in this test's bucket, in `files` data files.
async fn export_of_demo(env: &TestEnv, id: &str, files: usize) -> WrittenExport {
    let store = env.store_at(&env.stack.s3, RetryPolicy::default()).await;
    let items = dynamo_etl::testkit::fixtures::demo_items(3);
    write_export(
        store.as_ref(),
        "exports/nightly",
        id,
        &env.table,
        &items,
        files,
    )
    .await
    .unwrap()
}

fn url(export: &WrittenExport) -> String {
    format!("s3://{}/{}", export.source.bucket, export.source.prefix)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_from_an_export_gives_the_same_tables_as_a_scan() {
    let env = TestEnv::with_demo("export", 3).await;
    let export = export_of_demo(&env, "01764000000000-a1b2c3d4", 5).await;
    let scan_target = format!("{}_scan", env.target);
    let scanned = env.run(
        &[
            "run",
            "--table",
            &env.table,
            "--run-id",
            "by-scan",
            "--total-segments",
            "3",
        ],
        &[("ETL_TARGET", scan_target.clone())],
    );
    assert!(scanned.status.success(), "{}", show(&scanned));

    let planned = env.run_ok(&[
        "plan",
        "--table",
        &env.table,
        "--run-id",
        "by-export",
        "--total-segments",
        "3",
        "--export-prefix",
        &url(&export),
    ]);
    assert!(String::from_utf8_lossy(&planned.stdout).contains("by-export"));
    let plan: serde_json::Value =
        serde_json::from_slice(&env.get("dynamo-etl/runs/by-export/run.json").await.unwrap())
            .unwrap();
    assert_eq!(plan["export"]["prefix"], export.source.prefix.as_str());
    let loaded = env.run(&["run", "--run-id", "by-export"], &[]);
    assert!(loaded.status.success(), "{}", show(&loaded));

    let mut items = 0;
    for k in 0..3 {
        let m = env
            .manifest("by-export", k)
            .await
            .expect("segment committed");
        assert_eq!(
            m.read_units, 0.0,
            "segment {k} read the export, not the table"
        );
        items += m.items_scanned;
    }
    assert_eq!(items, 120, "every exported item once");
    for t in TABLES {
        for (a, b) in [(&env.target, &scan_target), (&scan_target, &env.target)] {
            assert_eq!(
                env.missing_rows(a, b, t).await,
                0,
                "{t}: rows of {a} not in {b}"
            );
        }
    }
    assert_eq!(env.count(&env.target, "vuln").await, 72);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_with_keys_relative_to_its_prefix_is_read_and_served() {
    let env = TestEnv::with_demo("export-forms", 3).await;
    let store = env.store_at(&env.stack.s3, RetryPolicy::default()).await;
    // As the output format page's full export example: an s3Prefix, and manifest keys that
    // start at AWSDynamoDB/ (relative to that prefix); and a summary count that the files do
    // not add up to, which the page does not rule out.
    let export = write_export_in(
        store.as_ref(),
        ("2020-Nov", "01234567890123-a1b2c3d4", &env.table),
        &dynamo_etl::testkit::fixtures::demo_items(3),
        4,
        Form {
            keys: KeyForm::Prefix,
            summary_count_offset: 7,
            ..Form::default()
        },
    )
    .await
    .unwrap();
    assert!(export.files[0].data_file_s3_key.starts_with("AWSDynamoDB/"));
    let planned = env.run(
        &[
            "plan",
            "--table",
            &env.table,
            "--run-id",
            "relative-keys",
            "--total-segments",
            "2",
            "--export-prefix",
            &url(&export),
        ],
        &[],
    );
    assert!(planned.status.success(), "{}", show(&planned));
    let out = env.run(&["run", "--run-id", "relative-keys"], &[]);
    assert!(out.status.success(), "{}", show(&out));
    let mut items = 0;
    for k in 0..2 {
        items += env
            .manifest("relative-keys", k)
            .await
            .expect("segment committed")
            .items_scanned;
    }
    assert_eq!(items, 120, "every exported item once");
    assert_eq!(env.count(&env.target, "vuln").await, 72);
    assert_eq!(env.count(&env.target, "org").await, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_data_file_cut_short_stops_phase_1_with_exit_2_naming_it_and_its_line() {
    let env = TestEnv::with_demo("export-cut", 3).await;
    let export = export_of_demo(&env, "01764000000002-c0c0c0c0", 4).await;
    // Cut short in the bucket, and its manifest line written from the cut bytes: the MD5
    // matches, only the gzip data tells.
    let store = env.store_at(&env.stack.s3, RetryPolicy::default()).await;
    let key = export.files[2].data_file_s3_key.clone();
    let whole = store.get(&key).await.unwrap().unwrap();
    let cut = whole.slice(..whole.len() / 2);
    store
        .put(&key, cut.clone(), "application/octet-stream")
        .await
        .unwrap();
    let (out, victim) = phase1_after(&env, &export, "cut", |f| {
        f.md5_checksum = Some(md5_base64(&cut))
    })
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let text = show(&out);
    let manifest = format!(
        "line 3 of s3://{}/{}",
        env.bucket,
        export.source.files_key()
    );
    assert!(
        text.contains(&victim) && text.contains(&manifest) && text.contains("ends early"),
        "{text}"
    );
    assert!(
        env.manifest("cut", 0).await.is_none(),
        "nothing is committed"
    );
}

/// Plans a one-segment run from `export`, rewrites its manifest lines with `change`, runs phase
/// 1 and returns its output.
async fn phase1_after(
    env: &TestEnv,
    export: &WrittenExport,
    run: &str,
    change: impl Fn(&mut DataFile),
) -> (std::process::Output, String) {
    env.run_ok(&[
        "plan",
        "--table",
        &env.table,
        "--run-id",
        run,
        "--total-segments",
        "1",
        "--export-prefix",
        &url(export),
    ]);
    let mut files = export.files.clone();
    change(&mut files[2]);
    let store = env.store_at(&env.stack.s3, RetryPolicy::default()).await;
    write_manifests(store.as_ref(), &export.source, &env.table, &files)
        .await
        .unwrap();
    let out = env.run(
        &[
            "segment",
            "--run-id",
            run,
            "--total-segments",
            "1",
            "--segment",
            "0",
        ],
        &[],
    );
    let victim = format!("s3://{}/{}", env.bucket, files[2].data_file_s3_key);
    (out, victim)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_data_file_that_disagrees_with_its_manifest_line_stops_phase_1_naming_it() {
    let env = TestEnv::with_demo("export-bad", 3).await;
    let export = export_of_demo(&env, "01764000000001-e5f6a7b8", 4).await;

    let (out, victim) = phase1_after(&env, &export, "count", |f| f.item_count += 1).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let text = show(&out);
    assert!(text.contains(&victim) && text.contains("items"), "{text}");
    assert!(
        env.manifest("count", 0).await.is_none(),
        "nothing is committed"
    );

    let (out, victim) = phase1_after(&env, &export, "md5", |f| {
        f.md5_checksum = Some(dynamo_etl::testkit::export::md5_base64(b"not these bytes"))
    })
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let text = show(&out);
    assert!(text.contains(&victim) && text.contains("MD5"), "{text}");
    assert!(
        env.manifest("md5", 0).await.is_none(),
        "nothing is committed"
    );
}

/// `export start` and `export wait` against the S3-compatible server's own DynamoDB (DynamoDB
/// Local has no exports). Its export writes a single data file without manifests, so only the
/// two calls are tested here, not loading what they write; a failed export's exit 2 is a unit
/// test of `phases::export::decide` (the server cannot make an export fail, and answers an
/// unknown export ARN with an HTTP 500).
#[tokio::test(flavor = "multi_thread")]
async fn export_start_and_wait_call_the_export_api() {
    let env = TestEnv::new("export-api").await;
    let (moto, on_moto) = env.table_on_moto().await;
    let start = [
        "export", "start", "--table", &env.table, "--run-id", "nightly",
    ];

    let refused = env.run(&start, &on_moto);
    assert_eq!(refused.status.code(), Some(2), "{}", show(&refused));
    assert!(
        show(&refused).contains("point-in-time recovery"),
        "{}",
        show(&refused)
    );

    crate::support::enable_pitr(&moto, &env.table).await;
    let started = env.run(&start, &on_moto);
    assert!(started.status.success(), "{}", show(&started));
    let arn = String::from_utf8_lossy(&started.stdout).trim().to_string();
    assert!(arn.starts_with("arn:aws:dynamodb:"), "{arn}");
    let waited = env.run(
        &[
            "export",
            "wait",
            "--export-arn",
            &arn,
            "--poll-seconds",
            "1",
        ],
        &on_moto,
    );
    assert!(waited.status.success(), "{}", show(&waited));
    let location = String::from_utf8_lossy(&waited.stdout).trim().to_string();
    assert!(
        location.starts_with(&format!(
            "s3://{}/dynamo-etl/runs/nightly/export",
            env.bucket
        )),
        "{location}"
    );
    let written = env.keys("dynamo-etl/runs/nightly/export/").await;
    assert!(
        !written.is_empty(),
        "the export wrote under the run's folder"
    );

    // What the state machine's jobs do: they know only the run id, and find the export through
    // the note `export start` left in the run's folder.
    let note: serde_json::Value = serde_json::from_slice(
        &env.get("dynamo-etl/runs/nightly/export-started.json")
            .await
            .expect("export start notes its export"),
    )
    .unwrap();
    assert_eq!(note["export_arn"], arn.as_str());
    assert_eq!(note["table"], env.table.as_str());
    let by_run = env.run(
        &[
            "export",
            "wait",
            "--run-id",
            "nightly",
            "--poll-seconds",
            "1",
        ],
        &on_moto,
    );
    assert!(by_run.status.success(), "{}", show(&by_run));
    assert_eq!(
        String::from_utf8_lossy(&by_run.stdout).trim(),
        location,
        "the same export as by its ARN"
    );
    // A run nothing was exported for is refused, naming the command that starts its export.
    for args in [
        vec!["export", "wait", "--run-id", "other"],
        vec![
            "plan",
            "--table",
            &env.table,
            "--run-id",
            "other",
            "--total-segments",
            "2",
            "--export-of-run",
        ],
    ] {
        let out = env.run(&args, &on_moto);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        assert!(
            show(&out).contains("export start --run-id other"),
            "{args:?}: {}",
            show(&out)
        );
    }
    assert!(
        env.get("dynamo-etl/runs/other/run.json").await.is_none(),
        "nothing was planned"
    );
}

/// The data-schemas `infer-schema` writes to a folder, file by file.
fn written_schemas(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for table in std::fs::read_dir(dir).unwrap() {
        for file in std::fs::read_dir(table.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((path.strip_prefix(dir).unwrap().display().to_string(), text));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn infer_schema_from_an_export_finds_what_a_scan_finds() {
    let env = TestEnv::with_demo("exportinfer", 3).await;
    let export = export_of_demo(&env, "01764000000000-e5f6a7b8", 4).await;
    let by_scan = tempfile::tempdir().unwrap();
    let by_export = tempfile::tempdir().unwrap();
    let infer = |dir: &std::path::Path, extra: &[&str]| {
        let dir = dir.display().to_string();
        let mut args = vec![
            "infer-schema",
            "--table",
            &env.table,
            "--no-schema-cache",
            "--write-static",
            &dir,
        ];
        args.extend(extra);
        let out = env.run(&args, &[]);
        assert!(out.status.success(), "{args:?}: {}", show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let scan_report = infer(by_scan.path(), &[]);
    assert!(!scan_report.contains(" 0.0 read units"), "{scan_report}");
    let report = infer(by_export.path(), &["--export-prefix", &url(&export)]);
    let scanned = written_schemas(by_scan.path());
    assert!(scanned.len() >= 4, "{scanned:?}");
    assert_eq!(written_schemas(by_export.path()), scanned);
    // Every exported item, and not one read unit of the table.
    assert!(
        report.contains("120 items") && report.contains(" 0.0 read units"),
        "{report}"
    );
}
