//! The network server: accepts connections, frames requests with a 4-byte length prefix,
//! hands each frame to the [`Api`](crate::api::Api) and writes responses in request order.
//!
//! Limits: frames larger than `socket.request.max.bytes` close the connection (Kafka does the
//! same); at most `max.connections` connections (a semaphore permit each); a connection idle for
//! `connections.max.idle.ms` is closed. Requests on one connection are handled one at a time,
//! as Kafka does, so a pipelining client's produce requests are appended in the order sent;
//! responses are written by a separate task so reading and writing overlap: encoded fields
//! with vectored writes, fetched records straight from the segment files with `sendfile`.

pub mod connection;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::api::Api;

/// Sleep after a failed accept (e.g. out of file descriptors), doubling up to this bound.
const ACCEPT_BACKOFF_MS_MAX: u64 = 1000;

pub struct Server {
    listener: TcpListener,
    api: Arc<Api>,
    /// One permit per connection `max.connections` allows; resized when the dynamic value
    /// changes (`resize_connection_limit`).
    connections: Arc<Semaphore>,
    /// The permits `connections` stands for now (open connections included).
    connection_limit: std::sync::atomic::AtomicUsize,
}

/// How often an accept loop blocked at `max.connections` looks at the limit again, so that
/// raising it dynamically takes effect without a connection closing first.
const CONNECTION_LIMIT_RECHECK: Duration = Duration::from_secs(1);

impl Server {
    pub async fn bind(addr: SocketAddr, api: Arc<Api>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Self::on(listener, api)
    }

    /// Serves on a socket bound earlier (a single node binds its controller port before it
    /// knows its configuration in full: the port is part of it).
    pub fn from_std(listener: std::net::TcpListener, api: Arc<Api>) -> std::io::Result<Self> {
        listener.set_nonblocking(true)?;
        Self::on(TcpListener::from_std(listener)?, api)
    }

    fn on(listener: TcpListener, api: Arc<Api>) -> std::io::Result<Self> {
        let max = api.broker.effective_config().settings().socket.connections_max.min(Semaphore::MAX_PERMITS);
        let connections = Arc::new(Semaphore::new(max));
        Ok(Self { listener, api, connections, connection_limit: std::sync::atomic::AtomicUsize::new(max) })
    }

    /// Follows `max.connections` as a dynamic broker config: more permits when it grew; when
    /// it shrank, the idle permits are withdrawn now and the rest as connections close (open
    /// connections are never cut, as in Kafka).
    fn resize_connection_limit(&self) {
        use std::sync::atomic::Ordering;
        let want = self.api.broker.effective_config().settings().socket.connections_max.min(Semaphore::MAX_PERMITS);
        let have = self.connection_limit.load(Ordering::Acquire);
        if want > have {
            self.connections.add_permits(want - have);
            self.connection_limit.store(want, Ordering::Release);
        } else if want < have {
            let withdrawn = self.connections.forget_permits(have - want);
            self.connection_limit.store(have - withdrawn, Ordering::Release);
        }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until `shutdown` turns true; then waits for open connections to
    /// finish their current request.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff_ms = 1;
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            self.resize_connection_limit();
            let permit = tokio::select! {
                p = self.connections.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = tokio::time::sleep(CONNECTION_LIMIT_RECHECK) => continue,
                _ = shutdown.changed() => break,
            };
            let accepted = tokio::select! {
                a = self.listener.accept() => a,
                _ = shutdown.changed() => break,
            };
            match accepted {
                Ok((stream, peer)) => {
                    backoff_ms = 1;
                    let api = self.api.clone();
                    let shutdown = shutdown.clone();
                    tasks.spawn(async move {
                        connection::serve(stream, peer, api, shutdown).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                    backoff_ms = (backoff_ms * 2).min(ACCEPT_BACKOFF_MS_MAX);
                }
            }
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
    }
}
