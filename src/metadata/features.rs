//! Feature flags (KIP-584, KIP-778): which feature levels this node supports, which are
//! finalized for the cluster, and the rules for changing them (UpdateFeatures).
//!
//! Finalized levels are metadata: a change is a [`MetadataRecord::FeatureLevel`] in the
//! metadata log, so levels survive a restart and the finalized-features epoch is the metadata
//! offset, as in Kafka (its brokers report the offset of the image the levels come from).
//! A level of 0 removes the feature from the finalized set, again as Kafka replays it.
//!
//! `metadata.version` is 4.0-IV3 (level 25). Its levels gate inter-broker RPC versions:
//! 4.0-IV3 is the first whose replica fetcher uses ListOffsets v10, and every level up to
//! 4.1-IV0 uses Fetch v17; we serve exactly Fetch ≤ 17 and ListOffsets ≤ 10 (and 4.0's
//! OffsetCommit/OffsetFetch maxima), so 4.0-IV3, the last level of release 4.0, is the
//! highest level whose RPCs we speak. 4.1-IV1 would promise Fetch v18, which we do not serve.
//!
//! The other features: `group.version` 1 (KIP-848 is served); `kraft.version` 0 (static
//! voters, no KIP-853); `transaction.version` 0..2, finalized 2 on a new cluster as Kafka 4.x
//! does (its `TransactionVersion.TV_2` bootstraps from metadata.version 4.0-IV2, which our
//! 4.0-IV3 is past). A Java 4.x client uses transactions version 2 (KIP-890 part 2: an epoch
//! bump per transaction, partitions and offsets added by Produce v12+ and TxnOffsetCommit v5)
//! once ApiVersions finalizes level 2 (`TransactionManager.isTransactionV2Enabled`, read on a
//! new connection), and the version 1 protocol below it. Which protocol a request gets is
//! decided by its API version, as in Kafka ([`crate::txn`]); the finalized level only decides
//! the `__transaction_state` value version (0 at level 0, the flexible 1 above) and how the
//! coordinator ends transactions on its own (timeouts, fencing).
//!
//! `eligible.leader.replicas.version` 0..1 (KIP-966, [`super::partition_change`]): a new
//! cluster finalizes 1, as a Kafka 4.1+ cluster does (Kafka bootstraps ELRV_1 from
//! metadata.version 4.1-IV0; ELRV_1 itself depends only on 4.0-IV1, level 23, which our 4.0-IV3
//! is past, and UpdateFeatures refuses level 1 below it with Kafka's message). Level 0 turns
//! the ELR rules off; as in Kafka nothing is cleared when it is downgraded: what the
//! registrations hold stays until each partition's next change, which drops it. (Kafka's
//! UpdateFeatures also writes a cluster-level `min.insync.replicas` config when it turns ELR
//! on; Blumfeld does not write one, and its controller reads the topic's setting, else a
//! cluster-level one, else its own static default, which is what that record would hold.) `share.version` and
//! `streams.version` are listed with the supported range 0..0 because share groups and streams
//! groups are not implemented. Kafka itself does not list a feature it cannot enable; we list
//! them so `kafka-features describe` shows the whole picture, and level 0 keeps Java clients
//! off share/streams groups.

use std::collections::BTreeMap;

use super::image::MetadataImage;
use super::records::MetadataRecord;

pub const METADATA_VERSION: &str = "metadata.version";
pub const GROUP_VERSION: &str = "group.version";
pub const TRANSACTION_VERSION: &str = "transaction.version";
pub const ELR_VERSION: &str = "eligible.leader.replicas.version";
/// metadata.version 4.0-IV1, which `eligible.leader.replicas.version` 1 depends on.
const ELR_METADATA_VERSION_MIN: i16 = 23;

/// The finalized `transaction.version` (0 when not finalized).
pub fn transaction_version(image: &MetadataImage) -> i16 {
    image.feature_level(TRANSACTION_VERSION)
}

/// Whether the eligible leader replicas rules (KIP-966) are on.
pub fn elr_enabled(image: &MetadataImage) -> bool {
    image.feature_level(ELR_VERSION) >= 1
}

/// Whether the consumer rebalance protocol (KIP-848) is on: Kafka turns ConsumerGroupHeartbeat
/// and ConsumerGroupDescribe away with UNSUPPORTED_VERSION while `group.version` is below 1.
pub fn consumer_protocol_enabled(image: &MetadataImage) -> bool {
    image.feature_level(GROUP_VERSION) >= 1
}

/// One feature: the levels this node supports and the level a new cluster starts at.
#[derive(Debug, Clone, Copy)]
pub struct FeatureSpec {
    pub name: &'static str,
    pub min: i16,
    pub max: i16,
    pub bootstrap: i16,
}

/// metadata.version 3.3-IV3, the lowest level Kafka 4.x accepts.
pub const METADATA_VERSION_MIN: i16 = 7;
/// metadata.version 4.0-IV3: see the module doc.
pub const METADATA_VERSION_CURRENT: i16 = 25;

pub const FEATURES: &[FeatureSpec] = &[
    FeatureSpec { name: METADATA_VERSION, min: METADATA_VERSION_MIN, max: METADATA_VERSION_CURRENT, bootstrap: METADATA_VERSION_CURRENT },
    FeatureSpec { name: "kraft.version", min: 0, max: 0, bootstrap: 0 },
    FeatureSpec { name: GROUP_VERSION, min: 0, max: 1, bootstrap: 1 },
    FeatureSpec { name: TRANSACTION_VERSION, min: 0, max: 2, bootstrap: 2 },
    FeatureSpec { name: ELR_VERSION, min: 0, max: 1, bootstrap: 1 },
    FeatureSpec { name: "share.version", min: 0, max: 0, bootstrap: 0 },
    FeatureSpec { name: "streams.version", min: 0, max: 0, bootstrap: 0 },
];

/// Whether metadata.version level `i` (index `i - METADATA_VERSION_MIN`) changed the format
/// of metadata records; a downgrade across such a level could lose metadata, so Kafka refuses
/// it. Levels 7..=25, from Kafka's `MetadataVersion` table.
const METADATA_CHANGED: [bool; 19] = [
    true, true, false, false, true, false, true, true, true, false, true, false, false, false, false, false, true,
    false, false,
];

const _: () = assert!(METADATA_CHANGED.len() == (METADATA_VERSION_CURRENT - METADATA_VERSION_MIN + 1) as usize);

/// Levels outside the table count as changed, so no downgrade crosses them.
fn metadata_version_changed(level: i16) -> bool {
    let i = (level - METADATA_VERSION_MIN) as usize;
    METADATA_CHANGED.get(i).copied().unwrap_or(true)
}

pub fn spec(name: &str) -> Option<&'static FeatureSpec> {
    FEATURES.iter().find(|f| f.name == name)
}

/// The records that finalize every feature at its bootstrap level (a new data directory, or
/// one written before features existed). Level-0 features need no record.
pub fn bootstrap_records() -> Vec<MetadataRecord> {
    FEATURES
        .iter()
        .filter(|f| f.bootstrap > 0)
        .map(|f| MetadataRecord::FeatureLevel { name: f.name.to_string(), level: f.bootstrap })
        .collect()
}

/// UpdateFeatures' upgrade types (KIP-778).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeType {
    Upgrade,
    SafeDowngrade,
    UnsafeDowngrade,
    Unknown,
}

impl UpgradeType {
    pub fn from_code(code: i8) -> Self {
        match code {
            1 => Self::Upgrade,
            2 => Self::SafeDowngrade,
            3 => Self::UnsafeDowngrade,
            _ => Self::Unknown,
        }
    }
}

/// A refused update, with Kafka's message (INVALID_UPDATE_VERSION).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidUpdate(pub String);

/// Validates `updates` (applied in order, all or nothing) against the finalized levels of
/// `image` and returns the records that apply them. `node_id` names the controller in
/// Kafka's messages.
pub fn update(
    image: &MetadataImage,
    node_id: i32,
    updates: &[(String, i16, UpgradeType)],
) -> Result<Vec<MetadataRecord>, InvalidUpdate> {
    let mut records = Vec::new();
    let mut proposed = image.features.clone();
    for (name, level, upgrade_type) in updates {
        update_one(image, node_id, name, *level, *upgrade_type)?;
        proposed.insert(name.clone(), *level);
        records.push(MetadataRecord::FeatureLevel { name: name.clone(), level: *level });
    }
    // Kafka's `Feature.validateVersion`, against the levels the whole request leaves.
    for (name, level, _) in updates {
        if name == ELR_VERSION && *level >= 1 && proposed.get(METADATA_VERSION).copied().unwrap_or(0) < ELR_METADATA_VERSION_MIN {
            return Err(InvalidUpdate(format!(
                "Invalid update version {level} for feature {name}. {name} could not be set to {level} because it depends on {METADATA_VERSION} level {ELR_METADATA_VERSION_MIN}"
            )));
        }
    }
    Ok(records)
}

fn update_one(image: &MetadataImage, node_id: i32, name: &str, level: i16, upgrade_type: UpgradeType) -> Result<(), InvalidUpdate> {
    let invalid = |why: &str| InvalidUpdate(format!("Invalid update version {level} for feature {name}. {why}"));
    if upgrade_type == UpgradeType::Unknown {
        return Err(invalid("The controller does not support the given upgrade type."));
    }
    let current = image.feature_level(name);
    if level < 0 {
        return Err(invalid("A feature version cannot be less than 0."));
    }
    let (min, max) = spec(name).map(|s| (s.min, s.max)).unwrap_or((0, 0));
    if !(min..=max).contains(&level) {
        let why = if max == 0 {
            format!("Local controller {node_id} does not support this feature.")
        } else if min == max {
            format!("Local controller {node_id} only supports versions {min}")
        } else {
            format!("Local controller {node_id} only supports versions {min}-{max}")
        };
        return Err(invalid(&why));
    }
    if level < current && upgrade_type == UpgradeType::Upgrade {
        return Err(invalid(
            "Can't downgrade the version of this feature without setting the upgrade type to either safe or unsafe downgrade.",
        ));
    }
    if level > current && upgrade_type != UpgradeType::Upgrade {
        return Err(invalid("Can't downgrade to a newer version."));
    }
    if name == METADATA_VERSION && level < current {
        let changed = (level + 1..=current).any(metadata_version_changed);
        if changed {
            let why = if upgrade_type == UpgradeType::UnsafeDowngrade {
                "Unsafe metadata downgrade is not supported in this version."
            } else {
                "Refusing to perform the requested downgrade because it might delete metadata information."
            };
            return Err(InvalidUpdate(format!("Unsupported metadata.version downgrade from {current} to {level}. {why}")));
        }
    }
    Ok(())
}

/// The finalized levels of an image, metadata.version included, without level-0 features.
pub fn finalized(image: &MetadataImage) -> BTreeMap<String, i16> {
    image.features.iter().filter(|(_, l)| **l > 0).map(|(n, l)| (n.clone(), *l)).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn bootstrapped() -> MetadataImage {
        let mut image = MetadataImage::default();
        for r in bootstrap_records() {
            image.replay(&r);
        }
        image
    }

    fn one(image: &MetadataImage, name: &str, level: i16, t: UpgradeType) -> Result<Vec<MetadataRecord>, InvalidUpdate> {
        update(image, 1, &[(name.to_string(), level, t)])
    }

    #[test]
    fn bootstrap_finalizes_metadata_version_group_transaction_and_elr_versions() {
        let image = bootstrapped();
        let f = finalized(&image);
        assert_eq!(f.get(METADATA_VERSION), Some(&25));
        assert_eq!(f.get("group.version"), Some(&1));
        assert_eq!(f.get("transaction.version"), Some(&2), "transactions version 2, as a new Kafka 4.x cluster");
        assert_eq!(transaction_version(&image), 2);
        assert_eq!(f.get(ELR_VERSION), Some(&1), "ELR on, as a new Kafka 4.1+ cluster");
        assert!(elr_enabled(&image));
        assert_eq!(f.len(), 4);
    }

    #[test]
    fn elr_round_trips_and_depends_on_metadata_version_4_0_iv1() {
        let mut image = bootstrapped();
        for r in one(&image, ELR_VERSION, 0, UpgradeType::SafeDowngrade).unwrap() {
            image.replay(&r);
        }
        assert!(!elr_enabled(&image));
        for r in one(&image, ELR_VERSION, 1, UpgradeType::Upgrade).unwrap() {
            image.replay(&r);
        }
        assert!(elr_enabled(&image));
        let mut old = MetadataImage::default();
        old.replay(&MetadataRecord::FeatureLevel { name: METADATA_VERSION.into(), level: 22 });
        assert_eq!(one(&old, ELR_VERSION, 1, UpgradeType::Upgrade).unwrap_err().0,
            "Invalid update version 1 for feature eligible.leader.replicas.version. eligible.leader.replicas.version could not be set to 1 because it depends on metadata.version level 23");
        let both = [(METADATA_VERSION.to_string(), 23, UpgradeType::Upgrade), (ELR_VERSION.to_string(), 1, UpgradeType::Upgrade)];
        assert!(update(&old, 1, &both).is_ok(), "a request that raises metadata.version with it");
        assert_eq!(one(&image, ELR_VERSION, 2, UpgradeType::Upgrade).unwrap_err().0,
            "Invalid update version 2 for feature eligible.leader.replicas.version. Local controller 1 only supports versions 0-1");
    }

    /// `kafka-features downgrade --feature transaction.version=1` and back, as Kafka allows.
    #[test]
    fn transaction_version_downgrades_to_1_and_upgrades_back_to_2() {
        let mut image = bootstrapped();
        assert!(one(&image, TRANSACTION_VERSION, 1, UpgradeType::Upgrade).is_err(), "a downgrade needs its type");
        for r in one(&image, TRANSACTION_VERSION, 1, UpgradeType::SafeDowngrade).unwrap() {
            image.replay(&r);
        }
        assert_eq!(transaction_version(&image), 1);
        for r in one(&image, TRANSACTION_VERSION, 0, UpgradeType::SafeDowngrade).unwrap() {
            image.replay(&r);
        }
        assert_eq!(transaction_version(&image), 0);
        assert!(!finalized(&image).contains_key(TRANSACTION_VERSION));
        for r in one(&image, TRANSACTION_VERSION, 2, UpgradeType::Upgrade).unwrap() {
            image.replay(&r);
        }
        assert_eq!(transaction_version(&image), 2);
    }

    #[test]
    fn group_version_round_trip_and_disable_removes_it() {
        let mut image = bootstrapped();
        let err = one(&image, "group.version", 0, UpgradeType::Upgrade).unwrap_err();
        assert!(err.0.ends_with("without setting the upgrade type to either safe or unsafe downgrade."), "{err:?}");
        for r in one(&image, "group.version", 0, UpgradeType::SafeDowngrade).unwrap() {
            image.replay(&r);
        }
        assert_eq!(image.feature_level("group.version"), 0);
        assert!(!finalized(&image).contains_key("group.version"));
        assert_eq!(one(&image, "group.version", 1, UpgradeType::SafeDowngrade).unwrap_err().0,
            "Invalid update version 1 for feature group.version. Can't downgrade to a newer version.");
        for r in one(&image, "group.version", 1, UpgradeType::Upgrade).unwrap() {
            image.replay(&r);
        }
        assert_eq!(image.feature_level("group.version"), 1);
    }

    #[test]
    fn out_of_range_and_unknown_features_get_kafkas_messages() {
        let image = bootstrapped();
        assert_eq!(one(&image, "group.version", 5, UpgradeType::Upgrade).unwrap_err().0,
            "Invalid update version 5 for feature group.version. Local controller 1 only supports versions 0-1");
        assert_eq!(one(&image, "foo.bar", 1, UpgradeType::Upgrade).unwrap_err().0,
            "Invalid update version 1 for feature foo.bar. Local controller 1 does not support this feature.");
        assert_eq!(one(&image, "transaction.version", 3, UpgradeType::Upgrade).unwrap_err().0,
            "Invalid update version 3 for feature transaction.version. Local controller 1 only supports versions 0-2");
        assert_eq!(one(&image, "group.version", -1, UpgradeType::SafeDowngrade).unwrap_err().0,
            "Invalid update version -1 for feature group.version. A feature version cannot be less than 0.");
        assert_eq!(one(&image, "group.version", 1, UpgradeType::Unknown).unwrap_err().0,
            "Invalid update version 1 for feature group.version. The controller does not support the given upgrade type.");
        assert_eq!(one(&image, METADATA_VERSION, 26, UpgradeType::Upgrade).unwrap_err().0,
            "Invalid update version 26 for feature metadata.version. Local controller 1 only supports versions 7-25");
        // Disabling a feature that is already at 0 is a no-op Kafka accepts.
        assert!(one(&image, "share.version", 0, UpgradeType::SafeDowngrade).is_ok());
    }

    #[test]
    fn metadata_version_downgrade_is_refused_across_a_metadata_change() {
        let image = bootstrapped();
        // 4.0-IV1 (23) changed the metadata format: 25 -> 22 crosses it.
        assert_eq!(one(&image, METADATA_VERSION, 22, UpgradeType::SafeDowngrade).unwrap_err().0,
            "Unsupported metadata.version downgrade from 25 to 22. Refusing to perform the requested downgrade because it might delete metadata information.");
        assert_eq!(one(&image, METADATA_VERSION, 22, UpgradeType::UnsafeDowngrade).unwrap_err().0,
            "Unsupported metadata.version downgrade from 25 to 22. Unsafe metadata downgrade is not supported in this version.");
        // 24 and 25 changed nothing: 25 -> 23 is safe.
        let mut image = image;
        for r in one(&image, METADATA_VERSION, 23, UpgradeType::SafeDowngrade).unwrap() {
            image.replay(&r);
        }
        assert_eq!(image.feature_level(METADATA_VERSION), 23);
    }

    #[test]
    fn a_failing_update_applies_nothing() {
        let image = bootstrapped();
        let updates = vec![
            ("group.version".to_string(), 0, UpgradeType::SafeDowngrade),
            ("share.version".to_string(), 1, UpgradeType::Upgrade),
        ];
        assert!(update(&image, 1, &updates).is_err());
    }
}
