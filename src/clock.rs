//! Where "now" comes from, so that event age and store expiry can be tested.
//!
//! Two kinds of time serve two purposes:
//!
//! - **wall-clock time** ([`Clock::now`]) only for the event's age, which compares
//!   against the signed `created_at`;
//! - **monotonic time** ([`Clock::monotonic`]) for everything a receiver measures
//!   itself: claim leases and how long finished ids are remembered. A step of the
//!   wall clock (NTP, a resumed VM) then never expires a claim or forgets an id early.
//!
//! One injected clock drives both, in the receiver and in its default store.
//!
//! Every duration setting of the crate (receiver, stores, queue, workers, body read
//! time limit) accepts any value: durations above [`MAX_DURATION`] (100 years) are
//! treated as [`MAX_DURATION`], so no setting can make a deadline overflow.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// The longest duration any setting takes: 100 years. Longer durations are clamped
/// to it, so no setting can overflow a deadline.
///
/// ```
/// use std::time::Duration;
/// use notmeta_webhooks::clock::MAX_DURATION;
/// assert_eq!(MAX_DURATION, Duration::from_secs(100 * 365 * 24 * 60 * 60));
/// ```
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// `d`, at most [`MAX_DURATION`]: what every duration setting stores.
pub(crate) fn clamp(d: Duration) -> Duration {
    d.min(MAX_DURATION)
}

/// A source of the current time.
///
/// [`SystemClock`] in production; [`ManualClock`] in tests that follow NotMeta's
/// retry schedule (1 min, 5 min, 15 min, 1 h) without waiting for it.
pub trait Clock: Send + Sync + 'static {
    /// The current wall-clock time (compared with an event's `created_at`).
    fn now(&self) -> SystemTime;

    /// The current monotonic time (for leases and windows measured here).
    fn monotonic(&self) -> Instant;
}

/// The operating system's clocks.
///
/// ```
/// use notmeta_webhooks::clock::{Clock, SystemClock};
/// assert!(SystemClock.now() > std::time::UNIX_EPOCH);
/// assert!(SystemClock.monotonic() <= std::time::Instant::now());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn monotonic(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that only moves when told to; clones share the same time.
///
/// [`advance`](Self::advance) moves both its wall-clock and its monotonic time;
/// [`set`](Self::set) steps the wall clock alone, as NTP or a resumed VM would.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use notmeta_webhooks::clock::{Clock, ManualClock};
///
/// let clock = ManualClock::new(UNIX_EPOCH);
/// let view = clock.clone();
/// let start = view.monotonic();
/// clock.advance(Duration::from_secs(60));
/// assert_eq!(view.now(), UNIX_EPOCH + Duration::from_secs(60));
/// assert_eq!(view.monotonic() - start, Duration::from_secs(60));
///
/// clock.set(UNIX_EPOCH + Duration::from_secs(86_400)); // a wall-clock step
/// assert_eq!(view.monotonic() - start, Duration::from_secs(60));
/// ```
#[derive(Clone)]
pub struct ManualClock(Arc<Mutex<ManualTime>>);

#[derive(Debug, Clone, Copy)]
struct ManualTime {
    wall: SystemTime,
    monotonic: Instant,
}

impl ManualClock {
    /// A clock showing `start`.
    #[must_use]
    pub fn new(start: SystemTime) -> Self {
        Self(Arc::new(Mutex::new(ManualTime {
            wall: start,
            monotonic: Instant::now(),
        })))
    }

    /// Moves the clock forward by `by` (saturating at the largest time it can show).
    pub fn advance(&self, by: Duration) {
        let mut time = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(wall) = time.wall.checked_add(by) {
            time.wall = wall;
        }
        if let Some(monotonic) = time.monotonic.checked_add(by) {
            time.monotonic = monotonic;
        }
    }

    /// Sets the wall clock to `to`; monotonic time does not move.
    pub fn set(&self, to: SystemTime) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).wall = to;
    }

    fn read(&self) -> ManualTime {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        self.read().wall
    }

    fn monotonic(&self) -> Instant {
        self.read().monotonic
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ManualClock").field(&self.now()).finish()
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> SystemTime {
        (**self).now()
    }

    fn monotonic(&self) -> Instant {
        (**self).monotonic()
    }
}
