//! The metadata quorum's APIs (KRaft, KIP-595): Vote, BeginQuorumEpoch, EndQuorumEpoch,
//! FetchSnapshot, DescribeQuorum, and Fetch of `__cluster_metadata`-0 (routed here by
//! [`super::fetch`]). Each request is converted to the core's message ([`crate::raft::wire`]),
//! handed to the quorum driver, and its answer converted back. A node that runs no quorum (a
//! single node, or one whose metadata log failed) answers with a top-level error.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    BeginQuorumEpochRequest, BeginQuorumEpochResponse, DescribeQuorumRequest, DescribeQuorumResponse,
    EndQuorumEpochRequest, EndQuorumEpochResponse, FetchRequest, FetchResponse, FetchSnapshotRequest,
    FetchSnapshotResponse, VoteRequest, VoteResponse,
};

use kafka_protocol::protocol::StrBytes;

use super::Api;
use crate::raft::Message;
use crate::types::NodeId;
use crate::raft::wire::{self, METADATA_TOPIC};

/// Kafka's answer where no quorum runs: the request reached a node that is not a controller.
fn no_quorum() -> i16 {
    ResponseError::UnknownServerError.code()
}

/// Kafka's rule: a request without a cluster id (older senders), or a node that does not know
/// its own yet, passes; otherwise the two must be equal.
fn cluster_id_matches(ours: &str, theirs: Option<&StrBytes>) -> bool {
    theirs.is_none_or(|t| ours.is_empty() || t.as_str() == ours)
}

/// Whether a Fetch is for the metadata log (by name up to v12, by topic id from v13).
pub fn is_metadata_fetch(req: &FetchRequest) -> bool {
    req.topics.len() == 1
        && req.topics.iter().all(|t| t.topic_id == wire::metadata_topic_id() || t.topic.as_str() == METADATA_TOPIC)
}

/// The one path of every quorum request: convert, hand to the driver as a message from the
/// node the request names, convert the answer back; `error` builds the top-level error
/// response for a node without a quorum, a request that does not convert, or no answer.
///
/// A request naming another cluster id than this node's metadata answers
/// INCONSISTENT_CLUSTER_ID, as Kafka's quorum does (a request without one, or a node that
/// does not know its own yet, passes).
async fn exchange<Resp, M>(
    api: &Api,
    cluster_id: Option<&StrBytes>,
    req: Result<M, wire::WireError>,
    from: impl FnOnce(&M) -> NodeId,
    into_message: impl FnOnce(M) -> Message,
    answer: impl FnOnce(Message) -> Option<Resp>,
    error: impl Fn(i16) -> Resp,
) -> Resp {
    let Some(raft) = api.raft() else { return error(no_quorum()) };
    if !cluster_id_matches(&api.broker.image().cluster_id, cluster_id) {
        return error(ResponseError::InconsistentClusterId.code());
    }
    let r = match req {
        Ok(r) => r,
        Err(e) => return error(e.error_code().code()),
    };
    let node = from(&r);
    raft.request(node, into_message(r)).await.and_then(answer).unwrap_or_else(|| error(no_quorum()))
}

pub async fn vote(api: &Api, req: VoteRequest) -> VoteResponse {
    exchange(
        api,
        req.cluster_id.as_ref(),
        wire::vote_request_from_wire(&req),
        |r| r.candidate,
        Message::VoteRequest,
        |m| match m {
            Message::VoteResponse(resp) => Some(wire::vote_response_to_wire(&resp)),
            _ => None,
        },
        |code| VoteResponse::default().with_error_code(code),
    )
    .await
}

pub async fn begin_quorum_epoch(api: &Api, req: BeginQuorumEpochRequest) -> BeginQuorumEpochResponse {
    exchange(
        api,
        req.cluster_id.as_ref(),
        wire::begin_quorum_epoch_request_from_wire(&req),
        |r| r.leader,
        Message::BeginQuorumEpochRequest,
        |m| match m {
            Message::BeginQuorumEpochResponse(resp) => Some(wire::begin_quorum_epoch_response_to_wire(&resp)),
            _ => None,
        },
        |code| BeginQuorumEpochResponse::default().with_error_code(code),
    )
    .await
}

pub async fn end_quorum_epoch(api: &Api, req: EndQuorumEpochRequest) -> EndQuorumEpochResponse {
    exchange(
        api,
        req.cluster_id.as_ref(),
        wire::end_quorum_epoch_request_from_wire(&req),
        |r| r.leader,
        Message::EndQuorumEpochRequest,
        |m| match m {
            Message::EndQuorumEpochResponse(resp) => Some(wire::end_quorum_epoch_response_to_wire(&resp)),
            _ => None,
        },
        |code| EndQuorumEpochResponse::default().with_error_code(code),
    )
    .await
}

pub async fn fetch(api: &Api, version: i16, req: FetchRequest) -> FetchResponse {
    exchange(
        api,
        req.cluster_id.as_ref(),
        wire::fetch_request_from_wire(&req, version),
        |r| r.replica_id,
        Message::FetchRequest,
        |m| match m {
            Message::FetchResponse(resp) => Some(
                wire::fetch_response_to_wire(&resp, version)
                    .unwrap_or_else(|_| FetchResponse::default().with_error_code(ResponseError::UnknownServerError.code())),
            ),
            _ => None,
        },
        |code| FetchResponse::default().with_error_code(code),
    )
    .await
}

pub async fn fetch_snapshot(api: &Api, req: FetchSnapshotRequest) -> FetchSnapshotResponse {
    exchange(
        api,
        req.cluster_id.as_ref(),
        wire::fetch_snapshot_request_from_wire(&req),
        |r| r.replica_id,
        Message::FetchSnapshotRequest,
        |m| match m {
            Message::FetchSnapshotResponse(resp) => Some(wire::fetch_snapshot_response_to_wire(&resp)),
            _ => None,
        },
        |code| FetchSnapshotResponse::default().with_error_code(code),
    )
    .await
}

/// Answered by the quorum leader; another node of the cluster asks the leader, as Kafka's
/// brokers forward DescribeQuorum to the active controller.
pub async fn describe_quorum(api: &Api, version: i16, req: DescribeQuorumRequest) -> DescribeQuorumResponse {
    let Some(raft) = api.raft() else {
        let mut out = DescribeQuorumResponse::default();
        out.error_code = no_quorum();
        out.error_message = Some(StrBytes::from_static_str("this node runs no metadata quorum"));
        return out;
    };
    let mut out = match raft.describe().await {
        Some(d) => wire::describe_quorum_response_to_wire(&d),
        None => match api.broker.cluster() {
            Some(cluster) => match cluster.call_controller(&req, version).await {
                Ok((_, r)) => r,
                Err(_) => wire::describe_quorum_not_leader(),
            },
            None => wire::describe_quorum_not_leader(),
        },
    };
    // Null on success (v2+), as Kafka sends.
    if out.error_code == 0 {
        out.error_message = None;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_from_another_cluster_is_refused() {
        let other = StrBytes::from_static_str("other");
        let same = StrBytes::from_static_str("abc");
        assert!(cluster_id_matches("abc", None));
        assert!(cluster_id_matches("abc", Some(&same)));
        assert!(!cluster_id_matches("abc", Some(&other)));
        assert!(cluster_id_matches("", Some(&other)), "this node does not know its cluster id yet");
    }
}
