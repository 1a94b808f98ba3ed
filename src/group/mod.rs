//! The group coordinator: consumer groups (classic protocol) and their committed offsets.
//!
//! State lives in memory behind one lock and is made durable in the compacted internal topic
//! `__consumer_offsets` (partition = hash of the group id, as Kafka chooses it): an offset
//! commit is appended (and so on disk as the topic's flush policy says) before it is
//! acknowledged; group metadata is written when a generation becomes stable and when a group
//! empties.
//!
//! This node coordinates the groups of the `__consumer_offsets` partitions it leads (see
//! [`crate::coordinator`]): becoming leader of one, it replays that partition to its log end
//! to rebuild offsets and generations (COORDINATOR_LOAD_IN_PROGRESS meanwhile); losing it, it
//! drops those groups (NOT_COORDINATOR). An offset commit is answered once its records are
//! replicated (the handler waits on [`GroupCoordinator::write_barrier`]). Membership itself
//! is restored only as the last stable generation: members of a moved group rejoin, as they
//! do after a Kafka coordinator failover.
//!
//! Transactional offsets (TxnOffsetCommit, KIP-447) are written as a transactional batch of
//! the producer and kept pending, invisible to OffsetFetch, until the transaction's marker
//! reaches the group's `__consumer_offsets` partition ([`GroupCoordinator::complete_transaction`],
//! called by the marker writer): a COMMIT makes them the committed offsets, an ABORT drops
//! them. Replay does the same from the stored batches and markers. OffsetFetch with
//! `require_stable` answers UNSTABLE_OFFSET_COMMIT for a partition with pending offsets.

pub mod assignor;
pub mod classic;
pub mod consumer;
pub mod records;
mod txn_offsets;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::records::{Record, RecordBatchDecoder};

use crate::broker::{Broker, BrokerError, InternalTopic};
use crate::coordinator::{LeadershipListener, OwnedPartitions, WriteBarrier};
use crate::record::BatchBuilder;
use crate::types::{LeaderEpoch, PartitionId, TopicPartition};
use classic::{ClassicGroup, GroupLimits, GroupState, JoinRequest, JoinResult, Reply, SyncResult};
use consumer::{ConsumerGroup, ConsumerLimits, ConsumerMember, HeartbeatRequest, HeartbeatResult, TopicsView};

/// The internal topic holding offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's `offset.metadata.max.bytes`.
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;
/// Kafka's `offsets.topic.segment.bytes`.
const OFFSETS_SEGMENT_BYTES: &str = "104857600";
/// Bytes read per step while loading `__consumer_offsets`.
const LOAD_READ_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

type OffsetMap = BTreeMap<(String, i32), CommittedOffset>;

struct GroupEntry {
    group: ClassicGroup,
    /// Set when the group uses the KIP-848 protocol; `group` then stays empty.
    consumer: Option<ConsumerGroup>,
    offsets: OffsetMap,
    /// Offsets of open transactions, by producer id, until their marker.
    pending: HashMap<i64, OffsetMap>,
}

impl GroupEntry {
    fn new(id: &str, now_ms: i64) -> Self {
        Self { group: ClassicGroup::new(id.to_string(), now_ms), consumer: None, offsets: BTreeMap::new(), pending: HashMap::new() }
    }

    /// Applies a marker of `producer_id` to its pending offsets.
    fn complete_transaction(&mut self, producer_id: i64, commit: bool) {
        if let Some(pending) = self.pending.remove(&producer_id)
            && commit
        {
            self.offsets.extend(pending);
        }
    }

    /// ListGroups' (protocol type, state, group type).
    fn listing(&self) -> (String, &'static str, &'static str) {
        match &self.consumer {
            Some(c) => ("consumer".into(), c.state_name(), "consumer"),
            None => (self.group.protocol_type.clone().unwrap_or_default(), self.group.state.name(), "classic"),
        }
    }
}

/// A KIP-848 group for ConsumerGroupDescribe.
pub struct ConsumerGroupDescription {
    pub state: &'static str,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub members: Vec<ConsumerMember>,
    pub targets: BTreeMap<String, BTreeSet<consumer::Tp>>,
}

/// A summary for DescribeGroups.
pub struct GroupDescription {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol_name: String,
    pub members: Vec<MemberDescription>,
}

pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// One partition of an OffsetCommit.
pub struct OffsetCommit {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

pub struct GroupCoordinator {
    broker: Arc<Broker>,
    limits: GroupLimits,
    consumer_limits: ConsumerLimits,
    /// The groups of the partitions in `owned` that are loaded.
    /// Lock order: `groups`, then `owned` (which is never held while taking another lock).
    groups: Mutex<HashMap<String, GroupEntry>>,
    owned: OwnedPartitions,
    /// Set while [`GroupCoordinator::start`] runs: loads happen on its thread.
    starting: std::sync::atomic::AtomicBool,
    this: std::sync::Weak<GroupCoordinator>,
}

/// One partition of a TxnOffsetCommit.
pub type TxnOffsetCommit = OffsetCommit;

/// Java's `String.hashCode`, so a group (or transactional id) lands on the same partition of
/// its internal topic as in Kafka.
pub(crate) fn java_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

impl GroupCoordinator {
    pub fn new(broker: Arc<Broker>) -> Arc<Self> {
        let c = &broker.config.settings().group;
        let limits = GroupLimits {
            min_session_timeout_ms: c.min_session_timeout_ms,
            max_session_timeout_ms: c.max_session_timeout_ms,
            initial_rebalance_delay_ms: c.initial_rebalance_delay_ms,
            max_size: c.max_size,
        };
        let consumer_limits = ConsumerLimits {
            session_timeout_ms: c.consumer_session_timeout_ms,
            heartbeat_interval_ms: c.consumer_heartbeat_interval_ms,
            max_size: c.consumer_max_size,
        };
        Arc::new_cyclic(|this| Self {
            broker,
            limits,
            consumer_limits,
            groups: Mutex::new(HashMap::new()),
            owned: OwnedPartitions::default(),
            starting: std::sync::atomic::AtomicBool::new(false),
            this: this.clone(),
        })
    }

    /// The KIP-848 limits of `group_id`: its group configs (`consumer.session.timeout.ms`,
    /// `consumer.heartbeat.interval.ms`, validated against the broker's bounds when set)
    /// over the broker defaults.
    fn consumer_limits_for(&self, image: &crate::metadata::MetadataImage, group_id: &str) -> ConsumerLimits {
        let mut limits = self.consumer_limits;
        if let Some(configs) = image.group_configs.get(group_id) {
            let int = |key: &str| configs.get(key).and_then(|v| v.parse::<i32>().ok());
            if let Some(ms) = int("consumer.session.timeout.ms") {
                limits.session_timeout_ms = ms;
            }
            if let Some(ms) = int("consumer.heartbeat.interval.ms") {
                limits.heartbeat_interval_ms = ms;
            }
        }
        limits
    }

    fn groups(&self) -> MutexGuard<'_, HashMap<String, GroupEntry>> {
        match self.groups.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn now(&self) -> i64 {
        self.broker.clock.now_ms()
    }

    /// Starts coordinating the `__consumer_offsets` partitions this node leads, loading
    /// them on this thread before it returns; later elections load on a thread of their own.
    /// Like Kafka, the topic is created on first use, so a broker that never sees a group
    /// starts without its 50 partitions.
    pub fn start(&self) -> Result<(), BrokerError> {
        use std::sync::atomic::Ordering;
        self.starting.store(true, Ordering::Release);
        let me: std::sync::Weak<dyn LeadershipListener> = self.this.clone();
        self.broker.add_leadership_listener(me);
        self.starting.store(false, Ordering::Release);
        Ok(())
    }

    /// Creates `__consumer_offsets` if it does not exist yet (first use).
    pub fn ensure_offsets_topic(&self) -> Result<(), BrokerError> {
        let settings = self.broker.config.settings();
        let mut configs = BTreeMap::new();
        configs.insert("cleanup.policy".to_string(), "compact".to_string());
        configs.insert("compression.type".to_string(), "producer".to_string());
        configs.insert("segment.bytes".to_string(), OFFSETS_SEGMENT_BYTES.to_string());
        self.broker.create_internal_topic(&InternalTopic {
            name: OFFSETS_TOPIC.to_string(),
            partitions: settings.group.offsets_topic_num_partitions,
            replication_factor: settings.group.offsets_topic_replication_factor,
            configs,
        })
    }

    /// The `__consumer_offsets` partition of `group` (Kafka's `partitionFor`).
    pub fn partition_for(&self, group: &str) -> i32 {
        let configured = self.broker.config.settings().group.offsets_topic_num_partitions;
        let n = self.broker.image().topic(OFFSETS_TOPIC).map(|t| t.partition_count()).unwrap_or(configured).max(1);
        // Kafka's Utils.abs: MIN_VALUE maps to 0, everything else to its absolute value.
        let h = java_hash(group);
        (if h == i32::MIN { 0 } else { h.abs() }) % n
    }

    /// Whether requests for `group` are served here: creates `__consumer_offsets` on first
    /// use, then NOT_COORDINATOR unless this node leads the group's partition, and
    /// COORDINATOR_LOAD_IN_PROGRESS while that partition loads. Called before the groups lock
    /// is taken (creating the topic may load its partitions).
    pub fn check_coordinator(&self, group: &str) -> Result<(), ResponseError> {
        if self.broker.image().topic(OFFSETS_TOPIC).is_none() {
            self.ensure_offsets_topic().map_err(|e| {
                tracing::warn!(error = %e, "cannot create __consumer_offsets");
                ResponseError::CoordinatorNotAvailable
            })?;
        }
        self.owned.check(PartitionId(self.partition_for(group)))
    }

    /// What the answer of a request for `group` waits on: everything written to the group's
    /// partition so far replicated.
    pub fn write_barrier(&self, group: &str) -> Option<WriteBarrier> {
        let tp = TopicPartition::new(OFFSETS_TOPIC, self.partition_for(group));
        self.broker.partition(&tp).map(WriteBarrier::at_log_end)
    }

    /// How long a write waits for replication (`offsets.commit.timeout.ms`).
    pub fn write_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.broker.config.settings().group.offsets_commit_timeout_ms)
    }

    /// Loads partition `index` led in `epoch`: replays it to its log end, then, unless
    /// leadership moved meanwhile, installs its groups and serves them.
    fn load_partition(&self, index: PartitionId, epoch: LeaderEpoch) {
        let started = std::time::Instant::now();
        let Some(p) = self.broker.partition(&TopicPartition::new(OFFSETS_TOPIC, index.0)) else { return };
        let loaded = replay(&p, self.now());
        let mut groups = self.groups();
        if !self.owned.finish_load(index, epoch) {
            tracing::info!(partition = index.0, epoch = epoch.0, "leadership moved while loading; load discarded");
            return;
        }
        groups.retain(|id, _| self.partition_for(id) != index.0);
        let count = loaded.len();
        groups.extend(loaded);
        tracing::info!(partition = index.0, epoch = epoch.0, groups = count, elapsed_ms = started.elapsed().as_millis() as u64, "loaded consumer groups");
    }

    /// Appends records for `group` to its `__consumer_offsets` partition.
    fn append(&self, group: &str, entries: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), ResponseError> {
        self.append_batch(group, entries, None)
    }

    /// [`GroupCoordinator::append`] as one batch of `producer` (id, epoch) when given: a
    /// transactional batch, as Kafka writes a TxnOffsetCommit.
    fn append_batch(&self, group: &str, entries: Vec<(Vec<u8>, Option<Vec<u8>>)>, producer: Option<(i64, i16)>) -> Result<(), ResponseError> {
        let tp = TopicPartition::new(OFFSETS_TOPIC, self.partition_for(group));
        let partition = self.broker.partition(&tp).ok_or(ResponseError::NotCoordinator)?;
        if !partition.meets_min_isr() {
            // Kafka appends with acks=all: NOT_ENOUGH_REPLICAS, answered as this.
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let now = self.now();
        // One uncompressed batch, without a producer unless transactional, as Kafka's
        // coordinator writes.
        let builder = match producer {
            Some((id, epoch)) => BatchBuilder::new(0).producer(id, epoch, 0).attributes(0x10),
            None => BatchBuilder::new(0),
        };
        let buf = entries
            .into_iter()
            .fold(builder.timestamps(now), |b, (key, value)| {
                b.record(crate::record::Record { timestamp_delta_ms: 0, key: Some(key), value })
            })
            .build();
        let appended = partition.append_as_coordinator(&buf, now).map_err(|e| {
            tracing::warn!(error = %e, "cannot write to __consumer_offsets");
            crate::coordinator::append_error(&e)
        })?;
        if appended.flush_due {
            // Commits are small and rare next to produce traffic: fsync in place.
            partition.sync(now).map_err(|e| {
                tracing::error!(error = %e, "cannot flush __consumer_offsets");
                ResponseError::NotCoordinator
            })?;
        }
        Ok(())
    }

    fn persist_group(&self, entry: &GroupEntry) {
        let g = &entry.group;
        let protocol = g.protocol_name.clone().unwrap_or_default();
        let subscriptions: Vec<Bytes> = g.members.values().map(|m| m.metadata_for(&protocol)).collect();
        let members: Vec<records::MemberValue<'_>> = g
            .members
            .values()
            .zip(&subscriptions)
            .map(|(m, subscription)| records::MemberValue {
                member_id: &m.member_id,
                group_instance_id: m.group_instance_id.as_deref(),
                client_id: &m.client_id,
                client_host: &m.client_host,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                session_timeout_ms: m.session_timeout_ms,
                subscription,
                assignment: &m.assignment,
            })
            .collect();
        let value = records::group_value(
            &records::GroupValue {
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                generation_id: g.generation_id,
                protocol_name: g.protocol_name.clone(),
                leader: g.leader.clone(),
                state_timestamp_ms: g.state_timestamp_ms,
            },
            &members,
        );
        if let Err(e) = self.append(&g.id, vec![(records::group_key(&g.id), Some(value))]) {
            tracing::warn!(group = %g.id, error = ?e, "cannot persist group metadata");
        }
    }

    fn entry<'a>(&self, groups: &'a mut HashMap<String, GroupEntry>, group_id: &str) -> &'a mut GroupEntry {
        let now = self.now();
        groups
            .entry(group_id.to_string())
            .or_insert_with(|| GroupEntry::new(group_id, now))
    }

    pub fn join(&self, group_id: &str, req: JoinRequest) -> Reply<JoinResult> {
        if group_id.is_empty() {
            return Reply::Now(JoinResult { error: Some(ResponseError::InvalidGroupId), generation_id: -1, ..Default::default() });
        }
        if let Err(e) = self.check_coordinator(group_id) {
            return Reply::Now(JoinResult { error: Some(e), generation_id: -1, ..Default::default() });
        }
        let now = self.now();
        let mut groups = self.groups();
        let entry = self.entry(&mut groups, group_id);
        if entry.consumer.as_ref().is_some_and(|c| !c.members.is_empty()) {
            // Mixing classic and KIP-848 members in one group needs Kafka's upgrade path.
            return Reply::Now(JoinResult { error: Some(ResponseError::InconsistentGroupProtocol), generation_id: -1, ..Default::default() });
        }
        entry.consumer = None;
        let was_empty = entry.group.state == GroupState::Empty;
        let rebalances = entry.group.rebalances;
        let reply = entry.group.join(req, &self.limits, now);
        self.broker.metrics.group_rebalances.inc_by(entry.group.rebalances - rebalances);
        if !was_empty && entry.group.state == GroupState::Empty {
            self.persist_group(entry);
        }
        reply
    }

    pub fn sync(&self, group_id: &str, member_id: &str, instance: Option<&str>, generation_id: i32, assignments: Vec<(String, Bytes)>) -> Reply<SyncResult> {
        if let Err(e) = self.check_coordinator(group_id) {
            return Reply::Now(SyncResult { error: Some(e), ..Default::default() });
        }
        let now = self.now();
        let mut groups = self.groups();
        let Some(entry) = groups.get_mut(group_id) else {
            return Reply::Now(SyncResult { error: Some(ResponseError::UnknownMemberId), ..Default::default() });
        };
        let before = entry.group.state;
        let reply = entry.group.sync(member_id, instance, generation_id, assignments, now);
        if before != GroupState::Stable && entry.group.state == GroupState::Stable {
            self.persist_group(entry);
        }
        reply
    }

    pub fn heartbeat(&self, group_id: &str, member_id: &str, instance: Option<&str>, generation_id: i32) -> Result<(), ResponseError> {
        self.check_coordinator(group_id)?;
        let now = self.now();
        let mut groups = self.groups();
        let entry = groups.get_mut(group_id).ok_or(ResponseError::UnknownMemberId)?;
        entry.group.heartbeat(member_id, instance, generation_id, now)
    }

    pub fn leave(&self, group_id: &str, members: &[(String, Option<String>)]) -> Result<Vec<Result<(), ResponseError>>, ResponseError> {
        self.check_coordinator(group_id)?;
        let now = self.now();
        let mut groups = self.groups();
        let entry = groups.get_mut(group_id).ok_or(ResponseError::UnknownMemberId)?;
        let rebalances = entry.group.rebalances;
        let results: Vec<Result<(), ResponseError>> = members
            .iter()
            .map(|(m, i)| entry.group.leave(m, i.as_deref(), &self.limits, now))
            .collect();
        self.broker.metrics.group_rebalances.inc_by(entry.group.rebalances - rebalances);
        if entry.group.state == GroupState::Empty {
            self.persist_group(entry);
        }
        Ok(results)
    }

    /// OffsetCommit: validates the committer, then makes the offsets durable.
    pub fn commit_offsets(
        &self,
        group_id: &str,
        member_id: &str,
        instance: Option<&str>,
        generation_id: i32,
        commits: Vec<OffsetCommit>,
    ) -> Result<Vec<Result<(), ResponseError>>, ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        self.check_coordinator(group_id)?;
        let now = self.now();
        let image = self.broker.image();
        let mut groups = self.groups();
        let entry = self.entry(&mut groups, group_id);
        let check = match &entry.consumer {
            Some(c) => c.validate_commit(member_id, generation_id)?,
            None => {
                entry.group.validate_offset_commit(member_id, instance, generation_id)?;
                consumer::CommitCheck::All
            }
        };
        let mut results = Vec::with_capacity(commits.len());
        let mut writes = Vec::new();
        let mut accepted = Vec::new();
        for c in commits {
            let known = image.topic(&c.topic).is_some_and(|t| t.partition(c.partition).is_some());
            let metadata = c.metadata.unwrap_or_default();
            let owned = match &check {
                consumer::CommitCheck::All => true,
                consumer::CommitCheck::Owned(set) => {
                    image.topic(&c.topic).is_some_and(|t| set.contains(&(t.id, c.partition)))
                }
            };
            if !known {
                results.push(Err(ResponseError::UnknownTopicOrPartition));
            } else if !owned {
                results.push(Err(ResponseError::StaleMemberEpoch));
            } else if metadata.len() > OFFSET_METADATA_BYTES_MAX {
                results.push(Err(ResponseError::OffsetMetadataTooLarge));
            } else {
                let value = CommittedOffset { offset: c.offset, leader_epoch: c.leader_epoch, metadata, commit_timestamp_ms: now };
                writes.push((
                    records::offset_key(group_id, &c.topic, c.partition),
                    Some(records::offset_value(&records::OffsetValue {
                        offset: value.offset,
                        leader_epoch: value.leader_epoch,
                        metadata: value.metadata.clone(),
                        commit_timestamp_ms: now,
                    })),
                ));
                accepted.push(((c.topic, c.partition), value));
                results.push(Ok(()));
            }
        }
        if !writes.is_empty() {
            if let Err(e) = self.append(group_id, writes) {
                return Ok(results.into_iter().map(|r| r.and(Err(e))).collect());
            }
            entry.offsets.extend(accepted);
        }
        Ok(results)
    }

    /// OffsetFetch: committed offsets for `partitions`, or all of the group's when `None`.
    pub fn fetch_offsets(&self, group_id: &str, partitions: Option<Vec<(String, i32)>>) -> Vec<(String, i32, Option<CommittedOffset>)> {
        let groups = self.groups();
        let offsets = groups.get(group_id).map(|e| &e.offsets);
        match partitions {
            Some(list) => list
                .into_iter()
                .map(|(t, p)| {
                    let c = offsets.and_then(|o| o.get(&(t.clone(), p)).cloned());
                    (t, p, c)
                })
                .collect(),
            None => offsets
                .map(|o| o.iter().map(|((t, p), c)| (t.clone(), *p, Some(c.clone()))).collect())
                .unwrap_or_default(),
        }
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let groups = self.groups();
        let g = &groups.get(group_id)?.group;
        let protocol = g.protocol_name.clone().unwrap_or_default();
        Some(GroupDescription {
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol_name: protocol.clone(),
            members: g
                .members
                .values()
                .map(|m| MemberDescription {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m.metadata_for(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        })
    }

    /// ListGroups: (group id, protocol type, state, group type).
    pub fn list(&self) -> Vec<(String, String, &'static str, &'static str)> {
        let groups = self.groups();
        groups
            .values()
            .filter(|e| e.group.state != GroupState::Dead)
            .map(|e| {
                let (protocol_type, state, kind) = e.listing();
                (e.group.id.clone(), protocol_type, state, kind)
            })
            .collect()
    }

    /// The topics the KIP-848 assignors see: every non-internal topic.
    fn topics_view(&self) -> TopicsView {
        self.broker
            .image()
            .topics
            .values()
            .filter(|t| !t.name.starts_with("__"))
            .map(|t| (t.id, (t.name.clone(), t.partition_count())))
            .collect()
    }

    /// ConsumerGroupHeartbeat (KIP-848).
    pub fn consumer_heartbeat(&self, group_id: &str, req: HeartbeatRequest) -> HeartbeatResult {
        let fail = |e: ResponseError| HeartbeatResult { error: Some(e), member_id: req.member_id.clone(), member_epoch: req.member_epoch, ..Default::default() };
        if group_id.is_empty() {
            return fail(ResponseError::InvalidGroupId);
        }
        if let Err(e) = self.check_coordinator(group_id) {
            return fail(e);
        }
        let now = self.now();
        let topics = self.topics_view();
        let mut groups = self.groups();
        let entry = self.entry(&mut groups, group_id);
        if entry.consumer.is_none() {
            if entry.group.state != GroupState::Empty {
                return fail(ResponseError::GroupIdNotFound);
            }
            entry.consumer = Some(ConsumerGroup::new(group_id.to_string(), now));
        }
        match entry.consumer.as_mut() {
            Some(c) => {
                let epoch = c.group_epoch;
                let limits = self.consumer_limits_for(&self.broker.image(), group_id);
                let result = c.heartbeat(req, &topics, &limits, now);
                // Each new group epoch is a rebalance of the KIP-848 kind.
                self.broker.metrics.group_rebalances.inc_by(u64::try_from(c.group_epoch - epoch).unwrap_or(0));
                result
            }
            None => fail(ResponseError::CoordinatorNotAvailable),
        }
    }

    /// ConsumerGroupDescribe (KIP-848); `None` when the group is unknown or classic.
    pub fn describe_consumer(&self, group_id: &str) -> Option<ConsumerGroupDescription> {
        let groups = self.groups();
        let c = groups.get(group_id)?.consumer.as_ref()?;
        Some(ConsumerGroupDescription {
            state: c.state_name(),
            group_epoch: c.group_epoch,
            assignment_epoch: c.assignment_epoch,
            assignor: c.assignor.clone(),
            members: c.members.values().cloned().collect(),
            targets: c.target.clone(),
        })
    }

    /// Whether the group exists as a classic group (DescribeGroups answers those).
    pub fn is_consumer_group(&self, group_id: &str) -> bool {
        self.groups().get(group_id).is_some_and(|e| e.consumer.is_some())
    }

    /// DeleteGroups: only empty groups; writes tombstones for the group and its offsets.
    pub fn delete_group(&self, group_id: &str) -> Result<(), ResponseError> {
        self.check_coordinator(group_id)?;
        let now = self.now();
        let mut groups = self.groups();
        let entry = groups.get_mut(group_id).ok_or(ResponseError::GroupIdNotFound)?;
        if entry.consumer.as_ref().is_some_and(|c| !c.members.is_empty()) {
            return Err(ResponseError::NonEmptyGroup);
        }
        match entry.group.state {
            GroupState::Empty => {}
            GroupState::Dead => return Err(ResponseError::GroupIdNotFound),
            _ => return Err(ResponseError::NonEmptyGroup),
        }
        let mut tombstones: Vec<(Vec<u8>, Option<Vec<u8>>)> =
            entry.offsets.keys().map(|(t, p)| (records::offset_key(group_id, t, *p), None)).collect();
        tombstones.push((records::group_key(group_id), None));
        self.append(group_id, tombstones)?;
        entry.group.mark_dead(now);
        groups.remove(group_id);
        Ok(())
    }

    /// OffsetDelete: removes committed offsets of topics the group is not subscribed to.
    pub fn delete_offsets(&self, group_id: &str, partitions: Vec<(String, i32)>) -> Result<Vec<Result<(), ResponseError>>, ResponseError> {
        self.check_coordinator(group_id)?;
        let mut groups = self.groups();
        let entry = groups.get_mut(group_id).ok_or(ResponseError::GroupIdNotFound)?;
        let subscribed: HashSet<String> = match (&entry.consumer, entry.group.state) {
            (Some(c), _) => c.subscribed_topic_names(&self.topics_view()).into_iter().collect(),
            (None, GroupState::Empty) => HashSet::new(),
            (None, _) => entry.group.subscribed_topics().ok_or(ResponseError::NonEmptyGroup)?,
        };
        let mut results = Vec::new();
        let mut tombstones = Vec::new();
        for (t, p) in &partitions {
            if subscribed.contains(t) {
                results.push(Err(ResponseError::GroupSubscribedToTopic));
            } else {
                if entry.offsets.contains_key(&(t.clone(), *p)) {
                    tombstones.push((records::offset_key(group_id, t, *p), None));
                }
                results.push(Ok(()));
            }
        }
        if !tombstones.is_empty() {
            self.append(group_id, tombstones)?;
            for ((t, p), r) in partitions.iter().zip(&results) {
                if r.is_ok() {
                    entry.offsets.remove(&(t.clone(), *p));
                }
            }
        }
        Ok(results)
    }

    /// Drives session timeouts and rebalance deadlines; expires offsets of long-empty groups
    /// (`offsets.retention.minutes`).
    pub fn tick(&self) {
        let now = self.now();
        let retention_ms = self.broker.config.settings().group.offsets_retention_ms;
        let image = self.broker.image();
        let mut groups = self.groups();
        let mut expired_groups = Vec::new();
        for (id, entry) in groups.iter_mut() {
            if let Some(c) = entry.consumer.as_mut() {
                c.tick(&self.consumer_limits_for(&image, id), now);
                continue;
            }
            let was = entry.group.state;
            let rebalances = entry.group.rebalances;
            if entry.group.is_active() {
                entry.group.tick(&self.limits, now);
            }
            self.broker.metrics.group_rebalances.inc_by(entry.group.rebalances - rebalances);
            if was != GroupState::Empty && entry.group.state == GroupState::Empty {
                self.persist_group(entry);
            }
            if entry.group.state == GroupState::Empty && now - entry.group.state_timestamp_ms > retention_ms {
                let stale: Vec<(String, i32)> = entry
                    .offsets
                    .iter()
                    .filter(|(_, c)| now - c.commit_timestamp_ms > retention_ms)
                    .map(|(k, _)| k.clone())
                    .collect();
                if !stale.is_empty() {
                    let tombstones = stale.iter().map(|(t, p)| (records::offset_key(&entry.group.id, t, *p), None)).collect();
                    if self.append(&entry.group.id, tombstones).is_ok() {
                        for k in &stale {
                            entry.offsets.remove(k);
                        }
                    }
                }
                if entry.offsets.is_empty() {
                    expired_groups.push(entry.group.id.clone());
                }
            }
        }
        for id in expired_groups {
            if self.append(&id, vec![(records::group_key(&id), None)]).is_ok() {
                groups.remove(&id);
            }
        }
    }

    /// Committed offsets of every group, for lag metrics: (group, topic, partition, offset).
    pub fn all_committed(&self) -> Vec<(String, String, i32, i64)> {
        let groups = self.groups();
        groups
            .values()
            .flat_map(|e| e.offsets.iter().map(|((t, p), c)| (e.group.id.clone(), t.clone(), *p, c.offset)))
            .collect()
    }

    /// Groups by state name, for metrics.
    pub fn counts_by_state(&self) -> BTreeMap<&'static str, usize> {
        let groups = self.groups();
        let mut out = BTreeMap::new();
        for e in groups.values() {
            *out.entry(e.group.state.name()).or_default() += 1;
        }
        out
    }
}

/// The groups of one `__consumer_offsets` partition, read from its log start to its log end
/// (not the high watermark: a new leader's log end holds what the old leader may have
/// acknowledged, as Kafka's loader reads it). Stops at an undecodable batch.
fn replay(p: &crate::partition::Partition, now_ms: i64) -> HashMap<String, GroupEntry> {
    let mut groups: HashMap<String, GroupEntry> = HashMap::new();
    let mut offset = p.log_start_offset();
    while offset < p.log_end_offset() {
        let Ok(read) = p.read_to_log_end(offset, LOAD_READ_BYTES, true) else { break };
        if read.records.is_empty() {
            break;
        }
        let mut buf = read.records.clone();
        let Ok(sets) = RecordBatchDecoder::decode_all(&mut buf) else {
            tracing::warn!(partition = %p.tp, offset = offset.0, "undecodable batch in __consumer_offsets; stopping load of this partition");
            break;
        };
        let mut next = offset;
        for record in sets.iter().flat_map(|s| s.records.iter()) {
            next = next.max(crate::types::Offset(record.offset + 1));
            if record.control {
                // Every group read here lives on this partition: the marker applies to all.
                if let Some(commit) = record.key.as_deref().and_then(crate::record::control::parse_control_key) {
                    for e in groups.values_mut() {
                        e.complete_transaction(record.producer_id, commit);
                    }
                }
                continue;
            }
            apply_record(&mut groups, record, now_ms);
        }
        if next <= offset {
            break;
        }
        offset = next;
    }
    groups
}

fn apply_record(groups: &mut HashMap<String, GroupEntry>, record: &Record, now_ms: i64) {
    let Some(key) = record.key.as_deref().and_then(records::parse_key) else { return };
    match key {
        records::Key::Offset { group, topic, partition } => match record.value.as_deref().and_then(records::parse_offset_value) {
            Some(v) => {
                let e = groups
                    .entry(group.clone())
                    .or_insert_with(|| GroupEntry::new(&group, now_ms));
                let committed = CommittedOffset { offset: v.offset, leader_epoch: v.leader_epoch, metadata: v.metadata, commit_timestamp_ms: v.commit_timestamp_ms };
                if record.transactional {
                    e.pending.entry(record.producer_id).or_default().insert((topic, partition), committed);
                } else {
                    e.offsets.insert((topic, partition), committed);
                }
            }
            None => {
                if let Some(e) = groups.get_mut(&group) {
                    e.offsets.remove(&(topic, partition));
                }
            }
        },
        records::Key::Group { group } => match record.value.as_deref().and_then(records::parse_group_value_with_members) {
            Some((v, members)) => {
                let (offsets, pending) = groups.remove(&group).map(|e| (e.offsets, e.pending)).unwrap_or_default();
                let g = ClassicGroup::restore(v, group.clone(), members, now_ms);
                groups.insert(group, GroupEntry { group: g, consumer: None, offsets, pending });
            }
            None => {
                groups.remove(&group);
            }
        },
    }
}

impl LeadershipListener for GroupCoordinator {
    fn topic(&self) -> &str {
        OFFSETS_TOPIC
    }

    /// Loads the partition: at once when there is nothing to read or during start-up, else
    /// on a thread of its own so metadata keeps flowing (requests meanwhile answer
    /// COORDINATOR_LOAD_IN_PROGRESS).
    fn on_election(&self, partition: PartitionId, epoch: LeaderEpoch) {
        if !self.owned.begin_load(partition, epoch) {
            return;
        }
        let empty = self
            .broker
            .partition(&TopicPartition::new(OFFSETS_TOPIC, partition.0))
            .is_none_or(|p| p.log_end_offset() <= p.log_start_offset());
        if empty || self.starting.load(std::sync::atomic::Ordering::Acquire) {
            self.load_partition(partition, epoch);
            return;
        }
        let Some(me) = self.this.upgrade() else { return };
        let spawned = std::thread::Builder::new()
            .name(format!("load-{OFFSETS_TOPIC}-{}", partition.0))
            .spawn(move || me.load_partition(partition, epoch));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a loader thread; loading inline");
            self.load_partition(partition, epoch);
        }
    }

    /// Drops the partition's groups: their members' waiting joins and syncs end, and every
    /// later request for them answers NOT_COORDINATOR.
    fn on_resignation(&self, partition: PartitionId) {
        let mut groups = self.groups();
        if !self.owned.resign(partition) {
            return;
        }
        let before = groups.len();
        groups.retain(|id, _| self.partition_for(id) != partition.0);
        tracing::info!(partition = partition.0, groups = before - groups.len(), "unloaded consumer groups");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn broker(dir: &std::path::Path) -> Arc<Broker> {
        let config = crate::config::BrokerConfig::load(
            None,
            &[format!("log.dirs={}", dir.display()), "offsets.topic.num.partitions=4".into(), "group.initial.rebalance.delay.ms=0".into()],
        )
        .unwrap();
        Broker::open(config, Arc::new(crate::clock::SystemClock)).unwrap()
    }

    /// Offsets and a stable generation survive a coordinator restart (replay of
    /// `__consumer_offsets`), and the restored member keeps its generation.
    #[test]
    fn offsets_and_groups_survive_reload() {
        let dir = tempfile::tempdir().unwrap();
        let b = broker(dir.path());
        b.auto_create_topic("t").unwrap();
        let c = GroupCoordinator::new(b.clone());
        c.start().unwrap();
        let join = JoinRequest {
            member_id: String::new(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
            require_known_member_id: false,
        };
        let Reply::Later(mut rx) = c.join("g", join) else { panic!("expected to wait") };
        let joined = rx.try_recv().unwrap();
        let member = joined.member_id.clone();
        let Reply::Later(mut rx) = c.sync("g", &member, None, 1, vec![(member.clone(), Bytes::from_static(b"asg"))]) else {
            panic!("leader sync completes through the channel")
        };
        assert_eq!(rx.try_recv().unwrap().assignment, Bytes::from_static(b"asg"));
        let commit = OffsetCommit { topic: "t".into(), partition: 0, offset: 42, leader_epoch: 0, metadata: Some("m".into()) };
        assert_eq!(c.commit_offsets("g", &member, None, 1, vec![commit]).unwrap(), vec![Ok(())]);
        let simple = OffsetCommit { topic: "t".into(), partition: 0, offset: 7, leader_epoch: -1, metadata: None };
        assert_eq!(c.commit_offsets("solo", "", None, -1, vec![simple]).unwrap(), vec![Ok(())]);
        drop(c);
        b.shutdown();
        drop(b);

        let b = broker(dir.path());
        let c = GroupCoordinator::new(b);
        c.start().unwrap();
        let fetched = c.fetch_offsets("g", Some(vec![("t".into(), 0)]));
        assert_eq!(fetched[0].2.as_ref().map(|o| (o.offset, o.metadata.as_str())), Some((42, "m")));
        assert_eq!(c.fetch_offsets("solo", None)[0].2.as_ref().map(|o| o.offset), Some(7));
        let d = c.describe("g").unwrap();
        assert_eq!((d.state, d.members.len()), (GroupState::Stable, 1));
        assert_eq!(d.members[0].assignment, Bytes::from_static(b"asg"));
        assert_eq!(c.heartbeat("g", &member, None, 1), Ok(()));
    }

    /// Kafka's rule for a commit from outside the group (generation -1, no member id):
    /// accepted while the group is empty, UNKNOWN_MEMBER_ID once it has members; a member with
    /// a stale generation is ILLEGAL_GENERATION.
    #[test]
    fn admin_commit_into_a_group_with_members_is_unknown_member() {
        let dir = tempfile::tempdir().unwrap();
        let b = broker(dir.path());
        b.auto_create_topic("t").unwrap();
        let c = GroupCoordinator::new(b.clone());
        c.start().unwrap();
        let commit = || vec![OffsetCommit { topic: "t".into(), partition: 0, offset: 3, leader_epoch: -1, metadata: None }];
        assert_eq!(c.commit_offsets("g", "", None, -1, commit()).unwrap(), vec![Ok(())]);
        let join = JoinRequest {
            member_id: String::new(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
            require_known_member_id: false,
        };
        let Reply::Later(mut rx) = c.join("g", join) else { panic!("expected to wait") };
        let member = rx.try_recv().unwrap().member_id;
        // CompletingRebalance, then Stable: the admin commit is refused the same way in both.
        assert_eq!(c.commit_offsets("g", "", None, -1, commit()), Err(ResponseError::UnknownMemberId));
        let Reply::Later(_rx) = c.sync("g", &member, None, 1, vec![(member.clone(), Bytes::new())]) else {
            panic!("leader sync completes through the channel")
        };
        assert_eq!(c.commit_offsets("g", "", None, -1, commit()), Err(ResponseError::UnknownMemberId));
        assert_eq!(c.commit_offsets("g", &member, None, 0, commit()), Err(ResponseError::IllegalGeneration));
        assert_eq!(c.commit_offsets("g", "nobody", None, 1, commit()), Err(ResponseError::UnknownMemberId));
        assert_eq!(c.commit_offsets("g", &member, None, 1, commit()).unwrap(), vec![Ok(())]);
        b.shutdown();
    }

    /// Losing leadership of a `__consumer_offsets` partition drops its groups
    /// (NOT_COORDINATOR); winning it back in a later epoch loads them from the log again.
    #[test]
    fn resignation_unloads_and_a_new_election_reloads_the_groups() {
        let dir = tempfile::tempdir().unwrap();
        let b = broker(dir.path());
        b.auto_create_topic("t").unwrap();
        let c = GroupCoordinator::new(b.clone());
        c.start().unwrap();
        let commit = |offset| vec![OffsetCommit { topic: "t".into(), partition: 0, offset, leader_epoch: -1, metadata: None }];
        assert_eq!(c.commit_offsets("g", "", None, -1, commit(5)).unwrap(), vec![Ok(())]);
        let p = PartitionId(c.partition_for("g"));
        let epoch = b.partition(&TopicPartition::new(OFFSETS_TOPIC, p.0)).unwrap().leader_epoch();

        c.on_resignation(p);
        assert_eq!(c.commit_offsets("g", "", None, -1, commit(6)), Err(ResponseError::NotCoordinator));
        assert_eq!(c.heartbeat("g", "m", None, 1), Err(ResponseError::NotCoordinator));
        assert!(c.fetch_offsets("g", None).is_empty(), "unloaded groups are forgotten");

        // Re-elected (inline: the test thread loads it as start-up does).
        c.starting.store(true, std::sync::atomic::Ordering::Release);
        c.on_election(p, LeaderEpoch(epoch.0 + 1));
        assert_eq!(c.check_coordinator("g"), Ok(()));
        assert_eq!(c.fetch_offsets("g", None)[0].2.as_ref().map(|o| o.offset), Some(5));
        b.shutdown();
    }

    #[test]
    fn java_string_hash_matches() {
        // Values of Java's "abc".hashCode() and "".hashCode().
        assert_eq!(java_hash("abc"), 96354);
        assert_eq!(java_hash(""), 0);
        // "polygenelubricants".hashCode() is Integer.MIN_VALUE in Java.
        assert_eq!(java_hash("polygenelubricants"), i32::MIN);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod group_config_tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::metadata::controller;

    /// A group's `consumer.heartbeat.interval.ms` and `consumer.session.timeout.ms` configs
    /// (GROUP resources of IncrementalAlterConfigs) replace the broker defaults for it alone.
    #[test]
    fn group_configs_set_the_heartbeat_interval_and_session_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::BrokerConfig::load(None, &[format!("log.dirs={}", dir.path().display()), "offsets.topic.num.partitions=1".into()]).unwrap();
        let clock = Arc::new(ManualClock::new(1_000_000));
        let b = Broker::open(config, clock.clone()).unwrap();
        b.auto_create_topic("t").unwrap();
        let configs = [("consumer.heartbeat.interval.ms".to_string(), "6000".to_string()), ("consumer.session.timeout.ms".to_string(), "50000".to_string())].into();
        b.apply_metadata(|image| Ok((controller::set_group_configs(image, &b.config, "tuned", &configs)?, ()))).unwrap();
        let c = GroupCoordinator::new(b.clone());
        c.start().unwrap();
        let join = |member: &str| HeartbeatRequest {
            member_id: member.into(),
            member_epoch: 0,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            rebalance_timeout_ms: 10_000,
            subscribed_topic_names: Some(vec!["t".into()]),
            ..Default::default()
        };
        let tuned = c.consumer_heartbeat("tuned", join("m1"));
        let plain = c.consumer_heartbeat("plain", join("m2"));
        assert_eq!((tuned.error, tuned.heartbeat_interval_ms), (None, 6000));
        assert_eq!((plain.error, plain.heartbeat_interval_ms), (None, 5000));
        // 47 s without a heartbeat: past the default 45 s session, within the group's 50 s.
        clock.advance_ms(47_000);
        c.tick();
        assert_eq!(c.describe_consumer("tuned").unwrap().members.len(), 1);
        assert_eq!(c.describe_consumer("plain").unwrap().members.len(), 0);
        clock.advance_ms(4_000);
        c.tick();
        assert_eq!(c.describe_consumer("tuned").unwrap().members.len(), 0);
    }
}
