//! The quorum's vocabulary: log entries, positions, and the KRaft messages the core sends and
//! receives, as plain structs. `wire` maps them to and from `kafka-protocol`'s types; the core
//! never sees a byte of the wire format.

use bytes::Bytes;

use crate::types::{LeaderEpoch, NodeId, Offset};

/// A position in the metadata log named the way Kafka names it: the end offset of an epoch, or
/// a snapshot id. Ordered by epoch first, then offset (Kafka's `OffsetAndEpoch`), which is the
/// "at least as up to date" order of Raft's vote rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OffsetAndEpoch {
    pub offset: Offset,
    pub epoch: LeaderEpoch,
}

impl OffsetAndEpoch {
    pub const ZERO: OffsetAndEpoch = OffsetAndEpoch { offset: Offset(0), epoch: LeaderEpoch(0) };

    pub fn new(offset: Offset, epoch: LeaderEpoch) -> Self {
        Self { offset, epoch }
    }
}

impl PartialOrd for OffsetAndEpoch {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OffsetAndEpoch {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.epoch, self.offset).cmp(&(other.epoch, other.offset))
    }
}

/// A snapshot is named by the end offset (exclusive) and the epoch of the last entry it covers.
pub type SnapshotId = OffsetAndEpoch;

/// What one log entry carries. Records stay opaque to the quorum: the controller's state
/// machine decodes them. The leader-change entry is the quorum's own control record (KRaft's
/// `LeaderChangeMessage`), written first in every epoch so that the leader can commit something
/// of its own epoch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EntryData {
    LeaderChange { leader: NodeId, voters: Vec<NodeId> },
    Records(Bytes),
}

/// One entry of the metadata log. Its offset is its position in the log, not stored here.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    pub epoch: LeaderEpoch,
    pub data: EntryData,
}

/// The error codes the quorum answers with, each one Kafka's (see `code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RaftErrorCode {
    None,
    /// The request's epoch is older than ours.
    FencedLeaderEpoch,
    /// The request's epoch is newer than ours: we do not know that epoch's leader yet.
    UnknownLeaderEpoch,
    /// A leader-only request reached a node that is not the leader.
    NotLeaderOrFollower,
    /// The request is malformed (for example, a vote whose last epoch is not below its epoch).
    InvalidRequest,
    /// A FetchSnapshot named a snapshot this leader does not have.
    SnapshotNotFound,
    /// A FetchSnapshot position outside the snapshot.
    PositionOutOfRange,
    /// A voter-only request from, or to, a node outside the voter set.
    InconsistentVoterSet,
    /// Any other code from the wire, kept so it can be logged and mapped back unchanged.
    Other(i16),
}

impl RaftErrorCode {
    pub fn code(self) -> i16 {
        match self {
            RaftErrorCode::None => 0,
            RaftErrorCode::NotLeaderOrFollower => 6,
            RaftErrorCode::InvalidRequest => 42,
            RaftErrorCode::FencedLeaderEpoch => 74,
            RaftErrorCode::UnknownLeaderEpoch => 75,
            RaftErrorCode::InconsistentVoterSet => 94,
            RaftErrorCode::SnapshotNotFound => 98,
            RaftErrorCode::PositionOutOfRange => 99,
            RaftErrorCode::Other(code) => code,
        }
    }

    pub fn from_code(code: i16) -> Self {
        match code {
            0 => RaftErrorCode::None,
            6 => RaftErrorCode::NotLeaderOrFollower,
            42 => RaftErrorCode::InvalidRequest,
            74 => RaftErrorCode::FencedLeaderEpoch,
            75 => RaftErrorCode::UnknownLeaderEpoch,
            94 => RaftErrorCode::InconsistentVoterSet,
            98 => RaftErrorCode::SnapshotNotFound,
            99 => RaftErrorCode::PositionOutOfRange,
            other => RaftErrorCode::Other(other),
        }
    }
}

/// Vote (api key 52). `epoch` is the sender's current epoch (Kafka's `ReplicaEpoch`): the one a
/// candidate bumped to, or, with `pre_vote` (KIP-996), the one a prospective has not bumped
/// yet. A receiver behind it steps into it either way; a pre-vote records no vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteRequest {
    pub epoch: LeaderEpoch,
    pub candidate: NodeId,
    /// The candidate's log end: its last entry's epoch and the log end offset.
    pub last: OffsetAndEpoch,
    pub pre_vote: bool,
}

/// The answer to a Vote. `pre_vote` is not a field on the wire: the driver fills it from the
/// request it matched by correlation id, so that a late pre-vote answer can never be counted
/// as a vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteResponse {
    pub error: RaftErrorCode,
    /// The responder's epoch and the leader it knows for that epoch.
    pub epoch: LeaderEpoch,
    pub leader: Option<NodeId>,
    pub granted: bool,
    pub pre_vote: bool,
}

/// BeginQuorumEpoch (53): a new leader tells a voter it won `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeginQuorumEpochRequest {
    pub epoch: LeaderEpoch,
    pub leader: NodeId,
}

/// The answer to BeginQuorumEpoch, EndQuorumEpoch: the responder's epoch and known leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochResponse {
    pub error: RaftErrorCode,
    pub epoch: LeaderEpoch,
    pub leader: Option<NodeId>,
}

/// EndQuorumEpoch (54): the leader of `epoch` resigns; `preferred_successors` are the voters
/// best placed to win (most caught up first), who should stand for election sooner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndQuorumEpochRequest {
    pub epoch: LeaderEpoch,
    pub leader: NodeId,
    pub preferred_successors: Vec<NodeId>,
}

/// The position a follower fetches from (KIP-595): `fetch_offset` is its log end and
/// `last_fetched_epoch` the epoch of the entry before it. A voter sends only flushed positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPosition {
    pub fetch_offset: Offset,
    pub last_fetched_epoch: LeaderEpoch,
}

/// Fetch (1) of `__cluster_metadata`-0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchRequest {
    /// The epoch the fetcher believes current (`current_leader_epoch`).
    pub epoch: LeaderEpoch,
    pub replica_id: NodeId,
    pub position: FetchPosition,
    pub max_wait_ms: u64,
}

/// The answer to a Fetch. At most one of `diverging_epoch`, `snapshot_id` and `entries` is
/// meaningful. `request` echoes the position asked for: the driver fills it from the pending
/// request (the wire matches by correlation id), so the follower can drop late or duplicated
/// answers to positions it has left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResponse {
    pub error: RaftErrorCode,
    pub epoch: LeaderEpoch,
    pub leader: Option<NodeId>,
    pub high_watermark: Option<Offset>,
    pub log_start_offset: Offset,
    pub request: FetchPosition,
    /// Entries starting at `request.fetch_offset`.
    pub entries: Vec<Entry>,
    /// The follower's log diverges: truncate to at most this end offset of this epoch.
    pub diverging_epoch: Option<OffsetAndEpoch>,
    /// The fetch offset is below the leader's log start: fetch this snapshot first.
    pub snapshot_id: Option<SnapshotId>,
}

/// FetchSnapshot (59): a chunk of `snapshot_id` from byte `position`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchSnapshotRequest {
    pub epoch: LeaderEpoch,
    pub replica_id: NodeId,
    pub snapshot_id: SnapshotId,
    pub position: u64,
    pub max_bytes: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchSnapshotResponse {
    pub error: RaftErrorCode,
    pub epoch: LeaderEpoch,
    pub leader: Option<NodeId>,
    pub snapshot_id: SnapshotId,
    /// The snapshot's total size in bytes.
    pub size: u64,
    pub position: u64,
    pub chunk: Bytes,
}

/// Every message between quorum members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    VoteRequest(VoteRequest),
    VoteResponse(VoteResponse),
    BeginQuorumEpochRequest(BeginQuorumEpochRequest),
    BeginQuorumEpochResponse(EpochResponse),
    EndQuorumEpochRequest(EndQuorumEpochRequest),
    EndQuorumEpochResponse(EpochResponse),
    FetchRequest(FetchRequest),
    FetchResponse(FetchResponse),
    FetchSnapshotRequest(FetchSnapshotRequest),
    FetchSnapshotResponse(FetchSnapshotResponse),
}

impl Message {
    /// The epoch the message speaks for: the sender's view.
    pub fn epoch(&self) -> LeaderEpoch {
        match self {
            Message::VoteRequest(m) => m.epoch,
            Message::VoteResponse(m) => m.epoch,
            Message::BeginQuorumEpochRequest(m) => m.epoch,
            Message::BeginQuorumEpochResponse(m) => m.epoch,
            Message::EndQuorumEpochRequest(m) => m.epoch,
            Message::EndQuorumEpochResponse(m) => m.epoch,
            Message::FetchRequest(m) => m.epoch,
            Message::FetchResponse(m) => m.epoch,
            Message::FetchSnapshotRequest(m) => m.epoch,
            Message::FetchSnapshotResponse(m) => m.epoch,
        }
    }
}
