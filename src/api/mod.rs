//! The only place that knows Kafka requests: one file per API, one dispatch match, one
//! version table ([`versions`]), one map from internal errors to Kafka codes ([`errors`]).
//!
//! [`Api::handle_frame`] takes one request frame (without its length prefix) and returns the
//! encoded response frame, `None` when Kafka sends no response (Produce with acks=0), or an
//! error when the connection must be closed (unparseable header, unknown API, version we do
//! not serve), as Kafka does.

pub mod create_partitions;
pub mod create_topics;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod errors;
pub mod fetch;
pub mod fetch_session;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod versions;

use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use thiserror::Error;

use crate::broker::Broker;
use fetch_session::FetchSessionCache;

#[derive(Debug, Error)]
pub enum ApiError {
    #[error("request frame of {0} bytes is too short for a header")]
    ShortFrame(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("{api:?} v{version} is not supported")]
    UnsupportedVersion { api: ApiKey, version: i16 },
    #[error("cannot decode {api:?} v{version} request: {reason}")]
    Decode { api: ApiKey, version: i16, reason: String },
    #[error("cannot encode {api:?} v{version} response: {reason}")]
    Encode { api: ApiKey, version: i16, reason: String },
    #[error("acks=0 produce failed; closing the connection as Kafka does")]
    AcksZeroFailed,
}

/// What a handler learns about the request besides its body.
pub struct RequestContext {
    pub api_key: ApiKey,
    pub version: i16,
    pub correlation_id: i32,
    pub client_id: Option<StrBytes>,
}

/// The Kafka API of one broker: shared by every connection.
pub struct Api {
    pub broker: Arc<Broker>,
    pub fetch_sessions: Mutex<FetchSessionCache>,
}

/// A handler's answer: a response, or nothing at all (acks=0).
pub enum Reply {
    Response(ResponseKind),
    NoResponse,
    /// Close the connection without answering.
    Close,
}

impl Api {
    pub fn new(broker: Arc<Broker>) -> Self {
        let slots = broker.config.int("max.incremental.fetch.session.cache.slots").max(0) as usize;
        Self { broker, fetch_sessions: Mutex::new(FetchSessionCache::new(slots)) }
    }

    /// Decodes, handles and encodes one request frame.
    pub async fn handle_frame(&self, frame: Bytes) -> Result<Option<BytesMut>, ApiError> {
        let (ctx, request) = match decode_request(frame)? {
            Decoded::Request(ctx, request) => (ctx, request),
            Decoded::UnsupportedApiVersions { correlation_id } => {
                // A newer client than us: answer v0 with UNSUPPORTED_VERSION and our table, so
                // it can pick a version we speak (KIP-511).
                return versions::unsupported_version_response(correlation_id).map(Some);
            }
        };
        let span = tracing::debug_span!("request", api = ?ctx.api_key, version = ctx.version, correlation_id = ctx.correlation_id);
        let _enter = span.enter();
        match self.dispatch(&ctx, request).await {
            Reply::Response(response) => {
                encode_response(ctx.api_key, ctx.version, ctx.correlation_id, &response).map(Some)
            }
            Reply::NoResponse => Ok(None),
            Reply::Close => Err(ApiError::AcksZeroFailed),
        }
    }

    async fn dispatch(&self, ctx: &RequestContext, request: RequestKind) -> Reply {
        use RequestKind as R;
        use ResponseKind as S;
        let v = ctx.version;
        let r = match request {
            R::ApiVersions(req) => S::ApiVersions(versions::handle(ctx, req)),
            R::Metadata(req) => S::Metadata(metadata::handle(self, ctx, req)),
            R::Produce(req) => return produce::handle(self, ctx, req).await,
            R::Fetch(req) => S::Fetch(fetch::handle(self, ctx, req).await),
            R::ListOffsets(req) => S::ListOffsets(list_offsets::handle(self, v, req)),
            R::CreateTopics(req) => S::CreateTopics(create_topics::handle(self, v, req)),
            R::DeleteTopics(req) => S::DeleteTopics(delete_topics::handle(self, v, req)),
            R::CreatePartitions(req) => S::CreatePartitions(create_partitions::handle(self, req)),
            R::DescribeConfigs(req) => S::DescribeConfigs(describe_configs::handle(self, v, req)),
            R::IncrementalAlterConfigs(req) => {
                S::IncrementalAlterConfigs(incremental_alter_configs::handle(self, req))
            }
            R::DescribeCluster(req) => S::DescribeCluster(describe_cluster::handle(self, req)),
            R::DeleteRecords(req) => S::DeleteRecords(delete_records::handle(self, req)),
            R::InitProducerId(req) => S::InitProducerId(init_producer_id::handle(self, req)),
            R::OffsetForLeaderEpoch(req) => S::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(self, req)),
            // The version table admits only the APIs above, so nothing else gets this far.
            _ => return Reply::Close,
        };
        Reply::Response(r)
    }
}

/// A decoded request frame.
pub enum Decoded {
    Request(RequestContext, RequestKind),
    /// ApiVersions at a version we do not serve: answered with the v0 fallback.
    UnsupportedApiVersions { correlation_id: i32 },
}

/// Decodes one request frame (header and body). Pure: the fuzz target drives it directly.
pub fn decode_request(frame: Bytes) -> Result<Decoded, ApiError> {
    if frame.len() < 8 {
        return Err(ApiError::ShortFrame(frame.len()));
    }
    let mut peek = &frame[..8];
    let raw_key = peek.get_i16();
    let version = peek.get_i16();
    let correlation_id = peek.get_i32();
    let api_key = ApiKey::try_from(raw_key).map_err(|_| ApiError::UnknownApiKey(raw_key))?;
    if !versions::is_supported(api_key, version) {
        if api_key == ApiKey::ApiVersions {
            return Ok(Decoded::UnsupportedApiVersions { correlation_id });
        }
        return Err(ApiError::UnsupportedVersion { api: api_key, version });
    }
    let mut buf = frame;
    let decode_err = |e: anyhow::Error| ApiError::Decode { api: api_key, version, reason: e.to_string() };
    let header = RequestHeader::decode(&mut buf, api_key.request_header_version(version)).map_err(decode_err)?;
    let request = RequestKind::decode(api_key, &mut buf, version).map_err(decode_err)?;
    let ctx = RequestContext { api_key, version, correlation_id, client_id: header.client_id };
    Ok(Decoded::Request(ctx, request))
}

/// Encodes the response header and body into one frame body (no length prefix).
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> Result<BytesMut, ApiError> {
    let encode_err = |e: anyhow::Error| ApiError::Encode { api: api_key, version, reason: e.to_string() };
    let mut out = BytesMut::with_capacity(64);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    header.encode(&mut out, api_key.response_header_version(version)).map_err(encode_err)?;
    response.encode(&mut out, version).map_err(encode_err)?;
    Ok(out)
}

/// Writes a frame's 4-byte length prefix in front of `body`.
pub fn with_length_prefix(body: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(body.len() + 4);
    out.put_u32(body.len() as u32);
    out.put_slice(body);
    out
}

pub(crate) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}
