//! UpdateFeatures (KIP-584, KIP-778): upgrade, downgrade or disable finalized feature levels,
//! all or nothing. The rules live in [`crate::metadata::features`]; this file maps the request
//! versions onto them and builds Kafka's answer.
//!
//! v0 has `allow_downgrade` (true means SAFE_DOWNGRADE); v1+ carry an explicit upgrade type and
//! `validate_only`. A refused update fails the whole request with a top-level
//! INVALID_UPDATE_VERSION; on success v0-1 list every feature with NONE, and v2 has no results.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::update_features_response::UpdatableFeatureResult;
use kafka_protocol::messages::{UpdateFeaturesRequest, UpdateFeaturesResponse};

use super::{Api, errors, str_bytes};
use crate::metadata::features::UpgradeType;

pub fn handle(api: &Api, version: i16, req: UpdateFeaturesRequest) -> UpdateFeaturesResponse {
    let mut updates: Vec<(String, i16, UpgradeType)> = Vec::with_capacity(req.feature_updates.len());
    for u in &req.feature_updates {
        let upgrade_type = if version == 0 {
            if u.allow_downgrade { UpgradeType::SafeDowngrade } else { UpgradeType::Upgrade }
        } else {
            UpgradeType::from_code(u.upgrade_type)
        };
        let name = u.feature.to_string();
        // Kafka collects the updates in a map: a repeated feature keeps its last level.
        match updates.iter_mut().find(|(n, _, _)| *n == name) {
            Some(slot) => *slot = (name, u.max_version_level, upgrade_type),
            None => updates.push((name, u.max_version_level, upgrade_type)),
        }
    }
    let mut r = UpdateFeaturesResponse::default();
    match api.broker.update_features(&updates, version >= 1 && req.validate_only) {
        Ok(Ok(())) => {
            // The top level is null on success (ApiError.NONE has no message); only the
            // per-feature results carry "NONE".
            r.error_message = None;
            if version <= 1 {
                r.results = updates
                    .iter()
                    .map(|(name, _, _)| {
                        let mut x = UpdatableFeatureResult::default();
                        x.feature = str_bytes(name);
                        // Kafka fills in the name of the NONE error here, not null.
                        x.error_message = Some(str_bytes("NONE"));
                        x
                    })
                    .collect();
            }
        }
        Ok(Err(refused)) => {
            r.error_code = ResponseError::InvalidUpdateVersion.code();
            r.error_message = Some(str_bytes(&format!(
                "The update failed for all features since the following feature had an error: {}",
                refused.0
            )));
        }
        Err(e) => {
            tracing::warn!(error = %e, "feature update failed");
            r.error_code = errors::broker_error(&e).code();
            r.error_message = Some(str_bytes(&e.to_string()));
        }
    }
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Arc;

    use kafka_protocol::messages::update_features_request::FeatureUpdateKey;
    use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

    use super::*;
    use crate::api::{RequestContext, versions};
    use crate::clock::SystemClock;
    use crate::config::BrokerConfig;

    fn open(dir: &std::path::Path) -> Api {
        let config = BrokerConfig::load(None, &[format!("log.dirs={}", dir.display()), "offsets.topic.num.partitions=1".into()]).unwrap();
        let broker = crate::broker::Broker::open(config, Arc::new(SystemClock)).unwrap();
        Api::new(broker).unwrap()
    }

    fn request(feature: &str, level: i16, upgrade_type: i8, validate_only: bool) -> UpdateFeaturesRequest {
        let mut u = FeatureUpdateKey::default();
        u.feature = str_bytes(feature);
        u.max_version_level = level;
        u.upgrade_type = upgrade_type;
        let mut r = UpdateFeaturesRequest::default();
        r.feature_updates = vec![u];
        r.validate_only = validate_only;
        r
    }

    fn api_versions(api: &Api, version: i16) -> ApiVersionsResponse {
        let ctx = RequestContext { api_key: kafka_protocol::messages::ApiKey::ApiVersions, version, correlation_id: 1, client_id: None, client_host: String::new(), peer: None };
        versions::handle(api, &ctx, ApiVersionsRequest::default())
    }

    fn finalized(r: &ApiVersionsResponse, name: &str) -> Option<i16> {
        r.finalized_features.iter().find(|f| f.name.as_str() == name).map(|f| f.max_version_level)
    }

    #[test]
    fn downgrade_persists_across_restart_and_bumps_the_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let api = open(dir.path());
        let before = api_versions(&api, 4);
        assert_eq!(finalized(&before, "group.version"), Some(1));
        assert_eq!(finalized(&before, "metadata.version"), Some(25));

        let dry = handle(&api, 2, request("group.version", 0, 2, true));
        assert_eq!(dry.error_code, 0, "{dry:?}");
        assert_eq!(finalized(&api_versions(&api, 4), "group.version"), Some(1), "validate_only changed nothing");

        let r = handle(&api, 1, request("group.version", 0, 2, false));
        assert_eq!(r.error_code, 0, "{r:?}");
        assert_eq!(r.results.len(), 1);
        let after = api_versions(&api, 4);
        assert_eq!(finalized(&after, "group.version"), None);
        assert!(after.finalized_features_epoch > before.finalized_features_epoch);
        drop(api);

        let api = open(dir.path());
        assert_eq!(finalized(&api_versions(&api, 4), "group.version"), None, "the downgrade survived a restart");
        let r = handle(&api, 0, request("group.version", 1, 0, false));
        assert_eq!(r.error_code, 0, "{r:?}");
        assert_eq!(finalized(&api_versions(&api, 4), "group.version"), Some(1));
    }

    /// Kafka answers KIP-848 requests with UNSUPPORTED_VERSION while group.version is 0.
    #[test]
    fn group_version_zero_turns_the_consumer_protocol_away() {
        use kafka_protocol::messages::{ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest, GroupId};
        let dir = tempfile::tempdir().unwrap();
        let api = open(dir.path());
        let heartbeat = || {
            let mut h = ConsumerGroupHeartbeatRequest::default();
            h.group_id = GroupId(str_bytes("cg"));
            h.member_id = str_bytes("m1");
            h.rebalance_timeout_ms = 10_000;
            h.subscribed_topic_names = Some(vec![]);
            let ctx = RequestContext { api_key: kafka_protocol::messages::ApiKey::ConsumerGroupHeartbeat, version: 1, correlation_id: 1, client_id: None, client_host: String::new(), peer: None };
            crate::api::consumer_group_heartbeat::handle(&api, &ctx, h).error_code
        };
        let describe = || {
            let mut d = ConsumerGroupDescribeRequest::default();
            d.group_ids = vec![GroupId(str_bytes("cg"))];
            crate::api::consumer_group_describe::handle(&api, 1, d).groups[0].error_code
        };
        assert_eq!(heartbeat(), 0);
        assert_eq!(describe(), 0);
        assert_eq!(handle(&api, 2, request("group.version", 0, 2, false)).error_code, 0);
        assert_eq!(heartbeat(), ResponseError::UnsupportedVersion.code());
        assert_eq!(describe(), ResponseError::UnsupportedVersion.code());
        assert_eq!(handle(&api, 2, request("group.version", 1, 1, false)).error_code, 0);
        assert_eq!(heartbeat(), 0);
    }

    #[test]
    fn refusal_is_a_top_level_invalid_update_version() {
        let dir = tempfile::tempdir().unwrap();
        let api = open(dir.path());
        let r = handle(&api, 2, request("metadata.version", 22, 2, false));
        assert_eq!(r.error_code, ResponseError::InvalidUpdateVersion.code());
        assert_eq!(
            r.error_message.unwrap().as_str(),
            "The update failed for all features since the following feature had an error: Unsupported metadata.version \
             downgrade from 25 to 22. Refusing to perform the requested downgrade because it might delete metadata information."
        );
        assert!(r.results.is_empty());
        // v0 without allow_downgrade is an upgrade: lowering a level is refused.
        let r = handle(&api, 0, request("group.version", 0, 0, false));
        assert_eq!(r.error_code, ResponseError::InvalidUpdateVersion.code());
    }

    #[test]
    fn api_versions_lists_features_from_v3_and_hides_min_zero_ranges_before_v4() {
        let dir = tempfile::tempdir().unwrap();
        let api = open(dir.path());
        let v2 = api_versions(&api, 2);
        assert!(v2.supported_features.is_empty());
        let v3 = api_versions(&api, 3);
        let names: Vec<&str> = v3.supported_features.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, vec!["metadata.version"]);
        let v4 = api_versions(&api, 4);
        let group = v4.supported_features.iter().find(|f| f.name.as_str() == "group.version").unwrap();
        assert_eq!((group.min_version, group.max_version), (0, 1));
        let tv = v4.supported_features.iter().find(|f| f.name.as_str() == "transaction.version").unwrap();
        assert_eq!((tv.min_version, tv.max_version), (0, 2));
        let mv = v4.supported_features.iter().find(|f| f.name.as_str() == "metadata.version").unwrap();
        assert_eq!((mv.min_version, mv.max_version), (7, 25));
        assert_eq!(finalized(&v3, "metadata.version"), Some(25));
        assert_eq!(finalized(&v4, "transaction.version"), Some(2), "a new cluster finalizes transactions version 2");
        assert!(v4.finalized_features_epoch > 0);
    }
}
