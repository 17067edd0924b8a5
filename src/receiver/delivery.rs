//! One claimed delivery, run to its end in a task of its own: the handler (under the
//! time limit, panics caught), the claim's lease renewed while it runs, and the
//! outcome recorded in the store (retried a few times if the store fails).
//!
//! The task is spawned, so a client that disconnects (dropping the request future)
//! cannot cancel a handler halfway or leave its claim unsettled. A delivery that ends
//! otherwise before it settles (its task dropped by a runtime shutting down, a panic)
//! settles its claim as it is dropped ([`Unsettled`]): done if the handler had
//! returned with an outcome that is recorded as done, given back if the handler had
//! not run or was stopped, and kept while an isolated handler still runs (that
//! handler's task settles the claim when it ends).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::{Either, select};

use super::keeper::{self, Keeper, Registration};
use super::report::{self, DeliveryReport};
use super::{Claimed, Handler, HandlerError, Outcome, Settings};
use crate::dedup::{ClaimToken, IdempotencyStore, Settled, StoreError};
use crate::event::Event;

/// Recording an outcome is tried at least this many times when the store fails...
const SETTLE_TRIES: u32 = 3;
/// ...and, for stores with leases, for as long as the claim would live anyway (at
/// most this long), pausing between tries from 50 ms, doubling, up to 1 s.
const SETTLE_BUDGET_MAX: Duration = Duration::from_secs(25);

/// What a delivery task needs, detached from the request.
pub(super) struct Task<H, S> {
    pub(super) handler: Arc<H>,
    pub(super) store: Option<Arc<S>>,
    pub(super) hook: Option<report::Hook>,
    pub(super) settings: Settings,
    /// The keeper of the store's leases, for a store with leases.
    pub(super) keeper: Option<Arc<keeper::Slot>>,
}

/// A claim this delivery holds.
pub(super) struct Held {
    pub(super) token: ClaimToken,
    /// How long the id must be remembered once done.
    pub(super) window: Duration,
}

impl Held {
    fn claimed(&self) -> Claimed {
        Claimed {
            token: self.token,
            window: self.window,
        }
    }
}

/// One call of the handler: the event, and the claim it runs under (if any).
pub(crate) struct Call {
    pub(crate) event: Box<Event<'static>>,
    pub(crate) claim: Option<Claimed>,
}

impl Call {
    /// The handler's future for this call (`call` included: a panic in it is
    /// caught with the future's).
    fn on<H: Handler>(self, handler: &H) -> H::Future {
        handler.call_claimed(*self.event, self.claim)
    }
}

impl<H: Handler, S: IdempotencyStore> Task<H, S> {
    /// Runs the handler and settles the claim; returns the outcome.
    // A function returning an `async` block rather than an `async fn`, which would
    // hold each argument twice (as it came, and moved into the body).
    #[expect(
        clippy::manual_async_fn,
        reason = "an `async fn` would store its arguments twice"
    )]
    pub(super) fn run(
        self,
        event: Box<Event<'static>>,
        held: Option<Held>,
        secret_index: usize,
    ) -> impl Future<Output = Outcome> {
        async move {
            // Tokio's clock, so that a paused test clock governs the time limit too.
            let started = tokio::time::Instant::now();
            let id = event.id.clone();
            // Kept for the report once the handler has the event: a known type's name is
            // static, only an unknown one is copied.
            let event_type: std::borrow::Cow<'static, str> = match event.event_type() {
                Some(known) => known.as_str().into(),
                None => event.type_str().to_owned().into(),
            };
            let limit = self.settings.store_timeout;
            let lease = self.store.as_ref().and_then(|s| s.lease());
            // The store's lease keeper renews the claim from a thread of its own, if the
            // store has one: the handler then runs in this task unless isolation was
            // asked for. Without a keeper it is isolated unless asked otherwise.
            let keeper = match (&held, lease, &self.store, &self.keeper) {
                (Some(_), Some(_), Some(store), Some(slot)) => slot.keeper(store, limit),
                _ => None,
            };
            let isolate = self.settings.isolate.unwrap_or(keeper.is_none());
            // An isolated handler can outlive this task: it settles the claim itself if
            // this task is gone by the time it ends (see `Handoff`).
            let handoff = match (&held, lease) {
                (Some(_), Some(_)) if isolate => Some(Arc::new(Handoff::default())),
                _ => None,
            };
            // From here on the claim is settled, however the delivery ends (see
            // `Unsettled`), unless it is settled below.
            let mut unsettled = match (&held, &self.store) {
                (Some(held), Some(store)) => Some(Unsettled {
                    store,
                    id: id.as_str(),
                    token: held.token,
                    window: held.window,
                    limit,
                    left: Left::Running,
                    isolated: handoff.clone(),
                }),
                _ => None,
            };
            let (outcome, error, renewal) = match (&held, lease, &self.store) {
                // Boxed: the renewing path's state is large, and a store without
                // leases (the in-memory one) should not carry it in every delivery.
                (Some(held), Some(lease), Some(store)) => {
                    let claim = ClaimRef {
                        store,
                        id: id.as_str(),
                        held,
                        limit,
                    };
                    let call = Call {
                        event,
                        claim: Some(held.claimed()),
                    };
                    Box::pin(self.run_renewing(call, claim, lease, handoff, keeper)).await
                }
                _ => {
                    let call = Call {
                        event,
                        claim: held.as_ref().map(Held::claimed),
                    };
                    let (outcome, error) = self.run_inline(call, started).await;
                    (outcome, error, Settled::Recorded)
                }
            };
            // The handler has returned (or was stopped): from here on a delivery cut
            // short records what settling would.
            if let Some(claim) = &mut unsettled {
                claim.left = Left::Returned {
                    complete: completes(outcome),
                };
            }
            let handler_time = started.elapsed();
            let mut lease_lost = renewal == Settled::LeaseLost;
            if let (Some(held), Some(claim)) = (&held, &mut unsettled) {
                let settled = settle(&**claim.store, claim.id, held, outcome, limit).await;
                // Settled, or every try failed (then, for a store with leases, the
                // claim lapses): nothing is left to settle.
                claim.left = Left::Settled;
                // One lost lease is reported once, whether renewal or settling found it.
                if settled == Some(Settled::LeaseLost) && !lease_lost {
                    lease_lost = true;
                    report::lease_lost(id.as_str());
                }
            }
            report::delivered(
                self.hook.as_ref(),
                &DeliveryReport {
                    event_id: Some(id.as_str()),
                    event_type: Some(&event_type),
                    outcome,
                    secret_index: Some(secret_index),
                    handler_error: error.as_ref(),
                    handler_time: Some(handler_time),
                    lease_lost,
                },
            );
            outcome
        }
    }

    /// For stores whose claims do not lapse: the handler runs in this task.
    async fn run_inline(
        &self,
        call: Call,
        started: tokio::time::Instant,
    ) -> (Outcome, Option<HandlerError>) {
        let run = pin!(guarded(&*self.handler, call));
        // The time limit runs from the handler's start, its first poll included.
        let limit = self.settings.handler_timeout;
        let limit = started
            .checked_add(limit)
            .map_or(Limit::After(limit), Limit::At);
        match within(limit, run).await {
            None => (Outcome::TimedOut, None),
            Some(Err(_panic)) => (Outcome::Panicked, None),
            Some(Ok(result)) => from_result(result),
        }
    }

    /// For stores with leases: the claim's lease is renewed while the handler runs,
    /// by the store's lease keeper (`keeper`, a thread of its own that blocked
    /// runtime threads cannot stall) or, for a store without one, from this task.
    /// The handler runs in this task, or, isolated (`handoff`), on Tokio's blocking
    /// pool (driven by `Handle::block_on`), where a handler that blocks its thread
    /// cannot stall the runtime's timers and I/O. Past the time limit the handler
    /// is cancelled at its next `.await`; the claim is kept (and renewed) until it
    /// has really stopped. An isolated handler that outlives this task settles the
    /// claim itself when it ends, and its claim stays registered with the keeper
    /// until then.
    async fn run_renewing(
        &self,
        call: Call,
        claim: ClaimRef<'_, S>,
        lease: Duration,
        handoff: Option<Arc<Handoff>>,
        keeper: Option<&Keeper>,
    ) -> (Outcome, Option<HandlerError>, Settled) {
        let lost = AtomicBool::new(false);
        let (store, id, token) = (&**claim.store, claim.id, &claim.held.token);
        let mut registration = keeper.map(|keeper| keeper.register(id, *token));
        let watch = registration.as_ref().map(Registration::watch);
        let renewing = match &registration {
            Some(_) => Either::Left(std::future::pending()),
            None => {
                let every = (lease / 3).max(Duration::from_millis(10));
                Either::Right(renew(store, id, token, every, claim.limit, &lost))
            }
        };
        let deadline = tokio::time::sleep(self.settings.handler_timeout);
        let ran = match handoff {
            Some(handoff) => {
                let orphan = Orphan {
                    handoff,
                    store: Arc::clone(claim.store),
                    id: id.to_owned(),
                    token: *token,
                    window: claim.held.window,
                    limit: claim.limit,
                    registration: registration.take(),
                };
                let ended = move |complete| orphan.ended(complete);
                run_beside_with(
                    &self.handler,
                    call,
                    true,
                    pin!(renewing),
                    pin!(deadline),
                    ended,
                )
                .await
            }
            None => run_beside(&self.handler, call, false, pin!(renewing), pin!(deadline)).await,
        };
        // Deregistered before the claim is settled.
        drop(registration);
        let (outcome, error) = match ran {
            Ran::Finished(result) => from_result(result),
            Ran::Stopped => (Outcome::TimedOut, None),
            // A runtime shutting down cancels the task: answered like a panic.
            Ran::Panicked | Ran::Cancelled => (Outcome::Panicked, None),
        };
        let renewal = if lost.load(Ordering::Relaxed) || watch.is_some_and(|w| w.lost()) {
            Settled::LeaseLost
        } else {
            Settled::Recorded
        };
        (outcome, error, renewal)
    }
}

/// The claim a renewing delivery holds, with what it needs to settle it.
struct ClaimRef<'a, S> {
    store: &'a Arc<S>,
    id: &'a str,
    held: &'a Held,
    limit: Duration,
}

/// Whether settling records `outcome` as done (rather than giving the claim back).
fn completes(outcome: Outcome) -> bool {
    matches!(outcome, Outcome::Handled | Outcome::PermanentFailure)
}

/// Between a delivery and its isolated handler, which can outlive it (a blocking
/// handler cannot be stopped): whichever of the two ends last settles the claim.
pub(crate) struct Handoff(AtomicU8);

impl Default for Handoff {
    fn default() -> Self {
        Self(AtomicU8::new(Self::RUNNING))
    }
}

impl Handoff {
    /// Neither has ended.
    const RUNNING: u8 = 0;
    /// The delivery was dropped first: the handler's task settles the claim.
    const ORPHANED: u8 = 1;
    /// The handler ended first with an outcome recorded as done...
    const ENDED_DONE: u8 = 2;
    /// ...or with one after which the claim is given back.
    const ENDED_RETRY: u8 = 3;
}

/// What an isolated handler's task needs to settle its claim when its delivery is
/// gone.
struct Orphan<S> {
    handoff: Arc<Handoff>,
    store: Arc<S>,
    id: String,
    token: ClaimToken,
    window: Duration,
    limit: Duration,
    /// The claim's registration with the lease keeper, if the store has one: it is
    /// renewed until the handler ends, even if the delivery is gone.
    registration: Option<Registration>,
}

impl<S: IdempotencyStore> Orphan<S> {
    /// The handler ended (`complete`: with an outcome recorded as done); settles the
    /// claim if the delivery is gone.
    fn ended(mut self, complete: bool) {
        // Deregistered before the claim is settled (by either).
        drop(self.registration.take());
        let ended = if complete {
            Handoff::ENDED_DONE
        } else {
            Handoff::ENDED_RETRY
        };
        if self.handoff.0.swap(ended, Ordering::AcqRel) == Handoff::ORPHANED {
            let done = complete.then_some(self.window);
            settle_dropped(&self.store, &self.id, self.token, self.limit, done);
        }
    }
}

/// A claim its delivery has not settled yet, settled as it is dropped, so that a
/// delivery ended by anything but its own settling (its task dropped by a runtime
/// shutting down, a panic, its future dropped) neither keeps the event "in progress"
/// for ever nor lets a retry run a handler again:
///
/// - before the handler returned, the claim is given back, unless an isolated
///   handler may still be running (a blocking handler cannot be stopped): then it is
///   kept, and that handler's task settles it when it ends ([`Handoff`]);
/// - once the handler returned, what settling would record is recorded: done after
///   success or a permanent failure, given back otherwise.
///
/// It borrows what the delivery holds anyway: no allocation unless it has to settle.
struct Unsettled<'a, S: IdempotencyStore> {
    store: &'a Arc<S>,
    id: &'a str,
    token: ClaimToken,
    window: Duration,
    limit: Duration,
    left: Left,
    /// Shared with the handler's task when it is isolated.
    isolated: Option<Arc<Handoff>>,
}

/// How far a delivery got.
enum Left {
    /// The handler has not returned.
    Running,
    /// The handler returned; `complete`: its outcome is recorded as done.
    Returned { complete: bool },
    /// Settled (or every try failed).
    Settled,
}

impl<S: IdempotencyStore> Drop for Unsettled<'_, S> {
    fn drop(&mut self) {
        let complete = match self.left {
            Left::Settled => return,
            Left::Returned { complete } => complete,
            Left::Running => match &self.isolated {
                None => false,
                Some(handoff) => match handoff.0.swap(Handoff::ORPHANED, Ordering::AcqRel) {
                    Handoff::ENDED_DONE => true,
                    Handoff::ENDED_RETRY => false,
                    // Still running (or never started, cancelled with its runtime):
                    // the claim is kept; the handler's task settles it when it ends,
                    // or the lease, no longer renewed, runs out.
                    _ => return,
                },
            },
        };
        let done = complete.then_some(self.window);
        settle_dropped(self.store, self.id, self.token, self.limit, done);
    }
}

/// Settles a claim from a drop, without blocking: records it done for `done`'s
/// window, or (`None`) gives it back. At once if the store answers at its first
/// poll (the in-memory store); otherwise in a task on the current runtime, within
/// `limit`, if there is a runtime that still takes tasks. Without a runtime, a store
/// with a lease is not called (its calls need the runtime's I/O): the claim, no
/// longer renewed, lapses one lease later, as a crashed process's claim does. A
/// store without a lease is polled once, as that is the only chance its claim has;
/// if it is pending, the claim stays until the process ends.
fn settle_dropped<S: IdempotencyStore>(
    store: &Arc<S>,
    id: &str,
    token: ClaimToken,
    limit: Duration,
    done: Option<Duration>,
) {
    let runtime = tokio::runtime::Handle::try_current().ok();
    if runtime.is_none() && store.lease().is_some() {
        return;
    }
    let operation = if done.is_some() {
        "complete"
    } else {
        "release"
    };
    let (store, id) = (Arc::clone(store), id.to_owned());
    let mut settle = Box::pin(async move {
        match done {
            Some(window) => store.complete(&id, &token, window).await.map(drop),
            None => store.release(&id, &token).await,
        }
    });
    // A store's call is not expected to panic; if it does, a drop must not.
    let first = std::panic::catch_unwind(AssertUnwindSafe(|| settle.as_mut().now_or_never()));
    let failed = move |error: &StoreError| {
        report::store_failed(operation, error);
    };
    match first {
        Ok(Some(Ok(()))) | Err(_) => {}
        Ok(Some(Err(error))) => failed(&error),
        Ok(None) => {
            if let Some(runtime) = runtime {
                runtime.spawn(async move {
                    if let Err(error) = bounded(limit, settle.as_mut()).await {
                        failed(&error);
                    }
                });
            }
        }
    }
}

/// How a handler's run ended.
pub(crate) enum Ran {
    /// It returned.
    Finished(Result<(), HandlerError>),
    /// It was stopped at its deadline.
    Stopped,
    /// It panicked (the payload is the handler's, and is not kept).
    Panicked,
    /// The runtime cancelled its task (shutting down).
    Cancelled,
}

/// Runs `handler` on `event` while `beside` (the renewal of its claim, which never
/// ends) is polled, until the handler ends or `deadline` passes.
///
/// Isolated, the handler runs on Tokio's blocking pool ([`spawn_isolated`]); past
/// the deadline it is cancelled at its next `.await`, and `beside` goes on until it
/// has really stopped. Not isolated, it runs in this task, and past the deadline its
/// future is dropped. Dropping this future stops the handler either way.
///
/// `beside` and `deadline` are pinned where they live (`pin!` at the call): this
/// future holds references to them rather than copies.
pub(crate) fn run_beside<'a, H: Handler, B, D>(
    handler: &'a Arc<H>,
    call: Call,
    isolate: bool,
    beside: Pin<&'a mut B>,
    deadline: Pin<&'a mut D>,
) -> impl Future<Output = Ran> + 'a
where
    B: Future<Output = ()>,
    D: Future<Output = ()>,
{
    run_beside_with(handler, call, isolate, beside, deadline, |_| {})
}

/// [`run_beside`], with `ended` called by an isolated handler's task when the
/// handler ends, whether or not this future is still there to see it (`true`: it
/// returned with an outcome recorded as done).
async fn run_beside_with<H: Handler, B, D>(
    handler: &Arc<H>,
    call: Call,
    isolate: bool,
    mut beside: Pin<&mut B>,
    deadline: Pin<&mut D>,
    ended: impl FnOnce(bool) + Send + 'static,
) -> Ran
where
    B: Future<Output = ()>,
    D: Future<Output = ()>,
{
    if !isolate {
        return match select(pin!(guarded(&**handler, call)), select(beside, deadline)).await {
            Either::Left((Ok(result), _)) => Ran::Finished(result),
            Either::Left((Err(_panic), _)) => Ran::Panicked,
            Either::Right(_) => Ran::Stopped,
        };
    }
    let (mut handle, cancel) = spawn_isolated(Arc::clone(handler), call, ended);
    let joined = match select(&mut handle, select(beside.as_mut(), deadline)).await {
        Either::Left((joined, _)) => joined,
        Either::Right(_) => {
            drop(cancel);
            match select(&mut handle, beside).await {
                Either::Left((joined, _)) => joined,
                Either::Right(((), _)) => (&mut handle).await,
            }
        }
    };
    match joined {
        Ok(Some(result)) => Ran::Finished(result),
        Ok(None) => Ran::Stopped,
        Err(error) if error.is_panic() => Ran::Panicked,
        Err(_) => Ran::Cancelled,
    }
}

/// The handler's future with its panics caught, `call` included: a handler that
/// panics before it returns its future is caught too.
fn guarded<'h, H: Handler>(
    handler: &'h H,
    call: Call,
) -> impl Future<Output = std::thread::Result<Result<(), HandlerError>>> + 'h {
    AssertUnwindSafe(async move { call.on(handler).await }).catch_unwind()
}

/// Cancels an isolated handler when dropped (at the handler's next `.await`).
#[derive(Debug)]
pub(crate) struct Cancel(#[allow(dead_code)] tokio::sync::oneshot::Sender<()>);

/// Runs `handler` on `event` on Tokio's blocking pool, driven by `Handle::block_on`,
/// so that a handler that blocks its thread cannot stall the runtime's timers and
/// I/O (and so the renewal of its claim). The task's result is `None` if it was
/// cancelled by dropping the [`Cancel`]; a panic is the `JoinError`.
pub(crate) fn spawn_isolated<H: Handler>(
    handler: Arc<H>,
    call: Call,
    ended: impl FnOnce(bool) + Send + 'static,
) -> (
    tokio::task::JoinHandle<Option<Result<(), HandlerError>>>,
    Cancel,
) {
    let (cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::runtime::Handle::current();
    // The handler runs in the caller's span on the blocking pool's thread too.
    #[cfg(feature = "tracing")]
    let span = tracing::Span::current();
    let handle = tokio::task::spawn_blocking(move || {
        let ran = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let run = async move {
                match select(pin!(call.on(&*handler)), cancelled).await {
                    Either::Left((result, _)) => Some(result),
                    Either::Right(_) => None,
                }
            };
            #[cfg(feature = "tracing")]
            let run = tracing::Instrument::instrument(run, span);
            runtime.block_on(run)
        }));
        let complete = match &ran {
            Ok(Some(Ok(()))) => true,
            Ok(Some(Err(error))) => completes(error.outcome()),
            Ok(None) | Err(_) => false,
        };
        ended(complete);
        ran.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    });
    (handle, Cancel(cancel))
}

fn from_result(result: Result<(), HandlerError>) -> (Outcome, Option<HandlerError>) {
    match result {
        Ok(()) => (Outcome::Handled, None),
        Err(error) => (error.outcome(), Some(error)),
    }
}

/// Renews the claim every `every`, for as long as it is polled; records a lost lease
/// in `lost` (and stops renewing). Never finishes.
async fn renew<S: IdempotencyStore>(
    store: &S,
    id: &str,
    token: &ClaimToken,
    every: Duration,
    limit: Duration,
    lost: &AtomicBool,
) {
    loop {
        tokio::time::sleep(every).await;
        if lost.load(Ordering::Relaxed) {
            continue;
        }
        match bounded(limit, pin!(store.renew(id, token))).await {
            Ok(Settled::Recorded) => report::lease_renewed(),
            Ok(_lost) => {
                lost.store(true, Ordering::Relaxed);
                report::lease_lost(id);
            }
            Err(error) => report::store_failed("renew", &error),
        }
    }
}

/// Records the outcome: done after success or a permanent failure, released after
/// anything NotMeta will retry.
///
/// A failing store is tried again: at least [`SETTLE_TRIES`] times and, for a store
/// with leases, until the claim's lease would have run out (the claim still keeps
/// duplicates away meanwhile). `None` if every try failed (counted and logged: a
/// completion lost this way lets a later duplicate run the handler again once the
/// claim lapses).
#[expect(
    clippy::manual_async_fn,
    reason = "an `async fn` would store its arguments twice"
)]
fn settle<'a, S: IdempotencyStore>(
    store: &'a S,
    id: &'a str,
    held: &'a Held,
    outcome: Outcome,
    limit: Duration,
) -> impl Future<Output = Option<Settled>> + 'a {
    async move {
        let complete = completes(outcome);
        let operation = if complete { "complete" } else { "release" };
        // Only a store with leases has a time budget (and a clock read here).
        let lease = store.lease();
        let budget = lease.unwrap_or(Duration::ZERO).min(SETTLE_BUDGET_MAX);
        let started = lease.map(|_| tokio::time::Instant::now());
        let settled = retrying(
            || async {
                if complete {
                    bounded(limit, pin!(store.complete(id, &held.token, held.window))).await
                } else {
                    bounded(limit, pin!(store.release(id, &held.token)))
                        .await
                        .map(|()| Settled::Recorded)
                }
            },
            |error| report::store_failed(operation, error),
            |tries, pause| {
                let spent = started.map_or(Duration::ZERO, |t| t.elapsed());
                tries >= SETTLE_TRIES && spent + pause > budget
            },
        )
        .await;
        if settled.is_none() {
            report::settle_failed(id, operation);
        }
        settled
    }
}

/// Tries `attempt` until it succeeds, pausing between tries from 50 ms, doubling,
/// up to 1 s; each error goes to `failed`, and `give_up(tries, next_pause)` ends
/// the tries (`None`). The one retry loop that settling a delivery (here) and a
/// queue entry share.
#[expect(
    clippy::manual_async_fn,
    reason = "an `async fn` would store its arguments twice"
)]
pub(crate) fn retrying<T, E, F, Fut>(
    mut attempt: F,
    mut failed: impl FnMut(&E),
    give_up: impl Fn(u32, Duration) -> bool,
) -> impl Future<Output = Option<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    async move {
        let mut pause = Duration::from_millis(50);
        for tries in 1.. {
            match attempt().await {
                Ok(value) => return Some(value),
                Err(error) => {
                    failed(&error);
                    if give_up(tries, pause) {
                        break;
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
        None
    }
}

/// Runs `future` with the store time limit; a time-out is a store error. Like
/// [`within`], it takes the future pinned where it lives (`pin!` at the call), and
/// holds a reference to it rather than a copy.
pub(super) fn bounded<T, F>(
    limit: Duration,
    future: Pin<&mut F>,
) -> impl Future<Output = Result<T, StoreError>>
where
    F: Future<Output = Result<T, StoreError>>,
{
    within(limit, future).map(|within| match within {
        Some(result) => result,
        None => Err(StoreError::new(
            "the idempotency store did not answer in time",
        )),
    })
}

/// `future`'s output, or `None` if it is not done by `limit`: a duration, counted
/// from when the future turns out not to be ready at once, or a deadline. A future
/// that is ready at its first poll (an in-memory store, a body that has arrived, a
/// handler that never waits) is answered without arming a timer, and with a
/// duration, without reading the clock.
///
/// The caller pins the future where it lives (`pin!` in its own frame), so that this
/// future holds a reference to it rather than a second copy: a handler's future and
/// its event would otherwise be stored twice. (Not an `async fn`, which would store
/// its arguments twice too.)
pub(crate) fn within<F: Future>(
    limit: impl Into<Limit>,
    mut future: Pin<&mut F>,
) -> impl Future<Output = Option<F::Output>> {
    let limit = limit.into();
    async move {
        if let Some(output) = future.as_mut().now_or_never() {
            return Some(output);
        }
        let deadline = match limit {
            Limit::After(duration) => tokio::time::Instant::now().checked_add(duration),
            Limit::At(deadline) => Some(deadline),
        };
        match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, future).await.ok(),
            // Beyond what the clock can express: no limit.
            None => Some(future.await),
        }
    }
}

/// The time limit of [`within`].
pub(crate) enum Limit {
    After(Duration),
    At(tokio::time::Instant),
}

impl From<Duration> for Limit {
    fn from(duration: Duration) -> Self {
        Self::After(duration)
    }
}

impl From<tokio::time::Instant> for Limit {
    fn from(deadline: tokio::time::Instant) -> Self {
        Self::At(deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedup::MemoryStore;

    /// The size of what `f` returns, without calling it.
    fn returned<A, R>(_: impl FnOnce(A) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    type NoOp = fn(Event<'static>) -> std::future::Ready<Result<(), HandlerError>>;

    /// The size of a delivery's future past its claim, as `Receiver::dispatch` boxes it.
    fn delivery<S: IdempotencyStore>() -> usize {
        returned(
            |(task, event, held): (Task<NoOp, S>, Box<Event<'static>>, Option<Held>)| {
                crate::breaker::recorded(crate::breaker::Pass::default(), task.run(event, held, 0))
            },
        )
    }

    /// Every byte of a delivery's future is allocated and copied once per delivery
    /// (it is boxed), and a future that takes another by value and then pins or
    /// awaits it holds it twice, as an `async fn` holds its arguments twice: with
    /// nested helpers, a store's future was held many times over (a `RedisStore`
    /// delivery's future was 28 KiB, its renewing half 13 KiB more). The helpers take
    /// futures pinned where they live, and return `async` blocks. With the in-memory
    /// store the box stays within glibc's per-thread cache (requests up to 1,032
    /// bytes), which serves it without a lock.
    #[test]
    fn a_delivery_future_holds_each_part_once() {
        let memory = delivery::<MemoryStore>();
        assert!(memory <= 1024, "{memory} bytes with MemoryStore");
        println!("MemoryStore: {memory} bytes");
        #[cfg(feature = "redis")]
        {
            type Redis = crate::dedup::RedisStore;
            let redis = delivery::<Redis>();
            assert!(redis <= 2 * 1024, "{redis} bytes with RedisStore");
            // Its renewing half, boxed apart (the handler, and its claim's renewal
            // when the store has no keeper).
            type Renewing = (
                &'static Task<NoOp, Redis>,
                Call,
                ClaimRef<'static, Redis>,
                Option<Arc<Handoff>>,
                Option<&'static Keeper>,
            );
            let renewing = returned(|(task, call, claim, handoff, keeper): Renewing| {
                task.run_renewing(call, claim, Duration::ZERO, handoff, keeper)
            });
            assert!(renewing <= 2 * 1024, "{renewing} bytes renewing");
            println!("RedisStore: {redis} bytes, its renewing half {renewing} bytes");
        }
    }
}
