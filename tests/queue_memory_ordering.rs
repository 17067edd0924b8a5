//! Key limits on the queue in memory (`Queue::in_memory().with_key_limit(..)`):
//! the same promises as on Redis and PostgreSQL (per-key order and cap through
//! random temporary failures and several workers, a cap of 2, the dead-letter
//! policies, retries keeping their slot). Built with the `queue` feature alone.

use notmeta_webhooks::queue::{KeyLimit, OnDeadLetter, Queue};

mod common;
use common::ordering::dead_letters;
use common::ordering::{Ledger, drained, enqueue_all, until};

fn ordered(limit: KeyLimit) -> Queue {
    Queue::in_memory().with_key_limit(limit)
}

/// 20 keys × 15 events, a handler failing temporarily at random, three workers of
/// 8 handlers: each key's handlers start in enqueue order, one at a time, and every
/// event is handled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_keys_run_in_order_one_at_a_time() {
    let queue = ordered(KeyLimit::per_key());
    let ledger = Ledger::default();
    let workers = common::ordering::workers(&queue, &ledger, 3, 1);
    enqueue_all(&queue, 20, 15).await;
    until(120, "every event", || ledger.succeeded() == 300).await;
    drained(&queue, 30).await;
    for worker in workers {
        worker.stop().await;
    }
    ledger.check(20, 15, 1);
}

/// A cap of 2: at most 2 handlers of a key at once, and 2 reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cap_of_two_runs_at_most_two_per_key() {
    common::ordering::cap_of_two(&ordered(KeyLimit::per_key().with_max_running(2))).await;
}

/// Release (the default): a dead letter frees its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_releases_its_key_by_default() {
    dead_letters::a_dead_letter_releases_its_key(&ordered(KeyLimit::per_key())).await;
}

/// Hold: the key stays blocked until the dead letter is purged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_dead_letter_blocks_its_key_until_purged() {
    let queue = ordered(KeyLimit::per_key().on_dead_letter(OnDeadLetter::Hold));
    dead_letters::a_held_dead_letter_blocks_its_key_until_purged(&queue).await;
}

/// Hold, then replay: the replayed event runs before the key's waiting events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_held_dead_letter_runs_first() {
    let queue = ordered(KeyLimit::per_key().on_dead_letter(OnDeadLetter::Hold));
    dead_letters::a_replayed_held_dead_letter_runs_first(&queue).await;
}

/// A retry keeps its key's slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_keeps_its_keys_slot() {
    dead_letters::a_retry_keeps_its_keys_slot(&ordered(KeyLimit::per_key())).await;
}

/// Hostile keys (empty, 1 MB, NUL, braces, separators, unicode) keep their order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_keys_keep_their_order() {
    let queue = ordered(common::ordering_attacks::hostile_limit());
    common::ordering_attacks::hostile_keys_run_in_order(&queue).await;
}

/// A redelivery after the dedup window of a key's queued events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_after_the_dedup_window_neither_doubles_nor_blocks_a_key() {
    let queue = Queue::in_memory()
        .with_dedup_window(std::time::Duration::from_secs(1))
        .with_key_limit(KeyLimit::per_key());
    common::ordering_attacks::a_redelivery_after_the_window_neither_doubles_nor_blocks(&queue)
        .await;
}

/// A cap of `u32::MAX` lets a key's events run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_cap_runs_a_keys_events_at_once() {
    let queue = ordered(KeyLimit::per_key().with_max_running(u32::MAX));
    common::ordering_attacks::the_largest_cap_runs_a_keys_events_at_once(&queue).await;
}

/// A key function that panics: a server error for that event, not a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_key_function_is_answered_with_a_server_error() {
    common::ordering_attacks::a_panicking_key_function_is_a_server_error(Queue::in_memory()).await;
}

/// Release: a dead letter replayed while its key's next event runs waits for it,
/// then runs before the key's later events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_dead_letter_replayed_mid_run_waits_then_goes_first() {
    let queue = ordered(KeyLimit::per_key());
    common::ordering_attacks::a_released_dead_letter_replayed_mid_run_waits_then_goes_first(&queue)
        .await;
}

/// A pause while a key's events run, then a resume: order and cap hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_mid_run_keeps_the_order() {
    let queue = ordered(KeyLimit::per_key());
    common::ordering_attacks::a_pause_mid_run_keeps_the_order(&queue).await;
}
