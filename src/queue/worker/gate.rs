//! What lets a worker start work: its circuit breaker and its rate limit.
//!
//! Before each read (or take) the reader asks [`admit`] how many entries it may
//! start: it waits while the breaker is open, or while no start is left in the
//! rate limit's bucket, and holds back the free slots beyond what it admitted, so
//! the read asks for no more. Each entry started takes a [`Ticket`] ([`Gate::ticket`]):
//! one start of the bucket and the breaker's pass (the probe's, when half-open),
//! which the run carries ([`carry`]) and records its result in ([`ran`]).
//!
//! A worker with neither costs nothing: [`admit`] returns at once and tickets are
//! empty.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::future::{Either, select};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
// The runtime's clock, as the worker's sleeps: a paused one skips the waits.
use tokio::time::Instant;

use super::{Shared, Worker};
use crate::breaker::{Admit, CircuitBreaker, Pass, Verdict};
use crate::clock::clamp;
use crate::receiver::delivery::Ran;

/// The longest the reader waits before it looks at the breaker and the bucket
/// again (a breaker on a manual clock, a probe whose result never comes).
const RECHECK: Duration = Duration::from_secs(1);

impl<H> Worker<H> {
    /// Guards the handler's downstream with `breaker` (see [`crate::breaker`]).
    ///
    /// - **Closed**: the worker reads as usual.
    /// - **Open** (after the breaker's threshold of consecutive temporary failures
    ///   or panics): the worker reads nothing, promotes no retry and reclaims
    ///   nothing, so entries stay queued and no attempt is spent; handlers already
    ///   running finish, and an entry whose run failed is retried as usual (its
    ///   attempt counted).
    /// - **Half-open** (the cool-down has passed): the worker starts exactly one
    ///   entry, the probe, and starts nothing else until its result: success closes
    ///   the breaker, a temporary failure opens it again.
    ///
    /// Each probe spends one attempt of the event it runs, and probes go to
    /// different events (a failed one waits for its backoff): with `n` events
    /// queued, an outage of length `T` costs an event about
    /// `T / (cool-down × n)` attempts. Keep [`with_max_attempts`](Self::with_max_attempts)
    /// and the cool-down (or [`CircuitBreaker::with_max_cool_down`]) such that the
    /// longest outage you expect does not use them up. Clones of the breaker, given
    /// to other workers or a receiver of this process, share its state.
    ///
    /// The worker has no handler time limit, and while the probe runs nothing else
    /// starts: give the handler's downstream calls a time limit of their own (an
    /// HTTP client's timeout), so that a probe against a downstream that hangs
    /// fails instead of holding the worker.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use notmeta_webhooks::breaker::CircuitBreaker;
    /// use notmeta_webhooks::queue::{Queue, Worker};
    /// use notmeta_webhooks::receiver::HandlerError;
    /// use notmeta_webhooks::Event;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let queue = Queue::connect("redis://127.0.0.1:6379/").await?;
    /// let crm = CircuitBreaker::new(5, Duration::from_secs(10))
    ///     .with_max_cool_down(Duration::from_secs(120))
    ///     .with_name("crm");
    /// let worker = Worker::new(queue, |event: Event<'static>| async move {
    ///     Err::<(), _>(HandlerError::temporary("the CRM is down"))
    /// })
    /// .with_circuit_breaker(crm.clone());
    /// # let _ = worker;
    /// println!("{:?}", crm.state());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_circuit_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.settings.gate = Gate::new(Some(breaker), self.settings.gate.rate);
        self
    }

    /// Starts handlers no faster than `starts` every `per`, in this worker (a token
    /// bucket: up to `starts` at once after a quiet spell, then one every
    /// `per / starts`). Use `with_rate_limit(1, per / n)` for evenly spaced starts.
    ///
    /// The limit is **per worker** (per [`Worker::run`], so per process when each
    /// process runs one): to keep N workers under a global rate R, give each
    /// `R / N`. Retries, reclaimed entries and probes count like new entries.
    ///
    /// `starts` of 0 is taken as 1; `per` of zero turns the limit off; `per` is at
    /// most [`MAX_DURATION`](crate::clock::MAX_DURATION). Its time is the Tokio
    /// runtime's, so a test on a paused clock (`#[tokio::test(start_paused = true)]`)
    /// skips its waits.
    ///
    /// ```
    /// use std::time::Duration;
    /// use notmeta_webhooks::queue::{Queue, Worker};
    /// use notmeta_webhooks::receiver::HandlerError;
    /// use notmeta_webhooks::Event;
    ///
    /// # async fn run(queue: Queue) {
    /// // At most 20 handler starts a second, with 4 worker processes: 5 each.
    /// let worker = Worker::new(queue, |_: Event<'static>| async { Ok::<(), HandlerError>(()) })
    ///     .with_rate_limit(5, Duration::from_secs(1));
    /// # let _ = worker;
    /// # }
    /// ```
    #[must_use]
    pub fn with_rate_limit(mut self, starts: u32, per: Duration) -> Self {
        let rate = (!per.is_zero()).then(|| Rate {
            starts: starts.max(1),
            per: clamp(per),
        });
        self.settings.gate = Gate::new(self.settings.gate.breaker.take(), rate);
        self
    }
}

/// A rate limit: `starts` every `per`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rate {
    starts: u32,
    per: Duration,
}

impl Rate {
    /// Starts per second.
    fn per_second(self) -> f64 {
        f64::from(self.starts) / self.per.as_secs_f64()
    }
}

/// A worker's breaker and rate limit, and what the reader admitted last.
#[derive(Clone, Default)]
pub(super) struct Gate {
    breaker: Option<CircuitBreaker>,
    rate: Option<Rate>,
    /// `None` when there is neither.
    live: Option<Arc<Mutex<Live>>>,
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("breaker", &self.breaker)
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

/// The bucket, and the starts the reader admitted in its current pass.
#[derive(Debug, Default)]
struct Live {
    /// Starts left in the bucket (fractions fill up over time).
    tokens: f64,
    /// When the bucket was last filled (`None`: never, it starts full).
    filled: Option<Instant>,
    /// Entries this pass may still start.
    left: usize,
    /// The probe's pass, for the first entry started in this pass.
    probe: Option<Pass>,
}

impl Live {
    /// Fills the bucket for the time since it was last filled; the whole starts in
    /// it.
    fn fill(&mut self, rate: Rate, now: Instant) -> usize {
        let capacity = f64::from(rate.starts);
        self.tokens = match self.filled {
            None => capacity,
            Some(then) => {
                let added = now.saturating_duration_since(then).as_secs_f64() * rate.per_second();
                (self.tokens + added).min(capacity)
            }
        };
        self.filled = Some(now);
        // At most `starts` (a u32): the cast cannot truncate.
        self.tokens.floor() as usize
    }

    /// How long until the next whole start is in the bucket.
    fn until_next(&self, rate: Rate) -> Duration {
        let missing = (1.0 - self.tokens).max(0.0) / rate.per_second();
        Duration::try_from_secs_f64(missing).map_or(crate::clock::MAX_DURATION, clamp)
    }
}

impl Gate {
    fn new(breaker: Option<CircuitBreaker>, rate: Option<Rate>) -> Self {
        let live = (breaker.is_some() || rate.is_some()).then(Arc::default);
        Self {
            breaker,
            rate,
            live,
        }
    }

    fn live(live: &Mutex<Live>) -> MutexGuard<'_, Live> {
        live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The ticket of an entry about to start, or `None` when the pass admitted no
    /// more (the entry is then not started: it stays this worker's, and is taken
    /// back like one whose start failed).
    pub(super) fn ticket(&self) -> Option<Ticket> {
        let Some(live) = &self.live else {
            return Some(Ticket::default());
        };
        let mut live = Self::live(live);
        if live.left == 0 {
            return None;
        }
        live.left -= 1;
        if self.rate.is_some() {
            live.tokens -= 1.0;
        }
        let pass = match (live.probe.take(), &self.breaker) {
            (Some(probe), _) => probe,
            (None, Some(breaker)) => breaker.closed_pass(),
            (None, None) => Pass::default(),
        };
        Some(Ticket(Some(pass)))
    }

    /// What may start now: how many entries, or how long to wait.
    fn try_admit(&self, live: &Mutex<Live>, free: usize) -> Result<usize, Duration> {
        let mut cap = free;
        if let Some(rate) = self.rate {
            let mut live = Self::live(live);
            let whole = live.fill(rate, Instant::now());
            if whole == 0 {
                return Err(live.until_next(rate));
            }
            cap = cap.min(whole);
        }
        match self.breaker.as_ref().map(CircuitBreaker::admit) {
            None | Some(Admit::All) => Ok(cap),
            Some(Admit::Probe(pass)) => {
                Self::live(live).probe = Some(pass);
                Ok(1)
            }
            Some(Admit::Wait(wait)) => Err(wait),
        }
    }
}

/// One pass of the reader: the free slots it holds back, and the starts it
/// admitted, forgotten (a probe given back) when the pass ends. A reader that
/// found nothing to start drops it before it waits for work, so that a probe it
/// cannot use goes to whoever shares the breaker (a receiver, another worker).
pub(super) struct Round {
    _held: Option<OwnedSemaphorePermit>,
    live: Option<Arc<Mutex<Live>>>,
}

impl Drop for Round {
    fn drop(&mut self) {
        if let Some(live) = &self.live {
            let mut live = Gate::live(live);
            live.left = 0;
            // Dropped outside the lock: giving a probe back takes the breaker's.
            let probe = live.probe.take();
            drop(live);
            drop(probe);
        }
    }
}

/// Waits until the worker may start entries, for `free` free slots: how many it
/// may start in this pass (the rest of the slots held back until the pass's
/// [`Round`] is dropped), or `None` once `shutdown` has completed.
pub(super) async fn admit<H>(
    shared: &Shared<H>,
    slots: &Arc<Semaphore>,
    free: usize,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> Option<(usize, Round)> {
    let gate = &shared.settings.gate;
    let Some(live) = &gate.live else {
        let round = Round {
            _held: None,
            live: None,
        };
        return Some((free, round));
    };
    loop {
        // Registered before the state is read: a change meanwhile is not missed.
        let changed = gate.breaker.as_ref().map(CircuitBreaker::changed);
        let wait = match gate.try_admit(live, free) {
            Ok(admitted) => {
                Gate::live(live).left = admitted;
                let surplus = slots.available_permits().saturating_sub(admitted);
                let held = u32::try_from(surplus)
                    .ok()
                    .and_then(|n| Arc::clone(slots).try_acquire_many_owned(n).ok());
                let round = Round {
                    _held: held,
                    live: Some(Arc::clone(live)),
                };
                return Some((admitted, round));
            }
            Err(wait) => wait.min(RECHECK),
        };
        let changed = match changed {
            Some(changed) => Either::Left(changed),
            None => Either::Right(std::future::pending()),
        };
        let (pause, changed) = (pin!(tokio::time::sleep(wait)), pin!(changed));
        if let Either::Right(_) = select(select(pause, changed), shutdown.as_mut()).await {
            return None;
        }
    }
}

/// An entry's share of the gate: the breaker's pass for its run (`None`: no gate).
#[derive(Debug, Default)]
pub(super) struct Ticket(Option<Pass>);

tokio::task_local! {
    /// The pass of the run in this entry's task.
    static PASS: RefCell<Option<Pass>>;
}

/// `task` with `ticket`'s pass at hand for [`ran`].
pub(super) fn carry<F: Future<Output = ()>>(ticket: Ticket, task: F) -> impl Future<Output = ()> {
    match ticket.0 {
        None => Either::Left(task),
        Some(pass) => Either::Right(PASS.scope(RefCell::new(Some(pass)), task)),
    }
}

/// Records how the handler's run ended in the breaker (if the entry's task has a
/// pass): success; temporary failure or panic; anything else decides nothing.
pub(super) fn ran(ran: &Ran) {
    let Ok(Some(pass)) = PASS.try_with(|pass| pass.borrow_mut().take()) else {
        return;
    };
    let verdict = match ran {
        Ran::Finished(Ok(())) => Verdict::Success,
        Ran::Finished(Err(error)) if error.is_temporary() => Verdict::Failure,
        Ran::Panicked => Verdict::Failure,
        Ran::Finished(Err(_)) | Ran::Stopped | Ran::Cancelled => Verdict::Neutral,
    };
    pass.record(verdict);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_starts_full_fills_at_its_rate_and_never_beyond() {
        let rate = Rate {
            starts: 4,
            per: Duration::from_secs(2),
        };
        let t0 = Instant::now();
        let mut live = Live::default();
        assert_eq!(live.fill(rate, t0), 4);
        live.tokens -= 4.0;
        assert_eq!(live.fill(rate, t0), 0);
        assert_eq!(live.until_next(rate), Duration::from_millis(500));
        assert_eq!(live.fill(rate, t0 + Duration::from_millis(499)), 0);
        assert_eq!(live.fill(rate, t0 + Duration::from_millis(1_250)), 2);
        assert_eq!(live.fill(rate, t0 + Duration::from_secs(3_600)), 4);
    }

    #[test]
    fn extreme_rates_give_sane_waits() {
        let slow = Rate {
            starts: 1,
            per: crate::clock::MAX_DURATION,
        };
        let mut live = Live::default();
        assert_eq!(live.fill(slow, Instant::now()), 1);
        live.tokens -= 1.0;
        assert!(live.until_next(slow) <= crate::clock::MAX_DURATION);
        assert!(live.until_next(slow) > Duration::from_secs(365 * 24 * 3600));
        let fast = Rate {
            starts: u32::MAX,
            per: Duration::from_nanos(1),
        };
        let mut live = Live::default();
        assert_eq!(live.fill(fast, Instant::now()), u32::MAX as usize);
        live.tokens = 0.0;
        assert_eq!(live.until_next(fast), Duration::ZERO);
    }
}
