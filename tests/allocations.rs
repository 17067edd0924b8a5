//! Heap allocations made by one `Verifier::verify_and_parse` of a `message.received`
//! body, counted by a global allocator (`allocation-counter`, counting per thread so
//! that tests running in parallel do not see each other's), so that a regression
//! fails here.

use notmeta_webhooks::{EventKind, SIGNATURE_HEADER, Verifier, sign};

use notmeta_test_support::bodies;

/// How many allocations (and reallocations) `f` makes on this thread.
fn allocations<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let mut out = None;
    let info = allocation_counter::measure(|| out = Some(f()));
    (usize::try_from(info.count_total).unwrap(), out.unwrap())
}

/// The most allocations one `verify_and_parse` of a `message.received` body may make:
/// none. The header is parsed in place and its hex decoded into a fixed array; the
/// keyed HMAC state is cloned on the stack; serde_json reads the body in place and
/// every string of the event borrows from it (none of these bodies holds an escape,
/// which is the only case a string is copied); timestamps are plain values; and the
/// `message.received` payload is stored inline in the event.
const MAX_ALLOCATIONS: usize = 0;

#[test]
fn verify_and_parse_of_message_received_does_not_allocate() {
    let verifier = Verifier::builder()
        .secret("whsec_alloc")
        .max_body_size(2 * 1024 * 1024)
        .build()
        .unwrap();
    for size in bodies::SIZES {
        let body = bodies::message_received(size);
        let header = sign(&body, "whsec_alloc");
        let (n, event) = allocations(|| {
            verifier
                .verify(&body, [&header])
                .and_then(|payload| payload.parse())
        });
        let event = event.unwrap();
        assert!(matches!(event.kind, EventKind::MessageReceived(_)));
        println!("{} bytes: {n} allocations", body.len());
        // `==` rather than `<=`: the bound is zero.
        assert_eq!(
            n,
            MAX_ALLOCATIONS,
            "{} bytes: {n} allocations, at most {MAX_ALLOCATIONS} expected",
            body.len()
        );
        // The same when the header is read from an `http::HeaderMap`.
        let mut headers = http::HeaderMap::new();
        headers.insert(SIGNATURE_HEADER, header.parse().unwrap());
        let (from_map, event) = allocations(|| {
            verifier
                .verify(&body, headers.get_all(notmeta_webhooks::SIGNATURE_HEADER))
                .and_then(|p| p.parse())
        });
        assert!(matches!(event.unwrap().kind, EventKind::MessageReceived(_)));
        assert_eq!(from_map, n, "{} bytes, from a HeaderMap", body.len());
    }
}

#[test]
fn the_counter_sees_allocations() {
    let (n, v) = allocations(|| vec![1u8; 16]);
    assert_eq!(v.len(), 16);
    assert_eq!(n, 1);
}

#[test]
fn the_bench_bodies_have_the_sizes_asked_for() {
    let smallest = bodies::message_received(0);
    assert_eq!(smallest.len(), 380);
    assert_eq!(
        bodies::compact(br#"{ "a" : "b c\" d" ,"e":[1, 2]}"#),
        br#"{"a":"b c\" d","e":[1,2]}"#
    );
    for size in &bodies::SIZES[1..] {
        assert_eq!(bodies::message_received(*size).len(), *size);
    }
}
