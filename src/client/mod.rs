//! The outbound side of the Kafka protocol: how one node calls another. Controllers send
//! each other Raft's Vote, BeginQuorumEpoch and Fetch through it, brokers register and
//! heartbeat with the active controller and forward admin requests to it, and replica
//! fetchers fetch from partition leaders.
//!
//! A [`NodeClient`] keeps one connection to one address and reopens it on the next call after
//! a failure (Kafka's `NetworkClient` does the same, with `reconnect.backoff.ms`). Calls are
//! pipelined: each carries its own correlation id, a reader task hands every response frame to
//! the caller waiting for that id, and the server answers in request order on a connection.
//! On connecting the client asks ApiVersions, and every call is sent at the highest version
//! both sides speak within the caller's range.
//!
//! A call that times out, or any broken frame, closes the connection: a response can no
//! longer be matched with certainty, and every call still waiting on it fails with
//! [`ClientError::Disconnected`]. Nothing here retries; the caller decides (a Raft Fetch is
//! simply sent again on the next tick, a forwarded CreateTopics is answered with an error).
//!
//! Written here rather than taken from a client library: the Rust Kafka clients are either
//! librdkafka bindings (no access to the inter-broker APIs) or whole consumers/producers;
//! what we need is a thin request/response pipe over `kafka-protocol`'s codecs.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use thiserror::Error;
use tokio::net::TcpStream;
use tokio::sync::{Mutex, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

/// Largest response frame accepted (a replica fetch answers up to `replica.fetch.response.max.bytes`,
/// 10 MiB by default; room to spare).
pub const RESPONSE_FRAME_BYTES_MAX: usize = 128 << 20;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("connection to {0} closed")]
    Disconnected(String),
    #[error("request to {addr} timed out after {timeout_ms} ms")]
    Timeout { addr: String, timeout_ms: u64 },
    #[error("{addr} does not serve {api:?} in versions {min}..={max}")]
    UnsupportedVersion { addr: String, api: ApiKey, min: i16, max: i16 },
    #[error("cannot encode {api:?}: {reason}")]
    Encode { api: ApiKey, reason: String },
    #[error("cannot decode the {api:?} response from {addr}: {reason}")]
    Decode { addr: String, api: ApiKey, reason: String },
}

type Pending = Arc<std::sync::Mutex<HashMap<i32, oneshot::Sender<Bytes>>>>;

/// One open connection: a writer, the calls waiting for their responses, and the versions
/// the other side serves.
struct Connection {
    writer: FramedWrite<tokio::net::tcp::OwnedWriteHalf, LengthDelimitedCodec>,
    pending: Pending,
    versions: HashMap<i16, (i16, i16)>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Dropping the reader's senders fails every waiting call.
        self.reader.abort();
        if let Ok(mut p) = self.pending.lock() {
            p.clear();
        }
    }
}

/// A client of one node's Kafka listener.
pub struct NodeClient {
    addr: String,
    client_id: String,
    timeout: Duration,
    next_correlation_id: AtomicI32,
    connection: Mutex<Option<Connection>>,
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().length_field_length(4).max_frame_length(RESPONSE_FRAME_BYTES_MAX).new_codec()
}

impl NodeClient {
    /// A client of `addr` (`host:port`); nothing is opened until the first call.
    pub fn new(addr: impl Into<String>, client_id: impl Into<String>, timeout: Duration) -> Self {
        Self {
            addr: addr.into(),
            client_id: client_id.into(),
            timeout,
            next_correlation_id: AtomicI32::new(1),
            connection: Mutex::new(None),
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `request` at the highest version both sides speak, no higher than `max_version`
    /// (the newest whose fields the caller fills), and waits for the response.
    pub async fn call<R>(&self, request: &R, max_version: i16) -> Result<(i16, R::Response), ClientError>
    where
        R: Request + Encodable + HeaderVersion,
        R::Response: Decodable + HeaderVersion,
    {
        self.call_built::<R, _>(max_version, |version, buf| request.encode(buf, version)).await
    }

    /// Like [`call`](Self::call), for a request whose fields depend on the version chosen
    /// (the encoder refuses a field the version does not have): `build` makes it for the
    /// version both sides speak, no higher than `max_version`.
    pub async fn call_with<R, F>(&self, max_version: i16, build: F) -> Result<(i16, R::Response), ClientError>
    where
        R: Request + Encodable + HeaderVersion,
        R::Response: Decodable + HeaderVersion,
        F: FnOnce(i16) -> R,
    {
        self.call_built::<R, _>(max_version, |version, buf| build(version).encode(buf, version)).await
    }

    async fn call_built<R, E>(&self, max_version: i16, encode_body: E) -> Result<(i16, R::Response), ClientError>
    where
        R: Request + Encodable + HeaderVersion,
        R::Response: Decodable + HeaderVersion,
        E: FnOnce(i16, &mut BytesMut) -> anyhow::Result<()>,
    {
        let api = ApiKey::try_from(R::KEY).map_err(|_| ClientError::Encode { api: ApiKey::ApiVersions, reason: format!("unknown API key {}", R::KEY) })?;
        let timeout_ms = self.timeout.as_millis() as u64;
        let sent = tokio::time::timeout(self.timeout, self.send::<R, E>(encode_body, api, max_version)).await;
        let (version, rx) = match sent {
            Ok(r) => r?,
            Err(_) => {
                self.disconnect().await;
                return Err(ClientError::Timeout { addr: self.addr.clone(), timeout_ms });
            }
        };
        let frame = match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(frame)) => frame,
            Ok(Err(_)) => {
                self.disconnect().await;
                return Err(ClientError::Disconnected(self.addr.clone()));
            }
            Err(_) => {
                self.disconnect().await;
                return Err(ClientError::Timeout { addr: self.addr.clone(), timeout_ms });
            }
        };
        let decode_err = |e: anyhow::Error| ClientError::Decode { addr: self.addr.clone(), api, reason: e.to_string() };
        let mut buf = frame;
        ResponseHeader::decode(&mut buf, R::Response::header_version(version)).map_err(decode_err)?;
        let response = R::Response::decode(&mut buf, version).map_err(decode_err)?;
        Ok((version, response))
    }

    /// Writes the request on the (possibly new) connection; returns the version chosen and
    /// where its response frame will arrive.
    async fn send<R, E>(&self, encode_body: E, api: ApiKey, max_version: i16) -> Result<(i16, oneshot::Receiver<Bytes>), ClientError>
    where
        R: Request + Encodable + HeaderVersion,
        E: FnOnce(i16, &mut BytesMut) -> anyhow::Result<()>,
    {
        let mut guard = self.connection.lock().await;
        if guard.as_ref().is_some_and(|c| c.reader.is_finished()) {
            // The other side closed it (idle timeout, restart): open a new one.
            *guard = None;
        }
        if guard.is_none() {
            *guard = Some(self.connect().await?);
        }
        let Some(conn) = guard.as_mut() else { return Err(ClientError::Disconnected(self.addr.clone())) };
        let (min, max) = conn.versions.get(&R::KEY).copied().unwrap_or((0, -1));
        let version = max.min(max_version);
        if version < min.max(R::VERSIONS.min) || version < 0 {
            return Err(ClientError::UnsupportedVersion { addr: self.addr.clone(), api, min, max });
        }
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        let frame = self.encode_with::<R, E>(encode_body, api, version, correlation_id)?;
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = conn.pending.lock() {
            p.insert(correlation_id, tx);
        }
        // A reader that ended after the check above has failed every call it knew of, but not
        // this one.
        if conn.reader.is_finished() || conn.writer.send(frame).await.is_err() {
            *guard = None;
            return Err(ClientError::Disconnected(self.addr.clone()));
        }
        Ok((version, rx))
    }

    fn encode<R: Encodable + HeaderVersion>(&self, request: &R, api: ApiKey, version: i16, correlation_id: i32) -> Result<Bytes, ClientError> {
        self.encode_with::<R, _>(|version, buf| request.encode(buf, version), api, version, correlation_id)
    }

    fn encode_with<R, E>(&self, encode_body: E, api: ApiKey, version: i16, correlation_id: i32) -> Result<Bytes, ClientError>
    where
        R: HeaderVersion,
        E: FnOnce(i16, &mut BytesMut) -> anyhow::Result<()>,
    {
        let encode_err = |e: anyhow::Error| ClientError::Encode { api, reason: e.to_string() };
        let mut header = RequestHeader::default();
        header.request_api_key = api as i16;
        header.request_api_version = version;
        header.correlation_id = correlation_id;
        header.client_id = Some(StrBytes::from_string(self.client_id.clone()));
        let mut buf = BytesMut::new();
        header.encode(&mut buf, R::header_version(version)).map_err(encode_err)?;
        encode_body(version, &mut buf).map_err(encode_err)?;
        Ok(buf.freeze())
    }

    /// Opens the connection, starts its reader and learns the versions the node serves.
    async fn connect(&self) -> Result<Connection, ClientError> {
        let stream = TcpStream::connect(&self.addr)
            .await
            .map_err(|source| ClientError::Connect { addr: self.addr.clone(), source })?;
        let _ = stream.set_nodelay(true);
        let (read_half, write_half) = stream.into_split();
        let pending: Pending = Arc::default();
        let reader = tokio::spawn(read_responses(FramedRead::new(read_half, codec()), pending.clone()));
        let mut conn = Connection { writer: FramedWrite::new(write_half, codec()), pending, versions: HashMap::new(), reader };
        // ApiVersions v3 first, as the Java client does; any answer lists the versions.
        let mut request = ApiVersionsRequest::default();
        request.client_software_name = StrBytes::from_static_str("blumfeld");
        request.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
        let api = ApiKey::ApiVersions;
        let version = 3;
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        let frame = self.encode(&request, api, version, correlation_id)?;
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = conn.pending.lock() {
            p.insert(correlation_id, tx);
        }
        conn.writer.send(frame).await.map_err(|_| ClientError::Disconnected(self.addr.clone()))?;
        let mut buf = rx.await.map_err(|_| ClientError::Disconnected(self.addr.clone()))?;
        let decode_err = |e: anyhow::Error| ClientError::Decode { addr: self.addr.clone(), api, reason: e.to_string() };
        // ApiVersions responses always use header v0.
        ResponseHeader::decode(&mut buf, 0).map_err(decode_err)?;
        let response = ApiVersionsResponse::decode(&mut buf, version).map_err(decode_err)?;
        conn.versions = response.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
        Ok(conn)
    }

    /// Whether a connection is open and its reader alive.
    pub async fn is_connected(&self) -> bool {
        self.connection.lock().await.as_ref().is_some_and(|c| !c.reader.is_finished())
    }

    /// Closes the connection; the next call opens a new one.
    pub async fn disconnect(&self) {
        *self.connection.lock().await = None;
    }
}

/// Hands each response frame to the call waiting for its correlation id; ends (failing every
/// waiting call) when the connection closes or a frame cannot be matched.
async fn read_responses(mut frames: FramedRead<tokio::net::tcp::OwnedReadHalf, LengthDelimitedCodec>, pending: Pending) {
    while let Some(Ok(frame)) = frames.next().await {
        if frame.len() < 4 {
            break;
        }
        let correlation_id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let waiter = pending.lock().ok().and_then(|mut p| p.remove(&correlation_id));
        match waiter {
            Some(tx) => {
                let _ = tx.send(frame.freeze());
            }
            None => break,
        }
    }
    if let Ok(mut p) = pending.lock() {
        p.clear();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Arc;

    use kafka_protocol::messages::{MetadataRequest, ProduceRequest};

    use super::*;
    use crate::api::Api;
    use crate::clock::SystemClock;
    use crate::config::BrokerConfig;

    /// A broker on 127.0.0.1:0 in this process, with its own data dir.
    async fn broker_with(overrides: &[&str]) -> (tempfile::TempDir, String, tokio::sync::watch::Sender<bool>) {
        let dir = tempfile::tempdir().unwrap();
        let mut o = vec![format!("log.dirs={}", dir.path().display()), "offsets.topic.num.partitions=1".into()];
        o.extend(overrides.iter().map(|s| s.to_string()));
        let config = BrokerConfig::load(None, &o).unwrap();
        let broker = crate::broker::Broker::open(config, Arc::new(SystemClock)).unwrap();
        let api = Arc::new(Api::new(broker).unwrap());
        let server = crate::server::Server::bind("127.0.0.1:0".parse().unwrap(), api).await.unwrap();
        let addr = server.local_addr().unwrap().to_string();
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(server.run(rx));
        (dir, addr, tx)
    }

    async fn broker() -> (tempfile::TempDir, String, tokio::sync::watch::Sender<bool>) {
        broker_with(&[]).await
    }

    #[tokio::test]
    async fn pipelined_calls_get_their_own_responses() {
        let (_dir, addr, _stop) = broker().await;
        let client = Arc::new(NodeClient::new(addr, "test", Duration::from_secs(5)));
        let mut calls = Vec::new();
        for _ in 0..20 {
            let c = client.clone();
            calls.push(tokio::spawn(async move { c.call(&MetadataRequest::default(), 12).await }));
        }
        for call in calls {
            let (version, response) = call.await.unwrap().unwrap();
            assert_eq!(version, 12, "the highest version both sides speak, capped by the caller");
            assert_eq!(response.brokers.len(), 1);
        }
    }

    #[tokio::test]
    async fn a_connection_the_peer_closed_is_reopened() {
        let (_dir, addr, _stop) = broker_with(&["connections.max.idle.ms=200"]).await;
        let client = NodeClient::new(addr, "test", Duration::from_secs(5));
        client.call(&MetadataRequest::default(), 12).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while client.is_connected().await {
            assert!(std::time::Instant::now() < deadline, "the idle connection was never closed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        client.call(&MetadataRequest::default(), 12).await.unwrap();
    }

    #[tokio::test]
    async fn a_call_after_the_peer_stopped_fails() {
        let (dir, addr, stop) = broker().await;
        let client = NodeClient::new(addr.clone(), "test", Duration::from_secs(5));
        client.call(&MetadataRequest::default(), 12).await.unwrap();
        stop.send(true).unwrap();
        drop(dir);
        // The server closes its connections; the next call fails or reconnects to nothing.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match client.call(&MetadataRequest::default(), 12).await {
                Err(ClientError::Connect { .. } | ClientError::Disconnected(_)) => break,
                Ok(_) | Err(_) if std::time::Instant::now() > deadline => panic!("the stopped broker still answers"),
                _ => tokio::task::yield_now().await,
            }
        }
    }

    #[tokio::test]
    async fn versions_the_peer_does_not_serve_are_refused_before_sending() {
        let (_dir, addr, _stop) = broker().await;
        let client = NodeClient::new(addr, "test", Duration::from_secs(5));
        // Produce v2 is below Kafka 4's floor: the broker lists Produce from 0 for librdkafka's
        // sake, but the request's own range starts at 3.
        match client.call(&ProduceRequest::default(), 2).await {
            Err(ClientError::UnsupportedVersion { .. }) => {}
            other => panic!("expected UnsupportedVersion, got {:?}", other.map(|(v, _)| v)),
        }
    }

    #[tokio::test]
    async fn a_silent_peer_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        // Accepts and never answers.
        let _keep = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let client = NodeClient::new(addr, "test", Duration::from_millis(200));
        match client.call(&MetadataRequest::default(), 12).await {
            Err(ClientError::Timeout { .. }) => {}
            other => panic!("expected a timeout, got {:?}", other.map(|(v, _)| v)),
        }
    }
}
