//! `notmeta-webhooks webhooks …`, run as a built binary against a small stand-in for
//! NotMeta's management API on 127.0.0.1 that records what it is sent.

use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_notmeta-webhooks");
const TOKEN: &str = "tok_cli_7c21e0";
const NOTMETA_SECRET: &str = "whsec_from_notmeta_91b2";

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    authorization: Option<String>,
    body: Bytes,
}

#[derive(Clone, Default)]
struct StandIn {
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn answer(
    State(state): State<StandIn>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    state.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: uri.path().to_owned(),
        authorization: authorization.clone(),
        body: body.clone(),
    });
    if authorization.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        return (
            StatusCode::UNAUTHORIZED,
            [("content-type", "application/json")],
            r#"{"error":"invalid_token","message":"The API token is not valid"}"#,
        )
            .into_response();
    }
    let body = match (method.as_str(), uri.path()) {
        ("POST", "/v1/webhooks") => {
            let request: Value = serde_json::from_slice(&body).unwrap();
            json!({
                "id": "wh_123456789",
                "url": request["url"],
                "events": request["events"],
                "secret": NOTMETA_SECRET,
                "created_at": "2024-01-01T00:00:00Z",
                "status": "active",
            })
        }
        ("GET", "/v1/webhooks") => json!({"data": [
            {"id": "wh_1", "url": "https://a.example/hooks", "events": ["message.received"],
             "status": "active", "created_at": "2024-01-01T00:00:00Z"},
            {"id": "wh_2", "url": "https://b.example/notmeta", "events": ["user.online", "user.offline"],
             "status": "disabled"},
        ], "has_more": false}),
        ("GET", "/v1/webhooks/wh_1/logs") => json!({"logs": [
            {"event_id": "evt_1", "event_type": "message.received", "status": "success",
             "status_code": 200, "created_at": "2024-01-01T12:00:00Z", "duration_ms": 87},
            {"event_id": "evt_2", "event_type": "message.received", "status": "failed",
             "status_code": 503, "created_at": "2024-01-01T12:01:00Z"},
        ]}),
        ("GET", "/v1/webhooks/wh_1/stats") => json!({
            "total_deliveries": 120, "failed_deliveries": 3, "success_rate": 0.975,
        }),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ([("content-type", "application/json")], body.to_string()).into_response()
}

/// Serves the stand-in; its base URL.
async fn serve(state: &StandIn) -> String {
    let app = Router::new().fallback(answer).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/v1")
}

/// Runs the tool with `args` and the token in `NOTMETA_API_TOKEN` (if any), off the
/// runtime's threads.
async fn run(args: &[&str], token: Option<&str>) -> Output {
    let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
    let token = token.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new(BIN);
        command
            .args(&args)
            .env_remove("NOTMETA_API_TOKEN")
            .env_remove("NOTMETA_API_URL")
            .env_remove("NOTMETA_WEBHOOK_SECRET")
            .stdin(Stdio::null());
        if let Some(token) = token {
            command.env("NOTMETA_API_TOKEN", token);
        }
        command.output().unwrap()
    })
    .await
    .unwrap()
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_sends_the_webhook_with_the_token_and_hides_the_secret() {
    let state = StandIn::default();
    let base = serve(&state).await;
    let out = run(
        &[
            "webhooks",
            "create",
            "--base-url",
            &base,
            "--url",
            "https://example.com/webhooks",
            "--event",
            "message.received",
            "--event",
            "conversation.assigned,user.online",
            "--secret",
            "my_secret",
        ],
        Some(TOKEN),
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");

    // The list first (no webhook has the URL), then the creation.
    let seen = state.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        (&seen[0].method, seen[0].path.as_str()),
        (&Method::GET, "/v1/webhooks")
    );
    assert_eq!(seen[1].method, Method::POST);
    assert_eq!(seen[1].path, "/v1/webhooks");
    for request in &seen {
        assert_eq!(
            request.authorization.as_deref(),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }
    let sent: Value = serde_json::from_slice(&seen[1].body).unwrap();
    assert_eq!(
        sent,
        json!({
            "url": "https://example.com/webhooks",
            "events": ["message.received", "conversation.assigned", "user.online"],
            "secret": "my_secret",
        })
    );

    assert!(stdout.starts_with("field"), "a table: {stdout}");
    for expected in [
        "wh_123456789",
        "https://example.com/webhooks",
        "message.received,conversation.assigned,user.online",
        "active",
        "2024-01-01T00:00:00Z",
        "--show-secret",
    ] {
        assert!(stdout.contains(expected), "{expected}: {stdout}");
    }
    for shown in [&stdout, &stderr] {
        assert!(!shown.contains(NOTMETA_SECRET), "{shown}");
        assert!(!shown.contains("my_secret"), "{shown}");
        assert!(!shown.contains(TOKEN), "{shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_secret_prints_notmeta_s_secret_and_a_missing_secret_is_generated() {
    let state = StandIn::default();
    let base = serve(&state).await;
    let out = run(
        &[
            "webhooks",
            "create",
            "--token",
            TOKEN,
            "--base-url",
            &base,
            "--url",
            "https://example.com/webhooks",
            "--event",
            "message.received",
            "--show-secret",
        ],
        None,
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("secret"))
        .unwrap_or_default();
    assert!(line.ends_with(NOTMETA_SECRET), "{stdout}");

    let seen = state.seen.lock().unwrap().clone();
    let sent: Value = serde_json::from_slice(&seen[1].body).unwrap();
    let secret = sent["secret"].as_str().unwrap();
    assert!(
        secret.len() == 6 + 64
            && secret.starts_with("whsec_")
            && secret[6..].bytes().all(|b| b.is_ascii_hexdigit()),
        "{secret}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_prints_every_webhook() {
    let state = StandIn::default();
    let base = serve(&state).await;
    let out = run(&["webhooks", "list", "--base-url", &base], Some(TOKEN)).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two rows: {stdout}");
    assert!(
        lines[0].starts_with("id") && lines[0].contains("url"),
        "{stdout}"
    );
    for expected in [
        "wh_1",
        "https://a.example/hooks",
        "message.received",
        "wh_2",
        "disabled",
        "https://b.example/notmeta",
        "user.online,user.offline",
    ] {
        assert!(stdout.contains(expected), "{expected}: {stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_stats_print_their_fields() {
    let state = StandIn::default();
    let base = serve(&state).await;

    let out = run(
        &["webhooks", "logs", "wh_1", "--base-url", &base],
        Some(TOKEN),
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    for expected in [
        "2024-01-01T12:00:00Z",
        "message.received",
        "evt_1",
        "success",
        "200",
        "duration_ms=87",
        "evt_2",
        "failed",
        "503",
    ] {
        assert!(stdout.contains(expected), "{expected}: {stdout}");
    }

    let out = run(
        &["webhooks", "stats", "wh_1", "--base-url", &base],
        Some(TOKEN),
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    for (name, value) in [
        ("total_deliveries", "120"),
        ("failed_deliveries", "3"),
        ("success_rate", "0.975"),
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(name) && l.ends_with(value)),
            "{name}: {stdout}"
        );
    }

    let paths: Vec<String> = state
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| format!("{} {}", s.method, s.path))
        .collect();
    assert_eq!(
        paths,
        ["GET /v1/webhooks/wh_1/logs", "GET /v1/webhooks/wh_1/stats"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_exits_1_with_the_status_and_notmeta_s_answer() {
    let state = StandIn::default();
    let base = serve(&state).await;
    let out = run(
        &["webhooks", "list", "--base-url", &base],
        Some("tok_wrong"),
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("401"), "{stderr}");
    assert!(stderr.contains("The API token is not valid"), "{stderr}");
    assert!(!stderr.contains("tok_wrong") && !stdout.contains("tok_wrong"));
    assert_eq!(state.seen.lock().unwrap().len(), 1, "a 401 is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2_without_a_request() {
    let state = StandIn::default();
    let base = serve(&state).await;
    let cases: [(&[&str], Option<&str>, &str); 4] = [
        (
            &["webhooks", "list", "--base-url", &base],
            None,
            "NOTMETA_API_TOKEN",
        ),
        (
            &["webhooks", "list", "--base-url", &base, "--token", "  "],
            None,
            "no API token",
        ),
        (
            &[
                "webhooks",
                "create",
                "--base-url",
                &base,
                "--url",
                "https://example.com/webhooks",
                "--event",
                "message.recieved",
            ],
            Some(TOKEN),
            "message.recieved",
        ),
        (
            &["webhooks", "list", "--base-url", "api.notmeta.com"],
            Some(TOKEN),
            "base URL",
        ),
    ];
    for (args, token, expected) in cases {
        let out = run(args, token).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    assert!(state.seen.lock().unwrap().is_empty());
}

// ---- Stand-ins that misbehave ----

/// Serves `app`; its base URL.
async fn serve_app(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/v1")
}

/// A stand-in answering `GET /webhooks` with `list` (by the page asked, `?page=N`),
/// and `POST /webhooks` with `create`; every request recorded as `METHOD path?query`.
fn stand_in(
    seen: Arc<Mutex<Vec<String>>>,
    list: impl Fn(&str) -> (u16, String) + Clone + Send + Sync + 'static,
    create: impl Fn(&Value) -> (u16, String) + Clone + Send + Sync + 'static,
) -> Router {
    Router::new().fallback(move |method: Method, uri: Uri, body: Bytes| {
        let (seen, list, create) = (seen.clone(), list.clone(), create.clone());
        async move {
            seen.lock().unwrap().push(format!("{method} {uri}"));
            let (status, text) = if method == Method::POST {
                create(&serde_json::from_slice(&body).unwrap_or_default())
            } else {
                list(uri.query().unwrap_or_default())
            };
            (
                StatusCode::from_u16(status).unwrap(),
                [("content-type", "application/json")],
                text,
            )
                .into_response()
        }
    })
}

const ODD_TOKEN: &str = "tok/cli<3e>";
const ODD_SECRET: &str = "sec/cli<4d>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_creation_never_prints_the_token_or_the_secret_sent() {
    for status in [422, 500] {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let echo = |body: &Value| {
            let secret = body["secret"].as_str().unwrap_or_default();
            let escaped = secret.replace('/', "\\/").replace('<', "\\u003c");
            format!(
                r#"{{"error":"invalid","echo":"{escaped}","auth":"Bearer {}","raw":{}}}"#,
                ODD_TOKEN.replace('/', "\\/"),
                body
            )
        };
        let app = stand_in(
            seen.clone(),
            |_| (200, r#"{"data":[]}"#.into()),
            move |b| (status, echo(b)),
        );
        let base = serve_app(app).await;
        let (code, stdout, stderr) = create_as(ODD_TOKEN, &base, &["--secret", ODD_SECRET]).await;
        assert_eq!(code, Some(1), "{stdout}{stderr}");
        assert!(stderr.contains(&status.to_string()), "{stderr}");
        for shown in [&stdout, &stderr] {
            for secret in [
                ODD_TOKEN,
                ODD_SECRET,
                "tok\\/cli",
                "sec\\/cli",
                "cli<4d",
                "cli\\u003c4d",
                "cli<3e",
            ] {
                assert!(!shown.contains(secret), "{secret} in {shown}");
            }
        }
        assert!(seen.lock().unwrap().iter().any(|s| s.starts_with("POST")));
    }
}

fn page(n: u32) -> Value {
    json!({"id": format!("wh_{n}"), "url": format!("https://a.example/{n}"), "events": ["user.online"]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_prints_the_rows_of_every_page() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let list = |query: &str| {
        let body = match query {
            "" => json!({"data": [page(1), page(2)], "has_more": true, "next_cursor": "p2"}),
            "cursor=p2" => json!({"data": [page(3)], "next": "/v1/webhooks?page=3"}),
            "page=3" => json!({"data": [page(4)], "has_more": false}),
            _ => return (404, "{}".to_owned()),
        };
        (200, body.to_string())
    };
    let base = serve_app(stand_in(seen.clone(), list, |_| (500, "{}".into()))).await;
    let out = run(&["webhooks", "list", "--base-url", &base], Some(TOKEN)).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(
        stdout.lines().count(),
        5,
        "a header and four rows: {stdout}"
    );
    for n in 1..=4 {
        assert!(
            stdout.contains(&format!("https://a.example/{n}")),
            "{n}: {stdout}"
        );
    }
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_of_an_unknown_shape_exits_1_saying_so() {
    for body in [
        r#"{"hooks":[],"total":0}"#,
        r#"{"data":[],"has_more":true}"#,
    ] {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let base = serve_app(stand_in(
            seen,
            move |_| (200, body.to_owned()),
            |_| (500, "{}".into()),
        ))
        .await;
        let out = run(&["webhooks", "list", "--base-url", &base], Some(TOKEN)).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{body}: {stdout}{stderr}");
        assert!(!stdout.contains("no webhooks"), "{stdout}");
        assert!(stderr.contains("could not be read"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_api_ends_within_the_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket); // accepted, never answered
        }
    });
    let base = format!("http://{addr}/v1");
    let started = std::time::Instant::now();
    let out = run(
        &["webhooks", "list", "--base-url", &base, "--timeout", "2"],
        Some(TOKEN),
    )
    .await;
    let elapsed = started.elapsed();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(elapsed < std::time::Duration::from_secs(4), "{elapsed:?}");
    assert!(stderr.contains("no answer in 2 s"), "{stderr}");
}

/// Runs `webhooks create` for https://a.example/h with `extra` arguments.
async fn create(base: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    create_as(TOKEN, base, extra).await
}

/// [`create`] with `token`.
async fn create_as(token: &str, base: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let mut args = vec![
        "webhooks",
        "create",
        "--base-url",
        base,
        "--url",
        "https://a.example/h",
        "--event",
        "user.online",
    ];
    args.extend_from_slice(extra);
    let out = run(&args, Some(token)).await;
    let (stdout, stderr) = text(&out);
    (out.status.code(), stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_lists_first_and_creates_nothing_when_the_webhook_exists() {
    let existing = |events: &'static str| {
        move |_: &str| {
            (
                200,
                format!(
                    r#"{{"data":[{{"id":"wh_9","url":"https://a.example/h","events":[{events}]}}]}}"#
                ),
            )
        }
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let base = serve_app(stand_in(seen.clone(), existing(r#""user.online""#), |_| {
        (500, "{}".into())
    }))
    .await;
    let (code, stdout, stderr) = create(&base, &[]).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("wh_9"), "{stdout}");
    assert!(stderr.contains("nothing created"), "{stderr}");
    assert_eq!(*seen.lock().unwrap(), ["GET /v1/webhooks"]);

    let seen = Arc::new(Mutex::new(Vec::new()));
    let base = serve_app(stand_in(
        seen.clone(),
        existing(r#""user.offline""#),
        |_| (500, "{}".into()),
    ))
    .await;
    let (code, stdout, stderr) = create(&base, &[]).await;
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("user.online") && stderr.contains("user.offline"),
        "{stderr}"
    );
    assert_eq!(*seen.lock().unwrap(), ["GET /v1/webhooks"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creation_whose_answer_was_lost_shows_the_generated_secret() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let created = Arc::new(Mutex::new(None::<Value>));
    let list = {
        let created = created.clone();
        move |_: &str| {
            let listed: Vec<Value> = created.lock().unwrap().iter().cloned().collect();
            (200, json!({"data": listed}).to_string())
        }
    };
    let create_then_fail = {
        let created = created.clone();
        move |body: &Value| {
            *created.lock().unwrap() =
                Some(json!({"id": "wh_5", "url": body["url"], "events": body["events"]}));
            (503, r#"{"error":"try again"}"#.to_owned())
        }
    };
    let base = serve_app(stand_in(seen.clone(), list, create_then_fail)).await;
    let (code, stdout, stderr) = create(&base, &[]).await;
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let calls = seen.lock().unwrap().clone();
    assert_eq!(
        calls,
        ["GET /v1/webhooks", "POST /v1/webhooks", "GET /v1/webhooks"]
    );
    assert!(stdout.contains("wh_5"), "{stdout}");
    assert!(stderr.contains("lost"), "{stderr}");
    // The secret the tool generated and sent is shown: it is the only copy.
    let secret = stdout
        .split_whitespace()
        .find(|w| w.starts_with("whsec_"))
        .unwrap_or_else(|| panic!("no secret shown: {stdout}"));
    assert_eq!(secret.len(), 6 + 64, "{stdout}");
    assert!(stderr.contains("verify"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creation_that_may_have_acted_and_is_not_listed_shows_the_generated_secret() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let base = serve_app(stand_in(
        seen.clone(),
        |_| (200, r#"{"data":[]}"#.into()),
        |_| (502, r#"{"error":"bad gateway"}"#.into()),
    ))
    .await;
    let (code, stdout, stderr) = create(&base, &["--timeout", "20"]).await;
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("502"), "{stderr}");
    assert!(
        stdout.contains("whsec_"),
        "the generated secret is shown: {stdout}"
    );
    let posts = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.starts_with("POST"))
        .count();
    assert_eq!(
        posts, 1,
        "a creation that may have acted is never sent again in one run"
    );

    // A secret the user gave is not printed: they have it.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let base = serve_app(stand_in(
        seen,
        |_| (200, r#"{"data":[]}"#.into()),
        |_| (502, "{}".into()),
    ))
    .await;
    let (code, stdout, stderr) = create(&base, &["--secret", "whsec_given_by_user"]).await;
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(!stdout.contains("whsec_given_by_user") && !stderr.contains("whsec_given_by_user"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_takes_the_secret_from_the_environment_and_never_prints_it() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let create = {
        let bodies = bodies.clone();
        move |body: &Value| {
            bodies.lock().unwrap().push(body.clone());
            let mut created = body.clone();
            created["id"] = json!("wh_1");
            created["secret"] = json!(NOTMETA_SECRET);
            (201, created.to_string())
        }
    };
    let base = serve_app(stand_in(seen, |_| (200, "[]".into()), create)).await;
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args([
                "webhooks",
                "create",
                "--base-url",
                &base,
                "--url",
                "https://a.example/h",
            ])
            .args(["--event", "user.online"])
            .env_remove("NOTMETA_API_URL")
            .env("NOTMETA_API_TOKEN", TOKEN)
            .env("NOTMETA_WEBHOOK_SECRET", "whsec_from_the_env")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(bodies.lock().unwrap()[0]["secret"], "whsec_from_the_env");
    for shown in [&stdout, &stderr] {
        assert!(!shown.contains("whsec_from_the_env") && !shown.contains(NOTMETA_SECRET));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_say_when_notmeta_has_more_entries() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let logs = |_: &str| {
        let page = json!({"data": [{"event_id": "evt_1", "status": "success"}], "has_more": true});
        (200, page.to_string())
    };
    let base = serve_app(stand_in(seen.clone(), logs, |_| (500, "{}".into()))).await;
    let out = run(
        &["webhooks", "logs", "wh_1", "--base-url", &base],
        Some(TOKEN),
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("evt_1"), "{stdout}");
    assert!(stderr.contains("more log entries"), "{stderr}");
    assert_eq!(*seen.lock().unwrap(), ["GET /v1/webhooks/wh_1/logs"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cell_shows_the_token_or_the_secret_sent_without_show_secret() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = stand_in(
        seen,
        |query| {
            if query.is_empty() {
                (200, r#"{"data":[]}"#.into())
            } else {
                (200, "{}".into())
            }
        },
        |body| {
            let echo = json!({"secret": body["secret"]});
            (
                201,
                json!({"id": "wh_1", "url": "https://a.example/h", "events": ["user.online"],
                    "secret": NOTMETA_SECRET, "request": echo,
                    "debug_auth": format!("Bearer {TOKEN}"),
                    "escaped": body["secret"].as_str().unwrap().replace('_', "\\u005f")})
                .to_string(),
            )
        },
    );
    let base = serve_app(app).await;
    let (code, stdout, stderr) = create(&base, &["--secret", "my_sent_secret_123"]).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("request"), "{stdout}");
    for shown in [&stdout, &stderr] {
        for hidden in ["my_sent_secret_123", "my\\u005fsent", TOKEN, NOTMETA_SECRET] {
            assert!(!shown.contains(hidden), "{hidden} in {shown}");
        }
    }
    assert!(stdout.contains("<redacted>"), "{stdout}");

    // Stats, logs and the list: every cell.
    let answer = format!(
        r#"{{"debug_auth":"Bearer {TOKEN}","data":[{{"id":"wh_1","url":"https://a.example/h?t={TOKEN}","note":"{TOKEN}"}}]}}"#
    );
    let app = Router::new().fallback(move || {
        let answer = answer.clone();
        async move { ([("content-type", "application/json")], answer) }
    });
    let base = serve_app(app).await;
    for command in [&["stats", "wh_1"][..], &["logs", "wh_1"], &["list"]] {
        let mut args = vec!["webhooks"];
        args.extend_from_slice(command);
        args.extend_from_slice(&["--base-url", &base]);
        let out = run(&args, Some(TOKEN)).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{command:?}: {stdout}{stderr}");
        assert!(
            !stdout.contains(TOKEN) && !stderr.contains(TOKEN),
            "{command:?}: {stdout}{stderr}"
        );
        assert!(stdout.contains("<redacted>"), "{command:?}: {stdout}");
    }
}
