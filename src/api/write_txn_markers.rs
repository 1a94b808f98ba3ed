//! WriteTxnMarkers: a transaction coordinator asks this node to write COMMIT/ABORT markers
//! into partitions it leads, through the same writer the local coordinator uses
//! ([`crate::txn::markers::LocalMarkerWriter`]).

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use super::{Api, errors};
use crate::txn::markers::{MarkerWriter, TxnMarker};
use crate::types::TopicPartition;

pub fn handle(api: &Api, req: WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
    let mut r = WriteTxnMarkersResponse::default();
    for m in req.markers {
        let marker = TxnMarker {
            producer_id: m.producer_id.0,
            producer_epoch: m.producer_epoch,
            coordinator_epoch: m.coordinator_epoch,
            commit: m.transaction_result,
            partitions: m
                .topics
                .iter()
                .flat_map(|t| t.partition_indexes.iter().map(|p| TopicPartition::new(t.name.to_string(), *p)))
                .collect(),
        };
        let mut mr = WritableTxnMarkerResult::default();
        mr.producer_id = m.producer_id;
        for (tp, result) in api.markers.write_markers(&marker) {
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
