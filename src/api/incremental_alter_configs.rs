//! IncrementalAlterConfigs: SET, DELETE, APPEND to or SUBTRACT from the configs of topics,
//! groups and broker loggers (see [`super::config_change`], shared with AlterConfigs).
//! Broker configs are static (from the configuration file) and refused at run time for now.

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::config_change::{self, Change, ResourceChange};
use super::{Api, str_bytes};

pub fn handle(api: &Api, req: IncrementalAlterConfigsRequest) -> IncrementalAlterConfigsResponse {
    let changes: Vec<ResourceChange> = req
        .resources
        .iter()
        .map(|res| ResourceChange {
            resource_type: res.resource_type,
            name: res.resource_name.to_string(),
            change: Change::Incremental(
                res.configs
                    .iter()
                    .map(|c| (c.name.to_string(), c.config_operation, c.value.as_ref().map(|v| v.to_string())))
                    .collect(),
            ),
        })
        .collect();
    let results = config_change::apply(api, &changes, req.validate_only);
    let mut r = IncrementalAlterConfigsResponse::default();
    for (res, result) in req.resources.iter().zip(results) {
        let mut out = AlterConfigsResourceResponse::default();
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        out.error_message = None;
        if let Err((code, message)) = result {
            out.error_code = code.code();
            out.error_message = Some(str_bytes(&message));
        }
        r.responses.push(out);
    }
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::api::config_change::{OP_SET, OP_SUBTRACT, RESOURCE_TOPIC};
    use kafka_protocol::ResponseError;

    pub(crate) fn op(name: &str, operation: i8, value: Option<&str>) -> AlterableConfig {
        let mut c = AlterableConfig::default();
        c.name = StrBytes::from_string(name.into());
        c.config_operation = operation;
        c.value = value.map(|v| StrBytes::from_string(v.into()));
        c
    }

    pub(crate) fn request(resource_type: i8, name: &str, configs: Vec<AlterableConfig>) -> IncrementalAlterConfigsRequest {
        let mut res = AlterConfigsResource::default();
        res.resource_type = resource_type;
        res.resource_name = StrBytes::from_string(name.into());
        res.configs = configs;
        let mut r = IncrementalAlterConfigsRequest::default();
        r.resources = vec![res];
        r
    }

    fn alter(api: &Api, resource_type: i8, name: &str, configs: Vec<AlterableConfig>) -> (i16, Option<String>) {
        let r = handle(api, request(resource_type, name, configs));
        let out = &r.responses[0];
        (out.error_code, out.error_message.as_ref().map(|m| m.to_string()))
    }

    /// Kafka 4.x accepts an empty `cleanup.policy`, set directly or by subtracting the last
    /// item, and the log then neither deletes nor compacts.
    #[test]
    fn empty_cleanup_policy_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let api = crate::api::test_api(dir.path(), &[]);
        api.broker.auto_create_topic("t").unwrap();
        assert_eq!(alter(&api, RESOURCE_TOPIC, "t", vec![op("cleanup.policy", OP_SET, Some(""))]), (0, None));
        let t = api.broker.image().topic("t").cloned().unwrap();
        assert_eq!(t.configs.get("cleanup.policy").map(String::as_str), Some(""));
        assert_eq!(api.broker.log_config(&t).cleanup_policy, crate::log::CleanupPolicy::Neither);
        assert_eq!(alter(&api, RESOURCE_TOPIC, "t", vec![op("cleanup.policy", OP_SET, Some("compact,delete"))]), (0, None));
        assert_eq!(alter(&api, RESOURCE_TOPIC, "t", vec![op("cleanup.policy", OP_SUBTRACT, Some("compact"))]), (0, None));
        assert_eq!(alter(&api, RESOURCE_TOPIC, "t", vec![op("cleanup.policy", OP_SUBTRACT, Some("delete"))]), (0, None));
        let t = api.broker.image().topic("t").cloned().unwrap();
        assert_eq!(t.configs.get("cleanup.policy").map(String::as_str), Some(""));
        let (code, _) = alter(&api, RESOURCE_TOPIC, "t", vec![op("cleanup.policy", OP_SET, Some("remove"))]);
        assert_eq!(code, ResponseError::InvalidConfig.code());
    }
}
