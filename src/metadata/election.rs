//! Leader elections asked for by an operator (ElectLeaders, KIP-460: preferred and unclean)
//! and by the active controller's own balancing (`auto.leader.rebalance.enable`, and unclean
//! elections of leaderless partitions whose topic allows them). Pure: an image in, records
//! out, as the rules of Kafka's `ReplicationControlManager.electLeader` and
//! `PartitionChangeBuilder` decide them.
//!
//! - A **preferred** election moves leadership to the first replica (the preferred leader)
//!   when it is in the ISR and may lead (registered, unfenced, not shutting down). A partition
//!   already led by it needs no election; one whose preferred replica cannot lead keeps its
//!   leader (PREFERRED_LEADER_NOT_AVAILABLE), unless it has none, when the first ISR member
//!   that may lead takes over.
//! - An **unclean** election is for a partition without a leader: the first ISR member that
//!   may lead if there is one (a clean election after all), else the first replica that may
//!   lead, which becomes the whole ISR. Records it never had may be lost: that is what
//!   `unclean.leader.election.enable=false`, the default, forbids the controller to do on its
//!   own. An operator's ElectLeaders with the unclean type runs whatever the topic's setting,
//!   as in Kafka.
//! - With ELR on (KIP-966), a partition whose ISR is empty elects from its ELR, then its last
//!   known leader, before an unclean choice is considered ([`partition_change`]).

use crate::metadata::cluster_control::can_lead;
use crate::metadata::partition_change::{self, Election, Target, TopicDefaults};
use crate::metadata::records::MetadataRecord;
use crate::metadata::{MetadataImage, PartitionRegistration, TopicImage};
use crate::types::{NodeId, PartitionId};

/// The election types of ElectLeaders v1+ (`0` preferred, `1` unclean; v0 is always preferred).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionType {
    Preferred,
    Unclean,
}

impl ElectionType {
    pub fn from_wire(value: i8) -> Option<Self> {
        match value {
            0 => Some(ElectionType::Preferred),
            1 => Some(ElectionType::Unclean),
            _ => None,
        }
    }
}

/// Why one partition's election was not run; each is Kafka's error code of the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElectionError {
    UnknownTopicOrPartition(String),
    /// The partition already has the leader the election would give it.
    ElectionNotNeeded,
    PreferredLeaderNotAvailable,
    EligibleLeadersNotAvailable,
}

impl ElectionError {
    /// Kafka's message for the error (its `ApiError` carries the error's default message).
    pub fn message(&self) -> String {
        match self {
            ElectionError::UnknownTopicOrPartition(m) => m.clone(),
            ElectionError::ElectionNotNeeded => "Leader election not needed for topic partition.".into(),
            ElectionError::PreferredLeaderNotAvailable => "The preferred leader was not available.".into(),
            ElectionError::EligibleLeadersNotAvailable => "Eligible topic partition leaders are not available.".into(),
        }
    }
}

/// Whether the controller may elect an out-of-sync replica of `topic` on its own: the topic's
/// `unclean.leader.election.enable`, else the broker default `default`.
pub fn unclean_allowed(topic: &TopicImage, default: bool) -> bool {
    topic
        .configs
        .get("unclean.leader.election.enable")
        .and_then(|v| v.trim().parse::<bool>().ok())
        .unwrap_or(default)
}

/// Whether `id` may become the leader of `r` in a clean election from its ISR.
fn valid_clean_leader(image: &MetadataImage, r: &PartitionRegistration, id: NodeId) -> bool {
    r.isr.contains(&id) && can_lead(image, id)
}

/// The record of an election of `kind` for partition `index` of `topic`, as Kafka's builder
/// makes it (see [`partition_change`]: with ELR on, an empty ISR elects from the ELR, then
/// the last known leader, before an unclean election is considered); `None` when nothing
/// changes.
fn election_record(image: &MetadataImage, defaults: &TopicDefaults, topic: &TopicImage, index: PartitionId, kind: ElectionType) -> Option<MetadataRecord> {
    let r = topic.partitions.get(&index)?;
    let election = match kind {
        ElectionType::Preferred => Election::Preferred,
        ElectionType::Unclean => Election::Unclean,
    };
    let acceptable = |id: NodeId| can_lead(image, id);
    partition_change::change_record(image, defaults, topic, index, Target::of(r), election, None, acceptable)
}

/// One partition of an ElectLeaders request, as Kafka's `electLeader`.
pub fn elect(image: &MetadataImage, defaults: &TopicDefaults, topic: &str, index: PartitionId, kind: ElectionType) -> Result<MetadataRecord, ElectionError> {
    let t = image.topic(topic).ok_or_else(|| ElectionError::UnknownTopicOrPartition(format!("No such topic as {topic}")))?;
    let r = t
        .partitions
        .get(&index)
        .ok_or_else(|| ElectionError::UnknownTopicOrPartition(format!("No such partition as {topic}-{}", index.0)))?;
    let not_needed = match kind {
        ElectionType::Preferred => r.leader.is_some() && r.leader == r.replicas.first().copied(),
        ElectionType::Unclean => r.leader.is_some(),
    };
    if not_needed {
        return Err(ElectionError::ElectionNotNeeded);
    }
    election_record(image, defaults, t, index, kind).ok_or(match kind {
        ElectionType::Preferred => ElectionError::PreferredLeaderNotAvailable,
        ElectionType::Unclean => ElectionError::EligibleLeadersNotAvailable,
    })
}

/// Most elections one balancing pass writes (Kafka's `MAX_ELECTIONS_PER_IMBALANCE`); the
/// next pass, soon after, takes the rest.
pub const ELECTIONS_PER_PASS_MAX: usize = 1_000;

/// `auto.leader.rebalance.enable`'s pass: every partition not led by its preferred replica
/// moves back to it when that replica is in the ISR and may lead, at most `max` of them.
pub fn balance_leaders(image: &MetadataImage, defaults: &TopicDefaults, max: usize) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for t in image.topics.values() {
        for (index, r) in &t.partitions {
            if records.len() >= max {
                return records;
            }
            let Some(&preferred) = r.replicas.first() else { continue };
            if r.leader == Some(preferred) || !valid_clean_leader(image, r, preferred) {
                continue;
            }
            if let Some(record) = election_record(image, defaults, t, *index, ElectionType::Preferred) {
                records.push(record);
            }
        }
    }
    records
}

/// Leaderless partitions of topics that allow unclean elections (the topic's setting, else
/// the default in `defaults`) get a leader if any replica may lead, at most `max` of them.
pub fn elect_unclean_leaderless(image: &MetadataImage, defaults: &TopicDefaults, max: usize) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for t in image.topics.values() {
        if !unclean_allowed(t, defaults.unclean_leader_election) {
            continue;
        }
        for (index, r) in &t.partitions {
            if records.len() >= max {
                return records;
            }
            if r.leader.is_some() || r.is_unknown() {
                continue;
            }
            if let Some(record) = election_record(image, defaults, t, *index, ElectionType::Unclean) {
                records.push(record);
            }
        }
    }
    records
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::BTreeMap;

    use uuid::Uuid;

    use super::*;
    use crate::types::BrokerEpoch;

    const T: &str = "t";

    /// Brokers 1..=3 (fenced as `fenced` says), topic `t` with one partition of `replicas`,
    /// then `isr` and `leader`.
    fn image(fenced: &[i32], replicas: &[i32], isr: &[i32], leader: Option<i32>, configs: &[(&str, &str)]) -> MetadataImage {
        let mut image = MetadataImage::default();
        let id = Uuid::from_u128(7);
        for b in 1..=3 {
            image.replay(&MetadataRecord::RegisterBroker {
                id: NodeId(b),
                epoch: BrokerEpoch(i64::from(b)),
                incarnation_id: Uuid::from_u128(b as u128),
                endpoints: vec![],
                rack: None,
                fenced: fenced.contains(&b),
                in_controlled_shutdown: false,
            });
        }
        let configs: BTreeMap<String, String> = configs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        image.replay(&MetadataRecord::Topic { name: T.into(), id, partitions: 1, replication_factor: replicas.len() as i16, configs });
        let nodes = |ids: &[i32]| ids.iter().map(|i| NodeId(*i)).collect::<Vec<_>>();
        image.replay(&MetadataRecord::Partition {
            topic_id: id,
            partition: PartitionId(0),
            replicas: nodes(replicas),
            isr: nodes(isr),
            leader: leader.map(NodeId),
            leader_epoch: crate::types::LeaderEpoch(3),
            partition_epoch: crate::types::PartitionEpoch(5),
            elr: vec![],
            last_known_elr: vec![],
            adding_replicas: vec![],
            removing_replicas: vec![],
        });
        image
    }

    fn leader_of(record: &MetadataRecord) -> (Option<NodeId>, Option<Vec<NodeId>>) {
        match record {
            MetadataRecord::PartitionChange { leader, isr, .. } => (leader.and_then(|l| l.leader()), isr.clone()),
            other => panic!("not a partition change: {other:?}"),
        }
    }

    #[test]
    fn a_preferred_election_moves_leadership_back_to_the_first_replica() {
        let image = image(&[], &[1, 2, 3], &[1, 2, 3], Some(2), &[]);
        let record = elect(&image, &TopicDefaults::default(), T, PartitionId(0), ElectionType::Preferred).unwrap();
        assert_eq!(leader_of(&record), (Some(NodeId(1)), None));
        let mut after = image.clone();
        after.replay(&record);
        let r = &after.topic(T).unwrap().partitions[&PartitionId(0)];
        assert_eq!((r.leader, r.leader_epoch.0), (Some(NodeId(1)), 4), "a new leader epoch");
        assert_eq!(elect(&after, &TopicDefaults::default(), T, PartitionId(0), ElectionType::Preferred), Err(ElectionError::ElectionNotNeeded));
    }

    #[test]
    fn a_preferred_replica_out_of_the_isr_or_fenced_is_not_available() {
        let out_of_isr = image(&[], &[1, 2, 3], &[2, 3], Some(2), &[]);
        assert_eq!(elect(&out_of_isr, &TopicDefaults::default(), T, PartitionId(0), ElectionType::Preferred), Err(ElectionError::PreferredLeaderNotAvailable));
        let fenced = image(&[1], &[1, 2, 3], &[1, 2, 3], Some(2), &[]);
        assert_eq!(elect(&fenced, &TopicDefaults::default(), T, PartitionId(0), ElectionType::Preferred), Err(ElectionError::PreferredLeaderNotAvailable));
        assert!(balance_leaders(&out_of_isr, &TopicDefaults::default(), 10).is_empty() && balance_leaders(&fenced, &TopicDefaults::default(), 10).is_empty());
    }

    #[test]
    fn a_preferred_election_of_a_leaderless_partition_takes_an_in_sync_replica() {
        let image = image(&[1], &[1, 2, 3], &[1, 3], None, &[]);
        let record = elect(&image, &TopicDefaults::default(), T, PartitionId(0), ElectionType::Preferred).unwrap();
        assert_eq!(leader_of(&record), (Some(NodeId(3)), None));
    }

    #[test]
    fn an_unclean_election_is_needed_only_without_a_leader_and_prefers_the_isr() {
        let led = image(&[], &[1, 2, 3], &[2], Some(2), &[]);
        assert_eq!(elect(&led, &TopicDefaults::default(), T, PartitionId(0), ElectionType::Unclean), Err(ElectionError::ElectionNotNeeded));
        // The last ISR member is fenced; replicas 2 and 3 are out of sync but alive.
        let offline = image(&[1], &[1, 2, 3], &[1], None, &[]);
        let record = elect(&offline, &TopicDefaults::default(), T, PartitionId(0), ElectionType::Unclean).unwrap();
        assert_eq!(leader_of(&record), (Some(NodeId(2)), Some(vec![NodeId(2)])), "the unclean leader is the whole ISR");
        let all_fenced = image(&[1, 2, 3], &[1, 2, 3], &[1], None, &[]);
        assert_eq!(elect(&all_fenced, &TopicDefaults::default(), T, PartitionId(0), ElectionType::Unclean), Err(ElectionError::EligibleLeadersNotAvailable));
        // An ISR member that came back is a clean choice even in an unclean election.
        let back = image(&[2], &[1, 2, 3], &[3], None, &[]);
        assert_eq!(leader_of(&elect(&back, &TopicDefaults::default(), T, PartitionId(0), ElectionType::Unclean).unwrap()), (Some(NodeId(3)), None));
    }

    #[test]
    fn unknown_topics_and_partitions_are_named() {
        let image = image(&[], &[1], &[1], Some(1), &[]);
        assert_eq!(elect(&image, &TopicDefaults::default(), "nope", PartitionId(0), ElectionType::Preferred), Err(ElectionError::UnknownTopicOrPartition("No such topic as nope".into())));
        assert_eq!(elect(&image, &TopicDefaults::default(), T, PartitionId(4), ElectionType::Preferred), Err(ElectionError::UnknownTopicOrPartition("No such partition as t-4".into())));
    }

    #[test]
    fn the_controller_elects_unclean_only_where_the_topic_or_the_default_allows() {
        let offline = image(&[1], &[1, 2, 3], &[1], None, &[]);
        assert!(elect_unclean_leaderless(&offline, &TopicDefaults { unclean_leader_election: false, ..TopicDefaults::default() }, 10).is_empty(), "off by default");
        assert_eq!(elect_unclean_leaderless(&offline, &TopicDefaults { unclean_leader_election: true, ..TopicDefaults::default() }, 10).len(), 1);
        let allowed = image(&[1], &[1, 2, 3], &[1], None, &[("unclean.leader.election.enable", "true")]);
        assert_eq!(elect_unclean_leaderless(&allowed, &TopicDefaults { unclean_leader_election: false, ..TopicDefaults::default() }, 10).len(), 1);
        let forbidden = image(&[1], &[1, 2, 3], &[1], None, &[("unclean.leader.election.enable", "false")]);
        assert!(elect_unclean_leaderless(&forbidden, &TopicDefaults { unclean_leader_election: true, ..TopicDefaults::default() }, 10).is_empty(), "the topic's override wins");
    }

    #[test]
    fn balancing_moves_every_movable_partition_up_to_the_limit() {
        let image = image(&[], &[1, 2, 3], &[1, 2, 3], Some(3), &[]);
        assert_eq!(balance_leaders(&image, &TopicDefaults::default(), 0).len(), 0);
        let records = balance_leaders(&image, &TopicDefaults::default(), 10);
        assert_eq!(records.iter().map(leader_of).collect::<Vec<_>>(), vec![(Some(NodeId(1)), None)]);
    }
}
