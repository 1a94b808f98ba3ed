//! WriteTxnMarkers: a transaction coordinator asks this node to write COMMIT/ABORT markers
//! into partitions it leads. They are written by the same writer this node's own coordinator
//! uses ([`crate::txn::markers::LocalMarkerWriter`]) and answered once replicated (Kafka
//! appends them with `acks=-1`, within `request.timeout.ms`), so an acknowledged marker
//! survives the loss of this leader.

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use super::{Api, errors};
use crate::txn::markers::TxnMarker;
use crate::types::TopicPartition;

pub async fn handle(api: &Api, req: WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
    let markers: Vec<TxnMarker> = req
        .markers
        .iter()
        .map(|m| TxnMarker {
            producer_id: m.producer_id.0,
            producer_epoch: m.producer_epoch,
            coordinator_epoch: m.coordinator_epoch,
            commit: m.transaction_result,
            partitions: m
                .topics
                .iter()
                .flat_map(|t| t.partition_indexes.iter().map(|p| TopicPartition::new(t.name.to_string(), *p)))
                .collect(),
        })
        .collect();
    let timeout = api.broker.config.settings().request_timeout;
    let results = api.markers.write_replicated(&markers, timeout).await;
    let mut r = WriteTxnMarkersResponse::default();
    for (m, results) in req.markers.iter().zip(results) {
        let mut mr = WritableTxnMarkerResult::default();
        mr.producer_id = m.producer_id;
        for (tp, result) in results {
            let mut pr = WritableTxnMarkerPartitionResult::default();
            pr.partition_index = tp.partition.0;
            pr.error_code = result.err().map_or(0, |e| errors::marker_error(&e).code());
            match mr.topics.iter_mut().find(|t: &&mut WritableTxnMarkerTopicResult| t.name.as_str() == tp.topic) {
                Some(t) => t.partitions.push(pr),
                None => {
                    let mut t = WritableTxnMarkerTopicResult::default();
                    t.name = TopicName(super::str_bytes(&tp.topic));
                    t.partitions.push(pr);
                    mr.topics.push(t);
                }
            }
        }
        r.markers.push(mr);
    }
    r
}
