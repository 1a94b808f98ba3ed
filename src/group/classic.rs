//! One consumer group under the classic rebalance protocol, as a state machine without I/O.
//!
//! States (Kafka's): `Empty` → `PreparingRebalance` → `CompletingRebalance` → `Stable`, and
//! back to `PreparingRebalance` whenever membership or subscriptions change. Join and sync
//! requests that must wait are parked as oneshot senders on their member and answered when
//! the rebalance moves on; [`ClassicGroup::tick`] drives time (session expiry, rebalance
//! deadlines, the initial rebalance delay). Time always comes in as `now_ms`.
//!
//! Invariants: the leader, when set, is a member; every member awaiting a join response is in
//! `members`; the generation only grows.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::indexmap::IndexMap;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name Kafka's DescribeGroups and ListGroups use.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// What a JoinGroup gets back.
#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    pub error: Option<ResponseError>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Only the leader gets the members and their subscriptions.
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// A restarted static leader of a stable group must not compute a new assignment.
    pub skip_assignment: bool,
}

/// What a SyncGroup gets back.
#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

/// A response now, or later through the receiver.
pub enum Reply<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

#[derive(Debug)]
pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    last_heartbeat_ms: i64,
    awaiting_join: Option<oneshot::Sender<JoinResult>>,
    awaiting_sync: Option<oneshot::Sender<SyncResult>>,
}

impl Member {
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(n, _)| n == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }
}

/// A JoinGroup request, decoded.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+ hands out member ids with MEMBER_ID_REQUIRED first.
    pub require_known_member_id: bool,
}

/// Group-level settings from the broker config.
#[derive(Debug, Clone, Copy)]
pub struct GroupLimits {
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub initial_rebalance_delay_ms: i32,
    pub max_size: usize,
}

#[derive(Debug)]
pub struct ClassicGroup {
    pub id: String,
    pub state: GroupState,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    pub members: IndexMap<String, Member>,
    pub state_timestamp_ms: i64,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined.
    pending_members: HashSet<String>,
    static_members: HashMap<String, String>,
    /// When PreparingRebalance gives up on members that did not rejoin.
    rebalance_deadline_ms: i64,
    /// While the first rebalance of an empty group waits for more members.
    initial_join_deadline_ms: Option<i64>,
    /// Count of completed rebalances, for metrics.
    pub rebalances: u64,
    next_member_seq: u64,
}

impl ClassicGroup {
    pub fn new(id: String, now_ms: i64) -> Self {
        Self {
            id,
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: IndexMap::new(),
            state_timestamp_ms: now_ms,
            pending_members: HashSet::new(),
            static_members: HashMap::new(),
            rebalance_deadline_ms: i64::MAX,
            initial_join_deadline_ms: None,
            rebalances: 0,
            next_member_seq: 0,
        }
    }

    fn transition(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_timestamp_ms = now_ms;
    }

    fn new_member_id(&mut self, client_id: &str, instance: Option<&str>) -> String {
        self.next_member_seq += 1;
        let prefix = instance.unwrap_or(client_id);
        format!("{prefix}-{}", uuid::Uuid::new_v4())
    }

    /// Protocols every member supports, in the order of the first member's preference.
    fn common_protocols(&self) -> Vec<String> {
        let mut it = self.members.values();
        let Some(first) = it.next() else { return vec![] };
        let mut common: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in it {
            common.retain(|p| m.protocols.iter().any(|(n, _)| n == p));
        }
        common
    }

    /// Each member votes for its most preferred protocol among the common ones.
    fn select_protocol(&self) -> Option<String> {
        let common = self.common_protocols();
        let mut votes: IndexMap<&str, usize> = IndexMap::new();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| common.contains(n)) {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        votes.into_iter().max_by_key(|(_, v)| *v).map(|(n, _)| n.to_string())
    }

    fn supports(&self, req: &JoinRequest) -> bool {
        if self.members.is_empty() {
            return !req.protocol_type.is_empty() && !req.protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(req.protocol_type.as_str()) {
            return false;
        }
        let common = self.common_protocols();
        req.protocols.iter().any(|(n, _)| common.contains(n))
    }

    fn error_join(error: ResponseError, member_id: &str) -> Reply<JoinResult> {
        Reply::Now(JoinResult { error: Some(error), generation_id: -1, member_id: member_id.to_string(), ..Default::default() })
    }

    /// JoinGroup.
    pub fn join(&mut self, req: JoinRequest, limits: &GroupLimits, now_ms: i64) -> Reply<JoinResult> {
        if self.state == GroupState::Dead {
            return Self::error_join(ResponseError::CoordinatorNotAvailable, &req.member_id);
        }
        if req.session_timeout_ms < limits.min_session_timeout_ms || req.session_timeout_ms > limits.max_session_timeout_ms {
            return Self::error_join(ResponseError::InvalidSessionTimeout, &req.member_id);
        }
        if !self.supports(&req) {
            return Self::error_join(ResponseError::InconsistentGroupProtocol, &req.member_id);
        }
        let known = !req.member_id.is_empty();
        if known && !self.members.contains_key(&req.member_id) && !self.pending_members.contains(&req.member_id) {
            // A static member rejoining under a member id it no longer owns is fenced.
            if let Some(instance) = &req.group_instance_id
                && self.static_members.contains_key(instance)
            {
                return Self::error_join(ResponseError::FencedInstanceId, &req.member_id);
            }
            return Self::error_join(ResponseError::UnknownMemberId, &req.member_id);
        }
        let is_new = !self.members.contains_key(&req.member_id);
        if is_new && self.members.len() >= limits.max_size {
            return Self::error_join(ResponseError::GroupMaxSizeReached, &req.member_id);
        }
        if !known {
            if let Some(instance) = req.group_instance_id.clone() {
                return self.join_static_unknown(req, instance, limits, now_ms);
            }
            if req.require_known_member_id {
                let member_id = self.new_member_id(&req.client_id, None);
                self.pending_members.insert(member_id.clone());
                return Self::error_join(ResponseError::MemberIdRequired, &member_id);
            }
            let member_id = self.new_member_id(&req.client_id, None);
            return self.add_member_and_rebalance(req, member_id, limits, now_ms);
        }
        if is_new {
            self.pending_members.remove(&req.member_id);
            let member_id = req.member_id.clone();
            return self.add_member_and_rebalance(req, member_id, limits, now_ms);
        }
        self.rejoin_known(req, limits, now_ms)
    }

    fn join_static_unknown(&mut self, req: JoinRequest, instance: String, limits: &GroupLimits, now_ms: i64) -> Reply<JoinResult> {
        let new_id = self.new_member_id(&req.client_id, Some(&instance));
        let Some(old_id) = self.static_members.get(&instance).cloned() else {
            return self.add_member_and_rebalance(req, new_id, limits, now_ms);
        };
        // KIP-345: a known static member restarting takes over its old membership; the old
        // member id is fenced, and a stable group does not rebalance.
        let Some(mut member) = self.members.shift_remove(&old_id) else {
            self.static_members.remove(&instance);
            return self.add_member_and_rebalance(req, new_id, limits, now_ms);
        };
        if let Some(tx) = member.awaiting_join.take() {
            let _ = tx.send(JoinResult { error: Some(ResponseError::FencedInstanceId), generation_id: -1, member_id: old_id.clone(), ..Default::default() });
        }
        if let Some(tx) = member.awaiting_sync.take() {
            let _ = tx.send(SyncResult { error: Some(ResponseError::FencedInstanceId), ..Default::default() });
        }
        member.member_id = new_id.clone();
        member.protocols = req.protocols.clone();
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.last_heartbeat_ms = now_ms;
        self.members.insert(new_id.clone(), member);
        self.static_members.insert(instance, new_id.clone());
        if self.leader.as_deref() == Some(old_id.as_str()) {
            self.leader = Some(new_id.clone());
        }
        // As Kafka: a stable group rebalances only if the member changes the protocol the
        // group would select; a returning leader gets the members back but keeps the current
        // assignment (skip_assignment).
        if self.state == GroupState::Stable && self.select_protocol() == self.protocol_name {
            let is_leader = self.leader.as_deref() == Some(new_id.as_str());
            let mut result = self.join_result_for(&new_id, is_leader);
            result.skip_assignment = is_leader;
            return Reply::Now(result);
        }
        self.park_join_and_rebalance(new_id, limits, now_ms)
    }

    fn rejoin_known(&mut self, req: JoinRequest, limits: &GroupLimits, now_ms: i64) -> Reply<JoinResult> {
        let member_id = req.member_id.clone();
        let is_leader = self.leader.as_deref() == Some(member_id.as_str());
        let Some(member) = self.members.get_mut(&member_id) else {
            return Self::error_join(ResponseError::UnknownMemberId, &member_id);
        };
        let unchanged = member.protocols == req.protocols;
        member.protocols = req.protocols;
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.last_heartbeat_ms = now_ms;
        match self.state {
            GroupState::Stable if unchanged && !is_leader => Reply::Now(self.join_result_for(&member_id, false)),
            GroupState::CompletingRebalance if unchanged => Reply::Now(self.join_result_for(&member_id, is_leader)),
            _ => self.park_join_and_rebalance(member_id, limits, now_ms),
        }
    }

    fn add_member_and_rebalance(&mut self, req: JoinRequest, member_id: String, limits: &GroupLimits, now_ms: i64) -> Reply<JoinResult> {
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if let Some(instance) = &req.group_instance_id {
            self.static_members.insert(instance.clone(), member_id.clone());
        }
        let member = Member {
            member_id: member_id.clone(),
            group_instance_id: req.group_instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocol_type: req.protocol_type,
            protocols: req.protocols,
            assignment: Bytes::new(),
            last_heartbeat_ms: now_ms,
            awaiting_join: None,
            awaiting_sync: None,
        };
        self.members.insert(member_id.clone(), member);
        self.park_join_and_rebalance(member_id, limits, now_ms)
    }

    fn park_join_and_rebalance(&mut self, member_id: String, limits: &GroupLimits, now_ms: i64) -> Reply<JoinResult> {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(&member_id) {
            m.awaiting_join = Some(tx);
        }
        match self.state {
            GroupState::PreparingRebalance => {
                if let Some(deadline) = self.initial_join_deadline_ms {
                    // Each new member of a brand-new group extends the wait, up to the
                    // rebalance timeout (group.initial.rebalance.delay.ms).
                    let extended = now_ms + i64::from(limits.initial_rebalance_delay_ms);
                    self.initial_join_deadline_ms = Some(extended.min(self.rebalance_deadline_ms).max(deadline));
                }
            }
            _ => self.prepare_rebalance(limits, now_ms),
        }
        self.maybe_complete_join(now_ms);
        Reply::Later(rx)
    }

    fn prepare_rebalance(&mut self, limits: &GroupLimits, now_ms: i64) {
        tracing::info!(group = %self.id, generation = self.generation_id, members = self.members.len(), "preparing rebalance");
        // Members waiting for their assignment must rejoin first.
        for m in self.members.values_mut() {
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(SyncResult { error: Some(ResponseError::RebalanceInProgress), ..Default::default() });
            }
        }
        let timeout = self.members.values().map(|m| i64::from(m.rebalance_timeout_ms)).max().unwrap_or(0);
        self.rebalance_deadline_ms = now_ms.saturating_add(timeout);
        self.initial_join_deadline_ms = if self.state == GroupState::Empty && limits.initial_rebalance_delay_ms > 0 {
            Some((now_ms + i64::from(limits.initial_rebalance_delay_ms)).min(self.rebalance_deadline_ms))
        } else {
            None
        };
        self.transition(GroupState::PreparingRebalance, now_ms);
    }

    /// Completes the join phase if every member has rejoined (and any initial delay passed),
    /// or the rebalance deadline passed (members that did not rejoin are removed).
    fn maybe_complete_join(&mut self, now_ms: i64) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined = self.members.values().all(|m| m.awaiting_join.is_some());
        let delay_over = self.initial_join_deadline_ms.is_none_or(|d| now_ms >= d);
        let deadline_passed = now_ms >= self.rebalance_deadline_ms;
        let ready = all_joined && delay_over;
        if !ready && !deadline_passed {
            return;
        }
        let gone: Vec<String> = self.members.values().filter(|m| m.awaiting_join.is_none()).map(|m| m.member_id.clone()).collect();
        for id in gone {
            self.remove_member_entry(&id);
        }
        self.initial_join_deadline_ms = None;
        self.generation_id += 1;
        self.rebalances += 1;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.leader = None;
            self.transition(GroupState::Empty, now_ms);
            return;
        }
        self.protocol_name = self.select_protocol();
        if self.leader.as_ref().is_none_or(|l| !self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        self.transition(GroupState::CompletingRebalance, now_ms);
        tracing::info!(group = %self.id, generation = self.generation_id, members = self.members.len(), leader = ?self.leader, protocol = ?self.protocol_name, "rebalance: join phase complete");
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let is_leader = self.leader.as_deref() == Some(id.as_str());
            let result = self.join_result_for(&id, is_leader);
            if let Some(m) = self.members.get_mut(&id) {
                m.last_heartbeat_ms = now_ms;
                if let Some(tx) = m.awaiting_join.take() {
                    let _ = tx.send(result);
                }
            }
        }
    }

    fn join_result_for(&self, member_id: &str, with_members: bool) -> JoinResult {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        JoinResult {
            error: None,
            skip_assignment: false,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if with_members {
                self.members
                    .values()
                    .map(|m| (m.member_id.clone(), m.group_instance_id.clone(), m.metadata_for(&protocol)))
                    .collect()
            } else {
                vec![]
            },
        }
    }

    fn remove_member_entry(&mut self, member_id: &str) {
        if let Some(mut m) = self.members.shift_remove(member_id) {
            if let Some(instance) = &m.group_instance_id
                && self.static_members.get(instance).map(String::as_str) == Some(member_id)
            {
                self.static_members.remove(instance);
            }
            if let Some(tx) = m.awaiting_join.take() {
                let _ = tx.send(JoinResult { error: Some(ResponseError::UnknownMemberId), generation_id: -1, ..Default::default() });
            }
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(SyncResult { error: Some(ResponseError::UnknownMemberId), ..Default::default() });
            }
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
    }

    /// Removes a member (left or expired) and rebalances the rest.
    fn remove_member(&mut self, member_id: &str, limits: &GroupLimits, now_ms: i64) {
        self.remove_member_entry(member_id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(limits, now_ms),
            GroupState::Empty | GroupState::Dead => {}
            GroupState::PreparingRebalance => {}
        }
        self.maybe_complete_join(now_ms);
    }

    /// Checks generation, member and instance of a request from a member.
    fn validate_member(&self, member_id: &str, instance: Option<&str>, generation_id: i32) -> Result<(), ResponseError> {
        if let Some(instance) = instance
            && let Some(owner) = self.static_members.get(instance)
            && owner != member_id
        {
            return Err(ResponseError::FencedInstanceId);
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation_id != self.generation_id {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    /// OffsetCommit's check, as Kafka's `ClassicGroup.validateOffsetCommit` for a
    /// non-transactional commit. Generation -1 with neither member id nor instance id comes
    /// from an admin client or a consumer without group management: accepted while the group
    /// is empty, UNKNOWN_MEMBER_ID once it has members (not ILLEGAL_GENERATION: the committer
    /// is not a member at all). Anything else must be a member of the current generation.
    pub fn validate_offset_commit(&self, member_id: &str, instance: Option<&str>, generation_id: i32) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if generation_id < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if generation_id >= 0 || !member_id.is_empty() || instance.is_some() {
            self.validate_member(member_id, instance, generation_id)?;
        } else {
            return Err(ResponseError::UnknownMemberId);
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }

    /// TxnOffsetCommit's check (KIP-447, Kafka's `validateOffsetCommit` with
    /// `isTransactional`): the member id, generation and instance id are optional, but
    /// whichever is given must name a member of the current generation; a rebalance in
    /// progress does not refuse a transactional commit.
    pub fn validate_txn_offset_commit(&self, member_id: &str, instance: Option<&str>, generation_id: i32) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if generation_id < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if generation_id >= 0 || !member_id.is_empty() || instance.is_some() {
            self.validate_member(member_id, instance, generation_id)?;
        }
        Ok(())
    }

    /// SyncGroup.
    pub fn sync(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation_id: i32,
        assignments: Vec<(String, Bytes)>,
        now_ms: i64,
    ) -> Reply<SyncResult> {
        let fail = |e| Reply::Now(SyncResult { error: Some(e), ..Default::default() });
        if matches!(self.state, GroupState::Empty | GroupState::Dead) {
            return fail(ResponseError::UnknownMemberId);
        }
        if let Err(e) = self.validate_member(member_id, instance, generation_id) {
            return fail(e);
        }
        match self.state {
            GroupState::PreparingRebalance => fail(ResponseError::RebalanceInProgress),
            GroupState::Stable => Reply::Now(self.sync_result_for(member_id)),
            _ => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = self.members.get_mut(member_id) {
                    m.awaiting_sync = Some(tx);
                    m.last_heartbeat_ms = now_ms;
                }
                if self.leader.as_deref() == Some(member_id) {
                    let mut by_member: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = by_member.remove(&m.member_id).unwrap_or_default();
                    }
                    self.transition(GroupState::Stable, now_ms);
                    tracing::info!(group = %self.id, generation = self.generation_id, "rebalance: assignments received, stable");
                    let ids: Vec<String> = self.members.keys().cloned().collect();
                    for id in ids {
                        let result = self.sync_result_for(&id);
                        if let Some(tx) = self.members.get_mut(&id).and_then(|m| m.awaiting_sync.take()) {
                            let _ = tx.send(result);
                        }
                    }
                }
                Reply::Later(rx)
            }
        }
    }

    fn sync_result_for(&self, member_id: &str) -> SyncResult {
        SyncResult {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment: self.members.get(member_id).map(|m| m.assignment.clone()).unwrap_or_default(),
        }
    }

    /// Heartbeat.
    pub fn heartbeat(&mut self, member_id: &str, instance: Option<&str>, generation_id: i32, now_ms: i64) -> Result<(), ResponseError> {
        if matches!(self.state, GroupState::Empty | GroupState::Dead) {
            return Err(ResponseError::UnknownMemberId);
        }
        self.validate_member(member_id, instance, generation_id)?;
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat_ms = now_ms;
        }
        match self.state {
            GroupState::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// LeaveGroup for one member (by member id, or by instance id for static members).
    pub fn leave(&mut self, member_id: &str, instance: Option<&str>, limits: &GroupLimits, now_ms: i64) -> Result<(), ResponseError> {
        let id = match instance {
            Some(instance) => match self.static_members.get(instance) {
                Some(owner) if member_id.is_empty() || owner == member_id => owner.clone(),
                Some(_) => return Err(ResponseError::FencedInstanceId),
                None => return Err(ResponseError::UnknownMemberId),
            },
            None => member_id.to_string(),
        };
        if self.pending_members.remove(&id) {
            return Ok(());
        }
        if !self.members.contains_key(&id) {
            return Err(ResponseError::UnknownMemberId);
        }
        self.remove_member(&id, limits, now_ms);
        Ok(())
    }

    /// Drives time: expires members whose session ran out, ends rebalances past their
    /// deadline or initial delay. Returns true if the group changed.
    pub fn tick(&mut self, limits: &GroupLimits, now_ms: i64) -> bool {
        let before = (self.state, self.generation_id, self.members.len());
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && now_ms - m.last_heartbeat_ms > i64::from(m.session_timeout_ms))
            .map(|m| m.member_id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            self.remove_member(&id, limits, now_ms);
        }
        self.maybe_complete_join(now_ms);
        before != (self.state, self.generation_id, self.members.len())
    }

    /// Whether `tick` has anything to do soon (members or a rebalance in progress).
    pub fn is_active(&self) -> bool {
        !self.members.is_empty() || self.state == GroupState::PreparingRebalance
    }

    /// Marks the group deleted; waiting members are told the coordinator moved on.
    pub fn mark_dead(&mut self, now_ms: i64) {
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            self.remove_member_entry(&id);
        }
        self.transition(GroupState::Dead, now_ms);
    }

    /// Members' subscriptions name topics; the consumer protocol encodes them in the metadata.
    pub fn subscribed_topics(&self) -> Option<HashSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol_name.clone()?;
        let mut topics = HashSet::new();
        for m in self.members.values() {
            topics.extend(super::records::consumer_subscription_topics(&m.metadata_for(&protocol))?);
        }
        Some(topics)
    }

    /// Restores a group loaded from `__consumer_offsets`, members included, as Kafka does on
    /// coordinator failover: a group with members comes back `Stable` and its members keep
    /// their generation as long as they heartbeat within their session timeout.
    pub fn restore(
        value: super::records::GroupValue,
        id: String,
        members: Vec<super::records::StoredMember>,
        now_ms: i64,
    ) -> Self {
        let mut g = Self::new(id, now_ms);
        g.generation_id = value.generation_id;
        g.protocol_type = (!value.protocol_type.is_empty()).then_some(value.protocol_type);
        g.protocol_name = value.protocol_name.clone();
        let protocol = value.protocol_name.unwrap_or_default();
        for m in members {
            if let Some(instance) = &m.group_instance_id {
                g.static_members.insert(instance.clone(), m.member_id.clone());
            }
            let member = Member {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                protocols: vec![(protocol.clone(), Bytes::from(m.subscription))],
                assignment: Bytes::from(m.assignment),
                last_heartbeat_ms: now_ms,
                awaiting_join: None,
                awaiting_sync: None,
            };
            g.members.insert(m.member_id, member);
        }
        if !g.members.is_empty() {
            g.leader = value.leader.filter(|l| g.members.contains_key(l));
            g.transition(GroupState::Stable, now_ms);
        }
        g
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const LIMITS: GroupLimits =
        GroupLimits { min_session_timeout_ms: 10, max_session_timeout_ms: 100_000, initial_rebalance_delay_ms: 0, max_size: 10 };

    fn req(member_id: &str) -> JoinRequest {
        JoinRequest {
            member_id: member_id.into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 1000,
            rebalance_timeout_ms: 5000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"m"))],
            require_known_member_id: true,
        }
    }

    fn now<T>(r: Reply<T>) -> T {
        match r {
            Reply::Now(t) => t,
            Reply::Later(mut rx) => rx.try_recv().expect("answered"),
        }
    }

    fn later<T>(r: Reply<T>) -> oneshot::Receiver<T> {
        match r {
            Reply::Later(rx) => rx,
            Reply::Now(_) => panic!("expected to wait"),
        }
    }

    #[test]
    fn two_members_join_sync_and_one_expires() {
        let mut g = ClassicGroup::new("g".into(), 0);
        let first = now(g.join(req(""), &LIMITS, 0));
        assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
        let a = first.member_id;
        let ja = now(g.join(req(&a), &LIMITS, 0));
        assert_eq!((ja.generation_id, ja.leader.as_str()), (1, a.as_str()));
        assert_eq!(ja.members.len(), 1);
        let sa = now(g.sync(&a, None, 1, vec![(a.clone(), Bytes::from_static(b"p0"))], 1));
        assert_eq!(sa.assignment, Bytes::from_static(b"p0"));
        assert_eq!(g.state, GroupState::Stable);
        // A second member triggers a rebalance; the first learns it from its heartbeat.
        let b = now(g.join(req(""), &LIMITS, 2)).member_id;
        let mut jb = later(g.join(req(&b), &LIMITS, 2));
        assert_eq!(g.heartbeat(&a, None, 1, 3), Err(ResponseError::RebalanceInProgress));
        let ja2 = now(g.join(req(&a), &LIMITS, 4));
        let jb = jb.try_recv().unwrap();
        assert_eq!(ja2.generation_id, 2);
        assert_eq!(jb.generation_id, 2);
        assert_eq!(ja2.members.len(), 2, "the leader sees everyone");
        assert!(jb.members.is_empty());
        let mut sb = later(g.sync(&b, None, 2, vec![], 5));
        now(g.sync(&a, None, 2, vec![(a.clone(), Bytes::from_static(b"x")), (b.clone(), Bytes::from_static(b"y"))], 5));
        assert_eq!(sb.try_recv().unwrap().assignment, Bytes::from_static(b"y"));
        assert_eq!(g.sync(&b, None, 1, vec![], 6).into_now().error, Some(ResponseError::IllegalGeneration));
        // b stops heartbeating: after its session timeout it is removed and a rebalances.
        assert_eq!(g.heartbeat(&a, None, 2, 900), Ok(()));
        assert!(g.tick(&LIMITS, 1100));
        assert!(!g.members.contains_key(&b));
        assert_eq!(g.state, GroupState::PreparingRebalance);
        let ja3 = now(g.join(req(&a), &LIMITS, 1101));
        assert_eq!((ja3.generation_id, ja3.members.len()), (3, 1));
    }

    #[test]
    fn leave_unknown_and_static_fencing() {
        let mut g = ClassicGroup::new("g".into(), 0);
        let mut r = req("");
        r.group_instance_id = Some("i1".into());
        let j = now(g.join(r.clone(), &LIMITS, 0));
        let old = j.member_id.clone();
        now(g.sync(&old, Some("i1"), 1, vec![(old.clone(), Bytes::from_static(b"a"))], 0));
        // The same instance restarts: new member id, no rebalance, old id fenced.
        let j2 = now(g.join(r, &LIMITS, 1));
        assert_ne!(j2.member_id, old);
        assert_eq!(j2.generation_id, 1);
        assert_eq!(g.state, GroupState::Stable);
        assert_eq!(g.heartbeat(&old, Some("i1"), 1, 2), Err(ResponseError::FencedInstanceId));
        assert_eq!(g.leave("nope", None, &LIMITS, 3), Err(ResponseError::UnknownMemberId));
        assert_eq!(g.leave("", Some("i1"), &LIMITS, 3), Ok(()));
        assert_eq!(g.state, GroupState::Empty);
    }

    #[test]
    fn initial_delay_waits_for_more_members() {
        let limits = GroupLimits { initial_rebalance_delay_ms: 100, ..LIMITS };
        let mut g = ClassicGroup::new("g".into(), 0);
        let a = now(g.join(req(""), &limits, 0)).member_id;
        let mut ja = later(g.join(req(&a), &limits, 0));
        let b = now(g.join(req(""), &limits, 50)).member_id;
        let mut jb = later(g.join(req(&b), &limits, 50));
        g.tick(&limits, 120);
        assert!(ja.try_recv().is_err(), "the delay was extended by b's join");
        g.tick(&limits, 151);
        assert_eq!(ja.try_recv().unwrap().generation_id, 1);
        assert_eq!(jb.try_recv().unwrap().generation_id, 1);
    }

    impl<T> Reply<T> {
        fn into_now(self) -> T {
            now(self)
        }
    }
}
