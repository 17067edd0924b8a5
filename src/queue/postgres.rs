//! The queue on PostgreSQL: its statements, one function per storage call the
//! endpoint, the worker and the operations make. Every call is bounded by its
//! caller's time limit.

use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use sqlx::PgPool;

use super::ordering::{self, KeyLimit};
use super::protocol::{EntryRef, Settled};
use super::{DeadLetter, QueueCounts, QueueError, TraceContext};
use crate::postgres::{Tables, key, millis};

/// A queue in PostgreSQL: the pool, where the tables live, and the statements with
/// the tables' names filled in once.
pub(crate) struct PgQueue {
    pub(crate) pool: PgPool,
    /// The idempotency store on the same events table: its sweep deletes the done
    /// marks whose window ended.
    pub(crate) store: crate::postgres::PostgresStore,
    pub(crate) tables: Tables,
    /// The `LISTEN`/`NOTIFY` channel: the jobs table's name, unquoted.
    pub(crate) channel: String,
    statements: Statements,
    /// Key limits on: takes are serialized by an advisory lock.
    ordered: bool,
}

impl fmt::Debug for PgQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgQueue")
            .field("tables", &self.tables)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

struct Statements {
    enqueue: String,
    take: String,
    renew: String,
    done: String,
    retry: String,
    dead: String,
    skip: String,
    counts: String,
    dead_letters: String,
    replay: String,
    purge: String,
}

/// An entry a worker took: run it (`run`), or its event is done already.
#[derive(Debug)]
pub(crate) struct Taken {
    pub(crate) id: i64,
    pub(crate) event_id: String,
    pub(crate) body: Vec<u8>,
    /// Runs started so far, this one included.
    pub(crate) runs: u64,
    /// This run's token (the entry's and the event's).
    pub(crate) token: String,
    /// `false`: the event is done already (the entry is only deleted).
    pub(crate) run: bool,
    /// The trace context stored with it, if any and valid.
    pub(crate) trace: Option<TraceContext>,
}

/// A row of the take: id, event id, body, runs, token, whether to run, and the
/// trace context's two parts (each cut to a little over its longest valid length).
type TakenRow = (
    i64,
    String,
    Vec<u8>,
    i32,
    String,
    bool,
    Option<String>,
    Option<String>,
);

/// The longest age a purge compares with (in ms): a thousand years.
const MAX_AGE_MS: i64 = 1_000 * 366 * 24 * 60 * 60 * 1_000;

pub(crate) fn failed(error: sqlx::Error) -> QueueError {
    QueueError::Postgres(Box::new(error))
}

impl PgQueue {
    pub(crate) fn new(pool: PgPool, tables: &Tables) -> Self {
        Self::build(pool, tables, None)
    }

    /// The same queue, its statements made for `limit`.
    pub(crate) fn with_key_limit(&self, limit: Option<&KeyLimit>) -> Self {
        Self::build(self.pool.clone(), &self.tables, limit)
    }

    fn build(pool: PgPool, tables: &Tables, limit: Option<&KeyLimit>) -> Self {
        let jobs = tables.jobs();
        let events = tables.events();
        let state = tables.queue_state();
        let ms = "* interval '1 millisecond'";
        let channel = channel(tables);
        let ordering::PgHooks {
            take_filter,
            wake_done,
            wake_dead,
        } = ordering::PgHooks::new(&jobs, &channel, limit);
        let statements = Statements {
            // One statement: the event id is claimed in the idempotency table (absent,
            // or its row expired) only if no entry of it exists, and the entry is
            // inserted from that claim. Of concurrent duplicates, one inserts the
            // claim and the others wait for its commit and find it.
            enqueue: format!(
                "WITH claimed AS (
                    INSERT INTO {events} AS e (event_id, token, done, expires_at)
                    SELECT $1, $7, false, clock_timestamp() + $8 {ms}
                    WHERE NOT EXISTS (SELECT 1 FROM {jobs} WHERE event_key = $1)
                    ON CONFLICT (event_id) DO UPDATE
                    SET token = EXCLUDED.token, done = false, expires_at = EXCLUDED.expires_at
                    WHERE e.expires_at <= clock_timestamp()
                    RETURNING 1
                 ), queued AS (
                    INSERT INTO {jobs} (event_key, event_id, event_type, body, received_ms, secret, state, due_at, traceparent, tracestate, order_key)
                    SELECT $1, $2, $3, $4, $5, $6, 'queued', clock_timestamp(), $10, $11, $12 FROM claimed
                    ON CONFLICT (event_key) DO NOTHING
                    RETURNING id
                 )
                 SELECT EXISTS (SELECT 1 FROM queued),
                        (SELECT count(*) FROM (SELECT pg_notify($9, '') FROM queued) AS n)"
            ),
            // Due entries (waiting, retrying, or running with a lapsed lease), locked
            // with SKIP LOCKED through the partial index on `due_at` (`now()`, the
            // statement's start, is stable, so the bound is an index condition: a
            // backlog of entries not yet due is not scanned); each gets its
            // run's token, and the event's row in the idempotency table takes the
            // token too (unless the event is done: then the entry is not run).
            // Nothing while the queue is paused (`queue::pause`).
            take: format!(
                "WITH locked AS (
                    SELECT j.id FROM {jobs} AS j
                    WHERE j.state <> 'dead' AND j.due_at <= now() AND j.id <> ALL ($5)
                      AND NOT EXISTS (SELECT 1 FROM {state} WHERE paused){take_filter}
                    ORDER BY j.due_at LIMIT $1 FOR UPDATE SKIP LOCKED
                 ), numbered AS (
                    SELECT id, row_number() OVER (ORDER BY id) AS n FROM locked
                 ), taken AS (
                    UPDATE {jobs} AS j
                    SET state = 'running', runs = j.runs + 1, token = ($2::text[])[numbered.n],
                        locked_by = $3, due_at = clock_timestamp() + $4 {ms}
                    FROM numbered WHERE j.id = numbered.id
                    RETURNING j.id, j.event_key, j.event_id, j.body, j.runs, j.token, j.due_at,
                              left(j.traceparent, 111) AS traceparent, left(j.tracestate, 513) AS tracestate
                 ), marked AS (
                    INSERT INTO {events} AS e (event_id, token, done, expires_at)
                    SELECT event_key, token, false, due_at FROM taken
                    ON CONFLICT (event_id) DO UPDATE
                    SET token = EXCLUDED.token, expires_at = greatest(e.expires_at, EXCLUDED.expires_at)
                    WHERE NOT e.done
                    RETURNING e.event_id
                 )
                 SELECT id, event_id, body, runs, token,
                        event_key IN (SELECT event_id FROM marked) AS run, traceparent, tracestate
                 FROM taken"
            ),
            // Every running entry of this worker in one statement: the entry's lease
            // and its event's claim. Returns the ids still held.
            renew: format!(
                "WITH renewed AS (
                    UPDATE {jobs} AS j SET due_at = clock_timestamp() + $3 {ms}
                    FROM unnest($1::bigint[], $2::text[]) AS r(id, token)
                    WHERE j.id = r.id AND j.token = r.token AND j.state = 'running'
                    RETURNING j.id, j.event_key, j.token, j.due_at
                 ), claims AS (
                    UPDATE {events} AS e SET expires_at = greatest(e.expires_at, renewed.due_at)
                    FROM renewed
                    WHERE e.event_id = renewed.event_key AND e.token = renewed.token AND NOT e.done
                 )
                 SELECT id FROM renewed"
            ),
            // "Done" wins whoever holds the entry: the entry is deleted and the event
            // marked done for the dedup window. Returns whether this run held it
            // (NULL: the entry was gone).
            done: format!(
                "WITH gone AS (
                    DELETE FROM {jobs} WHERE id = $1
                    RETURNING token IS NOT DISTINCT FROM $2 AS mine, order_key
                 ), marked AS (
                    INSERT INTO {events} AS e (event_id, token, done, expires_at)
                    VALUES ($3, $2, true, clock_timestamp() + $4 {ms})
                    ON CONFLICT (event_id) DO UPDATE
                    SET token = EXCLUDED.token, done = true,
                        expires_at = greatest(e.expires_at, EXCLUDED.expires_at)
                    RETURNING 1
                 )
                 SELECT (SELECT mine FROM gone), (SELECT count(*) FROM marked){wake_done}"
            ),
            retry: format!(
                "UPDATE {jobs}
                 SET state = 'retrying', token = NULL, locked_by = NULL,
                     due_at = clock_timestamp() + $3 {ms}
                 WHERE id = $1 AND token = $2"
            ),
            // The entry stays as a dead letter; the event id stays remembered as given
            // up on for the dedup window.
            dead: format!(
                "WITH dead AS (
                    UPDATE {jobs}
                    SET state = 'dead', token = NULL, locked_by = NULL, dead_at = clock_timestamp(),
                        last_error = $3
                    WHERE id = $1 AND token = $2
                    RETURNING event_key, order_key
                 ), remembered AS (
                    UPDATE {events} AS e
                    SET expires_at = greatest(e.expires_at, clock_timestamp() + $4 {ms})
                    FROM dead WHERE e.event_id = dead.event_key AND NOT e.done
                 )
                 SELECT (SELECT count(*) FROM dead){wake_dead}"
            ),
            skip: format!("DELETE FROM {jobs} WHERE id = $1 AND token = $2"),
            counts: format!("SELECT state, count(*) FROM {jobs} GROUP BY state"),
            dead_letters: format!(
                "SELECT id, event_id, event_type, coalesce(last_error, ''), runs, received_ms, body
                 FROM {jobs} WHERE state = 'dead' AND id > $2 ORDER BY id LIMIT $1"
            ),
            // Oldest first: a dead letter whose event is done meanwhile is deleted,
            // any other queued again with its runs reset.
            replay: format!(
                "WITH picked AS (
                    SELECT j.id, coalesce(e.done, false) AS done
                    FROM {jobs} AS j LEFT JOIN {events} AS e ON e.event_id = j.event_key
                    WHERE j.state = 'dead' ORDER BY j.id LIMIT $1 FOR UPDATE OF j SKIP LOCKED
                 ), handled AS (
                    DELETE FROM {jobs} WHERE id IN (SELECT id FROM picked WHERE done)
                 ), replayed AS (
                    UPDATE {jobs}
                    SET state = 'queued', runs = 0, due_at = clock_timestamp(), dead_at = NULL
                    WHERE id IN (SELECT id FROM picked WHERE NOT done)
                    RETURNING id
                 )
                 SELECT count(*), (SELECT count(*) FROM picked),
                        (SELECT count(*) FROM (SELECT pg_notify($2, '') FROM replayed LIMIT 1) AS n)
                 FROM replayed"
            ),
            purge: format!(
                "DELETE FROM {jobs} WHERE state = 'dead' AND dead_at <= clock_timestamp() - $1 {ms}"
            ),
        };
        Self {
            store: crate::postgres::PostgresStore::new(pool.clone(), tables),
            pool,
            channel,
            tables: tables.clone(),
            statements,
            ordered: limit.is_some(),
        }
    }

    /// Queues the event unless its id is known; `true` if queued.
    #[allow(clippy::too_many_arguments)] // one per column the endpoint fills
    pub(crate) async fn enqueue(
        &self,
        entry: EntryRef<'_>,
        window: Duration,
    ) -> Result<bool, QueueError> {
        let trace = entry.trace;
        let (queued, _): (bool, i64) = sqlx::query_as(&self.statements.enqueue)
            .bind(key(entry.event_id).as_ref())
            .bind(printable(entry.event_id).as_ref())
            .bind(printable(entry.event_type).as_ref())
            .bind(entry.body)
            .bind(i64::try_from(entry.received).unwrap_or(i64::MAX))
            .bind(i64::try_from(entry.secret).unwrap_or(i64::MAX))
            .bind(crate::dedup::ClaimToken::new().to_string())
            .bind(millis(window))
            .bind(&self.channel)
            .bind(trace.map(TraceContext::traceparent))
            .bind(trace.and_then(TraceContext::tracestate))
            .bind(entry.key)
            .fetch_one(&self.pool)
            .await
            .map_err(failed)?;
        Ok(queued)
    }

    /// Takes up to `tokens.len()` due entries, each with its token, but none of
    /// `running` (the entries this worker runs: one whose lease lapsed while its run
    /// goes on is left to the others).
    pub(crate) async fn take(
        &self,
        tokens: &[String],
        consumer: &str,
        visibility: Duration,
        running: &[i64],
    ) -> Result<Vec<Taken>, QueueError> {
        let query = sqlx::query_as(&self.statements.take)
            .bind(i64::try_from(tokens.len()).unwrap_or(i64::MAX))
            .bind(tokens)
            .bind(consumer)
            .bind(millis(visibility))
            .bind(running);
        let rows: Vec<TakenRow> = if self.ordered {
            ordering::pg_take_serialized(&self.pool, &self.channel, query).await?
        } else {
            query.fetch_all(&self.pool).await.map_err(failed)?
        };
        Ok(rows
            .into_iter()
            .map(
                |(id, event_id, body, runs, token, run, parent, state)| Taken {
                    id,
                    event_id,
                    body,
                    runs: u64::try_from(runs).unwrap_or(0),
                    token,
                    run,
                    trace: TraceContext::stored(
                        parent.as_deref().map(str::as_bytes),
                        state.as_deref().map(str::as_bytes),
                    ),
                },
            )
            .collect())
    }

    /// Renews the running entries `(id, token)` over `pool` (the queue's, or a
    /// worker's own); returns the ids still held.
    pub(crate) async fn renew(
        &self,
        pool: &PgPool,
        entries: &[(i64, String)],
        visibility: Duration,
    ) -> Result<Vec<i64>, QueueError> {
        let (ids, tokens): (Vec<i64>, Vec<String>) = entries.iter().cloned().unzip();
        sqlx::query_scalar(&self.statements.renew)
            .bind(ids)
            .bind(tokens)
            .bind(millis(visibility))
            .fetch_all(pool)
            .await
            .map_err(failed)
    }

    /// Deletes the entry and marks its event done.
    pub(crate) async fn done(
        &self,
        id: i64,
        token: &str,
        event_id: &str,
        window: Duration,
    ) -> Result<Settled, QueueError> {
        let (mine, _): (Option<bool>, i64) = sqlx::query_as(&self.statements.done)
            .bind(id)
            .bind(token)
            .bind(key(event_id).as_ref())
            .bind(millis(window))
            .fetch_one(&self.pool)
            .await
            .map_err(failed)?;
        Ok(match mine {
            Some(true) => Settled::Applied,
            Some(false) => Settled::DoneNotOwner,
            None => Settled::NotOwner,
        })
    }

    /// Schedules the entry's next attempt after `pause`, if this run holds it.
    pub(crate) async fn retry(
        &self,
        id: i64,
        token: &str,
        pause: Duration,
    ) -> Result<Settled, QueueError> {
        let rows = sqlx::query(&self.statements.retry)
            .bind(id)
            .bind(token)
            .bind(millis(pause))
            .execute(&self.pool)
            .await
            .map_err(failed)?
            .rows_affected();
        Ok(held(rows))
    }

    /// Makes the entry a dead letter, if this run holds it.
    pub(crate) async fn dead(
        &self,
        id: i64,
        token: &str,
        error: &str,
        window: Duration,
    ) -> Result<Settled, QueueError> {
        let rows: i64 = sqlx::query_scalar(&self.statements.dead)
            .bind(id)
            .bind(token)
            .bind(error)
            .bind(millis(window))
            .fetch_one(&self.pool)
            .await
            .map_err(failed)?;
        Ok(held(rows.unsigned_abs()))
    }

    /// Deletes an entry whose event turned out done, if this run holds it.
    pub(crate) async fn skip(&self, id: i64, token: &str) -> Result<(), QueueError> {
        sqlx::query(&self.statements.skip)
            .bind(id)
            .bind(token)
            .execute(&self.pool)
            .await
            .map_err(failed)?;
        Ok(())
    }

    pub(crate) async fn counts(&self) -> Result<QueueCounts, QueueError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(&self.statements.counts)
            .fetch_all(&self.pool)
            .await
            .map_err(failed)?;
        let mut counts = QueueCounts::default();
        for (state, n) in rows {
            let n = n.unsigned_abs();
            match state.as_str() {
                "queued" => counts.pending += n,
                "running" => counts.in_progress += n,
                "retrying" => counts.retrying += n,
                "dead" => counts.dead_letters += n,
                _ => {}
            }
        }
        Ok(counts)
    }

    pub(crate) async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        type Row = (i64, String, String, String, i32, i64, Vec<u8>);
        let mut letters = Vec::new();
        let mut after = 0;
        while letters.len() < limit {
            let page = (limit - letters.len()).min(100);
            let rows: Vec<Row> = sqlx::query_as(&self.statements.dead_letters)
                .bind(i64::try_from(page).unwrap_or(100))
                .bind(after)
                .fetch_all(&self.pool)
                .await
                .map_err(failed)?;
            let full = rows.len() == page;
            for (id, event_id, event_type, error, runs, received, body) in rows {
                after = id;
                letters.push(DeadLetter {
                    entry_id: id.to_string(),
                    event_id,
                    event_type,
                    error,
                    attempts: u32::try_from(runs).unwrap_or(0),
                    received_at: UNIX_EPOCH + Duration::from_millis(received.unsigned_abs()),
                    body,
                });
            }
            if !full {
                break;
            }
        }
        Ok(letters)
    }

    /// Replays up to `limit` dead letters, 500 per statement, each statement
    /// within `timeout`.
    pub(crate) async fn replay(
        &self,
        limit: usize,
        timeout: Duration,
    ) -> Result<usize, QueueError> {
        let mut moved = 0;
        while moved < limit {
            let page = (limit - moved).min(500);
            let statement = async {
                sqlx::query_as(&self.statements.replay)
                    .bind(i64::try_from(page).unwrap_or(500))
                    .bind(&self.channel)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(failed)
            };
            let (replayed, picked, _): (i64, i64, i64) =
                super::protocol::bounded(timeout, "a replay", statement).await?;
            moved += usize::try_from(replayed).unwrap_or(0);
            if usize::try_from(picked).unwrap_or(0) < page {
                break;
            }
        }
        Ok(moved)
    }

    pub(crate) async fn purge(&self, older_than: Duration) -> Result<u64, QueueError> {
        // Whole milliseconds, rounded up; at most a thousand years.
        let age = i64::try_from(
            crate::clock::clamp(older_than)
                .as_nanos()
                .div_ceil(1_000_000),
        )
        .unwrap_or(i64::MAX)
        .min(MAX_AGE_MS);
        Ok(sqlx::query(&self.statements.purge)
            .bind(age)
            .execute(&self.pool)
            .await
            .map_err(failed)?
            .rows_affected())
    }
}

/// The `NOTIFY` channel of the queue in `tables`: `<schema>.<prefix>jobs`, or a hash
/// of it when that is longer than a channel name may be (63 bytes).
fn channel(tables: &Tables) -> String {
    let name = format!("{}.{}jobs", tables.schema(), tables.prefix());
    if name.len() <= 63 {
        return name;
    }
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(name.as_bytes());
    format!("notmeta_webhooks_{}", &hex::encode(digest)[..32])
}

/// `text` as PostgreSQL's `text` can hold it: a NUL (which it cannot) becomes
/// U+FFFD. The id and type columns of an entry are for people (dead letters, logs);
/// the event itself is parsed again from the stored body, and its key is
/// [`key`]'s.
fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

fn held(rows: u64) -> Settled {
    if rows == 1 {
        Settled::Applied
    } else {
        Settled::NotOwner
    }
}
