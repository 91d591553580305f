//! Progress bars for `run` on a terminal: one per segment for the scan, refreshed from its
//! counters, with an ETA when DynamoDB's approximate item count is known.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dynamo_etl::phases::run::Observer;
use dynamo_etl::source::ScanCounters;
use dynamo_etl::staging::manifest::SegmentManifest;

/// Progress bars on a terminal: one per segment for the scan, refreshed from its counters.
pub struct Bars {
    multi: MultiProgress,
    header: ProgressBar,
    segments: Mutex<HashMap<u32, ProgressBar>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// Estimated items per segment, when the table's item count is known.
    per_segment: Option<u64>,
}

impl Bars {
    pub fn new(total: u32, per_segment: Option<u64>) -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4));
        let header = multi.add(ProgressBar::new(u64::from(total)));
        header.set_style(
            ProgressStyle::with_template("{msg:24} [{bar:30}] {pos}/{len} segments {elapsed}")
                .expect("template")
                .progress_chars("=> "),
        );
        Bars {
            multi,
            header,
            segments: Mutex::new(HashMap::new()),
            stop: Arc::default(),
            per_segment,
        }
    }

    pub fn finish(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.header.finish_and_clear();
        for bar in self.segments.lock().expect("not poisoned").values() {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Bars {
    fn phase(&self, name: &str) {
        self.header.set_position(0);
        self.header.set_message(name.to_string());
    }

    fn segment_started(&self, segment: u32, counters: Arc<ScanCounters>) {
        let (bar, template) = match self.per_segment {
            Some(estimate) => (
                ProgressBar::new(estimate),
                "  segment {prefix:>4} [{bar:24}] {human_pos}/~{human_len} items, ETA {eta} {msg}",
            ),
            None => (
                ProgressBar::new_spinner(),
                "  segment {prefix:>4} {spinner} {human_pos} items {msg}",
            ),
        };
        let bar = self.multi.add(bar);
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("template")
                .progress_chars("=> "),
        );
        bar.set_prefix(segment.to_string());
        self.segments
            .lock()
            .expect("not poisoned")
            .insert(segment, bar.clone());
        let stop = self.stop.clone();
        tokio::spawn(async move {
            use std::sync::atomic::Ordering;
            while !bar.is_finished() && !stop.load(Ordering::Relaxed) {
                let items = counters.items.load(Ordering::Relaxed);
                // The count is an estimate: grow the bar rather than overflow it.
                if bar.length().is_some_and(|len| items > len) {
                    bar.set_length(items);
                }
                bar.set_position(items);
                let rate = items as f64 / bar.elapsed().as_secs_f64().max(0.001);
                bar.set_message(format!(
                    "({rate:.0}/s, {:.1} read units)",
                    counters.read_units()
                ));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
    }

    fn segment_finished(&self, segment: u32, result: Result<&SegmentManifest, &str>) {
        self.header.inc(1);
        if let Some(bar) = self.segments.lock().expect("not poisoned").remove(&segment) {
            match result {
                Ok(m) => {
                    bar.set_length(m.items_scanned);
                    bar.set_position(m.items_scanned);
                    bar.finish_with_message(format!(
                        "done: {} rows, {} ms",
                        m.rows(),
                        m.duration_ms
                    ));
                }
                Err(e) => bar.abandon_with_message(format!("failed: {e}")),
            }
        }
    }

    fn upload_finished(&self, segment: u32, result: Result<u64, &str>) {
        self.header.inc(1);
        if let Err(e) = result {
            let _ = self
                .multi
                .println(format!("  segment {segment}: load failed: {e}"));
        }
    }
}
