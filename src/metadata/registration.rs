//! What the metadata log says about each partition and each broker: Kafka's
//! `PartitionRegistration` and `BrokerRegistration`.
//!
//! Invariants of a known partition registration: `leader`, when set, is one of `replicas`;
//! `isr` is a subset of `replicas`. A registration with no replicas is *unknown*: a partition
//! replayed from a record written before registrations existed, waiting for the store's
//! migration (see [`super::store`]).

use uuid::Uuid;

use super::records::{Endpoint, LeaderChange};
use crate::types::{BrokerEpoch, LeaderEpoch, NodeId, PartitionEpoch};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartitionRegistration {
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    /// Eligible leader replicas (KIP-966): out of the ISR, but safe to elect.
    pub elr: Vec<NodeId>,
    pub last_known_elr: Vec<NodeId>,
    /// Replicas a reassignment is adding (Kafka's `addingReplicas`): in `replicas`, not yet
    /// in the ISR, and not counted for `min.insync.replicas` until they join it.
    pub adding_replicas: Vec<NodeId>,
    /// Replicas a reassignment will remove once the target replicas are in sync (Kafka's
    /// `removingReplicas`): still in `replicas` meanwhile.
    pub removing_replicas: Vec<NodeId>,
    pub leader: Option<NodeId>,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: PartitionEpoch,
}

/// The fields a partition change sets; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionChange {
    pub isr: Option<Vec<NodeId>>,
    pub leader: Option<LeaderChange>,
    pub replicas: Option<Vec<NodeId>>,
    pub elr: Option<Vec<NodeId>>,
    pub last_known_elr: Option<Vec<NodeId>>,
    pub adding_replicas: Option<Vec<NodeId>>,
    pub removing_replicas: Option<Vec<NodeId>>,
}

impl PartitionRegistration {
    /// A partition whose replicas no record has named yet (a legacy topic before migration).
    pub fn unknown() -> Self {
        Self::default()
    }

    pub fn is_unknown(&self) -> bool {
        self.replicas.is_empty()
    }

    /// A partition with all of `replicas` in sync, led by the first (the preferred leader).
    pub fn new_online(replicas: Vec<NodeId>) -> Self {
        Self {
            leader: replicas.first().copied(),
            isr: replicas.clone(),
            replicas,
            ..Self::default()
        }
    }

    pub fn has_replica(&self, node: NodeId) -> bool {
        self.replicas.contains(&node)
    }

    /// Whether a reassignment is in progress (Kafka's `isReassignmentInProgress`).
    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The registration after `change`. As Kafka's `PartitionRegistration.merge`: every change
    /// bumps the partition epoch; one that names a leader (even the same one, which is how the
    /// controller forces a new leader epoch) bumps the leader epoch.
    pub fn merge(&self, change: &PartitionChange) -> Self {
        let (leader, leader_epoch) = match change.leader {
            Some(l) => (l.leader(), LeaderEpoch(self.leader_epoch.0.saturating_add(1))),
            None => (self.leader, self.leader_epoch),
        };
        Self {
            replicas: change.replicas.clone().unwrap_or_else(|| self.replicas.clone()),
            isr: change.isr.clone().unwrap_or_else(|| self.isr.clone()),
            elr: change.elr.clone().unwrap_or_else(|| self.elr.clone()),
            last_known_elr: change.last_known_elr.clone().unwrap_or_else(|| self.last_known_elr.clone()),
            adding_replicas: change.adding_replicas.clone().unwrap_or_else(|| self.adding_replicas.clone()),
            removing_replicas: change.removing_replicas.clone().unwrap_or_else(|| self.removing_replicas.clone()),
            leader,
            leader_epoch,
            partition_epoch: PartitionEpoch(self.partition_epoch.0.saturating_add(1)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRegistration {
    pub id: NodeId,
    /// Random per process start: tells a restarted broker from its previous incarnation.
    pub incarnation_id: Uuid,
    pub epoch: BrokerEpoch,
    pub endpoints: Vec<Endpoint>,
    pub rack: Option<String>,
    pub fenced: bool,
    pub in_controlled_shutdown: bool,
}

impl BrokerRegistration {
    /// The endpoint of listener `name`, if the broker registered one.
    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.name == name)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn merge_bumps_epochs_as_kafka_does() {
        let r = PartitionRegistration::new_online(vec![NodeId(1), NodeId(2)]);
        assert_eq!((r.leader, r.leader_epoch, r.partition_epoch), (Some(NodeId(1)), LeaderEpoch(0), PartitionEpoch(0)));
        let shrunk = r.merge(&PartitionChange { isr: Some(vec![NodeId(1)]), ..Default::default() });
        assert_eq!((shrunk.leader, shrunk.leader_epoch, shrunk.partition_epoch), (Some(NodeId(1)), LeaderEpoch(0), PartitionEpoch(1)));
        assert_eq!(shrunk.replicas, r.replicas);
        let moved = shrunk.merge(&PartitionChange { leader: Some(LeaderChange::Elected(NodeId(2))), isr: Some(vec![NodeId(2)]), ..Default::default() });
        assert_eq!((moved.leader, moved.leader_epoch, moved.partition_epoch), (Some(NodeId(2)), LeaderEpoch(1), PartitionEpoch(2)));
        let offline = moved.merge(&PartitionChange { leader: Some(LeaderChange::NoLeader), ..Default::default() });
        assert_eq!((offline.leader, offline.leader_epoch), (None, LeaderEpoch(2)));
    }
}
