//! What the lease keeper's tests share: the secret and lease, event bodies,
//! delivering them, counting keeper threads, runtimes, and running one test at a
//! time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use notmeta_webhooks::dedup::IdempotencyStore;
use notmeta_webhooks::receiver::{Outcome, Receiver};
use notmeta_webhooks::{Event, sign};
use tokio::runtime::{Builder, Runtime};

pub const SECRET: &str = "whsec_lease_keeper";
pub const LEASE: Duration = Duration::from_secs(1);

/// The tests count keeper threads and time leases: one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub fn body(i: usize) -> Vec<u8> {
    format!(
        r#"{{"id":"evt_{i}","type":"user.online","created_at":"2024-01-01T00:00:00Z","data":{{}}}}"#
    )
    .into_bytes()
}

pub fn index(event: &Event<'_>) -> usize {
    event.id.as_str()["evt_".len()..].parse().unwrap()
}

pub async fn receive<S: IdempotencyStore>(
    receiver: &Receiver<impl notmeta_webhooks::receiver::Handler, S>,
    i: usize,
) -> Outcome {
    let body = body(i);
    let header = sign(&body, SECRET);
    receiver.receive(&body, [header.as_bytes()]).await.outcome()
}

/// Threads of this process named as the keeper's.
pub fn keeper_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "notmeta-keeper")
        .count()
}

pub fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn runtime(workers: usize) -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs per event id, shared by every receiver of a test.
pub type Runs = Arc<Mutex<HashMap<usize, usize>>>;
