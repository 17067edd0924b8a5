//! NotMeta's delivery behaviour, played against a receiver.

use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Reply, SignedRequest, Target};
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

/// How long NotMeta waits for an answer: 30 s.
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
/// stopping at the first 2xx (delivered) or 4xx (refused for good), and reports every
/// attempt and its answer.
///
/// Time passes in one of three ways: not at all (the default: the attempts follow
/// each other at once), on a [`ManualClock`] given to the receiver too
/// ([`with_clock`](Self::with_clock): advanced by each wait, so a maximum event age
/// and the dedup window see NotMeta's real schedule), or in compressed real time
/// ([`compressed`](Self::compressed)).
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
#[derive(Debug, Clone)]
pub struct Simulator {
    secret: String,
    schedule: Vec<Duration>,
    time: Time,
    duplicates: u32,
    concurrent: u32,
    timeout: Duration,
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
    /// lasts a second, the whole schedule 81 s; `0` is taken as 1).
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

    /// After an event is answered 2xx, delivers it `n` more times, one per later
    /// slot of the schedule (one minute apart once the schedule is over), as an
    /// at-least-once sender may.
    #[must_use]
    pub fn with_duplicates(mut self, n: u32) -> Self {
        self.duplicates = n;
        self
    }

    /// Sends every attempt `n` more times at the same moment (to the next targets,
    /// when there are several: two replicas receiving the same event at once).
    #[must_use]
    pub fn with_concurrent_duplicates(mut self, n: u32) -> Self {
        self.concurrent = n;
        self
    }

    /// How long to wait for each answer (default 30 s, NotMeta's); no answer in
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
    /// once: each slot of the schedule sends, concurrently, every event still
    /// waiting. Event `i`'s attempt `k` goes to `targets[(i + k) % targets.len()]`, so
    /// with two targets (two replicas) retries and duplicates change replica.
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
        let mut events: Vec<Tracked> = bodies
            .into_iter()
            .map(|body| {
                let signed = SignedRequest::new(body, &self.secret);
                let id = Event::parse_unverified(&signed.body)
                    .map_or_else(|_| "?".to_owned(), |e| e.id.as_str().to_owned());
                Tracked {
                    id,
                    signed,
                    attempts: 0,
                    duplicates_left: self.duplicates,
                    fate: None,
                    pending_refusal: None,
                }
            })
            .collect();
        let mut report = Report {
            attempts: Vec::new(),
            fates: Vec::new(),
            targets: targets.len(),
        };
        let mut elapsed = Duration::ZERO;
        for slot in 0.. {
            let work: Vec<usize> = (0..events.len())
                .filter(|&i| events[i].has_work(self.schedule.len()))
                .collect();
            if work.is_empty() {
                break;
            }
            if slot > 0 {
                let wait = self
                    .schedule
                    .get(slot - 1)
                    .copied()
                    .unwrap_or(Duration::from_secs(60));
                self.pass(wait).await;
                elapsed += wait;
            }
            let mut sends = tokio::task::JoinSet::new();
            for &i in &work {
                let event = &mut events[i];
                let kind = if event.fate.is_some() {
                    event.duplicates_left -= 1;
                    Kind::Duplicate
                } else {
                    event.attempts += 1;
                    Kind::Attempt
                };
                for copy in 0..=self.concurrent {
                    let kind = if copy == 0 { kind } else { Kind::Concurrent };
                    let to = (i + slot + copy as usize) % targets.len();
                    let target = targets[to].clone();
                    let request = event.signed.request();
                    let timeout = self.timeout;
                    let number = event.attempts;
                    sends.spawn(async move {
                        let started = Instant::now();
                        let answer = match tokio::time::timeout(timeout, target.send(request)).await
                        {
                            Ok(Ok(reply)) => Answer::Reply(reply),
                            Ok(Err(error)) => Answer::Failed(error),
                            Err(_) => Answer::TimedOut,
                        };
                        (i, number, kind, to, answer, started.elapsed())
                    });
                }
            }
            let mut answers = Vec::new();
            while let Some(done) = sends.join_next().await {
                answers.push(done.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())));
            }
            answers.sort_by_key(|&(i, _, kind, to, ..)| (i, kind, to));
            for (i, number, kind, target, answer, took) in answers {
                let event = &mut events[i];
                if event.fate.is_none() {
                    match answer.status().map(|s| s.as_u16()) {
                        Some(200..=299) => {
                            event.fate = Some(Fate::Delivered {
                                attempts: event.attempts,
                            });
                        }
                        Some(status @ 400..=499) if kind != Kind::Concurrent => {
                            event.pending_refusal = Some(status);
                        }
                        _ => {}
                    }
                }
                report.attempts.push(Attempt {
                    event_id: event.id.clone(),
                    number,
                    kind,
                    at: elapsed,
                    target,
                    answer,
                    took,
                });
            }
            for &i in &work {
                let event = &mut events[i];
                if event.fate.is_none() {
                    if let Some(status) = event.pending_refusal.take() {
                        event.fate = Some(Fate::Refused { status });
                        event.duplicates_left = 0;
                    } else if event.attempts as usize > self.schedule.len() {
                        event.fate = Some(Fate::GaveUp);
                        event.duplicates_left = 0;
                    }
                } else if !matches!(event.fate, Some(Fate::Delivered { .. })) {
                    event.duplicates_left = 0;
                }
            }
        }
        report.fates = events
            .into_iter()
            .map(|e| (e.id, e.fate.unwrap_or(Fate::GaveUp)))
            .collect();
        report
    }

    async fn pass(&self, wait: Duration) {
        match &self.time {
            Time::Immediate => {}
            Time::Manual(clock) => clock.advance(wait),
            Time::Compressed(factor) => tokio::time::sleep(wait / *factor).await,
        }
    }
}

struct Tracked {
    id: String,
    signed: SignedRequest,
    attempts: u32,
    duplicates_left: u32,
    fate: Option<Fate>,
    pending_refusal: Option<u16>,
}

impl Tracked {
    fn has_work(&self, retries: usize) -> bool {
        match self.fate {
            None => self.attempts as usize <= retries,
            Some(Fate::Delivered { .. }) => self.duplicates_left > 0,
            Some(_) => false,
        }
    }
}

/// Which delivery an [`Attempt`] was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// The first attempt or a retry (numbered by [`Attempt::number`]).
    Attempt,
    /// A delivery of an event already answered 2xx ([`Simulator::with_duplicates`]).
    Duplicate,
    /// A copy of an attempt or a duplicate, sent at the same moment
    /// ([`Simulator::with_concurrent_duplicates`]).
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

/// What came back from one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Answer {
    /// An HTTP answer.
    Reply(Reply),
    /// No answer within the time limit (NotMeta retries).
    TimedOut,
    /// No answer: the connection failed or the service returned an error (NotMeta
    /// retries).
    Failed(String),
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
                let more = if text.len() < reply.body.len() {
                    "…"
                } else {
                    ""
                };
                write!(f, "{} {text}{more}", reply.status.as_u16())
            }
            Answer::TimedOut => f.write_str("no answer in time"),
            Answer::Failed(error) => write!(f, "failed: {error}"),
        }
    }
}

/// One delivery the simulator made.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attempt {
    /// The event's id (`?` for a body that is not an event).
    pub event_id: String,
    /// Which attempt of the schedule this was (1 to 5); a duplicate carries the
    /// number of the attempt that was answered 2xx.
    pub number: u32,
    /// Attempt, concurrent copy or duplicate.
    pub kind: Kind,
    /// When, in NotMeta's time, since the first attempt (`+1m` for the first retry).
    pub at: Duration,
    /// The index of the target it went to.
    pub target: usize,
    /// What came back.
    pub answer: Answer,
    /// How long the answer took, in real time.
    pub took: Duration,
}

/// How an event's delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fate {
    /// Answered 2xx, after this many attempts.
    Delivered {
        /// Attempts until the first 2xx.
        attempts: u32,
    },
    /// Answered 4xx: NotMeta does not retry.
    Refused {
        /// The 4xx status.
        status: u16,
    },
    /// No 2xx or 4xx in all the attempts of the schedule.
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
/// a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    attempts: Vec<Attempt>,
    fates: Vec<(String, Fate)>,
    targets: usize,
}

impl Report {
    /// Every delivery, in time order (by event within one moment).
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

    /// The statuses answered to `event_id`'s attempts and duplicates (not the
    /// concurrent copies), in order; `None` where no answer came.
    #[must_use]
    pub fn statuses(&self, event_id: &str) -> Vec<Option<u16>> {
        self.attempts
            .iter()
            .filter(|a| a.event_id == event_id && a.kind != Kind::Concurrent)
            .map(|a| a.answer.status().map(|s| s.as_u16()))
            .collect()
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
            .map(|a| a.event_id.chars().count())
            .chain(self.fates.iter().map(|(id, _)| id.chars().count()))
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
                a.event_id,
                a.number,
                offset(a.at),
                a.kind.to_string()
            )?;
            if many {
                write!(f, "  {:<6}", a.target)?;
            }
            let took = format!("{} ms", a.took.as_millis());
            writeln!(f, "  {took:>8}  {}", a.answer)?;
        }
        for (id, fate) in &self.fates {
            writeln!(f, "{id}: {fate}")?;
        }
        Ok(())
    }
}
