//! The in-process idempotency store.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::future::{Future, ready};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{Claim, ClaimToken, IdempotencyStore, Settled, StoreError};
use crate::clock::{Clock, SystemClock, clamp};

/// The default number of event ids a [`MemoryStore`] remembers: 500,000.
///
/// Sized for a sustained **69 events per second** over the default 2-hour dedup
/// window (500,000 ÷ 7,200 s). The store keeps a 128-bit keyed hash of each id, not
/// the id, so what an id costs does not depend on its length. Memory is taken as ids
/// arrive, not up front. For a higher rate `r` (events/s) and window `w` (s), use
/// [`MemoryStore::with_capacity`]`(r × w)` with some headroom.
pub const DEFAULT_CAPACITY: usize = 500_000;

/// An idempotency store in this process's memory: for a single replica.
///
/// - **Never forgets an id inside its window.** A finished id is remembered until its
///   window has passed, whatever else arrives.
/// - **Bounded.** At most `capacity` ids are held (claims and finished ids). When it
///   is full of ids it must still remember, a *new* id is refused with
///   [`Claim::Full`] (the receiver answers 503, so NotMeta retries later, and counts
///   and logs the refusal); duplicates of ids it holds are still recognised.
///   Completing an id that is not claimed (free) records it only if there is room:
///   when full, [`complete`](IdempotencyStore::complete) fails with a
///   [`StoreError`] instead. [`refused`](Self::refused) counts both refusals.
/// - **Claims live as long as the delivery**: they are held until completed or
///   released ([`lease`](IdempotencyStore::lease) is `None`), so a handler that runs
///   long, or blocks its thread, never loses its claim to a duplicate. They die with
///   the process, as everything here does.
/// - **Monotonic time**: windows are measured on [`Clock::monotonic`], so a step of
///   the wall clock does not forget ids early.
/// - **Cheap**: ids are kept as a 128-bit keyed hash (the key is random per process),
///   operations take O(log n) at worst, and a store of 4,096 ids or more is split into
///   16 independently locked shards, each with its share of the capacity (the shares
///   add up to the capacity exactly; an id's shard is picked by its hash, so a
///   sharded store may refuse a new id when its shard is full while others have room).
///
/// ```
/// use std::time::Duration;
/// use notmeta_webhooks::dedup::{Claim, IdempotencyStore, MemoryStore, Settled};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryStore::new();
/// let Claim::Claimed(token) = store.claim("evt_1").await? else { panic!() };
/// assert_eq!(store.claim("evt_1").await?, Claim::InProgress);
/// assert_eq!(store.complete("evt_1", &token, Duration::from_secs(7200)).await?, Settled::Recorded);
/// assert_eq!(store.claim("evt_1").await?, Claim::Done);
/// # Ok(()) }
/// ```
///
/// Clones share the same ids. Each handle reads time from its own clock
/// ([`with_clock`](Self::with_clock)); give every handle that writes the same one.
#[derive(Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
    clock: Arc<dyn Clock>,
}

struct Shared {
    shards: Box<[Mutex<Shard>]>,
    capacity: usize,
    keys: (std::hash::RandomState, std::hash::RandomState),
    refused: AtomicU64,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("len", &self.len())
            .field("capacity", &self.shared.capacity)
            .field("refused", &self.refused())
            .finish_non_exhaustive()
    }
}

/// A 128-bit keyed hash of an event id: the table's key.
type Key = u128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Claimed(ClaimToken),
    /// Done until this monotonic time.
    Done(Instant),
}

/// The keys are already uniformly random, so the table uses them as they are.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, key: u128) {
        // Truncation intended: the low half of a random key.
        self.0 = key as u64;
    }
}

/// One part of the store, behind its own lock.
#[derive(Default)]
struct Shard {
    entries: HashMap<Key, State, BuildHasherDefault<KeyHasher>>,
    /// Finished ids by expiry, earliest first, for those that finish in the order
    /// they expire (the usual case: one window for every event): O(1) at both ends,
    /// read in memory order.
    in_order: VecDeque<(Instant, Key)>,
    /// Finished ids that expire before the last of `in_order` (windows that differ
    /// per event, or completions that raced), earliest first.
    out_of_order: BinaryHeap<Reverse<(Instant, Key)>>,
}

impl Shard {
    /// Forgets the finished ids whose window has passed.
    fn tidy(&mut self, now: Instant) {
        while let Some(&(expires, key)) = self.in_order.front() {
            if expires > now {
                break;
            }
            self.in_order.pop_front();
            self.forget(key, expires);
        }
        while let Some(&Reverse((expires, key))) = self.out_of_order.peek() {
            if expires > now {
                break;
            }
            self.out_of_order.pop();
            self.forget(key, expires);
        }
    }

    /// Removes `key` if it is still the finished id that expires at `expires` (not
    /// finished again since, with a later expiry).
    fn forget(&mut self, key: Key, expires: Instant) {
        if self.entries.get(&key) == Some(&State::Done(expires)) {
            self.entries.remove(&key);
        }
    }

    fn done(&mut self, key: Key, expires: Instant) {
        self.entries.insert(key, State::Done(expires));
        match self.in_order.back() {
            Some(&(last, _)) if expires < last => self.out_of_order.push(Reverse((expires, key))),
            _ => self.in_order.push_back((expires, key)),
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

/// A window that an `Instant` can always hold (where a longer one would overflow).
const MAX_SAFE: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

impl MemoryStore {
    /// A store for [`DEFAULT_CAPACITY`] ids on the system clock.
    #[must_use]
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// A store remembering at most `capacity` ids (at least 1; memory is taken as ids
    /// arrive, not up front) on the system clock.
    ///
    /// ```
    /// use notmeta_webhooks::dedup::MemoryStore;
    /// // 200 events/s over a 2-hour window, with 10% headroom.
    /// let store = MemoryStore::with_capacity(200 * 7200 * 11 / 10);
    /// assert_eq!(store.capacity(), 1_584_000);
    /// ```
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        Self::build(capacity, Arc::new(SystemClock))
    }

    fn build(capacity: usize, clock: Arc<dyn Clock>) -> Self {
        let capacity = capacity.max(1);
        let shards = if capacity >= SHARDED_FROM { SHARDS } else { 1 };
        Self {
            shared: Arc::new(Shared {
                shards: (0..shards).map(|_| Mutex::default()).collect(),
                capacity,
                keys: Default::default(),
                refused: AtomicU64::new(0),
            }),
            clock,
        }
    }

    /// This handle reads time from `clock` instead of the system clock (for tests).
    /// A [`Receiver`](crate::receiver::Receiver) gives its store its own clock, so
    /// this is needed only for a store used on its own.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The most ids it holds.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// How many ids are held now (claims and finished ids). A finished id whose
    /// window has passed may still be counted until the store next forgets expired
    /// ids (as deliveries complete, or when room is needed); it is never answered
    /// as done.
    #[must_use]
    pub fn len(&self) -> usize {
        self.shared
            .shards
            .iter()
            .map(|s| lock(s).entries.len())
            .sum()
    }

    /// Whether no id is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many new ids were refused because the store was full.
    #[must_use]
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }

    fn now(&self) -> Instant {
        self.clock.monotonic()
    }

    /// The id's key and the shard holding it, locked, with that shard's share of the
    /// capacity.
    fn shard(&self, id: &str) -> (Key, MutexGuard<'_, Shard>, usize) {
        let (a, b) = &self.shared.keys;
        let key = (u128::from(a.hash_one(id)) << 64) | u128::from(b.hash_one(id));
        let shards = &self.shared.shards;
        // The top bits pick the shard; the table uses the low ones.
        let index = ((key >> 124) as usize) % shards.len();
        let share = share(self.shared.capacity, shards.len(), index);
        (key, lock(&shards[index]), share)
    }

    fn claim_now(&self, id: &str) -> Claim {
        let (key, mut shard, share) = self.shard(id);
        // Completions forget expired ids as they go; a claim reads the clock only
        // when its answer depends on it: the id is done (has its window passed?), or
        // the shard is full (would forgetting expired ids make room?).
        let found = shard.entries.get(&key);
        if matches!(found, Some(State::Done(_)))
            || (found.is_none() && shard.entries.len() >= share)
        {
            shard.tidy(self.now());
        }
        match shard.entries.get(&key) {
            Some(State::Claimed(_)) => Claim::InProgress,
            Some(State::Done(_)) => Claim::Done,
            None if shard.entries.len() >= share => {
                self.shared.refused.fetch_add(1, Ordering::Relaxed);
                Claim::Full
            }
            None => {
                let token = ClaimToken::new();
                shard.entries.insert(key, State::Claimed(token));
                Claim::Claimed(token)
            }
        }
    }

    fn renew_now(&self, id: &str, token: &ClaimToken) -> Settled {
        let (key, shard, _) = self.shard(id);
        match shard.entries.get(&key) {
            Some(State::Claimed(held)) if held == token => Settled::Recorded,
            _ => Settled::LeaseLost,
        }
    }

    fn complete_now(
        &self,
        id: &str,
        token: &ClaimToken,
        window: Duration,
    ) -> Result<Settled, StoreError> {
        let now = self.now();
        let (key, mut shard, share) = self.shard(id);
        shard.tidy(now);
        match shard.entries.get(&key) {
            Some(State::Claimed(held)) if held == token => {}
            // A free id is recorded too, if its shard has room once expired ids are
            // forgotten; a full one refuses it as a claim would (a delivery's own
            // claim is completed in place, so the receiver never meets this).
            None if shard.entries.len() >= share => {
                self.shared.refused.fetch_add(1, Ordering::Relaxed);
                return Err(StoreError::new(Full));
            }
            None => {}
            Some(_) => return Ok(Settled::LeaseLost),
        }
        let expires = now.checked_add(clamp(window)).unwrap_or(now + MAX_SAFE);
        shard.done(key, expires);
        Ok(Settled::Recorded)
    }

    fn release_now(&self, id: &str, token: &ClaimToken) {
        let (key, mut shard, _) = self.shard(id);
        if shard.entries.get(&key) == Some(&State::Claimed(*token)) {
            shard.entries.remove(&key);
        }
    }
}

/// Why a [`MemoryStore`] refused to complete a free id: it is full of ids it must
/// still remember.
#[derive(Debug, thiserror::Error)]
#[error("the in-memory idempotency store is full")]
struct Full;

/// Shard `index`'s share of `capacity` over `shards` shards: the remainder goes one
/// id each to the first shards, so the shares add up to the capacity exactly.
fn share(capacity: usize, shards: usize, index: usize) -> usize {
    capacity / shards + usize::from(index < capacity % shards)
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

impl IdempotencyStore for MemoryStore {
    fn lease(&self) -> Option<Duration> {
        None
    }

    fn claim(&self, event_id: &str) -> impl Future<Output = Result<Claim, StoreError>> + Send {
        ready(Ok(self.claim_now(event_id)))
    }

    fn renew(
        &self,
        event_id: &str,
        token: &ClaimToken,
    ) -> impl Future<Output = Result<Settled, StoreError>> + Send {
        ready(Ok(self.renew_now(event_id, token)))
    }

    fn complete(
        &self,
        event_id: &str,
        token: &ClaimToken,
        window: Duration,
    ) -> impl Future<Output = Result<Settled, StoreError>> + Send {
        ready(self.complete_now(event_id, token, window))
    }

    fn release(
        &self,
        event_id: &str,
        token: &ClaimToken,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.release_now(event_id, token);
        ready(Ok(()))
    }

    fn use_clock(&mut self, clock: Arc<dyn Clock>) {
        self.clock = clock;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::time::{SystemTime, UNIX_EPOCH};

    const WINDOW: Duration = Duration::from_secs(7200);

    fn store(capacity: usize) -> (MemoryStore, ManualClock) {
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        (
            MemoryStore::with_capacity(capacity).with_clock(clock.clone()),
            clock,
        )
    }

    fn claimed(store: &MemoryStore, id: &str) -> ClaimToken {
        match store.claim_now(id) {
            Claim::Claimed(token) => token,
            other => panic!("{id}: {other:?}"),
        }
    }

    #[test]
    fn claim_complete_and_duplicates() {
        let (store, _) = store(10);
        let token = claimed(&store, "evt_1");
        assert_eq!(store.claim_now("evt_1"), Claim::InProgress);
        assert_eq!(store.renew_now("evt_1", &token), Settled::Recorded);
        assert_eq!(
            store.complete_now("evt_1", &token, WINDOW).unwrap(),
            Settled::Recorded
        );
        assert_eq!(store.claim_now("evt_1"), Claim::Done);
        // Releasing a finished id does nothing; completing it again is refused.
        store.release_now("evt_1", &token);
        assert_eq!(store.claim_now("evt_1"), Claim::Done);
        assert_eq!(
            store.complete_now("evt_1", &token, WINDOW).unwrap(),
            Settled::LeaseLost
        );
    }

    #[test]
    fn only_the_holder_renews_completes_or_releases() {
        let (store, _) = store(10);
        let first = claimed(&store, "evt_1");
        let stranger = ClaimToken::new();
        store.release_now("evt_1", &stranger);
        assert_eq!(store.claim_now("evt_1"), Claim::InProgress);
        assert_eq!(store.renew_now("evt_1", &stranger), Settled::LeaseLost);
        assert_eq!(
            store.complete_now("evt_1", &stranger, WINDOW).unwrap(),
            Settled::LeaseLost
        );
        assert_eq!(store.claim_now("evt_1"), Claim::InProgress);
        store.release_now("evt_1", &first);
        assert_eq!(store.renew_now("evt_1", &first), Settled::LeaseLost);
        let second = claimed(&store, "evt_1");
        assert_ne!(first, second);
    }

    #[test]
    fn claims_do_not_expire_while_held() {
        let (store, clock) = store(10);
        let token = claimed(&store, "evt_1");
        clock.advance(Duration::from_secs(365 * 24 * 3600));
        assert_eq!(store.claim_now("evt_1"), Claim::InProgress);
        assert_eq!(
            store.complete_now("evt_1", &token, WINDOW).unwrap(),
            Settled::Recorded
        );
    }

    #[test]
    fn finished_ids_expire_after_the_window_on_monotonic_time() {
        let (store, clock) = store(10);
        let token = claimed(&store, "evt_1");
        store.complete_now("evt_1", &token, WINDOW).unwrap();
        // A wall-clock step changes nothing.
        clock.set(SystemTime::now() + Duration::from_secs(10 * 86_400));
        clock.advance(WINDOW - Duration::from_millis(1));
        assert_eq!(store.claim_now("evt_1"), Claim::Done);
        clock.advance(Duration::from_millis(1));
        claimed(&store, "evt_1");
        assert_eq!(store.len(), 1, "the expired entry was dropped");
    }

    #[test]
    fn a_full_store_refuses_new_ids_and_forgets_nothing() {
        let (store, clock) = store(3);
        for i in 0..3 {
            let token = claimed(&store, &format!("evt_{i}"));
            store
                .complete_now(&format!("evt_{i}"), &token, WINDOW)
                .unwrap();
            clock.advance(Duration::from_secs(1));
        }
        assert_eq!(store.claim_now("evt_3"), Claim::Full);
        assert_eq!(store.refused(), 1);
        for i in 0..3 {
            assert_eq!(store.claim_now(&format!("evt_{i}")), Claim::Done);
        }
        for _ in 0..10_000 {
            assert_eq!(store.claim_now("evt_flood"), Claim::Full);
        }
        assert_eq!(store.len(), 3);
        // Once the oldest window passes, there is room again.
        clock.advance(WINDOW - Duration::from_secs(3));
        claimed(&store, "evt_3");
        assert_eq!(store.claim_now("evt_1"), Claim::Done);
    }

    #[test]
    fn windows_of_different_lengths_expire_in_their_own_order() {
        let (store, clock) = store(10);
        let long = claimed(&store, "evt_long");
        store.complete_now("evt_long", &long, WINDOW * 3).unwrap();
        let short = claimed(&store, "evt_short");
        store.complete_now("evt_short", &short, WINDOW).unwrap();
        clock.advance(WINDOW);
        claimed(&store, "evt_short");
        assert_eq!(store.claim_now("evt_long"), Claim::Done);
        clock.advance(WINDOW * 2);
        claimed(&store, "evt_long");
    }

    /// Windows in order, out of order and equal, finished ids completed again, and
    /// time moving in uneven steps: every id is remembered exactly until its own
    /// window has passed, as a plain map of expiries says.
    #[test]
    fn mixed_windows_match_a_model() {
        let (store, clock) = store(100_000);
        let mut model: HashMap<String, Instant> = HashMap::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..2_000 {
            let id = format!("evt_{}", next() % 300);
            let now = clock.monotonic();
            let expected_done = model.get(&id).is_some_and(|&expires| now < expires);
            match store.claim_now(&id) {
                Claim::Done => assert!(expected_done, "round {round}: {id} still done"),
                Claim::Claimed(token) => {
                    assert!(!expected_done, "round {round}: {id} forgotten early");
                    // Mostly one window, sometimes a shorter or a longer one.
                    let window = match next() % 4 {
                        0 => Duration::from_secs(next() % 50),
                        1 => Duration::from_secs(100 + next() % 100),
                        _ => Duration::from_secs(60),
                    };
                    store.complete_now(&id, &token, window).unwrap();
                    model.insert(id, now + window);
                }
                other => panic!("round {round}: {id}: {other:?}"),
            }
            clock.advance(Duration::from_millis(next() % 400));
        }
    }

    #[test]
    fn huge_windows_saturate() {
        let (store, clock) = store(10);
        let token = claimed(&store, "evt_1");
        assert_eq!(
            store.complete_now("evt_1", &token, Duration::MAX).unwrap(),
            Settled::Recorded
        );
        clock.advance(Duration::from_secs(50 * 365 * 86_400));
        assert_eq!(store.claim_now("evt_1"), Claim::Done);
    }

    /// Filled far past its capacity, a store holds exactly its capacity: sharded
    /// or not, whatever the remainder of the capacity over the shards.
    #[test]
    fn the_capacity_is_an_exact_bound() {
        for capacity in [1, 2, 15, 16, 17, 4095, 4096, 4097, 4111, 4112, 5000] {
            let (store, _) = store(capacity);
            for i in 0..capacity + 20_000 {
                let id = format!("evt_{i}");
                if let Claim::Claimed(token) = store.claim_now(&id) {
                    store.complete_now(&id, &token, WINDOW).unwrap();
                }
            }
            assert_eq!(store.len(), capacity, "capacity {capacity}");
            assert_eq!(store.refused(), 20_000, "capacity {capacity}");
        }
    }

    #[test]
    fn large_stores_are_sharded_and_keep_their_bound() {
        let (store, _) = store(8192);
        assert_eq!(store.shared.shards.len(), SHARDS);
        let mut refused = 0;
        for i in 0..50_000 {
            let id = format!("evt_{i}");
            match store.claim_now(&id) {
                Claim::Claimed(token) => {
                    store.complete_now(&id, &token, WINDOW).unwrap();
                }
                Claim::Full => refused += 1,
                other => panic!("{id}: {other:?}"),
            }
        }
        assert!(store.len() <= 8192, "{}", store.len());
        assert!(store.len() >= 8192 - SHARDS * 64, "{}", store.len());
        assert_eq!(refused, 50_000 - store.len());
        assert_eq!(store.refused(), refused as u64);
        // The oldest ids are still remembered.
        assert_eq!(store.claim_now("evt_0"), Claim::Done);
    }
}
