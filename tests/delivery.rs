//! Exactly-once handling over at-least-once delivery, shown by playing NotMeta over
//! real HTTP: a flaky handler, the retry schedule on an injected clock, duplicates
//! (sequential and concurrent), replays; on one receiver and on two replicas sharing
//! a real Redis.

mod harness;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::{App, HttpServer};
use axum::Router;
use harness::client;
use notmeta_test_support::RedisServer;
use notmeta_webhooks::clock::ManualClock;
use notmeta_webhooks::dedup::{IdempotencyStore, MemoryStore, RedisStore};
use notmeta_webhooks::receiver::{Handler, HandlerError, Receiver};
use notmeta_webhooks::{Event, Verifier, sign};

const SECRET: &str = "whsec_delivery";
const EVENTS: usize = 40;
/// NotMeta's attempts: the first, then 1 min, 5 min, 15 min and 1 h after each other.
const ATTEMPT_OFFSETS_MIN: [u64; 5] = [0, 1, 6, 21, 81];
/// 2024-01-01T12:00:00Z, the `created_at` of every event.
const CREATED_AT: u64 = 1_704_110_400;

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

/// What the handler did, per event id.
#[derive(Default)]
struct Ledger {
    calls: Mutex<HashMap<String, usize>>,
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
                let n = calls.entry(id.clone()).or_default();
                *n += 1;
                *n
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
    let app = Router::new().route("/webhooks", notmeta_webhooks::axum::endpoint(receiver));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn serve_actix<H: Handler, S: IdempotencyStore>(receiver: Receiver<H, S>) -> SocketAddr {
    let server = HttpServer::new(move || {
        App::new().route(
            "/webhooks",
            notmeta_webhooks::actix::endpoint(receiver.clone()),
        )
    })
    .workers(2)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    addr
}

fn body(i: usize) -> Vec<u8> {
    format!(
        r#"{{"id":"evt_{i}","type":"message.received","created_at":"2024-01-01T12:00:00Z","data":{{"message":{{"id":"msg_{i}","text":"hola {i}"}},"conversation":{{"id":"conv_1"}}}}}}"#
    )
    .into_bytes()
}

async fn deliver(addr: SocketAddr, i: usize) -> u16 {
    let body = body(i);
    let header = sign(&body, SECRET);
    client::post(
        addr,
        "/webhooks",
        &[("x-notmeta-signature", &header)],
        &body,
    )
    .await
    .status
}

/// Plays NotMeta: every event is delivered, and re-delivered on NotMeta's schedule
/// until answered 2xx; some deliveries are duplicated concurrently (to different
/// replicas when there are several), finished events are delivered again, and
/// finally everything is replayed after the maximum age.
async fn play_notmeta(replicas: &[SocketAddr], clock: &ManualClock, ledger: &Ledger) {
    let start = UNIX_EPOCH + Duration::from_secs(CREATED_AT);
    let mut answered_2xx = [false; EVENTS];
    let mut calls_at_first_2xx: Vec<Option<usize>> = vec![None; EVENTS];
    let calls = |i: usize| {
        ledger
            .calls
            .lock()
            .unwrap()
            .get(&format!("evt_{i}"))
            .copied()
            .unwrap_or(0)
    };

    for (round, minutes) in ATTEMPT_OFFSETS_MIN.iter().enumerate() {
        clock.set(start + Duration::from_secs(minutes * 60));
        let mut deliveries = Vec::new();
        for i in 0..EVENTS {
            let to = replicas[(i + round) % replicas.len()];
            if answered_2xx[i] {
                // NotMeta delivers a finished event again.
                deliveries.push((i, true, tokio::spawn(deliver(to, i))));
            } else {
                deliveries.push((i, false, tokio::spawn(deliver(to, i))));
                if i % 3 == 0 {
                    // A concurrent duplicate, to another replica when there is one.
                    let other = replicas[(i + round + 1) % replicas.len()];
                    deliveries.push((i, false, tokio::spawn(deliver(other, i))));
                }
            }
        }
        for (i, duplicate_of_done, delivery) in deliveries {
            let status = delivery.await.unwrap();
            if duplicate_of_done {
                assert_eq!(status, 200, "evt_{i}: a finished event delivered again");
            }
            assert!(
                [200, 500, 503].contains(&status),
                "evt_{i}: round {round}: unexpected status {status}"
            );
            if status == 200 && !answered_2xx[i] {
                answered_2xx[i] = true;
            }
        }
        for i in 0..EVENTS {
            if answered_2xx[i] && calls_at_first_2xx[i].is_none() {
                calls_at_first_2xx[i] = Some(calls(i));
            }
        }
    }

    // A captured request replayed after the maximum age is refused, handler not run.
    clock.set(start + Duration::from_secs(3 * 60 * 60));
    for i in 0..EVENTS {
        assert_eq!(
            deliver(replicas[i % replicas.len()], i).await,
            400,
            "evt_{i}: replay"
        );
    }

    let successes = ledger.successes.lock().unwrap().clone();
    for i in 0..EVENTS {
        let id = format!("evt_{i}");
        assert!(
            answered_2xx[i],
            "{id} was lost: never answered 2xx in 5 attempts"
        );
        assert_eq!(
            successes.get(&id),
            Some(&1),
            "{id} handled exactly once ({})",
            behaviour(i)
        );
        assert_eq!(
            calls_at_first_2xx[i],
            Some(calls(i)),
            "{id}: the handler ran after the event was answered 2xx"
        );
    }
    // The misbehaving handlers really were exercised.
    let all_calls: usize = (0..EVENTS).map(calls).sum();
    assert!(all_calls > EVENTS + 10, "only {all_calls} handler calls");
}

fn manual_clock() -> ManualClock {
    ManualClock::new(UNIX_EPOCH + Duration::from_secs(CREATED_AT))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_receiver_handles_every_event_exactly_once() {
    let (ledger, clock) = (Arc::new(Ledger::default()), manual_clock());
    let store = MemoryStore::new().with_clock(clock.clone());
    let addr = serve_axum(receiver(&ledger, &clock, store)).await;
    play_notmeta(&[addr], &clock, &ledger).await;
}

#[actix_web::test]
async fn actix_receiver_handles_every_event_exactly_once() {
    let (ledger, clock) = (Arc::new(Ledger::default()), manual_clock());
    let store = MemoryStore::new().with_clock(clock.clone());
    let addr = serve_actix(receiver(&ledger, &clock, store));
    play_notmeta(&[addr], &clock, &ledger).await;
}

#[actix_web::test]
async fn two_replicas_sharing_redis_handle_every_event_exactly_once() {
    let redis = RedisServer::start();
    let (ledger, clock) = (Arc::new(Ledger::default()), manual_clock());
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
