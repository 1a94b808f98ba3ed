//! One client connection: frames in, responses out, in order.

use std::net::SocketAddr;
use std::sync::Arc;

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::Buf;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, watch};
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};
use tracing::Instrument;

use crate::api::Api;
use crate::api::response_frame::{Chunk, ResponseFrame};
use crate::log::FileRegion;

/// Responses waiting to be written per connection at most; the reader waits when full.
const RESPONSES_QUEUED_MAX: usize = 16;
/// Chunks handed to one vectored write at most (Linux's IOV_MAX is 1024).
const WRITE_CHUNKS_MAX: usize = 64;
/// Bytes one `sendfile` call is asked for at most, so one large region does not hold the
/// task for long.
const SENDFILE_CHUNK_BYTES: u64 = 4 << 20;

fn codec(max_frame_bytes: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(max_frame_bytes)
        .new_codec()
}

pub async fn serve(stream: TcpStream, peer: SocketAddr, api: Arc<Api>, shutdown: watch::Receiver<bool>) {
    let span = tracing::debug_span!("connection", %peer);
    let _open = api.broker.metrics.connection_opened();
    serve_inner(stream, peer, api, shutdown).instrument(span).await
}

async fn serve_inner(stream: TcpStream, peer: SocketAddr, api: Arc<Api>, mut shutdown: watch::Receiver<bool>) {
    let client_host = format!("/{}", peer.ip());
    let _ = stream.set_nodelay(true);
    let socket = &api.broker.config.settings().socket;
    let (max_frame, idle) = (socket.request_bytes_max, socket.connections_idle_max);
    let (read_half, write_half) = stream.into_split();
    let mut frames = FramedRead::new(read_half, codec(max_frame));
    let (tx, rx) = mpsc::channel::<ResponseFrame>(RESPONSES_QUEUED_MAX);
    let writer = tokio::spawn(write_responses(write_half, rx));

    loop {
        let frame = tokio::select! {
            f = tokio::time::timeout(idle, frames.next()) => match f {
                Ok(Some(Ok(frame))) => frame,
                Ok(Some(Err(e))) => {
                    tracing::debug!(error = %e, "closing connection: bad frame");
                    break;
                }
                Ok(None) => break,
                Err(_) => {
                    tracing::debug!("closing idle connection");
                    break;
                }
            },
            _ = shutdown.changed() => break,
        };
        // Cancelling at shutdown is safe: handlers await only while long-polling, never in
        // the middle of an append.
        let handled = tokio::select! {
            h = api.handle_frame_from(frame.freeze(), &client_host, Some(peer)) => h,
            _ = shutdown.changed() => break,
        };
        match handled {
            Ok(Some(response)) => {
                if tx.send(response).await.is_err() {
                    break;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::info!(error = %e, "closing connection");
                break;
            }
        }
    }
    drop(tx);
    let _ = writer.await;
    api.connection_closed(peer);
}

/// Writes responses in order, each as its chunks, gathering whatever is ready: memory
/// chunks go out with vectored writes, file regions with `sendfile` (see `response_frame`).
async fn write_responses(mut socket: OwnedWriteHalf, mut rx: mpsc::Receiver<ResponseFrame>) {
    let mut pending: VecDeque<Chunk> = VecDeque::new();
    while let Some(first) = rx.recv().await {
        pending.extend(first.into_chunks().into_iter().filter(|c| !c.is_empty()));
        while pending.len() < WRITE_CHUNKS_MAX {
            match rx.try_recv() {
                Ok(next) => pending.extend(next.into_chunks().into_iter().filter(|c| !c.is_empty())),
                Err(_) => break,
            }
        }
        if let Err(e) = write_all_chunks(&mut socket, &mut pending).await {
            tracing::debug!(error = %e, "closing connection: write failed");
            return;
        }
    }
    let _ = socket.shutdown().await;
}

async fn write_all_chunks(socket: &mut OwnedWriteHalf, pending: &mut VecDeque<Chunk>) -> std::io::Result<()> {
    while let Some(front) = pending.front_mut() {
        if let Chunk::File(region) = front {
            send_region(socket.as_ref(), region).await?;
            pending.pop_front();
            continue;
        }
        let slices: Vec<IoSlice<'_>> = pending
            .iter()
            .take(WRITE_CHUNKS_MAX)
            .map_while(|c| match c {
                Chunk::Memory(b) => Some(IoSlice::new(b)),
                Chunk::File(_) => None,
            })
            .collect();
        let mut written = socket.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let Some(Chunk::Memory(front)) = pending.front_mut() else { break };
            if written >= front.len() {
                written -= front.len();
                pending.pop_front();
            } else {
                front.advance(written);
                written = 0;
            }
        }
    }
    Ok(())
}

/// Sends a file region with `sendfile`: page cache to socket, no copy through user space.
/// A file that ends early (it cannot, unless truncated under us) fails the connection
/// rather than sending a short frame.
async fn send_region(socket: &TcpStream, region: &mut FileRegion) -> std::io::Result<()> {
    while region.len > 0 {
        socket.writable().await?;
        let count = region.len.min(SENDFILE_CHUNK_BYTES) as usize;
        let sent = socket.try_io(Interest::WRITABLE, || {
            let mut position = region.position;
            let n = rustix::fs::sendfile(socket, &*region.file, Some(&mut position), count)?;
            Ok(n)
        });
        match sent {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                region.position += n as u64;
                region.len -= n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
