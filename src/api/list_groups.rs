//! ListGroups, with the state filter (v4+) and type filter (v5+).

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::{Api, str_bytes};

pub fn handle(api: &Api, version: i16, req: ListGroupsRequest) -> ListGroupsResponse {
    let mut r = ListGroupsResponse::default();
    for (id, protocol_type, state, kind) in api.groups.list() {
        let state_ok = req.states_filter.is_empty() || req.states_filter.iter().any(|s| s.eq_ignore_ascii_case(state));
        let type_ok = req.types_filter.is_empty() || req.types_filter.iter().any(|t| t.eq_ignore_ascii_case(kind));
        if !(state_ok && type_ok) {
            continue;
        }
        let mut g = ListedGroup::default();
        g.group_id = GroupId(str_bytes(&id));
        g.protocol_type = str_bytes(&protocol_type);
        if version >= 4 {
            g.group_state = str_bytes(state);
        }
        if version >= 5 {
            g.group_type = str_bytes(kind);
        }
        r.groups.push(g);
    }
    r
}
