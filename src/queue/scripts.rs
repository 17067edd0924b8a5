//! The queue's Lua scripts. Each runs atomically and touches the keys of one
//! partition only (they share a hash tag, so on a cluster they share a slot).
//!
//! Keys of partition `p` in namespace `ns` (`P` = `{ns:p}`):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:stream` | stream | entries waiting or being handled; acknowledged entries are deleted |
//! | `P:dead` | stream | dead letters, with the error text |
//! | `P:retry` | sorted set | event ids waiting for a retry, scored by when it is due (ms) |
//! | `P:retry:<id>` | hash | the entry of an event waiting for a retry |
//! | `P:event:<id>` | string | the event's state: `queued`, `retrying`, `done` or `dead`, kept for the dedup window |

/// Enqueues at most once per event id: the state key and the entry are written
/// together, or neither is.
///
/// KEYS: state, stream. ARGV: window ms, maximum length (0: none), then the entry's
/// field/value pairs.
pub(super) const ENQUEUE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 'duplicate'
end
local max = tonumber(ARGV[2])
if max > 0 and redis.call('XLEN', KEYS[2]) >= max then
  return 'full'
end
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
redis.call('SET', KEYS[1], 'queued', 'PX', ARGV[1])
return 'queued'
";

/// Settles an entry this consumer group holds: acknowledges and deletes it, and in
/// the same step records what happened. Does nothing (returns 0) if the entry is no
/// longer pending (another worker settled it).
///
/// KEYS: stream, state, dead, retry set, retry hash. ARGV: group, entry id, mode
/// (`done`, `dead`, `retry`, `ack`), window ms, retry delay ms, event id, then the
/// field/value pairs of the dead letter or of the retried entry.
///
/// The state key keeps the longer of its remaining time and the window.
pub(super) const SETTLE: &str = r"
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('XDEL', KEYS[1], ARGV[2])
local mode = ARGV[3]
if mode == 'ack' then
  return 1
end
local window = tonumber(ARGV[4])
local left = redis.call('PTTL', KEYS[2])
if left > window then
  window = left
end
if mode == 'done' then
  redis.call('SET', KEYS[2], 'done', 'PX', window)
elseif mode == 'dead' then
  redis.call('SET', KEYS[2], 'dead', 'PX', window)
  redis.call('XADD', KEYS[3], '*', unpack(ARGV, 7))
elseif mode == 'retry' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('SET', KEYS[2], 'retrying', 'PX', window)
  redis.call('DEL', KEYS[5])
  redis.call('HSET', KEYS[5], unpack(ARGV, 7))
  redis.call('ZADD', KEYS[4], now + tonumber(ARGV[5]), ARGV[6])
end
return 1
";

/// Before a reclaimed entry runs: its event's state and how often the entry has
/// been delivered.
///
/// KEYS: state, stream. ARGV: group, entry id.
pub(super) const INSPECT: &str = r"
local state = redis.call('GET', KEYS[1])
local p = redis.call('XPENDING', KEYS[2], ARGV[1], ARGV[2], ARGV[2], 1)
local deliveries = 0
if p[1] then
  deliveries = p[1][4]
end
return {state or '', deliveries}
";

/// Moves retries that are due (by the Redis server's clock) back into the stream.
///
/// KEYS: retry set, stream. ARGV: at most this many, the retry hash prefix.
pub(super) const PROMOTE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(due) do
  local key = ARGV[2] .. id
  local fields = redis.call('HGETALL', key)
  if #fields > 0 then
    redis.call('XADD', KEYS[2], '*', unpack(fields))
  end
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[1], id)
end
return #due
";

/// Moves dead letters back into the stream, attempts reset, error dropped.
///
/// KEYS: dead, stream. ARGV: at most this many, the state key prefix, window ms.
pub(super) const REPLAY: &str = r"
local entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', tonumber(ARGV[1]))
for _, entry in ipairs(entries) do
  local f = entry[2]
  local out = {}
  local id = nil
  for i = 1, #f, 2 do
    local k = f[i]
    if k == 'id' then
      id = f[i + 1]
    end
    if k == 'attempt' then
      out[#out + 1] = k
      out[#out + 1] = '0'
    elseif k ~= 'error' and k ~= 'failed' then
      out[#out + 1] = k
      out[#out + 1] = f[i + 1]
    end
  end
  redis.call('XADD', KEYS[2], '*', unpack(out))
  if id then
    redis.call('SET', ARGV[2] .. id, 'queued', 'PX', ARGV[3])
  end
  redis.call('XDEL', KEYS[1], entry[1])
end
return #entries
";

/// Deletes the dead letters given up on at least ARGV[1] ms ago, by the server's
/// clock (a dead letter's entry id is the time it was added); returns how many.
/// An age of 0 deletes them all, even entries whose ids run ahead of the clock (a
/// clock stepped back, or a failover to a primary whose clock is behind).
///
/// KEYS: dead. ARGV: age ms.
pub(super) const PURGE: &str = r"
if tonumber(ARGV[1]) == 0 then
  return redis.call('XTRIM', KEYS[1], 'MAXLEN', 0)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local before = now - tonumber(ARGV[1]) + 1
if before <= 0 then
  return 0
end
return redis.call('XTRIM', KEYS[1], 'MINID', before)
";
