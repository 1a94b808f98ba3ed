//! Heartbeat (classic protocol): keeps a member's session alive; tells it about rebalances.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::Api;

pub fn handle(api: &Api, req: HeartbeatRequest) -> HeartbeatResponse {
    let instance = req.group_instance_id.as_ref().map(|s| s.to_string());
    let mut r = HeartbeatResponse::default();
    if let Err(e) = api.groups.heartbeat(req.group_id.as_str(), req.member_id.as_str(), instance.as_deref(), req.generation_id) {
        r.error_code = e.code();
    }
    r
}
