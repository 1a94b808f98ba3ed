//! The quorum's messages on the wire: conversions between the core's structs and
//! `kafka-protocol`'s Vote, BeginQuorumEpoch, EndQuorumEpoch, Fetch (KRaft's use of it:
//! `__cluster_metadata`-0), FetchSnapshot and DescribeQuorum.
//!
//! What the wire does not carry the driver supplies: it matches a response to its request by
//! correlation id, so the `from_wire` functions of responses take the request's facts (whether
//! a Vote was a pre-vote, the position a Fetch asked for). Log entries travel as Kafka record
//! batches, one batch per run of entries with the same epoch and kind: records as data records,
//! the leader-change entry as a LEADER_CHANGE control record (KRaft's `LeaderChangeMessage`).

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{self as kp, BrokerId, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use uuid::Uuid;

use super::message::{
    BeginQuorumEpochRequest, EndQuorumEpochRequest, Entry, EntryData, EpochResponse, FetchPosition, FetchRequest,
    FetchResponse, FetchSnapshotRequest, FetchSnapshotResponse, OffsetAndEpoch, RaftErrorCode, VoteRequest,
    VoteResponse,
};
use super::state::{QuorumDescription, ReplicaDescription};
use crate::types::{LeaderEpoch, NodeId, Offset};

/// The metadata log's topic and partition.
pub const METADATA_TOPIC: &str = "__cluster_metadata";
pub const METADATA_PARTITION: i32 = 0;

/// Kafka's fixed topic id of `__cluster_metadata` (`Uuid(0, 1)`).
pub fn metadata_topic_id() -> Uuid {
    Uuid::from_u64_pair(0, 1)
}

/// The control record type of a leader change (Kafka's `ControlRecordType.LEADER_CHANGE`).
const CONTROL_LEADER_CHANGE: i16 = 2;
const LEADER_CHANGE_VERSION: i16 = 0;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The message is not about `__cluster_metadata`-0 (Kafka answers INVALID_REQUEST).
    #[error("not a message for __cluster_metadata-0")]
    WrongPartition,
    /// A top-level error code; the partition data is absent.
    #[error("top-level error {0}")]
    TopLevel(i16),
    #[error("malformed records: {0}")]
    Records(String),
    #[error("a field out of range: {0}")]
    Field(&'static str),
}

impl WireError {
    /// The Kafka error code to answer a request that failed to convert.
    pub fn error_code(&self) -> RaftErrorCode {
        match self {
            WireError::TopLevel(code) => RaftErrorCode::from_code(*code),
            _ => RaftErrorCode::InvalidRequest,
        }
    }
}

fn topic_name() -> TopicName {
    TopicName(StrBytes::from_static_str(METADATA_TOPIC))
}

fn is_metadata_topic(name: &TopicName) -> bool {
    name.0.as_str() == METADATA_TOPIC
}

fn leader_id(leader: Option<NodeId>) -> BrokerId {
    BrokerId(leader.map_or(-1, |l| l.0))
}

fn leader_from(id: BrokerId) -> Option<NodeId> {
    (id.0 >= 0).then_some(NodeId(id.0))
}

fn non_negative(value: i64, field: &'static str) -> Result<u64, WireError> {
    u64::try_from(value).map_err(|_| WireError::Field(field))
}

/// Picks the single partition of a single-topic message, or fails as Kafka does.
fn only<'a, T, P>(
    topics: &'a [T],
    name: impl Fn(&T) -> bool,
    partitions: impl Fn(&'a T) -> &'a [P],
    index: impl Fn(&P) -> i32,
) -> Result<&'a P, WireError> {
    match topics {
        [topic] if name(topic) => match partitions(topic) {
            [partition] if index(partition) == METADATA_PARTITION => Ok(partition),
            _ => Err(WireError::WrongPartition),
        },
        _ => Err(WireError::WrongPartition),
    }
}

// ---- Vote ----

/// `version` is the Vote version the request will be encoded at: a pre-vote needs v2.
pub fn vote_request_to_wire(
    r: &VoteRequest,
    voter: NodeId,
    cluster_id: Option<&str>,
    version: i16,
) -> Result<kp::VoteRequest, WireError> {
    if r.pre_vote && version < 2 {
        return Err(WireError::Field("pre_vote needs Vote v2"));
    }
    let partition = kp::vote_request::PartitionData::default()
        .with_partition_index(METADATA_PARTITION)
        .with_replica_epoch(r.epoch.0)
        .with_replica_id(BrokerId(r.candidate.0))
        .with_last_offset_epoch(r.last.epoch.0)
        .with_last_offset(r.last.offset.0)
        .with_pre_vote(r.pre_vote);
    Ok(kp::VoteRequest::default()
        .with_cluster_id(cluster_id.map(|c| StrBytes::from_string(c.to_owned())))
        .with_voter_id(BrokerId(voter.0))
        .with_topics(vec![
            kp::vote_request::TopicData::default().with_topic_name(topic_name()).with_partitions(vec![partition]),
        ]))
}

pub fn vote_request_from_wire(w: &kp::VoteRequest) -> Result<VoteRequest, WireError> {
    let p = only(&w.topics, |t| is_metadata_topic(&t.topic_name), |t| &t.partitions, |p| p.partition_index)?;
    Ok(VoteRequest {
        epoch: LeaderEpoch(p.replica_epoch),
        candidate: NodeId(p.replica_id.0),
        last: OffsetAndEpoch::new(Offset(p.last_offset), LeaderEpoch(p.last_offset_epoch)),
        pre_vote: p.pre_vote,
    })
}

pub fn vote_response_to_wire(r: &VoteResponse) -> kp::VoteResponse {
    let partition = kp::vote_response::PartitionData::default()
        .with_partition_index(METADATA_PARTITION)
        .with_error_code(r.error.code())
        .with_leader_id(leader_id(r.leader))
        .with_leader_epoch(r.epoch.0)
        .with_vote_granted(r.granted);
    kp::VoteResponse::default().with_topics(vec![
        kp::vote_response::TopicData::default().with_topic_name(topic_name()).with_partitions(vec![partition]),
    ])
}

/// `pre_vote` comes from the request this answers.
pub fn vote_response_from_wire(w: &kp::VoteResponse, pre_vote: bool) -> Result<VoteResponse, WireError> {
    if w.error_code != 0 {
        return Err(WireError::TopLevel(w.error_code));
    }
    let p = only(&w.topics, |t| is_metadata_topic(&t.topic_name), |t| &t.partitions, |p| p.partition_index)?;
    Ok(VoteResponse {
        error: RaftErrorCode::from_code(p.error_code),
        epoch: LeaderEpoch(p.leader_epoch),
        leader: leader_from(p.leader_id),
        granted: p.vote_granted,
        pre_vote,
    })
}

// ---- BeginQuorumEpoch and EndQuorumEpoch ----

pub fn begin_quorum_epoch_request_to_wire(
    r: &BeginQuorumEpochRequest,
    voter: NodeId,
    cluster_id: Option<&str>,
) -> kp::BeginQuorumEpochRequest {
    let partition = kp::begin_quorum_epoch_request::PartitionData::default()
        .with_partition_index(METADATA_PARTITION)
        .with_leader_id(BrokerId(r.leader.0))
        .with_leader_epoch(r.epoch.0);
    kp::BeginQuorumEpochRequest::default()
        .with_cluster_id(cluster_id.map(|c| StrBytes::from_string(c.to_owned())))
        .with_voter_id(BrokerId(voter.0))
        .with_topics(vec![
            kp::begin_quorum_epoch_request::TopicData::default()
                .with_topic_name(topic_name())
                .with_partitions(vec![partition]),
        ])
}

pub fn begin_quorum_epoch_request_from_wire(
    w: &kp::BeginQuorumEpochRequest,
) -> Result<BeginQuorumEpochRequest, WireError> {
    let p = only(&w.topics, |t| is_metadata_topic(&t.topic_name), |t| &t.partitions, |p| p.partition_index)?;
    let leader = leader_from(p.leader_id).ok_or(WireError::Field("leader_id"))?;
    Ok(BeginQuorumEpochRequest { epoch: LeaderEpoch(p.leader_epoch), leader })
}

pub fn begin_quorum_epoch_response_to_wire(r: &EpochResponse) -> kp::BeginQuorumEpochResponse {
    let partition = kp::begin_quorum_epoch_response::PartitionData::default()
        .with_partition_index(METADATA_PARTITION)
        .with_error_code(r.error.code())
        .with_leader_id(leader_id(r.leader))
        .with_leader_epoch(r.epoch.0);
    kp::BeginQuorumEpochResponse::default().with_topics(vec![
        kp::begin_quorum_epoch_response::TopicData::default()
            .with_topic_name(topic_name())
            .with_partitions(vec![partition]),
    ])
}

pub fn begin_quorum_epoch_response_from_wire(w: &kp::BeginQuorumEpochResponse) -> Result<EpochResponse, WireError> {
    if w.error_code != 0 {
        return Err(WireError::TopLevel(w.error_code));
    }
    let p = only(&w.topics, |t| is_metadata_topic(&t.topic_name), |t| &t.partitions, |p| p.partition_index)?;
    Ok(EpochResponse {
        error: RaftErrorCode::from_code(p.error_code),
        epoch: LeaderEpoch(p.leader_epoch),
        leader: leader_from(p.leader_id),
    })
}

pub fn end_quorum_epoch_request_to_wire(r: &EndQuorumEpochRequest, cluster_id: Option<&str>) -> kp::EndQuorumEpochRequest {
    let partition = kp::end_quorum_epoch_request::PartitionData::default()
        .with_partition_index(METADATA_PARTITION)
        .with_leader_id(BrokerId(r.leader.0))
        .with_leader_epoch(r.epoch.0)
        .with_preferred_successors(r.preferred_successors.iter().map(|s| s.0).collect())
        .with_preferred_candidates(
            r.preferred_successors
                .iter()
                .map(|s| kp::end_quorum_epoch_request::ReplicaInfo::default().with_candidate_id(BrokerId(s.0)))
                .collect(),
        );
    kp::EndQuorumEpochRequest::default()
        .with_cluster_id(cluster_id.map(|c| StrBytes::from_string(c.to_owned())))
        .with_topics(vec![
            kp::end_quorum_epoch_request::TopicData::default()
                .with_topic_name(topic_name())
                .with_partitions(vec![partition]),
        ])
}

pub fn end_quorum_epoch_request_from_wire(w: &kp::EndQuorumEpochRequest) -> Result<EndQuorumEpochRequest, WireError> {
    let p = only(&w.topics, |t| is_metadata_topic(&t.topic_name), |t| &t.partitions, |p| p.partition_index)?;
    let leader = leader_from(p.leader_id).ok_or(WireError::Field("leader_id"))?;
    // v0 carries `preferred_successors`, v1 `preferred_candidates`.
    let preferred_successors = if p.preferred_candidates.is_empty() {
        p.preferred_successors.iter().map(|s| NodeId(*s)).collect()
    } else {
        p.preferred_candidates.iter().map(|c| NodeId(c.candidate_id.0)).collect()
    };
    Ok(EndQuorumEpochRequest { epoch: LeaderEpoch(p.leader_epoch), leader, preferred_successors })
}

pub fn end_quorum_epoch_response_to_wire(r: &EpochResponse) -> kp::EndQuorumEpochResponse {
    let partition = kp::end_quorum_epoch_response::PartitionData::default()
        .with_partition_index(METADATA_PARTITION)
        .with_error_code(r.error.code())
        .with_leader_id(leader_id(r.leader))
        .with_leader_epoch(r.epoch.0);
    kp::EndQuorumEpochResponse::default().with_topics(vec![
        kp::end_quorum_epoch_response::TopicData::default()
            .with_topic_name(topic_name())
            .with_partitions(vec![partition]),
    ])
}

pub fn end_quorum_epoch_response_from_wire(w: &kp::EndQuorumEpochResponse) -> Result<EpochResponse, WireError> {
    if w.error_code != 0 {
        return Err(WireError::TopLevel(w.error_code));
    }
    let p = only(&w.topics, |t| is_metadata_topic(&t.topic_name), |t| &t.partitions, |p| p.partition_index)?;
    Ok(EpochResponse {
        error: RaftErrorCode::from_code(p.error_code),
        epoch: LeaderEpoch(p.leader_epoch),
        leader: leader_from(p.leader_id),
    })
}

// ---- Fetch ----

/// `version` is the Fetch version the request will be encoded at (KRaft needs v12+): it
/// decides between the topic name (up to v12) and id (v13+), and where the replica id goes.
pub fn fetch_request_to_wire(r: &FetchRequest, cluster_id: Option<&str>, version: i16) -> kp::FetchRequest {
    let partition = kp::fetch_request::FetchPartition::default()
        .with_partition(METADATA_PARTITION)
        .with_current_leader_epoch(r.epoch.0)
        .with_fetch_offset(r.position.fetch_offset.0)
        .with_last_fetched_epoch(r.position.last_fetched_epoch.0);
    let mut topic = kp::fetch_request::FetchTopic::default().with_partitions(vec![partition]);
    if version >= 13 {
        topic.topic_id = metadata_topic_id();
    } else {
        topic.topic = topic_name();
    }
    let mut request = kp::FetchRequest::default()
        .with_cluster_id(cluster_id.map(|c| StrBytes::from_string(c.to_owned())))
        .with_max_wait_ms(i32::try_from(r.max_wait_ms).unwrap_or(i32::MAX))
        .with_topics(vec![topic]);
    // Before v15 the replica id is a top-level field; from v15 it is in `replica_state`.
    if version >= 15 {
        request.replica_state = kp::fetch_request::ReplicaState::default().with_replica_id(BrokerId(r.replica_id.0));
    } else {
        request.replica_id = BrokerId(r.replica_id.0);
    }
    request
}

pub fn fetch_request_from_wire(w: &kp::FetchRequest, version: i16) -> Result<FetchRequest, WireError> {
    let p = only(
        &w.topics,
        |t| t.topic_id == metadata_topic_id() || is_metadata_topic(&t.topic),
        |t| &t.partitions,
        |p| p.partition,
    )?;
    let replica_id = if version >= 15 { w.replica_state.replica_id } else { w.replica_id };
    Ok(FetchRequest {
        epoch: LeaderEpoch(p.current_leader_epoch),
        replica_id: NodeId(replica_id.0),
        position: FetchPosition {
            fetch_offset: Offset(p.fetch_offset),
            last_fetched_epoch: LeaderEpoch(p.last_fetched_epoch),
        },
        max_wait_ms: non_negative(i64::from(w.max_wait_ms), "max_wait_ms")?,
    })
}

/// `version` as for `fetch_request_to_wire`.
pub fn fetch_response_to_wire(r: &FetchResponse, version: i16) -> Result<kp::FetchResponse, WireError> {
    let records = encode_entries(r.request.fetch_offset, &r.entries)?;
    let mut partition = kp::fetch_response::PartitionData::default()
        .with_partition_index(METADATA_PARTITION)
        .with_error_code(r.error.code())
        .with_high_watermark(r.high_watermark.map_or(-1, |h| h.0))
        .with_log_start_offset(r.log_start_offset.0)
        .with_current_leader(
            kp::fetch_response::LeaderIdAndEpoch::default()
                .with_leader_id(leader_id(r.leader))
                .with_leader_epoch(r.epoch.0),
        )
        .with_records(Some(records));
    if let Some(d) = r.diverging_epoch {
        partition.diverging_epoch =
            kp::fetch_response::EpochEndOffset::default().with_epoch(d.epoch.0).with_end_offset(d.offset.0);
    }
    if let Some(s) = r.snapshot_id {
        partition.snapshot_id =
            kp::fetch_response::SnapshotId::default().with_end_offset(s.offset.0).with_epoch(s.epoch.0);
    }
    let mut topic = kp::fetch_response::FetchableTopicResponse::default().with_partitions(vec![partition]);
    if version >= 13 {
        topic.topic_id = metadata_topic_id();
    } else {
        topic.topic = topic_name();
    }
    Ok(kp::FetchResponse::default().with_responses(vec![topic]))
}

/// `request` is the position the answered Fetch asked for.
pub fn fetch_response_from_wire(w: &kp::FetchResponse, request: FetchPosition) -> Result<FetchResponse, WireError> {
    if w.error_code != 0 {
        return Err(WireError::TopLevel(w.error_code));
    }
    let p = only(
        &w.responses,
        |t| t.topic_id == metadata_topic_id() || is_metadata_topic(&t.topic),
        |t| &t.partitions,
        |p| p.partition_index,
    )?;
    let diverging_epoch = (p.diverging_epoch.epoch >= 0 && p.diverging_epoch.end_offset >= 0)
        .then(|| OffsetAndEpoch::new(Offset(p.diverging_epoch.end_offset), LeaderEpoch(p.diverging_epoch.epoch)));
    let snapshot_id = (p.snapshot_id.epoch >= 0 && p.snapshot_id.end_offset >= 0)
        .then(|| OffsetAndEpoch::new(Offset(p.snapshot_id.end_offset), LeaderEpoch(p.snapshot_id.epoch)));
    let entries = match &p.records {
        Some(bytes) if !bytes.is_empty() => decode_entries(request.fetch_offset, bytes)?,
        _ => Vec::new(),
    };
    Ok(FetchResponse {
        error: RaftErrorCode::from_code(p.error_code),
        epoch: LeaderEpoch(p.current_leader.leader_epoch),
        leader: leader_from(p.current_leader.leader_id),
        high_watermark: (p.high_watermark >= 0).then_some(Offset(p.high_watermark)),
        log_start_offset: Offset(p.log_start_offset.max(0)),
        request,
        entries,
        diverging_epoch,
        snapshot_id,
    })
}

/// Entries from `base` as record batches (v2, uncompressed).
pub fn encode_entries(base: Offset, entries: &[Entry]) -> Result<Bytes, WireError> {
    if entries.is_empty() {
        return Ok(Bytes::new());
    }
    let records = entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let (control, key, value) = match &entry.data {
                EntryData::Records(value) => (false, None, Some(value.clone())),
                EntryData::LeaderChange { leader, voters } => {
                    let message = kp::LeaderChangeMessage::default()
                        .with_version(LEADER_CHANGE_VERSION)
                        .with_leader_id(BrokerId(leader.0))
                        .with_voters(
                            voters
                                .iter()
                                .map(|v| kp::leader_change_message::Voter::default().with_voter_id(v.0))
                                .collect(),
                        );
                    let mut value = BytesMut::new();
                    message
                        .encode(&mut value, LEADER_CHANGE_VERSION)
                        .map_err(|e| WireError::Records(e.to_string()))?;
                    let mut key = BytesMut::with_capacity(4);
                    key.extend_from_slice(&0i16.to_be_bytes());
                    key.extend_from_slice(&CONTROL_LEADER_CHANGE.to_be_bytes());
                    (true, Some(key.freeze()), Some(value.freeze()))
                }
            };
            Ok(Record {
                transactional: false,
                control,
                delete_horizon: false,
                partition_leader_epoch: entry.epoch.0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: base.0 + i as i64,
                sequence: -1,
                timestamp: 0,
                key,
                value,
                headers: Default::default(),
            })
        })
        .collect::<Result<Vec<Record>, WireError>>()?;
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut buf, &records, &options).map_err(|e| WireError::Records(e.to_string()))?;
    Ok(buf.freeze())
}

/// Record batches back to entries; they must start at `base` and have no gaps.
pub fn decode_entries(base: Offset, bytes: &Bytes) -> Result<Vec<Entry>, WireError> {
    let mut buf = bytes.clone();
    let sets = RecordBatchDecoder::decode_all(&mut buf).map_err(|e| WireError::Records(e.to_string()))?;
    let mut entries = Vec::new();
    for (expected, record) in (base.0..).zip(sets.into_iter().flat_map(|s| s.records)) {
        if record.offset != expected {
            return Err(WireError::Records(format!("offset {} where {expected} was expected", record.offset)));
        }
        let data = if record.control {
            decode_control(&record)?
        } else {
            EntryData::Records(record.value.unwrap_or_default())
        };
        entries.push(Entry { epoch: LeaderEpoch(record.partition_leader_epoch), data });
    }
    Ok(entries)
}

fn decode_control(record: &Record) -> Result<EntryData, WireError> {
    let key = record.key.as_ref().ok_or(WireError::Records("control record without a key".into()))?;
    if key.len() < 4 || i16::from_be_bytes([key[2], key[3]]) != CONTROL_LEADER_CHANGE {
        return Err(WireError::Records("unknown control record type".into()));
    }
    let mut value = record.value.clone().ok_or(WireError::Records("leader change without a value".into()))?;
    let message = kp::LeaderChangeMessage::decode(&mut value, LEADER_CHANGE_VERSION)
        .map_err(|e| WireError::Records(e.to_string()))?;
    Ok(EntryData::LeaderChange {
        leader: NodeId(message.leader_id.0),
        voters: message.voters.iter().map(|v| NodeId(v.voter_id)).collect(),
    })
}

// ---- FetchSnapshot ----

pub fn fetch_snapshot_request_to_wire(r: &FetchSnapshotRequest, cluster_id: Option<&str>) -> kp::FetchSnapshotRequest {
    let partition = kp::fetch_snapshot_request::PartitionSnapshot::default()
        .with_partition(METADATA_PARTITION)
        .with_current_leader_epoch(r.epoch.0)
        .with_snapshot_id(
            kp::fetch_snapshot_request::SnapshotId::default()
                .with_end_offset(r.snapshot_id.offset.0)
                .with_epoch(r.snapshot_id.epoch.0),
        )
        .with_position(i64::try_from(r.position).unwrap_or(i64::MAX));
    kp::FetchSnapshotRequest::default()
        .with_cluster_id(cluster_id.map(|c| StrBytes::from_string(c.to_owned())))
        .with_replica_id(BrokerId(r.replica_id.0))
        .with_max_bytes(i32::try_from(r.max_bytes).unwrap_or(i32::MAX))
        .with_topics(vec![
            kp::fetch_snapshot_request::TopicSnapshot::default().with_name(topic_name()).with_partitions(vec![partition]),
        ])
}

pub fn fetch_snapshot_request_from_wire(w: &kp::FetchSnapshotRequest) -> Result<FetchSnapshotRequest, WireError> {
    let p = only(&w.topics, |t| is_metadata_topic(&t.name), |t| &t.partitions, |p| p.partition)?;
    Ok(FetchSnapshotRequest {
        epoch: LeaderEpoch(p.current_leader_epoch),
        replica_id: NodeId(w.replica_id.0),
        snapshot_id: OffsetAndEpoch::new(Offset(p.snapshot_id.end_offset), LeaderEpoch(p.snapshot_id.epoch)),
        position: non_negative(p.position, "position")?,
        max_bytes: u32::try_from(w.max_bytes).map_err(|_| WireError::Field("max_bytes"))?,
    })
}

pub fn fetch_snapshot_response_to_wire(r: &FetchSnapshotResponse) -> kp::FetchSnapshotResponse {
    let partition = kp::fetch_snapshot_response::PartitionSnapshot::default()
        .with_index(METADATA_PARTITION)
        .with_error_code(r.error.code())
        .with_snapshot_id(
            kp::fetch_snapshot_response::SnapshotId::default()
                .with_end_offset(r.snapshot_id.offset.0)
                .with_epoch(r.snapshot_id.epoch.0),
        )
        .with_current_leader(
            kp::fetch_snapshot_response::LeaderIdAndEpoch::default()
                .with_leader_id(leader_id(r.leader))
                .with_leader_epoch(r.epoch.0),
        )
        .with_size(i64::try_from(r.size).unwrap_or(i64::MAX))
        .with_position(i64::try_from(r.position).unwrap_or(i64::MAX))
        .with_unaligned_records(r.chunk.clone());
    kp::FetchSnapshotResponse::default().with_topics(vec![
        kp::fetch_snapshot_response::TopicSnapshot::default().with_name(topic_name()).with_partitions(vec![partition]),
    ])
}

pub fn fetch_snapshot_response_from_wire(w: &kp::FetchSnapshotResponse) -> Result<FetchSnapshotResponse, WireError> {
    if w.error_code != 0 {
        return Err(WireError::TopLevel(w.error_code));
    }
    let p = only(&w.topics, |t| is_metadata_topic(&t.name), |t| &t.partitions, |p| p.index)?;
    Ok(FetchSnapshotResponse {
        error: RaftErrorCode::from_code(p.error_code),
        epoch: LeaderEpoch(p.current_leader.leader_epoch),
        leader: leader_from(p.current_leader.leader_id),
        snapshot_id: OffsetAndEpoch::new(Offset(p.snapshot_id.end_offset), LeaderEpoch(p.snapshot_id.epoch)),
        size: non_negative(p.size, "size")?,
        position: non_negative(p.position, "position")?,
        chunk: p.unaligned_records.clone(),
    })
}

// ---- DescribeQuorum ----

fn replica_state(r: &ReplicaDescription) -> kp::describe_quorum_response::ReplicaState {
    let ms = |v: Option<u64>| v.and_then(|v| i64::try_from(v).ok()).unwrap_or(-1);
    kp::describe_quorum_response::ReplicaState::default()
        .with_replica_id(BrokerId(r.replica_id.0))
        .with_log_end_offset(r.log_end_offset.map_or(-1, |o| o.0))
        .with_last_fetch_timestamp(ms(r.last_fetch_timestamp_ms))
        .with_last_caught_up_timestamp(ms(r.last_caught_up_timestamp_ms))
}

fn replica_description(w: &kp::describe_quorum_response::ReplicaState) -> ReplicaDescription {
    let ms = |v: i64| u64::try_from(v).ok();
    ReplicaDescription {
        replica_id: NodeId(w.replica_id.0),
        log_end_offset: (w.log_end_offset >= 0).then_some(Offset(w.log_end_offset)),
        last_fetch_timestamp_ms: ms(w.last_fetch_timestamp),
        last_caught_up_timestamp_ms: ms(w.last_caught_up_timestamp),
    }
}

/// The leader's DescribeQuorum answer. Timestamps are the core's clock: the driver must feed
/// the core wall-clock milliseconds for them to mean what `kafka-metadata-quorum` expects.
pub fn describe_quorum_response_to_wire(d: &QuorumDescription) -> kp::DescribeQuorumResponse {
    let partition = kp::describe_quorum_response::PartitionData::default()
        .with_partition_index(METADATA_PARTITION)
        .with_leader_id(BrokerId(d.leader_id.0))
        .with_leader_epoch(d.leader_epoch.0)
        .with_high_watermark(d.high_watermark.0)
        .with_current_voters(d.voters.iter().map(replica_state).collect())
        .with_observers(d.observers.iter().map(replica_state).collect());
    kp::DescribeQuorumResponse::default().with_topics(vec![
        kp::describe_quorum_response::TopicData::default()
            .with_topic_name(topic_name())
            .with_partitions(vec![partition]),
    ])
}

/// DescribeQuorum's answer on a node that is not the leader.
pub fn describe_quorum_not_leader() -> kp::DescribeQuorumResponse {
    let partition = kp::describe_quorum_response::PartitionData::default()
        .with_partition_index(METADATA_PARTITION)
        .with_error_code(RaftErrorCode::NotLeaderOrFollower.code());
    kp::DescribeQuorumResponse::default().with_topics(vec![
        kp::describe_quorum_response::TopicData::default()
            .with_topic_name(topic_name())
            .with_partitions(vec![partition]),
    ])
}

pub fn describe_quorum_response_from_wire(w: &kp::DescribeQuorumResponse) -> Result<QuorumDescription, WireError> {
    if w.error_code != 0 {
        return Err(WireError::TopLevel(w.error_code));
    }
    let p = only(&w.topics, |t| is_metadata_topic(&t.topic_name), |t| &t.partitions, |p| p.partition_index)?;
    if p.error_code != 0 {
        return Err(WireError::TopLevel(p.error_code));
    }
    Ok(QuorumDescription {
        leader_id: NodeId(p.leader_id.0),
        leader_epoch: LeaderEpoch(p.leader_epoch),
        high_watermark: Offset(p.high_watermark),
        voters: p.current_voters.iter().map(replica_description).collect(),
        observers: p.observers.iter().map(replica_description).collect(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Message as _;

    /// Encodes with kafka-protocol at `version`, decodes the bytes back.
    fn through_bytes<M: Encodable + Decodable>(message: &M, version: i16) -> M {
        let mut buf = BytesMut::new();
        message.encode(&mut buf, version).unwrap();
        let mut bytes = buf.freeze();
        let decoded = M::decode(&mut bytes, version).unwrap();
        assert!(bytes.is_empty(), "every byte read back at v{version}");
        decoded
    }

    fn versions<M: kafka_protocol::protocol::Message>() -> std::ops::RangeInclusive<i16> {
        M::VERSIONS.min..=M::VERSIONS.max
    }

    fn entries() -> Vec<Entry> {
        vec![
            Entry { epoch: LeaderEpoch(3), data: EntryData::Records(Bytes::from_static(b"a")) },
            Entry { epoch: LeaderEpoch(4), data: EntryData::LeaderChange { leader: NodeId(2), voters: vec![NodeId(1), NodeId(2), NodeId(3)] } },
            Entry { epoch: LeaderEpoch(4), data: EntryData::Records(Bytes::from_static(b"bc")) },
            Entry { epoch: LeaderEpoch(4), data: EntryData::Records(Bytes::new()) },
        ]
    }

    #[test]
    fn vote_round_trips_at_every_version() {
        for pre_vote in [false, true] {
            let request = VoteRequest {
                epoch: LeaderEpoch(7),
                candidate: NodeId(2),
                last: OffsetAndEpoch::new(Offset(40), LeaderEpoch(6)),
                pre_vote,
            };
            for v in versions::<kp::VoteRequest>() {
                let Ok(wire) = vote_request_to_wire(&request, NodeId(1), Some("c"), v) else {
                    // Pre-vote exists from v2; older versions cannot carry it.
                    assert!(pre_vote && v < 2, "v{v}");
                    continue;
                };
                assert_eq!(vote_request_from_wire(&through_bytes(&wire, v)).unwrap(), request, "v{v}");
            }
            let response = VoteResponse {
                error: RaftErrorCode::None,
                epoch: LeaderEpoch(7),
                leader: None,
                granted: true,
                pre_vote,
            };
            for v in versions::<kp::VoteResponse>() {
                let back = vote_response_from_wire(&through_bytes(&vote_response_to_wire(&response), v), pre_vote).unwrap();
                assert_eq!(back, response, "v{v}");
            }
        }
    }

    #[test]
    fn quorum_epoch_messages_round_trip() {
        let begin = BeginQuorumEpochRequest { epoch: LeaderEpoch(9), leader: NodeId(3) };
        for v in versions::<kp::BeginQuorumEpochRequest>() {
            let wire = through_bytes(&begin_quorum_epoch_request_to_wire(&begin, NodeId(1), None), v);
            assert_eq!(begin_quorum_epoch_request_from_wire(&wire).unwrap(), begin, "v{v}");
        }
        let response =
            EpochResponse { error: RaftErrorCode::FencedLeaderEpoch, epoch: LeaderEpoch(10), leader: Some(NodeId(2)) };
        for v in versions::<kp::BeginQuorumEpochResponse>() {
            let wire = through_bytes(&begin_quorum_epoch_response_to_wire(&response), v);
            assert_eq!(begin_quorum_epoch_response_from_wire(&wire).unwrap(), response, "v{v}");
        }
        let end = EndQuorumEpochRequest {
            epoch: LeaderEpoch(9),
            leader: NodeId(3),
            preferred_successors: vec![NodeId(2), NodeId(1)],
        };
        for v in versions::<kp::EndQuorumEpochRequest>() {
            let wire = through_bytes(&end_quorum_epoch_request_to_wire(&end, Some("cluster")), v);
            assert_eq!(end_quorum_epoch_request_from_wire(&wire).unwrap(), end, "v{v}");
        }
        for v in versions::<kp::EndQuorumEpochResponse>() {
            let wire = through_bytes(&end_quorum_epoch_response_to_wire(&response), v);
            assert_eq!(end_quorum_epoch_response_from_wire(&wire).unwrap(), response, "v{v}");
        }
    }

    #[test]
    fn fetch_round_trips_with_records_divergence_and_snapshot_id() {
        let position = FetchPosition { fetch_offset: Offset(17), last_fetched_epoch: LeaderEpoch(3) };
        let request = FetchRequest { epoch: LeaderEpoch(4), replica_id: NodeId(5), position, max_wait_ms: 500 };
        // KRaft needs v12+ (last_fetched_epoch, diverging_epoch, current_leader, snapshot_id).
        for v in 12..=kp::FetchRequest::VERSIONS.max {
            let back = fetch_request_from_wire(&through_bytes(&fetch_request_to_wire(&request, Some("c"), v), v), v).unwrap();
            assert_eq!(back, request, "v{v}");
        }
        let with_records = FetchResponse {
            error: RaftErrorCode::None,
            epoch: LeaderEpoch(4),
            leader: Some(NodeId(2)),
            high_watermark: Some(Offset(18)),
            log_start_offset: Offset(0),
            request: position,
            entries: entries(),
            diverging_epoch: None,
            snapshot_id: None,
        };
        let diverging = FetchResponse {
            entries: Vec::new(),
            diverging_epoch: Some(OffsetAndEpoch::new(Offset(12), LeaderEpoch(2))),
            ..with_records.clone()
        };
        let snapshot = FetchResponse {
            entries: Vec::new(),
            high_watermark: None,
            log_start_offset: Offset(30),
            snapshot_id: Some(OffsetAndEpoch::new(Offset(30), LeaderEpoch(3))),
            ..with_records.clone()
        };
        let not_leader = FetchResponse {
            error: RaftErrorCode::NotLeaderOrFollower,
            leader: None,
            entries: Vec::new(),
            ..with_records.clone()
        };
        for response in [with_records, diverging, snapshot, not_leader] {
            for v in 12..=kp::FetchResponse::VERSIONS.max {
                let wire = through_bytes(&fetch_response_to_wire(&response, v).unwrap(), v);
                assert_eq!(fetch_response_from_wire(&wire, position).unwrap(), response, "v{v}");
            }
        }
    }

    #[test]
    fn records_with_a_gap_are_refused() {
        let bytes = encode_entries(Offset(5), &entries()).unwrap();
        assert_eq!(decode_entries(Offset(5), &bytes).unwrap(), entries());
        assert!(decode_entries(Offset(4), &bytes).is_err());
        assert!(decode_entries(Offset(0), &Bytes::from_static(b"\x00\x01garbage")).is_err());
    }

    #[test]
    fn fetch_snapshot_round_trips() {
        let id = OffsetAndEpoch::new(Offset(100), LeaderEpoch(6));
        let request = FetchSnapshotRequest { epoch: LeaderEpoch(7), replica_id: NodeId(4), snapshot_id: id, position: 64, max_bytes: 1024 };
        for v in versions::<kp::FetchSnapshotRequest>() {
            let wire = through_bytes(&fetch_snapshot_request_to_wire(&request, None), v);
            assert_eq!(fetch_snapshot_request_from_wire(&wire).unwrap(), request, "v{v}");
        }
        let response = FetchSnapshotResponse {
            error: RaftErrorCode::None,
            epoch: LeaderEpoch(7),
            leader: Some(NodeId(1)),
            snapshot_id: id,
            size: 200,
            position: 64,
            chunk: Bytes::from_static(b"chunk of state"),
        };
        for v in versions::<kp::FetchSnapshotResponse>() {
            let wire = through_bytes(&fetch_snapshot_response_to_wire(&response), v);
            assert_eq!(fetch_snapshot_response_from_wire(&wire).unwrap(), response, "v{v}");
        }
    }

    #[test]
    fn describe_quorum_round_trips() {
        let description = QuorumDescription {
            leader_id: NodeId(1),
            leader_epoch: LeaderEpoch(5),
            high_watermark: Offset(77),
            voters: vec![
                ReplicaDescription { replica_id: NodeId(1), log_end_offset: Some(Offset(80)), last_fetch_timestamp_ms: Some(9), last_caught_up_timestamp_ms: Some(9) },
                ReplicaDescription { replica_id: NodeId(2), log_end_offset: None, last_fetch_timestamp_ms: None, last_caught_up_timestamp_ms: None },
            ],
            observers: vec![ReplicaDescription { replica_id: NodeId(7), log_end_offset: Some(Offset(3)), last_fetch_timestamp_ms: Some(5), last_caught_up_timestamp_ms: None }],
        };
        for v in versions::<kp::DescribeQuorumResponse>() {
            let mut back = describe_quorum_response_from_wire(&through_bytes(&describe_quorum_response_to_wire(&description), v)).unwrap();
            if v == 0 {
                // v0 has no timestamps.
                for r in back.voters.iter_mut().chain(back.observers.iter_mut()) {
                    assert_eq!((r.last_fetch_timestamp_ms, r.last_caught_up_timestamp_ms), (None, None));
                }
                continue;
            }
            back.voters.iter().zip(&description.voters).for_each(|(a, b)| assert_eq!(a, b, "v{v}"));
            assert_eq!(back, description, "v{v}");
        }
        let not_leader = through_bytes(&describe_quorum_not_leader(), 2);
        assert_eq!(describe_quorum_response_from_wire(&not_leader), Err(WireError::TopLevel(6)));
    }

    #[test]
    fn a_message_for_another_partition_is_refused() {
        let mut wire = vote_request_to_wire(
            &VoteRequest { epoch: LeaderEpoch(1), candidate: NodeId(1), last: OffsetAndEpoch::ZERO, pre_vote: false },
            NodeId(2),
            None,
            2,
        )
        .unwrap();
        wire.topics[0].partitions[0].partition_index = 1;
        assert_eq!(vote_request_from_wire(&wire), Err(WireError::WrongPartition));
        wire.topics.clear();
        assert_eq!(vote_request_from_wire(&wire).map_err(|e| e.error_code()), Err(RaftErrorCode::InvalidRequest));
    }
}
