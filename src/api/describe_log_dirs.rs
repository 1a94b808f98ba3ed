//! DescribeLogDirs, v1-4: the log directories of this broker and the partitions each holds,
//! with their size. Blumfeld keeps every partition in one directory (`log.dirs`), so there is
//! one result; no replica is ever moving between directories (`is_future_key` false, offset
//! lag 0), and the volume's total and usable bytes are Kafka's "unknown" (-1).
//! `kafka-reassign-partitions --execute` asks it to print the current assignment.

use kafka_protocol::messages::describe_log_dirs_response::{DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};

use super::{Api, str_bytes};

/// Kafka's value for volume sizes it does not report.
const UNKNOWN_VOLUME_BYTES: i64 = -1;

pub fn handle(api: &Api, req: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let mut partitions = api.broker.partitions();
    partitions.sort_by(|a, b| (&a.tp.topic, a.tp.partition.0).cmp(&(&b.tp.topic, b.tp.partition.0)));
    let wanted = |topic: &str, index: i32| match &req.topics {
        None => true,
        Some(topics) => topics.iter().any(|t| t.topic.as_str() == topic && t.partitions.contains(&index)),
    };
    let mut result = DescribeLogDirsResult::default();
    result.log_dir = str_bytes(&api.broker.data_dir().display().to_string());
    result.total_bytes = UNKNOWN_VOLUME_BYTES;
    result.usable_bytes = UNKNOWN_VOLUME_BYTES;
    for p in partitions.iter().filter(|p| wanted(&p.tp.topic, p.tp.partition.0)) {
        let mut out = DescribeLogDirsPartition::default();
        out.partition_index = p.tp.partition.0;
        out.partition_size = i64::try_from(p.size_bytes()).unwrap_or(i64::MAX);
        match result.topics.last_mut() {
            Some(t) if t.name.as_str() == p.tp.topic => t.partitions.push(out),
            _ => {
                let mut t = DescribeLogDirsTopic::default();
                t.name = TopicName(str_bytes(&p.tp.topic));
                t.partitions.push(out);
                result.topics.push(t);
            }
        }
    }
    let mut r = DescribeLogDirsResponse::default();
    r.results = vec![result];
    r
}
