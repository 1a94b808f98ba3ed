//! Property test for the cleaner: random keyed appends (some compressed with each codec via
//! kafka-protocol's encoder, some tombstones, a few without key), rolls, cleaning passes
//! under a rising high watermark, clean reopens and crashes, checked after every step against
//! a model: below the cleaned end exactly the latest record per key survives (a tombstone
//! only until the pass after its delete horizon), everything above it is untouched, every
//! surviving record keeps its offset, and the log end offset never moves.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression as Codec, Record as KRecord, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use proptest::prelude::*;

use super::super::*;
use super::tests::{Records, read_records};

#[derive(Debug, Clone)]
enum Op {
    /// Records as (key, value); `None` key: keyless, `None` value: tombstone.
    Append {
        records: Vec<(Option<u8>, Option<u16>)>,
        codec: u8,
    },
    Roll,
    /// A pass with the high watermark raised by `hw_step` of the remaining distance.
    Clean {
        hw_step: f64,
    },
    Tick {
        ms: i64,
    },
    Reopen {
        clean: bool,
    },
}

fn arb_record() -> impl Strategy<Value = (Option<u8>, Option<u16>)> {
    (
        prop::option::weighted(0.97, 0u8..12),
        prop::option::weighted(0.85, any::<u16>()),
    )
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (prop::collection::vec(arb_record(), 1..6), 0u8..5)
            .prop_map(|(records, codec)| Op::Append { records, codec }),
        2 => Just(Op::Roll),
        3 => (0.0..1.0f64).prop_map(|hw_step| Op::Clean { hw_step }),
        3 => (0i64..3_000).prop_map(|ms| Op::Tick { ms }),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

fn arb_config() -> impl Strategy<Value = LogConfig> {
    (
        256u64..3000,
        0i64..4_000,
        prop_oneof![Just(0.0), Just(0.5)],
        prop_oneof![Just(usize::MAX / 2), 100usize..2_000],
        16u64..400,
    )
        .prop_map(
            |(segment_bytes, retention, ratio, dedupe, interval)| LogConfig {
                segment_bytes,
                index_interval_bytes: interval,
                retention_ms: -1,
                cleanup_policy: CleanupPolicy::Compact,
                delete_retention_ms: retention,
                min_cleanable_dirty_ratio: DirtyRatio(ratio),
                cleaner_dedupe_buffer_bytes: dedupe,
                ..LogConfig::default()
            },
        )
}

fn encode(records: &[(Option<u8>, Option<u16>)], codec: u8, now_ms: i64) -> Vec<u8> {
    let compression = [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ][usize::from(codec) % 5];
    let records: Vec<KRecord> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| KRecord {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // One batch: the encoder splits where offset - sequence changes.
            sequence: i as i32 - 1,
            timestamp: now_ms,
            key: key.map(|k| Bytes::from(format!("key-{k}"))),
            value: value.map(|v| Bytes::from(format!("value-{v}-{}", "x".repeat(v as usize % 40)))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
    buf.to_vec()
}

/// Every record ever appended, and the passes that ran as (time, cleaned end).
#[derive(Debug, Default)]
struct Model {
    appended: Vec<(i64, Option<Bytes>, Option<Bytes>)>,
    passes: Vec<(i64, i64)>,
    high_watermark: i64,
}

impl Model {
    fn expected(&self, delete_retention_ms: i64) -> Records {
        let end = self.passes.last().map_or(0, |p| p.1);
        let mut latest: HashMap<&Bytes, i64> = HashMap::new();
        for (offset, key, _) in self.appended.iter().filter(|r| r.0 < end) {
            if let Some(key) = key {
                latest.insert(key, *offset);
            }
        }
        let mut out = BTreeMap::new();
        for (offset, key, value) in &self.appended {
            let keep = *offset >= end
                || key.as_ref().is_some_and(|k| {
                    latest.get(k) == Some(offset)
                        && (value.is_some()
                            || !self.tombstone_expired(*offset, delete_retention_ms))
                });
            if keep {
                out.insert(*offset, (key.clone(), value.clone()));
            }
        }
        out
    }

    /// The first pass covering `offset` stamps the horizon; a later pass at or after it
    /// removes the tombstone.
    fn tombstone_expired(&self, offset: i64, delete_retention_ms: i64) -> bool {
        let mut covering = self.passes.iter().filter(|(_, end)| *end > offset);
        let Some((first_ms, _)) = covering.next() else {
            return false;
        };
        let horizon = first_ms + delete_retention_ms;
        covering.any(|(ms, _)| *ms >= horizon)
    }
}

struct Harness {
    dir: tempfile::TempDir,
    config: LogConfig,
    log: Option<Log>,
    model: Model,
    now_ms: i64,
}

impl Harness {
    fn log(&mut self) -> &mut Log {
        self.log.as_mut().unwrap()
    }

    fn apply(&mut self, op: &Op) {
        let now = self.now_ms;
        match op {
            Op::Append { records, codec } => {
                let mut bytes = encode(records, *codec, now);
                let info = *self.log().append(&mut bytes, 0, now).unwrap().info();
                for (i, (key, value)) in records.iter().enumerate() {
                    let offset = info.first_offset + i as i64;
                    let key = key.map(|k| Bytes::from(format!("key-{k}")));
                    let value = value
                        .map(|v| Bytes::from(format!("value-{v}-{}", "x".repeat(v as usize % 40))));
                    self.model.appended.push((offset, key, value));
                }
            }
            Op::Roll => self.log().roll(now).unwrap(),
            Op::Tick { ms } => self.now_ms += ms,
            Op::Clean { hw_step } => self.clean(*hw_step),
            Op::Reopen { clean } => {
                let log = self.log.take().unwrap();
                if *clean {
                    log.close(now).unwrap();
                } else {
                    drop(log);
                }
                self.log = Some(Log::open(self.dir.path(), self.config.clone(), now).unwrap());
            }
        }
    }

    fn clean(&mut self, hw_step: f64) {
        let now = self.now_ms;
        let end = self.log().log_end_offset();
        let hw = self.model.high_watermark;
        self.model.high_watermark = hw + ((end - hw) as f64 * hw_step).ceil() as i64;
        let hw = self.model.high_watermark;
        let Some(stats) = self.log().clean(now, hw).unwrap() else {
            return;
        };
        let previous_end = self.model.passes.last().map_or(0, |p| p.1);
        assert!(stats.end_offset >= previous_end, "cleaned end moved back");
        assert!(stats.end_offset <= hw, "cleaned above the high watermark");
        assert_eq!(self.log().log_end_offset(), end, "log end offset moved");
        self.model.passes.push((now, stats.end_offset));
    }

    fn check(&mut self) {
        let expected = self.model.expected(self.config.delete_retention_ms);
        let end = self.model.appended.last().map_or(0, |r| r.0 + 1);
        let log = self.log.as_ref().unwrap();
        assert_eq!(log.log_end_offset(), end);
        let got = read_records(log);
        assert_eq!(got, expected, "passes {:?}", self.model.passes);
        // Reads from any offset start at the batch holding it (offset index intact).
        for from in (0..end).step_by(7) {
            let read = log.read(from, 1, i64::MAX, true).unwrap();
            let first = crate::record::BatchIter::new(&read.bytes).next();
            let want = expected.range(from..).next().map(|(o, _)| *o);
            match (first, want) {
                (Some((h, _)), Some(o)) => {
                    assert!(h.base_offset <= o.max(from) && h.last_offset() >= from)
                }
                (None, None) => {}
                (Some((h, _)), None) => assert!(h.last_offset() >= from),
                (None, Some(o)) => panic!("read from {from} found nothing, record {o} exists"),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn cleaning_keeps_exactly_the_latest_record_per_key(
        config in arb_config(),
        ops in prop::collection::vec(arb_op(), 1..80),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), config.clone(), 0).unwrap();
        let mut h = Harness { dir, config, log: Some(log), model: Model::default(), now_ms: 0 };
        for op in &ops {
            h.apply(op);
            h.check();
        }
        // A final pass over everything, far in the future, then a crash and a clean reopen.
        h.apply(&Op::Roll);
        h.apply(&Op::Tick { ms: 10_000 });
        h.apply(&Op::Clean { hw_step: 1.0 });
        h.apply(&Op::Tick { ms: 10_000 });
        h.apply(&Op::Clean { hw_step: 1.0 });
        h.check();
        h.apply(&Op::Reopen { clean: false });
        h.check();
        h.apply(&Op::Reopen { clean: true });
        h.check();
    }
}
