//! Replica placement for new partitions: which brokers hold each partition's replicas, the
//! first being the preferred leader. Pure: brokers in, assignment out.
//!
//! As Kafka's placers: leaders go round-robin over the unfenced brokers from `start`, so a
//! topic's leadership spreads evenly; brokers are ordered alternating between racks, and a
//! partition's followers take brokers of racks it does not use yet before doubling up on one.
//! Fenced brokers are never leaders and are used only when too few brokers are unfenced.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use super::registration::BrokerRegistration;
use crate::types::NodeId;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlacementError {
    #[error(
        "Unable to replicate the partition {replication_factor} time(s): The target replication factor of {replication_factor} cannot be reached because only {registered} broker(s) are registered."
    )]
    TooFewBrokers { replication_factor: i16, registered: usize },
    #[error("All brokers are currently fenced.")]
    AllFenced,
    #[error("Replication factor must be larger than 0.")]
    NonPositive,
}

/// Replicas for `partitions` new partitions, `replication_factor` each; the `start`th
/// unfenced broker (in rack-alternating order) leads the first one.
pub fn place_replicas(
    brokers: &[BrokerRegistration],
    partitions: usize,
    replication_factor: i16,
    start: usize,
) -> Result<Vec<Vec<NodeId>>, PlacementError> {
    if replication_factor < 1 {
        return Err(PlacementError::NonPositive);
    }
    let rf = replication_factor as usize;
    if rf > brokers.len() {
        return Err(PlacementError::TooFewBrokers { replication_factor, registered: brokers.len() });
    }
    let unfenced = rack_alternating(brokers.iter().filter(|b| !b.fenced));
    if unfenced.is_empty() {
        return Err(PlacementError::AllFenced);
    }
    let fenced = rack_alternating(brokers.iter().filter(|b| b.fenced));
    let n = unfenced.len();
    let mut out = Vec::with_capacity(partitions);
    for p in 0..partitions {
        let leader = (start + p) % n;
        // Varying the followers' offset with each lap keeps the same pairs from always
        // following each other.
        let lap = (start + p) / n;
        let mut replicas = vec![unfenced[leader]];
        let mut racks: BTreeSet<Option<&str>> = BTreeSet::from([unfenced[leader].rack.as_deref()]);
        let followers: Vec<&BrokerRegistration> = (0..n - 1).map(|k| unfenced[(leader + 1 + (lap + k) % (n - 1).max(1)) % n]).collect();
        while replicas.len() < rf.min(n) {
            let fresh_rack = followers.iter().find(|b| !replicas.iter().any(|r| r.id == b.id) && !racks.contains(&b.rack.as_deref()));
            let any = followers.iter().find(|b| !replicas.iter().any(|r| r.id == b.id));
            let Some(&b) = fresh_rack.or(any) else { break };
            racks.insert(b.rack.as_deref());
            replicas.push(b);
        }
        replicas.extend(fenced.iter().take(rf - replicas.len()));
        debug_assert_eq!(replicas.len(), rf);
        out.push(replicas.into_iter().map(|b| b.id).collect());
    }
    Ok(out)
}

/// Brokers ordered by id within each rack, then interleaved rack by rack (rack a's first,
/// rack b's first, ..., rack a's second, ...), so that neighbours sit in different racks.
fn rack_alternating<'a>(brokers: impl Iterator<Item = &'a BrokerRegistration>) -> Vec<&'a BrokerRegistration> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<&BrokerRegistration>> = BTreeMap::new();
    for b in brokers {
        by_rack.entry(b.rack.as_deref()).or_default().push(b);
    }
    for list in by_rack.values_mut() {
        list.sort_by_key(|b| b.id);
    }
    let longest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    (0..longest).flat_map(|i| by_rack.values().filter_map(move |l| l.get(i).copied())).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::types::BrokerEpoch;

    fn broker(id: i32, rack: Option<&str>, fenced: bool) -> BrokerRegistration {
        BrokerRegistration {
            id: NodeId(id),
            incarnation_id: uuid::Uuid::nil(),
            epoch: BrokerEpoch(0),
            endpoints: vec![],
            rack: rack.map(str::to_string),
            fenced,
            in_controlled_shutdown: false,
        }
    }

    fn ids(v: &[i32]) -> Vec<NodeId> {
        v.iter().map(|&i| NodeId(i)).collect()
    }

    #[test]
    fn one_node_places_everything_locally() {
        assert_eq!(place_replicas(&[broker(1, None, false)], 3, 1, 0).unwrap(), vec![ids(&[1]); 3]);
    }

    #[test]
    fn leaders_spread_evenly_and_replicas_are_distinct() {
        let brokers: Vec<_> = (1..=3).map(|i| broker(i, None, false)).collect();
        let placed = place_replicas(&brokers, 12, 3, 0).unwrap();
        let mut leads = BTreeMap::new();
        for r in &placed {
            assert_eq!(r.iter().collect::<BTreeSet<_>>().len(), 3, "{r:?}");
            *leads.entry(r[0]).or_insert(0) += 1;
        }
        assert_eq!(leads.into_values().collect::<Vec<_>>(), [4, 4, 4]);
        // A different start moves the leaders along.
        assert_eq!(place_replicas(&brokers, 1, 1, 1).unwrap(), vec![ids(&[2])]);
    }

    #[test]
    fn replicas_span_racks() {
        let brokers: Vec<_> = [(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")].iter().map(|&(i, r)| broker(i, Some(r), false)).collect();
        let rack_of = |id: NodeId| brokers.iter().find(|b| b.id == id).unwrap().rack.clone();
        let placed = place_replicas(&brokers, 12, 3, 0).unwrap();
        let mut leads = BTreeMap::new();
        for r in &placed {
            let racks: BTreeSet<_> = r.iter().map(|&id| rack_of(id)).collect();
            assert_eq!(racks.len(), 3, "{r:?}");
            *leads.entry(r[0]).or_insert(0) += 1;
        }
        assert_eq!(leads.into_values().collect::<Vec<_>>(), [2; 6]);
        // Two replicas over two racks never share one.
        for r in place_replicas(&brokers[..4], 8, 2, 3).unwrap() {
            assert_ne!(rack_of(r[0]), rack_of(r[1]), "{r:?}");
        }
    }

    #[test]
    fn fenced_brokers_never_lead_and_only_fill_in() {
        let brokers = [broker(1, None, true), broker(2, None, false), broker(3, None, false)];
        for r in place_replicas(&brokers, 6, 2, 0).unwrap() {
            assert!(!r.contains(&NodeId(1)), "{r:?}");
        }
        for r in place_replicas(&brokers, 6, 3, 0).unwrap() {
            assert_eq!(r[2], NodeId(1), "{r:?}");
        }
        assert_eq!(place_replicas(&[broker(1, None, true)], 1, 1, 0), Err(PlacementError::AllFenced));
    }

    #[test]
    fn too_few_brokers_is_kafkas_message() {
        let err = place_replicas(&[broker(1, None, false)], 1, 3, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Unable to replicate the partition 3 time(s): The target replication factor of 3 cannot be reached because only 1 broker(s) are registered."
        );
    }
}
