//! The client instances of KIP-714, as Kafka's `ClientMetricsManager` keeps them: each
//! GetTelemetrySubscriptions or PushTelemetry names a client instance (a new id when the
//! client sends the zero id), which is matched once against the subscriptions in force; its
//! subscription id is a hash of what it was given, so a push made under an older
//! subscription set is told UNKNOWN_SUBSCRIPTION_ID and fetches the new one.
//!
//! Rules (Kafka's): a GetTelemetrySubscriptions sooner than the push interval after the last
//! request is THROTTLING_QUOTA_EXCEEDED, unless the last push failed with
//! UNKNOWN_SUBSCRIPTION_ID or UNSUPPORTED_COMPRESSION_TYPE; the first push after a
//! GetTelemetrySubscriptions is always accepted (clients jitter their interval), a later one
//! sooner than the interval is throttled unless it is the terminating push; a push after the
//! terminating one is INVALID_REQUEST, as is the zero (or another reserved) instance id.
//!
//! Bounds: at most [`INSTANCES_MAX`] instances (the least recently seen goes first); an
//! instance not heard from for `max(60 s, 3 × its push interval)` is forgotten, as is every
//! instance of a connection that closed. Time is passed in (milliseconds), never read here.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Mutex;

use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::subscription::{self, ClientAttributes, Subscription};
use crate::sync::lock;

/// Kafka's cache bound: 16k active client instances per broker.
pub const INSTANCES_MAX: usize = 16_384;
/// Kafka's minimum time an idle instance is kept.
const EXPIRY_MIN_MS: i64 = 60_000;
/// Instances idle this many push intervals are forgotten.
const EXPIRY_INTERVALS: i64 = 3;

/// Compression codecs accepted for pushed payloads, preferred first (Kafka's order): zstd,
/// lz4, gzip, snappy.
pub const ACCEPTED_COMPRESSION_TYPES: &[i8] = &[4, 3, 1, 2];
/// The highest compression type id Kafka defines (0 none … 4 zstd).
const COMPRESSION_TYPE_MAX: i8 = 4;

/// Who is asking: what the request and its connection tell about the client.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub client_id: Option<String>,
    pub software_name: Option<String>,
    pub software_version: Option<String>,
    pub peer: Option<SocketAddr>,
}

/// What GetTelemetrySubscriptions answers.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionAnswer {
    pub client_instance_id: Uuid,
    pub subscription_id: i32,
    pub requested_metrics: Vec<String>,
    pub push_interval_ms: i32,
}

/// An accepted push: whom it is from, for labelling its metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptedPush {
    pub client_id: String,
    pub push_interval_ms: i32,
}

/// The fields of a PushTelemetry request the rules look at.
#[derive(Debug, Clone, Copy)]
pub struct PushHeader {
    pub client_instance_id: Uuid,
    pub subscription_id: i32,
    pub terminating: bool,
    pub compression_type: i8,
    pub metrics_bytes: usize,
}

struct Instance {
    attributes: ClientAttributes,
    client_id: String,
    peer: Option<SocketAddr>,
    subscription_id: i32,
    /// The subscription generation it was matched at.
    generation: u64,
    metrics: Vec<String>,
    push_interval_ms: i32,
    last_get_ms: i64,
    last_push_ms: i64,
    last_seen_ms: i64,
    terminating: bool,
    last_error: Option<ResponseError>,
}

#[derive(Default)]
struct State {
    /// The subscription configs last seen in the metadata image, and their parsed form.
    configs: BTreeMap<String, BTreeMap<String, String>>,
    subscriptions: Vec<Subscription>,
    /// Bumped whenever the subscriptions change; instances matched earlier are re-matched.
    generation: u64,
    instances: HashMap<Uuid, Instance>,
}

/// Client instances and the subscriptions they are matched against.
pub struct ClientMetricsManager {
    telemetry_max_bytes: i32,
    state: Mutex<State>,
}

impl ClientMetricsManager {
    pub fn new(telemetry_max_bytes: i32) -> Self {
        Self { telemetry_max_bytes, state: Mutex::new(State::default()) }
    }

    /// `telemetry.max.bytes`: the largest payload a push may carry.
    pub fn telemetry_max_bytes(&self) -> i32 {
        self.telemetry_max_bytes
    }

    /// Takes the subscriptions from the metadata image's CLIENT_METRICS configs, when they
    /// changed since the last call. A stored subscription that no longer validates (it was
    /// validated when written) is skipped.
    pub fn sync(&self, configs: &BTreeMap<String, BTreeMap<String, String>>) {
        let mut s = lock(&self.state);
        if s.configs == *configs && s.generation > 0 {
            return;
        }
        s.configs = configs.clone();
        s.subscriptions = configs
            .iter()
            .filter_map(|(name, c)| match Subscription::parse(name, c) {
                Ok(sub) => Some(sub),
                Err((_, reason)) => {
                    tracing::warn!(subscription = %name, %reason, "client-metrics subscription skipped");
                    None
                }
            })
            .collect();
        s.generation += 1;
    }

    /// GetTelemetrySubscriptions: the instance's subscription, or Kafka's throttling error.
    pub fn get_subscriptions(&self, now_ms: i64, requested_id: Uuid, client: &ClientInfo) -> (Uuid, Result<SubscriptionAnswer, ResponseError>) {
        let mut s = lock(&self.state);
        s.expire(now_ms);
        let id = if requested_id.is_nil() { s.new_instance_id() } else { requested_id };
        let instance = s.instance(id, now_ms, client);
        let elapsed = now_ms - instance.last_get_ms.max(instance.last_push_ms);
        let retry_allowed = matches!(instance.last_error, Some(ResponseError::UnknownSubscriptionId | ResponseError::UnsupportedCompressionType));
        if elapsed < i64::from(instance.push_interval_ms) && !retry_allowed {
            return (id, Err(ResponseError::ThrottlingQuotaExceeded));
        }
        instance.last_get_ms = now_ms;
        instance.last_error = None;
        let answer = SubscriptionAnswer {
            client_instance_id: id,
            subscription_id: instance.subscription_id,
            requested_metrics: instance.metrics.clone(),
            push_interval_ms: instance.push_interval_ms,
        };
        (id, Ok(answer))
    }

    /// PushTelemetry's checks, in Kafka's order. `Ok` when the payload should be decoded;
    /// a payload that then fails to decode is reported with [`Self::push_failed`].
    pub fn push(&self, now_ms: i64, push: &PushHeader, client: &ClientInfo) -> Result<AcceptedPush, ResponseError> {
        if is_reserved(push.client_instance_id) {
            return Err(ResponseError::InvalidRequest);
        }
        let mut s = lock(&self.state);
        s.expire(now_ms);
        let max_bytes = self.telemetry_max_bytes;
        let instance = s.instance(push.client_instance_id, now_ms, client);
        let outcome = check_push(instance, now_ms, push, max_bytes);
        instance.terminating = push.terminating;
        instance.last_error = outcome.err();
        outcome?;
        Ok(AcceptedPush { client_id: instance.client_id.clone(), push_interval_ms: instance.push_interval_ms })
    }

    /// Records that an accepted push's payload could not be used (its error is the last one).
    pub fn push_failed(&self, client_instance_id: Uuid, error: ResponseError) {
        if let Some(i) = lock(&self.state).instances.get_mut(&client_instance_id) {
            i.last_error = Some(error);
        }
    }

    /// Forgets the instances last heard from over a connection that closed (Kafka's
    /// disconnect listener).
    pub fn connection_closed(&self, peer: SocketAddr) {
        lock(&self.state).instances.retain(|_, i| i.peer != Some(peer));
    }

    /// How many client instances are known.
    pub fn instance_count(&self) -> usize {
        lock(&self.state).instances.len()
    }
}

fn check_push(instance: &mut Instance, now_ms: i64, push: &PushHeader, max_bytes: i32) -> Result<(), ResponseError> {
    if instance.terminating {
        return Err(ResponseError::InvalidRequest);
    }
    // The first push after a GetTelemetrySubscriptions is accepted whenever it comes.
    let accepted = instance.last_get_ms > instance.last_push_ms || now_ms - instance.last_push_ms >= i64::from(instance.push_interval_ms);
    if accepted {
        instance.last_push_ms = now_ms;
    } else if !push.terminating {
        return Err(ResponseError::ThrottlingQuotaExceeded);
    }
    if push.subscription_id != instance.subscription_id {
        return Err(ResponseError::UnknownSubscriptionId);
    }
    if !(0..=COMPRESSION_TYPE_MAX).contains(&push.compression_type) {
        return Err(ResponseError::UnsupportedCompressionType);
    }
    if push.metrics_bytes > usize::try_from(max_bytes).unwrap_or(0) {
        return Err(ResponseError::TelemetryTooLarge);
    }
    Ok(())
}

impl State {
    fn new_instance_id(&self) -> Uuid {
        loop {
            let id = Uuid::new_v4();
            if !self.instances.contains_key(&id) && !is_reserved(id) {
                return id;
            }
        }
    }

    /// The instance `id`, created (or re-matched after a subscription change) as needed.
    fn instance(&mut self, id: Uuid, now_ms: i64, client: &ClientInfo) -> &mut Instance {
        use std::collections::hash_map::Entry;
        if !self.instances.contains_key(&id) && self.instances.len() >= INSTANCES_MAX {
            self.evict_least_recent();
        }
        let State { subscriptions, generation, instances, .. } = self;
        let fresh = |attributes: ClientAttributes| {
            let (metrics, push_interval_ms) = matched(subscriptions, &attributes);
            Instance {
                subscription_id: subscription_id(&metrics, push_interval_ms, id),
                client_id: client.client_id.clone().unwrap_or_default(),
                peer: client.peer,
                attributes,
                generation: *generation,
                metrics,
                push_interval_ms,
                last_get_ms: 0,
                last_push_ms: 0,
                last_seen_ms: now_ms,
                terminating: false,
                last_error: None,
            }
        };
        let instance = match instances.entry(id) {
            Entry::Occupied(mut o) => {
                if o.get().generation < *generation {
                    let attributes = o.get().attributes.clone();
                    o.insert(fresh(attributes));
                }
                o.into_mut()
            }
            Entry::Vacant(v) => v.insert(fresh(attributes(id, client))),
        };
        instance.last_seen_ms = now_ms;
        if client.peer.is_some() {
            instance.peer = client.peer;
        }
        instance
    }

    fn evict_least_recent(&mut self) {
        if let Some(oldest) = self.instances.iter().min_by_key(|(_, i)| i.last_seen_ms).map(|(id, _)| *id) {
            self.instances.remove(&oldest);
        }
    }

    fn expire(&mut self, now_ms: i64) {
        self.instances.retain(|_, i| now_ms - i.last_seen_ms < EXPIRY_MIN_MS.max(EXPIRY_INTERVALS * i64::from(i.push_interval_ms)));
    }
}

/// Kafka's reserved ids: the zero id and the metadata topic's id (…0001).
fn is_reserved(id: Uuid) -> bool {
    id.as_u128() <= 1
}

fn attributes(id: Uuid, client: &ClientInfo) -> ClientAttributes {
    let mut a = ClientAttributes::default();
    a.values.insert(subscription::CLIENT_INSTANCE_ID, kafka_uuid(id));
    let mut put = |key, value: &Option<String>| {
        if let Some(v) = value {
            a.values.insert(key, v.clone());
        }
    };
    put(subscription::CLIENT_ID, &client.client_id);
    put(subscription::CLIENT_SOFTWARE_NAME, &client.software_name);
    put(subscription::CLIENT_SOFTWARE_VERSION, &client.software_version);
    if let Some(peer) = client.peer {
        a.values.insert(subscription::CLIENT_SOURCE_ADDRESS, peer.ip().to_string());
        a.values.insert(subscription::CLIENT_SOURCE_PORT, peer.port().to_string());
    }
    a
}

/// The metrics (`*` alone when any matching subscription wants all) and the shortest push
/// interval of the subscriptions a client matches; none matched: no metrics, the default.
fn matched(subscriptions: &[Subscription], attributes: &ClientAttributes) -> (Vec<String>, i32) {
    let mut metrics: Vec<String> = Vec::new();
    let mut interval = subscription::INTERVAL_MS_DEFAULT;
    for s in subscriptions.iter().filter(|s| s.matches(attributes)) {
        metrics.extend(s.metrics.iter().cloned());
        interval = interval.min(s.interval_ms);
    }
    metrics.sort();
    metrics.dedup();
    if metrics.iter().any(|m| m == subscription::ALL_METRICS) {
        metrics = vec![subscription::ALL_METRICS.to_string()];
    }
    (metrics, interval)
}

/// Kafka's subscription id: CRC32C of the metrics list and interval, XORed with the
/// instance id's hash (Java `Uuid.hashCode`).
fn subscription_id(metrics: &[String], push_interval_ms: i32, id: Uuid) -> i32 {
    let text = format!("[{}]{push_interval_ms}", metrics.join(", "));
    let crc = crc32c::crc32c(text.as_bytes()) as i32;
    let (high, low) = id.as_u64_pair();
    let h = high ^ low;
    crc ^ (((h >> 32) as i32) ^ (h as i32))
}

/// A Uuid as Kafka prints it: URL-safe base64 without padding.
pub fn kafka_uuid(id: Uuid) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes())
}


#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn subscriptions(list: &[(&str, &[(&str, &str)])]) -> BTreeMap<String, BTreeMap<String, String>> {
        list.iter().map(|(n, kv)| (n.to_string(), kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())).collect()
    }

    fn client(id: &str) -> ClientInfo {
        ClientInfo { client_id: Some(id.into()), peer: Some("127.0.0.1:5000".parse().unwrap()), ..ClientInfo::default() }
    }

    fn push_of(answer: &SubscriptionAnswer) -> PushHeader {
        PushHeader { client_instance_id: answer.client_instance_id, subscription_id: answer.subscription_id, terminating: false, compression_type: 0, metrics_bytes: 10 }
    }

    #[test]
    fn no_subscription_is_an_empty_one() {
        let m = ClientMetricsManager::new(1 << 20);
        m.sync(&BTreeMap::new());
        let (id, answer) = m.get_subscriptions(1_000_000, Uuid::nil(), &client("c"));
        let answer = answer.unwrap();
        assert!(!id.is_nil());
        assert_eq!(answer.client_instance_id, id);
        assert!(answer.requested_metrics.is_empty());
        assert_eq!(answer.push_interval_ms, subscription::INTERVAL_MS_DEFAULT);
    }

    #[test]
    fn matching_subscriptions_merge_and_pushes_follow_kafkas_rules() {
        let m = ClientMetricsManager::new(100);
        m.sync(&subscriptions(&[
            ("producers", &[("metrics", "org.apache.kafka.producer."), ("interval.ms", "1000"), ("match", "client_id=app-.*")]),
            ("all", &[("metrics", "org.apache.kafka.consumer."), ("interval.ms", "5000")]),
            ("other", &[("metrics", "*"), ("match", "client_id=other")]),
        ]));
        let t0 = 1_000_000;
        let (id, answer) = m.get_subscriptions(t0, Uuid::nil(), &client("app-1"));
        let answer = answer.unwrap();
        assert_eq!(answer.requested_metrics, vec!["org.apache.kafka.consumer.", "org.apache.kafka.producer."]);
        assert_eq!(answer.push_interval_ms, 1000);
        // Asking again at once is throttled.
        assert_eq!(m.get_subscriptions(t0 + 10, id, &client("app-1")).1, Err(ResponseError::ThrottlingQuotaExceeded));
        // The first push after the get is accepted at once; the next one only after the interval.
        let push = push_of(&answer);
        assert_eq!(m.push(t0 + 20, &push, &client("app-1")).unwrap().client_id, "app-1");
        assert_eq!(m.push(t0 + 30, &push, &client("app-1")), Err(ResponseError::ThrottlingQuotaExceeded));
        assert!(m.push(t0 + 1100, &push, &client("app-1")).is_ok());
        assert_eq!(m.push(t0 + 2200, &PushHeader { subscription_id: push.subscription_id ^ 1, ..push }, &client("app-1")), Err(ResponseError::UnknownSubscriptionId));
        // After UNKNOWN_SUBSCRIPTION_ID the client may ask again at once.
        assert!(m.get_subscriptions(t0 + 2201, id, &client("app-1")).1.is_ok());
        assert_eq!(m.push(t0 + 2300, &PushHeader { metrics_bytes: 101, ..push }, &client("app-1")), Err(ResponseError::TelemetryTooLarge));
        assert_eq!(m.push(t0 + 3400, &PushHeader { compression_type: 9, ..push }, &client("app-1")), Err(ResponseError::UnsupportedCompressionType));
        // The terminating push is accepted even early; nothing after it is.
        assert!(m.push(t0 + 4500, &push, &client("app-1")).is_ok());
        assert!(m.push(t0 + 4501, &PushHeader { terminating: true, ..push }, &client("app-1")).is_ok());
        assert_eq!(m.push(t0 + 9000, &push, &client("app-1")), Err(ResponseError::InvalidRequest));
        assert_eq!(m.push(t0, &PushHeader { client_instance_id: Uuid::nil(), ..push }, &client("x")), Err(ResponseError::InvalidRequest));

        let (_, everything) = m.get_subscriptions(t0, Uuid::nil(), &client("other"));
        assert_eq!(everything.unwrap().requested_metrics, vec!["*"]);
    }

    #[test]
    fn a_subscription_change_gives_a_new_subscription_id() {
        let m = ClientMetricsManager::new(1 << 20);
        m.sync(&subscriptions(&[("s", &[("metrics", "a."), ("interval.ms", "1000")])]));
        let (id, first) = m.get_subscriptions(1_000_000, Uuid::nil(), &client("c"));
        let first = first.unwrap();
        m.sync(&subscriptions(&[("s", &[("metrics", "a.,b."), ("interval.ms", "1000")])]));
        assert_eq!(m.push(1_000_010, &push_of(&first), &client("c")), Err(ResponseError::UnknownSubscriptionId));
        let second = m.get_subscriptions(1_000_020, id, &client("c")).1.unwrap();
        assert_ne!(second.subscription_id, first.subscription_id);
        assert_eq!(second.requested_metrics, vec!["a.", "b."]);
    }

    #[test]
    fn idle_and_disconnected_instances_are_forgotten() {
        let m = ClientMetricsManager::new(1 << 20);
        m.sync(&BTreeMap::new());
        let c = client("c");
        m.get_subscriptions(1_000_000, Uuid::nil(), &c).1.unwrap();
        assert_eq!(m.instance_count(), 1);
        m.connection_closed(c.peer.unwrap());
        assert_eq!(m.instance_count(), 0);
        m.get_subscriptions(1_000_000, Uuid::nil(), &c).1.unwrap();
        m.get_subscriptions(1_000_000 + 3 * 300_000, Uuid::nil(), &client("d")).1.unwrap();
        assert_eq!(m.instance_count(), 1, "the first instance expired");
    }

    #[test]
    fn subscription_ids_follow_kafkas_hash() {
        // Java: Uuid.hashCode folds the two longs; CRC32C over "[*]1000".
        let id = Uuid::from_u64_pair(0x0102_0304_0506_0708, 0x1112_1314_1516_1718);
        let h = 0x0102_0304_0506_0708u64 ^ 0x1112_1314_1516_1718u64;
        let expected = (crc32c::crc32c(b"[*]1000") as i32) ^ (((h >> 32) as i32) ^ (h as i32));
        assert_eq!(subscription_id(&["*".to_string()], 1000, id), expected);
    }
}
