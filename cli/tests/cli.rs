//! The command-line tool, run as a built binary against a real axum receiver on
//! 127.0.0.1.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use notmeta_webhooks::receiver::{HandlerError, Receiver};
use notmeta_webhooks::testing::{documented, sample};
use notmeta_webhooks::{Event, EventKind, EventType, Verifier, sign};

const SECRET: &str = "whsec_cli_test";
const BIN: &str = env!("CARGO_BIN_EXE_notmeta-webhooks");

/// Events the receiver's handler saw; a handler that fails its first `failures`
/// calls with a temporary error.
#[derive(Clone, Default)]
struct Seen {
    events: Arc<Mutex<Vec<Event<'static>>>>,
    failures: Arc<Mutex<u32>>,
}

impl Seen {
    fn events(&self) -> Vec<Event<'static>> {
        self.events.lock().unwrap().clone()
    }
}

/// A receiver as the README builds one: refuses events older than 90 minutes.
async fn serve(seen: &Seen) -> String {
    let handler_seen = seen.clone();
    let receiver = Receiver::new(
        Verifier::new(SECRET).unwrap(),
        move |event: Event<'static>| {
            let seen = handler_seen.clone();
            async move {
                {
                    let mut failures = seen.failures.lock().unwrap();
                    if *failures > 0 {
                        *failures -= 1;
                        return Err(HandlerError::temporary("downstream unavailable"));
                    }
                }
                seen.events.lock().unwrap().push(event);
                Ok(())
            }
        },
    )
    .with_max_event_age(Duration::from_secs(90 * 60));
    let app = Router::new().route("/webhooks", notmeta_webhooks::axum::endpoint(receiver));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/webhooks")
}

/// Runs the tool with `args` (and `stdin`), off the runtime's threads.
async fn run(args: &[&str], stdin: Option<Vec<u8>>) -> Output {
    let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(BIN)
            .args(&args)
            .env_remove("NOTMETA_WEBHOOK_SECRET")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(body) = stdin {
            std::io::Write::write_all(&mut input, &body).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn temp_file(name: &str, body: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("notmeta-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_delivers_a_fresh_signed_sample() {
    let seen = Seen::default();
    let url = serve(&seen).await;
    let out = run(
        &[
            "send",
            "message.received",
            "--url",
            &url,
            "--secret",
            SECRET,
            "--text",
            "hola",
        ],
        None,
    )
    .await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.starts_with("event"), "a table: {text}");
    assert!(
        text.contains("message.received") && text.contains("200"),
        "{text}"
    );

    let events = seen.events();
    assert_eq!(events.len(), 1);
    let EventKind::MessageReceived(m) = &events[0].kind else {
        panic!("{:?}", events[0].kind)
    };
    assert_eq!(m.message.text.as_deref(), Some("hola"));
    assert!(text.contains(events[0].id.as_str()), "{text}");
    let age = SystemTime::now().duration_since(events[0].created_at.to_system_time());
    assert!(age.unwrap_or_default() < Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_to_a_path_nothing_serves_says_so() {
    let seen = Seen::default();
    let url = serve(&seen).await.replace("/webhooks", "/webhook");
    let out = run(
        &["send", "user.online", "--url", &url, "--secret", SECRET],
        None,
    )
    .await;
    let text = stdout(&out);
    let errors = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}{errors}");
    assert!(
        text.contains("user.online") && text.contains("404"),
        "{text}"
    );
    assert_eq!(
        errors.trim_end(),
        "hint: 404 Not Found: nothing is served at /webhook; is the URL's path the one \
         your endpoint is mounted at?"
    );
    assert!(seen.events().is_empty());

    // Answered 2xx: no hint.
    let url = url.replace("/webhook", "/webhooks");
    let out = run(
        &["send", "user.online", "--url", &url, "--secret", SECRET],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_data_fresh_renews_the_id_and_date_of_a_file() {
    let seen = Seen::default();
    let url = serve(&seen).await;
    // The documented body is dated 2024: sent as it is, it would be refused as stale.
    let file = temp_file(
        "assigned.json",
        documented(EventType::ConversationAssigned).as_bytes(),
    );
    let out = run(
        &[
            "send",
            "conversation.assigned",
            "--url",
            &url,
            "--secret",
            SECRET,
            "--data",
            file.to_str().unwrap(),
            "--fresh",
        ],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let events = seen.events();
    assert_eq!(events.len(), 1);
    assert_ne!(events[0].id, "evt_2");
    let user = events[0].kind.user().unwrap();
    assert_eq!(user.name.as_deref(), Some("Juan Pérez"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_exit_non_zero() {
    let seen = Seen::default();
    let url = serve(&seen).await;
    let wrong = run(
        &[
            "send",
            "user.online",
            "--url",
            &url,
            "--secret",
            "whsec_wrong",
        ],
        None,
    )
    .await;
    assert_eq!(wrong.status.code(), Some(1), "{}", stdout(&wrong));
    assert!(stdout(&wrong).contains("400"));

    let unknown = run(
        &["send", "call.started", "--url", &url, "--secret", SECRET],
        None,
    )
    .await;
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("call.started"));

    let https = run(
        &[
            "send",
            "user.online",
            "--url",
            "https://example.com/",
            "--secret",
            SECRET,
        ],
        None,
    )
    .await;
    assert_eq!(https.status.code(), Some(2));

    let closed = run(
        &[
            "send",
            "user.online",
            "--url",
            "http://127.0.0.1:9/webhooks",
            "--secret",
            SECRET,
        ],
        None,
    )
    .await;
    assert_eq!(closed.status.code(), Some(1));
    assert!(seen.events().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_prints_the_header_for_stdin_or_a_file() {
    let body = sample(EventType::UserOnline).body();
    let out = run(&["sign", "--secret", SECRET], Some(body.clone())).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out),
        format!("X-NotMeta-Signature: {}\n", sign(&body, SECRET))
    );
    let file = temp_file("sign.json", &body);
    let out = run(
        &[
            "sign",
            file.to_str().unwrap(),
            "--secret",
            SECRET,
            "--value-only",
        ],
        None,
    )
    .await;
    assert_eq!(stdout(&out), format!("{}\n", sign(&body, SECRET)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_sends_captured_bodies_unchanged() {
    let seen = Seen::default();
    let url = serve(&seen).await;
    let first = sample(EventType::MessageReceived).text("uno").body();
    let second = sample(EventType::ConversationAssigned).body();
    let a = temp_file("replay-a.json", &first);
    let b = temp_file("replay-b.json", &second);
    let args = [
        "replay",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--url",
        &url,
        "--secret",
        SECRET,
    ];
    let out = run(&args, None).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(text.matches(" 200 ").count(), 2, "{text}");
    let events = seen.events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].raw_body(), first.as_slice());
    assert_eq!(events[1].raw_body(), second.as_slice());

    // Replayed again: duplicates, answered 200 without running the handler.
    let out = run(&args, None).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(seen.events().len(), 2);

    // A stale capture is refused, and the exit code says so.
    let stale = sample(EventType::UserOnline)
        .created_at(SystemTime::now() - Duration::from_secs(3 * 3600))
        .body();
    let c = temp_file("replay-c.json", &stale);
    let out = run(
        &[
            "replay",
            c.to_str().unwrap(),
            "--url",
            &url,
            "--secret",
            SECRET,
        ],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
}

/// The whole minutes of an `at` cell: `+21m` and `+21m40s` are 21, `+1h2m` 62.
fn minutes(at: &str) -> u64 {
    let mut minutes = 0;
    let mut number = 0;
    for c in at.trim_start_matches('+').chars() {
        match c {
            '0'..='9' => number = number * 10 + u64::from(c.to_digit(10).unwrap()),
            'h' => (minutes, number) = (minutes + number * 60, 0),
            'm' => (minutes, number) = (minutes + number, 0),
            _ => number = 0,
        }
    }
    minutes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_follows_the_retry_schedule_until_2xx() {
    let seen = Seen::default();
    *seen.failures.lock().unwrap() = 2;
    let url = serve(&seen).await;
    let out = run(
        &[
            "simulate",
            "message.received",
            "--url",
            &url,
            "--secret",
            SECRET,
            "--speed",
            "600",
            // NotMeta's 30 s would be 50 ms here: 1 s, for a loaded machine.
            "--timeout",
            "600",
            "--duplicates",
            "1",
        ],
        None,
    )
    .await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[1].starts_with("event"), "{text}");
    // At the waits' ends, later by the time the answers took (600 times longer in
    // NotMeta's time: at most a few minutes).
    for (line, (waits, answer)) in
        lines[2..6]
            .iter()
            .zip([(0, "503"), (1, "503"), (6, "200"), (21, "200")])
    {
        let at = minutes(line.split_whitespace().nth(2).unwrap());
        assert!(
            (waits..waits + 10).contains(&at) && line.contains(answer),
            "{line:?} in\n{text}"
        );
    }
    assert!(lines[5].contains("duplicate"), "{text}");
    assert!(text.contains("delivered after 3 attempts"), "{text}");
    assert_eq!(seen.events().len(), 1);

    // Every attempt refused: the tool says so and exits 1.
    let out = run(
        &[
            "simulate",
            "user.online",
            "--url",
            &url,
            "--secret",
            "whsec_wrong",
        ],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("refused (400)"), "{}", stdout(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_explains_signature_errors() {
    let body = sample(EventType::MessageReceived).text("¿qué tal?").body();
    let header = sign(&body, SECRET);
    let file = temp_file("verify.json", &body);
    let path = file.to_str().unwrap();

    let out = run(
        &["verify", path, "--header", &header, "--secret", SECRET],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("valid"));

    let bare = SECRET.strip_prefix("whsec_").unwrap();
    let out = run(
        &["verify", path, "--header", &header, "--secret", bare],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("whsec_ prefix added"),
        "{}",
        stdout(&out)
    );

    let with_newline = temp_file("verify-nl.json", &[&body[..], b"\n"].concat());
    let out = run(
        &[
            "verify",
            with_newline.to_str().unwrap(),
            "--header",
            &header,
            "--secret",
            SECRET,
        ],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("trailing newline removed"),
        "{}",
        stdout(&out)
    );

    // NotMeta signed a pretty-printed body; what was captured had its white space
    // removed (parsed and serialised again).
    let signed = documented(EventType::MessageReceived);
    let flattened: String = signed.lines().map(str::trim).collect();
    let captured = temp_file("verify-flat.json", flattened.as_bytes());
    let out = run(
        &[
            "verify",
            captured.to_str().unwrap(),
            "--header",
            &sign(signed.as_bytes(), SECRET),
            "--secret",
            SECRET,
        ],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("body was changed") && text.contains("pretty-printed, 2 spaces"),
        "{text}"
    );

    let out = run(
        &[
            "verify",
            path,
            "--header",
            &header,
            "--secret",
            "whsec_other",
        ],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("no variant matches"),
        "{}",
        stdout(&out)
    );
}

/// Runs the tool with its standard output already closed by the reader, as
/// `… | grep -q` or `… | head -1` leave it.
async fn run_unread(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        Command::new(BIN)
            .args(&args)
            .env_remove("NOTMETA_WEBHOOK_SECRET")
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_output_neither_panics_nor_stops_the_work() {
    // Each case: its arguments (`URL` stands for the receiver's), the exit code,
    // and the events the receiver holds afterwards.
    let seen = Seen::default();
    let url = serve(&seen).await;
    let cases: [(&[&str], i32, usize); 3] = [
        (&["list"], 0, 0),
        // The event is still delivered, and the exit code is still the receiver's.
        (
            &[
                "send",
                "message.received",
                "--url",
                "URL",
                "--secret",
                SECRET,
            ],
            0,
            1,
        ),
        (
            &[
                "send",
                "message.received",
                "--url",
                "URL",
                "--secret",
                "whsec_wrong",
            ],
            1,
            1,
        ),
    ];
    for (args, code, events) in cases {
        let args: Vec<&str> = args
            .iter()
            .map(|&a| if a == "URL" { &url } else { a })
            .collect();
        let out = run_unread(&args).await;
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
        assert_eq!(seen.events().len(), events, "{args:?}");
    }
}

/// Runs the tool with `args` followed by `--url url --secret SECRET`.
async fn run_at(url: &str, args: &[&str]) -> Output {
    run(&[args, &["--url", url, "--secret", SECRET]].concat(), None).await
}

/// Asserts the tool's exit code, showing what it printed if it is another.
#[track_caller]
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
}

/// Asserts that `started` was less than `limit` ago: a generous upper bound.
#[track_caller]
fn assert_within(started: std::time::Instant, limit: Duration) {
    let took = started.elapsed();
    assert!(took < limit, "took {took:?}");
}

/// Runs the tool with `args` and the environment variable `name` set to `value`.
async fn run_with_env(args: &[&str], name: &'static str, value: &'static str) -> Output {
    let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .env_remove("NOTMETA_WEBHOOK_SECRET")
            .env(name, value)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A server on 127.0.0.1 that reads each request's head and hands the connection to
/// `answer`; its URL.
async fn raw_server<F, Fut>(answer: F) -> String
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use tokio::io::AsyncReadExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut head = [0; 16 * 1024];
            let _ = socket.read(&mut head).await;
            tokio::spawn(answer(socket));
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_and_replay_give_up_after_the_timeout() {
    // Accepts, reads the request, and never answers.
    let (held, _kept) = tokio::sync::mpsc::unbounded_channel();
    let url = raw_server(move |socket| {
        let _ = held.send(socket);
        async {}
    })
    .await;
    let file = temp_file("timeout.json", &sample(EventType::UserOnline).body());
    let started = std::time::Instant::now();
    for args in [
        &[
            "send",
            "user.online",
            "--url",
            &url,
            "--secret",
            SECRET,
            "--timeout",
            "1",
        ][..],
        &[
            "replay",
            file.to_str().unwrap(),
            "--url",
            &url,
            "--secret",
            SECRET,
            "--timeout",
            "1",
        ],
    ] {
        let out = run(args, None).await;
        let text = stdout(&out);
        assert_exit(&out, 1);
        assert!(text.contains("no answer in 1 s"), "{text}");
    }
    assert_within(started, Duration::from_secs(30));

    let zero = run_at(&url, &["send", "user.online", "--timeout", "0"]).await;
    assert_exit(&zero, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeout_covers_connecting() {
    // A listener that never accepts, its queue of connections full: the system
    // answers no new connection (the SYN is dropped), and connecting hangs.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let _listener = socket.listen(1).unwrap();
    let mut queued = Vec::new();
    loop {
        let connect = tokio::net::TcpStream::connect(addr);
        match tokio::time::timeout(Duration::from_millis(500), connect).await {
            Ok(Ok(stream)) if queued.len() < 64 => queued.push(stream),
            Ok(Ok(_)) => panic!("the queue never filled"),
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => break, // a connection that hangs
        }
    }
    let started = std::time::Instant::now();
    let url = format!("http://{addr}/webhooks");
    let out = run_at(&url, &["send", "user.online", "--timeout", "1"]).await;
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("no answer in 1 s"),
        "{}",
        stdout(&out)
    );
    assert_within(started, Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_answer_is_not_read_to_its_end() {
    // 200 MB announced and sent until the tool closes the connection.
    const SIZE: u64 = 200 * 1024 * 1024;
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel();
    let url = raw_server(move |mut socket| {
        let sent_tx = sent_tx.clone();
        async move {
            use tokio::io::AsyncWriteExt as _;
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n");
            let mut sent = 0;
            if socket.write_all(head.as_bytes()).await.is_ok() {
                let chunk = vec![b'a'; 1 << 20];
                while sent < SIZE && socket.write_all(&chunk).await.is_ok() {
                    sent += chunk.len() as u64;
                }
            }
            let _ = sent_tx.send(sent);
        }
    })
    .await;
    let out = run_at(&url, &["send", "user.online"]).await;
    let text = stdout(&out);
    assert_exit(&out, 0);
    let sent = tokio::time::timeout(Duration::from_secs(60), sent_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(sent < SIZE, "the whole answer was read");
    assert!(text.contains(" 200 ") && text.contains("aaa…"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_input_is_refused_at_once() {
    let big = temp_file("big.json", &vec![b' '; 16 * 1024 * 1024 + 1]);
    let big = big.to_str().unwrap();
    let url = "http://127.0.0.1:9/webhooks";
    let started = std::time::Instant::now();
    for args in [
        &["sign", "/dev/zero", "--secret", SECRET][..],
        &["sign", big, "--secret", SECRET],
        &["replay", big, "--url", url, "--secret", SECRET],
        &[
            "send",
            "user.online",
            "--data",
            big,
            "--url",
            url,
            "--secret",
            SECRET,
        ],
        &[
            "simulate",
            "user.online",
            "--data",
            big,
            "--url",
            url,
            "--secret",
            SECRET,
        ],
    ] {
        let out = run(args, None).await;
        assert_exit(&out, 2);
        assert!(
            stderr(&out).contains("larger than 16 MiB"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert_within(started, Duration::from_secs(60));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_secret_is_a_usage_error() {
    let file = temp_file("empty-secret.json", &sample(EventType::UserOnline).body());
    let file = file.to_str().unwrap();
    let url = "http://127.0.0.1:9/webhooks";
    let commands: [&[&str]; 4] = [
        &["send", "user.online", "--url", url],
        &["sign", file],
        &["replay", file, "--url", url],
        &["simulate", "user.online", "--url", url],
    ];
    for args in commands {
        let given = run(&[args, &["--secret", ""]].concat(), None).await;
        assert_exit(&given, 2);
        assert!(
            stderr(&given).contains("the secret is empty"),
            "{}",
            stderr(&given)
        );
        let from_env = run_with_env(args, "NOTMETA_WEBHOOK_SECRET", "").await;
        assert_exit(&from_env, 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_the_url_is_refused_and_not_shown() {
    let out = run_at(
        "http://ana:s3cret@127.0.0.1:9/webhooks",
        &["send", "user.online"],
    )
    .await;
    assert_exit(&out, 2);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("password") && !all.contains("s3cret"), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_receiver_answers_cannot_drive_the_terminal() {
    const HOSTILE: &str = "no\x1b[2J\r\x07\u{202E}way";
    let url = raw_server(|mut socket| async move {
        use tokio::io::AsyncWriteExt as _;
        let answer = format!(
            "HTTP/1.1 400 Bad\tRequest\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{HOSTILE}",
            HOSTILE.len()
        );
        let _ = socket.write_all(answer.as_bytes()).await;
    })
    .await;
    let file = temp_file("hostile.json", &sample(EventType::UserOnline).body());
    let commands: [&[&str]; 3] = [
        &["send", "user.online"],
        &["replay", file.to_str().unwrap()],
        // NotMeta's 30 s to answer: 1 s here.
        &[
            "simulate",
            "user.online",
            "--speed",
            "60",
            "--timeout",
            "60",
        ],
    ];
    for args in commands {
        let out = run_at(&url, args).await;
        assert_exit(&out, 1);
        let text = stdout(&out);
        assert!(
            text.contains(r"no\u{1b}[2J\r\u{7}\u{202e}way"),
            "{args:?}: {text}"
        );
        for raw in ["\x1b", "\r", "\x07", "\u{202E}"] {
            assert!(!text.contains(raw), "{args:?}: {text:?}");
        }
    }
}

/// A body as someone may have saved it: keys out of NotMeta's order, an envelope
/// field the crate does not model, a number no float holds, spacing.
fn hand_written(id: &str, created_at: &str) -> Vec<u8> {
    format!(
        "{{\n  \"type\": \"user.online\",\n  \"trace\": {{\"hops\": 12345678901234567890123}},\n  \"created_at\": \"{created_at}\",\n  \"data\": {{\"user\": {{\"id\": \"user_1\", \"name\": \"Ana\"}}}},\n  \"id\": \"{id}\"\n}}\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_data_sends_the_file_byte_for_byte() {
    let seen = Seen::default();
    let url = serve(&seen).await;
    let now = notmeta_webhooks::event::Timestamp::now()
        .trunc_seconds()
        .to_string();
    let body = hand_written("evt_hand_1", &now);
    let file = temp_file("hand.json", &body);
    let file = file.to_str().unwrap();
    let out = run_at(&url, &["send", "user.online", "--data", file]).await;
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("evt_hand_1"), "{}", stdout(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    assert_eq!(seen.events()[0].raw_body(), body.as_slice());

    // --id replaces the id, and nothing else.
    let out = run_at(
        &url,
        &["send", "user.online", "--data", file, "--id", "evt_hand_2"],
    )
    .await;
    assert_exit(&out, 0);
    assert_eq!(
        seen.events()[1].raw_body(),
        hand_written("evt_hand_2", &now).as_slice()
    );
    assert!(stderr(&out).contains("evt_hand_2"), "{}", stderr(&out));

    // simulate sends a file as it is too.
    let other = hand_written("evt_hand_sim", &now);
    let other_file = temp_file("hand-sim.json", &other);
    let out = run_at(
        &url,
        &[
            "simulate",
            "user.online",
            "--data",
            other_file.to_str().unwrap(),
        ],
    )
    .await;
    assert_exit(&out, 0);
    assert_eq!(seen.events()[2].raw_body(), other.as_slice());

    // The type given must be the file's.
    let out = run_at(&url, &["send", "user.offline", "--data", file]).await;
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("user.online") && err.contains("user.offline"),
        "{err}"
    );

    // --text changes a sample, not a file.
    let out = run_at(
        &url,
        &["send", "user.online", "--data", file, "--text", "hola"],
    )
    .await;
    assert_exit(&out, 2);
    assert_eq!(seen.events().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_data_fresh_changes_only_the_id_and_date() {
    let seen = Seen::default();
    let url = serve(&seen).await;
    let stale = "2024-01-01T12:00:00Z";
    let body = hand_written("evt_hand_old", stale);
    let file = temp_file("hand-stale.json", &body);
    let out = run_at(
        &url,
        &[
            "send",
            "user.online",
            "--data",
            file.to_str().unwrap(),
            "--fresh",
        ],
    )
    .await;
    assert_exit(&out, 0);
    let events = seen.events();
    let received = events[0].raw_body();
    let fields: serde_json::Value = serde_json::from_slice(received).unwrap();
    let (id, created_at) = (
        fields["id"].as_str().unwrap(),
        fields["created_at"].as_str().unwrap(),
    );
    assert_ne!(id, "evt_hand_old");
    assert_ne!(created_at, stale);
    assert_eq!(received, hand_written(id, created_at).as_slice());
    let note = stderr(&out);
    assert!(
        note.contains("evt_hand_old")
            && note.contains(id)
            && note.contains(stale)
            && note.contains(created_at),
        "{note}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tool_ends_at_the_timeout_while_a_name_is_still_being_resolved() {
    // A name server on 127.0.0.2 that never answers, the only one in a resolv.conf
    // mounted over the system's in a mount namespace of the tool's own: resolving
    // the receiver's name blocks for the resolver's 30 s.
    let silent = std::net::UdpSocket::bind("127.0.0.2:53").unwrap();
    let conf = temp_file(
        "resolv.conf",
        b"nameserver 127.0.0.2\noptions timeout:30 attempts:1\n",
    );
    let started = std::time::Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("unshare")
            .args(["-m", "sh", "-c"])
            .arg(r#"mount --bind "$1" /etc/resolv.conf && shift && exec "$@""#)
            .arg("sh")
            .arg(&conf)
            .args([BIN, "send", "user.online", "--url"])
            .args(["http://hangs.example.com:8080/x", "--secret", SECRET])
            .args(["--timeout", "2"])
            .env_remove("NOTMETA_WEBHOOK_SECRET")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("no answer in 2 s"),
        "{}",
        stdout(&out)
    );
    // The resolution was still under way: the tool did not wait for it.
    let mut query = [0; 512];
    silent.set_nonblocking(true).unwrap();
    assert!(
        silent.recv(&mut query).is_ok(),
        "no query reached the name server"
    );
    assert_within(started, Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_reads_every_file_before_sending_any() {
    let seen = Seen::default();
    let url = serve(&seen).await;
    let good = temp_file("replay-first.json", &sample(EventType::UserOnline).body());
    let missing = std::env::temp_dir().join("notmeta-cli-no-such-file.json");
    let out = run_at(
        &url,
        &["replay", good.to_str().unwrap(), missing.to_str().unwrap()],
    )
    .await;
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));
    assert!(seen.events().is_empty(), "a request was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_given_twice_in_a_data_file_is_an_error_of_use() {
    let seen = Seen::default();
    let url = serve(&seen).await;
    let created = "2024-01-01T00:00:00Z";
    for (body, key) in [
        (
            format!(
                r#"{{"id":"evt_first","type":"user.online","created_at":"{created}","data":{{}},"id":"evt_second"}}"#
            ),
            "\"id\"",
        ),
        (
            format!(
                r#"{{"id":"evt_1","type":"user.online","created_at":"{created}","data":{{}},"type":"message.received"}}"#
            ),
            "\"type\"",
        ),
    ] {
        let file = temp_file("twice.json", body.as_bytes());
        for event_type in ["user.online", "message.received"] {
            let out = run_at(
                &url,
                &[
                    "send",
                    event_type,
                    "--data",
                    file.to_str().unwrap(),
                    "--id",
                    "evt_NEW",
                ],
            )
            .await;
            assert_exit(&out, 2);
            let text = stderr(&out);
            assert!(text.contains(&format!("{key} is given twice")), "{text}");
        }
    }
    assert!(seen.events().is_empty(), "a request was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_from_a_data_file_stay_on_their_line() {
    let seen = Seen::default();
    let url = serve(&seen).await;
    let body = sample(EventType::UserOnline)
        .id("evt_1\nevt_1: delivered at the first attempt")
        .body();
    let file = temp_file("two-lines.json", &body);
    let out = run_at(
        &url,
        &["simulate", "user.online", "--data", file.to_str().unwrap()],
    )
    .await;
    let text = stdout(&out);
    assert!(
        text.lines().all(|line| !line.starts_with("evt_1: ")),
        "{text}"
    );
    assert!(text.starts_with("user.online evt_1\\nevt_1: "), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_and_concurrent_copies_are_bounded() {
    for (flag, value) in [("--duplicates", "101"), ("--concurrent", "65")] {
        let out = run_at(
            "http://127.0.0.1:1/webhooks",
            &["simulate", "user.online", flag, value],
        )
        .await;
        assert_exit(&out, 2);
        assert!(stderr(&out).contains(value), "{}", stderr(&out));
    }
}
