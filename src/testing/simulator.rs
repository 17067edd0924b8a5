//! NotMeta's delivery behaviour, played against a receiver.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{Reply, SignedRequest, Target, TargetError};
use crate::clock::ManualClock;
use crate::event::Event;

/// NotMeta's waits before each retry: 1 min, 5 min, 15 min and 1 h (5 attempts in
/// all, the last about 81 minutes after the first).
pub const RETRY_SCHEDULE: [Duration; 4] = [
    Duration::from_secs(60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(15 * 60),
    Duration::from_secs(60 * 60),
];

/// How long NotMeta waits for an answer: 30 s (in compressed time, divided by the
/// factor like the waits).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// How the simulator lets time pass between attempts.
#[derive(Debug, Clone)]
enum Time {
    /// Attempts follow each other at once.
    Immediate,
    /// A manual clock is advanced by each wait.
    Manual(ManualClock),
    /// Real sleeps, the waits divided by the factor.
    Compressed(u32),
}

/// Plays NotMeta: delivers signed events to a receiver on NotMeta's retry schedule,
/// each delivery stopping at its first 2xx (delivered) or 4xx (refused for good), and
/// reports every attempt and its answer.
///
/// Time passes in one of three ways: not at all (the default: the attempts follow
/// each other at once), on a [`ManualClock`] given to the receiver too
/// ([`with_clock`](Self::with_clock): advanced by each wait, so a maximum event age
/// and the dedup window see NotMeta's real schedule), or in compressed real time
/// ([`compressed`](Self::compressed)). Each wait counts from the end of the attempt
/// before it, as NotMeta's do, so an attempt's [`at`](Attempt::at) is the waits
/// before it plus the time the attempts before it took.
///
/// Its `Debug` does not show the secret.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
/// use std::time::{Duration, UNIX_EPOCH};
/// use notmeta_webhooks::clock::{Clock, ManualClock};
/// use notmeta_webhooks::receiver::{HandlerError, Receiver};
/// use notmeta_webhooks::testing::{sample, Simulator, Target};
/// use notmeta_webhooks::tower::WebhookService;
/// use notmeta_webhooks::{Event, EventType, Verifier};
///
/// let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_704_110_400));
/// let calls = Arc::new(AtomicU32::new(0));
/// let counter = Arc::clone(&calls);
/// let receiver = Receiver::new(Verifier::new("whsec_abc123")?, move |_: Event<'static>| {
///     let n = counter.fetch_add(1, Ordering::SeqCst);
///     async move {
///         // The downstream service is down for the first two attempts.
///         if n < 2 { Err(HandlerError::temporary("downstream down")) } else { Ok(()) }
///     }
/// })
/// .with_clock(clock.clone())
/// .with_max_event_age(Duration::from_secs(90 * 60));
///
/// let event = sample(EventType::MessageReceived).created_at(clock.now());
/// let report = Simulator::new("whsec_abc123")
///     .with_clock(clock.clone())
///     .with_duplicates(1)
///     .deliver(&Target::service(WebhookService::new(receiver)), event.body())
///     .await;
/// println!("{report}");
/// assert_eq!(report.statuses(event.event_id()), [Some(503), Some(503), Some(200), Some(200)]);
/// assert!(report.all_delivered());
/// assert_eq!(calls.load(Ordering::SeqCst), 3); // the duplicate did not run the handler
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Simulator {
    secret: String,
    schedule: Vec<Duration>,
    time: Time,
    duplicates: u32,
    concurrent: u32,
    timeout: Duration,
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator")
            .field("secret", &"<redacted>")
            .field("schedule", &self.schedule)
            .field("time", &self.time)
            .field("duplicates", &self.duplicates)
            .field("concurrent", &self.concurrent)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Simulator {
    /// A simulator signing with `secret`, on NotMeta's [`RETRY_SCHEDULE`], with no
    /// duplicates, attempts following each other at once, and a 30 s
    /// [`ANSWER_TIMEOUT`].
    #[must_use]
    pub fn new(secret: &str) -> Self {
        Self {
            secret: secret.to_owned(),
            schedule: RETRY_SCHEDULE.to_vec(),
            time: Time::Immediate,
            duplicates: 0,
            concurrent: 0,
            timeout: ANSWER_TIMEOUT,
        }
    }

    /// Advances `clock` by each wait of the schedule (give the receiver the same
    /// clock with `Receiver::with_clock`).
    #[must_use]
    pub fn with_clock(mut self, clock: ManualClock) -> Self {
        self.time = Time::Manual(clock);
        self
    }

    /// Really waits between attempts, each wait divided by `factor` (`60`: a minute
    /// lasts a second, the whole schedule 81 s; `0` is taken as 1). The answer time
    /// limit is divided by `factor` too (NotMeta's 30 s are half a second at 60), and
    /// the time an answer takes counts `factor` times in [`Attempt::at`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use notmeta_webhooks::testing::Simulator;
    ///
    /// // A minute lasts 100 ms; a receiver has 30 s / 600 = 50 ms to answer,
    /// // unless the limit is raised: 10 min of NotMeta's time, 1 s here.
    /// let simulator = Simulator::new("whsec_abc123")
    ///     .compressed(600)
    ///     .with_timeout(Duration::from_secs(600));
    /// # let _ = simulator;
    /// ```
    #[must_use]
    pub fn compressed(mut self, factor: u32) -> Self {
        self.time = Time::Compressed(factor.max(1));
        self
    }

    /// The waits before each retry (default [`RETRY_SCHEDULE`]); an empty schedule
    /// makes one attempt.
    #[must_use]
    pub fn with_schedule(mut self, waits: impl IntoIterator<Item = Duration>) -> Self {
        self.schedule = waits.into_iter().collect();
        self
    }

    /// After an event is first answered 2xx, delivers it `n` more times, one per
    /// later slot of the schedule (one minute apart once the schedule is over), as an
    /// at-least-once sender may. Each duplicate is retried on its own, on NotMeta's
    /// schedule from its beginning (1 min, 5 min, 15 min, 1 h after each failure).
    ///
    /// Duplicates are started one at a time, each when the one before it starts, so
    /// a huge `n` holds no more in memory than a few: it takes `n` minutes of
    /// NotMeta's time (beyond the schedule), and the [`Report`] keeps every attempt.
    #[must_use]
    pub fn with_duplicates(mut self, n: u32) -> Self {
        self.duplicates = n;
        self
    }

    /// Sends every delivery (the first one and each duplicate) `n` more times at the
    /// same moment (to the next targets, when there are several: two replicas
    /// receiving the same event at once). Each copy is retried on its own schedule.
    ///
    /// The copies are in flight together: `n` of them are `n` tasks and `n`
    /// connections at once, so keep `n` small (the command-line tool allows 64).
    #[must_use]
    pub fn with_concurrent_duplicates(mut self, n: u32) -> Self {
        self.concurrent = n;
        self
    }

    /// How long to wait for each answer, in NotMeta's time (default 30 s, NotMeta's;
    /// divided by the factor in [`compressed`](Self::compressed) time); no answer in
    /// time is a failure, and retried.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Delivers one event (its body, signed here) to `target`.
    pub async fn deliver(&self, target: &Target, body: impl Into<Bytes>) -> Report {
        self.deliver_all(std::slice::from_ref(target), [body]).await
    }

    /// Delivers several events together, as NotMeta does when they are in flight at
    /// once.
    ///
    /// Every delivery is on its own: the first delivery of each event, each
    /// concurrent copy of it ([`with_concurrent_duplicates`](Self::with_concurrent_duplicates)),
    /// and each duplicate ([`with_duplicates`](Self::with_duplicates)) with its own
    /// concurrent copies. Each one follows NotMeta's retry schedule, from its
    /// beginning whenever it starts, until it is
    /// answered 2xx or 4xx or the schedule ends, whatever the others were answered;
    /// every attempt is in the [`Report`]. Each wait counts from the end of the
    /// attempt before it, as NotMeta's do. In compressed time each delivery waits on
    /// its own; on a manual clock, or with no waits, time moves on to the next
    /// attempt due once every delivery is waiting, so attempts due at different
    /// moments are sent one after another and those due at the same moment together.
    ///
    /// Attempt `k` of a delivery that starts in slot `s` of the schedule goes to
    /// `targets[(i + s + k - 1 + c) % targets.len()]`, for event `i` and copy `c`
    /// (0 for the delivery itself): with two targets (two replicas) retries,
    /// duplicates and concurrent copies change replica.
    ///
    /// # Panics
    ///
    /// If `targets` is empty, or if called outside a Tokio runtime.
    pub async fn deliver_all<B: Into<Bytes>>(
        &self,
        targets: &[Target],
        bodies: impl IntoIterator<Item = B>,
    ) -> Report {
        assert!(!targets.is_empty(), "Simulator::deliver_all needs a target");
        let run = Arc::new(Run::new(self, targets, bodies));
        // Time stands still until every first delivery is started: one answered
        // before the others start must not let the clock run ahead of them.
        let starting = Running::enter(&run.timeline);
        for event in 0..run.events.len() {
            run.start(Delivery::first(event));
        }
        drop(starting);
        run.finish().await;
        run.report()
    }

    /// The wait after an attempt in `slot` of the schedule: the schedule's, then a
    /// minute once it is over (for duplicates).
    fn wait_after(&self, slot: usize) -> Duration {
        self.schedule
            .get(slot)
            .copied()
            .unwrap_or(Duration::from_secs(60))
    }
}

/// A simulation under way, shared by the tasks of its deliveries.
struct Run {
    simulator: Simulator,
    targets: Vec<Target>,
    events: Vec<Tracked>,
    timeline: Arc<Timeline>,
    attempts: Mutex<Vec<Recorded>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// An event being delivered.
struct Tracked {
    id: String,
    signed: SignedRequest,
    /// Whether one of its deliveries was answered 2xx (its duplicates are started).
    delivered: AtomicBool,
}

/// One delivery of an event, on its own retry schedule.
#[derive(Debug, Clone, Copy)]
struct Delivery {
    event: usize,
    kind: Kind,
    /// 0 for the delivery itself, then its concurrent copies.
    copy: u32,
    /// The slot of the schedule its first attempt is in.
    first_slot: usize,
    /// When its first attempt is sent, in NotMeta's time.
    start: Duration,
    /// Duplicates still to start after this one (the next one starts when this one
    /// does).
    then: u32,
}

impl Delivery {
    /// The first delivery of `event`, at the start.
    fn first(event: usize) -> Self {
        Self {
            event,
            kind: Kind::Attempt,
            copy: 0,
            first_slot: 0,
            start: Duration::ZERO,
            then: 0,
        }
    }

    /// A duplicate of `event` starting at `start`, in slot `first_slot`, with `then`
    /// more duplicates after it.
    fn duplicate(event: usize, first_slot: usize, start: Duration, then: u32) -> Self {
        Self {
            event,
            kind: Kind::Duplicate,
            copy: 0,
            first_slot,
            start,
            then,
        }
    }

    /// Its concurrent copy number `copy` (0: itself), which starts no duplicates.
    fn copy(self, copy: u32) -> Self {
        if copy == 0 {
            return self;
        }
        Self {
            kind: Kind::Concurrent,
            copy,
            then: 0,
            ..self
        }
    }

    /// The slot of the schedule its attempt `number` is in.
    fn slot(&self, number: u32) -> usize {
        self.first_slot + number as usize - 1
    }
}

/// An attempt and the delivery it belongs to.
struct Recorded {
    delivery: Delivery,
    attempt: Attempt,
}

impl Run {
    fn new<B: Into<Bytes>>(
        simulator: &Simulator,
        targets: &[Target],
        bodies: impl IntoIterator<Item = B>,
    ) -> Self {
        let events = bodies
            .into_iter()
            .map(|body| {
                let signed = SignedRequest::new(body, &simulator.secret);
                let id = Event::parse_unverified(&signed.body)
                    .map_or_else(|_| "?".to_owned(), |e| e.id.as_str().to_owned());
                Tracked {
                    id,
                    signed,
                    delivered: AtomicBool::new(false),
                }
            })
            .collect();
        Self {
            simulator: simulator.clone(),
            targets: targets.to_vec(),
            events,
            timeline: Arc::new(Timeline::new(&simulator.time)),
            attempts: Mutex::new(Vec::new()),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// Starts `delivery` and its concurrent copies, each in a task of its own; its
    /// `then` duplicates follow it, one at a time.
    fn start(self: &Arc<Self>, delivery: Delivery) {
        for copy in 0..=self.simulator.concurrent {
            let delivery = delivery.copy(copy);
            let running = Running::enter(&self.timeline);
            let run = Arc::clone(self);
            let task = tokio::spawn(async move {
                let _running = running;
                run.deliver(delivery).await;
            });
            lock(&self.tasks).push(task);
        }
    }

    /// One delivery through the schedule: until a 2xx or a 4xx, or the last attempt.
    /// Its waits are the schedule's from its beginning, whatever slot it started in.
    async fn deliver(self: Arc<Self>, delivery: Delivery) {
        let mut at = delivery.start;
        for number in 1..=self.simulator.schedule.len() as u32 + 1 {
            self.timeline.until(at).await;
            if number == 1 && delivery.then > 0 {
                // The next duplicate is due one slot later; it is started now, while
                // this one runs, so that time cannot pass it by.
                self.start(Delivery::duplicate(
                    delivery.event,
                    delivery.first_slot + 1,
                    delivery.start + self.simulator.wait_after(delivery.first_slot),
                    delivery.then - 1,
                ));
            }
            let attempt = self.send(delivery, number, at).await;
            // NotMeta's next wait counts from the end of this attempt.
            at += self.timeline.notmeta(attempt.took);
            let status = attempt.answer.status().map(|s| s.as_u16());
            lock(&self.attempts).push(Recorded { delivery, attempt });
            match status {
                Some(200..=299) => return self.delivered(delivery, number, at),
                Some(400..=499) => return,
                _ => {}
            }
            at += self.simulator.wait_after(number as usize - 1);
        }
    }

    /// Sends attempt `number` of `delivery` and waits for its answer, within the
    /// answer time limit.
    async fn send(&self, delivery: Delivery, number: u32, at: Duration) -> Attempt {
        let slot = delivery.slot(number);
        let target = (delivery.event + slot + delivery.copy as usize) % self.targets.len();
        let event = &self.events[delivery.event];
        let request = event.signed.request();
        let limit = self.timeline.real(self.simulator.timeout);
        let started = Instant::now();
        let answer = match tokio::time::timeout(limit, self.targets[target].send(request)).await {
            Ok(Ok(reply)) => Answer::Reply(reply),
            Ok(Err(error)) => Answer::Failed(error),
            Err(_) => Answer::TimedOut,
        };
        Attempt {
            event_id: event.id.clone(),
            number,
            kind: delivery.kind,
            at,
            target,
            answer,
            took: started.elapsed(),
        }
    }

    /// The event was answered 2xx at attempt `number` of `delivery`, ending at
    /// `answered`: the first time, its duplicates start, one per later slot, each
    /// starting the next.
    fn delivered(self: &Arc<Self>, delivery: Delivery, number: u32, answered: Duration) {
        if self.events[delivery.event]
            .delivered
            .swap(true, Ordering::SeqCst)
        {
            return;
        }
        let Some(then) = self.simulator.duplicates.checked_sub(1) else {
            return;
        };
        let slot = delivery.slot(number);
        let start = answered + self.simulator.wait_after(slot);
        self.start(Delivery::duplicate(delivery.event, slot + 1, start, then));
    }

    /// Waits for every delivery, those started by others included.
    async fn finish(&self) {
        loop {
            let next = lock(&self.tasks).pop();
            let Some(task) = next else { break };
            if let Err(e) = task.await
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }

    fn report(&self) -> Report {
        let mut attempts = std::mem::take(&mut *lock(&self.attempts));
        attempts.sort_by_key(
            |Recorded {
                 delivery: d,
                 attempt: a,
             }| { (a.at, d.event, a.kind, d.copy, a.number) },
        );
        let fates = self
            .events
            .iter()
            .enumerate()
            .map(|(i, event)| {
                let own = attempts.iter().filter(|r| r.delivery.event == i);
                (event.id.clone(), fate(own.map(|r| &r.attempt)))
            })
            .collect();
        Report {
            attempts: attempts.into_iter().map(|r| r.attempt).collect(),
            fates,
            targets: self.targets.len(),
            timeout: self.simulator.timeout,
        }
    }
}

/// An event's fate from its attempts, in time order: the first 2xx, else the first
/// 4xx, else none.
fn fate<'a>(attempts: impl Iterator<Item = &'a Attempt> + Clone) -> Fate {
    let status = |a: &Attempt| a.answer.status().map_or(0, |s| s.as_u16());
    if let Some(a) = attempts.clone().find(|a| (200..300).contains(&status(a))) {
        return Fate::Delivered { attempts: a.number };
    }
    match attempts.map(status).find(|s| (400..500).contains(s)) {
        Some(status) => Fate::Refused { status },
        None => Fate::GaveUp,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How NotMeta's time passes for a run's deliveries.
enum Timeline {
    /// Compressed real time: each delivery sleeps on its own until its next attempt,
    /// `start + at / factor`.
    Real {
        start: tokio::time::Instant,
        factor: u32,
    },
    /// Time kept here (and on a manual clock, if given): it moves on to the next
    /// attempt due once every delivery is waiting for one.
    Virtual(Mutex<Virtual>),
}

struct Virtual {
    now: Duration,
    clock: Option<ManualClock>,
    /// Deliveries not waiting for their next attempt.
    running: usize,
    waiting: Vec<Waiting>,
}

/// A delivery waiting for its next attempt, due `at`.
struct Waiting {
    at: Duration,
    wake: oneshot::Sender<()>,
}

impl Timeline {
    fn new(time: &Time) -> Self {
        let virtual_time = |clock| {
            Timeline::Virtual(Mutex::new(Virtual {
                now: Duration::ZERO,
                clock,
                running: 0,
                waiting: Vec::new(),
            }))
        };
        match time {
            Time::Immediate => virtual_time(None),
            Time::Manual(clock) => virtual_time(Some(clock.clone())),
            Time::Compressed(factor) => Timeline::Real {
                start: tokio::time::Instant::now(),
                factor: *factor,
            },
        }
    }

    /// A real duration in NotMeta's time.
    fn notmeta(&self, real: Duration) -> Duration {
        match self {
            Timeline::Real { factor, .. } => real * *factor,
            Timeline::Virtual(_) => real,
        }
    }

    /// A duration of NotMeta's time in real time.
    fn real(&self, notmeta: Duration) -> Duration {
        match self {
            Timeline::Real { factor, .. } => notmeta / *factor,
            Timeline::Virtual(_) => notmeta,
        }
    }

    /// Waits until `at`, in NotMeta's time.
    async fn until(&self, at: Duration) {
        match self {
            Timeline::Real { start, factor } => {
                tokio::time::sleep_until(*start + at / *factor).await
            }
            Timeline::Virtual(state) => {
                let woken = {
                    let mut state = lock(state);
                    if at <= state.now {
                        return;
                    }
                    let (wake, woken) = oneshot::channel();
                    state.waiting.push(Waiting { at, wake });
                    state.running -= 1;
                    state.move_on();
                    woken
                };
                let _ = woken.await;
            }
        }
    }
}

impl Virtual {
    /// Once no delivery is running, moves time to the earliest attempt due and wakes
    /// the deliveries it is due for.
    fn move_on(&mut self) {
        if self.running > 0 {
            return;
        }
        let Some(next) = self.waiting.iter().map(|w| w.at).min() else {
            return;
        };
        if let Some(clock) = &self.clock {
            clock.advance(next - self.now);
        }
        self.now = next;
        for due in self.waiting.extract_if(.., |w| w.at == next) {
            self.running += 1;
            let _ = due.wake.send(());
        }
    }
}

/// A delivery counted as running on a virtual timeline until it is dropped (when
/// its task ends, or panics).
struct Running(Arc<Timeline>);

impl Running {
    fn enter(timeline: &Arc<Timeline>) -> Self {
        if let Timeline::Virtual(state) = &**timeline {
            lock(state).running += 1;
        }
        Self(Arc::clone(timeline))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Timeline::Virtual(state) = &*self.0 {
            let mut state = lock(state);
            state.running -= 1;
            state.move_on();
        }
    }
}

/// Which delivery an [`Attempt`] was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// An attempt of the event's first delivery: the first one or a retry
    /// (numbered by [`Attempt::number`]).
    Attempt,
    /// An attempt of a delivery of an event already answered 2xx
    /// ([`Simulator::with_duplicates`]).
    Duplicate,
    /// An attempt of a copy of a delivery (the first or a duplicate), sent at the
    /// same moment and retried on its own ([`Simulator::with_concurrent_duplicates`]).
    Concurrent,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Attempt => "attempt",
            Kind::Concurrent => "concurrent copy",
            Kind::Duplicate => "duplicate",
        })
    }
}

/// `text` with control characters (escape sequences, carriage returns, bells) and
/// bidirectional overrides written as escapes (`\u{1b}`), so that a receiver's
/// answer printed to a terminal cannot act on it.
fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control()
            || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
        {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// What came back from one attempt. Its `Display` shows the start of a reply's body
/// with control characters escaped.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Answer {
    /// An HTTP answer.
    Reply(Reply),
    /// No answer within the time limit (NotMeta retries). Shown alone as `no answer
    /// in time`; a [`Report`] shows the limit, in NotMeta's time: `no answer in 30 s`.
    TimedOut,
    /// No answer: the connection failed or the service returned an error (NotMeta
    /// retries).
    Failed(TargetError),
}

impl Answer {
    /// The status, if an answer came.
    #[must_use]
    pub fn status(&self) -> Option<http::StatusCode> {
        match self {
            Answer::Reply(reply) => Some(reply.status),
            _ => None,
        }
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Reply(reply) => {
                let text: String = reply.body.chars().take(40).collect();
                let more = if text.len() < reply.body.len() || reply.truncated {
                    "…"
                } else {
                    ""
                };
                write!(f, "{} {}{more}", reply.status.as_u16(), escaped(&text))
            }
            Answer::TimedOut => f.write_str("no answer in time"),
            Answer::Failed(error) => write!(f, "failed: {}", escaped(&error.to_string())),
        }
    }
}

/// One delivery the simulator made.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attempt {
    /// The event's id (`?` for a body that is not an event).
    pub event_id: String,
    /// Which attempt of its delivery's schedule this was (1 to 5): every delivery,
    /// whatever its [`kind`](Attempt::kind), starts at 1.
    pub number: u32,
    /// Attempt, concurrent copy or duplicate.
    pub kind: Kind,
    /// When, in NotMeta's time, since the first attempt: the waits before it and
    /// the time the attempts before it took (`+1m` and a little for the first
    /// retry). In compressed time an answer's time counts at NotMeta's speed.
    pub at: Duration,
    /// The index of the target it went to.
    pub target: usize,
    /// What came back.
    pub answer: Answer,
    /// How long the answer took, in real time.
    pub took: Duration,
}

/// How an event's deliveries ended, taken together: delivered when any of them (the
/// first delivery, a concurrent copy, a duplicate) was answered 2xx; else refused
/// when one was answered 4xx; else not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fate {
    /// Answered 2xx, after this many attempts.
    Delivered {
        /// The number of the attempt answered 2xx first (in NotMeta's time).
        attempts: u32,
    },
    /// Answered 4xx and never 2xx: NotMeta does not retry a 4xx.
    Refused {
        /// The first 4xx status.
        status: u16,
    },
    /// No 2xx or 4xx in all the attempts of every delivery.
    GaveUp,
}

impl fmt::Display for Fate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fate::Delivered { attempts: 1 } => f.write_str("delivered at the first attempt"),
            Fate::Delivered { attempts } => write!(f, "delivered after {attempts} attempts"),
            Fate::Refused { status } => write!(f, "refused ({status}): not retried"),
            Fate::GaveUp => f.write_str("not delivered: every attempt failed"),
        }
    }
}

/// Every attempt of a simulation and how each event ended; `Display` prints them as
/// a table, each event id on one line (control characters escaped), an attempt
/// that was not answered in time as `no answer in 30 s` (the simulator's limit, in
/// NotMeta's time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    attempts: Vec<Attempt>,
    fates: Vec<(String, Fate)>,
    targets: usize,
    /// The answer time limit, in NotMeta's time.
    timeout: Duration,
}

impl Report {
    /// Every attempt of every delivery, in time order (by event within one
    /// moment).
    #[must_use]
    pub fn attempts(&self) -> &[Attempt] {
        &self.attempts
    }

    /// How each event ended, in the order given.
    #[must_use]
    pub fn fates(&self) -> &[(String, Fate)] {
        &self.fates
    }

    /// How the event `event_id` ended.
    #[must_use]
    pub fn fate(&self, event_id: &str) -> Option<Fate> {
        self.fates
            .iter()
            .find(|(id, _)| id == event_id)
            .map(|&(_, fate)| fate)
    }

    /// Whether every event was answered 2xx.
    #[must_use]
    pub fn all_delivered(&self) -> bool {
        self.fates
            .iter()
            .all(|(_, fate)| matches!(fate, Fate::Delivered { .. }))
    }

    /// The statuses answered to the attempts of `event_id`'s first delivery and of
    /// its duplicates (not of the concurrent copies), in time order; `None` where no
    /// answer came.
    #[must_use]
    pub fn statuses(&self, event_id: &str) -> Vec<Option<u16>> {
        self.attempts
            .iter()
            .filter(|a| a.event_id == event_id && a.kind != Kind::Concurrent)
            .map(|a| a.answer.status().map(|s| s.as_u16()))
            .collect()
    }
}

/// An answer time limit as the command-line tool writes it: `30 s`, `1.5 s`.
fn limit(timeout: Duration) -> String {
    if timeout.subsec_nanos() == 0 {
        format!("{} s", timeout.as_secs())
    } else {
        format!("{} s", timeout.as_secs_f64())
    }
}

/// `+0s`, `+1m`, `+1h21m`: a wait as NotMeta's schedule writes it.
fn offset(at: Duration) -> String {
    let s = at.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("+{s}s"),
        (0, m, 0) => format!("+{m}m"),
        (0, m, s) => format!("+{m}m{s}s"),
        (h, 0, 0) => format!("+{h}h"),
        (h, m, _) => format!("+{h}h{m}m"),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id_width = self
            .attempts
            .iter()
            .map(|a| escaped(&a.event_id).chars().count())
            .chain(self.fates.iter().map(|(id, _)| escaped(id).chars().count()))
            .max()
            .unwrap_or(5)
            .max(5);
        let many = self.targets > 1;
        write!(
            f,
            "{:<id_width$}  {:<7}  {:<8}  {:<15}",
            "event", "attempt", "at", "delivery"
        )?;
        if many {
            write!(f, "  {:<6}", "target")?;
        }
        writeln!(f, "  {:>8}  answer", "took")?;
        for a in &self.attempts {
            write!(
                f,
                "{:<id_width$}  {:<7}  {:<8}  {:<15}",
                escaped(&a.event_id),
                a.number,
                offset(a.at),
                a.kind.to_string()
            )?;
            if many {
                write!(f, "  {:<6}", a.target)?;
            }
            let took = format!("{} ms", a.took.as_millis());
            if a.answer == Answer::TimedOut {
                writeln!(f, "  {took:>8}  no answer in {}", limit(self.timeout))?;
            } else {
                writeln!(f, "  {took:>8}  {}", a.answer)?;
            }
        }
        for (id, fate) in &self.fates {
            writeln!(f, "{}: {fate}", escaped(id))?;
        }
        Ok(())
    }
}
