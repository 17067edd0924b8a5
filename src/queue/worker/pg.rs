//! The worker's reading, renewal and settling on a queue in PostgreSQL: the same
//! run, backoff and shutdown as on Redis, with the storage calls of
//! `queue::postgres`.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::future::{Either, select};
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, Semaphore};

use super::{
    Flight, Settle, Shared, Tasks, decide, free_slots, mark_lost, next_renewal, settle_with, start,
    warn,
};
use crate::dedup::ClaimToken;
use crate::queue::QueueError;
use crate::queue::postgres::{PgQueue, Taken};
use crate::receiver::{Claimed, Handler};

/// How long the listener waits before connecting again after a failure.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// How often a worker sweeps the event ids whose dedup window ended.
const SWEEP_EVERY: Duration = crate::postgres::PostgresStore::DEFAULT_SWEEP_INTERVAL;

/// Aborts the listener when the reading ends.
struct Listening(tokio::task::JoinHandle<()>);

impl Drop for Listening {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Takes due entries (`FOR UPDATE SKIP LOCKED`) for the free slots and starts them,
/// until `shutdown` completes. When nothing was due, waits for a notification of
/// the listener, or the poll interval, whichever comes first.
pub(super) async fn read_until<H: Handler>(
    shared: &Arc<Shared<H>>,
    pg: &Arc<PgQueue>,
    tasks: &mut Tasks,
    shutdown: impl Future<Output = ()>,
) -> Result<(), QueueError> {
    let settings = &shared.settings;
    let slots = Arc::new(Semaphore::new(settings.concurrency));
    let mut shutdown = pin!(shutdown);
    let wake = Arc::new(Notify::new());
    let _listening = Listening(tokio::spawn(listen(Arc::clone(pg), Arc::clone(&wake))));
    #[cfg(feature = "metrics")]
    let mut last_counts = std::time::Instant::now();
    let mut last_sweep: Option<std::time::Instant> = None;
    loop {
        tasks.reap();
        if last_sweep.is_none_or(|t| t.elapsed() >= SWEEP_EVERY) {
            last_sweep = Some(std::time::Instant::now());
            // Done marks past their window; in the background, tried again later
            // if it fails.
            let store = pg.store.clone();
            tokio::spawn(async move {
                let _ = store.sweep().await;
            });
        }
        // Backpressure: wait for a free slot before taking anything.
        let Some(free) = free_slots(&slots, shutdown.as_mut()).await else {
            return Ok(());
        };
        let Some((free, round)) = super::gate::admit(shared, &slots, free, shutdown.as_mut()).await
        else {
            return Ok(());
        };
        #[cfg(feature = "metrics")]
        if last_counts.elapsed() >= super::LAYOUT_RECHECK {
            last_counts = std::time::Instant::now();
            // Sets the queue gauges; only reads, so it can hide no fault.
            let _ = shared.queue.counts().await;
        }
        let (got, failed) = take(shared, pg, &slots, tasks, free).await;
        if got == 0 || failed {
            // Nothing to start: an unused probe goes back while this waits.
            drop(round);
            let pause = pin!(tokio::time::sleep(settings.poll));
            let woken = pin!(wake.notified());
            let waited = select(select(pause, woken), shutdown.as_mut()).await;
            if let Either::Right(_) = waited {
                return Ok(());
            }
        }
    }
}

/// One take for up to `free` entries; how many started, and whether it failed.
async fn take<H: Handler>(
    shared: &Arc<Shared<H>>,
    pg: &Arc<PgQueue>,
    slots: &Arc<Semaphore>,
    tasks: &mut Tasks,
    free: usize,
) -> (usize, bool) {
    let tokens: Vec<ClaimToken> = (0..free).map(|_| ClaimToken::new()).collect();
    let texts: Vec<String> = tokens.iter().map(ToString::to_string).collect();
    let consumer = &shared.consumer.name;
    let running: Vec<i64> = shared
        .flights()
        .keys()
        .filter_map(|(_, id)| id.parse().ok())
        .collect();
    let taken = pg.take(&texts, consumer, shared.settings.visibility, &running);
    match shared.bounded("a read", taken).await {
        Ok(entries) => {
            let mut got = 0;
            for entry in entries {
                let Some(i) = texts.iter().position(|t| *t == entry.token) else {
                    continue;
                };
                let key = (0, entry.id.to_string());
                let flight = Flight::new(entry.event_id.clone(), entry.token.clone());
                let (pg, token) = (Arc::clone(pg), tokens[i]);
                let started = start(
                    shared,
                    slots,
                    tasks,
                    key,
                    flight,
                    move |shared, flight| async move {
                        process(&shared, &pg, entry, token, &flight).await
                    },
                );
                got += usize::from(started);
            }
            (got, false)
        }
        Err(e) => {
            // Taken entries whose reply was lost come back after the visibility
            // timeout.
            warn("read", &e);
            (0, true)
        }
    }
}

/// One entry: run the handler under the run's token, settle.
async fn process<H: Handler>(
    shared: &Shared<H>,
    pg: &PgQueue,
    entry: Taken,
    token: ClaimToken,
    flight: &Flight,
) {
    let text = &entry.token;
    if !entry.run {
        // The event is done already (its run committed, its entry was not deleted).
        let skip = pg.skip(entry.id, text);
        match shared.bounded("a settle", skip).await {
            Ok(()) => shared.add(&shared.counters.skipped, "skipped"),
            Err(e) => warn("settle", &e),
        }
        return;
    }
    if shared.is_stopped.load(Ordering::Acquire) {
        // Taken as the shutdown deadline passed: not run, left for reclaim.
        shared.add(&shared.counters.abandoned, "abandoned");
        return;
    }
    let window = shared.queue.dedup_window();
    let claim = Claimed { token, window };
    let trace = entry.trace.as_ref();
    let Some(how) = decide(shared, entry.runs, &entry.body, Some(claim), trace).await else {
        return;
    };
    let (id, event_id) = (entry.id, entry.event_id.as_str());
    settle_with(shared, &how, flight, || async {
        let settled = async {
            match &how {
                Settle::Done => pg.done(id, text, event_id, window).await,
                Settle::Retry(pause) => pg.retry(id, text, *pause).await,
                Settle::Dead(error) => pg.dead(id, text, error, window).await,
            }
        };
        shared.bounded("a settle", settled).await
    })
    .await;
}

/// Renews every running entry of this worker in one statement every third of the
/// visibility timeout (the entry's lease and its event's claim); marks those
/// another worker took over. Ends once the worker is closed and nothing runs here
/// any more.
///
/// Over a connection of its own, outside the queue's pool (a pool of one, on the
/// same connect options, opened on the runtime this runs on): handlers blocking
/// the threads of the caller's runtime, or holding every connection of the
/// queue's pool, cannot hold up a renewal.
pub(super) async fn keep<H>(shared: Arc<Shared<H>>, pg: Arc<PgQueue>) {
    let own = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with((*pg.pool.connect_options()).clone());
    while let Some(flights) = next_renewal::<H, i64>(&shared).await {
        if flights.is_empty() {
            continue;
        }
        let entries: Vec<(i64, String)> = flights
            .iter()
            .map(|(id, flight)| (*id, flight.token.clone()))
            .collect();
        let renewed = pg.renew(&own, &entries, shared.settings.visibility);
        match shared.bounded("a renewal", renewed).await {
            Ok(held) => {
                mark_lost(&flights, |id| held.contains(id));
            }
            Err(e) => warn("renew", &e),
        }
    }
    own.close().await;
}

/// Listens on the queue's channel and wakes the reader on each notification (an
/// entry queued or replayed), and after every reconnection (notifications sent
/// meanwhile are lost). While it cannot listen, the reader polls.
///
/// The listening connection is the worker's own, outside the queue's pool (a
/// pool of one, on the same connect options): taken from the pool, it would hold
/// one of the connections the renewals of running entries need.
async fn listen(pg: Arc<PgQueue>, wake: Arc<Notify>) {
    let own = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with((*pg.pool.connect_options()).clone());
    loop {
        match PgListener::connect_with(&own).await {
            Ok(mut listener) => match listener.listen(&pg.channel).await {
                Ok(()) => {
                    wake.notify_one();
                    loop {
                        match listener.try_recv().await {
                            // A notification, or the connection was lost and made
                            // again (listening again): take what is due.
                            Ok(_) => wake.notify_one(),
                            Err(e) => {
                                warn("listen", &QueueError::Postgres(Box::new(e)));
                                break;
                            }
                        }
                    }
                }
                Err(e) => warn("listen", &QueueError::Postgres(Box::new(e))),
            },
            Err(e) => warn("listen", &QueueError::Postgres(Box::new(e))),
        }
        tokio::time::sleep(LISTEN_RETRY).await;
    }
}
