//! Per-API request metrics, resolved to label children at start-up so that recording a request
//! is an index into an array and a few atomic adds.

use std::sync::OnceLock;
use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiKey;
use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec};

use super::{Definer, MetricsError, QUEUE_SECONDS_BUCKETS, REQUEST_SECONDS_BUCKETS, histogram, opts};

/// Error codes with their own pre-sized slot: Kafka's codes run from -1 to about 130. Codes
/// outside `-1..=ERROR_CODE_MAX` share one `OTHER` series, so a misbehaving handler cannot
/// grow the exposition without bound.
pub const ERROR_CODE_MAX: i16 = 255;

/// The families behind [`ApiMetrics`].
pub(super) struct ApiFamilies {
    requests: IntCounterVec,
    errors: IntCounterVec,
    duration: HistogramVec,
    queue_time: HistogramVec,
}

impl ApiFamilies {
    pub(super) fn define(d: &mut Definer) -> Result<Self, MetricsError> {
        Ok(Self {
            requests: d.add(IntCounterVec::new(
                opts("blumfeld_requests_total", "Requests handled, by API (Kafka: RequestMetrics RequestsPerSec)"),
                &["api"],
            )?)?,
            errors: d.add(IntCounterVec::new(
                opts(
                    "blumfeld_request_errors_total",
                    "Error codes in responses, by API and error name; NONE counts successes (Kafka: RequestMetrics ErrorsPerSec)",
                ),
                &["api", "error"],
            )?)?,
            duration: d.add(HistogramVec::new(
                histogram(
                    "blumfeld_request_duration_seconds",
                    "Time from a request's arrival to its response, by API (Kafka: RequestMetrics TotalTimeMs)",
                    REQUEST_SECONDS_BUCKETS,
                ),
                &["api"],
            )?)?,
            queue_time: d.add(HistogramVec::new(
                histogram(
                    "blumfeld_request_queue_time_seconds",
                    "Time a request waited between arrival and the start of its handling, by API (Kafka: RequestMetrics RequestQueueTimeMs)",
                    QUEUE_SECONDS_BUCKETS,
                ),
                &["api"],
            )?)?,
        })
    }
}

/// The position of an API's handles in [`super::Metrics`]' array.
pub(super) fn index(key: ApiKey) -> usize {
    (key as i16).max(0) as usize
}

/// Slots for every API key Kafka defines.
pub(super) fn slots() -> usize {
    ApiKey::iter().map(index).max().unwrap_or(0) + 1
}

/// The metric handles of one API.
pub struct ApiMetrics {
    label: String,
    requests: IntCounter,
    duration: Histogram,
    queue_time: Histogram,
    /// `NONE` is resolved at start-up: it is counted on almost every response.
    errors_none: IntCounter,
    /// Slot `code + 1` for codes `-1..=ERROR_CODE_MAX`; the last slot is `OTHER`. Filled on
    /// the first occurrence of each code, so unused codes export no series.
    errors: Box<[OnceLock<IntCounter>]>,
    errors_family: IntCounterVec,
}

impl ApiMetrics {
    pub(super) fn new(key: ApiKey, f: &ApiFamilies) -> Self {
        let label = format!("{key:?}");
        let slots = (ERROR_CODE_MAX as usize) + 3;
        Self {
            requests: f.requests.with_label_values(&[label.as_str()]),
            duration: f.duration.with_label_values(&[label.as_str()]),
            queue_time: f.queue_time.with_label_values(&[label.as_str()]),
            errors_none: f.errors.with_label_values(&[label.as_str(), "NONE"]),
            errors: (0..slots).map(|_| OnceLock::new()).collect(),
            errors_family: f.errors.clone(),
            label,
        }
    }

    /// The `api` label value: Kafka's request name (`Produce`, `Fetch`, ...).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Records one handled request: `queue_time` from arrival (the frame fully read) to the
    /// start of handling, `duration` from arrival to the response being ready.
    #[inline]
    pub fn record(&self, queue_time: Duration, duration: Duration) {
        self.requests.inc();
        self.queue_time.observe(queue_time.as_secs_f64());
        self.duration.observe(duration.as_secs_f64());
    }

    /// Counts `count` occurrences of error `code` in responses (0 counts as `NONE`). Kafka
    /// counts every error code in a response; `api::error_codes` says which, per API.
    #[inline]
    pub fn record_error(&self, code: i16, count: u64) {
        if count == 0 {
            return;
        }
        if code == 0 {
            self.errors_none.inc_by(count);
            return;
        }
        let slot = if (-1..=ERROR_CODE_MAX).contains(&code) { (code + 1) as usize } else { self.errors.len() - 1 };
        let Some(cell) = self.errors.get(slot) else { return };
        let counter = cell.get_or_init(|| {
            let name = if slot == self.errors.len() - 1 { "OTHER".to_string() } else { error_name(code) };
            self.errors_family.with_label_values(&[self.label.as_str(), name.as_str()])
        });
        counter.inc_by(count);
    }

    /// Counts every error code of one response, e.g. the partition-level codes of a Produce.
    pub fn record_errors(&self, codes: impl IntoIterator<Item = i16>) {
        for code in codes {
            self.record_error(code, 1);
        }
    }
}

/// Kafka's name for an error code, as its `error` label shows it: `NONE`,
/// `UNKNOWN_TOPIC_OR_PARTITION`, ...; `CODE_<n>` for a code Kafka does not define.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(ResponseError::Unknown(c)) => format!("CODE_{c}"),
        Some(e) => upper_snake(&format!("{e:?}")),
    }
}

/// `UnknownTopicOrPartition` → `UNKNOWN_TOPIC_OR_PARTITION`.
fn upper_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}
