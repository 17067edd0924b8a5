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
use notmeta_webhooks::{EventType, sign};
use notmeta_webhooks_client::{
    Client, ClientBuilder, CreateWebhook, Ensured, ErrorKind, WebhookList,
};
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
    /// Every request's method and path, in order.
    fn calls(&self) -> Vec<String> {
        self.seen()
            .iter()
            .map(|s| format!("{} {}", s.method, s.path))
            .collect()
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
    assert!(verifier.verify(body, [&sign(body, "whsec_abc123")]).is_ok());
    assert!(
        verifier
            .verify(body, [&sign(body, "tu_secret_webhook")])
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
async fn a_retry_after_date_is_honoured() {
    let fake = Fake::default();
    fake.then(Canned {
        status: 429,
        headers: vec![("retry-after", httpdate_in(Duration::from_secs(3)))],
        body: String::new(),
    });
    let client = builder(fake.serve().await)
        .max_backoff(Duration::from_secs(5))
        .build()
        .unwrap();

    client.list_webhooks().await.unwrap();

    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    // The date has one-second resolution: 2 s to 3 s away (a date that failed to
    // parse would have meant the 10 ms backoff).
    let waited = seen[1].at - seen[0].at;
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(4),
        "{waited:?}"
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
    assert!(err.may_have_created());
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
    assert!(!err.may_have_created(), "the request was never sent");
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
async fn a_key_sent_twice_keeps_its_last_value_in_every_answer() {
    let fake = Fake::default();
    fake.then(canned(
        201,
        r#"{"id":"wh_1","url":"https://a.example/h","secret":"whsec_first","secret":"whsec_last","events":["message.received"]}"#,
    ))
    .then(canned(200, r#"[{"id":"wh_1","id":"wh_2","url":"https://a.example/h"}]"#));
    let client = builder(fake.serve().await).build().unwrap();
    let webhook = client.create_webhook(&request()).await.unwrap();
    assert_eq!(webhook.expose_secret(), "whsec_last");
    let list = client.list_webhooks().await.unwrap();
    assert_eq!(list.webhooks[0].id.as_deref(), Some("wh_2"));
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
    assert_eq!(
        fake.calls(),
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
    send_sync::<notmeta_webhooks_client::Error>();
    send_sync::<notmeta_webhooks_client::Webhook>();
    send_sync::<WebhookList>();
    send_sync::<notmeta_webhooks_client::WebhookLogs>();
    send_sync::<notmeta_webhooks_client::WebhookStats>();
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

// ---- Secrets in errors, lists that are not complete, answers lost, limits in force ----

/// A token and a secret with characters JSON and URLs escape.
const ODD_TOKEN: &str = "tok/odd<9f>";
const ODD_SECRET: &str = "sec/ret<7a>";

/// Every form an echo may take of `s`: JSON with `\/`, `\u00XX` and HTML-style
/// `\u003c` escapes, and percent-encoding.
fn echoed_forms(s: &str) -> String {
    let slash = s.replace('/', "\\/");
    let html = s.replace('<', "\\u003c").replace('>', "\\u003e");
    let all_u: String = s.chars().map(|c| format!("\\u{:04x}", c as u32)).collect();
    format!(
        r#"{{"error":"invalid","echo":["{s}","{slash}","{html}","{all_u}"],"{html}":1,"query":"x={pct}"}}"#,
        pct = s
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            })
            .collect::<String>()
    )
}

fn assert_hidden(texts: &[String]) {
    for text in texts {
        for secret in [
            ODD_TOKEN,
            ODD_SECRET,
            "tok\\/odd",
            "sec\\/ret",
            "sec%2Fret",
            "tok%2Fodd",
            "ret\\u003c7a",
            "odd\\u003c9f",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        for fragment in ["odd<9f", "ret<7a"] {
            assert!(!text.contains(fragment), "{fragment} in {text}");
        }
    }
}

#[tokio::test]
async fn an_error_never_shows_the_token_or_the_secret_sent_in_any_escaped_form() {
    let fake = Fake::default();
    let echo = format!("{}{}", echoed_forms(ODD_TOKEN), echoed_forms(ODD_SECRET));
    // Not JSON as a whole: scrubbed as text. Then each alone: JSON, walked.
    fake.then(canned(422, echo.clone()))
        .then(canned(400, echoed_forms(ODD_SECRET)))
        .then(canned(500, echoed_forms(ODD_TOKEN)))
        .then(canned(
            200,
            format!("\"{}\"", ODD_SECRET.replace('/', "\\/")),
        ));
    let client = Client::builder(ODD_TOKEN)
        .base_url(format!("http://{}/v1", fake.serve().await))
        .max_retries(0)
        .build()
        .unwrap();
    let request = CreateWebhook::new("https://a.example/h", [EventType::UserOnline], ODD_SECRET);
    let mut shown = Vec::new();
    for _ in 0..4 {
        let err = client.create_webhook(&request).await.unwrap_err();
        shown.push(err.to_string());
        shown.push(format!("{err:?}"));
        shown.push(err.body().unwrap_or_default().to_owned());
    }
    assert_hidden(&shown);
    assert!(shown[0].contains("<redacted>"), "{}", shown[0]);
    assert!(shown[5].contains("<redacted>"), "{}", shown[5]);
    assert_eq!(fake.seen().len(), 4);
}

/// A stand-in listing `pages`, one per request, in order; creations are counted.
async fn serve_pages(pages: Vec<Value>) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    serve_script(Arc::new(move |method, _, n| {
        Some(if *method == Method::POST {
            json_answer(201, json!({"id":"wh_new","url":"u","secret":"whsec_n"}))
        } else {
            json_answer(200, pages[(n - 1).min(pages.len() - 1)].clone())
        })
    }))
    .await
}

fn listed(n: u32, url: &str) -> Value {
    json!({"id": format!("wh_{n}"), "url": url, "events": ["message.received", "conversation.assigned"]})
}

#[tokio::test]
async fn ensure_reads_every_page_and_finds_the_webhook_on_the_third() {
    let (addr, seen) = serve_pages(vec![
        json!({"data": [listed(1, "https://a.example/1")], "has_more": true, "next_cursor": "c/2"}),
        json!({"data": [listed(2, "https://a.example/2")], "links": {"next": "/v1/webhooks?page=3"}}),
        json!({"data": [listed(3, "https://tu-dominio.com/webhook")], "has_more": false}),
    ])
    .await;
    let client = builder(addr).build().unwrap();
    let ensured = client.ensure_webhook(&request()).await.unwrap();
    assert_eq!(ensured.id(), Some("wh_3"));
    assert!(!ensured.was_created());
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "GET /v1/webhooks",
            "GET /v1/webhooks?cursor=c%2F2",
            "GET /v1/webhooks?page=3"
        ]
    );
    let list = client.list_webhooks().await.unwrap();
    assert_eq!(
        list.webhooks.len(),
        1,
        "the stand-in now answers its last page"
    );
}

#[tokio::test]
async fn a_list_under_another_key_is_read_and_an_unknown_empty_one_is_an_error() {
    let (addr, seen) = serve_pages(vec![
        json!({"hooks": [listed(7, "https://tu-dominio.com/webhook")], "count": 1}),
    ])
    .await;
    let client = builder(addr).build().unwrap();
    let ensured = client.ensure_webhook(&request()).await.unwrap();
    assert_eq!(ensured.id(), Some("wh_7"));
    assert_eq!(seen.lock().unwrap().len(), 1);

    for page in [
        json!({"hooks": [], "count": 0}),
        json!({"total": 0}),
        json!("none"),
    ] {
        let (addr, seen) = serve_pages(vec![page.clone()]).await;
        let client = builder(addr).build().unwrap();
        let err = client.ensure_webhook(&request()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode, "{page}: {err}");
        assert_eq!(
            *seen.lock().unwrap(),
            ["GET /v1/webhooks"],
            "{page}: nothing created"
        );
    }
}

#[tokio::test]
async fn more_pages_with_nothing_to_follow_is_an_error_and_nothing_is_created() {
    for page in [
        json!({"data": [], "has_more": true}),
        json!({"data": [listed(1, "https://a.example/1")], "next_page": 2}),
        json!({"data": [], "pagination": {"has_more": true}}),
    ] {
        let (addr, seen) = serve_pages(vec![page.clone()]).await;
        let client = builder(addr).build().unwrap();
        let err = client.ensure_webhook(&request()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode, "{page}");
        assert!(err.to_string().contains("incomplete"), "{err}");
        assert_eq!(*seen.lock().unwrap(), ["GET /v1/webhooks"], "{page}");
    }
}

#[tokio::test]
async fn a_next_url_on_another_origin_or_a_repeated_cursor_is_an_error() {
    for next in [
        "https://elsewhere.example/v1/webhooks?page=2",
        "//elsewhere.example/v1/webhooks?page=2",
    ] {
        let (err, seen) = list_fails(vec![json!({"data": [], "next": next})]).await;
        assert_eq!(err.kind(), ErrorKind::Decode, "{err}");
        assert!(err.to_string().contains("another origin"), "{err}");
        assert_eq!(seen.len(), 1, "the token is never sent elsewhere");
    }

    let (addr, seen) = serve_pages(vec![json!({"data": [], "next_cursor": "same"})]).await;
    let err = builder(addr)
        .build()
        .unwrap()
        .list_webhooks()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode, "{err}");
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_listed_webhook_without_a_url_stops_ensure() {
    let (addr, seen) = serve_pages(vec![json!([{"id": "wh_1", "events": []}])]).await;
    let err = builder(addr)
        .build()
        .unwrap()
        .ensure_webhook(&request())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode, "{err}");
    assert!(err.to_string().contains("url"), "{err}");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_creation_answered_503_that_happened_is_reported_created_with_the_secret_sent() {
    let fake = Fake::default();
    fake.set(|s| s.fail_after_create = 1);
    let client = builder(fake.serve().await).build().unwrap();

    let ensured = client.ensure_webhook(&request()).await.unwrap();

    assert!(ensured.was_created(), "{ensured}");
    assert_eq!(ensured.id(), Some("wh_1"));
    assert!(ensured.secret().is_some());
    // The stand-in lists no secrets: the one sent is the one to keep.
    assert_eq!(ensured.expose_secret(), Some("tu_secret_webhook"));
    let Ensured::CreatedAnswerLost { webhook, cause } = &ensured else {
        panic!("expected a creation whose answer was lost, got {ensured:?}")
    };
    assert_eq!(webhook.url, "https://tu-dominio.com/webhook");
    assert!(cause.contains("503"), "{cause}");
    assert!(
        ensured
            .to_string()
            .starts_with("created (NotMeta's answer was lost) wh_1"),
        "{ensured}"
    );
    assert!(!format!("{ensured} {ensured:?}").contains("tu_secret_webhook"));
    assert_eq!(fake.webhook_count(), 1);
    assert_eq!(
        fake.calls(),
        ["GET /v1/webhooks", "POST /v1/webhooks", "GET /v1/webhooks"]
    );
}

#[tokio::test]
async fn a_huge_5xx_body_is_not_read_whole_and_the_read_is_retried() {
    let fake = Fake::default();
    fake.then(canned(503, "x".repeat(20 * 1024 * 1024)));
    let client = builder(fake.serve().await).build().unwrap();
    let list = client.list_webhooks().await.unwrap();
    assert!(list.webhooks.is_empty());
    assert_eq!(fake.seen().len(), 2);

    let fake = Fake::default();
    fake.then(canned(400, "y".repeat(20 * 1024 * 1024)));
    let client = builder(fake.serve().await).build().unwrap();
    let err = client.list_webhooks().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Status);
    assert!(err.body().unwrap().len() < 5_000);
    assert!(
        err.body()
            .unwrap()
            .ends_with(&format!("({} bytes in all)", 20 * 1024 * 1024))
    );
}

/// A listener that accepts connections and never sends a byte of TLS; how many it
/// accepted.
async fn never_speaks_tls() -> (SocketAddr, Arc<Mutex<usize>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(Mutex::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            *count.lock().unwrap() += 1;
            held.push(socket); // accepted, never a byte of TLS
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn a_server_that_never_completes_tls_is_a_connect_error_and_a_creation_is_retried() {
    let (addr, accepted) = never_speaks_tls().await;
    let client = Client::builder(TOKEN)
        .base_url(format!("https://{addr}/v1"))
        .connect_timeout(Duration::from_millis(300))
        .timeout(Duration::from_secs(10))
        .initial_backoff(Duration::from_millis(10))
        .max_retries(2)
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client.create_webhook(&request()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    assert_eq!(err.attempts(), 3);
    assert_eq!(*accepted.lock().unwrap(), 3);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// Lists once from a stand-in answering `status` with `Retry-After: secs`, with the
/// client `configure` makes; the error, which must come at once.
async fn refused_with_retry_after(
    status: u16,
    secs: u64,
    configure: impl FnOnce(ClientBuilder) -> ClientBuilder,
) -> notmeta_webhooks_client::Error {
    let fake = Fake::default();
    fake.then(Canned {
        status,
        headers: vec![("retry-after", secs.to_string())],
        body: String::new(),
    });
    let client = configure(builder(fake.serve().await)).build().unwrap();
    let started = Instant::now();
    let err = client.list_webhooks().await.unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!((err.kind(), err.attempts()), (ErrorKind::Status, 1));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(secs)));
    assert_eq!(fake.seen().len(), 1);
    err
}

#[tokio::test]
async fn a_retry_after_longer_than_max_backoff_fails_at_once() {
    let err =
        refused_with_retry_after(503, 3600, |b| b.max_backoff(Duration::from_millis(1500))).await;
    assert!(err.to_string().contains("3600 s"), "{err}");

    // A wait that would end past the deadline is not waited either.
    let err = refused_with_retry_after(429, 5, |b| b.deadline(Duration::from_secs(2))).await;
    assert!(err.to_string().contains("deadline"), "{err}");
}

#[tokio::test]
async fn the_deadline_bounds_the_whole_call() {
    let fake = Fake::default();
    fake.set(|s| s.hang = true);
    let addr = fake.serve().await;
    let client = builder(addr)
        .deadline(Duration::from_secs(1))
        .timeout(Duration::from_millis(400))
        .max_retries(10)
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client.list_webhooks().await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(err.attempts() >= 2, "{err}");
    assert!(fake.seen().len() < 10);

    // The attempt's own timeout is cut to what is left: one attempt, one second.
    let client = builder(addr)
        .deadline(Duration::from_secs(1))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client.ensure_webhook(&request()).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("no answer in 1 s"), "{err}");
}

#[tokio::test]
async fn logs_say_when_more_pages_exist_and_an_unknown_shape_is_an_error() {
    let fake = Fake::default();
    fake.then(canned(
        200,
        r#"{"entries":[{"event_id":"evt_1"}],"has_more":true}"#,
    ))
    .then(canned(200, r#"{"logs":[],"total":0}"#))
    .then(canned(200, r#"{"deliveries":[],"total":0}"#));
    let client = builder(fake.serve().await).build().unwrap();
    let logs = client.webhook_logs("wh_1").await.unwrap();
    assert_eq!(logs.entries.len(), 1);
    assert!(logs.more_pages());
    let logs = client.webhook_logs("wh_1").await.unwrap();
    assert!(logs.entries.is_empty() && !logs.more_pages());
    let err = client.webhook_logs("wh_1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode);
    assert!(err.to_string().contains("`deliveries`"), "{err}");
}

#[test]
fn plain_http_is_for_loopback_only_and_credentials_in_the_url_are_refused() {
    for local in [
        "http://127.0.0.1:9/v1",
        "http://127.8.0.1/v1",
        "http://[::1]:9",
        "http://localhost:9",
    ] {
        assert!(
            Client::builder(TOKEN).base_url(local).build().is_ok(),
            "{local}"
        );
    }
    let err = Client::builder(TOKEN)
        .base_url("http://api.example/v1")
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let err = Client::builder(TOKEN)
        .base_url("https://admin:hunter2pw@api.example/v1")
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(!format!("{err} {err:?}").contains("hunter2pw"), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("admin"), "{err:?}");
}

// ---- A stand-in scripted per request ----

type Script = dyn Fn(&Method, &Uri, usize) -> Option<Response> + Send + Sync;

/// A stand-in answering each request with `script` (given the number of requests of
/// that method so far, from 1); `None` hangs. Every request is recorded as
/// "METHOD path?query".
async fn serve_script(script: Arc<Script>) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let app = Router::new().fallback({
        let seen = seen.clone();
        move |method: Method, uri: Uri| {
            let seen = seen.clone();
            let script = script.clone();
            async move {
                let n = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(format!("{method} {uri}"));
                    seen.iter()
                        .filter(|s| s.starts_with(&format!("{method} ")))
                        .count()
                };
                match script(&method, &uri, n) {
                    Some(r) => r,
                    None => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        json_answer(500, json!({}))
                    }
                }
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

fn raw_answer(status: u16, headers: &[(&'static str, &str)], body: &str) -> Response {
    let mut r = (StatusCode::from_u16(status).unwrap(), body.to_owned()).into_response();
    for (k, v) in headers {
        r.headers_mut().insert(*k, v.parse().unwrap());
    }
    r
}

#[tokio::test]
async fn a_page_url_built_from_the_servers_data_never_shows_the_token() {
    // A cursor that is the token, then a 400 on the page it names.
    let (addr, _) = serve_script(Arc::new(|_, uri, _| {
        Some(if uri.query().is_some() {
            json_answer(400, json!({"error": "bad cursor"}))
        } else {
            json_answer(200, json!({"data": [], "next_cursor": TOKEN}))
        })
    }))
    .await;
    let client = builder(addr).max_retries(0).build().unwrap();
    let err = client.list_webhooks().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Status, "{err}");
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains(TOKEN) && shown.contains("<redacted>"),
        "{shown}"
    );

    // A next URL carrying the token, whose page hangs: the timeout's message.
    let (addr, _) = serve_script(Arc::new(|_, uri, _| {
        uri.query().is_none().then(|| {
            json_answer(
                200,
                json!({"data": [], "next": format!("/v1/webhooks?access_token={TOKEN}")}),
            )
        })
    }))
    .await;
    let client = builder(addr)
        .timeout(Duration::from_millis(300))
        .max_retries(0)
        .build()
        .unwrap();
    let err = client.list_webhooks().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains(TOKEN) && shown.contains("<redacted>"),
        "{shown}"
    );
}

/// A stand-in that creates the webhook on `POST` and answers it with `answer`; the
/// list shows it from `visible_after` on.
async fn creates_then_answers(
    answer: fn() -> Response,
    visible_after: Option<Duration>,
) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let created: Arc<Mutex<Option<Instant>>> = Arc::default();
    serve_script(Arc::new(move |method, _, _| {
        let mut created = created.lock().unwrap();
        if *method == Method::POST {
            *created = Some(Instant::now());
            return Some(answer());
        }
        let shown = match (*created, visible_after) {
            (Some(at), Some(after)) => at.elapsed() >= after,
            _ => false,
        };
        let data = if shown {
            vec![
                json!({"id": "wh_1", "url": "https://tu-dominio.com/webhook",
                "events": ["message.received", "conversation.assigned"]}),
            ]
        } else {
            vec![]
        };
        Some(json_answer(200, json!({ "data": data })))
    }))
    .await
}

#[tokio::test]
async fn a_creation_answered_2xx_or_3xx_without_a_webhook_may_have_created() {
    let answers: [fn() -> Response; 4] = [
        || {
            json_answer(
                201,
                json!({"id": "wh_1", "url": "https://tu-dominio.com/webhook"}),
            )
        },
        || json_answer(202, json!({"status": "pending"})),
        || raw_answer(201, &[], ""),
        || raw_answer(303, &[("location", "/v1/webhooks/wh_1")], ""),
    ];
    for answer in answers {
        let (addr, _) = creates_then_answers(answer, Some(Duration::ZERO)).await;
        let client = builder(addr).build().unwrap();
        let err = client.create_webhook(&request()).await.unwrap_err();
        assert!(err.may_have_created(), "{err}");

        // ensure: list, create, list again; the secret sent is the one to keep.
        let (addr, seen) = creates_then_answers(answer, Some(Duration::ZERO)).await;
        let ensured = builder(addr)
            .build()
            .unwrap()
            .ensure_webhook(&request())
            .await
            .unwrap();
        assert!(
            matches!(ensured, Ensured::CreatedAnswerLost { .. }),
            "{ensured:?}"
        );
        assert!(ensured.was_created());
        assert_eq!(ensured.expose_secret(), Some("tu_secret_webhook"));
        assert_eq!(
            *seen.lock().unwrap(),
            ["GET /v1/webhooks", "POST /v1/webhooks", "GET /v1/webhooks"]
        );
    }
}

#[tokio::test]
async fn after_a_creation_that_may_have_acted_ensure_never_creates_again() {
    // The list shows the webhook only a second after it was created.
    let (addr, seen) = creates_then_answers(
        || json_answer(500, json!({"error": "oops"})),
        Some(Duration::from_secs(1)),
    )
    .await;
    let client = builder(addr).max_retries(3).build().unwrap();
    let ensured = client.ensure_webhook(&request()).await.unwrap();
    assert!(
        matches!(ensured, Ensured::CreatedAnswerLost { .. }),
        "{ensured:?}"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter().filter(|s| s.starts_with("POST")).count(),
        1,
        "{seen:?}"
    );

    // Never listed: the error, may have created, and still one creation.
    let (addr, seen) =
        creates_then_answers(|| json_answer(500, json!({"error": "oops"})), None).await;
    let client = builder(addr).max_retries(3).build().unwrap();
    let started = Instant::now();
    let err = client.ensure_webhook(&request()).await.unwrap_err();
    assert!(err.may_have_created(), "{err}");
    assert_eq!(err.status().map(|s| s.as_u16()), Some(500));
    assert!(started.elapsed() < Duration::from_secs(20));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter().filter(|s| s.starts_with("POST")).count(),
        1,
        "{seen:?}"
    );
    assert!(
        seen.iter().filter(|s| s.starts_with("GET")).count() >= 3,
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_deadline_or_a_wait_too_long_for_the_clock_does_not_panic() {
    let fake = Fake::default();
    let client = builder(fake.serve().await)
        .deadline(Duration::MAX)
        .build()
        .unwrap();
    assert!(client.list_webhooks().await.unwrap().webhooks.is_empty());
    assert!(
        client
            .ensure_webhook(&request())
            .await
            .unwrap()
            .was_created()
    );

    let fake = Fake::default();
    fake.then(Canned {
        status: 429,
        headers: vec![("retry-after", "99999999999999999999".into())],
        body: String::new(),
    });
    let client = builder(fake.serve().await)
        .max_backoff(Duration::MAX)
        .deadline(Duration::MAX)
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client.list_webhooks().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Status, "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(u64::MAX)));
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Lists from a stand-in serving `pages`: the error, and the requests it saw.
async fn list_fails(pages: Vec<Value>) -> (notmeta_webhooks_client::Error, Vec<String>) {
    let (addr, seen) = serve_pages(pages).await;
    let err = builder(addr)
        .build()
        .unwrap()
        .list_webhooks()
        .await
        .unwrap_err();
    let seen = seen.lock().unwrap().clone();
    (err, seen)
}

#[tokio::test]
async fn a_link_header_next_page_is_followed() {
    let (addr, seen) = serve_script(Arc::new(|_, uri, _| {
        Some(match uri.query() {
            None => raw_answer(
                200,
                &[
                    ("link", r#"</v1/webhooks?page=1>; rel="prev first""#),
                    ("link", r#"<https://elsewhere.example/x>; rel=last, </v1/webhooks?page=2>; title="a, <b>"; rel="prefetch next""#),
                ],
                &json!([listed(1, "https://a.example/1")]).to_string(),
            ),
            Some(_) => json_answer(200, json!([listed(2, "https://tu-dominio.com/webhook")])),
        })
    }))
    .await;
    let client = builder(addr).build().unwrap();
    let ensured = client.ensure_webhook(&request()).await.unwrap();
    assert_eq!(ensured.id(), Some("wh_2"), "{ensured:?}");
    assert_eq!(
        *seen.lock().unwrap(),
        ["GET /v1/webhooks", "GET /v1/webhooks?page=2"]
    );

    // A bare rel, the link on another origin: refused, nothing created.
    let (addr, seen) = serve_script(Arc::new(|_, _, _| {
        Some(raw_answer(
            200,
            &[(
                "link",
                "<https://elsewhere.example/v1/webhooks?page=2>; rel=next",
            )],
            "[]",
        ))
    }))
    .await;
    let err = builder(addr)
        .build()
        .unwrap()
        .ensure_webhook(&request())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode, "{err}");
    assert_eq!(*seen.lock().unwrap(), ["GET /v1/webhooks"]);
}

#[tokio::test]
async fn graph_style_paging_and_totals_are_followed_or_refused() {
    let (addr, seen) = serve_pages(vec![
        json!({"data": [listed(1, "https://a.example/1")],
            "paging": {"cursors": {"after": "QVFI"}, "next": "/v1/webhooks?after=QVFI"}}),
        json!({"data": [listed(2, "https://tu-dominio.com/webhook")],
            "paging": {"cursors": {"before": "QVFI"}}}),
    ])
    .await;
    let ensured = builder(addr)
        .build()
        .unwrap()
        .ensure_webhook(&request())
        .await
        .unwrap();
    assert_eq!(ensured.id(), Some("wh_2"));
    assert_eq!(
        *seen.lock().unwrap(),
        ["GET /v1/webhooks", "GET /v1/webhooks?after=QVFI"]
    );

    for page in [
        json!({"data": [listed(1, "https://a.example/1")], "page": 1, "per_page": 1, "total": 2, "total_pages": 2}),
        json!({"data": [listed(1, "https://a.example/1")], "total_pages": 2}),
        json!({"data": [], "meta": {"total_count": 5}}),
        json!({"data": [], "paging": {"cursors": {"after": "QVFI"}}}),
        json!({"data": [], "whatever": {"has_more": true}}),
    ] {
        let (addr, seen) = serve_pages(vec![page.clone()]).await;
        let err = builder(addr)
            .build()
            .unwrap()
            .ensure_webhook(&request())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode, "{page}: {err}");
        assert!(err.to_string().contains("incomplete"), "{err}");
        assert_eq!(*seen.lock().unwrap(), ["GET /v1/webhooks"], "{page}");
    }
    // A total reached is no sign of more.
    let (addr, _) = serve_pages(vec![
        json!({"data": [listed(1, "https://a.example/1")], "page": 1, "total": 1, "total_pages": 1}),
    ])
    .await;
    assert_eq!(
        builder(addr)
            .build()
            .unwrap()
            .list_webhooks()
            .await
            .unwrap()
            .webhooks
            .len(),
        1
    );
}

#[tokio::test]
async fn of_two_lists_the_non_empty_one_is_read_and_two_full_ones_are_an_error() {
    let (addr, seen) = serve_pages(vec![
        json!({"data": [], "webhooks": [listed(1, "https://tu-dominio.com/webhook")]}),
    ])
    .await;
    let ensured = builder(addr)
        .build()
        .unwrap()
        .ensure_webhook(&request())
        .await
        .unwrap();
    assert_eq!(ensured.id(), Some("wh_1"));
    assert_eq!(seen.lock().unwrap().len(), 1, "nothing created");

    let (addr, seen) = serve_pages(vec![json!({
        "data": [listed(1, "https://a.example/1")],
        "webhooks": [listed(2, "https://a.example/2")]
    })])
    .await;
    let err = builder(addr)
        .build()
        .unwrap()
        .ensure_webhook(&request())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode, "{err}");
    assert!(err.to_string().contains("several lists"), "{err}");
    assert_eq!(seen.lock().unwrap().len(), 1, "nothing created");
}

#[tokio::test]
async fn a_list_item_that_is_not_an_object_or_too_many_items_is_an_error() {
    for page in [json!({"data": [0, 0, 0]}), json!([{"id": "wh_1"}, "wh_2"])] {
        let (err, _) = list_fails(vec![page.clone()]).await;
        assert_eq!(err.kind(), ErrorKind::Decode, "{page}: {err}");
        assert!(err.to_string().contains("not an object"), "{err}");
    }
    let (addr, _) = serve_pages(vec![json!({"data": ["x"]})]).await;
    let err = builder(addr)
        .build()
        .unwrap()
        .webhook_logs("wh_1")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode, "{err}");

    // 10,000 webhooks are read; one more, over two pages, is an error.
    let page = |n: usize, next: bool| {
        let items: Vec<Value> = (0..n).map(|_| json!({})).collect();
        if next {
            json!({"data": items, "next": "/v1/webhooks?page=2"})
        } else {
            json!({"data": items})
        }
    };
    let (addr, _) = serve_pages(vec![page(6000, true), page(4000, false)]).await;
    let list = builder(addr)
        .build()
        .unwrap()
        .list_webhooks()
        .await
        .unwrap();
    assert_eq!(list.webhooks.len(), 10_000);
    let (err, _) = list_fails(vec![page(6000, true), page(4001, false)]).await;
    assert_eq!(err.kind(), ErrorKind::Decode, "{err}");
    assert!(err.to_string().contains("more than 10000"), "{err}");
}

#[tokio::test]
async fn relative_next_urls_are_resolved_as_rfc_3986_says() {
    let (addr, seen) = serve_pages(vec![
        json!({"data": [], "next": "webhooks?cursor=2&ret=https://x.example/"}),
        json!({"data": [], "next": "?cursor=3"}),
        json!({"data": [], "next": "../v1/./webhooks?cursor=4"}),
        json!({"data": [], "next": "/v1/webhooks?cursor=5#frag"}),
        json!({"data": []}),
    ])
    .await;
    builder(addr)
        .build()
        .unwrap()
        .list_webhooks()
        .await
        .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "GET /v1/webhooks",
            "GET /v1/webhooks?cursor=2&ret=https://x.example/",
            "GET /v1/webhooks?cursor=3",
            "GET /v1/webhooks?cursor=4",
            "GET /v1/webhooks?cursor=5",
        ]
    );
    // A network-path reference to this origin is followed; to another, refused.
    let own: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let (addr, seen) = serve_script(Arc::new({
        let own = own.clone();
        move |_, uri, _| {
            let own = own.lock().unwrap().unwrap();
            Some(match uri.query() {
                None => json_answer(
                    200,
                    json!({"data": [], "next": format!("//{own}/v1/webhooks?page=2")}),
                ),
                Some(_) => json_answer(200, json!({"data": []})),
            })
        }
    }))
    .await;
    *own.lock().unwrap() = Some(addr);
    builder(addr)
        .build()
        .unwrap()
        .list_webhooks()
        .await
        .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        ["GET /v1/webhooks", "GET /v1/webhooks?page=2"]
    );
}

#[tokio::test]
async fn a_tls_handshake_slower_than_the_attempt_is_a_connect_error_and_retried() {
    let (addr, accepted) = never_speaks_tls().await;
    // The attempt's time (2 s) and the deadline (3 s) are shorter than the
    // connect timeout (10 s): the handshake's expiry is still "not connected".
    let client = Client::builder(TOKEN)
        .base_url(format!("https://{addr}/v1"))
        .timeout(Duration::from_secs(2))
        .deadline(Duration::from_secs(3))
        .initial_backoff(Duration::from_millis(10))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client.create_webhook(&request()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    assert!(!err.may_have_created(), "{err}");
    assert_eq!(err.attempts(), 2, "{err}");
    assert_eq!(*accepted.lock().unwrap(), 2);
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
}
