//! What the warehouse phases are told about the warehouse: where it is (a URL that never shows
//! its password), which dialect it speaks, the target schema and who may read it.

use std::fmt;
use std::time::Duration;

/// Suffix of the schema that a run is loaded into.
pub const STAGING_SUFFIX: &str = "_staging";
/// Suffix of the schema that keeps the generation replaced last, for rollback.
pub const PREVIOUS_SUFFIX: &str = "_previous";
/// Suffix under which rollback parks the generation it replaces for a moment.
pub const ROLLBACK_SUFFIX: &str = "_rollback";

/// Which SQL dialect a warehouse speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialectName {
    Postgres,
    Redshift,
}

impl DialectName {
    pub const ALL: [DialectName; 2] = [DialectName::Postgres, DialectName::Redshift];

    pub fn name(self) -> &'static str {
        match self {
            DialectName::Postgres => "postgres",
            DialectName::Redshift => "redshift",
        }
    }
}

impl std::str::FromStr for DialectName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        DialectName::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| format!("{s:?} is not a dialect; use postgres or redshift"))
    }
}

/// A connection URL that never shows its password.
#[derive(Clone)]
pub struct WarehouseUrl(String);

impl WarehouseUrl {
    pub fn new(url: &str) -> Self {
        WarehouseUrl(url.to_string())
    }

    /// The URL to hand to the driver (`redshift://` becomes `postgres://`).
    pub fn for_driver(&self) -> String {
        match self.0.strip_prefix("redshift://") {
            Some(rest) => format!("postgres://{rest}"),
            None => self.0.clone(),
        }
    }

    /// The dialect the URL's scheme implies, if any.
    pub fn implied_dialect(&self) -> Option<DialectName> {
        if self.0.starts_with("redshift://") {
            Some(DialectName::Redshift)
        } else if self.0.starts_with("postgres://") || self.0.starts_with("postgresql://") {
            Some(DialectName::Postgres)
        } else {
            None
        }
    }
}

impl fmt::Display for WarehouseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // scheme://user:password@host/db?params → scheme://user:***@host/db (params dropped: they
        // may hold passwords too).
        let without_query = self.0.split('?').next().unwrap_or_default();
        match (without_query.find("://"), without_query.rfind('@')) {
            (Some(s), Some(at)) if at > s => {
                let userinfo = &without_query[s + 3..at];
                let user = userinfo.split(':').next().unwrap_or_default();
                let masked = if userinfo.contains(':') { ":***" } else { "" };
                write!(
                    f,
                    "{}{user}{masked}{}",
                    &without_query[..s + 3],
                    &without_query[at..]
                )
            }
            _ => f.write_str(without_query),
        }
    }
}

impl fmt::Debug for WarehouseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WarehouseUrl({self})")
    }
}

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
    pub dialect: DialectName,
    /// The schema consumers read; staging and previous are derived from it.
    pub target: String,
    pub grantees: Vec<Grantee>,
    /// How long the swap may wait for locks before it gives up with the target untouched.
    pub lock_timeout: Duration,
    /// SQL run inside the swap transaction after the renames (e.g. re-creating views).
    pub post_swap_sql: Option<String>,
    /// Settings only Redshift reads.
    pub redshift: super::redshift::Options,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_never_show_passwords() {
        let u = WarehouseUrl::new("postgres://etl:s3cret@db.example:5432/warehouse?password=x");
        assert_eq!(
            u.to_string(),
            "postgres://etl:***@db.example:5432/warehouse"
        );
        assert!(!format!("{u:?}").contains("s3cret"));
        let r = WarehouseUrl::new("redshift://etl:p%40ss@cluster:5439/dev");
        assert_eq!(r.to_string(), "redshift://etl:***@cluster:5439/dev");
        assert_eq!(r.for_driver(), "postgres://etl:p%40ss@cluster:5439/dev");
        assert_eq!(r.implied_dialect(), Some(DialectName::Redshift));
        assert_eq!(
            WarehouseUrl::new("postgres://host/db").to_string(),
            "postgres://host/db"
        );
    }

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
