//! `RaftCore`: the KRaft consensus rules as a deterministic state machine. Events in (ticks,
//! messages, flush reports, proposals), actions out (persist, flush, send, commit, role
//! changes). No I/O, no clock, no threads; its only randomness is a seeded generator.
//!
//! The role transitions and vote rules live here; the Fetch paths (leader and follower) and
//! snapshots are in `fetch.rs`.

use bytes::Bytes;

use super::config::{PlantedBug, RaftConfig};
use super::log::RaftLog;
use super::message::{
    BeginQuorumEpochRequest, EndQuorumEpochRequest, Entry, EntryData, EpochResponse, Message, RaftErrorCode,
    SnapshotId, VoteRequest, VoteResponse,
};
use super::state::{
    ElectionState, FollowerState, LeaderState, QuorumDescription, QuorumState, ReplicaDescription, ReplicaProgress,
    Role, RoleKind, SplitMix64,
};
use crate::types::{LeaderEpoch, NodeId, Offset};

/// An input to the core. Every event is stamped with the driver's clock by `step`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Time passed: timers are checked. The driver calls this at `next_deadline_ms` at least.
    Tick,
    /// A request or response from another quorum member or observer.
    Message { from: NodeId, msg: Message },
    /// The local log is durable below `up_to`. The driver must report only what is durable in
    /// the log as it is now (a flush that raced a truncation reports the truncated end).
    Flushed { up_to: Offset },
    /// Leader only: append these records in the current epoch.
    Propose { records: Vec<Bytes> },
    /// Graceful shutdown of a leader: resign and tell the voters (EndQuorumEpoch).
    Resign,
    /// A request to `peer` failed because its connection was refused or reset: its process is
    /// gone (the driver must not report a timeout so: a slow or cut-off peer may be alive).
    /// A follower stops vouching for a leader it cannot reach and stands after a random
    /// backoff instead of the whole fetch timeout.
    Unreachable { peer: NodeId },
}

/// An output of the core, to be executed in order: a `PersistQuorumState` is always emitted
/// before the first `Send` that depends on it, so executing in order (and making the persist
/// durable before moving on) is what keeps a vote from being forgotten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write `quorum-state` durably before executing the next action.
    PersistQuorumState(QuorumState),
    /// The core has written log entries below `up_to`; flush them and report `Flushed`.
    Flush { up_to: Offset },
    /// The core truncated the log to `to` (a divergence): anything cached above it is gone.
    LogTruncated { to: Offset },
    Send { to: NodeId, msg: Message },
    /// The high watermark advanced: entries below `up_to` are committed and may be applied.
    Commit { up_to: Offset },
    /// The log was replaced by this snapshot: the state machine reloads from it.
    SnapshotLoaded { id: SnapshotId },
    /// A role change (BecameLeader, BecameFollower, ...).
    RoleChanged { role: RoleKind, epoch: LeaderEpoch, leader: Option<NodeId> },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RaftError {
    #[error("not the leader of epoch {epoch:?} (leader {leader:?})")]
    NotLeader { epoch: LeaderEpoch, leader: Option<NodeId> },
    #[error("invalid quorum configuration: {0}")]
    InvalidConfig(&'static str),
    #[error("snapshot end offset {end:?} is not a committed offset in the log")]
    InvalidSnapshot { end: Offset },
}

/// The consensus core of one node. See the module docs of `raft` for the rules it keeps.
pub struct RaftCore<L: RaftLog> {
    pub(crate) config: RaftConfig,
    pub(crate) log: L,
    pub(crate) rng: SplitMix64,
    pub(crate) quorum: QuorumState,
    pub(crate) role: Role,
    /// The local log is durable below this.
    pub(crate) flushed: Offset,
    pub(crate) high_watermark: Offset,
    pub(crate) now_ms: u64,
    pub(crate) out: Vec<Action>,
}

impl<L: RaftLog> RaftCore<L> {
    /// Starts (or restarts) a node from its durable state: the log as recovered (all of it
    /// flushed) and the last persisted quorum state. A node that was leader comes back
    /// resigned: its leader state did not survive.
    pub fn new(
        config: RaftConfig,
        log: L,
        persisted: QuorumState,
        seed: u64,
        now_ms: u64,
    ) -> Result<Self, RaftError> {
        if config.voters.is_empty() {
            return Err(RaftError::InvalidConfig("controller.quorum.voters is empty"));
        }
        if config.election_timeout_ms == 0 || config.fetch_timeout_ms == 0 || config.fetch_max_entries == 0 {
            return Err(RaftError::InvalidConfig("timeouts and fetch_max_entries must be positive"));
        }
        let flushed = log.end_offset();
        let high_watermark = log.start_offset();
        let mut core = Self {
            config,
            log,
            rng: SplitMix64::new(seed),
            quorum: persisted,
            role: Role::Resigned { election_deadline_ms: now_ms },
            flushed,
            high_watermark,
            now_ms,
            out: Vec::new(),
        };
        let local = core.local();
        // The only voter needs nobody's vote: it stands at its first tick, as Kafka's
        // `KafkaRaftClient` becomes candidate at once when `isOnlyVoter`, so a single node
        // serves within milliseconds instead of after an election timeout.
        let sole_voter = core.config.voters == [local];
        let deadline = if sole_voter { now_ms } else { now_ms + core.election_timeout_ms() };
        core.role = match persisted.leader {
            Some(leader) if leader == local => Role::Resigned { election_deadline_ms: deadline },
            Some(leader) => Role::Follower(FollowerState {
                leader,
                heard_from_leader: false,
                leader_unreachable: false,
                fetch_deadline_ms: now_ms + core.config.fetch_timeout_ms,
                in_flight: None,
                fetch_not_before_ms: now_ms,
                snapshot: None,
            }),
            None => Role::Unattached { election_deadline_ms: deadline, probe: None, probe_not_before_ms: now_ms },
        };
        Ok(core)
    }

    /// Feeds one event; returns the actions to execute, in order.
    pub fn step(&mut self, now_ms: u64, event: Event) -> Result<Vec<Action>, RaftError> {
        self.now_ms = self.now_ms.max(now_ms);
        match event {
            Event::Tick => self.on_tick(),
            Event::Message { from, msg } => self.on_message(from, msg),
            Event::Flushed { up_to } => self.on_flushed(up_to),
            Event::Propose { records } => {
                self.propose_records(records)?;
            }
            Event::Resign => self.resign(),
            Event::Unreachable { peer } => self.on_unreachable(peer),
        }
        Ok(std::mem::take(&mut self.out))
    }

    /// Leader only: appends `records` in the current epoch; returns the offset of the first
    /// and the actions to execute.
    pub fn propose(&mut self, now_ms: u64, records: Vec<Bytes>) -> Result<(Offset, Vec<Action>), RaftError> {
        self.now_ms = self.now_ms.max(now_ms);
        let first = self.propose_records(records)?;
        Ok((first, std::mem::take(&mut self.out)))
    }

    fn propose_records(&mut self, records: Vec<Bytes>) -> Result<Offset, RaftError> {
        if !matches!(self.role, Role::Leader(_)) {
            return Err(RaftError::NotLeader { epoch: self.epoch(), leader: self.leader() });
        }
        let first = self.log.end_offset();
        let epoch = self.epoch();
        self.log.append(records.into_iter().map(|r| Entry { epoch, data: EntryData::Records(r) }).collect());
        self.written();
        self.answer_parked_fetches();
        Ok(first)
    }

    // ---- what the driver and tests may read ----

    pub fn local(&self) -> NodeId {
        self.config.node_id
    }

    pub fn epoch(&self) -> LeaderEpoch {
        self.quorum.epoch
    }

    pub fn quorum_state(&self) -> QuorumState {
        self.quorum
    }

    pub fn role(&self) -> RoleKind {
        self.role.kind()
    }

    /// The leader this node knows to be live: itself as leader, or the one it follows. (A
    /// prospective remembers its last leader in `quorum_state` but does not vouch for it.)
    pub fn leader(&self) -> Option<NodeId> {
        match &self.role {
            Role::Leader(_) => Some(self.local()),
            Role::Follower(f) => Some(f.leader),
            _ => None,
        }
    }

    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    pub fn flushed_offset(&self) -> Offset {
        self.flushed
    }

    pub fn log(&self) -> &L {
        &self.log
    }

    /// For the driver's flushing only; the core's own rules must not be bypassed through it.
    pub fn log_mut(&mut self) -> &mut L {
        &mut self.log
    }

    pub fn config(&self) -> &RaftConfig {
        &self.config
    }

    /// The earliest time at which a `Tick` has work to do.
    pub fn next_deadline_ms(&self) -> u64 {
        let request_timeout = self.config.request_timeout_ms;
        match &self.role {
            Role::Unattached { election_deadline_ms, probe, probe_not_before_ms } => {
                if self.config.is_voter(self.local()) {
                    *election_deadline_ms
                } else {
                    probe.map_or(*probe_not_before_ms, |p| p.sent_ms + request_timeout)
                }
            }
            Role::Prospective(e) | Role::Candidate(e) => e.deadline_ms.min(e.resend_ms),
            Role::Follower(f) => {
                let in_flight_sent = match &f.snapshot {
                    Some(download) => download.in_flight.map(|(_, sent)| sent),
                    None => f.in_flight.map(|p| p.sent_ms),
                };
                let ready = f.snapshot.is_some() || self.flushed >= self.log.end_offset();
                let next_request_ms = match in_flight_sent {
                    Some(sent) => sent + request_timeout,
                    None if ready => f.fetch_not_before_ms.max(self.now_ms),
                    None => u64::MAX, // the next Flushed event sends the fetch
                };
                f.fetch_deadline_ms.min(next_request_ms)
            }
            Role::Leader(l) => {
                let mut at = l.check_quorum_deadline_ms;
                if !l.unacknowledged.is_empty() {
                    at = at.min(l.begin_quorum_resend_ms);
                }
                l.parked.iter().fold(at, |at, p| at.min(p.deadline_ms))
            }
            Role::Resigned { election_deadline_ms } => *election_deadline_ms,
        }
    }

    /// DescribeQuorum, answered by the leader only (`None` elsewhere: NOT_LEADER_OR_FOLLOWER).
    pub fn describe_quorum(&self) -> Option<QuorumDescription> {
        let Role::Leader(leader) = &self.role else { return None };
        let describe = |id: &NodeId, p: &ReplicaProgress| {
            if *id == self.local() {
                ReplicaDescription {
                    replica_id: *id,
                    log_end_offset: Some(self.log.end_offset()),
                    last_fetch_timestamp_ms: Some(self.now_ms),
                    last_caught_up_timestamp_ms: Some(self.now_ms),
                }
            } else {
                ReplicaDescription {
                    replica_id: *id,
                    log_end_offset: p.end_offset,
                    last_fetch_timestamp_ms: p.last_fetch_ms,
                    last_caught_up_timestamp_ms: p.last_caught_up_ms,
                }
            }
        };
        Some(QuorumDescription {
            leader_id: self.local(),
            leader_epoch: self.epoch(),
            high_watermark: self.high_watermark,
            voters: leader.voters.iter().map(|(id, p)| describe(id, p)).collect(),
            observers: leader.observers.iter().map(|(id, p)| describe(id, p)).collect(),
        })
    }

    /// The driver took a snapshot of the state machine at `end` (exclusive; committed): record
    /// it and delete the log prefix behind it (KIP-630). Followers below it will FetchSnapshot.
    pub fn snapshot_taken(&mut self, end: Offset, data: Bytes) -> Result<SnapshotId, RaftError> {
        let log_start = self.log.start_offset();
        if end > self.high_watermark || end <= log_start || end > self.flushed {
            return Err(RaftError::InvalidSnapshot { end });
        }
        let epoch = self.log.entry_epoch(Offset(end.0 - 1)).ok_or(RaftError::InvalidSnapshot { end })?;
        let id = SnapshotId::new(end, epoch);
        self.log.save_snapshot_and_truncate_prefix(id, data);
        Ok(id)
    }

    // ---- plumbing ----

    pub(crate) fn planted(&self, bug: PlantedBug) -> bool {
        self.config.planted == Some(bug)
    }

    pub(crate) fn send(&mut self, to: NodeId, msg: Message) {
        self.out.push(Action::Send { to, msg });
    }

    fn set_quorum(&mut self, state: QuorumState) {
        if state == self.quorum {
            return;
        }
        assert!(state.epoch >= self.quorum.epoch, "the epoch never goes back");
        assert!(
            state.epoch > self.quorum.epoch || self.quorum.voted_for.is_none() || state.voted_for == self.quorum.voted_for,
            "a vote is never changed within an epoch"
        );
        self.quorum = state;
        let mut persisted = state;
        if self.planted(PlantedBug::VoteNotPersisted) && state.voted_for != Some(self.local()) {
            persisted.voted_for = None;
        }
        self.out.push(Action::PersistQuorumState(persisted));
    }

    fn set_role(&mut self, role: Role) {
        let old = std::mem::replace(&mut self.role, role);
        self.out.push(Action::RoleChanged { role: self.role.kind(), epoch: self.epoch(), leader: self.leader() });
        // Every request gets one answer (the driver pairs answers with requests in order, per
        // peer): fetches a resigning leader held learn that it no longer leads, and who does.
        if let Role::Leader(state) = old {
            for p in state.parked {
                let response = self.fetch_response(p.request.position, RaftErrorCode::NotLeaderOrFollower);
                self.send(p.from, Message::FetchResponse(response));
            }
        }
    }

    fn election_timeout_ms(&mut self) -> u64 {
        let base = self.config.election_timeout_ms;
        base + self.rng.below(base)
    }

    /// Entries were written locally: ask for a flush.
    pub(crate) fn written(&mut self) {
        self.out.push(Action::Flush { up_to: self.log.end_offset() });
    }

    fn other_voters(&self) -> Vec<NodeId> {
        self.config.voters.iter().copied().filter(|v| *v != self.local()).collect()
    }

    // ---- transitions ----

    pub(crate) fn become_unattached(&mut self, epoch: LeaderEpoch, voted_for: Option<NodeId>) {
        self.set_quorum(QuorumState { epoch, voted_for, leader: None });
        let deadline = self.now_ms + self.election_timeout_ms();
        let now = self.now_ms;
        self.set_role(Role::Unattached { election_deadline_ms: deadline, probe: None, probe_not_before_ms: now });
    }

    pub(crate) fn become_follower(&mut self, epoch: LeaderEpoch, leader: NodeId) {
        // A vote cast in this epoch stays recorded: it still binds this node.
        let voted_for = if epoch == self.quorum.epoch { self.quorum.voted_for } else { None };
        self.set_quorum(QuorumState { epoch, voted_for, leader: Some(leader) });
        let now = self.now_ms;
        self.set_role(Role::Follower(FollowerState {
            leader,
            heard_from_leader: false,
            leader_unreachable: false,
            fetch_deadline_ms: now + self.config.fetch_timeout_ms,
            in_flight: None,
            fetch_not_before_ms: now,
            snapshot: None,
        }));
        self.maybe_fetch();
    }

    fn become_prospective(&mut self) {
        let deadline = self.now_ms + self.election_timeout_ms();
        let resend = self.now_ms + self.config.request_timeout_ms;
        self.set_role(Role::Prospective(ElectionState::new(self.local(), deadline, resend)));
        self.send_vote_requests(&self.other_voters());
        self.maybe_win_election();
    }

    fn become_candidate(&mut self) {
        let local = self.local();
        let epoch = LeaderEpoch(self.epoch().0 + 1);
        self.set_quorum(QuorumState { epoch, voted_for: Some(local), leader: None });
        let deadline = self.now_ms + self.election_timeout_ms();
        let resend = self.now_ms + self.config.request_timeout_ms;
        self.set_role(Role::Candidate(ElectionState::new(local, deadline, resend)));
        self.send_vote_requests(&self.other_voters());
        self.maybe_win_election();
    }

    /// A prospective asks for pre-votes, a candidate for votes, both in the node's current
    /// epoch (Kafka's `buildVoteRequest`): a prospective has not bumped its epoch, a candidate
    /// has. A pre-vote carrying the current epoch is what unsticks a node whose own candidacy
    /// went unheard: its epoch is above the leader's, and the voters it asks step into it.
    fn send_vote_requests(&mut self, to: &[NodeId]) {
        let pre_vote = matches!(self.role, Role::Prospective(_));
        let request =
            VoteRequest { epoch: self.epoch(), candidate: self.local(), last: self.log.end_offset_and_epoch(), pre_vote };
        for voter in to {
            self.send(*voter, Message::VoteRequest(request.clone()));
        }
    }

    fn maybe_win_election(&mut self) {
        let majority = self.config.majority();
        match &self.role {
            Role::Prospective(e) if e.granted.len() >= majority => self.become_candidate(),
            Role::Candidate(e) if e.granted.len() >= majority => self.become_leader(),
            _ => {}
        }
    }

    fn become_leader(&mut self) {
        let local = self.local();
        let epoch = self.epoch();
        assert!(self.quorum.voted_for == Some(local), "a leader voted for itself");
        self.set_quorum(QuorumState { epoch, voted_for: Some(local), leader: Some(local) });
        let now = self.now_ms;
        let others = self.other_voters();
        let state = LeaderState {
            epoch_start_offset: self.log.end_offset(),
            voters: self.config.voters.iter().map(|v| (*v, ReplicaProgress::default())).collect(),
            observers: Default::default(),
            unacknowledged: others.iter().copied().collect(),
            begin_quorum_resend_ms: now + self.config.request_timeout_ms,
            fetched_since_check: Default::default(),
            check_quorum_deadline_ms: now + self.check_quorum_timeout_ms(),
            parked: Vec::new(),
        };
        self.set_role(Role::Leader(Box::new(state)));
        let voters = self.config.voters.clone();
        self.log.append(vec![Entry { epoch, data: EntryData::LeaderChange { leader: local, voters } }]);
        self.written();
        for voter in others {
            self.send(voter, Message::BeginQuorumEpochRequest(BeginQuorumEpochRequest { epoch, leader: local }));
        }
    }

    fn check_quorum_timeout_ms(&self) -> u64 {
        self.config.fetch_timeout_ms + self.config.fetch_timeout_ms / 2
    }

    /// A leader gives up its epoch (shutdown, or check-quorum failed) and tells the voters,
    /// the most caught-up first, so that a successor stands without waiting a fetch timeout.
    fn resign(&mut self) {
        let Role::Leader(state) = &self.role else { return };
        let mut successors: Vec<(Offset, NodeId)> = state
            .voters
            .iter()
            .filter(|(id, _)| **id != self.local())
            .map(|(id, p)| (p.end_offset.unwrap_or(Offset(0)), *id))
            .collect();
        successors.sort_by(|a, b| b.cmp(a));
        let preferred_successors: Vec<NodeId> = successors.into_iter().map(|(_, id)| id).collect();
        let deadline = self.now_ms + self.election_timeout_ms();
        self.set_role(Role::Resigned { election_deadline_ms: deadline });
        let request = EndQuorumEpochRequest { epoch: self.epoch(), leader: self.local(), preferred_successors };
        for voter in self.other_voters() {
            self.send(voter, Message::EndQuorumEpochRequest(request.clone()));
        }
    }

    /// Every message's epoch is evidence: a newer epoch makes this node step down into it
    /// (following the leader the message names, if any); a leader named for the current epoch
    /// is followed by a node that knew none.
    fn observe_epoch(&mut self, epoch: LeaderEpoch, leader: Option<NodeId>) {
        let local = self.local();
        let leader = leader.filter(|l| *l != local);
        if epoch > self.epoch() {
            match leader {
                Some(l) => self.become_follower(epoch, l),
                None => self.become_unattached(epoch, None),
            }
        } else if let Some(l) = leader.filter(|_| epoch == self.epoch()) {
            // A prospective that still remembers this leader returns to it (KIP-996); a node
            // that knew no leader of the epoch starts following it.
            let following = matches!(&self.role, Role::Follower(f) if f.leader == l);
            let leads = matches!(self.role, Role::Leader(_) | Role::Resigned { .. });
            let knows_another = self.quorum.leader.is_some_and(|known| known != l);
            if !following && !leads && !knows_another {
                self.become_follower(epoch, l);
            }
        }
    }

    // ---- events ----

    fn on_tick(&mut self) {
        let now = self.now_ms;
        let is_voter = self.config.is_voter(self.local());
        match &mut self.role {
            Role::Unattached { election_deadline_ms, .. } => {
                if is_voter && now >= *election_deadline_ms {
                    self.become_prospective();
                } else if !is_voter {
                    self.maybe_probe_for_leader();
                }
            }
            Role::Prospective(e) | Role::Candidate(e) => {
                if now >= e.deadline_ms {
                    self.become_prospective();
                } else if now >= e.resend_ms {
                    // Kafka's nominees retry voters that have not answered (after the request
                    // timeout) for as long as the election can still be won.
                    e.resend_ms = now + self.config.request_timeout_ms;
                    let lost = e.rejected.len() > self.config.voters.len() - self.config.majority();
                    let unanswered: Vec<NodeId> = self
                        .config
                        .voters
                        .iter()
                        .copied()
                        .filter(|v| !e.granted.contains(v) && !e.rejected.contains(v))
                        .collect();
                    if !lost {
                        self.send_vote_requests(&unanswered);
                    }
                }
            }
            Role::Follower(f) => {
                if now >= f.fetch_deadline_ms {
                    if is_voter {
                        self.become_prospective();
                    } else {
                        let (epoch, voted_for) = (self.quorum.epoch, self.quorum.voted_for);
                        self.become_unattached(epoch, voted_for);
                    }
                    return;
                }
                let timeout = self.config.request_timeout_ms;
                if f.in_flight.is_some_and(|p| p.sent_ms + timeout <= now) {
                    f.in_flight = None;
                }
                if let Some(s) = &mut f.snapshot {
                    if s.in_flight.is_some_and(|(_, sent)| sent + timeout <= now) {
                        s.in_flight = None;
                    }
                }
                self.maybe_fetch();
            }
            Role::Leader(_) => self.leader_tick(),
            Role::Resigned { election_deadline_ms } => {
                if now >= *election_deadline_ms {
                    self.become_prospective();
                }
            }
        }
    }

    fn leader_tick(&mut self) {
        let now = self.now_ms;
        let majority = self.config.majority();
        let check_timeout = self.check_quorum_timeout_ms();
        let request_timeout = self.config.request_timeout_ms;
        let Role::Leader(state) = &mut self.role else { return };
        if state.fetched_since_check.len() + 1 >= majority {
            state.fetched_since_check.clear();
            state.check_quorum_deadline_ms = now + check_timeout;
        }
        if now >= state.check_quorum_deadline_ms {
            self.resign();
            return;
        }
        let resend: Vec<NodeId> = if now >= state.begin_quorum_resend_ms {
            state.begin_quorum_resend_ms = now + request_timeout;
            state.unacknowledged.iter().copied().collect()
        } else {
            Vec::new()
        };
        let (epoch, local) = (self.epoch(), self.local());
        for voter in resend {
            self.send(voter, Message::BeginQuorumEpochRequest(BeginQuorumEpochRequest { epoch, leader: local }));
        }
        self.answer_expired_fetches();
    }

    /// Not Kafka's (its follower waits out the fetch timeout): a leader whose process is gone
    /// cannot answer, so waiting for it only delays the election. Standing early is safe: a
    /// pre-vote bumps no epoch, and a voter that still hears the leader refuses it, so a
    /// spurious reset costs at most one refused pre-vote round. The follower stops vouching
    /// for the leader at once (its own refusals would otherwise hold back the other
    /// followers, which learn of the death at the same moment), and the backoff is random so
    /// that they do not stand together and split the vote.
    fn on_unreachable(&mut self, peer: NodeId) {
        let now = self.now_ms;
        let retry = self.config.retry_backoff_ms;
        match &self.role {
            Role::Follower(f) if f.leader == peer => {
                // Drawn once per outage: a minimum over every retry's draw would shrink the
                // spread that keeps the followers apart.
                let backoff =
                    (!f.leader_unreachable).then(|| self.rng.below(self.config.election_backoff_max_ms.max(1)));
                let Role::Follower(f) = &mut self.role else { return };
                f.heard_from_leader = false;
                f.leader_unreachable = true;
                f.in_flight = None;
                if let Some(download) = &mut f.snapshot {
                    download.in_flight = None;
                }
                f.fetch_not_before_ms = now + retry;
                if let Some(backoff) = backoff {
                    f.fetch_deadline_ms = f.fetch_deadline_ms.min(now + backoff);
                }
            }
            Role::Prospective(_) | Role::Candidate(_) => {
                // A voter whose process is gone grants nothing in this election: counted as a
                // refusal, a candidate that can no longer win (a split vote among the
                // survivors) retries after the random backoff, not the election timeout.
                let backoff = self.rng.below(self.config.election_backoff_max_ms.max(1));
                let lost_after = self.config.voters.len() - self.config.majority();
                let is_voter = self.config.is_voter(peer);
                if let Role::Prospective(e) | Role::Candidate(e) = &mut self.role {
                    if is_voter {
                        record_vote(e, peer, false);
                    }
                }
                if let Role::Candidate(e) = &mut self.role {
                    if e.rejected.len() > lost_after {
                        e.deadline_ms = e.deadline_ms.min(now + backoff);
                    }
                }
            }
            Role::Unattached { probe: Some(p), .. } if p.to == peer => {
                // An observer asks another voter.
                if let Role::Unattached { probe, probe_not_before_ms, .. } = &mut self.role {
                    *probe = None;
                    *probe_not_before_ms = now + retry;
                }
            }
            _ => {}
        }
    }

    fn on_flushed(&mut self, up_to: Offset) {
        let end = self.log.end_offset();
        self.flushed = self.flushed.max(up_to.min(end));
        let role = self.role.kind();
        if role == RoleKind::Leader && self.maybe_advance_high_watermark() {
            self.answer_parked_fetches();
        } else if role == RoleKind::Follower {
            self.maybe_fetch();
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Message) {
        let leader_named = match &msg {
            Message::VoteResponse(m) => m.leader,
            Message::BeginQuorumEpochRequest(m) => Some(m.leader),
            Message::BeginQuorumEpochResponse(m) | Message::EndQuorumEpochResponse(m) => m.leader,
            Message::FetchResponse(m) => m.leader,
            Message::FetchSnapshotResponse(m) => m.leader,
            _ => None,
        };
        // A Vote request's epoch counts once the request is found valid (`on_vote_request`).
        if !matches!(&msg, Message::VoteRequest(_)) {
            self.observe_epoch(msg.epoch(), leader_named);
        }
        match msg {
            Message::VoteRequest(r) => self.on_vote_request(from, r),
            Message::VoteResponse(r) => self.on_vote_response(from, r),
            Message::BeginQuorumEpochRequest(r) => {
                let error = if r.epoch < self.epoch() { RaftErrorCode::FencedLeaderEpoch } else { RaftErrorCode::None };
                let now = self.now_ms;
                let fetch_timeout = self.config.fetch_timeout_ms;
                if let Role::Follower(f) = &mut self.role {
                    if f.leader == r.leader && r.epoch == self.quorum.epoch {
                        f.heard_from_leader = true;
                        f.leader_unreachable = false;
                        f.fetch_deadline_ms = now + fetch_timeout;
                    }
                }
                let response = self.epoch_response(error);
                self.send(from, Message::BeginQuorumEpochResponse(response));
            }
            Message::BeginQuorumEpochResponse(r) => {
                if r.error == RaftErrorCode::None && r.epoch == self.epoch() {
                    if let Role::Leader(state) = &mut self.role {
                        state.unacknowledged.remove(&from);
                    }
                }
            }
            Message::EndQuorumEpochRequest(r) => self.on_end_quorum_epoch(from, r),
            Message::EndQuorumEpochResponse(_) => {}
            Message::FetchRequest(r) => self.on_fetch_request(from, r),
            Message::FetchResponse(r) => self.on_fetch_response(from, r),
            Message::FetchSnapshotRequest(r) => self.on_fetch_snapshot_request(from, r),
            Message::FetchSnapshotResponse(r) => self.on_fetch_snapshot_response(from, r),
        }
    }

    pub(crate) fn epoch_response(&self, error: RaftErrorCode) -> EpochResponse {
        EpochResponse { error, epoch: self.epoch(), leader: self.vouched_leader() }
    }

    /// The leader this node names to others: itself, or one that has answered it lately.
    pub(crate) fn vouched_leader(&self) -> Option<NodeId> {
        match &self.role {
            Role::Leader(_) => Some(self.local()),
            Role::Follower(f) if f.heard_from_leader => Some(f.leader),
            _ => None,
        }
    }

    fn on_vote_request(&mut self, from: NodeId, r: VoteRequest) {
        let respond = |core: &mut Self, error: RaftErrorCode, granted: bool| {
            let response = VoteResponse {
                error,
                epoch: core.epoch(),
                leader: core.vouched_leader(),
                granted,
                pre_vote: r.pre_vote,
            };
            core.send(from, Message::VoteResponse(response));
        };
        if !self.config.is_voter(self.local()) || !self.config.is_voter(r.candidate) || r.candidate != from {
            return respond(self, RaftErrorCode::InconsistentVoterSet, false);
        }
        // A candidate bumped its epoch past every entry it holds; a prospective did not, and
        // may hold entries of the epoch it asks in.
        let illegal_epoch = if r.pre_vote { r.last.epoch > r.epoch } else { r.last.epoch >= r.epoch };
        if illegal_epoch || r.last.offset.0 < 0 {
            return respond(self, RaftErrorCode::InvalidRequest, false);
        }
        if r.epoch < self.epoch() {
            return respond(self, RaftErrorCode::FencedLeaderEpoch, false);
        }
        if r.epoch > self.epoch() {
            // Kafka's rule (handleVoteRequest), pre-votes included: the sender's epoch is real
            // (it stood as a candidate in it), so this node steps into it, even as a leader of
            // an older epoch. Without this a voter whose Vote requests were all lost stays in
            // its epoch for good: the leader and its followers refuse its pre-votes, and their
            // answers, from an older epoch, are stale to it. Safe: nothing is voted, and the
            // new epoch is persisted (first action) before the answer.
            self.become_unattached(r.epoch, None);
        }
        let log_ok = r.last >= self.log.end_offset_and_epoch();
        if r.pre_vote {
            // Granted unless this node has a live leader (itself, or one it still hears from).
            let has_leader = self.vouched_leader().is_some();
            return respond(self, RaftErrorCode::None, log_ok && !has_leader);
        }
        assert!(r.epoch == self.epoch(), "a vote is judged in its own epoch");
        let granted = log_ok
            && self.quorum.leader.is_none()
            && self.quorum.voted_for.is_none_or(|v| v == r.candidate);
        if granted && self.quorum.voted_for.is_none() {
            // Persisted (first action) before the answer (second).
            self.become_unattached(r.epoch, Some(r.candidate));
        }
        respond(self, RaftErrorCode::None, granted)
    }

    fn on_vote_response(&mut self, from: NodeId, r: VoteResponse) {
        if r.error != RaftErrorCode::None || !self.config.is_voter(from) {
            return;
        }
        let epoch = self.epoch();
        let count_stale = self.planted(PlantedBug::StaleEpochVoteCounted);
        let backoff = self.rng.below(self.config.election_backoff_max_ms.max(1));
        let now = self.now_ms;
        let voters = self.config.voters.len();
        let majority = self.config.majority();
        match &mut self.role {
            Role::Prospective(e) if r.pre_vote && r.epoch == epoch => {
                record_vote(e, from, r.granted);
            }
            Role::Candidate(e) if !r.pre_vote && (r.epoch == epoch || (count_stale && r.epoch < epoch)) => {
                record_vote(e, from, r.granted);
                if e.rejected.len() > voters - majority {
                    // Lost: retry after a random backoff instead of the full election timeout.
                    e.deadline_ms = e.deadline_ms.min(now + backoff);
                }
            }
            _ => return,
        }
        self.maybe_win_election();
    }

    fn on_end_quorum_epoch(&mut self, from: NodeId, r: EndQuorumEpochRequest) {
        let error = if r.epoch < self.epoch() { RaftErrorCode::FencedLeaderEpoch } else { RaftErrorCode::None };
        let ours = matches!(&self.role, Role::Follower(f) if f.leader == r.leader) && r.epoch == self.epoch();
        if ours && self.config.is_voter(self.local()) {
            // Stand sooner the better placed we are: the first successor at once.
            let position = r.preferred_successors.iter().position(|s| *s == self.local());
            let backoff = self.successor_backoff_ms(position, r.preferred_successors.len());
            let (epoch, voted_for) = (self.quorum.epoch, self.quorum.voted_for);
            self.become_unattached(epoch, voted_for);
            if let Role::Unattached { election_deadline_ms, .. } = &mut self.role {
                *election_deadline_ms = self.now_ms + backoff;
            }
        }
        let response = self.epoch_response(error);
        self.send(from, Message::EndQuorumEpochResponse(response));
    }

    fn successor_backoff_ms(&self, position: Option<usize>, successors: usize) -> u64 {
        let max = self.config.election_backoff_max_ms;
        match position {
            Some(0) => 0,
            Some(p) if successors > 1 => {
                let base = max >> (successors - 1).min(63);
                (base << (p - 1).min(63)).min(max)
            }
            _ => max,
        }
    }
}

fn record_vote(e: &mut ElectionState, from: NodeId, granted: bool) {
    if granted {
        e.granted.insert(from);
        e.rejected.remove(&from);
    } else if !e.granted.contains(&from) {
        e.rejected.insert(from);
    }
}
