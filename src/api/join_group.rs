//! JoinGroup (classic protocol): parks until the rebalance's join phase completes.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::{Api, RequestContext, str_bytes};
use crate::group::classic::{JoinRequest, JoinResult, Reply};

pub async fn handle(api: &Api, ctx: &RequestContext, req: JoinGroupRequest) -> JoinGroupResponse {
    let join = JoinRequest {
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: ctx.client_id.as_ref().map(|s| s.to_string()).unwrap_or_default(),
        client_host: ctx.client_host.clone(),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if ctx.version >= 1 { req.rebalance_timeout_ms } else { req.session_timeout_ms },
        protocol_type: req.protocol_type.to_string(),
        protocols: req.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect(),
        require_known_member_id: ctx.version >= 4,
    };
    let result = match api.groups.join(req.group_id.as_str(), join) {
        Reply::Now(r) => r,
        Reply::Later(rx) => rx.await.unwrap_or_else(|_| JoinResult {
            error: Some(ResponseError::UnknownMemberId),
            generation_id: -1,
            ..Default::default()
        }),
    };
    let mut r = JoinGroupResponse::default();
    r.error_code = result.error.map(|e| e.code()).unwrap_or(0);
    r.generation_id = result.generation_id;
    r.protocol_type = result.protocol_type.as_deref().map(str_bytes);
    r.protocol_name = result.protocol_name.as_deref().map(str_bytes);
    if ctx.version < 7 && r.protocol_name.is_none() {
        // Not nullable before v7.
        r.protocol_name = Some(str_bytes(""));
    }
    r.leader = str_bytes(&result.leader);
    // The field exists from v9; older leaders re-send the assignment, which a stable group
    // answers with the current one.
    r.skip_assignment = ctx.version >= 9 && result.skip_assignment;
    r.member_id = str_bytes(&result.member_id);
    r.members = result
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            let mut m = JoinGroupResponseMember::default();
            m.member_id = str_bytes(&id);
            m.group_instance_id = instance.as_deref().map(str_bytes);
            m.metadata = metadata;
            m
        })
        .collect();
    r
}
