//! The Redis idempotency store against a real `redis-server`.

use std::time::Duration;

use notmeta_test_support::RedisServer;
use notmeta_webhooks::dedup::{Claim, ClaimToken, IdempotencyStore, RedisStore};

const LEASE: Duration = Duration::from_secs(30);
const WINDOW: Duration = Duration::from_secs(7200);

async fn claimed(store: &RedisStore, id: &str, lease: Duration) -> ClaimToken {
    match store.claim(id, lease).await.unwrap() {
        Claim::Claimed(token) => token,
        other => panic!("{id}: {other:?}"),
    }
}

#[tokio::test]
async fn two_phase_protocol_on_a_real_server() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url()).await.unwrap();

    let token = claimed(&store, "evt_1", LEASE).await;
    assert_eq!(
        store.claim("evt_1", LEASE).await.unwrap(),
        Claim::InProgress
    );
    // Only the holder's token releases.
    store.release("evt_1", &ClaimToken::new()).await.unwrap();
    assert_eq!(
        store.claim("evt_1", LEASE).await.unwrap(),
        Claim::InProgress
    );
    store.release("evt_1", &token).await.unwrap();
    let token = claimed(&store, "evt_1", LEASE).await;
    store.complete("evt_1", &token, WINDOW).await.unwrap();
    assert_eq!(store.claim("evt_1", LEASE).await.unwrap(), Claim::Done);
    // Releasing after completion does not forget the event.
    store.release("evt_1", &token).await.unwrap();
    assert_eq!(store.claim("evt_1", LEASE).await.unwrap(), Claim::Done);

    // The key is namespaced and expires with the window.
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let value: String = redis::cmd("GET")
        .arg("notmeta-webhooks:event:evt_1")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(value, "done");
    let ttl: i64 = redis::cmd("PTTL")
        .arg("notmeta-webhooks:event:evt_1")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 7_100_000 && ttl <= 7_200_000, "ttl {ttl}");
}

#[tokio::test]
async fn a_crashed_claim_expires_and_namespaces_are_separate() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url()).await.unwrap();
    let other = RedisStore::connect(&server.url())
        .await
        .unwrap()
        .namespace("staging");

    let _abandoned = claimed(&store, "evt_crash", Duration::from_millis(200)).await;
    assert_eq!(
        store.claim("evt_crash", LEASE).await.unwrap(),
        Claim::InProgress
    );
    // Another namespace does not see it.
    claimed(&other, "evt_crash", LEASE).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    claimed(&store, "evt_crash", LEASE).await;
}

#[tokio::test]
async fn concurrent_claims_have_one_winner() {
    let server = RedisServer::start();
    let url = server.url();
    let stores: Vec<RedisStore> =
        futures_util::future::join_all((0..4).map(|_| RedisStore::connect(&url)))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    for round in 0..50 {
        let id = format!("evt_race_{round}");
        let claims = futures_util::future::join_all(
            stores
                .iter()
                .flat_map(|s| [s, s])
                .map(|s| s.claim(&id, LEASE)),
        )
        .await;
        let winners = claims
            .iter()
            .filter(|c| matches!(c, Ok(Claim::Claimed(_))))
            .count();
        assert_eq!(winners, 1, "{id}: {claims:?}");
    }
}

#[tokio::test]
async fn an_unreachable_server_is_an_error_not_a_hang() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url()).await.unwrap();
    drop(server);
    let result = tokio::time::timeout(Duration::from_secs(20), store.claim("evt_1", LEASE)).await;
    assert!(matches!(result, Ok(Err(_))), "{result:?}");
}
