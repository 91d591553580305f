//! What `status` prints: each segment's phase 1 and phase 3, the swap, and for every gap the
//! command that closes it.

use dynamo_etl::phases::status::{Phase1, RunStatus, ServedProof, SwapState};

pub fn render(status: &RunStatus) -> String {
    let mut out = format!(
        "run {} (table {}, {} segments)\n",
        status.run_id, status.source_table, status.total_segments
    );
    out.push_str(&format!(
        "  {:>7}  {:<52}  {}\n",
        "segment", "phase 1 (scan → commit)", "phase 3 (load)"
    ));
    for s in &status.segments {
        let p1 = match &s.phase1 {
            Phase1::Committed(c) => format!(
                "committed: {} items, {} rows, {} rejected, {} ms",
                c.items_scanned, c.rows, c.rejected, c.duration_ms
            ),
            Phase1::Missing => match &s.checkpoint {
                Some(c) => format!("missing; checkpoint of {} items, {}", c.items, c.saved_at),
                None => "missing".to_string(),
            },
            Phase1::Damaged(_) => "damaged manifest".to_string(),
        };
        let p3 = match s.loaded {
            Some(true) => "loaded",
            Some(false) => "not loaded",
            None => "unknown (no --warehouse-url)",
        };
        out.push_str(&format!("  {:>7}  {p1:<52}  {p3}\n", s.segment));
    }
    let swap = match &status.swap {
        SwapState::Serving => "swapped in: the target serves this run".to_string(),
        SwapState::Replaced => "swapped in earlier, since replaced by a newer run".to_string(),
        SwapState::Staged => "staged, not swapped in yet".to_string(),
        SwapState::NotPrepared => "staging not prepared for this run".to_string(),
        SwapState::Increment { window, applied } => format!(
            "increment of {window}: {}",
            match applied {
                Some(true) => "applied to the target",
                Some(false) => "not applied to the target",
                None => "warehouse not consulted",
            }
        ),
        SwapState::Unknown { swapped } => format!(
            "{} (warehouse not consulted)",
            if *swapped {
                "swap recorded"
            } else {
                "no swap recorded"
            }
        ),
    };
    out.push_str(&format!("  swap: {swap}\n"));
    match &status.proof {
        None => {}
        Some(ServedProof::NotKept) => out.push_str(
            "  proof: none kept (swapped with --skip-verify, or from parts without fingerprints): the swap checked counts only\n",
        ),
        Some(ServedProof::Kept(tables)) => {
            let proven: usize = tables.values().map(|t| t.proven.len()).sum();
            let counted: usize = tables.values().map(|t| t.count_only.len()).sum();
            out.push_str(&format!(
                "  proof: the swap proved {proven} columns equal to what phase 1 wrote, counted {counted} (dynamo-etl verify --run-id {} re-checks)\n",
                status.run_id
            ));
            for (table, t) in tables {
                let only = match t.count_only.is_empty() {
                    true => String::new(),
                    false => format!("; count-only: {}", t.count_only.join(", ")),
                };
                out.push_str(&format!(
                    "    {table}: {} proven{only}\n",
                    t.proven.len()
                ));
            }
        }
    }
    if status.rejected_items > 0 {
        out.push_str(&format!(
            "  note: {} items were rejected and are listed by key in the manifests (see `dynamo-etl drift --run-id {}`)\n",
            status.rejected_items, status.run_id
        ));
    }
    if status.gaps.is_empty() {
        out.push_str("  nothing to do\n");
    } else {
        out.push_str("  to do:\n");
        for gap in &status.gaps {
            out.push_str(&format!("    {}:\n      {}\n", gap.what, gap.command));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynamo_etl::phases::status::{Gap, SegmentState};

    fn status(phase1: Phase1, gaps: Vec<Gap>) -> RunStatus {
        RunStatus {
            run_id: "s".into(),
            source_table: "t".into(),
            total_segments: 1,
            segments: vec![SegmentState {
                segment: 0,
                phase1,
                loaded: Some(false),
                checkpoint: None,
            }],
            swap: SwapState::NotPrepared,
            gaps,
            rejected_items: 0,
            proof: None,
        }
    }

    #[test]
    fn a_damaged_manifest_and_its_command_are_shown() {
        let gap = Gap {
            what: "segment 0: not valid".into(),
            command: "dynamo-etl retry phase-1 1 0 --run-id s --bucket b".into(),
        };
        let text = render(&status(Phase1::Damaged("not valid".into()), vec![gap]));
        assert!(text.contains("damaged manifest"), "{text}");
        assert!(
            text.contains("    segment 0: not valid:\n      dynamo-etl retry phase-1 1 0"),
            "{text}"
        );
        assert!(!text.contains("nothing to do"), "{text}");
    }

    #[test]
    fn a_run_without_gaps_has_nothing_to_do() {
        let committed = Phase1::Committed(dynamo_etl::phases::status::CommittedSegment {
            items_scanned: 0,
            rows: 0,
            rejected: 0,
            duration_ms: 5,
        });
        let text = render(&status(committed, Vec::new()));
        assert!(text.contains("nothing to do"), "{text}");
        assert!(!text.contains("proof"), "{text}");
    }

    #[test]
    fn a_served_run_shows_what_its_swap_proved() {
        let mut s = status(Phase1::Missing, Vec::new());
        let columns = dynamo_etl::warehouse::fingerprint::ProvenColumns {
            proven: vec!["pk".into(), "name".into()],
            count_only: vec!["_extra".into()],
        };
        s.proof = Some(ServedProof::Kept([("org".to_string(), columns)].into()));
        let text = render(&s);
        assert!(
            text.contains(
                "proof: the swap proved 2 columns equal to what phase 1 wrote, counted 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("    org: 2 proven; count-only: _extra\n"),
            "{text}"
        );
        s.proof = Some(ServedProof::NotKept);
        assert!(render(&s).contains("proof: none kept"), "{}", render(&s));
    }
}
