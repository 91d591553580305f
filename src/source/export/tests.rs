//! The export reader over the in-memory store: locations, manifests, key resolution, damage.

use super::*;
use crate::storage::memory::MemoryStore;
use crate::testkit::export::{write_export, write_manifests};
use crate::testkit::fixtures::bench_items;
use crate::value::ItemView;

fn file(key: &str, items: u64) -> DataFile {
    DataFile {
        item_count: items,
        md5_checksum: None,
        etag: None,
        data_file_s3_key: key.into(),
        line: 0,
    }
}

fn keys(files: &[&DataFile]) -> Vec<String> {
    files.iter().map(|f| f.data_file_s3_key.clone()).collect()
}

#[test]
fn export_locations_are_read_from_urls_and_arns() {
    let s = ExportSource::parse_url("s3://b/exports/AWSDynamoDB/0123-ab/").unwrap();
    assert_eq!(
        (s.bucket.as_str(), s.prefix.as_str()),
        ("b", "exports/AWSDynamoDB/0123-ab")
    );
    assert_eq!(
        s.summary_key(),
        "exports/AWSDynamoDB/0123-ab/manifest-summary.json"
    );
    let s = ExportSource::parse_url("s3://b/AWSDynamoDB/x/manifest-summary.json").unwrap();
    assert_eq!(s.prefix, "AWSDynamoDB/x");
    for bad in [
        "b/AWSDynamoDB/x",
        "s3://b",
        "s3://b/exports",
        "s3://b/AWSDynamoDB/",
        "s3:///AWSDynamoDB/x",
    ] {
        assert!(ExportSource::parse_url(bad).is_err(), "{bad}");
    }
    let arn = "arn:aws:dynamodb:us-east-1:1:table/T/export/0169-2d87";
    let s = ExportSource::of_arn("b", Some("p/q/"), arn).unwrap();
    assert_eq!(s.prefix, "p/q/AWSDynamoDB/0169-2d87");
    assert_eq!(
        ExportSource::of_arn("b", None, arn).unwrap().prefix,
        "AWSDynamoDB/0169-2d87"
    );
    assert!(ExportSource::of_arn("b", None, "arn:aws:dynamodb:us-east-1:1:table/T").is_err());
}

#[test]
fn files_go_largest_first_to_the_least_loaded_segment() {
    let files = [
        file("e", 3),
        file("a", 10),
        file("d", 3),
        file("b", 7),
        file("c", 5),
    ];
    // 10→0; 7→1; 5→1 (7 < 10); d:3→0 (10 < 12); e:3→1 (12 < 13).
    assert_eq!(keys(&assign(&files, 0, 2)), ["a", "d"]);
    assert_eq!(keys(&assign(&files, 1, 2)), ["b", "c", "e"]);
    // Ties go to the lowest segment.
    let even = [file("x", 4), file("y", 4)];
    assert_eq!(keys(&assign(&even, 0, 3)), ["x"]);
    assert_eq!(keys(&assign(&even, 1, 3)), ["y"]);
    assert!(assign(&even, 2, 3).is_empty());
}

#[test]
fn every_file_goes_to_exactly_one_segment_in_any_input_order() {
    let mut files: Vec<DataFile> = (0..40u64)
        .map(|i| file(&format!("f{i:02}"), (i * 7919) % 97))
        .collect();
    let total = 6;
    let share = |files: &[DataFile]| -> Vec<Vec<String>> {
        (0..total).map(|k| keys(&assign(files, k, total))).collect()
    };
    let first = share(&files);
    files.reverse();
    assert_eq!(
        share(&files),
        first,
        "the assignment does not depend on the manifest's order"
    );
    let mut all: Vec<String> = first.concat();
    all.sort();
    assert_eq!(all.len(), 40);
    all.dedup();
    assert_eq!(all.len(), 40, "no file is read twice");
    let loads: Vec<u64> = (0..total)
        .map(|k| assign(&files, k, total).iter().map(|f| f.item_count).sum())
        .collect();
    let (min, max) = (loads.iter().min().unwrap(), loads.iter().max().unwrap());
    assert!(
        max - min <= 96,
        "balanced within the largest file: {loads:?}"
    );
}

#[test]
fn manifest_lines_are_read_and_a_bad_line_is_named() {
    let text = "{\"itemCount\":8,\"md5Checksum\":\"sQ==\",\"etag\":\"af-1\",\"dataFileS3Key\":\"AWSDynamoDB/x/data/a.json.gz\"}\n\n{\"itemCount\":0,\"dataFileS3Key\":\"AWSDynamoDB/x/data/b.json.gz\"}\n";
    let files = parse_manifest_files(text, "s3://b/m").unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0].item_count, 8);
    assert_eq!(files[0].md5_checksum.as_deref(), Some("sQ=="));
    assert_eq!(files[1].md5_checksum, None);
    let err = parse_manifest_files("{\"itemCount\":1}\n", "s3://b/m").unwrap_err();
    assert!(err.to_string().contains("line 1"), "{err}");
    let twice = format!(
        "{}\n{}",
        text.lines().next().unwrap(),
        text.lines().next().unwrap()
    );
    let err = parse_manifest_files(&twice, "s3://b/m").unwrap_err();
    assert!(err.to_string().contains("listed twice"), "{err}");
}

async fn read_all(
    store: &MemoryStore,
    export: &Export,
    total: u32,
    page_bytes: usize,
) -> Result<Vec<RawPage>, ScanError> {
    let (tx, mut rx) = mpsc::channel(10_000);
    let (stop, counters) = (crate::stop::Stop::default(), ScanCounters::default());
    for segment in 0..total {
        let sink = Sink {
            stop: &stop,
            counters: &counters,
            pages: &tx,
            table: "t",
            segment,
            kind: export.kind,
        };
        for f in assign(&export.files, segment, total) {
            read_file(store, export, f, page_bytes, &sink).await?;
        }
    }
    drop(tx);
    let mut pages = Vec::new();
    while let Some(message) = rx.recv().await {
        let Message::Page(p) = message else {
            panic!("the reader sends pages only: {message:?}");
        };
        pages.push(p);
    }
    assert_eq!(
        counters.items.load(Ordering::Relaxed),
        pages.iter().map(|p| p.len()).sum::<u64>()
    );
    Ok(pages)
}

#[tokio::test]
async fn an_export_reads_back_every_item_once_in_bounded_pages() {
    let store = MemoryStore::new("b");
    let items = bench_items(700, 5);
    let written = write_export(&store, "exports", "0001-ab", "t", &items, 4)
        .await
        .unwrap();
    let export = Export::open(&store, &written.source).await.unwrap();
    assert_eq!(export.item_count(), 700);
    assert_eq!(export.files.len(), 5, "four files and an empty one");
    assert_eq!(export.summary.table_name(), Some("t"));
    let page_bytes = 16 << 10;
    let pages = read_all(&store, &export, 3, page_bytes).await.unwrap();
    assert!(pages.len() > 5, "small pages: {}", pages.len());
    let mut back: Vec<String> = Vec::new();
    for page in &pages {
        // A page closes once it reaches the size: at most one item more.
        assert!(
            page.items_bytes() < page_bytes + (8 << 10),
            "{}",
            page.items_bytes()
        );
        for item in page.items().unwrap() {
            back.push(serde_json::to_string(&item).unwrap());
        }
    }
    let mut expected: Vec<String> = items
        .iter()
        .map(|i| serde_json::to_string(&ItemView::from_sdk(i)).unwrap())
        .collect();
    back.sort();
    expected.sort();
    assert_eq!(back, expected);
}

#[tokio::test]
async fn a_file_whose_count_or_md5_disagrees_with_the_manifest_is_refused_by_name() {
    let store = MemoryStore::new("b");
    let items = bench_items(50, 1);
    let written = write_export(&store, "", "0002-cd", "t", &items, 2)
        .await
        .unwrap();
    let victim = written.files[1].data_file_s3_key.clone();

    let mut files = written.files.clone();
    files[1].item_count += 1;
    write_manifests(&store, &written.source, "t", &files)
        .await
        .unwrap();
    let export = Export::open(&store, &written.source).await.unwrap();
    let err = read_all(&store, &export, 1, PAGE_BYTES).await.unwrap_err();
    assert_eq!(err.class(), Class::Fatal);
    let text = err.to_string();
    assert!(
        text.contains(&format!("s3://b/{victim}")) && text.contains("holds"),
        "{text}"
    );

    let mut files = written.files.clone();
    files[1].md5_checksum = Some(crate::testkit::export::md5_base64(b"other bytes"));
    write_manifests(&store, &written.source, "t", &files)
        .await
        .unwrap();
    let export = Export::open(&store, &written.source).await.unwrap();
    let err = read_all(&store, &export, 1, PAGE_BYTES).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!("s3://b/{victim}")) && text.contains("MD5"),
        "{text}"
    );

    // Bytes that are not gzip.
    write_manifests(&store, &written.source, "t", &written.files)
        .await
        .unwrap();
    store
        .put(&victim, Bytes::from_static(b"{\"Item\":{}}\n"), "x")
        .await
        .unwrap();
    let err = read_all(&store, &export, 1, PAGE_BYTES).await.unwrap_err();
    assert_eq!(err.class(), Class::Fatal, "{err}");
    assert!(err.to_string().contains(&victim), "{err}");
}

#[tokio::test]
async fn an_empty_object_is_an_empty_data_file() {
    let store = MemoryStore::new("b");
    let written = write_export(&store, "", "0004-aa", "t", &bench_items(5, 3), 1)
        .await
        .unwrap();
    let mut files = written.files.clone();
    let key = "AWSDynamoDB/0004-aa/data/empty-partition.json.gz".to_string();
    store.put(&key, Bytes::new(), "x").await.unwrap();
    files.push(DataFile {
        item_count: 0,
        md5_checksum: Some(crate::testkit::export::md5_base64(b"")),
        etag: None,
        data_file_s3_key: key.clone(),
        line: 0,
    });
    write_manifests(&store, &written.source, "t", &files)
        .await
        .unwrap();
    let export = Export::open(&store, &written.source).await.unwrap();
    let pages = read_all(&store, &export, 1, PAGE_BYTES).await.unwrap();
    assert_eq!(pages.iter().map(|p| p.len()).sum::<u64>(), 5);
    // Listed with an item, the empty object is short of it.
    files.last_mut().unwrap().item_count = 1;
    write_manifests(&store, &written.source, "t", &files)
        .await
        .unwrap();
    let export = Export::open(&store, &written.source).await.unwrap();
    let err = read_all(&store, &export, 1, PAGE_BYTES).await.unwrap_err();
    assert!(err.to_string().contains(&key), "{err}");
}

#[tokio::test]
async fn manifests_that_disagree_or_another_format_are_refused() {
    let store = MemoryStore::new("b");
    let written = write_export(&store, "p", "0003-ef", "t", &bench_items(10, 2), 2)
        .await
        .unwrap();
    let summary_key = written.source.summary_key();
    let mut summary: serde_json::Value =
        serde_json::from_slice(&store.get(&summary_key).await.unwrap().unwrap()).unwrap();
    summary["itemCount"] = 11.into();
    store
        .put(&summary_key, summary.to_string().into(), "x")
        .await
        .unwrap();
    // The page does not tie the summary's count to the files': warned about, not refused.
    let export = Export::open(&store, &written.source).await.unwrap();
    assert_eq!(export.item_count(), 10);
    summary["itemCount"] = 10.into();
    summary["outputFormat"] = "ION".into();
    store
        .put(&summary_key, summary.to_string().into(), "x")
        .await
        .unwrap();
    let err = Export::open(&store, &written.source).await.unwrap_err();
    assert!(err.to_string().contains("ION"), "{err}");
    let missing = ExportSource::parse_url("s3://b/p/AWSDynamoDB/none").unwrap();
    let err = Export::open(&store, &missing).await.unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}

/// Change lines shaped as the output format page's incremental examples show them (an
/// insert, an update with its old image, a delete; `WriteTimestampMicros` a JSON string),
/// and the same lines with the time as a DynamoDB number and as a bare JSON number.
fn page_change_lines(micros: &dyn Fn(&str) -> String) -> Vec<String> {
    [
            (
                "1680109764000000",
                r#""Keys":{"PK":{"S":"CUST#100"}},"NewImage":{"PK":{"S":"CUST#100"},"FirstName":{"S":"John"},"LastName":{"S":"Don"}}"#,
            ),
            (
                "1680109764000001",
                r#""Keys":{"PK":{"S":"CUST#200"}},"OldImage":{"PK":{"S":"CUST#200"},"FirstName":{"S":"Mary"},"LastName":{"S":"Grace"}},"NewImage":{"PK":{"S":"CUST#200"},"FirstName":{"S":"Mary"},"LastName":{"S":"Smith"}}"#,
            ),
            (
                "1680109764000002",
                r#""Keys":{"PK":{"S":"CUST#300"}},"OldImage":{"PK":{"S":"CUST#300"},"FirstName":{"S":"Jose"},"LastName":{"S":"Hernandez"}}"#,
            ),
        ]
        .iter()
        .map(|(at, rest)| {
            format!(
                r#"{{"Metadata":{{"WriteTimestampMicros":{}}},{rest}}}"#,
                micros(at)
            )
        })
        .collect()
}

#[test]
fn write_times_are_read_in_every_documented_form_as_the_same_value() {
    let forms: [&dyn Fn(&str) -> String; 3] = [
        &|at| format!(r#"{{"N":"{at}"}}"#),
        &|at| format!(r#""{at}""#),
        &|at| at.to_string(),
    ];
    let read = |lines: Vec<String>| -> Vec<(u64, bool, bool)> {
        lines
            .iter()
            .map(|l| {
                let c: ChangeLine = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
                (
                    c.metadata.write_timestamp_micros.0,
                    c.new_image.is_some(),
                    c.old_image.is_some(),
                )
            })
            .collect()
    };
    let expected = vec![
        (1_680_109_764_000_000, true, false),
        (1_680_109_764_000_001, true, true),
        (1_680_109_764_000_002, false, true),
    ];
    for form in forms {
        assert_eq!(read(page_change_lines(form)), expected);
    }
    // Past what a double holds exactly: still exact.
    assert_eq!(
        NumberValue::parse("9007199254740993").unwrap(),
        NumberValue(9_007_199_254_740_993)
    );
    for bad in [
        r#"{"S":"1680109764000000"}"#,
        r#"{"N":"1680109764000000","S":"x"}"#,
        r#""16801097640000x0""#,
        r#""""#,
        "-5",
        "1.5",
        "1e6",
        "true",
        "null",
        "[1]",
    ] {
        let err = NumberValue::parse(bad).unwrap_err();
        assert!(err.contains(bad), "{bad}: {err}");
        let line = format!(r#"{{"Metadata":{{"WriteTimestampMicros":{bad}}},"Keys":{{}}}}"#);
        assert!(serde_json::from_str::<ChangeLine>(&line).is_err(), "{line}");
    }
}

#[tokio::test]
async fn an_incremental_export_in_each_form_reads_the_same_and_a_bad_time_is_named() {
    use crate::testkit::export::{
        change_lines, gzip, write_incremental_export_in, Change, Form, KeyForm, MicrosForm,
    };
    let items = bench_items(30, 4);
    let changes: Vec<Change> = items
        .iter()
        .enumerate()
        .map(|(i, item)| Change {
            keys: item.clone(),
            new_image: (i % 3 != 0).then(|| item.clone()),
            old_image: None,
            micros: 1_680_109_764_000_000 + i as u64,
        })
        .collect();
    let window = ("2023-03-29T17:00:00.000Z", "2023-03-29T18:00:00.000Z");
    let mut seen = Vec::new();
    for (i, micros) in [MicrosForm::Number, MicrosForm::String, MicrosForm::Bare]
        .into_iter()
        .enumerate()
    {
        let store = MemoryStore::new("b");
        let form = Form {
            micros,
            keys: [KeyForm::Bucket, KeyForm::Prefix][i % 2],
            ..Form::default()
        };
        let written = write_incremental_export_in(
            &store,
            ("20230919-prefix", "01693685934212-ac809da5", "t"),
            &changes,
            3,
            window,
            form,
        )
        .await
        .unwrap();
        assert!(
            written.files[0]
                .data_file_s3_key
                .contains("AWSDynamoDB/data/"),
            "{:?}",
            written.files[0]
        );
        let export = Export::open_kind(&store, &written.source, ExportKind::Incremental)
            .await
            .unwrap();
        let pages = read_all(&store, &export, 2, PAGE_BYTES).await.unwrap();
        let mut times: Vec<u64> = Vec::new();
        for page in &pages {
            let lines: Vec<ChangeLine> = serde_json::from_slice(page.items_json()).unwrap();
            times.extend(lines.iter().map(|l| l.metadata.write_timestamp_micros.0));
        }
        times.sort();
        seen.push(times);

        // A line whose time is in no allowed form is named by its file and line.
        let victim = export.files[1].clone();
        let mut key = None;
        for k in export.candidates(&victim.data_file_s3_key) {
            if store.head(&k).await.unwrap().is_some() {
                key = Some(k);
                break;
            }
        }
        let key = key.expect("the data file is found");
        let mut text = String::from_utf8(change_lines(&changes[..2], micros)).unwrap();
        text.push_str(&page_change_lines(&|at| format!(r#"{{"S":"{at}"}}"#))[0]);
        text.push('\n');
        store
            .put(&key, gzip(text.as_bytes()).into(), "x")
            .await
            .unwrap();
        let mut file = victim.clone();
        file.item_count = 3;
        file.md5_checksum = None;
        let sole = Export {
            files: vec![file],
            ..export.clone()
        };
        let err = read_all(&store, &sole, 1, PAGE_BYTES).await.unwrap_err();
        assert_eq!(err.class(), Class::Fatal, "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("s3://b/{key}"))
                && text.contains("line 3 is not a change")
                && text.contains(&format!("line 2 of {}", export.files_url)),
            "{text}"
        );
    }
    assert_eq!(seen[0].len(), 30);
    assert!(
        seen.iter().all(|t| *t == seen[0]),
        "the same times in every form"
    );
}

#[test]
fn manifest_keys_may_be_of_the_bucket_or_under_the_prefix_or_the_folder() {
    // The page's full export example: s3Prefix set, keys starting at AWSDynamoDB/.
    let source =
        ExportSource::parse_url("s3://b/2020-Nov/AWSDynamoDB/01234567890123-a1b2c3d4").unwrap();
    let summary = ManifestSummary {
        s3_prefix: Some("2020-Nov".into()),
        ..ManifestSummary::default()
    };
    assert_eq!(
            candidates(
                "AWSDynamoDB/01234567890123-a1b2c3d4/manifest-files.json",
                &source,
                &summary
            ),
            [
                "AWSDynamoDB/01234567890123-a1b2c3d4/manifest-files.json",
                "2020-Nov/AWSDynamoDB/01234567890123-a1b2c3d4/manifest-files.json",
                "2020-Nov/AWSDynamoDB/01234567890123-a1b2c3d4/AWSDynamoDB/01234567890123-a1b2c3d4/manifest-files.json",
            ]
        );
    // The incremental example: a key that starts with the prefix is not prefixed again.
    assert_eq!(
            candidates(
                "2020-Nov/AWSDynamoDB/data/sst7fxxm.json.gz",
                &source,
                &summary
            ),
            [
                "2020-Nov/AWSDynamoDB/data/sst7fxxm.json.gz",
                "2020-Nov/AWSDynamoDB/01234567890123-a1b2c3d4/2020-Nov/AWSDynamoDB/data/sst7fxxm.json.gz"
            ]
        );
    // Without a prefix: a key of the bucket, or relative to the folder.
    let source = ExportSource::parse_url("s3://b/AWSDynamoDB/x").unwrap();
    assert_eq!(
        candidates("data/a.json.gz", &source, &ManifestSummary::default()),
        ["data/a.json.gz", "AWSDynamoDB/x/data/a.json.gz"]
    );
}

#[tokio::test]
async fn keys_under_the_prefix_or_folder_are_found_and_a_missing_file_names_every_place_tried() {
    use crate::testkit::export::{write_export_in, Form, KeyForm};
    let store = MemoryStore::new("b");
    let items = bench_items(60, 3);
    let written = write_export_in(
        &store,
        ("2020-Nov", "01234567890123-a1b2c3d4", "t"),
        &items,
        3,
        Form {
            keys: KeyForm::Prefix,
            ..Form::default()
        },
    )
    .await
    .unwrap();
    assert!(written.files[0]
        .data_file_s3_key
        .starts_with("AWSDynamoDB/01234567890123-a1b2c3d4/data/"));
    let summary: ManifestSummary = serde_json::from_slice(
        &store
            .get(&written.source.summary_key())
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        summary.manifest_files_s3_key.as_deref(),
        Some("AWSDynamoDB/01234567890123-a1b2c3d4/manifest-files.json")
    );
    let export = Export::open(&store, &written.source).await.unwrap();
    assert_eq!(
        export.files_url,
        "s3://b/2020-Nov/AWSDynamoDB/01234567890123-a1b2c3d4/manifest-files.json"
    );
    let pages = read_all(&store, &export, 2, PAGE_BYTES).await.unwrap();
    assert_eq!(pages.iter().map(|p| p.len()).sum::<u64>(), 60);

    // Keys relative to the export's folder.
    let mut files = export.files.clone();
    for f in &mut files {
        f.data_file_s3_key = f
            .data_file_s3_key
            .strip_prefix("AWSDynamoDB/01234567890123-a1b2c3d4/")
            .unwrap()
            .to_string();
    }
    let folder = Export {
        files: files.clone(),
        ..export.clone()
    };
    let pages = read_all(&store, &folder, 1, PAGE_BYTES).await.unwrap();
    assert_eq!(pages.iter().map(|p| p.len()).sum::<u64>(), 60);

    // A file that exists nowhere: every place tried is named, with its manifest line.
    files[1].data_file_s3_key = "data/gone.json.gz".into();
    let gone = Export {
        files: vec![files[1].clone()],
        ..export.clone()
    };
    let err = read_all(&store, &gone, 1, PAGE_BYTES).await.unwrap_err();
    assert_eq!(err.class(), Class::Fatal, "{err}");
    let text = err.to_string();
    for place in [
        "s3://b/data/gone.json.gz",
        "s3://b/2020-Nov/data/gone.json.gz",
        "s3://b/2020-Nov/AWSDynamoDB/01234567890123-a1b2c3d4/data/gone.json.gz",
    ] {
        assert!(text.contains(place), "{place}: {text}");
    }
    assert!(
        text.contains(&format!("line 2 of {}", export.files_url)),
        "{text}"
    );

    // A manifestFilesS3Key that exists nowhere is refused naming every place tried.
    let summary_key = written.source.summary_key();
    let mut summary: serde_json::Value =
        serde_json::from_slice(&store.get(&summary_key).await.unwrap().unwrap()).unwrap();
    summary["manifestFilesS3Key"] = "elsewhere/manifest-files.json".into();
    store
        .put(&summary_key, summary.to_string().into(), "x")
        .await
        .unwrap();
    let err = Export::open(&store, &written.source).await.unwrap_err();
    assert_eq!(err.class(), Class::Fatal);
    let text = err.to_string();
    assert!(
        text.contains("s3://b/elsewhere/manifest-files.json")
            && text.contains("s3://b/2020-Nov/elsewhere/manifest-files.json"),
        "{text}"
    );
}

#[tokio::test]
async fn gzip_data_cut_short_is_damage_even_with_a_matching_md5_but_a_dropped_transfer_is_retried()
{
    let items = bench_items(200, 7);
    for keep in [10, 300, usize::MAX] {
        let store = MemoryStore::new("b");
        let written = write_export(&store, "p", "0005-cc", "t", &items, 2)
            .await
            .unwrap();
        // Cut short in the bucket, the manifest line written from the cut file: its MD5
        // matches.
        let mut files = written.files.clone();
        let key = files[1].data_file_s3_key.clone();
        let whole = store.get(&key).await.unwrap().unwrap();
        let cut = whole.slice(..keep.min(whole.len() - 1));
        files[1].md5_checksum = Some(crate::testkit::export::md5_base64(&cut));
        store.put(&key, cut, "x").await.unwrap();
        write_manifests(&store, &written.source, "t", &files)
            .await
            .unwrap();
        let export = Export::open(&store, &written.source).await.unwrap();
        let err = read_all(&store, &export, 1, PAGE_BYTES).await.unwrap_err();
        assert_eq!(err.class(), Class::Fatal, "cut at {keep}: {err}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("s3://b/{key}"))
                && text.contains("ends early")
                && text.contains(&format!("line 2 of {}", export.files_url)),
            "{text}"
        );
    }

    // The same kind of bytes through a transfer that fails halfway: transient.
    struct Dropped(std::io::Cursor<Vec<u8>>);
    impl AsyncRead for Dropped {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if self.0.position() as usize >= self.0.get_ref().len() {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "connection reset by peer",
                )));
            }
            Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }
    let store = MemoryStore::new("b");
    let written = write_export(&store, "p", "0006-dd", "t", &items, 2)
        .await
        .unwrap();
    let file = &written.files[1];
    let whole = store.get(&file.data_file_s3_key).await.unwrap().unwrap();
    let half = whole[..whole.len() / 2].to_vec();
    let (tx, _rx) = mpsc::channel(10_000);
    let (stop, counters) = (crate::stop::Stop::default(), ScanCounters::default());
    let sink = Sink {
        stop: &stop,
        counters: &counters,
        pages: &tx,
        table: "t",
        segment: 0,
        kind: ExportKind::Full,
    };
    let listed = Listed {
        manifest: "s3://b/m",
        file,
    };
    let err = read_body(
        Box::pin(Dropped(std::io::Cursor::new(half))),
        "s3://b/f",
        listed,
        PAGE_BYTES,
        &sink,
    )
    .await
    .unwrap_err();
    assert_eq!(err.class(), Class::Retry, "{err}");
    assert!(err.to_string().contains("s3://b/f"), "{err}");
}
