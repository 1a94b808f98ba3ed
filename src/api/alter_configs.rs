//! AlterConfigs (the legacy API 33, v0-2): replaces a resource's overrides with the listed
//! keys; every override not listed reverts to its default. Served for topics, groups and
//! brokers with the same checks as IncrementalAlterConfigs ([`super::config_change`]); as in
//! Kafka, broker loggers are refused here.

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::config_change::{self, Change, ResourceChange};
use super::{Api, str_bytes};

pub fn handle(api: &Api, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let changes: Vec<ResourceChange> = req
        .resources
        .iter()
        .map(|res| ResourceChange {
            resource_type: res.resource_type,
            name: res.resource_name.to_string(),
            change: Change::Replace(
                res.configs.iter().map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string()))).collect(),
            ),
        })
        .collect();
    let results = config_change::apply(api, &changes, req.validate_only);
    let mut r = AlterConfigsResponse::default();
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
    use kafka_protocol::ResponseError;
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::api::config_change::{RESOURCE_BROKER, RESOURCE_BROKER_LOGGER, RESOURCE_TOPIC};

    fn request(resource_type: i8, name: &str, configs: &[(&str, Option<&str>)], validate_only: bool) -> AlterConfigsRequest {
        let mut res = AlterConfigsResource::default();
        res.resource_type = resource_type;
        res.resource_name = StrBytes::from_string(name.into());
        res.configs = configs
            .iter()
            .map(|(k, v)| {
                let mut c = AlterableConfig::default();
                c.name = StrBytes::from_string(k.to_string());
                c.value = v.map(|v| StrBytes::from_string(v.into()));
                c
            })
            .collect();
        let mut r = AlterConfigsRequest::default();
        r.resources = vec![res];
        r.validate_only = validate_only;
        r
    }

    fn alter(api: &Api, resource_type: i8, name: &str, configs: &[(&str, Option<&str>)], validate_only: bool) -> (i16, Option<String>) {
        let r = handle(api, request(resource_type, name, configs, validate_only));
        (r.responses[0].error_code, r.responses[0].error_message.as_ref().map(|m| m.to_string()))
    }

    fn overrides(api: &Api, topic: &str) -> Vec<(String, String)> {
        api.broker.image().topic(topic).unwrap().configs.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    #[test]
    fn replaces_every_override_and_validates_like_incremental() {
        let dir = tempfile::tempdir().unwrap();
        let api = crate::api::test_api(dir.path(), &[]);
        api.broker.auto_create_topic("t").unwrap();
        assert_eq!(alter(&api, RESOURCE_TOPIC, "t", &[("retention.ms", Some("1000")), ("segment.bytes", Some("4096"))], false), (0, None));
        assert_eq!(overrides(&api, "t"), [("retention.ms".into(), "1000".into()), ("segment.bytes".into(), "4096".into())]);
        // Keys not listed revert to their defaults.
        assert_eq!(alter(&api, RESOURCE_TOPIC, "t", &[("cleanup.policy", Some("compact"))], false), (0, None));
        assert_eq!(overrides(&api, "t"), [("cleanup.policy".into(), "compact".into())]);
        assert_eq!(api.broker.log_config(api.broker.image().topic("t").unwrap()).retention_ms, 7 * 24 * 3_600_000);
        // validate_only changes nothing.
        assert_eq!(alter(&api, RESOURCE_TOPIC, "t", &[], true), (0, None));
        assert_eq!(overrides(&api, "t").len(), 1);
        // The errors IncrementalAlterConfigs gives.
        let bad = alter(&api, RESOURCE_TOPIC, "t", &[("retention.ms", Some("soon"))], false);
        assert_eq!(bad.0, ResponseError::InvalidConfig.code(), "{bad:?}");
        let unknown = alter(&api, RESOURCE_TOPIC, "t", &[("no.such.key", Some("1"))], false);
        assert_eq!(unknown, (ResponseError::InvalidConfig.code(), Some("Unknown topic config name: no.such.key".into())));
        let null = alter(&api, RESOURCE_TOPIC, "t", &[("retention.ms", None)], false);
        assert_eq!(null, (ResponseError::InvalidRequest.code(), Some("Null value not supported for : retention.ms".into())));
        let dup = alter(&api, RESOURCE_TOPIC, "t", &[("retention.ms", Some("1")), ("retention.ms", Some("2"))], false);
        assert_eq!(dup, (ResponseError::InvalidRequest.code(), Some("Error due to duplicate config keys".into())));
        assert_eq!(alter(&api, RESOURCE_TOPIC, "nope", &[], false).0, ResponseError::UnknownTopicOrPartition.code());
        assert_eq!(overrides(&api, "t"), [("cleanup.policy".into(), "compact".into())]);
        // Broker configs are refused as IncrementalAlterConfigs refuses them; loggers are not
        // a resource of this API, as in Kafka.
        let broker = alter(&api, RESOURCE_BROKER, "1", &[("log.dirs", Some("/x"))], false);
        assert_eq!(broker, (ResponseError::InvalidRequest.code(), Some("Cannot update these configs dynamically: [log.dirs]".into())));
        let other = alter(&api, RESOURCE_BROKER, "2", &[], false);
        assert_eq!(other, (ResponseError::InvalidRequest.code(), Some("Unexpected broker id, expected 1, but received 2".into())));
        let logger = alter(&api, RESOURCE_BROKER_LOGGER, "1", &[("root", Some("INFO"))], false);
        assert_eq!(logger, (ResponseError::InvalidRequest.code(), Some("Unknown resource type 8".into())));
    }
}
