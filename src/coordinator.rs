//! What the group and transaction coordinators share about their internal topics: which
//! partitions this node coordinates, and answering a write only once it is replicated.
//!
//! A coordinator owns the partitions of its internal topic (`__consumer_offsets`,
//! `__transaction_state`) that this node leads, as Kafka's `CoordinatorRuntime` does: the
//! broker tells it through [`LeadershipListener`] when it becomes leader of one (it loads the
//! partition's state, reading to the log end; requests meanwhile answer
//! COORDINATOR_LOAD_IN_PROGRESS) and when it stops leading (it drops that state; requests
//! answer NOT_COORDINATOR). [`OwnedPartitions`] is that bookkeeping.
//!
//! A coordinator appends its records on the leader and answers the request once the high
//! watermark has passed them ([`WriteBarrier`]: acks=all, as Kafka's coordinators append with
//! `requiredAcks=-1`), so that nothing a client was told is lost when the leader dies.
//! Invariant: a coordinator's in-memory state of a partition is dropped whenever this node
//! stops leading it, so state applied before its records were committed never outlives a
//! truncation of those records.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kafka_protocol::ResponseError;

use crate::partition::{Partition, ReplicationWait};
use crate::types::{LeaderEpoch, Offset, PartitionId};

/// Told by the broker about leadership of the partitions of one internal topic (Kafka's
/// `onElection` / `onResignation`). Called on the thread that applies metadata, with no
/// coordinator lock held: an implementation must not block on long work (loading a partition
/// with data goes to a thread of its own).
pub trait LeadershipListener: Send + Sync {
    /// The internal topic whose partitions this listener coordinates.
    fn topic(&self) -> &str;
    /// This node leads `partition` in `epoch` (also for an epoch it led before a restart).
    fn on_election(&self, partition: PartitionId, epoch: LeaderEpoch);
    /// This node no longer leads `partition` (it follows, or the partition is gone).
    fn on_resignation(&self, partition: PartitionId);
}

/// Where a coordinator partition stands on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// Led here in this epoch; its state is being read from the log.
    Loading(LeaderEpoch),
    /// Led here in this epoch and loaded: requests for its keys are served.
    Active(LeaderEpoch),
}

/// The partitions of an internal topic this node coordinates (absent: NOT_COORDINATOR).
#[derive(Default)]
pub struct OwnedPartitions {
    states: Mutex<HashMap<PartitionId, Ownership>>,
}

impl OwnedPartitions {
    fn states(&self) -> MutexGuard<'_, HashMap<PartitionId, Ownership>> {
        match self.states.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Starts loading `partition` in `epoch`; false when it is already loading or loaded in
    /// that epoch (a registration change that kept the leader), so nothing is to be done.
    pub fn begin_load(&self, partition: PartitionId, epoch: LeaderEpoch) -> bool {
        let mut states = self.states();
        match states.get(&partition) {
            Some(Ownership::Loading(e) | Ownership::Active(e)) if *e == epoch => false,
            _ => {
                states.insert(partition, Ownership::Loading(epoch));
                true
            }
        }
    }

    /// The load of `partition` in `epoch` finished: active, unless leadership moved meanwhile
    /// (then false, and the loaded state must be discarded).
    pub fn finish_load(&self, partition: PartitionId, epoch: LeaderEpoch) -> bool {
        let mut states = self.states();
        if states.get(&partition) != Some(&Ownership::Loading(epoch)) {
            return false;
        }
        states.insert(partition, Ownership::Active(epoch));
        true
    }

    /// Forgets `partition`; whether it was owned.
    pub fn resign(&self, partition: PartitionId) -> bool {
        self.states().remove(&partition).is_some()
    }

    /// Whether requests for keys of `partition` may be served here: the error to answer if not.
    pub fn check(&self, partition: PartitionId) -> Result<(), ResponseError> {
        match self.states().get(&partition) {
            Some(Ownership::Active(_)) => Ok(()),
            Some(Ownership::Loading(_)) => Err(ResponseError::CoordinatorLoadInProgress),
            None => Err(ResponseError::NotCoordinator),
        }
    }

    /// Whether `partition` is loading (ListGroups answers COORDINATOR_LOAD_IN_PROGRESS then).
    pub fn any_loading(&self) -> bool {
        self.states().values().any(|s| matches!(s, Ownership::Loading(_)))
    }

    pub fn get(&self, partition: PartitionId) -> Option<Ownership> {
        self.states().get(&partition).copied()
    }
}

/// An answer that must wait until a coordinator partition's records up to `end` are
/// replicated: everything the coordinator wrote there before answering, its own write
/// included.
pub struct WriteBarrier {
    partition: Arc<Partition>,
    epoch: LeaderEpoch,
    end: Offset,
}

impl WriteBarrier {
    /// A barrier at `partition`'s current log end, in its current leader epoch.
    pub fn at_log_end(partition: Arc<Partition>) -> Self {
        let epoch = partition.leader_epoch();
        let end = partition.log_end_offset();
        Self { partition, epoch, end }
    }

    /// A barrier at `end` of `partition` as led in `epoch` (the epoch taken before the
    /// append, so that a leadership change in between fails the wait).
    pub fn new(partition: Arc<Partition>, epoch: LeaderEpoch, end: Offset) -> Self {
        Self { partition, epoch, end }
    }

    /// Waits up to `timeout` for the high watermark to reach the barrier, with the
    /// partition's own reasons for failing.
    pub async fn wait(&self, timeout: Duration) -> Result<(), ReplicationWait> {
        let deadline = tokio::time::Instant::now() + timeout;
        self.partition.wait_replicated(self.end, self.epoch, deadline, || false).await
    }

    /// Waits up to `timeout` for the high watermark to reach the barrier; the error is the
    /// one Kafka's coordinators answer (`CoordinatorOperationExceptionHelper`,
    /// `TransactionStateManager.appendTransactionToLog`): leadership lost is NOT_COORDINATOR,
    /// a timeout or too small an ISR COORDINATOR_NOT_AVAILABLE, so the client retries.
    pub async fn replicated(self, timeout: Duration) -> Result<(), ResponseError> {
        if self.partition.high_watermark() >= self.end && self.partition.is_leader() {
            return Ok(());
        }
        self.wait(timeout).await.map_err(|e| match e {
            ReplicationWait::NotLeader => ResponseError::NotCoordinator,
            ReplicationWait::TimedOut | ReplicationWait::BelowMinIsr => ResponseError::CoordinatorNotAvailable,
        })
    }
}

/// Maps an error of a coordinator's append to what its request answers (Kafka's
/// `CoordinatorOperationExceptionHelper.handleOperationException`).
pub fn append_error(e: &crate::partition::PartitionError) -> ResponseError {
    use crate::log::LogError;
    use crate::partition::PartitionError;
    match e {
        PartitionError::NotLeader => ResponseError::NotCoordinator,
        PartitionError::Log(LogError::InvalidProducerEpoch { .. }) => ResponseError::InvalidProducerEpoch,
        PartitionError::Log(LogError::Io(_)) => ResponseError::NotCoordinator,
        _ => ResponseError::CoordinatorNotAvailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_is_loading_then_active_and_a_stale_load_is_discarded() {
        let owned = OwnedPartitions::default();
        let p = PartitionId(3);
        assert_eq!(owned.check(p), Err(ResponseError::NotCoordinator));
        assert!(owned.begin_load(p, LeaderEpoch(1)));
        assert!(!owned.begin_load(p, LeaderEpoch(1)), "same epoch: already loading");
        assert_eq!(owned.check(p), Err(ResponseError::CoordinatorLoadInProgress));
        // Re-elected in a later epoch before the first load finished: that load is stale.
        assert!(owned.begin_load(p, LeaderEpoch(2)));
        assert!(!owned.finish_load(p, LeaderEpoch(1)));
        assert!(owned.finish_load(p, LeaderEpoch(2)));
        assert_eq!(owned.check(p), Ok(()));
        assert!(owned.resign(p));
        assert_eq!(owned.check(p), Err(ResponseError::NotCoordinator));
        assert!(!owned.finish_load(p, LeaderEpoch(2)), "resigned: nothing to activate");
    }
}
