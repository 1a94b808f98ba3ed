//! The error codes of a response, for `blumfeld_request_errors_total`: Kafka counts every code
//! a response carries (one per partition for Produce and Fetch, per topic or resource for the
//! admin APIs, the top-level one otherwise), `NONE` included.

use kafka_protocol::messages::ResponseKind;

/// Calls `f` with each error code in `response`.
pub fn for_each(response: &ResponseKind, mut f: impl FnMut(i16)) {
    use ResponseKind as S;
    match response {
        S::Produce(r) => r.responses.iter().flat_map(|t| &t.partition_responses).for_each(|p| f(p.error_code)),
        S::Fetch(r) => {
            if r.error_code != 0 || r.responses.is_empty() {
                f(r.error_code);
            }
            r.responses.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
        }
        S::ListOffsets(r) => r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code)),
        S::Metadata(r) => r.topics.iter().for_each(|t| f(t.error_code)),
        S::ApiVersions(r) => f(r.error_code),
        S::CreateTopics(r) => r.topics.iter().for_each(|t| f(t.error_code)),
        S::DeleteTopics(r) => r.responses.iter().for_each(|t| f(t.error_code)),
        S::DeleteRecords(r) => r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code)),
        S::InitProducerId(r) => f(r.error_code),
        S::OffsetForLeaderEpoch(r) => r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code)),
        S::DescribeConfigs(r) => r.results.iter().for_each(|x| f(x.error_code)),
        S::CreatePartitions(r) => r.results.iter().for_each(|x| f(x.error_code)),
        S::IncrementalAlterConfigs(r) => r.responses.iter().for_each(|x| f(x.error_code)),
        S::AlterConfigs(r) => r.responses.iter().for_each(|x| f(x.error_code)),
        S::DescribeCluster(r) => f(r.error_code),
        S::UpdateFeatures(r) => {
            f(r.error_code);
            r.results.iter().for_each(|x| f(x.error_code));
        }
        S::FindCoordinator(r) => {
            if r.coordinators.is_empty() {
                f(r.error_code)
            } else {
                r.coordinators.iter().for_each(|c| f(c.error_code))
            }
        }
        _ => {}
    }
}
