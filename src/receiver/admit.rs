//! The admission step every endpoint shares (the inline receiver and the queue's
//! enqueuer): after verification, a `webhook.verified` challenge is answered, an
//! event older than the maximum age is refused, and anything else goes on to be
//! delivered.

use std::time::Duration;

use super::{Answer, Outcome, age};
use crate::clock::Clock;
use crate::event::Event;

/// What admission decided for a verified event.
pub(crate) enum Admitted {
    /// Deliver it (run the handler, or enqueue it).
    Deliver,
    /// Answer at once with this outcome (the challenge, or a stale event).
    Answer(Outcome),
}

/// Admission for a verified `event`.
#[inline]
pub(crate) fn admit(event: &Event<'_>, max_age: Option<Duration>, clock: &dyn Clock) -> Admitted {
    if event.challenge().is_some() {
        Admitted::Answer(Outcome::Challenge)
    } else if age::is_stale(max_age, clock, event) {
        Admitted::Answer(Outcome::Stale)
    } else {
        Admitted::Deliver
    }
}

/// The answer to an event admission answered at once.
pub(crate) fn answer(event: &Event<'_>, outcome: Outcome) -> Answer {
    match (outcome, event.challenge()) {
        (Outcome::Challenge, Some(challenge)) => Answer::challenge(challenge),
        (outcome, _) => outcome.into(),
    }
}
