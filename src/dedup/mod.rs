//! Acting once per event over NotMeta's at-least-once delivery.
//!
//! NotMeta retries a delivery that failed (1 min, 5 min, 15 min, 1 h after the first
//! attempt) and may deliver an event twice, so the same event `id` can arrive several
//! times, even concurrently on different replicas. An [`IdempotencyStore`] lets the
//! [`Receiver`](crate::receiver::Receiver) run the handler once per id with a
//! two-phase protocol:
//!
//! 1. **claim** the id before the handler runs. The claim is held for as long as the
//!    handler really runs: an in-process store ([`MemoryStore`]) holds it until the
//!    delivery settles; a shared store (`RedisStore`) gives it a lease that the
//!    receiver renews (every third of the lease) while the handler runs, so only a
//!    crashed process's claim ever expires;
//! 2. after success (or a permanent failure), **complete** it: the id is remembered
//!    as done for the dedup window, and duplicates are answered 200 without running
//!    the handler;
//! 3. after a temporary failure, a time-out or a panic, **release** it, so NotMeta's
//!    retry is processed.
//!
//! A delivery that ends any other way before it settles (its task dropped by a
//! runtime shutting down, a store's call that panics, its future dropped) settles its
//! claim from the drop, as settling would have: if the handler had returned, the id is
//! completed after success or a permanent failure and released otherwise; if it had
//! not, the claim is released, unless the handler runs isolated on the blocking pool
//! and may still be running (a blocking handler cannot be stopped): the claim is then
//! kept, and the handler's task settles it when the handler ends (a claim with a
//! lease lapses meanwhile if it is no longer renewed). From the drop, the call is
//! polled once, and if the store does not answer at once it goes on in a task on the
//! current runtime. Where there is no runtime:
//!
//! - a store with a [`lease`](IdempotencyStore::lease) is not called: the claim,
//!   no longer renewed, lapses one lease later, as a crashed process's claim does;
//! - a store without a lease is polled once. One whose call does not finish at its
//!   first poll (any store but [`MemoryStore`]) keeps that claim until the process
//!   ends: NotMeta's retries of that event are answered 503 ("in progress") until
//!   then, and NotMeta gives up on it after its last retry. Such a store should
//!   answer `complete` and `release` at their first poll, or have a lease; shutting
//!   down gracefully (waiting for deliveries in flight) avoids the case altogether.
//!
//! Every call after the claim carries the claim's [`ClaimToken`]: only the delivery
//! that holds the claim may renew, complete or release it. A delivery whose lease
//! lapsed while another delivery took the claim over learns it from
//! [`Settled::LeaseLost`] (or a failed renewal) instead of overwriting the other's
//! state; the receiver counts and logs it.
//!
//! A duplicate that arrives while the first delivery is still being handled is
//! answered 503: NotMeta will try again later, and by then the first attempt has
//! either completed (the duplicate is answered 200) or released the claim (it is
//! processed). A 4xx would tell NotMeta to give up on an event that may still fail.
//!
//! [`MemoryStore`] serves one process; `RedisStore` (feature `redis`) serves several
//! replicas behind a load balancer.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;

#[cfg(feature = "redis")]
mod connection;
mod memory;
#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "redis")]
pub(crate) use connection::Write;
#[cfg(feature = "queue")]
pub(crate) use connection::WriteError;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use connection::{RedisConnection, Replication};
pub use memory::{DEFAULT_CAPACITY, MemoryStore};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisStore;

/// How long the default dedup window remembers a finished event: 2 hours, NotMeta's
/// 81-minute retry window plus generous clock skew and delivery delay.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(2 * 60 * 60);

/// Identifies one claim, so that only its holder can renew, complete or release it.
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
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        // Two independent draws and a process-wide counter make 128 bits that do
        // not repeat.
        let a = crate::random::random_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let b = crate::random::random_u64(0);
        Self((u128::from(a) << 64) | u128::from(b))
    }
}

impl Default for ClaimToken {
    fn default() -> Self {
        Self::new()
    }
}

impl ClaimToken {
    /// Its 32 lower-case hex digits, without an allocation (what `Display` writes).
    pub(crate) fn hex(&self) -> [u8; 32] {
        let mut digits = [0; 32];
        hex::encode_to_slice(self.0.to_be_bytes(), &mut digits)
            .expect("16 bytes are 32 hex digits");
        digits
    }
}

/// 32 lower-case hex digits (for stores that keep the token as text).
impl fmt::Display for ClaimToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.hex()).expect("hex digits are ASCII"))
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
    /// The store is full of ids it must still remember and refuses new ones (answer
    /// 503: NotMeta retries once room has been made).
    Full,
}

/// What recording a delivery's outcome found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Settled {
    /// Recorded: the id is done (complete) or free again (release).
    Recorded,
    /// The claim had lapsed and another delivery holds the id (or has finished it):
    /// nothing was changed. The handler may have run twice; the receiver counts and
    /// logs it.
    LeaseLost,
}

/// A store that could not be reached or answered something unexpected.
///
/// The receiver answers 503 when it cannot claim, so NotMeta retries later. `Display`
/// is a fixed text (`the idempotency store failed`); the store's own error is the
/// [`source`](std::error::Error::source), and the operation that failed (claim,
/// complete, release, renew) is named in the receiver's logs and metrics.
#[derive(Debug, thiserror::Error)]
#[error("the idempotency store failed")]
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
/// claims of one id, exactly one gets [`Claim::Claimed`]. The token-taking calls act
/// only while the token's claim is the one held (see the [module docs](self)).
///
/// The methods return `impl Future + Send`, so a store that never waits (such as
/// [`MemoryStore`]) costs no allocation, and the receiver is generic over its store.
/// The receiver polls each call once before it arms the call's time limit, so a
/// store that answers at once costs no timer; as the `Future` contract asks, a
/// pending future must wake the waker of its most recent poll.
pub trait IdempotencyStore: Send + Sync + 'static {
    /// How long a claim lives unless renewed, or `None` when claims live until they
    /// are completed or released (an in-process store, whose claims die with the
    /// process). The receiver renews a claim every third of this while the handler
    /// runs.
    fn lease(&self) -> Option<Duration>;

    /// Claims `event_id`, unless it is claimed or done already.
    fn claim(&self, event_id: &str) -> impl Future<Output = Result<Claim, StoreError>> + Send;

    /// Extends the claim `token` holds by another [`lease`](Self::lease);
    /// [`Settled::LeaseLost`] if it is no longer held.
    fn renew(
        &self,
        event_id: &str,
        token: &ClaimToken,
    ) -> impl Future<Output = Result<Settled, StoreError>> + Send;

    /// Records `event_id` as done for `window` (dedup), if `token` still holds the
    /// claim or the id is free; [`Settled::LeaseLost`] otherwise.
    fn complete(
        &self,
        event_id: &str,
        token: &ClaimToken,
        window: Duration,
    ) -> impl Future<Output = Result<Settled, StoreError>> + Send;

    /// Gives up the claim `token` holds on `event_id`, so a retry can claim it; does
    /// nothing if the claim has lapsed or passed to another delivery.
    ///
    /// It is also called, as is [`complete`](Self::complete), when a delivery is
    /// dropped before it settled (see the [module docs](self)): the future is then
    /// polled once inside that drop, where it must not block, and, if it is pending,
    /// driven on in a task of the current runtime, when there is one. With no
    /// runtime, a store with a [`lease`](Self::lease) is not called there (its claim
    /// lapses with its lease), and a store without one is polled once only: if that
    /// poll does not finish, its claim stays until the process ends.
    fn release(
        &self,
        event_id: &str,
        token: &ClaimToken,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Extends every claim of `claims` (event id, token) by another
    /// [`lease`](Self::lease), answering in the same order what [`renew`](Self::renew)
    /// would for each. The receiver renews all the claims of its deliveries in flight
    /// with one call per third of the lease, so a store that can do it in one round
    /// trip (`RedisStore`, `PostgresStore`) should. This default renews them one after
    /// another; an error fails the whole call (no claim is known renewed).
    fn renew_many(
        &self,
        claims: &[(&str, &ClaimToken)],
    ) -> impl Future<Output = Result<Vec<Settled>, StoreError>> + Send {
        async move {
            let mut settled = Vec::with_capacity(claims.len());
            for (event_id, token) in claims {
                settled.push(self.renew(event_id, token).await?);
            }
            Ok(settled)
        }
    }

    /// The same store (same data, same settings) on a connection of its own,
    /// opened on the runtime that polls the returned future, or `None` if the store
    /// cannot open one (the default).
    ///
    /// A receiver with a store that has a [`lease`](Self::lease) renews its
    /// deliveries' claims from a thread of its own, with its own current-thread
    /// runtime and the store this returns, so that handlers blocking every thread
    /// of the application's runtime cannot stall the renewals; its handlers then run
    /// in their delivery's task. For a store that answers `None` here, the handler
    /// runs on Tokio's blocking pool instead, and the claim is renewed from the
    /// delivery's task (see `Receiver::with_handler_isolation`).
    fn on_own_connection(
        &self,
    ) -> Option<impl Future<Output = Result<Self, StoreError>> + Send + 'static>
    where
        Self: Sized,
    {
        None::<std::future::Pending<Result<Self, StoreError>>>
    }

    /// Adopts the receiver's clock ([`Receiver::with_clock`]) so that one injected
    /// time source drives both. Stores that keep time elsewhere (a Redis server's
    /// clock) ignore it, which is what this default does.
    ///
    /// [`Receiver::with_clock`]: crate::receiver::Receiver::with_clock
    fn use_clock(&mut self, clock: Arc<dyn Clock>) {
        let _ = clock;
    }
}

#[cfg(test)]
mod token_tests {
    use super::ClaimToken;

    #[test]
    fn a_token_is_32_zero_padded_lower_case_hex_digits() {
        for value in [0, 5, 0xAB << 64, u128::MAX, ClaimToken::new().0] {
            let token = ClaimToken(value);
            assert_eq!(token.to_string(), format!("{value:032x}"));
            assert_eq!(token.hex(), *format!("{value:032x}").as_bytes());
        }
    }
}
