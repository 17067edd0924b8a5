//! An inline receiver's circuit breaker over real HTTP (axum on loopback): 503 with
//! `Retry-After` while it is open, before the handler or the store is touched; one
//! probe once the cool-down has passed; 200 after the recovery; and the outcome
//! hook sees each refusal.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use notmeta_test_support::http_server;
use notmeta_webhooks::breaker::{BreakerState, CircuitBreaker};
use notmeta_webhooks::receiver::{DeliveryReport, HandlerError, Outcome, Receiver};
use notmeta_webhooks::{Event, Verifier, sign};

const SECRET: &str = "whsec_breaker";

/// What came back: the status, the `Retry-After` header and the body.
#[derive(Debug, PartialEq, Eq)]
struct Reply {
    status: u16,
    retry_after: Option<String>,
    body: String,
}

async fn post(addr: SocketAddr, id: &str) -> Reply {
    let body = format!(
        r#"{{"id":"{id}","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{{}}}}"#
    );
    let request = http::Request::post(format!("http://{addr}/webhooks"))
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .header("x-notmeta-signature", sign(body.as_bytes(), SECRET))
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    driver.abort();
    Reply {
        status,
        retry_after,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_answers_503_at_once_then_one_probe_then_200() {
    let down = Arc::new(AtomicBool::new(true));
    let calls = Arc::new(AtomicUsize::new(0));
    let outcomes: Arc<Mutex<Vec<(String, Outcome)>>> = Arc::default();
    let breaker = CircuitBreaker::new(2, Duration::from_secs(2)).with_name("crm");
    let receiver = {
        let (down, calls) = (Arc::clone(&down), Arc::clone(&calls));
        let seen = Arc::clone(&outcomes);
        Receiver::new(Verifier::new(SECRET).unwrap(), move |_: Event<'static>| {
            calls.fetch_add(1, Ordering::SeqCst);
            let down = down.load(Ordering::SeqCst);
            async move {
                // Long enough for a second delivery to arrive while the probe runs.
                tokio::time::sleep(Duration::from_millis(600)).await;
                if down {
                    Err(HandlerError::temporary("the CRM is down"))
                } else {
                    Ok(())
                }
            }
        })
        .on_outcome(move |report: &DeliveryReport<'_>| {
            let id = report.event_id.unwrap_or_default().to_owned();
            seen.lock().unwrap().push((id, report.outcome));
        })
        .with_circuit_breaker(breaker.clone())
    };
    let app = axum::Router::new().route("/webhooks", notmeta_webhooks::axum::endpoint(receiver));
    let addr = http_server::axum(app).await;

    // Two temporary failures open it.
    for id in ["evt_1", "evt_2"] {
        let reply = post(addr, id).await;
        assert_eq!((reply.status, reply.retry_after), (503, None));
    }
    let opened = Instant::now();
    assert!(matches!(breaker.state(), BreakerState::Open { .. }));
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // Open: 503 at once, with the cool-down left, and the handler does not run.
    let asked = Instant::now();
    let refused = post(addr, "evt_3").await;
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "answered at once"
    );
    assert_eq!(refused.status, 503);
    assert_eq!(refused.body, "Temporarily unavailable, retry later");
    let wait: u64 = refused.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "Retry-After: {wait}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // Nothing was claimed: a retry of the refused event runs it later (below).

    // The downstream recovers; after the cool-down one delivery probes, and a
    // second one that arrives while it runs is refused.
    down.store(false, Ordering::SeqCst);
    let deadline = opened + Duration::from_secs(10);
    while breaker.state() != BreakerState::HalfOpen {
        assert!(Instant::now() < deadline, "never half-open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let probe = tokio::spawn(post(addr, "evt_3"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let beside = post(addr, "evt_4").await;
    assert_eq!(beside.status, 503);
    assert!(beside.retry_after.is_some());
    assert_eq!(probe.await.unwrap().status, 200);
    assert_eq!(breaker.state(), BreakerState::Closed);
    // Closed: everything flows, the refused events included.
    for id in ["evt_4", "evt_1", "evt_2"] {
        assert_eq!(post(addr, id).await.status, 200, "{id}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 6);

    let outcomes = outcomes.lock().unwrap().clone();
    let refusals: Vec<&str> = outcomes
        .iter()
        .filter(|(_, o)| *o == Outcome::CircuitOpen)
        .map(|(id, _)| id.as_str())
        .collect();
    assert_eq!(refusals, ["evt_3", "evt_4"]);
    assert_eq!(Outcome::CircuitOpen.as_str(), "circuit_open");
    let handled = outcomes
        .iter()
        .filter(|(_, o)| *o == Outcome::Handled)
        .count();
    assert_eq!(handled, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_never_open_it_and_a_challenge_passes_while_open() {
    let breaker = CircuitBreaker::new(1, Duration::from_secs(60));
    let receiver = Receiver::new(
        Verifier::new(SECRET).unwrap(),
        |event: Event<'static>| async move {
            match event.id.as_str() {
                id if id.starts_with("evt_bad") => Err(HandlerError::permanent("no such customer")),
                _ => Err(HandlerError::temporary("down")),
            }
        },
    )
    .with_circuit_breaker(breaker.clone());
    let app = axum::Router::new().route("/webhooks", notmeta_webhooks::axum::endpoint(receiver));
    let addr = http_server::axum(app).await;
    for i in 0..5 {
        assert_eq!(post(addr, &format!("evt_bad{i}")).await.status, 400);
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(post(addr, "evt_down").await.status, 503);
    assert!(matches!(breaker.state(), BreakerState::Open { .. }));
    // The challenge is answered whatever the breaker says.
    let challenge = br#"{"id":"evt_verify","type":"webhook.verified","created_at":"2024-01-01T00:00:00Z","data":{"webhook_id":"wh_1","challenge":"c123"}}"#;
    let client = notmeta_test_support::client::post(
        addr,
        "/webhooks",
        &[("x-notmeta-signature", &sign(challenge, SECRET))],
        challenge,
    )
    .await;
    assert_eq!((client.status, client.text()), (200, "c123".to_owned()));
}
