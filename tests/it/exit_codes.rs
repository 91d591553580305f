//! The exit-code contract, the same in every command, through the real binary: 0 done; 1 needs
//! a retry (transient faults: S3 throttling, 5xx, dropped connections; unreachable endpoints);
//! 2 usage, configuration or a fault no retry fixes (a missing bucket, denied access, bad URLs
//! and flags, damaged parts and manifests, missing credentials). Messages name what failed and,
//! where a command fixes it, that command. A closed stdout never turns success into a panic.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::fault_proxy::{FaultProxy, Injected, RequestHead};
use crate::support::{show, TestEnv};

/// Retries that give up in well under a second.
fn fast() -> Vec<(&'static str, String)> {
    vec![
        ("ETL_RETRY_ATTEMPTS", "3".into()),
        ("ETL_RETRY_MAX_SECONDS", "2".into()),
        ("ETL_RETRY_MIN_DELAY_MS", "1".into()),
    ]
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// A run `r` of one committed segment with staging prepared: `upload` then reads its plan, its
/// manifest and its parts.
async fn staged(name: &str) -> TestEnv {
    let env = TestEnv::with_demo(name, 2).await;
    env.phase1("r", 1, 0);
    env.run_ok(&["prepare", "--run-id", "r"]);
    env
}

/// A proxy in front of the stack's S3 that answers every GET of a key containing `object` with
/// `fault`.
async fn faulty_s3(env: &TestEnv, object: &'static str, fault: Injected) -> FaultProxy {
    FaultProxy::start(
        &env.stack.s3,
        Arc::new(move |head: &RequestHead| {
            (head.method == "GET" && head.path.contains(object)).then(|| fault.clone())
        }),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn transient_faults_reading_a_plan_manifest_or_part_exit_1() {
    let env = staged("xtransient").await;
    let faults = [
        ("throttling", Injected::s3_error(503, "SlowDown")),
        ("a 5xx", Injected::s3_error(500, "InternalError")),
        ("a dropped connection", Injected::drop_connection()),
    ];
    for object in ["run.json", "manifest.json", "/part-"] {
        for (what, fault) in &faults {
            let proxy = faulty_s3(&env, object, fault.clone()).await;
            let mut vars = fast();
            vars.push(("ETL_S3_ENDPOINT", proxy.url.clone()));
            let out = env.run(&["upload", "--run-id", "r", "--segment", "0"], &vars);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{what} reading {object} is worth a retry: {}",
                show(&out)
            );
            assert!(stderr(&out).contains("error: "), "{}", show(&out));
            assert!(!stderr(&out).contains("panicked"), "{}", show(&out));
        }
    }
    // Nothing was loaded by any of them; the intact path loads.
    assert_eq!(
        env.count(&format!("{}_staging", env.target), "org").await,
        0
    );
    env.run_ok(&["upload", "--run-id", "r", "--segment", "0"]);
}

/// Every command that reads the staging area, as an operator would type it.
fn commands(env: &TestEnv) -> Vec<Vec<String>> {
    let t = env.table.clone();
    [
        vec!["status", "--run-id", "r"],
        vec!["gc"],
        vec!["drift", "--run-id", "r"],
        vec![
            "plan",
            "--table",
            &t,
            "--total-segments",
            "1",
            "--run-id",
            "p",
        ],
        vec![
            "segment",
            "--run-id",
            "r",
            "--total-segments",
            "1",
            "--segment",
            "0",
        ],
        vec!["retry", "phase-1", "1", "0", "--run-id", "r"],
        vec!["prepare", "--run-id", "r"],
        vec!["upload", "--run-id", "r", "--segment", "0"],
        vec!["retry", "phase-3", "0", "--run-id", "r"],
        vec!["replace", "--run-id", "r"],
        vec!["run", "--run-id", "r"],
        vec!["infer-schema", "--table", &t],
    ]
    .into_iter()
    .map(|c| c.into_iter().map(str::to_string).collect())
    .collect()
}

fn run(env: &TestEnv, args: &[String], vars: &[(&str, String)]) -> std::process::Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.run(&args, vars)
}

#[tokio::test(flavor = "multi_thread")]
async fn configuration_faults_exit_2_in_every_command() {
    let env = staged("xconfig").await;
    let denied = FaultProxy::start(
        &env.stack.s3,
        Arc::new(|_: &RequestHead| Some(Injected::s3_error(403, "AccessDenied"))),
    )
    .await;
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "a missing bucket",
            vec![("ETL_BUCKET", "no-such-bucket-anywhere".into())],
            "bucket no-such-bucket-anywhere does not exist",
        ),
        (
            "denied access",
            vec![("ETL_S3_ENDPOINT", denied.url.clone())],
            "AccessDenied",
        ),
    ];
    for args in commands(&env) {
        for (what, vars, expected) in &cases {
            let mut vars = vars.clone();
            vars.extend(fast());
            let out = run(&env, &args, &vars);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{what}: {args:?}: {}",
                show(&out)
            );
            assert!(
                stderr(&out).contains(expected),
                "{what}: {args:?}: {}",
                show(&out)
            );
        }
        let mut bogus = args.clone();
        bogus.push("--bogus".into());
        let out = run(&env, &bogus, &[]);
        assert_eq!(out.status.code(), Some(2), "bad flag: {}", show(&out));
        assert!(stderr(&out).contains("--bogus"), "{}", show(&out));
    }
    // A warehouse URL whose dialect cannot be told, for every command that needs one.
    for args in commands(&env) {
        if !["prepare", "upload", "replace", "run"].contains(&args[0].as_str())
            && args.get(1).map(String::as_str) != Some("phase-3")
        {
            continue;
        }
        let vars = [("ETL_WAREHOUSE_URL", "mysql://etl:pw@db/x".to_string())];
        let out = run(&env, &args, &vars);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        assert!(
            stderr(&out).contains("cannot tell the dialect"),
            "{args:?}: {}",
            show(&out)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_manifest_or_part_exits_2_naming_the_phase_1_retry() {
    let env = staged("xdamaged").await;
    let manifest_key = "dynamo-etl/runs/r/segments/0/manifest.json";
    let manifest = env.get(manifest_key).await.unwrap();
    let part = env.manifest("r", 0).await.unwrap().tables["org"].files[0]
        .key
        .clone();
    let put = |key: String, body: Vec<u8>| {
        let (s3, bucket) = (env.s3.clone(), env.bucket.clone());
        async move {
            s3.put_object()
                .bucket(bucket)
                .key(key)
                .body(body.into())
                .send()
                .await
                .unwrap();
        }
    };
    put(manifest_key.into(), b"{ not a manifest".to_vec()).await;
    for args in [
        vec!["upload", "--run-id", "r", "--segment", "0"],
        vec!["retry", "phase-3", "0", "--run-id", "r"],
    ] {
        let out = env.run(&args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        for expected in [
            "manifest of segment 0 of run r",
            "retry phase-1 1 0 --run-id r",
        ] {
            assert!(
                stderr(&out).contains(expected),
                "{expected}: {}",
                show(&out)
            );
        }
    }
    let status = env.run(&["status", "--run-id", "r"], &[]);
    assert_eq!(status.status.code(), Some(1), "{}", show(&status));
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("damaged manifest"),
        "{}",
        show(&status)
    );
    put(manifest_key.into(), manifest.to_vec()).await;

    // A part that is not what its codec says (as a corrupted upload would be).
    put(part.clone(), b"\x28\xb5\x2f\xfd this is not zstd".to_vec()).await;
    let out = env.run(&["upload", "--run-id", "r", "--segment", "0"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    for expected in [
        part.as_str(),
        "retry phase-1 1 0 --run-id r",
        "nothing was committed",
    ] {
        assert!(
            stderr(&out).contains(expected),
            "{expected}: {}",
            show(&out)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_credentials_exit_2_at_once_saying_what_to_set() {
    let env = TestEnv::new("xcreds").await;
    let home = tempfile::tempdir().unwrap();
    for args in [
        vec!["status", "--run-id", "r"],
        vec!["run", "--table", "t", "--run-id", "r"],
        vec!["infer-schema", "--table", "t"],
        vec![
            "plan",
            "--estimate",
            "--table",
            "t",
            "--total-segments",
            "2",
        ],
    ] {
        let mut cmd = env.command(&args);
        for var in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("HOME", home.path())
            .env("AWS_CONFIG_FILE", home.path().join("none"))
            .env("AWS_SHARED_CREDENTIALS_FILE", home.path().join("none"));
        let started = Instant::now();
        let out = cmd.output().unwrap();
        let took = started.elapsed();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        for expected in ["no AWS credentials", "AWS_ACCESS_KEY_ID", "AWS_PROFILE"] {
            assert!(
                stderr(&out).contains(expected),
                "{expected}: {}",
                show(&out)
            );
        }
        // Not retried as if it were transient (that took 43 s).
        assert!(took < Duration::from_secs(25), "{args:?} took {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_endpoint_is_named_with_its_flag() {
    let env = TestEnv::with_demo("xunreach", 1).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = format!("http://127.0.0.1:{port}");
    let cases = [
        (
            vec![
                "plan",
                "--table",
                env.table.as_str(),
                "--total-segments",
                "1",
            ],
            "ETL_DYNAMODB_ENDPOINT",
            "--dynamodb-endpoint",
        ),
        (vec!["status"], "ETL_S3_ENDPOINT", "--s3-endpoint"),
    ];
    for (args, var, flag) in cases {
        // The default retry policy: a refused connection is tried a few times only.
        let started = Instant::now();
        let out = env.run(&args, &[(var, nowhere.clone())]);
        let took = started.elapsed();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", show(&out));
        for expected in [nowhere.as_str(), flag] {
            assert!(
                stderr(&out).contains(expected),
                "{expected}: {}",
                show(&out)
            );
        }
        assert!(took < Duration::from_secs(25), "{args:?} took {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_stdout_never_panics_and_keeps_the_exit_code_of_the_work() {
    let env = TestEnv::with_demo("xpipe", 1).await;
    for (args, code) in [
        (
            vec![
                "run",
                "--table",
                env.table.as_str(),
                "--run-id",
                "piped",
                "--total-segments",
                "2",
            ],
            0,
        ),
        (vec!["status", "--run-id", "piped"], 0),
        (vec!["status", "--run-id", "never"], 2),
    ] {
        let mut child = env
            .command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away at once, as `| head -0` would.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", show(&out));
        assert!(
            !stderr(&out).contains("panicked"),
            "{args:?}: {}",
            show(&out)
        );
    }
    assert_eq!(env.served_run(&env.target).await.as_deref(), Some("piped"));
}
