//! ListOffsets: earliest, latest, max-timestamp and by-timestamp offsets of partitions.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{Api, errors};
use crate::types::TopicPartition;

pub const LATEST_TIMESTAMP: i64 = -1;
pub const EARLIEST_TIMESTAMP: i64 = -2;
pub const MAX_TIMESTAMP: i64 = -3;
pub const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;
pub const EARLIEST_PENDING_UPLOAD_TIMESTAMP: i64 = -5;
pub const LATEST_TIERED_TIMESTAMP: i64 = -6;

pub fn handle(api: &Api, version: i16, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let read_committed = req.isolation_level == 1;
    let mut r = ListOffsetsResponse::default();
    for t in req.topics {
        let mut tr = ListOffsetsTopicResponse::default();
        tr.name = t.name.clone();
        for p in t.partitions {
            let mut pr = ListOffsetsPartitionResponse::default();
            pr.partition_index = p.partition_index;
            pr.timestamp = -1;
            pr.offset = -1;
            pr.leader_epoch = -1;
            match lookup(api, t.name.as_str(), p.partition_index, p.current_leader_epoch, p.timestamp, read_committed) {
                Ok(Some((offset, timestamp, epoch))) => {
                    pr.offset = offset;
                    pr.timestamp = timestamp;
                    // The field exists from v4; older versions must leave it at its default.
                    if version >= 4 {
                        pr.leader_epoch = epoch;
                    }
                }
                Ok(None) => {}
                Err(e) => pr.error_code = e.code(),
            }
            tr.partitions.push(pr);
        }
        r.topics.push(tr);
    }
    r
}

fn lookup(
    api: &Api,
    topic: &str,
    index: i32,
    current_leader_epoch: i32,
    timestamp: i64,
    read_committed: bool,
) -> Result<Option<(i64, i64, i32)>, ResponseError> {
    let partition = api
        .broker
        .partition(&TopicPartition::new(topic, index))
        .ok_or(ResponseError::UnknownTopicOrPartition)?;
    if !api.broker.leads(topic, index) {
        return Err(ResponseError::NotLeaderOrFollower);
    }
    let epoch = partition.leader_epoch().0;
    if current_leader_epoch > epoch {
        return Err(ResponseError::UnknownLeaderEpoch);
    }
    if current_leader_epoch >= 0 && current_leader_epoch < epoch {
        return Err(ResponseError::FencedLeaderEpoch);
    }
    Ok(match timestamp {
        LATEST_TIMESTAMP => {
            let offset = if read_committed { partition.last_stable_offset() } else { partition.high_watermark() };
            Some((offset.0, -1, epoch))
        }
        EARLIEST_TIMESTAMP | EARLIEST_LOCAL_TIMESTAMP => Some((partition.log_start_offset().0, -1, epoch)),
        MAX_TIMESTAMP => partition
            .offset_of_max_timestamp()
            .map_err(|e| errors::partition_error(&e))?
            .map(|t| (t.offset.0, t.timestamp_ms, epoch)),
        EARLIEST_PENDING_UPLOAD_TIMESTAMP | LATEST_TIERED_TIMESTAMP => None,
        ts if ts < 0 => return Err(ResponseError::InvalidRequest),
        ts => partition
            .offset_for_timestamp(ts)
            .map_err(|e| errors::partition_error(&e))?
            .map(|t| (t.offset.0, t.timestamp_ms, epoch)),
    })
}
