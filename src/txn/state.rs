//! The state machine of one transactional id (Kafka's `TransactionMetadata`), transactions
//! version 1: the producer epoch changes only on InitProducerId and when the coordinator
//! fences (a timeout, or a new producer while a transaction is open).
//!
//! ```text
//!  Empty / CompleteCommit / CompleteAbort ──AddPartitions/AddOffsets──▶ Ongoing ◀─┐ (more)
//!  Ongoing ──EndTxn(commit)──▶ PrepareCommit ──markers written──▶ CompleteCommit   │
//!  Ongoing ──EndTxn(abort), timeout, fencing──▶ PrepareAbort ──markers──▶ CompleteAbort
//!  Empty / Complete* ──InitProducerId──▶ Empty (epoch + 1, or a new producer id)
//! ```
//!
//! Every method here is pure: it checks a request against the current metadata and returns
//! the metadata to write, or the Kafka error to answer. The coordinator writes the returned
//! value to `__transaction_state` and only then makes it current, so memory never runs ahead
//! of the log. `Dead` and `PrepareEpochFence` exist for the record format's sake: fencing goes
//! straight to `PrepareAbort` with the bumped epoch, as Kafka ends up writing.

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;

use crate::types::TopicPartition;

/// Kafka's `TransactionState`, with its ids (the `TransactionStatus` of the log value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    pub fn from_id(id: i8) -> Option<TxnState> {
        Some(match id {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            6 => TxnState::Dead,
            7 => TxnState::PrepareEpochFence,
            _ => return None,
        })
    }

    /// The name DescribeTransactions and ListTransactions use.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<TxnState> {
        (0..=7).filter_map(TxnState::from_id).find(|s| s.name() == name)
    }

    /// A decision is made and its markers are being written.
    pub fn is_preparing(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }

    /// No transaction open: InitProducerId may bump the epoch, the id may expire.
    fn is_idle(self) -> bool {
        matches!(self, TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort)
    }
}

/// Kafka's `RecordBatch.NO_PRODUCER_EPOCH` and `NO_PRODUCER_ID`.
pub const NO_EPOCH: i16 = -1;
pub const NO_PRODUCER_ID: i64 = -1;

/// Epochs from here on are kept for fencing: a producer at `i16::MAX - 1` gets a new id.
pub fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// What the coordinator knows about one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    /// The id before the last rotation (KIP-360 retries of an exhausted epoch).
    pub previous_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump, so a retried KIP-360 bump is recognised; not stored
    /// in the log (as in Kafka), so it is lost by a coordinator restart.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<TopicPartition>,
    pub start_ms: i64,
    pub last_update_ms: i64,
    /// A fencing write failed: the next fence reuses its epoch instead of bumping again.
    pub has_failed_epoch_fence: bool,
}

/// A producer's claim in InitProducerId (KIP-360): the id and epoch it last had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdAndEpoch {
    pub producer_id: i64,
    pub epoch: i16,
}

/// What InitProducerId has to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitAction {
    /// Write this (state Empty) and answer with its id and epoch.
    Write(TxnMetadata),
    /// The epoch is used up: the caller allocates a producer id and calls
    /// [`TxnMetadata::rotate_producer_id`].
    RotateProducerId,
    /// A transaction is open: write this fencing abort, complete it, answer
    /// CONCURRENT_TRANSACTIONS so the producer retries.
    FenceAndAbort(TxnMetadata),
}

impl TxnMetadata {
    /// A transactional id seen for the first time: epoch -1 until its first InitProducerId
    /// is written.
    pub fn new(transactional_id: &str, producer_id: i64, timeout_ms: i32, now_ms: i64) -> Self {
        TxnMetadata {
            transactional_id: transactional_id.to_string(),
            producer_id,
            previous_producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_EPOCH,
            last_producer_epoch: NO_EPOCH,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now_ms,
            has_failed_epoch_fence: false,
        }
    }

    fn transit(&self, now_ms: i64) -> TxnMetadata {
        TxnMetadata { last_update_ms: now_ms.max(self.last_update_ms), has_failed_epoch_fence: false, ..self.clone() }
    }

    /// InitProducerId (Kafka's `prepareInitProducerIdTransit`).
    pub fn init_producer_id(&self, timeout_ms: i32, expected: Option<ProducerIdAndEpoch>, now_ms: i64) -> Result<InitAction, ResponseError> {
        // A claimed id is fine if this id has no epoch yet (a new mapping), is the current
        // one, or is the previous one with an exhausted epoch (a retried rotation).
        let valid_claim = |e: &ProducerIdAndEpoch| {
            self.producer_epoch == NO_EPOCH
                || e.producer_id == self.producer_id
                || (e.producer_id == self.previous_producer_id && epoch_exhausted(e.epoch))
        };
        if !expected.iter().all(valid_claim) {
            return Err(ResponseError::ProducerFenced);
        }
        match self.state {
            TxnState::PrepareAbort | TxnState::PrepareCommit => Err(ResponseError::ConcurrentTransactions),
            TxnState::Ongoing => Ok(InitAction::FenceAndAbort(self.fence_and_abort(now_ms)?)),
            TxnState::Dead | TxnState::PrepareEpochFence => Err(ResponseError::UnknownServerError),
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                if epoch_exhausted(self.producer_epoch) && expected.is_none_or(|e| e.epoch == self.producer_epoch) {
                    return Ok(InitAction::RotateProducerId);
                }
                let (epoch, last_epoch) = match expected {
                    None => (self.producer_epoch + 1, NO_EPOCH),
                    Some(e) if self.producer_epoch == NO_EPOCH || e.epoch == self.producer_epoch => {
                        (self.producer_epoch + 1, self.producer_epoch)
                    }
                    // A retry of a bump that succeeded: the same answer again.
                    Some(e) if e.epoch == self.last_producer_epoch => (self.producer_epoch, self.last_producer_epoch),
                    Some(_) => return Err(ResponseError::ProducerFenced),
                };
                Ok(InitAction::Write(self.reset(self.producer_id, epoch, last_epoch, timeout_ms, now_ms)))
            }
        }
    }

    /// InitProducerId with the epoch used up: a fresh producer id at epoch 0.
    pub fn rotate_producer_id(&self, new_producer_id: i64, timeout_ms: i32, record_last_epoch: bool, now_ms: i64) -> TxnMetadata {
        assert!(self.state.is_idle(), "producer ids rotate only between transactions");
        let last = if record_last_epoch { self.producer_epoch } else { NO_EPOCH };
        let mut next = self.reset(new_producer_id, 0, last, timeout_ms, now_ms);
        next.previous_producer_id = self.producer_id;
        next
    }

    fn reset(&self, producer_id: i64, epoch: i16, last_epoch: i16, timeout_ms: i32, now_ms: i64) -> TxnMetadata {
        let mut next = self.transit(now_ms);
        next.producer_id = producer_id;
        next.producer_epoch = epoch;
        next.last_producer_epoch = last_epoch;
        next.timeout_ms = timeout_ms;
        next.state = TxnState::Empty;
        next.partitions.clear();
        next.start_ms = -1;
        next
    }

    /// Checks the producer of a request that changes the transaction (AddPartitionsToTxn,
    /// AddOffsetsToTxn, TxnOffsetCommit's coordinator side).
    pub fn check_producer(&self, producer_id: i64, epoch: i16) -> Result<(), ResponseError> {
        if self.producer_id != producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if self.producer_epoch != epoch {
            return Err(ResponseError::ProducerFenced);
        }
        Ok(())
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn: `Ok(None)` when every partition is in already.
    pub fn add_partitions(&self, producer_id: i64, epoch: i16, added: &BTreeSet<TopicPartition>, now_ms: i64) -> Result<Option<TxnMetadata>, ResponseError> {
        self.check_producer(producer_id, epoch)?;
        match self.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => Err(ResponseError::ConcurrentTransactions),
            TxnState::Ongoing if added.is_subset(&self.partitions) => Ok(None),
            TxnState::Dead | TxnState::PrepareEpochFence => Err(ResponseError::UnknownServerError),
            state => {
                let mut next = self.transit(now_ms);
                if state != TxnState::Ongoing {
                    next.start_ms = now_ms;
                }
                next.state = TxnState::Ongoing;
                next.partitions.extend(added.iter().cloned());
                Ok(Some(next))
            }
        }
    }

    /// EndTxn from the client (`from_client`) or the coordinator itself. `Ok(None)` is a
    /// retry of a decision already complete: answer success without writing.
    pub fn end_txn(&self, producer_id: i64, epoch: i16, commit: bool, from_client: bool, now_ms: i64) -> Result<Option<TxnMetadata>, ResponseError> {
        if self.producer_id != producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        // Transactions version 1: the client's epoch must be the current one exactly.
        let valid_epoch = (!from_client || epoch == self.producer_epoch) && epoch >= self.producer_epoch;
        if !valid_epoch {
            return Err(ResponseError::ProducerFenced);
        }
        match (self.state, commit) {
            (TxnState::Ongoing, _) => {
                let mut next = self.transit(now_ms);
                next.state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
                Ok(Some(next))
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(None),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => Err(ResponseError::ConcurrentTransactions),
            (TxnState::Dead | TxnState::PrepareEpochFence, _) => Err(ResponseError::UnknownServerError),
            _ => Err(ResponseError::InvalidTxnState),
        }
    }

    /// The coordinator aborts an open transaction and fences its producer: epoch + 1
    /// (unless a previous fence failed to be written), straight to PrepareAbort.
    pub fn fence_and_abort(&self, now_ms: i64) -> Result<TxnMetadata, ResponseError> {
        if self.state != TxnState::Ongoing {
            return Err(ResponseError::InvalidTxnState);
        }
        if self.producer_epoch == i16::MAX {
            return Err(ResponseError::UnknownServerError);
        }
        let mut next = self.transit(now_ms);
        if !self.has_failed_epoch_fence {
            next.producer_epoch = self.producer_epoch + 1;
        }
        next.last_producer_epoch = NO_EPOCH;
        next.state = TxnState::PrepareAbort;
        Ok(next)
    }

    /// Every marker is written: CompleteCommit or CompleteAbort, no partitions.
    pub fn complete(&self, now_ms: i64) -> TxnMetadata {
        assert!(self.state.is_preparing(), "only a prepared transaction completes, not {:?}", self.state);
        let mut next = self.transit(now_ms);
        next.state = if self.state == TxnState::PrepareCommit { TxnState::CompleteCommit } else { TxnState::CompleteAbort };
        next.partitions.clear();
        next
    }

    /// An open transaction past its timeout (Kafka's `timedOutTransactions`).
    pub fn timed_out(&self, now_ms: i64) -> bool {
        self.state == TxnState::Ongoing && self.start_ms.saturating_add(i64::from(self.timeout_ms)) < now_ms
    }

    /// An idle id unused for `expiration_ms` (`transactional.id.expiration.ms`).
    pub fn expired(&self, now_ms: i64, expiration_ms: i64) -> bool {
        self.state.is_idle() && now_ms.saturating_sub(self.last_update_ms) >= expiration_ms
    }

    /// Partitions grouped by topic, sorted (the log value's and DescribeTransactions' form).
    pub fn partitions_by_topic(&self) -> Vec<(String, Vec<i32>)> {
        let mut out: Vec<(String, Vec<i32>)> = Vec::new();
        for tp in &self.partitions {
            match out.last_mut() {
                Some((t, ids)) if *t == tp.topic => ids.push(tp.partition.0),
                _ => out.push((tp.topic.clone(), vec![tp.partition.0])),
            }
        }
        out
    }

    /// The log value of this metadata.
    pub fn to_value(&self) -> super::records::TxnValue {
        super::records::TxnValue {
            producer_id: self.producer_id,
            previous_producer_id: self.previous_producer_id,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch: self.producer_epoch,
            timeout_ms: self.timeout_ms,
            state: self.state,
            partitions: if self.state == TxnState::Empty { vec![] } else { self.partitions_by_topic() },
            last_update_ms: self.last_update_ms,
            start_ms: self.start_ms,
            client_transaction_version: 0,
        }
    }

    /// Metadata loaded from the log (the last epoch is not stored, as in Kafka).
    pub fn from_value(transactional_id: &str, v: &super::records::TxnValue) -> TxnMetadata {
        let partitions = if v.state == TxnState::Empty {
            BTreeSet::new()
        } else {
            v.partitions.iter().flat_map(|(t, ids)| ids.iter().map(move |p| TopicPartition::new(t.clone(), *p))).collect()
        };
        TxnMetadata {
            transactional_id: transactional_id.to_string(),
            producer_id: v.producer_id,
            previous_producer_id: v.previous_producer_id,
            producer_epoch: v.producer_epoch,
            last_producer_epoch: NO_EPOCH,
            timeout_ms: v.timeout_ms,
            state: v.state,
            partitions,
            start_ms: v.start_ms,
            last_update_ms: v.last_update_ms,
            has_failed_epoch_fence: false,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn tps(names: &[(&str, i32)]) -> BTreeSet<TopicPartition> {
        names.iter().map(|(t, p)| TopicPartition::new(*t, *p)).collect()
    }

    fn initialised() -> TxnMetadata {
        let fresh = TxnMetadata::new("t", 1000, 60_000, 0);
        match fresh.init_producer_id(60_000, None, 1).unwrap() {
            InitAction::Write(m) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_commit_goes_through_every_state() {
        let m = initialised();
        assert_eq!((m.state, m.producer_epoch, m.start_ms), (TxnState::Empty, 0, -1));
        let m = m.add_partitions(1000, 0, &tps(&[("a", 0)]), 10).unwrap().unwrap();
        assert_eq!((m.state, m.start_ms), (TxnState::Ongoing, 10));
        assert_eq!(m.add_partitions(1000, 0, &tps(&[("a", 0)]), 11).unwrap(), None, "already in");
        let m = m.add_partitions(1000, 0, &tps(&[("b", 1)]), 12).unwrap().unwrap();
        assert_eq!((m.partitions.len(), m.start_ms, m.last_update_ms), (2, 10, 12));
        assert_eq!(m.partitions_by_topic(), vec![("a".to_string(), vec![0]), ("b".to_string(), vec![1])]);
        let m = m.end_txn(1000, 0, true, true, 13).unwrap().unwrap();
        assert_eq!(m.state, TxnState::PrepareCommit);
        assert_eq!(m.end_txn(1000, 0, true, true, 14), Err(ResponseError::ConcurrentTransactions));
        assert_eq!(m.end_txn(1000, 0, false, true, 14), Err(ResponseError::InvalidTxnState));
        assert_eq!(m.add_partitions(1000, 0, &tps(&[("c", 0)]), 14), Err(ResponseError::ConcurrentTransactions));
        assert_eq!(m.init_producer_id(60_000, None, 14), Err(ResponseError::ConcurrentTransactions));
        let m = m.complete(15);
        assert_eq!((m.state, m.partitions.len(), m.producer_epoch), (TxnState::CompleteCommit, 0, 0));
        assert_eq!(m.end_txn(1000, 0, true, true, 16).unwrap(), None, "a retried commit succeeds");
        assert_eq!(m.end_txn(1000, 0, false, true, 16), Err(ResponseError::InvalidTxnState));
        // The next transaction starts afresh.
        let m = m.add_partitions(1000, 0, &tps(&[("c", 0)]), 17).unwrap().unwrap();
        assert_eq!((m.state, m.start_ms, m.partitions.len()), (TxnState::Ongoing, 17, 1));
    }

    #[test]
    fn requests_from_other_producers_are_refused() {
        let m = initialised().add_partitions(1000, 0, &tps(&[("a", 0)]), 1).unwrap().unwrap();
        assert_eq!(m.add_partitions(999, 0, &tps(&[("a", 1)]), 2), Err(ResponseError::InvalidProducerIdMapping));
        assert_eq!(m.add_partitions(1000, 1, &tps(&[("a", 1)]), 2), Err(ResponseError::ProducerFenced));
        assert_eq!(m.end_txn(1000, 1, true, true, 2), Err(ResponseError::ProducerFenced));
        assert_eq!(m.end_txn(7, 0, true, true, 2), Err(ResponseError::InvalidProducerIdMapping));
        let empty = initialised();
        assert_eq!(empty.end_txn(1000, 0, true, true, 2), Err(ResponseError::InvalidTxnState));
    }

    /// A second producer with the same id while a transaction is open: the coordinator bumps
    /// the epoch and aborts; once complete, the new producer's retry bumps again.
    #[test]
    fn init_producer_id_fences_an_open_transaction() {
        let m = initialised().add_partitions(1000, 0, &tps(&[("a", 0)]), 1).unwrap().unwrap();
        let InitAction::FenceAndAbort(fenced) = m.init_producer_id(60_000, None, 2).unwrap() else { panic!() };
        assert_eq!((fenced.state, fenced.producer_epoch), (TxnState::PrepareAbort, 1));
        assert_eq!(fenced.partitions, m.partitions, "the abort covers the open transaction");
        let done = fenced.complete(3);
        assert_eq!(done.state, TxnState::CompleteAbort);
        // The zombie (epoch 0) is fenced everywhere.
        assert_eq!(done.end_txn(1000, 0, true, true, 4), Err(ResponseError::ProducerFenced));
        assert_eq!(done.add_partitions(1000, 0, &tps(&[("a", 0)]), 4), Err(ResponseError::ProducerFenced));
        let InitAction::Write(next) = done.init_producer_id(60_000, None, 4).unwrap() else { panic!() };
        assert_eq!((next.state, next.producer_epoch, next.producer_id), (TxnState::Empty, 2, 1000));
    }

    /// KIP-360: a producer bumping its own epoch after an error, a retry of that bump, and a
    /// producer whose epoch was bumped by someone else.
    #[test]
    fn kip_360_epoch_bumps() {
        let m = initialised();
        let claim = |epoch| Some(ProducerIdAndEpoch { producer_id: 1000, epoch });
        let InitAction::Write(bumped) = m.init_producer_id(60_000, claim(0), 1).unwrap() else { panic!() };
        assert_eq!((bumped.producer_epoch, bumped.last_producer_epoch), (1, 0));
        let InitAction::Write(retried) = bumped.init_producer_id(60_000, claim(0), 2).unwrap() else { panic!() };
        assert_eq!(retried.producer_epoch, 1, "a retry of the bump gets the same epoch");
        assert_eq!(bumped.init_producer_id(60_000, claim(5), 2), Err(ResponseError::ProducerFenced));
        let other = Some(ProducerIdAndEpoch { producer_id: 77, epoch: 0 });
        assert_eq!(bumped.init_producer_id(60_000, other, 2), Err(ResponseError::ProducerFenced));
    }

    #[test]
    fn an_exhausted_epoch_rotates_the_producer_id() {
        let mut m = initialised();
        m.producer_epoch = i16::MAX - 1;
        assert_eq!(m.init_producer_id(60_000, None, 1), Ok(InitAction::RotateProducerId));
        let r = m.rotate_producer_id(2000, 60_000, false, 2);
        assert_eq!((r.producer_id, r.producer_epoch, r.previous_producer_id, r.last_producer_epoch), (2000, 0, 1000, NO_EPOCH));
        // A KIP-360 rotation remembers the old epoch, so the producer's retry (naming its old
        // id and exhausted epoch) gets the same answer.
        let claim = Some(ProducerIdAndEpoch { producer_id: 1000, epoch: i16::MAX - 1 });
        let r = m.rotate_producer_id(2000, 60_000, true, 2);
        let InitAction::Write(retried) = r.init_producer_id(60_000, claim, 3).unwrap() else { panic!() };
        assert_eq!((retried.producer_id, retried.producer_epoch), (2000, 0));
    }

    #[test]
    fn timeouts_and_expiry() {
        let m = initialised().add_partitions(1000, 0, &tps(&[("a", 0)]), 100).unwrap().unwrap();
        assert!(!m.timed_out(60_100) && m.timed_out(60_101));
        let aborted = m.fence_and_abort(60_101).unwrap();
        assert_eq!((aborted.state, aborted.producer_epoch), (TxnState::PrepareAbort, 1));
        let mut failed = m.clone();
        failed.has_failed_epoch_fence = true;
        assert_eq!(failed.fence_and_abort(60_102).unwrap().producer_epoch, 0, "a failed fence is not bumped twice");
        assert!(!m.expired(i64::MAX, 1), "an open transaction never expires");
        assert!(initialised().expired(10, 9));
    }

    #[test]
    fn log_values_round_trip_through_metadata() {
        let m = initialised().add_partitions(1000, 0, &tps(&[("a", 0), ("a", 3), ("b", 1)]), 5).unwrap().unwrap();
        let back = TxnMetadata::from_value("t", &m.to_value());
        assert_eq!(back, TxnMetadata { last_producer_epoch: NO_EPOCH, ..m });
        for id in 0..8 {
            let s = TxnState::from_id(id).unwrap();
            assert_eq!((s.id(), TxnState::from_name(s.name())), (id, Some(s)));
        }
        assert_eq!(TxnState::from_id(8), None);
    }
}
