//! Object keys of the staging area under one prefix (the tree is drawn in `staging`'s module
//! doc), and the run ids that become part of them.

use super::parts::codec::PartCompression;

/// Object keys of the staging area under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    prefix: String,
}

impl Layout {
    pub fn new(prefix: &str) -> Self {
        Layout {
            prefix: prefix.trim_matches('/').to_string(),
        }
    }

    fn join(&self, rest: &str) -> String {
        if self.prefix.is_empty() {
            rest.to_string()
        } else {
            format!("{}/{rest}", self.prefix)
        }
    }

    /// `…/runs/` — every run lives below it.
    pub fn runs(&self) -> String {
        self.join("runs/")
    }

    pub fn run(&self, run_id: &str) -> String {
        self.join(&format!("runs/{run_id}/"))
    }

    pub fn run_plan(&self, run_id: &str) -> String {
        format!("{}run.json", self.run(run_id))
    }

    /// Written by `replace` after the swap committed: marks the run as served (used by `gc`).
    pub fn run_swap_record(&self, run_id: &str) -> String {
        format!("{}swapped.json", self.run(run_id))
    }

    /// Held by the process working on the run with `run` (see `staging::lease`).
    pub fn run_lease(&self, run_id: &str) -> String {
        format!("{}lease.json", self.run(run_id))
    }

    /// Written by `export start`: the export it started for the run, so the run's later jobs
    /// (`export wait --run-id`, `plan --export-of-run`) find it by the run id alone.
    pub fn run_export_started(&self, run_id: &str) -> String {
        format!("{}export-started.json", self.run(run_id))
    }

    /// The report `run` writes at the end.
    pub fn run_report(&self, run_id: &str) -> String {
        format!("{}report.json", self.run(run_id))
    }

    pub fn segment(&self, run_id: &str, segment: u32) -> String {
        format!("{}segments/{segment}/", self.run(run_id))
    }

    pub fn segment_manifest(&self, run_id: &str, segment: u32) -> String {
        format!("{}manifest.json", self.segment(run_id, segment))
    }

    /// How far phase 1 got on the segment (see `staging::checkpoint`).
    pub fn segment_checkpoint(&self, run_id: &str, segment: u32) -> String {
        format!("{}checkpoint.json", self.segment(run_id, segment))
    }

    pub fn part(
        &self,
        run_id: &str,
        segment: u32,
        table: &str,
        index: u32,
        compression: PartCompression,
    ) -> String {
        format!(
            "{}{table}/part-{index:05}{}",
            self.segment(run_id, segment),
            compression.extension()
        )
    }

    /// The window the next increment of `target` works on, written before its export starts:
    /// a retry reuses it, and so the export, instead of exporting a new window (see
    /// `staging::increment::DecidedWindow`).
    /// Written by `follow` after every batch: where it stands, for people and alarms.
    pub fn follow_status(&self, target: &str) -> String {
        self.join(&format!("follow/{target}/status.json"))
    }

    pub fn increment_window(&self, target: &str) -> String {
        self.join(&format!("increments/{target}/window.json"))
    }

    /// `…/schemas/` — every schema cache snapshot lives below it.
    pub fn schemas(&self) -> String {
        self.join("schemas/")
    }

    pub fn schema_snapshot(&self, snapshot_id: &str) -> String {
        self.join(&format!("schemas/{snapshot_id}/"))
    }

    /// Where phase 3 may write helper objects for segment `segment` (Redshift COPY manifests).
    pub fn load_scratch(&self, run_id: &str, segment: u32) -> String {
        format!("{}load/{segment}/", self.run(run_id))
    }

    /// Where a load of many segments at once writes its COPY manifests.
    pub fn load_scratch_all(&self, run_id: &str) -> String {
        format!("{}load/all/", self.run(run_id))
    }

    /// The prefix itself, as given (without surrounding slashes).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

/// The prefix used when none is given.
pub const DEFAULT_PREFIX: &str = "dynamo-etl";

/// Run ids become object keys and appear in SQL comments: 1–100 characters of
/// `[A-Za-z0-9._-]`, not starting with `.`.
pub fn check_run_id(run_id: &str) -> Result<(), String> {
    let ok = !run_id.is_empty()
        && run_id.len() <= 100
        && !run_id.starts_with('.')
        && run_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "run id {run_id:?} is not valid: use 1 to 100 letters, digits, '.', '_' or '-', not starting with '.'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_layout() {
        let l = Layout::new("/etl/prod/");
        assert_eq!(l.run_plan("r1"), "etl/prod/runs/r1/run.json");
        assert_eq!(
            l.segment_manifest("r1", 3),
            "etl/prod/runs/r1/segments/3/manifest.json"
        );
        assert_eq!(
            l.part("r1", 3, "group", 12, PartCompression::Gzip),
            "etl/prod/runs/r1/segments/3/group/part-00012.csv.gz"
        );
        assert_eq!(Layout::new("").run("x"), "runs/x/");
    }

    #[test]
    fn run_ids_are_checked() {
        assert!(check_run_id("2026-11-21.nightly_1").is_ok());
        for bad in ["", "a/b", "../x", ".hidden", "x y", "é"] {
            assert!(check_run_id(bad).is_err(), "{bad:?}");
        }
    }
}
