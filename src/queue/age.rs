//! How long the oldest waiting entry has waited: the figure an operator alerts on
//! ([`QueueCounts::oldest_pending`](super::QueueCounts::oldest_pending)).
//!
//! - **Redis**: per partition, the first entry of the stream after the consumer
//!   group's last delivered id (an entry id is the server's time it was appended:
//!   by the endpoint, or by the promotion of a due retry), against the server's
//!   clock; one read-only script per partition.
//! - **PostgreSQL**: the earliest `due_at` of the entries in state `queued`,
//!   against the database's clock.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::{Queue, QueueError, protocol};

/// The age in ms of the first entry of the stream not yet delivered to the group,
/// by the server's clock; -1 when there is none.
///
/// KEYS: stream. ARGV: group.
const OLDEST: &str = r"
local last = '0-0'
local groups = redis.pcall('XINFO', 'GROUPS', KEYS[1])
if type(groups) == 'table' and not groups.err then
  for _, g in ipairs(groups) do
    local name, delivered
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1] end
      if g[i] == 'last-delivered-id' then delivered = g[i + 1] end
    end
    if name == ARGV[1] then last = delivered end
  end
elseif redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
local first = redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', 1)
if #first == 0 then
  return -1
end
local ms = tonumber(string.match(first[1][1], '^(%d+)'))
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return math.max(now - ms, 0)
";

impl Queue {
    /// How long the oldest entry waiting for a worker has waited (in every
    /// partition); `None` when nothing waits.
    pub(crate) async fn oldest_pending(&self) -> Result<Option<Duration>, QueueError> {
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.pg() {
            let read = async {
                let ms: Option<i64> = sqlx::query_scalar(&format!(
                    "SELECT (extract(epoch FROM clock_timestamp() - min(due_at)) * 1000)::bigint
                     FROM {} WHERE state = 'queued'",
                    pg.tables.jobs()
                ))
                .fetch_one(&pg.pool)
                .await
                .map_err(|e| QueueError::Postgres(Box::new(e)))?;
                Ok(ms.map(|ms| Duration::from_millis(ms.max(0).unsigned_abs())))
            };
            return protocol::bounded(self.timeout, "the oldest entry", read).await;
        }
        static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(OLDEST));
        let script = &*SCRIPT;
        let mut connection = self.connection().clone();
        let mut oldest: Option<Duration> = None;
        for p in 0..self.partitions {
            let read = async {
                let ms: i64 = script
                    .key(self.keys(p).stream)
                    .arg(&*self.group)
                    .invoke_async(&mut connection)
                    .await?;
                Ok(ms)
            };
            let ms = protocol::bounded(self.timeout, "the oldest entry", read).await?;
            if let Ok(ms) = u64::try_from(ms) {
                let age = Duration::from_millis(ms);
                oldest = Some(oldest.map_or(age, |o| o.max(age)));
            }
        }
        Ok(oldest)
    }
}
