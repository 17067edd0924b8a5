//! `notmeta-webhooks queue …` run as a built binary against hostile conditions: a
//! reader that goes away (`| head -1`), a server that stalls in the middle of a
//! reply, a namespace full of odd characters, and a long dead-letter list.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use notmeta_test_support::RedisServer;
use notmeta_test_support::proxy::Proxy;
use notmeta_webhooks::queue::Queue;

#[path = "common/queue_cli.rs"]
mod common;
use common::{BIN, dead_letter, figure, tool};

/// `queue dead-letters | head -1`: the reader goes away after one line; the tool
/// neither panics nor reports it, and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_goes_away_is_no_error() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    let ids: Vec<String> = (0..300).map(|i| format!("evt_{i:04}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    dead_letter(&queue, &ids).await;
    let url = server.url();
    let (status, stderr) = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(BIN)
            .args(["queue", "dead-letters", "--limit", "10000"])
            .env("NOTMETA_QUEUE_URL", &url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(first.starts_with("id"), "{first}");
        // The reading end closes here.
        let output = child.wait_with_output().unwrap();
        (
            output.status,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0), "{status:?} {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
}

/// A long list: `--limit` at its most lists all of them; a smaller limit says
/// there are more, on standard error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_dead_letter_list_and_the_limit() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    let ids: Vec<String> = (0..1_200).map(|i| format!("evt_{i:05}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    dead_letter(&queue, &ids).await;
    let url = server.url();
    let (code, out, err) = tool(Some(&url), &["dead-letters", "--limit", "10000"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.lines().count(), 1 + 1_200, "{err}");
    assert!(err.is_empty(), "{err}");
    let (code, out, err) = tool(Some(&url), &["dead-letters", "--limit", "1000"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.lines().count(), 1 + 1_000);
    assert!(
        err.contains("more dead letters than the 1000 shown"),
        "{err}"
    );
    for limit in ["10001", "18446744073709551616", "-1"] {
        let (code, out, err) = tool(Some(&url), &["dead-letters", "--limit", limit]).await;
        assert_eq!(code, Some(2), "{limit}: {out}{err}");
        assert!(out.is_empty());
    }
}

/// A server whose replies stall part-way (a byte a second through a proxy): every
/// command gives up at --timeout, exit 1, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stalls_mid_reply_is_given_up_on_at_the_timeout() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    let ids: Vec<String> = (0..20).map(|i| format!("evt_{i:04}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    dead_letter(&queue, &ids).await;
    let proxy = Proxy::start(server.port).await;
    proxy.set_rate(2);
    let url = proxy.redis_url();
    for command in [
        &["dead-letters"][..],
        &["stats"],
        &["pause"],
        &["replay"],
        &["purge", "--older-than", "0s", "--yes"],
    ] {
        let mut args = vec!["--timeout", "2"];
        args.extend(command);
        let started = Instant::now();
        let (code, out, err) = tool(Some(&url), &args).await;
        let took = started.elapsed();
        assert_eq!(code, Some(1), "{command:?}: {out}{err}");
        assert!(err.starts_with("error: "), "{command:?}: {err}");
        assert!(
            took >= Duration::from_millis(1_900) && took < Duration::from_secs(15),
            "{command:?}: {took:?}"
        );
    }
}

/// A namespace of spaces, braces, slashes, quotes and a control character names
/// the same queue for the tool as for the library; the control character is not
/// echoed raw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_of_odd_characters_names_the_same_queue() {
    let server = RedisServer::start();
    let namespace = "shop {eu}/\"blue\" \u{1b}[31m*?";
    let queue = Queue::connect(&server.url())
        .await
        .unwrap()
        .with_namespace(namespace);
    common::enqueue(&queue, &["evt_1", "evt_2"]).await;
    let url = server.url();
    let (code, out, err) = tool(Some(&url), &["--namespace", namespace, "pause"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(queue.is_paused().await.unwrap());
    let (code, stats, err) = tool(Some(&url), &["--namespace", namespace, "stats"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(figure(&stats, "pending"), "2");
    assert_eq!(figure(&stats, "state"), "paused");
    // Another namespace is another queue, one nothing has used: said, and
    // nothing is written there.
    for other in ["notmeta-webhooks", "shop {eu}/\"blue\" \u{1b}[32m*?"] {
        let (code, out, err) = tool(Some(&url), &["--namespace", other, "pause"]).await;
        assert_eq!(code, Some(1), "{out}{err}");
        assert!(err.contains("no queue in the namespace"), "{err}");
        assert!(!err.contains('\u{1b}'), "{err}");
        let other = Queue::connect(&url).await.unwrap().with_namespace(other);
        assert!(!other.is_paused().await.unwrap());
    }
    let (code, out, err) = tool(Some(&url), &["--namespace", namespace, "resume"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(!queue.is_paused().await.unwrap());
    assert!(
        !out.contains('\u{1b}') && !err.contains('\u{1b}'),
        "{out}{err}"
    );
}
