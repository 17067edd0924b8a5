//! The in-process idempotency store.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
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
/// (if every entry is a live claim, a new claim fails and is answered 503).
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
    inner: Arc<Mutex<Inner>>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Expiry {
    at: SystemTime,
    seq: u64,
}

#[derive(Debug)]
enum State {
    Claimed(ClaimToken),
    Done,
}

#[derive(Debug)]
struct Entry {
    state: State,
    expiry: Expiry,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Box<str>, Entry>,
    /// Every entry's expiry, oldest first, for expiring and evicting.
    by_expiry: BTreeMap<Expiry, Box<str>>,
    seq: u64,
}

impl Inner {
    fn purge_expired(&mut self, now: SystemTime) {
        while let Some(entry) = self.by_expiry.first_entry() {
            if entry.key().at > now {
                break;
            }
            let id = entry.remove();
            self.entries.remove(&id);
        }
    }

    fn remove(&mut self, id: &str) {
        if let Some(old) = self.entries.remove(id) {
            self.by_expiry.remove(&old.expiry);
        }
    }

    /// Makes room for one more id: forgets the finished id closest to expiry.
    fn make_room(&mut self, capacity: usize) -> Result<(), StoreError> {
        if self.entries.len() < capacity {
            return Ok(());
        }
        let victim = self
            .by_expiry
            .values()
            .find(|id| matches!(self.entries[&**id].state, State::Done))
            .cloned();
        match victim {
            Some(id) => {
                self.remove(&id);
                Ok(())
            }
            None => Err(StoreError::new(
                "the in-memory idempotency store is full of claims in progress",
            )),
        }
    }

    fn insert(&mut self, id: &str, state: State, at: SystemTime) {
        self.remove(id);
        self.seq += 1;
        let expiry = Expiry { at, seq: self.seq };
        self.by_expiry.insert(expiry, id.into());
        self.entries.insert(id.into(), Entry { state, expiry });
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store for [`DEFAULT_CAPACITY`] ids on the system clock.
    #[must_use]
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// A store that remembers at most `capacity` ids (at least 1).
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            inner: Arc::default(),
            clock: Arc::new(SystemClock),
            capacity: capacity.max(1),
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
        self.lock().entries.len()
    }

    /// Whether no id is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn claim_now(&self, id: &str, lease: Duration) -> Result<Claim, StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        inner.purge_expired(now);
        if let Some(entry) = inner.entries.get(id) {
            return Ok(match entry.state {
                State::Done => Claim::Done,
                State::Claimed(_) => Claim::InProgress,
            });
        }
        inner.make_room(self.capacity)?;
        let token = ClaimToken::new();
        inner.insert(id, State::Claimed(token.clone()), now + lease);
        Ok(Claim::Claimed(token))
    }

    fn complete_now(&self, id: &str, window: Duration) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        inner.purge_expired(now);
        if !inner.entries.contains_key(id) {
            inner.make_room(self.capacity)?;
        }
        inner.insert(id, State::Done, now + window);
        Ok(())
    }

    fn release_now(&self, id: &str, token: &ClaimToken) {
        let mut inner = self.lock();
        if matches!(&inner.entries.get(id), Some(Entry { state: State::Claimed(held), .. }) if held == token)
        {
            inner.remove(id);
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
        let token = claimed(&store, "evt_1");
        store.complete_now("evt_1", WINDOW).unwrap();
        drop(token);
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
}
