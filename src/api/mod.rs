//! The only place that knows Kafka requests: one file per API, one dispatch match, one
//! version table ([`versions`]), one map from internal errors to Kafka codes ([`errors`]).
//!
//! [`Api::handle_frame`] takes one request frame (without its length prefix) and returns the
//! encoded response frame (length prefix included, as chunks: see [`response_frame`]), `None` when Kafka sends no response (Produce with acks=0), or an
//! error when the connection must be closed (unparseable header, unknown API, version we do
//! not serve), as Kafka does.

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_configs;
pub mod alter_partition;
pub mod alter_partition_reassignments;
pub mod authorized_operations;
pub mod cluster_membership;
pub mod config_change;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_topic_partitions;
pub mod describe_transactions;
pub mod elect_leaders;
pub mod end_txn;
pub mod error_codes;
pub mod errors;
pub mod fetch;
pub mod fetch_session;
pub mod get_telemetry_subscriptions;
pub mod heartbeat;
pub mod find_coordinator;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leader_hint;
pub mod leave_group;
pub mod list_config_resources;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod push_telemetry;
pub mod quorum;
pub mod response_frame;
pub mod sync_group;
pub mod txn_offset_commit;
pub mod update_features;
pub mod versions;
pub mod write_txn_markers;

use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use thiserror::Error;

use crate::broker::{Broker, BrokerError};
use crate::group::GroupCoordinator;
use crate::txn::TransactionCoordinator;
use crate::txn::markers::LocalMarkerWriter;
use crate::sync::lock;
use fetch_session::FetchSessionCache;
use response_frame::{ByReference, ChunkedBuf, ResponseFrame};

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
    /// The client's address as Kafka shows it (`/127.0.0.1`).
    pub client_host: String,
    /// The connection's peer, when it came over TCP.
    pub peer: Option<std::net::SocketAddr>,
}

/// The Kafka API of one broker: shared by every connection.
pub struct Api {
    pub broker: Arc<Broker>,
    pub fetch_sessions: Mutex<FetchSessionCache>,
    pub groups: Arc<GroupCoordinator>,
    pub txns: Arc<TransactionCoordinator>,
    /// Writes transaction markers into local partitions: for the coordinator and WriteTxnMarkers.
    pub markers: Arc<LocalMarkerWriter>,
    /// Asks the transaction coordinator, here or on another node, whether a partition is in
    /// a producer's transaction (KIP-890 part 1).
    pub txn_verifier: crate::cluster::txn_verify::TxnVerifier,
    /// The metadata quorum on a controller of a multi-node quorum; none on a single node.
    raft: std::sync::OnceLock<crate::raft::driver::RaftHandle>,
    /// The leader side of the replication throttle (`leader.replication.throttled.rate`):
    /// bytes served to followers of throttled replicas draw on it.
    pub(crate) leader_throttle: Mutex<crate::replication::throttle::TokenBucket>,
    /// Client telemetry instances and subscriptions (KIP-714).
    pub telemetry: crate::telemetry::manager::ClientMetricsManager,
    /// The client software each open connection named in ApiVersions v3+ (KIP-511), for
    /// client-metrics `match` patterns; one entry per connection, removed when it closes.
    client_software: Mutex<std::collections::HashMap<std::net::SocketAddr, (String, String)>>,
}

/// A handler's answer: a response, or nothing at all (acks=0). Responses are large and
/// short-lived; boxing them would cost an allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Reply {
    Response(ResponseKind),
    /// A response whose record sets (registered in encoding order) go by reference.
    WithRecords(ResponseKind, Vec<ByReference>),
    NoResponse,
    /// Close the connection without answering.
    Close,
}

impl Api {
    /// Sets up the API of `broker`, including the group coordinator (which loads
    /// `__consumer_offsets`) and then the transaction coordinator (which loads
    /// `__transaction_state` and completes what it left preparing, markers for offsets included).
    pub fn new(broker: Arc<Broker>) -> Result<Self, BrokerError> {
        let api = Self::unloaded(broker);
        api.start_coordinators()?;
        Ok(api)
    }

    /// Loads the group coordinator, then the transaction coordinator (which completes what
    /// it left preparing, offsets included).
    pub fn start_coordinators(&self) -> Result<(), BrokerError> {
        self.groups.start()?;
        self.txns.start();
        Ok(())
    }

    /// As [`Api::new`] but the coordinators have not loaded their topics yet (a cluster node
    /// loads them once its metadata caught up: [`Api::start_coordinators`]).
    pub fn unloaded(broker: Arc<Broker>) -> Self {
        broker.metrics.register_apis(versions::SERVED.iter().map(|s| s.api));
        let slots = broker.config.settings().socket.fetch_session_slots_max;
        let groups = GroupCoordinator::new(broker.clone());
        let markers = Arc::new(LocalMarkerWriter::new(broker.clone(), groups.clone()));
        let transport = Arc::new(crate::cluster::txn_markers::BrokerMarkerTransport::new(broker.clone(), markers.clone()));
        let txns = TransactionCoordinator::new(broker.clone(), transport);
        let txn_verifier = crate::cluster::txn_verify::TxnVerifier::new(broker.clone(), txns.clone());
        let leader_throttle = Mutex::new(crate::replication::throttle::TokenBucket::new(broker.clock.now_ms()));
        let telemetry = crate::telemetry::manager::ClientMetricsManager::new(broker.config.settings().telemetry_max_bytes);
        Self {
            broker,
            fetch_sessions: Mutex::new(FetchSessionCache::new(slots)),
            groups,
            txns,
            markers,
            txn_verifier,
            raft: std::sync::OnceLock::new(),
            leader_throttle,
            telemetry,
            client_software: Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// A client connection ended. When a broker heartbeated on it and this node is the active
    /// controller, the broker's process may be gone: probe it (see
    /// [`crate::cluster::active::probe_and_fence`]).
    pub fn connection_closed(&self, peer: std::net::SocketAddr) {
        lock(&self.client_software).remove(&peer);
        self.telemetry.connection_closed(peer);
        let Some(cluster) = self.broker.cluster() else { return };
        let Some((id, epoch)) = cluster.heartbeat_connection_closed(peer) else { return };
        if cluster.is_active_controller() && !cluster.shutting_down() {
            tokio::spawn(crate::cluster::active::probe_and_fence(self.broker.clone(), cluster.clone(), id, epoch));
        }
    }

    /// What a telemetry request's context tells about its client.
    pub(crate) fn client_info(&self, ctx: &RequestContext) -> crate::telemetry::manager::ClientInfo {
        let software = ctx.peer.and_then(|p| lock(&self.client_software).get(&p).cloned());
        crate::telemetry::manager::ClientInfo {
            client_id: ctx.client_id.as_ref().map(|c| c.to_string()),
            software_name: software.as_ref().map(|s| s.0.clone()),
            software_version: software.map(|s| s.1),
            peer: ctx.peer,
        }
    }

    /// Attaches the metadata quorum (once, at start-up) so the KRaft APIs reach it.
    pub fn set_raft(&self, raft: crate::raft::driver::RaftHandle) {
        let _ = self.raft.set(raft);
    }

    pub fn raft(&self) -> Option<&crate::raft::driver::RaftHandle> {
        self.raft.get()
    }

    /// In a cluster, a metadata change reaching a node that is not the active controller goes
    /// to the active controller, and its answer back to the client, as Kafka's brokers forward
    /// them. `None`: handle it here (this node is the active controller or a single node, or
    /// the controller could not be reached, in which case the local handler answers
    /// NOT_CONTROLLER and the client retries).
    async fn forward<R>(&self, req: &R, version: i16) -> Option<R::Response>
    where
        R: kafka_protocol::protocol::Request + kafka_protocol::protocol::Encodable + kafka_protocol::protocol::HeaderVersion,
        R::Response: kafka_protocol::protocol::Decodable + kafka_protocol::protocol::HeaderVersion,
    {
        let cluster = self.broker.cluster()?;
        if cluster.is_active_controller() {
            return None;
        }
        match cluster.call_controller(req, version).await {
            Ok((_, r)) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "forwarding to the active controller failed");
                None
            }
        }
    }

    /// Decodes, handles and encodes one request frame.
    pub async fn handle_frame(&self, frame: Bytes, client_host: &str) -> Result<Option<ResponseFrame>, ApiError> {
        self.handle_frame_from(frame, client_host, None).await
    }

    /// [`Api::handle_frame`] of a request that came from `peer`.
    pub async fn handle_frame_from(&self, frame: Bytes, client_host: &str, peer: Option<std::net::SocketAddr>) -> Result<Option<ResponseFrame>, ApiError> {
        let received = std::time::Instant::now();
        let (mut ctx, request) = match decode_request(frame)? {
            Decoded::Request(ctx, request) => (ctx, request),
            Decoded::UnsupportedApiVersions { correlation_id } => {
                // A newer client than us: answer v0 with UNSUPPORTED_VERSION and our table, so
                // it can pick a version we speak (KIP-511).
                return versions::unsupported_version_response(correlation_id).map(Some);
            }
        };
        ctx.client_host = client_host.to_string();
        ctx.peer = peer;
        let span = tracing::debug_span!("request", api = ?ctx.api_key, version = ctx.version, correlation_id = ctx.correlation_id);
        let _enter = span.enter();
        let started = std::time::Instant::now();
        let metrics = self.broker.metrics.api(ctx.api_key);
        let out = match self.dispatch(&ctx, request).await {
            Reply::Response(response) => {
                if let Some(m) = metrics {
                    error_codes::for_each(&response, |code| m.record_error(code, 1));
                }
                encode_response(ctx.api_key, ctx.version, ctx.correlation_id, &response, &[]).map(Some)
            }
            Reply::WithRecords(response, by_reference) => {
                if let Some(m) = metrics {
                    error_codes::for_each(&response, |code| m.record_error(code, 1));
                }
                encode_response(ctx.api_key, ctx.version, ctx.correlation_id, &response, &by_reference).map(Some)
            }
            Reply::NoResponse => Ok(None),
            Reply::Close => Err(ApiError::AcksZeroFailed),
        };
        if let Some(m) = metrics {
            m.record(started - received, received.elapsed());
        }
        out
    }

    async fn dispatch(&self, ctx: &RequestContext, request: RequestKind) -> Reply {
        use RequestKind as R;
        use ResponseKind as S;
        let v = ctx.version;
        let r = match request {
            R::ApiVersions(req) => {
                if let (Some(peer), true) = (ctx.peer, v >= 3) {
                    let software = (req.client_software_name.to_string(), req.client_software_version.to_string());
                    lock(&self.client_software).insert(peer, software);
                }
                S::ApiVersions(versions::handle(self, ctx, req))
            }
            R::Metadata(req) => S::Metadata(metadata::handle(self, ctx, req)),
            R::Produce(req) => return produce::handle(self, ctx, req).await,
            R::Fetch(req) if quorum::is_metadata_fetch(&req) => S::Fetch(quorum::fetch(self, v, req).await),
            R::Fetch(req) => {
                let (response, by_reference) = fetch::handle(self, ctx, req).await;
                return Reply::WithRecords(S::Fetch(response), by_reference);
            }
            R::ListOffsets(req) => S::ListOffsets(list_offsets::handle(self, v, req)),
            // Metadata changes: made by the active controller; another node forwards them.
            R::CreateTopics(req) => match self.forward(&req, v).await {
                Some(r) => S::CreateTopics(r),
                None => S::CreateTopics(create_topics::handle(self, v, req)),
            },
            R::DeleteTopics(req) => match self.forward(&req, v).await {
                Some(r) => S::DeleteTopics(r),
                None => S::DeleteTopics(delete_topics::handle(self, v, req)),
            },
            R::ElectLeaders(req) => match self.forward(&req, v).await {
                Some(r) => S::ElectLeaders(r),
                None => S::ElectLeaders(elect_leaders::handle(self, v, req)),
            },
            R::CreatePartitions(req) => match self.forward(&req, v).await {
                Some(r) => S::CreatePartitions(r),
                None => S::CreatePartitions(create_partitions::handle(self, req)),
            },
            R::DescribeConfigs(req) => S::DescribeConfigs(describe_configs::handle(self, v, req)),
            R::DescribeLogDirs(req) => S::DescribeLogDirs(describe_log_dirs::handle(self, req)),
            R::IncrementalAlterConfigs(req) => match self.forward(&req, v).await {
                Some(r) => S::IncrementalAlterConfigs(r),
                None => S::IncrementalAlterConfigs(incremental_alter_configs::handle(self, req)),
            },
            R::AlterConfigs(req) => match self.forward(&req, v).await {
                Some(r) => S::AlterConfigs(r),
                None => S::AlterConfigs(alter_configs::handle(self, req)),
            },
            R::JoinGroup(req) => S::JoinGroup(join_group::handle(self, ctx, req).await),
            R::SyncGroup(req) => S::SyncGroup(sync_group::handle(self, ctx, req).await),
            R::Heartbeat(req) => S::Heartbeat(heartbeat::handle(self, req)),
            R::LeaveGroup(req) => S::LeaveGroup(leave_group::handle(self, v, req)),
            R::OffsetCommit(req) => S::OffsetCommit(offset_commit::handle(self, v, req).await),
            R::OffsetFetch(req) => S::OffsetFetch(offset_fetch::handle(self, v, req)),
            R::DescribeGroups(req) => S::DescribeGroups(describe_groups::handle(self, v, req)),
            R::ListGroups(req) => S::ListGroups(list_groups::handle(self, v, req)),
            R::ListConfigResources(req) => S::ListConfigResources(list_config_resources::handle(self, v, req)),
            R::GetTelemetrySubscriptions(req) => S::GetTelemetrySubscriptions(get_telemetry_subscriptions::handle(self, ctx, req)),
            R::PushTelemetry(req) => S::PushTelemetry(push_telemetry::handle(self, ctx, req)),
            R::DeleteGroups(req) => S::DeleteGroups(delete_groups::handle(self, req).await),
            R::OffsetDelete(req) => S::OffsetDelete(offset_delete::handle(self, req).await),
            R::ConsumerGroupHeartbeat(req) => S::ConsumerGroupHeartbeat(consumer_group_heartbeat::handle(self, ctx, req)),
            R::ConsumerGroupDescribe(req) => S::ConsumerGroupDescribe(consumer_group_describe::handle(self, v, req)),
            R::FindCoordinator(req) => S::FindCoordinator(find_coordinator::handle(self, v, req)),
            R::DescribeCluster(req) => S::DescribeCluster(describe_cluster::handle(self, req)),
            R::DescribeTopicPartitions(req) => S::DescribeTopicPartitions(describe_topic_partitions::handle(self, req)),
            R::DeleteRecords(req) => S::DeleteRecords(delete_records::handle(self, req)),
            R::InitProducerId(req) => S::InitProducerId(init_producer_id::handle(self, v, req).await),
            R::AddPartitionsToTxn(req) => S::AddPartitionsToTxn(add_partitions_to_txn::handle(self, v, req).await),
            R::AddOffsetsToTxn(req) => S::AddOffsetsToTxn(add_offsets_to_txn::handle(self, v, req).await),
            R::EndTxn(req) => S::EndTxn(end_txn::handle(self, v, req).await),
            R::TxnOffsetCommit(req) => S::TxnOffsetCommit(txn_offset_commit::handle(self, v, req).await),
            R::WriteTxnMarkers(req) => S::WriteTxnMarkers(write_txn_markers::handle(self, req).await),
            R::DescribeTransactions(req) => S::DescribeTransactions(describe_transactions::handle(self, req)),
            R::ListTransactions(req) => S::ListTransactions(list_transactions::handle(self, req)),
            R::DescribeProducers(req) => S::DescribeProducers(describe_producers::handle(self, req)),
            R::OffsetForLeaderEpoch(req) => S::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(self, req)),
            R::AlterPartitionReassignments(req) => match self.forward(&req, v).await {
                Some(r) => S::AlterPartitionReassignments(r),
                None => S::AlterPartitionReassignments(alter_partition_reassignments::handle(self, req)),
            },
            R::ListPartitionReassignments(req) => match self.forward(&req, v).await {
                Some(r) => S::ListPartitionReassignments(r),
                None => S::ListPartitionReassignments(list_partition_reassignments::handle(self, req)),
            },
            R::UpdateFeatures(req) => match self.forward(&req, v).await {
                Some(r) => S::UpdateFeatures(r),
                None => S::UpdateFeatures(update_features::handle(self, v, req)),
            },
            R::BrokerRegistration(req) => S::BrokerRegistration(cluster_membership::broker_registration(self, v, req)),
            R::BrokerHeartbeat(req) => S::BrokerHeartbeat(cluster_membership::broker_heartbeat(self, ctx.peer, req)),
            R::AllocateProducerIds(req) => S::AllocateProducerIds(cluster_membership::allocate_producer_ids(self, req)),
            R::AlterPartition(req) => S::AlterPartition(alter_partition::handle(self, v, req)),
            R::Vote(req) => S::Vote(quorum::vote(self, req).await),
            R::BeginQuorumEpoch(req) => S::BeginQuorumEpoch(quorum::begin_quorum_epoch(self, req).await),
            R::EndQuorumEpoch(req) => S::EndQuorumEpoch(quorum::end_quorum_epoch(self, req).await),
            R::FetchSnapshot(req) => S::FetchSnapshot(quorum::fetch_snapshot(self, req).await),
            R::DescribeQuorum(req) => S::DescribeQuorum(quorum::describe_quorum(self, v, req).await),
            // The version table admits only the APIs above, so nothing else gets this far.
            _ => return Reply::Close,
        };
        Reply::Response(r)
    }
}

/// A decoded request frame.
#[allow(clippy::large_enum_variant)]
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
    let ctx = RequestContext { api_key, version, correlation_id, client_id: header.client_id, client_host: String::new(), peer: None };
    Ok(Decoded::Request(ctx, request))
}

/// Encodes the response header and body into one frame body (no length prefix).
/// Encodes a response frame (length prefix included); `by_reference` are its record sets
/// to keep out of the encoder, in encoding order (see [`response_frame`]).
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
    by_reference: &[ByReference],
) -> Result<ResponseFrame, ApiError> {
    let encode_err = |e: anyhow::Error| ApiError::Encode { api: api_key, version, reason: e.to_string() };
    let mut out = ChunkedBuf::new(by_reference);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    header.encode(&mut out, api_key.response_header_version(version)).map_err(encode_err)?;
    match response {
        // Only Fetch carries record sets worth sharing; `ResponseKind::encode` wants a
        // `BytesMut`, so the others are encoded into one and appended as a chunk.
        ResponseKind::Fetch(r) => r.encode(&mut out, version).map_err(encode_err)?,
        other => {
            let mut body = bytes::BytesMut::with_capacity(64);
            other.encode(&mut body, version).map_err(encode_err)?;
            out.push_chunk(body.freeze());
        }
    }
    out.finish().map_err(|e| ApiError::Encode { api: api_key, version, reason: e.to_string() })
}

/// Waits until everything the group coordinator wrote to `group`'s partition is replicated
/// (`offsets.commit.timeout.ms` at most): a write is answered only then, with the error
/// Kafka's coordinator answers otherwise.
pub(crate) async fn replicated(api: &Api, group: &str) -> Result<(), kafka_protocol::ResponseError> {
    match api.groups.write_barrier(group) {
        Some(barrier) => barrier.replicated(api.groups.write_timeout()).await,
        None => Err(kafka_protocol::ResponseError::NotCoordinator),
    }
}

/// Waits until everything the transaction coordinator wrote to `transactional_id`'s
/// partition is replicated (`request.timeout.ms` at most).
pub(crate) async fn txn_replicated(api: &Api, transactional_id: &str) -> Result<(), kafka_protocol::ResponseError> {
    match api.txns.write_barrier(transactional_id) {
        Some(barrier) => barrier.replicated(api.txns.write_timeout()).await,
        None => Err(kafka_protocol::ResponseError::NotCoordinator),
    }
}


pub(crate) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// An API over a fresh broker in `dir` with `overrides`, for handler tests.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn test_api(dir: &std::path::Path, overrides: &[&str]) -> Api {
    let mut all = vec![
        format!("log.dirs={}", dir.display()),
        "offsets.topic.num.partitions=1".to_string(),
        "transaction.state.log.num.partitions=1".to_string(),
    ];
    all.extend(overrides.iter().map(|o| o.to_string()));
    let config = crate::config::BrokerConfig::load(None, &all).unwrap();
    let broker = Broker::open(config, Arc::new(crate::clock::SystemClock)).unwrap();
    Api::new(broker).unwrap()
}

#[cfg(test)]
mod tests_txn;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! Every served version of every handler must produce a response that encodes: the codec
    //! refuses fields set outside their versions, so a handler that fills a newer field
    //! unconditionally breaks older clients (kcat uses ListOffsets v2, for example).

    use std::sync::Arc;

    use bytes::Bytes;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::clock::SystemClock;
    use crate::config::BrokerConfig;
    use crate::record::{BatchBuilder, Record};

    fn name(s: &str) -> TopicName {
        TopicName(StrBytes::from_string(s.to_string()))
    }

    fn requests(api: ApiKey, version: i16, topic_id: uuid::Uuid) -> Vec<RequestKind> {
        let by_id = |v: i16, min: i16| v >= min;
        match api {
            ApiKey::Produce => {
                let mut p = produce_request::PartitionProduceData::default();
                let batch = BatchBuilder::new(0)
                    .record(Record { timestamp_delta_ms: 0, key: Some(b"k".to_vec()), value: Some(b"v".to_vec()) })
                    .build();
                p.records = Some(Bytes::from(batch));
                let mut t = produce_request::TopicProduceData::default();
                if by_id(version, 13) {
                    t.topic_id = topic_id;
                } else {
                    t.name = name("t");
                }
                t.partition_data = vec![p.clone(), { let mut q = p; q.index = 9; q }];
                let mut r = ProduceRequest::default();
                r.acks = -1;
                r.topic_data = vec![t];
                vec![RequestKind::Produce(r)]
            }
            ApiKey::Fetch => {
                let mut p = fetch_request::FetchPartition::default();
                p.partition_max_bytes = 1 << 20;
                let mut t = fetch_request::FetchTopic::default();
                if by_id(version, 13) {
                    t.topic_id = topic_id;
                } else {
                    t.topic = name("t");
                }
                t.partitions = vec![p.clone(), { let mut q = p.clone(); q.fetch_offset = 99; q }, { let mut q = p; q.partition = 7; q }];
                let mut r = FetchRequest::default();
                r.max_bytes = 1 << 20;
                r.topics = vec![t];
                let mut with_session = r.clone();
                with_session.session_epoch = 0;
                vec![RequestKind::Fetch(r), RequestKind::Fetch(with_session)]
            }
            ApiKey::ListOffsets => [-1i64, -2, -3, 0, 5]
                .iter()
                .map(|ts| {
                    let mut p = list_offsets_request::ListOffsetsPartition::default();
                    p.timestamp = *ts;
                    let mut t = list_offsets_request::ListOffsetsTopic::default();
                    t.name = name("t");
                    t.partitions = vec![p];
                    let mut r = ListOffsetsRequest::default();
                    r.topics = vec![t];
                    RequestKind::ListOffsets(r)
                })
                .collect(),
            ApiKey::Metadata => {
                let mut t = metadata_request::MetadataRequestTopic::default();
                t.name = Some(name("t"));
                let mut u = metadata_request::MetadataRequestTopic::default();
                u.name = Some(name("unknown"));
                let mut r = MetadataRequest::default();
                r.topics = Some(vec![t, u]);
                let mut asking = r.clone();
                asking.include_topic_authorized_operations = version >= 8;
                asking.include_cluster_authorized_operations = (8..=10).contains(&version);
                vec![RequestKind::Metadata(MetadataRequest::default()), RequestKind::Metadata(r), RequestKind::Metadata(asking)]
            }
            ApiKey::ApiVersions => vec![RequestKind::ApiVersions(ApiVersionsRequest::default())],
            // With no quorum on this node every KRaft request gets a top-level error.
            ApiKey::Vote => vec![RequestKind::Vote(VoteRequest::default())],
            ApiKey::BeginQuorumEpoch => vec![RequestKind::BeginQuorumEpoch(BeginQuorumEpochRequest::default())],
            ApiKey::EndQuorumEpoch => vec![RequestKind::EndQuorumEpoch(EndQuorumEpochRequest::default())],
            ApiKey::FetchSnapshot => vec![RequestKind::FetchSnapshot(FetchSnapshotRequest::default())],
            ApiKey::DescribeQuorum => vec![RequestKind::DescribeQuorum(DescribeQuorumRequest::default())],
            ApiKey::BrokerRegistration => vec![RequestKind::BrokerRegistration(BrokerRegistrationRequest::default())],
            ApiKey::BrokerHeartbeat => vec![RequestKind::BrokerHeartbeat(BrokerHeartbeatRequest::default())],
            ApiKey::AllocateProducerIds => vec![RequestKind::AllocateProducerIds(AllocateProducerIdsRequest::default())],
            ApiKey::AlterPartition => vec![RequestKind::AlterPartition(AlterPartitionRequest::default())],
            ApiKey::DescribeLogDirs => {
                let mut t = describe_log_dirs_request::DescribableLogDirTopic::default();
                t.topic = name("t");
                t.partitions = vec![0, 7];
                let mut r = DescribeLogDirsRequest::default();
                r.topics = Some(vec![t]);
                vec![RequestKind::DescribeLogDirs(DescribeLogDirsRequest::default()), RequestKind::DescribeLogDirs(r)]
            }
            ApiKey::AlterPartitionReassignments => {
                let mut p = alter_partition_reassignments_request::ReassignablePartition::default();
                p.replicas = Some(vec![BrokerId(99)]);
                let mut cancel = p.clone();
                cancel.replicas = None;
                let mut t = alter_partition_reassignments_request::ReassignableTopic::default();
                t.name = name("t");
                t.partitions = vec![p, cancel];
                let mut r = AlterPartitionReassignmentsRequest::default();
                r.topics = vec![t];
                vec![RequestKind::AlterPartitionReassignments(r)]
            }
            ApiKey::ListPartitionReassignments => {
                let mut t = list_partition_reassignments_request::ListPartitionReassignmentsTopics::default();
                t.name = name("t");
                t.partition_indexes = vec![0];
                let mut r = ListPartitionReassignmentsRequest::default();
                r.topics = Some(vec![t]);
                vec![RequestKind::ListPartitionReassignments(ListPartitionReassignmentsRequest::default()), RequestKind::ListPartitionReassignments(r)]
            }
            ApiKey::UpdateFeatures => {
                let mut u = update_features_request::FeatureUpdateKey::default();
                u.feature = StrBytes::from_static_str("group.version");
                u.max_version_level = 1;
                u.upgrade_type = 1;
                let mut bad = u.clone();
                bad.feature = StrBytes::from_static_str("no.such.feature");
                let mut r = UpdateFeaturesRequest::default();
                r.feature_updates = vec![u];
                r.validate_only = version >= 1;
                let mut refused = r.clone();
                refused.feature_updates.push(bad);
                vec![RequestKind::UpdateFeatures(r), RequestKind::UpdateFeatures(refused)]
            }
            ApiKey::CreateTopics => {
                let mut t = create_topics_request::CreatableTopic::default();
                t.name = name(&format!("new-{version}"));
                t.num_partitions = 1;
                t.replication_factor = 1;
                let mut bad = t.clone();
                bad.name = name("bad name");
                let mut r = CreateTopicsRequest::default();
                r.topics = vec![t, bad];
                vec![RequestKind::CreateTopics(r)]
            }
            ApiKey::DeleteTopics => {
                let mut r = DeleteTopicsRequest::default();
                if version >= 6 {
                    let mut s = delete_topics_request::DeleteTopicState::default();
                    s.name = Some(name("nope"));
                    r.topics = vec![s];
                } else {
                    r.topic_names = vec![name("nope")];
                }
                vec![RequestKind::DeleteTopics(r)]
            }
            ApiKey::DeleteRecords => {
                let mut p = delete_records_request::DeleteRecordsPartition::default();
                p.offset = 0;
                let mut t = delete_records_request::DeleteRecordsTopic::default();
                t.name = name("t");
                t.partitions = vec![p];
                let mut r = DeleteRecordsRequest::default();
                r.topics = vec![t];
                vec![RequestKind::DeleteRecords(r)]
            }
            ApiKey::InitProducerId => {
                let mut r = InitProducerIdRequest::default();
                r.transactional_id = None;
                let mut txn = tests_txn::requests(api, version).unwrap_or_default();
                txn.insert(0, RequestKind::InitProducerId(r));
                txn
            }
            ApiKey::OffsetForLeaderEpoch => {
                let mut p = offset_for_leader_epoch_request::OffsetForLeaderPartition::default();
                p.leader_epoch = 0;
                let mut t = offset_for_leader_epoch_request::OffsetForLeaderTopic::default();
                t.topic = name("t");
                t.partitions = vec![p];
                let mut r = OffsetForLeaderEpochRequest::default();
                r.topics = vec![t];
                vec![RequestKind::OffsetForLeaderEpoch(r)]
            }
            ApiKey::DescribeConfigs => {
                let mut topic = describe_configs_request::DescribeConfigsResource::default();
                topic.resource_type = 2;
                topic.resource_name = StrBytes::from_static_str("t");
                let mut broker = describe_configs_request::DescribeConfigsResource::default();
                broker.resource_type = 4;
                broker.resource_name = StrBytes::from_static_str("1");
                let mut r = DescribeConfigsRequest::default();
                r.resources = vec![topic, broker];
                r.include_synonyms = version >= 1;
                r.include_documentation = version >= 3;
                vec![RequestKind::DescribeConfigs(r)]
            }
            ApiKey::ElectLeaders => {
                let mut t = elect_leaders_request::TopicPartitions::default();
                t.topic = name("t");
                t.partitions = vec![0];
                let mut named = ElectLeadersRequest::default();
                named.topic_partitions = Some(vec![t]);
                vec![RequestKind::ElectLeaders(ElectLeadersRequest::default()), RequestKind::ElectLeaders(named)]
            }
            ApiKey::CreatePartitions => {
                let mut t = create_partitions_request::CreatePartitionsTopic::default();
                t.name = name("t");
                t.count = 1;
                let mut r = CreatePartitionsRequest::default();
                r.topics = vec![t];
                vec![RequestKind::CreatePartitions(r)]
            }
            ApiKey::IncrementalAlterConfigs => {
                let mut c = incremental_alter_configs_request::AlterableConfig::default();
                c.name = StrBytes::from_static_str("retention.ms");
                c.value = Some(StrBytes::from_static_str("1000"));
                let mut res = incremental_alter_configs_request::AlterConfigsResource::default();
                res.resource_type = 2;
                res.resource_name = StrBytes::from_static_str("t");
                res.configs = vec![c];
                let mut r = IncrementalAlterConfigsRequest::default();
                r.resources = vec![res];
                vec![RequestKind::IncrementalAlterConfigs(r)]
            }
            ApiKey::AlterConfigs => {
                let mut c = alter_configs_request::AlterableConfig::default();
                c.name = StrBytes::from_static_str("retention.ms");
                c.value = Some(StrBytes::from_static_str("1000"));
                let mut res = alter_configs_request::AlterConfigsResource::default();
                res.resource_type = 2;
                res.resource_name = StrBytes::from_static_str("t");
                res.configs = vec![c];
                let mut bad = res.clone();
                bad.resource_type = 8;
                let mut r = AlterConfigsRequest::default();
                r.resources = vec![res, bad];
                vec![RequestKind::AlterConfigs(r)]
            }
            ApiKey::DescribeTopicPartitions => {
                let mut t = describe_topic_partitions_request::TopicRequest::default();
                t.name = name("t");
                let mut r = DescribeTopicPartitionsRequest::default();
                r.topics = vec![t];
                r.response_partition_limit = 1;
                vec![RequestKind::DescribeTopicPartitions(DescribeTopicPartitionsRequest::default()), RequestKind::DescribeTopicPartitions(r)]
            }
            ApiKey::DescribeCluster => {
                let mut asking = DescribeClusterRequest::default();
                asking.include_cluster_authorized_operations = true;
                vec![RequestKind::DescribeCluster(DescribeClusterRequest::default()), RequestKind::DescribeCluster(asking)]
            }
            ApiKey::JoinGroup => {
                let mut p = join_group_request::JoinGroupRequestProtocol::default();
                p.name = StrBytes::from_static_str("range");
                p.metadata = Bytes::from_static(&[0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 0]);
                let mut r = JoinGroupRequest::default();
                r.group_id = GroupId(StrBytes::from_string(format!("g{version}")));
                r.session_timeout_ms = 10_000;
                r.rebalance_timeout_ms = 10_000;
                r.protocol_type = StrBytes::from_static_str("consumer");
                r.protocols = vec![p];
                vec![RequestKind::JoinGroup(r)]
            }
            ApiKey::SyncGroup => {
                let mut r = SyncGroupRequest::default();
                r.group_id = GroupId(StrBytes::from_static_str("g0"));
                r.member_id = StrBytes::from_static_str("nobody");
                vec![RequestKind::SyncGroup(r)]
            }
            ApiKey::Heartbeat => {
                let mut r = HeartbeatRequest::default();
                r.group_id = GroupId(StrBytes::from_static_str("g0"));
                vec![RequestKind::Heartbeat(r)]
            }
            ApiKey::LeaveGroup => {
                let mut r = LeaveGroupRequest::default();
                r.group_id = GroupId(StrBytes::from_static_str("g0"));
                if version >= 3 {
                    let mut m = leave_group_request::MemberIdentity::default();
                    m.member_id = StrBytes::from_static_str("nobody");
                    r.members = vec![m];
                } else {
                    r.member_id = StrBytes::from_static_str("nobody");
                }
                vec![RequestKind::LeaveGroup(r)]
            }
            ApiKey::OffsetCommit => {
                let mut p = offset_commit_request::OffsetCommitRequestPartition::default();
                p.committed_offset = 1;
                let mut t = offset_commit_request::OffsetCommitRequestTopic::default();
                t.name = name("t");
                t.partitions = vec![p.clone(), { let mut q = p; q.partition_index = 9; q }];
                let mut r = OffsetCommitRequest::default();
                r.group_id = GroupId(StrBytes::from_static_str("simple"));
                r.generation_id_or_member_epoch = -1;
                r.topics = vec![t];
                vec![RequestKind::OffsetCommit(r)]
            }
            ApiKey::OffsetFetch => {
                let mut r = OffsetFetchRequest::default();
                if version >= 8 {
                    let mut t = offset_fetch_request::OffsetFetchRequestTopics::default();
                    t.name = name("t");
                    t.partition_indexes = vec![0, 1];
                    let mut g = offset_fetch_request::OffsetFetchRequestGroup::default();
                    g.group_id = GroupId(StrBytes::from_static_str("simple"));
                    g.topics = Some(vec![t]);
                    let mut all = g.clone();
                    all.topics = None;
                    r.groups = vec![g, all];
                } else {
                    let mut t = offset_fetch_request::OffsetFetchRequestTopic::default();
                    t.name = name("t");
                    t.partition_indexes = vec![0, 1];
                    r.group_id = GroupId(StrBytes::from_static_str("simple"));
                    r.topics = Some(vec![t]);
                }
                vec![RequestKind::OffsetFetch(r)]
            }
            ApiKey::DescribeGroups => {
                let mut r = DescribeGroupsRequest::default();
                r.groups = vec![GroupId(StrBytes::from_static_str("g9")), GroupId(StrBytes::from_static_str("nope"))];
                let mut asking = r.clone();
                asking.include_authorized_operations = version >= 3;
                vec![RequestKind::DescribeGroups(r), RequestKind::DescribeGroups(asking)]
            }
            ApiKey::ListGroups => vec![RequestKind::ListGroups(ListGroupsRequest::default())],
            ApiKey::GetTelemetrySubscriptions => vec![RequestKind::GetTelemetrySubscriptions(GetTelemetrySubscriptionsRequest::default())],
            ApiKey::PushTelemetry => {
                let mut r = PushTelemetryRequest::default();
                r.client_instance_id = uuid::Uuid::from_u128(7);
                r.metrics = Bytes::from_static(b"not protobuf");
                vec![RequestKind::PushTelemetry(PushTelemetryRequest::default()), RequestKind::PushTelemetry(r)]
            }
            ApiKey::ListConfigResources => {
                let mut typed = ListConfigResourcesRequest::default();
                if version >= 1 {
                    typed.resource_types = vec![2, 16];
                }
                vec![RequestKind::ListConfigResources(ListConfigResourcesRequest::default()), RequestKind::ListConfigResources(typed)]
            }
            ApiKey::DeleteGroups => {
                let mut r = DeleteGroupsRequest::default();
                r.groups_names = vec![GroupId(StrBytes::from_static_str("nope"))];
                vec![RequestKind::DeleteGroups(r)]
            }
            ApiKey::OffsetDelete => {
                let mut p = offset_delete_request::OffsetDeleteRequestPartition::default();
                p.partition_index = 0;
                let mut t = offset_delete_request::OffsetDeleteRequestTopic::default();
                t.name = name("t");
                t.partitions = vec![p];
                let mut r = OffsetDeleteRequest::default();
                r.group_id = GroupId(StrBytes::from_static_str("simple"));
                r.topics = vec![t];
                vec![RequestKind::OffsetDelete(r)]
            }
            ApiKey::ConsumerGroupHeartbeat => {
                let mut r = ConsumerGroupHeartbeatRequest::default();
                r.group_id = GroupId(StrBytes::from_string(format!("cg{version}")));
                r.member_id = StrBytes::from_string(format!("m{version}"));
                r.member_epoch = 0;
                r.rebalance_timeout_ms = 10_000;
                r.subscribed_topic_names = Some(vec![name("t")]);
                if version >= 1 {
                    r.subscribed_topic_regex = Some(StrBytes::from_static_str("t.*"));
                }
                let mut stale = r.clone();
                stale.member_epoch = 5;
                vec![RequestKind::ConsumerGroupHeartbeat(r), RequestKind::ConsumerGroupHeartbeat(stale)]
            }
            ApiKey::ConsumerGroupDescribe => {
                let mut r = ConsumerGroupDescribeRequest::default();
                r.group_ids = vec![GroupId(StrBytes::from_static_str("cg0")), GroupId(StrBytes::from_static_str("nope"))];
                let mut asking = r.clone();
                asking.include_authorized_operations = true;
                vec![RequestKind::ConsumerGroupDescribe(r), RequestKind::ConsumerGroupDescribe(asking)]
            }
            ApiKey::FindCoordinator => {
                let mut r = FindCoordinatorRequest::default();
                if version >= 4 {
                    r.coordinator_keys = vec![StrBytes::from_static_str("g1"), StrBytes::from_static_str("g2")];
                } else {
                    r.key = StrBytes::from_static_str("g1");
                }
                let mut bad = r.clone();
                bad.key_type = 9;
                vec![RequestKind::FindCoordinator(r), RequestKind::FindCoordinator(bad)]
            }
            other => tests_txn::requests(other, version).unwrap_or_else(|| panic!("add {other:?} to this test")),
        }
    }

    fn reply(rt: &tokio::runtime::Runtime, api: &Api, api_key: ApiKey, version: i16, req: RequestKind) -> ResponseKind {
        let ctx = RequestContext { api_key, version, correlation_id: 1, client_id: None, client_host: "/127.0.0.1".into(), peer: None };
        match rt.block_on(api.dispatch(&ctx, req)) {
            Reply::Response(resp) | Reply::WithRecords(resp, _) => resp,
            _ => panic!("{api_key:?} v{version}: no response"),
        }
    }

    /// With no authorizer Kafka answers every supported operation of the resource type when
    /// asked, and the omitted sentinel when not.
    #[test]
    fn authorized_operations_are_answered_only_when_asked() {
        use authorized_operations as ops;
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig::load(None, &[format!("log.dirs={}", dir.path().display()), "offsets.topic.num.partitions=1".into()]).unwrap();
        let broker = crate::broker::Broker::open(config, Arc::new(SystemClock)).unwrap();
        broker.auto_create_topic("t").unwrap();
        let api = Api::new(broker).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

        let mut m = MetadataRequest::default();
        m.topics = None;
        let mut asking = m.clone();
        asking.include_topic_authorized_operations = true;
        asking.include_cluster_authorized_operations = true;
        for (version, req, topic, cluster) in [
            (10, m.clone(), ops::OMITTED, ops::OMITTED),
            (10, asking.clone(), 3576, 8096),
            (12, asking.clone(), 3576, ops::OMITTED),
            (7, asking, ops::OMITTED, ops::OMITTED),
        ] {
            let ResponseKind::Metadata(r) = reply(&rt, &api, ApiKey::Metadata, version, RequestKind::Metadata(req)) else { panic!() };
            assert_eq!(r.cluster_authorized_operations, cluster, "v{version}");
            assert!(!r.topics.is_empty());
            assert!(r.topics.iter().all(|t| t.topic_authorized_operations == topic), "v{version}: {:?}", r.topics);
        }

        let mut d = DescribeClusterRequest::default();
        d.include_cluster_authorized_operations = true;
        let ResponseKind::DescribeCluster(r) = reply(&rt, &api, ApiKey::DescribeCluster, 1, RequestKind::DescribeCluster(d)) else { panic!() };
        assert_eq!(r.cluster_authorized_operations, 8096);
        let ResponseKind::DescribeCluster(r) =
            reply(&rt, &api, ApiKey::DescribeCluster, 1, RequestKind::DescribeCluster(DescribeClusterRequest::default()))
        else {
            panic!()
        };
        assert_eq!(r.cluster_authorized_operations, ops::OMITTED);

        let mut g = DescribeGroupsRequest::default();
        g.groups = vec![GroupId(StrBytes::from_static_str("some-group"))];
        g.include_authorized_operations = true;
        let ResponseKind::DescribeGroups(r) = reply(&rt, &api, ApiKey::DescribeGroups, 5, RequestKind::DescribeGroups(g.clone())) else { panic!() };
        assert_eq!(r.groups[0].authorized_operations, 3400);
        g.include_authorized_operations = false;
        let ResponseKind::DescribeGroups(r) = reply(&rt, &api, ApiKey::DescribeGroups, 5, RequestKind::DescribeGroups(g)) else { panic!() };
        assert_eq!(r.groups[0].authorized_operations, ops::OMITTED);

        let mut h = ConsumerGroupHeartbeatRequest::default();
        h.group_id = GroupId(StrBytes::from_static_str("cg"));
        h.member_id = StrBytes::from_static_str("m1");
        h.rebalance_timeout_ms = 10_000;
        h.subscribed_topic_names = Some(vec![name("t")]);
        reply(&rt, &api, ApiKey::ConsumerGroupHeartbeat, 1, RequestKind::ConsumerGroupHeartbeat(h));
        let mut c = ConsumerGroupDescribeRequest::default();
        c.group_ids = vec![GroupId(StrBytes::from_static_str("cg")), GroupId(StrBytes::from_static_str("nope"))];
        c.include_authorized_operations = true;
        let ResponseKind::ConsumerGroupDescribe(r) =
            reply(&rt, &api, ApiKey::ConsumerGroupDescribe, 1, RequestKind::ConsumerGroupDescribe(c))
        else {
            panic!()
        };
        assert_eq!(r.groups[0].error_code, 0, "{r:?}");
        assert_eq!(r.groups[0].authorized_operations, 3400);
        assert_eq!(r.groups[1].authorized_operations, ops::OMITTED, "only found groups get the field");
    }

    /// A broker holding topic "t", the API over it and a runtime to drive its handlers.
    struct Harness {
        _dir: tempfile::TempDir,
        api: Api,
        topic_id: uuid::Uuid,
        rt: tokio::runtime::Runtime,
    }

    fn harness() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig::load(
            None,
            &[
                format!("log.dirs={}", dir.path().display()),
                "group.initial.rebalance.delay.ms=0".into(),
                "offsets.topic.num.partitions=3".into(),
                "transaction.state.log.num.partitions=2".into(),
            ],
        )
        .unwrap();
        let broker = crate::broker::Broker::open(config, Arc::new(SystemClock)).unwrap();
        broker.auto_create_topic("t").unwrap();
        let topic_id = broker.topic_id("t").unwrap();
        let api = Api::new(broker).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Harness { _dir: dir, api, topic_id, rt }
    }

    /// Calls `check` with the response to each of [`requests`], for every served version of
    /// every served API.
    fn for_each_served_response(mut check: impl FnMut(ApiKey, i16, &ResponseKind)) {
        let h = harness();
        for s in versions::SERVED {
            for v in s.min..=s.max {
                for req in requests(s.api, v, h.topic_id) {
                    let ctx = RequestContext { api_key: s.api, version: v, correlation_id: 1, client_id: None, client_host: "/127.0.0.1".into(), peer: None };
                    match h.rt.block_on(h.api.dispatch(&ctx, req)) {
                        Reply::Response(resp) | Reply::WithRecords(resp, _) => check(s.api, v, &resp),
                        Reply::NoResponse => panic!("{:?} v{v}: no response", s.api),
                        Reply::Close => panic!("{:?} v{v}: closed", s.api),
                    }
                }
            }
        }
    }

    #[test]
    fn every_served_version_of_every_handler_encodes() {
        for_each_served_response(|api, v, resp| {
            if let Err(e) = encode_response(api, v, 1, resp, &[]) {
                panic!("{api:?} v{v}: {e}\n{resp:?}");
            }
        });
    }

    /// Paths (`coordinators.error_message`) of the nullable string fields holding `""` in a
    /// response's `Debug` text. kafka-protocol types a field that is nullable in any version as
    /// an `Option`, so every `Some("")` (or `Some(TopicName(""))`) is one.
    fn empty_nullable_strings(debug: &str) -> Vec<String> {
        let b = debug.as_bytes();
        let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        let mut out = Vec::new();
        // The field each open `{` belongs to (a list's elements all belong to the list field).
        let mut outer: Vec<String> = Vec::new();
        let mut current = String::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'"' => {
                    i += 1;
                    while i < b.len() && b[i] != b'"' {
                        i += if b[i] == b'\\' { 2 } else { 1 };
                    }
                }
                b'{' => outer.push(std::mem::take(&mut current)),
                b'}' => current = outer.pop().unwrap_or_default(),
                c if ident(c) && (i == 0 || !ident(b[i - 1])) => {
                    let start = i;
                    while i < b.len() && ident(b[i]) {
                        i += 1;
                    }
                    if debug[i..].starts_with(": ") {
                        current = debug[start..i].to_string();
                        let value = &debug[i + 2..];
                        let inner = value.strip_prefix("Some(").unwrap_or("");
                        // A newtype (`TopicName("")`), but not a byte string (`b""`, records).
                        let unwrapped = inner.trim_start_matches(|c: char| c.is_ascii_alphanumeric());
                        let rest = if unwrapped.len() == inner.len() { inner } else { unwrapped.strip_prefix('(').unwrap_or("") };
                        if rest.starts_with("\"\")") {
                            let mut path: Vec<&str> = outer.iter().map(String::as_str).filter(|f| !f.is_empty()).collect();
                            path.push(&current);
                            out.push(path.join("."));
                        }
                    }
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        out
    }

    /// Nullable string fields where Kafka itself answers `""` (up to a version), each with
    /// where it does so. Kafka's generated classes default a nullable string to `""` unless
    /// its spec says `"default": "null"`, so a handler that never sets one sends `""`.
    const EMPTY_AS_KAFKA: &[(ApiKey, &str, std::ops::RangeInclusive<i16>)] = &[
        // OffsetFetchResponse.NO_METADATA: an offset committed without metadata, or none.
        (ApiKey::OffsetFetch, "topics.partitions.metadata", 0..=7),
        (ApiKey::OffsetFetch, "groups.topics.partitions.metadata", 8..=i16::MAX),
        // ConfigHelper.describeConfigs sets no message on a described resource.
        (ApiKey::DescribeConfigs, "results.error_message", 0..=i16::MAX),
        // Documentation exists from v3: before, it is the decoder's default.
        (ApiKey::DescribeConfigs, "results.configs.documentation", 0..=2),
        // DescribeQuorum's top-level message exists from v2: before, the decoder's default.
        (ApiKey::DescribeQuorum, "error_message", 0..=1),
        // Nullable from v7 only; JoinGroupResponse writes "" for older versions.
        (ApiKey::JoinGroup, "protocol_name", 0..=6),
        // The top-level message exists in v1-3 only: elsewhere it is the decoder's default.
        (ApiKey::FindCoordinator, "error_message", 0..=0),
        (ApiKey::FindCoordinator, "error_message", 4..=i16::MAX),
    ];

    /// Where Kafka sends null (an `error_message` on success, ...), we must not send `""`:
    /// every served response is encoded, decoded back as a client would read it, and checked.
    #[test]
    fn no_served_response_sends_an_empty_string_where_kafka_sends_null() {
        let mut found = std::collections::BTreeSet::new();
        for_each_served_response(|api, v, resp| {
            let mut body = bytes::BytesMut::new();
            resp.encode(&mut body, v).unwrap();
            let decoded = ResponseKind::decode(api, &mut body.freeze(), v).unwrap();
            for field in empty_nullable_strings(&format!("{decoded:?}")) {
                if !EMPTY_AS_KAFKA.iter().any(|(a, f, versions)| *a == api && *f == field && versions.contains(&v)) {
                    found.insert(format!("{api:?} v{v}: {field}"));
                }
            }
        });
        assert!(found.is_empty(), "empty strings where Kafka sends null:\n{}", found.into_iter().collect::<Vec<_>>().join("\n"));
    }

    #[test]
    fn empty_nullable_strings_are_found_by_name() {
        let text = r#"K(X { error_message: Some(""), topics: [T { name: Some(TopicName("")), m: {} }, T { name: Some(TopicName("")), s: "}: Some(\"\")" }], other: Some("a"), plain: "", records: Some(b"") })"#;
        assert_eq!(empty_nullable_strings(text), vec!["error_message", "topics.name", "topics.name"]);
    }

    /// `blumfeld_request_errors_total` counts the codes of every served API.
    #[test]
    fn every_served_response_has_its_error_codes_counted() {
        for_each_served_response(|api, v, resp| {
            assert_eq!(error_codes::for_each(resp, |_| {}), error_codes::Listed::Yes, "{api:?} v{v}: add it to api::error_codes");
        });
    }

    /// A heartbeat answered REBALANCE_IN_PROGRESS is counted under its API and error name.
    #[test]
    fn a_rebalancing_heartbeat_shows_up_in_the_error_metric() {
        use crate::group::classic::{JoinRequest, Reply as GroupReply};
        let h = harness();
        let join = |member_id: &str| JoinRequest {
            member_id: member_id.into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
            require_known_member_id: false,
        };
        let GroupReply::Later(mut rx) = h.api.groups.join("hb", join("")) else { panic!("expected to wait") };
        let first = rx.try_recv().unwrap().member_id;
        let GroupReply::Later(_synced) = h.api.groups.sync("hb", &first, None, 1, vec![(first.clone(), Bytes::new())]) else {
            panic!("leader sync completes through the channel")
        };
        // A second member joining sends the group back to PreparingRebalance.
        let _second = h.api.groups.join("hb", join(""));

        let version = 4;
        let mut body = bytes::BytesMut::new();
        let mut header = RequestHeader::default();
        header.request_api_key = ApiKey::Heartbeat as i16;
        header.request_api_version = version;
        header.correlation_id = 7;
        header.encode(&mut body, ApiKey::Heartbeat.request_header_version(version)).unwrap();
        let mut req = HeartbeatRequest::default();
        req.group_id = GroupId(StrBytes::from_static_str("hb"));
        req.generation_id = 1;
        req.member_id = StrBytes::from_string(first);
        req.encode(&mut body, version).unwrap();
        h.rt.block_on(h.api.handle_frame(body.freeze(), "/127.0.0.1")).unwrap().expect("a heartbeat is answered");

        let text = h.api.broker.metrics.encode_text().unwrap();
        let series = r#"blumfeld_request_errors_total{api="Heartbeat",error="REBALANCE_IN_PROGRESS"} 1"#;
        assert!(text.lines().any(|l| l == series), "{series} missing from:\n{text}");
    }
}
