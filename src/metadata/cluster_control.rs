//! The active controller's rules for broker membership, as Kafka's `ClusterControlManager`,
//! `BrokerHeartbeatManager` and the leadership parts of `ReplicationControlManager` apply them:
//! registration, heartbeats, fencing after the session timeout, unfencing once a broker has
//! caught up with the metadata log, controlled shutdown, and the producer-id blocks brokers
//! take. Everything here computes records from an image; nothing mutates state or does I/O.
//!
//! Broker sessions (when each broker last heartbeated) are not metadata: they live only in the
//! active controller's memory ([`BrokerSessions`]). A controller that becomes active starts
//! every registered broker's session afresh, so a broker that was alive under the previous
//! controller is not fenced for the time the election took.

use std::collections::HashMap;

use uuid::Uuid;

use super::image::MetadataImage;
use super::partition_change::{self, Target, TopicDefaults};
use super::records::{Endpoint, LeaderChange, MetadataRecord};
use super::registration::PartitionRegistration;
use crate::types::{BrokerEpoch, LeaderEpoch, NodeId, PartitionEpoch, PartitionId};

/// Producer ids handed to a broker per AllocateProducerIds, as Kafka's controller does.
pub const PRODUCER_ID_BLOCK_LEN: i32 = 1000;

/// Why the controller refuses a registration or heartbeat; each maps to Kafka's error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("Another broker is registered with that broker id.")]
    DuplicateRegistration,
    #[error("The broker has not registered.")]
    NotRegistered,
    #[error("Broker epoch {got} does not match the registered epoch {expected}.")]
    StaleEpoch { got: i64, expected: i64 },
    #[error("Broker {0} is not an allowed broker id.")]
    InvalidId(i32),
    #[error("The cluster id {got} does not match {expected}.")]
    InconsistentClusterId { got: String, expected: String },
}

/// What a BrokerRegistration request asks for.
#[derive(Debug, Clone)]
pub struct Registration {
    pub id: NodeId,
    pub cluster_id: String,
    pub incarnation_id: Uuid,
    pub endpoints: Vec<Endpoint>,
    pub rack: Option<String>,
    /// The epoch the broker had when it last shut down cleanly (BrokerRegistration v3+'s
    /// `previous_broker_epoch`, KIP-966); `None` when it did not, or the request is older.
    pub previous_broker_epoch: Option<BrokerEpoch>,
}

/// What a BrokerHeartbeat request says.
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat {
    pub id: NodeId,
    pub epoch: BrokerEpoch,
    pub metadata_offset: i64,
    pub want_fence: bool,
    pub want_shut_down: bool,
}

/// The heartbeat's answer, once the records it caused are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeartbeatReply {
    pub is_caught_up: bool,
    pub is_fenced: bool,
    pub should_shut_down: bool,
}

/// When each broker last heartbeated, on the active controller.
#[derive(Debug, Default)]
pub struct BrokerSessions {
    /// Broker → (the epoch it heartbeats with, the time of its last heartbeat).
    last: HashMap<NodeId, (BrokerEpoch, i64)>,
}

impl BrokerSessions {
    /// Every registered broker's session starts at `now_ms` (a controller just became active).
    pub fn restart_all(&mut self, image: &MetadataImage, now_ms: i64) {
        self.last = image.brokers.values().map(|b| (b.id, (b.epoch, now_ms))).collect();
    }

    /// The session of `id`'s registration at `epoch` ends now: its process is known to be
    /// gone (the active controller's own node restarted as a new incarnation), so a new
    /// registration is not refused as a duplicate and the old one is fenced at once.
    pub fn expire_now(&mut self, id: NodeId, epoch: BrokerEpoch, now_ms: i64, session_timeout_ms: i64) {
        self.last.insert(id, (epoch, now_ms.saturating_sub(session_timeout_ms.max(0))));
    }

    pub fn touch(&mut self, id: NodeId, epoch: BrokerEpoch, now_ms: i64) {
        self.last.insert(id, (epoch, now_ms));
    }

    /// Whether `id` heartbeated with another incarnation's epoch within the session timeout.
    pub fn alive(&self, id: NodeId, now_ms: i64, session_timeout_ms: i64) -> bool {
        self.last.get(&id).is_some_and(|(_, at)| now_ms - at < session_timeout_ms)
    }

    /// Unfenced brokers whose session expired. A broker this controller has no session for
    /// (registered under an earlier controller, or before this one caught up) starts one now.
    pub fn expired(&mut self, image: &MetadataImage, now_ms: i64, session_timeout_ms: i64) -> Vec<NodeId> {
        let mut out = Vec::new();
        for b in image.brokers.values().filter(|b| !b.fenced) {
            match self.last.get(&b.id) {
                Some((epoch, at)) if *epoch == b.epoch => {
                    if now_ms - at >= session_timeout_ms {
                        out.push(b.id);
                    }
                }
                _ => {
                    self.last.insert(b.id, (b.epoch, now_ms));
                }
            }
        }
        out
    }
}

/// The records that register a broker: a new incarnation (fenced until it catches up), with
/// the broker epoch Kafka gives it, the offset of its registration. The caller proposes these
/// records next as one entry of the metadata log, at `image.offset`. Returns the records and
/// that epoch.
///
/// A second incarnation of an id whose session is still alive is refused, as Kafka does, so
/// that two processes configured with one `node.id` cannot take turns.
pub fn register(
    image: &MetadataImage,
    defaults: &TopicDefaults,
    sessions: &BrokerSessions,
    req: &Registration,
    now_ms: i64,
    session_timeout_ms: i64,
) -> Result<(Vec<MetadataRecord>, BrokerEpoch), MembershipError> {
    if req.id.0 < 0 {
        return Err(MembershipError::InvalidId(req.id.0));
    }
    if !image.cluster_id.is_empty() && !req.cluster_id.is_empty() && req.cluster_id != image.cluster_id {
        return Err(MembershipError::InconsistentClusterId { got: req.cluster_id.clone(), expected: image.cluster_id.clone() });
    }
    if let Some(existing) = image.brokers.get(&req.id)
        && existing.incarnation_id != req.incarnation_id
        && !existing.fenced
        && sessions.alive(req.id, now_ms, session_timeout_ms)
    {
        return Err(MembershipError::DuplicateRegistration);
    }
    let mut records = Vec::new();
    // The old incarnation's leaderships go first: it is gone. (First, so that a prefix of
    // these records that commits alone never shows the new, fenced incarnation leading.)
    // Kafka's `handleBrokerShutdown`: a new incarnation that did not shut down cleanly (it
    // names no previous epoch, or not the registered one) may have lost its unflushed tail,
    // so with ELR on its replicas also leave every ELR. (The same incarnation registering
    // again did not restart: it is removed as a fenced broker is.)
    if let Some(existing) = image.brokers.get(&req.id) {
        let restarted = existing.incarnation_id != req.incarnation_id;
        let clean = req.previous_broker_epoch == Some(existing.epoch);
        let how = if restarted && !clean && super::features::elr_enabled(image) { Removal::UncleanShutdown } else { Removal::Clean };
        records.extend(remove_broker(image, defaults, req.id, how));
    }
    // The epoch is the offset of the metadata log entry that carries the registration (a
    // change is one entry): the broker is caught up once it has applied it.
    let epoch = BrokerEpoch(image.offset);
    records.push(MetadataRecord::RegisterBroker {
        id: req.id,
        incarnation_id: req.incarnation_id,
        epoch,
        endpoints: req.endpoints.clone(),
        rack: req.rack.clone(),
        fenced: true,
        in_controlled_shutdown: false,
    });
    Ok((records, epoch))
}

/// A heartbeat's records and answer. The broker is caught up once it has applied its own
/// registration (Kafka's rule); then it is unfenced unless it asks to stay fenced, and the
/// partitions it can lead that have no leader elect it. A broker that wants to shut down
/// gives up its leaderships and ISR memberships (controlled shutdown); once it leads nothing
/// it is fenced and told it may stop.
pub fn heartbeat(image: &MetadataImage, defaults: &TopicDefaults, hb: &Heartbeat) -> Result<(Vec<MetadataRecord>, HeartbeatReply), MembershipError> {
    let b = image.brokers.get(&hb.id).ok_or(MembershipError::NotRegistered)?;
    if b.epoch != hb.epoch {
        return Err(MembershipError::StaleEpoch { got: hb.epoch.0, expected: b.epoch.0 });
    }
    let caught_up = hb.metadata_offset >= b.epoch.0;
    let mut records = Vec::new();
    let mut reply = HeartbeatReply { is_caught_up: caught_up, is_fenced: b.fenced, should_shut_down: false };
    if hb.want_shut_down {
        if !b.in_controlled_shutdown && !b.fenced {
            records.push(MetadataRecord::BrokerRegistrationChange {
                id: hb.id,
                epoch: b.epoch,
                fenced: None,
                in_controlled_shutdown: Some(true),
            });
        }
        let moves = remove_broker(image, defaults, hb.id, Removal::Clean);
        if moves.is_empty() {
            if !b.fenced {
                records.push(MetadataRecord::FenceBroker { id: hb.id, epoch: b.epoch });
            }
            reply.is_fenced = true;
            reply.should_shut_down = true;
        }
        records.extend(moves);
        return Ok((records, reply));
    }
    if b.fenced && caught_up && !hb.want_fence && !b.in_controlled_shutdown {
        records.push(MetadataRecord::UnfenceBroker { id: hb.id, epoch: b.epoch });
        records.extend(elect_leaderless(image, defaults, hb.id));
        reply.is_fenced = false;
    } else if !b.fenced && hb.want_fence {
        records.extend(remove_broker(image, defaults, hb.id, Removal::Clean));
        records.push(MetadataRecord::FenceBroker { id: hb.id, epoch: b.epoch });
        reply.is_fenced = true;
    } else if !b.fenced && !b.in_controlled_shutdown {
        // An unfenced broker in the ISR of a partition without a leader should lead it. This
        // is what its unfencing did; but each record is a quorum entry of its own, and an
        // unfencing whose elections were lost in a failover (the change committed in part)
        // would leave the partition offline for good. Every heartbeat repairs that.
        records.extend(elect_leaderless(image, defaults, hb.id));
    }
    Ok((records, reply))
}

/// The records that fence `ids` (their sessions expired) and move their leaderships away.
/// Each broker's changes are computed on the image after the previous ones', so a partition
/// never moves to a broker fenced in the same batch.
///
/// A broker's leaderships move *before* its fence record: in a quorum each record is an
/// entry of its own, and a prefix of a change may commit (and be applied, or survive a
/// failover) without the rest; every prefix of these records leaves no partition led by a
/// fenced broker.
pub fn fence(image: &MetadataImage, defaults: &TopicDefaults, ids: &[NodeId]) -> Vec<MetadataRecord> {
    let mut work = image.clone();
    let mut records = Vec::new();
    for id in ids {
        let Some(b) = work.brokers.get(id) else { continue };
        if b.fenced {
            continue;
        }
        let fence = MetadataRecord::FenceBroker { id: *id, epoch: b.epoch };
        let mut these = remove_broker(&work, defaults, *id, Removal::Clean);
        these.push(fence);
        for r in &these {
            work.replay(r);
        }
        records.extend(these);
    }
    records
}

/// Whether `id` may lead: registered, unfenced, not shutting down.
pub(crate) fn can_lead(image: &MetadataImage, id: NodeId) -> bool {
    partition_change::can_lead(image, id)
}

/// Why a broker's replicas are taken out of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    /// Fenced, shutting down, or replaced by an incarnation that shut down cleanly: it leaves
    /// the ISRs, and the ELRs keep it.
    Clean,
    /// Replaced by an incarnation that did not shut down cleanly: it leaves ISRs and ELRs.
    UncleanShutdown,
}

/// Partition changes that take `id` out of service, as Kafka's `generateLeaderAndIsrUpdates`:
/// in every partition whose ISR holds it (or that it leads; with an unclean shutdown also
/// whose ELR holds it) the target ISR is the ISR without it and `id` may not lead, so each
/// partition it leads moves to another valid replica or to no leader (see
/// [`partition_change`] for the ELR). Leaving the ISR at once matters: a leader's high
/// watermark waits for every ISR member, so a dead one kept there would stall writes with
/// `acks=all` until the leader's own lag check removed it, `replica.lag.time.max.ms` later.
fn remove_broker(image: &MetadataImage, defaults: &TopicDefaults, id: NodeId, how: Removal) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    let unclean_shutdown = (how == Removal::UncleanShutdown).then_some(id);
    for t in image.topics.values() {
        for (p, r) in &t.partitions {
            let named = r.leader == Some(id) || r.isr.contains(&id) || (unclean_shutdown.is_some() && r.elr.contains(&id));
            if !named {
                continue;
            }
            let target = Target { isr: r.isr.iter().copied().filter(|n| *n != id).collect(), ..Target::of(r) };
            let acceptable = |n: NodeId| n != id && can_lead(image, n);
            records.extend(partition_change::change_record(image, defaults, t, *p, target, defaults.online_election(t), unclean_shutdown, acceptable));
        }
    }
    records
}

/// Partitions without a leader that an election can now give one, `id` having become able
/// to lead (Kafka's `handleBrokerUnfenced` over the leaderless partitions): a leader from the
/// ISR, else from the ELR, else the last known leader (see [`partition_change`]).
fn elect_leaderless(image: &MetadataImage, defaults: &TopicDefaults, id: NodeId) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for t in image.topics.values() {
        for (p, r) in t.partitions.iter().filter(|(_, r)| r.leader.is_none() && !r.is_unknown()) {
            let acceptable = |n: NodeId| n == id || can_lead(image, n);
            let Some(record) = partition_change::change_record(image, defaults, t, *p, Target::of(r), defaults.online_election(t), None, acceptable) else {
                continue;
            };
            if matches!(record, MetadataRecord::PartitionChange { leader: Some(LeaderChange::Elected(_)), .. }) {
                records.push(record);
            }
        }
    }
    records
}

/// The next block of producer ids: its first id and the record that reserves it.
pub fn allocate_producer_ids(image: &MetadataImage) -> (i64, MetadataRecord) {
    let start = image.next_producer_id;
    (start, MetadataRecord::ProducerIds { next: start + i64::from(PRODUCER_ID_BLOCK_LEN) })
}

/// One partition of an AlterPartition request, as the leader sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterIsrItem {
    pub topic_id: Uuid,
    pub partition: PartitionId,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: PartitionEpoch,
    /// The proposed ISR; a broker epoch of `None` (-1 on the wire, or a v0-2 request) skips
    /// the epoch check for that member.
    pub new_isr: Vec<(NodeId, Option<BrokerEpoch>)>,
}

/// Why the controller refuses one partition's ISR change; each is Kafka's error code of the
/// same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlterIsrError {
    UnknownTopicId,
    UnknownTopicOrPartition,
    /// The request names a newer epoch than this controller has applied: it is behind (a new
    /// active controller has not caught up, or this one lost its role).
    NotController,
    FencedLeaderEpoch,
    InvalidRequest,
    InvalidUpdateVersion,
    /// A proposed member is not registered, fenced, shutting down, or of another incarnation
    /// (OPERATION_NOT_ATTEMPTED before version 2).
    IneligibleReplica,
    /// The change completed a reassignment that moved the leadership away from the
    /// requesting leader (committed: it must learn its new role from the metadata).
    NewLeaderElected,
}

/// An AlterPartition's effect: the records to commit, and per partition either its
/// registration once they are applied or the error.
pub type AlterIsrOutcome = (Vec<MetadataRecord>, Vec<Result<PartitionRegistration, AlterIsrError>>);

/// Kafka's `ReplicationControlManager.alterPartition` without leader recovery:
/// a partition leader's request to change its ISR, checked against the image in the order
/// Kafka checks (so the leader learns the same thing from the same error). An ISR equal to the
/// current one is a success without a record.
pub fn alter_partition(
    image: &MetadataImage,
    defaults: &TopicDefaults,
    broker: NodeId,
    broker_epoch: BrokerEpoch,
    items: &[AlterIsrItem],
) -> Result<AlterIsrOutcome, MembershipError> {
    let b = image.brokers.get(&broker).ok_or(MembershipError::NotRegistered)?;
    if b.epoch != broker_epoch {
        return Err(MembershipError::StaleEpoch { got: broker_epoch.0, expected: b.epoch.0 });
    }
    let mut work = image.clone();
    let mut records = Vec::new();
    let mut results = Vec::with_capacity(items.len());
    for item in items {
        let result = alter_one(&work, defaults, broker, item);
        match result {
            Ok(Some(record)) => {
                work.replay(&record);
                records.push(record);
                let after = registration_of(&work, item).ok_or(AlterIsrError::UnknownTopicOrPartition);
                results.push(after.and_then(|r| if r.leader == Some(broker) { Ok(r) } else { Err(AlterIsrError::NewLeaderElected) }));
            }
            Ok(None) => results.push(registration_of(&work, item).ok_or(AlterIsrError::UnknownTopicOrPartition)),
            Err(e) => results.push(Err(e)),
        }
    }
    Ok((records, results))
}

fn registration_of(image: &MetadataImage, item: &AlterIsrItem) -> Option<PartitionRegistration> {
    image.topic_by_id(&item.topic_id)?.partitions.get(&item.partition).cloned()
}

fn alter_one(image: &MetadataImage, defaults: &TopicDefaults, broker: NodeId, item: &AlterIsrItem) -> Result<Option<MetadataRecord>, AlterIsrError> {
    let topic = image.topic_by_id(&item.topic_id).ok_or(AlterIsrError::UnknownTopicId)?;
    let current = topic.partitions.get(&item.partition).ok_or(AlterIsrError::UnknownTopicOrPartition)?;
    if item.leader_epoch > current.leader_epoch || item.partition_epoch > current.partition_epoch {
        return Err(AlterIsrError::NotController);
    }
    if item.leader_epoch < current.leader_epoch {
        return Err(AlterIsrError::FencedLeaderEpoch);
    }
    if current.leader != Some(broker) {
        return Err(AlterIsrError::InvalidRequest);
    }
    if item.partition_epoch < current.partition_epoch {
        return Err(AlterIsrError::InvalidUpdateVersion);
    }
    let mut isr: Vec<NodeId> = item.new_isr.iter().map(|(id, _)| *id).collect();
    let distinct: std::collections::BTreeSet<NodeId> = isr.iter().copied().collect();
    if isr.is_empty() || distinct.len() != isr.len() || !isr.iter().all(|id| current.replicas.contains(id)) {
        return Err(AlterIsrError::InvalidRequest);
    }
    if !isr.contains(&broker) {
        return Err(AlterIsrError::InvalidRequest);
    }
    let eligible = |id: &NodeId, epoch: &Option<BrokerEpoch>| {
        image.brokers.get(id).is_some_and(|b| {
            !b.fenced && !b.in_controlled_shutdown && epoch.is_none_or(|e| e == b.epoch)
        })
    };
    if !item.new_isr.iter().all(|(id, epoch)| eligible(id, epoch)) {
        return Err(AlterIsrError::IneligibleReplica);
    }
    // Kafka keeps the ISR in replica order.
    isr.sort_by_key(|id| current.replicas.iter().position(|r| r == id));
    if isr == current.isr {
        return Ok(None);
    }
    // The ISR change, or (when it completes a reassignment) the completion with it; with
    // ELR on, the ELR follows the ISR.
    let target = Target { isr, ..Target::of(current) };
    let acceptable = |n: NodeId| can_lead(image, n);
    Ok(partition_change::change_record(image, defaults, topic, item.partition, target, defaults.online_election(topic), None, acceptable))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::metadata::delta::MetadataDelta;
    use std::sync::Arc;

    /// A change applied as the quorum applies it: one entry.
    fn apply(image: &MetadataImage, records: &[MetadataRecord]) -> MetadataImage {
        let mut d = MetadataDelta::new(Arc::new(image.clone()));
        d.replay_change(records);
        d.apply()
    }

    fn registered(ids: &[i32]) -> (MetadataImage, BrokerSessions) {
        let mut image = MetadataImage { cluster_id: "c".into(), ..Default::default() };
        let mut sessions = BrokerSessions::default();
        for id in ids {
            let req = Registration { id: NodeId(*id), cluster_id: "c".into(), incarnation_id: Uuid::new_v4(), endpoints: vec![], rack: None, previous_broker_epoch: None };
            let (records, epoch) = register(&image, &TopicDefaults::default(), &sessions, &req, 0, 9000).unwrap();
            image = apply(&image, &records);
            let hb = Heartbeat { id: NodeId(*id), epoch, metadata_offset: image.offset, want_fence: false, want_shut_down: false };
            let (records, reply) = heartbeat(&image, &TopicDefaults::default(), &hb).unwrap();
            assert!(!reply.is_fenced && reply.is_caught_up);
            image = apply(&image, &records);
            sessions.touch(NodeId(*id), epoch, 0);
        }
        (image, sessions)
    }

    fn with_partition(image: &MetadataImage, replicas: &[i32]) -> MetadataImage {
        with_named_partition(image, "t", replicas)
    }

    fn with_named_partition(image: &MetadataImage, name: &str, replicas: &[i32]) -> MetadataImage {
        let id = Uuid::new_v4();
        let replicas: Vec<NodeId> = replicas.iter().map(|r| NodeId(*r)).collect();
        apply(
            image,
            &[
                MetadataRecord::Topic { name: name.into(), id, partitions: 1, replication_factor: replicas.len() as i16, configs: Default::default() },
                MetadataRecord::Partition {
                    topic_id: id,
                    partition: PartitionId(0),
                    isr: replicas.clone(),
                    leader: replicas.first().copied(),
                    replicas,
                    elr: vec![],
                    last_known_elr: vec![],
                    adding_replicas: vec![],
                    removing_replicas: vec![],
                    leader_epoch: LeaderEpoch(0),
                    partition_epoch: PartitionEpoch(0),
                },
            ],
        )
    }

    #[test]
    fn a_registered_broker_is_unfenced_once_caught_up() {
        let (image, sessions) = registered(&[1]);
        let req = Registration { id: NodeId(2), cluster_id: "c".into(), incarnation_id: Uuid::new_v4(), endpoints: vec![], rack: None, previous_broker_epoch: None };
        let (records, epoch) = register(&image, &TopicDefaults::default(), &sessions, &req, 0, 9000).unwrap();
        assert_eq!(epoch.0, image.offset, "the broker epoch is the registration's offset");
        let image = apply(&image, &records);
        assert!(image.brokers[&NodeId(2)].fenced);
        let behind = Heartbeat { id: NodeId(2), epoch, metadata_offset: epoch.0 - 1, want_fence: false, want_shut_down: false };
        let (records, reply) = heartbeat(&image, &TopicDefaults::default(), &behind).unwrap();
        assert!(records.is_empty() && reply.is_fenced && !reply.is_caught_up);
        let stale = Heartbeat { epoch: BrokerEpoch(epoch.0 - 1), ..behind };
        assert!(matches!(heartbeat(&image, &TopicDefaults::default(), &stale), Err(MembershipError::StaleEpoch { .. })));
        let (records, reply) = heartbeat(&image, &TopicDefaults::default(), &Heartbeat { metadata_offset: epoch.0, ..behind }).unwrap();
        assert!(!reply.is_fenced);
        assert!(!apply(&image, &records).brokers[&NodeId(2)].fenced);
    }

    #[test]
    fn a_live_duplicate_id_is_refused_and_a_dead_one_replaced() {
        let (image, sessions) = registered(&[1]);
        let req = Registration { id: NodeId(1), cluster_id: "c".into(), incarnation_id: Uuid::new_v4(), endpoints: vec![], rack: None, previous_broker_epoch: None };
        assert_eq!(register(&image, &TopicDefaults::default(), &sessions, &req, 1000, 9000).unwrap_err(), MembershipError::DuplicateRegistration);
        assert!(register(&image, &TopicDefaults::default(), &sessions, &req, 9000, 9000).is_ok(), "the old session expired");
        let other = Registration { cluster_id: "other".into(), ..req };
        assert!(matches!(register(&image, &TopicDefaults::default(), &sessions, &other, 9000, 9000), Err(MembershipError::InconsistentClusterId { .. })));
    }

    #[test]
    fn fencing_moves_leadership_to_an_in_sync_replica_or_takes_the_partition_offline() {
        let (image, mut sessions) = registered(&[1, 2, 3]);
        let image = with_partition(&image, &[1, 2, 3]);
        assert!(sessions.expired(&image, 8999, 9000).is_empty());
        assert_eq!(sessions.expired(&image, 9000, 9000).len(), 3);
        let image = apply(&image, &fence(&image, &TopicDefaults::default(), &[NodeId(1)]));
        let p = image.topic("t").unwrap().partitions[&PartitionId(0)].clone();
        assert_eq!((p.leader, p.isr.clone(), p.leader_epoch), (Some(NodeId(2)), vec![NodeId(2), NodeId(3)], LeaderEpoch(1)));
        let image = apply(&image, &fence(&image, &TopicDefaults::default(), &[NodeId(2), NodeId(3)]));
        let p = image.topic("t").unwrap().partitions[&PartitionId(0)].clone();
        assert_eq!(p.leader, None);
        assert_eq!(p.isr, vec![NodeId(3)], "the last in-sync replica is kept");
        assert!(image.brokers.values().all(|b| b.fenced));
        // Broker 3 comes back: it is the one replica that may lead.
        let b3 = image.brokers[&NodeId(3)].clone();
        let (records, _) = heartbeat(&image, &TopicDefaults::default(), &Heartbeat { id: NodeId(3), epoch: b3.epoch, metadata_offset: image.offset, want_fence: false, want_shut_down: false }).unwrap();
        let image = apply(&image, &records);
        assert_eq!(image.topic("t").unwrap().partitions[&PartitionId(0)].leader, Some(NodeId(3)));
    }

    #[test]
    fn controlled_shutdown_gives_up_leadership_before_it_may_stop() {
        let (image, _) = registered(&[1, 2]);
        let image = with_partition(&image, &[1, 2]);
        let b1 = image.brokers[&NodeId(1)].clone();
        let hb = Heartbeat { id: NodeId(1), epoch: b1.epoch, metadata_offset: image.offset, want_fence: false, want_shut_down: true };
        let (records, reply) = heartbeat(&image, &TopicDefaults::default(), &hb).unwrap();
        assert!(!reply.should_shut_down, "it still leads");
        let image = apply(&image, &records);
        let p = image.topic("t").unwrap().partitions[&PartitionId(0)].clone();
        assert_eq!((p.leader, p.isr.clone()), (Some(NodeId(2)), vec![NodeId(2)]));
        assert!(image.brokers[&NodeId(1)].in_controlled_shutdown);
        let (records, reply) = heartbeat(&image, &TopicDefaults::default(), &Heartbeat { metadata_offset: image.offset, ..hb }).unwrap();
        assert!(reply.should_shut_down && reply.is_fenced);
        assert!(apply(&image, &records).brokers[&NodeId(1)].fenced);
    }

    /// Replays `records` one by one and checks, after each, that no partition is led by a
    /// fenced broker: in a quorum a prefix of a change can commit without the rest.
    fn replay_checking_every_prefix(image: &MetadataImage, records: &[MetadataRecord]) -> MetadataImage {
        let mut image = image.clone();
        for (k, record) in records.iter().enumerate() {
            image.replay(record);
            for t in image.topics.values() {
                for r in t.partitions.values() {
                    if let Some(leader) = r.leader {
                        assert!(!image.brokers[&leader].fenced, "after record {k} ({record:?}) fenced broker {leader:?} leads {}", t.name);
                    }
                }
            }
        }
        image
    }

    #[test]
    fn every_prefix_of_a_fencing_leaves_no_fenced_leader() {
        let (image, _) = registered(&[1, 2, 3]);
        let image = with_named_partition(&image, "a", &[1, 2, 3]);
        let image = with_named_partition(&image, "b", &[2, 3]);
        let records = fence(&image, &TopicDefaults::default(), &[NodeId(1), NodeId(2)]);
        let after = replay_checking_every_prefix(&image, &records);
        assert_eq!(after.topic("a").unwrap().partitions[&PartitionId(0)].leader, Some(NodeId(3)));
        assert_eq!(after.topic("b").unwrap().partitions[&PartitionId(0)].leader, Some(NodeId(3)));
        assert!(after.brokers[&NodeId(1)].fenced && after.brokers[&NodeId(2)].fenced);

        let b3 = after.brokers[&NodeId(3)].clone();
        let want_fence = Heartbeat { id: NodeId(3), epoch: b3.epoch, metadata_offset: after.offset, want_fence: true, want_shut_down: false };
        let (records, reply) = heartbeat(&after, &TopicDefaults::default(), &want_fence).unwrap();
        assert!(reply.is_fenced);
        let offline = replay_checking_every_prefix(&after, &records);
        assert_eq!(offline.topic("a").unwrap().partitions[&PartitionId(0)].leader, None);
    }

    #[test]
    fn a_re_registration_epoch_is_the_offset_of_its_entry() {
        let (image, sessions) = registered(&[1, 2]);
        let image = with_partition(&image, &[1, 2]);
        // Broker 1 restarted as a new incarnation after its session expired, still leading.
        let req = Registration { id: NodeId(1), cluster_id: "c".into(), incarnation_id: Uuid::new_v4(), endpoints: vec![], rack: None, previous_broker_epoch: None };
        let (records, epoch) = register(&image, &TopicDefaults::default(), &sessions, &req, 9000, 9000).unwrap();
        let at = records.iter().position(|r| matches!(r, MetadataRecord::RegisterBroker { .. })).unwrap();
        assert!(at > 0, "the old incarnation's leadership moves first");
        assert_eq!(epoch.0, image.offset, "the epoch is the offset of the entry carrying the registration");
        let next = replay_checking_every_prefix(&image, &records);
        assert_eq!(next.brokers[&NodeId(1)].epoch, epoch);
        // Having applied only the moves, the new incarnation is not caught up.
        let behind = Heartbeat { id: NodeId(1), epoch, metadata_offset: epoch.0 - 1, want_fence: false, want_shut_down: false };
        let (records, reply) = heartbeat(&next, &TopicDefaults::default(), &behind).unwrap();
        assert!(records.is_empty() && reply.is_fenced && !reply.is_caught_up);
        let (_, reply) = heartbeat(&next, &TopicDefaults::default(), &Heartbeat { metadata_offset: epoch.0, ..behind }).unwrap();
        assert!(!reply.is_fenced && reply.is_caught_up);
    }

    #[test]
    fn a_heartbeat_elects_its_broker_where_a_lost_election_left_no_leader() {
        let (image, _) = registered(&[1, 2]);
        let image = with_partition(&image, &[1, 2]);
        let t = image.topic("t").unwrap().id;
        // Both fenced, the partition offline keeping its ISR; then broker 2's unfencing
        // committed without the election that came with it.
        let image = apply(&image, &fence(&image, &TopicDefaults::default(), &[NodeId(1), NodeId(2)]));
        assert_eq!(image.topic("t").unwrap().partitions[&PartitionId(0)].leader, None);
        let b2 = image.brokers[&NodeId(2)].clone();
        let image = apply(&image, &[MetadataRecord::UnfenceBroker { id: NodeId(2), epoch: b2.epoch }]);
        let hb = Heartbeat { id: NodeId(2), epoch: b2.epoch, metadata_offset: image.offset, want_fence: false, want_shut_down: false };
        let (records, reply) = heartbeat(&image, &TopicDefaults::default(), &hb).unwrap();
        assert!(!reply.is_fenced);
        assert!(matches!(&records[..], [MetadataRecord::PartitionChange { topic_id, leader: Some(LeaderChange::Elected(NodeId(2))), .. }] if *topic_id == t));
        let image = apply(&image, &records);
        assert_eq!(image.topic("t").unwrap().partitions[&PartitionId(0)].leader, Some(NodeId(2)));
        let (records, _) = heartbeat(&image, &TopicDefaults::default(), &hb).unwrap();
        assert!(records.is_empty(), "nothing to repair: a heartbeat writes nothing");
    }

    fn alter_item(image: &MetadataImage, isr: &[i32]) -> AlterIsrItem {
        let t = image.topic("t").unwrap();
        let r = &t.partitions[&PartitionId(0)];
        AlterIsrItem {
            topic_id: t.id,
            partition: PartitionId(0),
            leader_epoch: r.leader_epoch,
            partition_epoch: r.partition_epoch,
            new_isr: isr.iter().map(|i| (NodeId(*i), Some(image.brokers[&NodeId(*i)].epoch))).collect(),
        }
    }

    #[test]
    fn the_leader_shrinks_and_expands_its_isr_one_partition_epoch_at_a_time() {
        let (image, _) = registered(&[1, 2, 3]);
        let image = with_partition(&image, &[1, 2, 3]);
        let e1 = image.brokers[&NodeId(1)].epoch;
        let shrink = alter_item(&image, &[1, 2]);
        let (records, results) = alter_partition(&image, &TopicDefaults::default(), NodeId(1), e1, std::slice::from_ref(&shrink)).unwrap();
        let after = results[0].clone().unwrap();
        assert_eq!(after.isr, vec![NodeId(1), NodeId(2)]);
        assert_eq!(after.partition_epoch.0, shrink.partition_epoch.0 + 1);
        assert_eq!(after.leader_epoch, shrink.leader_epoch, "an ISR change keeps the leader epoch");
        let image = apply(&image, &records);
        assert_eq!(image.topic("t").unwrap().partitions[&PartitionId(0)], after);
        // The same request again is stale now.
        let (records, results) = alter_partition(&image, &TopicDefaults::default(), NodeId(1), e1, &[shrink]).unwrap();
        assert!(records.is_empty());
        assert_eq!(results[0], Err(AlterIsrError::InvalidUpdateVersion));
        // Expansion, members in any order: the ISR comes back in replica order.
        let mut expand = alter_item(&image, &[3, 1, 2]);
        expand.new_isr.rotate_left(1);
        let (records, results) = alter_partition(&image, &TopicDefaults::default(), NodeId(1), e1, &[expand.clone()]).unwrap();
        assert_eq!(results[0].clone().unwrap().isr, vec![NodeId(1), NodeId(2), NodeId(3)]);
        let image = apply(&image, &records);
        // No change is a success without a record.
        let same = alter_item(&image, &[1, 2, 3]);
        let (records, results) = alter_partition(&image, &TopicDefaults::default(), NodeId(1), e1, &[same]).unwrap();
        assert!(records.is_empty() && results[0].is_ok());
    }

    #[test]
    fn alter_partition_errors_are_kafkas_in_kafkas_order() {
        let (image, _) = registered(&[1, 2, 3]);
        let image = with_partition(&image, &[1, 2, 3]);
        let e1 = image.brokers[&NodeId(1)].epoch;
        let e2 = image.brokers[&NodeId(2)].epoch;
        let ok = alter_item(&image, &[1, 2]);
        let one = |broker: i32, epoch: BrokerEpoch, item: AlterIsrItem| {
            alter_partition(&image, &TopicDefaults::default(), NodeId(broker), epoch, &[item]).map(|(_, r)| r[0].clone())
        };
        assert!(matches!(one(1, BrokerEpoch(e1.0 + 100), ok.clone()), Err(MembershipError::StaleEpoch { .. })));
        assert_eq!(one(1, e1, AlterIsrItem { topic_id: Uuid::new_v4(), ..ok.clone() }).unwrap(), Err(AlterIsrError::UnknownTopicId));
        assert_eq!(one(1, e1, AlterIsrItem { partition: PartitionId(5), ..ok.clone() }).unwrap(), Err(AlterIsrError::UnknownTopicOrPartition));
        let newer = AlterIsrItem { leader_epoch: LeaderEpoch(ok.leader_epoch.0 + 1), ..ok.clone() };
        assert_eq!(one(1, e1, newer).unwrap(), Err(AlterIsrError::NotController));
        assert_eq!(one(2, e2, ok.clone()).unwrap(), Err(AlterIsrError::InvalidRequest), "only the leader alters");
        let without_leader = AlterIsrItem { new_isr: vec![(NodeId(2), None)], ..ok.clone() };
        assert_eq!(one(1, e1, without_leader).unwrap(), Err(AlterIsrError::InvalidRequest));
        let stranger = AlterIsrItem { new_isr: vec![(NodeId(1), None), (NodeId(9), None)], ..ok.clone() };
        assert_eq!(one(1, e1, stranger).unwrap(), Err(AlterIsrError::InvalidRequest));
        let twice = AlterIsrItem { new_isr: vec![(NodeId(1), None), (NodeId(1), None)], ..ok.clone() };
        assert_eq!(one(1, e1, twice).unwrap(), Err(AlterIsrError::InvalidRequest));
        let old_incarnation = AlterIsrItem { new_isr: vec![(NodeId(1), None), (NodeId(2), Some(BrokerEpoch(e2.0 - 1)))], ..ok.clone() };
        assert_eq!(one(1, e1, old_incarnation).unwrap(), Err(AlterIsrError::IneligibleReplica));
        // A fenced member is ineligible; the fence itself moved 3 out of the ISR already.
        let fenced = apply(&image, &fence(&image, &TopicDefaults::default(), &[NodeId(3)]));
        assert_eq!(fenced.topic("t").unwrap().partitions[&PartitionId(0)].isr, vec![NodeId(1), NodeId(2)]);
        let add_back = alter_item(&fenced, &[1, 2]);
        let add_back = AlterIsrItem { new_isr: vec![(NodeId(1), None), (NodeId(2), None), (NodeId(3), None)], ..add_back };
        let (_, r) = alter_partition(&fenced, &TopicDefaults::default(), NodeId(1), e1, &[add_back]).unwrap();
        assert_eq!(r[0], Err(AlterIsrError::IneligibleReplica));
        // After a leader change the old leader's epoch is fenced.
        let moved = apply(&image, &fence(&image, &TopicDefaults::default(), &[NodeId(1)]));
        let e2 = moved.brokers[&NodeId(2)].epoch;
        let (_, r) = alter_partition(&moved, &TopicDefaults::default(), NodeId(2), e2, &[ok]).unwrap();
        assert_eq!(r[0], Err(AlterIsrError::FencedLeaderEpoch));
    }

    /// ELR on, topic `t` on brokers 1..=3 with `min.insync.replicas` 2.
    fn elr_cluster() -> (MetadataImage, BrokerSessions) {
        let (image, sessions) = registered(&[1, 2, 3]);
        let image = apply(&image, &crate::metadata::features::bootstrap_records());
        let image = with_partition(&image, &[1, 2, 3]);
        let t = image.topic("t").unwrap().id;
        let image = apply(&image, &[MetadataRecord::TopicConfig { id: t, key: "min.insync.replicas".into(), value: Some("2".into()) }]);
        (image, sessions)
    }

    fn p0(image: &MetadataImage) -> PartitionRegistration {
        image.topic("t").unwrap().partitions[&PartitionId(0)].clone()
    }

    fn shut_down(image: &MetadataImage, id: i32) -> MetadataImage {
        let b = image.brokers[&NodeId(id)].clone();
        let hb = Heartbeat { id: NodeId(id), epoch: b.epoch, metadata_offset: image.offset, want_fence: false, want_shut_down: true };
        let (records, _) = heartbeat(image, &TopicDefaults::default(), &hb).unwrap();
        let image = apply(image, &records);
        let (records, reply) = heartbeat(&image, &TopicDefaults::default(), &Heartbeat { metadata_offset: image.offset, ..hb }).unwrap();
        assert!(reply.should_shut_down, "broker {id} may stop");
        apply(&image, &records)
    }

    #[test]
    fn controlled_shutdowns_move_replicas_below_min_isr_into_the_elr() {
        let (image, _) = elr_cluster();
        let image = shut_down(&image, 3);
        let p = p0(&image);
        assert_eq!((p.isr.clone(), p.elr.clone()), (vec![NodeId(1), NodeId(2)], vec![]), "at min ISR: no ELR");
        let image = shut_down(&image, 2);
        let p = p0(&image);
        assert_eq!((p.isr.clone(), p.elr.clone(), p.leader), (vec![NodeId(1)], vec![NodeId(2)], Some(NodeId(1))));
        let image = shut_down(&image, 1);
        let p = p0(&image);
        assert_eq!((p.isr, p.elr, p.last_known_elr, p.leader), (vec![], vec![NodeId(1), NodeId(2)], vec![NodeId(1)], None));
    }

    /// Broker `id` starts again and registers, naming `previous` as its clean-shutdown epoch.
    fn restart(image: &MetadataImage, sessions: &BrokerSessions, id: i32, previous: Option<BrokerEpoch>) -> (MetadataImage, BrokerEpoch) {
        let req = Registration { id: NodeId(id), cluster_id: "c".into(), incarnation_id: Uuid::new_v4(), endpoints: vec![], rack: None, previous_broker_epoch: previous };
        let (records, epoch) = register(image, &TopicDefaults::default(), sessions, &req, 100_000, 9000).unwrap();
        (apply(image, &records), epoch)
    }

    #[test]
    fn a_clean_restart_stays_eligible_and_leads_from_the_elr() {
        let (image, sessions) = elr_cluster();
        let image = shut_down(&shut_down(&shut_down(&image, 3), 2), 1);
        let e2 = image.brokers[&NodeId(2)].epoch;
        let (image, epoch) = restart(&image, &sessions, 2, Some(e2));
        assert_eq!(p0(&image).elr, vec![NodeId(1), NodeId(2)], "a clean shutdown keeps 2 in the ELR");
        let hb = Heartbeat { id: NodeId(2), epoch, metadata_offset: image.offset, want_fence: false, want_shut_down: false };
        let (records, reply) = heartbeat(&image, &TopicDefaults::default(), &hb).unwrap();
        assert!(!reply.is_fenced);
        let p = p0(&apply(&image, &records));
        assert_eq!((p.leader, p.isr, p.elr, p.last_known_elr), (Some(NodeId(2)), vec![NodeId(2)], vec![NodeId(1)], vec![]), "elected from the ELR");
    }

    #[test]
    fn an_unclean_restart_leaves_the_elr() {
        let (image, sessions) = elr_cluster();
        let image = shut_down(&shut_down(&shut_down(&image, 3), 2), 1);
        let e2 = image.brokers[&NodeId(2)].epoch;
        let (after, _) = restart(&image, &sessions, 2, None);
        assert_eq!(p0(&after).elr, vec![NodeId(1)], "no previous epoch: an unclean shutdown");
        let (after, _) = restart(&image, &sessions, 2, Some(BrokerEpoch(e2.0 - 1)));
        assert_eq!(p0(&after).elr, vec![NodeId(1)], "another epoch: an unclean shutdown");
        let (after, _) = restart(&after, &sessions, 1, None);
        let p = p0(&after);
        assert_eq!((p.elr, p.last_known_elr, p.leader), (vec![], vec![NodeId(1)], None), "the last known leader is kept");
    }

    #[test]
    fn producer_id_blocks_do_not_overlap() {
        let image = MetadataImage::default();
        let (a, r) = allocate_producer_ids(&image);
        let image = apply(&image, &[r]);
        let (b, _) = allocate_producer_ids(&image);
        assert_eq!(b - a, i64::from(PRODUCER_ID_BLOCK_LEN));
    }
}
