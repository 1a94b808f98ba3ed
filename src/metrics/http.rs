//! The metrics listener (`metrics.listener`, default `127.0.0.1:9644`): a deliberately small
//! HTTP/1.1 server for three paths.
//!
//! - `GET /metrics`: the exposition in Prometheus' text format.
//! - `GET /health`: 200 while the process is live (liveness probe), 503 otherwise.
//! - `GET /ready`: 200 when serving clients and caught up with metadata (readiness probe),
//!   503 otherwise; the body says why.
//!
//! Anything else is 404 (405 for a method other than GET or HEAD). One request per connection
//! (`Connection: close`): scrapers open one connection every few seconds, so keep-alive buys
//! nothing worth its parser. Bounded everywhere: at most [`HTTP_CONNECTIONS_MAX`] connections
//! (further ones wait in the kernel's backlog), a request head of at most
//! [`HTTP_REQUEST_HEAD_BYTES_MAX`] bytes (a body is never read), and a deadline for reading the
//! head and for writing the response.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::{Metrics, TEXT_CONTENT_TYPE};

/// Concurrent connections at most.
pub const HTTP_CONNECTIONS_MAX: usize = 16;
/// Longest request line plus headers accepted; longer gets 431.
pub const HTTP_REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// Time allowed to send the request head; a slower client gets 408.
const HTTP_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed to take the response.
const HTTP_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Sleep after a failed accept, doubling up to this bound.
const ACCEPT_BACKOFF_MS_MAX: u64 = 1000;

/// What the broker says about itself to `/health` and `/ready`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The process works (liveness): false only when it should be restarted.
    pub live: bool,
    /// Serving clients and caught up with the metadata log (readiness).
    pub ready: bool,
    /// Why not, when one of the two is false; shown in the response body.
    pub reason: String,
}

impl Health {
    pub fn ready() -> Self {
        Self { live: true, ready: true, reason: String::new() }
    }

    pub fn not_ready(reason: impl Into<String>) -> Self {
        Self { live: true, ready: false, reason: reason.into() }
    }
}

/// The broker's health function. Called on the async runtime per probe: it must be cheap
/// (read flags and positions, take no lock that I/O holds).
pub type HealthCheck = Arc<dyn Fn() -> Health + Send + Sync>;

/// A running metrics listener.
pub struct MetricsServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// The bound address; the real port when `metrics.listener` asked for port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until the listener has stopped (after `shutdown` turned true).
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// Binds `addr` and serves until `shutdown` turns true. Returns once bound, so the caller can
/// print the address; the serving runs in a spawned task.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: HealthCheck,
    shutdown: watch::Receiver<bool>,
) -> io::Result<MetricsServer> {
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let task = tokio::spawn(accept_loop(listener, metrics, health, shutdown));
    Ok(MetricsServer { local_addr, task })
}

async fn accept_loop(listener: TcpListener, metrics: Arc<Metrics>, health: HealthCheck, mut shutdown: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(HTTP_CONNECTIONS_MAX));
    let mut tasks = JoinSet::new();
    let mut backoff_ms = 1;
    while !*shutdown.borrow() {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        match accepted {
            Ok((stream, _peer)) => {
                backoff_ms = 1;
                let (metrics, health) = (metrics.clone(), health.clone());
                tasks.spawn(async move {
                    let _ = handle(stream, &metrics, &health).await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(ACCEPT_BACKOFF_MS_MAX);
            }
        }
        while tasks.try_join_next().is_some() {}
    }
    // Each connection is bounded by its deadlines; at shutdown nobody waits for a scrape.
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

/// The parts of a request we route on.
#[derive(Debug, PartialEq, Eq)]
struct RequestHead {
    method: String,
    path: String,
}

struct Response {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    /// HEAD: headers only.
    head_only: bool,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Self {
        Self { status, content_type: "text/plain; charset=utf-8", body: body.into().into_bytes(), head_only: false }
    }
}

async fn handle(mut stream: TcpStream, metrics: &Arc<Metrics>, health: &HealthCheck) -> io::Result<()> {
    let response = match tokio::time::timeout(HTTP_READ_TIMEOUT, read_head(&mut stream)).await {
        Err(_) => Response::text(408, "request head not received in time\n"),
        Ok(Err(HeadError::Io(e))) => return Err(e),
        Ok(Err(HeadError::TooLarge)) => Response::text(431, "request head too large\n"),
        Ok(Err(HeadError::Malformed)) => Response::text(400, "malformed request\n"),
        Ok(Ok(head)) => route(&head, metrics, health).await,
    };
    let bytes = encode(&response);
    match tokio::time::timeout(HTTP_WRITE_TIMEOUT, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await
    {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "metrics response not taken in time")),
    }
}

async fn route(head: &RequestHead, metrics: &Arc<Metrics>, health: &HealthCheck) -> Response {
    let known = matches!(head.path.as_str(), "/metrics" | "/health" | "/ready");
    if !known {
        return Response::text(404, "not found; try /metrics, /health or /ready\n");
    }
    let head_only = match head.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        _ => return Response::text(405, "only GET and HEAD\n"),
    };
    let mut response = match head.path.as_str() {
        "/metrics" => exposition(metrics).await,
        "/health" => {
            let h = health();
            if h.live { Response::text(200, "live\n") } else { Response::text(503, format!("not live: {}\n", h.reason)) }
        }
        _ => {
            let h = health();
            if h.live && h.ready {
                Response::text(200, "ready\n")
            } else {
                Response::text(503, format!("not ready: {}\n", h.reason))
            }
        }
    };
    response.head_only = head_only;
    response
}

/// Gathering runs the broker's snapshot function, which may take partition locks: it runs on
/// a blocking thread, not on the runtime.
async fn exposition(metrics: &Arc<Metrics>) -> Response {
    let m = metrics.clone();
    match tokio::task::spawn_blocking(move || m.encode_text()).await {
        Ok(Ok(text)) => Response { status: 200, content_type: TEXT_CONTENT_TYPE, body: text.into_bytes(), head_only: false },
        Ok(Err(e)) => Response::text(500, format!("{e}\n")),
        Err(e) => Response::text(500, format!("gathering metrics failed: {e}\n")),
    }
}

#[derive(Debug)]
enum HeadError {
    Io(io::Error),
    TooLarge,
    Malformed,
}

/// Reads up to the blank line that ends the request head; never reads past
/// [`HTTP_REQUEST_HEAD_BYTES_MAX`].
async fn read_head(stream: &mut TcpStream) -> Result<RequestHead, HeadError> {
    let mut buf = vec![0u8; HTTP_REQUEST_HEAD_BYTES_MAX];
    let mut filled = 0;
    loop {
        if let Some(end) = head_end(&buf[..filled]) {
            return parse_head(&buf[..end]).ok_or(HeadError::Malformed);
        }
        if filled == buf.len() {
            return Err(HeadError::TooLarge);
        }
        let n = stream.read(&mut buf[filled..]).await.map_err(HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before the end of the request head")));
        }
        filled += n;
    }
}

/// The length of the head up to its terminating blank line (CRLF CRLF, or bare LF LF).
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = buf.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `GET /metrics?x=y HTTP/1.1` → method `GET`, path `/metrics`. Headers are not needed.
fn parse_head(head: &[u8]) -> Option<RequestHead> {
    let text = std::str::from_utf8(head).ok()?;
    let line = text.lines().next()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with("HTTP/1.") || method.is_empty() {
        return None;
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    if !path.starts_with('/') {
        return None;
    }
    Some(RequestHead { method: method.to_string(), path: path.to_string() })
}

fn encode(r: &Response) -> Vec<u8> {
    let reason = match r.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        r.status,
        r.content_type,
        r.body.len()
    );
    if r.status == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !r.head_only {
        bytes.extend_from_slice(&r.body);
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_parse_to_method_and_path() {
        let head = |s: &str| parse_head(s.as_bytes());
        assert_eq!(head("GET /metrics HTTP/1.1\r\nHost: x\r\n"), Some(RequestHead { method: "GET".into(), path: "/metrics".into() }));
        assert_eq!(head("GET /ready?verbose=1 HTTP/1.0").map(|h| h.path), Some("/ready".into()));
        assert_eq!(head("GET /metrics"), None);
        assert_eq!(head("GET metrics HTTP/1.1"), None);
        assert_eq!(head("GET /metrics HTTP/2 extra"), None);
        assert_eq!(parse_head(&[0xff, 0xfe]), None);
    }

    #[test]
    fn the_head_ends_at_the_first_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody"), Some(20));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(14));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
    }
}
