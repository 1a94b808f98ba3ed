//! IncrementalAlterConfigs: set, delete, append to or subtract from topic configs.
//! Broker configs are static (from the YAML file) and cannot be altered at run time yet.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{Api, errors, str_bytes};
use crate::metadata::controller::{self, ControllerError};

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

pub fn handle(api: &Api, req: IncrementalAlterConfigsRequest) -> IncrementalAlterConfigsResponse {
    let broker = &api.broker;
    let mut r = IncrementalAlterConfigsResponse::default();
    for res in req.resources {
        let mut out = AlterConfigsResourceResponse::default();
        out.error_message = None;
        out.resource_type = res.resource_type;
        out.resource_name = res.resource_name.clone();
        let topic = res.resource_name.as_str().to_string();
        let result: Result<(), (ResponseError, String)> = match res.resource_type {
            RESOURCE_TOPIC => broker
                .apply_metadata(|image| {
                    let mut records = Vec::new();
                    let current = image.topic(&topic).ok_or(ControllerError::UnknownTopic)?;
                    for c in &res.configs {
                        let key = c.name.as_str();
                        let value = c.value.as_ref().map(|v| v.as_str().to_string());
                        let effective = current
                            .configs
                            .get(key)
                            .cloned()
                            .or_else(|| broker.config.topic_default(key))
                            .unwrap_or_default();
                        let new_value = match c.config_operation {
                            OP_SET => value,
                            OP_DELETE => None,
                            OP_APPEND => Some(list_append(&effective, value.as_deref().unwrap_or(""))),
                            OP_SUBTRACT => Some(list_subtract(&effective, value.as_deref().unwrap_or(""))),
                            op => return Err(ControllerError::InvalidConfig(format!("Unknown operation {op}"))),
                        };
                        records.push(controller::alter_topic_config(image, &topic, key, new_value.as_deref())?);
                    }
                    if req.validate_only {
                        records.clear();
                    }
                    Ok((records, ()))
                })
                .map_err(|e| (errors::broker_error(&e), e.to_string())),
            RESOURCE_BROKER => Err((
                ResponseError::InvalidRequest,
                "Dynamic broker configs are not supported; change the configuration file".into(),
            )),
            _ => Err((ResponseError::InvalidRequest, "Unsupported resource type".into())),
        };
        if let Err((code, message)) = result {
            out.error_code = code.code();
            out.error_message = Some(str_bytes(&message));
        }
        r.responses.push(out);
    }
    r
}

fn list_append(current: &str, add: &str) -> String {
    let mut items: Vec<&str> = current.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    for a in add.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !items.contains(&a) {
            items.push(a);
        }
    }
    items.join(",")
}

fn list_subtract(current: &str, remove: &str) -> String {
    let gone: Vec<&str> = remove.split(',').map(str::trim).collect();
    current.split(',').map(str::trim).filter(|s| !s.is_empty() && !gone.contains(s)).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::protocol::StrBytes;

    use super::*;

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
