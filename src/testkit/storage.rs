//! One set of assertions about [`ObjectStore`], run against every implementation: the in-memory
//! store (a unit test in `storage::memory`) and the S3 store on the local S3-compatible server
//! (`tests/it/storage.rs`). The in-memory store stands in for S3 in the unit tests of everything
//! built on top, so it must keep S3's rules; this is where that claim is checked.
//!
//! The rules asserted, with the S3 API pages they come from:
//! - a missing key reads as absent (GetObject / HeadObject answer `NoSuchKey` / 404);
//! - a PUT replaces the object whole, and its entity tag changes with the content (PutObject);
//! - a conditional create (`If-None-Match: *`) succeeds for exactly one of several writers
//!   (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html>);
//! - listings come in UTF-8 binary key order, 1,000 keys a page at most, with a prefix that
//!   matches keys only, and `/` as the delimiter of common prefixes (ListObjectsV2);
//! - deleting keys that do not exist is not an error, 1,000 keys a request at most
//!   (DeleteObjects);
//! - a multipart upload is invisible until completed, every part but the last is at least 5 MiB
//!   (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html>), and an aborted upload is
//!   gone (CreateMultipartUpload, UploadPart, CompleteMultipartUpload, AbortMultipartUpload,
//!   ListMultipartUploads).

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::io::AsyncReadExt;

use crate::storage::{ObjectStore, UploadedPart};

/// The smallest part S3 accepts in a multipart upload, but for the last one.
pub const MIN_PART_BYTES: usize = 5 << 20;

/// Asserts every rule above against `store`, under `prefix` (which must be empty of objects and
/// uploads). Panics naming the rule that does not hold.
/// A store whose listing pages or delete batches are larger than 10 keys is not paged by it.
pub async fn conformance(store: &dyn ObjectStore, prefix: &str) {
    let key = |rest: &str| format!("{prefix}{rest}");
    missing_keys(store, &key("missing")).await;
    overwrite(store, &key("object")).await;
    conditional_create(store, &key("once"), &key("race")).await;
    listing(store, &key("list/")).await;
    pagination(store, &key("many/")).await;
    multipart(store, &key("multi/")).await;
}

async fn missing_keys(store: &dyn ObjectStore, key: &str) {
    assert_eq!(store.get(key).await.unwrap(), None, "GET of a missing key");
    assert_eq!(
        store.head(key).await.unwrap(),
        None,
        "HEAD of a missing key"
    );
    assert!(
        store.get_stream(key).await.is_err(),
        "a stream of a missing key is an error"
    );
    store
        .delete_keys(&[key.to_string()])
        .await
        .expect("deleting a missing key is not an error");
}

async fn overwrite(store: &dyn ObjectStore, key: &str) {
    let first = store
        .put_object(key, Bytes::from_static(b"one"), "text/plain")
        .await
        .unwrap();
    assert!(first.is_some(), "a PUT returns the entity tag");
    let head = store.head(key).await.unwrap().expect("written");
    assert_eq!((head.size, &head.etag), (3, &first), "HEAD after a PUT");
    let second = store
        .put_object(key, Bytes::from_static(b"two!"), "text/plain")
        .await
        .unwrap();
    assert_ne!(first, second, "the entity tag changes with the content");
    assert_eq!(
        store.get(key).await.unwrap().unwrap(),
        "two!",
        "replaced whole"
    );
    let mut streamed = Vec::new();
    store
        .get_stream(key)
        .await
        .unwrap()
        .read_to_end(&mut streamed)
        .await
        .unwrap();
    assert_eq!(streamed, b"two!", "the stream reads the same bytes");
    let head = store.head(key).await.unwrap().expect("written");
    assert_eq!((head.size, head.etag), (4, second));
}

async fn conditional_create(store: &dyn ObjectStore, once: &str, race: &str) {
    assert!(store
        .put_if_absent(once, "first".into(), "t")
        .await
        .unwrap());
    assert!(
        !store
            .put_if_absent(once, "second".into(), "t")
            .await
            .unwrap(),
        "a second conditional create of a key loses"
    );
    assert_eq!(
        store.get(once).await.unwrap().unwrap(),
        "first",
        "and changes nothing"
    );
    let writers = futures::future::join_all(
        (0..8).map(|i| store.put_if_absent(race, Bytes::from(format!("writer {i}")), "t")),
    )
    .await;
    let won: Vec<usize> = writers
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| r.unwrap().then_some(i))
        .collect();
    assert_eq!(
        won.len(),
        1,
        "exactly one of 8 racing writers wins: {won:?}"
    );
    assert_eq!(
        store.get(race).await.unwrap().unwrap(),
        format!("writer {}", won[0]),
        "the winner's object is the one kept"
    );
}

async fn listing(store: &dyn ObjectStore, prefix: &str) {
    // In UTF-8 byte order: '-' < '/' < '0' < 'B' < 'a' < 'é'.
    let names = ["a", "a-b", "a/b", "a/c/d", "a0", "B", "b/x", "é"];
    for (i, name) in names.iter().enumerate() {
        let body = Bytes::from(vec![b'x'; i + 1]);
        store
            .put(&format!("{prefix}{name}"), body, "t")
            .await
            .unwrap();
    }
    // A sibling that shares the prefix's text but not its folder.
    let sibling = format!("{}x", prefix.trim_end_matches('/'));
    store.put(&sibling, "s".into(), "t").await.unwrap();
    let mut expected: Vec<(String, u64)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("{prefix}{n}"), i as u64 + 1))
        .collect();
    expected.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let listed: Vec<(String, u64)> = store
        .list(prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect();
    assert_eq!(listed, expected, "keys in byte order with their sizes");
    assert_eq!(
        store.list_dirs(prefix).await.unwrap(),
        ["a", "b"],
        "the folders directly under the prefix"
    );
    let under_a = store.list(&format!("{prefix}a/")).await.unwrap();
    assert_eq!(
        under_a.len(),
        2,
        "a prefix selects keys, not names: {under_a:?}"
    );
    crate::storage::delete_prefix(store, prefix).await.unwrap();
    assert!(store.list(prefix).await.unwrap().is_empty());
    assert!(
        store.get(&sibling).await.unwrap().is_some(),
        "outside the prefix: kept"
    );
    store.delete_keys(&[sibling]).await.unwrap();
}

async fn pagination(store: &dyn ObjectStore, prefix: &str) {
    // More than one page of a listing and more than one DeleteObjects request, for a store
    // whose pages and delete batches are at most 10 keys (S3Store::with_batch_sizes; S3 itself
    // allows 1,000).
    const KEYS: usize = 25;
    futures::stream::iter(0..KEYS)
        .map(|i| async move {
            store
                .put(&format!("{prefix}{i:05}"), Bytes::from_static(b"k"), "t")
                .await
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .unwrap();
    let listed = store.list(prefix).await.unwrap();
    assert_eq!(listed.len(), KEYS, "every page of the listing");
    assert!(
        listed.windows(2).all(|w| w[0].key < w[1].key),
        "in order across pages"
    );
    assert_eq!(
        crate::storage::delete_prefix(store, prefix).await.unwrap(),
        KEYS
    );
    assert!(store.list(prefix).await.unwrap().is_empty(), "all deleted");
}

async fn multipart(store: &dyn ObjectStore, prefix: &str) {
    let key = format!("{prefix}whole");
    let big = Bytes::from(vec![b'a'; MIN_PART_BYTES]);
    let id = store.create_multipart(&key, "t").await.unwrap();
    let p1 = store.upload_part(&key, &id, 1, big.clone()).await.unwrap();
    let p2 = store
        .upload_part(&key, &id, 2, "tail".into())
        .await
        .unwrap();
    assert_eq!(
        store.get(&key).await.unwrap(),
        None,
        "invisible until completed"
    );
    let open = store.open_uploads(prefix).await.unwrap();
    assert_eq!(open.len(), 1, "listed as open: {open:?}");
    assert_eq!(
        (open[0].key.as_str(), open[0].upload_id.as_str()),
        (key.as_str(), id.as_str())
    );
    let etag = store
        .complete_multipart(&key, &id, vec![p1, p2])
        .await
        .unwrap();
    assert!(etag.is_some());
    let body = store.get(&key).await.unwrap().unwrap();
    assert_eq!(body.len(), MIN_PART_BYTES + 4);
    assert!(body.ends_with(b"tail") && body[..MIN_PART_BYTES] == big[..]);
    assert!(
        store.open_uploads(prefix).await.unwrap().is_empty(),
        "no longer open"
    );

    // Parts but the last under 5 MiB: completing fails, and the object does not appear.
    let small = format!("{prefix}small");
    let id = store.create_multipart(&small, "t").await.unwrap();
    let parts: Vec<UploadedPart> = vec![
        store
            .upload_part(&small, &id, 1, "ab".into())
            .await
            .unwrap(),
        store
            .upload_part(&small, &id, 2, "cd".into())
            .await
            .unwrap(),
    ];
    assert!(
        store.complete_multipart(&small, &id, parts).await.is_err(),
        "a part under 5 MiB that is not the last is refused"
    );
    assert_eq!(store.get(&small).await.unwrap(), None);
    store.abort_multipart(&small, &id).await;

    // An aborted upload is gone.
    let aborted = format!("{prefix}aborted");
    let id = store.create_multipart(&aborted, "t").await.unwrap();
    let part = store
        .upload_part(&aborted, &id, 1, "x".into())
        .await
        .unwrap();
    store.abort_multipart(&aborted, &id).await;
    assert!(
        store.open_uploads(prefix).await.unwrap().is_empty(),
        "aborted: not open"
    );
    assert!(
        store
            .complete_multipart(&aborted, &id, vec![part])
            .await
            .is_err(),
        "an aborted upload cannot be completed"
    );
    assert_eq!(store.get(&aborted).await.unwrap(), None);
    crate::storage::delete_prefix(store, prefix).await.unwrap();
}
