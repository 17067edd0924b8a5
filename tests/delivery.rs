//! Exactly-once handling over at-least-once delivery, shown by playing NotMeta over
//! real HTTP with the test kit's simulator: a flaky handler, the retry schedule on an
//! injected clock, duplicates (sequential and concurrent), replays; on one receiver
//! and on two replicas sharing a real Redis.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use notmeta_test_support::RedisServer;
use notmeta_test_support::http_server;
use notmeta_webhooks::clock::{Clock, ManualClock};
use notmeta_webhooks::dedup::{IdempotencyStore, MemoryStore, RedisStore};
use notmeta_webhooks::receiver::{Handler, HandlerError, Receiver};
use notmeta_webhooks::testing::{Fate, Kind, Simulator, Target, sample};
use notmeta_webhooks::{Event, EventType, Verifier};

const SECRET: &str = "whsec_delivery";
const EVENTS: usize = 40;
/// 2024-01-01T12:00:00Z, where the clock starts.
const START: u64 = 1_704_110_400;

/// How the handler misbehaves for an event, by its index.
fn behaviour(i: usize) -> &'static str {
    match i % 10 {
        1 => "fail-once",
        2 => "fail-twice",
        3 if i < 10 => "fail-thrice",
        4 if i < 10 => "panic-once",
        5 if i < 10 => "slow-once",
        _ => "ok",
    }
}

/// What the handler did, per event id: when (on the injected clock) it was called,
/// and how often it succeeded.
struct Ledger {
    clock: ManualClock,
    calls: Mutex<HashMap<String, Vec<SystemTime>>>,
    successes: Mutex<HashMap<String, usize>>,
}

fn flaky_handler(ledger: Arc<Ledger>) -> impl Handler {
    move |event: Event<'static>| {
        let ledger = Arc::clone(&ledger);
        async move {
            let id = event.id.as_str().to_owned();
            let index: usize = id.trim_start_matches("evt_").parse().unwrap();
            let call = {
                let mut calls = ledger.calls.lock().unwrap();
                let times = calls.entry(id.clone()).or_default();
                times.push(ledger.clock.now());
                times.len()
            };
            match (behaviour(index), call) {
                ("fail-once", 1) | ("fail-twice", 1..=2) | ("fail-thrice", 1..=3) => {
                    return Err(HandlerError::temporary("downstream unavailable"));
                }
                ("panic-once", 1) => panic!("handler bug on {id}"),
                ("slow-once", 1) => tokio::time::sleep(Duration::from_secs(3)).await,
                _ => {}
            }
            *ledger.successes.lock().unwrap().entry(id).or_default() += 1;
            Ok(())
        }
    }
}

fn receiver<S: IdempotencyStore>(
    ledger: &Arc<Ledger>,
    clock: &ManualClock,
    store: S,
) -> Receiver<impl Handler + use<S>, S> {
    Receiver::new(
        Verifier::new(SECRET).unwrap(),
        flaky_handler(Arc::clone(ledger)),
    )
    .with_store(store)
    .with_clock(clock.clone())
    .with_max_event_age(Duration::from_secs(90 * 60))
    .with_handler_timeout(Duration::from_millis(300))
}

async fn serve_axum(receiver: Receiver<impl Handler, impl IdempotencyStore>) -> SocketAddr {
    http_server::axum(Router::new().route("/webhooks", notmeta_webhooks::axum::endpoint(receiver)))
        .await
}

fn serve_actix<H: Handler, S: IdempotencyStore>(receiver: Receiver<H, S>) -> SocketAddr {
    http_server::actix(move || notmeta_webhooks::actix::endpoint(receiver.clone()))
}

/// NotMeta playing against `replicas`: every event delivered, retried on NotMeta's
/// schedule until answered 2xx (attempts alternate between replicas), every attempt
/// sent twice at once (to both replicas when there are two), each event delivered
/// twice more after its 2xx; then every request replayed after the maximum age.
async fn play_notmeta(replicas: &[SocketAddr], clock: &ManualClock, ledger: &Ledger) {
    let targets: Vec<Target> = replicas
        .iter()
        .map(|addr| Target::url(&format!("http://{addr}/webhooks")).unwrap())
        .collect();
    let start = clock.now();
    let bodies: Vec<Vec<u8>> = (0..EVENTS)
        .map(|i| {
            sample(EventType::MessageReceived)
                .id(format!("evt_{i}"))
                .text(&format!("hola {i}"))
                .created_at(start)
                .body()
        })
        .collect();
    let report = Simulator::new(SECRET)
        .with_clock(clock.clone())
        .with_duplicates(2)
        .with_concurrent_duplicates(1)
        .deliver_all(&targets, bodies.clone())
        .await;

    for attempt in report.attempts() {
        let status = attempt.answer.status().map(|s| s.as_u16());
        if attempt.kind == Kind::Duplicate {
            assert_eq!(
                status,
                Some(200),
                "a finished event delivered again:\n{report}"
            );
        }
        assert!(
            matches!(status, Some(200 | 500 | 503)),
            "{} attempt {}: unexpected answer {}",
            attempt.event_id,
            attempt.number,
            attempt.answer
        );
    }

    // A captured request replayed after the maximum age is refused, handler not run.
    clock.advance(Duration::from_secs(3 * 60 * 60) - clock.now().duration_since(start).unwrap());
    let replays = Simulator::new(SECRET)
        .with_schedule([])
        .deliver_all(&targets, bodies)
        .await;
    for (id, fate) in replays.fates() {
        assert_eq!(*fate, Fate::Refused { status: 400 }, "{id}: replay");
    }

    let successes = ledger.successes.lock().unwrap().clone();
    let calls = ledger.calls.lock().unwrap().clone();
    for i in 0..EVENTS {
        let id = format!("evt_{i}");
        let Some(Fate::Delivered { .. }) = report.fate(&id) else {
            panic!("{id} was lost: never answered 2xx in 5 attempts\n{report}");
        };
        assert_eq!(
            successes.get(&id),
            Some(&1),
            "{id} handled exactly once ({})",
            behaviour(i)
        );
        // The handler never ran after the first attempt answered 2xx.
        let delivered_at = report
            .attempts()
            .iter()
            .filter(|a| a.event_id == id && a.answer.status().is_some_and(|s| s.is_success()))
            .map(|a| a.at)
            .min()
            .unwrap();
        for call in &calls[&id] {
            assert!(
                call.duration_since(start).unwrap() <= delivered_at,
                "{id}: the handler ran after the event was answered 2xx: calls {:?}, delivered at {delivered_at:?}\n{report}",
                calls[&id]
                    .iter()
                    .map(|c| c.duration_since(start).unwrap())
                    .collect::<Vec<_>>()
            );
        }
    }
    // The misbehaving handlers really were exercised.
    let all_calls: usize = calls.values().map(Vec::len).sum();
    assert!(all_calls > EVENTS + 10, "only {all_calls} handler calls");
}

fn manual_clock() -> ManualClock {
    ManualClock::new(UNIX_EPOCH + Duration::from_secs(START))
}

fn ledger(clock: &ManualClock) -> Arc<Ledger> {
    Arc::new(Ledger {
        clock: clock.clone(),
        calls: Mutex::default(),
        successes: Mutex::default(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_receiver_handles_every_event_exactly_once() {
    let clock = manual_clock();
    let ledger = ledger(&clock);
    let store = MemoryStore::new().with_clock(clock.clone());
    let addr = serve_axum(receiver(&ledger, &clock, store)).await;
    play_notmeta(&[addr], &clock, &ledger).await;
}

#[actix_web::test]
async fn actix_receiver_handles_every_event_exactly_once() {
    let clock = manual_clock();
    let ledger = ledger(&clock);
    let store = MemoryStore::new().with_clock(clock.clone());
    let addr = serve_actix(receiver(&ledger, &clock, store));
    play_notmeta(&[addr], &clock, &ledger).await;
}

#[actix_web::test]
async fn two_replicas_sharing_redis_handle_every_event_exactly_once() {
    let redis = RedisServer::start();
    let clock = manual_clock();
    let ledger = ledger(&clock);
    let namespace = format!(
        "test-{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let store = || async {
        RedisStore::connect(&redis.url())
            .await
            .unwrap()
            .with_namespace(namespace.clone())
    };
    // Two independent receivers (one per framework), as two replicas would be.
    let axum = serve_axum(receiver(&ledger, &clock, store().await)).await;
    let actix = serve_actix(receiver(&ledger, &clock, store().await));
    play_notmeta(&[axum, actix], &clock, &ledger).await;
}
