//! The staging writer against the real S3 server: multipart parts, rolling, and abort on failure.

use crate::support::fault_proxy::{FaultProxy, Injected};
use crate::support::TestEnv;
use dynamo_etl::retry::RetryPolicy;
use dynamo_etl::staging::parts::reader::PartReader;
use dynamo_etl::staging::parts::writer::{upload_chunks, PartSettings, PartWriter, Upload};
use dynamo_etl::storage::Store;
use dynamo_etl::testkit::fixtures::Rng;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// Rows of random letters (poorly compressible at gzip level 0).
fn rows(count: usize) -> Vec<Vec<Option<String>>> {
    let mut rng = Rng::new(11);
    (0..count)
        .map(|i| {
            let text: String = (0..1000)
                .map(|_| (b'a' + rng.below(26) as u8) as char)
                .collect();
            vec![
                Some(i.to_string()),
                if i % 7 == 0 { None } else { Some(text) },
                Some(String::new()),
            ]
        })
        .collect()
}

/// Writes `rows` as one table through the real writer and uploader.
async fn write(
    store: Store,
    settings: PartSettings,
    rows: Vec<Vec<Option<String>>>,
) -> Result<dynamo_etl::staging::manifest::TableOutput, String> {
    let (tx, rx) = mpsc::channel::<Upload>(1);
    let uploader = tokio::spawn(upload_chunks(store, rx, settings.max_in_flight));
    let writer = tokio::task::spawn_blocking(move || {
        let mut w = PartWriter::new(Box::new(|i| format!("t/part-{i:05}.csv.gz")), settings, tx);
        for r in &rows {
            w.write_row(r).map_err(|e| e.to_string())?;
        }
        w.finish().map_err(|e| e.to_string())
    });
    let written = writer.await.unwrap();
    let uploaded = uploader.await.unwrap();
    uploaded.map_err(|e| e.to_string())?;
    written
}

fn settings() -> PartSettings {
    PartSettings {
        part_bytes: 12 << 20,
        chunk_bytes: 5 << 20,
        max_in_flight: 2,
        compression: dynamo_etl::staging::parts::codec::PartCompression::Gzip,
        level: 0,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn large_parts_go_up_in_multipart_chunks_and_roll_at_the_part_size() {
    let env = TestEnv::new("multipart").await;
    let store = env.store_at(&env.stack.s3, RetryPolicy::default()).await;
    let input = rows(20_000); // ≈ 20 MB of CSV → two parts of ≈12 MB and a rest
    let output = write(store, settings(), input.clone()).await.unwrap();
    assert!(output.files.len() >= 2, "parts rolled: {:?}", output.files);
    assert_eq!(output.rows, input.len() as u64);
    let mut decoded = Vec::new();
    for file in &output.files {
        let gz = env.get(&file.key).await.expect("part exists");
        assert_eq!(gz.len() as u64, file.bytes);
        let mut csv = Vec::new();
        flate2::read::MultiGzDecoder::new(&gz[..])
            .read_to_end(&mut csv)
            .unwrap();
        decoded.extend(dynamo_etl::testkit::decode::decode_rows(&csv).unwrap());
    }
    assert_eq!(
        decoded, input,
        "rows come back in order, NULL and '' intact"
    );
    let uploads = env
        .s3
        .list_multipart_uploads()
        .bucket(&env.bucket)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_part_aborts_the_multipart_upload() {
    let env = TestEnv::new("abort").await;
    let proxy = FaultProxy::start(
        &env.stack.s3,
        Arc::new(|head| {
            (head.method == "PUT" && head.path.contains("partNumber=2"))
                .then(Injected::s3_internal_error)
        }),
    )
    .await;
    let policy = RetryPolicy {
        max_attempts: 2,
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_total: Duration::from_secs(5),
    };
    let store = env.store_at(&proxy.url, policy).await;
    let err = write(store, settings(), rows(20_000)).await.unwrap_err();
    assert!(
        err.contains("UploadPart") && err.contains("InternalError"),
        "{err}"
    );
    let uploads = env
        .s3
        .list_multipart_uploads()
        .bucket(&env.bucket)
        .send()
        .await
        .unwrap();
    assert!(
        uploads.uploads().is_empty(),
        "left open: {:?}",
        uploads.uploads()
    );
    assert!(
        env.keys("t/").await.is_empty(),
        "no object completed: {:?}",
        env.keys("t/").await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn conditional_puts_let_exactly_one_writer_win() {
    let env = TestEnv::new("ifnone").await;
    let store = env.store_at(&env.stack.s3, RetryPolicy::default()).await;
    let attempts = (0..6).map(|i| {
        let store = store.clone();
        async move {
            store
                .put_if_absent(
                    "k/run.json",
                    format!("writer {i}").into_bytes().into(),
                    "text/plain",
                )
                .await
                .unwrap()
        }
    });
    let won: Vec<bool> = futures::future::join_all(attempts).await;
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    let body = String::from_utf8(env.get("k/run.json").await.unwrap()).unwrap();
    let winner = won.iter().position(|w| *w).unwrap();
    assert_eq!(
        body,
        format!("writer {winner}"),
        "the winner's content stays"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_part_reader_returns_each_part_whatever_the_order_of_opening() {
    let env = TestEnv::new("reader").await;
    let store = env.store_at(&env.stack.s3, RetryPolicy::default()).await;
    let keys: Vec<String> = (0..4).map(|i| format!("reader/part-{i}.csv.zst")).collect();
    for (i, key) in keys.iter().enumerate() {
        let body = format!("part {i} ").repeat(1000 * (i + 1));
        store.put(key, body.into(), "text/plain").await.unwrap();
    }
    async fn read(reader: &PartReader, keys: &[String], i: usize) {
        let mut body = Vec::new();
        reader
            .open(&keys[i])
            .await
            .unwrap()
            .read_to_end(&mut body)
            .await
            .unwrap();
        assert_eq!(
            body,
            format!("part {i} ").repeat(1000 * (i + 1)).as_bytes(),
            "{}",
            keys[i]
        );
    }
    // In the announced order, each part read ahead of its turn.
    let reader = PartReader::new(store.clone(), keys.clone());
    for i in 0..4 {
        read(&reader, &keys, i).await;
    }
    // Skipping ahead, going back and opening a key that was never announced still work.
    let reader = PartReader::new(store.clone(), keys[..3].to_vec());
    for i in [0, 2, 1, 3, 3] {
        read(&reader, &keys, i).await;
    }
    let missing = reader.open("reader/none.csv.zst").await.err().unwrap();
    assert!(
        missing.to_string().contains("reader/none.csv.zst"),
        "{missing}"
    );
}
