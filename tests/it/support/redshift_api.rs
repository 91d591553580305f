//! A stand-in for the two APIs that issue temporary Redshift credentials, which the stack's
//! moto (5.2.5) does not implement: `GetClusterCredentialsWithIAM` (query protocol: a form
//! body, an XML answer) and `redshift-serverless GetCredentials` (JSON 1.1). It keeps every
//! request it gets and answers each with the reply the test's script picks, one request per
//! connection. The binary reaches it through `ETL_REDSHIFT_API_ENDPOINT`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Request {
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The fields of a query-protocol (form) body.
    pub fn form(&self) -> BTreeMap<String, String> {
        url::form_urlencoded::parse(self.body.as_bytes())
            .into_owned()
            .collect()
    }

    /// A JSON body.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Reply {
    /// GetClusterCredentialsWithIAM's answer: credentials that expire in `valid_for`.
    pub fn cluster_credentials(user: &str, password: &str, valid_for: Duration) -> Reply {
        let expiration = (chrono::Utc::now() + chrono::TimeDelta::from_std(valid_for).unwrap())
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        Reply {
            status: 200,
            content_type: "text/xml",
            body: format!(
                "<GetClusterCredentialsWithIAMResponse xmlns=\"http://redshift.amazonaws.com/doc/2012-12-01/\"><GetClusterCredentialsWithIAMResult><DbUser>{user}</DbUser><DbPassword>{password}</DbPassword><Expiration>{expiration}</Expiration></GetClusterCredentialsWithIAMResult><ResponseMetadata><RequestId>fake</RequestId></ResponseMetadata></GetClusterCredentialsWithIAMResponse>"
            ),
        }
    }

    /// redshift-serverless GetCredentials' answer (times in epoch seconds).
    pub fn workgroup_credentials(user: &str, password: &str, valid_for: Duration) -> Reply {
        let expiration = chrono::Utc::now().timestamp() + valid_for.as_secs() as i64;
        Reply {
            status: 200,
            content_type: "application/x-amz-json-1.1",
            body: serde_json::json!({
                "dbUser": user,
                "dbPassword": password,
                "expiration": expiration,
                "nextRefreshTime": expiration,
            })
            .to_string(),
        }
    }

    /// A query-protocol error (the provisioned API).
    pub fn query_error(status: u16, code: &str) -> Reply {
        Reply {
            status,
            content_type: "text/xml",
            body: format!(
                "<ErrorResponse xmlns=\"http://redshift.amazonaws.com/doc/2012-12-01/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{code} from the fake Redshift API</Message></Error><RequestId>fake</RequestId></ErrorResponse>"
            ),
        }
    }

    /// A JSON-protocol error (the Serverless API).
    pub fn json_error(status: u16, code: &str) -> Reply {
        Reply {
            status,
            content_type: "application/x-amz-json-1.1",
            body: serde_json::json!({"__type": code, "message": format!("{code} from the fake Redshift Serverless API")})
                .to_string(),
        }
    }
}

/// Picks the reply to the `n`-th request (from 0).
pub type Script = Arc<dyn Fn(usize, &Request) -> Reply + Send + Sync>;

/// A running stand-in; stops when dropped.
pub struct FakeRedshiftApi {
    pub url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeRedshiftApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeRedshiftApi {
    pub async fn start(script: Script) -> FakeRedshiftApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let (seen, script) = (seen.clone(), script.clone());
                tokio::spawn(async move {
                    let _ = serve(client, seen, script).await;
                });
            }
        });
        FakeRedshiftApi {
            url,
            requests,
            task,
        }
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve(
    mut client: TcpStream,
    seen: Arc<Mutex<Vec<Request>>>,
    script: Script,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 8192];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let headers: Vec<(String, String)> = head
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 8192];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let request = Request {
        headers,
        body: String::from_utf8_lossy(&buf[head_end..]).to_string(),
    };
    let reply = {
        let mut seen = seen.lock().unwrap();
        let reply = script(seen.len(), &request);
        seen.push(request);
        reply
    };
    let response = format!(
        "HTTP/1.1 {} Fake\r\ncontent-type: {}\r\ncontent-length: {}\r\nx-amzn-requestid: fake\r\nconnection: close\r\n\r\n{}",
        reply.status,
        reply.content_type,
        reply.body.len(),
        reply.body
    );
    client.write_all(response.as_bytes()).await?;
    client.shutdown().await
}
