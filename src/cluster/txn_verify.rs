//! Transaction verification across nodes (KIP-890 part 1, Kafka's `AddPartitionsToTxnManager`):
//! before a transactional write opens a transaction in a partition this node leads, the
//! producer's transaction coordinator must confirm that the partition is in the transaction.
//! The coordinator on this node answers directly; one on another node is asked with
//! AddPartitionsToTxn v4, `verify_only` set, at the leader of the transactional id's
//! `__transaction_state` partition in the metadata image. A request whose partitions all
//! need it costs one round trip.
//!
//! Errors are the coordinator's, per partition; a coordinator that cannot be reached answers
//! NETWORK_EXCEPTION for all of them and one the image names no leader for
//! COORDINATOR_NOT_AVAILABLE. The callers translate them for their clients.

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::{AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, ProducerId, TopicName, TransactionalId};
use kafka_protocol::protocol::StrBytes;

use super::peers::PeerClients;
use crate::broker::Broker;
use crate::txn::{TRANSACTION_STATE_TOPIC, TransactionCoordinator};
use crate::types::{NodeId, TopicPartition};

/// The first AddPartitionsToTxn version with the batched, broker-to-broker form.
const VERIFY_VERSION: i16 = 4;

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
    /// this producer id and epoch, as its coordinator says.
    pub async fn verify(&self, transactional_id: &str, producer_id: i64, epoch: i16, partitions: &[TopicPartition]) -> Vec<Result<(), ResponseError>> {
        let local = self.txns.verify_partitions(transactional_id, producer_id, epoch, partitions);
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
        match self.ask(coordinator, transactional_id, producer_id, epoch, partitions).await {
            Ok(answers) => answers,
            Err(reason) => {
                tracing::warn!(coordinator = coordinator.0, %reason, "transaction verification failed");
                partitions.iter().map(|_| Err(ResponseError::NetworkException)).collect()
            }
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
    ) -> Result<Vec<Result<(), ResponseError>>, String> {
        let client = self.peers.client(coordinator)?;
        let (version, response) = client.call(&request(transactional_id, producer_id, epoch, partitions), VERIFY_VERSION).await.map_err(|e| e.to_string())?;
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

/// The verify-only AddPartitionsToTxn request for `partitions`.
fn request(transactional_id: &str, producer_id: i64, epoch: i16, partitions: &[TopicPartition]) -> AddPartitionsToTxnRequest {
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
    txn.verify_only = true;
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
    fn the_request_groups_partitions_by_topic_and_only_verifies() {
        let tps = [TopicPartition::new("a", 0), TopicPartition::new("b", 2), TopicPartition::new("a", 1)];
        let r = request("tx", 7, 3, &tps);
        assert_eq!(r.transactions.len(), 1);
        let t = &r.transactions[0];
        assert!(t.verify_only);
        assert_eq!((t.producer_id.0, t.producer_epoch, t.transactional_id.as_str()), (7, 3, "tx"));
        let by_topic: Vec<(&str, Vec<i32>)> = t.topics.iter().map(|t| (t.name.as_str(), t.partitions.clone())).collect();
        assert_eq!(by_topic, vec![("a", vec![0, 1]), ("b", vec![2])]);
    }
}
