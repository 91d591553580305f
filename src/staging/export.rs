//! Where a DynamoDB export is, as a run's plan records it: a bucket and the export's folder
//! `<export-prefix>/AWSDynamoDB/<export-id>`, and the keys of its two manifests there. Reading
//! the export's files is `source::export`'s; the plan only needs to name them, so the type lives
//! here, below both.

use serde::{Deserialize, Serialize};

/// Where an export is: its bucket and its folder `<export-prefix>/AWSDynamoDB/<export-id>`.
/// Part of a run's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSource {
    pub bucket: String,
    /// `<export-prefix>/AWSDynamoDB/<export-id>`, without a trailing `/`.
    pub prefix: String,
    /// The export's ARN, when the run was planned from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_arn: Option<String>,
}

impl ExportSource {
    /// Reads `s3://<bucket>/<export-prefix>/AWSDynamoDB/<export-id>` (a trailing `/` or
    /// `/manifest-summary.json` is accepted too).
    pub fn parse_url(url: &str) -> Result<ExportSource, String> {
        let shape = "expected s3://<bucket>/<export-prefix>/AWSDynamoDB/<export-id>";
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("export location {url:?}: {shape}"))?;
        let rest = rest.trim_end_matches('/');
        let rest = rest
            .strip_suffix("/manifest-summary.json")
            .unwrap_or(rest)
            .trim_end_matches('/');
        let (bucket, prefix) = rest
            .split_once('/')
            .ok_or_else(|| format!("export location {url:?} names no folder: {shape}"))?;
        let parts: Vec<&str> = prefix.split('/').collect();
        let well_formed = !bucket.is_empty()
            && parts.len() >= 2
            && parts[parts.len() - 2] == "AWSDynamoDB"
            && !parts[parts.len() - 1].is_empty()
            && parts.iter().all(|p| !p.is_empty());
        if !well_formed {
            return Err(format!("export location {url:?}: {shape}"));
        }
        Ok(ExportSource {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            export_arn: None,
        })
    }

    /// The folder of the export written for `export_arn` under `s3_prefix` of `bucket`: the
    /// export id is the ARN's last path element.
    pub fn of_arn(
        bucket: &str,
        s3_prefix: Option<&str>,
        export_arn: &str,
    ) -> Result<ExportSource, String> {
        let id = export_arn
            .rsplit_once("/export/")
            .map(|(_, id)| id)
            .filter(|id| !id.is_empty() && !id.contains('/'))
            .ok_or_else(|| {
                format!("{export_arn:?} is not an export ARN (…:table/<table>/export/<id>)")
            })?;
        let prefix = match s3_prefix
            .map(|p| p.trim_matches('/'))
            .filter(|p| !p.is_empty())
        {
            Some(p) => format!("{p}/AWSDynamoDB/{id}"),
            None => format!("AWSDynamoDB/{id}"),
        };
        Ok(ExportSource {
            bucket: bucket.to_string(),
            prefix,
            export_arn: Some(export_arn.to_string()),
        })
    }

    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    pub fn summary_key(&self) -> String {
        format!("{}/manifest-summary.json", self.prefix)
    }

    pub fn files_key(&self) -> String {
        format!("{}/manifest-files.json", self.prefix)
    }
}
