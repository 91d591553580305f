//! What `gc` prints: one line per run and schema snapshot, kept (and why) or deleted, then what
//! a dry run would delete, or what was deleted.

use dynamo_etl::phases::gc::{GcDone, GcPlan};

/// The plan; without `apply`, the dry run's summary and how to delete for real.
pub fn render(plan: &GcPlan, apply: bool) -> String {
    let mut out = String::new();
    for e in &plan.runs {
        out.push_str(&match &e.kept_because {
            None => format!(
                "delete  {}  ({} objects, {} bytes, {} unfinished uploads)\n",
                e.run_id, e.objects, e.bytes, e.open_uploads
            ),
            Some(why) => format!("keep    {}  ({why})\n", e.run_id),
        });
    }
    for s in &plan.snapshots {
        out.push_str(&match &s.kept_because {
            None => format!(
                "delete  schema snapshot {} ({})\n",
                s.snapshot_id,
                s.tables.join(", ")
            ),
            Some(why) => format!("keep    schema snapshot {} ({why})\n", s.snapshot_id),
        });
    }
    if !apply {
        out.push_str(&format!(
            "dry run: {} runs ({} bytes, {} unfinished uploads) and {} schema snapshots would be deleted; run again with --apply to delete them\n",
            plan.doomed_runs().count(),
            plan.doomed_runs().map(|e| e.bytes).sum::<u64>(),
            plan.doomed_runs().map(|e| e.open_uploads).sum::<usize>(),
            plan.doomed_snapshots()
        ));
    }
    out
}

/// What `gc --apply` deleted, in one line.
pub fn done(done: &GcDone) -> String {
    format!(
        "deleted {} runs ({} objects, {} bytes) and {} schema snapshots ({} objects)",
        done.runs, done.run_objects, done.run_bytes, done.snapshots, done.snapshot_objects
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynamo_etl::phases::gc::GcEntry;

    fn entry(run_id: &str, open_uploads: usize, kept_because: Option<&str>) -> GcEntry {
        GcEntry {
            run_id: run_id.into(),
            objects: 3,
            bytes: 100,
            open_uploads,
            kept_because: kept_because.map(String::from),
        }
    }

    #[test]
    fn a_dry_run_says_what_would_go_and_how_to_delete_it() {
        let plan = GcPlan {
            runs: vec![
                entry("r1", 1, None),
                entry("r2", 0, None),
                entry("r3", 0, Some("it is one of the runs to keep")),
            ],
            snapshots: Vec::new(),
        };
        let text = render(&plan, false);
        assert!(text.contains("1 unfinished uploads"), "{text}");
        assert!(text.contains("dry run: 2 runs"), "{text}");
        assert!(text.contains("--apply"), "{text}");
        assert!(
            text.contains("keep    r3  (it is one of the runs to keep)"),
            "{text}"
        );
        assert!(!render(&plan, true).contains("dry run"));
        let line = done(&GcDone {
            runs: 2,
            run_objects: 6,
            run_bytes: 200,
            snapshots: 0,
            snapshot_objects: 0,
        });
        assert!(line.starts_with("deleted 2 runs"), "{line}");
    }
}
