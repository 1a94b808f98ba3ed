//! Incremental fetch sessions (KIP-227): the broker remembers what a fetcher asked for and what
//! it was last told, so later requests and responses carry only what changed.
//!
//! Bounded: at most `max.incremental.fetch.session.cache.slots` sessions; when full, the least
//! recently used session is evicted (its owner gets FETCH_SESSION_ID_NOT_FOUND and starts over).

use std::collections::HashMap;

use kafka_protocol::ResponseError;
use kafka_protocol::indexmap::IndexMap;
use uuid::Uuid;

/// The epoch of a request that opens a new session.
pub const INITIAL_EPOCH: i32 = 0;
/// The epoch of a request that closes its session (or uses none).
pub const FINAL_EPOCH: i32 = -1;

/// One partition of a session: what the fetcher asked for, and what it was last told.
#[derive(Debug, Clone)]
pub struct SessionPartition {
    pub topic_id: Uuid,
    pub fetch_offset: i64,
    pub max_bytes: i32,
    pub current_leader_epoch: i32,
    /// A follower's epoch of its last fetched batch (-1: none, or a consumer).
    pub last_fetched_epoch: i32,
    /// A follower's log start offset (-1 from consumers).
    pub log_start_offset: i64,
    pub sent_high_watermark: i64,
    pub sent_log_start_offset: i64,
}

pub type PartitionKey = (String, i32);

#[derive(Debug)]
pub struct FetchSession {
    pub id: i32,
    /// The epoch the next request must carry.
    pub next_epoch: i32,
    pub partitions: IndexMap<PartitionKey, SessionPartition>,
    last_used: u64,
}

impl FetchSession {
    pub fn advance_epoch(&mut self) {
        self.next_epoch = if self.next_epoch == i32::MAX { 1 } else { self.next_epoch + 1 };
    }
}

pub struct FetchSessionCache {
    slots: usize,
    sessions: HashMap<i32, FetchSession>,
    next_id: i32,
    /// A logical clock for least-recently-used eviction.
    tick: u64,
}

impl FetchSessionCache {
    pub fn new(slots: usize) -> Self {
        Self { slots, sessions: HashMap::new(), next_id: 1, tick: 0 }
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Opens a session; returns its id, or 0 when sessions are disabled (no slots).
    pub fn create(&mut self, partitions: IndexMap<PartitionKey, SessionPartition>) -> i32 {
        if self.slots == 0 {
            return 0;
        }
        if self.sessions.len() >= self.slots
            && let Some(oldest) = self.sessions.values().min_by_key(|s| s.last_used).map(|s| s.id)
        {
            self.sessions.remove(&oldest);
        }
        let id = self.fresh_id();
        self.tick += 1;
        let mut session = FetchSession { id, next_epoch: INITIAL_EPOCH, partitions, last_used: self.tick };
        session.advance_epoch();
        self.sessions.insert(id, session);
        id
    }

    fn fresh_id(&mut self) -> i32 {
        loop {
            let id = self.next_id;
            self.next_id = if self.next_id == i32::MAX { 1 } else { self.next_id + 1 };
            if !self.sessions.contains_key(&id) {
                return id;
            }
        }
    }

    /// The session `id`, if `epoch` is the one it expects.
    pub fn get(&mut self, id: i32, epoch: i32) -> Result<&mut FetchSession, ResponseError> {
        self.tick += 1;
        let tick = self.tick;
        let s = self.sessions.get_mut(&id).ok_or(ResponseError::FetchSessionIdNotFound)?;
        if s.next_epoch != epoch {
            return Err(ResponseError::InvalidFetchSessionEpoch);
        }
        s.last_used = tick;
        Ok(s)
    }

    pub fn get_any_epoch(&mut self, id: i32) -> Option<&mut FetchSession> {
        self.sessions.get_mut(&id)
    }

    pub fn remove(&mut self, id: i32) {
        self.sessions.remove(&id);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn epochs_and_eviction() {
        let mut c = FetchSessionCache::new(2);
        let a = c.create(IndexMap::new());
        assert!(c.get(a, 1).is_ok());
        assert_eq!(c.get(a, 2).err(), Some(ResponseError::InvalidFetchSessionEpoch));
        c.get(a, 1).unwrap().advance_epoch();
        assert!(c.get(a, 2).is_ok());
        let b = c.create(IndexMap::new());
        let _ = c.get(a, 2);
        let d = c.create(IndexMap::new());
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(b, 1).err(), Some(ResponseError::FetchSessionIdNotFound));
        assert!(c.get(d, 1).is_ok());
        assert_eq!(FetchSessionCache::new(0).create(IndexMap::new()), 0);
    }
}
