//! What a follower does with its leader's answers: truncation after a divergence, and the
//! high watermark it may take.
//!
//! A follower fetches with the epoch of its last batch (`last_fetched_epoch`). When its log
//! diverged from the leader's (it held records of an epoch that did not commit them), the
//! leader answers with a *diverging epoch*: the largest epoch it knows that is not above the
//! follower's, and where that epoch ends in the leader's log (KIP-320). The follower truncates
//! to the point both logs agree on, which may take several rounds when the follower's epochs
//! are not the leader's; each round ends below the previous one, so it converges. The older
//! path (OffsetForLeaderEpoch) returns the same pair and uses the same rule.

use crate::types::{LeaderEpoch, Offset};

/// An epoch and the offset where it ends (exclusive), as the leader reports it: Fetch's
/// `diverging_epoch`, or an OffsetForLeaderEpoch answer. `epoch` is `None` when the leader
/// has no epoch at or below the one asked for (`UNDEFINED_EPOCH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEndOffset {
    pub epoch: Option<LeaderEpoch>,
    pub end_offset: Offset,
}

/// Where to truncate, and whether the logs are known to agree below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TruncationPoint {
    pub offset: Offset,
    /// False when the follower's largest epoch at or below the leader's differs from the
    /// leader's: after truncating, it fetches again with its new last epoch and the leader
    /// may move it further back.
    pub complete: bool,
}

/// Kafka's `AbstractFetcherThread.getOffsetTruncationState`, restated. `follower_end_for` gives
/// the follower's own `(largest epoch ≤ asked, its end offset)` from its epoch cache, or
/// `None` when it has no epoch at or below the one asked for.
pub fn truncation_offset(
    leader: EpochEndOffset,
    follower_log_end: Offset,
    follower_end_for: impl FnOnce(LeaderEpoch) -> Option<(LeaderEpoch, Offset)>,
) -> TruncationPoint {
    let Some(leader_epoch) = leader.epoch else {
        // The leader knows no such epoch: everything from its end offset on is suspect.
        return TruncationPoint { offset: leader.end_offset.min(follower_log_end), complete: true };
    };
    match follower_end_for(leader_epoch) {
        Some((epoch, end)) if epoch == leader_epoch => {
            TruncationPoint { offset: leader.end_offset.min(end).min(follower_log_end), complete: true }
        }
        Some((_, end)) => TruncationPoint { offset: end.min(follower_log_end), complete: false },
        None => TruncationPoint { offset: leader.end_offset.min(follower_log_end), complete: true },
    }
}

/// The high watermark a follower takes from a Fetch answer: the leader's, bounded by what the
/// follower holds. It does not move back on an answer: a leader that just took over reports
/// the mark it knew as a follower, which may trail the one this follower already took, and
/// what was committed stays committed (a truncation lowers it to the new log end, not this).
pub fn follower_high_watermark(current: Offset, leader_high_watermark: Offset, follower_log_end: Offset) -> Offset {
    current.max(leader_high_watermark.min(follower_log_end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(epoch: i32, end: i64) -> EpochEndOffset {
        EpochEndOffset { epoch: Some(LeaderEpoch(epoch)), end_offset: Offset(end) }
    }

    #[test]
    fn the_same_epoch_truncates_to_the_smaller_end() {
        let t = truncation_offset(e(3, 50), Offset(80), |_| Some((LeaderEpoch(3), Offset(70))));
        assert_eq!(t, TruncationPoint { offset: Offset(50), complete: true });
    }

    #[test]
    fn an_epoch_the_follower_lacks_takes_another_round() {
        // The follower has epochs 1 and 4, the leader 1 and 3: asked for 3, the follower's
        // largest at or below is 1, ending at 40.
        let t = truncation_offset(e(3, 50), Offset(80), |_| Some((LeaderEpoch(1), Offset(40))));
        assert_eq!(t, TruncationPoint { offset: Offset(40), complete: false });
    }

    #[test]
    fn no_common_epoch_truncates_to_the_leaders_end() {
        let none = EpochEndOffset { epoch: None, end_offset: Offset(0) };
        assert_eq!(truncation_offset(none, Offset(80), |_| None).offset, Offset(0));
        assert_eq!(truncation_offset(e(2, 30), Offset(80), |_| None).offset, Offset(30));
    }

    #[test]
    fn truncation_never_goes_past_the_follower_end() {
        let t = truncation_offset(e(3, 500), Offset(80), |_| Some((LeaderEpoch(3), Offset(600))));
        assert_eq!(t.offset, Offset(80));
    }

    #[test]
    fn the_follower_mark_is_bounded_by_its_log_and_never_back() {
        assert_eq!(follower_high_watermark(Offset(5), Offset(20), Offset(12)), Offset(12));
        assert_eq!(follower_high_watermark(Offset(15), Offset(10), Offset(30)), Offset(15));
    }
}
