//! `notmeta-webhooks queue …` run as a built binary against a real `redis-server`:
//! every command, the settings that name the queue, bad URLs, unreachable and hung
//! servers, and a password that is never printed.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use notmeta_test_support::RedisServer;
use notmeta_test_support::redis_server::free_port;
use notmeta_webhooks::queue::Queue;

#[path = "common/queue_cli.rs"]
mod common;
use common::{dead_letter, every_command, figure, tool};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_on_a_queue_in_redis() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url()).await.unwrap();
    every_command(&queue, &server.url(), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_namespace_partitions_and_group_name_the_queue() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url())
        .await
        .unwrap()
        .with_namespace("shop")
        .with_partitions(3)
        .with_group("billing");
    let args = [
        "--namespace",
        "shop",
        "--partitions",
        "3",
        "--group",
        "billing",
    ];
    every_command(&queue, &server.url(), &args).await;

    // Another namespace is another queue; one never used is said as such, and
    // nothing is written there; another partition count is refused.
    dead_letter(&queue, &["evt_ns"]).await;
    let other = Queue::connect(&server.url()).await.unwrap();
    other.check_layout().await.unwrap();
    let (code, stats, _) = queue_of(&server, &["stats"]).await;
    assert_eq!(code, Some(0));
    assert_eq!(figure(&stats, "dead letters"), "0", "{stats}");
    for command in ["stats", "pause"] {
        let (code, out, err) = queue_of(&server, &["--namespace", "shpo", command]).await;
        assert_eq!(code, Some(1), "{out}");
        assert!(err.contains("no queue in the namespace \"shpo\""), "{err}");
    }
    assert!(
        !other
            .clone()
            .with_namespace("shpo")
            .is_paused()
            .await
            .unwrap()
    );
    let (code, out, err) = queue_of(&server, &["--namespace", "shop", "stats"]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(err.contains("3 partitions"), "{err}");
    let (code, out, err) = queue_of(&server, &["--namespace", "shop", "pause"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("state: paused"), "{out}");
    assert!(queue.is_paused().await.unwrap());
}

async fn queue_of(server: &RedisServer, args: &[&str]) -> (Option<i32>, String, String) {
    tool(Some(&server.url()), args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_the_url_is_used_and_never_printed() {
    let password = "pw_7f3a91c2_secret";
    let server = RedisServer::start_with(free_port(), &["--requirepass", password]);
    let port = server
        .url()
        .trim_start_matches("redis://127.0.0.1:")
        .trim_end_matches('/')
        .to_owned();
    let url = format!("redis://default:{password}@127.0.0.1:{port}/");
    let queue = Queue::connect(&url).await.unwrap();
    dead_letter(&queue, &["evt_pw"]).await;
    for args in [
        &["stats"][..],
        &["dead-letters"],
        &["pause"],
        &["resume"],
        &["replay"],
        &["purge", "--older-than", "0s", "--yes"],
    ] {
        let (code, out, err) = tool(Some(&url), args).await;
        assert_eq!(code, Some(0), "{args:?}: {out}{err}");
        assert!(
            !out.contains(password) && !err.contains(password),
            "{out}{err}"
        );
    }
    // A wrong password: refused, exit 1, neither password shown.
    let wrong = format!("redis://default:{password}_wrong@127.0.0.1:{port}/");
    let (code, out, err) = tool(Some(&wrong), &["stats"]).await;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        !out.contains(password) && !err.contains(password),
        "{out}{err}"
    );
    assert!(err.contains("default:***@"), "{err}");
    // Given as --queue-url, the same.
    let (code, out, err) = tool(None, &["--queue-url", &wrong, "stats"]).await;
    assert_eq!(code, Some(1));
    assert!(
        !out.contains(password) && !err.contains(password),
        "{out}{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_of_use_exit_2_and_name_the_cause() {
    let server = RedisServer::start();
    let url = server.url();
    let cases: [(Option<&str>, &[&str], &str); 7] = [
        (None, &["stats"], "no queue URL"),
        (Some("http://127.0.0.1:1/"), &["stats"], "not a queue URL"),
        (Some("redis://[bad"), &["stats"], "not a Redis URL"),
        (
            Some(&url),
            &["purge", "--older-than", "7x", "--yes"],
            "not an age",
        ),
        (Some(&url), &["purge", "--yes"], "--older-than"),
        (Some(&url), &["--partitions", "0", "stats"], "partitions"),
        (Some(&url), &["dead-letters", "--limit", "0"], "limit"),
    ];
    for (url, args, says) in cases {
        let (code, out, err) = tool(url, args).await;
        assert_eq!(code, Some(2), "{args:?}: {out}{err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(out.is_empty(), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_or_hung_server_exits_1_in_bounded_time() {
    // Nothing listens: said at once.
    let closed = format!("redis://127.0.0.1:{}/", free_port());
    let started = Instant::now();
    let (code, out, err) = tool(Some(&closed), &["stats"]).await;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("cannot connect to Redis"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // Accepts connections and never answers: given up on at --timeout.
    let hung = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}/", hung.local_addr().unwrap());
    for command in ["stats", "pause"] {
        let started = Instant::now();
        let (code, out, err) = tool(Some(&url), &["--timeout", "2", command]).await;
        let took = started.elapsed();
        assert_eq!(code, Some(1), "{out}{err}");
        assert!(err.starts_with("error: "), "{err}");
        assert!(
            took >= Duration::from_millis(1900) && took < Duration::from_secs(15),
            "{took:?}"
        );
    }
}
