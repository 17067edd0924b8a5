//! `notmeta-webhooks queue …` run as a built binary against a real PostgreSQL server:
//! every command on a queue in a schema and prefix of its own, a password never
//! printed, a database without the queue's tables (none created), and an
//! unreachable server.

use std::time::{Duration, Instant};

use notmeta_test_support::PostgresServer;
use notmeta_test_support::redis_server::free_port;
use notmeta_webhooks::postgres::Tables;
use notmeta_webhooks::queue::Queue;

#[path = "common/queue_cli.rs"]
mod common;
use common::{every_command, tool};

/// The tables of the tests' queue: a schema and a prefix other than the defaults.
fn tables() -> Tables {
    Tables::default()
        .with_schema("ops")
        .unwrap()
        .with_prefix("q_")
        .unwrap()
}

async fn pool(url: &str) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect(url)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_on_a_queue_in_postgres() {
    let server = PostgresServer::start();
    let pool = pool(&server.url()).await;
    let queue = Queue::postgres(pool.clone(), &tables()).await.unwrap();
    // The server trusts loopback: the password is sent, and must never be printed.
    let password = "pw_pg_51d0e2_secret";
    let url = server.url().replace(
        "postgres://postgres@",
        &format!("postgres://postgres:{password}@"),
    );
    every_command(&queue, &url, &["--schema", "ops", "--prefix", "q_"]).await;
    for args in [&["stats"][..], &["dead-letters"], &["pause"], &["resume"]] {
        let mut all = vec!["--schema", "ops", "--prefix", "q_"];
        all.extend(args);
        let (code, out, err) = tool(Some(&url), &all).await;
        assert_eq!(code, Some(0), "{out}{err}");
        assert!(
            !out.contains(password) && !err.contains(password),
            "{out}{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_without_the_queue_is_said_and_left_untouched() {
    let server = PostgresServer::start();
    let pool = pool(&server.url()).await;
    Queue::postgres(pool.clone(), &tables()).await.unwrap();
    // The default schema and prefix hold no queue here.
    for command in ["stats", "pause"] {
        let (code, out, err) = tool(Some(&server.url()), &[command]).await;
        assert_eq!(code, Some(1), "{out}{err}");
        assert!(err.contains("no queue in this database"), "{err}");
    }
    let created: bool = sqlx::query_scalar(
        "SELECT to_regclass('public.notmeta_webhooks_jobs') IS NOT NULL
             OR to_regclass('public.notmeta_webhooks_queue_state') IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(!created, "the tool created tables");
    // A name the tables cannot have is an error of use.
    let (code, _, err) = tool(Some(&server.url()), &["--prefix", "Bad-Name", "stats"]).await;
    assert_eq!(code, Some(2), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_exits_1_at_once_without_the_password() {
    let url = format!("postgres://app:pw_pg_gone@127.0.0.1:{}/app", free_port());
    let started = Instant::now();
    let (code, out, err) = tool(Some(&url), &["stats"]).await;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("cannot connect to PostgreSQL at postgres://app:***@"),
        "{err}"
    );
    assert!(!err.contains("pw_pg_gone"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let (code, _, err) = tool(Some("postgres://app@127.0.0.1:notaport/app"), &["stats"]).await;
    assert_eq!(code, Some(2), "{err}");
}
