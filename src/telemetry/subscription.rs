//! Client-metrics subscriptions (KIP-714): the CLIENT_METRICS config resource's keys, their
//! validation as Kafka's `ClientMetricsConfigs.validate` does it, and the parsed form the
//! telemetry manager matches clients against.
//!
//! A subscription is a named set of three keys: `metrics` (metric name prefixes, `*` for
//! all), `interval.ms` (how often matching clients push, 100 ms to 1 h) and `match`
//! (`attribute=regex` patterns, all of which a client must match; none matches every client).
//! Unknown keys and out-of-range intervals are INVALID_REQUEST; an integer that does not parse
//! and a malformed pattern are INVALID_CONFIG, as in Kafka.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use regex::Regex;

pub const METRICS: &str = "metrics";
pub const INTERVAL_MS: &str = "interval.ms";
pub const MATCH: &str = "match";

/// The keys of a subscription, in Kafka's order.
pub const KEYS: &[&str] = &[METRICS, INTERVAL_MS, MATCH];

/// `*` in `metrics`: every metric.
pub const ALL_METRICS: &str = "*";

/// Kafka's default push interval: 5 minutes.
pub const INTERVAL_MS_DEFAULT: i32 = 300_000;
const INTERVAL_MS_MIN: i32 = 100;
const INTERVAL_MS_MAX: i32 = 3_600_000;

/// The client attributes a `match` pattern may name.
pub const CLIENT_INSTANCE_ID: &str = "client_instance_id";
pub const CLIENT_ID: &str = "client_id";
pub const CLIENT_SOFTWARE_NAME: &str = "client_software_name";
pub const CLIENT_SOFTWARE_VERSION: &str = "client_software_version";
pub const CLIENT_SOURCE_ADDRESS: &str = "client_source_address";
pub const CLIENT_SOURCE_PORT: &str = "client_source_port";
const MATCH_ATTRIBUTES: &[&str] =
    &[CLIENT_INSTANCE_ID, CLIENT_ID, CLIENT_SOFTWARE_NAME, CLIENT_SOFTWARE_VERSION, CLIENT_SOURCE_ADDRESS, CLIENT_SOURCE_PORT];

/// A refused subscription: Kafka's code and message.
pub type Invalid = (ResponseError, String);

/// Whether `key` is a LIST key (APPEND and SUBTRACT apply).
pub fn is_list(key: &str) -> bool {
    key == METRICS || key == MATCH
}

/// The value in force when `key` is not set, as DescribeConfigs shows it.
pub fn default_value(key: &str) -> Option<String> {
    match key {
        METRICS | MATCH => Some(String::new()),
        INTERVAL_MS => Some(INTERVAL_MS_DEFAULT.to_string()),
        _ => None,
    }
}

/// A parsed subscription.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub name: String,
    /// Metric name prefixes; empty subscribes to nothing.
    pub metrics: Vec<String>,
    pub interval_ms: i32,
    /// (attribute, pattern matched against the whole value); empty matches every client.
    pub patterns: Vec<(String, Regex)>,
}

/// A client's attributes, as `match` patterns see them (absent: the pattern fails).
#[derive(Debug, Clone, Default)]
pub struct ClientAttributes {
    pub values: BTreeMap<&'static str, String>,
}

impl Subscription {
    /// Validates and parses a subscription's complete set of keys.
    pub fn parse(name: &str, configs: &BTreeMap<String, String>) -> Result<Self, Invalid> {
        validate(name, configs)?;
        let list = |key: &str| configs.get(key).map(|v| parse_list(v)).unwrap_or_default();
        let interval_ms = match configs.get(INTERVAL_MS) {
            Some(v) => parse_interval(v)?,
            None => INTERVAL_MS_DEFAULT,
        };
        Ok(Subscription { name: name.to_string(), metrics: list(METRICS), interval_ms, patterns: parse_patterns(&list(MATCH))? })
    }

    /// Whether a client with `attributes` matches every pattern.
    pub fn matches(&self, attributes: &ClientAttributes) -> bool {
        self.patterns.iter().all(|(attribute, re)| attributes.values.get(attribute.as_str()).is_some_and(|v| re.is_match(v)))
    }
}

/// Kafka's `ClientMetricsConfigs.validate`: the name, then every key, then the interval's
/// bounds and the patterns' syntax.
pub fn validate(name: &str, configs: &BTreeMap<String, String>) -> Result<(), Invalid> {
    if name.is_empty() {
        return Err((ResponseError::InvalidRequest, "Subscription name can't be empty".into()));
    }
    if let Some(key) = configs.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err((ResponseError::InvalidRequest, format!("Unknown client metrics configuration: {key}")));
    }
    if let Some(v) = configs.get(INTERVAL_MS) {
        let interval = parse_interval(v)?;
        if !(INTERVAL_MS_MIN..=INTERVAL_MS_MAX).contains(&interval) {
            return Err((
                ResponseError::InvalidRequest,
                format!("Invalid value {interval} for {INTERVAL_MS}, interval must be between 100 and 3600000 (1 hour)"),
            ));
        }
    }
    if let Some(v) = configs.get(MATCH) {
        parse_patterns(&parse_list(v))?;
    }
    Ok(())
}

fn parse_interval(v: &str) -> Result<i32, Invalid> {
    v.trim().parse::<i32>().map_err(|_| {
        (ResponseError::InvalidConfig, format!("Invalid value {v} for configuration {INTERVAL_MS}: Not a number of type INT"))
    })
}

/// A LIST value as Kafka's ConfigDef reads it: comma-separated, trimmed; empty is no items.
pub fn parse_list(v: &str) -> Vec<String> {
    if v.trim().is_empty() {
        return Vec::new();
    }
    v.split(',').map(|s| s.trim().to_string()).collect()
}

/// `attribute=regex` patterns, split at the only `=` (Kafka refuses zero or several), the
/// attribute one of [`MATCH_ATTRIBUTES`], the regex compiled to match whole values.
fn parse_patterns(patterns: &[String]) -> Result<Vec<(String, Regex)>, Invalid> {
    let illegal = |p: &str| (ResponseError::InvalidConfig, format!("Illegal client matching pattern: {p}"));
    let mut out: Vec<(String, Regex)> = Vec::with_capacity(patterns.len());
    for p in patterns {
        // Java's String.split drops trailing empty parts: "a=" has one part, refused.
        let mut parts: Vec<&str> = p.split('=').collect();
        while parts.len() > 1 && parts.last().is_some_and(|s| s.is_empty()) {
            parts.pop();
        }
        let [attribute, pattern] = parts.as_slice() else { return Err(illegal(p)) };
        let attribute = attribute.trim();
        if !MATCH_ATTRIBUTES.contains(&attribute) {
            return Err(illegal(p));
        }
        let re = Regex::new(&format!("^(?:{})$", pattern.trim())).map_err(|_| illegal(p))?;
        // A later pattern for the same attribute replaces the earlier one (Kafka keeps a map).
        out.retain(|(a, _)| a != attribute);
        out.push((attribute.to_string(), re));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn kafkas_validation_codes_and_messages() {
        let code = |name: &str, pairs: &[(&str, &str)]| validate(name, &configs(pairs)).map_err(|(c, m)| (c.code(), m));
        assert!(code("s", &[("metrics", "org.apache.kafka.producer."), ("interval.ms", "1000"), ("match", "client_id=app-.*")]).is_ok());
        assert!(code("s", &[]).is_ok());
        assert_eq!(code("", &[]).unwrap_err().0, ResponseError::InvalidRequest.code());
        assert_eq!(code("s", &[("nope", "1")]).unwrap_err(), (ResponseError::InvalidRequest.code(), "Unknown client metrics configuration: nope".into()));
        assert_eq!(code("s", &[("interval.ms", "99")]).unwrap_err().0, ResponseError::InvalidRequest.code());
        assert_eq!(code("s", &[("interval.ms", "3600001")]).unwrap_err().0, ResponseError::InvalidRequest.code());
        assert!(code("s", &[("interval.ms", "3600000")]).is_ok());
        assert_eq!(code("s", &[("interval.ms", "soon")]).unwrap_err().0, ResponseError::InvalidConfig.code());
        for bad in ["client_id", "client_id=", "client_id=a=b", "host=x", "client_id=("] {
            assert_eq!(code("s", &[("match", bad)]).unwrap_err(), (ResponseError::InvalidConfig.code(), format!("Illegal client matching pattern: {bad}")));
        }
    }

    #[test]
    fn patterns_match_whole_attribute_values() {
        let s = Subscription::parse("s", &configs(&[("match", "client_id = app-.*, client_software_name=apache-kafka-java")])).unwrap();
        let mut a = ClientAttributes::default();
        a.values.insert(CLIENT_ID, "app-1".into());
        assert!(!s.matches(&a), "software name missing");
        a.values.insert(CLIENT_SOFTWARE_NAME, "apache-kafka-java".into());
        assert!(s.matches(&a));
        a.values.insert(CLIENT_ID, "my-app-1".into());
        assert!(!s.matches(&a), "the pattern must match the whole value");
        let all = Subscription::parse("all", &configs(&[("metrics", "*")])).unwrap();
        assert!(all.matches(&ClientAttributes::default()));
        assert_eq!(all.interval_ms, INTERVAL_MS_DEFAULT);
        assert_eq!(all.metrics, vec!["*"]);
    }
}
