//! The behaviour every adapter must show over real HTTP, written once and run
//! against each adapter's server.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use notmeta_webhooks::receiver::{Handler, HandlerError, Receiver};
use notmeta_webhooks::{Event, EventKind, Verifier, sign};

use notmeta_test_support::client;
use notmeta_test_support::{example_events as fixture_events, signature_vectors};

/// The secret of the `/webhooks`, `/extract` and failure routes.
pub const SECRET: &str = "whsec_adapter_test";

/// The body limit every test server uses (the default).
pub const LIMIT: usize = notmeta_webhooks::DEFAULT_MAX_BODY_SIZE;

/// Events the server-side handlers saw, in order, and which (route, event id) pairs
/// the test has had answered 200 already.
#[derive(Clone, Default)]
pub struct Seen {
    events: Arc<Mutex<Vec<Event<'static>>>>,
    answered: Arc<Mutex<HashSet<(String, String)>>>,
}

impl Seen {
    pub fn push(&self, event: Event<'static>) {
        self.events.lock().unwrap().push(event);
    }
    pub fn len(&self) -> usize {
        self.events.lock().unwrap().len()
    }
    /// The ids of the events seen, in order (one per run of the handler).
    pub fn ids(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.id.to_string())
            .collect()
    }
    pub fn last(&self) -> Option<Event<'static>> {
        self.events.lock().unwrap().last().cloned()
    }
    /// Notes that `path` answered 200 for `id`; returns whether that is new.
    fn first_success(&self, path: &str, id: &str) -> bool {
        self.answered
            .lock()
            .unwrap()
            .insert((path.to_owned(), id.to_owned()))
    }
}

/// An endpoint that records every event it is handed.
pub fn recording(secret: &str, seen: &Seen) -> Receiver<impl Handler + use<>> {
    let seen = seen.clone();
    Receiver::new(
        Verifier::new(secret).unwrap(),
        move |event: Event<'static>| {
            let seen = seen.clone();
            async move {
                seen.push(event);
                Ok::<(), HandlerError>(())
            }
        },
    )
}

/// An endpoint whose handler fails: `"temporary"`, `"permanent"`, or by panicking.
pub fn failing(outcome: &'static str) -> Receiver<impl Handler> {
    Receiver::new(
        Verifier::new(SECRET).unwrap(),
        move |_event: Event<'static>| async move {
            match outcome {
                "temporary" => Err(HandlerError::temporary("database unavailable")),
                "permanent" => Err(HandlerError::permanent("conversation deleted")),
                _ => panic!("handler bug"),
            }
        },
    )
}

/// The distinct secrets of the signature vectors; the server mounts
/// `/s/{index}/webhooks` and `/s/{index}/extract` for each.
pub fn vector_secrets() -> Vec<String> {
    let mut secrets: Vec<String> = Vec::new();
    for v in signature_vectors() {
        if !secrets.contains(&v.secret) {
            secrets.push(v.secret);
        }
    }
    secrets
}

fn signed(body: &[u8]) -> String {
    sign(body, SECRET)
}

/// A `message.received` body of exactly `len` bytes.
pub fn message_of_len(len: usize) -> Vec<u8> {
    let head = r#"{"id":"evt_big","type":"message.received","created_at":"2024-01-01T12:00:00Z","data":{"message":{"id":"msg_1","type":"text","text":""#;
    let tail = r#""},"conversation":{"id":"conv_1"}}}"#;
    let mut body = head.as_bytes().to_vec();
    body.resize(len - tail.len(), b'a');
    body.extend_from_slice(tail.as_bytes());
    assert_eq!(body.len(), len);
    body
}

async fn check_delivery(
    addr: SocketAddr,
    path: &str,
    seen: &Seen,
    body: &[u8],
    headers: &[(&str, &str)],
    expect: &str,
    label: &str,
) {
    let before = seen.len();
    let reply = client::post(addr, path, headers, body).await;
    let parsed = Event::parse_unverified(body).ok();
    match (expect, parsed) {
        ("valid", Some(event)) => {
            assert_eq!(reply.status, 200, "{label} {path}: {}", reply.text());
            let first = seen.first_success(path, event.id.as_str());
            if let Some(challenge) = event.challenge() {
                assert_eq!(reply.body, challenge.as_bytes(), "{label} {path}");
                assert_eq!(
                    seen.len(),
                    before,
                    "{label} {path}: the challenge is not handed on"
                );
            } else if !first && !path.ends_with("extract") {
                // The endpoint de-duplicates on event id; the bare extractor does not.
                assert_eq!(reply.text(), "OK (duplicate)", "{label} {path}");
                assert_eq!(
                    seen.len(),
                    before,
                    "{label} {path}: a duplicate is not handled again"
                );
            } else {
                assert_eq!(
                    seen.len(),
                    before + 1,
                    "{label} {path}: handler ran once ({})",
                    reply.text()
                );
                assert_eq!(seen.last().unwrap(), event.into_owned(), "{label} {path}");
            }
        }
        ("valid", None) => {
            assert_eq!(reply.status, 400, "{label} {path}: signed but not an event");
            assert_eq!(seen.len(), before, "{label} {path}: handler never ran");
        }
        (_, _) => {
            assert_eq!(reply.status, 400, "{label} {path}: {}", reply.text());
            assert_eq!(reply.text(), "Invalid signature", "{label} {path}");
            assert_eq!(seen.len(), before, "{label} {path}: handler never ran");
        }
    }
}

/// Every signature vector through both the endpoint and the extractor.
pub async fn vectors(addr: SocketAddr, seen: &Seen) {
    let secrets = vector_secrets();
    for v in signature_vectors() {
        let index = secrets.iter().position(|s| *s == v.secret).unwrap();
        let headers: Vec<(&str, &str)> = v
            .signature_header
            .iter()
            .map(|h| ("x-notmeta-signature", h.as_str()))
            .collect();
        for route in ["webhooks", "extract"] {
            let path = format!("/s/{index}/{route}");
            check_delivery(addr, &path, seen, &v.body, &headers, &v.expect, &v.name).await;
        }
    }
}

/// Every example event, signed, through both the endpoint and the extractor.
pub async fn example_events(addr: SocketAddr, seen: &Seen) {
    let events = fixture_events();
    assert_eq!(events.len(), 17);
    for (name, body) in events {
        let header = signed(&body);
        for path in ["/webhooks", "/extract"] {
            check_delivery(
                addr,
                path,
                seen,
                &body,
                &[("X-NotMeta-Signature", &header)],
                "valid",
                &name,
            )
            .await;
        }
    }
}

/// A type NotMeta adds later is answered 200 and reaches the handler as `Unknown`.
pub async fn unknown_type(addr: SocketAddr, seen: &Seen) {
    let body = br#"{"id":"evt_new","type":"call.started","created_at":"2024-01-01T12:00:00Z","data":{"call":{"id":"call_1"}}}"#;
    for path in ["/webhooks", "/extract"] {
        let reply = client::post(addr, path, &[("x-notmeta-signature", &signed(body))], body).await;
        assert_eq!(reply.status, 200, "{path}");
        let last = seen.last().unwrap();
        assert_eq!(last.id, "evt_new");
        assert!(
            matches!(&last.kind, EventKind::Unknown { event_type, .. } if event_type == "call.started")
        );
    }
}

/// The header name in any case; the header sent twice is refused.
pub async fn header_forms(addr: SocketAddr, seen: &Seen) {
    let body =
        br#"{"id":"evt_case","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#;
    let header = signed(body);
    for name in [
        "X-NOTMETA-SIGNATURE",
        "x-NotMeta-signature",
        "X-NotMeta-Signature",
    ] {
        for path in ["/webhooks", "/extract"] {
            let request = format!(
                "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{name}: {header}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let mut raw = request.into_bytes();
            raw.extend_from_slice(body);
            let reply = client::raw(addr, &raw).await;
            assert_eq!(reply.status, 200, "{name} {path}: {}", reply.text());
        }
    }
    for path in ["/webhooks", "/extract"] {
        let before = seen.len();
        let reply = client::post(
            addr,
            path,
            &[
                ("x-notmeta-signature", &header),
                ("X-NotMeta-Signature", &header),
            ],
            body,
        )
        .await;
        assert_eq!(reply.status, 400, "{path}: two signature headers");
        assert_eq!(seen.len(), before);
    }
}

/// A body at the limit is accepted; one byte more is 413, with and without
/// `Content-Length`.
pub async fn body_limit(addr: SocketAddr, seen: &Seen) {
    for path in ["/webhooks", "/extract"] {
        let at_limit = message_of_len(LIMIT);
        let header = signed(&at_limit);
        let reply = client::post(addr, path, &[("x-notmeta-signature", &header)], &at_limit).await;
        assert_eq!(reply.status, 200, "{path}: a body exactly at the limit");
        let reply = client::post_chunked(
            addr,
            path,
            &[("x-notmeta-signature", &header)],
            &at_limit,
            64 * 1024,
        )
        .await;
        assert_eq!(
            reply.status, 200,
            "{path}: a chunked body exactly at the limit"
        );

        let over = message_of_len(LIMIT + 1);
        let header = signed(&over);
        let before = seen.len();
        let reply = client::post(addr, path, &[("x-notmeta-signature", &header)], &over).await;
        assert_eq!(reply.status, 413, "{path}: Content-Length one byte over");
        assert_eq!(reply.text(), "Payload too large");
        let reply = client::post_chunked(
            addr,
            path,
            &[("x-notmeta-signature", &header)],
            &over,
            64 * 1024,
        )
        .await;
        assert_eq!(reply.status, 413, "{path}: chunked, one byte over");
        assert_eq!(seen.len(), before, "{path}: handler never ran");
    }
}

/// Handler outcomes: temporary → 503, permanent → 400, panic → 500, and the server
/// keeps serving after a panic.
pub async fn handler_outcomes(addr: SocketAddr, seen: &Seen) {
    let body = br#"{"id":"evt_fail","type":"message.read","created_at":"2024-01-01T12:00:00Z","data":{"message":{"id":"msg_1"}}}"#;
    let header = signed(body);
    for (path, status) in [
        ("/temporary", 503),
        ("/permanent", 400),
        ("/panic", 500),
        ("/panic", 500),
    ] {
        let reply = client::post(addr, path, &[("x-notmeta-signature", &header)], body).await;
        assert_eq!(reply.status, status, "{path}: {}", reply.text());
    }
    let before = seen.len();
    let reply = client::post(addr, "/webhooks", &[("x-notmeta-signature", &header)], body).await;
    assert_eq!(reply.status, 200, "still serving after a panic");
    assert_eq!(seen.len(), before + 1);
}

/// The whole matrix.
pub async fn run_all(addr: SocketAddr, seen: &Seen) {
    vectors(addr, seen).await;
    example_events(addr, seen).await;
    unknown_type(addr, seen).await;
    header_forms(addr, seen).await;
    body_limit(addr, seen).await;
    handler_outcomes(addr, seen).await;
}
