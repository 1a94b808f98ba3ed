//! The records of `__consumer_offsets`, in Kafka's own key and value formats, so tools that
//! read the topic (e.g. its console formatter) understand them:
//! - key v1 `OffsetCommitKey` {group, topic, partition} → value v3 `OffsetCommitValue`
//!   {offset, leader_epoch, metadata, commit_timestamp}
//! - key v2 `GroupMetadataKey` {group} → value v3 `GroupMetadataValue`
//!   {protocol_type, generation, protocol, leader, current_state_timestamp, members}
//!
//! A null value is a tombstone. Plus the consumer protocol's subscription, read to learn which
//! topics a classic group is subscribed to.

use bytes::{Buf, BufMut};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Offset { group: String, topic: String, partition: i32 },
    Group { group: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation_id: i32,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp_ms: i64,
}

/// A member as read back from a GroupMetadataValue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Vec<u8>,
    pub assignment: Vec<u8>,
}

/// One member as GroupMetadataValue stores it.
pub struct MemberValue<'a> {
    pub member_id: &'a str,
    pub group_instance_id: Option<&'a str>,
    pub client_id: &'a str,
    pub client_host: &'a str,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: &'a [u8],
    pub assignment: &'a [u8],
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.put_i16(s.len().min(i16::MAX as usize) as i16);
    out.put_slice(&s.as_bytes()[..s.len().min(i16::MAX as usize)]);
}

fn put_nullable_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_str(out, s),
        None => out.put_i16(-1),
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.put_i32(b.len() as i32);
    out.put_slice(b);
}

pub fn offset_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + group.len() + topic.len());
    out.put_i16(1);
    put_str(&mut out, group);
    put_str(&mut out, topic);
    out.put_i32(partition);
    out
}

pub fn offset_value(v: &OffsetValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(26 + v.metadata.len());
    out.put_i16(3);
    out.put_i64(v.offset);
    out.put_i32(v.leader_epoch);
    put_str(&mut out, &v.metadata);
    out.put_i64(v.commit_timestamp_ms);
    out
}

pub fn group_key(group: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + group.len());
    out.put_i16(2);
    put_str(&mut out, group);
    out
}

pub fn group_value(v: &GroupValue, members: &[MemberValue<'_>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.put_i16(3);
    put_str(&mut out, &v.protocol_type);
    out.put_i32(v.generation_id);
    put_nullable_str(&mut out, v.protocol_name.as_deref());
    put_nullable_str(&mut out, v.leader.as_deref());
    out.put_i64(v.state_timestamp_ms);
    out.put_i32(members.len() as i32);
    for m in members {
        put_str(&mut out, m.member_id);
        put_nullable_str(&mut out, m.group_instance_id);
        put_str(&mut out, m.client_id);
        put_str(&mut out, m.client_host);
        out.put_i32(m.rebalance_timeout_ms);
        out.put_i32(m.session_timeout_ms);
        put_bytes(&mut out, m.subscription);
        put_bytes(&mut out, m.assignment);
    }
    out
}

/// A bounds-checked reader: every read fails cleanly on short input.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn i16(&mut self) -> Option<i16> {
        (self.0.remaining() >= 2).then(|| self.0.get_i16())
    }
    fn i32(&mut self) -> Option<i32> {
        (self.0.remaining() >= 4).then(|| self.0.get_i32())
    }
    fn i64(&mut self) -> Option<i64> {
        (self.0.remaining() >= 8).then(|| self.0.get_i64())
    }
    fn nullable_str(&mut self) -> Option<Option<String>> {
        let n = self.i16()?;
        if n < 0 {
            return Some(None);
        }
        let n = n as usize;
        if self.0.remaining() < n {
            return None;
        }
        let s = String::from_utf8_lossy(&self.0[..n]).into_owned();
        self.0.advance(n);
        Some(Some(s))
    }
    fn str(&mut self) -> Option<String> {
        self.nullable_str()?
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.i32()?;
        if n < 0 {
            return Some(Vec::new());
        }
        let n = n as usize;
        if self.0.remaining() < n {
            return None;
        }
        let b = self.0[..n].to_vec();
        self.0.advance(n);
        Some(b)
    }
}

pub fn parse_key(b: &[u8]) -> Option<Key> {
    let mut r = Reader(b);
    match r.i16()? {
        0 | 1 => Some(Key::Offset { group: r.str()?, topic: r.str()?, partition: r.i32()? }),
        2 => Some(Key::Group { group: r.str()? }),
        _ => None,
    }
}

pub fn parse_offset_value(b: &[u8]) -> Option<OffsetValue> {
    let mut r = Reader(b);
    let version = r.i16()?;
    let offset = r.i64()?;
    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
    let metadata = r.str()?;
    let commit_timestamp_ms = r.i64()?;
    Some(OffsetValue { offset, leader_epoch, metadata, commit_timestamp_ms })
}

pub fn parse_group_value(b: &[u8]) -> Option<GroupValue> {
    parse_group_value_with_members(b).map(|(v, _)| v)
}

/// Parses a GroupMetadataValue (v0-3) with its members.
pub fn parse_group_value_with_members(b: &[u8]) -> Option<(GroupValue, Vec<StoredMember>)> {
    let mut r = Reader(b);
    let version = r.i16()?;
    let protocol_type = r.str()?;
    let generation_id = r.i32()?;
    let protocol_name = r.nullable_str()?;
    let leader = r.nullable_str()?;
    let state_timestamp_ms = if version >= 2 { r.i64()? } else { -1 };
    let n = r.i32()?;
    if n < 0 || n as usize > b.len() {
        return None;
    }
    let mut members = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let member_id = r.str()?;
        let group_instance_id = if version >= 3 { r.nullable_str()? } else { None };
        let client_id = r.str()?;
        let client_host = r.str()?;
        let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { 0 };
        let session_timeout_ms = r.i32()?;
        let subscription = r.bytes()?;
        let assignment = r.bytes()?;
        members.push(StoredMember {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms: if version >= 1 { rebalance_timeout_ms } else { session_timeout_ms },
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Some((GroupValue { protocol_type, generation_id, protocol_name, leader, state_timestamp_ms }, members))
}

/// The topics of a consumer-protocol subscription (`ConsumerProtocolSubscription`: version,
/// then an array of topic names; later fields are not needed here).
pub fn consumer_subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut r = Reader(metadata);
    let _version = r.i16()?;
    let n = r.i32()?;
    if n < 0 || n as usize > metadata.len() {
        return None;
    }
    (0..n).map(|_| r.str()).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        let k = offset_key("g", "t", 3);
        assert_eq!(parse_key(&k), Some(Key::Offset { group: "g".into(), topic: "t".into(), partition: 3 }));
        assert_eq!(parse_key(&group_key("g")), Some(Key::Group { group: "g".into() }));
        let v = OffsetValue { offset: 42, leader_epoch: 0, metadata: "m".into(), commit_timestamp_ms: 7 };
        assert_eq!(parse_offset_value(&offset_value(&v)), Some(v));
        let gv = GroupValue {
            protocol_type: "consumer".into(),
            generation_id: 5,
            protocol_name: Some("range".into()),
            leader: None,
            state_timestamp_ms: 9,
        };
        let m = MemberValue {
            member_id: "m1",
            group_instance_id: None,
            client_id: "c",
            client_host: "/h",
            rebalance_timeout_ms: 1,
            session_timeout_ms: 2,
            subscription: b"s",
            assignment: b"a",
        };
        let encoded = group_value(&gv, &[m]);
        assert_eq!(parse_group_value(&encoded), Some(gv));
        let (_, members) = parse_group_value_with_members(&encoded).unwrap();
        assert_eq!(members[0].member_id, "m1");
        assert_eq!((members[0].subscription.as_slice(), members[0].assignment.as_slice()), (&b"s"[..], &b"a"[..]));
        for cut in 0..k.len() {
            let _ = parse_key(&k[..cut]);
        }
        assert_eq!(parse_key(&[0, 9]), None);
    }

    #[test]
    fn subscription_topics() {
        let mut m = vec![0u8, 1, 0, 0, 0, 2];
        m.extend_from_slice(&[0, 1, b'a', 0, 2, b'b', b'c']);
        m.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(consumer_subscription_topics(&m), Some(vec!["a".into(), "bc".into()]));
        assert_eq!(consumer_subscription_topics(&m[..5]), None);
    }
}
