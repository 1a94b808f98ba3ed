//! OffsetCommit: appended to `__consumer_offsets` and replicated (the high watermark past it)
//! before the answer.

use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::Api;
use crate::group::OffsetCommit;

pub async fn handle(api: &Api, version: i16, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let commits: Vec<OffsetCommit> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| OffsetCommit {
                topic: t.name.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if version >= 6 { p.committed_leader_epoch } else { -1 },
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            })
        })
        .collect();
    let instance = req.group_instance_id.as_ref().map(|s| s.to_string());
    let outcome = api.groups.commit_offsets(
        req.group_id.as_str(),
        req.member_id.as_str(),
        instance.as_deref(),
        req.generation_id_or_member_epoch,
        commits,
    );
    let outcome = match outcome {
        Ok(results) if results.iter().any(Result::is_ok) => match super::replicated(api, req.group_id.as_str()).await {
            Ok(()) => Ok(results),
            Err(e) => Ok(results.into_iter().map(|r| r.and(Err(e))).collect()),
        },
        other => other,
    };
    let mut results = match &outcome {
        Ok(r) => r.clone().into_iter(),
        Err(_) => Vec::new().into_iter(),
    };
    let mut r = OffsetCommitResponse::default();
    for t in req.topics {
        let mut tr = OffsetCommitResponseTopic::default();
        tr.name = t.name.clone();
        for p in t.partitions {
            let mut pr = OffsetCommitResponsePartition::default();
            pr.partition_index = p.partition_index;
            pr.error_code = match &outcome {
                Err(e) => e.code(),
                Ok(_) => results.next().and_then(|x| x.err()).map(|e| e.code()).unwrap_or(0),
            };
            tr.partitions.push(pr);
        }
        r.topics.push(tr);
    }
    r
}
