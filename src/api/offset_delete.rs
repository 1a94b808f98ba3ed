//! OffsetDelete: drop committed offsets of partitions the group does not consume.

use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use super::Api;

pub async fn handle(api: &Api, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let partitions: Vec<(String, i32)> =
        req.topics.iter().flat_map(|t| t.partitions.iter().map(move |p| (t.name.to_string(), p.partition_index))).collect();
    let mut r = OffsetDeleteResponse::default();
    let deleted = match api.groups.delete_offsets(req.group_id.as_str(), partitions) {
        Ok(results) => super::replicated(api, req.group_id.as_str()).await.map(|()| results),
        Err(e) => Err(e),
    };
    let results = match deleted {
        Ok(results) => results,
        Err(e) => {
            r.error_code = e.code();
            return r;
        }
    };
    let mut results = results.into_iter();
    for t in req.topics {
        let mut tr = OffsetDeleteResponseTopic::default();
        tr.name = t.name.clone();
        for p in t.partitions {
            let mut pr = OffsetDeleteResponsePartition::default();
            pr.partition_index = p.partition_index;
            pr.error_code = results.next().and_then(|x| x.err()).map(|e| e.code()).unwrap_or(0);
            tr.partitions.push(pr);
        }
        r.topics.push(tr);
    }
    r
}
