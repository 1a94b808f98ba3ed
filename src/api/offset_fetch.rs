//! OffsetFetch: committed offsets of one group (v1-7) or several (v8+); -1 where none.

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};

use super::{Api, str_bytes};
use crate::group::CommittedOffset;

type Rows = Vec<(String, i32, Option<CommittedOffset>)>;

fn rows(api: &Api, group: &str, topics: Option<Vec<(String, Vec<i32>)>>) -> Rows {
    let partitions =
        topics.map(|ts| ts.into_iter().flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p))).collect());
    api.groups.fetch_offsets(group, partitions)
}

type TopicRows = Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>;

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
            for (topic, parts) in by_topic(rows(api, g.group_id.as_str(), topics)) {
                let mut tr = OffsetFetchResponseTopics::default();
                tr.name = TopicName(str_bytes(&topic));
                tr.partitions = parts
                    .into_iter()
                    .map(|(p, c)| {
                        let mut pr = OffsetFetchResponsePartitions::default();
                        pr.partition_index = p;
                        fill(&mut pr.committed_offset, &mut pr.committed_leader_epoch, &mut pr.metadata, c);
                        pr
                    })
                    .collect();
                gr.topics.push(tr);
            }
            r.groups.push(gr);
        }
        return r;
    }
    let topics = req.topics.map(|ts| ts.into_iter().map(|t| (t.name.to_string(), t.partition_indexes)).collect());
    for (topic, parts) in by_topic(rows(api, req.group_id.as_str(), topics)) {
        let mut tr = OffsetFetchResponseTopic::default();
        tr.name = TopicName(str_bytes(&topic));
        tr.partitions = parts
            .into_iter()
            .map(|(p, c)| {
                let mut pr = OffsetFetchResponsePartition::default();
                pr.partition_index = p;
                fill(&mut pr.committed_offset, &mut pr.committed_leader_epoch, &mut pr.metadata, c);
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
