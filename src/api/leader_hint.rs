//! KIP-951: a Produce (v10+) or Fetch (v16+) answered NOT_LEADER_OR_FOLLOWER or
//! FENCED_LEADER_EPOCH names the partition's current leader and epoch, and the response
//! carries that leader's endpoint, so a client moves to it without a Metadata round trip.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{BrokerId, produce_response, fetch_response};

use super::{Api, str_bytes};
use super::metadata::{ListedBroker, listed_brokers};

/// The first Produce and Fetch versions with the hint fields.
pub const PRODUCE_MIN_VERSION: i16 = 10;
pub const FETCH_MIN_VERSION: i16 = 16;

/// Whether `code` is one the hint goes with.
pub fn wants_hint(code: i16) -> bool {
    code == ResponseError::NotLeaderOrFollower.code() || code == ResponseError::FencedLeaderEpoch.code()
}

/// The image's leader of `topic`-`partition` and its epoch, with the leader's endpoint.
pub struct Hint {
    pub leader: i32,
    pub epoch: i32,
    pub endpoint: Option<ListedBroker>,
}

/// Looks up hints for one response; `brokers` is filled once, on the first lookup.
pub struct Hints<'a> {
    api: &'a Api,
    brokers: Option<Vec<ListedBroker>>,
    /// The endpoints named so far, for the response's `node_endpoints`.
    pub named: Vec<ListedBroker>,
}

impl<'a> Hints<'a> {
    pub fn new(api: &'a Api) -> Self {
        Self { api, brokers: None, named: Vec::new() }
    }

    pub fn hint(&mut self, topic: &str, partition: i32) -> Option<Hint> {
        let image = self.api.broker.image();
        let r = image.topic(topic)?.partition(partition)?;
        let leader = r.leader?;
        // A broker cut off from the controller does not name itself (see `topic_response`).
        if leader.0 == self.api.broker.node_id && self.api.broker.cluster().is_some_and(|c| c.session_lapsed()) {
            return None;
        }
        let brokers = self.brokers.get_or_insert_with(|| listed_brokers(self.api, false));
        let endpoint = brokers.iter().find(|b| b.id == leader).cloned();
        if let Some(e) = &endpoint
            && !self.named.iter().any(|n| n.id == e.id)
        {
            self.named.push(e.clone());
        }
        Some(Hint { leader: leader.0, epoch: r.leader_epoch.0, endpoint })
    }

    pub fn produce_endpoints(&self) -> Vec<produce_response::NodeEndpoint> {
        self.named
            .iter()
            .map(|b| {
                let mut e = produce_response::NodeEndpoint::default();
                e.node_id = BrokerId(b.id.0);
                e.host = str_bytes(&b.host);
                e.port = b.port;
                e.rack = b.rack.as_deref().map(str_bytes);
                e
            })
            .collect()
    }

    pub fn fetch_endpoints(&self) -> Vec<fetch_response::NodeEndpoint> {
        self.named
            .iter()
            .map(|b| {
                let mut e = fetch_response::NodeEndpoint::default();
                e.node_id = BrokerId(b.id.0);
                e.host = str_bytes(&b.host);
                e.port = b.port;
                e.rack = b.rack.as_deref().map(str_bytes);
                e
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use kafka_protocol::messages::{ApiKey, ProduceRequest, ResponseKind, TopicName, produce_request};
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::api::{Reply, RequestContext};
    use crate::types::{LeaderEpoch, NodeId, TopicPartition};

    /// A produce reaching a replica that follows is answered NOT_LEADER_OR_FOLLOWER with the
    /// leader and epoch the image names and that leader's endpoint (v10+), and without them
    /// before v10.
    #[test]
    fn a_produce_to_a_follower_names_the_leader() {
        let dir = tempfile::tempdir().unwrap();
        let api = crate::api::test_api(dir.path(), &[]);
        api.broker.auto_create_topic("t").unwrap();
        let partition = api.broker.partition(&TopicPartition::new("t", 0)).unwrap();
        partition.become_follower(Some(NodeId(api.broker.node_id)), LeaderEpoch(0));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let produce = |version: i16| {
            let batch = crate::record::BatchBuilder::new(0).timestamps(1).records(1, 10).build();
            let mut p = produce_request::PartitionProduceData::default();
            p.records = Some(bytes::Bytes::from(batch));
            let mut t = produce_request::TopicProduceData::default();
            t.name = TopicName(StrBytes::from_static_str("t"));
            t.partition_data = vec![p];
            let mut r = ProduceRequest::default();
            r.acks = 1;
            r.topic_data = vec![t];
            let ctx = RequestContext { api_key: ApiKey::Produce, version, correlation_id: 1, client_id: None, client_host: String::new(), peer: None };
            let Reply::Response(ResponseKind::Produce(r)) = rt.block_on(crate::api::produce::handle(&api, &ctx, r)) else { panic!("no answer") };
            r
        };
        let r = produce(10);
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(p.error_code, ResponseError::NotLeaderOrFollower.code());
        assert_eq!(p.current_leader.leader_id, BrokerId(api.broker.node_id));
        assert_eq!(p.current_leader.leader_epoch, 0);
        assert_eq!(r.node_endpoints.len(), 1);
        assert_eq!(r.node_endpoints[0].node_id, BrokerId(api.broker.node_id));
        let r = produce(9);
        assert_eq!(r.responses[0].partition_responses[0].current_leader.leader_id, BrokerId(-1));
        assert!(r.node_endpoints.is_empty());
    }
}
