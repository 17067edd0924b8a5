//! The queue end to end on a real Redis Cluster: three masters started on loopback
//! with `--cluster-enabled yes` and joined with `redis-cli --cluster create`. The
//! queue is split into six partitions (hash-tagged keys, one slot per partition),
//! so the streams spread over the shards; see `queue_support` for the run.
//!
//! `NOTMETA_QUEUE_CLUSTER_EVENTS` sets the number of events (default 3,000).

mod queue_support;

use notmeta_test_support::RedisCluster;
use queue_support::{Target, end_to_end};

/// The child side (does nothing unless started by `end_to_end`).
#[test]
fn worker_process() {
    queue_support::worker_process();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_handled_exactly_once_on_a_cluster() {
    if std::env::var("NOTMETA_QUEUE_E2E_WORKER").is_ok() {
        return;
    }
    let events = std::env::var("NOTMETA_QUEUE_CLUSTER_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3_000);
    let cluster = RedisCluster::start(3);
    let target = Target::Cluster(cluster.urls());

    // The partitions really are on different shards.
    let queue = queue_support::queue(target.connect().await, 6);
    let mut masters = std::collections::BTreeSet::new();
    for p in 0..6u16 {
        let key = format!("{{e2e:{p}}}:stream");
        let slot = std::process::Command::new("redis-cli")
            .args([
                "-p",
                &cluster.nodes[0].port.to_string(),
                "cluster",
                "keyslot",
                &key,
            ])
            .output()
            .unwrap();
        let slot: u16 = String::from_utf8_lossy(&slot.stdout)
            .trim()
            .parse()
            .unwrap();
        masters.insert(slot / 5462);
    }
    assert!(
        masters.len() >= 2,
        "partitions on {} shard(s)",
        masters.len()
    );
    drop(queue);

    let summary = end_to_end("worker_process", target, 6, events).await;
    eprintln!("{summary}");
}
