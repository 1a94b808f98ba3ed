//! Replication throttles, as `kafka-reassign-partitions --throttle` sets them (Kafka's
//! `ReplicationQuotaManager`): a rate per broker (`leader.replication.throttled.rate`,
//! `follower.replication.throttled.rate`, bytes per second, dynamic broker configs) that
//! applies only to the replicas a topic names (`leader.replication.throttled.replicas`,
//! `follower.replication.throttled.replicas`: `*` or `partition:broker,...`).
//!
//! Both sides are enforced, each with one [`TokenBucket`] per broker. The follower side: a
//! follower's fetchers share one bucket; the bytes fetched for throttled replicas draw on it,
//! and while it is in debt their partitions are left out of fetch requests (as Kafka's
//! `ReplicaFetcherThread` leaves them out while the quota is exceeded). The leader side
//! (`api::fetch`): the bytes a leader serves for its throttled replicas draw on its bucket,
//! and while it is in debt a follower of a throttled replica that is not in the ISR gets no
//! records (Kafka's `shouldLeaderThrottle`). Other partitions replicate as fast as ever, so
//! in-sync replication is never held back.
//!
//! Pure: no clock (time is an argument), no I/O.

use std::collections::BTreeMap;

use crate::types::{NodeId, PartitionId};

pub const LEADER_RATE: &str = "leader.replication.throttled.rate";
pub const FOLLOWER_RATE: &str = "follower.replication.throttled.rate";
/// Kafka's third broker throttle (moves between log directories); the tool clears it with the
/// others. Accepted and stored; Blumfeld has one log directory, so it has nothing to limit.
pub const ALTER_LOG_DIRS_RATE: &str = "replica.alter.log.dirs.io.max.bytes.per.second";
pub const LEADER_REPLICAS: &str = "leader.replication.throttled.replicas";
pub const FOLLOWER_REPLICAS: &str = "follower.replication.throttled.replicas";

/// The broker keys of the throttles.
pub const BROKER_RATE_KEYS: &[&str] = &[LEADER_RATE, FOLLOWER_RATE, ALTER_LOG_DIRS_RATE];

/// A broker throttle's value: a non-negative number of bytes per second (Kafka's LONG with
/// `atLeast(0)`); the message is Kafka's.
pub fn check_rate(key: &str, value: &str) -> Result<u64, String> {
    value
        .trim()
        .parse::<i64>()
        .ok()
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| format!("Invalid value {value} for configuration {key}: Value must be at least 0"))
}

/// A topic's throttled replicas: every replica, or the listed (partition, broker) pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThrottledReplicas {
    All,
    Listed(Vec<(PartitionId, NodeId)>),
}

impl ThrottledReplicas {
    /// Kafka's `ThrottledReplicaListValidator`: empty, `*`, or `partition:broker` pairs
    /// separated by commas (whitespace allowed around them).
    pub fn parse(value: &str) -> Result<Self, String> {
        let v = value.trim();
        if v == "*" {
            return Ok(Self::All);
        }
        let mut pairs = Vec::new();
        for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let parsed = item.split_once(':').and_then(|(p, b)| Some((p.trim().parse::<i32>().ok()?, b.trim().parse::<i32>().ok()?)));
            match parsed {
                Some((p, b)) if p >= 0 && b >= 0 => pairs.push((PartitionId(p), NodeId(b))),
                _ => {
                    return Err("must be the literal '*' or a list of replicas in the following format: \
                                [partitionId]:[brokerId],[partitionId]:[brokerId],..."
                        .into());
                }
            }
        }
        Ok(Self::Listed(pairs))
    }

    pub fn contains(&self, partition: PartitionId, broker: NodeId) -> bool {
        match self {
            Self::All => true,
            Self::Listed(pairs) => pairs.contains(&(partition, broker)),
        }
    }
}

/// Whether `broker`'s replica of `partition` is throttled by the topic config value `value`
/// (absent or unparseable: not throttled).
pub fn is_throttled(value: Option<&str>, partition: PartitionId, broker: NodeId) -> bool {
    value.and_then(|v| ThrottledReplicas::parse(v).ok()).is_some_and(|t| t.contains(partition, broker))
}

/// The rate `key` limits `broker` to: its own dynamic config, else the cluster default (the
/// resource named ""), else none. `configs` maps a broker resource name to its configs.
pub fn rate(configs: &BTreeMap<String, BTreeMap<String, String>>, broker: NodeId, key: &str) -> Option<u64> {
    let of = |name: &str| configs.get(name).and_then(|c| c.get(key)).and_then(|v| v.trim().parse::<u64>().ok());
    of(&broker.0.to_string()).or_else(|| of(""))
}

/// A token bucket of bytes: `rate` bytes per second, up to one second's worth saved up. A
/// fetch cannot be cut short, so recording one may take the bucket into debt; it is
/// *throttled* until the debt is paid back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    rate_bytes_per_s: Option<u64>,
    /// Bytes available (negative: owed).
    tokens: i64,
    last_ms: i64,
}

impl TokenBucket {
    /// An unlimited bucket.
    pub fn new(now_ms: i64) -> Self {
        Self { rate_bytes_per_s: None, tokens: 0, last_ms: now_ms }
    }

    pub fn rate(&self) -> Option<u64> {
        self.rate_bytes_per_s
    }

    /// A new rate (`None`: unlimited). A change forgets the debt and savings of the old one.
    pub fn set_rate(&mut self, rate_bytes_per_s: Option<u64>, now_ms: i64) {
        if rate_bytes_per_s != self.rate_bytes_per_s {
            self.rate_bytes_per_s = rate_bytes_per_s;
            self.tokens = 0;
            self.last_ms = now_ms;
        }
    }

    fn refill(&mut self, now_ms: i64) {
        let Some(rate) = self.rate_bytes_per_s else { return };
        let elapsed_ms = now_ms.saturating_sub(self.last_ms).max(0);
        let earned = i64::try_from(u128::from(rate) * elapsed_ms as u128 / 1000).unwrap_or(i64::MAX);
        let cap = i64::try_from(rate).unwrap_or(i64::MAX);
        self.tokens = self.tokens.saturating_add(earned).min(cap);
        self.last_ms = self.last_ms.max(now_ms);
    }

    /// `bytes` were fetched for throttled replicas.
    pub fn record(&mut self, bytes: u64, now_ms: i64) {
        if self.rate_bytes_per_s.is_none() {
            return;
        }
        self.refill(now_ms);
        self.tokens = self.tokens.saturating_sub(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Whether throttled replicas must wait (the bucket is in debt).
    pub fn throttled(&mut self, now_ms: i64) -> bool {
        self.refill(now_ms);
        self.rate_bytes_per_s.is_some() && self.tokens < 0
    }

    /// How long until the debt is paid back (0 when not throttled).
    pub fn wait_ms(&mut self, now_ms: i64) -> u64 {
        if !self.throttled(now_ms) {
            return 0;
        }
        let rate = self.rate_bytes_per_s.unwrap_or(u64::MAX);
        if rate == 0 {
            return u64::MAX;
        }
        let owed = self.tokens.unsigned_abs();
        (u128::from(owed) * 1000).div_ceil(u128::from(rate)).try_into().unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_limits_bytes_per_second_and_saves_at_most_one_second() {
        let mut b = TokenBucket::new(0);
        b.record(1 << 30, 0);
        assert!(!b.throttled(0), "unlimited by default");
        b.set_rate(Some(1000), 0);
        assert!(!b.throttled(0));
        b.record(2500, 0);
        assert!(b.throttled(0));
        assert_eq!(b.wait_ms(0), 2500);
        assert!(b.throttled(2499));
        assert!(!b.throttled(2500));
        // Idle for a minute: one second's worth saved, no more.
        b.record(1000, 62_500);
        assert!(!b.throttled(62_500));
        b.record(1, 62_500);
        assert!(b.throttled(62_500));
        assert_eq!(b.wait_ms(62_500), 1);
        // Lifting the rate ends the throttle at once.
        b.set_rate(None, 62_500);
        assert!(!b.throttled(62_500));
        assert_eq!(b.wait_ms(62_500), 0);
    }

    #[test]
    fn over_ten_seconds_the_rate_holds() {
        let mut b = TokenBucket::new(0);
        b.set_rate(Some(10_000), 0);
        let mut fetched = 0u64;
        let mut now = 0;
        while now < 10_000 {
            if !b.throttled(now) {
                b.record(4096, now);
                fetched += 4096;
            }
            now += 10;
        }
        // At most the rate times the time, plus one fetch and the first second's savings.
        assert!(fetched <= 10_000 * 10 + 4096 + 10_000, "{fetched}");
        assert!(fetched >= 10_000 * 9, "{fetched}");
    }

    #[test]
    fn a_zero_rate_throttles_after_any_byte() {
        let mut b = TokenBucket::new(0);
        b.set_rate(Some(0), 0);
        b.record(1, 0);
        assert!(b.throttled(1_000_000));
        assert_eq!(b.wait_ms(0), u64::MAX);
    }

    #[test]
    fn throttled_replica_lists_parse_as_kafka_validates_them() {
        assert_eq!(ThrottledReplicas::parse("*"), Ok(ThrottledReplicas::All));
        assert_eq!(ThrottledReplicas::parse(""), Ok(ThrottledReplicas::Listed(vec![])));
        let t = ThrottledReplicas::parse("0:1, 0:2 ,3:1").unwrap();
        assert!(t.contains(PartitionId(0), NodeId(2)) && t.contains(PartitionId(3), NodeId(1)));
        assert!(!t.contains(PartitionId(1), NodeId(1)));
        for bad in ["0", "a:1", "0:1,x", "-1:2", "0:1:2"] {
            assert!(ThrottledReplicas::parse(bad).is_err(), "{bad}");
        }
        assert!(is_throttled(Some("*"), PartitionId(7), NodeId(3)));
        assert!(!is_throttled(None, PartitionId(7), NodeId(3)));
        assert!(!is_throttled(Some("junk"), PartitionId(7), NodeId(3)));
    }

    #[test]
    fn a_brokers_own_rate_wins_over_the_cluster_default() {
        let mut configs: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        assert_eq!(rate(&configs, NodeId(1), FOLLOWER_RATE), None);
        configs.entry(String::new()).or_default().insert(FOLLOWER_RATE.into(), "500".into());
        assert_eq!(rate(&configs, NodeId(1), FOLLOWER_RATE), Some(500));
        configs.entry("1".into()).or_default().insert(FOLLOWER_RATE.into(), "70".into());
        assert_eq!(rate(&configs, NodeId(1), FOLLOWER_RATE), Some(70));
        assert_eq!(rate(&configs, NodeId(2), FOLLOWER_RATE), Some(500));
        assert_eq!(check_rate(LEADER_RATE, "10"), Ok(10));
        assert!(check_rate(LEADER_RATE, "-1").is_err() && check_rate(LEADER_RATE, "fast").is_err());
    }
}
