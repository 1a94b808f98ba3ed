//! The active controller's write rule and the applier's replay, as pure functions: the one
//! copy that both [`MetadataStore`](super::store::MetadataStore) (driven by the quorum
//! driver's status, tokio and an applier thread) and the cluster simulation (driven by its own
//! `RaftCore`, seeded and single-threaded) run, so the simulation checks the rule production
//! follows rather than a twin of it.
//!
//! The rule (quorum mode):
//! - a change is computed only while this node is the quorum leader **and** has applied its
//!   whole log (applied offset ≥ log end), so the image it computes from holds every entry of
//!   earlier epochs and every change this leader proposed before ([`may_compute`]);
//! - its records are proposed as **one** entry, so a failover commits all of them or none;
//! - the change is answered once this node has applied past that entry; a new epoch or a lost
//!   leadership first answers NOT_CONTROLLER, since the entry may never commit
//!   ([`ProposedChange::poll`]).
//!
//! The replay: committed entries are replayed in log order onto a [`MetadataDelta`]; a
//! change's records take one offset, the quorum's own leader-change entries advance the
//! offset only, and an entry no code of ours can read (a newer version's) is skipped so that
//! the offsets stay right ([`replay_entry`]).
//!
//! [`WriteRule`] carries, in test builds only, the switches that break the rule on purpose, so
//! the simulation can show that it notices.

use super::delta::MetadataDelta;
use super::records::MetadataRecord;
use crate::raft::{Entry, EntryData};
use crate::types::{LeaderEpoch, NodeId, Offset};

/// What the rule reads of the quorum driver's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderView {
    /// This node leads the quorum and its metadata log has not failed.
    pub is_leader: bool,
    pub epoch: LeaderEpoch,
    /// The leader this node knows (itself when it leads).
    pub leader: Option<NodeId>,
    /// The end of this node's metadata log (written, not necessarily committed).
    pub log_end: Offset,
}

/// May a change be computed now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Yes: compute from the published image and propose in this epoch.
    Compute(LeaderEpoch),
    /// Not yet: the image lags this leader's log; wait for the applier.
    Wait,
    /// Never on this node: answer NOT_CONTROLLER (naming the leader it knows).
    NotController(Option<NodeId>),
}

/// Where a proposed change stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Committed and applied here: answer.
    Applied,
    /// Not yet applied.
    Wait,
    /// The epoch ended or leadership was lost first: answer NOT_CONTROLLER.
    NotController(Option<NodeId>),
}

/// The rule; `Default` is the production rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteRule {
    /// Test-only: compute as soon as this node leads, before its whole log is applied.
    #[cfg(test)]
    pub compute_before_applied: bool,
    /// Test-only: answer once proposed, not once committed and applied.
    #[cfg(test)]
    pub answer_before_commit: bool,
}

impl WriteRule {
    /// May a change be computed, given what the quorum says and the offset the published
    /// image reflects (`applied`: the next entry to apply)?
    pub fn may_compute(&self, view: &LeaderView, applied: Offset) -> Gate {
        if !view.is_leader {
            return Gate::NotController(view.leader);
        }
        #[cfg(test)]
        if self.compute_before_applied {
            return Gate::Compute(view.epoch);
        }
        if applied >= view.log_end { Gate::Compute(view.epoch) } else { Gate::Wait }
    }

    /// A change was proposed as one entry at `first` in `epoch` (the epoch [`Gate::Compute`]
    /// named).
    pub fn proposed(&self, first: Offset, epoch: LeaderEpoch) -> ProposedChange {
        let change = ProposedChange { end: Offset(first.0 + 1), epoch, answer_at_once: false };
        #[cfg(test)]
        let change = ProposedChange { answer_at_once: self.answer_before_commit, ..change };
        change
    }
}

/// A change proposed and not yet answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProposedChange {
    /// The offset after its entry: applied once the image reaches it.
    end: Offset,
    epoch: LeaderEpoch,
    /// Test-only planted bug (always false in production).
    answer_at_once: bool,
}

impl ProposedChange {
    pub fn poll(&self, view: &LeaderView, applied: Offset) -> Outcome {
        if applied >= self.end || self.answer_at_once {
            return Outcome::Applied;
        }
        if !view.is_leader || view.epoch != self.epoch {
            return Outcome::NotController(view.leader);
        }
        Outcome::Wait
    }
}

/// The production rule.
pub fn may_compute(view: &LeaderView, applied: Offset) -> Gate {
    WriteRule::default().may_compute(view, applied)
}

/// An entry's records could not be decoded.
#[derive(Debug)]
pub struct Unreadable(pub serde_json::Error);

/// Replays one committed entry onto `delta` and returns the bytes of records it carried. An
/// unreadable entry still takes its offset (and is reported), so later entries land right.
pub fn replay_entry(delta: &mut MetadataDelta, entry: &Entry) -> Result<u64, Unreadable> {
    match &entry.data {
        EntryData::LeaderChange { .. } => {
            delta.skip();
            Ok(0)
        }
        EntryData::Records(bytes) => match decode_entry(bytes) {
            Ok(records) => {
                delta.replay_change(&records);
                Ok(bytes.len() as u64)
            }
            Err(e) => {
                delta.skip();
                Err(Unreadable(e))
            }
        },
    }
}

/// A change as one entry of the metadata log: its records as a JSON array.
pub fn encode_change(records: &[MetadataRecord]) -> Result<bytes::Bytes, serde_json::Error> {
    serde_json::to_vec(records).map(bytes::Bytes::from)
}

/// The records of one entry: a JSON array (a change), or a single record.
pub fn decode_entry(bytes: &[u8]) -> Result<Vec<MetadataRecord>, serde_json::Error> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => serde_json::from_slice(bytes),
        _ => serde_json::from_slice::<MetadataRecord>(bytes).map(|r| vec![r]),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn view(is_leader: bool, epoch: i32, log_end: i64) -> LeaderView {
        LeaderView { is_leader, epoch: LeaderEpoch(epoch), leader: Some(NodeId(if is_leader { 1 } else { 2 })), log_end: Offset(log_end) }
    }

    #[test]
    fn computes_only_as_a_leader_that_applied_its_whole_log() {
        assert_eq!(may_compute(&view(false, 3, 10), Offset(10)), Gate::NotController(Some(NodeId(2))));
        assert_eq!(may_compute(&view(true, 3, 10), Offset(9)), Gate::Wait);
        assert_eq!(may_compute(&view(true, 3, 10), Offset(10)), Gate::Compute(LeaderEpoch(3)));
        let planted = WriteRule { compute_before_applied: true, ..Default::default() };
        assert_eq!(planted.may_compute(&view(true, 3, 10), Offset(0)), Gate::Compute(LeaderEpoch(3)));
    }

    #[test]
    fn answers_once_applied_past_its_entry_or_not_controller_after_the_epoch() {
        let p = WriteRule::default().proposed(Offset(10), LeaderEpoch(3));
        assert_eq!(p.poll(&view(true, 3, 11), Offset(10)), Outcome::Wait);
        assert_eq!(p.poll(&view(true, 3, 11), Offset(11)), Outcome::Applied);
        assert_eq!(p.poll(&view(true, 4, 11), Offset(10)), Outcome::NotController(Some(NodeId(1))));
        assert_eq!(p.poll(&view(false, 3, 11), Offset(10)), Outcome::NotController(Some(NodeId(2))));
        // Applied wins over a lost epoch: the entry committed before the leadership ended.
        assert_eq!(p.poll(&view(false, 4, 11), Offset(11)), Outcome::Applied);
        let planted = WriteRule { answer_before_commit: true, ..Default::default() }.proposed(Offset(10), LeaderEpoch(3));
        assert_eq!(planted.poll(&view(true, 3, 11), Offset(10)), Outcome::Applied);
    }

    #[test]
    fn replay_gives_every_entry_one_offset() {
        use std::sync::Arc;
        let mut delta = MetadataDelta::new(Arc::new(crate::metadata::MetadataImage::default()));
        let change = encode_change(&[MetadataRecord::Cluster { cluster_id: "c".into() }, MetadataRecord::ProducerIds { next: 5 }]).unwrap();
        let entries = [
            Entry { epoch: LeaderEpoch(1), data: EntryData::LeaderChange { leader: NodeId(1), voters: vec![NodeId(1)] } },
            Entry { epoch: LeaderEpoch(1), data: EntryData::Records(change.clone()) },
            Entry { epoch: LeaderEpoch(1), data: EntryData::Records(bytes::Bytes::from_static(b"{\"type\":\"FromTheFuture\"}")) },
        ];
        assert_eq!(replay_entry(&mut delta, &entries[0]).unwrap(), 0);
        assert_eq!(replay_entry(&mut delta, &entries[1]).unwrap(), change.len() as u64);
        assert!(replay_entry(&mut delta, &entries[2]).is_err());
        let image = delta.apply();
        assert_eq!((image.offset, image.cluster_id.as_str(), image.next_producer_id), (3, "c", 5));
    }
}
