//! The in-process idempotency store.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{Hash as _, Hasher as _};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use futures_util::future::{BoxFuture, FutureExt as _, ready};

use super::{Claim, ClaimToken, IdempotencyStore, StoreError};
use crate::clock::{Clock, SystemClock};

/// The default number of event ids a [`MemoryStore`] remembers.
///
/// At NotMeta's retry window this covers a sustained ~14 events per second; an entry
/// costs roughly 150 bytes plus the id, so the default bound is about 20 MB.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// An idempotency store in this process's memory: for a single replica.
///
/// Bounded in both directions: entries expire (claims after their lease, finished
/// events after the dedup window), and at most `capacity` ids are kept. When full, the
/// finished ids closest to expiry are forgotten first; live claims are never dropped
/// (if every entry is a live claim, a new claim fails and is answered 503). Every
/// operation takes constant time (amortised); a store of 4,096 ids or more is split
/// into 16 independently locked shards, each with its share of the capacity.
///
/// ```
/// use std::time::Duration;
/// use notmeta_webhooks::dedup::{Claim, IdempotencyStore, MemoryStore};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryStore::new();
/// let Claim::Claimed(token) = store.claim("evt_1", Duration::from_secs(30)).await? else { panic!() };
/// assert_eq!(store.claim("evt_1", Duration::from_secs(30)).await?, Claim::InProgress);
/// store.complete("evt_1", &token, Duration::from_secs(7200)).await?;
/// assert_eq!(store.claim("evt_1", Duration::from_secs(30)).await?, Claim::Done);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    shards: Arc<[Mutex<Shard>]>,
    clock: Arc<dyn Clock>,
    capacity: usize,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
enum State {
    Claimed(ClaimToken),
    Done,
}

#[derive(Debug)]
struct Entry {
    state: State,
    expires: SystemTime,
    /// Which queue item speaks for this entry; older items for the id are stale.
    seq: u64,
}

/// A queue item: an id and the entry it was queued for.
#[derive(Debug)]
struct Queued {
    expires: SystemTime,
    seq: u64,
    id: Arc<str>,
}

/// One part of the store, behind its own lock.
///
/// Claims and finished ids each have one time to live, so each queue is in expiry
/// order: expiring and evicting take the oldest item of a queue, in constant time.
/// An item whose entry has moved on (released, completed, re-claimed) is stale and is
/// dropped when it reaches the front; live entries are also checked against the
/// clock when looked up, so a caller that varies the time to live stays correct.
#[derive(Debug, Default)]
struct Shard {
    entries: HashMap<Arc<str>, Entry>,
    claims: VecDeque<Queued>,
    done: VecDeque<Queued>,
    seq: u64,
}

impl Shard {
    fn is_live(&self, item: &Queued) -> bool {
        self.entries
            .get(&item.id)
            .is_some_and(|e| e.seq == item.seq)
    }

    /// Drops expired queue fronts (and their entries, unless they have moved on).
    /// Stale items that have not expired wait for their expiry or for [`compact`].
    ///
    /// [`compact`]: Shard::compact
    fn tidy(&mut self, now: SystemTime) {
        for done_queue in [false, true] {
            loop {
                let queue = if done_queue {
                    &mut self.done
                } else {
                    &mut self.claims
                };
                if queue.front().is_none_or(|front| front.expires > now) {
                    break;
                }
                let item = queue.pop_front().unwrap_or_else(|| unreachable!());
                if self.is_live(&item) {
                    self.entries.remove(&item.id);
                }
            }
        }
    }

    /// The live entry for `id`, if any.
    fn get(&self, id: &str, now: SystemTime) -> Option<&Entry> {
        self.entries.get(id).filter(|e| e.expires > now)
    }

    /// Makes room for one more id: forgets the oldest finished id.
    ///
    /// Once the shard is full it also sizes its table for good: a hash table kept
    /// full while ids come and go fills with deleted-slot markers and would double
    /// once, at some later moment; at twice its share it only ever tidies in place,
    /// so a full store's memory stays flat.
    fn make_room(&mut self, capacity: usize) -> Result<(), StoreError> {
        if self.entries.len() + 1 >= capacity && self.entries.capacity() < 2 * capacity {
            self.entries.reserve(2 * capacity - self.entries.len());
        }
        while self.entries.len() >= capacity {
            let Some(item) = self.done.pop_front() else {
                return Err(StoreError::new(
                    "the in-memory idempotency store is full of claims in progress",
                ));
            };
            if self.is_live(&item) {
                self.entries.remove(&item.id);
            }
        }
        Ok(())
    }

    fn insert(&mut self, id: &str, state: State, expires: SystemTime) {
        self.seq += 1;
        let seq = self.seq;
        let shared: Arc<str> = match self.entries.get_key_value(id) {
            Some((key, _)) => Arc::clone(key),
            None => id.into(),
        };
        let queue = match state {
            State::Claimed(_) => &mut self.claims,
            State::Done => &mut self.done,
        };
        queue.push_back(Queued {
            expires,
            seq,
            id: Arc::clone(&shared),
        });
        self.entries.insert(
            shared,
            Entry {
                state,
                expires,
                seq,
            },
        );
        self.compact();
    }

    /// Keeps the queues in proportion to the entries: stale items behind a long-lived
    /// claim are dropped once they outnumber the entries (amortised constant time).
    fn compact(&mut self) {
        let bound = 2 * self.entries.len() + 64;
        if self.claims.len() + self.done.len() > bound {
            let entries = &self.entries;
            let live = |item: &Queued| entries.get(&item.id).is_some_and(|e| e.seq == item.seq);
            self.claims.retain(live);
            self.done.retain(live);
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

/// Stores of at least this capacity are split into [`SHARDS`] independently locked
/// parts, so that concurrent deliveries rarely wait for one another.
const SHARDED_FROM: usize = 4096;
const SHARDS: usize = 16;

impl MemoryStore {
    /// A store for [`DEFAULT_CAPACITY`] ids on the system clock.
    #[must_use]
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// A store that remembers at most `capacity` ids (at least 1).
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let shards = if capacity >= SHARDED_FROM { SHARDS } else { 1 };
        Self {
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            clock: Arc::new(SystemClock),
            capacity,
        }
    }

    /// Uses `clock` for expiry instead of the system clock (for tests).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How many ids are held now (claims and finished events, expired or not).
    #[must_use]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entries
                    .len()
            })
            .sum()
    }

    /// Whether no id is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shard holding `id`, and that shard's share of the capacity.
    fn shard(&self, id: &str) -> (std::sync::MutexGuard<'_, Shard>, usize) {
        let index = if self.shards.len() == 1 {
            0
        } else {
            let mut hasher = std::hash::DefaultHasher::new();
            id.hash(&mut hasher);
            (hasher.finish() % self.shards.len() as u64) as usize
        };
        let guard = self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (guard, self.capacity.div_ceil(self.shards.len()))
    }

    pub(crate) fn claim_now(&self, id: &str, lease: Duration) -> Result<Claim, StoreError> {
        let now = self.clock.now();
        let (mut shard, capacity) = self.shard(id);
        shard.tidy(now);
        if let Some(entry) = shard.get(id, now) {
            return Ok(match entry.state {
                State::Done => Claim::Done,
                State::Claimed(_) => Claim::InProgress,
            });
        }
        if !shard.entries.contains_key(id) {
            shard.make_room(capacity)?;
        }
        let token = ClaimToken::new();
        shard.insert(id, State::Claimed(token), now + lease);
        Ok(Claim::Claimed(token))
    }

    pub(crate) fn complete_now(&self, id: &str, window: Duration) -> Result<(), StoreError> {
        let now = self.clock.now();
        let (mut shard, capacity) = self.shard(id);
        shard.tidy(now);
        if !shard.entries.contains_key(id) {
            shard.make_room(capacity)?;
        }
        shard.insert(id, State::Done, now + window);
        Ok(())
    }

    pub(crate) fn release_now(&self, id: &str, token: &ClaimToken) {
        let (mut shard, _) = self.shard(id);
        if matches!(&shard.entries.get(id), Some(Entry { state: State::Claimed(held), .. }) if held == token)
        {
            // Its queue item is now stale and goes when it reaches the front.
            shard.entries.remove(id);
        }
    }
}

impl IdempotencyStore for MemoryStore {
    fn claim<'a>(
        &'a self,
        event_id: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Claim, StoreError>> {
        ready(self.claim_now(event_id, lease)).boxed()
    }

    fn complete<'a>(
        &'a self,
        event_id: &'a str,
        _token: &'a ClaimToken,
        window: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        ready(self.complete_now(event_id, window)).boxed()
    }

    fn release<'a>(
        &'a self,
        event_id: &'a str,
        token: &'a ClaimToken,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.release_now(event_id, token);
        ready(Ok(())).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::time::UNIX_EPOCH;

    const LEASE: Duration = Duration::from_secs(30);
    const WINDOW: Duration = Duration::from_secs(7200);

    fn store(capacity: usize) -> (MemoryStore, ManualClock) {
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        (
            MemoryStore::with_capacity(capacity).with_clock(clock.clone()),
            clock,
        )
    }

    fn claimed(store: &MemoryStore, id: &str) -> ClaimToken {
        match store.claim_now(id, LEASE).unwrap() {
            Claim::Claimed(token) => token,
            other => panic!("{id}: {other:?}"),
        }
    }

    #[test]
    fn claim_complete_and_duplicates() {
        let (store, _) = store(10);
        let token = claimed(&store, "evt_1");
        assert_eq!(store.claim_now("evt_1", LEASE).unwrap(), Claim::InProgress);
        store.complete_now("evt_1", WINDOW).unwrap();
        assert_eq!(store.claim_now("evt_1", LEASE).unwrap(), Claim::Done);
        // Releasing a finished id does nothing.
        store.release_now("evt_1", &token);
        assert_eq!(store.claim_now("evt_1", LEASE).unwrap(), Claim::Done);
    }

    #[test]
    fn release_lets_a_retry_claim_and_only_the_holder_can_release() {
        let (store, _) = store(10);
        let first = claimed(&store, "evt_1");
        store.release_now("evt_1", &ClaimToken::new());
        assert_eq!(store.claim_now("evt_1", LEASE).unwrap(), Claim::InProgress);
        store.release_now("evt_1", &first);
        let second = claimed(&store, "evt_1");
        assert_ne!(first, second);
    }

    #[test]
    fn a_crashed_claim_expires_after_its_lease() {
        let (store, clock) = store(10);
        let _abandoned = claimed(&store, "evt_1");
        clock.advance(LEASE - Duration::from_secs(1));
        assert_eq!(store.claim_now("evt_1", LEASE).unwrap(), Claim::InProgress);
        clock.advance(Duration::from_secs(1));
        claimed(&store, "evt_1");
    }

    #[test]
    fn finished_ids_expire_after_the_window() {
        let (store, clock) = store(10);
        claimed(&store, "evt_1");
        store.complete_now("evt_1", WINDOW).unwrap();
        clock.advance(WINDOW - Duration::from_secs(1));
        assert_eq!(store.claim_now("evt_1", LEASE).unwrap(), Claim::Done);
        clock.advance(Duration::from_secs(1));
        claimed(&store, "evt_1");
        assert_eq!(store.len(), 1, "the expired entry was dropped");
    }

    #[test]
    fn capacity_is_a_hard_bound_and_claims_are_never_evicted() {
        let (store, clock) = store(3);
        for i in 0..3 {
            claimed(&store, &format!("evt_{i}"));
            store.complete_now(&format!("evt_{i}"), WINDOW).unwrap();
            clock.advance(Duration::from_secs(1));
        }
        assert_eq!(store.len(), 3);
        // A fourth id evicts the finished id closest to expiry (the oldest).
        claimed(&store, "evt_3");
        assert_eq!(store.len(), 3);
        claimed(&store, "evt_0"); // forgotten, so claimable again
        assert_eq!(store.claim_now("evt_2", LEASE).unwrap(), Claim::Done);
        // Now: evt_2 done, evt_3 and evt_0 claimed; one more evicts evt_2.
        claimed(&store, "evt_4");
        assert_eq!(store.len(), 3);
        // All three are live claims: a new claim is refused, nothing is dropped.
        assert!(store.claim_now("evt_5", LEASE).is_err());
        assert_eq!(store.claim_now("evt_3", LEASE).unwrap(), Claim::InProgress);
        assert_eq!(store.len(), 3);
        for _ in 0..10_000 {
            let _ = store.claim_now("evt_flood", LEASE);
        }
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn queues_stay_in_proportion_behind_a_long_claim() {
        let (store, _) = store(10);
        let _slow = claimed(&store, "evt_slow");
        for i in 0..10_000 {
            let id = format!("evt_{i}");
            let token = claimed(&store, &id);
            store.release_now(&id, &token);
        }
        let shard = store.shards[0].lock().unwrap();
        assert_eq!(shard.entries.len(), 1);
        assert!(
            shard.claims.len() <= 2 * shard.entries.len() + 64 + 1,
            "{}",
            shard.claims.len()
        );
    }

    #[test]
    fn large_stores_are_sharded_and_keep_their_bound() {
        let (store, _) = {
            let clock = ManualClock::new(UNIX_EPOCH);
            (
                MemoryStore::with_capacity(8192).with_clock(clock.clone()),
                clock,
            )
        };
        assert_eq!(store.shards.len(), SHARDS);
        for i in 0..50_000 {
            let id = format!("evt_{i}");
            claimed(&store, &id);
            store.complete_now(&id, WINDOW).unwrap();
        }
        assert!(store.len() <= 8192, "{}", store.len());
        assert!(store.len() >= 8192 - SHARDS * 64, "{}", store.len());
        // The newest ids are remembered.
        assert_eq!(store.claim_now("evt_49999", LEASE).unwrap(), Claim::Done);
    }
}
