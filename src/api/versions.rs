//! The version table: exactly the API versions the handlers implement. ApiVersions is built
//! from it, and a request outside it is refused. ApiVersions v3+ also carries the supported and
//! finalized feature levels ([`crate::metadata::features`]).

use kafka_protocol::messages::api_versions_response::{ApiVersion, FinalizedFeatureKey, SupportedFeatureKey};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestKind, ResponseKind};
use kafka_protocol::ResponseError;

use super::response_frame::ResponseFrame;
use super::{Api, ApiError, RequestContext, encode_response, str_bytes};
use crate::metadata::features;

/// One API and the versions we serve (`min..=max`).
pub struct Served {
    pub api: ApiKey,
    pub min: i16,
    pub max: i16,
    /// Advertised lower than `min` without being served; see [`PRODUCE_ADVERTISED_MIN`].
    pub advertised_min: i16,
}

/// librdkafka (up to 2.11) enables compression only when ApiVersions lists Produce v0, so
/// Kafka 4.x advertises Produce from v0 while refusing v0-2 when used (KAFKA-18659).
pub const PRODUCE_ADVERTISED_MIN: i16 = 0;

const fn served(api: ApiKey, min: i16, max: i16) -> Served {
    Served { api, min, max, advertised_min: min }
}

pub const SERVED: &[Served] = &[
    Served { api: ApiKey::Produce, min: 3, max: 13, advertised_min: PRODUCE_ADVERTISED_MIN },
    served(ApiKey::Fetch, 4, 17),
    served(ApiKey::ListOffsets, 1, 10),
    served(ApiKey::Metadata, 0, 13),
    served(ApiKey::ApiVersions, 0, 4),
    served(ApiKey::CreateTopics, 2, 7),
    served(ApiKey::DeleteTopics, 1, 6),
    served(ApiKey::DeleteRecords, 0, 2),
    served(ApiKey::InitProducerId, 0, 5),
    // Both transactions protocols (KIP-890): EndTxn v5, Produce v12+ and TxnOffsetCommit v5
    // are version 2's. WriteTxnMarkers v2 (KIP-1228, the marker's transaction version) is not
    // in the protocol crate: markers come and go as v1.
    served(ApiKey::AddPartitionsToTxn, 0, 5),
    served(ApiKey::AddOffsetsToTxn, 0, 4),
    served(ApiKey::EndTxn, 0, 5),
    served(ApiKey::WriteTxnMarkers, 1, 1),
    served(ApiKey::TxnOffsetCommit, 0, 5),
    served(ApiKey::DescribeProducers, 0, 0),
    served(ApiKey::DescribeTransactions, 0, 0),
    served(ApiKey::ListTransactions, 0, 2),
    served(ApiKey::OffsetForLeaderEpoch, 2, 4),
    served(ApiKey::DescribeConfigs, 1, 4),
    served(ApiKey::DescribeLogDirs, 1, 4),
    served(ApiKey::CreatePartitions, 0, 3),
    served(ApiKey::ElectLeaders, 0, 2),
    served(ApiKey::IncrementalAlterConfigs, 0, 1),
    served(ApiKey::AlterConfigs, 0, 2),
    served(ApiKey::DescribeCluster, 0, 2),
    // KIP-966: the partitions with their eligible leader replicas, as kafka-topics shows them.
    served(ApiKey::DescribeTopicPartitions, 0, 0),
    served(ApiKey::FindCoordinator, 0, 6),
    served(ApiKey::JoinGroup, 0, 9),
    served(ApiKey::SyncGroup, 0, 5),
    served(ApiKey::Heartbeat, 0, 4),
    served(ApiKey::LeaveGroup, 0, 5),
    served(ApiKey::OffsetCommit, 2, 9),
    served(ApiKey::OffsetFetch, 1, 9),
    served(ApiKey::DescribeGroups, 0, 5),
    served(ApiKey::ListGroups, 0, 5),
    // Client telemetry (KIP-714), exported on the metrics endpoint.
    served(ApiKey::GetTelemetrySubscriptions, 0, 0),
    served(ApiKey::PushTelemetry, 0, 0),
    // KIP-1142: v1 lists topics, groups, brokers and client-metrics subscriptions.
    served(ApiKey::ListConfigResources, 0, 1),
    served(ApiKey::DeleteGroups, 0, 2),
    served(ApiKey::OffsetDelete, 0, 0),
    served(ApiKey::ConsumerGroupHeartbeat, 0, 1),
    served(ApiKey::ConsumerGroupDescribe, 0, 1),
    served(ApiKey::UpdateFeatures, 0, 2),
    // Partition reassignments (KIP-455), made by the active controller.
    served(ApiKey::AlterPartitionReassignments, 0, 1),
    served(ApiKey::ListPartitionReassignments, 0, 0),
    // The metadata quorum (KRaft); a node without one answers them with an error.
    served(ApiKey::Vote, 0, 2),
    served(ApiKey::BeginQuorumEpoch, 0, 1),
    served(ApiKey::EndQuorumEpoch, 0, 1),
    served(ApiKey::DescribeQuorum, 0, 2),
    served(ApiKey::FetchSnapshot, 0, 1),
    // Broker membership, answered by the active controller.
    served(ApiKey::BrokerRegistration, 0, 4),
    served(ApiKey::BrokerHeartbeat, 0, 1),
    served(ApiKey::AllocateProducerIds, 0, 0),
    // Partition leaders' ISR changes, answered by the active controller.
    served(ApiKey::AlterPartition, 2, 3),
];

pub fn is_supported(api: ApiKey, version: i16) -> bool {
    SERVED.iter().any(|s| s.api == api && (s.min..=s.max).contains(&version))
}

fn api_keys() -> Vec<ApiVersion> {
    SERVED
        .iter()
        .map(|s| {
            let mut v = ApiVersion::default();
            v.api_key = s.api as i16;
            v.min_version = s.advertised_min;
            v.max_version = s.max;
            v
        })
        .collect()
}

/// First ApiVersions version with feature fields.
const FEATURES_MIN_VERSION: i16 = 3;
/// Before v4 a supported range may not start at 0 (KIP-1022): such features are left out.
const MIN_ZERO_FEATURES_MIN_VERSION: i16 = 4;

pub fn handle(api: &Api, ctx: &RequestContext, _req: ApiVersionsRequest) -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.api_keys = api_keys();
    if ctx.version >= FEATURES_MIN_VERSION {
        let image = api.broker.image();
        r.supported_features = features::FEATURES
            .iter()
            .filter(|f| f.min > 0 || ctx.version >= MIN_ZERO_FEATURES_MIN_VERSION)
            .map(|f| {
                let mut k = SupportedFeatureKey::default();
                k.name = str_bytes(f.name);
                k.min_version = f.min;
                k.max_version = f.max;
                k
            })
            .collect();
        r.finalized_features = features::finalized(&image)
            .into_iter()
            .map(|(name, level)| {
                let mut k = FinalizedFeatureKey::default();
                k.name = str_bytes(&name);
                k.min_version_level = level;
                k.max_version_level = level;
                k
            })
            .collect();
        // Kafka's epoch is the metadata offset the finalized levels were read at.
        r.finalized_features_epoch = image.offset;
    }
    r
}

/// The v0 answer to an ApiVersions request at a version we do not know.
pub fn unsupported_version_response(correlation_id: i32) -> Result<ResponseFrame, ApiError> {
    let mut r = ApiVersionsResponse::default();
    r.error_code = ResponseError::UnsupportedVersion.code();
    r.api_keys = api_keys();
    encode_response(ApiKey::ApiVersions, 0, correlation_id, &ResponseKind::ApiVersions(r), &[])
}

/// An empty request of a served API (for round-trip tests and fuzz seeds); `None` for an
/// API this table does not serve.
pub fn default_request(api: ApiKey) -> Option<RequestKind> {
    use kafka_protocol::messages::*;
    Some(match api {
        ApiKey::Produce => RequestKind::Produce(ProduceRequest::default()),
        ApiKey::Fetch => RequestKind::Fetch(FetchRequest::default()),
        ApiKey::Vote => RequestKind::Vote(VoteRequest::default()),
        ApiKey::BeginQuorumEpoch => RequestKind::BeginQuorumEpoch(BeginQuorumEpochRequest::default()),
        ApiKey::EndQuorumEpoch => RequestKind::EndQuorumEpoch(EndQuorumEpochRequest::default()),
        ApiKey::DescribeQuorum => RequestKind::DescribeQuorum(DescribeQuorumRequest::default()),
        ApiKey::FetchSnapshot => RequestKind::FetchSnapshot(FetchSnapshotRequest::default()),
        ApiKey::BrokerRegistration => RequestKind::BrokerRegistration(BrokerRegistrationRequest::default()),
        ApiKey::BrokerHeartbeat => RequestKind::BrokerHeartbeat(BrokerHeartbeatRequest::default()),
        ApiKey::AllocateProducerIds => RequestKind::AllocateProducerIds(AllocateProducerIdsRequest::default()),
        ApiKey::AlterPartition => RequestKind::AlterPartition(AlterPartitionRequest::default()),
        ApiKey::ListOffsets => RequestKind::ListOffsets(ListOffsetsRequest::default()),
        ApiKey::Metadata => RequestKind::Metadata(MetadataRequest::default()),
        ApiKey::ApiVersions => RequestKind::ApiVersions(ApiVersionsRequest::default()),
        ApiKey::CreateTopics => RequestKind::CreateTopics(CreateTopicsRequest::default()),
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(DeleteTopicsRequest::default()),
        ApiKey::DeleteRecords => RequestKind::DeleteRecords(DeleteRecordsRequest::default()),
        ApiKey::InitProducerId => RequestKind::InitProducerId(InitProducerIdRequest::default()),
        ApiKey::OffsetForLeaderEpoch => RequestKind::OffsetForLeaderEpoch(OffsetForLeaderEpochRequest::default()),
        ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(DescribeConfigsRequest::default()),
        ApiKey::CreatePartitions => RequestKind::CreatePartitions(CreatePartitionsRequest::default()),
        ApiKey::ElectLeaders => RequestKind::ElectLeaders(ElectLeadersRequest::default()),
        ApiKey::IncrementalAlterConfigs => {
            RequestKind::IncrementalAlterConfigs(IncrementalAlterConfigsRequest::default())
        }
        ApiKey::AlterConfigs => RequestKind::AlterConfigs(AlterConfigsRequest::default()),
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(DescribeClusterRequest::default()),
        ApiKey::DescribeTopicPartitions => RequestKind::DescribeTopicPartitions(DescribeTopicPartitionsRequest::default()),
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(FindCoordinatorRequest::default()),
        ApiKey::JoinGroup => RequestKind::JoinGroup(JoinGroupRequest::default()),
        ApiKey::SyncGroup => RequestKind::SyncGroup(SyncGroupRequest::default()),
        ApiKey::Heartbeat => RequestKind::Heartbeat(HeartbeatRequest::default()),
        ApiKey::LeaveGroup => RequestKind::LeaveGroup(LeaveGroupRequest::default()),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(OffsetCommitRequest::default()),
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(OffsetFetchRequest::default()),
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(DescribeGroupsRequest::default()),
        ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
        ApiKey::ListConfigResources => RequestKind::ListConfigResources(ListConfigResourcesRequest::default()),
        ApiKey::GetTelemetrySubscriptions => RequestKind::GetTelemetrySubscriptions(GetTelemetrySubscriptionsRequest::default()),
        ApiKey::PushTelemetry => RequestKind::PushTelemetry(PushTelemetryRequest::default()),
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(DeleteGroupsRequest::default()),
        ApiKey::OffsetDelete => RequestKind::OffsetDelete(OffsetDeleteRequest::default()),
        ApiKey::ConsumerGroupHeartbeat => RequestKind::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest::default()),
        ApiKey::ConsumerGroupDescribe => RequestKind::ConsumerGroupDescribe(ConsumerGroupDescribeRequest::default()),
        ApiKey::UpdateFeatures => RequestKind::UpdateFeatures(UpdateFeaturesRequest::default()),
        ApiKey::DescribeLogDirs => RequestKind::DescribeLogDirs(DescribeLogDirsRequest::default()),
        ApiKey::AlterPartitionReassignments => RequestKind::AlterPartitionReassignments(AlterPartitionReassignmentsRequest::default()),
        ApiKey::ListPartitionReassignments => RequestKind::ListPartitionReassignments(ListPartitionReassignmentsRequest::default()),
        ApiKey::AddPartitionsToTxn => RequestKind::AddPartitionsToTxn(AddPartitionsToTxnRequest::default()),
        ApiKey::AddOffsetsToTxn => RequestKind::AddOffsetsToTxn(AddOffsetsToTxnRequest::default()),
        ApiKey::EndTxn => RequestKind::EndTxn(EndTxnRequest::default()),
        ApiKey::WriteTxnMarkers => RequestKind::WriteTxnMarkers(WriteTxnMarkersRequest::default()),
        ApiKey::TxnOffsetCommit => RequestKind::TxnOffsetCommit(TxnOffsetCommitRequest::default()),
        ApiKey::DescribeProducers => RequestKind::DescribeProducers(DescribeProducersRequest::default()),
        ApiKey::DescribeTransactions => RequestKind::DescribeTransactions(DescribeTransactionsRequest::default()),
        ApiKey::ListTransactions => RequestKind::ListTransactions(ListTransactionsRequest::default()),
        _ => return None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{RequestKind, ResponseKind};
    use kafka_protocol::protocol::Decodable;

    /// Every advertised version of every served API must encode and decode, requests and
    /// responses alike: the crate's own tables claim more than its types implement.
    #[test]
    fn every_served_version_round_trips() {
        for s in SERVED {
            for v in s.min..=s.max {
                let req = default_request(s.api).unwrap_or_else(|| panic!("add {:?} to default_request", s.api));
                let mut buf = bytes::BytesMut::new();
                req.encode(&mut buf, v).unwrap_or_else(|e| panic!("{:?} v{v} request encode: {e}", s.api));
                let mut bytes = buf.freeze();
                RequestKind::decode(s.api, &mut bytes, v)
                    .unwrap_or_else(|e| panic!("{:?} v{v} request decode: {e}", s.api));
                let resp = default_response(s.api);
                let mut buf = bytes::BytesMut::new();
                resp.encode(&mut buf, v).unwrap_or_else(|e| panic!("{:?} v{v} response encode: {e}", s.api));
                let mut bytes = buf.freeze();
                ResponseKind::decode(s.api, &mut bytes, v)
                    .unwrap_or_else(|e| panic!("{:?} v{v} response decode: {e}", s.api));
            }
        }
    }

    #[test]
    fn produce_is_advertised_from_v0_but_served_from_v3() {
        let p = api_keys().into_iter().find(|k| k.api_key == ApiKey::Produce as i16).unwrap();
        assert_eq!(p.min_version, 0);
        assert!(!is_supported(ApiKey::Produce, 2));
        assert!(is_supported(ApiKey::Produce, 3));
    }

    #[test]
    fn unknown_apiversions_version_gets_v0_error_answer() {
        let frame = unsupported_version_response(7).unwrap();
        let mut b = frame.to_bytes().unwrap().freeze();
        let len = bytes::Buf::get_u32(&mut b) as usize;
        assert_eq!(len, b.len());
        let header = kafka_protocol::messages::ResponseHeader::decode(&mut b, 0).unwrap();
        assert_eq!(header.correlation_id, 7);
        let r = ApiVersionsResponse::decode(&mut b, 0).unwrap();
        assert_eq!(r.error_code, 35);
        assert_eq!(r.api_keys.len(), SERVED.len());
        assert!(b.is_empty());
    }

    fn default_response(api: ApiKey) -> ResponseKind {
        use kafka_protocol::messages::*;
        match api {
            ApiKey::Produce => ResponseKind::Produce(ProduceResponse::default()),
            ApiKey::Fetch => ResponseKind::Fetch(FetchResponse::default()),
            ApiKey::Vote => ResponseKind::Vote(VoteResponse::default()),
            ApiKey::BeginQuorumEpoch => ResponseKind::BeginQuorumEpoch(BeginQuorumEpochResponse::default()),
            ApiKey::EndQuorumEpoch => ResponseKind::EndQuorumEpoch(EndQuorumEpochResponse::default()),
            ApiKey::DescribeQuorum => ResponseKind::DescribeQuorum(DescribeQuorumResponse::default()),
            ApiKey::FetchSnapshot => ResponseKind::FetchSnapshot(FetchSnapshotResponse::default()),
            ApiKey::BrokerRegistration => ResponseKind::BrokerRegistration(BrokerRegistrationResponse::default()),
            ApiKey::BrokerHeartbeat => ResponseKind::BrokerHeartbeat(BrokerHeartbeatResponse::default()),
            ApiKey::AllocateProducerIds => ResponseKind::AllocateProducerIds(AllocateProducerIdsResponse::default()),
            ApiKey::AlterPartition => ResponseKind::AlterPartition(AlterPartitionResponse::default()),
            ApiKey::ListOffsets => ResponseKind::ListOffsets(ListOffsetsResponse::default()),
            ApiKey::Metadata => ResponseKind::Metadata(MetadataResponse::default()),
            ApiKey::ApiVersions => ResponseKind::ApiVersions(ApiVersionsResponse::default()),
            ApiKey::CreateTopics => ResponseKind::CreateTopics(CreateTopicsResponse::default()),
            ApiKey::DeleteTopics => ResponseKind::DeleteTopics(DeleteTopicsResponse::default()),
            ApiKey::DeleteRecords => ResponseKind::DeleteRecords(DeleteRecordsResponse::default()),
            ApiKey::InitProducerId => ResponseKind::InitProducerId(InitProducerIdResponse::default()),
            ApiKey::OffsetForLeaderEpoch => {
                ResponseKind::OffsetForLeaderEpoch(OffsetForLeaderEpochResponse::default())
            }
            ApiKey::DescribeConfigs => ResponseKind::DescribeConfigs(DescribeConfigsResponse::default()),
            ApiKey::CreatePartitions => ResponseKind::CreatePartitions(CreatePartitionsResponse::default()),
            ApiKey::ElectLeaders => ResponseKind::ElectLeaders(ElectLeadersResponse::default()),
            ApiKey::IncrementalAlterConfigs => {
                ResponseKind::IncrementalAlterConfigs(IncrementalAlterConfigsResponse::default())
            }
            ApiKey::AlterConfigs => ResponseKind::AlterConfigs(AlterConfigsResponse::default()),
            ApiKey::DescribeCluster => ResponseKind::DescribeCluster(DescribeClusterResponse::default()),
            ApiKey::DescribeTopicPartitions => ResponseKind::DescribeTopicPartitions(DescribeTopicPartitionsResponse::default()),
            ApiKey::FindCoordinator => ResponseKind::FindCoordinator(FindCoordinatorResponse::default()),
            ApiKey::JoinGroup => ResponseKind::JoinGroup(JoinGroupResponse::default()),
            ApiKey::SyncGroup => ResponseKind::SyncGroup(SyncGroupResponse::default()),
            ApiKey::Heartbeat => ResponseKind::Heartbeat(HeartbeatResponse::default()),
            ApiKey::LeaveGroup => ResponseKind::LeaveGroup(LeaveGroupResponse::default()),
            ApiKey::OffsetCommit => ResponseKind::OffsetCommit(OffsetCommitResponse::default()),
            ApiKey::OffsetFetch => ResponseKind::OffsetFetch(OffsetFetchResponse::default()),
            ApiKey::DescribeGroups => ResponseKind::DescribeGroups(DescribeGroupsResponse::default()),
            ApiKey::ListGroups => ResponseKind::ListGroups(ListGroupsResponse::default()),
            ApiKey::ListConfigResources => ResponseKind::ListConfigResources(ListConfigResourcesResponse::default()),
            ApiKey::GetTelemetrySubscriptions => ResponseKind::GetTelemetrySubscriptions(GetTelemetrySubscriptionsResponse::default()),
            ApiKey::PushTelemetry => ResponseKind::PushTelemetry(PushTelemetryResponse::default()),
            ApiKey::DeleteGroups => ResponseKind::DeleteGroups(DeleteGroupsResponse::default()),
            ApiKey::OffsetDelete => ResponseKind::OffsetDelete(OffsetDeleteResponse::default()),
            ApiKey::ConsumerGroupHeartbeat => ResponseKind::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse::default()),
            ApiKey::ConsumerGroupDescribe => ResponseKind::ConsumerGroupDescribe(ConsumerGroupDescribeResponse::default()),
            ApiKey::UpdateFeatures => ResponseKind::UpdateFeatures(UpdateFeaturesResponse::default()),
            ApiKey::DescribeLogDirs => ResponseKind::DescribeLogDirs(DescribeLogDirsResponse::default()),
            ApiKey::AlterPartitionReassignments => ResponseKind::AlterPartitionReassignments(AlterPartitionReassignmentsResponse::default()),
            ApiKey::ListPartitionReassignments => ResponseKind::ListPartitionReassignments(ListPartitionReassignmentsResponse::default()),
            ApiKey::AddPartitionsToTxn => ResponseKind::AddPartitionsToTxn(AddPartitionsToTxnResponse::default()),
            ApiKey::AddOffsetsToTxn => ResponseKind::AddOffsetsToTxn(AddOffsetsToTxnResponse::default()),
            ApiKey::EndTxn => ResponseKind::EndTxn(EndTxnResponse::default()),
            ApiKey::WriteTxnMarkers => ResponseKind::WriteTxnMarkers(WriteTxnMarkersResponse::default()),
            ApiKey::TxnOffsetCommit => ResponseKind::TxnOffsetCommit(TxnOffsetCommitResponse::default()),
            ApiKey::DescribeProducers => ResponseKind::DescribeProducers(DescribeProducersResponse::default()),
            ApiKey::DescribeTransactions => ResponseKind::DescribeTransactions(DescribeTransactionsResponse::default()),
            ApiKey::ListTransactions => ResponseKind::ListTransactions(ListTransactionsResponse::default()),
            other => panic!("add {other:?} to the round-trip test"),
        }
    }
}
