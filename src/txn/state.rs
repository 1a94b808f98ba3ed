//! The state machine of one transactional id (Kafka's `TransactionMetadata`), for both
//! transactions protocols (KIP-890):
//!
//! - version 1 (clients' requests below EndTxn v5; [`TxnVersion::V0`] in the log): the
//!   producer epoch changes only on InitProducerId and when the coordinator fences (a
//!   timeout, or a new producer while a transaction is open);
//! - version 2 ([`TxnVersion::V2`]: EndTxn v5+, partitions added by Produce v12+ and
//!   TxnOffsetCommit v5): every commit or abort bumps the epoch as it is decided, so its
//!   markers carry the new epoch and the producer's next transaction starts on it; when the
//!   epoch would reach `i16::MAX` a new producer id is allocated with the decision
//!   (`next_producer_id`) and the producer goes on at epoch 0 of it once the transaction
//!   completes. A retried EndTxn is recognised by its epoch one below the current one (or the
//!   previous producer id at `i16::MAX - 1` after a rotation) and answered without a write;
//!   an abort with nothing open (Empty, or after a completed transaction) bumps the epoch too.
//!
//! ```text
//!  Empty / CompleteCommit / CompleteAbort ──AddPartitions/AddOffsets──▶ Ongoing ◀─┐ (more)
//!  Ongoing ──EndTxn(commit)──▶ PrepareCommit ──markers written──▶ CompleteCommit   │
//!  Ongoing ──EndTxn(abort), timeout, fencing──▶ PrepareAbort ──markers──▶ CompleteAbort
//!  Empty / Complete* ──EndTxn(abort), version 2──▶ PrepareAbort
//!  Empty / Complete* ──InitProducerId──▶ Empty (epoch + 1, or a new producer id)
//! ```
//!
//! Every method here is pure: it checks a request against the current metadata and returns
//! the metadata to write, or the Kafka error to answer. The coordinator writes the returned
//! value to `__transaction_state` and only then makes it current, so memory never runs ahead
//! of the log. `Dead` and `PrepareEpochFence` exist for the record format's sake: fencing goes
//! straight to `PrepareAbort` with the bumped epoch, as Kafka ends up writing. As in Kafka,
//! every transition records the producer id it leaves as the previous one.

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

/// A level of Kafka's `TransactionVersion`: what a request's API version says its client
/// speaks (V0 for the version 1 protocol's requests, V2 for EndTxn v5+, AddPartitionsToTxn
/// v4+, Produce v12+, TxnOffsetCommit v5+), or the finalized `transaction.version` for what
/// the coordinator does on its own. Stored as the log value's `ClientTransactionVersion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxnVersion(pub i16);

impl TxnVersion {
    pub const V0: TxnVersion = TxnVersion(0);
    pub const V1: TxnVersion = TxnVersion(1);
    pub const V2: TxnVersion = TxnVersion(2);

    /// Transactions version 2: the epoch is bumped by every commit and abort.
    pub fn supports_epoch_bump(self) -> bool {
        self.0 >= 2
    }

    /// Kafka's `transactionVersionForEndTxn`.
    pub fn of_end_txn(api_version: i16) -> TxnVersion {
        if api_version > 4 { TxnVersion::V2 } else { TxnVersion::V0 }
    }

    /// Kafka's `transactionVersionForAddPartitionsToTxn` (v4+ comes from brokers adding
    /// partitions for a version 2 client).
    pub fn of_add_partitions(api_version: i16) -> TxnVersion {
        if api_version > 3 { TxnVersion::V2 } else { TxnVersion::V0 }
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
    /// The producer id before the last transition (after a rotation, the old one), so a
    /// retry naming it is recognised (KIP-360, and EndTxn across a version 2 overflow).
    pub previous_producer_id: i64,
    /// Version 2: the producer id allocated with a decision that used up the epoch; the
    /// transaction completes onto it at epoch 0.
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump, so a retried KIP-360 bump is recognised; not stored
    /// in the log (as in Kafka), so it is lost by a coordinator restart.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<TopicPartition>,
    pub start_ms: i64,
    pub last_update_ms: i64,
    /// The transactions version of the client's last transition (the log's
    /// `ClientTransactionVersion`): how the transaction completes.
    pub client_version: TxnVersion,
    /// A fencing write failed: the next fence reuses its epoch instead of bumping again
    /// (version 1; version 2 bumps from the current epoch, which the failure left as it was).
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
    /// A transaction is open: abort it with [`TxnMetadata::fence_and_abort`], complete it,
    /// answer CONCURRENT_TRANSACTIONS so the producer retries.
    FenceAndAbort,
}

/// What EndTxn has to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndAction {
    /// Write this decision (PrepareCommit or PrepareAbort), then complete it.
    Write(TxnMetadata),
    /// A retry of a decision already complete: answer success, write nothing.
    AlreadyDone,
}

impl TxnMetadata {
    /// A transactional id seen for the first time: epoch -1 until its first InitProducerId
    /// is written.
    pub fn new(transactional_id: &str, producer_id: i64, timeout_ms: i32, now_ms: i64) -> Self {
        TxnMetadata {
            transactional_id: transactional_id.to_string(),
            producer_id,
            previous_producer_id: NO_PRODUCER_ID,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_EPOCH,
            last_producer_epoch: NO_EPOCH,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now_ms,
            client_version: TxnVersion::V0,
            has_failed_epoch_fence: false,
        }
    }

    /// The start of every transition (Kafka's `prepareTransitionTo`): the current producer
    /// id becomes the previous one.
    fn transit(&self, now_ms: i64) -> TxnMetadata {
        TxnMetadata {
            last_update_ms: now_ms.max(self.last_update_ms),
            previous_producer_id: self.producer_id,
            has_failed_epoch_fence: false,
            ..self.clone()
        }
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
            TxnState::Ongoing => Ok(InitAction::FenceAndAbort),
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
        self.reset(new_producer_id, 0, last, timeout_ms, now_ms)
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

    /// AddPartitionsToTxn / AddOffsetsToTxn, and the partitions Produce v12+ and
    /// TxnOffsetCommit v5 add (`version`: the client's transactions version, recorded with
    /// the transaction). `Ok(None)` when every partition is in already.
    pub fn add_partitions(&self, producer_id: i64, epoch: i16, added: &BTreeSet<TopicPartition>, version: TxnVersion, now_ms: i64) -> Result<Option<TxnMetadata>, ResponseError> {
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
                next.client_version = version;
                Ok(Some(next))
            }
        }
    }

    /// EndTxn from the client, in the protocol of `version` (see the module doc). A version 2
    /// decision that uses up the epoch takes a producer id from `allocate`.
    pub fn end_txn(
        &self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        version: TxnVersion,
        allocate: &mut dyn FnMut() -> Result<i64, ResponseError>,
        now_ms: i64,
    ) -> Result<EndAction, ResponseError> {
        if !version.supports_epoch_bump() {
            return self.end_txn_v1(producer_id, epoch, commit, now_ms);
        }
        use TxnState as S;
        // A retry after a decision that rotated the producer id, or after one that bumped
        // the epoch (the client's epoch is one below).
        let retry_on_overflow = self.previous_producer_id == producer_id && epoch == i16::MAX - 1 && self.producer_epoch == 0;
        let retry_on_bump = i32::from(self.producer_epoch) == i32::from(epoch) + 1;
        if self.producer_id != producer_id && !retry_on_overflow {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        let valid_epoch = match self.state {
            S::Ongoing | S::Empty | S::Dead | S::PrepareEpochFence => epoch == self.producer_epoch,
            S::PrepareCommit | S::PrepareAbort => retry_on_bump,
            S::CompleteCommit | S::CompleteAbort => retry_on_bump || retry_on_overflow || epoch == self.producer_epoch,
        };
        if !valid_epoch {
            return Err(ResponseError::ProducerFenced);
        }
        let retry = retry_on_bump || retry_on_overflow;
        let mut decide = |state: TxnState, nothing_added: bool| -> Result<EndAction, ResponseError> {
            Ok(EndAction::Write(self.decide_v2(state, version, allocate, nothing_added, now_ms)?))
        };
        match (self.state, commit) {
            (S::Ongoing, true) => decide(S::PrepareCommit, false),
            (S::Ongoing, false) => decide(S::PrepareAbort, false),
            (S::CompleteCommit, true) | (S::CompleteAbort, false) if retry => Ok(EndAction::AlreadyDone),
            (S::CompleteCommit, false) if retry => Err(ResponseError::InvalidTxnState),
            // An abort with nothing open: the epoch is bumped all the same.
            (S::CompleteCommit | S::CompleteAbort | S::Empty, false) => decide(S::PrepareAbort, true),
            (S::PrepareCommit, true) | (S::PrepareAbort, false) => Err(ResponseError::ConcurrentTransactions),
            (S::Dead | S::PrepareEpochFence, _) => Err(ResponseError::UnknownServerError),
            _ => Err(ResponseError::InvalidTxnState),
        }
    }

    /// EndTxn in the version 1 protocol: the client's epoch must be the current one exactly.
    fn end_txn_v1(&self, producer_id: i64, epoch: i16, commit: bool, now_ms: i64) -> Result<EndAction, ResponseError> {
        if self.producer_id != producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if epoch != self.producer_epoch {
            return Err(ResponseError::ProducerFenced);
        }
        match (self.state, commit) {
            (TxnState::Ongoing, _) => {
                let state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
                Ok(EndAction::Write(self.decide_v1(state, now_ms)))
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(EndAction::AlreadyDone),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => Err(ResponseError::ConcurrentTransactions),
            (TxnState::Dead | TxnState::PrepareEpochFence, _) => Err(ResponseError::UnknownServerError),
            _ => Err(ResponseError::InvalidTxnState),
        }
    }

    /// A version 1 decision (Kafka's `prepareAbortOrCommit` with TV_0): same epoch.
    fn decide_v1(&self, state: TxnState, now_ms: i64) -> TxnMetadata {
        let mut next = self.transit(now_ms);
        next.state = state;
        next.next_producer_id = NO_PRODUCER_ID;
        next.client_version = TxnVersion::V0;
        next
    }

    /// A version 2 decision (Kafka's `prepareAbortOrCommit` with TV_2): the epoch + 1 (an
    /// abort at `i16::MAX`, a broken state, keeps it so it can complete), the epoch it
    /// leaves as the last one, and a new producer id if the epoch is used up.
    fn decide_v2(
        &self,
        state: TxnState,
        version: TxnVersion,
        allocate: &mut dyn FnMut() -> Result<i64, ResponseError>,
        nothing_added: bool,
        now_ms: i64,
    ) -> Result<TxnMetadata, ResponseError> {
        let next_producer_id = if epoch_exhausted(self.producer_epoch) { allocate()? } else { NO_PRODUCER_ID };
        let mut next = self.transit(now_ms);
        match self.producer_epoch.checked_add(1) {
            Some(bumped) => next.producer_epoch = bumped,
            None if state == TxnState::PrepareAbort => {
                tracing::error!(transactional_id = %self.transactional_id, producer_id = self.producer_id, "aborting at epoch i16::MAX; the epoch is not bumped");
            }
            None => return Err(ResponseError::UnknownServerError),
        }
        next.last_producer_epoch = self.producer_epoch;
        // An abort with nothing added has no start of its own: it starts now.
        if nothing_added {
            next.start_ms = now_ms;
        }
        next.state = state;
        next.next_producer_id = next_producer_id;
        next.client_version = version;
        Ok(next)
    }

    /// The coordinator aborts an open transaction and fences its producer, in the protocol of
    /// the finalized `transaction.version` (`version`): version 1 bumps the epoch (unless a
    /// previous fence failed to be written) and keeps it for the markers; version 2 decides
    /// the abort as an EndTxn v5 would, from the current epoch (a new producer id if it is
    /// used up, from `allocate`).
    pub fn fence_and_abort(&self, version: TxnVersion, allocate: &mut dyn FnMut() -> Result<i64, ResponseError>, now_ms: i64) -> Result<TxnMetadata, ResponseError> {
        if self.state != TxnState::Ongoing {
            return Err(ResponseError::InvalidTxnState);
        }
        if version.supports_epoch_bump() {
            return self.decide_v2(TxnState::PrepareAbort, version, allocate, false, now_ms);
        }
        if self.producer_epoch == i16::MAX {
            return Err(ResponseError::UnknownServerError);
        }
        let mut next = self.decide_v1(TxnState::PrepareAbort, now_ms);
        if !self.has_failed_epoch_fence {
            next.producer_epoch = self.producer_epoch + 1;
        }
        next.last_producer_epoch = NO_EPOCH;
        Ok(next)
    }

    /// Every marker is written: CompleteCommit or CompleteAbort, no partitions; a version 2
    /// transaction that used up its epoch moves to its next producer id at epoch 0.
    pub fn complete(&self, now_ms: i64) -> TxnMetadata {
        assert!(self.state.is_preparing(), "only a prepared transaction completes, not {:?}", self.state);
        let mut next = self.transit(now_ms);
        next.state = if self.state == TxnState::PrepareCommit { TxnState::CompleteCommit } else { TxnState::CompleteAbort };
        if self.client_version.supports_epoch_bump() && self.next_producer_id != NO_PRODUCER_ID {
            next.producer_id = self.next_producer_id;
            next.producer_epoch = 0;
        }
        next.next_producer_id = NO_PRODUCER_ID;
        next.partitions.clear();
        next
    }

    /// The producer id and epoch the producer goes on with once this decision completes
    /// (EndTxn v5's answer).
    pub fn completed_identity(&self) -> (i64, i16) {
        if self.client_version.supports_epoch_bump() && self.next_producer_id != NO_PRODUCER_ID {
            (self.next_producer_id, 0)
        } else {
            (self.producer_id, self.producer_epoch)
        }
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
            next_producer_id: self.next_producer_id,
            producer_epoch: self.producer_epoch,
            timeout_ms: self.timeout_ms,
            state: self.state,
            partitions: if self.state == TxnState::Empty { vec![] } else { self.partitions_by_topic() },
            last_update_ms: self.last_update_ms,
            start_ms: self.start_ms,
            client_transaction_version: self.client_version.0,
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
            next_producer_id: v.next_producer_id,
            producer_epoch: v.producer_epoch,
            last_producer_epoch: NO_EPOCH,
            timeout_ms: v.timeout_ms,
            state: v.state,
            partitions,
            start_ms: v.start_ms,
            last_update_ms: v.last_update_ms,
            client_version: TxnVersion(v.client_transaction_version),
            has_failed_epoch_fence: false,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// The version 1 protocol's requests, and version 2's.
    const TV1: TxnVersion = TxnVersion::V0;
    const TV2: TxnVersion = TxnVersion::V2;

    fn tps(names: &[(&str, i32)]) -> BTreeSet<TopicPartition> {
        names.iter().map(|(t, p)| TopicPartition::new(*t, *p)).collect()
    }

    fn no_alloc() -> Result<i64, ResponseError> {
        panic!("no producer id is needed here")
    }

    fn initialised() -> TxnMetadata {
        let fresh = TxnMetadata::new("t", 1000, 60_000, 0);
        match fresh.init_producer_id(60_000, None, 1).unwrap() {
            InitAction::Write(m) => m,
            other => panic!("{other:?}"),
        }
    }

    /// A decision to write.
    fn decided(r: Result<EndAction, ResponseError>) -> TxnMetadata {
        match r {
            Ok(EndAction::Write(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    fn end(m: &TxnMetadata, pid: i64, epoch: i16, commit: bool, version: TxnVersion, now: i64) -> Result<EndAction, ResponseError> {
        m.end_txn(pid, epoch, commit, version, &mut no_alloc, now)
    }

    #[test]
    fn a_commit_goes_through_every_state() {
        let m = initialised();
        assert_eq!((m.state, m.producer_epoch, m.start_ms), (TxnState::Empty, 0, -1));
        let m = m.add_partitions(1000, 0, &tps(&[("a", 0)]), TV1, 10).unwrap().unwrap();
        assert_eq!((m.state, m.start_ms), (TxnState::Ongoing, 10));
        assert_eq!(m.add_partitions(1000, 0, &tps(&[("a", 0)]), TV1, 11).unwrap(), None, "already in");
        let m = m.add_partitions(1000, 0, &tps(&[("b", 1)]), TV1, 12).unwrap().unwrap();
        assert_eq!((m.partitions.len(), m.start_ms, m.last_update_ms), (2, 10, 12));
        assert_eq!(m.partitions_by_topic(), vec![("a".to_string(), vec![0]), ("b".to_string(), vec![1])]);
        let m = decided(end(&m, 1000, 0, true, TV1, 13));
        assert_eq!((m.state, m.producer_epoch, m.client_version), (TxnState::PrepareCommit, 0, TV1));
        assert_eq!(end(&m, 1000, 0, true, TV1, 14), Err(ResponseError::ConcurrentTransactions));
        assert_eq!(end(&m, 1000, 0, false, TV1, 14), Err(ResponseError::InvalidTxnState));
        assert_eq!(m.add_partitions(1000, 0, &tps(&[("c", 0)]), TV1, 14), Err(ResponseError::ConcurrentTransactions));
        assert_eq!(m.init_producer_id(60_000, None, 14), Err(ResponseError::ConcurrentTransactions));
        let m = m.complete(15);
        assert_eq!((m.state, m.partitions.len(), m.producer_epoch), (TxnState::CompleteCommit, 0, 0));
        assert_eq!(end(&m, 1000, 0, true, TV1, 16), Ok(EndAction::AlreadyDone), "a retried commit succeeds");
        assert_eq!(end(&m, 1000, 0, false, TV1, 16), Err(ResponseError::InvalidTxnState));
        // The next transaction starts afresh.
        let m = m.add_partitions(1000, 0, &tps(&[("c", 0)]), TV1, 17).unwrap().unwrap();
        assert_eq!((m.state, m.start_ms, m.partitions.len()), (TxnState::Ongoing, 17, 1));
        assert_eq!(m.previous_producer_id, 1000, "every transition records the id it leaves");
    }

    #[test]
    fn requests_from_other_producers_are_refused() {
        let m = initialised().add_partitions(1000, 0, &tps(&[("a", 0)]), TV1, 1).unwrap().unwrap();
        assert_eq!(m.add_partitions(999, 0, &tps(&[("a", 1)]), TV1, 2), Err(ResponseError::InvalidProducerIdMapping));
        assert_eq!(m.add_partitions(1000, 1, &tps(&[("a", 1)]), TV1, 2), Err(ResponseError::ProducerFenced));
        assert_eq!(end(&m, 1000, 1, true, TV1, 2), Err(ResponseError::ProducerFenced));
        assert_eq!(end(&m, 7, 0, true, TV1, 2), Err(ResponseError::InvalidProducerIdMapping));
        let empty = initialised();
        assert_eq!(end(&empty, 1000, 0, true, TV1, 2), Err(ResponseError::InvalidTxnState));
        assert_eq!(end(&empty, 1000, 0, false, TV1, 2), Err(ResponseError::InvalidTxnState), "version 1 aborts only an open one");
    }

    /// A second producer with the same id while a transaction is open: the coordinator bumps
    /// the epoch and aborts; once complete, the new producer's retry bumps again.
    #[test]
    fn init_producer_id_fences_an_open_transaction() {
        let m = initialised().add_partitions(1000, 0, &tps(&[("a", 0)]), TV1, 1).unwrap().unwrap();
        assert_eq!(m.init_producer_id(60_000, None, 2), Ok(InitAction::FenceAndAbort));
        for server in [TxnVersion::V1, TxnVersion::V2] {
            let fenced = m.fence_and_abort(server, &mut no_alloc, 2).unwrap();
            assert_eq!((fenced.state, fenced.producer_epoch), (TxnState::PrepareAbort, 1), "{server:?}");
            assert_eq!(fenced.partitions, m.partitions, "the abort covers the open transaction");
            let done = fenced.complete(3);
            assert_eq!((done.state, done.producer_epoch), (TxnState::CompleteAbort, 1));
            // The zombie (epoch 0) is fenced everywhere.
            assert_eq!(end(&done, 1000, 0, true, TV1, 4), Err(ResponseError::ProducerFenced));
            assert_eq!(done.add_partitions(1000, 0, &tps(&[("a", 0)]), TV1, 4), Err(ResponseError::ProducerFenced));
            let InitAction::Write(next) = done.init_producer_id(60_000, None, 4).unwrap() else { panic!() };
            assert_eq!((next.state, next.producer_epoch, next.producer_id), (TxnState::Empty, 2, 1000));
        }
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
        let m = initialised().add_partitions(1000, 0, &tps(&[("a", 0)]), TV1, 100).unwrap().unwrap();
        assert!(!m.timed_out(60_100) && m.timed_out(60_101));
        let aborted = m.fence_and_abort(TxnVersion::V1, &mut no_alloc, 60_101).unwrap();
        assert_eq!((aborted.state, aborted.producer_epoch, aborted.client_version), (TxnState::PrepareAbort, 1, TV1));
        let mut failed = m.clone();
        failed.has_failed_epoch_fence = true;
        assert_eq!(failed.fence_and_abort(TxnVersion::V1, &mut no_alloc, 60_102).unwrap().producer_epoch, 0, "a failed fence is not bumped twice");
        // Version 2 bumps from the current epoch, whatever a failed write left.
        let v2 = failed.fence_and_abort(TxnVersion::V2, &mut no_alloc, 60_102).unwrap();
        assert_eq!((v2.producer_epoch, v2.last_producer_epoch, v2.client_version), (1, 0, TV2));
        assert!(!m.expired(i64::MAX, 1), "an open transaction never expires");
        assert!(initialised().expired(10, 9));
    }

    #[test]
    fn log_values_round_trip_through_metadata() {
        let m = initialised().add_partitions(1000, 0, &tps(&[("a", 0), ("a", 3), ("b", 1)]), TV2, 5).unwrap().unwrap();
        let back = TxnMetadata::from_value("t", &m.to_value());
        assert_eq!(back, TxnMetadata { last_producer_epoch: NO_EPOCH, ..m.clone() });
        assert_eq!(back.client_version, TV2);
        let mut allocate = || -> Result<i64, ResponseError> { Ok(4242) };
        let mut exhausted = m;
        exhausted.producer_epoch = i16::MAX - 1;
        let prepared = exhausted.end_txn(1000, i16::MAX - 1, true, TV2, &mut allocate, 6).unwrap();
        let EndAction::Write(prepared) = prepared else { panic!() };
        let back = TxnMetadata::from_value("t", &prepared.to_value());
        assert_eq!((back.next_producer_id, back.producer_epoch), (4242, i16::MAX), "a reloaded decision completes onto its next id");
        assert_eq!((back.complete(7).producer_id, back.complete(7).producer_epoch), (4242, 0));
        for id in 0..8 {
            let s = TxnState::from_id(id).unwrap();
            assert_eq!((s.id(), TxnState::from_name(s.name())), (id, Some(s)));
        }
        assert_eq!(TxnState::from_id(8), None);
    }

    /// Version 2: every commit and abort bumps the epoch as it is decided (the markers carry
    /// it), the complete state keeps it, and the next transaction runs on it.
    #[test]
    fn version_2_bumps_the_epoch_on_every_commit_and_abort() {
        let mut m = initialised();
        for (round, commit) in [(0i16, true), (1, false), (2, true)] {
            m = m.add_partitions(1000, round, &tps(&[("a", 0)]), TV2, 10).unwrap().unwrap();
            assert_eq!(m.client_version, TV2);
            assert_eq!(end(&m, 1000, round + 1, commit, TV2, 11), Err(ResponseError::ProducerFenced), "a future epoch");
            let prepared = decided(end(&m, 1000, round, commit, TV2, 11));
            assert_eq!((prepared.producer_epoch, prepared.last_producer_epoch, prepared.next_producer_id), (round + 1, round, NO_PRODUCER_ID));
            assert_eq!(prepared.completed_identity(), (1000, round + 1), "EndTxn v5 answers the new epoch");
            assert_eq!(prepared.partitions, m.partitions);
            // The client retries with its old epoch while the markers are written.
            assert_eq!(end(&prepared, 1000, round, commit, TV2, 12), Err(ResponseError::ConcurrentTransactions));
            assert_eq!(end(&prepared, 1000, round + 1, commit, TV2, 12), Err(ResponseError::ProducerFenced));
            m = prepared.complete(13);
            assert_eq!((m.producer_id, m.producer_epoch, m.partitions.len()), (1000, round + 1, 0));
            // A retry after completion succeeds without a write; the other decision is refused.
            assert_eq!(end(&m, 1000, round, commit, TV2, 14), Ok(EndAction::AlreadyDone));
            assert_eq!(end(&m, 1000, round, !commit, TV2, 14), Err(ResponseError::InvalidTxnState));
            // The old epoch is fenced for new work.
            assert_eq!(m.add_partitions(1000, round, &tps(&[("a", 0)]), TV2, 15), Err(ResponseError::ProducerFenced));
        }
        assert_eq!(m.producer_epoch, 3);
    }

    /// Version 2's table for Empty and the complete states (Kafka's TransactionCoordinator):
    /// an abort with the current epoch bumps, a commit is INVALID_TXN_STATE, a retry of the
    /// other decision too, and a retry from Empty is fenced.
    #[test]
    fn version_2_aborts_with_nothing_open_and_refuses_what_kafka_refuses() {
        let empty = initialised();
        let aborted = decided(end(&empty, 1000, 0, false, TV2, 20));
        assert_eq!((aborted.state, aborted.producer_epoch, aborted.start_ms, aborted.partitions.len()), (TxnState::PrepareAbort, 1, 20, 0));
        assert_eq!(end(&empty, 1000, 0, true, TV2, 20), Err(ResponseError::InvalidTxnState));
        let done = aborted.complete(21);
        assert_eq!(done.state, TxnState::CompleteAbort);
        assert_eq!(end(&done, 1000, 0, false, TV2, 22), Ok(EndAction::AlreadyDone), "retry");
        assert_eq!(end(&done, 1000, 0, true, TV2, 22), Err(ResponseError::InvalidTxnState));
        assert_eq!(end(&done, 1000, 1, true, TV2, 22), Err(ResponseError::InvalidTxnState));
        assert_eq!(decided(end(&done, 1000, 1, false, TV2, 22)).producer_epoch, 2, "an abort again bumps");
        let committed = decided(end(&done.add_partitions(1000, 1, &tps(&[("a", 0)]), TV2, 23).unwrap().unwrap(), 1000, 1, true, TV2, 24)).complete(25);
        assert_eq!((committed.state, committed.producer_epoch), (TxnState::CompleteCommit, 2));
        assert_eq!(end(&committed, 1000, 1, false, TV2, 26), Err(ResponseError::InvalidTxnState), "a retry of the other decision");
        assert_eq!(end(&committed, 1000, 2, true, TV2, 26), Err(ResponseError::InvalidTxnState), "nothing to commit");
        assert_eq!(decided(end(&committed, 1000, 2, false, TV2, 26)).producer_epoch, 3);
        assert_eq!(end(&committed, 1000, 0, true, TV2, 26), Err(ResponseError::ProducerFenced), "two epochs back");
        let mut ghost = initialised();
        ghost.producer_epoch = 5;
        assert_eq!(end(&ghost, 1000, 4, false, TV2, 27), Err(ResponseError::ProducerFenced), "no retry from Empty");
        assert_eq!(end(&ghost, 1001, 5, false, TV2, 27), Err(ResponseError::InvalidProducerIdMapping));
    }

    /// Version 2 at the last usable epoch: the decision takes a new producer id and bumps to
    /// `i16::MAX` (its markers' epoch); completing moves to the new id at epoch 0, and the
    /// client's retry with the old id and epoch is recognised.
    #[test]
    fn version_2_overflow_moves_to_a_new_producer_id() {
        let mut m = initialised().add_partitions(1000, 0, &tps(&[("a", 0)]), TV2, 1).unwrap().unwrap();
        m.producer_epoch = i16::MAX - 1;
        let mut allocated = 0;
        let mut allocate = || -> Result<i64, ResponseError> {
            allocated += 1;
            Ok(5000)
        };
        let EndAction::Write(prepared) = m.end_txn(1000, i16::MAX - 1, true, TV2, &mut allocate, 2).unwrap() else { panic!() };
        assert_eq!(allocated, 1);
        assert_eq!((prepared.producer_id, prepared.producer_epoch, prepared.next_producer_id), (1000, i16::MAX, 5000));
        assert_eq!(prepared.completed_identity(), (5000, 0));
        assert_eq!(end(&prepared, 1000, i16::MAX - 1, true, TV2, 3), Err(ResponseError::ConcurrentTransactions));
        let done = prepared.complete(4);
        assert_eq!((done.producer_id, done.producer_epoch, done.previous_producer_id, done.next_producer_id), (5000, 0, 1000, NO_PRODUCER_ID));
        assert_eq!(done.last_producer_epoch, i16::MAX - 1, "the last epoch the client saw");
        assert_eq!(end(&done, 1000, i16::MAX - 1, true, TV2, 5), Ok(EndAction::AlreadyDone), "a retry across the rotation");
        assert_eq!(end(&done, 1000, i16::MAX - 2, true, TV2, 5), Err(ResponseError::InvalidProducerIdMapping));
        // The producer goes on with the new id.
        let next = done.add_partitions(5000, 0, &tps(&[("a", 0)]), TV2, 6).unwrap().unwrap();
        assert_eq!(decided(end(&next, 5000, 0, true, TV2, 7)).producer_epoch, 1);
        // A failed allocation is the answer, and nothing is decided.
        let mut fail = || -> Result<i64, ResponseError> { Err(ResponseError::CoordinatorNotAvailable) };
        assert_eq!(m.end_txn(1000, i16::MAX - 1, true, TV2, &mut fail, 8), Err(ResponseError::CoordinatorNotAvailable));
        // A coordinator abort (timeout, fencing) at the last epoch rotates too.
        let fenced = m.fence_and_abort(TxnVersion::V2, &mut || -> Result<i64, ResponseError> { Ok(6000) }, 9).unwrap();
        assert_eq!((fenced.state, fenced.producer_epoch, fenced.next_producer_id), (TxnState::PrepareAbort, i16::MAX, 6000));
        assert_eq!((fenced.complete(10).producer_id, fenced.complete(10).producer_epoch), (6000, 0));
    }

    /// A version 1 transaction ending under a version 2 request keeps each protocol's rules:
    /// the request's version decides, as in Kafka.
    #[test]
    fn the_request_version_decides_the_protocol() {
        let m = initialised().add_partitions(1000, 0, &tps(&[("a", 0)]), TV1, 1).unwrap().unwrap();
        assert_eq!(m.client_version, TV1);
        let v1 = decided(end(&m, 1000, 0, true, TV1, 2));
        assert_eq!((v1.producer_epoch, v1.completed_identity()), (0, (1000, 0)));
        let v2 = decided(end(&m, 1000, 0, true, TV2, 2));
        assert_eq!((v2.producer_epoch, v2.client_version), (1, TV2));
        assert_eq!(TxnVersion::of_end_txn(4), TV1);
        assert_eq!(TxnVersion::of_end_txn(5), TV2);
        assert_eq!(TxnVersion::of_add_partitions(3), TV1);
        assert_eq!(TxnVersion::of_add_partitions(4), TV2);
    }
}
