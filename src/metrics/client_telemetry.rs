//! The metrics clients push (KIP-714), exported beside the broker's own: one series per
//! (metric, labels) and client instance, labelled `client_instance_id` and `client_id`.
//!
//! Gauges take the pushed value; sums with delta temporality (what Blumfeld asks clients
//! for, as Kafka does) are added up, cumulative ones replace the value; monotonic sums are
//! Prometheus counters, other sums gauges. A client's series go once it has not pushed for
//! [`EXPIRY_INTERVALS`] push intervals. Bounded: at most [`CLIENTS_MAX`] clients and
//! [`SERIES_PER_CLIENT_MAX`] series each; a push past a bound is dropped, not stored.
//!
//! Names come from the client (sanitized by the decoder); a name whose type differs between
//! clients is exported with the type seen first in a scrape, the other series left out.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

use super::lock;

/// Clients whose pushed metrics are kept at most.
pub const CLIENTS_MAX: usize = 1024;
/// Series kept per client at most.
pub const SERIES_PER_CLIENT_MAX: usize = 2048;
/// A client's series are dropped after this many push intervals without a push.
pub const EXPIRY_INTERVALS: i64 = 3;

const CLIENTS_FAMILY: &str = "blumfeld_client_telemetry_clients";

/// How a pushed point aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointKind {
    Gauge,
    Sum { delta: bool, monotonic: bool },
}

/// One pushed data point, its name and labels already valid for Prometheus.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientPoint {
    pub name: String,
    pub kind: PointKind,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// A series of one client: its metric name and labels.
type SeriesKey = (String, Vec<(String, String)>);

/// A series' value, and whether it is a counter (else a gauge).
#[derive(Clone, Copy)]
struct SeriesValue {
    counter: bool,
    value: f64,
}

struct ClientSeries {
    client_id: String,
    last_push_ms: i64,
    push_interval_ms: i64,
    series: BTreeMap<SeriesKey, SeriesValue>,
}

/// The collector of pushed client metrics, registered in the broker's registry.
#[derive(Clone)]
pub struct ClientTelemetry {
    clients: Arc<Mutex<HashMap<String, ClientSeries>>>,
    desc: Vec<Desc>,
    now_ms: Arc<dyn Fn() -> i64 + Send + Sync>,
}

impl ClientTelemetry {
    pub(super) fn new(now_ms: Arc<dyn Fn() -> i64 + Send + Sync>) -> Result<Self, prometheus::Error> {
        let desc = Desc::new(CLIENTS_FAMILY.into(), "Client instances whose pushed metrics (KIP-714) are exported".into(), vec![], HashMap::new())?;
        Ok(Self { clients: Arc::new(Mutex::new(HashMap::new())), desc: vec![desc], now_ms })
    }

    /// Records one accepted push of `client_instance_id`.
    pub fn record(&self, client_instance_id: &str, client_id: &str, now_ms: i64, push_interval_ms: i64, points: Vec<ClientPoint>) {
        let mut clients = lock(&self.clients);
        expire(&mut clients, now_ms);
        if !clients.contains_key(client_instance_id) && clients.len() >= CLIENTS_MAX {
            tracing::debug!(client_instance_id, "pushed client metrics dropped: too many clients");
            return;
        }
        let c = clients.entry(client_instance_id.to_string()).or_insert_with(|| ClientSeries {
            client_id: client_id.to_string(),
            last_push_ms: now_ms,
            push_interval_ms,
            series: BTreeMap::new(),
        });
        c.client_id = client_id.to_string();
        c.last_push_ms = now_ms;
        c.push_interval_ms = push_interval_ms;
        for p in points {
            let key = (p.name, p.labels);
            if !c.series.contains_key(&key) && c.series.len() >= SERIES_PER_CLIENT_MAX {
                continue;
            }
            let (counter, accumulate) = match p.kind {
                PointKind::Gauge => (false, false),
                PointKind::Sum { delta, monotonic } => (monotonic, delta),
            };
            let slot = c.series.entry(key).or_insert(SeriesValue { counter, value: 0.0 });
            slot.counter = counter;
            slot.value = if accumulate { slot.value + p.value } else { p.value };
        }
    }

    /// Drops the series of clients that stopped pushing, as of `now_ms`.
    pub fn expire(&self, now_ms: i64) {
        expire(&mut lock(&self.clients), now_ms);
    }

    /// How many clients have series.
    pub fn client_count(&self) -> usize {
        lock(&self.clients).len()
    }

    fn families(&self) -> Vec<MetricFamily> {
        let mut clients = lock(&self.clients);
        expire(&mut clients, (self.now_ms)());
        let mut by_name: BTreeMap<&str, (bool, Vec<Metric>)> = BTreeMap::new();
        for (instance, c) in clients.iter() {
            for ((name, labels), SeriesValue { counter, value }) in &c.series {
                let family = by_name.entry(name.as_str()).or_insert((*counter, Vec::new()));
                if family.0 != *counter {
                    continue;
                }
                let mut pairs = vec![label("client_instance_id", instance), label("client_id", &c.client_id)];
                pairs.extend(labels.iter().map(|(k, v)| label(k, v)));
                let mut m = Metric::default();
                m.set_label(pairs);
                if *counter {
                    let mut v = Counter::default();
                    v.set_value(*value);
                    m.set_counter(v);
                } else {
                    let mut v = Gauge::default();
                    v.set_value(*value);
                    m.set_gauge(v);
                }
                family.1.push(m);
            }
        }
        let mut out = vec![family(CLIENTS_FAMILY, "Client instances whose pushed metrics (KIP-714) are exported", false, vec![{
            let mut m = Metric::default();
            let mut g = Gauge::default();
            g.set_value(clients.len() as f64);
            m.set_gauge(g);
            m
        }])];
        out.extend(by_name.into_iter().map(|(name, (counter, metrics))| family(name, "Pushed by clients (KIP-714)", counter, metrics)));
        out
    }
}

fn expire(clients: &mut HashMap<String, ClientSeries>, now_ms: i64) {
    clients.retain(|_, c| now_ms - c.last_push_ms <= EXPIRY_INTERVALS * c.push_interval_ms.max(1));
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(value.to_string());
    l
}

fn family(name: &str, help: &str, counter: bool, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(if counter { MetricType::COUNTER } else { MetricType::GAUGE });
    f.set_metric(metrics);
    f
}

impl Collector for ClientTelemetry {
    fn desc(&self) -> Vec<&Desc> {
        self.desc.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.families()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn point(name: &str, kind: PointKind, value: f64) -> ClientPoint {
        ClientPoint { name: name.into(), kind, labels: vec![("node_id".into(), "1".into())], value }
    }

    #[test]
    fn deltas_add_up_gauges_replace_and_silent_clients_go() {
        let now = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let clock = now.clone();
        let t = ClientTelemetry::new(Arc::new(move || clock.load(std::sync::atomic::Ordering::Relaxed))).unwrap();
        let registry = prometheus::Registry::new();
        registry.register(Box::new(t.clone())).unwrap();
        let delta = PointKind::Sum { delta: true, monotonic: true };
        t.record("AAAA", "app", 1000, 1000, vec![point("kafka_producer_sends_total", delta, 2.0), point("kafka_producer_queue", PointKind::Gauge, 5.0)]);
        t.record("AAAA", "app", 2000, 1000, vec![point("kafka_producer_sends_total", delta, 3.0), point("kafka_producer_queue", PointKind::Gauge, 1.0)]);
        now.store(2500, std::sync::atomic::Ordering::Relaxed);
        let mut text = Vec::new();
        prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &registry.gather(), &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("# TYPE kafka_producer_sends_total counter"), "{text}");
        assert!(text.contains(r#"kafka_producer_sends_total{client_instance_id="AAAA",client_id="app",node_id="1"} 5"#), "{text}");
        assert!(text.contains(r#"kafka_producer_queue{client_instance_id="AAAA",client_id="app",node_id="1"} 1"#), "{text}");
        assert!(text.contains("blumfeld_client_telemetry_clients 1"), "{text}");
        now.store(2000 + 3001, std::sync::atomic::Ordering::Relaxed);
        assert!(!t.families().iter().any(|f| f.name() == "kafka_producer_queue"));
        assert_eq!(t.client_count(), 0);
    }
}
