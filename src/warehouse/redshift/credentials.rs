//! Temporary Redshift database credentials from IAM, so no long-lived password has to live in a
//! secret: `GetClusterCredentialsWithIAM` for a provisioned cluster, `redshift-serverless
//! GetCredentials` for a Serverless workgroup. Both map the caller's IAM identity to a database
//! user and return that user with a password good for 15 to 60 minutes.
//!
//! Which cluster or workgroup to ask for comes from flags, else from the URL's own parameters
//! (`?cluster_id=` / `?workgroup=`), else from the standard endpoint host name. Sessions of one
//! process share the credentials: a session opened while they are good for a while yet reuses
//! them, a later one gets new ones, so a phase that runs longer than their lifetime still opens
//! sessions. The password lives in [`Temporary`] and in the URL handed to the driver, and
//! nowhere that is printed: its `Debug` is `***`, and [`WarehouseUrl`] masks its login.
//!
//! API references (parameters, the 900–3600 s range, the error codes):
//! - <https://docs.aws.amazon.com/redshift/latest/APIReference/API_GetClusterCredentialsWithIAM.html>
//! - <https://docs.aws.amazon.com/redshift-serverless/latest/APIReference/API_GetCredentials.html>

use std::fmt;
use std::time::{Duration, SystemTime};

use aws_sdk_redshift::config::http::HttpResponse;
use aws_sdk_redshift::error::SdkError;
use aws_sdk_redshift::operation::get_cluster_credentials_with_iam::builders::GetClusterCredentialsWithIamInputBuilder;
use aws_sdk_redshiftserverless::operation::get_credentials::builders::GetCredentialsInputBuilder;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use tokio::sync::{Mutex, OnceCell};
use tokio::time::Instant;

use crate::aws::{AwsConfig, AwsError, Endpoint};
use crate::error::{Class, Classify};
use crate::retry::{self, RetryPolicy};
use crate::warehouse::url::WarehouseUrl;

/// The shortest and longest lifetime both APIs accept (`DurationSeconds` / `durationSeconds`,
/// 900–3600; the API's default is 900), per the two API references above.
pub const MIN_SECONDS: u32 = 900;
pub const MAX_SECONDS: u32 = 3600;

/// Credentials are replaced this long before they expire (or after two thirds of their life,
/// if that comes first), so a session never logs in with a password about to lapse.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// The IAM action each API needs.
pub const CLUSTER_ACTION: &str = "redshift:GetClusterCredentialsWithIAM";
pub const WORKGROUP_ACTION: &str = "redshift-serverless:GetCredentials";

const CLUSTER_FLAG: &str = "--redshift-cluster-id";
const WORKGROUP_FLAG: &str = "--redshift-workgroup";

/// What to ask for credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A provisioned cluster, by its identifier.
    Cluster(String),
    /// A Serverless workgroup, by its name.
    Workgroup(String),
}

impl Target {
    /// The IAM action the job's role needs for this target.
    pub fn action(&self) -> &'static str {
        match self {
            Target::Cluster(_) => CLUSTER_ACTION,
            Target::Workgroup(_) => WORKGROUP_ACTION,
        }
    }

    fn operation(&self) -> &'static str {
        match self {
            Target::Cluster(_) => "GetClusterCredentialsWithIAM",
            Target::Workgroup(_) => "redshift-serverless GetCredentials",
        }
    }

    fn flag(&self) -> &'static str {
        match self {
            Target::Cluster(_) => CLUSTER_FLAG,
            Target::Workgroup(_) => WORKGROUP_FLAG,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Cluster(id) => write!(f, "Redshift cluster {id}"),
            Target::Workgroup(name) => write!(f, "Redshift Serverless workgroup {name}"),
        }
    }
}

/// What a standard endpoint host name tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    pub target: Target,
    pub region: String,
    /// The account (Serverless host names carry it).
    pub account: Option<String>,
}

/// Reads `<cluster>.<hash>.<region>.redshift.amazonaws.com` (provisioned) or
/// `<workgroup>.<account>.<region>.redshift-serverless.amazonaws.com` (Serverless), also under
/// `amazonaws.com.cn`. Anything else (a custom domain, a VPC endpoint, an IP) is `None`.
/// Formats: <https://docs.aws.amazon.com/redshift/latest/mgmt/connecting-connection-string.html>,
/// <https://docs.aws.amazon.com/redshift/latest/mgmt/serverless-connecting.html>.
pub fn parse_host(host: &str) -> Option<HostInfo> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    let domain = match labels.last() {
        Some(&"cn") => labels.len().checked_sub(4)?,
        _ => labels.len().checked_sub(3)?,
    };
    let tail = &labels[domain..];
    if tail.get(1..3) != Some(&["amazonaws", "com"][..]) || domain != 3 {
        return None;
    }
    let [name, middle, region] = [labels[0], labels[1], labels[2]];
    if [name, middle, region].iter().any(|l| l.is_empty()) {
        return None;
    }
    match tail[0] {
        "redshift" => Some(HostInfo {
            target: Target::Cluster(name.to_string()),
            region: region.to_string(),
            account: None,
        }),
        "redshift-serverless" => Some(HostInfo {
            target: Target::Workgroup(name.to_string()),
            region: region.to_string(),
            account: middle
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| middle.to_string()),
        }),
        _ => None,
    }
}

/// How Redshift sessions log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// With the user and password of the URL.
    Password,
    /// With temporary credentials from IAM.
    Iam,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "password" => Ok(Mode::Password),
            "iam" => Ok(Mode::Iam),
            other => Err(format!(
                "credentials={other:?} in the warehouse URL: use password or iam"
            )),
        }
    }
}

/// What the operator chose with flags; the URL's own parameters fill in what flags leave out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub mode: Option<Mode>,
    pub cluster_id: Option<String>,
    pub workgroup: Option<String>,
    /// How long the credentials should last.
    pub seconds: u32,
}

impl Default for Choice {
    fn default() -> Self {
        Choice {
            mode: None,
            cluster_id: None,
            workgroup: None,
            seconds: MAX_SECONDS,
        }
    }
}

/// What IAM mode asks for, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamSettings {
    pub target: Target,
    pub database: String,
    pub seconds: u32,
    /// The region in the host name, which the API calls go to; else the SDK's region.
    pub region: Option<String>,
    pub account: Option<String>,
}

impl IamSettings {
    /// The settings for `url` and `choice`: `None` when sessions log in with the URL's
    /// password; an error, naming the flag or the URL part to fix, when IAM mode lacks
    /// something.
    pub fn from_url(url: &WarehouseUrl, choice: &Choice) -> Result<Option<IamSettings>, String> {
        let mode = match choice.mode {
            Some(mode) => mode,
            None => match url.parameter("credentials") {
                Some(text) => text.parse()?,
                None => Mode::Password,
            },
        };
        if mode == Mode::Password {
            return Ok(None);
        }
        if url.has_login() {
            return Err(format!(
                "with IAM credentials the database user and password come from {CLUSTER_ACTION} or {WORKGROUP_ACTION}: remove the user and password from the warehouse URL {url}"
            ));
        }
        let host = url
            .host()
            .ok_or_else(|| format!("the warehouse URL {url} names no host"))?;
        let info = parse_host(&host);
        let named = |flag: &Option<String>, parameter: &str| {
            flag.clone()
                .or_else(|| url.parameter(parameter))
                .filter(|v| !v.is_empty())
        };
        let target = match (
            named(&choice.cluster_id, "cluster_id"),
            named(&choice.workgroup, "workgroup"),
        ) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "name either a provisioned cluster ({CLUSTER_FLAG}, ?cluster_id=) or a Serverless workgroup ({WORKGROUP_FLAG}, ?workgroup=), not both"
                ))
            }
            (Some(id), None) => Target::Cluster(id),
            (None, Some(name)) => Target::Workgroup(name),
            (None, None) => match &info {
                Some(info) => info.target.clone(),
                None => {
                    return Err(format!(
                        "IAM credentials: cannot tell the cluster or workgroup from host {host} (not <cluster>.<id>.<region>.redshift.amazonaws.com or <workgroup>.<account>.<region>.redshift-serverless.amazonaws.com); pass {CLUSTER_FLAG} ID for a provisioned cluster or {WORKGROUP_FLAG} NAME for Serverless"
                    ))
                }
            },
        };
        let database = url.database().ok_or_else(|| {
            format!("IAM credentials are issued for one database: name it in the warehouse URL's path, e.g. redshift://{host}:5439/dev")
        })?;
        if !(MIN_SECONDS..=MAX_SECONDS).contains(&choice.seconds) {
            return Err(format!(
                "--redshift-credentials-seconds must be {MIN_SECONDS} to {MAX_SECONDS}, got {}",
                choice.seconds
            ));
        }
        Ok(Some(IamSettings {
            target,
            database,
            seconds: choice.seconds,
            region: info.as_ref().map(|i| i.region.clone()),
            account: info.and_then(|i| i.account),
        }))
    }

    /// The GetClusterCredentialsWithIAM request (provisioned cluster).
    pub fn cluster_request(&self) -> Option<GetClusterCredentialsWithIamInputBuilder> {
        let Target::Cluster(id) = &self.target else {
            return None;
        };
        Some(
            GetClusterCredentialsWithIamInputBuilder::default()
                .cluster_identifier(id)
                .db_name(&self.database)
                .duration_seconds(self.seconds as i32),
        )
    }

    /// The GetCredentials request (Serverless workgroup).
    pub fn workgroup_request(&self) -> Option<GetCredentialsInputBuilder> {
        let Target::Workgroup(name) = &self.target else {
            return None;
        };
        Some(
            GetCredentialsInputBuilder::default()
                .workgroup_name(name)
                .db_name(&self.database)
                .duration_seconds(self.seconds as i32),
        )
    }

    /// The resource the IAM policy must allow the action on: the `dbname` resource of the
    /// cluster's database (<https://docs.aws.amazon.com/redshift/latest/mgmt/generating-iam-credentials-role-permissions.html>),
    /// or the workgroup, whose ARN ends in its id rather than its name
    /// (<https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonredshiftserverless.html>).
    pub fn resource(&self) -> String {
        let region = self.region.as_deref().unwrap_or("REGION");
        let partition = match region {
            r if r.starts_with("cn-") => "aws-cn",
            r if r.starts_with("us-gov-") => "aws-us-gov",
            _ => "aws",
        };
        let account = self.account.as_deref().unwrap_or("ACCOUNT");
        match &self.target {
            Target::Cluster(id) => format!(
                "arn:{partition}:redshift:{region}:{account}:dbname:{id}/{}",
                self.database
            ),
            Target::Workgroup(_) => format!(
                "arn:{partition}:redshift-serverless:{region}:{account}:workgroup/WORKGROUP-ID"
            ),
        }
    }
}

/// Why no temporary credentials were issued. Each names the cluster or workgroup, and denied
/// access names the IAM action the job's role lacks.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("{operation} for {target} was denied: {detail}; allow {action} on {resource} to the IAM role this job runs as (jobs/aws/README.md: Redshift IAM credentials)")]
    Denied {
        target: Target,
        operation: &'static str,
        action: &'static str,
        resource: String,
        detail: String,
    },
    #[error("{operation}: {target} was not found ({detail}) at {endpoint}; check {flag} or the host of --warehouse-url (the job's IAM role needs {action} on it)")]
    NotFound {
        target: Target,
        operation: &'static str,
        action: &'static str,
        flag: &'static str,
        endpoint: Endpoint,
        detail: String,
    },
    #[error("{operation} for {target} at {endpoint} failed: {detail}")]
    Failed {
        target: Target,
        operation: &'static str,
        endpoint: Endpoint,
        detail: String,
        retriable: bool,
    },
    #[error("{operation} for {target} answered without a user or a password")]
    Incomplete {
        target: Target,
        operation: &'static str,
    },
    #[error("temporary credentials for {target}: {source}")]
    Aws {
        target: Target,
        #[source]
        source: AwsError,
    },
}

impl From<CredentialsError> for crate::warehouse::WarehouseError {
    fn from(e: CredentialsError) -> Self {
        crate::warehouse::WarehouseError::Login(crate::warehouse::LoginError::new(e))
    }
}

impl Classify for CredentialsError {
    fn class(&self) -> Class {
        match self {
            CredentialsError::Failed { retriable, .. } if *retriable => Class::Retry,
            CredentialsError::Aws { source, .. } => source.class(),
            _ => Class::Fatal,
        }
    }
}

/// A password that never shows in `Debug`.
#[derive(Clone, PartialEq, Eq)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Temporary credentials as issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Temporary {
    pub user: String,
    password: Secret,
    /// How long they last from when they arrived.
    pub valid_for: Duration,
}

impl Temporary {
    pub fn new(user: impl Into<String>, password: impl Into<String>, valid_for: Duration) -> Self {
        Temporary {
            user: user.into(),
            password: Secret(password.into()),
            valid_for,
        }
    }

    /// `url` logging in with these credentials.
    pub fn login(&self, url: &WarehouseUrl) -> WarehouseUrl {
        url.with_login(&self.user, &self.password.0)
    }
}

/// How long credentials that expire at `expiration` last from `now`: never longer than asked
/// for (a clock ahead of AWS's would make them seem to last longer), zero when already past.
pub fn lifetime(
    expiration: Option<SystemTime>,
    now: SystemTime,
    requested_seconds: u32,
) -> Duration {
    let requested = Duration::from_secs(requested_seconds.into());
    match expiration {
        Some(at) => at.duration_since(now).unwrap_or_default().min(requested),
        None => requested,
    }
}

/// When credentials that last `valid_for` from now should be replaced.
fn refresh_after(valid_for: Duration) -> Duration {
    valid_for.saturating_sub(REFRESH_MARGIN.min(valid_for / 3))
}

/// The credentials of the process, replaced when they near their end. Sessions that ask at the
/// same time wait for one request.
#[derive(Default)]
pub struct Cache {
    slot: Mutex<Option<(Temporary, Instant)>>,
}

impl Cache {
    /// The cached credentials while they are good for a while yet, else those `issue` returns.
    pub async fn get<E, Fut>(&self, issue: impl FnOnce() -> Fut) -> Result<Temporary, E>
    where
        Fut: std::future::Future<Output = Result<Temporary, E>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some((cached, refresh_at)) = slot.as_ref() {
            if Instant::now() < *refresh_at {
                return Ok(cached.clone());
            }
        }
        let fresh = issue().await?;
        let refresh_at = Instant::now() + refresh_after(fresh.valid_for);
        *slot = Some((fresh.clone(), refresh_at));
        Ok(fresh)
    }
}

enum Client {
    Cluster(aws_sdk_redshift::Client),
    Workgroup(aws_sdk_redshiftserverless::Client),
}

/// Temporary credentials for one cluster or workgroup: the API client (built on first use,
/// so commands that never open a session, like `--dry-run`, never load it) and the cache.
pub struct IamCredentials {
    settings: IamSettings,
    aws: AwsConfig,
    retry: RetryPolicy,
    client: OnceCell<(Client, Endpoint)>,
    cache: Cache,
}

impl fmt::Debug for IamCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IamCredentials")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl IamCredentials {
    /// `aws` and `retry` are the job's AWS settings and retry policy; the API calls go to
    /// `aws.redshift_api_endpoint` when set, and to the region of the host name when it has one.
    pub fn new(settings: IamSettings, aws: AwsConfig, retry: RetryPolicy) -> IamCredentials {
        IamCredentials {
            settings,
            aws,
            retry,
            client: OnceCell::new(),
            cache: Cache::default(),
        }
    }

    pub fn settings(&self) -> &IamSettings {
        &self.settings
    }

    /// `url` logging in with temporary credentials.
    pub async fn login(&self, url: &WarehouseUrl) -> Result<WarehouseUrl, CredentialsError> {
        let temporary = self.cache.get(|| self.issue()).await?;
        Ok(temporary.login(url))
    }

    async fn client(&self) -> Result<&(Client, Endpoint), CredentialsError> {
        self.client
            .get_or_try_init(|| async {
                let mut aws = self.aws.clone();
                aws.region = self.settings.region.clone().or(aws.region);
                let sdk = crate::aws::load(&aws)
                    .await
                    .map_err(|source| CredentialsError::Aws {
                        target: self.settings.target.clone(),
                        source,
                    })?;
                let client = match self.settings.target {
                    Target::Cluster(_) => Client::Cluster(crate::aws::redshift(&sdk, &aws)),
                    Target::Workgroup(_) => {
                        Client::Workgroup(crate::aws::redshift_serverless(&sdk, &aws))
                    }
                };
                Ok((client, crate::aws::redshift_api_endpoint(&sdk, &aws)))
            })
            .await
    }

    /// Asks the API for new credentials, with the job's retry policy.
    async fn issue(&self) -> Result<Temporary, CredentialsError> {
        let (client, endpoint) = self.client().await?;
        let target = &self.settings.target;
        let on_retry = |detail: String, delay: Duration| {
            tracing::warn!(%target, error = %detail, delay_ms = delay.as_millis() as u64,
                "{} failed; trying again", target.operation());
        };
        let (user, password, expiration) = match client {
            Client::Cluster(client) => {
                let request = self.settings.cluster_request().expect("a cluster target");
                let out = self
                    .retry
                    .run_sdk(
                        || request.clone().send_with(client),
                        |e, d| on_retry(retry::describe(e), d),
                    )
                    .await
                    .map_err(|e| self.failure(&e, endpoint))?;
                (out.db_user, out.db_password, out.expiration)
            }
            Client::Workgroup(client) => {
                let request = self
                    .settings
                    .workgroup_request()
                    .expect("a workgroup target");
                let out = self
                    .retry
                    .run_sdk(
                        || request.clone().send_with(client),
                        |e, d| on_retry(retry::describe(e), d),
                    )
                    .await
                    .map_err(|e| self.failure(&e, endpoint))?;
                (out.db_user, out.db_password, out.expiration)
            }
        };
        let (Some(user), Some(password)) = (user, password) else {
            return Err(CredentialsError::Incomplete {
                target: target.clone(),
                operation: target.operation(),
            });
        };
        let expiration = expiration.and_then(|e| SystemTime::try_from(e).ok());
        let valid_for = lifetime(expiration, SystemTime::now(), self.settings.seconds);
        tracing::info!(%target, user = %user, valid_for_s = valid_for.as_secs(),
            "temporary database credentials issued");
        Ok(Temporary::new(user, password, valid_for))
    }

    /// What a failed call means: denied access and a missing cluster or workgroup are for an
    /// operator to fix; the rest is retried when the retry policy would.
    fn failure<E>(&self, err: &SdkError<E, HttpResponse>, endpoint: &Endpoint) -> CredentialsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let target = self.settings.target.clone();
        let operation = target.operation();
        let detail = retry::describe(err);
        let (code, status) = match err {
            SdkError::ServiceError(e) => (e.err().code(), e.raw().status().as_u16()),
            _ => (None, 0),
        };
        match code {
            Some("AccessDenied" | "AccessDeniedException" | "AccessDeniedFault") => {
                CredentialsError::Denied {
                    action: target.action(),
                    resource: self.settings.resource(),
                    target,
                    operation,
                    detail,
                }
            }
            Some("ClusterNotFound" | "ClusterNotFoundFault" | "ResourceNotFoundException") => {
                CredentialsError::NotFound {
                    action: target.action(),
                    flag: target.flag(),
                    target,
                    operation,
                    endpoint: endpoint.clone(),
                    detail,
                }
            }
            _ if status == 404 => CredentialsError::NotFound {
                action: target.action(),
                flag: target.flag(),
                target,
                operation,
                endpoint: endpoint.clone(),
                detail,
            },
            _ => CredentialsError::Failed {
                target,
                operation,
                endpoint: endpoint.clone(),
                detail,
                retriable: retry::is_retriable(err),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn cluster(id: &str) -> Target {
        Target::Cluster(id.into())
    }

    #[test]
    fn standard_host_names_name_the_cluster_or_workgroup_and_region() {
        assert_eq!(
            parse_host("examplecluster.abc123xyz789.us-west-2.redshift.amazonaws.com"),
            Some(HostInfo {
                target: cluster("examplecluster"),
                region: "us-west-2".into(),
                account: None
            })
        );
        assert_eq!(
            parse_host("Default.123456789012.eu-central-1.Redshift-Serverless.amazonaws.com."),
            Some(HostInfo {
                target: Target::Workgroup("default".into()),
                region: "eu-central-1".into(),
                account: Some("123456789012".into())
            })
        );
        assert_eq!(
            parse_host("etl.c0ffee.cn-north-1.redshift.amazonaws.com.cn").map(|i| i.region),
            Some("cn-north-1".to_string())
        );
        for other in [
            "warehouse.example.com",
            "127.0.0.1",
            "localhost",
            "abc.us-west-2.redshift.amazonaws.com",
            "a.b.c.us-west-2.redshift.amazonaws.com",
            "a.b.us-west-2.redshift.amazonaws.org",
            "a.b.us-west-2.redshift-data.amazonaws.com",
            "a..us-west-2.redshift.amazonaws.com",
        ] {
            assert_eq!(parse_host(other), None, "{other}");
        }
    }

    fn settings(url: &str, choice: Choice) -> Result<Option<IamSettings>, String> {
        IamSettings::from_url(&WarehouseUrl::parse(url).unwrap(), &choice)
    }

    fn iam() -> Choice {
        Choice {
            mode: Some(Mode::Iam),
            ..Choice::default()
        }
    }

    #[test]
    fn iam_settings_come_from_flags_then_url_parameters_then_the_host() {
        let host = "redshift://etl.c0ffee.us-east-1.redshift.amazonaws.com:5439/dev";
        let from_host = settings(host, iam()).unwrap().unwrap();
        assert_eq!(from_host.target, cluster("etl"));
        assert_eq!(from_host.database, "dev");
        assert_eq!(from_host.region.as_deref(), Some("us-east-1"));
        assert_eq!(from_host.seconds, MAX_SECONDS);
        // The flag beats the host; the region still comes from the host.
        let flagged = Choice {
            workgroup: Some("wg".into()),
            ..iam()
        };
        let s = settings(host, flagged).unwrap().unwrap();
        assert_eq!(s.target, Target::Workgroup("wg".into()));
        assert_eq!(s.region.as_deref(), Some("us-east-1"));
        // URL parameters alone switch IAM on and name the cluster.
        let s = settings(
            "redshift://10.0.0.5:5439/sales?credentials=iam&cluster_id=prod-1&sslmode=require",
            Choice::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!((s.target, s.region), (cluster("prod-1"), None));
        // A flag beats the URL's parameter.
        let s = settings(
            "redshift://10.0.0.5:5439/sales?credentials=iam&cluster_id=prod-1",
            Choice {
                cluster_id: Some("prod-2".into()),
                ..Choice::default()
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.target, cluster("prod-2"));
        // Password mode, by default or by flag over the URL.
        assert_eq!(settings(host, Choice::default()), Ok(None));
        let password = Choice {
            mode: Some(Mode::Password),
            ..Choice::default()
        };
        assert_eq!(
            settings(&format!("{host}?credentials=iam"), password),
            Ok(None)
        );
    }

    #[test]
    fn iam_settings_refuse_what_they_cannot_use() {
        let err = settings("redshift://warehouse.example.com:5439/dev", iam()).unwrap_err();
        assert!(err.contains("--redshift-cluster-id"), "{err}");
        assert!(err.contains("--redshift-workgroup"), "{err}");
        assert!(err.contains("warehouse.example.com"), "{err}");
        let err = settings(
            "redshift://etl:Pw9secret@etl.c0ffee.us-east-1.redshift.amazonaws.com:5439/dev",
            iam(),
        )
        .unwrap_err();
        assert!(err.contains("remove the user and password"), "{err}");
        assert!(!err.contains("Pw9secret"), "{err}");
        let err = settings(
            "redshift://etl.c0ffee.us-east-1.redshift.amazonaws.com:5439/dev?password=Pw9secret",
            iam(),
        )
        .unwrap_err();
        assert!(!err.contains("Pw9secret"), "{err}");
        let err = settings(
            "redshift://etl.c0ffee.us-east-1.redshift.amazonaws.com:5439",
            iam(),
        )
        .unwrap_err();
        assert!(err.contains("database"), "{err}");
        let both = Choice {
            cluster_id: Some("a".into()),
            workgroup: Some("b".into()),
            ..iam()
        };
        assert!(settings("redshift://h:5439/dev", both).is_err());
        for seconds in [MIN_SECONDS - 1, MAX_SECONDS + 1] {
            let choice = Choice {
                seconds,
                cluster_id: Some("a".into()),
                ..iam()
            };
            let err = settings("redshift://h:5439/dev", choice).unwrap_err();
            assert!(err.contains("900 to 3600"), "{err}");
        }
        assert!(settings("redshift://h:5439/dev?credentials=token", Choice::default()).is_err());
    }

    #[test]
    fn the_requests_carry_the_cluster_or_workgroup_database_and_duration() {
        let s = IamSettings {
            target: cluster("prod-1"),
            database: "sales".into(),
            seconds: 1800,
            region: Some("eu-west-1".into()),
            account: None,
        };
        let request = s.cluster_request().unwrap();
        assert_eq!(request.get_cluster_identifier().as_deref(), Some("prod-1"));
        assert_eq!(request.get_db_name().as_deref(), Some("sales"));
        assert_eq!(*request.get_duration_seconds(), Some(1800));
        assert!(s.workgroup_request().is_none());
        assert_eq!(
            s.resource(),
            "arn:aws:redshift:eu-west-1:ACCOUNT:dbname:prod-1/sales"
        );

        let s = IamSettings {
            target: Target::Workgroup("wg".into()),
            database: "dev".into(),
            seconds: 900,
            region: Some("cn-north-1".into()),
            account: Some("123456789012".into()),
        };
        let request = s.workgroup_request().unwrap();
        assert_eq!(request.get_workgroup_name().as_deref(), Some("wg"));
        assert_eq!(request.get_db_name().as_deref(), Some("dev"));
        assert_eq!(*request.get_duration_seconds(), Some(900));
        assert!(s.cluster_request().is_none());
        assert_eq!(
            s.resource(),
            "arn:aws-cn:redshift-serverless:cn-north-1:123456789012:workgroup/WORKGROUP-ID"
        );
    }

    #[test]
    fn the_url_logs_in_as_the_temporary_user_and_never_shows_the_password() {
        let url = WarehouseUrl::parse(
            "redshift://etl.c0ffee.us-east-1.redshift.amazonaws.com:5439/dev?credentials=iam&cluster_id=etl&sslmode=require",
        )
        .unwrap();
        let temporary = Temporary::new(
            "IAMR:dynamo-etl-job",
            "Pw9+se/cr@et=",
            Duration::from_secs(900),
        );
        let login = temporary.login(&url);
        // The driver gets the user, the password and the database as they are; our own
        // parameters are gone.
        let options = login.connect_options();
        assert_eq!(options.get_username(), "IAMR:dynamo-etl-job");
        assert_eq!(options.get_database(), Some("dev"));
        assert_eq!(
            options.get_host(),
            "etl.c0ffee.us-east-1.redshift.amazonaws.com"
        );
        assert!(matches!(
            options.get_ssl_mode(),
            sqlx::postgres::PgSslMode::Require
        ));
        let held = format!("{options:?}");
        assert!(
            held.contains(r#"password: Some("Pw9+se/cr@et=")"#),
            "{held}"
        );
        assert!(!held.contains("cluster_id"), "{held}");
        for shown in [
            login.to_string(),
            format!("{login:?}"),
            format!("{temporary:?}"),
        ] {
            assert!(!shown.contains("Pw9"), "{shown}");
        }
        assert_eq!(
            login.to_string(),
            "redshift://***@etl.c0ffee.us-east-1.redshift.amazonaws.com:5439/dev"
        );
    }

    #[test]
    fn credentials_last_until_their_expiry_but_never_longer_than_asked() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |s| Some(now + Duration::from_secs(s));
        assert_eq!(lifetime(at(600), now, 900), Duration::from_secs(600));
        assert_eq!(lifetime(at(5000), now, 900), Duration::from_secs(900));
        assert_eq!(lifetime(None, now, 1200), Duration::from_secs(1200));
        assert_eq!(
            lifetime(Some(now - Duration::from_secs(1)), now, 900),
            Duration::ZERO
        );
        assert_eq!(
            refresh_after(Duration::from_secs(3600)),
            Duration::from_secs(3300)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(900)),
            Duration::from_secs(600)
        );
        assert_eq!(refresh_after(Duration::ZERO), Duration::ZERO);
    }

    /// Sessions reuse the cached credentials until shortly before they expire, then get new
    /// ones; a failure is not cached. (The clock is tokio's paused test clock.)
    #[tokio::test(start_paused = true)]
    async fn the_cache_reuses_credentials_until_shortly_before_they_expire() {
        let cache = Cache::default();
        let issued = AtomicUsize::new(0);
        let issue = || async {
            let n = issued.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(Temporary::new(
                format!("IAM:u{n}"),
                "pw",
                Duration::from_secs(900),
            ))
        };
        assert_eq!(cache.get(issue).await.unwrap().user, "IAM:u0");
        tokio::time::advance(Duration::from_secs(599)).await;
        assert_eq!(cache.get(issue).await.unwrap().user, "IAM:u0");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(cache.get(issue).await.unwrap().user, "IAM:u1");
        assert_eq!(issued.load(Ordering::SeqCst), 2);

        tokio::time::advance(Duration::from_secs(900)).await;
        let failed = cache.get(|| async { Err::<Temporary, _>("denied") }).await;
        assert_eq!(failed, Err("denied"));
        assert_eq!(cache.get(issue).await.unwrap().user, "IAM:u2");
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_sessions_wait_for_one_request() {
        let cache = Cache::default();
        let issued = AtomicUsize::new(0);
        let issue = || async {
            issued.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, String>(Temporary::new("IAM:u", "pw", Duration::from_secs(900)))
        };
        let all = futures::future::join_all((0..8).map(|_| cache.get(issue))).await;
        assert!(all.iter().all(|t| t.as_ref().unwrap().user == "IAM:u"));
        assert_eq!(issued.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn denied_and_missing_targets_are_fatal_and_name_the_action() {
        let endpoint = Endpoint {
            service: "Redshift API",
            url: None,
            region: "us-east-1".into(),
            flag: "--redshift-api-endpoint / ETL_REDSHIFT_API_ENDPOINT",
        };
        let denied = CredentialsError::Denied {
            target: cluster("prod-1"),
            operation: "GetClusterCredentialsWithIAM",
            action: CLUSTER_ACTION,
            resource: "arn:aws:redshift:us-east-1:ACCOUNT:dbname:prod-1/dev".into(),
            detail: "AccessDenied (HTTP 403): not authorized".into(),
        };
        assert_eq!(denied.class(), Class::Fatal);
        let text = denied.to_string();
        for part in [
            "Redshift cluster prod-1",
            "redshift:GetClusterCredentialsWithIAM",
            "dbname:prod-1/dev",
        ] {
            assert!(text.contains(part), "{text}");
        }
        let missing = CredentialsError::NotFound {
            target: Target::Workgroup("wg".into()),
            operation: "redshift-serverless GetCredentials",
            action: WORKGROUP_ACTION,
            flag: WORKGROUP_FLAG,
            endpoint: endpoint.clone(),
            detail: "ResourceNotFoundException".into(),
        };
        assert_eq!(missing.class(), Class::Fatal);
        let text = missing.to_string();
        assert!(text.contains("workgroup wg"), "{text}");
        assert!(
            text.contains("redshift-serverless:GetCredentials"),
            "{text}"
        );
        let throttled = |retriable| CredentialsError::Failed {
            target: cluster("prod-1"),
            operation: "GetClusterCredentialsWithIAM",
            endpoint: endpoint.clone(),
            detail: "Throttling".into(),
            retriable,
        };
        assert_eq!(throttled(true).class(), Class::Retry);
        assert_eq!(throttled(false).class(), Class::Fatal);
    }
}
