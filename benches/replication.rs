//! What waiting for a replica costs (`RedisStore::with_replicas`,
//! `Queue::with_replicas`): wall-clock time per call against a real
//! `redis-server` primary with one replica on loopback, without and with the
//! option.
//!
//! Rows:
//!
//! - `store_claim_complete/primary` and `/replicas`: a `RedisStore` claim and its
//!   completion (two round trips; with the option each is followed by `WAIT 1`);
//! - `enqueue/primary` and `/replicas`: `Enqueuer::receive` of a signed event (one
//!   script; with the option, followed by `WAIT 1`).
//!
//! Run with `cargo bench --bench replication --features queue`. Loopback hides the
//! network: on a real network add about one primary-to-replica round trip per
//! acknowledged write.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use notmeta_test_support::RedisServer;
use notmeta_webhooks::dedup::{Claim, IdempotencyStore, RedisStore};
use notmeta_webhooks::queue::{Enqueuer, Queue};
use notmeta_webhooks::{Verifier, sign};

const SECRET: &str = "whsec_bench";
const WAIT: Duration = Duration::from_millis(250);
const WINDOW: Duration = Duration::from_secs(7200);

fn body(id: u64) -> Vec<u8> {
    format!(
        r#"{{"id":"evt_{id}","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{{}}}}"#
    )
    .into_bytes()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let primary = RedisServer::start();
    let _replica = RedisServer::start_replica_of(primary.port);
    let mut next = 0u64;

    let mut group = c.benchmark_group("store_claim_complete");
    for (name, replicated) in [("primary", false), ("replicas", true)] {
        let store = runtime.block_on(async {
            let store = RedisStore::connect(&primary.url()).await.unwrap();
            if replicated {
                store.with_replicas(1, WAIT)
            } else {
                store
            }
        });
        group.bench_function(name, |b| {
            b.iter(|| {
                next += 1;
                let id = format!("evt_{name}_{next}");
                runtime.block_on(async {
                    let Claim::Claimed(token) = store.claim(&id).await.unwrap() else {
                        panic!("{id} not claimed");
                    };
                    store.complete(&id, &token, WINDOW).await.unwrap();
                });
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("enqueue");
    for (name, replicated) in [("primary", false), ("replicas", true)] {
        let enqueuer = runtime.block_on(async {
            let queue = Queue::connect(&primary.url())
                .await
                .unwrap()
                .with_namespace(name);
            let queue = if replicated {
                queue.with_replicas(1, WAIT)
            } else {
                queue
            };
            Enqueuer::new(Verifier::new(SECRET).unwrap(), queue)
        });
        group.bench_function(name, |b| {
            b.iter(|| {
                next += 1;
                let body = body(next);
                let signature = sign(&body, SECRET);
                let answer = runtime.block_on(enqueuer.receive(&body, [signature.as_bytes()]));
                assert_eq!(answer.status(), 200);
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
