//! Per-topic throughput counters (Kafka's `BrokerTopicMetrics`), resolved once per topic.

use prometheus::{IntCounter, IntCounterVec};

use super::{Definer, MetricsError, opts};

pub(super) struct TopicFamilies {
    bytes_in: IntCounterVec,
    bytes_out: IntCounterVec,
    messages_in: IntCounterVec,
    bytes_rejected: IntCounterVec,
}

impl TopicFamilies {
    pub(super) fn define(d: &mut Definer) -> Result<Self, MetricsError> {
        let family = |d: &mut Definer, name: &str, help: &str| d.add(IntCounterVec::new(opts(name, help), &["topic"])?);
        Ok(Self {
            bytes_in: family(
                d,
                "blumfeld_topic_bytes_in_total",
                "Record-batch bytes appended by producers, by topic (Kafka: BrokerTopicMetrics BytesInPerSec)",
            )?,
            bytes_out: family(
                d,
                "blumfeld_topic_bytes_out_total",
                "Record-batch bytes returned to fetchers, by topic (Kafka: BrokerTopicMetrics BytesOutPerSec)",
            )?,
            messages_in: family(
                d,
                "blumfeld_topic_messages_in_total",
                "Records appended by producers, by topic (Kafka: BrokerTopicMetrics MessagesInPerSec)",
            )?,
            bytes_rejected: family(
                d,
                "blumfeld_topic_bytes_rejected_total",
                "Record-batch bytes refused (invalid, too large), by topic (Kafka: BrokerTopicMetrics BytesRejectedPerSec)",
            )?,
        })
    }

    /// `isr_shrinks` and `isr_expands` are the broker-wide counters (no topic label).
    pub(super) fn handles(&self, topic: &str, isr_shrinks: &IntCounter, isr_expands: &IntCounter) -> TopicMetrics {
        let labels = [topic];
        TopicMetrics {
            bytes_in: self.bytes_in.with_label_values(&labels),
            bytes_out: self.bytes_out.with_label_values(&labels),
            messages_in: self.messages_in.with_label_values(&labels),
            bytes_rejected: self.bytes_rejected.with_label_values(&labels),
            isr_shrinks: isr_shrinks.clone(),
            isr_expands: isr_expands.clone(),
        }
    }

    pub(super) fn remove(&self, topic: &str) {
        let labels = [topic];
        // Err means "no such series": nothing to remove.
        let _ = self.bytes_in.remove_label_values(&labels);
        let _ = self.bytes_out.remove_label_values(&labels);
        let _ = self.messages_in.remove_label_values(&labels);
        let _ = self.bytes_rejected.remove_label_values(&labels);
    }
}

/// The counters of one topic. Held by each of the topic's partitions; recording is an
/// atomic add on a shared counter.
#[derive(Clone)]
pub struct TopicMetrics {
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
    pub messages_in: IntCounter,
    pub bytes_rejected: IntCounter,
    /// Broker-wide: a led partition's committed ISR shrank or grew.
    pub isr_shrinks: IntCounter,
    pub isr_expands: IntCounter,
}

impl TopicMetrics {
    /// A led partition's committed ISR went from `before` to `after` members (Kafka counts
    /// the leader's own changes once the controller committed them).
    #[inline]
    pub fn record_isr_change(&self, before: usize, after: usize) {
        if after < before {
            self.isr_shrinks.inc();
        } else if after > before {
            self.isr_expands.inc();
        }
    }

    /// An appended batch: its size in bytes and its record count. Retried duplicates
    /// (idempotence) are not new data and should not be recorded.
    #[inline]
    pub fn record_produce(&self, bytes: u64, records: u64) {
        self.bytes_in.inc_by(bytes);
        self.messages_in.inc_by(records);
    }

    /// Bytes of record batches put in a Fetch response.
    #[inline]
    pub fn record_fetch(&self, bytes: u64) {
        self.bytes_out.inc_by(bytes);
    }

    /// A batch refused by validation (corrupt, too large, bad sequence).
    #[inline]
    pub fn record_rejected(&self, bytes: u64) {
        self.bytes_rejected.inc_by(bytes);
    }
}
