//! Transaction verification across nodes (KIP-890, Kafka's `AddPartitionsToTxnManager`):
//! before a transactional write opens a transaction in a partition this node leads, the
//! producer's transaction coordinator must confirm that the partition is in the transaction
//! (part 1, [`TxnOperation::DefaultError`] and [`TxnOperation::GenericErrorSupported`]), or,
//! for a transactions version 2 client (Produce v12+, TxnOffsetCommit v5), add it
//! ([`TxnOperation::AddPartition`]: the client sends no AddPartitionsToTxn of its own). The
//! coordinator on this node answers directly (an added partition once its state is
//! replicated); one on another node is asked with AddPartitionsToTxn v4-5, `verify_only` set
//! unless adding, at the leader of the transactional id's `__transaction_state` partition in
//! the metadata image. A request whose partitions all need it costs one round trip.
//!
//! Errors are the coordinator's, per partition; a coordinator that cannot be reached answers
//! NETWORK_EXCEPTION for all of them and one the image names no leader for
//! COORDINATOR_NOT_AVAILABLE. The callers translate them for their clients.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::{AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, ProducerId, TopicName, TransactionalId};
use kafka_protocol::protocol::StrBytes;

use super::peers::PeerClients;
use crate::broker::Broker;
use crate::txn::{TRANSACTION_STATE_TOPIC, TransactionCoordinator, TxnVersion};
use crate::types::{NodeId, TopicPartition};

/// The first AddPartitionsToTxn version with the batched, broker-to-broker form.
const VERIFY_VERSION: i16 = 4;
/// The newest AddPartitionsToTxn version (v5: TRANSACTION_ABORTABLE is known), what Kafka's
/// brokers send.
const LATEST_VERSION: i16 = 5;

/// What a transactional write asks of the coordinator, from its API version (Kafka's
/// `AddPartitionsToTxnManager.TransactionSupportedOperation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnOperation {
    /// Verify; the client does not know TRANSACTION_ABORTABLE (Produce <= v10,
    /// TxnOffsetCommit <= v3).
    DefaultError,
    /// Verify; the client knows TRANSACTION_ABORTABLE (Produce v11, TxnOffsetCommit v4).
    GenericErrorSupported,
    /// Add the partition to the transaction (transactions version 2: Produce v12+,
    /// TxnOffsetCommit v5+).
    AddPartition,
}

impl TxnOperation {
    pub fn of_produce(version: i16) -> Self {
        match version {
            v if v > 11 => TxnOperation::AddPartition,
            11 => TxnOperation::GenericErrorSupported,
            _ => TxnOperation::DefaultError,
        }
    }

    pub fn of_txn_offset_commit(version: i16) -> Self {
        match version {
            v if v > 4 => TxnOperation::AddPartition,
            4 => TxnOperation::GenericErrorSupported,
            _ => TxnOperation::DefaultError,
        }
    }

    /// The partition is added, not only verified (Kafka's `supportsEpochBump`); done even
    /// with `transaction.partition.verification.enable=false`, as in Kafka.
    pub fn adds(self) -> bool {
        self == TxnOperation::AddPartition
    }

    /// The client knows TRANSACTION_ABORTABLE.
    pub fn knows_abortable(self) -> bool {
        self != TxnOperation::DefaultError
    }
}

pub struct TxnVerifier {
    broker: Arc<Broker>,
    txns: Arc<TransactionCoordinator>,
    peers: PeerClients,
}

impl TxnVerifier {
    pub fn new(broker: Arc<Broker>, txns: Arc<TransactionCoordinator>) -> Self {
        let peers = PeerClients::new(broker.clone(), "txn-verify");
        Self { broker, txns, peers }
    }

    /// Whether each of `partitions` is in the open transaction of `transactional_id` with
    /// this producer id and epoch, as its coordinator says; with [`TxnOperation::AddPartition`]
    /// the coordinator adds them first (transactions version 2).
    pub async fn verify(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[TopicPartition],
        op: TxnOperation,
    ) -> Vec<Result<(), ResponseError>> {
        let local = if op.adds() {
            let set: BTreeSet<TopicPartition> = partitions.iter().cloned().collect();
            let added = self.txns.add_partitions(transactional_id, producer_id, epoch, &set, TxnVersion::V2);
            let added = match added {
                Ok(()) => self.replicated(transactional_id).await,
                Err(e) => Err(e),
            };
            partitions.iter().map(|_| added).collect()
        } else {
            self.txns.verify_partitions(transactional_id, producer_id, epoch, partitions)
        };
        let not_here = local.iter().all(|r| *r == Err(ResponseError::NotCoordinator));
        if !not_here || self.broker.cluster().is_none() {
            return local;
        }
        let Some(coordinator) = self.coordinator_of(transactional_id) else {
            return partitions.iter().map(|_| Err(ResponseError::CoordinatorNotAvailable)).collect();
        };
        if coordinator.0 == self.broker.node_id {
            // The image names this node, which has not loaded the partition yet.
            return local;
        }
        match self.ask(coordinator, transactional_id, producer_id, epoch, partitions, op).await {
            Ok(answers) => answers,
            Err(reason) => {
                tracing::warn!(coordinator = coordinator.0, %reason, "transaction verification failed");
                partitions.iter().map(|_| Err(ResponseError::NetworkException)).collect()
            }
        }
    }

    /// Waits until what this node's coordinator wrote for `transactional_id` is replicated.
    async fn replicated(&self, transactional_id: &str) -> Result<(), ResponseError> {
        match self.txns.write_barrier(transactional_id) {
            Some(barrier) => barrier.replicated(self.txns.write_timeout()).await,
            None => Err(ResponseError::NotCoordinator),
        }
    }

    /// The leader of the transactional id's `__transaction_state` partition.
    fn coordinator_of(&self, transactional_id: &str) -> Option<NodeId> {
        let partition = self.txns.partition_for(transactional_id);
        let image = self.broker.image();
        let reg = image.topic(TRANSACTION_STATE_TOPIC)?.partition(partition)?;
        reg.leader.filter(|_| !reg.is_unknown())
    }

    async fn ask(
        &self,
        coordinator: NodeId,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[TopicPartition],
        op: TxnOperation,
    ) -> Result<Vec<Result<(), ResponseError>>, String> {
        let client = self.peers.client(coordinator)?;
        let req = request(transactional_id, producer_id, epoch, partitions, !op.adds());
        let (version, response) = client.call(&req, LATEST_VERSION).await.map_err(|e| e.to_string())?;
        if version < VERIFY_VERSION {
            // A coordinator without the broker form cannot verify: Kafka skips the check.
            return Ok(partitions.iter().map(|_| Ok(())).collect());
        }
        if let Some(e) = ResponseError::try_from_code(response.error_code) {
            // Clients must not see CLUSTER_AUTHORIZATION_FAILED for a broker's request.
            let e = if e == ResponseError::ClusterAuthorizationFailed { ResponseError::InvalidTxnState } else { e };
            return Ok(partitions.iter().map(|_| Err(e)).collect());
        }
        let mut errors: HashMap<TopicPartition, ResponseError> = HashMap::new();
        for txn in response.results_by_transaction.iter().filter(|t| t.transactional_id.as_str() == transactional_id) {
            for topic in &txn.topic_results {
                for p in &topic.results_by_partition {
                    if let Some(e) = ResponseError::try_from_code(p.partition_error_code) {
                        errors.insert(TopicPartition::new(topic.name.to_string(), p.partition_index), e);
                    }
                }
            }
        }
        // A partition the answer does not fault is verified, as in Kafka.
        Ok(partitions.iter().map(|tp| errors.get(tp).map_or(Ok(()), |e| Err(*e))).collect())
    }
}

/// The AddPartitionsToTxn request for `partitions`, verify-only or adding them.
fn request(transactional_id: &str, producer_id: i64, epoch: i16, partitions: &[TopicPartition], verify_only: bool) -> AddPartitionsToTxnRequest {
    let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
    for tp in partitions {
        match topics.iter_mut().find(|t| t.name.as_str() == tp.topic) {
            Some(t) => t.partitions.push(tp.partition.0),
            None => {
                let mut t = AddPartitionsToTxnTopic::default();
                t.name = TopicName(StrBytes::from_string(tp.topic.clone()));
                t.partitions.push(tp.partition.0);
                topics.push(t);
            }
        }
    }
    let mut txn = AddPartitionsToTxnTransaction::default();
    txn.transactional_id = TransactionalId(StrBytes::from_string(transactional_id.to_string()));
    txn.producer_id = ProducerId(producer_id);
    txn.producer_epoch = epoch;
    txn.verify_only = verify_only;
    txn.topics = topics;
    let mut req = AddPartitionsToTxnRequest::default();
    req.transactions = vec![txn];
    req
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_request_groups_partitions_by_topic() {
        let tps = [TopicPartition::new("a", 0), TopicPartition::new("b", 2), TopicPartition::new("a", 1)];
        let r = request("tx", 7, 3, &tps, true);
        assert_eq!(r.transactions.len(), 1);
        let t = &r.transactions[0];
        assert!(t.verify_only);
        assert!(!request("tx", 7, 3, &tps, false).transactions[0].verify_only, "a version 2 client's partitions are added");
        assert_eq!((t.producer_id.0, t.producer_epoch, t.transactional_id.as_str()), (7, 3, "tx"));
        let by_topic: Vec<(&str, Vec<i32>)> = t.topics.iter().map(|t| (t.name.as_str(), t.partitions.clone())).collect();
        assert_eq!(by_topic, vec![("a", vec![0, 1]), ("b", vec![2])]);
    }

    /// Kafka's `produceRequestVersionToTransactionSupportedOperation` and
    /// `txnOffsetCommitRequestVersionToTransactionSupportedOperation`.
    #[test]
    fn the_operation_follows_the_request_version() {
        use TxnOperation as O;
        let produce: Vec<O> = (9..=13).map(TxnOperation::of_produce).collect();
        assert_eq!(produce, vec![O::DefaultError, O::DefaultError, O::GenericErrorSupported, O::AddPartition, O::AddPartition]);
        let commit: Vec<O> = (3..=5).map(TxnOperation::of_txn_offset_commit).collect();
        assert_eq!(commit, vec![O::DefaultError, O::GenericErrorSupported, O::AddPartition]);
        assert!(O::AddPartition.adds() && !O::GenericErrorSupported.adds());
        assert!(O::GenericErrorSupported.knows_abortable() && !O::DefaultError.knows_abortable());
    }
}
