//! OffsetForLeaderEpoch: the end offset of a leader epoch, from the leader-epoch cache.
//! Consumers use it to validate their position after a leader change (librdkafka asks v2).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::Api;
use crate::types::{LeaderEpoch, TopicPartition};

pub fn handle(api: &Api, req: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let mut r = OffsetForLeaderEpochResponse::default();
    for t in req.topics {
        let mut tr = OffsetForLeaderTopicResult::default();
        tr.topic = t.topic.clone();
        for p in t.partitions {
            let mut e = EpochEndOffset::default();
            e.partition = p.partition;
            e.leader_epoch = -1;
            e.end_offset = -1;
            match api.broker.partition(&TopicPartition::new(t.topic.as_str(), p.partition)) {
                None => e.error_code = ResponseError::UnknownTopicOrPartition.code(),
                Some(part) => {
                    let epoch = part.leader_epoch().0;
                    if p.current_leader_epoch > epoch {
                        e.error_code = ResponseError::UnknownLeaderEpoch.code();
                    } else if p.current_leader_epoch >= 0 && p.current_leader_epoch < epoch {
                        e.error_code = ResponseError::FencedLeaderEpoch.code();
                    } else {
                        let (leader_epoch, end_offset) = part.end_offset_for_epoch(LeaderEpoch(p.leader_epoch));
                        e.leader_epoch = leader_epoch.map_or(-1, |e| e.0);
                        e.end_offset = end_offset.0;
                    }
                }
            }
            tr.partitions.push(e);
        }
        r.topics.push(tr);
    }
    r
}
