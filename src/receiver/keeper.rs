//! The lease keeper: renews the claims of a store with leases from a thread of its
//! own, so that handlers blocking every thread of the application's runtime cannot
//! stall the renewals, and handlers can run in their delivery's task.
//!
//! One keeper per receiver's store (clones of a receiver share it), started at the
//! first delivery that runs a handler under a lease: an OS thread named
//! [`THREAD_NAME`] with a current-thread Tokio runtime and the store on a connection
//! of its own ([`IdempotencyStore::on_own_connection`]). A delivery registers its
//! claim while its handler runs ([`Registration`], deregistered when dropped); every
//! third of the lease the keeper renews every claim registered with one
//! [`IdempotencyStore::renew_many`] call, each bounded by the store time limit, and
//! marks the claims the store reports lost. A store that cannot open a connection of
//! its own gets no keeper: its deliveries renew their claims themselves. Until the
//! keeper's own connection is open (or while the server refuses it), the keeper
//! renews on the receiver's connection, each call within a third of the lease.
//!
//! The thread ends as soon as the receiver and its deliveries are gone (the keeper's
//! closing channel is dropped with them).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use futures_util::future::select;

use super::delivery::bounded;
use super::report;
use crate::dedup::{ClaimToken, IdempotencyStore, Settled, StoreError};

/// The name of a keeper's thread (as `/proc/self/task/*/comm` shows it).
pub(crate) const THREAD_NAME: &str = "notmeta-keeper";

/// A receiver's keeper, started at first use; shared by the receiver's clones and
/// its deliveries in flight.
#[derive(Default)]
pub(crate) struct Slot(OnceLock<Option<Keeper>>);

impl Slot {
    /// The keeper of `store`, started at the first call (`limit`: the store time
    /// limit of each renewal); `None` if the store cannot open a connection of its
    /// own or has no lease (or the thread could not be started).
    pub(super) fn keeper<S: IdempotencyStore>(
        &self,
        store: &Arc<S>,
        limit: Duration,
    ) -> Option<&Keeper> {
        self.0.get_or_init(|| Keeper::start(store, limit)).as_ref()
    }
}

/// A running keeper: its registry of live claims, and the channel whose drop ends
/// its thread.
pub(crate) struct Keeper {
    registry: Arc<Registry>,
    _close: tokio::sync::oneshot::Sender<()>,
}

/// The claims registered, held weakly: a registration dropped leaves a dead entry,
/// pruned at the next renewal.
#[derive(Default)]
struct Registry(Mutex<Vec<Weak<Live>>>);

impl Registry {
    /// The claims to renew now (neither ended nor lost); drops the others.
    fn live(&self) -> Vec<Arc<Live>> {
        let mut claims = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut live = Vec::with_capacity(claims.len());
        claims.retain(|claim| match claim.upgrade() {
            Some(claim) if claim.state.load(Ordering::Acquire) == Live::HELD => {
                live.push(claim);
                true
            }
            _ => false,
        });
        live
    }
}

/// One claim the keeper renews.
pub(crate) struct Live {
    id: Box<str>,
    token: ClaimToken,
    /// [`Live::HELD`], or the bits [`Live::LOST`] and [`Live::ENDED`].
    state: AtomicU8,
}

impl Live {
    const HELD: u8 = 0;
    const LOST: u8 = 1;
    const ENDED: u8 = 2;

    /// Marks the claim lost, if it is still registered; `true` if this call did.
    /// A claim whose delivery has ended (and may have settled it since) is not:
    /// its renewal failing says nothing about a claim that was held.
    fn lose(&self) -> bool {
        self.state
            .compare_exchange(Self::HELD, Self::LOST, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// A claim registered with the keeper; deregistered when dropped (before the claim
/// is settled, so that no renewal of it races its settling).
pub(crate) struct Registration(Arc<Live>);

impl Registration {
    /// Whether the keeper found the claim lost, readable after the registration
    /// has ended.
    pub(super) fn watch(&self) -> Watch {
        Watch(Arc::clone(&self.0))
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.0.state.fetch_or(Live::ENDED, Ordering::AcqRel);
    }
}

/// Tells whether a registered claim was found lost.
pub(crate) struct Watch(Arc<Live>);

impl Watch {
    /// Whether the keeper found the claim lost (and reported it).
    pub(super) fn lost(&self) -> bool {
        self.0.state.load(Ordering::Acquire) & Live::LOST != 0
    }
}

impl Keeper {
    /// Registers `token`'s claim on `id` for renewal until the registration drops.
    pub(super) fn register(&self, id: &str, token: ClaimToken) -> Registration {
        let live = Arc::new(Live {
            id: id.into(),
            token,
            state: AtomicU8::new(Live::HELD),
        });
        self.registry
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::downgrade(&live));
        Registration(live)
    }

    fn start<S: IdempotencyStore>(store: &Arc<S>, limit: Duration) -> Option<Self> {
        let lease = store.lease()?;
        // Only asked whether it can: the connection is opened on the keeper's thread.
        let _unopened = store.on_own_connection()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let runtime = match runtime {
            Ok(runtime) => runtime,
            Err(error) => {
                report::store_failed("renew", &StoreError::new(error));
                return None;
            }
        };
        let registry = Arc::new(Registry::default());
        let (close, closed) = tokio::sync::oneshot::channel();
        let keep = keep(Arc::downgrade(store), Arc::clone(&registry), lease, limit);
        let spawned = std::thread::Builder::new()
            .name(THREAD_NAME.to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let keep = std::pin::pin!(keep);
                    let _ = select(keep, closed).await;
                });
            });
        match spawned {
            Ok(_detached) => Some(Self {
                registry,
                _close: close,
            }),
            Err(error) => {
                report::store_failed("renew", &StoreError::new(error));
                None
            }
        }
    }
}

/// The keeper's work: opens the store's own connection (again at each tick until it
/// succeeds, while the receiver's store still exists), then renews every live claim
/// every third of the lease, on the receiver's connection while its own cannot be
/// opened. Never ends while the receiver exists.
async fn keep<S: IdempotencyStore>(
    receivers: Weak<S>,
    registry: Arc<Registry>,
    lease: Duration,
    limit: Duration,
) {
    let every = (lease / 3).max(Duration::from_millis(10));
    // Opening may take longer than one call (a connection and its handshake).
    let opening = limit.max(Duration::from_secs(1));
    let mut own: Option<S> = None;
    let mut opening_task: Option<tokio::task::JoinHandle<Result<S, StoreError>>> = None;
    let mut first = true;
    loop {
        if !first {
            tokio::time::sleep(every).await;
        }
        first = false;
        if own.is_none() {
            if opening_task.is_none() {
                // The receiver's store, held only while the opening starts.
                let Some(store) = receivers.upgrade() else {
                    return;
                };
                let Some(open) = store.on_own_connection() else {
                    return;
                };
                drop(store);
                opening_task = Some(tokio::spawn(async move {
                    bounded(opening, std::pin::pin!(open)).await
                }));
            }
            // Opened beside the renewals, which meanwhile use the receiver's
            // connection.
            if let Some(task) = opening_task.take_if(|task| task.is_finished()) {
                match task
                    .await
                    .map_err(StoreError::new)
                    .and_then(|opened| opened)
                {
                    Ok(opened) => own = Some(opened),
                    Err(error) => report::store_failed("renew", &error),
                }
            }
        }
        let claims = registry.live();
        if claims.is_empty() {
            continue;
        }
        // Reported once per claim, as each delivery's own renewal would be.
        let failed_each = |error: &StoreError| {
            for _ in &claims {
                report::store_failed("renew", error);
            }
        };
        // Until the keeper's own connection is open (or while it is refused: the
        // server's client limit, say), the claims are renewed on the receiver's,
        // within a tick: that connection stalls with its runtime's workers.
        let shared;
        let (store, within) = match &own {
            Some(own) => (own, limit),
            None => {
                let Some(store) = receivers.upgrade() else {
                    return;
                };
                shared = store;
                (&*shared, limit.min(every))
            }
        };
        let asked: Vec<(&str, &ClaimToken)> = claims
            .iter()
            .map(|claim| (&*claim.id, &claim.token))
            .collect();
        let renewed = match bounded(within, std::pin::pin!(store.renew_many(&asked))).await {
            Ok(renewed) if renewed.len() == claims.len() => Ok(renewed),
            Ok(renewed) => Err(StoreError::new(format!(
                "{} renewals answered for {} claims",
                renewed.len(),
                claims.len()
            ))),
            Err(error) => Err(error),
        };
        match renewed {
            Ok(renewed) => {
                for (claim, settled) in claims.iter().zip(renewed) {
                    match settled {
                        Settled::Recorded => report::lease_renewed(),
                        _lost => {
                            if claim.lose() {
                                report::lease_lost(&claim.id);
                            }
                        }
                    }
                }
            }
            Err(error) => failed_each(&error),
        }
    }
}
