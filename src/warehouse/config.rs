//! What the warehouse phases are told about the warehouse: where it is (a URL that never shows
//! its password), the target schema and who may read it, and — opaque here — the settings of
//! the dialect it speaks.

use std::time::Duration;

use super::DialectOptions;

/// Suffix of the schema that a run is loaded into.
pub const STAGING_SUFFIX: &str = "_staging";
/// Suffix of the schema that keeps the generation replaced last, for rollback.
pub const PREVIOUS_SUFFIX: &str = "_previous";
/// Suffix under which rollback parks the generation it replaces for a moment.
pub const ROLLBACK_SUFFIX: &str = "_rollback";

pub use super::url::{masked, WarehouseUrl, OWN_PARAMETERS};
pub use crate::schema::limits::DialectName;

/// Who gets read access to the target after each swap. `group:NAME` and `role:NAME` become
/// Redshift's `GROUP "NAME"` / `ROLE "NAME"`; anything else is a user or PostgreSQL role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grantee {
    Name(String),
    Group(String),
    Role(String),
}

impl std::str::FromStr for Grantee {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (kind, name) = match s.split_once(':') {
            Some(("group", n)) => (1, n),
            Some(("role", n)) => (2, n),
            Some((other, _)) => {
                return Err(format!(
                    "grantee {s:?}: unknown kind {other:?} (use group:NAME, role:NAME or NAME)"
                ))
            }
            None => (0, s),
        };
        if name.is_empty() {
            return Err(format!("grantee {s:?} has no name"));
        }
        Ok(match kind {
            1 => Grantee::Group(name.to_string()),
            2 => Grantee::Role(name.to_string()),
            _ => Grantee::Name(name.to_string()),
        })
    }
}

/// Everything the warehouse phases need to know about the warehouse.
#[derive(Debug, Clone)]
pub struct WarehouseConfig {
    pub url: WarehouseUrl,
    /// The schema consumers read; staging and previous are derived from it.
    pub target: String,
    pub grantees: Vec<Grantee>,
    /// How long the swap may wait for locks before it gives up with the target untouched.
    pub lock_timeout: Duration,
    /// SQL run inside the swap transaction after the renames (e.g. re-creating views).
    pub post_swap_sql: Option<String>,
    /// Refresh the planner's statistics of the staged tables before the swap (`--no-analyze`
    /// turns it off).
    pub analyze: bool,
    /// Prove, in the swap's transaction, that the staged values equal the manifests'
    /// fingerprints (`--skip-verify` turns it off).
    pub verify: bool,
    /// The dialect, with the settings only it reads (how its sessions log in, how it loads).
    pub options: DialectOptions,
}

impl WarehouseConfig {
    pub fn staging(&self) -> String {
        format!("{}{STAGING_SUFFIX}", self.target)
    }
    pub fn previous(&self) -> String {
        format!("{}{PREVIOUS_SUFFIX}", self.target)
    }
    pub fn parked(&self) -> String {
        format!("{}{ROLLBACK_SUFFIX}", self.target)
    }

    /// The dialect the warehouse speaks.
    pub fn dialect(&self) -> DialectName {
        self.options.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grantees_parse() {
        assert_eq!(
            "group:analysts".parse::<Grantee>(),
            Ok(Grantee::Group("analysts".into()))
        );
        assert_eq!("role:bi".parse::<Grantee>(), Ok(Grantee::Role("bi".into())));
        assert_eq!(
            "alice".parse::<Grantee>(),
            Ok(Grantee::Name("alice".into()))
        );
        assert!("team:x".parse::<Grantee>().is_err());
    }
}
