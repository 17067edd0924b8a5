//! A delivery cut short (a store's call panics, a runtime goes away while the outcome
//! is being recorded) settles its claim as settling would have: never giving back a
//! claim whose handler may still run, or has already succeeded. Against a real
//! redis-server where Redis is involved.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use notmeta_test_support::RedisServer;
use notmeta_webhooks::dedup::{
    Claim, ClaimToken, IdempotencyStore, MemoryStore, RedisStore, Settled, StoreError,
};
use notmeta_webhooks::receiver::{Handler, HandlerError, Outcome, Receiver};
use notmeta_webhooks::{Event, Verifier, sign};

const SECRET: &str = "whsec_claim_guard";
const BODY: &[u8] =
    br#"{"id":"evt_guarded","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#;

/// A store that forwards to `inner`, except that `renew` panics, and that the first
/// `complete` panics or fails, as set.
struct Faulty<S> {
    inner: S,
    renew_panics: bool,
    complete_fault: Option<Fault>,
    completes: AtomicUsize,
}

#[derive(Clone, Copy)]
enum Fault {
    Panic,
    Fail,
}

impl<S> Faulty<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            renew_panics: false,
            complete_fault: None,
            completes: AtomicUsize::new(0),
        }
    }
}

impl<S: IdempotencyStore> IdempotencyStore for Faulty<S> {
    fn lease(&self) -> Option<Duration> {
        self.inner.lease()
    }

    fn claim(&self, event_id: &str) -> impl Future<Output = Result<Claim, StoreError>> + Send {
        self.inner.claim(event_id)
    }

    fn renew(
        &self,
        event_id: &str,
        token: &ClaimToken,
    ) -> impl Future<Output = Result<Settled, StoreError>> + Send {
        let renew = self.inner.renew(event_id, token);
        let panics = self.renew_panics;
        async move {
            assert!(!panics, "the store's renew panics");
            renew.await
        }
    }

    fn complete(
        &self,
        event_id: &str,
        token: &ClaimToken,
        window: Duration,
    ) -> impl Future<Output = Result<Settled, StoreError>> + Send {
        let first = self.completes.fetch_add(1, Ordering::SeqCst) == 0;
        let fault = self.complete_fault.filter(|_| first);
        // Called only when it is to act: the in-memory store acts as it is called.
        let complete = fault
            .is_none()
            .then(|| self.inner.complete(event_id, token, window));
        async move {
            match (fault, complete) {
                (Some(Fault::Panic), _) => panic!("the store's complete panics"),
                (Some(Fault::Fail), _) => Err(StoreError::new("the store's complete fails")),
                (None, Some(complete)) => complete.await,
                (None, None) => unreachable!(),
            }
        }
    }

    fn release(
        &self,
        event_id: &str,
        token: &ClaimToken,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.inner.release(event_id, token)
    }
}

/// Counts the handler's calls, and how many ran at once at most.
#[derive(Default)]
struct Calls {
    started: AtomicUsize,
    running: AtomicUsize,
    most: AtomicUsize,
}

impl Calls {
    fn enter(&self) {
        self.started.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.running.fetch_sub(1, Ordering::SeqCst);
    }

    fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }
}

fn receiver<F>(calls: &Arc<Calls>, body: F) -> Receiver<impl Handler + use<F>>
where
    F: Fn() -> futures_util::future::BoxFuture<'static, ()> + Send + Sync + 'static,
{
    let calls = Arc::clone(calls);
    Receiver::new(
        Verifier::new(SECRET).unwrap(),
        move |_event: Event<'static>| {
            let calls = Arc::clone(&calls);
            calls.enter();
            let run = body();
            async move {
                run.await;
                calls.leave();
                Ok::<(), HandlerError>(())
            }
        },
    )
}

fn header() -> String {
    sign(BODY, SECRET)
}

/// A store whose `renew` panics unwinds the delivery while its isolated handler still
/// blocks its thread: the claim is kept (not given back), so a duplicate 700 ms in is
/// told to retry instead of running the handler beside the first; once the handler
/// has returned, its task records the event done.
#[test]
fn a_delivery_unwound_while_its_isolated_handler_runs_keeps_the_claim() {
    let redis = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let calls = Arc::new(Calls::default());
    runtime.block_on(async {
        let store = RedisStore::connect(&redis.url())
            .await
            .unwrap()
            // The first renewal (1 s in) panics; the claim then lives until 3 s in,
            // wide margins either side of the duplicate sent 1.5 s in, however busy
            // the machine.
            .with_lease(Duration::from_secs(3));
        let mut store = Faulty::new(store);
        store.renew_panics = true;
        let receiver = Arc::new(
            receiver(&calls, || {
                Box::pin(async { std::thread::sleep(Duration::from_secs(5)) })
            })
            .with_store(store),
        );
        let first = {
            let receiver = Arc::clone(&receiver);
            tokio::spawn(async move {
                let header = header();
                receiver.receive(BODY, [header.as_bytes()]).await.outcome()
            })
        };
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let header = header();
        let again = receiver.receive(BODY, [header.as_bytes()]).await;
        assert_eq!(again.outcome(), Outcome::InProgress);
        assert_eq!(first.await.unwrap(), Outcome::Panicked);
        // The handler ends about 5 s in; its own task then records the event done.
        tokio::time::sleep(Duration::from_millis(4_500)).await;
        let later = receiver.receive(BODY, [header.as_bytes()]).await;
        assert_eq!(later.outcome(), Outcome::Duplicate);
    });
    assert_eq!(calls.started(), 1, "the handler ran again");
    assert_eq!(calls.most.load(Ordering::SeqCst), 1, "two runs at once");
}

/// A handler that succeeded, then a `complete` that panics: the claim is recorded
/// done anyway, so the retry is a duplicate. With a handler that never waits, the
/// panic does not escape `receive` either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_that_panics_still_records_the_event_done() {
    for waits in [false, true] {
        let calls = Arc::new(Calls::default());
        let mut store = Faulty::new(MemoryStore::new());
        store.complete_fault = Some(Fault::Panic);
        let receiver = receiver(&calls, move || {
            Box::pin(async move {
                if waits {
                    tokio::task::yield_now().await;
                }
            })
        })
        .with_store(store);
        let header = header();
        let first = receiver.receive(BODY, [header.as_bytes()]).await;
        assert_eq!(first.outcome(), Outcome::Panicked, "waits: {waits}");
        let retry = receiver.receive(BODY, [header.as_bytes()]).await;
        assert_eq!(retry.outcome(), Outcome::Duplicate, "waits: {waits}");
        assert_eq!(calls.started(), 1, "waits: {waits}: the handler ran again");
    }
}

/// A `complete` that fails once, and the runtime dropped during the pause before it
/// is tried again: the delivery, dropped, records the event done, so the retry on a
/// fresh runtime is a duplicate.
#[test]
fn a_runtime_dropped_while_completion_is_retried_still_records_the_event_done() {
    let calls = Arc::new(Calls::default());
    let mut store = Faulty::new(MemoryStore::new());
    store.complete_fault = Some(Fault::Fail);
    let receiver =
        Arc::new(receiver(&calls, || Box::pin(tokio::task::yield_now())).with_store(store));
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The request is given up after 20 ms; the delivery goes on in its task, whose
    // `complete` has failed once by then, the next try 50 ms away.
    first.block_on(async {
        let header = header();
        let receive = receiver.receive(BODY, [header.as_bytes()]);
        let gone = tokio::time::timeout(Duration::from_millis(20), receive).await;
        assert!(gone.is_err(), "answered before the pause: {gone:?}");
    });
    let store = receiver.store().unwrap();
    assert_eq!(store.completes.load(Ordering::SeqCst), 1);
    drop(first);
    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let retry = second.block_on(async {
        let header = header();
        receiver.receive(BODY, [header.as_bytes()]).await
    });
    assert_eq!(retry.outcome(), Outcome::Duplicate);
    assert_eq!(calls.started(), 1, "the handler ran again");
}

/// Through the public store API too, a `MemoryStore` holds at most its capacity: a
/// free id completed in a full store is refused with an error (and counted), while
/// its own claims still complete in place.
#[tokio::test]
async fn completing_free_ids_keeps_a_memory_store_within_its_capacity() {
    let store = MemoryStore::with_capacity(1);
    let mut refusals = 0;
    for i in 0..1001 {
        match store
            .complete(
                &format!("evt_{i}"),
                &ClaimToken::new(),
                Duration::from_secs(7200),
            )
            .await
        {
            Ok(settled) => assert_eq!(settled, Settled::Recorded),
            Err(_full) => refusals += 1,
        }
    }
    assert_eq!(store.len(), 1);
    assert_eq!(refusals, 1000);
    assert_eq!(store.refused(), 1000);
    // The id it holds is done, and stays so.
    assert_eq!(store.claim("evt_0").await.unwrap(), Claim::Done);
}
