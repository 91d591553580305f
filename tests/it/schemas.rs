//! The reviewed static data-schemas in `schemas/` must be exactly what inference produces for the
//! demo dataset (`schemas/platform`) and the benchmark dataset (`schemas/bench`, used by
//! `jobs/bench/run`). Regenerate them after an intended change with
//! `ETL_BLESS=1 cargo test --test it schemas`.

use crate::support;
use dynamo_etl::schema::entities::{infer_items, Strategy};
use dynamo_etl::schema::SchemaSet;
use dynamo_etl::testkit::fixtures;
use dynamo_etl::value::Item;

/// Infers the data-schemas of `items` as source table `table` and compares them with
/// `schemas/<table>/`, rewriting the files first when `ETL_BLESS` is set.
fn check_static_schemas(table: &str, items: impl IntoIterator<Item = Item>) {
    let items: Vec<Item> = items.into_iter().collect();
    // With infer-schema's default flags: the entities are chosen from the data.
    let keys = ["pk".to_string(), "sk".to_string()];
    let schemas = infer_items(table, &keys, &[], Strategy::Auto, &items).schemas;
    let inferred = SchemaSet::new(table, schemas, "inference").unwrap();
    let dir = support::repo_root().join("schemas");
    if std::env::var("ETL_BLESS").is_ok() {
        for (path, text) in inferred.to_files() {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
    }
    let on_disk = SchemaSet::read_dir(&dir, table)
        .unwrap_or_else(|e| panic!("{e}; run ETL_BLESS=1 cargo test --test it schemas"));
    for (path, text) in inferred.to_files() {
        let current = std::fs::read_to_string(dir.join(&path)).unwrap_or_default();
        assert_eq!(current, text, "schemas/{path} differs from what inference produces now; review and bless with ETL_BLESS=1");
    }
    assert_eq!(
        on_disk.schemas.len(),
        inferred.schemas.len(),
        "schemas/{table} has extra files"
    );
}

#[test]
fn static_schemas_match_inference_of_the_demo_dataset() {
    check_static_schemas("platform", fixtures::demo_items(20));
}

/// 30,000 items cover every value range of the generator (the widest decimal appears in about
/// nine of ten organizations), so every item of a large benchmark table fits its columns.
#[test]
fn bench_schemas_match_inference_of_the_bench_dataset() {
    check_static_schemas("bench", fixtures::bench_items(30_000, 7));
}
