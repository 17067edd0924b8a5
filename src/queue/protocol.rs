//! The queue's protocol, typed: the names the scripts share, the entry's fields, and
//! one function per script call. Every call here is bounded by an explicit time
//! limit chosen by its caller; the connection has none of its own.

use std::time::Duration;

use redis::{Script, Value};

use super::{Keys, Queue, QueueError, TraceContext, millis, scripts};
use crate::dedup::{RedisConnection, Write, WriteError};

/// An event's state in its partition, as the scripts write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Queued,
    Retrying,
    Done,
    Dead,
    /// Being taken by a newer layout (see `Enqueuer::with_previous_queue`).
    Moving,
    /// Taken by a newer layout.
    Moved,
}

impl State {
    pub(crate) const ALL: [Self; 6] = [
        Self::Queued,
        Self::Retrying,
        Self::Done,
        Self::Dead,
        Self::Moving,
        Self::Moved,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Retrying => "retrying",
            Self::Done => "done",
            Self::Dead => "dead",
            Self::Moving => "moving",
            Self::Moved => "moved",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// How an entry is settled after its run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Settle {
    /// Handled: mark done (recorded even by a worker that no longer owns the entry).
    Done,
    /// To the dead letters, with this error text.
    Dead(String),
    /// Try again after this pause.
    Retry(Duration),
}

impl Settle {
    pub(crate) const NAMES: [&'static str; 3] = ["done", "dead", "retry"];

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Done => Self::NAMES[0],
            Self::Dead(_) => Self::NAMES[1],
            Self::Retry(_) => Self::NAMES[2],
        }
    }
}

/// What a settle found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Recorded as asked.
    Applied,
    /// The event was done already: only acknowledged.
    AlreadyDone,
    /// Success recorded, but another worker owns the entry now (it was reclaimed
    /// while this run went on): the handler ran twice.
    DoneNotOwner,
    /// Another worker owns the entry, or it is settled: nothing changed.
    NotOwner,
}

/// How entries are taken.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Take<'a> {
    /// Never delivered.
    New,
    /// Idle for at least this long, taken over from their owner, scanning from the
    /// cursor.
    Stale(Duration, &'a str),
    /// This consumer's own that have been idle at least this long (nothing here
    /// renews them: a read or start whose reply was lost).
    Mine(Duration),
}

/// What starting a run found.
#[derive(Debug)]
pub(crate) enum Begun {
    /// Run it: the runs started so far (this one included), and the entry.
    Run(u64, Entry),
    /// The event is done or dead: acknowledged, not to run.
    Settled,
    /// The entry no longer exists.
    Gone,
    /// Another worker owns the entry now.
    NotOwner,
}

/// A queued entry's fields: the one codec the endpoint, the worker, retries and
/// dead letters share.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) event_id: String,
    pub(crate) event_type: String,
    pub(crate) body: Vec<u8>,
    /// Unix milliseconds at which the endpoint accepted it.
    pub(crate) received: u64,
    /// Which of the verifier's secrets matched.
    pub(crate) secret: u64,
    /// Failed runs before this entry was written (reset by a replay).
    pub(crate) attempt: u64,
    /// The trace context of the request that enqueued it, if any (validated).
    pub(crate) trace: Option<TraceContext>,
    /// The key its key limit counts it under (`Queue::with_key_limit`), if any.
    pub(crate) key: Option<String>,
}

/// An entry's fields, borrowed: what is appended to a stream or a retry hash.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryRef<'a> {
    pub(crate) event_id: &'a str,
    pub(crate) event_type: &'a str,
    pub(crate) body: &'a [u8],
    pub(crate) received: u64,
    pub(crate) secret: u64,
    pub(crate) attempt: u64,
    pub(crate) trace: Option<&'a TraceContext>,
    pub(crate) key: Option<&'a str>,
}

/// The field/value pairs, in the order stored, as command arguments (nothing is
/// copied).
impl redis::ToRedisArgs for EntryRef<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        for (name, value) in [
            ("id", self.event_id.as_bytes()),
            ("type", self.event_type.as_bytes()),
            ("body", self.body),
        ] {
            out.write_arg(name.as_bytes());
            out.write_arg(value);
        }
        for (name, value) in [
            ("received", self.received),
            ("secret", self.secret),
            ("attempt", self.attempt),
        ] {
            out.write_arg(name.as_bytes());
            value.write_redis_args(out);
        }
        // Only when there is one: an entry without stays as older versions wrote it.
        if let Some(trace) = self.trace {
            out.write_arg(b"traceparent");
            out.write_arg(trace.traceparent().as_bytes());
            if let Some(state) = trace.tracestate() {
                out.write_arg(b"tracestate");
                out.write_arg(state.as_bytes());
            }
        }
        if let Some(key) = self.key {
            out.write_arg(b"key");
            out.write_arg(key.as_bytes());
        }
    }
}

impl Entry {
    /// The fields, borrowed.
    pub(crate) fn as_ref(&self) -> EntryRef<'_> {
        EntryRef {
            event_id: &self.event_id,
            event_type: &self.event_type,
            body: &self.body,
            received: self.received,
            secret: self.secret,
            attempt: self.attempt,
            trace: self.trace.as_ref(),
            key: self.key.as_deref(),
        }
    }

    /// Reads the fields from a flat field/value list (missing fields are empty or 0).
    pub(crate) fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Self {
        let mut entry = Self::default();
        let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
        let number = |v: &[u8]| std::str::from_utf8(v).ok().and_then(|s| s.parse().ok());
        let (mut traceparent, mut tracestate) = (None, None);
        for (name, value) in pairs {
            match name {
                b"id" => entry.event_id = text(value),
                b"type" => entry.event_type = text(value),
                b"body" => entry.body = value.to_vec(),
                b"received" => entry.received = number(value).unwrap_or(0),
                b"secret" => entry.secret = number(value).unwrap_or(0),
                b"attempt" => entry.attempt = number(value).unwrap_or(0),
                b"traceparent" => traceparent = Some(value),
                b"tracestate" => tracestate = Some(value),
                b"key" => entry.key = Some(text(value)),
                _ => {}
            }
        }
        entry.trace = TraceContext::stored(traceparent, tracestate);
        entry
    }

    fn from_value(value: &Value) -> Result<Self, QueueError> {
        let Value::Array(items) = value else {
            return Err(unexpected("entry", value));
        };
        let mut pairs = Vec::with_capacity(items.len() / 2);
        for pair in items.chunks(2) {
            match pair {
                [Value::BulkString(k), Value::BulkString(v)] => pairs.push((&k[..], &v[..])),
                _ => return Err(unexpected("entry field", value)),
            }
        }
        Ok(Self::from_pairs(pairs))
    }
}

/// The compiled scripts (their SHA1s are computed once).
pub(crate) struct Scripts {
    pub(crate) enqueue: Script,
    pub(crate) mark_moving: Script,
    pub(crate) mark_moved: Script,
    pub(crate) take: Script,
    pub(crate) begin: Script,
    pub(crate) begin_many: Script,
    pub(crate) renew: Script,
    pub(crate) settle: Script,
    pub(crate) settle_done_many: Script,
    pub(crate) due: Script,
    pub(crate) promote: Script,
    pub(crate) replay: Script,
    pub(crate) counts: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            enqueue: Script::new(&scripts::enqueue()),
            mark_moving: Script::new(scripts::MARK_MOVING),
            mark_moved: Script::new(scripts::MARK_MOVED),
            take: Script::new(scripts::TAKE),
            begin: Script::new(&scripts::begin()),
            begin_many: Script::new(&scripts::begin_many()),
            renew: Script::new(&scripts::renew()),
            settle: Script::new(&scripts::settle()),
            settle_done_many: Script::new(&scripts::settle_done_many()),
            due: Script::new(scripts::DUE),
            promote: Script::new(&scripts::promote()),
            replay: Script::new(&scripts::replay()),
            counts: Script::new(scripts::COUNTS),
        }
    }
}

/// `future`'s result, or a time-out error after `limit`.
///
/// A combinator rather than an `async fn`: the future it returns holds `future`
/// once, where each `async fn` layer would hold a copy of it beside its own state
/// (a worker's start of a run was three times the size of its Redis call, and
/// every move copied it).
pub(crate) fn bounded<T>(
    limit: Duration,
    what: &'static str,
    future: impl Future<Output = Result<T, QueueError>>,
) -> impl Future<Output = Result<T, QueueError>> {
    futures_util::FutureExt::map(tokio::time::timeout(limit, future), move |result| {
        result.unwrap_or_else(|_| Err(QueueError::timeout(what, limit)))
    })
}

fn unexpected(what: &str, value: &Value) -> QueueError {
    QueueError::new(format!("unexpected {what} reply from Redis: {value:?}"))
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Okay => Some("OK".to_owned()),
        _ => None,
    }
}

/// Hands entries of partition `p` to `consumer`: the next cursor (for
/// [`Take::Stale`]) and (entry id, event id) pairs.
pub(crate) async fn take(
    queue: &Queue,
    connection: &mut RedisConnection,
    p: u16,
    consumer: &str,
    how: Take<'_>,
    count: usize,
) -> Result<(String, Vec<(String, String)>), QueueError> {
    let keys = queue.keys(p);
    let (name, idle, cursor) = match how {
        Take::New => ("new", 0, "0-0"),
        Take::Stale(idle, cursor) => ("stale", millis(idle), cursor),
        Take::Mine(idle) => ("mine", millis(idle), "0-0"),
    };
    let reply: Vec<String> = queue
        .scripts()
        .take
        .key(&keys.stream)
        .arg(name)
        .arg(queue.group())
        .arg(consumer)
        .arg(count.max(1))
        .arg(idle)
        .arg(cursor)
        .invoke_async(connection)
        .await?;
    let mut reply = reply.into_iter();
    let next = reply.next().unwrap_or_else(|| "0-0".to_owned());
    let mut pairs = Vec::new();
    while let (Some(entry), Some(event)) = (reply.next(), reply.next()) {
        pairs.push((entry, event));
    }
    Ok((next, pairs))
}

/// Starts a run of `entry_id` (of event `event_id`) for `consumer`; `false` with it
/// when the replicas did not acknowledge the start (see [`confirm`]).
pub(crate) async fn begin(
    queue: &Queue,
    connection: &mut RedisConnection,
    keys: &Keys,
    consumer: &Consumer,
    entry_id: &str,
    event_id: &str,
) -> Result<(Begun, bool), QueueError> {
    let keep = millis(queue.dedup_window().saturating_add(consumer.visibility));
    let mut invocation = queue.scripts().begin.prepare_invoke();
    invocation
        .key(&keys.stream)
        .key(keys.state(event_id))
        .arg(queue.group())
        .arg(&consumer.name)
        .arg(entry_id)
        .arg(keep)
        .arg(&consumer.token);
    let (reply, acknowledged) = write_start(queue, connection, keys, &invocation).await?;
    Ok((begun(reply)?, acknowledged))
}

/// Runs a start script: its reply, and whether the replicas acknowledged it.
/// Acknowledged by the replicas when asked: the handler runs only once they know
/// this worker owns the entry, so a failover cannot hand it to another meanwhile.
async fn write_start(
    queue: &Queue,
    connection: &mut RedisConnection,
    keys: &Keys,
    invocation: &redis::ScriptInvocation<'_>,
) -> Result<(Value, bool), QueueError> {
    let written = connection
        .write(
            Write::Script(invocation),
            keys.stream.as_bytes(),
            queue.timeout(),
        )
        .await;
    match written {
        Ok(reply) => Ok((reply, true)),
        // Applied on the primary, not (yet) on the replicas.
        Err(WriteError::NotReplicated(error)) => Ok((error.written, false)),
        Err(error) => Err(error.into()),
    }
}

/// Starts the runs of `entries` ((entry id, event id), all of the partition of
/// `keys`) for `consumer` in one script, each as [`begin`] would: one answer per
/// entry, in their order, and whether the replicas acknowledged the starts.
pub(crate) async fn begin_many(
    queue: &Queue,
    connection: &mut RedisConnection,
    keys: &Keys,
    consumer: &Consumer,
    entries: &[(String, String)],
) -> Result<(Vec<Begun>, bool), QueueError> {
    let keep = millis(queue.dedup_window().saturating_add(consumer.visibility));
    let mut invocation = queue.scripts().begin_many.prepare_invoke();
    invocation.key(&keys.stream);
    for (_, event_id) in entries {
        invocation.key(keys.state(event_id));
    }
    invocation
        .arg(queue.group())
        .arg(&consumer.name)
        .arg(keep)
        .arg(&consumer.token);
    for (entry_id, _) in entries {
        invocation.arg(entry_id);
    }
    let (reply, acknowledged) = write_start(queue, connection, keys, &invocation).await?;
    let Value::Array(answers) = reply else {
        return Err(unexpected("start of runs", &reply));
    };
    if answers.len() != entries.len() {
        return Err(QueueError::new(format!(
            "{} answers from Redis to the start of {} runs",
            answers.len(),
            entries.len()
        )));
    }
    let begun = answers.into_iter().map(begun).collect::<Result<_, _>>()?;
    Ok((begun, acknowledged))
}

/// Whether `consumer` still owns `entry_id`, the answer acknowledged by the
/// replicas: after a start they did not acknowledge, the handler runs only once
/// they know who owns the entry. Extends the entry's hold as a renewal does.
pub(crate) async fn confirm(
    queue: &Queue,
    connection: &RedisConnection,
    p: u16,
    consumer: &Consumer,
    entry_id: &str,
    event_id: &str,
) -> Result<bool, QueueError> {
    let keep = millis(queue.dedup_window().saturating_add(consumer.visibility));
    let keys = queue.keys(p);
    let mut invocation = queue.scripts().renew.prepare_invoke();
    invocation
        .key(&keys.stream)
        .key(keys.state(event_id))
        .arg(queue.group())
        .arg(&consumer.name)
        .arg(keep)
        .arg(entry_id);
    let lost: Vec<String> = connection
        .write(
            Write::Script(&invocation),
            keys.stream.as_bytes(),
            queue.timeout(),
        )
        .await?;
    Ok(lost.is_empty())
}

/// Reads the begin script's reply.
fn begun(reply: Value) -> Result<Begun, QueueError> {
    let Value::Array(items) = &reply else {
        return Err(unexpected("begin", &reply));
    };
    match (
        items.first().and_then(text).as_deref(),
        items.get(1),
        items.get(2),
    ) {
        (Some("run"), Some(Value::Int(runs)), Some(fields)) => Ok(Begun::Run(
            u64::try_from(*runs).unwrap_or(0),
            Entry::from_value(fields)?,
        )),
        (Some("settled"), Some(state), _) => match text(state).as_deref().and_then(State::parse) {
            Some(State::Done | State::Dead) => Ok(Begun::Settled),
            _ => Err(unexpected("begin", &reply)),
        },
        (Some("gone"), _, _) => Ok(Begun::Gone),
        (Some("not_owner"), _, _) => Ok(Begun::NotOwner),
        _ => Err(unexpected("begin", &reply)),
    }
}

/// Resets the idle time of `entries` ((entry id, event id), all of partition `p`)
/// that `consumer` still owns, and keeps their events' state; returns the entry ids
/// it no longer owns.
pub(crate) async fn renew(
    queue: &Queue,
    connection: &mut RedisConnection,
    p: u16,
    consumer: &Consumer,
    entries: &[(String, String)],
) -> Result<Vec<String>, QueueError> {
    let keep = millis(queue.dedup_window().saturating_add(consumer.visibility));
    let keys = queue.keys(p);
    let mut invocation = queue.scripts().renew.prepare_invoke();
    invocation.key(&keys.stream);
    for (_, event_id) in entries {
        invocation.key(keys.state(event_id));
    }
    invocation.arg(queue.group()).arg(&consumer.name).arg(keep);
    for (entry_id, _) in entries {
        invocation.arg(entry_id);
    }
    Ok(invocation.invoke_async(connection).await?)
}

/// A worker as the scripts know it: its consumer name (the owner of its entries)
/// and the token of this run of it (drawn per `Worker::run`, so that a process
/// restarted under the same name is told apart).
#[derive(Debug, Clone)]
pub(crate) struct Consumer {
    pub(crate) name: String,
    pub(crate) token: String,
    /// Its visibility timeout: an event's state is kept at least this much longer
    /// than the window while it runs, so that it outlives every renewal interval.
    pub(crate) visibility: Duration,
}

/// Settles `entry_id` for `consumer`, as `how` says.
pub(crate) async fn settle(
    queue: &Queue,
    connection: &mut RedisConnection,
    keys: &Keys,
    consumer: &Consumer,
    entry_id: &str,
    entry: &Entry,
    how: &Settle,
) -> Result<Settled, QueueError> {
    let key = entry.key.as_deref();
    let ordered = super::ordering::ordered_scripts(queue, key);
    let script = ordered.map_or(&queue.scripts().settle, |o| &o.settle);
    let mut invocation = script.prepare_invoke();
    invocation
        .key(&keys.stream)
        .key(keys.state(&entry.event_id))
        .key(&keys.dead)
        .key(&keys.retry)
        .key(keys.retry_hash(&entry.event_id))
        .arg(queue.group())
        .arg(&consumer.name)
        .arg(entry_id)
        .arg(how.name())
        .arg(millis(queue.dedup_window()));
    let delay = match how {
        Settle::Retry(after) => millis(*after),
        _ => 0,
    };
    invocation
        .arg(delay)
        .arg(&entry.event_id)
        .arg(&consumer.token);
    match how {
        Settle::Dead(error) => {
            let now = super::unix_millis(std::time::SystemTime::now()).to_string();
            invocation.arg(entry.as_ref());
            invocation.arg("error").arg(error.as_str());
            invocation.arg("failed").arg(now.as_str());
        }
        Settle::Retry(_) => {
            invocation.arg(entry.as_ref());
        }
        Settle::Done => {}
    }
    if ordered.is_some() {
        // After every other key and argument: the scripts read them from the end.
        super::ordering::tail(queue, keys, key, &mut invocation);
    }
    // Acknowledged by the replicas when asked: a done mark a failover can lose
    // would let the event run again.
    let reply: String = connection
        .write(
            Write::Script(&invocation),
            keys.stream.as_bytes(),
            queue.timeout(),
        )
        .await?;
    settled(&reply)
}

/// What a settle's answer says.
fn settled(reply: &str) -> Result<Settled, QueueError> {
    // Sent again after it was applied: what the first try found.
    let first = reply.strip_prefix("repeated:").unwrap_or(reply);
    match first {
        "applied" => Ok(Settled::Applied),
        "done" => Ok(Settled::AlreadyDone),
        "done_not_owner" => Ok(Settled::DoneNotOwner),
        "not_owner" => Ok(Settled::NotOwner),
        _ => Err(QueueError::new(format!(
            "unexpected settle reply from Redis: {reply:?}"
        ))),
    }
}

/// Records the successes of `entries` ((entry id, event id), all of the partition
/// of `keys`, none with a key limit) for `consumer` in one script, each as
/// [`settle`] with [`Settle::Done`] would: one answer per entry, in their order.
pub(crate) async fn settle_done_many(
    queue: &Queue,
    connection: &mut RedisConnection,
    keys: &Keys,
    consumer: &Consumer,
    entries: &[(String, String)],
) -> Result<Vec<Settled>, QueueError> {
    let mut invocation = queue.scripts().settle_done_many.prepare_invoke();
    invocation
        .key(&keys.stream)
        .key(&keys.dead)
        .key(&keys.retry);
    for (_, event_id) in entries {
        invocation
            .key(keys.state(event_id))
            .key(keys.retry_hash(event_id));
    }
    invocation
        .arg(queue.group())
        .arg(&consumer.name)
        .arg(millis(queue.dedup_window()))
        .arg(&consumer.token);
    for (entry_id, event_id) in entries {
        invocation.arg(entry_id).arg(event_id);
    }
    // Acknowledged by the replicas when asked, as each settle is.
    let replies: Vec<String> = connection
        .write(
            Write::Script(&invocation),
            keys.stream.as_bytes(),
            queue.timeout(),
        )
        .await?;
    if replies.len() != entries.len() {
        return Err(QueueError::new(format!(
            "{} answers from Redis to {} settles",
            replies.len(),
            entries.len()
        )));
    }
    replies.iter().map(|reply| settled(reply)).collect()
}

/// Moves partition `p`'s due retries back into its stream (at most `limit`);
/// returns how many.
pub(crate) async fn promote_due(
    queue: &Queue,
    connection: &mut RedisConnection,
    p: u16,
    limit: usize,
) -> Result<usize, QueueError> {
    let keys = queue.keys(p);
    let due: Vec<String> = queue
        .scripts()
        .due
        .key(&keys.retry)
        .arg(limit)
        .invoke_async(connection)
        .await?;
    let mut moved = 0;
    for event_id in &due {
        let n: usize = queue
            .scripts()
            .promote
            .key(&keys.retry)
            .key(keys.retry_hash(event_id))
            .key(&keys.stream)
            .key(keys.state(event_id))
            .arg(event_id)
            .arg(queue.group())
            .arg(millis(queue.dedup_window()))
            .invoke_async(connection)
            .await?;
        moved += n;
    }
    Ok(moved)
}

/// What replaying one dead letter did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replayed {
    /// Queued again.
    Queued,
    /// Deleted, not queued: its event is done, or queued again already.
    Skipped,
    /// It no longer exists.
    Gone,
}

/// Replays the dead letter `dead_id` of partition `p`, whose event is `event_id`.
pub(crate) async fn replay_one(
    queue: &Queue,
    connection: &mut RedisConnection,
    keys: &Keys,
    dead_id: &str,
    event_id: &str,
    key: Option<&str>,
) -> Result<Replayed, QueueError> {
    let ordered = super::ordering::ordered_scripts(queue, key);
    let mut invocation = ordered
        .map_or(&queue.scripts().replay, |o| &o.replay)
        .prepare_invoke();
    invocation
        .key(&keys.dead)
        .key(&keys.stream)
        .key(keys.state(event_id))
        .arg(dead_id)
        .arg(queue.group())
        .arg(millis(queue.dedup_window()));
    if ordered.is_some() {
        super::ordering::tail(queue, keys, key, &mut invocation);
    }
    let reply: String = invocation.invoke_async(connection).await?;
    match reply.as_str() {
        "replayed" => Ok(Replayed::Queued),
        "skipped" => Ok(Replayed::Skipped),
        "gone" => Ok(Replayed::Gone),
        _ => Err(QueueError::new(format!(
            "unexpected replay reply from Redis: {reply:?}"
        ))),
    }
}

/// Whether `error` says the consumer group (or its stream) is missing.
pub(crate) fn is_missing_group(error: &QueueError) -> bool {
    error.redis_code() == Some("NOGROUP") || error.to_string_chain().contains("NOGROUP")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_use_the_names_the_enums_give() {
        let all = [
            scripts::enqueue(),
            scripts::begin(),
            scripts::settle(),
            scripts::promote(),
            scripts::replay(),
            scripts::MARK_MOVING.to_owned(),
            scripts::MARK_MOVED.to_owned(),
        ]
        .concat();
        for state in State::ALL {
            assert!(
                all.contains(&format!("'{}'", state.as_str())),
                "no script writes or reads the state {:?}",
                state.as_str()
            );
        }
        let settle = scripts::settle();
        for mode in Settle::NAMES {
            assert!(settle.contains(&format!("mode == '{mode}'")), "{mode}");
        }
        for how in ["'new'", "'stale'"] {
            assert!(scripts::TAKE.contains(how));
        }
    }

    #[test]
    fn an_entry_reads_back_what_it_wrote() {
        let entry = Entry {
            event_id: "evt_1".into(),
            event_type: "user.online".into(),
            body: b"{\"x\":1}\xff".to_vec(),
            received: 1_700_000_000_000,
            secret: 1,
            attempt: 3,
            trace: None,
            key: None,
        };
        // What is sent, read back as Redis hands it over.
        let args = redis::ToRedisArgs::to_redis_args(&entry.as_ref());
        assert_eq!(args.len(), 12);
        let back = Entry::from_pairs(args.chunks(2).map(|p| (&p[0][..], &p[1][..])));
        assert_eq!(back, entry);
        let partial = Entry::from_pairs([(&b"id"[..], &b"e"[..]), (b"attempt", b"x")]);
        assert_eq!(partial.event_id, "e");
        assert_eq!(partial.attempt, 0);
        let keyed = Entry {
            key: Some("conversation:c1".into()),
            ..entry.clone()
        };
        let args = redis::ToRedisArgs::to_redis_args(&keyed.as_ref());
        let back = Entry::from_pairs(args.chunks(2).map(|p| (&p[0][..], &p[1][..])));
        assert_eq!(back, keyed);
        assert_eq!(partial.trace, None);
    }

    #[test]
    fn an_entry_carries_its_trace_context_and_ignores_a_garbled_one() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let entry = Entry {
            event_id: "evt_1".into(),
            trace: Some(TraceContext::parse(parent, Some("k=v")).unwrap()),
            ..Entry::default()
        };
        let args = redis::ToRedisArgs::to_redis_args(&entry.as_ref());
        assert_eq!(args.len(), 16);
        let back = Entry::from_pairs(args.chunks(2).map(|p| (&p[0][..], &p[1][..])));
        assert_eq!(back, entry);
        for garbled in [&b"00-zz"[..], b"", b"\xff", &parent.as_bytes()[..54]] {
            let read = Entry::from_pairs([(&b"id"[..], &b"e"[..]), (b"traceparent", garbled)]);
            assert_eq!((read.event_id.as_str(), read.trace), ("e", None));
        }
    }
}
