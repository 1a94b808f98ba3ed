//! The records of `__transaction_state`, in Kafka's `TransactionLogKey` /
//! `TransactionLogValue` formats (each prefixed by its version as an i16, Kafka's
//! `MessageUtil.toVersionPrefixedBytes`), so Kafka's tools can read the topic:
//!
//! - key v0: transactional id (string: i16 length + UTF-8);
//! - value v0: producer id i64, producer epoch i16, timeout ms i32, state i8, partitions
//!   (nullable array: i32 count, then topic string and an i32 array of partition ids each),
//!   last update timestamp i64, start timestamp i64;
//! - value v1 (flexible, written from `transaction.version` 1): the same fields with compact
//!   strings and arrays (unsigned varint length + 1, 0 for null), a tagged-field section
//!   after each partition entry and after the value, whose tags are 0 previous producer id
//!   (i64, default -1), 1 next producer id (i64, default -1) and 2 client transaction
//!   version (i16, default 0); a tag is written only when it differs from its default.
//!
//! A null value is a tombstone (an expired transactional id). Parsing takes bytes from disk:
//! anything malformed is `None`, never a panic.

use bytes::{Buf, BufMut};

use super::state::TxnState;

/// A stored transaction, as the value holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnValue {
    pub producer_id: i64,
    pub previous_producer_id: i64,
    pub next_producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// (topic, partitions), sorted; empty for `Empty`, which stores null.
    pub partitions: Vec<(String, Vec<i32>)>,
    pub last_update_ms: i64,
    pub start_ms: i64,
    pub client_transaction_version: i16,
}

const KEY_VERSION: i16 = 0;

pub fn key(transactional_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + transactional_id.len());
    out.put_i16(KEY_VERSION);
    put_str(&mut out, transactional_id);
    out
}

/// The value in version `version` (0 or 1; anything above 0 writes 1).
pub fn value(v: &TxnValue, version: i16) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let flexible = version >= 1;
    out.put_i16(if flexible { 1 } else { 0 });
    out.put_i64(v.producer_id);
    out.put_i16(v.producer_epoch);
    out.put_i32(v.timeout_ms);
    out.put_i8(v.state.id());
    let null = v.state == TxnState::Empty;
    if flexible {
        if null {
            put_uvarint(&mut out, 0);
        } else {
            put_uvarint(&mut out, v.partitions.len() as u64 + 1);
            for (topic, ids) in &v.partitions {
                put_compact_str(&mut out, topic);
                put_uvarint(&mut out, ids.len() as u64 + 1);
                ids.iter().for_each(|p| out.put_i32(*p));
                put_uvarint(&mut out, 0);
            }
        }
    } else if null {
        out.put_i32(-1);
    } else {
        out.put_i32(v.partitions.len() as i32);
        for (topic, ids) in &v.partitions {
            put_str(&mut out, topic);
            out.put_i32(ids.len() as i32);
            ids.iter().for_each(|p| out.put_i32(*p));
        }
    }
    out.put_i64(v.last_update_ms);
    out.put_i64(v.start_ms);
    if flexible {
        let mut tags: Vec<(u64, Vec<u8>)> = Vec::new();
        if v.previous_producer_id != -1 {
            tags.push((0, v.previous_producer_id.to_be_bytes().to_vec()));
        }
        if v.next_producer_id != -1 {
            tags.push((1, v.next_producer_id.to_be_bytes().to_vec()));
        }
        if v.client_transaction_version != 0 {
            tags.push((2, v.client_transaction_version.to_be_bytes().to_vec()));
        }
        put_uvarint(&mut out, tags.len() as u64);
        for (tag, data) in tags {
            put_uvarint(&mut out, tag);
            put_uvarint(&mut out, data.len() as u64);
            out.put_slice(&data);
        }
    }
    out
}

/// The transactional id of a key, or `None` for an unknown version or bad bytes.
pub fn parse_key(b: &[u8]) -> Option<String> {
    let mut r = Reader(b);
    if r.i16()? != KEY_VERSION {
        return None;
    }
    r.str()
}

/// A value of version 0 or 1, or `None`.
pub fn parse_value(b: &[u8]) -> Option<TxnValue> {
    let mut r = Reader(b);
    let version = r.i16()?;
    if !(0..=1).contains(&version) {
        return None;
    }
    let flexible = version == 1;
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let timeout_ms = r.i32()?;
    let state = TxnState::from_id(r.i8()?)?;
    let count = if flexible { r.uvarint()?.checked_sub(1).map(|n| n as i64).unwrap_or(-1) } else { i64::from(r.i32()?) };
    let mut partitions = Vec::new();
    if count > b.len() as i64 {
        return None;
    }
    for _ in 0..count.max(0) {
        let topic = if flexible { r.compact_str()? } else { r.str()? };
        let n = if flexible { r.uvarint()?.checked_sub(1)? as i64 } else { i64::from(r.i32()?) };
        if n < 0 || n > b.len() as i64 {
            return None;
        }
        let ids = (0..n).map(|_| r.i32()).collect::<Option<Vec<i32>>>()?;
        if flexible {
            r.skip_tags()?;
        }
        partitions.push((topic, ids));
    }
    let last_update_ms = r.i64()?;
    let start_ms = r.i64()?;
    let mut v = TxnValue {
        producer_id,
        previous_producer_id: -1,
        next_producer_id: -1,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        last_update_ms,
        start_ms,
        client_transaction_version: 0,
    };
    if flexible {
        let tags = r.uvarint()?;
        for _ in 0..tags {
            let tag = r.uvarint()?;
            let len = usize::try_from(r.uvarint()?).ok()?;
            let data = r.take(len)?;
            let mut d = data;
            match (tag, len) {
                (0, 8) => v.previous_producer_id = d.get_i64(),
                (1, 8) => v.next_producer_id = d.get_i64(),
                (2, 2) => v.client_transaction_version = d.get_i16(),
                _ => {}
            }
        }
    }
    Some(v)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let n = s.len().min(i16::MAX as usize);
    out.put_i16(n as i16);
    out.put_slice(&s.as_bytes()[..n]);
}

fn put_compact_str(out: &mut Vec<u8>, s: &str) {
    put_uvarint(out, s.len() as u64 + 1);
    out.put_slice(s.as_bytes());
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A bounds-checked reader: every read fails cleanly on short input.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn i8(&mut self) -> Option<i8> {
        self.take(1).map(|b| b[0] as i8)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|mut b| b.get_i16())
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4).map(|mut b| b.get_i32())
    }
    fn i64(&mut self) -> Option<i64> {
        self.take(8).map(|mut b| b.get_i64())
    }
    fn str(&mut self) -> Option<String> {
        let n = usize::try_from(self.i16()?).ok()?;
        self.take(n).map(|b| String::from_utf8_lossy(b).into_owned())
    }
    fn compact_str(&mut self) -> Option<String> {
        let n = usize::try_from(self.uvarint()?.checked_sub(1)?).ok()?;
        self.take(n).map(|b| String::from_utf8_lossy(b).into_owned())
    }
    fn uvarint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    fn skip_tags(&mut self) -> Option<()> {
        for _ in 0..self.uvarint()? {
            self.uvarint()?;
            let len = usize::try_from(self.uvarint()?).ok()?;
            self.take(len)?;
        }
        Some(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(state: TxnState) -> TxnValue {
        TxnValue {
            producer_id: 4000,
            previous_producer_id: if state == TxnState::Empty { -1 } else { 17 },
            next_producer_id: -1,
            producer_epoch: 3,
            timeout_ms: 60_000,
            state,
            partitions: if state == TxnState::Empty { vec![] } else { vec![("a".into(), vec![0, 2]), ("b".into(), vec![1])] },
            last_update_ms: 1_700_000_000_123,
            start_ms: 1_700_000_000_000,
            client_transaction_version: 0,
        }
    }

    #[test]
    fn values_round_trip_in_both_versions() {
        for state in [TxnState::Empty, TxnState::Ongoing, TxnState::PrepareCommit, TxnState::CompleteAbort] {
            for version in [0, 1] {
                let v = sample(state);
                let bytes = value(&v, version);
                let mut expected = v.clone();
                if version == 0 {
                    // v0 has no tagged fields.
                    expected.previous_producer_id = -1;
                }
                assert_eq!(parse_value(&bytes), Some(expected), "{state:?} v{version}");
            }
        }
        assert_eq!(parse_key(&key("my-txn")), Some("my-txn".to_string()));
    }

    /// Bytes as Kafka's generated `TransactionLogValue` writes them (v0, worked out from its
    /// schema): the layout is fixed, field by field.
    #[test]
    fn v0_layout_matches_kafkas_schema() {
        let mut v = sample(TxnState::Ongoing);
        v.partitions = vec![("t".into(), vec![5])];
        let bytes = value(&v, 0);
        let mut want = vec![0, 0];
        want.extend_from_slice(&4000i64.to_be_bytes());
        want.extend_from_slice(&3i16.to_be_bytes());
        want.extend_from_slice(&60_000i32.to_be_bytes());
        want.push(1);
        want.extend_from_slice(&1i32.to_be_bytes());
        want.extend_from_slice(&[0, 1, b't']);
        want.extend_from_slice(&1i32.to_be_bytes());
        want.extend_from_slice(&5i32.to_be_bytes());
        want.extend_from_slice(&v.last_update_ms.to_be_bytes());
        want.extend_from_slice(&v.start_ms.to_be_bytes());
        assert_eq!(bytes, want);
        // v1: compact array of one (2), compact string "t" (2, 't'), compact [5] (2, 5),
        // empty tags, timestamps, then one tag (0: previous producer id 17).
        let v1 = value(&v, 1);
        assert_eq!(&v1[..2], &[0, 1]);
        assert_eq!(&v1[2..17], &want[2..17]);
        assert_eq!(&v1[17..25], &[2, 2, b't', 2, 0, 0, 0, 5]);
        assert_eq!(&v1[25..26], &[0]);
        assert_eq!(&v1[42..], &[1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 17]);
    }

    proptest! {
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = parse_value(&bytes);
            let _ = parse_key(&bytes);
        }

        #[test]
        fn every_cut_of_a_value_is_refused_or_parsed(cut in 0usize..80, version in 0i16..2) {
            let bytes = value(&sample(TxnState::PrepareAbort), version);
            let _ = parse_value(&bytes[..cut.min(bytes.len())]);
        }
    }
}
