//! The core's per-role state (Kafka's `EpochState` family) and the leader's bookkeeping:
//! replica progress, the high-watermark rule, check-quorum, parked fetches.

use std::collections::{BTreeMap, BTreeSet};

use bytes::BytesMut;

use super::message::{FetchPosition, FetchRequest, SnapshotId};
use crate::types::{LeaderEpoch, NodeId, Offset};

/// What must survive a crash (Kafka's `quorum-state` file): written, and durable, before any
/// message that depends on it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QuorumState {
    pub epoch: LeaderEpoch,
    pub voted_for: Option<NodeId>,
    pub leader: Option<NodeId>,
}

/// The role's name, for notifications and DescribeQuorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoleKind {
    Unattached,
    Prospective,
    Candidate,
    Leader,
    Follower,
    Resigned,
}

/// A Fetch the follower (or observer) has sent and not yet had answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InFlightFetch {
    pub to: NodeId,
    pub position: FetchPosition,
    pub sent_ms: u64,
}

/// A snapshot being downloaded chunk by chunk.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotDownload {
    pub id: SnapshotId,
    pub data: BytesMut,
    /// The FetchSnapshot in flight: its position and when it was sent.
    pub in_flight: Option<(u64, u64)>,
}

#[derive(Debug, Clone)]
pub(crate) struct FollowerState {
    pub leader: NodeId,
    /// The leader has answered this node (a fetch, or BeginQuorumEpoch) since it began
    /// following: only then does it refuse pre-votes and name the leader to others. A node
    /// that follows on hearsay must not keep a dead leader's followers loyal to it.
    pub heard_from_leader: bool,
    /// A request to the leader failed with its connection refused or reset since it last
    /// answered (`Event::Unreachable`): the early deadline is drawn once, not per retry.
    pub leader_unreachable: bool,
    /// When the fetch timeout expires unless the leader answers first.
    pub fetch_deadline_ms: u64,
    pub in_flight: Option<InFlightFetch>,
    /// No fetch before this (the retry backoff after an error).
    pub fetch_not_before_ms: u64,
    pub snapshot: Option<SnapshotDownload>,
}

#[derive(Debug, Clone)]
pub(crate) struct ElectionState {
    pub deadline_ms: u64,
    pub granted: BTreeSet<NodeId>,
    pub rejected: BTreeSet<NodeId>,
    /// When the voters that have not answered get the request again (Kafka's nominees keep
    /// sending to unrecorded voters while the election can still be won).
    pub resend_ms: u64,
}

impl ElectionState {
    pub fn new(local: NodeId, deadline_ms: u64, resend_ms: u64) -> Self {
        Self { deadline_ms, granted: [local].into(), rejected: BTreeSet::new(), resend_ms }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Role {
    /// No leader known for the epoch. An observer here probes voters with Fetch to find one.
    Unattached { election_deadline_ms: u64, probe: Option<InFlightFetch>, probe_not_before_ms: u64 },
    /// Pre-vote (KIP-996): asking, without changing the epoch, whether a real vote could win.
    Prospective(ElectionState),
    /// Standing for election in an epoch it started and voted for itself in.
    Candidate(ElectionState),
    Leader(Box<LeaderState>),
    Follower(FollowerState),
    /// A leader that gave up its epoch; waits for a successor, answering no fetches.
    Resigned { election_deadline_ms: u64 },
}

impl Role {
    pub fn kind(&self) -> RoleKind {
        match self {
            Role::Unattached { .. } => RoleKind::Unattached,
            Role::Prospective(_) => RoleKind::Prospective,
            Role::Candidate(_) => RoleKind::Candidate,
            Role::Leader(_) => RoleKind::Leader,
            Role::Follower(_) => RoleKind::Follower,
            Role::Resigned { .. } => RoleKind::Resigned,
        }
    }
}

/// What the leader knows of one replica, voter or observer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplicaProgress {
    /// The fetch offset of its last valid Fetch: a voter sends only flushed positions.
    pub end_offset: Option<Offset>,
    pub last_fetch_ms: Option<u64>,
    pub last_caught_up_ms: Option<u64>,
}

#[derive(Debug, Clone)]
pub(crate) struct ParkedFetch {
    pub from: NodeId,
    pub request: FetchRequest,
    pub deadline_ms: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct LeaderState {
    /// The offset of this epoch's leader-change entry: nothing is committed by this leader
    /// until the high watermark passes it.
    pub epoch_start_offset: Offset,
    pub voters: BTreeMap<NodeId, ReplicaProgress>,
    pub observers: BTreeMap<NodeId, ReplicaProgress>,
    /// Voters that have not fetched (or acknowledged BeginQuorumEpoch) in this epoch.
    pub unacknowledged: BTreeSet<NodeId>,
    pub begin_quorum_resend_ms: u64,
    /// Voters heard from since the check-quorum timer was last reset.
    pub fetched_since_check: BTreeSet<NodeId>,
    pub check_quorum_deadline_ms: u64,
    pub parked: Vec<ParkedFetch>,
}

impl LeaderState {
    /// The high watermark the voters' flushed ends allow: the largest offset a majority holds,
    /// counting `own_end` for the leader. `None` until an entry of this epoch is included.
    pub fn majority_end(&self, local: NodeId, own_end: Offset, require_own_epoch: bool) -> Option<Offset> {
        let mut ends: Vec<Offset> = self
            .voters
            .iter()
            .map(|(id, p)| if *id == local { own_end } else { p.end_offset.unwrap_or(Offset(0)) })
            .collect();
        ends.sort_unstable_by(|a, b| b.cmp(a));
        let majority_end = *ends.get(ends.len() / 2)?;
        if require_own_epoch && majority_end <= self.epoch_start_offset {
            return None;
        }
        Some(majority_end)
    }
}

/// One replica's line in DescribeQuorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaDescription {
    pub replica_id: NodeId,
    pub log_end_offset: Option<Offset>,
    pub last_fetch_timestamp_ms: Option<u64>,
    pub last_caught_up_timestamp_ms: Option<u64>,
}

/// DescribeQuorum's answer for `__cluster_metadata`-0, as the leader knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumDescription {
    pub leader_id: NodeId,
    pub leader_epoch: LeaderEpoch,
    pub high_watermark: Offset,
    pub voters: Vec<ReplicaDescription>,
    pub observers: Vec<ReplicaDescription>,
}

/// A small seedable generator (SplitMix64): the core's only source of randomness, so that a
/// seed replays every election exactly.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..bound` (0 when `bound` is 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 { 0 } else { self.next_u64() % bound }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader_with(ends: &[(i32, Option<i64>)], epoch_start: i64) -> LeaderState {
        LeaderState {
            epoch_start_offset: Offset(epoch_start),
            voters: ends
                .iter()
                .map(|(id, end)| {
                    (NodeId(*id), ReplicaProgress { end_offset: end.map(Offset), ..Default::default() })
                })
                .collect(),
            observers: BTreeMap::new(),
            unacknowledged: BTreeSet::new(),
            begin_quorum_resend_ms: 0,
            fetched_since_check: BTreeSet::new(),
            check_quorum_deadline_ms: 0,
            parked: Vec::new(),
        }
    }

    #[test]
    fn high_watermark_is_the_majority_flushed_end() {
        let leader = leader_with(&[(1, None), (2, Some(7)), (3, Some(4))], 3);
        assert_eq!(leader.majority_end(NodeId(1), Offset(9), true), Some(Offset(7)));
        let five = leader_with(&[(1, None), (2, Some(7)), (3, Some(4)), (4, None), (5, Some(5))], 3);
        assert_eq!(five.majority_end(NodeId(1), Offset(9), true), Some(Offset(5)));
    }

    #[test]
    fn nothing_commits_before_an_entry_of_the_leaders_epoch() {
        // Offsets below 6 are on a majority, but the leader-change entry at 6 is not.
        let leader = leader_with(&[(1, None), (2, Some(6)), (3, Some(2))], 6);
        assert_eq!(leader.majority_end(NodeId(1), Offset(7), true), None);
        assert_eq!(leader.majority_end(NodeId(1), Offset(7), false), Some(Offset(6)));
        let later = leader_with(&[(1, None), (2, Some(7)), (3, Some(2))], 6);
        assert_eq!(later.majority_end(NodeId(1), Offset(7), true), Some(Offset(7)));
    }
}
