//! A circuit breaker for the downstream your handler calls: after a run of
//! temporary failures it stops sending work there for a cool-down, then lets one
//! event through as a probe, and goes back to normal once a probe succeeds.
//!
//! NotMeta's own advice for a receiver whose downstream is down is to "implement
//! circuit breakers for external services". Without one, a queue worker spends
//! every event's attempts against the dead downstream and fills the dead letters,
//! and an inline receiver runs (and times out) every delivery NotMeta sends.
//!
//! # The states
//!
//! | state | a queue's `Worker` (feature `queue`: `Worker::with_circuit_breaker`) | a [`Receiver`](crate::receiver::Receiver) |
//! |---|---|---|
//! | **closed** | reads and runs as usual | runs the handler as usual |
//! | **open** (for the cool-down) | reads nothing: entries stay queued, no attempt is spent; handlers already running finish | answers 503 at once with `Retry-After` (the cool-down left), before it claims the event: NotMeta retries later ([`Outcome::CircuitOpen`](crate::receiver::Outcome::CircuitOpen)) |
//! | **half-open** (the cool-down has passed) | starts exactly one entry, the probe, and waits for its result | lets exactly one delivery through as the probe; the others are answered 503 while it runs |
//!
//! - **Closed → open**: after [`failure_threshold`](CircuitBreaker::failure_threshold)
//!   *consecutive* temporary failures. What counts as a failure: a temporary
//!   [`HandlerError`](crate::receiver::HandlerError), a panic, a handler past the
//!   receiver's time limit. A success resets the count.
//! - **Open → half-open**: once the cool-down has passed (checked when work is
//!   asked for: no timer runs).
//! - **Half-open → closed** when the probe succeeds; **→ open** when it fails, for
//!   the cool-down again, doubled after each failed probe up to
//!   [`with_max_cool_down`](CircuitBreaker::with_max_cool_down) (no growth by
//!   default), and back to the first cool-down once closed.
//!
//! **Permanent failures never count** (a `HandlerError::permanent`, a 400-class
//! answer from the downstream, an event that does not parse): they say nothing
//! about whether the downstream is up. They neither add to the count nor reset it,
//! and a probe that ends that way (or never runs the handler: a duplicate, a
//! shutdown) decides nothing: the next event is the probe.
//!
//! Results of runs that started before the breaker last changed state are not
//! counted: a slow run that started while it was closed and fails after it opened
//! does not reopen it, and one that succeeds while a probe runs does not close it.
//!
//! **Why consecutive failures** rather than a failure ratio over a window: a
//! downstream that is down fails every call, so a run of N is the quickest clear
//! signal and needs no window to size against the traffic; a downstream that fails
//! only some calls is left to the retries, which is what they are for.
//!
//! # Sharing
//!
//! Clones share one state. Give a [`Receiver`](crate::receiver::Receiver) and a
//! queue `Worker` of one process clones of the same breaker when
//! their handlers call the same downstream: a failure seen by either opens it for
//! both, and there is one probe between them. The state is per process: each
//! replica or worker process finds out for itself (with its own probe).
//!
//! Configure a breaker before you clone it: a setting
//! ([`with_max_cool_down`](CircuitBreaker::with_max_cool_down),
//! [`with_name`](CircuitBreaker::with_name), [`with_clock`](CircuitBreaker::with_clock))
//! applied to a breaker that has clones returns a new breaker, closed, whose state
//! none of those clones shares.
//!
//! ```
//! use std::time::Duration;
//! use notmeta_webhooks::breaker::CircuitBreaker;
//!
//! let shared = CircuitBreaker::new(1, Duration::from_secs(30));
//! let same = shared.clone();
//! let other = shared.clone().with_name("crm"); // a breaker of its own
//! assert_eq!((same.name(), other.name()), ("default", "crm"));
//! ```
//!
//! # Cost
//!
//! One uncontended mutex per delivery (taken when the delivery starts and when it
//! ends); nothing at all for a receiver or worker without a breaker.
//!
//! # Observability
//!
//! Every change of state is logged with the `tracing` feature (`warn` when it opens,
//! `info` when it goes half-open or closes) and, with the `metrics` feature, sets the
//! gauge [`CIRCUIT_BREAKER_STATE`](crate::receiver::metrics::CIRCUIT_BREAKER_STATE)
//! (0 closed, 1 open, 2 half-open) and counts
//! [`CIRCUIT_BREAKER_TRANSITIONS_TOTAL`](crate::receiver::metrics::CIRCUIT_BREAKER_TRANSITIONS_TOTAL),
//! both labelled with the breaker's [name](CircuitBreaker::with_name). A delivery
//! a receiver refuses is reported to its outcome hook as
//! [`Outcome::CircuitOpen`](crate::receiver::Outcome::CircuitOpen).
//! [`CircuitBreaker::state`] tells the state at any time.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use notmeta_webhooks::breaker::{BreakerState, CircuitBreaker};
//! use notmeta_webhooks::clock::ManualClock;
//! use notmeta_webhooks::receiver::{HandlerError, Outcome, Receiver};
//! use notmeta_webhooks::{sign, Event, Verifier};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), notmeta_webhooks::Error> {
//! let clock = ManualClock::new(UNIX_EPOCH);
//! // Open after 2 temporary failures in a row; probe again after 30 s.
//! let breaker = CircuitBreaker::new(2, Duration::from_secs(30)).with_clock(clock.clone());
//! let receiver = Receiver::new(Verifier::new("whsec_abc123")?, |_: Event<'static>| async {
//!     Err(HandlerError::temporary("the CRM is down"))
//! })
//! .with_circuit_breaker(breaker.clone());
//!
//! let send = |id: &str| {
//!     let body = format!(r#"{{"id":"{id}","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{{}}}}"#);
//!     let receiver = receiver.clone();
//!     async move { receiver.receive(body.as_bytes(), [sign(body.as_bytes(), "whsec_abc123").as_bytes()]).await }
//! };
//! assert_eq!(send("evt_1").await.outcome(), Outcome::TemporaryFailure);
//! assert_eq!(send("evt_2").await.outcome(), Outcome::TemporaryFailure);
//! assert!(matches!(breaker.state(), BreakerState::Open { .. }));
//!
//! // Open: answered 503 at once, the handler does not run.
//! let refused = send("evt_3").await;
//! assert_eq!((refused.status(), refused.outcome()), (http::StatusCode::SERVICE_UNAVAILABLE, Outcome::CircuitOpen));
//! assert_eq!(refused.retry_after(), Some(Duration::from_secs(30)));
//!
//! // After the cool-down, one delivery probes; it fails, so the breaker opens again.
//! clock.advance(Duration::from_secs(30));
//! assert_eq!(breaker.state(), BreakerState::HalfOpen);
//! assert_eq!(send("evt_3").await.outcome(), Outcome::TemporaryFailure);
//! assert!(matches!(breaker.state(), BreakerState::Open { .. }));
//! # Ok(())
//! # }
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::clock::{Clock, SystemClock, clamp};

/// A circuit breaker: see the [module docs](self). Clones share one state.
#[derive(Clone)]
pub struct CircuitBreaker {
    inner: Arc<Inner>,
}

struct Inner {
    threshold: u32,
    cool_down: Duration,
    max_cool_down: Duration,
    name: Cow<'static, str>,
    clock: Arc<dyn Clock>,
    machine: Mutex<Machine>,
    /// Woken on every change of state.
    changed: Notify,
}

/// The breaker's state machine.
#[derive(Debug)]
struct Machine {
    phase: Phase,
    /// Consecutive temporary failures while closed.
    failures: u32,
    /// The cool-down of the next (or current) opening.
    cool_down: Duration,
    /// Moves on at every change of state: results of runs started before are
    /// not counted.
    epoch: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// The state of a [`CircuitBreaker`], from [`CircuitBreaker::state`].
///
/// ```
/// use std::time::Duration;
/// use notmeta_webhooks::breaker::{BreakerState, CircuitBreaker};
///
/// let breaker = CircuitBreaker::new(5, Duration::from_secs(30));
/// assert_eq!(breaker.state(), BreakerState::Closed);
/// assert_eq!(breaker.state().as_str(), "closed");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakerState {
    /// Work flows as usual.
    Closed,
    /// No work is started until the cool-down has passed.
    Open {
        /// How long the cool-down still lasts.
        remaining: Duration,
    },
    /// The cool-down has passed: one probe is let through (or runs).
    HalfOpen,
}

impl BreakerState {
    /// A stable lower-case name: `"closed"`, `"open"`, `"half_open"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open { .. } => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.inner.name)
            .field("failure_threshold", &self.inner.threshold)
            .field("cool_down", &self.inner.cool_down)
            .field("max_cool_down", &self.inner.max_cool_down)
            .field("state", &self.state())
            .finish()
    }
}

impl CircuitBreaker {
    /// A closed breaker that opens after `failures` consecutive temporary failures
    /// (at least 1) for `cool_down` (at most [`MAX_DURATION`](crate::clock::MAX_DURATION);
    /// zero probes at once), named `"default"`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use notmeta_webhooks::breaker::CircuitBreaker;
    ///
    /// let breaker = CircuitBreaker::new(0, Duration::from_secs(10));
    /// assert_eq!(breaker.failure_threshold(), 1);
    /// assert_eq!(breaker.cool_down(), Duration::from_secs(10));
    /// ```
    #[must_use]
    pub fn new(failures: u32, cool_down: Duration) -> Self {
        let cool_down = clamp(cool_down);
        Self {
            inner: Arc::new(Inner {
                threshold: failures.max(1),
                cool_down,
                max_cool_down: cool_down,
                name: Cow::Borrowed("default"),
                clock: Arc::new(SystemClock),
                machine: Mutex::new(Machine {
                    phase: Phase::Closed,
                    failures: 0,
                    cool_down,
                    epoch: 0,
                }),
                changed: Notify::new(),
            }),
        }
    }

    /// Doubles the cool-down after each failed probe, up to `max` (at least the
    /// first cool-down; by default it does not grow). It is back to the first once
    /// a probe succeeds.
    ///
    /// ```
    /// use std::time::Duration;
    /// use notmeta_webhooks::breaker::CircuitBreaker;
    ///
    /// let breaker = CircuitBreaker::new(5, Duration::from_secs(10))
    ///     .with_max_cool_down(Duration::from_secs(300));
    /// assert_eq!(breaker.max_cool_down(), Duration::from_secs(300));
    /// ```
    #[must_use]
    pub fn with_max_cool_down(self, max: Duration) -> Self {
        self.rebuild(|inner| inner.max_cool_down = clamp(max).max(inner.cool_down))
    }

    /// The name its log lines and metric labels carry (default `"default"`): one per
    /// downstream, when there are several breakers.
    ///
    /// ```
    /// use std::time::Duration;
    /// use notmeta_webhooks::breaker::CircuitBreaker;
    ///
    /// let breaker = CircuitBreaker::new(5, Duration::from_secs(10)).with_name("crm");
    /// assert_eq!(breaker.name(), "crm");
    /// ```
    #[must_use]
    pub fn with_name(self, name: impl Into<Cow<'static, str>>) -> Self {
        let name = name.into();
        self.rebuild(|inner| inner.name = name)
    }

    /// Uses `clock`'s monotonic time for the cool-down (for tests; the system clock
    /// by default).
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use notmeta_webhooks::breaker::{BreakerState, CircuitBreaker};
    /// use notmeta_webhooks::clock::ManualClock;
    ///
    /// let clock = ManualClock::new(UNIX_EPOCH);
    /// let breaker = CircuitBreaker::new(1, Duration::from_secs(10)).with_clock(clock.clone());
    /// assert_eq!(breaker.state(), BreakerState::Closed);
    /// ```
    #[must_use]
    pub fn with_clock(self, clock: impl Clock) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(clock);
        self.rebuild(|inner| inner.clock = clock)
    }

    /// Applies a setting: to this breaker alone if it is not shared yet, otherwise
    /// to a copy of its settings with a fresh (closed) state.
    fn rebuild(self, set: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| Inner {
            threshold: shared.threshold,
            cool_down: shared.cool_down,
            max_cool_down: shared.max_cool_down,
            name: shared.name.clone(),
            clock: Arc::clone(&shared.clock),
            machine: Mutex::new(Machine {
                phase: Phase::Closed,
                failures: 0,
                cool_down: shared.cool_down,
                epoch: 0,
            }),
            changed: Notify::new(),
        });
        set(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// How many consecutive temporary failures open it.
    #[must_use]
    pub fn failure_threshold(&self) -> u32 {
        self.inner.threshold
    }

    /// The first cool-down.
    #[must_use]
    pub fn cool_down(&self) -> Duration {
        self.inner.cool_down
    }

    /// The longest cool-down after failed probes.
    #[must_use]
    pub fn max_cool_down(&self) -> Duration {
        self.inner.max_cool_down
    }

    /// Its name, for logs and metric labels.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The state now. An open breaker whose cool-down has passed is half-open.
    ///
    /// ```
    /// use std::time::Duration;
    /// use notmeta_webhooks::breaker::{BreakerState, CircuitBreaker};
    ///
    /// let breaker = CircuitBreaker::new(3, Duration::from_secs(60));
    /// assert_eq!(breaker.state(), BreakerState::Closed);
    /// ```
    #[must_use]
    pub fn state(&self) -> BreakerState {
        let mut machine = self.lock();
        self.cool(&mut machine);
        match machine.phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { until } => BreakerState::Open {
                remaining: until.saturating_duration_since(self.now()),
            },
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Machine> {
        // Nothing panics while the lock is held; recover the state regardless.
        self.inner
            .machine
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> Instant {
        self.inner.clock.monotonic()
    }

    /// Open → half-open once the cool-down has passed.
    fn cool(&self, machine: &mut Machine) {
        if let Phase::Open { until } = machine.phase
            && self.now() >= until
        {
            self.enter(machine, Phase::HalfOpen { probing: false });
        }
    }

    /// Moves to `phase`, and tells the world.
    fn enter(&self, machine: &mut Machine, phase: Phase) {
        machine.phase = phase;
        machine.epoch = machine.epoch.wrapping_add(1);
        self.inner.changed.notify_waiters();
        let name = &*self.inner.name;
        let (_name, _cool_down) = (name, machine.cool_down);
        let _value = match phase {
            Phase::Closed => {
                #[cfg(feature = "tracing")]
                tracing::info!(
                    breaker = _name,
                    "circuit breaker closed: the probe succeeded"
                );
                0.0
            }
            Phase::Open { .. } => {
                #[cfg(feature = "tracing")]
                tracing::warn!(
                    breaker = _name,
                    cool_down_ms = u64::try_from(_cool_down.as_millis()).unwrap_or(u64::MAX),
                    "circuit breaker opened: no work starts until the cool-down has passed"
                );
                1.0
            }
            Phase::HalfOpen { .. } => {
                #[cfg(feature = "tracing")]
                tracing::info!(breaker = _name, "circuit breaker half-open: one probe");
                2.0
            }
        };
        #[cfg(feature = "metrics")]
        {
            let to = match phase {
                Phase::Closed => "closed",
                Phase::Open { .. } => "open",
                Phase::HalfOpen { .. } => "half_open",
            };
            ::metrics::gauge!(crate::receiver::metrics::CIRCUIT_BREAKER_STATE, "breaker" => name.to_owned())
                .set(_value);
            ::metrics::counter!(crate::receiver::metrics::CIRCUIT_BREAKER_TRANSITIONS_TOTAL, "breaker" => name.to_owned(), "to" => to)
                .increment(1);
        }
    }

    /// Opens for the current cool-down.
    fn open(&self, machine: &mut Machine) {
        machine.failures = 0;
        let now = self.now();
        // A cool-down beyond what the clock can express: as long as it can.
        let until = now
            .checked_add(machine.cool_down)
            .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 60 * 60)))
            .unwrap_or(now);
        self.enter(machine, Phase::Open { until });
    }

    /// Lets one delivery through, or says how long until it may come back.
    pub(crate) fn try_pass(&self) -> Result<Pass, Duration> {
        let mut machine = self.lock();
        self.cool(&mut machine);
        match machine.phase {
            Phase::Closed => Ok(self.pass(&machine, false)),
            Phase::Open { until } => Err(until.saturating_duration_since(self.now())),
            Phase::HalfOpen { probing: false } => {
                machine.phase = Phase::HalfOpen { probing: true };
                Ok(self.pass(&machine, true))
            }
            // A probe runs: come back once it could have ended.
            Phase::HalfOpen { probing: true } => Err(machine.cool_down),
        }
    }

    #[cfg(feature = "queue")]
    /// What a worker may do now.
    pub(crate) fn admit(&self) -> Admit {
        let mut machine = self.lock();
        self.cool(&mut machine);
        match machine.phase {
            Phase::Closed => Admit::All,
            Phase::Open { until } => Admit::Wait(until.saturating_duration_since(self.now())),
            Phase::HalfOpen { probing: false } => {
                machine.phase = Phase::HalfOpen { probing: true };
                Admit::Probe(self.pass(&machine, true))
            }
            Phase::HalfOpen { probing: true } => Admit::Wait(Duration::MAX),
        }
    }

    #[cfg(feature = "queue")]
    /// A pass for a run starting now, while closed (a worker's run it admitted
    /// before: its result counts only if nothing changed meanwhile).
    pub(crate) fn closed_pass(&self) -> Pass {
        let machine = self.lock();
        self.pass(&machine, false)
    }

    fn pass(&self, machine: &Machine, probe: bool) -> Pass {
        Pass {
            breaker: Some(self.clone()),
            epoch: machine.epoch,
            probe,
        }
    }

    #[cfg(feature = "queue")]
    /// Completes when the state changes (register before looking at it).
    pub(crate) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.inner.changed.notified()
    }

    fn record(&self, pass: &Pass, verdict: Verdict) {
        let mut machine = self.lock();
        let current = machine.epoch == pass.epoch;
        match machine.phase {
            Phase::HalfOpen { probing: true } if pass.probe && current => match verdict {
                Verdict::Success => {
                    machine.cool_down = self.inner.cool_down;
                    machine.failures = 0;
                    self.enter(&mut machine, Phase::Closed);
                }
                Verdict::Failure => {
                    machine.cool_down = machine
                        .cool_down
                        .saturating_mul(2)
                        .min(self.inner.max_cool_down);
                    self.open(&mut machine);
                }
                Verdict::Neutral => {
                    machine.phase = Phase::HalfOpen { probing: false };
                    self.inner.changed.notify_waiters();
                }
            },
            Phase::Closed if current => match verdict {
                Verdict::Success => machine.failures = 0,
                Verdict::Failure => {
                    machine.failures = machine.failures.saturating_add(1);
                    if machine.failures >= self.inner.threshold {
                        self.open(&mut machine);
                    }
                }
                Verdict::Neutral => {}
            },
            _ => {}
        }
    }
}

#[cfg(feature = "queue")]
/// What a worker may start, from [`CircuitBreaker::admit`].
pub(crate) enum Admit {
    /// Anything (closed).
    All,
    /// One entry, the probe, with its pass.
    Probe(Pass),
    /// Nothing for this long (`Duration::MAX`: until the probe's result).
    Wait(Duration),
}

/// How a run that went through the breaker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The handler succeeded.
    Success,
    /// A temporary failure, a panic, a time limit.
    Failure,
    /// Says nothing about the downstream (a permanent failure, the handler not run).
    Neutral,
}

/// One run let through: its result is [recorded](Pass::record); dropped
/// unrecorded, it counts as [`Verdict::Neutral`] (a probe is then given back).
#[derive(Default)]
pub(crate) struct Pass {
    breaker: Option<CircuitBreaker>,
    epoch: u64,
    probe: bool,
}

impl Pass {
    /// Records how the run ended.
    pub(crate) fn record(mut self, verdict: Verdict) {
        if let Some(breaker) = self.breaker.take() {
            breaker.record(&self, verdict);
        }
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if let Some(breaker) = self.breaker.take() {
            breaker.record(self, Verdict::Neutral);
        }
    }
}

impl fmt::Debug for Pass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pass")
            .field("epoch", &self.epoch)
            .field("probe", &self.probe)
            .finish_non_exhaustive()
    }
}

/// A receiver's delivery through `breaker` (none: always through): its pass, or
/// how long until it should come back.
pub(crate) fn enter(breaker: Option<&CircuitBreaker>) -> Result<Pass, Duration> {
    match breaker {
        None => Ok(Pass::default()),
        Some(breaker) => breaker.try_pass(),
    }
}

/// `delivery`, with its outcome recorded in `pass` when it ends.
pub(crate) fn recorded(
    pass: Pass,
    delivery: impl std::future::Future<Output = crate::receiver::Outcome>,
) -> impl std::future::Future<Output = crate::receiver::Outcome> {
    use crate::receiver::Outcome;
    // A combinator rather than an `async fn`, which would hold the delivery twice.
    futures_util::FutureExt::map(delivery, move |outcome| {
        let verdict = match outcome {
            Outcome::Handled => Verdict::Success,
            Outcome::TemporaryFailure | Outcome::Panicked | Outcome::TimedOut => Verdict::Failure,
            _ => Verdict::Neutral,
        };
        pass.record(verdict);
        outcome
    })
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::clock::ManualClock;

    fn breaker(failures: u32, cool_down: u64) -> (CircuitBreaker, ManualClock) {
        let clock = ManualClock::new(UNIX_EPOCH);
        let breaker =
            CircuitBreaker::new(failures, Duration::from_secs(cool_down)).with_clock(clock.clone());
        (breaker, clock)
    }

    fn run(breaker: &CircuitBreaker, verdict: Verdict) {
        breaker.try_pass().expect("let through").record(verdict);
    }

    fn is_open(breaker: &CircuitBreaker) -> bool {
        matches!(breaker.state(), BreakerState::Open { .. })
    }

    #[test]
    fn it_opens_after_the_threshold_of_consecutive_temporary_failures_only() {
        let (breaker, _) = breaker(3, 10);
        run(&breaker, Verdict::Failure);
        run(&breaker, Verdict::Failure);
        // A success resets the count.
        run(&breaker, Verdict::Success);
        run(&breaker, Verdict::Failure);
        run(&breaker, Verdict::Failure);
        assert_eq!(breaker.state(), BreakerState::Closed);
        // Permanent failures neither count nor reset.
        for _ in 0..10 {
            run(&breaker, Verdict::Neutral);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        run(&breaker, Verdict::Failure);
        assert_eq!(
            breaker.state(),
            BreakerState::Open {
                remaining: Duration::from_secs(10)
            }
        );
        assert_eq!(breaker.try_pass().unwrap_err(), Duration::from_secs(10));
        #[cfg(feature = "queue")]
        assert!(matches!(breaker.admit(), Admit::Wait(d) if d == Duration::from_secs(10)));
    }

    #[test]
    fn after_the_cool_down_exactly_one_probe_goes_and_its_success_closes() {
        let (breaker, clock) = breaker(1, 10);
        run(&breaker, Verdict::Failure);
        clock.advance(Duration::from_secs(9));
        assert_eq!(breaker.try_pass().unwrap_err(), Duration::from_secs(1));
        clock.advance(Duration::from_secs(1));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        let probe = breaker.try_pass().expect("the probe");
        assert!(probe.probe);
        // While it runs, nothing else passes, from a receiver or a worker.
        assert!(breaker.try_pass().is_err());
        #[cfg(feature = "queue")]
        assert!(matches!(breaker.admit(), Admit::Wait(Duration::MAX)));
        probe.record(Verdict::Success);
        assert_eq!(breaker.state(), BreakerState::Closed);
        #[cfg(feature = "queue")]
        assert!(matches!(breaker.admit(), Admit::All));
    }

    #[test]
    fn a_failed_probe_reopens_with_a_growing_cool_down_reset_once_closed() {
        let (breaker, clock) = breaker(1, 10);
        let breaker = breaker.with_max_cool_down(Duration::from_secs(25));
        run(&breaker, Verdict::Failure);
        let mut waits = Vec::new();
        for _ in 0..4 {
            let BreakerState::Open { remaining } = breaker.state() else {
                panic!("open");
            };
            waits.push(remaining.as_secs());
            clock.advance(remaining);
            let probe = breaker.try_pass().expect("the probe");
            assert!(probe.probe);
            probe.record(Verdict::Failure);
        }
        assert_eq!(waits, [10, 20, 25, 25]);
        clock.advance(Duration::from_secs(25));
        run(&breaker, Verdict::Success);
        run(&breaker, Verdict::Failure);
        assert_eq!(
            breaker.state(),
            BreakerState::Open {
                remaining: Duration::from_secs(10)
            }
        );
    }

    #[test]
    fn a_probe_that_decides_nothing_is_given_back() {
        let (breaker, clock) = breaker(1, 5);
        run(&breaker, Verdict::Failure);
        clock.advance(Duration::from_secs(5));
        // Dropped unrecorded (the handler never ran), or a permanent failure.
        drop(breaker.try_pass().unwrap());
        breaker.try_pass().unwrap().record(Verdict::Neutral);
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        run(&breaker, Verdict::Success);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn results_of_runs_started_before_a_change_do_not_count() {
        let (breaker, clock) = breaker(2, 5);
        let slow_failure = breaker.try_pass().unwrap();
        let slow_success = breaker.try_pass().unwrap();
        run(&breaker, Verdict::Failure);
        run(&breaker, Verdict::Failure);
        assert!(is_open(&breaker));
        clock.advance(Duration::from_secs(5));
        let probe = breaker.try_pass().unwrap();
        // Started while closed: neither reopens nor closes it.
        slow_failure.record(Verdict::Failure);
        slow_success.record(Verdict::Success);
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        probe.record(Verdict::Success);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn clones_share_one_state_and_settings_make_a_fresh_one() {
        let (breaker, _) = breaker(1, 5);
        let shared = breaker.clone();
        run(&shared, Verdict::Failure);
        assert!(is_open(&breaker));
        let renamed = breaker.clone().with_name("crm");
        assert_eq!(renamed.state(), BreakerState::Closed);
        assert_eq!((renamed.name(), breaker.name()), ("crm", "default"));
    }

    #[test]
    fn extreme_settings_are_clamped() {
        let clock = ManualClock::new(UNIX_EPOCH);
        let breaker = CircuitBreaker::new(0, Duration::MAX).with_clock(clock.clone());
        assert_eq!(breaker.failure_threshold(), 1);
        assert_eq!(breaker.cool_down(), crate::clock::MAX_DURATION);
        run(&breaker, Verdict::Failure);
        assert!(is_open(&breaker));
        // A zero cool-down probes at once.
        let breaker = CircuitBreaker::new(1, Duration::ZERO).with_clock(clock);
        run(&breaker, Verdict::Failure);
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
    }
}
