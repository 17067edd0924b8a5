//! Key limits: events of one key run at most N at a time, started in the order
//! they were enqueued ([`KeyLimit`]). The queue's shared code calls in here through
//! narrow hooks: the key of an event (at enqueue), the partition it goes to, the
//! extra keys and arguments of the Redis scripts that take or release a slot, the
//! purge that releases held keys, and the PostgreSQL take's condition.
//!
//! # In Redis
//!
//! Per key, under the partition's hash tag `P` (all events of a key are in one
//! partition: the partition is chosen by the key, not by the event id):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:hold:<key>` | hash | the event ids holding a slot of the key (in the stream, running, waiting for a retry, or, with [`OnDeadLetter::Hold`], dead) |
//! | `P:wait:<key>` | list | the entries waiting for a slot, oldest first, each one MessagePack array of the entry's field/value pairs |
//! | `P:waiting` | string | how many entries wait in the partition's `wait` lists (counted as pending) |
//!
//! A slot is a field of the hold hash named by the event id: taking it twice (a
//! replay of an event that still holds it) or releasing it twice (a success
//! recorded by a stale worker and by the owner) changes nothing, so a duplicate
//! never takes a second slot. The enqueue, settle and replay scripts get three
//! more keys (hold, wait, waiting) and two more arguments (the cap, 0 for an entry
//! without a key, and the dead-letter policy) at the end of their `KEYS` and
//! `ARGV`; [`hooks`] reads them and gives the scripts their `append` and
//! `settled` steps. The purge reads each purged dead letter's key and builds its
//! hold and wait names from the partition's prefix (they share its hash tag, so
//! the script still touches one slot). A replayed dead letter that must wait goes
//! to the front of its key's list (it was enqueued before the others).
//!
//! # In PostgreSQL
//!
//! Each entry carries its key in `order_key` (schema version 5, indexed with `id`).
//! The take adds `PgHooks::take_filter`: an entry is taken only if it is running
//! (a reclaim), has no key, or fewer than the cap of its key's entries are earlier
//! and unsettled (dead ones too with [`OnDeadLetter::Hold`]) or later and running
//! (possible only after a replay). Takes run one after another under an advisory
//! lock (`pg_take_serialized`). A done entry, or a dead one that releases its
//! slot, sends a `NOTIFY` so the key's next entry is taken at once.
//!
//! # In memory
//!
//! The in-memory queue applies the PostgreSQL rule under its lock. The limit is
//! kept in its shared state, so every clone of the queue has it.

use std::fmt;
use std::sync::{Arc, OnceLock};

use redis::Script;

use super::{Keys, Queue, scripts};
use crate::event::Event;

/// What happens to a key's slot when one of its events goes to the dead letters.
///
/// ```
/// use notmeta_webhooks::queue::{KeyLimit, OnDeadLetter};
/// let limit = KeyLimit::per_key().on_dead_letter(OnDeadLetter::Hold);
/// assert_eq!(limit.dead_letter_policy(), OnDeadLetter::Hold);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnDeadLetter {
    /// The slot is released: the key's later events go on (the dead event is
    /// skipped, as after any other limit). The default.
    #[default]
    Release,
    /// The dead letter keeps its slot: the key's later events wait until it is
    /// replayed ([`Queue::replay_dead_letters`]) or purged
    /// ([`Queue::purge_dead_letters`]).
    Hold,
}

impl OnDeadLetter {
    fn as_str(self) -> &'static str {
        match self {
            Self::Release => "release",
            Self::Hold => "hold",
        }
    }
}

type KeyFn = dyn Fn(&Event<'_>) -> Option<String> + Send + Sync;

/// Per-key ordering and a per-key cap on running handlers, for a [`Queue`] (Redis,
/// PostgreSQL, or in memory), set with [`Queue::with_key_limit`]. Off by default.
///
/// Each event gets a *key* when it is enqueued: by default its conversation's id
/// for `conversation.*` and `message.*` events, its user's id for `user.*` events,
/// and its own event id for the others (unknown types included, and events that
/// lack the id their type would give), so those run unconstrained;
/// [`with_key`](Self::with_key) sets your own. Events of one key are started in the
/// order they were enqueued, at most [`with_max_running`](Self::with_max_running)
/// at a time (1 by default: one at a time); events of different keys run
/// concurrently. The key is stored with the entry, so the endpoints
/// ([`Enqueuer`](super::Enqueuer)) and the workers must be given the same limit.
/// A worker or operator process given none treats an entry that has a key as
/// under the default limit (one at a time, dead letters releasing their slot), so
/// a process configured apart never runs a key's events at once; on PostgreSQL
/// its takes are not serialized, so a dead letter it replays may start beside the
/// key's next event.
///
/// What holds:
///
/// - **Retries keep the slot.** An event that failed temporarily keeps its slot
///   while it waits for its retry: the key's later events wait, for up to the
///   worker's [`with_max_attempts`](super::Worker::with_max_attempts) runs. Then
///   it goes to the dead letters and, by default ([`OnDeadLetter::Release`]),
///   releases its slot: the key's later events go on without it. With
///   [`OnDeadLetter::Hold`] the key stays blocked until the operator replays the
///   dead letter ([`Queue::replay_dead_letters`]: it runs first, then the rest) or
///   purges it ([`Queue::purge_dead_letters`]: the rest go on without it).
/// - **A worker that dies holding a key** keeps it: its entry is reclaimed after
///   the visibility timeout, as without key limits, and holds the key meanwhile,
///   so the order holds.
/// - **A duplicate delivery** (same event id) is answered as a duplicate and never
///   takes a second slot; a replayed dead letter takes a slot again (ahead of the
///   key's waiting events: it was enqueued before them).
/// - **With a cap above 1**, entries are handed out in enqueue order, and an event
///   starts only once all but `cap - 1` of the key's earlier events are settled;
///   the up to `cap` events running may start in any order among themselves.
/// - **Events without a key** (your key function answered `None`) are not
///   limited.
///
/// What it cannot give: NotMeta delivers out of order and retries failed
/// deliveries later, so the order of enqueue is not the order in which events were
/// created. A handler that needs creation order still compares `created_at` (or
/// the object's own timestamps) with what it stored. And when another worker took
/// over an entry whose run goes on (its worker lost its store for longer than the
/// visibility timeout, counted [`WorkerStats::lost`](super::WorkerStats::lost)),
/// the event runs twice, possibly at once (the queue's crash window), and the
/// first of the two runs to succeed releases the slot (a success is recorded
/// whoever ran it): the key's next events may then start while the other run still
/// goes on, one run beyond the cap per event taken over.
///
/// On Redis, all events of a key are in one partition
/// ([`Queue::with_partitions`]): the partition is chosen by the key. A key longer
/// than 200 bytes, or holding a NUL, is stored as its SHA-256.
///
/// ```
/// use notmeta_webhooks::queue::{KeyLimit, OnDeadLetter};
/// use notmeta_webhooks::Event;
///
/// // One handler at a time per conversation (the default key), dead letters block.
/// let ordered = KeyLimit::per_key().on_dead_letter(OnDeadLetter::Hold);
/// let event = Event::parse_unverified(br#"{"id":"evt_1","type":"message.sent",
///   "created_at":"2024-01-01T12:00:00Z","data":{"conversation":{"id":"conv_1"}}}"#)?;
/// assert_eq!(ordered.key_of(&event).as_deref(), Some("conversation:conv_1"));
///
/// // At most 4 handlers at once per event type.
/// let per_tenant = KeyLimit::per_key()
///     .with_key(|event: &Event<'_>| Some(event.type_str().to_owned()))
///     .with_max_running(4);
/// assert_eq!(per_tenant.max_running(), 4);
/// # Ok::<(), notmeta_webhooks::Error>(())
/// ```
#[derive(Clone)]
pub struct KeyLimit {
    key: Option<Arc<KeyFn>>,
    max_running: u32,
    on_dead_letter: OnDeadLetter,
    pub(crate) scripts: Arc<OrderedScripts>,
}

impl fmt::Debug for KeyLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyLimit")
            .field("key", &self.key.as_ref().map_or("default", |_| "custom"))
            .field("max_running", &self.max_running)
            .field("on_dead_letter", &self.on_dead_letter)
            .finish()
    }
}

impl Default for KeyLimit {
    fn default() -> Self {
        Self::per_key()
    }
}

/// The longest key stored as given; longer ones are stored as their SHA-256.
const MAX_PLAIN_KEY: usize = 200;

impl KeyLimit {
    /// One event at a time per default key (see [`KeyLimit`]), dead letters
    /// releasing their slot.
    #[must_use]
    pub fn per_key() -> Self {
        Self {
            key: None,
            max_running: 1,
            on_dead_letter: OnDeadLetter::Release,
            scripts: Arc::new(OrderedScripts::new()),
        }
    }

    /// The key of each event, computed when it is enqueued: events with the same
    /// key share the cap; `None` leaves the event unlimited. Many events may map
    /// to one key (a tenant, a group of conversations). The key must depend on the
    /// event alone (a redelivery must get the same key: on Redis it names the
    /// partition where the event's id is deduplicated), and the function should not
    /// panic: it runs in the endpoint, which answers an event whose key function
    /// panicked as one whose handler panicked (500 `Internal error`, so NotMeta
    /// delivers it again later) and queues nothing.
    #[must_use]
    pub fn with_key(
        mut self,
        key: impl Fn(&Event<'_>) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.key = Some(Arc::new(key));
        self
    }

    /// How many events of one key run at once (default 1; 0 is taken as 1, and
    /// `u32::MAX` leaves the key's events unlimited in number but still handed out
    /// in enqueue order).
    #[must_use]
    pub fn with_max_running(mut self, n: u32) -> Self {
        self.max_running = n.max(1);
        self
    }

    /// What a dead letter does to its slot (default [`OnDeadLetter::Release`]).
    #[must_use]
    pub fn on_dead_letter(mut self, policy: OnDeadLetter) -> Self {
        self.on_dead_letter = policy;
        self
    }

    /// The cap per key.
    #[must_use]
    pub fn max_running(&self) -> u32 {
        self.max_running
    }

    /// The dead-letter policy.
    #[must_use]
    pub fn dead_letter_policy(&self) -> OnDeadLetter {
        self.on_dead_letter
    }

    /// The key `event` is limited by, as stored (`None`: not limited).
    #[must_use]
    pub fn key_of(&self, event: &Event<'_>) -> Option<String> {
        let raw = match &self.key {
            Some(key) => key(event)?,
            None => default_key(event),
        };
        Some(stored(raw))
    }
}

/// The default key: `conversation:<id>`, `user:<id>`, or `event:<id>`.
fn default_key(event: &Event<'_>) -> String {
    let type_ = event.type_str();
    let conversation = || {
        event
            .kind
            .conversation()
            .and_then(|c| c.id.as_deref())
            .or_else(|| {
                event
                    .kind
                    .message()
                    .and_then(|m| m.conversation_id.as_deref())
            })
    };
    let found = if type_.starts_with("conversation.") || type_.starts_with("message.") {
        conversation().map(|id| format!("conversation:{id}"))
    } else if type_.starts_with("user.") {
        event
            .kind
            .user()
            .and_then(|u| u.id.as_deref())
            .map(|id| format!("user:{id}"))
    } else {
        None
    };
    found.unwrap_or_else(|| format!("event:{}", event.id.as_str()))
}

/// A key as stored: as given, or `sha256:<hex>` when long, holding a NUL, or
/// looking like a hash already.
fn stored(key: String) -> String {
    if key.len() <= MAX_PLAIN_KEY && !key.contains('\0') && !key.starts_with("sha256:") {
        return key;
    }
    use sha2::Digest as _;
    format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(key.as_bytes()))
    )
}

impl Queue {
    /// Limits how many events of one key run at once and starts them in enqueue
    /// order (see [`KeyLimit`]). Endpoints and workers must be given the same
    /// limit; on Redis, turning it on or off changes which partition an event goes
    /// to, so do it with the queue drained (as a change of
    /// [`with_partitions`](Self::with_partitions)). On PostgreSQL the tables must
    /// be at schema version 5 ([`migrate`](crate::postgres::migrate), which
    /// `Queue::postgres` runs).
    ///
    /// ```no_run
    /// use notmeta_webhooks::queue::{KeyLimit, Queue};
    ///
    /// # async fn run() -> Result<(), notmeta_webhooks::queue::QueueError> {
    /// let queue = Queue::connect("redis://127.0.0.1:6379/")
    ///     .await?
    ///     .with_key_limit(KeyLimit::per_key());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_key_limit(mut self, limit: KeyLimit) -> Self {
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.pg() {
            let ordered = pg.with_key_limit(Some(&limit));
            self.set_pg(ordered);
        }
        if let Some(memory) = self.memory() {
            let hold = limit.on_dead_letter == OnDeadLetter::Hold;
            memory.set_key_limit(limit.max_running, hold);
        }
        self.key_limit = Some(limit);
        self
    }

    /// The key limit in force, if any.
    #[must_use]
    pub fn key_limit(&self) -> Option<&KeyLimit> {
        self.key_limit.as_ref()
    }

    /// The order key of `event` under this queue's key limit.
    pub(crate) fn order_key(&self, event: &Event<'_>) -> Option<String> {
        self.key_limit.as_ref()?.key_of(event)
    }

    /// The partition of an event: by its key with key limits on, else by its id.
    pub(crate) fn partition_for(&self, event_id: &str, key: Option<&str>) -> u16 {
        self.partition_of(key.unwrap_or(event_id))
    }
}

/// Lua shared by [`hooks`] and [`purge_script`]: `o_field(fields, name)`, a field
/// of an entry's field/value list, and `o_fill(stream, hold, wait, cap, waiting)`,
/// which moves a key's waiting entries into the stream while it holds fewer than
/// `cap` slots. A waiting entry is dropped instead when its event holds a slot
/// already or is settled for good (`o_settled`: done, dead or moved, read from
/// the state hash `P:event:<id>` beside the stream `P:stream`): it is a second copy,
/// queued again after the dedup window ended while the first one waited, and
/// starting it would run the event beside its first copy, or leave the slot it
/// takes held for good (a settled event's entry is acknowledged without a run).
const FILL: &str = r"
local function o_field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then
      return fields[i + 1]
    end
  end
end
local function o_settled(stream, id)
  local state = string.sub(stream, 1, #stream - 6) .. 'event:' .. id
  local s = redis.call('HGET', state, 's')
  return s == 'done' or s == 'dead' or s == 'moved'
end
local function o_fill(stream, hold, wait, cap, waiting)
  while redis.call('HLEN', hold) < cap do
    local packed = redis.call('LPOP', wait)
    if not packed then
      return
    end
    redis.call('DECR', waiting)
    local fields = cmsgpack.unpack(packed)
    local id = o_field(fields, 'id')
    if redis.call('HEXISTS', hold, id) == 0 and not o_settled(stream, id) then
      redis.call('XADD', stream, '*', unpack(fields))
      redis.call('HSET', hold, id, 1)
    end
  end
end
";

/// The Lua of the key-limit steps: read the tail of `KEYS` (hold, wait, waiting)
/// and `ARGV` (cap, policy) and define `waiting()`, `append(stream, fields,
/// front)` and `settled(stream, mode, id)`. A cap of 0 (an entry without a key)
/// appends and releases nothing, as [`scripts::PLAIN_HOOKS`]. `append` answers
/// `duplicate` (and appends nothing) for a new entry (not `front`: not a replay)
/// whose event holds a slot of its key already: the event is still queued, its
/// state hash expired with the dedup window.
pub(crate) fn hooks() -> String {
    format!(
        "{}{FILL}{}",
        r"
local O_CAP = tonumber(ARGV[#ARGV - 1])
local O_POLICY = ARGV[#ARGV]
local O_HOLD, O_WAIT, O_WAITING = KEYS[#KEYS - 2], KEYS[#KEYS - 1], KEYS[#KEYS]
local ARGV = {unpack(ARGV, 1, #ARGV - 2)}
",
        r"
local function waiting()
  return tonumber(redis.call('GET', O_WAITING) or '0')
end
local function append(stream, fields, front)
  local id = o_field(fields, 'id')
  if O_CAP == 0 then
    redis.call('XADD', stream, '*', unpack(fields))
    return
  end
  if redis.call('HEXISTS', O_HOLD, id) == 1 then
    if not front then
      return 'duplicate'
    end
    redis.call('XADD', stream, '*', unpack(fields))
    return
  end
  if redis.call('HLEN', O_HOLD) < O_CAP and redis.call('LLEN', O_WAIT) == 0 then
    redis.call('XADD', stream, '*', unpack(fields))
    redis.call('HSET', O_HOLD, id, 1)
    return
  end
  if front then
    redis.call('LPUSH', O_WAIT, cmsgpack.pack(fields))
  else
    redis.call('RPUSH', O_WAIT, cmsgpack.pack(fields))
  end
  redis.call('INCR', O_WAITING)
  o_fill(stream, O_HOLD, O_WAIT, O_CAP, O_WAITING)
end
local function settled(stream, mode, id)
  if O_CAP == 0 or (mode == 'dead' and O_POLICY == 'hold') then
    return
  end
  if redis.call('HDEL', O_HOLD, id) == 1 then
    o_fill(stream, O_HOLD, O_WAIT, O_CAP, O_WAITING)
  end
end
"
    )
}

/// Deletes the dead letters given up on at least `ARGV[1]` ms ago, by the server's
/// clock (a dead letter's entry id is the time it was added), oldest first, at
/// most `ARGV[5]` per call; an age of 0 deletes them all, even entries whose ids run
/// ahead of the clock (a clock stepped back, or a failover to a primary whose clock
/// is behind). Each purged dead letter that holds its key's slot (key limits,
/// [`OnDeadLetter::Hold`]) releases it, and the key's next waiting entries move
/// into the stream.
///
/// KEYS: dead, stream, waiting. ARGV: age ms (0: all), hold prefix, wait prefix,
/// cap, count. Returns how many were deleted.
fn purge_script() -> String {
    format!(
        "{FILL}{}",
        r"
local upto = '+'
if tonumber(ARGV[1]) > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local before = now - tonumber(ARGV[1])
  if before < 0 then
    return 0
  end
  upto = tostring(before)
end
local cap = tonumber(ARGV[4])
local n = 0
for _, e in ipairs(redis.call('XRANGE', KEYS[1], '-', upto, 'COUNT', tonumber(ARGV[5]))) do
  local key, id = o_field(e[2], 'key'), o_field(e[2], 'id')
  redis.call('XDEL', KEYS[1], e[1])
  n = n + 1
  if key and id and redis.call('HDEL', ARGV[2] .. key, id) == 1 then
    o_fill(KEYS[2], ARGV[2] .. key, ARGV[3] .. key, cap, KEYS[3])
  end
end
return n
"
    )
}

/// The scripts that take and release slots.
pub(crate) struct OrderedScripts {
    pub(crate) enqueue: Script,
    pub(crate) settle: Script,
    pub(crate) replay: Script,
    pub(crate) purge: Script,
}

impl OrderedScripts {
    fn new() -> Self {
        Self {
            enqueue: Script::new(&scripts::enqueue_with(&hooks())),
            settle: Script::new(&scripts::settle_with(&hooks())),
            replay: Script::new(&scripts::replay_with(&hooks())),
            purge: Script::new(&purge_script()),
        }
    }
}

/// `P:<name>`: a key of partition `P`'s key limits (the stream's name is `P:stream`).
fn partition_key(keys: &Keys, name: &str) -> String {
    let tag = keys.stream.strip_suffix(":stream").unwrap_or(&keys.stream);
    format!("{tag}:{name}")
}

/// `P:hold:`, followed by a key: the event ids holding the key's slots.
pub(crate) fn hold_prefix(keys: &Keys) -> String {
    partition_key(keys, "hold:")
}

/// `P:wait:`, followed by a key: the entries waiting for the key's slot.
fn wait_prefix(keys: &Keys) -> String {
    partition_key(keys, "wait:")
}

/// `P:waiting`: how many entries wait in the partition's wait lists.
pub(crate) fn waiting_key(keys: &Keys) -> String {
    partition_key(keys, "waiting")
}

/// The scripts for an entry with (or without) a key: the ordered ones whenever
/// the entry has a key or this process has a key limit (so a slot is always
/// released, whatever this process is configured with), else none (the plain ones).
pub(crate) fn ordered_scripts<'q>(
    queue: &'q Queue,
    key: Option<&str>,
) -> Option<&'q OrderedScripts> {
    match (queue.key_limit(), key) {
        (Some(limit), _) => Some(&*limit.scripts),
        (None, Some(_)) => Some(default_scripts()),
        (None, None) => None,
    }
}

/// The ordered scripts of a process without key limits (compiled once).
fn default_scripts() -> &'static OrderedScripts {
    static DEFAULT: OnceLock<OrderedScripts> = OnceLock::new();
    DEFAULT.get_or_init(OrderedScripts::new)
}

/// Appends the key-limit tail (hold, wait, waiting keys; cap, policy) to a script
/// call for an entry of `key` in the partition of `keys`. Without a key limit in
/// this process, a keyed entry is settled with a cap of 1 and released dead
/// letters.
pub(crate) fn tail(
    queue: &Queue,
    keys: &Keys,
    key: Option<&str>,
    invocation: &mut redis::ScriptInvocation<'_>,
) {
    let (cap, policy) = queue.key_limit().map_or((1, OnDeadLetter::Release), |l| {
        (l.max_running, l.on_dead_letter)
    });
    let key_name = key.unwrap_or("");
    invocation
        .key(format!("{}{key_name}", hold_prefix(keys)))
        .key(format!("{}{key_name}", wait_prefix(keys)))
        .key(waiting_key(keys))
        .arg(if key.is_some() { cap } else { 0 })
        .arg(policy.as_str());
}

/// Purges partition `p`'s dead letters older than `age_ms` (0: all), releasing the
/// slots they hold; returns how many.
pub(crate) async fn purge(
    queue: &Queue,
    connection: &mut crate::dedup::RedisConnection,
    p: u16,
    age_ms: u64,
) -> Result<u64, super::QueueError> {
    const PAGE: u64 = 500;
    let (script, cap) = match queue.key_limit() {
        Some(limit) => (&limit.scripts.purge, limit.max_running),
        None => (&default_scripts().purge, 1),
    };
    let keys = queue.keys(p);
    let mut purged = 0;
    loop {
        let purge = async {
            let n: u64 = script
                .key(&keys.dead)
                .key(&keys.stream)
                .key(waiting_key(&keys))
                .arg(age_ms)
                .arg(hold_prefix(&keys))
                .arg(wait_prefix(&keys))
                .arg(cap)
                .arg(PAGE)
                .invoke_async(connection)
                .await?;
            Ok(n)
        };
        let n = super::protocol::bounded(queue.timeout(), "a purge", purge).await?;
        purged += n;
        if n < PAGE {
            return Ok(purged);
        }
    }
}

/// The fragments the PostgreSQL statements take from the key limit (all empty
/// without one).
#[cfg(feature = "postgres")]
pub(crate) struct PgHooks {
    /// Appended to the take's `WHERE` for a candidate row `j`: a running entry (a
    /// reclaim) always qualifies; a waiting or retrying one only while fewer than
    /// the cap of its key's entries are ahead of it (earlier and not settled, dead
    /// letters included with [`OnDeadLetter::Hold`]) or running.
    pub(crate) take_filter: String,
    /// Appended to the done statement's second column (adds 0): wakes the workers
    /// for the key's next entry.
    pub(crate) wake_done: String,
    /// The same for the dead-letter statement, when a dead letter releases its slot.
    pub(crate) wake_dead: String,
}

#[cfg(feature = "postgres")]
impl PgHooks {
    /// Without a key limit in this process, an entry with a key (queued by an
    /// endpoint that has one) is taken as under the default limit (one at a time,
    /// dead letters releasing), as a Redis worker without one settles it: a
    /// worker configured apart from the endpoints does not run a key's events at
    /// once. Entries without a key pass the filter's first test.
    pub(crate) fn new(jobs: &str, channel: &str, limit: Option<&KeyLimit>) -> Self {
        let (cap, policy) = limit.map_or((1, OnDeadLetter::Release), |limit| {
            (limit.max_running, limit.on_dead_letter)
        });
        let dead = match policy {
            OnDeadLetter::Hold => "",
            OnDeadLetter::Release => " AND b.state <> 'dead'",
        };
        // The channel is made of checked identifiers and a dot (or a hex digest).
        let wake = |from: &str| {
            format!(
                " + 0 * (SELECT count(*) FROM (SELECT pg_notify('{channel}', '') FROM {from}
                   WHERE order_key IS NOT NULL LIMIT 1) AS woke)"
            )
        };
        Self {
            // The later running entries are counted only for an entry nothing is
            // ahead of (a replayed one): for the blocked rows a take passes over,
            // one probe of the (order_key, id) index each.
            take_filter: format!(
                " AND (j.state = 'running' OR j.order_key IS NULL OR CASE
                    WHEN (SELECT count(*) FROM (SELECT 1 FROM {jobs} AS b
                      WHERE b.order_key = j.order_key AND b.id < j.id{dead} LIMIT {cap}) AS ahead)
                      >= {cap} THEN false
                    ELSE (SELECT count(*) FROM (SELECT 1 FROM {jobs} AS b
                      WHERE b.order_key = j.order_key AND b.id < j.id{dead} LIMIT {cap}) AS ahead)
                    + (SELECT count(*) FROM (SELECT 1 FROM {jobs} AS b
                      WHERE b.order_key = j.order_key AND b.id > j.id AND b.state = 'running'
                      LIMIT {cap}) AS later) < {cap} END)"
            ),
            wake_done: wake("gone"),
            wake_dead: match policy {
                OnDeadLetter::Release => wake("dead"),
                OnDeadLetter::Hold => String::new(),
            },
        }
    }
}

/// Runs a take with key limits: in a transaction that first takes the queue's
/// advisory lock, so that takes run one after another and each one's snapshot
/// (taken after the lock) sees every entry the takes before it started. Without
/// it two workers could each count a key's running entries before the other's
/// take commits, and start more than the cap between them.
#[cfg(feature = "postgres")]
pub(crate) async fn pg_take_serialized<'q, T>(
    pool: &sqlx::PgPool,
    channel: &str,
    query: sqlx::query::QueryAs<'q, sqlx::Postgres, T, sqlx::postgres::PgArguments>,
) -> Result<Vec<T>, super::QueueError>
where
    T: Send + Unpin + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
{
    use super::postgres::failed;
    let mut tx = pool.begin().await.map_err(failed)?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('notmeta_webhooks.take'), hashtext($1))")
        .bind(channel)
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
    let rows = query.fetch_all(&mut *tx).await.map_err(failed)?;
    tx.commit().await.map_err(failed)?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(body: &str) -> Event<'static> {
        Event::parse_unverified(body.as_bytes())
            .unwrap()
            .into_owned()
    }

    #[test]
    fn the_default_key_follows_the_event_type() {
        let limit = KeyLimit::per_key();
        let cases = [
            (
                r#"{"id":"e1","type":"message.received","created_at":"2024-01-01T12:00:00Z","data":{"message":{"id":"m"},"conversation":{"id":"c1"}}}"#,
                "conversation:c1",
            ),
            (
                r#"{"id":"e2","type":"message.read","created_at":"2024-01-01T12:00:00Z","data":{"message":{"id":"m","conversation_id":"c2"}}}"#,
                "conversation:c2",
            ),
            (
                r#"{"id":"e3","type":"conversation.closed","created_at":"2024-01-01T12:00:00Z","data":{"conversation":{"id":"c3"}}}"#,
                "conversation:c3",
            ),
            (
                r#"{"id":"e4","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{"user":{"id":"u4"}}}"#,
                "user:u4",
            ),
            (
                r#"{"id":"e5","type":"webhook.verified","created_at":"2024-01-01T12:00:00Z","data":{"webhook_id":"wh_1","challenge":"c"}}"#,
                "event:e5",
            ),
            (
                r#"{"id":"e6","type":"brand.new","created_at":"2024-01-01T12:00:00Z","data":{"conversation":{"id":"c6"}}}"#,
                "event:e6",
            ),
            (
                r#"{"id":"e7","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#,
                "event:e7",
            ),
        ];
        for (body, key) in cases {
            assert_eq!(limit.key_of(&event(body)).as_deref(), Some(key), "{body}");
        }
    }

    #[test]
    fn long_or_odd_keys_are_hashed_and_none_is_unlimited() {
        let e = event(
            r#"{"id":"e1","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{}}"#,
        );
        let long = KeyLimit::per_key().with_key(|_: &Event<'_>| Some("x".repeat(300)));
        let key = long.key_of(&e).unwrap();
        assert!(key.starts_with("sha256:") && key.len() == 71, "{key}");
        let nul = KeyLimit::per_key().with_key(|_: &Event<'_>| Some("a\0b".to_owned()));
        assert!(nul.key_of(&e).unwrap().starts_with("sha256:"));
        let none = KeyLimit::per_key().with_key(|_: &Event<'_>| None);
        assert_eq!(none.key_of(&e), None);
        assert_eq!(KeyLimit::per_key().with_max_running(0).max_running(), 1);
    }

    #[test]
    fn the_key_names_share_the_partitions_hash_tag() {
        let tag = "{ns:stream:3}";
        let keys = Keys {
            stream: format!("{tag}:stream"),
            dead: format!("{tag}:dead"),
            retry: format!("{tag}:retry"),
            retry_prefix: format!("{tag}:retry:"),
            state_prefix: format!("{tag}:event:"),
        };
        assert_eq!(hold_prefix(&keys), "{ns:stream:3}:hold:");
        assert_eq!(wait_prefix(&keys), "{ns:stream:3}:wait:");
        assert_eq!(waiting_key(&keys), "{ns:stream:3}:waiting");
    }
}
