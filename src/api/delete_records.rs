//! DeleteRecords: move partitions' log start offsets forward (never past the high watermark).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::{Api, errors};
use crate::types::{Offset, TopicPartition};

pub fn handle(api: &Api, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut r = DeleteRecordsResponse::default();
    for t in req.topics {
        let mut tr = DeleteRecordsTopicResult::default();
        tr.name = t.name.clone();
        for p in t.partitions {
            let mut pr = DeleteRecordsPartitionResult::default();
            pr.partition_index = p.partition_index;
            pr.low_watermark = -1;
            match api.broker.partition(&TopicPartition::new(t.name.as_str(), p.partition_index)) {
                None => pr.error_code = ResponseError::UnknownTopicOrPartition.code(),
                Some(part) if p.offset < -1 => {
                    let _ = part;
                    pr.error_code = ResponseError::OffsetOutOfRange.code();
                }
                // -1: up to the high watermark.
                Some(part) => match part.delete_records_before((p.offset >= 0).then_some(Offset(p.offset)), api.broker.clock.now_ms()) {
                    Ok(low) => pr.low_watermark = low.0,
                    Err(e) => pr.error_code = errors::partition_error(&e).code(),
                },
            }
            tr.partitions.push(pr);
        }
        r.topics.push(tr);
    }
    r
}
