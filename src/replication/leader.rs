//! One partition as its leader sees it: followers' progress, the ISR, the high watermark.
//!
//! Kafka's rules (`Partition.scala`, `Replica.scala`), restated:
//! - A follower's fetch at offset `o` says it holds everything below `o`. It is *caught up*
//!   while it has reached the leader's log end within the last `replica.lag.time.max.ms`
//!   (precisely: its last fetch reached the log end the leader had at its previous fetch).
//! - The ISR grows through AlterPartition when a follower has reached both the high watermark
//!   and the start of the current leader epoch; it shrinks when an ISR member stops being
//!   caught up. One change is in flight at a time; while it is, the *maximal* ISR (committed
//!   members and the one being added) is what the high watermark waits for, so that the
//!   controller may commit either ISR without losing a committed offset.
//! - The high watermark is the smallest log end offset over the maximal ISR and over
//!   eligible followers that are caught up (they are about to join), frozen while the
//!   committed ISR is smaller than `min.insync.replicas` (KIP-966), and never moves back.
//!
//! No I/O and no clock: time is an argument, the AlterPartition request is an output, its
//! answer an input.

use std::collections::{BTreeMap, BTreeSet};

use crate::types::{BrokerEpoch, LeaderEpoch, NodeId, Offset, PartitionEpoch};

/// The settings the rules read (topic-level `min.insync.replicas`, broker-level lag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// `replica.lag.time.max.ms` (Kafka's default 30000).
    pub replica_lag_time_max_ms: u64,
    /// `min.insync.replicas` of the topic.
    pub min_insync_replicas: usize,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self { replica_lag_time_max_ms: 30_000, min_insync_replicas: 1 }
    }
}

/// What the leader knows of one follower in the current leader epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FollowerProgress {
    /// The offset of its latest fetch: it holds every record below. `None` until it fetched
    /// from this leader in this epoch.
    pub log_end_offset: Option<Offset>,
    pub log_start_offset: Option<Offset>,
    pub last_fetch_ms: Option<u64>,
    /// The last time it was known to have reached the leader's log end.
    pub last_caught_up_ms: Option<u64>,
    /// The leader's log end when the follower last fetched.
    pub last_fetch_leader_log_end: Option<Offset>,
    /// The broker epoch its fetches carry (KIP-903), sent with ISR changes naming it.
    pub broker_epoch: Option<BrokerEpoch>,
}

impl FollowerProgress {
    /// Kafka's `ReplicaState.isCaughtUp`.
    pub fn is_caught_up(&self, leader_log_end: Offset, now_ms: u64, max_lag_ms: u64) -> bool {
        self.log_end_offset == Some(leader_log_end)
            || self.last_caught_up_ms.is_some_and(|t| now_ms.saturating_sub(t) <= max_lag_ms)
    }

    /// Kafka's `Replica.updateFetchStateOrThrow`.
    fn record_fetch(&mut self, fetch_offset: Offset, log_start: Offset, leader_log_end: Offset, now_ms: u64, broker_epoch: Option<BrokerEpoch>) {
        if fetch_offset >= leader_log_end {
            self.last_caught_up_ms = Some(self.last_caught_up_ms.map_or(now_ms, |t| t.max(now_ms)));
        } else if let (Some(previous_end), Some(previous_fetch)) = (self.last_fetch_leader_log_end, self.last_fetch_ms) {
            if fetch_offset >= previous_end {
                self.last_caught_up_ms = Some(self.last_caught_up_ms.map_or(previous_fetch, |t| t.max(previous_fetch)));
            }
        }
        self.log_end_offset = Some(fetch_offset);
        self.log_start_offset = Some(log_start);
        self.last_fetch_leader_log_end = Some(leader_log_end);
        self.last_fetch_ms = Some(now_ms);
        if broker_epoch.is_some() {
            self.broker_epoch = broker_epoch;
        }
    }
}

/// The ISR and the change to it that is in flight, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IsrState {
    Committed { isr: BTreeSet<NodeId> },
    /// AlterPartition adding `adding` was sent.
    PendingExpand { isr: BTreeSet<NodeId>, adding: NodeId },
    /// AlterPartition removing `removing` was sent.
    PendingShrink { isr: BTreeSet<NodeId>, removing: BTreeSet<NodeId> },
}

impl IsrState {
    /// The last committed ISR.
    pub fn isr(&self) -> &BTreeSet<NodeId> {
        match self {
            IsrState::Committed { isr } | IsrState::PendingExpand { isr, .. } | IsrState::PendingShrink { isr, .. } => isr,
        }
    }

    /// Every replica that is, or may be about to be, in the ISR: the high watermark waits for
    /// all of them, whichever way the in-flight change ends.
    pub fn maximal(&self) -> BTreeSet<NodeId> {
        let mut all = self.isr().clone();
        if let IsrState::PendingExpand { adding, .. } = self {
            all.insert(*adding);
        }
        all
    }

    pub fn in_flight(&self) -> bool {
        !matches!(self, IsrState::Committed { .. })
    }

    /// The ISR the in-flight change proposes.
    pub fn proposed(&self) -> BTreeSet<NodeId> {
        match self {
            IsrState::Committed { isr } => isr.clone(),
            IsrState::PendingExpand { .. } => self.maximal(),
            IsrState::PendingShrink { isr, removing } => isr.difference(removing).copied().collect(),
        }
    }
}

/// An AlterPartition for this partition, to send to the active controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterIsrRequest {
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: PartitionEpoch,
    /// The proposed ISR with each member's broker epoch where the leader knows it (the
    /// leader's own is filled in by the sender).
    pub new_isr: Vec<(NodeId, Option<BrokerEpoch>)>,
}

/// How an AlterPartition ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterIsrResult {
    /// The controller committed this ISR at this partition epoch.
    Committed { isr: Vec<NodeId>, leader_epoch: LeaderEpoch, partition_epoch: PartitionEpoch },
    /// The controller refused the change without applying it (INELIGIBLE_REPLICA,
    /// OPERATION_NOT_ATTEMPTED): back to the committed ISR, a later attempt may succeed.
    /// Never used for a change that went unanswered: that one may have been committed.
    Rejected,
    /// This leadership or registration is stale (FENCED_LEADER_EPOCH, INVALID_UPDATE_VERSION,
    /// UNKNOWN_TOPIC_OR_PARTITION): no further change until the metadata that supersedes it.
    Superseded,
}

/// What an event did: the high watermark moved (wake waiting fetches and producers), an ISR
/// change to send.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Effect {
    pub high_watermark_advanced: bool,
    pub alter_isr: Option<AlterIsrRequest>,
}

/// The high watermark rule: the smallest log end offset among the leader and the replicas
/// that count, where a replica whose log end is unknown holds nothing (`None` stops the
/// advance). The result never exceeds the leader's log end.
pub fn high_watermark(leader_log_end: Offset, counted: impl IntoIterator<Item = Option<Offset>>) -> Option<Offset> {
    counted.into_iter().try_fold(leader_log_end, |hw, end| end.map(|e| hw.min(e)))
}

/// One partition led by this broker.
#[derive(Debug, Clone)]
pub struct LeaderReplicas {
    local: NodeId,
    config: ReplicationConfig,
    leader_epoch: LeaderEpoch,
    partition_epoch: PartitionEpoch,
    /// The log end when this leader epoch began: a follower must reach it to join the ISR.
    epoch_start_offset: Offset,
    replicas: Vec<NodeId>,
    followers: BTreeMap<NodeId, FollowerProgress>,
    isr: IsrState,
    /// Brokers that may be added to the ISR: registered, unfenced, not shutting down.
    eligible: BTreeSet<NodeId>,
    log_end_offset: Offset,
    high_watermark: Offset,
    /// Set once an AlterPartition came back `Superseded`: wait for new metadata.
    stale: bool,
    /// When this leadership began (the lag time of a follower never caught up counts from it).
    led_since_ms: u64,
}

/// How far one follower is behind its leader (for the replica lag metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerLag {
    pub replica: NodeId,
    /// Records between its last fetch offset and the leader's log end (before its first
    /// fetch in this leader epoch: from the leader's log start, `log_start`).
    pub records: i64,
    /// Milliseconds since it last reached the leader's log end (never: since the leadership
    /// began).
    pub ms: u64,
}

/// The registration fields a leader follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderRegistration {
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: PartitionEpoch,
}

impl LeaderReplicas {
    /// Becoming leader in `registration.leader_epoch`. `high_watermark` is what the local log
    /// knew as a follower; the ISR members are treated as caught up now (Kafka does the same)
    /// so that the ISR does not shrink before they had a chance to fetch.
    pub fn new(
        local: NodeId,
        config: ReplicationConfig,
        registration: &LeaderRegistration,
        log_end_offset: Offset,
        high_watermark: Offset,
        now_ms: u64,
    ) -> Self {
        let isr: BTreeSet<NodeId> = registration.isr.iter().copied().collect();
        let followers = registration
            .replicas
            .iter()
            .filter(|r| **r != local)
            .map(|r| {
                let progress = FollowerProgress {
                    last_caught_up_ms: isr.contains(r).then_some(now_ms),
                    ..FollowerProgress::default()
                };
                (*r, progress)
            })
            .collect();
        let mut state = Self {
            local,
            config,
            leader_epoch: registration.leader_epoch,
            partition_epoch: registration.partition_epoch,
            epoch_start_offset: log_end_offset,
            replicas: registration.replicas.clone(),
            followers,
            isr: IsrState::Committed { isr },
            eligible: registration.replicas.iter().copied().collect(),
            log_end_offset,
            high_watermark: high_watermark.min(log_end_offset),
            stale: false,
            led_since_ms: now_ms,
        };
        state.maybe_advance_high_watermark(now_ms);
        state
    }

    /// The `local` of [`LeaderReplicas::alone`]: no registration named this node yet.
    pub const UNREGISTERED: NodeId = NodeId(-1);

    /// A partition opened before this node learnt its registration leads alone, as a
    /// single node's partitions do: its high watermark is its log end.
    pub fn alone(log_end_offset: Offset) -> Self {
        let nobody = Self::UNREGISTERED;
        let registration = LeaderRegistration {
            replicas: vec![nobody],
            isr: vec![nobody],
            leader_epoch: LeaderEpoch(0),
            partition_epoch: PartitionEpoch(0),
        };
        Self::new(nobody, ReplicationConfig::default(), &registration, log_end_offset, log_end_offset, 0)
    }

    pub fn local(&self) -> NodeId {
        self.local
    }

    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.leader_epoch
    }

    pub fn partition_epoch(&self) -> PartitionEpoch {
        self.partition_epoch
    }

    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    pub fn log_end_offset(&self) -> Offset {
        self.log_end_offset
    }

    pub fn epoch_start_offset(&self) -> Offset {
        self.epoch_start_offset
    }

    pub fn isr_state(&self) -> &IsrState {
        &self.isr
    }

    pub fn replicas(&self) -> &[NodeId] {
        &self.replicas
    }

    pub fn follower(&self, id: NodeId) -> Option<&FollowerProgress> {
        self.followers.get(&id)
    }

    pub fn followers(&self) -> impl Iterator<Item = (&NodeId, &FollowerProgress)> {
        self.followers.iter()
    }

    /// Each follower's lag at `now_ms`; `log_start` is the leader's log start offset.
    pub fn follower_lags(&self, log_start: Offset, now_ms: u64) -> Vec<FollowerLag> {
        self.followers
            .iter()
            .map(|(id, f)| {
                let fetched = f.log_end_offset.unwrap_or(log_start);
                FollowerLag {
                    replica: *id,
                    records: self.log_end_offset.0.saturating_sub(fetched.0).max(0),
                    ms: now_ms.saturating_sub(f.last_caught_up_ms.unwrap_or(self.led_since_ms)),
                }
            })
            .collect()
    }

    pub fn config(&self) -> ReplicationConfig {
        self.config
    }

    /// The committed ISR is smaller than `min.insync.replicas`: acks=all writes are refused
    /// and the high watermark does not move.
    pub fn under_min_isr(&self) -> bool {
        self.isr.isr().len() < self.config.min_insync_replicas
    }

    pub fn set_config(&mut self, config: ReplicationConfig, now_ms: u64) -> Effect {
        self.config = config;
        self.effect(now_ms, None)
    }

    /// The brokers that may join the ISR changed (fencing, controlled shutdown, registration).
    pub fn set_eligible(&mut self, eligible: BTreeSet<NodeId>, now_ms: u64) -> Effect {
        self.eligible = eligible;
        self.effect(now_ms, None)
    }

    /// The local log grew (or was truncated by DeleteRecords' start moving: not here) to
    /// `log_end_offset`.
    pub fn on_append(&mut self, log_end_offset: Offset, now_ms: u64) -> Effect {
        self.log_end_offset = self.log_end_offset.max(log_end_offset);
        self.effect(now_ms, None)
    }

    /// A follower fetched at `fetch_offset`. `None` when it is not a replica of this
    /// partition (the caller answers NOT_LEADER_OR_FOLLOWER, as Kafka does).
    pub fn on_follower_fetch(
        &mut self,
        follower: NodeId,
        fetch_offset: Offset,
        log_start_offset: Offset,
        broker_epoch: Option<BrokerEpoch>,
        now_ms: u64,
    ) -> Option<Effect> {
        let leader_end = self.log_end_offset;
        let progress = self.followers.get_mut(&follower)?;
        progress.record_fetch(fetch_offset.min(leader_end), log_start_offset, leader_end, now_ms, broker_epoch);
        let expand = self.expansion(follower);
        Some(self.effect(now_ms, expand))
    }

    /// Periodic check (Kafka runs it every `replica.lag.time.max.ms / 2`): shrink the ISR of
    /// members that stopped being caught up.
    pub fn on_tick(&mut self, now_ms: u64) -> Effect {
        let shrink = self.shrink(now_ms);
        self.effect(now_ms, shrink)
    }

    /// `sent` is the change this leader is waiting on: in flight, not superseded, proposed in
    /// this leader and partition epoch with this ISR. An answer to anything else is stale
    /// (Kafka's `Partition` compares the proposed state the same way) and is ignored.
    pub fn awaits(&self, sent: &AlterIsrRequest) -> bool {
        self.isr.in_flight()
            && !self.stale
            && sent.leader_epoch == self.leader_epoch
            && sent.partition_epoch == self.partition_epoch
            && sent.new_isr.iter().map(|(id, _)| *id).collect::<BTreeSet<_>>() == self.isr.proposed()
    }

    /// The answer to the in-flight AlterPartition `sent`. A change that was not answered (the
    /// request was lost, the controller moved, an unexpected error) is not an answer: the
    /// sender retries it, and the change stays in flight, since the controller may have
    /// committed it. Reverting it then would let the high watermark pass a replica the
    /// controller counts in the ISR, which could be elected without acknowledged writes.
    pub fn on_alter_result(&mut self, sent: &AlterIsrRequest, result: AlterIsrResult, now_ms: u64) -> Effect {
        if !self.awaits(sent) {
            return Effect::default();
        }
        match result {
            AlterIsrResult::Committed { isr, leader_epoch, partition_epoch } => {
                // A committed answer older than what this leader knows is ignored, as Kafka
                // does; the metadata image then carries the outcome.
                if leader_epoch == self.leader_epoch && partition_epoch > self.partition_epoch {
                    self.partition_epoch = partition_epoch;
                    self.isr = IsrState::Committed { isr: isr.into_iter().collect() };
                }
            }
            AlterIsrResult::Rejected => {
                self.isr = IsrState::Committed { isr: self.isr.isr().clone() };
            }
            AlterIsrResult::Superseded => {
                self.stale = true;
            }
        }
        self.effect(now_ms, None)
    }

    /// The metadata image has a newer registration of this partition with this node still
    /// leading in the same leader epoch (an ISR change committed, replicas changed). Returns
    /// `None` when the registration's leader epoch is not this one: the caller rebuilds.
    pub fn on_registration(&mut self, registration: &LeaderRegistration, now_ms: u64) -> Option<Effect> {
        if registration.leader_epoch != self.leader_epoch {
            return None;
        }
        if registration.partition_epoch <= self.partition_epoch {
            return Some(Effect::default());
        }
        self.partition_epoch = registration.partition_epoch;
        self.isr = IsrState::Committed { isr: registration.isr.iter().copied().collect() };
        self.stale = false;
        for r in &registration.replicas {
            if *r != self.local {
                self.followers.entry(*r).or_default();
            }
        }
        self.followers.retain(|id, _| registration.replicas.contains(id));
        self.replicas = registration.replicas.clone();
        Some(self.effect(now_ms, None))
    }

    fn effect(&mut self, now_ms: u64, alter_isr: Option<AlterIsrRequest>) -> Effect {
        Effect { high_watermark_advanced: self.maybe_advance_high_watermark(now_ms), alter_isr }
    }

    fn maybe_advance_high_watermark(&mut self, now_ms: u64) -> bool {
        if self.under_min_isr() {
            return false;
        }
        let maximal = self.isr.maximal();
        #[cfg(test)]
        let maximal = if super::planted::is(super::planted::PlantedBug::HwIgnoresPendingExpand) { self.isr.isr().clone() } else { maximal };
        let lag = self.config.replica_lag_time_max_ms;
        let leader_end = self.log_end_offset;
        let counted = self.followers.iter().filter_map(|(id, p)| {
            let joining = self.eligible.contains(id) && p.is_caught_up(leader_end, now_ms, lag);
            (maximal.contains(id) || joining).then_some(p.log_end_offset)
        });
        match high_watermark(leader_end, counted) {
            Some(hw) if hw > self.high_watermark => {
                self.high_watermark = hw;
                true
            }
            _ => false,
        }
    }

    /// Kafka's `maybeExpandIsr`: a follower out of the ISR that has reached the high watermark
    /// and the start of this epoch joins, one change at a time.
    fn expansion(&mut self, follower: NodeId) -> Option<AlterIsrRequest> {
        if self.isr.in_flight() || self.stale || self.isr.isr().contains(&follower) || !self.eligible.contains(&follower) {
            return None;
        }
        let end = self.followers.get(&follower)?.log_end_offset?;
        if end < self.high_watermark || end < self.epoch_start_offset {
            return None;
        }
        self.isr = IsrState::PendingExpand { isr: self.isr.isr().clone(), adding: follower };
        Some(self.request())
    }

    /// Kafka's `maybeShrinkIsr`: members (other than the leader) no longer caught up leave.
    fn shrink(&mut self, now_ms: u64) -> Option<AlterIsrRequest> {
        if self.isr.in_flight() || self.stale {
            return None;
        }
        let lag = self.config.replica_lag_time_max_ms;
        let leader_end = self.log_end_offset;
        let removing: BTreeSet<NodeId> = self
            .isr
            .isr()
            .iter()
            .filter(|id| **id != self.local)
            .filter(|id| !self.followers.get(id).is_some_and(|p| p.is_caught_up(leader_end, now_ms, lag)))
            .copied()
            .collect();
        if removing.is_empty() {
            return None;
        }
        self.isr = IsrState::PendingShrink { isr: self.isr.isr().clone(), removing };
        Some(self.request())
    }

    fn request(&self) -> AlterIsrRequest {
        let new_isr = self
            .isr
            .proposed()
            .into_iter()
            .map(|id| (id, self.followers.get(&id).and_then(|p| p.broker_epoch)))
            .collect();
        AlterIsrRequest { leader_epoch: self.leader_epoch, partition_epoch: self.partition_epoch, new_isr }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const LAG: u64 = 30_000;

    fn n(i: i32) -> NodeId {
        NodeId(i)
    }

    fn o(i: i64) -> Offset {
        Offset(i)
    }

    fn registration(replicas: &[i32], isr: &[i32]) -> LeaderRegistration {
        LeaderRegistration {
            replicas: replicas.iter().map(|i| n(*i)).collect(),
            isr: isr.iter().map(|i| n(*i)).collect(),
            leader_epoch: LeaderEpoch(3),
            partition_epoch: PartitionEpoch(7),
        }
    }

    fn leader(replicas: &[i32], isr: &[i32], min_isr: usize, end: i64, hw: i64) -> LeaderReplicas {
        let config = ReplicationConfig { replica_lag_time_max_ms: LAG, min_insync_replicas: min_isr };
        LeaderReplicas::new(n(1), config, &registration(replicas, isr), o(end), o(hw), 1_000)
    }

    fn isr(l: &LeaderReplicas) -> Vec<i32> {
        l.isr_state().isr().iter().map(|n| n.0).collect()
    }

    #[test]
    fn the_rule_is_the_smallest_end_and_unknown_ends_stop_it() {
        assert_eq!(high_watermark(o(10), []), Some(o(10)));
        assert_eq!(high_watermark(o(10), [Some(o(7)), Some(o(12))]), Some(o(7)));
        assert_eq!(high_watermark(o(10), [Some(o(7)), None]), None);
    }

    /// Lag in records from the last fetch offset (the log start before any fetch), in time
    /// from the last catch-up (the leadership's start for a replica never caught up).
    #[test]
    fn follower_lags_count_records_and_time_behind() {
        let mut l = leader(&[1, 2, 3], &[1, 2], 1, 10, 10);
        let lags = |l: &LeaderReplicas, now| l.follower_lags(o(2), now).into_iter().map(|f| (f.replica.0, f.records, f.ms)).collect::<Vec<_>>();
        assert_eq!(lags(&l, 1_500), vec![(2, 8, 500), (3, 8, 500)]);
        l.on_follower_fetch(n(2), o(10), o(0), None, 2_000).unwrap();
        l.on_follower_fetch(n(3), o(6), o(0), None, 2_000).unwrap();
        assert_eq!(lags(&l, 2_500), vec![(2, 0, 500), (3, 4, 1_500)]);
    }

    #[test]
    fn a_lone_replica_commits_on_append() {
        let mut l = leader(&[1], &[1], 1, 0, 0);
        let e = l.on_append(o(5), 1_001);
        assert!(e.high_watermark_advanced);
        assert_eq!(l.high_watermark(), o(5));
    }

    #[test]
    fn the_high_watermark_waits_for_every_isr_member_and_never_moves_back() {
        let mut l = leader(&[1, 2, 3], &[1, 2, 3], 2, 10, 4);
        assert_eq!(l.high_watermark(), o(4), "followers have not fetched in this epoch yet");
        l.on_follower_fetch(n(2), o(10), o(0), None, 1_010).unwrap();
        assert_eq!(l.high_watermark(), o(4), "3 has not fetched");
        let e = l.on_follower_fetch(n(3), o(8), o(0), None, 1_020).unwrap();
        assert!(e.high_watermark_advanced);
        assert_eq!(l.high_watermark(), o(8));
        // A follower fetching an older offset (it truncated) does not move the mark back.
        l.on_follower_fetch(n(3), o(6), o(0), None, 1_030).unwrap();
        assert_eq!(l.high_watermark(), o(8));
    }

    #[test]
    fn a_lagging_member_is_shrunk_out_after_the_lag_time_and_then_the_mark_moves() {
        let mut l = leader(&[1, 2, 3], &[1, 2, 3], 2, 10, 0);
        l.on_follower_fetch(n(2), o(10), o(0), None, 1_100).unwrap();
        assert_eq!(l.on_tick(1_000 + LAG).alter_isr, None, "3 is still within the lag time");
        let e = l.on_tick(1_001 + LAG);
        let request = e.alter_isr.expect("3 leaves");
        assert_eq!(request.new_isr.iter().map(|(id, _)| id.0).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(request.partition_epoch, PartitionEpoch(7));
        // While the shrink is in flight the maximal ISR still holds 3: no advance.
        assert_eq!(l.high_watermark(), o(0));
        let e = l.on_alter_result(
            &request,
            AlterIsrResult::Committed { isr: vec![n(1), n(2)], leader_epoch: LeaderEpoch(3), partition_epoch: PartitionEpoch(8) },
            1_002 + LAG,
        );
        assert!(e.high_watermark_advanced);
        assert_eq!(l.high_watermark(), o(10));
        assert_eq!(isr(&l), vec![1, 2]);
    }

    #[test]
    fn a_follower_that_keeps_fetching_but_never_reaches_the_end_is_shrunk() {
        let mut l = leader(&[1, 2], &[1, 2], 1, 0, 0);
        let mut now = 1_000;
        let mut end = 0;
        // The leader's end runs ahead of every fetch.
        for _ in 0..100 {
            end += 10;
            l.on_append(o(end), now);
            now += 1_000;
            l.on_follower_fetch(n(2), o(end - 20), o(0), None, now).unwrap();
        }
        assert!(l.on_tick(now).alter_isr.is_some());
    }

    #[test]
    fn a_follower_that_reaches_the_previous_fetch_end_stays_caught_up() {
        let mut l = leader(&[1, 2], &[1, 2], 1, 0, 0);
        let mut now = 1_000;
        let mut end = 0;
        for _ in 0..100 {
            let seen = end;
            end += 10;
            l.on_append(o(end), now);
            now += 1_000;
            // It always reaches what the leader had at its previous fetch.
            l.on_follower_fetch(n(2), o(seen), o(0), None, now).unwrap();
        }
        assert_eq!(l.on_tick(now).alter_isr, None);
    }

    #[test]
    fn a_follower_joins_once_it_reaches_the_high_watermark_and_the_epoch_start() {
        let mut l = leader(&[1, 2, 3], &[1, 2], 2, 10, 0);
        l.on_follower_fetch(n(2), o(10), o(0), None, 1_001).unwrap();
        assert_eq!(l.high_watermark(), o(10));
        l.on_append(o(20), 1_002);
        let e = l.on_follower_fetch(n(3), o(9), o(0), None, 1_003).unwrap();
        assert_eq!(e.alter_isr, None, "below the high watermark and the epoch start");
        let e = l.on_follower_fetch(n(3), o(10), o(0), Some(BrokerEpoch(44)), 1_004).unwrap();
        let request = e.alter_isr.expect("3 joins");
        assert_eq!(request.new_isr, vec![(n(1), None), (n(2), None), (n(3), Some(BrokerEpoch(44)))]);
        // Pending: the maximal ISR includes 3, so the mark waits for it too.
        l.on_follower_fetch(n(2), o(20), o(0), None, 1_005).unwrap();
        assert_eq!(l.high_watermark(), o(10));
        // A second change is not sent while one is in flight.
        assert_eq!(l.on_tick(1_000_000).alter_isr, None);
    }

    #[test]
    fn a_rejected_change_returns_to_the_committed_isr_and_a_superseded_one_stops_changes() {
        let mut l = leader(&[1, 2, 3], &[1, 2], 1, 10, 0);
        let sent = l.on_follower_fetch(n(3), o(10), o(0), None, 1_001).unwrap().alter_isr.expect("3 joins");
        l.on_alter_result(&sent, AlterIsrResult::Rejected, 1_002);
        assert!(!l.isr_state().in_flight());
        let e = l.on_follower_fetch(n(3), o(10), o(0), None, 1_003).unwrap();
        let sent = e.alter_isr.expect("retried on the next fetch");
        l.on_alter_result(&sent, AlterIsrResult::Superseded, 1_004);
        l.on_alter_result(&sent, AlterIsrResult::Rejected, 1_005);
        assert!(l.on_follower_fetch(n(3), o(10), o(0), None, 1_006).unwrap().alter_isr.is_none());
        // New metadata in the same leader epoch lifts it.
        let mut newer = registration(&[1, 2, 3], &[1, 2, 3]);
        newer.partition_epoch = PartitionEpoch(9);
        l.on_registration(&newer, 1_007).unwrap();
        assert_eq!(isr(&l), vec![1, 2, 3]);
        assert_eq!(l.partition_epoch(), PartitionEpoch(9));
    }

    #[test]
    fn under_min_isr_the_mark_is_frozen() {
        let mut l = leader(&[1, 2, 3], &[1], 2, 10, 3);
        assert!(l.under_min_isr());
        let e = l.on_append(o(20), 1_001);
        assert!(!e.high_watermark_advanced);
        assert_eq!(l.high_watermark(), o(3));
    }

    #[test]
    fn a_caught_up_eligible_follower_outside_the_isr_is_waited_for() {
        let mut l = leader(&[1, 2], &[1], 1, 10, 0);
        assert_eq!(l.high_watermark(), o(10), "2 has not fetched: not caught up, not waited for");
        l.on_append(o(20), 1_001);
        let sent = l.on_follower_fetch(n(2), o(20), o(0), None, 1_002).unwrap().alter_isr.expect("2 joins");
        l.on_alter_result(&sent, AlterIsrResult::Rejected, 1_003);
        l.on_append(o(30), 1_004);
        assert_eq!(l.high_watermark(), o(20), "2 is caught up and about to join: the mark waits for it");
        l.set_eligible([n(1)].into(), 1_005);
        assert_eq!(l.high_watermark(), o(30), "a fenced broker is not waited for");
    }

    #[test]
    fn a_stale_answer_is_ignored() {
        let mut l = leader(&[1, 2, 3], &[1, 2, 3], 2, 10, 0);
        l.on_follower_fetch(n(2), o(10), o(0), None, 1_100).unwrap();
        let sent = l.on_tick(1_001 + LAG).alter_isr.expect("3 leaves");
        // An answer in another leader epoch, or older than what the leader knows, changes
        // nothing and leaves the change in flight.
        l.on_alter_result(
            &sent,
            AlterIsrResult::Committed { isr: vec![n(1)], leader_epoch: LeaderEpoch(2), partition_epoch: PartitionEpoch(99) },
            1_002 + LAG,
        );
        l.on_alter_result(
            &sent,
            AlterIsrResult::Committed { isr: vec![n(1)], leader_epoch: LeaderEpoch(3), partition_epoch: PartitionEpoch(7) },
            1_003 + LAG,
        );
        assert_eq!(isr(&l), vec![1, 2, 3]);
        assert!(l.isr_state().in_flight());
        assert_eq!(l.partition_epoch(), PartitionEpoch(7));
        // An answer to a change that is no longer the one awaited (here: a different ISR) is
        // ignored even when it is a rejection.
        let mut other = sent.clone();
        other.new_isr.retain(|(id, _)| *id != n(2));
        l.on_alter_result(&other, AlterIsrResult::Rejected, 1_004 + LAG);
        assert!(l.isr_state().in_flight());
        assert!(l.awaits(&sent) && !l.awaits(&other));
    }

    #[test]
    fn an_unanswered_expansion_stays_in_flight_so_the_mark_keeps_waiting_for_the_new_member() {
        // The expansion may have been committed by the controller even though its answer was
        // lost. Until the leader knows, the mark must wait for the joining member: the
        // controller may elect it.
        let mut l = leader(&[1, 2, 3], &[1, 2], 2, 10, 0);
        l.on_follower_fetch(n(2), o(10), o(0), None, 1_001).unwrap();
        let sent = l.on_follower_fetch(n(3), o(10), o(0), None, 1_002).unwrap().alter_isr.expect("3 joins");
        l.on_append(o(20), 1_003);
        l.on_follower_fetch(n(2), o(20), o(0), None, 1_004).unwrap();
        // No answer arrives (the sender retries `sent`); the mark still waits for 3.
        assert!(l.awaits(&sent));
        assert_eq!(l.high_watermark(), o(10));
        // The retry's answer lands.
        l.on_alter_result(
            &sent,
            AlterIsrResult::Committed { isr: vec![n(1), n(2), n(3)], leader_epoch: LeaderEpoch(3), partition_epoch: PartitionEpoch(8) },
            1_005,
        );
        assert_eq!(isr(&l), vec![1, 2, 3]);
        assert_eq!(l.high_watermark(), o(10), "3 is a member now and has not fetched past 10");
    }

    #[test]
    fn an_unknown_follower_is_refused() {
        let mut l = leader(&[1, 2], &[1, 2], 1, 10, 0);
        assert!(l.on_follower_fetch(n(9), o(10), o(0), None, 1_001).is_none());
    }
}
