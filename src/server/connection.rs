//! One client connection: frames in, responses out, in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use tracing::Instrument;

use crate::api::Api;

/// Responses waiting to be written per connection at most; the reader waits when full.
const RESPONSES_QUEUED_MAX: usize = 16;

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
    let config = &api.broker.config;
    let max_frame = config.int("socket.request.max.bytes").max(0) as usize;
    let idle = Duration::from_millis(config.long("connections.max.idle.ms").max(1) as u64);
    let (read_half, write_half) = stream.into_split();
    let mut frames = FramedRead::new(read_half, codec(max_frame));
    let mut sink = FramedWrite::new(write_half, codec(usize::MAX));
    let (tx, mut rx) = mpsc::channel::<BytesMut>(RESPONSES_QUEUED_MAX);

    let writer = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            if sink.feed(first.freeze()).await.is_err() {
                return;
            }
            // Batch whatever else is ready into one flush.
            while let Ok(next) = rx.try_recv() {
                if sink.feed(next.freeze()).await.is_err() {
                    return;
                }
            }
            if SinkExt::<bytes::Bytes>::flush(&mut sink).await.is_err() {
                return;
            }
        }
    });

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
            h = api.handle_frame(frame.freeze(), &client_host) => h,
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
}
