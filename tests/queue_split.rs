//! One endpoint verified once, some events inline and the rest queued (`queue::Split`),
//! over real HTTP on 127.0.0.1 (axum) with a real `redis-server`.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use common::harness::{SECRET, Seen, failing, recording};
use notmeta_test_support::{RedisServer, client};
use notmeta_webhooks::axum::endpoint;
use notmeta_webhooks::queue::{Enqueuer, Queue, Route, Split, Worker};
use notmeta_webhooks::receiver::{DeliveryReport, HandlerError, Outcome, Receiver};
use notmeta_webhooks::{Event, EventType, Verifier, sign};

fn enqueuer(queue: &Queue, secret: &str) -> Enqueuer {
    Enqueuer::new(Verifier::new(secret).unwrap(), queue.clone())
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A valid event of `type_` with this id.
fn body(id: &str, type_: &str) -> Vec<u8> {
    let data = if type_.starts_with("message.") {
        r#"{"message":{"id":"msg_1"},"conversation":{"id":"conv_1"}}"#
    } else {
        "{}"
    };
    format!(r#"{{"id":"{id}","type":"{type_}","created_at":"2024-01-01T12:00:00Z","data":{data}}}"#)
        .into_bytes()
}

async fn post(addr: SocketAddr, body: &[u8]) -> (u16, String) {
    let header = sign(body, SECRET);
    let reply = client::post(addr, "/", &[("x-notmeta-signature", &header)], body).await;
    (reply.status, reply.text())
}

/// Routed inline, a split meets the whole wire contract the inline receiver does:
/// every signature vector, every example event, header forms, the body limit, the
/// handler's outcomes, duplicates.
#[tokio::test]
async fn a_split_routing_inline_meets_the_wire_contract() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    let seen = Seen::default();
    let inline = |receiver, secret: &str| {
        let split = Split::new(receiver, enqueuer(&queue, secret)).route_with(|_| Route::Inline);
        endpoint(split)
    };
    let mut app = Router::new()
        .route("/webhooks", inline(recording(SECRET, &seen), SECRET))
        // The harness expects no de-duplication on its `extract` routes.
        .route(
            "/extract",
            inline(recording(SECRET, &seen).without_dedup(), SECRET),
        )
        .route(
            "/temporary",
            endpoint(
                Split::new(failing("temporary"), enqueuer(&queue, SECRET))
                    .route_with(|_| Route::Inline),
            ),
        )
        .route(
            "/permanent",
            endpoint(
                Split::new(failing("permanent"), enqueuer(&queue, SECRET))
                    .route_with(|_| Route::Inline),
            ),
        )
        .route(
            "/panic",
            endpoint(
                Split::new(failing("panic"), enqueuer(&queue, SECRET))
                    .route_with(|_| Route::Inline),
            ),
        );
    for (i, secret) in common::harness::vector_secrets().iter().enumerate() {
        app = app
            .route(
                &format!("/s/{i}/webhooks"),
                inline(recording(secret, &seen), secret),
            )
            .route(
                &format!("/s/{i}/extract"),
                inline(recording(secret, &seen).without_dedup(), secret),
            );
    }
    let addr = serve(app).await;
    common::harness::run_all(addr, &seen).await;
    assert_eq!(
        queue.counts().await.unwrap().pending,
        0,
        "nothing was queued"
    );
}

/// The routing state of one test: what each side saw.
#[derive(Default, Clone)]
struct Sides {
    inline: Seen,
    inline_reports: Arc<Mutex<Vec<Outcome>>>,
    queue_reports: Arc<Mutex<Vec<Outcome>>>,
}

fn split(queue: &Queue, sides: &Sides) -> Split<impl notmeta_webhooks::receiver::Handler + use<>> {
    let reports = Arc::clone(&sides.inline_reports);
    let receiver = recording(SECRET, &sides.inline)
        .on_outcome(move |r: &DeliveryReport<'_>| reports.lock().unwrap().push(r.outcome));
    let reports = Arc::clone(&sides.queue_reports);
    let enqueuer = enqueuer(queue, SECRET)
        .on_outcome(move |r: &DeliveryReport<'_>| reports.lock().unwrap().push(r.outcome));
    Split::new(receiver, enqueuer).inline([EventType::UserOnline, EventType::UserOffline])
}

/// Inline types run before the answer, the others are queued and run by a worker;
/// each side de-duplicates its own events, the challenge is answered whichever
/// side it is routed to, each delivery is reported once, by the side that took it,
/// and forged requests by the receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_go_to_their_side_and_keep_its_guarantees() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    let sides = Sides::default();
    let addr = serve(Router::new().route("/", endpoint(split(&queue, &sides)))).await;

    // Inline: handled before the answer.
    assert_eq!(
        post(addr, &body("evt_on", "user.online")).await,
        (200, "OK".into())
    );
    assert_eq!(sides.inline.ids(), ["evt_on"]);
    assert_eq!(
        post(addr, &body("evt_on", "user.online")).await,
        (200, "OK (duplicate)".into())
    );
    assert_eq!(sides.inline.ids(), ["evt_on"]);

    // Queued: answered once Redis has it; the handler has not run.
    for id in ["evt_m1", "evt_m2"] {
        assert_eq!(
            post(addr, &body(id, "message.received")).await,
            (200, "OK".into())
        );
    }
    assert_eq!(
        post(addr, &body("evt_m1", "message.received")).await,
        (200, "OK (duplicate)".into())
    );
    // An unknown type is queued too (only the listed types are inline).
    assert_eq!(
        post(addr, &body("evt_new", "call.started")).await,
        (200, "OK".into())
    );
    assert_eq!(queue.counts().await.unwrap().pending, 3);
    assert_eq!(sides.inline.ids(), ["evt_on"]);

    // The challenge, routed to the queue side by its type, is answered, not queued.
    let challenge = br#"{"id":"evt_c","type":"webhook.verified","created_at":"2024-01-01T12:00:00Z","data":{"webhook_id":"wh_1","challenge":"ch_42"}}"#;
    assert_eq!(post(addr, challenge).await, (200, "ch_42".into()));
    assert_eq!(queue.counts().await.unwrap().pending, 3);

    // A forged request: refused, reported by the receiver only.
    let forged = body("evt_x", "message.received");
    let header = sign(&forged, "whsec_wrong");
    let reply = client::post(addr, "/", &[("x-notmeta-signature", &header)], &forged).await;
    assert_eq!(reply.status, 400);

    assert_eq!(
        *sides.inline_reports.lock().unwrap(),
        [
            Outcome::Handled,
            Outcome::Duplicate,
            Outcome::Rejected(notmeta_webhooks::ErrorKind::SignatureMismatch)
        ]
    );
    assert_eq!(
        *sides.queue_reports.lock().unwrap(),
        [
            Outcome::Queued,
            Outcome::Queued,
            Outcome::Duplicate,
            Outcome::Queued,
            Outcome::Challenge
        ]
    );

    // The worker runs the queued ones, once each.
    let ran = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&ran);
    let worker = Worker::new(queue.clone(), move |event: Event<'static>| {
        let seen = Arc::clone(&seen);
        async move {
            seen.lock().unwrap().push(event.id.to_string());
            Ok::<(), HandlerError>(())
        }
    })
    .with_poll_interval(Duration::from_millis(20));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    for _ in 0..500 {
        if ran.lock().unwrap().len() >= 3 && queue.counts().await.unwrap().pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    let mut ran = ran.lock().unwrap().clone();
    ran.sort();
    assert_eq!(ran, ["evt_m1", "evt_m2", "evt_new"]);
}

/// The queue side's failures are its own: Redis gone answers the queued types 503
/// (NotMeta retries), while the inline types are still handled.
#[tokio::test]
async fn a_queue_down_refuses_only_the_queued_events() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    let sides = Sides::default();
    let addr = serve(Router::new().route("/", endpoint(split(&queue, &sides)))).await;
    drop(server);
    let (status, _) = post(addr, &body("evt_m", "message.received")).await;
    assert_eq!(status, 503);
    assert_eq!(
        post(addr, &body("evt_on", "user.online")).await,
        (200, "OK".into())
    );
    assert_eq!(sides.inline.ids(), ["evt_on"]);
    assert_eq!(
        *sides.queue_reports.lock().unwrap(),
        [Outcome::StoreUnavailable]
    );
}

/// The inline side's failures are its own too: a temporary failure is 503 and the
/// event is not queued; a route function sees the parsed event, and one that
/// panics is answered 500 and reported, and the endpoint keeps serving.
#[tokio::test]
async fn route_functions_and_inline_failures() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    let routed = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&routed);
    let reports = Arc::new(Mutex::new(Vec::new()));
    let hook = Arc::clone(&reports);
    let split = Split::new(
        failing("temporary").on_outcome(move |r: &DeliveryReport<'_>| {
            hook.lock()
                .unwrap()
                .push((r.event_id.map(str::to_owned), r.outcome));
        }),
        enqueuer(&queue, SECRET),
    )
    .route_with(move |event: &Event<'_>| {
        counted.fetch_add(1, Ordering::Relaxed);
        match event.id.as_str() {
            "evt_boom" => panic!("a route function that panics"),
            id if id.starts_with("evt_q") => Route::Queue,
            _ => Route::Inline,
        }
    });
    let addr = serve(Router::new().route("/", endpoint(split))).await;

    let (status, _) = post(addr, &body("evt_i", "message.received")).await;
    assert_eq!(status, 503, "the inline handler failed temporarily");
    assert_eq!(
        queue.counts().await.unwrap().pending,
        0,
        "and the event was not queued"
    );
    assert_eq!(
        post(addr, &body("evt_q1", "message.received")).await,
        (200, "OK".into())
    );
    assert_eq!(queue.counts().await.unwrap().pending, 1);
    let (status, _) = post(addr, &body("evt_boom", "message.received")).await;
    assert_eq!(status, 500);
    assert_eq!(
        post(addr, &body("evt_q2", "message.received")).await,
        (200, "OK".into())
    );
    // Forged requests never reach the route function.
    let forged = body("evt_q3", "message.received");
    let header = sign(&forged, "whsec_wrong");
    let reply = client::post(addr, "/", &[("x-notmeta-signature", &header)], &forged).await;
    assert_eq!(reply.status, 400);
    assert_eq!(routed.load(Ordering::Relaxed), 4);
    let reports = reports.lock().unwrap().clone();
    assert_eq!(
        reports[0],
        (Some("evt_i".to_owned()), Outcome::TemporaryFailure)
    );
    assert_eq!(reports[1], (Some("evt_boom".to_owned()), Outcome::Panicked));
    assert_eq!(reports.len(), 3);
}

/// The receiver's verifier decides: a split whose enqueuer was built with another
/// secret still verifies with the receiver's, and its body limit and read time
/// limit are the receiver's.
#[tokio::test]
async fn the_receivers_verifier_and_limits_apply() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    let receiver = Receiver::new(
        Verifier::builder()
            .secret(SECRET)
            .max_body_size(256)
            .build()
            .unwrap(),
        |_: Event<'static>| async { Ok::<(), HandlerError>(()) },
    );
    let split = Split::new(receiver, enqueuer(&queue, "whsec_other"));
    let addr = serve(Router::new().route("/", endpoint(split))).await;
    assert_eq!(
        post(addr, &body("evt_q", "message.received")).await,
        (200, "OK".into())
    );
    assert_eq!(queue.counts().await.unwrap().pending, 1);
    let mut big = body("evt_big", "message.received");
    big.resize(300, b' ');
    let (status, _) = post(addr, &big).await;
    assert_eq!(status, 413);
}
