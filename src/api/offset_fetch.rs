//! OffsetFetch: committed offsets of one group (v1-7) or several (v8+); -1 where none.
//! Offsets of an open transaction are not visible; with `require_stable` (v7+, what a
//! read_committed consumer sends) such a partition answers UNSTABLE_OFFSET_COMMIT, so the
//! consumer retries once the transaction is decided.

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};

use kafka_protocol::ResponseError;

use super::{Api, str_bytes};
use crate::group::CommittedOffset;

/// A partition's answer: its committed offset (if any), or UNSTABLE_OFFSET_COMMIT.
type Answer = Result<Option<CommittedOffset>, ResponseError>;
type Rows = Vec<(String, i32, Answer)>;

fn rows(api: &Api, group: &str, topics: Option<Vec<(String, Vec<i32>)>>, require_stable: bool) -> Rows {
    let partitions =
        topics.map(|ts| ts.into_iter().flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p))).collect());
    let pending = if require_stable { api.groups.pending_offsets(group) } else { Default::default() };
    api.groups
        .fetch_offsets(group, partitions)
        .into_iter()
        .map(|(t, p, c)| {
            let answer = if pending.contains(&(t.clone(), p)) { Err(ResponseError::UnstableOffsetCommit) } else { Ok(c) };
            (t, p, answer)
        })
        .collect()
}

type TopicRows = Vec<(String, Vec<(i32, Answer)>)>;

/// Rows grouped by topic, in first-seen order.
fn by_topic(rows: Rows) -> TopicRows {
    let mut out: TopicRows = Vec::new();
    for (t, p, c) in rows {
        match out.iter_mut().find(|(name, _)| *name == t) {
            Some((_, ps)) => ps.push((p, c)),
            None => out.push((t, vec![(p, c)])),
        }
    }
    out
}

pub fn handle(api: &Api, version: i16, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let mut r = OffsetFetchResponse::default();
    if version >= 8 {
        for g in req.groups {
            let topics = g.topics.map(|ts| ts.into_iter().map(|t| (t.name.to_string(), t.partition_indexes)).collect());
            let mut gr = OffsetFetchResponseGroup::default();
            gr.group_id = g.group_id.clone();
            if let Err(e) = api.groups.check_coordinator(g.group_id.as_str()) {
                gr.error_code = e.code();
                r.groups.push(gr);
                continue;
            }
            for (topic, parts) in by_topic(rows(api, g.group_id.as_str(), topics, req.require_stable)) {
                let mut tr = OffsetFetchResponseTopics::default();
                tr.name = TopicName(str_bytes(&topic));
                tr.partitions = parts
                    .into_iter()
                    .map(|(p, c)| {
                        let mut pr = OffsetFetchResponsePartitions::default();
                        pr.partition_index = p;
                        pr.error_code = c.as_ref().err().map_or(0, |e| e.code());
                        fill(&mut pr.committed_offset, &mut pr.committed_leader_epoch, &mut pr.metadata, c.unwrap_or(None));
                        pr
                    })
                    .collect();
                gr.topics.push(tr);
            }
            r.groups.push(gr);
        }
        return r;
    }
    if let Err(e) = api.groups.check_coordinator(req.group_id.as_str()) {
        // v2+ carry a top-level error; v1 only per partition.
        if version >= 2 {
            r.error_code = e.code();
            return r;
        }
    }
    let topics = req.topics.map(|ts| ts.into_iter().map(|t| (t.name.to_string(), t.partition_indexes)).collect());
    let require_stable = version >= 7 && req.require_stable;
    for (topic, parts) in by_topic(rows(api, req.group_id.as_str(), topics, require_stable)) {
        let mut tr = OffsetFetchResponseTopic::default();
        tr.name = TopicName(str_bytes(&topic));
        tr.partitions = parts
            .into_iter()
            .map(|(p, c)| {
                let mut pr = OffsetFetchResponsePartition::default();
                pr.partition_index = p;
                pr.error_code = c.as_ref().err().map_or(0, |e| e.code());
                fill(&mut pr.committed_offset, &mut pr.committed_leader_epoch, &mut pr.metadata, c.unwrap_or(None));
                if version < 5 {
                    pr.committed_leader_epoch = -1;
                }
                pr
            })
            .collect();
        r.topics.push(tr);
    }
    r
}

fn fill(offset: &mut i64, epoch: &mut i32, metadata: &mut Option<kafka_protocol::protocol::StrBytes>, c: Option<CommittedOffset>) {
    match c {
        Some(c) => {
            *offset = c.offset;
            *epoch = c.leader_epoch;
            *metadata = Some(str_bytes(&c.metadata));
        }
        None => {
            *offset = -1;
            *epoch = -1;
            *metadata = Some(str_bytes(""));
        }
    }
}
