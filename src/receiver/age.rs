//! The event-age rules shared by the inline receiver and the queue's enqueuer: when
//! an event is a replay, and how long its id must be remembered so that it can
//! never be handled twice.

use std::time::Duration;

use super::MAX_CLOCK_SKEW;
use crate::clock::{Clock, MAX_DURATION, clamp};
use crate::event::Event;

/// Whether `event` is older than `max_age` (never, without a maximum age).
pub(crate) fn is_stale(max_age: Option<Duration>, clock: &dyn Clock, event: &Event<'_>) -> bool {
    let Some(max_age) = max_age else {
        return false;
    };
    clock
        .now()
        .duration_since(event.created_at.to_system_time())
        .is_ok_and(|age| age > max_age)
}

/// How long `event`'s id must be remembered once done: `window`, at least the
/// maximum age plus [`MAX_CLOCK_SKEW`], and for an event dated in the future until
/// its `created_at` plus both (so a replay is never fresh while forgotten).
pub(crate) fn window_for(
    window: Duration,
    max_age: Option<Duration>,
    clock: &dyn Clock,
    event: &Event<'_>,
) -> Duration {
    let Some(age) = max_age else {
        return clamp(window);
    };
    let reach = age.saturating_add(MAX_CLOCK_SKEW);
    let needed = match event.created_at.to_system_time().checked_add(reach) {
        Some(until) => until.duration_since(clock.now()).unwrap_or(Duration::ZERO),
        None => MAX_DURATION,
    };
    clamp(window.max(reach).max(needed))
}
