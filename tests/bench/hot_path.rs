//! The per-item hot path of phase 1 on one core: a Scan page of benchmark items, as the bytes
//! DynamoDB sends, is parsed into items (`RawPage::items`), classified and converted
//! (`Transformer::convert`), CSV-encoded and gzipped at level 1 by the same `PartWriter` phase 1
//! uses, with its default codec (zstd level 1). The chunks it produces go to a thread that drops
//! them, so no network is involved. `ETL_BENCH_COMPRESSION=gzip` measures gzip level 1 instead;
//! `ETL_BENCH_DIALECT=postgres` shapes values for PostgreSQL instead of Redshift. Each part is
//! fingerprinted as phase 1 does (the gate's proof); `ETL_BENCH_FINGERPRINTS=off` leaves that out,
//! so the cost of the proof is the ratio of two runs of the same binary.
//!
//! The second group, `infer_survey`, is `infer-schema`'s per-item work on the same page: the
//! items parsed once, then summarised by the entity survey (every candidate way of telling
//! entities apart) as on a first run (`first_week`) and when evolving `schemas/bench`
//! (`weekly`), against summarising each item into one table's statistics (`one_table`, what
//! inference did per item before it weighed candidates). One survey is kept across iterations,
//! so the figures are those of a long scan, where candidates that grow with the data are no
//! longer tracked.
//!
//! ```text
//! cargo bench --bench hot_path
//! cargo bench --bench hot_path -- infer_survey
//! ETL_BENCH_DIALECT=postgres ETL_BENCH_PROOF_COST=20 cargo bench --bench hot_path
//! ```
//! The last prints the cost of the proof (fingerprints) as the median ratio of pages written
//! with and without, alternately in one process (see `proof_cost`), then the same for whole
//! replayed segments (`segment_proof_cost`).
//! `items` reports items/s, `csv_bytes` the same work as MB/s of CSV produced. Times are the
//! benchmark thread's CPU time, not wall time, so the figures are per core and stay meaningful
//! on a machine shared with other work (wall time would count the time the thread waited for a
//! core). The page's sizes are printed first, so either figure converts into the other.

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{criterion_group, Criterion, Throughput};
use dynamo_etl::schema::entities::{Survey, SurveySettings, DEFAULT_MAX_TABLES};
use dynamo_etl::schema::infer::TableStats;
use dynamo_etl::schema::{DialectName, SchemaSet};
use dynamo_etl::source::page::RawPage;
use dynamo_etl::staging::fingerprint::Fingerprinter;
use dynamo_etl::staging::parts::codec::{PartCompression, PartEncoder};
use dynamo_etl::staging::parts::csv::CsvEncoder;
use dynamo_etl::staging::parts::writer::{PartSettings, PartWriter};
use dynamo_etl::testkit::fixtures;
use dynamo_etl::testkit::wire::scan_response_json;
use dynamo_etl::transform::Transformer;
use dynamo_etl::value::ItemView;
use std::path::Path;
use tokio::sync::mpsc;

/// CPU time of one clock: the calling thread's (the per-item groups) or the whole process's
/// (the `segment` group, whose work runs on several threads).
struct CpuTime(libc::clockid_t);

const THREAD_CPU: CpuTime = CpuTime(libc::CLOCK_THREAD_CPUTIME_ID);
const PROCESS_CPU: CpuTime = CpuTime(libc::CLOCK_PROCESS_CPUTIME_ID);

impl CpuTime {
    /// The clock's reading, in nanoseconds.
    fn now_ns(&self) -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime only writes the timespec it is given.
        let rc = unsafe { libc::clock_gettime(self.0, &mut ts) };
        assert_eq!(rc, 0, "the CPU-time clocks are available on Linux");
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }
}

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        self.now_ns()
    }
    fn end(&self, started: u64) -> u64 {
        self.now_ns() - started
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Shows CPU nanoseconds as ms of CPU, and throughputs per CPU-second (= per core).
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, _typical_ns: f64, values: &mut [f64]) -> &'static str {
        values.iter_mut().for_each(|v| *v /= 1e6);
        "ms cpu"
    }

    fn scale_throughputs(
        &self,
        _typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let (per_iteration, divisor, unit) = match *throughput {
            Throughput::Elements(n) => (n as f64, 1e3, "K items/s/core"),
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) => (n as f64, 1e6, "MB/s/core"),
            Throughput::Bits(n) => (n as f64, 1e6, "Mbit/s/core"),
        };
        values
            .iter_mut()
            .for_each(|ns| *ns = per_iteration / (*ns / 1e9) / divisor);
        unit
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

/// DynamoDB returns at most 1 MB of items per Scan page.
const PAGE_BYTES: usize = 1 << 20;

/// Benchmark items (the generator `dynamo-etl-seed bench` loads) up to one full page, as the
/// Scan response body DynamoDB would send; and their DynamoDB size.
fn page() -> (RawPage, usize) {
    let mut rng = fixtures::Rng::new(7);
    let mut bytes = 0;
    let mut items = Vec::new();
    for i in 0.. {
        let item = fixtures::bench_item(i, &mut rng);
        let size = ItemView::from_sdk(&item).size();
        if bytes + size > PAGE_BYTES {
            break;
        }
        bytes += size;
        items.push(item);
    }
    let (page, _) = RawPage::split(scan_response_json(&items).into()).expect("a valid page");
    (page, bytes)
}

/// `schemas/bench`: the data-schemas of the benchmark items.
fn bench_schemas() -> SchemaSet {
    let schemas_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    SchemaSet::read_dir(&schemas_dir, "bench").expect("schemas/bench")
}

/// The warehouse whose limits shape the values: `ETL_BENCH_DIALECT`, Redshift by default.
fn dialect() -> DialectName {
    std::env::var("ETL_BENCH_DIALECT")
        .unwrap_or_else(|_| "redshift".into())
        .parse()
        .unwrap_or_else(|e| panic!("ETL_BENCH_DIALECT: {e}"))
}

/// Phase 1's writers, one per table, with their chunks dropped by a draining thread.
struct Sink {
    writers: Vec<PartWriter>,
}

/// Phase 1's part settings, with the codec `ETL_BENCH_COMPRESSION` names (zstd by default).
fn settings() -> PartSettings {
    let mut settings = PartSettings::default();
    match std::env::var("ETL_BENCH_COMPRESSION").as_deref() {
        Ok("gzip") => settings.compression = PartCompression::Gzip,
        Ok("zstd") | Err(_) => settings.compression = PartCompression::Zstd,
        Ok(other) => panic!("ETL_BENCH_COMPRESSION={other}: use zstd or gzip"),
    }
    settings
}

/// Whether parts are fingerprinted, as phase 1 does unless `ETL_BENCH_FINGERPRINTS=off`.
fn fingerprinting() -> bool {
    match std::env::var("ETL_BENCH_FINGERPRINTS").as_deref() {
        Ok("on") | Err(_) => true,
        Ok("off") => false,
        Ok(other) => panic!("ETL_BENCH_FINGERPRINTS={other}: use on or off"),
    }
}

impl Sink {
    fn new(transformer: &Transformer, dialect: DialectName, fingerprints: bool) -> Self {
        let limits = dynamo_etl::warehouse::limits(dialect);
        let fingerprinters: Vec<Option<Fingerprinter>> = transformer
            .tables()
            .map(|s| fingerprints.then(|| Fingerprinter::for_table(s, limits)))
            .collect();
        let (tx, mut rx) = mpsc::channel(1);
        std::thread::spawn(move || while rx.blocking_recv().is_some() {});
        let writers = (0..fingerprinters.len())
            .map(|t| {
                let writer = PartWriter::new(
                    Box::new(move |i| {
                        format!(
                            "bench/{t}/part-{i:05}{}",
                            settings().compression.extension()
                        )
                    }),
                    settings(),
                    tx.clone(),
                );
                match &fingerprinters[t] {
                    Some(f) => writer.with_fingerprints(f.clone()),
                    None => writer,
                }
            })
            .collect();
        Sink { writers }
    }
}

fn convert_page(transformer: &mut Transformer, sink: &mut Sink, page: &RawPage) {
    for item in &page.items().expect("the page parses") {
        let row = transformer.convert(item).expect("bench items convert");
        sink.writers[row.table]
            .write_row(&row.fields)
            .expect("the draining thread runs");
    }
}

fn hot_path(c: &mut Criterion<CpuTime>) {
    let schemas = bench_schemas();
    let keys = ["pk".to_string(), "sk".to_string()];
    let (page, item_bytes) = page();
    // Size of the page as CSV, for the bytes figure.
    let dialect = dialect();
    let limits = dynamo_etl::warehouse::limits(dialect);
    println!("values shaped for {dialect} (ETL_BENCH_DIALECT=redshift|postgres)");
    let mut transformer = Transformer::new(&schemas, &keys, limits);
    let mut csv = CsvEncoder::new();
    let mut csv_out = Vec::new();
    for item in &page.items().unwrap() {
        csv.write_row(&mut csv_out, &transformer.convert(item).unwrap().fields);
    }
    println!(
        "page: {} items, {:.0} KiB of item data ({:.0} KiB of DynamoDB JSON), {:.0} KiB of CSV \
         ({} bytes of CSV per item)",
        page.len(),
        item_bytes as f64 / 1024.0,
        page.items_bytes() as f64 / 1024.0,
        csv_out.len() as f64 / 1024.0,
        csv_out.len() as u64 / page.len()
    );
    for codec in [PartCompression::Zstd, PartCompression::Gzip] {
        let mut encoder = PartEncoder::new(codec, 1, 0);
        encoder.write_all(&csv_out);
        let compressed = encoder.finish().len();
        println!(
            "{} level 1: {:.0} KiB ({:.1}% of the CSV)",
            codec.name(),
            compressed as f64 / 1024.0,
            compressed as f64 * 100.0 / csv_out.len() as f64
        );
    }
    println!(
        "measuring parts written with {} level {} (ETL_BENCH_COMPRESSION=zstd|gzip)",
        settings().compression.name(),
        settings().level
    );

    let mut group = c.benchmark_group("hot_path");
    let mut sink = Sink::new(&transformer, dialect, fingerprinting());
    println!(
        "parts fingerprinted: {} (ETL_BENCH_FINGERPRINTS=on|off)",
        fingerprinting()
    );
    group.throughput(Throughput::Elements(page.len()));
    group.bench_function("items", |b| {
        b.iter(|| convert_page(&mut transformer, &mut sink, &page))
    });
    group.throughput(Throughput::BytesDecimal(csv_out.len() as u64));
    group.bench_function("csv_bytes", |b| {
        b.iter(|| convert_page(&mut transformer, &mut sink, &page))
    });
    group.finish();
}

/// Pages phase 1 replays per iteration of the `segment` group.
const SEGMENT_PAGES: usize = 8;

/// What the `segment` group replays: the run's plan, the pages and a runtime for the upload tasks.
struct SegmentReplay {
    plan: dynamo_etl::staging::plan::RunPlan,
    pages: Vec<RawPage>,
    items: u64,
    runtime: tokio::runtime::Runtime,
}

impl SegmentReplay {
    fn new() -> Self {
        let schemas = bench_schemas();
        let plan = dynamo_etl::staging::plan::RunPlan {
            dialect: dialect(),
            source_table: "bench".into(),
            key_attributes: vec!["pk".into(), "sk".into()],
            schemas: schemas.schemas.clone(),
            ..dynamo_etl::testkit::runs::plan("bench")
        };
        let (page, _) = page();
        let pages: Vec<RawPage> = (0..SEGMENT_PAGES)
            .map(|n| {
                let mut p = page.clone();
                p.last_key = Some(format!(
                    r#"{{"pk":{{"S":"BENCH#{n:06}"}},"sk":{{"S":"x"}}}}"#
                ));
                p
            })
            .collect();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        SegmentReplay {
            plan,
            items: page.len() * SEGMENT_PAGES as u64,
            pages,
            runtime,
        }
    }

    fn settings(every: std::time::Duration) -> dynamo_etl::phases::segment::SegmentSettings {
        dynamo_etl::phases::segment::SegmentSettings {
            parts: settings(),
            consistent_read: false,
            max_read_units: None,
            progress_every: std::time::Duration::from_secs(3600),
            checkpoint_every: every,
            restart: false,
            page_items: None,
        }
    }

    /// One segment, into a fresh store (a segment whose manifest exists is not run again).
    fn run(&self, every: std::time::Duration, fingerprints: bool) {
        use dynamo_etl::staging::{Layout, Staging};
        use dynamo_etl::storage::memory::MemoryStore;
        let staging = Staging::new(
            std::sync::Arc::new(MemoryStore::with_any_part_size("bench")),
            Layout::new("p"),
        );
        let manifest = self
            .runtime
            .block_on(dynamo_etl::phases::segment::replay(
                &self.plan,
                &staging,
                0,
                Self::settings(every),
                self.pages.clone(),
                fingerprints,
            ))
            .expect("the replayed segment commits");
        assert_eq!(manifest.items_scanned, self.items);
        assert_eq!(manifest.fingerprint_method.is_some(), fingerprints);
    }
}

/// Phase 1 of one segment as a whole (`phases::segment::replay`): the bench page replayed
/// [`SEGMENT_PAGES`] times (each with a `LastEvaluatedKey` of its own, where checkpoints resume)
/// through the transform, the part writers and the uploads into an in-memory store, then the
/// manifest. `default` checkpoints as phase 1 does by default (every 60 s, and when a part
/// fills: in a run of this length, only the per-page bookkeeping); `checkpoint_every_page` as
/// with `--checkpoint-seconds 0`, the most checkpoints can cost.
fn segment(c: &mut Criterion<CpuTime>) {
    use std::time::Duration;

    let replay = SegmentReplay::new();
    let mut group = c.benchmark_group("segment");
    group.throughput(Throughput::Elements(replay.items));
    group.sample_size(20);
    for (name, every) in [
        ("default", Duration::from_secs(60)),
        ("checkpoint_every_page", Duration::ZERO),
    ] {
        group.bench_function(name, |b| b.iter(|| replay.run(every, true)));
    }
    group.finish();
}

fn infer_survey(c: &mut Criterion<CpuTime>) {
    let previous = bench_schemas();
    let keys = ["pk".to_string(), "sk".to_string()];
    let (page, _) = page();
    let items = page.items().expect("the page parses");
    let mut group = c.benchmark_group("infer_survey");
    group.throughput(Throughput::Elements(page.len()));
    for (name, previous) in [("first_week", Vec::new()), ("weekly", previous.schemas)] {
        let settings = SurveySettings::new(&keys, Some('#'), DEFAULT_MAX_TABLES, previous);
        let mut survey = Survey::new(std::sync::Arc::new(settings));
        group.bench_function(name, |b| {
            b.iter(|| items.iter().for_each(|item| survey.observe(item)))
        });
    }
    let mut stats = TableStats::default();
    group.bench_function("one_table", |b| {
        b.iter(|| items.iter().for_each(|item| stats.observe(item)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(THREAD_CPU);
    targets = hot_path, infer_survey
}
/// `ETL_BENCH_PROOF_COST=<seconds>`: instead of the criterion groups, the cost of the proof
/// measured side by side in one process — the page converted and written with fingerprints and
/// without, alternately (which goes first alternates too), for about that many seconds of CPU.
/// Each pair's two times are taken within milliseconds of each other, so a machine whose speed
/// wanders (shared, throttled) moves both alike; the median of the pairs' ratios is printed
/// with its quartiles.
fn proof_cost(seconds: f64) {
    let schemas = bench_schemas();
    let keys = ["pk".to_string(), "sk".to_string()];
    let (page, _) = page();
    let dialect = dialect();
    let limits = dynamo_etl::warehouse::limits(dialect);
    let mut transformer = Transformer::new(&schemas, &keys, limits);
    let mut with = Sink::new(&transformer, dialect, true);
    let mut without = Sink::new(&transformer, dialect, false);
    let mut timed = |sink: &mut Sink| {
        let started = THREAD_CPU.now_ns();
        convert_page(&mut transformer, sink, &page);
        (THREAD_CPU.now_ns() - started) as f64
    };
    let (mut pairs, on_total, off_total) = alternate(seconds, 5, |fingerprints| {
        timed(if fingerprints {
            &mut with
        } else {
            &mut without
        })
    });
    let (median, low, high) = quartiles(&mut pairs);
    println!(
        "proof cost ({dialect}, {} items a page, {} pairs): CPU a page with fingerprints {:.2} ms, \
         without {:.2} ms; with / without, median of pairs {median:.3} (quartiles {low:.3}–{high:.3})",
        page.len(),
        pairs.len(),
        on_total / pairs.len() as f64 / 1e6,
        off_total / pairs.len() as f64 / 1e6,
    );
    segment_proof_cost(seconds);
}

/// Runs `timed(true)` (with fingerprints) and `timed(false)` alternately, which goes first
/// alternating too, after `warm_up` pairs, until about `seconds` of the CPU they report: each
/// pair's ratio with ÷ without, and the two sides' totals.
fn alternate(
    seconds: f64,
    warm_up: usize,
    mut timed: impl FnMut(bool) -> f64,
) -> (Vec<f64>, f64, f64) {
    for _ in 0..warm_up {
        timed(true);
        timed(false);
    }
    let (mut pairs, mut spent, mut on_total, mut off_total) = (Vec::new(), 0.0, 0.0, 0.0);
    while spent < seconds * 1e9 {
        let (on, off) = match pairs.len() % 2 {
            0 => (timed(true), timed(false)),
            _ => {
                let off = timed(false);
                (timed(true), off)
            }
        };
        pairs.push(on / off);
        spent += on + off;
        on_total += on;
        off_total += off;
    }
    (pairs, on_total, off_total)
}

/// The median of `ratios` and its quartiles.
fn quartiles(ratios: &mut [f64]) -> (f64, f64, f64) {
    ratios.sort_by(f64::total_cmp);
    let at = |q: f64| ratios[((ratios.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.25), at(0.75))
}

/// The proof's cost in phase 1 of a segment as a whole (the `segment` group's replay: parse,
/// transform, parts with their checksums, uploads into memory, checkpoint bookkeeping, the
/// manifest; not the network), measured as `proof_cost` measures the page: segments with and
/// without fingerprints alternately, the process's CPU time of each, the median of the pairs'
/// ratios.
fn segment_proof_cost(seconds: f64) {
    let replay = SegmentReplay::new();
    let every = std::time::Duration::from_secs(60);
    let timed = |fingerprints: bool| {
        let started = PROCESS_CPU.now_ns();
        replay.run(every, fingerprints);
        (PROCESS_CPU.now_ns() - started) as f64
    };
    let (mut pairs, on_total, off_total) = alternate(seconds, 2, timed);
    let (median, low, high) = quartiles(&mut pairs);
    let per_item = |total: f64| total / pairs.len() as f64 / replay.items as f64 / 1e3;
    println!(
        "proof cost in a whole segment ({}, {} items, {} pairs): process CPU an item with \
         fingerprints {:.2} µs, without {:.2} µs; with / without, median of pairs {median:.3} \
         (quartiles {low:.3}–{high:.3})",
        dialect(),
        replay.items,
        pairs.len(),
        per_item(on_total),
        per_item(off_total),
    );
}

criterion_group! {
    name = whole_segment;
    config = Criterion::default().with_measurement(PROCESS_CPU);
    targets = segment
}

fn main() {
    if let Ok(seconds) = std::env::var("ETL_BENCH_PROOF_COST") {
        let seconds: f64 = seconds
            .parse()
            .unwrap_or_else(|_| panic!("ETL_BENCH_PROOF_COST={seconds}: a number of seconds"));
        proof_cost(seconds);
        return;
    }
    benches();
    whole_segment();
    Criterion::default().configure_from_args().final_summary();
}
