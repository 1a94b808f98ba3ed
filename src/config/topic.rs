//! A topic's effective configuration: its overrides (the text the metadata image keeps) over
//! the broker's topic-level defaults ([`LogSettings::defaults`](super::LogSettings)), as one
//! typed [`LogConfig`].
//!
//! It is computed when a topic's configs or the broker defaults change, never per request:
//! the broker hands the result to the topic's partitions, and produce and fetch read its
//! fields. The text stays the source of DescribeConfigs.

use std::collections::BTreeMap;

use crate::log::{CleanupPolicy, DirtyRatio, LogConfig, MessageTimestampType};

/// What [`apply`] did with one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The key's field now holds the value.
    Set,
    /// A topic key with no part in the log's behaviour yet (`compression.type`,
    /// `preallocate`, `unclean.leader.election.enable`, `segment.jitter.ms`).
    NotLogged,
    /// Not a topic key.
    Unknown,
    /// The text does not parse as the key's type; the field is unchanged.
    Invalid,
}

/// The log configuration of a topic with `overrides` over `defaults`. Override values were
/// validated when set ([`check_topic_config`](super::check_topic_config)); one that does not
/// parse keeps the default.
pub fn log_config(defaults: &LogConfig, overrides: &BTreeMap<String, String>) -> LogConfig {
    let mut c = defaults.clone();
    for (key, value) in overrides {
        let applied = apply(&mut c, key, value);
        if matches!(applied, Applied::Unknown | Applied::Invalid) {
            tracing::debug!(key, value, ?applied, "topic config ignored");
        }
    }
    c
}

/// Sets the field of topic key `key` from `text`, bounded as the log needs it.
pub fn apply(c: &mut LogConfig, key: &str, text: &str) -> Applied {
    let long = || text.trim().parse::<i64>().ok();
    let set = |field: &mut i64| long().map_or(Applied::Invalid, |v| {
        *field = v;
        Applied::Set
    });
    match key {
        "segment.bytes" => long().map_or(Applied::Invalid, |v| {
            c.segment_bytes = v.max(14).unsigned_abs();
            Applied::Set
        }),
        "segment.ms" => set(&mut c.segment_ms),
        "retention.ms" => set(&mut c.retention_ms),
        "retention.bytes" => set(&mut c.retention_bytes),
        "index.interval.bytes" => long().map_or(Applied::Invalid, |v| {
            c.index_interval_bytes = v.max(0).unsigned_abs();
            Applied::Set
        }),
        "segment.index.bytes" => long().map_or(Applied::Invalid, |v| {
            c.segment_index_bytes = v.max(8).unsigned_abs();
            Applied::Set
        }),
        "flush.messages" => set(&mut c.flush_interval_messages),
        "flush.ms" => set(&mut c.flush_interval_ms),
        "file.delete.delay.ms" => set(&mut c.file_delete_delay_ms),
        "max.message.bytes" => long().map_or(Applied::Invalid, |v| {
            c.max_message_bytes = usize::try_from(v.max(0)).unwrap_or(usize::MAX);
            Applied::Set
        }),
        "min.insync.replicas" => text.trim().parse::<i32>().map_or(Applied::Invalid, |v| {
            c.min_insync_replicas = v;
            Applied::Set
        }),
        "cleanup.policy" => CleanupPolicy::parse(text).map_or(Applied::Invalid, |p| {
            c.cleanup_policy = p;
            Applied::Set
        }),
        "delete.retention.ms" => set(&mut c.delete_retention_ms),
        "min.compaction.lag.ms" => set(&mut c.min_compaction_lag_ms),
        "max.compaction.lag.ms" => set(&mut c.max_compaction_lag_ms),
        "min.cleanable.dirty.ratio" => text.trim().parse::<f64>().map_or(Applied::Invalid, |r| {
            c.min_cleanable_dirty_ratio = DirtyRatio(r.clamp(0.0, 1.0));
            Applied::Set
        }),
        "message.timestamp.type" => {
            // Compared as written, as before: the check accepts any case, only this exact
            // word switches to the broker's clock.
            c.message_timestamp_type =
                if text == "LogAppendTime" { MessageTimestampType::LogAppendTime } else { MessageTimestampType::CreateTime };
            Applied::Set
        }
        "message.timestamp.before.max.ms" => set(&mut c.message_timestamp_before_max_ms),
        "message.timestamp.after.max.ms" => set(&mut c.message_timestamp_after_max_ms),
        "compression.type" | "preallocate" | "unclean.leader.election.enable" | "segment.jitter.ms" => Applied::NotLogged,
        // Read by the replica fetchers from the topic image (see `replication::throttle`).
        "leader.replication.throttled.replicas" | "follower.replication.throttled.replicas" => Applied::NotLogged,
        _ => Applied::Unknown,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::config::{Kind, TOPIC_KEYS};

    /// Every topic key DescribeConfigs lists is known here: a misspelt match arm would leave
    /// a key that is stored and described but never acts.
    #[test]
    fn every_topic_key_is_known() {
        for k in TOPIC_KEYS {
            let sample = match k.kind {
                Kind::Bool => "true",
                Kind::Double => "0.25",
                Kind::ListOf(_) => "compact",
                Kind::Enum(words) => words[words.len() - 1],
                _ => "4097",
            };
            let mut c = LogConfig::default();
            let applied = apply(&mut c, k.name, sample);
            assert!(matches!(applied, Applied::Set | Applied::NotLogged), "{}: {applied:?}", k.name);
            if applied == Applied::Set {
                assert_ne!(c, LogConfig::default(), "{} changed nothing", k.name);
            }
        }
        assert_eq!(apply(&mut LogConfig::default(), "retention.msec", "1"), Applied::Unknown);
    }

    #[test]
    fn overrides_win_over_defaults_and_bad_text_keeps_the_default() {
        let defaults = LogConfig { retention_ms: 5, ..LogConfig::default() };
        let overrides: BTreeMap<String, String> = [
            ("max.message.bytes".to_string(), "100".to_string()),
            ("segment.bytes".to_string(), "3".to_string()),
            ("retention.bytes".to_string(), "lots".to_string()),
            ("min.insync.replicas".to_string(), "2".to_string()),
        ]
        .into();
        let c = log_config(&defaults, &overrides);
        assert_eq!((c.max_message_bytes, c.segment_bytes, c.min_insync_replicas), (100, 14, 2));
        assert_eq!((c.retention_ms, c.retention_bytes), (5, defaults.retention_bytes));
    }
}
