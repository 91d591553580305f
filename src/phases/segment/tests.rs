//! Phase 1 end to end over the in-memory store, its pages from a scripted [`PageSource`]: what
//! commits, what a stop or a failure leaves behind, and how a retry goes on from a checkpoint.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use futures::future::BoxFuture;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

use super::source::PageSource;
use super::{commit, Job, SegmentError, SegmentSettings};
use crate::error::{Class, Classify};
use crate::schema::{unclassified_schema, DataSchema};
use crate::source::export::ExportSource;
use crate::source::page::RawPage;
use crate::source::{Message, ScanCounters, ScanEnd, ScanError};
use crate::staging::checkpoint::Checkpoint;
use crate::staging::increment::{keys_table, IncrementSpec, CHANGES_TABLE};
use crate::staging::manifest::SegmentManifest;
use crate::staging::parts::codec::PartCompression;
use crate::staging::parts::writer::PartSettings;
use crate::staging::plan::RunPlan;
use crate::staging::{Layout, Staging};
use crate::stop::Stop;
use crate::storage::memory::MemoryStore;
use crate::storage::{ObjectHead, ObjectInfo, ObjectStore, OpenUpload, StoreError, UploadedPart};
use crate::testkit::decode::{decode_rows, decompress};
use crate::testkit::fixtures::bench_items;
use crate::value::ItemView;

const SEGMENT: u32 = 1;

fn plan() -> RunPlan {
    RunPlan {
        total_segments: 2,
        key_attributes: vec!["pk".into(), "sk".into()],
        // One table without a rule, so every item goes there: its key columns, then `_extra`.
        schemas: vec![DataSchema {
            table: "item".into(),
            ..unclassified_schema("t", &["pk".to_string(), "sk".to_string()])
        }],
        ..crate::testkit::runs::plan("r1")
    }
}

fn settings() -> SegmentSettings {
    SegmentSettings {
        parts: PartSettings {
            part_bytes: 64 << 20,
            chunk_bytes: 64 << 10,
            max_in_flight: 2,
            compression: PartCompression::Zstd,
            level: 1,
        },
        consistent_read: false,
        max_read_units: None,
        progress_every: Duration::from_secs(3600),
        // Checkpoints only when a part rolls or the scan stops.
        checkpoint_every: Duration::from_secs(3600),
        restart: false,
        page_items: None,
    }
}

/// `pages` pages of `per_page` items each, as Scan responses: every page but the last names the
/// key of its last item as `LastEvaluatedKey`.
fn scan_pages(pages: usize, per_page: usize) -> Vec<RawPage> {
    let items = bench_items((pages * per_page) as u64, 7);
    let count = items.chunks(per_page).count();
    items
        .chunks(per_page)
        .enumerate()
        .map(|(i, chunk)| {
            let views: Vec<ItemView> = chunk.iter().map(ItemView::from_sdk).collect();
            let mut body = serde_json::json!({
                "Items": views,
                "Count": chunk.len(),
                "ScannedCount": chunk.len(),
            });
            if i + 1 < count {
                let last = chunk.last().unwrap();
                let key: HashMap<String, AttributeValue> = ["pk", "sk"]
                    .iter()
                    .map(|k| (k.to_string(), last[*k].clone()))
                    .collect();
                body["LastEvaluatedKey"] = serde_json::to_value(ItemView::from_sdk(&key)).unwrap();
            }
            RawPage::split(Bytes::from(serde_json::to_vec(&body).unwrap()))
                .unwrap()
                .0
        })
        .collect()
}

/// What the scripted scan does after its pages, or at page `n` (counted over the whole segment).
#[derive(Clone, Copy)]
enum Then {
    Finish,
    /// A stop is requested while page `n` is on its way: the scan drops it and stops.
    StopAt(usize),
    /// Page `n`'s request fails (a retry-class error, like throttling past the retry budget).
    FailAt(usize),
}

/// A scan of `pages`, starting after the page whose key a resumed segment's checkpoint holds.
struct Script {
    pages: Vec<RawPage>,
    from: usize,
    then: Then,
    stop: Stop,
}

impl Script {
    fn new(pages: &[RawPage], resume: Option<&Checkpoint>, then: Then, stop: &Stop) -> Script {
        let from = match resume {
            None => 0,
            Some(c) => {
                1 + pages
                    .iter()
                    .position(|p| p.last_key.as_deref() == Some(c.resume_key.as_str()))
                    .expect("the checkpoint names the key of a page")
            }
        };
        Script {
            pages: pages.to_vec(),
            from,
            then,
            stop: stop.clone(),
        }
    }
}

impl PageSource for Script {
    fn read<'a>(
        &'a self,
        counters: &'a Arc<ScanCounters>,
        pages: &'a mpsc::Sender<Message>,
    ) -> BoxFuture<'a, Result<ScanEnd, ScanError>> {
        Box::pin(async move {
            for (n, page) in self.pages.iter().enumerate().skip(self.from) {
                match self.then {
                    Then::StopAt(at) if at == n => {
                        self.stop.request("test stop");
                        return Ok(ScanEnd::Stopped);
                    }
                    Then::FailAt(at) if at == n => {
                        return Err(ScanError::Request {
                            table: "t".into(),
                            segment: SEGMENT,
                            total_segments: 2,
                            last_key: None,
                            detail: "throttled past the retry budget".into(),
                            retriable: true,
                        })
                    }
                    _ => {}
                }
                counters.pages.fetch_add(1, Ordering::Relaxed);
                counters.items.fetch_add(page.len(), Ordering::Relaxed);
                if pages.send(Message::Page(page.clone())).await.is_err() {
                    return Err(ScanError::Downstream {
                        table: "t".into(),
                        segment: SEGMENT,
                    });
                }
            }
            Ok(ScanEnd::Finished)
        })
    }
}

/// Runs phase 1 of segment [`SEGMENT`] over `staging` with the scripted scan.
async fn phase1(
    staging: &Staging,
    settings: SegmentSettings,
    pages: &[RawPage],
    then: Then,
) -> Result<SegmentManifest, SegmentError> {
    phase1_of(&plan(), staging, settings, pages, then).await
}

async fn phase1_of(
    plan: &RunPlan,
    staging: &Staging,
    settings: SegmentSettings,
    pages: &[RawPage],
    then: Then,
) -> Result<SegmentManifest, SegmentError> {
    let stop = Stop::default();
    let job = Job {
        staging,
        plan,
        segment: SEGMENT,
        settings,
        counters: Arc::new(ScanCounters::default()),
        stop: &stop,
        fingerprints: true,
    };
    let open = |_: &Job, resume: Option<&Checkpoint>| {
        Ok(Box::new(Script::new(pages, resume, then, &stop)) as Box<dyn PageSource>)
    };
    commit(job, open).await
}

fn memory_staging() -> Staging {
    // Parts of a few KiB (see `settings`): smaller than S3 takes, which these tests do not test.
    Staging::new(
        Arc::new(MemoryStore::with_any_part_size("b")),
        Layout::new("p"),
    )
}

fn checkpoint_key(staging: &Staging) -> String {
    staging.layout.segment_checkpoint("r1", SEGMENT)
}

async fn checkpoint_of(staging: &Staging) -> Option<Checkpoint> {
    let bytes = staging.store.get(&checkpoint_key(staging)).await.unwrap()?;
    Some(serde_json::from_slice(&bytes).unwrap())
}

/// The partition keys of every row of the manifest's parts, read back from the store.
async fn keys_loaded(staging: &Staging, manifest: &SegmentManifest) -> Vec<String> {
    let mut keys = Vec::new();
    for file in manifest.tables.values().flat_map(|t| &t.files) {
        let data = staging
            .store
            .get(&file.key)
            .await
            .unwrap()
            .expect("the part exists");
        let csv = decompress(&file.key, &data).unwrap();
        let rows = decode_rows(&csv).unwrap();
        assert_eq!(rows.len() as u64, file.rows, "{}", file.key);
        keys.extend(rows.into_iter().map(|r| r[0].clone().expect("a key")));
    }
    keys
}

/// Every item of `pages` is in the parts exactly once.
async fn assert_each_item_once(staging: &Staging, manifest: &SegmentManifest, pages: &[RawPage]) {
    let items: u64 = pages.iter().map(RawPage::len).sum();
    assert_eq!(manifest.items_scanned, items);
    let keys = keys_loaded(staging, manifest).await;
    let distinct: BTreeSet<&String> = keys.iter().collect();
    assert_eq!(keys.len() as u64, items, "every item once: no row lost");
    assert_eq!(distinct.len(), keys.len(), "every item once: no row twice");
}

#[tokio::test]
async fn a_segment_commits_every_item_once_and_its_manifest_last() {
    let staging = memory_staging();
    let pages = scan_pages(3, 40);
    let manifest = phase1(&staging, settings(), &pages, Then::Finish)
        .await
        .unwrap();
    assert_each_item_once(&staging, &manifest, &pages).await;
    assert_eq!(manifest.pages, 3);
    assert!(manifest.resumed.is_none());
    let stored = staging.layout.segment_manifest("r1", SEGMENT);
    assert!(staging.store.get(&stored).await.unwrap().is_some());
    assert!(
        checkpoint_of(&staging).await.is_none(),
        "a committed segment keeps no checkpoint"
    );
    for file in manifest.tables.values().flat_map(|t| &t.files) {
        assert!(file.etag.is_some(), "{} has its entity tag", file.key);
    }
}

/// A stop while a page is on its way: the pages transformed so far are checkpointed, the segment
/// ends with a retry-class error and no manifest, and the retry scans on from the checkpoint's
/// key, so every item is in the parts exactly once.
#[tokio::test]
async fn a_stop_mid_scan_checkpoints_and_the_retry_goes_on_from_there() {
    let staging = memory_staging();
    let pages = scan_pages(4, 30);
    let stopped = phase1(&staging, settings(), &pages, Then::StopAt(2))
        .await
        .unwrap_err();
    match &stopped {
        SegmentError::Interrupted {
            items,
            checkpointed,
            ..
        } => {
            assert_eq!(*items, 60);
            assert!(*checkpointed, "{stopped}");
        }
        other => panic!("expected an interrupted segment, got {other}"),
    }
    assert_eq!(stopped.class(), Class::Retry);
    let manifest_key = staging.layout.segment_manifest("r1", SEGMENT);
    assert!(staging.store.get(&manifest_key).await.unwrap().is_none());
    let checkpoint = checkpoint_of(&staging).await.expect("a checkpoint");
    assert_eq!(checkpoint.items_scanned, 60);
    assert_eq!(checkpoint.pages, 2);
    assert_eq!(
        Some(checkpoint.resume_key.as_str()),
        pages[1].last_key.as_deref()
    );
    for file in checkpoint.tables.values().flat_map(|t| &t.files) {
        assert!(file.etag.is_some(), "{} is complete", file.key);
    }

    let manifest = phase1(&staging, settings(), &pages, Then::Finish)
        .await
        .unwrap();
    let resumed = manifest.resumed.as_ref().expect("the retry resumed");
    assert_eq!(resumed.items, 60);
    assert_eq!(manifest.pages, 4);
    assert_each_item_once(&staging, &manifest, &pages).await;
}

/// Parts small enough to fill on every page: each page that closes a part takes a checkpoint
/// (with no time-based one due), so a scan failing later leaves one naming the closed parts, and
/// the retry keeps them and writes only the rest.
#[tokio::test]
async fn a_part_that_fills_takes_a_checkpoint_that_a_failed_scan_leaves_for_the_retry() {
    let store = Watched::new(false);
    let staging = Staging::new(store.clone(), Layout::new("p"));
    let mut small = settings();
    small.parts.part_bytes = 1;
    small.parts.chunk_bytes = 1;
    // 1000 items a page: more CSV than one batch, so a part fills within each page.
    let pages = scan_pages(3, 1000);
    let failed = phase1(&staging, small, &pages, Then::FailAt(2))
        .await
        .unwrap_err();
    assert!(
        matches!(failed, SegmentError::Scan(ScanError::Request { .. })),
        "the scan's error is the cause: {failed}"
    );
    assert_eq!(failed.class(), Class::Retry);
    assert_eq!(
        *store.checkpoints.lock().unwrap(),
        vec![1000, 2000],
        "one checkpoint after each page that closed a part, none more at the failure"
    );
    let checkpoint = checkpoint_of(&staging).await.expect("a checkpoint");
    assert_eq!(checkpoint.items_scanned, 2000);
    let kept: Vec<String> = checkpoint.part_keys().map(str::to_string).collect();
    assert!(kept.len() >= 2, "one part per page at least: {kept:?}");
    let prefix = staging.layout.segment("r1", SEGMENT);
    assert!(
        store.open_uploads(&prefix).await.unwrap().is_empty(),
        "the failed attempt's open uploads are aborted"
    );

    let manifest = phase1(&staging, small, &pages, Then::Finish).await.unwrap();
    assert_eq!(manifest.resumed.as_ref().map(|r| r.items), Some(2000));
    let committed: Vec<&str> = manifest
        .tables
        .values()
        .flat_map(|t| t.files.iter().map(|f| f.key.as_str()))
        .collect();
    for key in &kept {
        assert!(committed.contains(&key.as_str()), "{key} is kept");
    }
    assert_each_item_once(&staging, &manifest, &pages).await;
}

/// The in-memory store, failing every upload of a part's chunk while `armed`, and noting how many
/// items each checkpoint written holds.
struct Watched {
    inner: MemoryStore,
    armed: AtomicBool,
    failed: AtomicU64,
    checkpoints: Mutex<Vec<u64>>,
}

impl Watched {
    fn new(armed: bool) -> Arc<Watched> {
        Arc::new(Watched {
            inner: MemoryStore::with_any_part_size("b"),
            armed: AtomicBool::new(armed),
            failed: AtomicU64::new(0),
            checkpoints: Mutex::new(Vec::new()),
        })
    }

    fn refuse(&self, key: &str) -> Result<(), StoreError> {
        if self.armed.load(Ordering::SeqCst) && key.contains("/part-") {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Request {
                op: "UploadPart",
                url: self.inner.url(key),
                detail: "injected failure".into(),
                class: Class::Retry,
            });
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for Watched {
    fn bucket(&self) -> &str {
        self.inner.bucket()
    }
    fn retries(&self) -> u64 {
        self.inner.retries()
    }
    async fn check_access(&self, prefix: &str) -> Result<(), StoreError> {
        self.inner.check_access(prefix).await
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        self.inner.get(key).await
    }
    async fn get_stream(&self, key: &str) -> Result<crate::storage::Body, StoreError> {
        self.inner.get_stream(key).await
    }
    async fn put_object(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<Option<String>, StoreError> {
        self.refuse(key)?;
        if key.ends_with("/checkpoint.json") {
            let c: Checkpoint = serde_json::from_slice(&body).unwrap();
            self.checkpoints.lock().unwrap().push(c.items_scanned);
        }
        self.inner.put_object(key, body, content_type).await
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectHead>, StoreError> {
        self.inner.head(key).await
    }
    async fn put_if_absent(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<bool, StoreError> {
        self.inner.put_if_absent(key, body, content_type).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list_dirs(prefix).await
    }
    async fn delete_keys(&self, keys: &[String]) -> Result<(), StoreError> {
        self.inner.delete_keys(keys).await
    }
    async fn create_multipart(&self, key: &str, content_type: &str) -> Result<String, StoreError> {
        self.inner.create_multipart(key, content_type).await
    }
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<UploadedPart, StoreError> {
        self.refuse(key)?;
        self.inner.upload_part(key, upload_id, number, body).await
    }
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<UploadedPart>,
    ) -> Result<Option<String>, StoreError> {
        self.inner.complete_multipart(key, upload_id, parts).await
    }
    async fn abort_multipart(&self, key: &str, upload_id: &str) {
        self.inner.abort_multipart(key, upload_id).await
    }
    async fn open_uploads(&self, prefix: &str) -> Result<Vec<OpenUpload>, StoreError> {
        self.inner.open_uploads(prefix).await
    }
}

/// An upload that fails ends the segment with the store's error, not a knock-on "pipeline
/// stopped" one: no manifest, no upload left open, and the retry commits every item once.
#[tokio::test]
async fn a_failed_upload_commits_nothing_and_names_the_store() {
    let store = Watched::new(true);
    let staging = Staging::new(store.clone(), Layout::new("p"));
    let pages = scan_pages(3, 40);
    let failed = phase1(&staging, settings(), &pages, Then::Finish)
        .await
        .unwrap_err();
    assert!(
        matches!(failed, SegmentError::Store(StoreError::Request { .. })),
        "the upload's error is the cause: {failed}"
    );
    assert!(store.failed.load(Ordering::SeqCst) > 0);
    let manifest_key = staging.layout.segment_manifest("r1", SEGMENT);
    assert!(staging.store.get(&manifest_key).await.unwrap().is_none());
    let prefix = staging.layout.segment("r1", SEGMENT);
    assert!(store.open_uploads(&prefix).await.unwrap().is_empty());

    store.armed.store(false, Ordering::SeqCst);
    let manifest = phase1(&staging, settings(), &pages, Then::Finish)
        .await
        .unwrap();
    assert_each_item_once(&staging, &manifest, &pages).await;
}

/// Pages with no resume key (an export's) and a read that fails after the first: there is no
/// key to checkpoint at, so the transform leaves its part unfinished and the uploader aborts it —
/// nothing of the attempt is left under the segment, and the retry starts over.
#[tokio::test]
async fn a_failed_read_without_a_resume_key_leaves_nothing_behind() {
    let staging = memory_staging();
    let mut pages = scan_pages(3, 40);
    for page in &mut pages {
        page.last_key = None;
    }
    let failed = phase1(&staging, settings(), &pages, Then::FailAt(1))
        .await
        .unwrap_err();
    assert!(
        matches!(failed, SegmentError::Scan(ScanError::Request { .. })),
        "the read's error is the cause: {failed}"
    );
    let prefix = staging.layout.segment("r1", SEGMENT);
    let left: Vec<String> = staging
        .store
        .list(&prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert!(left.is_empty(), "nothing is left: {left:?}");
    assert!(staging
        .store
        .open_uploads(&prefix)
        .await
        .unwrap()
        .is_empty());
}

/// An increment run's plan: the same table, its changes read from an incremental export.
fn increment_plan() -> RunPlan {
    RunPlan {
        increment: Some(IncrementSpec {
            base_run: "r0".into(),
            from: "2026-01-01T00:00:00Z".into(),
            to: "2026-01-01T01:00:00Z".into(),
            view: "NEW_AND_OLD_IMAGES".into(),
            stream: None,
        }),
        export: Some(ExportSource::parse_url("s3://b/e/AWSDynamoDB/01-ab").unwrap()),
        ..plan()
    }
}

/// One page of change lines, as an incremental export's reader sends them: an upsert of each
/// of `upserts`, then a delete of `deleted`.
fn change_page(upserts: &[&str], deleted: &str) -> RawPage {
    let key = |pk: &str| serde_json::json!({"pk": {"S": pk}, "sk": {"S": "x"}});
    let mut lines: Vec<serde_json::Value> = upserts
        .iter()
        .map(|pk| {
            serde_json::json!({
                "Metadata": {"WriteTimestampMicros": {"N": "1767225600000000"}},
                "Keys": key(pk),
                "NewImage": {"pk": {"S": pk}, "sk": {"S": "x"}, "n": {"N": "1"}},
            })
        })
        .collect();
    lines.push(serde_json::json!({
        "Metadata": {"WriteTimestampMicros": {"N": "1767225600000001"}},
        "Keys": key(deleted),
        "OldImage": {"pk": {"S": deleted}, "sk": {"S": "x"}},
    }));
    let count = lines.len() as u64;
    RawPage::of_items(Bytes::from(serde_json::to_vec(&lines).unwrap()), count)
}

/// The increment's pipeline is the same pipeline: its change lines become one change row each,
/// an upsert row per new image and a keys row per served table, and a stop leaves nothing
/// behind (an increment's segment takes no checkpoints; its retry reads its files again).
#[tokio::test]
async fn an_increment_writes_its_changes_through_the_same_pipeline() {
    let staging = memory_staging();
    let plan = increment_plan();
    let pages = [change_page(&["a", "b"], "c"), change_page(&["d"], "a")];
    let manifest = phase1_of(&plan, &staging, settings(), &pages, Then::Finish)
        .await
        .unwrap();
    assert_eq!(manifest.items_scanned, 5);
    let rows = |table: &str| manifest.tables.get(table).map_or(0, |t| t.rows);
    assert_eq!(rows(CHANGES_TABLE), 5, "one change row per line");
    let served = plan.served_tables();
    assert_eq!(served[0].table, "item");
    let upserts: u64 = manifest
        .tables
        .iter()
        .filter(|(name, _)| name.as_str() != CHANGES_TABLE && !name.contains("keys_"))
        .map(|(_, t)| t.rows)
        .sum();
    assert_eq!(
        upserts,
        3,
        "one upsert row per new image: {:?}",
        manifest.tables.keys()
    );
    assert_eq!(
        rows(&keys_table(0)),
        5,
        "every change's key, for the served table"
    );

    let staging = memory_staging();
    let stopped = phase1_of(&plan, &staging, settings(), &pages, Then::StopAt(1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            stopped,
            SegmentError::Interrupted {
                items: 3,
                checkpointed: false,
                ..
            }
        ),
        "{stopped}"
    );
    let prefix = staging.layout.segment("r1", SEGMENT);
    assert!(staging.store.list(&prefix).await.unwrap().is_empty());
    assert!(staging
        .store
        .open_uploads(&prefix)
        .await
        .unwrap()
        .is_empty());
}
