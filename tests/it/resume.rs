//! Resumable segments, through the binary: a segment killed with SIGKILL at any point (between
//! pages, while a part uploads, while its checkpoint is written, while its manifest is written)
//! is finished by its retry with every item exactly once; SIGTERM stops phase 1 with a checkpoint
//! and phase 3 with a rollback, both naming their retry; a checkpoint of another run or another
//! segment count is ignored, and says so.

use crate::support::fault_proxy::{FaultProxy, Injected, RequestHead};
use crate::support::{infer, key_of, show, TestEnv};
use dynamo_etl::testkit::fixtures;
use dynamo_etl::value::Item;
use std::process::{Child, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ORGANIZATIONS: usize = 12;

/// Phase 1 of segment 0 of 1 of `run`, in pages of 20 items with a checkpoint after each.
fn phase1_args<'a>(env: &'a TestEnv, run: &'a str) -> Vec<&'a str> {
    vec![
        "segment",
        "--run-id",
        run,
        "--table",
        &env.table,
        "--total-segments",
        "1",
        "--segment",
        "0",
        "--page-items",
        "20",
        "--checkpoint-seconds",
        "0",
    ]
}

fn retry_args(run: &str) -> Vec<&str> {
    vec![
        "retry",
        "phase-1",
        "1",
        "0",
        "--run-id",
        run,
        "--page-items",
        "20",
        "--checkpoint-seconds",
        "0",
    ]
}

/// Every item of the table is in exactly one committed row of `run`.
async fn every_item_once(env: &TestEnv, run: &str, items: &[Item], total_segments: u32) {
    let decoded = env
        .decoded_rows(run, &infer(&env.table, items), total_segments)
        .await;
    let mut keys: Vec<String> = decoded.values().flatten().map(key_of).collect();
    keys.sort();
    let mut expected: Vec<String> = items.iter().map(key_of).collect();
    expected.sort();
    assert_eq!(keys.len(), expected.len(), "{run}: rows");
    assert_eq!(keys, expected, "{run}: every item once");
}

async fn no_open_uploads(env: &TestEnv) {
    let uploads = env
        .s3
        .list_multipart_uploads()
        .bucket(&env.bucket)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "{:?}", uploads.uploads());
}

fn checkpoint_key(run: &str) -> String {
    format!("dynamo-etl/runs/{run}/segments/0/checkpoint.json")
}

/// The `n`-th (from 0) request `matches` picks.
fn nth(
    n: usize,
    matches: impl Fn(&RequestHead) -> bool + Send + Sync + 'static,
) -> impl Fn(&RequestHead) -> bool + Send + Sync + 'static {
    let seen = AtomicUsize::new(0);
    move |head| matches(head) && seen.fetch_add(1, Ordering::SeqCst) == n
}

fn is_put_of(head: &RequestHead, suffix: &str) -> bool {
    head.method == "PUT"
        && head
            .path
            .split('?')
            .next()
            .is_some_and(|p| p.contains(suffix))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_segment_killed_anywhere_is_finished_by_its_retry_with_every_item_once() {
    let env = TestEnv::with_demo("rkill", ORGANIZATIONS).await;
    let items = fixtures::demo_items(ORGANIZATIONS);
    assert!(items.len() > 200, "enough pages: {}", items.len());
    type Point = (
        &'static str,
        &'static str,
        Box<dyn Fn(&RequestHead) -> bool + Send + Sync>,
    );
    let points: Vec<Point> = vec![
        (
            "between",
            "ETL_DYNAMODB_ENDPOINT",
            Box::new(nth(5, RequestHead::is_scan)),
        ),
        (
            "midpart",
            "ETL_S3_ENDPOINT",
            Box::new(nth(12, |h| is_put_of(h, "/part-"))),
        ),
        (
            "checkpoint",
            "ETL_S3_ENDPOINT",
            Box::new(nth(3, |h| is_put_of(h, "checkpoint.json"))),
        ),
        (
            "manifest",
            "ETL_S3_ENDPOINT",
            Box::new(nth(0, |h| is_put_of(h, "manifest.json"))),
        ),
    ];
    for (run, var, stall) in points {
        let upstream = match var {
            "ETL_DYNAMODB_ENDPOINT" => env.stack.dynamodb.clone(),
            _ => env.stack.s3.clone(),
        };
        env.kill_when_stalled(&phase1_args(&env, run), var, &upstream, stall)
            .await;
        assert!(
            env.manifest(run, 0).await.is_none(),
            "{run}: killed before its commit"
        );
        assert!(
            env.get(&checkpoint_key(run)).await.is_some(),
            "{run}: a checkpoint was taken before the kill"
        );
        let out = env.run(&retry_args(run), &[]);
        assert!(out.status.success(), "{run}: {}", show(&out));
        let manifest = env.manifest(run, 0).await.unwrap();
        let resumed = manifest
            .resumed
            .as_ref()
            .unwrap_or_else(|| panic!("{run}: the retry did not resume"));
        assert!(
            resumed.items > 0 && resumed.items <= items.len() as u64,
            "{run}: {resumed:?}"
        );
        assert_eq!(manifest.items_scanned, items.len() as u64, "{run}");
        every_item_once(&env, run, &items, 1).await;
        assert!(
            env.get(&checkpoint_key(run)).await.is_none(),
            "{run}: checkpoint left after the commit"
        );
    }
    no_open_uploads(&env).await;
}

/// Starts the binary, waits until `ready` holds, sends SIGTERM and waits for the exit (at most
/// a minute: a hang guard, not a timing check).
async fn terminate_when(
    env: &TestEnv,
    args: &[&str],
    extra: &[(&str, String)],
    ready: impl AsyncCheck,
) -> (Output, Duration) {
    let mut cmd = env.command(args);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child: Child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.check(env).await {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{args:?} ended ({status}) before it was ready to be stopped");
        }
        assert!(
            Instant::now() < deadline,
            "{args:?} never got ready to be stopped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // SAFETY: kill(2) on the child's pid; it only sends a signal.
    let rc = unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let signalled = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            signalled.elapsed() < Duration::from_secs(60),
            "{args:?} did not stop after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = signalled.elapsed();
    (child.wait_with_output().unwrap(), took)
}

trait AsyncCheck {
    async fn check(&self, env: &TestEnv) -> bool;
}

/// Ready once the object exists.
struct Exists(String);
impl AsyncCheck for Exists {
    async fn check(&self, env: &TestEnv) -> bool {
        env.get(&self.0).await.is_some()
    }
}

/// Ready once the flag is set.
struct Flag(Arc<std::sync::atomic::AtomicBool>);
impl AsyncCheck for Flag {
    async fn check(&self, _: &TestEnv) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_phase_1_with_a_checkpoint_and_its_retry_finishes_the_segment() {
    let env = TestEnv::with_demo("rterm", ORGANIZATIONS).await;
    let items = fixtures::demo_items(ORGANIZATIONS);
    let mut args = phase1_args(&env, "t");
    args.extend(["--max-read-units", "20"]); // slow enough to be stopped half way
    let (out, took) = terminate_when(&env, &args, &[], Exists(checkpoint_key("t"))).await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stopped (SIGTERM)") && err.contains("a checkpoint holds them"),
        "{err}"
    );
    assert!(
        err.contains("run: dynamo-etl retry phase-1 1 0 --run-id t"),
        "{err}"
    );
    eprintln!("phase 1 ended {} ms after SIGTERM", took.as_millis());
    assert!(env.manifest("t", 0).await.is_none());
    no_open_uploads(&env).await;
    let checkpoint: serde_json::Value =
        serde_json::from_slice(&env.get(&checkpoint_key("t")).await.unwrap()).unwrap();
    let saved = checkpoint["items_scanned"].as_u64().unwrap();
    assert!(
        saved > 0 && saved < items.len() as u64,
        "stopped half way: {saved}"
    );
    // status tells an operator the retry will not start from zero.
    let out = env.run(&["status", "--run-id", "t"], &[]);
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.contains(&format!("missing; checkpoint of {saved} items"))
            && status.contains(&format!(
                "its retry goes on from a checkpoint of {saved} items"
            )),
        "{}",
        show(&out)
    );

    env.run_ok(&retry_args("t"));
    let manifest = env.manifest("t", 0).await.unwrap();
    assert_eq!(manifest.resumed.as_ref().map(|r| r.items), Some(saved));
    every_item_once(&env, "t", &items, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_phase_3_with_a_rollback_and_its_retry_loads_the_segment() {
    let env = TestEnv::with_demo("rterm3", 3).await;
    env.phase1("u", 1, 0);
    env.run_ok(&["prepare", "--run-id", "u"]);
    // Every part's GET hangs, so the load is stuck inside its transaction.
    let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stalled.clone();
    let proxy = FaultProxy::start(
        &env.stack.s3,
        Arc::new(move |head| {
            let hit = head.method == "GET" && head.path.contains("/part-");
            if hit {
                flag.store(true, Ordering::SeqCst);
            }
            hit.then(Injected::hang)
        }),
    )
    .await;
    let (out, _) = terminate_when(
        &env,
        &["upload", "--run-id", "u", "--segment", "0"],
        &[("ETL_S3_ENDPOINT", proxy.url.clone())],
        Flag(stalled),
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stopped (SIGTERM)") && err.contains("rolled back"),
        "{err}"
    );
    assert!(
        err.contains("run: dynamo-etl retry phase-3 0 --run-id u"),
        "{err}"
    );
    let staging = format!("{}_staging", env.target);
    // The server rolls the dropped session's transaction back.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut conn = env.pg().await;
        let rows: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM \"{staging}\".\"_dynamo_etl_ledger\""
        ))
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if rows == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the ledger still holds the stopped load"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.run_ok(&["retry", "phase-3", "0", "--run-id", "u"]);
    env.run_ok(&["replace", "--run-id", "u"]);
    assert_eq!(env.served_run(&env.target).await.as_deref(), Some("u"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_checkpoint_of_another_run_or_segment_count_is_ignored_and_says_why() {
    let env = TestEnv::with_demo("rother", ORGANIZATIONS).await;
    let items = fixtures::demo_items(ORGANIZATIONS);
    let upstream = env.stack.s3.clone();
    env.kill_when_stalled(
        &phase1_args(&env, "a"),
        "ETL_S3_ENDPOINT",
        &upstream,
        nth(3, |h| is_put_of(h, "checkpoint.json")),
    )
    .await;
    let taken = env
        .get(&checkpoint_key("a"))
        .await
        .expect("run a has a checkpoint");

    // Run b finds run a's checkpoint in its segment: not used.
    env.run_ok(&[
        "plan",
        "--run-id",
        "b",
        "--table",
        &env.table,
        "--total-segments",
        "1",
    ]);
    let put = |key: String, body: Vec<u8>| {
        let s3 = env.s3.clone();
        let bucket = env.bucket.clone();
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
    put(checkpoint_key("b"), taken.clone()).await;
    let out = env.run(&retry_args("b"), &[]);
    assert!(out.status.success(), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not resuming from the checkpoint") && err.contains("belongs to run a"),
        "{err}"
    );
    assert!(env.manifest("b", 0).await.unwrap().resumed.is_none());
    every_item_once(&env, "b", &items, 1).await;

    // Run a's own checkpoint, claiming another segment count: not used either.
    let mut edited: serde_json::Value = serde_json::from_slice(&taken).unwrap();
    edited["total_segments"] = 2.into();
    put(checkpoint_key("a"), serde_json::to_vec(&edited).unwrap()).await;
    let out = env.run(&retry_args("a"), &[]);
    assert!(out.status.success(), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is for segment 0 of 2, not 0 of 1"), "{err}");
    assert!(env.manifest("a", 0).await.unwrap().resumed.is_none());
    every_item_once(&env, "a", &items, 1).await;
    no_open_uploads(&env).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_run_with_checkpoints_and_the_same_run_finishes_the_copy() {
    let env = TestEnv::with_demo("rtermrun", ORGANIZATIONS).await;
    let items = fixtures::demo_items(ORGANIZATIONS);
    let args = [
        "run",
        "--run-id",
        "w",
        "--table",
        &env.table,
        "--total-segments",
        "2",
        "--page-items",
        "20",
        "--checkpoint-seconds",
        "0",
        "--max-read-units",
        "20",
    ];
    let (out, took) = terminate_when(&env, &args, &[], Exists(checkpoint_key("w"))).await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stopped (SIGTERM)"), "{}", show(&out));
    assert!(
        err.contains("--run-id w"),
        "names the run to go on with: {err}"
    );
    eprintln!("run ended {} ms after SIGTERM:\n{err}", took.as_millis());
    no_open_uploads(&env).await;
    assert_eq!(
        env.served_run(&env.target).await,
        None,
        "nothing was swapped in"
    );

    // The same run goes on from the segments' checkpoints and swaps in every item once.
    env.run_ok(&args[..args.len() - 2]);
    assert_eq!(env.served_run(&env.target).await.as_deref(), Some("w"));
    let resumed = env.manifest("w", 0).await.unwrap().resumed;
    assert!(resumed.is_some_and(|r| r.items > 0), "segment 0 resumed");
    every_item_once(&env, "w", &items, 2).await;
}
