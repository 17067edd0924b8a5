//! The management client over real HTTP on 127.0.0.1, against a small stand-in for
//! NotMeta's API that records every request and keeps the webhooks it creates.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use notmeta_webhooks::client::{
    Client, ClientBuilder, CreateWebhook, Ensured, ErrorKind, WebhookList,
};
use notmeta_webhooks::{EventType, sign};
use serde_json::{Value, json};

const TOKEN: &str = "tok_test_5f3a9c";

/// The documented answer to `POST /webhooks`, plus one field NotMeta may add.
const DOCUMENTED_CREATED: &str = r#"{
  "id" : "wh_123456789" ,
  "url" : "https://tu-dominio.com/webhook" ,
  "events" : [ "message.received" , "conversation.assigned" ],
  "secret" : "whsec_abc123" ,
  "created_at" : "2024-01-01T00:00:00Z" ,
  "status" : "active",
  "delivery_region" : "eu-west"
}"#;

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Bytes,
    at: Instant,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A canned answer, served before the stand-in's own behaviour.
struct Canned {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn canned(status: u16, body: impl Into<String>) -> Canned {
    Canned {
        status,
        headers: Vec::new(),
        body: body.into(),
    }
}

#[derive(Default)]
struct FakeState {
    seen: Vec<Seen>,
    canned: VecDeque<Canned>,
    webhooks: Vec<Value>,
    /// Creations that succeed but are answered 503, as a crash after the write would.
    fail_after_create: usize,
    hang: bool,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<FakeState>>);

impl Fake {
    fn then(&self, answer: Canned) -> &Self {
        self.0.lock().unwrap().canned.push_back(answer);
        self
    }
    fn seen(&self) -> Vec<Seen> {
        self.0.lock().unwrap().seen.clone()
    }
    fn webhook_count(&self) -> usize {
        self.0.lock().unwrap().webhooks.len()
    }
    fn set(&self, f: impl FnOnce(&mut FakeState)) {
        f(&mut self.0.lock().unwrap());
    }

    async fn serve(&self) -> SocketAddr {
        let app = Router::new().fallback(answer).with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }
}

async fn answer(
    State(fake): State<Fake>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    let hang = {
        let mut state = fake.0.lock().unwrap();
        state.seen.push(Seen {
            method: method.clone(),
            path: uri.path().to_owned(),
            authorization: header("authorization"),
            content_type: header("content-type"),
            body: body.clone(),
            at: Instant::now(),
        });
        state.hang
    };
    if hang {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    let mut state = fake.0.lock().unwrap();
    if let Some(c) = state.canned.pop_front() {
        let mut response = (StatusCode::from_u16(c.status).unwrap(), c.body).into_response();
        for (name, value) in c.headers {
            response.headers_mut().insert(name, value.parse().unwrap());
        }
        return response;
    }
    if header("authorization").as_deref() != Some(&format!("Bearer {TOKEN}")) {
        return json_answer(401, json!({"error": {"code": "unauthorized"}}));
    }
    let path: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    match (method, path.as_slice()) {
        (Method::POST, ["v1", "webhooks"]) => {
            let request: Value = serde_json::from_slice(&body).unwrap();
            let n = state.webhooks.len() + 1;
            let webhook = json!({
                "id": format!("wh_{n}"),
                "url": request["url"],
                "events": request["events"],
                "secret": format!("whsec_generated_{n}"),
                "created_at": "2024-01-01T00:00:00Z",
                "status": "active",
            });
            state.webhooks.push(webhook.clone());
            if state.fail_after_create > 0 {
                state.fail_after_create -= 1;
                return json_answer(503, json!({"error": "try again"}));
            }
            json_answer(201, webhook)
        }
        (Method::GET, ["v1", "webhooks"]) => {
            let listed: Vec<Value> = state
                .webhooks
                .iter()
                .map(|w| {
                    let mut w = w.clone();
                    w.as_object_mut().unwrap().remove("secret");
                    w
                })
                .collect();
            json_answer(200, json!({"data": listed, "has_more": false}))
        }
        _ => json_answer(404, json!({"error": {"code": "not_found"}})),
    }
}

fn json_answer(status: u16, body: Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn builder(addr: SocketAddr) -> ClientBuilder {
    Client::builder(TOKEN)
        .base_url(format!("http://{addr}/v1/"))
        .initial_backoff(Duration::from_millis(10))
        .timeout(Duration::from_secs(5))
}

fn request() -> CreateWebhook {
    CreateWebhook::new(
        "https://tu-dominio.com/webhook",
        [EventType::MessageReceived, EventType::ConversationAssigned],
        "tu_secret_webhook",
    )
}

fn assert_authorised(seen: &Seen) {
    assert_eq!(
        seen.authorization.as_deref(),
        Some("Bearer tok_test_5f3a9c")
    );
}

#[tokio::test]
async fn create_sends_the_documented_call_and_reads_the_documented_answer() {
    let fake = Fake::default();
    fake.then(canned(201, DOCUMENTED_CREATED));
    let client = builder(fake.serve().await).build().unwrap();

    let webhook = client.create_webhook(&request()).await.unwrap();

    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, Method::POST);
    assert_eq!(seen[0].path, "/v1/webhooks");
    assert_authorised(&seen[0]);
    assert_eq!(seen[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(
        seen[0].json(),
        json!({
            "url": "https://tu-dominio.com/webhook",
            "events": ["message.received", "conversation.assigned"],
            "secret": "tu_secret_webhook",
        })
    );

    assert_eq!(webhook.id, "wh_123456789");
    assert_eq!(webhook.url, "https://tu-dominio.com/webhook");
    assert_eq!(
        webhook.events,
        ["message.received", "conversation.assigned"]
    );
    assert_eq!(
        webhook.event_types(),
        [EventType::MessageReceived, EventType::ConversationAssigned]
    );
    assert_eq!(webhook.status.as_deref(), Some("active"));
    assert!(webhook.is_active());
    assert_eq!(
        webhook.created_at.unwrap().to_string(),
        "2024-01-01T00:00:00Z"
    );
    assert_eq!(webhook.extra["delivery_region"], "eu-west");
    assert_eq!(webhook.extra.len(), 1);

    // The returned secret verifies what NotMeta signs with it, and only that.
    let body =
        br#"{"id":"evt_1","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#;
    let verifier = webhook.verifier().unwrap();
    assert!(verifier.verify(body, &sign(body, "whsec_abc123")).is_ok());
    assert!(
        verifier
            .verify(body, &sign(body, "tu_secret_webhook"))
            .is_err()
    );
}

#[tokio::test]
async fn an_unknown_event_type_in_an_answer_is_kept() {
    let fake = Fake::default();
    fake.then(canned(
        201,
        r#"{"id":"wh_1","url":"https://a.example/h","events":["message.received","call.started"],"secret":"whsec_x"}"#,
    ));
    let client = builder(fake.serve().await).build().unwrap();
    let webhook = client.create_webhook(&request()).await.unwrap();
    assert_eq!(webhook.event_types(), [EventType::MessageReceived]);
    assert_eq!(
        webhook.unknown_events().collect::<Vec<_>>(),
        ["call.started"]
    );
    assert_eq!((webhook.status, webhook.created_at), (None, None));
}

#[tokio::test]
async fn the_list_is_read_bare_or_wrapped_with_extra_fields_kept() {
    let fake = Fake::default();
    fake.then(canned(
        200,
        r#"[{"id":"wh_1","url":"https://a.example/h","events":["message.received"],
             "status":"active","created_at":"2024-02-03T04:05:06Z","last_delivery_at":"2024-02-04T00:00:00Z"}]"#,
    ))
    .then(canned(
        200,
        r#"{"webhooks":[{"id":"wh_2","status":"disabled","failures":{"count":3}}],"next_cursor":"c_2"}"#,
    ));
    let client = builder(fake.serve().await).build().unwrap();

    let bare = client.list_webhooks().await.unwrap();
    let wrapped = client.list_webhooks().await.unwrap();

    for seen in fake.seen() {
        assert_eq!(
            (seen.method.as_str(), seen.path.as_str()),
            ("GET", "/v1/webhooks")
        );
        assert_authorised(&seen);
        assert!(seen.body.is_empty());
    }
    let w = &bare.webhooks[0];
    assert_eq!(bare.webhooks.len(), 1);
    assert_eq!(w.id.as_deref(), Some("wh_1"));
    assert_eq!(w.url.as_deref(), Some("https://a.example/h"));
    assert_eq!(w.event_types(), [EventType::MessageReceived]);
    assert_eq!(w.created_at.unwrap().unix_timestamp(), 1_706_933_106);
    assert_eq!(w.extra["last_delivery_at"], "2024-02-04T00:00:00Z");
    assert!(bare.extra.is_empty());

    let w = &wrapped.webhooks[0];
    assert_eq!(w.id.as_deref(), Some("wh_2"));
    assert!(!w.is_active());
    assert_eq!((w.url.as_deref(), w.events.as_deref()), (None, None));
    assert_eq!(w.extra["failures"]["count"], 3);
    assert_eq!(wrapped.extra["next_cursor"], "c_2");
    assert_eq!(wrapped.to_string(), "wh_2  disabled  -  -\n");
}

#[tokio::test]
async fn logs_and_stats() {
    let fake = Fake::default();
    fake.then(canned(
        200,
        r#"{"data":[{"id":"log_1","event_id":"evt_9","event_type":"message.received","status":"failed",
                     "status_code":500,"timestamp":"2024-01-01T12:00:01Z","response_body":"oops"}],"total":1}"#,
    ))
    .then(canned(
        200,
        r#"{"total_deliveries":10,"successful_deliveries":9,"success_rate":0.9,"period":"24h"}"#,
    ));
    let client = builder(fake.serve().await).build().unwrap();

    let logs = client.webhook_logs("wh_123456789").await.unwrap();
    let stats = client.webhook_stats("wh_123456789").await.unwrap();

    let seen = fake.seen();
    assert_eq!(seen[0].path, "/v1/webhooks/wh_123456789/logs");
    assert_eq!(seen[1].path, "/v1/webhooks/wh_123456789/stats");
    for s in &seen {
        assert_eq!(s.method, Method::GET);
        assert_authorised(s);
    }

    let entry = &logs.entries[0];
    assert_eq!(entry.id.as_deref(), Some("log_1"));
    assert_eq!(entry.event_id.as_deref(), Some("evt_9"));
    assert_eq!(entry.event_type(), Some(EventType::MessageReceived));
    assert_eq!(entry.status.as_deref(), Some("failed"));
    assert_eq!(entry.status_code, Some(500));
    assert_eq!(
        entry.created_at.unwrap().to_string(),
        "2024-01-01T12:00:01Z"
    );
    assert_eq!(entry.extra["response_body"], "oops");
    assert_eq!(logs.extra["total"], 1);

    assert_eq!(stats.count("total_deliveries"), Some(10));
    assert_eq!(stats.count("successful_deliveries"), Some(9));
    assert_eq!(stats.number("success_rate"), Some(0.9));
    assert_eq!(stats.fields["period"], "24h");
}

#[tokio::test]
async fn an_id_cannot_leave_its_path_segment() {
    let fake = Fake::default();
    fake.then(canned(200, "{}"));
    let client = builder(fake.serve().await).build().unwrap();
    client.webhook_stats("wh_1/../../x?y").await.unwrap();
    assert_eq!(
        fake.seen()[0].path,
        "/v1/webhooks/wh_1%2F..%2F..%2Fx%3Fy/stats"
    );
    let err = client.webhook_logs("").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert_eq!(fake.seen().len(), 1);
}

#[tokio::test]
async fn client_errors_are_typed_carry_the_body_and_are_not_retried() {
    for (status, body) in [
        (
            401,
            format!(r#"{{"error":{{"code":"unauthorized","message":"bad token {TOKEN}"}}}}"#),
        ),
        (
            404,
            r#"{"error":{"code":"not_found","message":"no webhook wh_x"}}"#.to_owned(),
        ),
        (
            422,
            r#"{"error":{"code":"invalid_url","message":"url must be https"}}"#.to_owned(),
        ),
    ] {
        let fake = Fake::default();
        fake.then(canned(status, body.clone()));
        let client = builder(fake.serve().await).max_retries(3).build().unwrap();

        let err = if status == 422 {
            client.create_webhook(&request()).await.unwrap_err()
        } else {
            client.webhook_logs("wh_x").await.unwrap_err()
        };

        assert_eq!(fake.seen().len(), 1, "{status} must not be retried");
        assert_eq!(err.kind(), ErrorKind::Status);
        assert_eq!(err.status().map(|s| s.as_u16()), Some(status));
        assert_eq!(err.attempts(), 1);
        let expected = body.replace(TOKEN, "<redacted>");
        assert_eq!(err.body(), Some(expected.as_str()));
        assert!(err.to_string().contains(&expected), "{err}");
        assert!(err.to_string().contains(&status.to_string()), "{err}");
        assert!(!format!("{err} {err:?}").contains(TOKEN));
    }
}

#[tokio::test]
async fn a_long_error_body_is_cut() {
    let fake = Fake::default();
    fake.then(canned(400, "x".repeat(100_000)));
    let client = builder(fake.serve().await).build().unwrap();
    let err = client.list_webhooks().await.unwrap_err();
    let body = err.body().unwrap();
    assert!(body.len() < 5_000, "{}", body.len());
    assert!(body.ends_with("(100000 bytes in all)"));
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after() {
    let fake = Fake::default();
    fake.then(Canned {
        status: 429,
        headers: vec![("retry-after", "1".to_owned())],
        body: r#"{"error":"slow down"}"#.to_owned(),
    });
    let client = builder(fake.serve().await).build().unwrap();

    let list = client.list_webhooks().await.unwrap();

    assert!(list.webhooks.is_empty());
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    let waited = seen[1].at - seen[0].at;
    assert!(
        waited >= Duration::from_millis(990) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[tokio::test]
async fn a_retry_after_date_is_honoured_and_every_wait_is_capped() {
    let fake = Fake::default();
    let in_three_seconds = httpdate_in(Duration::from_secs(3));
    fake.then(Canned {
        status: 429,
        headers: vec![("retry-after", in_three_seconds)],
        body: String::new(),
    })
    .then(Canned {
        status: 503,
        headers: vec![("retry-after", "3600".to_owned())],
        body: String::new(),
    });
    let client = builder(fake.serve().await)
        .max_backoff(Duration::from_millis(1500))
        .build()
        .unwrap();

    client.list_webhooks().await.unwrap();

    let seen = fake.seen();
    assert_eq!(seen.len(), 3);
    // The date has one-second resolution: 2 s to 3 s away, so the cap of 1.5 s waited
    // (a date that failed to parse would have meant the 10 ms backoff).
    let first = seen[1].at - seen[0].at;
    assert!(
        first >= Duration::from_millis(1200) && first < Duration::from_secs(3),
        "{first:?}"
    );
    // An hour asked for, the cap waited.
    let second = seen[2].at - seen[1].at;
    assert!(
        second >= Duration::from_millis(1490) && second < Duration::from_secs(3),
        "{second:?}"
    );
}

fn httpdate_in(wait: Duration) -> String {
    // RFC 9110 IMF-fixdate, written by hand to keep the test's dependencies as they are.
    let at = time::OffsetDateTime::from(SystemTime::now() + wait);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        &at.weekday().to_string()[..3],
        at.day(),
        &at.month().to_string()[..3],
        at.year(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

#[tokio::test]
async fn server_errors_are_retried_for_reads_until_the_limit() {
    let fake = Fake::default();
    fake.then(canned(503, "busy"))
        .then(canned(502, "bad gateway"));
    let client = builder(fake.serve().await).max_retries(2).build().unwrap();
    let list = client.list_webhooks().await.unwrap();
    assert!(list.webhooks.is_empty());
    assert_eq!(fake.seen().len(), 3);

    let fake = Fake::default();
    for _ in 0..3 {
        fake.then(canned(503, "still busy"));
    }
    let client = builder(fake.serve().await).max_retries(2).build().unwrap();
    let err = client.webhook_stats("wh_1").await.unwrap_err();
    assert_eq!(fake.seen().len(), 3);
    assert_eq!(err.kind(), ErrorKind::Status);
    assert_eq!(err.status().map(|s| s.as_u16()), Some(503));
    assert_eq!(err.body(), Some("still busy"));
    assert_eq!(err.attempts(), 3);
}

#[tokio::test]
async fn a_creation_is_retried_after_429_but_never_after_a_5xx() {
    let fake = Fake::default();
    fake.then(Canned {
        status: 429,
        headers: vec![("retry-after", "0".to_owned())],
        body: String::new(),
    });
    let client = builder(fake.serve().await).build().unwrap();
    let webhook = client.create_webhook(&request()).await.unwrap();
    assert_eq!(webhook.id, "wh_1");
    assert_eq!(fake.seen().len(), 2);

    let fake = Fake::default();
    fake.set(|s| s.fail_after_create = 1);
    let client = builder(fake.serve().await).max_retries(3).build().unwrap();
    let err = client.create_webhook(&request()).await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(503));
    assert_eq!(fake.seen().len(), 1, "a POST is not retried after a 5xx");
    assert_eq!(fake.webhook_count(), 1);
}

#[tokio::test]
async fn a_hung_server_times_out() {
    let fake = Fake::default();
    fake.set(|s| s.hang = true);
    let addr = fake.serve().await;
    let client = builder(addr)
        .timeout(Duration::from_millis(300))
        .max_retries(0)
        .build()
        .unwrap();

    let started = Instant::now();
    let err = client.list_webhooks().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(fake.seen().len(), 1);

    // Reads retry a timeout; creations do not (NotMeta may have acted).
    let client = builder(addr)
        .timeout(Duration::from_millis(200))
        .max_retries(1)
        .build()
        .unwrap();
    let err = client.webhook_stats("wh_1").await.unwrap_err();
    assert_eq!((err.kind(), err.attempts()), (ErrorKind::Timeout, 2));
    let err = client.create_webhook(&request()).await.unwrap_err();
    assert_eq!((err.kind(), err.attempts()), (ErrorKind::Timeout, 1));
    assert_eq!(fake.seen().len(), 4);
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error_retried_even_for_a_creation() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = builder(addr).max_retries(2).build().unwrap();
    let err = client.create_webhook(&request()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect);
    assert_eq!(err.attempts(), 3);
}

#[tokio::test]
async fn a_2xx_that_is_not_the_expected_json_is_a_decode_error() {
    let fake = Fake::default();
    fake.then(canned(200, "<html>maintenance</html>"))
        .then(canned(201, r#"{"id":"wh_1","url":"https://a.example/h"}"#));
    let client = builder(fake.serve().await).build().unwrap();
    let err = client.list_webhooks().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode);
    assert_eq!(err.status().map(|s| s.as_u16()), Some(200));
    let err = client.create_webhook(&request()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode);
    assert!(err.to_string().contains("secret"), "{err}");
    assert_eq!(fake.seen().len(), 2);
}

#[tokio::test]
async fn ensure_run_twice_creates_one_webhook() {
    let fake = Fake::default();
    let client = builder(fake.serve().await).build().unwrap();

    let first = client.ensure_webhook(&request()).await.unwrap();
    let second = client.ensure_webhook(&request()).await.unwrap();

    assert!(first.was_created());
    assert!(matches!(&first, Ensured::Created(w) if w.id == "wh_1"));
    assert!(first.secret().is_some());
    assert!(!second.was_created());
    assert_eq!(second.id(), Some("wh_1"));
    assert!(second.events_match());
    assert!(second.secret().is_none()); // the stand-in, like a careful API, lists no secrets
    assert_eq!(fake.webhook_count(), 1);
    let calls: Vec<_> = fake
        .seen()
        .iter()
        .map(|s| format!("{} {}", s.method, s.path))
        .collect();
    assert_eq!(
        calls,
        ["GET /v1/webhooks", "POST /v1/webhooks", "GET /v1/webhooks"]
    );
}

#[tokio::test]
async fn ensure_reports_different_events_and_changes_nothing() {
    let fake = Fake::default();
    let client = builder(fake.serve().await).build().unwrap();
    client.ensure_webhook(&request()).await.unwrap();

    let other_events = CreateWebhook::new(
        "https://tu-dominio.com/webhook",
        [EventType::MessageReceived, EventType::UserOnline],
        "tu_secret_webhook",
    );
    let ensured = client.ensure_webhook(&other_events).await.unwrap();
    let Ensured::Existing {
        missing_events,
        extra_events,
        ..
    } = &ensured
    else {
        panic!("expected the existing webhook, got {ensured:?}")
    };
    assert_eq!(missing_events, &[EventType::UserOnline]);
    assert_eq!(extra_events, &["conversation.assigned"]);
    assert!(!ensured.events_match());
    assert_eq!(fake.webhook_count(), 1);
    assert_eq!(
        ensured.to_string(),
        "exists wh_1  active  https://tu-dominio.com/webhook  message.received,conversation.assigned  \
         (missing: user.online)  (not requested: conversation.assigned)"
    );
}

#[tokio::test]
async fn ensure_after_a_creation_answered_503_finds_it_instead_of_creating_again() {
    let fake = Fake::default();
    fake.set(|s| s.fail_after_create = 1);
    let client = builder(fake.serve().await).build().unwrap();

    let ensured = client.ensure_webhook(&request()).await.unwrap();

    assert_eq!(ensured.id(), Some("wh_1"));
    assert!(!ensured.was_created());
    assert_eq!(fake.webhook_count(), 1);
}

#[tokio::test]
async fn debug_and_display_never_show_the_token_or_a_secret() {
    let fake = Fake::default();
    fake.then(canned(201, DOCUMENTED_CREATED));
    let builder = builder(fake.serve().await);
    let builder_debug = format!("{builder:?}");
    let client = builder.build().unwrap();
    let webhook = client.create_webhook(&request()).await.unwrap();
    let ensured = Ensured::Created(webhook.clone());
    let list: WebhookList =
        serde_json::from_str(r#"[{"id":"wh_1","secret":"whsec_listed"}]"#).unwrap();

    let printed = [
        builder_debug,
        format!("{client:?}"),
        format!("{:?}", request()),
        format!("{webhook:?}"),
        webhook.to_string(),
        format!("{ensured:?}"),
        ensured.to_string(),
        format!("{list:?}"),
        list.to_string(),
    ];
    for text in printed {
        for secret in [TOKEN, "whsec_abc123", "tu_secret_webhook", "whsec_listed"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
}

#[test]
fn the_client_its_futures_and_its_types_cross_threads() {
    fn send_sync<T: Send + Sync + 'static>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<Client>();
    send_sync::<notmeta_webhooks::client::Error>();
    send_sync::<notmeta_webhooks::client::Webhook>();
    send_sync::<WebhookList>();
    send_sync::<notmeta_webhooks::client::WebhookLogs>();
    send_sync::<notmeta_webhooks::client::WebhookStats>();
    send_sync::<Ensured>();

    let client = Client::new(TOKEN).unwrap();
    let request = request();
    // Futures that can be spawned on a multi-threaded runtime.
    send(&client.create_webhook(&request));
    send(&client.ensure_webhook(&request));
    send(&client.list_webhooks());
    send(&client.webhook_logs("wh_1"));
    send(&client.webhook_stats("wh_1"));
}
