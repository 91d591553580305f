//! A warehouse connection URL: what the driver is given, what messages show (never its
//! password), and the parameters this tool reads itself.

use std::fmt;

pub use crate::schema::limits::DialectName;

/// Query parameters of a warehouse URL that this tool reads and the driver never sees: how
/// Redshift sessions log in (`credentials=password|iam`) and, for `iam`, the provisioned cluster
/// (`cluster_id=`) or the Serverless workgroup (`workgroup=`) to ask for credentials.
pub const OWN_PARAMETERS: [&str; 3] = ["credentials", "cluster_id", "workgroup"];

/// A connection URL that never shows its password.
#[derive(Clone)]
pub struct WarehouseUrl(String);

impl WarehouseUrl {
    pub fn new(url: &str) -> Self {
        WarehouseUrl(url.to_string())
    }

    /// The URL to hand to the driver (`redshift://` becomes `postgres://`), without the query
    /// parameters this tool reads itself ([`OWN_PARAMETERS`]).
    pub fn for_driver(&self) -> String {
        let url = match self.0.strip_prefix("redshift://") {
            Some(rest) => format!("postgres://{rest}"),
            None => self.0.clone(),
        };
        let Some(mut parsed) = ::url::Url::parse(&url).ok().filter(|u| {
            u.query_pairs()
                .any(|(k, _)| OWN_PARAMETERS.contains(&k.as_ref()))
        }) else {
            return url;
        };
        let kept: Vec<(String, String)> = parsed
            .query_pairs()
            .filter(|(k, _)| !OWN_PARAMETERS.contains(&k.as_ref()))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if kept.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(kept);
        }
        parsed.into()
    }

    fn parsed(&self) -> Option<::url::Url> {
        ::url::Url::parse(&self.0).ok()
    }

    /// The value of query parameter `name` (`?credentials=iam`), if given.
    pub fn parameter(&self, name: &str) -> Option<String> {
        self.parsed()?
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The host name, lowercase.
    pub fn host(&self) -> Option<String> {
        let parsed = self.parsed()?;
        let host = parsed.host_str().filter(|h| !h.is_empty())?;
        Some(host.to_ascii_lowercase())
    }

    /// The database: the path without its leading slash, decoded.
    pub fn database(&self) -> Option<String> {
        let parsed = self.parsed()?;
        let path = parsed.path().trim_start_matches('/');
        let name = percent_encoding::percent_decode_str(path)
            .decode_utf8()
            .ok()?;
        (!name.is_empty()).then(|| name.into_owned())
    }

    /// Whether the URL names a user or a password, before the host or in the query.
    pub fn has_login(&self) -> bool {
        match self.parsed() {
            Some(u) => {
                !u.username().is_empty()
                    || u.password().is_some()
                    || u.query_pairs().any(|(k, _)| k == "user" || k == "password")
            }
            // Unparsable: whatever stands before an `@` counts as a login.
            None => self.0.contains('@'),
        }
    }

    /// The same URL logging in as `user` with `password` (both percent-encoded into it).
    pub fn with_login(&self, user: &str, password: &str) -> Option<WarehouseUrl> {
        let mut parsed = self.parsed()?;
        parsed.set_username(user).ok()?;
        parsed.set_password(Some(password)).ok()?;
        Some(WarehouseUrl(parsed.into()))
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
        f.write_str(&masked(&self.0))
    }
}

/// A connection URL as messages may show it: whatever stands between the scheme and the host
/// (user and password) becomes `***`, and the query and fragment are dropped (they may hold a
/// password too). Meant for any input, well-formed or not: a missing `//`, no scheme, or a
/// password with unencoded `@`, `/`, `?`, `#` or `%` all keep the password out.
pub fn masked(url: &str) -> String {
    let scheme_end = match url.find("://") {
        Some(i) => i + 3,
        None => {
            // `scheme:` without the slashes: letters first, then letters, digits, `+`, `-`, `.`.
            let b = url.as_bytes();
            let scheme = b.first().is_some_and(u8::is_ascii_alphabetic)
                && url.find(':').is_some_and(|i| {
                    b[..i]
                        .iter()
                        .all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(c))
                });
            if scheme {
                url.find(':').map_or(0, |i| i + 1)
            } else {
                0
            }
        }
    };
    let (scheme, rest) = url.split_at(scheme_end);
    let without_query = |s: &str| s.split(['?', '#']).next().unwrap_or_default().to_string();
    // The host follows the last `@`; a password may contain `@`, a host cannot. After it only a
    // host (with its port) and a path are shown: an `@` inside the query leaves a remainder that
    // is no host, and it is cut at the first character a host cannot hold.
    if let Some(at) = rest.rfind('@') {
        let after = &rest[at + 1..];
        let host_end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || "-._:[]".contains(c)))
            .unwrap_or(after.len());
        let (host, tail) = after.split_at(host_end);
        let path = match tail.starts_with('/') {
            true => without_query(tail),
            false => String::new(),
        };
        return format!("{scheme}***@{host}{path}");
    }
    // No user info. A `name:word` authority whose word is not a port may still be a user and a
    // password without a host: hide it.
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let port_like = authority
        .rsplit_once(':')
        .is_none_or(|(_, port)| port.bytes().all(|c| c.is_ascii_digit()));
    match port_like {
        true => format!("{scheme}{}", without_query(rest)),
        false => format!("{scheme}***"),
    }
}

impl fmt::Debug for WarehouseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WarehouseUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_never_show_passwords() {
        let u = WarehouseUrl::new("postgres://etl:s3cret@db.example:5432/warehouse?password=x");
        assert_eq!(u.to_string(), "postgres://***@db.example:5432/warehouse");
        assert!(!format!("{u:?}").contains("s3cret"));
        let r = WarehouseUrl::new("redshift://etl:p%40ss@cluster:5439/dev");
        assert_eq!(r.to_string(), "redshift://***@cluster:5439/dev");
        assert_eq!(r.for_driver(), "postgres://etl:p%40ss@cluster:5439/dev");
        assert_eq!(r.implied_dialect(), Some(DialectName::Redshift));
        assert_eq!(
            WarehouseUrl::new("postgres://host/db").to_string(),
            "postgres://host/db"
        );
    }

    /// Every shape of URL an operator may get wrong keeps the password out of messages.
    #[test]
    fn the_mask_hides_passwords_in_malformed_urls() {
        let secret = "Pw9secret";
        for (url, shown) in [
            ("postgres:etl:Pw9secret@db/x", "postgres:***@db/x"),
            ("postgres://etl:Pw9se?cret@db/x", "postgres://***@db/x"),
            ("postgres://etl:Pw9se#cret@db/x", "postgres://***@db/x"),
            ("postgres://etl:Pw9se@cret@db/x", "postgres://***@db/x"),
            ("postgres://etl:Pw9se/cret@db/x", "postgres://***@db/x"),
            ("postgres://etl:Pw9se%cret@db/x", "postgres://***@db/x"),
            ("etl:Pw9secret@db/x", "etl:***@db/x"),
            ("//etl:Pw9secret@db/x", "***@db/x"),
            ("postgres://etl:Pw9secret", "postgres://***"),
            ("postgres://etl:Pw9secret/db", "postgres://***"),
            ("postgres://db/x?password=Pw9secret", "postgres://db/x"),
            (
                "postgres://db/x?user=a@b&password=Pw9secret",
                "postgres://***@b",
            ),
            ("postgres://db:5432/x#Pw9secret", "postgres://db:5432/x"),
        ] {
            let m = masked(url);
            assert_eq!(m, shown, "{url}");
            assert!(!m.contains(&secret[..5]), "{url} -> {m}");
        }
    }

    /// This tool's own parameters never reach the driver; everything else does, unchanged.
    #[test]
    fn the_driver_never_sees_our_own_parameters() {
        let u = WarehouseUrl::new(
            "redshift://h.example:5439/dev?credentials=iam&sslmode=require&cluster_id=c&workgroup=w",
        );
        assert_eq!(
            u.for_driver(),
            "postgres://h.example:5439/dev?sslmode=require"
        );
        assert_eq!(u.parameter("cluster_id").as_deref(), Some("c"));
        assert_eq!(u.parameter("user"), None);
        let only_ours = WarehouseUrl::new("redshift://h:5439/dev?credentials=password");
        assert_eq!(only_ours.for_driver(), "postgres://h:5439/dev");
        // Without our parameters the URL is handed on as written.
        let plain = "postgres://etl:p%40ss@db:5432/w?sslmode=disable&application_name=x";
        assert_eq!(WarehouseUrl::new(plain).for_driver(), plain);
    }

    #[test]
    fn urls_tell_host_database_and_whether_they_carry_a_login() {
        let u = WarehouseUrl::new(
            "redshift://Etl.C0ffee.us-east-1.redshift.amazonaws.com:5439/my%20db",
        );
        assert_eq!(
            u.host().as_deref(),
            Some("etl.c0ffee.us-east-1.redshift.amazonaws.com")
        );
        assert_eq!(u.database().as_deref(), Some("my db"));
        assert!(!u.has_login());
        assert_eq!(WarehouseUrl::new("redshift://h:5439").database(), None);
        assert_eq!(WarehouseUrl::new("redshift://h:5439/").database(), None);
        for with_login in [
            "redshift://etl@h/dev",
            "redshift://:pw@h/dev",
            "redshift://h/dev?user=etl",
            "redshift://h/dev?password=pw",
            "not a url etl:pw@h",
        ] {
            assert!(WarehouseUrl::new(with_login).has_login(), "{with_login}");
        }
    }
}
