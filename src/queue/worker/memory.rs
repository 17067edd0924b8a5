//! The worker's reading, renewal and settling on a queue in memory: the same run,
//! backoff and shutdown as on Redis and PostgreSQL, with the storage calls of
//! `queue::memory`.

use std::collections::HashSet;
use std::future::{Future, pending};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::future::{Either, select};
use tokio::sync::Semaphore;

use super::{
    Flight, Settle, Shared, Tasks, decide, free_slots, mark_lost, next_renewal, settle_with, start,
};
use crate::queue::QueueError;
use crate::queue::memory::{MemQueue, Taken};
use crate::receiver::Handler;

/// Takes due entries for the free slots and starts them, until `shutdown`
/// completes. When nothing was due, waits for a change of the queue (an entry
/// queued, replayed or settled) or the moment the next entry is due, whichever
/// comes first: no polling.
pub(super) async fn read_until<H: Handler>(
    shared: &Arc<Shared<H>>,
    memory: &Arc<MemQueue>,
    tasks: &mut Tasks,
    shutdown: impl Future<Output = ()>,
) -> Result<(), QueueError> {
    let slots = Arc::new(Semaphore::new(shared.settings.concurrency));
    let mut shutdown = pin!(shutdown);
    loop {
        tasks.reap();
        // Backpressure: wait for a free slot before taking anything.
        let Some(free) = free_slots(&slots, shutdown.as_mut()).await else {
            return Ok(());
        };
        // The circuit breaker and the rate limit: waits until they let work start.
        let Some((free, round)) = super::gate::admit(shared, &slots, free, shutdown.as_mut()).await
        else {
            return Ok(());
        };
        // Listening before the take: a change after it is not missed.
        let mut changed = pin!(memory.changed());
        changed.as_mut().enable();
        if take(shared, memory, &slots, tasks, free) > 0 {
            continue;
        }
        // Nothing to start: an unused probe goes back while this waits.
        drop(round);
        // Paused: nothing is due until the resume, which is a change.
        let due = match memory.next_due() {
            Some(at) if !memory.is_paused() => Either::Left(tokio::time::sleep_until(at)),
            _ => Either::Right(pending()),
        };
        if let Either::Right(_) = select(select(pin!(due), changed), shutdown.as_mut()).await {
            return Ok(());
        }
    }
}

/// One take for up to `free` entries; how many started.
fn take<H: Handler>(
    shared: &Arc<Shared<H>>,
    memory: &Arc<MemQueue>,
    slots: &Arc<Semaphore>,
    tasks: &mut Tasks,
    free: usize,
) -> usize {
    let running: HashSet<u64> = shared
        .flights()
        .keys()
        .filter_map(|(_, id)| id.parse().ok())
        .collect();
    let taken = memory.take(free, shared.settings.visibility, &running);
    let mut got = 0;
    for entry in taken {
        let key = (0, entry.id.to_string());
        let flight = Flight::new(entry.event_id.clone(), entry.token.clone());
        let memory = Arc::clone(memory);
        let started = start(
            shared,
            slots,
            tasks,
            key,
            flight,
            move |shared, flight| async move { process(&shared, &memory, entry, &flight).await },
        );
        got += usize::from(started);
    }
    got
}

/// One entry: run the handler under the run's token, settle.
async fn process<H: Handler>(shared: &Shared<H>, memory: &MemQueue, entry: Taken, flight: &Flight) {
    let (id, token) = (entry.id, entry.token.as_str());
    if !entry.run {
        // The event is done already: the entry is only deleted.
        memory.skip(id, token);
        shared.add(&shared.counters.skipped, "skipped");
        return;
    }
    if shared.is_stopped.load(Ordering::Acquire) {
        // Taken as the shutdown deadline passed: not run, left for its lease to lapse.
        shared.add(&shared.counters.abandoned, "abandoned");
        return;
    }
    let Some(how) = decide(shared, entry.runs, &entry.body, None, entry.trace.as_ref()).await
    else {
        return;
    };
    let window = shared.queue.dedup_window();
    let event_id = entry.event_id.as_str();
    settle_with(shared, &how, flight, || async {
        Ok(match &how {
            Settle::Done => memory.done(id, token, event_id, window),
            Settle::Retry(pause) => memory.retry(id, token, *pause),
            Settle::Dead(error) => memory.dead(id, token, error, window),
        })
    })
    .await;
}

/// Renews every running entry of this worker every third of the visibility
/// timeout; marks those another worker took over (their lease lapsed while the
/// handler ran, a handler blocking its thread). Ends once the worker is closed and
/// nothing runs here any more.
pub(super) async fn keep<H>(shared: Arc<Shared<H>>, memory: Arc<MemQueue>) {
    while let Some(flights) = next_renewal::<H, u64>(&shared).await {
        let entries: Vec<(u64, String)> = flights
            .iter()
            .map(|(id, flight)| (*id, flight.token.clone()))
            .collect();
        let held = memory.renew(&entries, shared.settings.visibility);
        mark_lost(&flights, |id| held.contains(id));
    }
}
