//! The schema cache: versioned snapshots of one source table's data-schemas in the staging bucket,
//! written by `infer-schema` and read when a run is planned.
//!
//! ```text
//! <prefix>/schemas/<snapshot-id>/<source-table>/<table>.json   one data-schema per warehouse table
//! <prefix>/schemas/<snapshot-id>/snapshot.json                 written last: the commit point
//! ```
//!
//! Snapshot ids are `<UTC time as YYYYMMDDTHHMMSS.mmmZ>-<8 hex digits of the content hash>`, e.g.
//! `20261121T084500.250Z-1a2b3c4d`: fixed width, so they sort by creation time. Milliseconds keep
//! two schema jobs run back to back in order; equal content written in the same millisecond gets
//! the same id, which is harmless. The **active** snapshot
//! of a source table is its newest *valid* one: the manifest is present and parses, and every file
//! it lists exists with the recorded size and SHA-256 and is a valid data-schema. A newer snapshot
//! that fails any of these checks is skipped with a warning naming it, so a half-written or
//! damaged snapshot can never become active and the one before it stays in charge. Nothing is ever
//! deleted here: the evidence stays for an operator to look at.

use chrono::{DateTime, Timelike, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

use super::Staging;
use crate::schema::{DataSchema, SchemaSet};
use crate::storage::StoreError;

/// Name of the manifest object inside a snapshot folder.
pub const SNAPSHOT_MANIFEST: &str = "snapshot.json";

/// Format version written into every snapshot manifest.
pub const SNAPSHOT_FORMAT: u32 = 1;

/// The manifest of one snapshot: which files it consists of, with their checksums.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotManifest {
    /// Always [`SNAPSHOT_FORMAT`].
    pub format: u32,
    pub snapshot_id: String,
    /// The DynamoDB table whose data-schemas this snapshot holds.
    pub source_table: String,
    /// RFC 3339, UTC, milliseconds (the same instant as the id's time part).
    pub created_at: String,
    /// Sorted by path.
    pub files: Vec<SnapshotFile>,
}

/// One data-schema file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotFile {
    /// Relative to the snapshot folder: `<source-table>/<table>.json`.
    pub path: String,
    /// Lowercase hex SHA-256 of the file's bytes.
    pub sha256: String,
    pub size: u64,
}

/// A snapshot that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub id: String,
    pub manifest: SnapshotManifest,
    pub schemas: SchemaSet,
}

/// A snapshot that was passed over, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedSnapshot {
    pub id: String,
    pub problem: String,
}

impl std::fmt::Display for SkippedSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "snapshot {} skipped: {}", self.id, self.problem)
    }
}

/// What a look-up of the active snapshot found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheLookup {
    /// The newest valid snapshot, if any.
    pub active: Option<Snapshot>,
    /// Newer snapshots of the same source table that failed a check, newest first.
    pub skipped: Vec<SkippedSnapshot>,
}

/// The schema cache of one staging area.
#[derive(Clone)]
pub struct SnapshotCache {
    staging: Staging,
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The snapshot id for `files` (relative path → content) created at `created_at`. The hash covers
/// paths and contents, so equal content created in the same second gets the same id.
pub fn snapshot_id(created_at: DateTime<Utc>, files: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    for (path, text) in files {
        // Lengths first, so no choice of names and contents can produce the same byte stream.
        hasher.update((path.len() as u64).to_be_bytes());
        hasher.update(path.as_bytes());
        hasher.update((text.len() as u64).to_be_bytes());
        hasher.update(text.as_bytes());
    }
    let digest = hasher.finalize();
    let short: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{short}", created_at.format("%Y%m%dT%H%M%S%.3fZ"))
}

/// True for ids of the form `20261121T084500.250Z-1a2b3c4d`.
pub fn is_snapshot_id(id: &str) -> bool {
    let b = id.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() == 29
        && digits(0..8)
        && b[8] == b'T'
        && digits(9..15)
        && b[15] == b'.'
        && digits(16..19)
        && b[19] == b'Z'
        && b[20] == b'-'
        && b[21..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// What the listing shows of one snapshot folder.
#[derive(Debug, Default)]
struct Listed {
    has_manifest: bool,
    /// First path components of the files in it (source table names).
    tables: BTreeSet<String>,
}

impl SnapshotCache {
    pub fn new(staging: Staging) -> Self {
        SnapshotCache { staging }
    }

    /// `s3://bucket/<prefix>/schemas/`, for messages.
    pub fn location(&self) -> String {
        self.staging.url(&self.staging.layout.schemas())
    }

    /// Fails when the cache's bucket cannot be reached or does not exist.
    pub async fn check_access(&self) -> Result<(), StoreError> {
        self.staging
            .store
            .check_access(&self.staging.layout.schemas())
            .await
    }

    /// Writes `set` as a new snapshot: every data-schema file first, the manifest last, so a crash
    /// part-way leaves a folder without a manifest, which readers skip.
    pub async fn write(
        &self,
        set: &SchemaSet,
        created_at: DateTime<Utc>,
    ) -> Result<SnapshotManifest, StoreError> {
        // The id and the manifest show milliseconds; drop the rest so both name one instant.
        let created_at = created_at
            .with_nanosecond(created_at.nanosecond() / 1_000_000 * 1_000_000)
            .expect("a smaller nanosecond value is valid");
        let files = set.to_files();
        let id = snapshot_id(created_at, &files);
        let folder = self.staging.layout.schema_snapshot(&id);
        let mut listed = Vec::new();
        for (path, text) in &files {
            self.staging
                .store
                .put(
                    &format!("{folder}{path}"),
                    text.clone().into(),
                    "application/json",
                )
                .await?;
            listed.push(SnapshotFile {
                path: path.clone(),
                sha256: sha256_hex(text.as_bytes()),
                size: text.len() as u64,
            });
        }
        let manifest = SnapshotManifest {
            format: SNAPSHOT_FORMAT,
            snapshot_id: id.clone(),
            source_table: set.source_table.clone(),
            created_at: created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            files: listed,
        };
        let mut text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
        text.push('\n');
        self.staging
            .store
            .put(
                &format!("{folder}{SNAPSHOT_MANIFEST}"),
                text.into(),
                "application/json",
            )
            .await?;
        Ok(manifest)
    }

    /// The active snapshot of `source_table` and the newer ones that were skipped. Each skipped
    /// snapshot is logged as a warning naming it. A store error (the cache is unreachable) is
    /// returned as such, never mistaken for a damaged snapshot.
    pub async fn active(&self, source_table: &str) -> Result<CacheLookup, StoreError> {
        let root = self.staging.layout.schemas();
        let mut folders: BTreeMap<String, Listed> = BTreeMap::new();
        for object in self.staging.store.list(&root).await? {
            let Some(rest) = object.key.strip_prefix(&root) else {
                continue;
            };
            let Some((id, inside)) = rest.split_once('/') else {
                continue;
            };
            let entry = folders.entry(id.to_string()).or_default();
            if inside == SNAPSHOT_MANIFEST {
                entry.has_manifest = true;
            } else if let Some((table, _)) = inside.split_once('/') {
                entry.tables.insert(table.to_string());
            }
        }
        let mut lookup = CacheLookup::default();
        // Newest first; ids sort by time.
        for (id, listed) in folders.iter().rev() {
            let has_files = listed.tables.contains(source_table);
            // A folder with only other tables' files belongs to another source table. A folder
            // with nothing but a manifest may be ours with every file gone: read it to find out.
            let candidate = has_files || (listed.has_manifest && listed.tables.is_empty());
            if !candidate {
                continue;
            }
            let outcome = if !is_snapshot_id(id) {
                Err(format!(
                    "{id:?} is not a snapshot id (expected YYYYMMDDTHHMMSS.mmmZ-<8 hex>); it cannot be ordered"
                ))
            } else if !listed.has_manifest {
                Err(format!(
                    "it has no {SNAPSHOT_MANIFEST} (it is still being written, or its writer failed)"
                ))
            } else {
                match self.load(id, source_table).await? {
                    Ok(snapshot) => Ok(Some(snapshot)),
                    // A manifest-only folder of another source table is not our business.
                    Err(Problem::OtherTable) if !has_files => Ok(None),
                    Err(Problem::OtherTable) => Err(format!(
                        "it holds files for table {source_table} but its {SNAPSHOT_MANIFEST} names another table"
                    )),
                    Err(Problem::Invalid(problem)) => Err(problem),
                }
            };
            match outcome {
                Ok(None) => {}
                Ok(Some(snapshot)) => {
                    lookup.active = Some(snapshot);
                    break;
                }
                Err(problem) => {
                    tracing::warn!(
                        snapshot = %id,
                        table = source_table,
                        cache = %self.location(),
                        problem = %problem,
                        "schema cache snapshot is not valid and is skipped; an older valid snapshot (or the static data-schemas) is used instead"
                    );
                    lookup.skipped.push(SkippedSnapshot {
                        id: id.clone(),
                        problem,
                    });
                }
            }
        }
        Ok(lookup)
    }

    /// Loads and checks snapshot `id` of `source_table`. The outer error is the store's; the inner
    /// one says why the snapshot cannot be used.
    async fn load(
        &self,
        id: &str,
        source_table: &str,
    ) -> Result<Result<Snapshot, Problem>, StoreError> {
        let folder = self.staging.layout.schema_snapshot(id);
        let manifest_key = format!("{folder}{SNAPSHOT_MANIFEST}");
        let Some(bytes) = self.staging.store.get(&manifest_key).await? else {
            return Ok(Err(Problem::Invalid(format!(
                "its {SNAPSHOT_MANIFEST} is missing"
            ))));
        };
        let manifest: SnapshotManifest = match serde_json::from_slice(&bytes) {
            Ok(m) => m,
            Err(e) => {
                return Ok(Err(Problem::Invalid(format!(
                    "its {SNAPSHOT_MANIFEST} is not valid: {e}"
                ))))
            }
        };
        if manifest.source_table != source_table {
            return Ok(Err(Problem::OtherTable));
        }
        if let Err(problem) = manifest.check(id) {
            return Ok(Err(Problem::Invalid(problem)));
        }
        let mut schemas = Vec::new();
        for file in &manifest.files {
            let key = format!("{folder}{}", file.path);
            let Some(body) = self.staging.store.get(&key).await? else {
                return Ok(Err(Problem::Invalid(format!(
                    "file {} listed in its {SNAPSHOT_MANIFEST} is missing",
                    file.path
                ))));
            };
            if body.len() as u64 != file.size || sha256_hex(&body) != file.sha256 {
                return Ok(Err(Problem::Invalid(format!(
                    "file {} fails its checksum ({} bytes, sha256 {}; the manifest records {} bytes, sha256 {})",
                    file.path,
                    body.len(),
                    sha256_hex(&body),
                    file.size,
                    file.sha256
                ))));
            }
            let text = match std::str::from_utf8(&body) {
                Ok(t) => t,
                Err(_) => {
                    return Ok(Err(Problem::Invalid(format!(
                        "file {} is not UTF-8",
                        file.path
                    ))))
                }
            };
            let origin = self.staging.url(&key);
            match DataSchema::from_json(text, &origin) {
                Ok(schema) => schemas.push(schema),
                Err(e) => return Ok(Err(Problem::Invalid(e.to_string()))),
            }
        }
        let origin = format!("snapshot {id}");
        Ok(match SchemaSet::new(source_table, schemas, &origin) {
            Ok(schemas) => Ok(Snapshot {
                id: id.to_string(),
                manifest,
                schemas,
            }),
            Err(e) => Err(Problem::Invalid(e.to_string())),
        })
    }
}

/// Why a snapshot cannot be used for a source table.
enum Problem {
    /// Its manifest names another source table.
    OtherTable,
    Invalid(String),
}

impl SnapshotManifest {
    /// Checks what the manifest says about itself; the files are checked against it separately.
    fn check(&self, id: &str) -> Result<(), String> {
        if self.format != SNAPSHOT_FORMAT {
            return Err(format!(
                "its {SNAPSHOT_MANIFEST} has format {} (this version reads {SNAPSHOT_FORMAT})",
                self.format
            ));
        }
        if self.snapshot_id != id {
            return Err(format!(
                "its {SNAPSHOT_MANIFEST} belongs to snapshot {}",
                self.snapshot_id
            ));
        }
        if self.files.is_empty() {
            return Err(format!("its {SNAPSHOT_MANIFEST} lists no files"));
        }
        let folder = format!("{}/", self.source_table);
        for f in &self.files {
            let name = f.path.strip_prefix(&folder).unwrap_or("");
            let plain = !name.is_empty()
                && name.ends_with(".json")
                && !name.contains('/')
                && !name.starts_with('.');
            if !plain {
                return Err(format!(
                    "its {SNAPSHOT_MANIFEST} lists {:?}, which is not {folder}<table>.json",
                    f.path
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn files(content: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("t/a.json".to_string(), content.to_string())])
    }

    #[test]
    fn ids_sort_by_time_and_depend_on_content() {
        let early = Utc.with_ymd_and_hms(2026, 11, 21, 8, 45, 0).unwrap();
        let late = early + chrono::Duration::milliseconds(1);
        let a = snapshot_id(early, &files("x"));
        assert!(a.starts_with("20261121T084500.000Z-"), "{a}");
        assert!(is_snapshot_id(&a), "{a}");
        assert_eq!(a, snapshot_id(early, &files("x")), "deterministic");
        assert_ne!(a, snapshot_id(early, &files("y")), "content is hashed");
        // Whatever the hashes, a later millisecond sorts later.
        for content in ["x", "y", "z", "w"] {
            assert!(snapshot_id(late, &files(content)) > a);
        }
    }

    #[test]
    fn snapshot_ids_are_recognised_strictly() {
        assert!(is_snapshot_id("20261121T084500.250Z-0a1b2c3d"));
        for bad in [
            "20261121T084500.250Z-0A1B2C3D",
            "20261121T084500.250Z-0a1b2c3",
            "20261121T084500Z-0a1b2c3d",
            "20261121T0845001250Z-0a1b2c3d",
            "latest",
            "",
        ] {
            assert!(!is_snapshot_id(bad), "{bad}");
        }
    }

    #[test]
    fn sha256_matches_a_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn manifests_only_accept_plain_files_of_their_table() {
        let manifest = |path: &str| SnapshotManifest {
            format: SNAPSHOT_FORMAT,
            snapshot_id: "20261121T084500.250Z-0a1b2c3d".into(),
            source_table: "t".into(),
            created_at: "2026-11-21T08:45:00.250Z".into(),
            files: vec![SnapshotFile {
                path: path.into(),
                sha256: String::new(),
                size: 0,
            }],
        };
        assert!(manifest("t/org.json")
            .check("20261121T084500.250Z-0a1b2c3d")
            .is_ok());
        for bad in [
            "u/org.json",
            "t/../x.json",
            "t/a/b.json",
            "t/org.txt",
            "t/.json",
        ] {
            assert!(
                manifest(bad)
                    .check("20261121T084500.250Z-0a1b2c3d")
                    .is_err(),
                "{bad}"
            );
        }
        assert!(manifest("t/org.json")
            .check("20261121T084500.250Z-ffffffff")
            .is_err());
    }
}
