//! The queue's Lua scripts. Each runs atomically, declares every key it touches, and
//! touches the keys of one partition only (they share a hash tag, so on a cluster
//! they share a slot). Each checks before it writes, so a script refused part-way
//! (a slot migrating) has changed nothing.
//!
//! Keys of partition `p` in namespace `ns` (`P` = `{ns:p}`):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:stream` | stream | entries waiting or being handled; settled entries are deleted |
//! | `P:dead` | stream | dead letters, with the error text |
//! | `P:retry` | sorted set | event ids waiting for a retry, scored by when it is due (ms) |
//! | `P:retry:<id>` | hash | the entry of an event waiting for a retry |
//! | `P:event:<id>` | hash | the event's state, kept for the dedup window (below) |
//!
//! The state hash: `s`, one of the [`State`](super::protocol::State) names (`queued`,
//! `retrying`, `done`, `dead`, and `moving`/`moved` for an id taken by a newer
//! layout); `runs`, how many runs have started; `run`, the run token and entry of
//! the run started last (so a start sent again is not counted twice, while a
//! process restarted under the same consumer name counts anew: the token is drawn
//! per `Worker::run`); `settled:<entry>`, the run token that settled that entry (so
//! a settle sent again is recognised); `dead`, the id of its dead letter.
//!
//! The state hash lives for the dedup window from each write, and longer while the
//! event is being handled (renewals extend it) or waits for a retry (until the
//! retry is due, plus the window).
//!
//! With key limits on (`Queue::with_key_limit`), the enqueue, settle and replay
//! scripts also take and release a key's slots, through the steps `super::ordering`
//! defines (its module docs list the keys); without, [`PLAIN_HOOKS`] make those
//! steps a plain append.
//!
//! The queue's layout (its number of partitions) is kept at `{ns}:layout`, outside
//! the partitions; it is read and written by single commands, not by these scripts.
//!
//! An entry's owner is the consumer that holds it in the group's pending list
//! (`XPENDING`); ownership passes to another worker when that one reclaims it
//! (`XAUTOCLAIM`). Renewals and settles act only for the owner; a success is the one
//! exception: it is recorded whoever ran it ("done" always wins).

/// Owner of an entry in the group's pending list, or `false` (also when the group
/// is missing).
const OWNER: &str = r"
local function owner(stream, group, id)
  local p = redis.pcall('XPENDING', stream, group, id, id, 1)
  if type(p) ~= 'table' or p.err or not p[1] then
    return false
  end
  return p[1][2]
end
";

/// Keeps the state hash for at least `ms` milliseconds more.
const KEEP: &str = r"
local function keep(key, ms)
  local left = redis.call('PTTL', key)
  if left < tonumber(ms) then
    redis.call('PEXPIRE', key, ms)
  end
end
";

/// Creates the consumer group with its stream when the stream is missing (Redis
/// restarted empty, or was flushed), so that what is appended next is read.
const GROUP: &str = r"
local function group(stream, name)
  if redis.call('EXISTS', stream) == 0 then
    redis.call('XGROUP', 'CREATE', stream, name, '0', 'MKSTREAM')
  end
end
";

/// The steps key limits change, without key limits: `waiting()` (entries waiting
/// for a key's slot, none), `append(stream, fields, front)` (into the stream; with
/// key limits it may answer `duplicate` instead) and `settled(stream, mode, id)`
/// (after a settle: nothing to release).
pub(super) const PLAIN_HOOKS: &str = r"
local function waiting()
  return 0
end
local function append(stream, fields, front)
  redis.call('XADD', stream, '*', unpack(fields))
end
local function settled(stream, mode, id)
end
";

/// Enqueues at most once per event id: the state and the entry are written
/// together, or neither is.
///
/// KEYS: state, stream. ARGV: window ms, maximum length (0: none), group, then the
/// entry's field/value pairs. Returns `queued`, `duplicate`, `full`, or `moving`
/// (a newer layout is queueing it right now: answer 503, so it is retried).
pub(super) fn enqueue() -> String {
    enqueue_with(PLAIN_HOOKS)
}

/// [`enqueue`] with the given steps (see [`PLAIN_HOOKS`]).
pub(super) fn enqueue_with(hooks: &str) -> String {
    format!(
        "{hooks}{GROUP}{}",
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HGET', KEYS[1], 's') == 'moving' then
    return 'moving'
  end
  -- Its expiry written again, unchanged: a write, so that a WAIT after this script
  -- covers the state this answer rests on (written by another call).
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then
    redis.call('PEXPIRE', KEYS[1], ttl)
  end
  return 'duplicate'
end
local max = tonumber(ARGV[2])
if max > 0 and redis.call('XLEN', KEYS[2]) + waiting() >= max then
  return 'full'
end
group(KEYS[2], ARGV[3])
if append(KEYS[2], {unpack(ARGV, 4)}, false) == 'duplicate' then
  return 'duplicate'
end
redis.call('HSET', KEYS[1], 's', 'queued')
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 'queued'
"
    )
}

/// Marks an event id as being taken by a newer layout, in the previous layout's
/// partition (see `Enqueuer::with_previous_queue`), before the newer one queues it.
///
/// KEYS: state. ARGV: window ms. Returns `moving` when the id was free or is being
/// moved or was moved already (the newer layout owns the event: queue it there), or
/// the state found (the previous layout has it: a duplicate).
pub(super) const MARK_MOVING: &str = r"
local s = redis.call('HGET', KEYS[1], 's')
if s == 'moving' or s == 'moved' then
  return 'moving'
end
if s then
  return s
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 'queued'
end
redis.call('HSET', KEYS[1], 's', 'moving')
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 'moving'
";

/// Once the newer layout has the event: `moving` becomes `moved`, which the
/// previous layout's endpoints answer as a duplicate. A failed append leaves
/// `moving`, which they answer 503, so the event is never lost between the two.
///
/// KEYS: state. ARGV: `moved` and the window ms, or `free` to take the mark back
/// (the newer layout refused the event for sure: it is full). `moved` is written
/// even where another endpoint's `free` took the mark back meanwhile.
pub(super) const MARK_MOVED: &str = r"
local s = redis.call('HGET', KEYS[1], 's')
if ARGV[1] == 'free' then
  if s == 'moving' then
    redis.call('DEL', KEYS[1])
  end
  return 1
end
if (not s) or s == 'moving' then
  redis.call('HSET', KEYS[1], 's', 'moved')
  if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
end
return 1
";

/// Hands entries to a consumer and names each one's event, without their bodies (so
/// a reply is small whatever the entries hold).
///
/// KEYS: stream. ARGV: how (`new`: never delivered; `stale`: idle for the
/// visibility timeout, taken over from their owner; `mine`: this consumer's own,
/// idle long enough that nothing here renews them), group, consumer, count,
/// minimum idle ms, cursor. Returns the next cursor, then
/// pairs of entry id and event id (empty for an entry that no longer exists).
pub(super) const TAKE: &str = r"
local how, g, c, n = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local out = {'0-0'}
local function add(id, f)
  local event = ''
  if f then
    for i = 1, #f, 2 do
      if f[i] == 'id' then
        event = f[i + 1]
      end
    end
  end
  out[#out + 1] = id
  out[#out + 1] = event
end
local ids = {}
if how == 'new' then
  local r = redis.call('XREADGROUP', 'GROUP', g, c, 'COUNT', n, 'STREAMS', KEYS[1], '>')
  if r then
    for _, e in ipairs(r[1][2]) do
      add(e[1], e[2])
    end
  end
  return out
elseif how == 'stale' then
  local r = redis.call('XAUTOCLAIM', KEYS[1], g, c, ARGV[5], ARGV[6], 'COUNT', n, 'JUSTID')
  out[1] = r[1]
  ids = r[2]
else
  for _, p in ipairs(redis.call('XPENDING', KEYS[1], g, 'IDLE', ARGV[5], '-', '+', n, c)) do
    ids[#ids + 1] = p[1]
  end
end
for _, id in ipairs(ids) do
  local e = redis.call('XRANGE', KEYS[1], id, id)
  if e[1] then
    add(id, e[1][2])
  else
    add(id, nil)
  end
end
return out
";

/// `start(stream, state, group, consumer, id, keep, token)` starts a run: checks
/// that this consumer owns the entry and that its event is not settled for good
/// (done, dead, or queued by a newer layout), counts the run (once, however often
/// this is sent), and returns the entry.
///
/// Arguments: the stream and the event's state key, the group, the consumer, the
/// entry id, how long to keep the state at least (the window plus the visibility
/// timeout, so it outlives every renewal interval), the run token.
/// Returns `{'run', runs, fields}`, `{'settled', state}` (acknowledged, not to run),
/// `{'gone'}` (the entry no longer exists; acknowledged) or `{'not_owner'}`.
///
/// The runs counted survive a lost state hash: an entry written for a retry says how
/// many runs came before it (`attempt`).
const START: &str = r"
local function start(stream, state, g, c, id, ms, token)
  if owner(stream, g, id) ~= c then
    return {'not_owner'}
  end
  local e = redis.call('XRANGE', stream, id, id)
  if not e[1] then
    redis.call('XACK', stream, g, id)
    return {'gone'}
  end
  local s = redis.call('HGET', state, 's')
  if s == 'done' or s == 'dead' or s == 'moved' then
    redis.call('XACK', stream, g, id)
    redis.call('XDEL', stream, id)
    return {'settled', s}
  end
  -- The run starts now: its entry is idle from now, not from when it was handed out.
  redis.call('XCLAIM', stream, g, c, 0, id, 'JUSTID')
  local run = token .. '/' .. id
  local runs = tonumber(redis.call('HGET', state, 'runs') or '0')
  if redis.call('HGET', state, 'run') ~= run then
    local before = 0
    local f = e[1][2]
    for i = 1, #f, 2 do
      if f[i] == 'attempt' then
        before = tonumber(f[i + 1]) or 0
      end
    end
    if runs < before then
      runs = before
    end
    runs = runs + 1
    redis.call('HSET', state, 'runs', runs, 'run', run)
  end
  if not s then
    redis.call('HSET', state, 's', 'queued')
  end
  keep(state, ms)
  return {'run', runs, e[1][2]}
end
";

/// Starts a run (see [`START`]).
///
/// KEYS: stream, state. ARGV: group, consumer, entry id, how long to keep the state
/// at least, run token. Returns what [`START`] returns.
pub(super) fn begin() -> String {
    format!(
        "{OWNER}{KEEP}{START}{}",
        r"
return start(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
"
    )
}

/// Starts the runs of several entries of one partition at once, each as [`begin`]
/// would, one after the other.
///
/// KEYS: stream, then the state of each entry's event. ARGV: group, consumer, how
/// long to keep each state at least, run token, then the entry ids (in the order of
/// their states). Returns one [`START`] answer per entry, in their order.
pub(super) fn begin_many() -> String {
    format!(
        "{OWNER}{KEEP}{START}{}",
        r"
local out = {}
for i = 5, #ARGV do
  out[#out + 1] = start(KEYS[1], KEYS[i - 3], ARGV[1], ARGV[2], ARGV[i], ARGV[3], ARGV[4])
end
return out
"
    )
}

/// Resets the idle time of the entries this consumer still owns, and keeps their
/// events' state for the window; returns the entries it no longer owns.
///
/// KEYS: stream, then the state of each entry's event. ARGV: group, consumer, how
/// long to keep each state at least (as for a start), then the entry ids (in the
/// order of their states).
pub(super) fn renew() -> String {
    format!(
        "{OWNER}{KEEP}{}",
        r"
local lost = {}
for i = 4, #ARGV do
  if owner(KEYS[1], ARGV[1], ARGV[i]) == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    keep(KEYS[i - 2], ARGV[3])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"
    )
}

/// Settles an entry after its run: acknowledges and deletes it, and records what
/// happened, in one step.
///
/// - Only the owner settles, except that success (`done`) is recorded whoever ran
///   it: the event is marked done, the entry deleted (so it cannot outlive the done
///   mark and run again), and any retry scheduled or dead letter written for it
///   removed.
/// - Once an event is done (or its entry was deleted by a success recorded
///   elsewhere), a later `retry` or `dead` only acknowledges.
/// - Sent again by the same run after it was applied (a reply lost), it answers
///   `repeated:<what the first answered>` and changes nothing.
///
/// KEYS: stream, state, dead, retry set, retry hash. ARGV: group, consumer, entry
/// id, mode (a [`Settle`](super::protocol::Settle) name), window ms, retry delay ms,
/// event id, run token, then the field/value pairs of the dead letter or the
/// retried entry. Returns `applied`, `repeated`, `done` (done already: acknowledged
/// only), `done_not_owner` (success recorded for an entry another worker owns) or
/// `not_owner` (nothing changed).
pub(super) fn settle() -> String {
    settle_with(PLAIN_HOOKS)
}

/// `done(stream, state, dead, retry, retry_hash, group, consumer, id, window,
/// event_id, token)` records a success (see [`settle`]): the event marked done, the
/// entry deleted, and any retry scheduled or dead letter written for it removed,
/// whoever owns the entry. Answers as [`settle`] does.
const DONE: &str = r"
local function done(stream, state, dead, retry, retry_hash, g, c, id, window, event_id, token)
  local mark = 'settled:' .. id
  local before = redis.call('HGET', state, mark)
  if before and string.sub(before, 1, #token + 1) == token .. '/' then
    return 'repeated:' .. string.sub(before, #token + 2)
  end
  local mine = owner(stream, g, id) == c
  if mine then
    redis.call('XACK', stream, g, id)
  end
  redis.call('XDEL', stream, id)
  local d = redis.call('HGET', state, 'dead')
  if d then
    redis.call('XDEL', dead, d)
    redis.call('HDEL', state, 'dead')
  end
  redis.call('ZREM', retry, event_id)
  redis.call('DEL', retry_hash)
  local result = 'done_not_owner'
  if mine then
    result = 'applied'
  end
  redis.call('HSET', state, 's', 'done', mark, token .. '/' .. result)
  keep(state, window)
  settled(stream, 'done', event_id)
  return result
end
";

/// Records the successes of several entries of one partition at once, each as
/// [`settle`] with mode `done` would, one after the other; without key limits.
///
/// KEYS: stream, dead, retry set, then the state and the retry hash of each entry's
/// event. ARGV: group, consumer, window ms, run token, then each entry's id and its
/// event's id (in the order of their keys). Returns one [`settle`] answer per
/// entry, in their order.
pub(super) fn settle_done_many() -> String {
    format!(
        "{PLAIN_HOOKS}{OWNER}{KEEP}{DONE}{}",
        r"
local out = {}
local n = (#ARGV - 4) / 2
for i = 1, n do
  local k, a = 2 + 2 * i, 3 + 2 * i
  out[i] = done(KEYS[1], KEYS[k], KEYS[2], KEYS[3], KEYS[k + 1], ARGV[1], ARGV[2], ARGV[a], ARGV[3], ARGV[a + 1], ARGV[4])
end
return out
"
    )
}

/// [`settle`] with the given steps (see [`PLAIN_HOOKS`]).
pub(super) fn settle_with(hooks: &str) -> String {
    format!(
        "{hooks}{OWNER}{KEEP}{DONE}{}",
        r"
local g, c, id, mode = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if mode == 'done' then
  return done(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], g, c, id, ARGV[5], ARGV[7], ARGV[8])
end
local mark = 'settled:' .. id
local before = redis.call('HGET', KEYS[2], mark)
if before and string.sub(before, 1, #ARGV[8] + 1) == ARGV[8] .. '/' then
  return 'repeated:' .. string.sub(before, #ARGV[8] + 2)
end
local mine = owner(KEYS[1], g, id) == c
local s = redis.call('HGET', KEYS[2], 's')
if not mine then
  return 'not_owner'
end
local exists = redis.call('XRANGE', KEYS[1], id, id)[1]
redis.call('XACK', KEYS[1], g, id)
redis.call('XDEL', KEYS[1], id)
if s == 'done' or not exists then
  redis.call('HSET', KEYS[2], mark, ARGV[8] .. '/done')
  return 'done'
end
if mode == 'dead' then
  local d = redis.call('XADD', KEYS[3], '*', unpack(ARGV, 9))
  redis.call('HSET', KEYS[2], 's', 'dead', 'dead', d)
  keep(KEYS[2], ARGV[5])
  settled(KEYS[1], 'dead', ARGV[7])
elseif mode == 'retry' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('DEL', KEYS[5])
  redis.call('HSET', KEYS[5], unpack(ARGV, 9))
  redis.call('ZADD', KEYS[4], now + tonumber(ARGV[6]), ARGV[7])
  redis.call('HSET', KEYS[2], 's', 'retrying')
  keep(KEYS[2], tonumber(ARGV[5]) + tonumber(ARGV[6]))
end
redis.call('HSET', KEYS[2], mark, ARGV[8] .. '/applied')
return 'applied'
"
    )
}

/// The event ids whose retry is due (by the Redis server's clock), at most ARGV[1].
///
/// KEYS: retry set.
pub(super) const DUE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
";

/// Moves one due retry back into the stream, unless its event is settled for good
/// (then it is dropped).
///
/// KEYS: retry set, retry hash, stream, state. ARGV: event id, group, window ms.
/// Returns 1 if queued again, 0 otherwise.
pub(super) fn promote() -> String {
    format!(
        "{GROUP}{KEEP}{}",
        r"
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
local s = redis.call('HGET', KEYS[4], 's')
local fields = redis.call('HGETALL', KEYS[2])
if s == 'done' or s == 'dead' or #fields == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('DEL', KEYS[2])
  return 0
end
group(KEYS[3], ARGV[2])
redis.call('XADD', KEYS[3], '*', unpack(fields))
redis.call('HSET', KEYS[4], 's', 'queued')
keep(KEYS[4], ARGV[3])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
"
    )
}

/// Moves one dead letter back into the stream, attempts reset, error dropped. A
/// dead letter whose event is done, or queued again already, is deleted instead.
///
/// KEYS: dead, stream, state. ARGV: dead letter id, group, window ms. Returns
/// `replayed`, `skipped` (deleted, not queued) or `gone`.
pub(super) fn replay() -> String {
    replay_with(PLAIN_HOOKS)
}

/// [`replay`] with the given steps (see [`PLAIN_HOOKS`]): a replayed entry goes
/// ahead of its key's waiting entries.
pub(super) fn replay_with(hooks: &str) -> String {
    format!(
        "{hooks}{GROUP}{KEEP}{}",
        r"
local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if not e[1] then
  return 'gone'
end
local s = redis.call('HGET', KEYS[3], 's')
if s and s ~= 'dead' then
  redis.call('XDEL', KEYS[1], ARGV[1])
  return 'skipped'
end
local f = e[1][2]
local out = {}
for i = 1, #f, 2 do
  local k = f[i]
  if k == 'attempt' then
    out[#out + 1] = k
    out[#out + 1] = '0'
  elseif k ~= 'error' and k ~= 'failed' then
    out[#out + 1] = k
    out[#out + 1] = f[i + 1]
  end
end
redis.call('HSET', KEYS[3], 's', 'queued', 'runs', 0)
redis.call('HDEL', KEYS[3], 'dead', 'run')
keep(KEYS[3], ARGV[3])
-- After the state says queued: a key's steps drop an entry whose event is dead.
group(KEYS[2], ARGV[2])
append(KEYS[2], out, true)
redis.call('XDEL', KEYS[1], ARGV[1])
return 'replayed'
"
    )
}

/// The partition's figures, whether or not its stream and group exist.
///
/// KEYS: stream, retry set, dead, and the count of entries waiting for a key's
/// slot (key limits; counted in the length). ARGV: group. Returns length, pending,
/// retrying, dead.
pub(super) const COUNTS: &str = r"
local len = redis.call('XLEN', KEYS[1])
len = len + tonumber(redis.call('GET', KEYS[4]) or '0')
local running = 0
local p = redis.pcall('XPENDING', KEYS[1], ARGV[1])
if type(p) == 'table' and not p.err then
  running = p[1]
end
return {len, running, redis.call('ZCARD', KEYS[2]), redis.call('XLEN', KEYS[3])}
";
