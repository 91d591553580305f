//! A warehouse connection URL, parsed once where it enters (a flag or the environment) into
//! typed parts: what the driver is given (typed connection options built field by field, never
//! a string it parses again), what messages show (never the password), and the parameters this
//! tool reads itself.
//!
//! The password, the user and the database are percent-decoded here, once: a password holding
//! `?`, `#`, `@`, `/` or `%` is written percent-encoded in the URL and reaches the server as it
//! is. A URL that cannot be read fails here, with the password masked in the message.

use std::fmt;

use sqlx::postgres::{PgConnectOptions, PgSslMode};

pub use crate::schema::limits::DialectName;

/// Query parameters of a warehouse URL that this tool reads and the driver never sees: how
/// Redshift sessions log in (`credentials=password|iam`) and, for `iam`, the provisioned cluster
/// (`cluster_id=`) or the Serverless workgroup (`workgroup=`) to ask for credentials.
pub const OWN_PARAMETERS: [&str; 3] = ["credentials", "cluster_id", "workgroup"];

/// Query parameters the driver's connection options take (libpq's names, and the spellings
/// sqlx reads too).
pub const DRIVER_PARAMETERS: [&str; 17] = [
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
];

/// A URL that could not be read; shows it masked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the warehouse URL {shown} cannot be read: {problem}")]
pub struct UrlError {
    shown: String,
    problem: String,
}

/// A password that never shows in `Debug`.
#[derive(Clone, PartialEq, Eq)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A warehouse connection URL, parsed: it never shows its password.
#[derive(Clone)]
pub struct WarehouseUrl {
    /// The URL as messages show it ([`masked`]), made once from the text given.
    shown: String,
    scheme: String,
    /// As written (a socket directory when it decodes to a path starting with `/`).
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    password: Option<Secret>,
    database: Option<String>,
    /// Every query parameter, decoded, in order: the driver's and this tool's own.
    parameters: Vec<(String, String)>,
}

fn decoded(text: &str, what: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|t| t.into_owned())
        .map_err(|_| format!("its {what} is not UTF-8 once percent-decoded"))
}

impl WarehouseUrl {
    /// Reads `url`: `scheme://[user[:password]@]host[:port][/database][?parameters]`, the user,
    /// password and database percent-encoded. Driver parameters are checked here (`sslmode`,
    /// `port`, …), so a bad one fails before any connection; unknown ones are ignored with a
    /// warning that names them without their value.
    pub fn parse(url: &str) -> Result<WarehouseUrl, UrlError> {
        let shown = masked(url);
        let fail = |problem: String| UrlError {
            shown: shown.clone(),
            problem,
        };
        let parsed = ::url::Url::parse(url).map_err(|e| fail(e.to_string()))?;
        if parsed.cannot_be_a_base() {
            return Err(fail(
                "it is not of the form scheme://user:password@host:port/database".into(),
            ));
        }
        let user =
            Some(decoded(parsed.username(), "user").map_err(fail)?).filter(|u| !u.is_empty());
        let password = match parsed.password() {
            Some(p) => Some(Secret(decoded(p, "password").map_err(fail)?)),
            None => None,
        };
        let path = parsed.path().trim_start_matches('/');
        let database = Some(decoded(path, "database").map_err(fail)?).filter(|d| !d.is_empty());
        let parameters: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let parsed_url = WarehouseUrl {
            scheme: parsed.scheme().to_string(),
            host: parsed
                .host_str()
                .filter(|h| !h.is_empty())
                .map(str::to_string),
            port: parsed.port(),
            user,
            password,
            database,
            parameters,
            shown: shown.clone(),
        };
        // Whatever the options would refuse, refused now; nothing is logged with its value.
        parsed_url.build_options(true).map_err(fail)?;
        Ok(parsed_url)
    }

    /// The connection options the driver gets, field by field: host, port, user, password,
    /// database, then the driver's query parameters; this tool's own ([`OWN_PARAMETERS`]) are
    /// left out. What the URL leaves open keeps the driver's defaults (`PGHOST`, `PGPORT`,
    /// `PGSSLMODE`, … from the environment).
    pub fn connect_options(&self) -> PgConnectOptions {
        self.build_options(false)
            .expect("the URL's parameters were checked when it was parsed")
    }

    /// `warn`: say which parameters are ignored (once, when the URL is parsed).
    fn build_options(&self, warn: bool) -> Result<PgConnectOptions, String> {
        let mut options = PgConnectOptions::new_without_pgpass();
        let socket_or_host = |options: PgConnectOptions, host: &str| match host.starts_with('/') {
            true => options.socket(host),
            false => options.host(host),
        };
        if let Some(host) = &self.host {
            options = match decoded(host, "host")? {
                path if path.starts_with('/') => options.socket(path),
                _ => options.host(host),
            };
        }
        if let Some(port) = self.port {
            options = options.port(port);
        }
        if let Some(user) = &self.user {
            options = options.username(user);
        }
        if let Some(password) = &self.password {
            options = options.password(&password.0);
        }
        if let Some(database) = &self.database {
            options = options.database(database);
        }
        let bad = |key: &str| format!("parameter {key} has a value the driver does not take");
        for (key, value) in &self.parameters {
            let key = key.as_str();
            options = match key {
                "sslmode" | "ssl-mode" => {
                    options.ssl_mode(value.parse::<PgSslMode>().map_err(|_| bad(key))?)
                }
                "sslrootcert" | "ssl-root-cert" | "ssl-ca" => options.ssl_root_cert(value),
                "sslcert" | "ssl-cert" => options.ssl_client_cert(value),
                "sslkey" | "ssl-key" => options.ssl_client_key(value),
                "statement-cache-capacity" => {
                    options.statement_cache_capacity(value.parse().map_err(|_| bad(key))?)
                }
                "host" => socket_or_host(options, value),
                "hostaddr" => {
                    value.parse::<std::net::IpAddr>().map_err(|_| bad(key))?;
                    options.host(value)
                }
                "port" => options.port(value.parse().map_err(|_| bad(key))?),
                "dbname" => options.database(value),
                "user" => options.username(value),
                "password" => options.password(value),
                "application_name" => options.application_name(value),
                "options" => options.options(
                    value
                        .split_whitespace()
                        .filter_map(|o| o.strip_prefix("-c").map(str::trim).or(Some(o)))
                        .filter_map(|o| o.split_once('=')),
                ),
                k if k.starts_with("options[") && k.ends_with(']') => {
                    options.options([(&k["options[".len()..k.len() - 1], value.as_str())])
                }
                k if OWN_PARAMETERS.contains(&k) => options,
                _ => {
                    if warn {
                        tracing::warn!(parameter = key, url = %self,
                            "the warehouse URL has a parameter the driver does not know; it is ignored");
                    }
                    options
                }
            };
        }
        Ok(options)
    }

    /// The value of query parameter `name` (`?credentials=iam`), if given.
    pub fn parameter(&self, name: &str) -> Option<String> {
        self.parameters
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// The host name, lowercase.
    pub fn host(&self) -> Option<String> {
        self.host.as_ref().map(|h| h.to_ascii_lowercase())
    }

    /// The database: the path without its leading slash, decoded.
    pub fn database(&self) -> Option<String> {
        self.database.clone()
    }

    /// Whether the URL names a user or a password, before the host or in the query.
    pub fn has_login(&self) -> bool {
        self.user.is_some()
            || self.password.is_some()
            || self
                .parameters
                .iter()
                .any(|(k, _)| k == "user" || k == "password")
    }

    /// The same URL logging in as `user` with `password`.
    pub fn with_login(&self, user: &str, password: &str) -> WarehouseUrl {
        let shown = match self.shown.split_once("://") {
            Some((scheme, rest)) if !rest.starts_with("***@") => format!("{scheme}://***@{rest}"),
            _ => self.shown.clone(),
        };
        WarehouseUrl {
            shown,
            user: Some(user.to_string()),
            password: Some(Secret(password.to_string())),
            ..self.clone()
        }
    }

    /// The dialect the URL's scheme implies, if any.
    pub fn implied_dialect(&self) -> Option<DialectName> {
        super::dialect_of_scheme(&self.scheme)
    }
}

impl std::str::FromStr for WarehouseUrl {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<Self, UrlError> {
        WarehouseUrl::parse(s)
    }
}

impl fmt::Display for WarehouseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
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

    fn url(text: &str) -> WarehouseUrl {
        WarehouseUrl::parse(text).unwrap()
    }

    /// The options as the driver holds them, password and all (its `Debug` shows every field).
    fn held(options: &PgConnectOptions) -> String {
        format!("{options:?}")
    }

    #[test]
    fn urls_never_show_passwords() {
        let u = url("postgres://etl:s3cret@db.example:5432/warehouse?password=x");
        assert_eq!(u.to_string(), "postgres://***@db.example:5432/warehouse");
        assert!(!format!("{u:?}").contains("s3cret"));
        let r = url("redshift://etl:p%40ss@cluster:5439/dev");
        assert_eq!(r.to_string(), "redshift://***@cluster:5439/dev");
        let options = r.connect_options();
        assert_eq!(options.get_host(), "cluster");
        assert_eq!(options.get_port(), 5439);
        assert_eq!(options.get_username(), "etl");
        assert_eq!(options.get_database(), Some("dev"));
        assert!(held(&options).contains(r#"password: Some("p@ss")"#));
        assert!(!format!("{r:?}").contains("p@ss"));
        assert_eq!(r.implied_dialect(), Some(DialectName::Redshift));
        assert_eq!(url("postgres://host/db").to_string(), "postgres://host/db");
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

    /// This tool's own parameters never reach the driver; the driver's are checked and set.
    #[test]
    fn the_driver_never_sees_our_own_parameters() {
        let u = url(
            "redshift://h.example:5439/dev?credentials=iam&sslmode=require&cluster_id=c&workgroup=w&application_name=x",
        );
        let options = u.connect_options();
        assert!(matches!(options.get_ssl_mode(), PgSslMode::Require));
        assert_eq!(options.get_application_name(), Some("x"));
        for ours in ["credentials", "cluster_id", "workgroup", "iam"] {
            assert!(!held(&options).contains(ours), "{ours}: {options:?}");
        }
        assert_eq!(u.parameter("cluster_id").as_deref(), Some("c"));
        assert_eq!(u.parameter("user"), None);
        // A value the driver would refuse fails the parse, without showing the URL's password.
        for bad in [
            "postgres://etl:Pw9secret@h/db?sslmode=sometimes",
            "postgres://etl:Pw9secret@h/db?port=high",
            "postgres://etl:Pw9secret@h:99999/db",
            "postgres:etl:Pw9secret@h/db",
            "postgres://etl:Pw9se?cret@h/db",
        ] {
            let err = WarehouseUrl::parse(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad}"));
            assert!(!err.to_string().contains("Pw9"), "{bad}: {err}");
            assert!(err.to_string().contains("cannot be read"), "{bad}: {err}");
        }
    }

    /// A password with the characters a URL gives meaning to, percent-encoded as a user must
    /// write it, reaches the driver's options exactly, and nothing shows it.
    #[test]
    fn passwords_with_url_characters_reach_the_driver_exactly() {
        let password = "Pw9?a#b@c/d%e:f+g&h=i j";
        let encoded: String =
            percent_encoding::utf8_percent_encode(password, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        assert!(!encoded.contains(['?', '#', '@', '/']), "{encoded}");
        for text in [
            format!("postgres://etl:{encoded}@db.example:5432/w?sslmode=disable"),
            format!("redshift://etl:{encoded}@db.example:5432/w?credentials=password"),
            // In the query, form-encoded (`+` and `%20` both a space).
            format!(
                "postgres://db.example:5432/w?user=etl&password={}",
                encoded.replace("%20", "+")
            ),
        ] {
            let u = url(&text);
            let options = u.connect_options();
            assert!(
                held(&options).contains(&format!("password: Some({password:?})")),
                "{text}: {options:?}"
            );
            assert_eq!(options.get_username(), "etl");
            assert_eq!(options.get_host(), "db.example");
            assert_eq!(options.get_database(), Some("w"));
            for shown in [u.to_string(), format!("{u:?}")] {
                for piece in ["Pw9", "a#b", "c/d", "e:f", "g&h", "i j"] {
                    assert!(!shown.contains(piece), "{shown}");
                }
            }
        }
        // A login put in afterwards (temporary credentials) is taken as it is, never decoded.
        let u = url("redshift://h.example:5439/dev").with_login("IAM:etl", "a%41b");
        assert!(held(&u.connect_options()).contains(r#"password: Some("a%41b")"#));
        assert_eq!(u.connect_options().get_username(), "IAM:etl");
    }

    #[test]
    fn urls_tell_host_database_and_whether_they_carry_a_login() {
        let u = url("redshift://Etl.C0ffee.us-east-1.redshift.amazonaws.com:5439/my%20db");
        assert_eq!(
            u.host().as_deref(),
            Some("etl.c0ffee.us-east-1.redshift.amazonaws.com")
        );
        assert_eq!(u.database().as_deref(), Some("my db"));
        assert!(!u.has_login());
        assert_eq!(url("redshift://h:5439").database(), None);
        assert_eq!(url("redshift://h:5439/").database(), None);
        for with_login in [
            "redshift://etl@h/dev",
            "redshift://:pw@h/dev",
            "redshift://h/dev?user=etl",
            "redshift://h/dev?password=pw",
        ] {
            assert!(url(with_login).has_login(), "{with_login}");
        }
        assert!(WarehouseUrl::parse("not a url etl:pw@h").is_err());
    }
}
