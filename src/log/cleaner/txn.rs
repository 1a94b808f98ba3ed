//! What the cleaner needs to know about transactions while it walks a range of the log
//! (Kafka's `CleanedTransactionMetadata`): which batches are aborted data (removed), and
//! which markers still have data of their transaction behind them (kept) or none any more
//! (kept until their delete horizon, then removed).
//!
//! The cleaner never goes above the last stable offset, so every transactional batch it
//! meets belongs to a decided transaction: aborted if an aborted-transaction index lists it
//! (by producer id, from its first offset to its marker), committed otherwise.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::log::txn_index::{AbortedTxn, TxnIndex};
use crate::record::BatchHeader;

/// See the module docs.
#[derive(Debug, Default)]
pub(super) struct TxnTracker {
    /// Aborts overlapping the range not yet reached, by first offset.
    upcoming: VecDeque<AbortedTxn>,
    /// Aborts under way at the current position, by producer id, with whether one of their
    /// batches was seen in this walk.
    aborted: HashMap<i64, (AbortedTxn, bool)>,
    /// Producers whose committed transaction had a batch in this walk.
    committed: HashSet<i64>,
    /// Aborts whose marker stays and whose data was seen: the cleaned segment's index.
    index: TxnIndex,
}

impl TxnTracker {
    pub fn new(mut aborts: Vec<AbortedTxn>) -> Self {
        aborts.sort_by_key(|a| (a.first_offset, a.last_offset));
        aborts.dedup();
        TxnTracker { upcoming: aborts.into(), ..Default::default() }
    }

    fn reach(&mut self, offset: i64) {
        while self.upcoming.front().is_some_and(|a| a.first_offset <= offset) {
            if let Some(a) = self.upcoming.pop_front() {
                self.aborted.entry(a.producer_id).or_insert((a, false));
            }
        }
    }

    /// A data batch: true if it is aborted data, to be removed.
    pub fn on_batch(&mut self, header: &BatchHeader) -> bool {
        self.reach(header.last_offset());
        if !header.is_transactional() {
            return false;
        }
        match self.aborted.get_mut(&header.producer_id) {
            Some((_, seen)) => {
                *seen = true;
                true
            }
            None => {
                self.committed.insert(header.producer_id);
                false
            }
        }
    }

    /// A marker (`commit` as it reads; `None` for an empty or unreadable control batch):
    /// true if no batch of its transaction is left in the walk, so the marker may go once
    /// its delete horizon has passed.
    pub fn on_marker(&mut self, header: &BatchHeader, commit: Option<bool>) -> bool {
        self.reach(header.last_offset());
        match commit {
            Some(false) => match self.aborted.remove(&header.producer_id) {
                Some((abort, true)) => {
                    if self.index.entries().last().is_none_or(|l| l.last_offset < abort.last_offset) {
                        self.index.append(abort);
                    }
                    false
                }
                _ => true,
            },
            Some(true) => !self.committed.remove(&header.producer_id),
            None => true,
        }
    }

    /// The aborted-transaction index of what was walked.
    pub fn into_index(self) -> TxnIndex {
        self.index
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::record::BatchBuilder;

    fn header(base: i64, pid: i64, txn: bool, control: bool) -> BatchHeader {
        let attributes = (if txn { 0x10 } else { 0 }) | if control { 0x20 } else { 0 };
        let bytes = BatchBuilder::new(base).producer(pid, 0, 0).attributes(attributes).records(1, 1).build();
        BatchHeader::parse(&bytes).unwrap()
    }

    #[test]
    fn aborted_data_goes_and_markers_follow_their_data() {
        let abort = AbortedTxn { producer_id: 1, first_offset: 0, last_offset: 3, last_stable_offset: 4 };
        let mut t = TxnTracker::new(vec![abort]);
        assert!(t.on_batch(&header(0, 1, true, false)), "aborted data");
        assert!(!t.on_batch(&header(1, 2, true, false)), "another producer's committed data");
        assert!(!t.on_batch(&header(2, -1, false, false)), "plain data");
        assert!(!t.on_marker(&header(3, 1, true, true), Some(false)), "the abort saw its data: it stays");
        assert!(!t.on_marker(&header(4, 2, true, true), Some(true)), "the commit saw its data: it stays");
        assert!(t.on_marker(&header(5, 2, true, true), Some(true)), "an empty transaction's commit may go");
        assert_eq!(t.into_index().entries(), &[abort]);
        // The next pass finds the data gone: the abort marker may go too.
        let mut again = TxnTracker::new(vec![abort]);
        assert!(again.on_marker(&header(3, 1, true, true), Some(false)));
        assert!(again.into_index().is_empty());
    }
}
