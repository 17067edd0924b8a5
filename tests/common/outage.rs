//! A downstream that is down for a while and then recovers, played against a
//! worker with a circuit breaker on either backend: what it costs and how soon it
//! recovers, asserted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notmeta_webhooks::Event;
use notmeta_webhooks::breaker::{BreakerState, CircuitBreaker};
use notmeta_webhooks::queue::{Queue, Worker};
use notmeta_webhooks::receiver::{Handler, HandlerError, Receiver};
use notmeta_webhooks::{Verifier, sign};

use super::queue::{body, enqueuer, run_until, send};

/// What the downstream saw: each call's event id, time and whether it failed.
#[derive(Default)]
pub(crate) struct Downstream {
    pub(crate) calls: Vec<(String, Instant, bool)>,
}

/// A handler calling a downstream that fails every call until `up_at`.
pub(crate) fn flaky(up_at: Instant, seen: &Arc<Mutex<Downstream>>) -> impl Handler + use<> {
    let seen = Arc::clone(seen);
    move |event: Event<'static>| {
        let now = Instant::now();
        let down = now < up_at;
        seen.lock()
            .unwrap()
            .calls
            .push((event.id.as_str().to_owned(), now, down));
        async move {
            // A call takes a moment, so that runs overlap.
            tokio::time::sleep(Duration::from_millis(20)).await;
            if down {
                Err(HandlerError::temporary("downstream down"))
            } else {
                Ok(())
            }
        }
    }
}

/// Queues `events` events, then runs a worker (4 at once, 5 attempts, a breaker
/// opening after 3 failures for 2 s) against a downstream down for `outage`, until
/// every event is handled; asserts no dead letter, every event handled once, the
/// attempts spent bounded by the breaker, and a recovery within the cool-down.
pub(crate) async fn outage(queue: Queue, events: u64, outage: Duration) {
    let endpoint = enqueuer(&queue);
    for i in 0..events {
        assert_eq!(send(&endpoint, &body(&format!("evt_{i}"))).await.0, 200);
    }
    let cool_down = Duration::from_secs(2);
    let threshold = 3;
    let concurrency = 4;
    let start = Instant::now();
    let up_at = start + outage;
    let seen = Arc::new(Mutex::new(Downstream::default()));
    let breaker = CircuitBreaker::new(threshold, cool_down).with_name("crm");
    let worker = Worker::new(queue.clone(), flaky(up_at, &seen))
        .with_concurrency(concurrency)
        .with_max_attempts(5)
        .with_backoff(Duration::from_millis(100), Duration::from_millis(400))
        .with_poll_interval(Duration::from_millis(20))
        .with_circuit_breaker(breaker.clone());
    let watched = breaker.clone();
    let states: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let noted = Arc::clone(&states);
    let watcher = tokio::spawn(async move {
        loop {
            let state = watched.state().as_str();
            {
                let mut noted = noted.lock().unwrap();
                if noted.last() != Some(&state) {
                    noted.push(state);
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let stats = run_until(worker, Duration::from_secs(60), async || {
        let counts = queue.counts().await.unwrap();
        counts.pending + counts.in_progress + counts.retrying + counts.dead_letters == 0
            || counts.dead_letters > 0
    })
    .await;
    watcher.abort();

    let counts = queue.counts().await.unwrap();
    assert_eq!(counts.dead_letters, 0, "{stats:?}");
    assert_eq!(stats.dead_lettered, 0);
    assert_eq!(stats.handled, events);
    let calls = &seen.lock().unwrap().calls;
    // Every event handled once after the recovery.
    let mut successes: HashMap<&str, usize> = HashMap::new();
    for (id, _, failed) in calls {
        if !failed {
            *successes.entry(id).or_default() += 1;
        }
    }
    assert_eq!(successes.len(), events as usize);
    assert!(successes.values().all(|n| *n == 1), "{successes:?}");
    // Attempts spent against the dead downstream: the failures that opened it
    // (at most the threshold plus the other runs under way), then one probe per
    // cool-down (the outage over the cool-down, plus one for timing).
    let failures = calls.iter().filter(|(_, _, failed)| *failed).count();
    let probes = (outage.as_secs() / cool_down.as_secs()) as usize + 1;
    let bound = threshold as usize + concurrency - 1 + probes;
    assert!(
        failures <= bound,
        "{failures} failed calls, at most {bound} expected"
    );
    assert!(failures >= threshold as usize);
    // Without the breaker the worker would have used up 5 attempts of every
    // event in the outage (backoff at most 400 ms): 200 calls and 40 dead letters.
    assert_eq!(stats.retried, failures as u64);
    // It recovered within a cool-down (and a margin for the loaded machine) of the
    // downstream's recovery.
    let first_success = calls
        .iter()
        .filter(|(_, _, failed)| !failed)
        .map(|(_, at, _)| *at)
        .min()
        .unwrap();
    let recovery = first_success.saturating_duration_since(up_at);
    assert!(
        recovery <= cool_down + Duration::from_secs(2),
        "recovered {recovery:?} after the downstream"
    );
    assert_eq!(breaker.state(), BreakerState::Closed);
    let states = states.lock().unwrap();
    assert_eq!(states.first(), Some(&"closed"));
    assert!(states.contains(&"open"), "{states:?}");
    assert_eq!(states.last(), Some(&"closed"));
}

/// Opens `breaker` (threshold 1) through a receiver's failed delivery: the same
/// state a worker then sees.
pub(crate) async fn breaker_opened(breaker: &CircuitBreaker) {
    let receiver = Receiver::new(
        Verifier::new("whsec_x").unwrap(),
        |_: Event<'static>| async { Err::<(), _>(HandlerError::temporary("down")) },
    )
    .with_circuit_breaker(breaker.clone());
    let b = body("evt_open");
    receiver.receive(&b, [sign(&b, "whsec_x").as_bytes()]).await;
    assert!(matches!(breaker.state(), BreakerState::Open { .. }));
}
