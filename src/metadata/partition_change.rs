//! How the active controller changes one partition's registration, as Kafka's
//! `PartitionChangeBuilder` does: from the registration and a [`Target`] (the ISR, replicas
//! and reassignment lists it should have) to the one PartitionChange record that gets there,
//! with the leader election the target needs and the eligible leader replicas of KIP-966.
//! Every partition change of the controller goes through [`build`]: fencing, controlled
//! shutdown and a new incarnation's registration ([`super::cluster_control`]), AlterPartition,
//! elections ([`super::election`]) and reassignments ([`super::reassignment`]). Pure.
//!
//! The steps, in Kafka's order:
//! 1. A reassignment completes when the target ISR holds every target replica.
//! 2. **ELR** (only while `eligible.leader.replicas.version` >= 1): a target ISR at least the
//!    topic's effective `min.insync.replicas` (its value, capped by the replication factor)
//!    empties the ELR. A smaller one makes the ELR the current ELR and the current ISR, less
//!    the target ISR and less a replica whose broker came back from an unclean shutdown: a
//!    replica leaves the ISR for the ELR once the ISR is below min ISR. Every record the
//!    high watermark covered was on min ISR replicas, so each ELR member holds every
//!    committed record as long as it did not lose its unflushed tail in a crash.
//! 3. **Election**: the current leader stays if it is valid: in the target ISR, or in the
//!    ELR when the target ISR is empty, and acceptable (registered, unfenced, not shutting
//!    down, not the broker being removed). Else the first valid replica (a preferred
//!    election tries the first replica first). Else, with the ISR and the ELR empty, the
//!    last known leader if it is acceptable (KIP-966's balanced recovery: it may have lost
//!    a tail, so the ISR becomes it alone). Else, in an unclean election, the first
//!    acceptable replica, which becomes the ISR alone. A leader taken from the ELR leaves it
//!    and becomes the ISR.
//! 4. An unclean election clears the ELR; with ELR off it is always empty.
//! 5. The ISR is written when it changed; an empty ISR only with ELR on (without it, the
//!    last member stays in the ISR of a partition that loses its leader).
//! 6. `last_known_elr` holds the leader a partition had when it lost it, and empties once it
//!    has a leader again (Kafka 4.x keeps only the last leader there).
//! 7. A change that removes a replica names the leader (even the same one) so that the
//!    leader epoch is bumped and the removed replica's fetches are fenced.

use super::image::{MetadataImage, TopicImage};
use super::reassignment::ReassignmentReplicas;
use super::records::{LeaderChange, MetadataRecord};
use super::registration::{PartitionChange, PartitionRegistration};
use crate::types::{NodeId, PartitionId};

/// Kafka's election types of `PartitionChangeBuilder`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Election {
    /// The first replica if it may lead, else as [`Election::Online`].
    Preferred,
    /// Keep the partition online with a clean leader (from the ISR, or the ELR).
    Online,
    /// As online, then any replica that may lead, records it lacks lost.
    Unclean,
}

/// The broker defaults of the topic configs the rules read, from the controller's own static
/// configuration as in Kafka (its `getTopicEffectiveMinIsr` and
/// `uncleanLeaderElectionEnabledForTopic` resolve a topic's config over the controller's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicDefaults {
    /// `min.insync.replicas` of topics without an override.
    pub min_insync_replicas: i32,
    /// `unclean.leader.election.enable` of topics without an override.
    pub unclean_leader_election: bool,
}

impl Default for TopicDefaults {
    /// Kafka's defaults.
    fn default() -> Self {
        Self { min_insync_replicas: 1, unclean_leader_election: false }
    }
}

impl TopicDefaults {
    pub fn from_config(config: &crate::config::BrokerConfig) -> Self {
        let s = config.settings();
        Self { min_insync_replicas: s.log.defaults.min_insync_replicas, unclean_leader_election: s.elections.unclean_default }
    }

    /// The election a change that keeps `topic` online runs: unclean where the topic (or the
    /// default) allows one, as Kafka's controller does when it fences a broker or alters an ISR.
    pub fn online_election(&self, topic: &TopicImage) -> Election {
        if super::election::unclean_allowed(topic, self.unclean_leader_election) { Election::Unclean } else { Election::Online }
    }
}

/// What a change aims at (the targets of Kafka's builder); [`Target::of`] the registration
/// changes nothing by itself but may still elect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    pub adding: Vec<NodeId>,
    pub removing: Vec<NodeId>,
}

impl Target {
    pub fn of(r: &PartitionRegistration) -> Self {
        Self { replicas: r.replicas.clone(), isr: r.isr.clone(), adding: r.adding_replicas.clone(), removing: r.removing_replicas.clone() }
    }
}

/// The settings of one partition's change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub election: Election,
    pub elr_enabled: bool,
    /// The effective `min.insync.replicas`: the topic's, capped by its replication factor.
    pub min_isr: usize,
    /// A broker that came back from an unclean shutdown: its replica leaves the ELR.
    pub unclean_shutdown: Option<NodeId>,
}

impl Rules {
    /// The rules for a partition of `topic` in `image`.
    pub fn for_topic(image: &MetadataImage, topic: &TopicImage, defaults: &TopicDefaults, election: Election) -> Self {
        Self {
            election,
            elr_enabled: super::features::elr_enabled(image),
            min_isr: effective_min_isr(image, topic, defaults),
            unclean_shutdown: None,
        }
    }
}

/// Kafka's `getTopicEffectiveMinIsr`: the topic's `min.insync.replicas` (its override, else
/// the cluster-level dynamic value, else the controller's default), at most the replication
/// factor of its first partition, at least 1.
pub fn effective_min_isr(image: &MetadataImage, topic: &TopicImage, defaults: &TopicDefaults) -> usize {
    const KEY: &str = "min.insync.replicas";
    let parse = |v: &String| v.trim().parse::<i32>().ok();
    let configured = topic
        .configs
        .get(KEY)
        .and_then(parse)
        .or_else(|| image.broker_configs.get("").and_then(|c| c.get(KEY)).and_then(parse))
        .unwrap_or(defaults.min_insync_replicas);
    let rf = topic.partitions.values().next().map_or(usize::MAX, |r| r.replicas.len());
    usize::try_from(configured.max(1)).unwrap_or(1).min(rf.max(1))
}

/// Whether `id` may lead: registered, unfenced, not shutting down (Kafka's `isActive`).
pub fn can_lead(image: &MetadataImage, id: NodeId) -> bool {
    image.brokers.get(&id).is_some_and(|b| !b.fenced && !b.in_controlled_shutdown)
}

/// The change that takes `current` to `target` under `rules`, `acceptable` saying which
/// replicas may lead; `None` when nothing would change. See the module doc for the steps.
pub fn build(current: &PartitionRegistration, target: Target, rules: &Rules, acceptable: impl Fn(NodeId) -> bool) -> Option<PartitionChange> {
    build_change(current, target, rules, acceptable).map(|(change, _)| change)
}

/// [`build`], and whether the change is an unclean election.
fn build_change(current: &PartitionRegistration, target: Target, rules: &Rules, acceptable: impl Fn(NodeId) -> bool) -> Option<(PartitionChange, bool)> {
    let mut target = complete_reassignment(target);
    let mut elr = target_elr(current, &target, rules);
    let mut change = PartitionChange::default();
    let (leader, unclean) = elect(current, &target, &elr, rules, &acceptable);
    if leader != current.leader {
        if let Some(l) = leader
            && elr.contains(&l)
        {
            target.isr = vec![l];
            elr.retain(|r| *r != l);
        }
        if let Some(l) = leader
            && unclean
        {
            change.isr = Some(vec![l]);
        }
        change.leader = Some(leader.map_or(LeaderChange::NoLeader, LeaderChange::Elected));
    }
    if change.leader.is_none() && !current.replicas.iter().all(|r| target.replicas.contains(r)) {
        change.leader = Some(current.leader.map_or(LeaderChange::NoLeader, LeaderChange::Elected));
    }
    if change.isr.is_some() || !rules.elr_enabled {
        elr.clear();
    }
    if elr != current.elr {
        change.elr = Some(elr);
    }
    if change.isr.is_none() && (!target.isr.is_empty() || rules.elr_enabled) && target.isr != current.isr {
        change.isr = Some(target.isr);
    }
    if rules.elr_enabled {
        change.last_known_elr = last_known_leader(current, change.leader);
    }
    if !target.replicas.is_empty() && target.replicas != current.replicas {
        change.replicas = Some(target.replicas);
    }
    if target.adding != current.adding_replicas {
        change.adding_replicas = Some(target.adding);
    }
    if target.removing != current.removing_replicas {
        change.removing_replicas = Some(target.removing);
    }
    let unclean = unclean && leader != current.leader;
    (change != PartitionChange::default()).then_some((change, unclean))
}

/// Step 1: the final replicas and ISR when the target ISR completes a reassignment.
fn complete_reassignment(target: Target) -> Target {
    let plan = ReassignmentReplicas { replicas: target.replicas.clone(), adding: target.adding.clone(), removing: target.removing.clone() };
    match plan.completed(&target.isr) {
        Some((replicas, isr)) => Target { replicas, isr, adding: vec![], removing: vec![] },
        None => target,
    }
}

/// Step 2: the ELR before the election, in id order (Kafka's comes out of a hash set of
/// small integers, which is id order too).
fn target_elr(current: &PartitionRegistration, target: &Target, rules: &Rules) -> Vec<NodeId> {
    if !rules.elr_enabled {
        return current.elr.clone();
    }
    if target.isr.len() >= rules.min_isr {
        return vec![];
    }
    let candidates: std::collections::BTreeSet<NodeId> = current.elr.iter().chain(&current.isr).copied().collect();
    candidates.into_iter().filter(|r| !target.isr.contains(r) && Some(*r) != rules.unclean_shutdown).collect()
}

/// Step 3: the leader and whether its election is unclean.
fn elect(current: &PartitionRegistration, target: &Target, elr: &[NodeId], rules: &Rules, acceptable: &impl Fn(NodeId) -> bool) -> (Option<NodeId>, bool) {
    let valid = |r: NodeId| (target.isr.contains(&r) || (target.isr.is_empty() && elr.contains(&r))) && acceptable(r);
    if rules.election == Election::Preferred
        && let Some(&first) = target.replicas.first()
        && valid(first)
    {
        return (Some(first), false);
    }
    if let Some(l) = current.leader
        && valid(l)
    {
        return (Some(l), false);
    }
    if let Some(r) = target.replicas.iter().copied().find(|r| valid(*r)) {
        return (Some(r), false);
    }
    if rules.elr_enabled
        && elr.is_empty()
        && target.isr.is_empty()
        && let [last] = current.last_known_elr[..]
        && acceptable(last)
    {
        return (Some(last), true);
    }
    if rules.election == Election::Unclean
        && let Some(r) = target.replicas.iter().copied().find(|r| acceptable(*r))
    {
        return (Some(r), true);
    }
    (None, false)
}

/// Step 6 (with ELR on): the leader a partition loses is remembered, and forgotten once it
/// has one again.
fn last_known_leader(current: &PartitionRegistration, leader: Option<LeaderChange>) -> Option<Vec<NodeId>> {
    match (leader, current.leader) {
        (Some(LeaderChange::NoLeader), Some(lost)) if current.last_known_elr.is_empty() => Some(vec![lost]),
        (Some(LeaderChange::Elected(_)), _) if !current.last_known_elr.is_empty() => Some(vec![]),
        _ => None,
    }
}

/// The record of `change` to partition `partition` of topic `topic_id`.
pub fn record(topic_id: uuid::Uuid, partition: PartitionId, change: PartitionChange) -> MetadataRecord {
    MetadataRecord::PartitionChange {
        topic_id,
        partition,
        isr: change.isr,
        leader: change.leader,
        replicas: change.replicas,
        elr: change.elr,
        last_known_elr: change.last_known_elr,
        adding_replicas: change.adding_replicas,
        removing_replicas: change.removing_replicas,
    }
}

/// [`build`] for partition `index` of `topic` with the rules of its topic, as a record.
#[allow(clippy::too_many_arguments)]
pub fn change_record(
    image: &MetadataImage,
    defaults: &TopicDefaults,
    topic: &TopicImage,
    index: PartitionId,
    target: Target,
    election: Election,
    unclean_shutdown: Option<NodeId>,
    acceptable: impl Fn(NodeId) -> bool,
) -> Option<MetadataRecord> {
    let current = topic.partitions.get(&index)?;
    let rules = Rules { unclean_shutdown, ..Rules::for_topic(image, topic, defaults, election) };
    let (change, unclean) = build_change(current, target, &rules, acceptable)?;
    if unclean && let Some(LeaderChange::Elected(leader)) = change.leader {
        tracing::warn!(topic = topic.name, partition = index.0, leader = leader.0, "unclean leader election: records the new leader never had may be lost");
    }
    Some(record(topic.id, index, change))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn n(ids: &[i32]) -> Vec<NodeId> {
        ids.iter().map(|i| NodeId(*i)).collect()
    }

    /// Replicas 1, 2, 3 with `isr`, `elr`, `last_known_elr` and `leader`.
    fn reg(isr: &[i32], elr: &[i32], lke: &[i32], leader: Option<i32>) -> PartitionRegistration {
        PartitionRegistration {
            replicas: n(&[1, 2, 3]),
            isr: n(isr),
            elr: n(elr),
            last_known_elr: n(lke),
            leader: leader.map(NodeId),
            ..PartitionRegistration::default()
        }
    }

    /// ELR on, `min.insync.replicas` 2, an online election.
    fn rules() -> Rules {
        Rules { election: Election::Online, elr_enabled: true, min_isr: 2, unclean_shutdown: None }
    }

    /// The change that removes `gone` from the ISR, `gone` unable to lead, applied.
    fn remove(r: &PartitionRegistration, gone: i32, rules: &Rules) -> PartitionRegistration {
        let target = Target { isr: r.isr.iter().copied().filter(|x| x.0 != gone).collect(), ..Target::of(r) };
        let change = build(r, target, rules, |id| id.0 != gone).expect("a change");
        r.merge(&change)
    }

    fn state(r: &PartitionRegistration) -> (Vec<NodeId>, Vec<NodeId>, Vec<NodeId>, Option<NodeId>) {
        (r.isr.clone(), r.elr.clone(), r.last_known_elr.clone(), r.leader)
    }

    #[test]
    fn a_replica_leaves_the_isr_for_the_elr_only_below_min_isr() {
        let full = reg(&[1, 2, 3], &[], &[], Some(1));
        let at_min = remove(&full, 3, &rules());
        assert_eq!(state(&at_min), (n(&[1, 2]), n(&[]), n(&[]), Some(NodeId(1))), "ISR at min ISR: no ELR");
        let below = remove(&at_min, 2, &rules());
        assert_eq!(state(&below), (n(&[1]), n(&[2]), n(&[]), Some(NodeId(1))), "2 holds what was committed");
        assert_eq!(below.leader_epoch, full.leader_epoch, "an ISR shrink keeps the leader epoch");
    }

    #[test]
    fn the_elr_empties_once_the_isr_is_back_to_min_isr() {
        let below = reg(&[1], &[2], &[], Some(1));
        let target = Target { isr: n(&[1, 3]), ..Target::of(&below) };
        let back = below.merge(&build(&below, target, &rules(), |_| true).unwrap());
        assert_eq!(state(&back), (n(&[1, 3]), n(&[]), n(&[]), Some(NodeId(1))));
    }

    #[test]
    fn the_last_leader_is_remembered_when_the_isr_empties() {
        // 2 is fenced already (it left the ISR for the ELR); now 1 is.
        let last = reg(&[1], &[2], &[], Some(1));
        let target = Target { isr: vec![], ..Target::of(&last) };
        let offline = last.merge(&build(&last, target, &rules(), |_| false).unwrap());
        assert_eq!(state(&offline), (n(&[]), n(&[1, 2]), n(&[1]), None), "an empty ISR, both in the ELR");
        assert_eq!(offline.leader_epoch.0, last.leader_epoch.0 + 1);
    }

    #[test]
    fn an_empty_isr_elects_from_the_elr_cleanly() {
        let offline = reg(&[], &[1, 2], &[1], None);
        // Broker 1 is still away; 2 came back.
        let change = build(&offline, Target::of(&offline), &rules(), |id| id == NodeId(2)).unwrap();
        let led = offline.merge(&change);
        assert_eq!(state(&led), (n(&[2]), n(&[1]), n(&[]), Some(NodeId(2))), "2 leads and is the ISR; 1 stays eligible");
        // ELR turned off: the next change drops what the ELR held (as Kafka's builder, the
        // election still reads it).
        let off = Rules { elr_enabled: false, ..rules() };
        let change = build(&offline, Target::of(&offline), &off, |_| false).unwrap();
        assert_eq!((change.leader, change.elr), (None, Some(vec![])));
    }

    #[test]
    fn the_elr_comes_before_an_unclean_election() {
        let offline = reg(&[], &[2], &[1], None);
        let unclean = Rules { election: Election::Unclean, ..rules() };
        let led = offline.merge(&build(&offline, Target::of(&offline), &unclean, |id| id != NodeId(1)).unwrap());
        assert_eq!(state(&led), (n(&[2]), n(&[]), n(&[]), Some(NodeId(2))), "2 from the ELR, not 1's unclean choice");
        // No ELR member can lead: the unclean election takes the first acceptable replica.
        let led = offline.merge(&build(&offline, Target::of(&offline), &unclean, |id| id == NodeId(3)).unwrap());
        assert_eq!(state(&led), (n(&[3]), n(&[]), n(&[]), Some(NodeId(3))), "the unclean leader is the ISR; the ELR is cleared");
        // An online election waits instead.
        assert_eq!(build(&offline, Target::of(&offline), &rules(), |id| id == NodeId(3)), None);
    }

    #[test]
    fn an_unclean_shutdown_leaves_the_elr_but_keeps_the_last_known_leader() {
        let offline = reg(&[], &[1, 2], &[1], None);
        let rules_2 = Rules { unclean_shutdown: Some(NodeId(2)), ..rules() };
        let r = offline.merge(&build(&offline, Target::of(&offline), &rules_2, |_| false).unwrap());
        assert_eq!(state(&r), (n(&[]), n(&[1]), n(&[1]), None));
        // In the ISR too: it leaves both, and may not lead.
        let below = reg(&[1], &[2], &[], Some(1));
        let rules_1 = Rules { unclean_shutdown: Some(NodeId(1)), ..rules() };
        let target = Target { isr: vec![], ..Target::of(&below) };
        let r = below.merge(&build(&below, target, &rules_1, |_| false).unwrap());
        assert_eq!(state(&r), (n(&[]), n(&[2]), n(&[1]), None));
    }

    #[test]
    fn with_isr_and_elr_empty_the_last_known_leader_may_lead_again() {
        let lost = reg(&[], &[], &[1], None);
        assert_eq!(build(&lost, Target::of(&lost), &rules(), |id| id == NodeId(2)), None, "not while it cannot lead");
        let r = lost.merge(&build(&lost, Target::of(&lost), &rules(), |_| true).unwrap());
        assert_eq!(state(&r), (n(&[1]), n(&[]), n(&[]), Some(NodeId(1))), "balanced recovery: it alone is the ISR");
    }

    #[test]
    fn without_elr_the_last_isr_member_stays_and_nothing_is_remembered() {
        let off = Rules { elr_enabled: false, ..rules() };
        let last = reg(&[1], &[], &[], Some(1));
        let offline = remove(&last, 1, &off);
        assert_eq!(state(&offline), (n(&[1]), n(&[]), n(&[]), None));
        let below = remove(&reg(&[1, 2], &[], &[], Some(1)), 2, &off);
        assert_eq!(state(&below), (n(&[1]), n(&[]), n(&[]), Some(NodeId(1))));
    }

    #[test]
    fn a_preferred_election_prefers_the_first_replica_and_uses_the_elr() {
        let r = reg(&[1, 2, 3], &[], &[], Some(2));
        let p = Rules { election: Election::Preferred, ..rules() };
        assert_eq!(build(&r, Target::of(&r), &p, |_| true).unwrap().leader, Some(LeaderChange::Elected(NodeId(1))));
        let offline = reg(&[], &[3], &[3], None);
        let led = offline.merge(&build(&offline, Target::of(&offline), &p, |_| true).unwrap());
        assert_eq!(state(&led), (n(&[3]), n(&[]), n(&[]), Some(NodeId(3))), "1 is not eligible: 3 from the ELR");
    }

    #[test]
    fn a_change_to_nothing_is_none() {
        let r = reg(&[1, 2, 3], &[], &[], Some(1));
        assert_eq!(build(&r, Target::of(&r), &rules(), |_| true), None);
        let below = reg(&[1], &[2], &[], Some(1));
        assert_eq!(build(&below, Target::of(&below), &rules(), |_| true), None, "an ELR that stays is no change");
    }

    #[test]
    fn the_effective_min_isr_is_the_topics_capped_by_its_replication_factor() {
        let mut image = MetadataImage::default();
        let id = uuid::Uuid::from_u128(1);
        image.replay(&MetadataRecord::Topic { name: "t".into(), id, partitions: 1, replication_factor: 2, configs: Default::default() });
        image.replay(&MetadataRecord::Partition {
            topic_id: id,
            partition: PartitionId(0),
            replicas: n(&[1, 2]),
            isr: n(&[1, 2]),
            elr: vec![],
            last_known_elr: vec![],
            adding_replicas: vec![],
            removing_replicas: vec![],
            leader: Some(NodeId(1)),
            leader_epoch: crate::types::LeaderEpoch(0),
            partition_epoch: crate::types::PartitionEpoch(0),
        });
        let defaults = TopicDefaults { min_insync_replicas: 3, ..TopicDefaults::default() };
        let t = image.topic("t").unwrap().clone();
        assert_eq!(effective_min_isr(&image, &t, &defaults), 2, "capped by the replication factor");
        assert_eq!(effective_min_isr(&image, &t, &TopicDefaults::default()), 1);
        image.replay(&MetadataRecord::BrokerConfig { broker: String::new(), key: "min.insync.replicas".into(), value: Some("2".into()) });
        assert_eq!(effective_min_isr(&image, &t, &TopicDefaults::default()), 2, "the cluster-level value over the default");
        image.replay(&MetadataRecord::TopicConfig { id, key: "min.insync.replicas".into(), value: Some("1".into()) });
        let t = image.topic("t").unwrap().clone();
        assert_eq!(effective_min_isr(&image, &t, &defaults), 1, "the topic's override first");
    }
}
