//! Attacks on the queue's key limits in Redis (`Queue::with_key_limit`), against a
//! real `redis-server`: duplicates arriving after the dedup window while their
//! first copy still waits or holds the key's slot, hostile keys from a key
//! function, extreme caps. Built with the `queue` feature alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notmeta_test_support::RedisServer;
use notmeta_webhooks::Event;
use notmeta_webhooks::queue::{KeyLimit, Queue, Worker};
use notmeta_webhooks::receiver::Handler;

mod common;
use common::ordering::{drained, event_id, fast, keyed_body, start, until};
use common::queue::{enqueuer, send};

/// What the handlers saw: every start in order, and the most runs of one key at
/// once (keyed by the key function's answer for the event, here the conversation).
#[derive(Clone, Default)]
struct Watch(Arc<Mutex<(Vec<String>, HashMap<String, usize>, usize)>>);

impl Watch {
    /// A handler that runs `ms` milliseconds, counting the runs of each
    /// conversation (the part of the id before `-`) at once.
    fn handler(&self, ms: u64) -> impl Handler + use<> {
        let watch = self.clone();
        move |event: Event<'static>| {
            let watch = watch.clone();
            async move {
                let key = event.id.split('-').next().unwrap_or_default().to_owned();
                {
                    let mut w = watch.0.lock().unwrap();
                    w.0.push(event.id.to_string());
                    let now = {
                        let n = w.1.entry(key.clone()).or_default();
                        *n += 1;
                        *n
                    };
                    w.2 = w.2.max(now);
                }
                tokio::time::sleep(Duration::from_millis(ms)).await;
                *watch.0.lock().unwrap().1.get_mut(&key).unwrap() -= 1;
                Ok(())
            }
        }
    }

    fn starts(&self) -> Vec<String> {
        self.0.lock().unwrap().0.clone()
    }

    fn most(&self) -> usize {
        self.0.lock().unwrap().2
    }
}

/// Events that waited longer than the dedup window (no worker running) are
/// delivered again: the copy of the event that holds the key's slot is answered
/// as a duplicate (it is still queued), the copy of the waiting one never runs
/// beside or after its first copy, and the key is not left blocked: its next
/// event runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_after_the_dedup_window_neither_doubles_nor_blocks_a_key() {
    let server = RedisServer::start();
    let queue = Queue::connect(&server.url())
        .await
        .unwrap()
        .with_dedup_window(Duration::from_secs(1))
        .with_key_limit(KeyLimit::per_key());
    let endpoint = enqueuer(&queue);
    for i in 0..2 {
        assert_eq!(send(&endpoint, &keyed_body(0, i)).await.1, "OK");
    }
    // The window passes while both wait (event 0 holds the slot, 1 waits for it).
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        send(&endpoint, &keyed_body(0, 0)).await.1,
        "OK (duplicate)",
        "the event holding the key's slot was queued a second time"
    );
    assert_eq!(send(&endpoint, &keyed_body(0, 1)).await.0, 200);
    assert_eq!(send(&endpoint, &keyed_body(0, 2)).await.1, "OK");

    let watch = Watch::default();
    let worker = start(fast(Worker::new(queue.clone(), watch.handler(300)), "a"));
    until(30, "the key's last event", || {
        watch.starts().contains(&event_id(0, 2))
    })
    .await;
    drained(&queue, 30).await;
    worker.stop().await;
    assert_eq!(watch.most(), 1, "two runs of one key at once");
    let expected: Vec<String> = (0..3).map(|i| event_id(0, i)).collect();
    assert_eq!(watch.starts(), expected);
}
