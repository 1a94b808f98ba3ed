//! Fetch from the closest replica (KIP-392): which replica a consumer should read a partition
//! from, as Kafka's `RackAwareReplicaSelector` (`replica.selector.class`) and
//! `ReplicaManager.findPreferredReadReplica` decide it on the leader.
//!
//! A consumer names its rack (`client.rack`, Fetch v11+ `rack_id`). The candidates are the
//! leader and each in-sync follower that holds the fetch offset (log start ≤ offset ≤ log
//! end) and has an endpoint (a live broker). When the leader is in the consumer's rack, or no
//! candidate is, the leader serves the fetch; otherwise the most caught-up candidate of that
//! rack does (the largest log end, then the shortest time since it last caught up). The
//! leader then answers the partition with no records and `preferred_read_replica`; the
//! consumer fetches from that replica, which serves records below its high watermark.
//!
//! Pure: the broker gathers the candidates.

use crate::types::{NodeId, Offset};

/// A follower the leader may send a consumer to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadReplica {
    pub id: NodeId,
    /// `broker.rack` of its broker, `None` without one.
    pub rack: Option<String>,
    pub log_start_offset: Offset,
    pub log_end_offset: Offset,
    pub in_sync: bool,
    /// Its broker is registered, unfenced and has an endpoint.
    pub reachable: bool,
    /// Milliseconds since it last caught up with the leader's log end.
    pub lag_ms: u64,
}

/// The replica to read from other than the leader, or `None` for the leader itself.
pub fn preferred_read_replica(client_rack: &str, leader_rack: Option<&str>, fetch_offset: Offset, followers: &[ReadReplica]) -> Option<NodeId> {
    if client_rack.is_empty() || leader_rack == Some(client_rack) {
        return None;
    }
    followers
        .iter()
        .filter(|f| {
            f.reachable
                && f.in_sync
                && f.rack.as_deref() == Some(client_rack)
                && f.log_start_offset <= fetch_offset
                && fetch_offset <= f.log_end_offset
        })
        // The most caught-up: largest log end, then shortest time since caught up; ties by id.
        .max_by(|a, b| a.log_end_offset.cmp(&b.log_end_offset).then(b.lag_ms.cmp(&a.lag_ms)).then(b.id.cmp(&a.id)))
        .map(|f| f.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: i32, rack: &str, end: i64, lag_ms: u64) -> ReadReplica {
        ReadReplica {
            id: NodeId(id),
            rack: (!rack.is_empty()).then(|| rack.to_string()),
            log_start_offset: Offset(0),
            log_end_offset: Offset(end),
            in_sync: true,
            reachable: true,
            lag_ms,
        }
    }

    #[test]
    fn the_leader_serves_its_rack_clients_without_a_rack_and_racks_without_a_replica() {
        let followers = [r(2, "b", 10, 0), r(3, "c", 10, 0)];
        assert_eq!(preferred_read_replica("a", Some("a"), Offset(5), &followers), None);
        assert_eq!(preferred_read_replica("", Some("a"), Offset(5), &followers), None);
        assert_eq!(preferred_read_replica("d", Some("a"), Offset(5), &followers), None);
        assert_eq!(preferred_read_replica("b", Some("a"), Offset(5), &followers), Some(NodeId(2)));
        assert_eq!(preferred_read_replica("b", None, Offset(5), &followers), Some(NodeId(2)));
    }

    #[test]
    fn only_reachable_in_sync_followers_that_hold_the_offset_qualify() {
        let mut out_of_sync = r(2, "b", 10, 0);
        out_of_sync.in_sync = false;
        let mut fenced = r(2, "b", 10, 0);
        fenced.reachable = false;
        let mut truncated = r(2, "b", 10, 0);
        truncated.log_start_offset = Offset(6);
        for f in [out_of_sync, fenced, truncated, r(2, "b", 4, 0)] {
            assert_eq!(preferred_read_replica("b", Some("a"), Offset(5), std::slice::from_ref(&f)), None, "{f:?}");
        }
        assert_eq!(preferred_read_replica("b", Some("a"), Offset(10), &[r(2, "b", 10, 0)]), Some(NodeId(2)), "the log end itself");
    }

    #[test]
    fn the_most_caught_up_of_the_rack_is_chosen() {
        let followers = [r(2, "b", 9, 0), r(3, "b", 10, 50), r(4, "b", 10, 20)];
        assert_eq!(preferred_read_replica("b", Some("a"), Offset(5), &followers), Some(NodeId(4)));
    }
}
