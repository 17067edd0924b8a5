//! Acting once per event over NotMeta's at-least-once delivery.
//!
//! NotMeta retries a delivery that failed (1 min, 5 min, 15 min, 1 h after the first
//! attempt) and may deliver an event twice, so the same event `id` can arrive several
//! times, even concurrently on different replicas. An [`IdempotencyStore`] lets the
//! [`Receiver`](crate::receiver::Receiver) run the handler once per id with a
//! two-phase protocol:
//!
//! 1. **claim** the id before the handler runs; a claim carries a lease, so a claim
//!    left by a crashed process expires and the next retry is processed;
//! 2. after success (or a permanent failure), **complete** it: the id is remembered
//!    as done for the dedup window, and duplicates are answered 200 without running
//!    the handler;
//! 3. after a temporary failure, a time-out or a panic, **release** it, so NotMeta's
//!    retry is processed.
//!
//! A duplicate that arrives while the first delivery is still being handled is
//! answered 503: NotMeta will try again later, and by then the first attempt has
//! either completed (the duplicate is answered 200) or released the claim (it is
//! processed). A 4xx would tell NotMeta to give up on an event that may still fail.
//!
//! [`MemoryStore`] serves one process; `RedisStore` (feature `redis`) serves several
//! replicas behind a load balancer.

use std::fmt;
use std::time::Duration;

use futures_util::future::BoxFuture;

mod memory;
#[cfg(feature = "redis")]
mod redis;

pub use memory::{DEFAULT_CAPACITY, MemoryStore};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisStore;

/// The last NotMeta retry comes about 81 minutes after the first attempt (1 + 5 + 15
/// + 60 minutes of waiting).
pub const RETRY_WINDOW: Duration = Duration::from_secs(81 * 60);

/// How long the default dedup window remembers a finished event: 2 hours, the retry
/// window plus generous clock skew and delivery delay.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(2 * 60 * 60);

/// Identifies one claim, so that only its holder can release it.
///
/// ```
/// use notmeta_webhooks::dedup::ClaimToken;
/// let (a, b) = (ClaimToken::new(), ClaimToken::new());
/// assert_ne!(a, b);
/// assert_eq!(a.to_string().len(), 32);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClaimToken(u128);

impl ClaimToken {
    /// A new token, unique across processes with overwhelming probability.
    #[must_use]
    pub fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        // `RandomState` is seeded from the OS's randomness; two independent draws and
        // a process-wide counter make 128 bits that do not repeat.
        let mut a = std::collections::hash_map::RandomState::new().build_hasher();
        a.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let b = std::collections::hash_map::RandomState::new().build_hasher();
        Self((u128::from(a.finish()) << 64) | u128::from(b.finish()))
    }
}

impl Default for ClaimToken {
    fn default() -> Self {
        Self::new()
    }
}

/// 32 lower-case hex digits (for stores that keep the token as text).
impl fmt::Display for ClaimToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// The state of an event id when a delivery tries to claim it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Claim {
    /// This delivery holds the claim: run the handler.
    Claimed(ClaimToken),
    /// Another delivery holds a live claim: the event is being handled (answer 503).
    InProgress,
    /// The event was handled already (answer 200 without running the handler).
    Done,
}

/// A store that could not be reached or answered something unexpected.
///
/// The receiver answers 503 when it cannot claim, so NotMeta retries later.
#[derive(Debug, thiserror::Error)]
#[error("idempotency store error: {0}")]
pub struct StoreError(#[source] Box<dyn std::error::Error + Send + Sync>);

impl StoreError {
    /// Wraps the store's own error.
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self(error.into())
    }
}

/// Remembers which events were claimed and handled, keyed on event id.
///
/// Implementations must make [`claim`](Self::claim) atomic: of several concurrent
/// claims of one id, exactly one gets [`Claim::Claimed`].
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Claims `event_id` for `lease`, unless it is claimed or done already.
    fn claim<'a>(
        &'a self,
        event_id: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Claim, StoreError>>;

    /// Records `event_id` as done for `window` (dedup), whoever holds the claim.
    fn complete<'a>(
        &'a self,
        event_id: &'a str,
        token: &'a ClaimToken,
        window: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Gives up the claim `token` holds on `event_id`, so a retry can claim it; does
    /// nothing if the claim has expired or passed to another delivery.
    fn release<'a>(
        &'a self,
        event_id: &'a str,
        token: &'a ClaimToken,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}
