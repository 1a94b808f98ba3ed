//! DescribeProducers: the producers a partition's log knows (`kafka-transactions
//! describe-producers`, `find-hanging`, `abort`): id, epoch, last sequence and timestamp, the
//! coordinator epoch of the last marker and the start offset of the open transaction.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use super::Api;
use crate::types::TopicPartition;

pub fn handle(api: &Api, req: DescribeProducersRequest) -> DescribeProducersResponse {
    let mut r = DescribeProducersResponse::default();
    for t in req.topics {
        let mut tr = TopicResponse::default();
        for index in t.partition_indexes {
            let mut pr = PartitionResponse::default();
            pr.partition_index = index;
            match api.broker.partition(&TopicPartition::new(t.name.as_str(), index)) {
                None => pr.error_code = ResponseError::UnknownTopicOrPartition.code(),
                Some(p) => {
                    pr.active_producers = p
                        .producers()
                        .into_iter()
                        .map(|(pid, e)| {
                            let mut s = ProducerState::default();
                            s.producer_id = ProducerId(pid.0);
                            s.producer_epoch = i32::from(e.epoch);
                            s.last_sequence = e.batches.back().map_or(-1, |b| b.last_seq);
                            s.last_timestamp = e.last_timestamp;
                            s.coordinator_epoch = e.coordinator_epoch;
                            s.current_txn_start_offset = e.current_txn_first_offset.map_or(-1, |o| o.0);
                            s
                        })
                        .collect();
                }
            }
            tr.partitions.push(pr);
        }
        tr.name = t.name;
        r.topics.push(tr);
    }
    r
}
