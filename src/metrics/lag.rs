//! Consumer lag per group and partition (`blumfeld_consumer_group_lag`), the series Kafka's
//! tooling computes outside the broker (kafka-consumer-groups, Burrow, kafka-exporter).
//!
//! The label sets are tracked beside the gauge, because removing a series needs all its
//! labels and a group's partitions must be removable when the group goes.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use prometheus::{IntGaugeVec, Opts};

use super::snapshot::{GroupOffset, PartitionSnapshot};
use super::{Definer, MetricsError, lock};

type Key = (String, String, i32);

pub(super) struct ConsumerLag {
    gauge: IntGaugeVec,
    series: Mutex<BTreeSet<Key>>,
}

impl ConsumerLag {
    pub(super) fn define(d: &mut Definer) -> Result<Self, MetricsError> {
        let gauge = d.add(IntGaugeVec::new(
            Opts::new(
                "blumfeld_consumer_group_lag",
                "Records between a group's committed offset and the partition's high watermark (Kafka: kafka-consumer-groups LAG; records-lag on the client)",
            ),
            &["group", "topic", "partition"],
        )?)?;
        Ok(Self { gauge, series: Mutex::new(BTreeSet::new()) })
    }

    pub(super) fn update(&self, group: &str, topic: &str, partition: i32, lag: i64) {
        let mut series = lock(&self.series);
        let p = partition.to_string();
        self.gauge.with_label_values(&[group, topic, p.as_str()]).set(lag.max(0));
        series.insert((group.to_string(), topic.to_string(), partition));
    }

    pub(super) fn remove(&self, group: &str, topic: &str, partition: i32) {
        let mut series = lock(&self.series);
        let p = partition.to_string();
        let _ = self.gauge.remove_label_values(&[group, topic, p.as_str()]);
        series.remove(&(group.to_string(), topic.to_string(), partition));
    }

    pub(super) fn retain(&self, keep: impl Fn(&str, &str, i32) -> bool) {
        let mut series = lock(&self.series);
        series.retain(|(group, topic, partition)| {
            if keep(group, topic, *partition) {
                return true;
            }
            let p = partition.to_string();
            let _ = self.gauge.remove_label_values(&[group.as_str(), topic.as_str(), p.as_str()]);
            false
        });
    }

    /// Makes the lag series exactly those of `offsets`, lag measured against each partition's
    /// high watermark. A committed offset for a partition not hosted here has no lag to show.
    pub(super) fn replace_from_offsets(&self, offsets: &[GroupOffset], partitions: &[PartitionSnapshot]) {
        let high_watermarks: HashMap<(&str, i32), i64> =
            partitions.iter().map(|p| ((p.topic.as_str(), p.partition), p.high_watermark)).collect();
        let mut series = lock(&self.series);
        self.gauge.reset();
        series.clear();
        for o in offsets {
            let Some(hw) = high_watermarks.get(&(o.topic.as_str(), o.partition)) else { continue };
            let p = o.partition.to_string();
            self.gauge.with_label_values(&[o.group.as_str(), o.topic.as_str(), p.as_str()]).set((hw - o.committed_offset).max(0));
            series.insert((o.group.clone(), o.topic.clone(), o.partition));
        }
    }
}
