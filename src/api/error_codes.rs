//! The error codes of a response, for `blumfeld_request_errors_total`: the codes Kafka's
//! `AbstractResponse.errorCounts()` of each response class counts, `NONE` included (one per
//! partition for Produce, Fetch and OffsetCommit, per topic or resource for the admin APIs,
//! per group for the describe and delete group APIs, the top-level code otherwise).
//!
//! `ResponseKind` is `#[non_exhaustive]`, so the match cannot be checked by the compiler; a
//! kind not listed here answers [`Listed::No`], and `api::tests` holds every served API to
//! being listed, so an API added to the version table without counting fails a test.

use kafka_protocol::messages::ResponseKind;

/// Whether [`for_each`] knows the response kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    Yes,
    No,
}

/// Calls `f` with each error code in `response`.
pub fn for_each(response: &ResponseKind, mut f: impl FnMut(i16)) -> Listed {
    use ResponseKind as S;
    match response {
        S::Produce(r) => r.responses.iter().flat_map(|t| &t.partition_responses).for_each(|p| f(p.error_code)),
        S::Fetch(r) => {
            f(r.error_code);
            r.responses.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
        }
        S::ListOffsets(r) => r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code)),
        S::Metadata(r) => r.topics.iter().for_each(|t| {
            t.partitions.iter().for_each(|p| f(p.error_code));
            f(t.error_code);
        }),
        S::ApiVersions(r) => f(r.error_code),
        S::CreateTopics(r) => r.topics.iter().for_each(|t| f(t.error_code)),
        S::DeleteTopics(r) => r.responses.iter().for_each(|t| f(t.error_code)),
        S::DeleteRecords(r) => r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code)),
        S::InitProducerId(r) => f(r.error_code),
        S::OffsetForLeaderEpoch(r) => r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code)),
        S::DescribeConfigs(r) => r.results.iter().for_each(|x| f(x.error_code)),
        S::CreatePartitions(r) => r.results.iter().for_each(|x| f(x.error_code)),
        S::ElectLeaders(r) => {
            f(r.error_code);
            r.replica_election_results.iter().flat_map(|t| &t.partition_result).for_each(|p| f(p.error_code));
        }
        S::IncrementalAlterConfigs(r) => r.responses.iter().for_each(|x| f(x.error_code)),
        S::AlterConfigs(r) => r.responses.iter().for_each(|x| f(x.error_code)),
        S::DescribeCluster(r) => f(r.error_code),
        S::DescribeTopicPartitions(r) => r.topics.iter().for_each(|t| {
            t.partitions.iter().for_each(|p| f(p.error_code));
            f(t.error_code);
        }),
        S::Vote(r) => {
            f(r.error_code);
            r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
        }
        S::BeginQuorumEpoch(r) => {
            f(r.error_code);
            r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
        }
        S::EndQuorumEpoch(r) => {
            f(r.error_code);
            r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
        }
        S::FetchSnapshot(r) => {
            f(r.error_code);
            r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
        }
        S::DescribeQuorum(r) => {
            f(r.error_code);
            r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
        }
        S::BrokerRegistration(r) => f(r.error_code),
        S::BrokerHeartbeat(r) => f(r.error_code),
        S::AllocateProducerIds(r) => f(r.error_code),
        S::AlterPartition(r) => {
            f(r.error_code);
            r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
        }
        S::AlterPartitionReassignments(r) => {
            f(r.error_code);
            r.responses.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
        }
        S::ListPartitionReassignments(r) => f(r.error_code),
        S::DescribeLogDirs(r) => {
            f(r.error_code);
            r.results.iter().for_each(|d| f(d.error_code));
        }
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
        S::JoinGroup(r) => f(r.error_code),
        S::SyncGroup(r) => f(r.error_code),
        S::Heartbeat(r) => f(r.error_code),
        S::LeaveGroup(r) => {
            f(r.error_code);
            r.members.iter().for_each(|m| f(m.error_code));
        }
        S::OffsetCommit(r) => r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code)),
        S::OffsetFetch(r) => {
            // v8+ answers per group; older versions carry one top-level code.
            if r.groups.is_empty() {
                f(r.error_code);
                r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
            } else {
                r.groups.iter().for_each(|g| f(g.error_code));
                r.groups.iter().flat_map(|g| &g.topics).flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
            }
        }
        S::ConsumerGroupHeartbeat(r) => f(r.error_code),
        S::DescribeGroups(r) => r.groups.iter().for_each(|g| f(g.error_code)),
        S::ListGroups(r) => f(r.error_code),
        S::ListConfigResources(r) => f(r.error_code),
        S::GetTelemetrySubscriptions(r) => f(r.error_code),
        S::PushTelemetry(r) => f(r.error_code),
        S::DeleteGroups(r) => r.results.iter().for_each(|g| f(g.error_code)),
        S::OffsetDelete(r) => {
            f(r.error_code);
            r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code));
        }
        S::ConsumerGroupDescribe(r) => r.groups.iter().for_each(|g| f(g.error_code)),
        S::AddPartitionsToTxn(r) => {
            // v4+ answers per transaction; older versions per partition.
            if r.results_by_transaction.is_empty() {
                r.results_by_topic_v3_and_below.iter().flat_map(|t| &t.results_by_partition).for_each(|p| f(p.partition_error_code));
            } else {
                f(r.error_code);
                r.results_by_transaction
                    .iter()
                    .flat_map(|t| &t.topic_results)
                    .flat_map(|t| &t.results_by_partition)
                    .for_each(|p| f(p.partition_error_code));
            }
        }
        S::AddOffsetsToTxn(r) => f(r.error_code),
        S::EndTxn(r) => f(r.error_code),
        S::TxnOffsetCommit(r) => r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code)),
        S::WriteTxnMarkers(r) => {
            r.markers.iter().flat_map(|m| &m.topics).flat_map(|t| &t.partitions).for_each(|p| f(p.error_code))
        }
        S::DescribeTransactions(r) => r.transaction_states.iter().for_each(|t| f(t.error_code)),
        S::ListTransactions(r) => f(r.error_code),
        S::DescribeProducers(r) => r.topics.iter().flat_map(|t| &t.partitions).for_each(|p| f(p.error_code)),
        _ => return Listed::No,
    }
    Listed::Yes
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::*;

    use super::*;

    fn codes(response: ResponseKind) -> Vec<i16> {
        let mut out = Vec::new();
        assert_eq!(for_each(&response, |c| out.push(c)), Listed::Yes);
        out
    }

    #[test]
    fn group_apis_count_as_kafka_does() {
        let mut hb = HeartbeatResponse::default();
        hb.error_code = 27;
        assert_eq!(codes(ResponseKind::Heartbeat(hb)), vec![27]);

        let mut join = JoinGroupResponse::default();
        join.error_code = 79;
        assert_eq!(codes(ResponseKind::JoinGroup(join)), vec![79]);
        let mut sync = SyncGroupResponse::default();
        sync.error_code = 27;
        assert_eq!(codes(ResponseKind::SyncGroup(sync)), vec![27]);
        let mut cgh = ConsumerGroupHeartbeatResponse::default();
        cgh.error_code = 110;
        assert_eq!(codes(ResponseKind::ConsumerGroupHeartbeat(cgh)), vec![110]);
        let mut list = ListGroupsResponse::default();
        list.error_code = 15;
        assert_eq!(codes(ResponseKind::ListGroups(list)), vec![15]);

        // LeaveGroup: the top level plus each member.
        let mut leave = LeaveGroupResponse::default();
        let mut m = leave_group_response::MemberResponse::default();
        m.error_code = 25;
        leave.members = vec![m.clone(), leave_group_response::MemberResponse::default()];
        assert_eq!(codes(ResponseKind::LeaveGroup(leave)), vec![0, 25, 0]);

        // OffsetCommit: per partition only.
        let mut commit = OffsetCommitResponse::default();
        let mut t = offset_commit_response::OffsetCommitResponseTopic::default();
        let mut p = offset_commit_response::OffsetCommitResponsePartition::default();
        p.error_code = 22;
        t.partitions = vec![p, offset_commit_response::OffsetCommitResponsePartition::default()];
        commit.topics = vec![t];
        assert_eq!(codes(ResponseKind::OffsetCommit(commit)), vec![22, 0]);

        // OffsetFetch before v8: top level and partitions; v8+: groups, then partitions.
        let mut old = OffsetFetchResponse::default();
        let mut t = offset_fetch_response::OffsetFetchResponseTopic::default();
        let mut p = offset_fetch_response::OffsetFetchResponsePartition::default();
        p.error_code = 3;
        t.partitions = vec![p];
        old.topics = vec![t];
        assert_eq!(codes(ResponseKind::OffsetFetch(old)), vec![0, 3]);
        let mut new = OffsetFetchResponse::default();
        let mut g = offset_fetch_response::OffsetFetchResponseGroup::default();
        let mut t = offset_fetch_response::OffsetFetchResponseTopics::default();
        let mut p = offset_fetch_response::OffsetFetchResponsePartitions::default();
        p.error_code = 3;
        t.partitions = vec![p];
        g.topics = vec![t];
        let mut gone = offset_fetch_response::OffsetFetchResponseGroup::default();
        gone.error_code = 69;
        new.groups = vec![g, gone];
        assert_eq!(codes(ResponseKind::OffsetFetch(new)), vec![0, 69, 3]);

        // The describe and delete group APIs: per group.
        let mut dg = DescribeGroupsResponse::default();
        let mut g = describe_groups_response::DescribedGroup::default();
        g.error_code = 69;
        dg.groups = vec![g, describe_groups_response::DescribedGroup::default()];
        assert_eq!(codes(ResponseKind::DescribeGroups(dg)), vec![69, 0]);
        let mut cgd = ConsumerGroupDescribeResponse::default();
        let mut g = consumer_group_describe_response::DescribedGroup::default();
        g.error_code = 69;
        cgd.groups = vec![g];
        assert_eq!(codes(ResponseKind::ConsumerGroupDescribe(cgd)), vec![69]);
        let mut del = DeleteGroupsResponse::default();
        let mut r = delete_groups_response::DeletableGroupResult::default();
        r.error_code = 68;
        del.results = vec![r];
        assert_eq!(codes(ResponseKind::DeleteGroups(del)), vec![68]);

        // OffsetDelete: top level and partitions.
        let mut od = OffsetDeleteResponse::default();
        let mut t = offset_delete_response::OffsetDeleteResponseTopic::default();
        let mut p = offset_delete_response::OffsetDeleteResponsePartition::default();
        p.error_code = 86;
        t.partitions = vec![p];
        od.topics = vec![t];
        assert_eq!(codes(ResponseKind::OffsetDelete(od)), vec![0, 86]);
    }

    #[test]
    fn metadata_and_fetch_count_as_kafka_does() {
        // Metadata: each partition, then its topic.
        let mut md = MetadataResponse::default();
        let mut t = metadata_response::MetadataResponseTopic::default();
        let mut p = metadata_response::MetadataResponsePartition::default();
        p.error_code = 9;
        t.partitions = vec![p];
        md.topics = vec![t];
        assert_eq!(codes(ResponseKind::Metadata(md)), vec![9, 0]);
        // Fetch: the top level always, then each partition.
        let mut fetch = FetchResponse::default();
        let mut t = fetch_response::FetchableTopicResponse::default();
        let mut p = fetch_response::PartitionData::default();
        p.error_code = 1;
        t.partitions = vec![p];
        fetch.responses = vec![t];
        assert_eq!(codes(ResponseKind::Fetch(fetch)), vec![0, 1]);
    }

    #[test]
    fn an_unlisted_kind_says_so() {
        let mut count = 0;
        assert_eq!(for_each(&ResponseKind::SaslHandshake(SaslHandshakeResponse::default()), |_| count += 1), Listed::No);
        assert_eq!(count, 0);
    }
}
