//! Times in the staging area's documents (plans, manifests, checkpoints, leases, swap records):
//! `DateTime<Utc>` in memory, RFC 3339 text on disk, for `#[serde(with = "…")]`.
//!
//! Documents are written as they always were (`to_rfc3339`: `+00:00`, the fraction as the clock
//! gives it), so older readers and tools see no change; any RFC 3339 time is read, whatever
//! its offset or fraction. A time that is not one fails the document at the read, naming it.

use chrono::{DateTime, Utc};
use serde::{de::Error as _, Deserialize, Deserializer, Serializer};
use std::borrow::Cow;

/// `text` as a time, or why it is none.
pub fn parse(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{text:?} is not an RFC 3339 time ({e})"))
}

/// The text a document holds for `t`.
pub fn text(t: &DateTime<Utc>) -> String {
    t.to_rfc3339()
}

pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&text(t))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let text = Cow::<str>::deserialize(d)?;
    parse(&text).map_err(D::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_before_and_read_in_any_offset() {
        let t = parse("2026-12-01T10:00:00.123456789+00:00").unwrap();
        assert_eq!(text(&t), "2026-12-01T10:00:00.123456789+00:00");
        assert_eq!(parse("2026-12-01T11:00:00.123456789+01:00"), Ok(t));
        assert_eq!(
            text(&parse("2026-12-01T10:00:00Z").unwrap()),
            "2026-12-01T10:00:00+00:00"
        );
        for bad in [
            "",
            "yesterday",
            "2026-12-01 10:00:00",
            "2026-13-01T10:00:00Z",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    /// Documents as the code before typed times wrote them still load, with their times, and
    /// are written back the same.
    #[test]
    fn documents_written_with_text_times_still_load() {
        use crate::staging::runs::SwapRecord;
        use crate::staging::{checkpoint::Checkpoint, manifest::SegmentManifest, plan::RunPlan};
        let at = "2026-12-01T10:00:00.123456789+00:00";
        let plan = r#"{
  "format": 2,
  "run_id": "r1",
  "source_table": "t",
  "total_segments": 2,
  "dialect": "postgres",
  "key_attributes": ["pk"],
  "schema_source": "static:schemas",
  "schemas": [],
  "created_at": "2026-12-01T10:00:00.123456789+00:00"
}"#;
        let manifest = r#"{
  "format": 3, "run_id": "r1", "source_table": "t", "segment": 1, "total_segments": 2,
  "schema_source": "static:schemas", "tables": {}, "items_scanned": 0, "items_rejected": [],
  "drift": {}, "read_units": 1.5, "pages": 1, "retries": 0,
  "started_at": "2026-12-01T10:00:00.123456789+00:00",
  "finished_at": "2026-12-01T11:00:00.5+01:00",
  "duration_ms": 5,
  "resumed": {"items": 3, "read_units": 0.5, "saved_at": "2026-12-01T10:00:00.123456789Z"}
}"#;
        let checkpoint = r#"{
  "format": 1, "run_id": "r1", "source_table": "t", "segment": 1, "total_segments": 2,
  "plan_fingerprint": "f", "compression": "zstd", "resume_key": "{}", "tables": {},
  "items_scanned": 3, "items_rejected": [], "drift": {}, "read_units": 0.5, "pages": 1,
  "retries": 0, "started_at": "2026-12-01T10:00:00.123456789+00:00",
  "saved_at": "2026-12-01T10:00:00.123456789+00:00", "duration_ms": 5
}"#;
        let swap =
            r#"{"run_id":"r1","target":"t","swapped_at":"2026-12-01T10:00:00.123456789+00:00"}"#;
        let t = parse(at).unwrap();
        let same = |old: &str, new: serde_json::Value| {
            assert_eq!(serde_json::from_str::<serde_json::Value>(old).unwrap(), new);
        };
        let p: RunPlan = serde_json::from_str(plan).unwrap();
        assert_eq!(p.created_at, t);
        same(plan, serde_json::to_value(&p).unwrap());
        let m: SegmentManifest = serde_json::from_str(manifest).unwrap();
        assert_eq!((m.started_at, m.resumed.as_ref().unwrap().saved_at), (t, t));
        assert_eq!(m.finished_at, parse("2026-12-01T10:00:00.5Z").unwrap());
        let c: Checkpoint = serde_json::from_str(checkpoint).unwrap();
        assert_eq!((c.started_at, c.saved_at), (t, t));
        same(checkpoint, serde_json::to_value(&c).unwrap());
        let r: SwapRecord = serde_json::from_str(swap).unwrap();
        assert_eq!(r.swapped_at, t);
        assert_eq!(serde_json::to_string(&r).unwrap(), swap);
        // A time that is none fails the document, naming the text.
        let broken = plan.replace(at, "last tuesday");
        let err = serde_json::from_str::<RunPlan>(&broken).unwrap_err();
        assert!(
            err.to_string()
                .contains("\"last tuesday\" is not an RFC 3339 time"),
            "{err}"
        );
    }
}
