//! Handlers whose writes commit in the transaction that records the event as done.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::{PgConnection, PgPool};

use super::store::{Statements, TRANSACTION_SETTING};
use super::{key, millis};
use crate::clock::clamp;
use crate::dedup::{ClaimToken, DEFAULT_DEDUP_WINDOW};
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

/// The handler ended the transaction the receiver began (its own `COMMIT` or
/// `ROLLBACK`): what it wrote may be committed without the done mark, or the done
/// mark would be committed without its writes. The event is recorded as done and
/// answered 400 (a permanent failure: NotMeta does not retry it, so committed writes
/// are not repeated). Never end the transaction in a handler; savepoints are fine.
///
/// ```
/// use notmeta_webhooks::postgres::TransactionEnded;
/// assert!(TransactionEnded.to_string().contains("COMMIT"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the handler ended the receiver's transaction itself (COMMIT or ROLLBACK)")]
pub struct TransactionEnded;

/// How long a transactional handler's transaction may sit idle before PostgreSQL
/// ends it, unless [`Transactional::with_idle_timeout`] says otherwise: 10 s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

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
    idle_timeout: Duration,
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
            idle_timeout: self.idle_timeout,
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
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }

    /// How long the transaction may sit idle, waiting for its process, before
    /// PostgreSQL ends it (`idle_in_transaction_session_timeout`, default 10 s, at
    /// least 1 s; a shorter limit set on the server or the role stays in force). It bounds how long a process that stalls or loses the network
    /// mid-transaction holds the transaction's locks (and so delays the event's
    /// retry on another replica); a handler that waits longer than this between two
    /// statements has its transaction ended and is retried.
    #[must_use]
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = clamp(timeout).max(Duration::from_secs(1));
        self
    }

    fn run(&self, event: Event<'static>, claim: Option<Claimed>) -> BoxFuture<'static, Outcome> {
        let (inner, idle_timeout) = (Arc::clone(&self.inner), self.idle_timeout);
        Box::pin(async move {
            let id = event.id.as_str().to_owned();
            let (token, window) = match claim {
                Some(claim) => (claim.token, claim.window),
                None => (ClaimToken::new(), DEFAULT_DEDUP_WINDOW),
            };
            let marker = token.to_string();
            // One round trip: read committed whatever the database's default (a
            // renewal of the claim between the snapshot and the done mark must not
            // fail the mark), durable before the answer whatever the server's
            // `synchronous_commit`, ended by the server if its process goes silent
            // (after the idle limit, or the server's own if shorter), and marked with the claim's token (see `mark_in_transaction`).
            let begin = format!(
                "BEGIN ISOLATION LEVEL READ COMMITTED; \
                 SET LOCAL synchronous_commit = on; \
                 SELECT set_config('idle_in_transaction_session_timeout', CASE \
                     WHEN current_setting('idle_in_transaction_session_timeout')::interval \
                          BETWEEN interval '1 ms' AND interval '{idle} ms' \
                     THEN current_setting('idle_in_transaction_session_timeout') \
                     ELSE '{idle}ms' END, true); \
                 SET LOCAL {TRANSACTION_SETTING} = '{marker}'",
                idle = idle_timeout.as_millis()
            );
            let mut tx = inner
                .pool
                .begin_with(begin)
                .await
                .map_err(HandlerError::temporary)?;
            if let Err(error) = (inner.handler)(event, &mut tx).await {
                // Its writes may be committed already: never retried.
                if ended(&mut tx, &marker).await {
                    return Err(HandlerError::permanent(TransactionEnded));
                }
                return Err(error);
            }
            let marked = sqlx::query(&inner.statements.mark_in_transaction)
                .bind(key(&id).as_ref())
                .bind(&marker)
                .bind(millis(window))
                .execute(&mut *tx)
                .await
                .map_err(HandlerError::temporary)?;
            if marked.rows_affected() != 1 {
                if ended(&mut tx, &marker).await {
                    return Err(HandlerError::permanent(TransactionEnded));
                }
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

/// Whether the handler ended the transaction the receiver began (its marker is
/// gone). Unknown (the connection failed, or the transaction is aborted) is `false`.
async fn ended(connection: &mut PgConnection, marker: &str) -> bool {
    sqlx::query_scalar::<_, bool>(&format!(
        "SELECT current_setting('{TRANSACTION_SETTING}', true) IS DISTINCT FROM $1"
    ))
    .bind(marker)
    .persistent(false)
    .fetch_one(connection)
    .await
    .unwrap_or(false)
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
