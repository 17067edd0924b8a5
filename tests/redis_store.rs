//! The Redis idempotency store against a real `redis-server`.

use std::time::Duration;

use notmeta_test_support::RedisServer;
use notmeta_webhooks::dedup::{Claim, ClaimToken, IdempotencyStore, RedisStore, Settled};

const WINDOW: Duration = Duration::from_secs(7200);

async fn claimed(store: &RedisStore, id: &str) -> ClaimToken {
    match store.claim(id).await.unwrap() {
        Claim::Claimed(token) => token,
        other => panic!("{id}: {other:?}"),
    }
}

#[tokio::test]
async fn two_phase_protocol_on_a_real_server() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url()).await.unwrap();

    let token = claimed(&store, "evt_1").await;
    assert_eq!(store.claim("evt_1").await.unwrap(), Claim::InProgress);
    // Only the holder's token releases.
    store.release("evt_1", &ClaimToken::new()).await.unwrap();
    assert_eq!(store.claim("evt_1").await.unwrap(), Claim::InProgress);
    store.release("evt_1", &token).await.unwrap();
    let token = claimed(&store, "evt_1").await;
    assert_eq!(
        store.complete("evt_1", &token, WINDOW).await.unwrap(),
        Settled::Recorded
    );
    assert_eq!(store.claim("evt_1").await.unwrap(), Claim::Done);
    // Releasing after completion does not forget the event.
    store.release("evt_1", &token).await.unwrap();
    assert_eq!(store.claim("evt_1").await.unwrap(), Claim::Done);

    // The key is namespaced and expires with the window.
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let value: String = redis::cmd("GET")
        .arg("notmeta-webhooks:event:evt_1")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(value.starts_with("done:"), "{value}");
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
    let store = RedisStore::connect(&server.url())
        .await
        .unwrap()
        .with_lease(Duration::from_secs(1));
    let other = RedisStore::connect(&server.url())
        .await
        .unwrap()
        .with_namespace("staging");

    let _abandoned = claimed(&store, "evt_crash").await;
    assert_eq!(store.claim("evt_crash").await.unwrap(), Claim::InProgress);
    // Another namespace does not see it.
    claimed(&other, "evt_crash").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    claimed(&store, "evt_crash").await;
}

#[tokio::test]
async fn renewal_keeps_a_claim_and_only_the_holder_settles_it() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url())
        .await
        .unwrap()
        .with_lease(Duration::from_secs(1));
    let token = claimed(&store, "evt_1").await;
    // Renewed every 400 ms, the 1 s claim outlives three leases.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            store.renew("evt_1", &token).await.unwrap(),
            Settled::Recorded
        );
    }
    assert_eq!(store.claim("evt_1").await.unwrap(), Claim::InProgress);
    let stranger = ClaimToken::new();
    assert_eq!(
        store.renew("evt_1", &stranger).await.unwrap(),
        Settled::LeaseLost
    );
    assert_eq!(
        store.complete("evt_1", &stranger, WINDOW).await.unwrap(),
        Settled::LeaseLost
    );
    assert_eq!(store.claim("evt_1").await.unwrap(), Claim::InProgress);

    // Not renewed, the lease lapses and a second delivery takes over; the first
    // learns it lost the lease and changes nothing.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let second = claimed(&store, "evt_1").await;
    assert_eq!(
        store.renew("evt_1", &token).await.unwrap(),
        Settled::LeaseLost
    );
    assert_eq!(
        store.complete("evt_1", &token, WINDOW).await.unwrap(),
        Settled::LeaseLost
    );
    assert_eq!(store.claim("evt_1").await.unwrap(), Claim::InProgress);
    assert_eq!(
        store.complete("evt_1", &second, WINDOW).await.unwrap(),
        Settled::Recorded
    );
    assert_eq!(store.claim("evt_1").await.unwrap(), Claim::Done);
}

#[tokio::test]
async fn huge_durations_are_clamped_not_refused() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url())
        .await
        .unwrap()
        .with_lease(Duration::MAX);
    let token = claimed(&store, "evt_1").await;
    assert_eq!(
        store.renew("evt_1", &token).await.unwrap(),
        Settled::Recorded
    );
    assert_eq!(
        store
            .complete("evt_1", &token, Duration::MAX)
            .await
            .unwrap(),
        Settled::Recorded
    );
    assert_eq!(store.claim("evt_1").await.unwrap(), Claim::Done);
    let zero = RedisStore::connect(&server.url())
        .await
        .unwrap()
        .with_lease(Duration::ZERO);
    let token = claimed(&zero, "evt_2").await;
    assert_eq!(
        zero.complete("evt_2", &token, Duration::ZERO)
            .await
            .unwrap(),
        Settled::Recorded
    );
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
            stores.iter().flat_map(|s| [s, s]).map(|s| s.claim(&id)),
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
    let result = tokio::time::timeout(Duration::from_secs(20), store.claim("evt_1")).await;
    assert!(matches!(result, Ok(Err(_))), "{result:?}");
}

/// The claim is one plain `SET … NX PX` with a lease as its expiry; a key that holds
/// neither a claim nor `done` (written by something else) is an error, not a claim.
#[tokio::test]
async fn a_claim_is_a_leased_key_and_a_foreign_value_is_an_error() {
    let server = RedisServer::start();
    let store = RedisStore::connect(&server.url())
        .await
        .unwrap()
        .with_lease(Duration::from_secs(5));
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();

    let token = claimed(&store, "evt_1").await;
    let key = "notmeta-webhooks:event:evt_1";
    let value: String = redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(value, format!("claim:{token}"));
    let ttl: i64 = redis::cmd("PTTL")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((4_000..=5_000).contains(&ttl), "{ttl}");

    let () = redis::cmd("SET")
        .arg("notmeta-webhooks:event:evt_2")
        .arg("something else")
        .query_async(&mut conn)
        .await
        .unwrap();
    let error = store.claim("evt_2").await.unwrap_err();
    let cause = std::error::Error::source(&error).unwrap().to_string();
    assert!(cause.contains("something else"), "{cause}");
}

#[tokio::test]
async fn with_replicas_a_claim_and_a_completion_count_once_a_replica_has_them() {
    let primary = RedisServer::start();
    let store = RedisStore::connect(&primary.url())
        .await
        .unwrap()
        .with_replicas(1, Duration::from_millis(500));
    // (A replica just synced acknowledges its first write after about 100 ms.)

    // No replica: no claim counts.
    let error = store.claim("evt_alone").await.unwrap_err();
    let cause = std::error::Error::source(&error).unwrap().to_string();
    assert!(cause.contains("reached 0 of the 1 replicas"), "{cause}");
    // The claim the primary took all the same keeps duplicates away (503) until
    // its lease lapses: nothing runs meanwhile.
    let replica = RedisServer::start_replica_of(primary.port);
    assert_eq!(store.claim("evt_alone").await.unwrap(), Claim::InProgress);

    // With the replica: as soon as a claim or a completion counts, the replica has it.
    let client = redis::Client::open(replica.url()).unwrap();
    let mut on_replica = client.get_multiplexed_async_connection().await.unwrap();
    let key = "notmeta-webhooks:event:evt_replicated";
    let token = claimed(&store, "evt_replicated").await;
    let value: String = redis::cmd("GET")
        .arg(key)
        .query_async(&mut on_replica)
        .await
        .unwrap();
    assert_eq!(value, format!("claim:{token}"));
    assert_eq!(
        store
            .complete("evt_replicated", &token, WINDOW)
            .await
            .unwrap(),
        Settled::Recorded
    );
    let value: String = redis::cmd("GET")
        .arg(key)
        .query_async(&mut on_replica)
        .await
        .unwrap();
    assert_eq!(value, format!("done:{token}"));
    assert_eq!(store.claim("evt_replicated").await.unwrap(), Claim::Done);
}

/// A claim's renewal is acknowledged like the claim: with the replica frozen, a
/// renewal the primary took is a store error (the receiver logs and counts it),
/// not a renewal that a failover to that replica would forget.
#[tokio::test]
async fn with_replicas_a_renewal_counts_once_a_replica_has_it() {
    let primary = RedisServer::start();
    let replica = RedisServer::start_replica_of(primary.port);
    let store = RedisStore::connect(&primary.url())
        .await
        .unwrap()
        .with_replicas(1, Duration::from_millis(300));
    // (A replica just synced acknowledges its first write after about 100 ms.)
    let token = loop {
        match store.claim("evt_long").await {
            Ok(Claim::Claimed(token)) => break token,
            Ok(other) => panic!("{other:?}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert_eq!(
        store.renew("evt_long", &token).await.unwrap(),
        Settled::Recorded
    );
    replica.pause();
    let error = store.renew("evt_long", &token).await.unwrap_err();
    replica.resume();
    let cause = std::error::Error::source(&error).unwrap().to_string();
    assert!(cause.contains("reached 0 of the 1 replicas"), "{cause}");
}
