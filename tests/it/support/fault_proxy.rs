//! A fault-injecting HTTP proxy for tests: it sits between the binary and a real local service
//! and, for the requests a rule picks, answers with an error the way AWS would (throttling, 5xx).
//! Everything else is passed through to the real service. Each request is forced onto its own
//! connection (`Connection: close`), so every request is seen by the rule.

use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the rule sees of a request.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether this is a DynamoDB `Scan` (the operation is named in `X-Amz-Target`,
    /// `DynamoDB_20120810.Scan`).
    pub fn is_scan(&self) -> bool {
        self.header("x-amz-target")
            .is_some_and(|t| t.ends_with(".Scan"))
    }
}

/// A canned error response.
#[derive(Debug, Clone)]
pub struct Injected {
    /// Hold the connection open without answering (a stalled service), instead of an error.
    pub hang: bool,
    /// Close the connection without answering (a dropped connection), instead of an error.
    pub drop: bool,
    /// Pass the request on, but cut the response's body after this many bytes (a connection
    /// that breaks while the body arrives), instead of an error.
    pub truncate: Option<usize>,
    /// Pass the request on, but change the case of the first letter of the response body's
    /// first string value (`"S":"…`), keeping the JSON valid and its length (bits flipped on
    /// the way), instead of an error.
    pub damage: bool,
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Injected {
    /// DynamoDB's throttling error.
    pub fn dynamodb_throttle() -> Injected {
        Injected {
            hang: false,
            drop: false,
            truncate: None,
            damage: false,
            status: 400,
            content_type: "application/x-amz-json-1.0",
            body: r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"injected by the test proxy"}"#.into(),
        }
    }

    /// A fatal DynamoDB error (not retried).
    pub fn dynamodb_validation() -> Injected {
        Injected {
            hang: false,
            drop: false,
            truncate: None,
            damage: false,
            status: 400,
            content_type: "application/x-amz-json-1.0",
            body: r#"{"__type":"com.amazon.coral.validate#ValidationException","message":"injected validation failure"}"#.into(),
        }
    }

    /// S3's internal error (retried, then given up).
    pub fn s3_internal_error() -> Injected {
        Injected {
            hang: false,
            drop: false,
            truncate: None,
            damage: false,
            status: 500,
            content_type: "application/xml",
            body: "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InternalError</Code><Message>injected by the test proxy</Message></Error>".into(),
        }
    }
}

impl Injected {
    /// Never answer.
    pub fn hang() -> Injected {
        Injected {
            hang: true,
            drop: false,
            truncate: None,
            damage: false,
            status: 0,
            content_type: "",
            body: String::new(),
        }
    }

    /// Close the connection at once.
    pub fn drop_connection() -> Injected {
        Injected {
            hang: false,
            drop: true,
            truncate: None,
            damage: false,
            status: 0,
            content_type: "",
            body: String::new(),
        }
    }

    /// The real response with its body cut after `bytes` bytes.
    pub fn truncate_body(bytes: usize) -> Injected {
        Injected {
            hang: false,
            drop: false,
            truncate: Some(bytes),
            damage: false,
            status: 0,
            content_type: "",
            body: String::new(),
        }
    }

    /// The real response with one letter of its first string value changed.
    pub fn damage_body() -> Injected {
        Injected {
            hang: false,
            drop: false,
            truncate: None,
            damage: true,
            status: 0,
            content_type: "",
            body: String::new(),
        }
    }

    /// An S3 error response with `code`.
    pub fn s3_error(status: u16, code: &str) -> Injected {
        Injected {
            hang: false,
            drop: false,
            truncate: None,
            damage: false,
            status,
            content_type: "application/xml",
            body: format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected by the test proxy</Message></Error>"),
        }
    }
}

pub type Rule = Arc<dyn Fn(&RequestHead) -> Option<Injected> + Send + Sync>;

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1 in front of `upstream` (`http://host:port`).
    pub async fn start(upstream: &str, rule: Rule) -> FaultProxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let (upstream, rule) = (upstream.clone(), rule.clone());
                tokio::spawn(async move {
                    let _ = serve(client, &upstream, rule).await;
                });
            }
        });
        FaultProxy { url, task }
    }
}

async fn serve(mut client: TcpStream, upstream: &str, rule: Rule) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(8192);
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
    let head_text = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head_text.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut parts = request_line.split(' ');
    let head = RequestHead {
        method: parts.next().unwrap_or_default().to_string(),
        path: parts.next().unwrap_or_default().to_string(),
        headers: lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect(),
    };
    let injected = rule(&head);
    if let Some(cut) = injected.as_ref().and_then(|i| i.truncate) {
        return pass_on_truncated(
            client,
            upstream,
            &request_line,
            &head,
            &buf[head_end..],
            cut,
        )
        .await;
    }
    if injected.as_ref().is_some_and(|i| i.damage) {
        return pass_on_damaged(client, upstream, &request_line, &head, &buf[head_end..]).await;
    }
    if let Some(injected) = injected {
        if injected.hang {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            return Ok(());
        }
        if injected.drop {
            drop(client);
            return Ok(());
        }
        // Read (and drop) the request body so the client sees a clean response.
        let length: usize = head
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut have = buf.len() - head_end;
        while have < length {
            let mut chunk = vec![0u8; (length - have).min(1 << 16)];
            let n = client.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            have += n;
        }
        let response = format!(
            "HTTP/1.1 {} Injected\r\ncontent-type: {}\r\ncontent-length: {}\r\nx-amzn-requestid: injected\r\nconnection: close\r\n\r\n{}",
            injected.status,
            injected.content_type,
            injected.body.len(),
            injected.body
        );
        client.write_all(response.as_bytes()).await?;
        client.shutdown().await?;
        return Ok(());
    }
    let mut server = forward(upstream, &request_line, &head, &buf[head_end..]).await?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}

/// Opens a connection to `upstream` and sends the request on it (one request per connection).
async fn forward(
    upstream: &str,
    request_line: &str,
    head: &RequestHead,
    body_start: &[u8],
) -> std::io::Result<TcpStream> {
    let mut new_head = String::with_capacity(512);
    new_head.push_str(request_line);
    new_head.push_str("\r\n");
    for (k, v) in &head.headers {
        if !k.eq_ignore_ascii_case("connection") {
            new_head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    new_head.push_str("connection: close\r\n\r\n");
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(new_head.as_bytes()).await?;
    server.write_all(body_start).await?;
    Ok(server)
}

/// Passes the request on and the response back, but only `cut` bytes of its body, then closes.
async fn pass_on_truncated(
    mut client: TcpStream,
    upstream: &str,
    request_line: &str,
    head: &RequestHead,
    body_start: &[u8],
    cut: usize,
) -> std::io::Result<()> {
    let mut server = forward(upstream, request_line, head, body_start).await?;
    // Requests whose body did not arrive with the head are not cut (GETs have none).
    let mut response = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        let n = server.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..n]);
        if let Some(i) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            if response.len() >= i + 4 + cut {
                response.truncate(i + 4 + cut);
                break;
            }
        }
    }
    client.write_all(&response).await?;
    client.shutdown().await?;
    Ok(())
}

/// Passes the request on and the whole response back with one letter of its body's first
/// string value in the other case.
async fn pass_on_damaged(
    mut client: TcpStream,
    upstream: &str,
    request_line: &str,
    head: &RequestHead,
    body_start: &[u8],
) -> std::io::Result<()> {
    let mut server = forward(upstream, request_line, head, body_start).await?;
    let mut response = Vec::new();
    server.read_to_end(&mut response).await?;
    if let Some(head_end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
        let body = head_end + 4;
        let marker = br#""S":""#;
        if let Some(at) = response[body..]
            .windows(marker.len())
            .position(|w| w == marker)
        {
            let letter = body + at + marker.len();
            if response[letter].is_ascii_alphabetic() {
                response[letter] ^= 0x20;
            }
        }
    }
    client.write_all(&response).await?;
    client.shutdown().await?;
    Ok(())
}
