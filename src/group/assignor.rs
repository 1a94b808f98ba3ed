//! Server-side assignors of the KIP-848 protocol: `uniform` (the default; balanced and sticky)
//! and `range` (contiguous ranges per topic, as the classic range assignor).

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::indexmap::IndexMap;
use uuid::Uuid;

use super::consumer::{TopicsView, Tp};

pub type Subscriptions = IndexMap<String, BTreeSet<Uuid>>;
pub type Target = BTreeMap<String, BTreeSet<Tp>>;

/// Balanced and sticky: a member keeps partitions it already had (up to its fair share), the
/// rest go to the least-loaded eligible member.
pub fn uniform(subscriptions: &Subscriptions, topics: &TopicsView, previous: &Target) -> Target {
    let mut target: Target = subscriptions.keys().map(|m| (m.clone(), BTreeSet::new())).collect();
    let partitions: Vec<Tp> = topics
        .iter()
        .filter(|(id, _)| subscriptions.values().any(|s| s.contains(id)))
        .flat_map(|(id, (_, n))| (0..*n).map(move |p| (*id, p)))
        .collect();
    if subscriptions.is_empty() {
        return target;
    }
    let share = partitions.len().div_ceil(subscriptions.len());
    let eligible = |member: &str, tp: &Tp| subscriptions.get(member).is_some_and(|s| s.contains(&tp.0));
    let mut unassigned: BTreeSet<Tp> = partitions.iter().cloned().collect();
    for (member, had) in previous {
        let Some(mine) = target.get_mut(member) else { continue };
        for tp in had {
            if mine.len() < share && unassigned.contains(tp) && eligible(member, tp) {
                mine.insert(*tp);
                unassigned.remove(tp);
            }
        }
    }
    for tp in unassigned {
        let least = subscriptions
            .keys()
            .filter(|m| eligible(m, &tp))
            .min_by_key(|m| target.get(*m).map(|s| s.len()).unwrap_or(0));
        if let Some(m) = least
            && let Some(set) = target.get_mut(m)
        {
            set.insert(tp);
        }
    }
    target
}

/// Per topic, the subscribed members (by id order) get contiguous ranges; the first
/// `partitions % members` get one more.
pub fn range(subscriptions: &Subscriptions, topics: &TopicsView) -> Target {
    let mut target: Target = subscriptions.keys().map(|m| (m.clone(), BTreeSet::new())).collect();
    for (id, (_, n)) in topics {
        let mut members: Vec<&String> = subscriptions.iter().filter(|(_, s)| s.contains(id)).map(|(m, _)| m).collect();
        if members.is_empty() {
            continue;
        }
        members.sort();
        let n = *n as usize;
        let (base, extra) = (n / members.len(), n % members.len());
        let mut next = 0;
        for (i, m) in members.iter().enumerate() {
            let count = base + usize::from(i < extra);
            if let Some(set) = target.get_mut(*m) {
                set.extend((next..next + count).map(|p| (*id, p as i32)));
            }
            next += count;
        }
    }
    target
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn uniform_is_balanced_complete_and_sticky() {
        let t1 = Uuid::new_v4();
        let mut topics = TopicsView::new();
        topics.insert(t1, ("t".into(), 7));
        let mut subs = Subscriptions::new();
        for m in ["a", "b", "c"] {
            subs.insert(m.into(), BTreeSet::from([t1]));
        }
        let first = uniform(&subs, &topics, &Target::new());
        let sizes: Vec<usize> = first.values().map(|s| s.len()).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 7);
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
        subs.shift_remove("c");
        let second = uniform(&subs, &topics, &first);
        assert!(first["a"].is_subset(&second["a"]), "a keeps what it had");
        assert_eq!(second.values().map(|s| s.len()).sum::<usize>(), 7);
    }

    #[test]
    fn range_gives_contiguous_ranges() {
        let t1 = Uuid::new_v4();
        let mut topics = TopicsView::new();
        topics.insert(t1, ("t".into(), 5));
        let mut subs = Subscriptions::new();
        subs.insert("b".into(), BTreeSet::from([t1]));
        subs.insert("a".into(), BTreeSet::from([t1]));
        let t = range(&subs, &topics);
        assert_eq!(t["a"].iter().map(|x| x.1).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(t["b"].iter().map(|x| x.1).collect::<Vec<_>>(), vec![3, 4]);
    }
}
