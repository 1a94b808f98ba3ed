//! The one boundary where internal errors become Kafka error codes.

use kafka_protocol::ResponseError;

use crate::broker::BrokerError;
use crate::cluster::txn_verify::TxnOperation;
use crate::log::LogError;
use crate::metadata::ControllerError;
use crate::metadata::election::ElectionError;
use crate::partition::PartitionError;
use crate::record::RecordError;
use crate::txn::markers::MarkerError;

pub fn record_error(e: &RecordError) -> ResponseError {
    match e {
        RecordError::CorruptMessage { .. } => ResponseError::CorruptMessage,
        // Kafka 4 dropped magic 0 and 1; for Produce v3+ it answers INVALID_RECORD.
        RecordError::InvalidRecord { .. } | RecordError::UnsupportedMagic { .. } => ResponseError::InvalidRecord,
        RecordError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
    }
}

pub fn log_error(e: &LogError) -> ResponseError {
    match e {
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        LogError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        LogError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        LogError::InvalidTxnState { .. } => ResponseError::InvalidTxnState,
        LogError::CoordinatorFenced { .. } => ResponseError::TransactionCoordinatorFenced,
        LogError::InvalidRecords(r) => record_error(r),
        _ => ResponseError::KafkaStorageError,
    }
}

pub fn partition_error(e: &PartitionError) -> ResponseError {
    match e {
        PartitionError::Log(l) => log_error(l),
        PartitionError::OffsetBeyondHighWatermark { .. } => ResponseError::OffsetOutOfRange,
        PartitionError::NotLeader | PartitionError::NotAReplica(_) | PartitionError::StaleFetch(_) => ResponseError::NotLeaderOrFollower,
    }
}

pub fn controller_error(e: &ControllerError) -> ResponseError {
    match e {
        ControllerError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
        ControllerError::InvalidTopic(_) => ResponseError::InvalidTopicException,
        ControllerError::UnknownTopic => ResponseError::UnknownTopicOrPartition,
        ControllerError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        ControllerError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        ControllerError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
        ControllerError::InvalidConfig(_) => ResponseError::InvalidConfig,
        ControllerError::TopicDeletionDisabled => ResponseError::TopicDeletionDisabled,
        ControllerError::Store(s) => store_error(s),
        ControllerError::Forwarded { code, .. } => ResponseError::try_from_code(*code).unwrap_or(ResponseError::UnknownServerError),
    }
}

pub fn reassign_error(e: &crate::metadata::reassignment::ReassignError) -> ResponseError {
    use crate::metadata::reassignment::ReassignError;
    match e {
        ReassignError::UnknownTopicOrPartition(_) => ResponseError::UnknownTopicOrPartition,
        ReassignError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
        ReassignError::NoReassignmentInProgress => ResponseError::NoReassignmentInProgress,
        ReassignError::InvalidReplicationFactor { .. } => ResponseError::InvalidReplicationFactor,
    }
}

pub fn store_error(e: &crate::metadata::store::StoreError) -> ResponseError {
    use crate::metadata::store::StoreError;
    match e {
        StoreError::NotController { .. } => ResponseError::NotController,
        StoreError::Timeout(_) => ResponseError::RequestTimedOut,
        StoreError::Io { .. } | StoreError::Encode(_) => ResponseError::KafkaStorageError,
    }
}

pub fn election_error(e: &ElectionError) -> ResponseError {
    match e {
        ElectionError::UnknownTopicOrPartition(_) => ResponseError::UnknownTopicOrPartition,
        ElectionError::ElectionNotNeeded => ResponseError::ElectionNotNeeded,
        ElectionError::PreferredLeaderNotAvailable => ResponseError::PreferredLeaderNotAvailable,
        ElectionError::EligibleLeadersNotAvailable => ResponseError::EligibleLeadersNotAvailable,
    }
}

pub fn broker_error(e: &BrokerError) -> ResponseError {
    match e {
        BrokerError::Controller(c) => controller_error(c),
        BrokerError::Partition(p) => partition_error(p),
        BrokerError::Io { .. } => ResponseError::KafkaStorageError,
    }
}

/// PRODUCER_FENCED for a client older than `min_version` of the API is INVALID_PRODUCER_EPOCH,
/// the code it knows (KIP-588), as Kafka answers it.
pub fn fenced_for_version(e: ResponseError, version: i16, min_version: i16) -> ResponseError {
    if e == ResponseError::ProducerFenced && version < min_version { ResponseError::InvalidProducerEpoch } else { e }
}

/// A failed transaction verification as Produce answers it (Kafka's `ReplicaManager`): a
/// coordinator that could not answer becomes NOT_ENOUGH_REPLICAS, which every client version
/// retries without a metadata refresh (CONCURRENT_TRANSACTIONS too, except for a version 2
/// client, whose partitions the coordinator adds: that error is common while its previous
/// transaction completes, and it retries it), and the refusals carry Kafka's messages.
pub fn produce_verification_error(e: ResponseError, op: TxnOperation) -> (ResponseError, Option<String>) {
    use ResponseError as E;
    let e = verification_error(e, op.knows_abortable());
    let underlying = match e {
        E::NetworkException => "NETWORK_EXCEPTION",
        E::CoordinatorLoadInProgress => "COORDINATOR_LOAD_IN_PROGRESS",
        E::CoordinatorNotAvailable => "COORDINATOR_NOT_AVAILABLE",
        E::NotCoordinator => "NOT_COORDINATOR",
        E::ConcurrentTransactions if !op.adds() => "CONCURRENT_TRANSACTIONS",
        E::InvalidTxnState => return (e, Some("Partition was not added to the transaction".into())),
        other => return (other, None),
    };
    (E::NotEnoughReplicas, Some(format!("Unable to verify the partition has been added to the transaction. Underlying error: {underlying}")))
}

/// A failed transaction verification as TxnOffsetCommit answers it, through the group
/// coordinator's error mapping (Kafka 4.x `CoordinatorOperationExceptionHelper`): an
/// unreachable transaction coordinator (NETWORK_EXCEPTION) is COORDINATOR_LOAD_IN_PROGRESS, so
/// the client retries without looking the coordinator up again; a missing partition, too few
/// replicas or a timeout is COORDINATOR_NOT_AVAILABLE; the rest as they are.
pub fn offset_commit_verification_error(e: ResponseError, op: TxnOperation) -> ResponseError {
    use ResponseError as E;
    match verification_error(e, op.knows_abortable()) {
        E::NetworkException => E::CoordinatorLoadInProgress,
        E::UnknownTopicOrPartition | E::NotEnoughReplicas | E::RequestTimedOut => E::CoordinatorNotAvailable,
        E::NotLeaderOrFollower | E::KafkaStorageError => E::NotCoordinator,
        other => other,
    }
}

/// A failed KIP-890 verification as the producer must see it (Kafka's
/// `AddPartitionsToTxnManager`): PRODUCER_FENCED is INVALID_PRODUCER_EPOCH, and a partition
/// not in the transaction is TRANSACTION_ABORTABLE only for clients that know it, else
/// INVALID_TXN_STATE.
pub fn verification_error(e: ResponseError, knows_abortable: bool) -> ResponseError {
    match e {
        ResponseError::ProducerFenced => ResponseError::InvalidProducerEpoch,
        ResponseError::TransactionAbortable if !knows_abortable => ResponseError::InvalidTxnState,
        other => other,
    }
}

/// Why a marker was not written, for WriteTxnMarkers.
pub fn marker_error(e: &MarkerError) -> ResponseError {
    match e {
        MarkerError::UnknownPartition => ResponseError::UnknownTopicOrPartition,
        MarkerError::Partition(p) => partition_error(p),
        MarkerError::Group(g) => *g,
        MarkerError::NotEnoughReplicas => ResponseError::NotEnoughReplicas,
        MarkerError::Replication(w) => match w {
            crate::partition::ReplicationWait::NotLeader => ResponseError::NotLeaderOrFollower,
            crate::partition::ReplicationWait::TimedOut => ResponseError::RequestTimedOut,
            crate::partition::ReplicationWait::BelowMinIsr => ResponseError::NotEnoughReplicasAfterAppend,
        },
    }
}

/// A message for the response, for errors whose text helps the user.
pub fn message(e: &impl std::fmt::Display) -> Option<kafka_protocol::protocol::StrBytes> {
    Some(super::str_bytes(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::txn_verify::TxnOperation;

    /// TxnOffsetCommit's verification errors as Kafka 4.x's group coordinator maps them.
    #[test]
    fn txn_offset_commit_verification_errors_are_kafkas() {
        use ResponseError as E;
        let op = TxnOperation::of_txn_offset_commit(5);
        for (from, to) in [
            (E::NetworkException, E::CoordinatorLoadInProgress),
            (E::CoordinatorLoadInProgress, E::CoordinatorLoadInProgress),
            (E::NotEnoughReplicas, E::CoordinatorNotAvailable),
            (E::RequestTimedOut, E::CoordinatorNotAvailable),
            (E::NotLeaderOrFollower, E::NotCoordinator),
            (E::CoordinatorNotAvailable, E::CoordinatorNotAvailable),
            (E::ConcurrentTransactions, E::ConcurrentTransactions),
            (E::ProducerFenced, E::InvalidProducerEpoch),
        ] {
            assert_eq!(offset_commit_verification_error(from, op), to, "{from:?}");
        }
        assert_eq!(offset_commit_verification_error(E::TransactionAbortable, TxnOperation::of_txn_offset_commit(3)), E::InvalidTxnState);
    }
}
