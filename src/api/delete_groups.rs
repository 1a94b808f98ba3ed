//! DeleteGroups: empty groups only (NON_EMPTY_GROUP otherwise), offsets included.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::Api;

pub async fn handle(api: &Api, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut r = DeleteGroupsResponse::default();
    for id in req.groups_names {
        let mut g = DeletableGroupResult::default();
        let deleted = match api.groups.delete_group(id.as_str()) {
            Ok(()) => super::replicated(api, id.as_str()).await,
            Err(e) => Err(e),
        };
        if let Err(e) = deleted {
            g.error_code = e.code();
        }
        g.group_id = id;
        r.results.push(g);
    }
    r
}
