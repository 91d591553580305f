//! The schema job and the schema cache against the real local stack: `infer-schema` reproduces the
//! reviewed schemas and is stable, samples stop where told, snapshots commit with their manifest
//! and damaged ones are skipped, an unreachable cache falls back to the static folder, phase 1
//! plans with the active snapshot, narrowing needs consent, and `drift` sums what runs did not fit.

use crate::support::fault_proxy::{FaultProxy, Injected};
use crate::support::{infer, key_of, repo_root, show, TestEnv};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{TimeZone, Utc};
use dynamo_etl::error::{Class, Classify};
use dynamo_etl::retry::RetryPolicy;
use dynamo_etl::schema::SchemaSource;
use dynamo_etl::schema::{DataSchema, LogicalType, MatchRule, SchemaSet};
use dynamo_etl::staging::manifest::DriftReason;
use dynamo_etl::staging::resolve::SchemaResolver;
use dynamo_etl::staging::schema_cache::SnapshotCache;
use dynamo_etl::staging::{Layout, Staging};
use dynamo_etl::testkit::{fixtures, layouts};
use dynamo_etl::value::Item;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The binary's default staging prefix.
const PREFIX: &str = "dynamo-etl";

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 2,
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_total: Duration::from_secs(2),
    }
}

async fn cache_of(env: &TestEnv, prefix: &str) -> SnapshotCache {
    SnapshotCache::new(env.staging(prefix, fast_retries()).await)
}

fn schema_set(table: &str, items: &[Item]) -> SchemaSet {
    SchemaSet::new(table, infer(table, items), "test").unwrap()
}

/// A distinct, valid set per `version`: the demo schemas with `org.name` widened to
/// `text(100 + version)`.
fn version(table: &str, version: u32) -> SchemaSet {
    let mut set = schema_set(table, &fixtures::demo_items(2));
    let org = set.schemas.iter_mut().find(|s| s.table == "org").unwrap();
    let name = org
        .columns
        .iter_mut()
        .find(|c| c.attribute == "name")
        .unwrap();
    name.logical_type = LogicalType::Text {
        max_bytes: 100 + version,
    };
    set
}

/// `*.json` files of a folder: name → bytes.
fn read_folder(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().to_string(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// The data-schema files of snapshot `id` in S3: name → bytes.
async fn snapshot_files(env: &TestEnv, prefix: &str, id: &str) -> BTreeMap<String, Vec<u8>> {
    let folder = format!("{prefix}/schemas/{id}/{}/", env.table);
    let mut out = BTreeMap::new();
    for key in env.keys(&folder).await {
        let name = key.strip_prefix(&folder).unwrap().to_string();
        out.insert(name, env.get(&key).await.unwrap());
    }
    out
}

/// The snapshot id `infer-schema` reports on stdout.
fn reported_snapshot(stdout: &[u8]) -> String {
    let text = String::from_utf8_lossy(stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("snapshot "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no snapshot reported in:\n{text}"))
        .to_string()
}

fn infer_cmd<'a>(table: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["infer-schema", "--table", table];
    args.extend_from_slice(extra);
    args
}

#[tokio::test(flavor = "multi_thread")]
async fn infer_schema_reproduces_the_reviewed_static_schemas() {
    let env = TestEnv::new("golden").await;
    env.load(fixtures::demo_items(20)).await;
    // The table name is unique per test (DynamoDB Local is shared), so the golden files are
    // compared with their one source_table line naming this test's table; every other byte is
    // compared as is.
    let golden_dir = repo_root().join("schemas").join("platform");
    let expected: BTreeMap<String, Vec<u8>> = read_folder(&golden_dir)
        .into_iter()
        .map(|(name, bytes)| {
            let text = String::from_utf8(bytes).unwrap().replacen(
                "\"source_table\": \"platform\"",
                &format!("\"source_table\": \"{}\"", env.table),
                1,
            );
            (name, text.into_bytes())
        })
        .collect();
    assert_eq!(
        expected.len(),
        4,
        "schemas/platform has the four demo tables"
    );

    // Many small segments, a few at a time: the merged result must equal one full pass.
    for (case, extra) in [
        (
            "7 segments",
            vec!["--total-segments", "7", "--concurrency", "3"],
        ),
        ("1 segment", vec!["--total-segments", "1"]),
    ] {
        let out_dir = tempfile::tempdir().unwrap();
        let dir = out_dir.path().display().to_string();
        let mut args = infer_cmd(&env.table, &extra);
        // No cache: nothing to evolve from, so both runs infer from scratch.
        args.extend(["--no-schema-cache", "--write-static", &dir]);
        let out = env.run(&args, &[]);
        assert!(out.status.success(), "{case}: {}", show(&out));
        let written = read_folder(&out_dir.path().join(&env.table));
        assert_eq!(
            written.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "{case}"
        );
        for (name, bytes) in &expected {
            assert_eq!(
                String::from_utf8_lossy(&written[name]),
                String::from_utf8_lossy(bytes),
                "{case}: {name} differs from schemas/platform/{name}"
            );
        }
    }

    // Through the cache too: the snapshot holds the same bytes.
    let out = env.run(&infer_cmd(&env.table, &[]), &[]);
    assert!(out.status.success(), "{}", show(&out));
    let id = reported_snapshot(&out.stdout);
    assert_eq!(snapshot_files(&env, PREFIX, &id).await, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn rerunning_over_unchanged_data_writes_identical_files() {
    let env = TestEnv::new("stable").await;
    env.load(fixtures::demo_items(3)).await;
    let first_dir = tempfile::tempdir().unwrap();
    let first_path = first_dir.path().display().to_string();
    let out = env.run(
        &infer_cmd(&env.table, &["--write-static", &first_path]),
        &[],
    );
    assert!(out.status.success(), "{}", show(&out));
    let first_id = reported_snapshot(&out.stdout);
    let first = snapshot_files(&env, PREFIX, &first_id).await;
    assert_eq!(first.len(), 4, "{first:?}");

    // Second run: evolves from the first snapshot, with another segmentation.
    let second_dir = tempfile::tempdir().unwrap();
    let second_path = second_dir.path().display().to_string();
    let out = env.run(
        &infer_cmd(
            &env.table,
            &[
                "--total-segments",
                "5",
                "--concurrency",
                "2",
                "--write-static",
                &second_path,
            ],
        ),
        &[],
    );
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("evolved from snapshot:{first_id}")),
        "the second run must start from the first snapshot:\n{stdout}"
    );
    for table in ["org", "group", "fin", "vuln"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("  {table} (")))
            .unwrap_or_else(|| panic!("{table} not reported:\n{stdout}"));
        assert!(line.ends_with("): unchanged"), "{line}");
    }
    let second_id = reported_snapshot(&out.stdout);
    let second = snapshot_files(&env, PREFIX, &second_id).await;
    assert_eq!(
        second, first,
        "snapshot files differ between identical runs"
    );
    let first_static = read_folder(&first_dir.path().join(&env.table));
    assert_eq!(
        read_folder(&second_dir.path().join(&env.table)),
        first_static
    );
    assert_eq!(
        first_static, first,
        "static copy and snapshot hold the same bytes"
    );

    // And the newest snapshot is the active one.
    let lookup = cache_of(&env, PREFIX)
        .await
        .active(&env.table)
        .await
        .unwrap();
    assert_eq!(lookup.active.unwrap().id, second_id.max(first_id));
}

#[tokio::test(flavor = "multi_thread")]
async fn max_items_stops_the_scan_at_the_sample_size() {
    let env = TestEnv::new("sample").await;
    let items = fixtures::demo_items(3);
    env.load(items.clone()).await;
    let out = env.run(
        &infer_cmd(&env.table, &["--max-items", "5", "--total-segments", "2"]),
        &[],
    );
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("5 items in 2 segments (a sample: stopped after 5 items)"),
        "{stdout}"
    );
    // The per-segment log lines count what was actually summarised.
    let summarised: u64 = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "segment summarised")
        .map(|v| v["items"].as_u64().unwrap())
        .sum();
    assert_eq!(summarised, 5, "{}", show(&out));

    // Without the limit the whole table is read.
    let out = env.run(
        &infer_cmd(
            &env.table,
            &[
                "--no-schema-cache",
                "--write-static",
                &env.schemas_dir.path().display().to_string(),
            ],
        ),
        &[],
    );
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "{} items in 4 segments (the whole table)",
            items.len()
        )),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshots_commit_with_their_manifest_and_read_back() {
    let env = TestEnv::new("snapshot").await;
    let cache = cache_of(&env, "p").await;
    let set = version(&env.table, 1);
    let t1 = Utc.with_ymd_and_hms(2026, 11, 21, 8, 45, 0).unwrap();
    let manifest = cache.write(&set, t1).await.unwrap();
    let id = manifest.snapshot_id.clone();
    assert!(id.starts_with("20261121T084500.000Z-"), "{id}");

    let mut expected_keys: Vec<String> = set
        .schemas
        .iter()
        .map(|s| format!("p/schemas/{id}/{}/{}.json", env.table, s.table))
        .collect();
    expected_keys.push(format!("p/schemas/{id}/snapshot.json"));
    expected_keys.sort();
    assert_eq!(env.keys("p/schemas/").await, expected_keys);

    // The manifest names every file with its size and SHA-256.
    let stored: serde_json::Value = serde_json::from_slice(
        &env.get(&format!("p/schemas/{id}/snapshot.json"))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(stored["source_table"], env.table.as_str());
    assert_eq!(stored["created_at"], "2026-11-21T08:45:00.000Z");
    let files = stored["files"].as_array().unwrap();
    assert_eq!(files.len(), set.schemas.len());
    for f in files {
        let body = env
            .get(&format!("p/schemas/{id}/{}", f["path"].as_str().unwrap()))
            .await
            .unwrap();
        let digest: String = Sha256::digest(&body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(f["sha256"], digest.as_str());
        assert_eq!(f["size"], body.len() as u64);
    }

    let lookup = cache.active(&env.table).await.unwrap();
    let active = lookup.active.expect("the snapshot is active");
    assert_eq!(active.id, id);
    assert_eq!(active.schemas, set);
    assert!(lookup.skipped.is_empty());

    // A newer snapshot of another source table changes nothing for this one.
    let other = schema_set("other-table", &fixtures::demo_items(1));
    let t2 = Utc.with_ymd_and_hms(2026, 11, 22, 0, 0, 0).unwrap();
    let other_id = cache.write(&other, t2).await.unwrap().snapshot_id;
    let lookup = cache.active(&env.table).await.unwrap();
    assert_eq!(lookup.active.unwrap().id, id);
    assert!(lookup.skipped.is_empty(), "{:?}", lookup.skipped);
    assert_eq!(
        cache
            .active("other-table")
            .await
            .unwrap()
            .active
            .unwrap()
            .id,
        other_id
    );

    // A writer that fails before its manifest leaves a snapshot that never becomes active.
    let proxy = FaultProxy::start(
        &env.stack.s3,
        Arc::new(|head| {
            (head.method == "PUT" && head.path.contains("/snapshot.json"))
                .then(Injected::s3_internal_error)
        }),
    )
    .await;
    let failing = SnapshotCache::new(Staging::new(
        env.store_at(&proxy.url, fast_retries()).await,
        Layout::new("p"),
    ));
    let newer = version(&env.table, 2);
    let t3 = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap();
    let err = failing.write(&newer, t3).await.unwrap_err();
    assert!(err.to_string().contains("snapshot.json"), "{err}");
    let half_written: Vec<String> = env.keys("p/schemas/20261123").await.into_iter().collect();
    assert_eq!(
        half_written.len(),
        newer.schemas.len(),
        "the data-schema files went up first: {half_written:?}"
    );
    let lookup = cache.active(&env.table).await.unwrap();
    assert_eq!(
        lookup.active.unwrap().id,
        id,
        "the previous snapshot stays active"
    );
    assert_eq!(lookup.skipped.len(), 1, "{:?}", lookup.skipped);
    assert!(lookup.skipped[0].id.starts_with("20261123T000000.000Z-"));
    assert!(
        lookup.skipped[0].problem.contains("no snapshot.json"),
        "{}",
        lookup.skipped[0]
    );
}

/// How a test damages the newest snapshot, and what the skip reason must mention.
type Damage = (&'static str, &'static str);

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_newest_snapshot_is_skipped_and_the_previous_stays_active() {
    let env = TestEnv::new("damaged").await;
    let older = version(&env.table, 1);
    let newer = version(&env.table, 2);
    let static_dir = tempfile::tempdir().unwrap();
    let cases: [Damage; 6] = [
        ("delete a file", "missing"),
        ("corrupt a checksum", "fails its checksum"),
        ("change a file", "fails its checksum"),
        ("remove the manifest", "no snapshot.json"),
        ("unparsable file with a matching checksum", "not valid"),
        ("unparsable manifest", "snapshot.json is not valid"),
    ];
    for (i, (damage, reason)) in cases.into_iter().enumerate() {
        let prefix = format!("case{i}");
        let cache = cache_of(&env, &prefix).await;
        let t1 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let t2 = Utc.with_ymd_and_hms(2026, 1, 8, 0, 0, 0).unwrap();
        let old_id = cache.write(&older, t1).await.unwrap().snapshot_id;
        let new_id = cache.write(&newer, t2).await.unwrap().snapshot_id;
        assert_eq!(
            cache.active(&env.table).await.unwrap().active.unwrap().id,
            new_id,
            "{damage}: before the damage the newest is active"
        );

        let folder = format!("{prefix}/schemas/{new_id}/");
        let file = format!("{folder}{}/org.json", env.table);
        let manifest_key = format!("{folder}snapshot.json");
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
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&env.get(&manifest_key).await.unwrap()).unwrap();
        let org_entry = manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .position(|f| f["path"].as_str().unwrap().ends_with("/org.json"))
            .unwrap();
        match damage {
            "delete a file" | "remove the manifest" => {
                let key = if damage == "delete a file" {
                    &file
                } else {
                    &manifest_key
                };
                env.s3
                    .delete_object()
                    .bucket(&env.bucket)
                    .key(key)
                    .send()
                    .await
                    .unwrap();
            }
            "corrupt a checksum" => {
                manifest["files"][org_entry]["sha256"] = "0".repeat(64).into();
                put(manifest_key.clone(), manifest.to_string().into_bytes()).await;
            }
            "change a file" => {
                let text = String::from_utf8(env.get(&file).await.unwrap()).unwrap();
                let changed = text.replacen("\"nullable\": false", "\"nullable\": true", 1);
                assert_ne!(changed, text);
                put(file.clone(), changed.into_bytes()).await;
            }
            "unparsable file with a matching checksum" => {
                let body = b"{\"format\": 1, \"colour\": \"red\"}\n".to_vec();
                let digest: String = Sha256::digest(&body)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                manifest["files"][org_entry]["sha256"] = digest.into();
                manifest["files"][org_entry]["size"] = body.len().into();
                put(file.clone(), body).await;
                put(manifest_key.clone(), manifest.to_string().into_bytes()).await;
            }
            "unparsable manifest" => put(manifest_key.clone(), b"{\"format\":".to_vec()).await,
            other => unreachable!("{other}"),
        }

        let lookup = cache.active(&env.table).await.unwrap();
        assert_eq!(
            lookup.active.as_ref().map(|a| a.id.as_str()),
            Some(old_id.as_str()),
            "{damage}: the previous valid snapshot must be active"
        );
        assert_eq!(lookup.active.unwrap().schemas, older, "{damage}");
        assert_eq!(lookup.skipped.len(), 1, "{damage}: {:?}", lookup.skipped);
        assert_eq!(lookup.skipped[0].id, new_id, "{damage}");
        assert!(
            lookup.skipped[0].problem.contains(reason),
            "{damage}: expected {reason:?} in {:?}",
            lookup.skipped[0].problem
        );

        // The resolver uses the previous snapshot and passes the warning on.
        let resolved = SchemaResolver::new(Some(cache), static_dir.path())
            .resolve(&env.table, None)
            .await
            .unwrap();
        assert_eq!(resolved.source, SchemaSource::Snapshot(old_id.clone()));
        assert!(
            resolved.warnings.iter().any(|w| w.contains(&new_id)),
            "{damage}: {:?}",
            resolved.warnings
        );
        assert!(resolved.reason.contains("skipped"), "{}", resolved.reason);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_cache_falls_back_to_the_static_schemas_with_a_warning() {
    crate::support::set_local_aws_env();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = crate::support::s3_store(
        &format!("http://127.0.0.1:{port}"),
        "cache-bucket",
        fast_retries(),
    )
    .await;
    let cache = SnapshotCache::new(Staging::new(store, Layout::new("p")));
    let static_dir = tempfile::tempdir().unwrap();
    let resolver = SchemaResolver::new(Some(cache), static_dir.path());

    // Nothing static either: a retriable error that says both.
    let started = Instant::now();
    let err = resolver.resolve("platform", None).await.unwrap_err();
    assert_eq!(err.class(), Class::Retry, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("unreachable") && text.contains("platform/"),
        "{text}"
    );

    // With static files: they are used, and the warning says the cache could not be reached.
    let set = schema_set("platform", &fixtures::demo_items(1));
    let folder = static_dir.path().join("platform");
    std::fs::create_dir_all(&folder).unwrap();
    for (path, text) in set.to_files() {
        std::fs::write(static_dir.path().join(path), text).unwrap();
    }
    let resolved = resolver.resolve("platform", None).await.unwrap();
    assert_eq!(
        resolved.source,
        SchemaSource::Static(static_dir.path().to_path_buf())
    );
    assert_eq!(resolved.schemas, set);
    assert!(
        resolved.reason.contains("unreachable"),
        "{}",
        resolved.reason
    );
    assert_eq!(resolved.warnings.len(), 1, "{:?}", resolved.warnings);
    assert!(
        resolved.warnings[0].contains("unreachable")
            && resolved.warnings[0].contains("static data-schemas"),
        "{:?}",
        resolved.warnings
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the tiny retry policy bounds the wait: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn phase_1_plans_with_the_active_snapshot_and_names_skipped_ones() {
    let env = TestEnv::new("plan").await;
    let items = fixtures::demo_items(2);
    env.load(items.clone()).await;
    let static_schemas = infer(&env.table, &items);
    env.write_schemas(&static_schemas);

    let cache = cache_of(&env, PREFIX).await;
    let snapshot_set = version(&env.table, 1);
    assert_ne!(
        SchemaSet::new(&env.table, static_schemas, "static").unwrap(),
        snapshot_set,
        "the test must tell the two sources apart"
    );
    let now = Utc::now();
    let good = cache
        .write(&snapshot_set, now - chrono::Duration::hours(2))
        .await
        .unwrap()
        .snapshot_id;
    let broken = cache
        .write(&version(&env.table, 2), now - chrono::Duration::hours(1))
        .await
        .unwrap()
        .snapshot_id;
    env.s3
        .delete_object()
        .bucket(&env.bucket)
        .key(format!("{PREFIX}/schemas/{broken}/{}/vuln.json", env.table))
        .send()
        .await
        .unwrap();

    let segment = |run: &'static str, extra: &[&'static str]| {
        let mut args = vec![
            "segment",
            "--run-id",
            run,
            "--table",
            env.table.as_str(),
            "--total-segments",
            "1",
            "--segment",
            "0",
        ];
        args.extend_from_slice(extra);
        env.run(&args, &[])
    };
    let out = segment("cached", &[]);
    assert!(out.status.success(), "{}", show(&out));
    let plan: serde_json::Value = serde_json::from_slice(
        &env.get(&format!("{PREFIX}/runs/cached/run.json"))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(plan["schema_source"], format!("snapshot:{good}"));
    let pinned: Vec<DataSchema> = serde_json::from_value(plan["schemas"].clone()).unwrap();
    assert_eq!(
        SchemaSet::new(&env.table, pinned, "plan").unwrap(),
        snapshot_set
    );
    assert_eq!(
        env.manifest("cached", 0).await.unwrap().schema_source,
        SchemaSource::Snapshot(good.clone())
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let logs: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let warned = logs.iter().any(|l| {
        l["level"] == "WARN"
            && l["snapshot"] == broken.as_str()
            && l["problem"].as_str().unwrap_or("").contains("vuln.json")
    });
    assert!(warned, "no warning naming {broken}:\n{stderr}");
    let chosen: Vec<&serde_json::Value> = logs
        .iter()
        .filter(|l| l["message"] == "data-schemas chosen")
        .collect();
    assert_eq!(chosen.len(), 1, "one line says which schemas:\n{stderr}");
    assert_eq!(chosen[0]["source"], format!("snapshot:{good}"));
    assert!(
        chosen[0]["reason"]
            .as_str()
            .unwrap()
            .contains("newest valid snapshot"),
        "{stderr}"
    );

    // A rerun of the planned run keeps its pinned snapshot even after a newer one appears.
    cache.write(&version(&env.table, 3), now).await.unwrap();
    let out = env.run(&["retry", "phase-1", "1", "0", "--run-id", "cached"], &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        env.manifest("cached", 0).await.unwrap().schema_source,
        SchemaSource::Snapshot(good.clone())
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pinned by the plan of run cached"),
        "{}",
        show(&out)
    );

    // --no-schema-cache plans with the static folder.
    let out = segment("static", &["--no-schema-cache"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        env.manifest("static", 0).await.unwrap().schema_source,
        SchemaSource::Static(env.schemas_dir.path().to_path_buf())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn narrowing_needs_consent_and_reports_what_it_breaks() {
    let env = TestEnv::new("narrow").await;
    let items = fixtures::demo_items(2);
    env.load(items.clone()).await;
    // A previous snapshot wider than the data: employees as decimal(30,2), name as json.
    let mut previous = infer(&env.table, &items);
    let org = previous.iter_mut().find(|s| s.table == "org").unwrap();
    for c in &mut org.columns {
        match c.attribute.as_str() {
            "employees" => {
                c.logical_type = LogicalType::Decimal {
                    precision: 30,
                    scale: 2,
                }
            }
            "name" => c.logical_type = LogicalType::Json,
            _ => {}
        }
    }
    let previous = SchemaSet::new(&env.table, previous, "test").unwrap();
    let previous_id = cache_of(&env, PREFIX)
        .await
        .write(&previous, Utc::now() - chrono::Duration::hours(1))
        .await
        .unwrap()
        .snapshot_id;
    let org_column = |dir: &Path, attribute: &str| -> LogicalType {
        let text = std::fs::read_to_string(dir.join(&env.table).join("org.json")).unwrap();
        let schema = DataSchema::from_json(&text, "org.json").unwrap();
        schema
            .columns
            .iter()
            .find(|c| c.attribute == attribute)
            .unwrap()
            .logical_type
    };

    // Without consent the types stay as wide as before.
    let kept = tempfile::tempdir().unwrap();
    let kept_path = kept.path().display().to_string();
    let out = env.run(&infer_cmd(&env.table, &["--write-static", &kept_path]), &[]);
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("evolved from snapshot:{previous_id}")),
        "{stdout}"
    );
    assert!(!stdout.contains("would break"), "{stdout}");
    assert_eq!(
        org_column(kept.path(), "employees"),
        LogicalType::Decimal {
            precision: 30,
            scale: 2
        }
    );
    assert_eq!(org_column(kept.path(), "name"), LogicalType::Json);

    // A different classification would mix two splits of the table: refused.
    let out = env.run(&infer_cmd(&env.table, &["--classify-attribute", "sk"]), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--allow-narrowing") && stderr.contains("pk"),
        "{stderr}"
    );

    // With consent: inferred from scratch, and every narrowing is listed with its consequence.
    let narrowed = tempfile::tempdir().unwrap();
    let narrowed_path = narrowed.path().display().to_string();
    let out = env.run(
        &infer_cmd(
            &env.table,
            &["--allow-narrowing", "--write-static", &narrowed_path],
        ),
        &[],
    );
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("org.employees: decimal(30,2) -> bigint"),
        "{stdout}"
    );
    assert!(stdout.contains("org.name: json -> text("), "{stdout}");
    assert!(stdout.contains("2 change(s) narrow"), "{stdout}");
    assert!(
        stdout.contains("would break: values that fit decimal(30,2)"),
        "{stdout}"
    );
    assert_eq!(
        org_column(narrowed.path(), "employees"),
        LogicalType::Bigint
    );
    let lookup = cache_of(&env, PREFIX)
        .await
        .active(&env.table)
        .await
        .unwrap();
    assert_eq!(
        lookup.active.unwrap().id,
        reported_snapshot(&out.stdout),
        "the narrowed snapshot is the active one"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_sums_what_the_segments_did_not_fit() {
    let env = TestEnv::new("drift").await;
    let items = fixtures::demo_items(8);
    // The data-schemas know organizations without budget and tags, and nothing else.
    let mut known: Vec<Item> = items
        .iter()
        .filter(|i| key_of(i).starts_with("ORG#"))
        .cloned()
        .collect();
    for item in &mut known {
        item.remove("budget");
        item.remove("tags");
    }
    let schemas = infer(&env.table, &known);
    let mut odd = known[0].clone();
    odd.insert(
        "pk".into(),
        aws_sdk_dynamodb::types::AttributeValue::S("ORG#odd".into()),
    );
    odd.insert(
        "employees".into(),
        aws_sdk_dynamodb::types::AttributeValue::S("many".into()),
    );
    let mut all = items.clone();
    all.push(odd);
    env.load(all.clone()).await;
    env.write_schemas(&schemas);
    let segment = |k: &'static str| {
        env.run(
            &[
                "segment",
                "--run-id",
                "d",
                "--table",
                &env.table,
                "--total-segments",
                "3",
                "--segment",
                k,
            ],
            &[],
        )
    };
    for k in ["0", "1"] {
        let out = segment(k);
        assert!(out.status.success(), "{}", show(&out));
    }

    // Two of three segments: their sums, and the missing one listed.
    let out = env.run(&["drift", "--run-id", "d"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut budget = 0;
    let mut unclassified = 0;
    for k in 0..2 {
        let m = env.manifest("d", k).await.unwrap();
        budget += m
            .drift
            .get("org")
            .and_then(|d| crate::support::drift_entry(d, "budget", DriftReason::NotInSchema))
            .map_or(0, |c| c.count);
        unclassified += m.tables["_unclassified"].rows;
    }
    assert!(stdout.contains("2 of 3 segment manifests read"), "{stdout}");
    if budget > 0 {
        assert!(
            stdout.contains(&format!(
                "\"budget\" (not in the data-schema): {budget} item(s)"
            )),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains(&format!("_unclassified: {unclassified} item(s)")),
        "{stdout}"
    );
    assert!(stdout.contains("without a manifest"), "{stdout}");
    assert!(stdout.contains("retry phase-1 3 2 --run-id d"), "{stdout}");

    // All three: the exact totals of the dataset.
    let out = segment("2");
    assert!(out.status.success(), "{}", show(&out));
    let mut with_budget = 0;
    for k in 0..3 {
        let m = env.manifest("d", k).await.unwrap();
        if m.drift.get("org").is_some_and(|d| {
            crate::support::drift_entry(d, "budget", DriftReason::NotInSchema).is_some()
        }) {
            with_budget += 1;
        }
    }
    assert!(
        with_budget >= 2,
        "the organizations must spread over segments for the sums to mean something"
    );
    let out = env.run(&["drift", "--run-id", "d"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("3 of 3 segment manifests read"), "{stdout}");
    assert!(!stdout.contains("without a manifest"), "{stdout}");
    assert!(
        stdout.contains("\"budget\" (not in the data-schema): 8 item(s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"tags\" (not in the data-schema): 8 item(s)"),
        "{stdout}"
    );
    let employees = stdout
        .lines()
        .find(|l| l.contains("\"employees\" (type differs from the data-schema): 1 item(s)"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(employees.contains("ORG#odd"), "example key: {employees}");
    let expected_unclassified = all.len() - known.len() - 1;
    assert!(
        stdout.contains(&format!(
            "_unclassified: {expected_unclassified} item(s) matched no data-schema"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("infer-schema --table {}", env.table)),
        "{stdout}"
    );

    // A run that was never planned is a usage error.
    let out = env.run(&["drift", "--run-id", "never"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("run never has no plan"),
        "{}",
        show(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_infer_schema_usage_exits_2_with_a_clear_message() {
    let env = TestEnv::new("inferusage").await;
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["infer-schema", "--table", "x", "--no-schema-cache"],
            "--write-static",
        ),
        (
            vec!["infer-schema", "--table", "x", "--prefix-delimiter", "ab"],
            "--prefix-delimiter",
        ),
        (
            vec!["infer-schema", "--table", "x", "--max-read-units", "0"],
            "--max-read-units",
        ),
        (
            vec!["infer-schema", "--table", "x", "--total-segments", "0"],
            "--total-segments",
        ),
        (
            vec!["infer-schema", "--table", "no-such-table-here"],
            "no-such-table-here",
        ),
    ];
    for (args, expected) in cases {
        let out = env.run(&args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", show(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

// ---------------------------------------------------------------------------------------------
// Entity tables for single-table designs: each layout of `testkit::layouts` through the real
// binary with default flags, then a second week.

/// The data-schemas `infer-schema --write-static DIR` wrote for `table`.
fn written_schemas(dir: &Path, table: &str) -> Vec<DataSchema> {
    read_folder(&dir.join(table))
        .into_iter()
        .map(|(name, bytes)| {
            DataSchema::from_json(&String::from_utf8(bytes).unwrap(), &name).unwrap()
        })
        .collect()
}

/// Runs `infer-schema` with default flags (plus `extra`) into the cache and `dir`; returns stdout.
fn infer_into(env: &TestEnv, dir: &Path, extra: &[&str]) -> String {
    let dir = dir.display().to_string();
    let mut args = infer_cmd(&env.table, extra);
    args.extend(["--write-static", &dir]);
    let out = env.run(&args, &[]);
    assert!(out.status.success(), "{}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Copies the table into the warehouse with `run` (data-schemas from the cache's active
/// snapshot) as run `run_id`.
fn copy(env: &TestEnv, run_id: &str) -> String {
    let out = env.run_ok(&[
        "run",
        "--table",
        &env.table,
        "--run-id",
        run_id,
        "--total-segments",
        "2",
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Checks that every item of `layout` landed in its entity's table and nowhere else: each
/// table's rows are exactly its items, `_unclassified` is empty, no row has anything in
/// `_extra`, and every string, number and boolean attribute has a typed (not JSON) column.
async fn assert_one_table_per_entity(
    env: &TestEnv,
    layout: &layouts::Layout,
    schemas: &[DataSchema],
    report: &str,
) {
    let context = format!("layout {}:\n{report}", layout.name);
    let written: std::collections::BTreeSet<&str> =
        schemas.iter().map(|s| s.table.as_str()).collect();
    let expected: std::collections::BTreeSet<&str> = layout.tables().into_iter().collect();
    assert_eq!(written, expected, "{context}");
    assert_eq!(
        env.count(&env.target, "_unclassified").await,
        0,
        "{context}"
    );
    let mut conn = env.pg().await;
    for schema in schemas {
        let items: Vec<&Item> = layout
            .items
            .iter()
            .filter(|(t, _)| *t == schema.table)
            .map(|(_, i)| i)
            .collect();
        assert_eq!(
            env.count(&env.target, &schema.table).await,
            items.len() as i64,
            "rows of {}\n{context}",
            schema.table
        );
        let extra: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM \"{}\".\"{}\" WHERE \"_extra\" IS NOT NULL",
            env.target, schema.table
        ))
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(extra, 0, "rows of {} with _extra\n{context}", schema.table);
        for item in items {
            for (name, value) in item {
                let column = schema
                    .columns
                    .iter()
                    .find(|c| &c.attribute == name)
                    .unwrap_or_else(|| panic!("{}.{name} has no column\n{context}", schema.table));
                let scalar = matches!(
                    value,
                    AttributeValue::S(_) | AttributeValue::N(_) | AttributeValue::Bool(_)
                );
                assert!(
                    !scalar || column.logical_type != LogicalType::Json,
                    "{}.{name} is a JSON column\n{context}",
                    schema.table
                );
            }
        }
    }
}

/// One layout, first week, default flags: inferred, copied, checked.
async fn first_week(layout: layouts::Layout) {
    let env = TestEnv::new(&format!(
        "layout-{}",
        layout
            .name
            .replace(|c: char| !c.is_ascii_alphanumeric(), "")
    ))
    .await;
    env.load_keyed(&layout.keys, layout.items()).await;
    let dir = tempfile::tempdir().unwrap();
    let report = infer_into(&env, dir.path(), &["--total-segments", "3"]);
    assert!(report.contains("entities: "), "{report}");
    assert!(!report.contains("drift: "), "{report}");
    let schemas = written_schemas(dir.path(), &env.table);
    copy(&env, "week1");
    assert_one_table_per_entity(&env, &layout, &schemas, &report).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn electrodb_items_land_in_one_table_per_entity() {
    first_week(layouts::electrodb()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dynamodb_toolbox_items_land_in_one_table_per_entity() {
    first_week(layouts::dynamodb_toolbox()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn appsync_items_land_in_one_table_per_entity() {
    first_week(layouts::appsync()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plain_type_attribute_beside_uuid_keys_splits_the_items() {
    first_week(layouts::plain_type()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn customers_orders_and_items_are_told_apart_by_both_keys() {
    first_week(layouts::two_keys()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tenant_keyed_items_are_split_by_entity_never_by_tenant() {
    first_week(layouts::tenants()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn key_prefixes_with_a_child_under_its_parent_give_each_its_table() {
    first_week(layouts::key_prefixes()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_second_week_keeps_a_hand_edited_rule_and_gives_new_entities_tables() {
    let week_one = layouts::dynamodb_toolbox();
    let env = TestEnv::new("week2").await;
    env.load_keyed(&week_one.keys, week_one.items()).await;
    // Week one goes to the reviewed folder only, where a reviewer edits it.
    let reviewed = env.schemas_dir.path().to_path_buf();
    let report = infer_into(&env, &reviewed, &["--no-schema-cache"]);
    let user_file = reviewed.join(&env.table).join("user.json");
    let mut user =
        DataSchema::from_json(&std::fs::read_to_string(&user_file).unwrap(), "user").unwrap();
    assert_eq!(
        user.rule,
        Some(MatchRule::equals("_et", "User")),
        "{report}"
    );
    let hand_written = MatchRule::prefix("_et", "User");
    user.rule = Some(hand_written.clone());
    std::fs::write(&user_file, user.to_pretty_json()).unwrap();

    // During the week, a new type value whose name begins like an existing one, and a new
    // entity. Tonight's copy still has last week's data-schemas: the new items are kept whole in
    // _unclassified and the drift report counts them; none joins a table by accident except
    // where the reviewer's prefix rule says so.
    let more = layouts::dynamodb_toolbox_week_two();
    env.add(more.iter().map(|(_, i)| i.clone()).collect()).await;
    let week_two = week_one.clone().with(more);
    copy(&env, "night");
    let projects = week_two
        .items
        .iter()
        .filter(|(t, _)| *t == "project")
        .count() as i64;
    let settings = week_two
        .items
        .iter()
        .filter(|(t, _)| *t == "user_settings")
        .count() as i64;
    assert_eq!(env.count(&env.target, "_unclassified").await, projects);
    // The hand-written prefix takes UserSettings into user until the weekly job splits it off.
    assert_eq!(env.count(&env.target, "user").await, 10 + settings);
    let drift = env.run_ok(&["drift", "--run-id", "night"]);
    let drift = String::from_utf8_lossy(&drift.stdout);
    assert!(
        drift.contains(&format!(
            "_unclassified: {projects} item(s) matched no data-schema"
        )),
        "{drift}"
    );

    // The weekly job evolves the reviewed files (the reviewer's rule included) into the cache.
    let dir = tempfile::tempdir().unwrap();
    let report = infer_into(&env, dir.path(), &["--explain"]);
    assert!(report.contains("candidates weighed for"), "{report}");
    let schemas = written_schemas(dir.path(), &env.table);
    let rule = |table: &str| {
        schemas
            .iter()
            .find(|s| s.table == table)
            .unwrap_or_else(|| panic!("no table {table}:\n{report}"))
            .rule
            .clone()
    };
    assert_eq!(rule("user"), Some(hand_written), "{report}");
    assert_eq!(
        rule("task"),
        Some(MatchRule::equals("_et", "Task")),
        "{report}"
    );
    assert_eq!(
        rule("user_settings"),
        Some(MatchRule::equals("_et", "UserSettings")),
        "{report}"
    );
    assert_eq!(
        rule("project"),
        Some(MatchRule::equals("_et", "Project")),
        "{report}"
    );
    let user_after = schemas.iter().find(|s| s.table == "user").unwrap();
    assert_eq!(
        user_after.columns[..user.columns.len()],
        user.columns[..],
        "user keeps its columns in order"
    );
    assert!(
        !user_after.columns.iter().any(|c| c.attribute == "theme"),
        "UserSettings' attributes stay out of user: {:?}",
        user_after.columns
    );
    copy(&env, "week2");
    assert_one_table_per_entity(&env, &week_two, &schemas, &report).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_in_key_prefixes_never_name_tables_and_a_forced_split_is_refused() {
    let layout = layouts::id_prefixes(8);
    let env = TestEnv::new("idprefix").await;
    env.load_keyed(&layout.keys, layout.items()).await;
    // Told to split by pk: more prefixes than --max-tables, refused with the attribute named.
    let out = env.run(
        &infer_cmd(
            &env.table,
            &[
                "--classify-attribute",
                "pk",
                "--max-tables",
                "5",
                "--no-schema-cache",
                "--write-static",
                "unused",
            ],
        ),
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--classify-attribute pk")
            && stderr.contains("looks like an id")
            && stderr.contains("--max-tables 5"),
        "{stderr}"
    );
    // By default the prefixes are weighed, refused, and reported; the items stay together.
    let dir = tempfile::tempdir().unwrap();
    let report = infer_into(&env, dir.path(), &["--max-tables", "5", "--explain"]);
    assert!(
        report.contains(
            "drift: prefixes of pk were not used to name tables: more than 5 distinct values"
        ),
        "{report}"
    );
    assert!(
        report.contains("refused: more than 5 distinct values"),
        "{report}"
    );
    let schemas = written_schemas(dir.path(), &env.table);
    assert_eq!(schemas.len(), 1, "{report}");
    assert_eq!(schemas[0].rule, None, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_entities_the_keys_do_not_tell_apart_are_reported_as_a_likely_merge() {
    let items: Vec<Item> = (0..20)
        .map(|i| {
            let mut item: Item = [
                ("pk".to_string(), AttributeValue::S(format!("THING#{i}"))),
                ("sk".to_string(), AttributeValue::S("META".into())),
            ]
            .into();
            let attributes: &[&str] = if i % 3 == 0 {
                &["colour", "weight"]
            } else {
                &["title", "author", "pages"]
            };
            for a in attributes {
                item.insert(a.to_string(), AttributeValue::S("x".into()));
            }
            item
        })
        .collect();
    let env = TestEnv::new("merge").await;
    env.load(items).await;
    let dir = tempfile::tempdir().unwrap();
    let report = infer_into(&env, dir.path(), &[]);
    let line = report
        .lines()
        .find(|l| l.starts_with("drift: likely merge in table"))
        .unwrap_or_else(|| panic!("{report}"));
    assert!(
        line.contains("13 item(s) with author, pages, title and 7 item(s) with colour, weight"),
        "{line}"
    );
}
