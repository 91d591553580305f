//! The reviewed static data-schemas in `schemas/` must be exactly what inference produces for the
//! demo dataset. Regenerate them after an intended change with `ETL_BLESS=1 cargo test --test schemas`.

mod support;

use dynamo_etl::fixtures;
use dynamo_etl::schema::infer::{Classification, Inference};
use dynamo_etl::schema::SchemaSet;

#[test]
fn static_schemas_match_inference_of_the_demo_dataset() {
    let classification = Classification {
        attribute: "pk".into(),
        delimiter: Some('#'),
    };
    let mut inference = Inference::default();
    for item in fixtures::demo_items(20) {
        inference.observe(&item, &classification);
    }
    let schemas = inference.to_schemas(
        "platform",
        &["pk".into(), "sk".into()],
        &classification,
        &[],
    );
    let inferred = SchemaSet::new("platform", schemas, "inference").unwrap();
    let dir = support::repo_root().join("schemas");
    if std::env::var("ETL_BLESS").is_ok() {
        for (path, text) in inferred.to_files() {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
    }
    let on_disk = SchemaSet::read_dir(&dir, "platform")
        .unwrap_or_else(|e| panic!("{e}; run ETL_BLESS=1 cargo test --test schemas"));
    for (path, text) in inferred.to_files() {
        let current = std::fs::read_to_string(dir.join(&path)).unwrap_or_default();
        assert_eq!(current, text, "schemas/{path} differs from what inference produces now; review and bless with ETL_BLESS=1");
    }
    assert_eq!(
        on_disk.schemas.len(),
        inferred.schemas.len(),
        "schemas/platform has extra files"
    );
}
