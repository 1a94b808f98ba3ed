//! The `authorized_operations` bit fields of Metadata, DescribeCluster, DescribeGroups and
//! ConsumerGroupDescribe: bit `n` set means the caller may perform ACL operation code `n`.
//!
//! Blumfeld has no authorizer, and with none Kafka allows everything: it answers every
//! operation its ACL model supports for the resource type (`AclEntry.supportedOperations`).
//! When the security work adds an authorizer, the principal's ACLs are applied here, and
//! these sets become the upper bound of what it can grant.
//!
//! A request that does not ask for the field gets [`OMITTED`].

/// Kafka's answer when authorized operations were not asked for.
pub const OMITTED: i32 = i32::MIN;

/// Kafka's `AclOperation` codes (the bit positions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AclOperation {
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
}

use AclOperation as Op;

const TOPIC: &[AclOperation] =
    &[Op::Read, Op::Write, Op::Create, Op::Delete, Op::Alter, Op::Describe, Op::DescribeConfigs, Op::AlterConfigs];
const CLUSTER: &[AclOperation] =
    &[Op::Create, Op::Alter, Op::Describe, Op::ClusterAction, Op::DescribeConfigs, Op::AlterConfigs, Op::IdempotentWrite];
const GROUP: &[AclOperation] = &[Op::Read, Op::Delete, Op::Describe, Op::DescribeConfigs, Op::AlterConfigs];

const fn bits(ops: &[AclOperation]) -> i32 {
    let mut out = 0i32;
    let mut i = 0;
    while i < ops.len() {
        out |= 1 << (ops[i] as u8);
        i += 1;
    }
    out
}

/// What a caller may do with a topic, or [`OMITTED`] when `requested` is false.
pub fn topic(requested: bool) -> i32 {
    if requested { bits(TOPIC) } else { OMITTED }
}

/// What a caller may do with the cluster, or [`OMITTED`] when `requested` is false.
pub fn cluster(requested: bool) -> i32 {
    if requested { bits(CLUSTER) } else { OMITTED }
}

/// What a caller may do with a group, or [`OMITTED`] when `requested` is false.
pub fn group(requested: bool) -> i32 {
    if requested { bits(GROUP) } else { OMITTED }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values a Kafka 4.3 broker without an authorizer answers (`Utils.to32BitField` of
    /// `AclEntry.supportedOperations`).
    #[test]
    fn bit_fields_match_kafka_without_an_authorizer() {
        assert_eq!(topic(true), 3576);
        assert_eq!(cluster(true), 8096);
        assert_eq!(group(true), 3400);
        assert_eq!(topic(false), i32::MIN);
        assert_eq!(cluster(false), i32::MIN);
        assert_eq!(group(false), i32::MIN);
    }
}
