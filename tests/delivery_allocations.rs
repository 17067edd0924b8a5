//! Heap allocations made by one whole delivery through `Receiver::receive` (the
//! ready-made endpoint's work, without HTTP): verify, parse, claim, the owned copy
//! for the handler, the delivery task, the handler's future, settling and the
//! answer. Counted per thread by `allocation-counter` on a current-thread runtime, so
//! the spawned task's allocations are counted too; a regression fails here.

use notmeta_test_support::bodies;
use notmeta_webhooks::receiver::{HandlerError, Outcome, Receiver};
use notmeta_webhooks::{Event, Verifier, sign};

/// The most allocations one handled delivery of a 1 KiB `message.received` event may
/// make, on average: the bound reached (the boxed delivery future, the boxed
/// delivery run — which a handler that never waits finishes without a task of its
/// own — the box that carries the event to the handler, and the event's owned copy:
/// one shared copy of the body, which its identifiers point into, and the texts the
/// handler keeps: `from`, `to` and `text`). Counting the outcome with the `metrics` feature
/// allocates nothing (its labels are static). The core itself makes none
/// (`tests/allocations.rs`).
///
/// The event travels boxed: one small allocation that keeps the delivery's futures
/// small (the boxed run went from 3,296 bytes to 848, under the allocator's
/// thread-cache size) and saves copying it at each step. The id kept to settle the
/// claim shares the body's copy.
const MAX_ALLOCATIONS_PER_DELIVERY: u64 = 7;

#[test]
fn one_delivery_allocates_a_bounded_number_of_times() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let receiver = Receiver::new(
        Verifier::new("whsec_alloc").unwrap(),
        |event: Event<'static>| async move {
            std::hint::black_box(event);
            Ok::<(), HandlerError>(())
        },
    );
    let template = String::from_utf8(bodies::message_received(1024)).unwrap();
    let delivery = |i: usize| {
        let body = template
            .replacen("\"id\":\"evt_", &format!("\"id\":\"evt_{i}_"), 1)
            .into_bytes();
        let header = sign(&body, "whsec_alloc");
        (body, header)
    };
    // Warm up: the store's table, the runtime's task slab.
    for i in 0..10_000 {
        let (body, header) = delivery(i);
        let answer = runtime.block_on(receiver.receive(&body, [header.as_bytes()]));
        assert_eq!(answer.outcome(), Outcome::Handled);
    }
    let rounds = 1_000;
    let mut total = 0;
    for i in 10_000..10_000 + rounds {
        let (body, header) = delivery(i);
        let info = allocation_counter::measure(|| {
            let answer = runtime.block_on(receiver.receive(&body, [header.as_bytes()]));
            assert_eq!(answer.outcome(), Outcome::Handled);
        });
        total += info.count_total;
    }
    let per_delivery = total / rounds as u64;
    println!("{per_delivery} allocations per delivery");
    assert!(
        per_delivery <= MAX_ALLOCATIONS_PER_DELIVERY,
        "{per_delivery} allocations per delivery, at most {MAX_ALLOCATIONS_PER_DELIVERY} expected"
    );
}
