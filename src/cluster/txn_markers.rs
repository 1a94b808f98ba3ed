//! How this node's transaction coordinator reaches partition leaders with its markers (the
//! transport of [`crate::txn::sender`]): a partition is routed to the leader the metadata
//! image names; markers for partitions led here are written by this node's
//! [`LocalMarkerWriter`], the others go to their leader as one WriteTxnMarkers request (v1,
//! the only version Kafka 4.x serves) over a [`NodeClient`] per destination, on its client
//! listener, as Kafka's `TransactionMarkerChannelManager` sends them over the inter-broker
//! listener. On a single node every partition of the image is led here.

use std::sync::Arc;

use futures::future::BoxFuture;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use super::peers::PeerClients;
use crate::txn::channel::Route;
use crate::txn::markers::{LocalMarkerWriter, TxnMarker};
use crate::txn::sender::{MarkerAnswer, MarkerTransport};
use crate::types::{NodeId, TopicPartition};

/// WriteTxnMarkers v1 (flexible; Kafka 4.x's floor and ceiling).
const WRITE_TXN_MARKERS_VERSION: i16 = 1;

pub struct BrokerMarkerTransport {
    broker: Arc<Broker>,
    local: Arc<LocalMarkerWriter>,
    peers: PeerClients,
}

impl BrokerMarkerTransport {
    pub fn new(broker: Arc<Broker>, local: Arc<LocalMarkerWriter>) -> Self {
        let peers = PeerClients::new(broker.clone(), "txn-markers");
        Self { broker, local, peers }
    }

    async fn send_remote(&self, destination: NodeId, markers: &[TxnMarker]) -> Result<MarkerAnswer, String> {
        let client = self.peers.client(destination)?;
        let (_, response) = client.call(&request(markers), WRITE_TXN_MARKERS_VERSION).await.map_err(|e| e.to_string())?;
        Ok(answer(markers, &response))
    }
}

impl MarkerTransport for BrokerMarkerTransport {
    fn route(&self, tp: &TopicPartition) -> Route {
        let image = self.broker.image();
        let Some(reg) = image.topic(&tp.topic).and_then(|t| t.partition(tp.partition.0)) else { return Route::Gone };
        if self.broker.cluster().is_none() {
            return Route::Leader(NodeId(self.broker.node_id));
        }
        match reg.leader {
            Some(leader) if !reg.is_unknown() => Route::Leader(leader),
            _ => Route::NoLeader,
        }
    }

    fn send(&self, destination: NodeId, markers: Vec<TxnMarker>) -> BoxFuture<'_, Result<MarkerAnswer, String>> {
        Box::pin(async move {
            if destination.0 != self.broker.node_id {
                return self.send_remote(destination, &markers).await;
            }
            let timeout = self.broker.config.settings().request_timeout;
            let written = self.local.write_replicated(&markers, timeout).await;
            Ok(written
                .into_iter()
                .map(|results| results.into_iter().map(|(tp, r)| (tp, r.err().map(|e| crate::api::errors::marker_error(&e)))).collect())
                .collect())
        })
    }

    fn route_changes(&self) -> Option<tokio::sync::watch::Receiver<i64>> {
        Some(self.broker.metadata_store().watch_applied())
    }
}

/// The WriteTxnMarkers request carrying `markers`.
pub fn request(markers: &[TxnMarker]) -> WriteTxnMarkersRequest {
    let mut req = WriteTxnMarkersRequest::default();
    req.markers = markers
        .iter()
        .map(|m| {
            let mut topics: Vec<WritableTxnMarkerTopic> = Vec::new();
            for tp in &m.partitions {
                match topics.iter_mut().find(|t| t.name.as_str() == tp.topic) {
                    Some(t) => t.partition_indexes.push(tp.partition.0),
                    None => {
                        let mut t = WritableTxnMarkerTopic::default();
                        t.name = TopicName(StrBytes::from_string(tp.topic.clone()));
                        t.partition_indexes.push(tp.partition.0);
                        topics.push(t);
                    }
                }
            }
            let mut w = WritableTxnMarker::default();
            w.producer_id = ProducerId(m.producer_id);
            w.producer_epoch = m.producer_epoch;
            w.transaction_result = m.commit;
            w.coordinator_epoch = m.coordinator_epoch;
            w.topics = topics;
            w
        })
        .collect();
    req
}

/// Each sent marker's partitions as the response answered them, matched by producer id as
/// Kafka's `errorsByProducerId` does; partitions the response leaves out are left out here
/// (the sender retries them).
pub fn answer(markers: &[TxnMarker], response: &WriteTxnMarkersResponse) -> MarkerAnswer {
    markers
        .iter()
        .map(|m| {
            let Some(r) = response.markers.iter().find(|r| r.producer_id.0 == m.producer_id) else { return Vec::new() };
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(move |p| (TopicPartition::new(t.name.to_string(), p.partition_index), p.error_code)))
                .filter(|(tp, _)| m.partitions.contains(tp))
                .map(|(tp, code)| (tp, if code == 0 { None } else { Some(ResponseError::try_from_code(code).unwrap_or(ResponseError::UnknownServerError)) }))
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::write_txn_markers_response::{WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult};

    fn marker(pid: i64, tps: &[(&str, i32)]) -> TxnMarker {
        TxnMarker { producer_id: pid, producer_epoch: 2, coordinator_epoch: 7, commit: true, partitions: tps.iter().map(|(t, p)| TopicPartition::new(*t, *p)).collect() }
    }

    #[test]
    fn markers_are_grouped_by_topic_in_the_request() {
        let req = request(&[marker(5, &[("a", 0), ("b", 1), ("a", 2)])]);
        let m = &req.markers[0];
        assert_eq!((m.producer_id.0, m.producer_epoch, m.transaction_result, m.coordinator_epoch), (5, 2, true, 7));
        let topics: Vec<(String, Vec<i32>)> = m.topics.iter().map(|t| (t.name.to_string(), t.partition_indexes.clone())).collect();
        assert_eq!(topics, vec![("a".to_string(), vec![0, 2]), ("b".to_string(), vec![1])]);
    }

    #[test]
    fn answers_are_matched_by_producer_id_and_unknown_partitions_ignored() {
        let markers = [marker(5, &[("a", 0), ("a", 1)]), marker(6, &[("b", 0)])];
        let mut resp = WriteTxnMarkersResponse::default();
        let mut r6 = WritableTxnMarkerResult::default();
        r6.producer_id = ProducerId(6);
        let mut t = WritableTxnMarkerTopicResult::default();
        t.name = TopicName(StrBytes::from_static_str("b"));
        let mut p = WritableTxnMarkerPartitionResult::default();
        p.error_code = ResponseError::NotLeaderOrFollower.code();
        t.partitions.push(p);
        r6.topics.push(t);
        let mut r5 = WritableTxnMarkerResult::default();
        r5.producer_id = ProducerId(5);
        let mut t = WritableTxnMarkerTopicResult::default();
        t.name = TopicName(StrBytes::from_static_str("a"));
        for (i, code) in [(1, 0), (9, 0)] {
            let mut p = WritableTxnMarkerPartitionResult::default();
            p.partition_index = i;
            p.error_code = code;
            t.partitions.push(p);
        }
        r5.topics.push(t);
        resp.markers = vec![r6, r5];
        let got = answer(&markers, &resp);
        assert_eq!(got[0], vec![(TopicPartition::new("a", 1), None)], "a-0 missing (retried), a-9 not asked for");
        assert_eq!(got[1], vec![(TopicPartition::new("b", 0), Some(ResponseError::NotLeaderOrFollower))]);
    }
}
