//! Handlers whose writes commit in the transaction that records the event as done.

use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use sqlx::{PgConnection, PgPool};

use super::store::{Statements, mark_done};
use crate::dedup::{ClaimToken, DEFAULT_DEDUP_WINDOW, Settled};
use crate::event::Event;
use crate::receiver::{Claimed, Handler, HandlerError};

/// The delivery's claim passed to another delivery before its transaction could
/// record the event as done (its lease lapsed, a replica took the event over): the
/// transaction was rolled back, none of its writes happened, and the delivery is
/// answered 503 (the other delivery, or NotMeta's retry, handles the event).
///
/// ```
/// use notmeta_webhooks::postgres::ClaimLost;
/// assert!(ClaimLost.to_string().contains("rolled back"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the event's claim passed to another delivery before the done mark: the transaction was rolled back"
)]
pub struct ClaimLost;

/// A handler whose writes commit in the same transaction as the event's done mark
/// (made by [`PostgresStore::transactional`](super::PostgresStore::transactional)).
///
/// For each delivery it claims, the receiver:
///
/// 1. begins a transaction on the store's pool;
/// 2. runs your handler with the event and the transaction's connection
///    (`&mut PgConnection`: pass `&mut *tx` to sqlx queries);
/// 3. after `Ok`, records the event as done in that transaction (only if this
///    delivery still holds the claim: otherwise everything is rolled back, see
///    [`ClaimLost`]) and commits;
/// 4. after an error, a panic, the time limit, or a lost connection, rolls back: a
///    temporary failure gives the claim back (NotMeta retries), a permanent one
///    records the event as done without any of the handler's writes.
///
/// So after a crash at any point either the handler's writes and the done mark were
/// both committed (a redelivery is answered 200 as a duplicate) or neither was (the
/// redelivery runs the handler once more, on a clean slate). The commit's own answer
/// may be lost with the connection: the delivery is then answered 503, and the
/// retry finds the event done or not, as the commit went.
///
/// A duplicate that arrives meanwhile finds the claim, committed before the
/// transaction began, and is answered 503 at once. The handler holds one pooled
/// connection and one open transaction for as long as it runs, within the
/// receiver's handler time limit (25 s by default): keep it short, and do slow
/// calls to other services before writing.
///
/// Effects outside the transaction (an e-mail, an HTTP call) are not covered: they
/// can repeat, as with any store.
///
/// A worker of the queue in PostgreSQL (`queue::Queue::postgres`) passes its run's
/// claim as the receiver does: the done mark is checked against the run's token, so
/// a run whose entry another worker took over commits nothing. Build the handler on
/// the queue's pool and [`Tables`](super::Tables).
///
/// Without a claim (a worker of the Redis queue runs it), the handler still runs in
/// a transaction that records the event as done, under a token of its own: an event
/// already done, or claimed by a live delivery, rolls it back ([`ClaimLost`]).
pub struct Transactional<F> {
    inner: Arc<Inner<F>>,
}

struct Inner<F> {
    pool: PgPool,
    statements: Arc<Statements>,
    handler: F,
}

impl<F> fmt::Debug for Transactional<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transactional").finish_non_exhaustive()
    }
}

impl<F> Clone for Transactional<F> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<F> Transactional<F>
where
    F: for<'t> Fn(Event<'static>, &'t mut PgConnection) -> BoxFuture<'t, Result<(), HandlerError>>
        + Send
        + Sync
        + 'static,
{
    pub(super) fn new(pool: PgPool, statements: Arc<Statements>, handler: F) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                statements,
                handler,
            }),
        }
    }

    fn run(&self, event: Event<'static>, claim: Option<Claimed>) -> BoxFuture<'static, Outcome> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let id = event.id.as_str().to_owned();
            let mut tx = inner.pool.begin().await.map_err(HandlerError::temporary)?;
            (inner.handler)(event, &mut tx).await?;
            let (token, window) = match claim {
                Some(claim) => (claim.token, claim.window),
                None => (ClaimToken::new(), DEFAULT_DEDUP_WINDOW),
            };
            let marked = mark_done(&mut *tx, &inner.statements, &id, &token, window)
                .await
                .map_err(HandlerError::temporary)?;
            if marked != Settled::Recorded {
                // Dropping the transaction rolls it back.
                return Err(HandlerError::temporary(ClaimLost));
            }
            tx.commit().await.map_err(HandlerError::temporary)?;
            if claim.is_some() {
                inner.statements.committed(token);
            }
            Ok(())
        })
    }
}

type Outcome = Result<(), HandlerError>;

impl<F> Handler for Transactional<F>
where
    F: for<'t> Fn(Event<'static>, &'t mut PgConnection) -> BoxFuture<'t, Result<(), HandlerError>>
        + Send
        + Sync
        + 'static,
{
    type Future = BoxFuture<'static, Outcome>;

    fn call(&self, event: Event<'static>) -> Self::Future {
        self.run(event, None)
    }

    fn call_claimed(&self, event: Event<'static>, claim: Option<Claimed>) -> Self::Future {
        self.run(event, claim)
    }
}
