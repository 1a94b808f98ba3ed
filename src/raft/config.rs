//! The quorum's settings, with Kafka's property names and defaults. The typed broker
//! configuration feeds this struct; the core reads nothing else.

use crate::types::NodeId;

/// `controller.quorum.*`, plus the bounds the core needs. Times are in the driver's
/// milliseconds (see `RaftCore::step`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftConfig {
    /// `node.id`.
    pub node_id: NodeId,
    /// `controller.quorum.voters`: the static voter set. A node not in it is an observer.
    pub voters: Vec<NodeId>,
    /// `controller.quorum.election.timeout.ms`: the base; each wait is randomized up to 2x.
    pub election_timeout_ms: u64,
    /// `controller.quorum.fetch.timeout.ms`: a follower that hears nothing from its leader for
    /// this long stands for election; a leader not fetched from by a majority for 1.5x this
    /// long resigns (check-quorum).
    pub fetch_timeout_ms: u64,
    /// `controller.quorum.election.backoff.max.ms`: the longest wait after a lost election.
    pub election_backoff_max_ms: u64,
    /// `controller.quorum.request.timeout.ms`: an unanswered request is resent after this.
    pub request_timeout_ms: u64,
    /// `controller.quorum.retry.backoff.ms`: the pause before retrying a failed fetch.
    pub retry_backoff_ms: u64,
    /// How long the leader parks a Fetch that has nothing new (Kafka's raft fetch max wait).
    pub fetch_max_wait_ms: u64,
    /// The most entries one Fetch response carries.
    pub fetch_max_entries: usize,
    /// The most record bytes one Fetch response carries, at least one entry (Kafka's quorum
    /// fetches 8 MiB at most).
    pub fetch_max_bytes: usize,
    /// The most bytes one FetchSnapshot response carries.
    pub snapshot_chunk_bytes: u32,
    /// The most observers the leader tracks for DescribeQuorum.
    pub observers_tracked_max: usize,
    /// Test-only: break one safety rule so the simulator can prove it notices.
    #[doc(hidden)]
    pub planted: Option<PlantedBug>,
}

impl RaftConfig {
    pub const ELECTION_TIMEOUT_MS_DEFAULT: u64 = 1000;
    pub const FETCH_TIMEOUT_MS_DEFAULT: u64 = 2000;
    pub const ELECTION_BACKOFF_MAX_MS_DEFAULT: u64 = 1000;
    pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 2000;
    pub const RETRY_BACKOFF_MS_DEFAULT: u64 = 20;
    pub const FETCH_MAX_WAIT_MS_DEFAULT: u64 = 500;

    /// Kafka's defaults for a node and a voter set.
    pub fn new(node_id: NodeId, voters: Vec<NodeId>) -> Self {
        Self {
            node_id,
            voters,
            election_timeout_ms: Self::ELECTION_TIMEOUT_MS_DEFAULT,
            fetch_timeout_ms: Self::FETCH_TIMEOUT_MS_DEFAULT,
            election_backoff_max_ms: Self::ELECTION_BACKOFF_MAX_MS_DEFAULT,
            request_timeout_ms: Self::REQUEST_TIMEOUT_MS_DEFAULT,
            retry_backoff_ms: Self::RETRY_BACKOFF_MS_DEFAULT,
            fetch_max_wait_ms: Self::FETCH_MAX_WAIT_MS_DEFAULT,
            fetch_max_entries: 512,
            fetch_max_bytes: 8 << 20,
            snapshot_chunk_bytes: 1 << 20,
            observers_tracked_max: 1024,
            planted: None,
        }
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    /// Votes (or flushed copies) needed out of the voter set.
    pub fn majority(&self) -> usize {
        self.voters.len() / 2 + 1
    }
}

/// The safety rules the simulator's planted-bug tests break, one at a time.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlantedBug {
    /// A granted vote is left out of `PersistQuorumState`: a crash forgets it.
    VoteNotPersisted,
    /// A candidate counts a granted vote answered for an older epoch.
    StaleEpochVoteCounted,
    /// The leader advances the high watermark over a majority-replicated prefix before any
    /// entry of its own epoch is on a majority.
    CommitPriorEpochByCount,
    /// The leader counts its written, not flushed, log end towards the high watermark.
    UnflushedLeaderEndCounted,
    /// A follower fetches (and so reports its end to the leader) before flushing what it
    /// appended.
    FollowerFetchesBeforeFlush,
}
