//! The idempotency store on a PostgreSQL table.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::schema::{Tables, migrate};
use super::{PostgresError, key, millis, store_error};
use crate::clock::clamp;
use crate::dedup::{Claim, ClaimToken, IdempotencyStore, Settled, StoreError};
use crate::event::Event;
use crate::receiver::HandlerError;

/// How many expired rows one sweep statement deletes.
const SWEEP_BATCH: i64 = 5_000;
/// How many sweep statements one sweep runs at most (so one sweep deletes at most
/// 500,000 rows, and a backlog is cleared over several sweeps).
const SWEEP_BATCHES: usize = 100;

/// The store's statements, with the table's name filled in once.
pub(super) struct Statements {
    /// Inserts a claim, or takes over a row whose claim lapsed or whose window
    /// ended; returns whether it claimed and, if not, whether the id is done.
    claim: String,
    renew: String,
    /// `renew` for many claims at once (ids and tokens as two arrays); returns the
    /// 1-based position of each claim renewed.
    renew_many: String,
    /// Records done if this token holds the claim, or the id is free.
    pub(super) complete: String,
    pub(super) mark_in_transaction: String,
    release: String,
    sweep: String,
    /// Claims whose done mark a transactional handler committed: the receiver's
    /// completion of them that follows needs no round trip.
    committed: Mutex<HashSet<ClaimToken>>,
}

/// The transaction-local setting a transactional handler's transaction carries
/// (its claim's token), set when it begins.
pub(super) const TRANSACTION_SETTING: &str = "notmeta_webhooks.transaction";

/// The most claims [`Statements::committed`] remembers (completions not taken
/// meanwhile only cost their round trip again).
const COMMITTED_MAX: usize = 65_536;

impl Statements {
    /// Notes that the done mark of `token`'s claim was committed.
    pub(super) fn committed(&self, token: ClaimToken) {
        let mut committed = self
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if committed.len() >= COMMITTED_MAX {
            committed.clear();
        }
        committed.insert(token);
    }

    /// Whether `token`'s done mark was committed (forgotten once asked).
    fn take_committed(&self, token: &ClaimToken) -> bool {
        self.committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(token)
    }
}

impl Statements {
    fn new(tables: &Tables) -> Self {
        let events = tables.events();
        let jobs = tables.jobs();
        Self {
            // One round trip whatever the id's state, and no wait on a row another
            // transaction holds: a row locked by a done mark that is committing (or
            // by a stalled process's open transaction) is skipped and answered "in
            // progress" (503), so a duplicate never holds a pooled connection behind
            // another process's lock. A row that is free takes the claim over if it
            // expired; an id with no row is inserted (a concurrent insert of the
            // same id, another claim, makes `DO NOTHING` wait for that claim's
            // commit only). Reads see the statement's snapshot: a row another
            // delivery inserted while this statement ran reads as absent, answered
            // "in progress", which is right for a claim that raced another.
            claim: format!(
                "WITH visible AS (
                    SELECT done, expires_at > clock_timestamp() AS live
                    FROM {events} WHERE event_id = $1
                 ), unlocked AS (
                    SELECT event_id FROM {events} WHERE event_id = $1 FOR UPDATE SKIP LOCKED
                 ), taken AS (
                    UPDATE {events} AS e
                    SET token = $2, done = false,
                        expires_at = clock_timestamp() + $3 * interval '1 millisecond'
                    FROM unlocked
                    WHERE e.event_id = unlocked.event_id AND e.expires_at <= clock_timestamp()
                    RETURNING 1
                 ), inserted AS (
                    INSERT INTO {events} (event_id, token, done, expires_at)
                    SELECT $1, $2, false, clock_timestamp() + $3 * interval '1 millisecond'
                    WHERE NOT EXISTS (SELECT 1 FROM visible)
                    ON CONFLICT (event_id) DO NOTHING
                    RETURNING 1
                 )
                 SELECT EXISTS (SELECT 1 FROM taken) OR EXISTS (SELECT 1 FROM inserted),
                        (SELECT done AND live FROM visible)"
            ),
            // A done row of this token (committed by a transactional handler while
            // this renewal waited) counts as held, and keeps its window.
            renew: format!(
                "UPDATE {events}
                 SET expires_at = CASE WHEN done THEN expires_at
                                       ELSE clock_timestamp() + $3 * interval '1 millisecond' END
                 WHERE event_id = $1 AND token = $2"
            ),
            renew_many: format!(
                "UPDATE {events} AS e
                 SET expires_at = CASE WHEN e.done THEN e.expires_at
                                       ELSE clock_timestamp() + $3 * interval '1 millisecond' END
                 FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS c(event_id, token, i)
                 WHERE e.event_id = c.event_id AND e.token = c.token
                 RETURNING c.i"
            ),
            complete: format!(
                "INSERT INTO {events} AS e (event_id, token, done, expires_at)
                 VALUES ($1, $2, true, clock_timestamp() + $3 * interval '1 millisecond')
                 ON CONFLICT (event_id) DO UPDATE
                 SET token = EXCLUDED.token, done = true, expires_at = EXCLUDED.expires_at
                 WHERE e.token = EXCLUDED.token OR e.expires_at <= clock_timestamp()"
            ),
            // The done mark written in a transactional handler's transaction: as
            // `complete`, and only while that transaction is still the one the
            // receiver began (its `SET LOCAL` marker holds the token), so a handler
            // that ended it with its own `COMMIT` or `ROLLBACK` is caught.
            mark_in_transaction: format!(
                "INSERT INTO {events} AS e (event_id, token, done, expires_at)
                 SELECT $1, $2, true, clock_timestamp() + $3 * interval '1 millisecond'
                 WHERE current_setting('{TRANSACTION_SETTING}', true) = $2
                 ON CONFLICT (event_id) DO UPDATE
                 SET token = EXCLUDED.token, done = true, expires_at = EXCLUDED.expires_at
                 WHERE e.token = EXCLUDED.token OR e.expires_at <= clock_timestamp()"
            ),
            release: format!(
                "DELETE FROM {events} WHERE event_id = $1 AND token = $2 AND NOT done"
            ),
            // Found through the `expires_at` index (`now()` is stable, so the index
            // applies; `clock_timestamp()` would force a scan of the table) and
            // deleted by row address. Rows locked by a done mark that is committing
            // are skipped, not waited for. About 5 ms per 5,000 rows, whatever the
            // table's size.
            // An event with an entry in the queue keeps its row whatever its
            // expiry: the row's done mark is what stops the entry from running
            // again (a worker that died after its transaction committed leaves the
            // entry behind).
            sweep: format!(
                "DELETE FROM {events} WHERE ctid = ANY (ARRAY(
                    SELECT e.ctid FROM {events} AS e WHERE e.expires_at <= now()
                    AND NOT EXISTS (SELECT 1 FROM {jobs} AS j WHERE j.event_key = e.event_id)
                    LIMIT $1 FOR UPDATE OF e SKIP LOCKED))"
            ),
            committed: Mutex::default(),
        }
    }
}

/// An idempotency store in PostgreSQL, shared by every replica of a receiver.
///
/// Each event id is one row of `<prefix>events` (see [`Tables`]): a claim with a
/// lease (default 30 s) that the receiver renews every third of the lease while the
/// handler runs, then a done mark kept for the dedup window. A claim is one
/// statement: it inserts the row (the primary key decides between concurrent
/// duplicates, so exactly one claims), or takes over a row whose lease or window
/// ended; a row another transaction holds locked is skipped, never waited for, and
/// answered "in progress". A delivery costs two statements (claim, complete), plus
/// one renewal per third of the lease for a long handler; sqlx's pool adds a ping
/// before each unless `PgPoolOptions::test_before_acquire(false)`.
/// Renewal, completion and release check the claim's token, so a delivery whose
/// lease lapsed never overwrites another's claim. Time is the database server's
/// clock (`clock_timestamp()`), which every replica shares.
///
/// **Expired rows** are deleted by a sweep the store starts from a claim at most once
/// per [`sweep interval`](Self::with_sweep_interval) (default 60 s), in the
/// background: `DELETE` of up to 5,000 expired rows found through the `expires_at`
/// index, `FOR UPDATE SKIP LOCKED`, repeated while full. An expired row left in the
/// table is harmless (a claim takes it over); the sweep only bounds the table at
/// about the events of one dedup window. Turn it off (`None`) to run
/// [`sweep`](Self::sweep) from a job of your own.
///
/// **Durability** is the database's: a claim or a done mark counts once committed
/// (with `synchronous_commit = on`, the default, after it is flushed). With
/// `synchronous_commit = off`, a database crash can lose the last few hundred
/// milliseconds of the store's statements: a lost claim is harmless, a lost
/// completion lets a later duplicate run again. A transactional handler's
/// transaction always commits with `synchronous_commit = on`, so an event answered
/// 200 keeps its writes and its done mark.
///
/// **Connections**: each call takes a connection from the pool for one statement.
/// Size the pool for the deliveries handled at once (each transactional handler
/// holds one connection while it runs) plus a few for claims; a claim that waits
/// past the receiver's store time limit (1 s) is answered 503.
///
/// ```no_run
/// use notmeta_webhooks::postgres::{PostgresStore, Tables};
/// use notmeta_webhooks::receiver::{HandlerError, Receiver};
/// use notmeta_webhooks::{Event, Verifier};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = sqlx::PgPool::connect("postgres://app@127.0.0.1/app").await?;
/// let store = PostgresStore::open(pool, &Tables::default()).await?;
/// let receiver = Receiver::new(Verifier::new("whsec_abc123")?, |event: Event<'static>| async move {
///     Ok::<(), HandlerError>(())
/// })
/// .with_store(store);
/// # let _ = receiver;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    tables: Tables,
    lease: Duration,
    statements: Arc<Statements>,
    sweep: Option<Arc<Sweep>>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("tables", &self.tables)
            .field("lease", &self.lease)
            .field("sweep_interval", &self.sweep.as_ref().map(|s| s.interval))
            .finish_non_exhaustive()
    }
}

/// When the last sweep started, for the one-per-interval schedule, and whether one
/// runs (never two at once, whatever the interval).
struct Sweep {
    interval: Duration,
    epoch: Instant,
    /// Milliseconds since `epoch` when the last sweep started.
    last: AtomicU64,
    running: AtomicBool,
}

/// The shortest interval between sweeps.
const MIN_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

impl Sweep {
    fn new(interval: Duration) -> Self {
        Self {
            interval: clamp(interval).max(MIN_SWEEP_INTERVAL),
            epoch: Instant::now(),
            last: AtomicU64::new(0),
            running: AtomicBool::new(false),
        }
    }

    /// Whether a sweep is due now and none runs; if so, this caller starts it (and
    /// calls [`Sweep::ended`] when it ends).
    fn start(&self) -> bool {
        if !self.due() {
            return false;
        }
        self.running
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    fn ended(&self) {
        self.running.store(false, Ordering::Release);
    }

    /// Whether a sweep is due now; if so, this caller takes the slot.
    fn due(&self) -> bool {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last.load(Ordering::Relaxed);
        let interval = u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX);
        now.saturating_sub(last) >= interval
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

impl PostgresStore {
    /// The default lease of a claim: 30 s, renewed every 10 s while the handler runs.
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

    /// The default time between sweeps of expired rows: 60 s.
    pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

    /// A store on `pool`, with its tables created or upgraded first ([`migrate`]).
    pub async fn open(pool: PgPool, tables: &Tables) -> Result<Self, PostgresError> {
        migrate(&pool, tables).await?;
        Ok(Self::new(pool, tables))
    }

    /// A store on `pool` whose tables exist already (created by [`migrate`] or from
    /// [`Tables::sql`]); nothing is checked until the first claim.
    #[must_use]
    pub fn new(pool: PgPool, tables: &Tables) -> Self {
        Self {
            pool,
            tables: tables.clone(),
            lease: Self::DEFAULT_LEASE,
            statements: Arc::new(Statements::new(tables)),
            sweep: Some(Arc::new(Sweep::new(Self::DEFAULT_SWEEP_INTERVAL))),
        }
    }

    /// How long a claim lives without renewal (default 30 s; at least 1 s, at most
    /// [`MAX_DURATION`](crate::clock::MAX_DURATION)): how long NotMeta's retries of an
    /// event wait after the replica handling it crashed.
    #[must_use]
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = clamp(lease).max(Duration::from_secs(1));
        self
    }

    /// How often expired rows are swept (default 60 s, at least 1 s; one sweep at a
    /// time), or `None` to never sweep from the store (run [`sweep`](Self::sweep)
    /// yourself).
    #[must_use]
    pub fn with_sweep_interval(mut self, interval: Option<Duration>) -> Self {
        self.sweep = interval.map(|i| Arc::new(Sweep::new(i)));
        self
    }

    /// The pool the store uses.
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Where the store's table lives.
    #[must_use]
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// Deletes expired rows (ended claims and done marks past their window), in
    /// batches of 5,000, at most 500,000 in one call; returns how many it deleted.
    pub async fn sweep(&self) -> Result<u64, StoreError> {
        sweep(&self.pool, &self.statements.sweep).await
    }

    /// Wraps `handler` so that its writes commit together with the event's done
    /// mark, in one transaction on this store's pool: see [`Transactional`].
    ///
    /// The handler gets the event and the transaction's connection, and returns a
    /// boxed future, as sqlx's own `Connection::transaction` asks:
    ///
    /// ```no_run
    /// # use notmeta_webhooks::postgres::PostgresStore;
    /// # use notmeta_webhooks::receiver::{HandlerError, ResultExt as _};
    /// # use notmeta_webhooks::Event;
    /// # fn f(store: PostgresStore) {
    /// let handler = store.transactional(|event: Event<'static>, tx| {
    ///     Box::pin(async move {
    ///         sqlx::query("INSERT INTO seen (id) VALUES ($1)")
    ///             .bind(event.id.as_str())
    ///             .execute(&mut *tx)
    ///             .await
    ///             .temporary()?;
    ///         Ok::<(), HandlerError>(())
    ///     })
    /// });
    /// # }
    /// ```
    ///
    /// [`Transactional`]: super::Transactional
    pub fn transactional<F>(&self, handler: F) -> super::Transactional<F>
    where
        F: for<'t> Fn(
                Event<'static>,
                &'t mut sqlx::PgConnection,
            ) -> futures_util::future::BoxFuture<'t, Result<(), HandlerError>>
            + Send
            + Sync
            + 'static,
    {
        super::Transactional::new(self.pool.clone(), Arc::clone(&self.statements), handler)
    }

    /// Starts a sweep in the background if one is due.
    fn maybe_sweep(&self) {
        let Some(schedule) = &self.sweep else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !schedule.start() {
            return;
        }
        let (pool, statements, schedule) = (
            self.pool.clone(),
            Arc::clone(&self.statements),
            Arc::clone(schedule),
        );
        runtime.spawn(async move {
            // Ends the sweep however its task ends (a runtime shutting down drops it).
            struct Ended(Arc<Sweep>);
            impl Drop for Ended {
                fn drop(&mut self) {
                    self.0.ended();
                }
            }
            let _ended = Ended(schedule);
            // A failed sweep is tried again at the next interval.
            let _ = sweep(&pool, &statements.sweep).await;
        });
    }
}

async fn sweep(pool: &PgPool, statement: &str) -> Result<u64, StoreError> {
    let mut deleted = 0;
    for _ in 0..SWEEP_BATCHES {
        let done = sqlx::query(statement)
            .bind(SWEEP_BATCH)
            .execute(pool)
            .await
            .map_err(store_error)?
            .rows_affected();
        deleted += done;
        if done < SWEEP_BATCH.unsigned_abs() {
            break;
        }
    }
    Ok(deleted)
}

/// Runs the completion statement (the receiver's `complete`, and a transactional
/// handler's done mark in its transaction); whether it recorded.
pub(super) async fn mark_done<'c, E>(
    executor: E,
    statements: &Statements,
    event_id: &str,
    token: &ClaimToken,
    window: Duration,
) -> Result<Settled, sqlx::Error>
where
    E: sqlx::PgExecutor<'c>,
{
    let done = sqlx::query(&statements.complete)
        .bind(key(event_id).as_ref())
        .bind(token.to_string())
        .bind(millis(window))
        .execute(executor)
        .await?;
    Ok(settled(done.rows_affected()))
}

fn settled(rows: u64) -> Settled {
    if rows == 1 {
        Settled::Recorded
    } else {
        Settled::LeaseLost
    }
}

impl IdempotencyStore for PostgresStore {
    fn lease(&self) -> Option<Duration> {
        Some(self.lease)
    }

    async fn claim(&self, event_id: &str) -> Result<Claim, StoreError> {
        self.maybe_sweep();
        let token = ClaimToken::new();
        let (claimed, done): (bool, Option<bool>) = sqlx::query_as(&self.statements.claim)
            .bind(key(event_id).as_ref())
            .bind(token.to_string())
            .bind(millis(self.lease))
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(match (claimed, done) {
            (true, _) => Claim::Claimed(token),
            (false, Some(true)) => Claim::Done,
            // A live claim, or a row that raced this statement.
            (false, _) => Claim::InProgress,
        })
    }

    async fn renew(&self, event_id: &str, token: &ClaimToken) -> Result<Settled, StoreError> {
        let renewed = sqlx::query(&self.statements.renew)
            .bind(key(event_id).as_ref())
            .bind(token.to_string())
            .bind(millis(self.lease))
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(settled(renewed.rows_affected()))
    }

    /// One statement (an `UPDATE … FROM unnest(…)`) for every claim, on the
    /// database server's clock as every renewal.
    async fn renew_many(&self, claims: &[(&str, &ClaimToken)]) -> Result<Vec<Settled>, StoreError> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = claims.iter().map(|(id, _)| key(id).into_owned()).collect();
        let tokens: Vec<String> = claims.iter().map(|(_, token)| token.to_string()).collect();
        let renewed: Vec<i64> = sqlx::query_scalar(&self.statements.renew_many)
            .bind(ids)
            .bind(tokens)
            .bind(millis(self.lease))
            .fetch_all(&self.pool)
            .await
            .map_err(store_error)?;
        let mut settled = vec![Settled::LeaseLost; claims.len()];
        for position in renewed {
            let slot = usize::try_from(position - 1)
                .ok()
                .and_then(|i| settled.get_mut(i));
            if let Some(slot) = slot {
                *slot = Settled::Recorded;
            }
        }
        Ok(settled)
    }

    /// The same store on a pool of one connection of its own, made with this pool's
    /// connect options on the runtime that polls the future (it does not sweep).
    fn on_own_connection(
        &self,
    ) -> Option<impl std::future::Future<Output = Result<Self, StoreError>> + Send + 'static> {
        let options = self.pool.connect_options();
        let mut store = self.clone();
        store.sweep = None;
        Some(async move {
            store.pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect_with((*options).clone())
                .await
                .map_err(store_error)?;
            Ok(store)
        })
    }

    async fn complete(
        &self,
        event_id: &str,
        token: &ClaimToken,
        window: Duration,
    ) -> Result<Settled, StoreError> {
        // Marked done, with this window, in the handler's committed transaction.
        if self.statements.take_committed(token) {
            return Ok(Settled::Recorded);
        }
        mark_done(&self.pool, &self.statements, event_id, token, window)
            .await
            .map_err(store_error)
    }

    async fn release(&self, event_id: &str, token: &ClaimToken) -> Result<(), StoreError> {
        sqlx::query(&self.statements.release)
            .bind(key(event_id).as_ref())
            .bind(token.to_string())
            .execute(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(())
    }
}
