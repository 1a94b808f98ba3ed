//! One consumer group under the KIP-848 protocol (`group.protocol=consumer`): the broker
//! computes assignments and members reconcile towards them through heartbeats.
//!
//! Epochs: the group epoch grows whenever membership, subscriptions or the partition counts of
//! subscribed topics change; the target assignment is recomputed for the new group epoch; each
//! member then reconciles towards it, as Kafka's `CurrentAssignmentBuilder` does:
//! - partitions the target takes away from a member become *pending revocation*: the member
//!   keeps its epoch and is told its smaller assignment; they stay the member's until a
//!   heartbeat reports an owned set without them (the client finished revoking), its
//!   rebalance timeout passes, or it leaves or expires;
//! - only then does the member move to the target epoch and receive the target's other
//!   partitions, except those another member still holds (assigned or pending revocation),
//!   which it receives on a later heartbeat once they are released.
//!
//! No I/O and no clock here: time comes in as `now_ms`.
//!
//! Invariant: a partition is held (assigned or pending revocation) by at most one member at a
//! time, and a client consumes only partitions its member holds; `consumer_sim` checks both
//! after every event of a seeded simulation.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use kafka_protocol::indexmap::IndexMap;
use uuid::Uuid;

/// A partition by topic id.
pub type Tp = (Uuid, i32);

/// Topics as the assignor sees them: id → (name, partition count).
pub type TopicsView = BTreeMap<Uuid, (String, i32)>;

#[derive(Debug, Clone)]
pub struct ConsumerMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub member_epoch: i32,
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// What the member was given and may consume (Kafka's assigned partitions).
    pub assigned: BTreeSet<Tp>,
    /// Taken away by the target but not yet reported revoked by the member: still its own.
    pending_revocation: BTreeSet<Tp>,
    /// The epoch before the last move, accepted once more from a member that missed the
    /// response moving it on.
    previous_member_epoch: i32,
    /// The member epoch at which each owned partition was given to it (KIP-1251).
    assignment_epochs: BTreeMap<Tp, i32>,
    /// What the member was last told it owns.
    last_sent: Option<BTreeSet<Tp>>,
    last_heartbeat_ms: i64,
    /// Set while the member must revoke partitions before it can move on.
    revoke_deadline_ms: Option<i64>,
}

impl ConsumerMember {
    /// The partitions the coordinator counts as this member's: assigned or pending revocation.
    pub fn held(&self) -> impl Iterator<Item = &Tp> {
        self.assigned.iter().chain(self.pending_revocation.iter())
    }

    fn reset(&mut self) {
        self.member_epoch = 0;
        self.previous_member_epoch = -1;
        self.assigned.clear();
        self.pending_revocation.clear();
        self.assignment_epochs.clear();
        self.last_sent = None;
        self.revoke_deadline_ms = None;
    }
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatResult {
    pub error: Option<ResponseError>,
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// Present when the member's assignment changed.
    pub assignment: Option<BTreeSet<Tp>>,
}

/// A decoded ConsumerGroupHeartbeat.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatRequest {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Option<Vec<String>>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub owned: Option<BTreeSet<Tp>>,
}

/// Settings from the broker config.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerLimits {
    pub session_timeout_ms: i32,
    pub heartbeat_interval_ms: i32,
    pub max_size: usize,
}

/// What an offset commit may cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitCheck {
    All,
    /// Only these partitions (commit at an older epoch).
    Owned(BTreeSet<Tp>),
}

pub const LEAVE_EPOCH: i32 = -1;
pub const STATIC_LEAVE_EPOCH: i32 = -2;

#[derive(Debug)]
pub struct ConsumerGroup {
    pub id: String,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub members: IndexMap<String, ConsumerMember>,
    /// Member id → partitions the current target gives it.
    pub target: BTreeMap<String, BTreeSet<Tp>>,
    pub assignor: String,
    pub state_timestamp_ms: i64,
    /// Partition counts of the subscribed topics the target was computed for: a change (a
    /// topic created, deleted or grown) is a new group epoch, as Kafka's subscription metadata.
    subscribed_topics: BTreeMap<Uuid, i32>,
}

impl ConsumerGroup {
    pub fn new(id: String, now_ms: i64) -> Self {
        Self {
            id,
            group_epoch: 0,
            assignment_epoch: 0,
            members: IndexMap::new(),
            target: BTreeMap::new(),
            assignor: "uniform".into(),
            state_timestamp_ms: now_ms,
            subscribed_topics: BTreeMap::new(),
        }
    }

    /// Kafka's states: empty, assigning (target behind the group epoch), reconciling (some
    /// member behind the target: older epoch, revocation pending or partitions unreleased),
    /// stable.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch < self.group_epoch {
            "Assigning"
        } else if self.members.values().any(|m| {
            m.member_epoch != self.assignment_epoch
                || !m.pending_revocation.is_empty()
                || self.target.get(&m.member_id).is_some_and(|t| *t != m.assigned)
        }) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    fn bump_epoch(&mut self, now_ms: i64) {
        self.group_epoch += 1;
        self.state_timestamp_ms = now_ms;
    }

    /// ConsumerGroupHeartbeat.
    pub fn heartbeat(&mut self, req: HeartbeatRequest, topics: &TopicsView, limits: &ConsumerLimits, now_ms: i64) -> HeartbeatResult {
        let fail = |e: ResponseError, req: &HeartbeatRequest| HeartbeatResult {
            error: Some(e),
            member_id: req.member_id.clone(),
            member_epoch: req.member_epoch,
            ..Default::default()
        };
        if req.member_epoch == LEAVE_EPOCH || req.member_epoch == STATIC_LEAVE_EPOCH {
            if self.members.shift_remove(&req.member_id).is_none() {
                return fail(ResponseError::UnknownMemberId, &req);
            }
            self.target.remove(&req.member_id);
            self.bump_epoch(now_ms);
            return HeartbeatResult { member_id: req.member_id, member_epoch: req.member_epoch, ..Default::default() };
        }
        let member_id = if req.member_epoch == 0 {
            match self.join(&req, limits, now_ms) {
                Ok(id) => id,
                Err(e) => return fail(e, &req),
            }
        } else {
            let Some(m) = self.members.get_mut(&req.member_id) else {
                return fail(ResponseError::UnknownMemberId, &req);
            };
            // Kafka accepts the previous epoch from a member that missed the response moving
            // it on, provided it claims nothing it was not given; it then gets the full answer.
            let missed_response = req.member_epoch == m.previous_member_epoch
                && req.owned.as_ref().is_some_and(|o| o.is_subset(&m.assigned));
            if req.member_epoch != m.member_epoch && !missed_response {
                return fail(ResponseError::FencedMemberEpoch, &req);
            }
            if missed_response {
                m.last_sent = None;
            }
            req.member_id.clone()
        };
        let subscription_changed = self.update_member(&member_id, &req, now_ms);
        let topics_changed = self.refresh_subscribed_topics(topics);
        if subscription_changed || topics_changed || req.member_epoch == 0 {
            self.bump_epoch(now_ms);
        }
        if self.assignment_epoch < self.group_epoch {
            self.compute_target(topics);
        }
        self.reconcile(&member_id, req.owned.as_ref(), now_ms)
            .map(|(epoch, assignment)| HeartbeatResult {
                error: None,
                member_id: member_id.clone(),
                member_epoch: epoch,
                heartbeat_interval_ms: limits.heartbeat_interval_ms,
                assignment,
            })
            .unwrap_or_else(|| fail(ResponseError::UnknownMemberId, &req))
    }

    /// Adds (or resets) the member; returns its id.
    fn join(&mut self, req: &HeartbeatRequest, limits: &ConsumerLimits, now_ms: i64) -> Result<String, ResponseError> {
        let member_id = if req.member_id.is_empty() { Uuid::new_v4().to_string() } else { req.member_id.clone() };
        if let Some(instance) = &req.instance_id {
            // A static member rejoining replaces its previous incarnation.
            let old = self.members.values().find(|m| m.instance_id.as_deref() == Some(instance)).map(|m| m.member_id.clone());
            if let Some(old) = old.filter(|o| *o != member_id) {
                if let Some(prev) = self.members.shift_remove(&old) {
                    // The new incarnation inherits what the old one held: a static member
                    // keeps its partitions across a restart.
                    let mut m = prev;
                    m.member_id = member_id.clone();
                    m.member_epoch = 0;
                    m.previous_member_epoch = -1;
                    m.last_sent = None;
                    if let Some(t) = self.target.remove(&old) {
                        self.target.insert(member_id.clone(), t);
                    }
                    self.members.insert(member_id.clone(), m);
                    return Ok(member_id);
                }
            }
        }
        if let Some(m) = self.members.get_mut(&member_id) {
            // A member that lost its state (e.g. after a fenced epoch) rejoins from scratch:
            // a client sends epoch 0 only once it has given up every partition.
            m.reset();
            return Ok(member_id);
        }
        if self.members.len() >= limits.max_size {
            return Err(ResponseError::GroupMaxSizeReached);
        }
        let m = ConsumerMember {
            member_id: member_id.clone(),
            instance_id: req.instance_id.clone(),
            rack_id: req.rack_id.clone(),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            member_epoch: 0,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            subscribed_topic_names: vec![],
            subscribed_topic_regex: None,
            server_assignor: None,
            assigned: BTreeSet::new(),
            pending_revocation: BTreeSet::new(),
            previous_member_epoch: -1,
            assignment_epochs: BTreeMap::new(),
            last_sent: None,
            last_heartbeat_ms: now_ms,
            revoke_deadline_ms: None,
        };
        self.members.insert(member_id.clone(), m);
        Ok(member_id)
    }

    /// Applies the request's fields; returns whether the subscription changed.
    fn update_member(&mut self, member_id: &str, req: &HeartbeatRequest, now_ms: i64) -> bool {
        let Some(m) = self.members.get_mut(member_id) else { return false };
        m.last_heartbeat_ms = now_ms;
        if req.rebalance_timeout_ms > 0 {
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        let mut changed = false;
        if let Some(names) = &req.subscribed_topic_names {
            let mut names = names.clone();
            names.sort();
            if names != m.subscribed_topic_names {
                m.subscribed_topic_names = names;
                changed = true;
            }
        }
        if let Some(regex) = &req.subscribed_topic_regex {
            let regex = (!regex.is_empty()).then(|| regex.clone());
            if regex != m.subscribed_topic_regex {
                m.subscribed_topic_regex = regex;
                changed = true;
            }
        }
        if let Some(assignor) = &req.server_assignor
            && m.server_assignor.as_ref() != Some(assignor)
        {
            m.server_assignor = Some(assignor.clone());
            changed = true;
        }
        changed
    }

    /// Notes the partition counts of the subscribed topics; returns whether they changed.
    fn refresh_subscribed_topics(&mut self, topics: &TopicsView) -> bool {
        let subscribed: BTreeSet<Uuid> = self.members.values().flat_map(|m| Self::subscribed(m, topics)).collect();
        let now: BTreeMap<Uuid, i32> =
            topics.iter().filter(|(id, _)| subscribed.contains(id)).map(|(id, (_, n))| (*id, *n)).collect();
        if now == self.subscribed_topics {
            return false;
        }
        self.subscribed_topics = now;
        true
    }

    /// The topics a member subscribes to, resolved against the current topics.
    fn subscribed(m: &ConsumerMember, topics: &TopicsView) -> BTreeSet<Uuid> {
        let regex = m.subscribed_topic_regex.as_deref().and_then(|r| regex::Regex::new(&format!("^(?:{r})$")).ok());
        topics
            .iter()
            .filter(|(_, (name, _))| {
                m.subscribed_topic_names.iter().any(|n| n == name) || regex.as_ref().is_some_and(|re| re.is_match(name))
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Recomputes the target assignment for the current group epoch.
    pub fn compute_target(&mut self, topics: &TopicsView) {
        let assignor = self
            .members
            .values()
            .find_map(|m| m.server_assignor.clone())
            .filter(|a| a == "range" || a == "uniform")
            .unwrap_or_else(|| "uniform".into());
        let subscriptions: IndexMap<String, BTreeSet<Uuid>> =
            self.members.values().map(|m| (m.member_id.clone(), Self::subscribed(m, topics))).collect();
        self.target = if assignor == "range" {
            super::assignor::range(&subscriptions, topics)
        } else {
            super::assignor::uniform(&subscriptions, topics, &self.target)
        };
        self.assignor = assignor;
        self.assignment_epoch = self.group_epoch;
    }

    /// Moves a member towards its target (Kafka's `CurrentAssignmentBuilder`); `owned` is
    /// what its heartbeat reported, if anything. Returns its epoch and, if it changed since it
    /// was last sent, the assignment to send.
    fn reconcile(&mut self, member_id: &str, owned: Option<&BTreeSet<Tp>>, now_ms: i64) -> Option<(i32, Option<BTreeSet<Tp>>)> {
        // A client that reported nothing may still own anything it was given.
        let still_owns = |pending: &BTreeSet<Tp>| owned.is_none_or(|o| !o.is_disjoint(pending));
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let held_by_others: BTreeSet<Tp> =
            self.members.values().filter(|o| o.member_id != member_id).flat_map(|o| o.held().cloned()).collect();
        let assignment_epoch = self.assignment_epoch;
        let m = self.members.get_mut(member_id)?;
        let waiting_for_revocation = !m.pending_revocation.is_empty() && still_owns(&m.pending_revocation);
        let up_to_date = m.pending_revocation.is_empty()
            && m.member_epoch == assignment_epoch
            && m.assigned == target;
        if !waiting_for_revocation && !up_to_date {
            let kept: BTreeSet<Tp> = m.assigned.intersection(&target).cloned().collect();
            let revoke: BTreeSet<Tp> = m.assigned.difference(&kept).cloned().collect();
            if !revoke.is_empty() && still_owns(&revoke) {
                // Stay in this epoch until the client reports the revocation.
                m.assigned = kept;
                m.pending_revocation = revoke;
                m.revoke_deadline_ms = Some(now_ms + i64::from(m.rebalance_timeout_ms.max(1)));
            } else {
                // Move to the target epoch; take what is free now, the rest on later heartbeats.
                let free: Vec<Tp> = target.difference(&kept).filter(|tp| !held_by_others.contains(tp)).cloned().collect();
                m.assigned = kept;
                for tp in free {
                    m.assigned.insert(tp);
                    m.assignment_epochs.insert(tp, assignment_epoch);
                }
                m.pending_revocation.clear();
                m.revoke_deadline_ms = None;
                if m.member_epoch != assignment_epoch {
                    m.previous_member_epoch = m.member_epoch;
                    m.member_epoch = assignment_epoch;
                }
            }
            let assigned = &m.assigned;
            m.assignment_epochs.retain(|tp, _| assigned.contains(tp));
        }
        let send = m.last_sent.as_ref() != Some(&m.assigned);
        if send {
            m.last_sent = Some(m.assigned.clone());
        }
        Some((m.member_epoch, send.then(|| m.assigned.clone())))
    }

    /// Removes members whose session expired or who did not revoke in time; returns true if
    /// the group changed.
    pub fn tick(&mut self, limits: &ConsumerLimits, now_ms: i64) -> bool {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                now_ms - m.last_heartbeat_ms > i64::from(limits.session_timeout_ms)
                    || m.revoke_deadline_ms.is_some_and(|d| now_ms > d)
            })
            .map(|m| m.member_id.clone())
            .collect();
        for id in &gone {
            tracing::info!(group = %self.id, member = %id, "consumer group member expired");
            self.members.shift_remove(id);
            self.target.remove(id);
        }
        if !gone.is_empty() {
            self.bump_epoch(now_ms);
        }
        !gone.is_empty()
    }

    /// Whether offset commits from `member_id` at `epoch` are allowed. At the member's
    /// current epoch everything is; at an older epoch (a commit racing a heartbeat that moved
    /// the member on) only partitions the member has owned since that epoch or earlier, as
    /// KIP-1251 has it: `assignment epoch <= commit epoch <= member epoch`.
    pub fn validate_commit(&self, member_id: &str, epoch: i32) -> Result<CommitCheck, ResponseError> {
        // Epoch -1 comes from an admin client or a consumer without group management: it may
        // commit while the group is empty, whatever member id it names (Kafka's rule).
        if epoch < 0 && self.members.is_empty() {
            return Ok(CommitCheck::All);
        }
        let m = self.members.get(member_id).ok_or(ResponseError::UnknownMemberId)?;
        if epoch == m.member_epoch {
            return Ok(CommitCheck::All);
        }
        if epoch > m.member_epoch || epoch < 0 {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(CommitCheck::Owned(
            m.assignment_epochs.iter().filter(|(_, since)| **since <= epoch).map(|(tp, _)| *tp).collect(),
        ))
    }

    /// TxnOffsetCommit's check for a KIP-848 group: member id and epoch are optional (an
    /// unknown generation and no member id is accepted), a given member must exist and be at
    /// its current epoch (ILLEGAL_GENERATION otherwise, as Kafka answers TxnOffsetCommit).
    pub fn validate_txn_commit(&self, member_id: &str, instance: Option<&str>, epoch: i32) -> Result<(), ResponseError> {
        if epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        if epoch < 0 && member_id.is_empty() && instance.is_none() {
            return Ok(());
        }
        let m = self.members.get(member_id).ok_or(ResponseError::UnknownMemberId)?;
        if epoch != m.member_epoch {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    /// Topic names any member subscribes to (for OffsetDelete).
    pub fn subscribed_topic_names(&self, topics: &TopicsView) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| Self::subscribed(m, topics))
            .filter_map(|id| topics.get(&id).map(|(n, _)| n.clone()))
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "consumer_sim.rs"]
mod sim;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const LIMITS: ConsumerLimits = ConsumerLimits { session_timeout_ms: 45_000, heartbeat_interval_ms: 5_000, max_size: 100 };

    fn topics() -> (TopicsView, Uuid) {
        let id = Uuid::new_v4();
        let mut t = TopicsView::new();
        t.insert(id, ("t".into(), 6));
        (t, id)
    }

    fn hb(member: &str, epoch: i32, owned: Option<&BTreeSet<Tp>>) -> HeartbeatRequest {
        HeartbeatRequest {
            member_id: member.into(),
            member_epoch: epoch,
            rebalance_timeout_ms: 30_000,
            subscribed_topic_names: (epoch == 0).then(|| vec!["t".into()]),
            owned: owned.cloned(),
            ..Default::default()
        }
    }

    #[test]
    fn two_members_reconcile_without_double_ownership() {
        let (topics, _) = topics();
        let mut g = ConsumerGroup::new("g".into(), 0);
        let a = g.heartbeat(hb("a", 0, None), &topics, &LIMITS, 0);
        assert_eq!(a.member_epoch, 1);
        let a_parts = a.assignment.unwrap();
        assert_eq!(a_parts.len(), 6);
        // b joins: the target splits 3/3, but b gets nothing until a revokes.
        let b = g.heartbeat(hb("b", 0, None), &topics, &LIMITS, 1);
        assert_eq!(b.member_epoch, 2);
        assert_eq!(b.assignment.map(|s| s.len()), Some(0));
        let a2 = g.heartbeat(hb("a", 1, Some(&a_parts)), &topics, &LIMITS, 2);
        assert_eq!(a2.member_epoch, 1, "a stays in its epoch until it revokes");
        let kept = a2.assignment.unwrap();
        assert_eq!(kept.len(), 3);
        // a acknowledges by sending its smaller set: now at epoch 2.
        let a3 = g.heartbeat(hb("a", 1, Some(&kept)), &topics, &LIMITS, 3);
        assert_eq!(a3.member_epoch, 2);
        // KIP-1251: a commit still at epoch 1 covers what a has owned since epoch 1, only.
        match g.validate_commit("a", 1).unwrap() {
            CommitCheck::Owned(set) => assert_eq!(set, kept),
            CommitCheck::All => panic!("epoch 1 is not a's current epoch"),
        }
        assert_eq!(g.validate_commit("a", 2), Ok(CommitCheck::All));
        assert_eq!(g.validate_commit("a", 3), Err(ResponseError::StaleMemberEpoch));
        assert_eq!(g.validate_commit("", -1), Err(ResponseError::UnknownMemberId), "an admin commit into a group with members");
        let b2 = g.heartbeat(hb("b", 2, Some(&BTreeSet::new())), &topics, &LIMITS, 4);
        let b_parts = b2.assignment.unwrap();
        assert_eq!(b_parts.len(), 3);
        assert!(b_parts.is_disjoint(&kept));
        assert_eq!(g.state_name(), "Stable");
        // Stale epoch is fenced.
        assert_eq!(g.heartbeat(hb("a", 1, None), &topics, &LIMITS, 5).error, Some(ResponseError::FencedMemberEpoch));
        // b's session expires: a gets everything again.
        g.heartbeat(hb("a", 2, Some(&kept)), &topics, &LIMITS, 40_000);
        assert!(g.tick(&LIMITS, 50_000));
        let a4 = g.heartbeat(hb("a", 2, Some(&kept)), &topics, &LIMITS, 50_001);
        assert_eq!(a4.assignment.map(|s| s.len()), Some(6));
    }

    #[test]
    fn regex_subscription_and_leave() {
        let (mut topics, _) = topics();
        topics.insert(Uuid::new_v4(), ("other".into(), 2));
        let mut g = ConsumerGroup::new("g".into(), 0);
        let mut r = hb("a", 0, None);
        r.subscribed_topic_names = None;
        r.subscribed_topic_regex = Some("t.*".into());
        let a = g.heartbeat(r, &topics, &LIMITS, 0);
        assert_eq!(a.assignment.unwrap().len(), 6, "the regex matches t but not other");
        let left = g.heartbeat(hb("a", LEAVE_EPOCH, None), &topics, &LIMITS, 1);
        assert_eq!(left.member_epoch, LEAVE_EPOCH);
        assert_eq!(g.state_name(), "Empty");
        assert_eq!(g.validate_commit("", -1), Ok(CommitCheck::All));
        assert_eq!(g.validate_commit("some-member", -1), Ok(CommitCheck::All), "an empty group takes epoch -1 commits from anyone");
    }
}
