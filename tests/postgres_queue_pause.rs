//! Pausing and resuming the queue in PostgreSQL, against a real PostgreSQL server:
//! the flag is the row of `<prefix>queue_state`, read by the take statement itself.

use notmeta_test_support::PostgresServer;
use notmeta_webhooks::postgres::Tables;
use notmeta_webhooks::queue::Queue;

mod common;
use common::pg_queue::{pool, scalar, setup};
#[path = "common/pause.rs"]
mod pause;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_worker_starts_nothing_and_resume_drains() {
    let (_server, _pool, queue) = setup().await;
    pause::a_paused_worker_starts_nothing_and_resume_drains(queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_lets_running_handlers_settle_and_holds_retries() {
    let (_server, _pool, queue) = setup().await;
    pause::a_pause_lets_running_handlers_settle_and_holds_retries(queue).await;
}

#[tokio::test]
async fn the_flag_is_a_row_per_set_of_tables() {
    let server = PostgresServer::start();
    let pool = pool(&server.url()).await;
    let queue = Queue::postgres(pool.clone(), &Tables::default())
        .await
        .unwrap();
    let other_tables = Tables::default().with_prefix("other_").unwrap();
    let other = Queue::postgres(pool.clone(), &other_tables).await.unwrap();
    queue.pause().await.unwrap();
    assert!(queue.is_paused().await.unwrap());
    assert!(!other.is_paused().await.unwrap());
    let sql = "SELECT count(*) FROM notmeta_webhooks_queue_state WHERE paused";
    assert_eq!(scalar(&pool, sql).await, 1);
    queue.resume().await.unwrap();
    assert_eq!(scalar(&pool, sql).await, 0);
    assert!(!queue.is_paused().await.unwrap());
}

#[tokio::test]
async fn tables_at_version_2_are_upgraded_with_the_state_table() {
    let server = PostgresServer::start();
    let pool = pool(&server.url()).await;
    // The layout version 2 made, as an older release left it.
    let v2 = Tables::default().sql();
    let v2: String = v2
        .split(";\n")
        .filter(|s| {
            !s.contains("queue_state") && !s.contains("ADD COLUMN") && !s.contains("order_key")
        })
        .filter(|s| !s.trim().is_empty())
        .filter(|s| !s.contains("INSERT INTO"))
        .map(|s| format!("{s};\n"))
        .collect();
    sqlx::raw_sql(&v2).execute(&pool).await.unwrap();
    sqlx::raw_sql("INSERT INTO notmeta_webhooks_schema_version (version) VALUES (2)")
        .execute(&pool)
        .await
        .unwrap();
    let queue = Queue::postgres(pool.clone(), &Tables::default())
        .await
        .unwrap();
    let version = "SELECT version::bigint FROM notmeta_webhooks_schema_version";
    assert_eq!(
        scalar(&pool, version).await,
        i64::from(notmeta_webhooks::postgres::SCHEMA_VERSION)
    );
    queue.pause().await.unwrap();
    assert!(queue.counts().await.unwrap().paused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_worker_stops_taking_within_one_pass() {
    let (_server, _pool, queue) = setup().await;
    let (n, last) = pause::a_busy_worker_stops_taking_within_one_pass(queue).await;
    println!("PostgreSQL: {n} started after the pause returned, the last {last:?} after");
}
