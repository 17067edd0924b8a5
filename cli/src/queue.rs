//! `notmeta-webhooks queue …`: operate a queue of the library (`notmeta_webhooks::queue`)
//! in Redis or PostgreSQL: its figures, its dead letters (list, replay, purge), and
//! pausing and resuming its workers.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Subcommand;
use notmeta_webhooks::event::Timestamp;
use notmeta_webhooks::queue::{Queue, QueueCounts, QueueError};

use crate::table::Table;
use crate::term::{note, out};

/// Where the queue is, and how it is laid out: the same settings as its endpoints
/// and workers.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The queue's store: `redis://[user:password@]host[:port][/db]` or
    /// `postgres://[user[:password]@]host[:port]/database` (or set
    /// NOTMETA_QUEUE_URL, which keeps a password out of the process list). A
    /// password is never printed. A Redis Cluster is not supported: name a single
    /// server.
    #[arg(
        long,
        env = "NOTMETA_QUEUE_URL",
        hide_env_values = true,
        global = true,
        value_name = "URL"
    )]
    queue_url: Option<String>,
    /// Redis: the namespace every key starts with (`Queue::with_namespace`).
    #[arg(
        long,
        env = "NOTMETA_QUEUE_NAMESPACE",
        default_value = "notmeta-webhooks",
        global = true
    )]
    namespace: String,
    /// Redis: the number of partitions (`Queue::with_partitions`); a count other
    /// than the one the queue was laid out with is refused.
    #[arg(
        long,
        env = "NOTMETA_QUEUE_PARTITIONS",
        default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..),
        global = true
    )]
    partitions: u16,
    /// Redis: the workers' consumer group (`Queue::with_group`).
    #[arg(
        long,
        env = "NOTMETA_QUEUE_GROUP",
        default_value = "workers",
        global = true
    )]
    group: String,
    /// PostgreSQL: the schema of the queue's tables (`Tables::with_schema`).
    #[arg(
        long,
        env = "NOTMETA_QUEUE_SCHEMA",
        default_value = "public",
        global = true
    )]
    schema: String,
    /// PostgreSQL: the prefix of the queue's table names (`Tables::with_prefix`).
    #[arg(
        long,
        env = "NOTMETA_QUEUE_PREFIX",
        default_value = "notmeta_webhooks_",
        global = true
    )]
    prefix: String,
    /// The most seconds a command may take, connecting included.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=86_400),
        global = true
    )]
    timeout: u64,
    #[command(subcommand)]
    command: QueueCommand,
}

// By hand, so that no `{:?}` of the arguments ever shows the URL's password.
impl std::fmt::Debug for Args {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Args")
            .field("queue_url", &self.queue_url.as_deref().map(redacted))
            .field("namespace", &self.namespace)
            .field("partitions", &self.partitions)
            .field("group", &self.group)
            .field("schema", &self.schema)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("command", &self.command)
            .finish()
    }
}

#[derive(Debug, Subcommand)]
enum QueueCommand {
    /// Print how many entries wait, run, wait for a retry and are dead letters, how
    /// long the oldest waiting entry has waited, and whether the queue is paused.
    Stats,
    /// List dead letters, oldest first: event id, type, why it was given up,
    /// attempts, when it was received.
    DeadLetters {
        /// The most dead letters to list (at most 10000).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        limit: u64,
    },
    /// Move dead letters back into the queue, oldest first, their attempts reset
    /// (one whose event was handled meanwhile is deleted instead). Without
    /// --limit, every dead letter.
    Replay {
        /// The most dead letters to move.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
    },
    /// Delete the dead letters given up on at least --older-than ago, for good.
    /// Refused without --yes.
    Purge {
        /// An age: a number and a unit, s, m, h, d or w, such as 7d, 12h or 1h30m
        /// (0s: every dead letter).
        #[arg(long, value_name = "AGE", value_parser = parse_age)]
        older_than: Duration,
        /// Delete: without it nothing is deleted and the command exits 2.
        #[arg(long)]
        yes: bool,
    },
    /// Pause the queue: every worker stops taking entries (what runs finishes; the
    /// endpoint still enqueues and answers 200). Prints the new state.
    Pause,
    /// Resume a paused queue: the workers take entries again. Prints the new state.
    Resume,
}

/// Exit 0 on success; 1 when the store cannot be reached in time, fails, or refuses
/// the settings (another number of partitions); a usage error (no URL, a URL of
/// another kind, a purge without --yes) is `Err` (exit 2).
pub(crate) async fn run(args: Args) -> Result<ExitCode, String> {
    let url = args
        .queue_url
        .clone()
        .filter(|u| !u.trim().is_empty())
        .ok_or("no queue URL: pass --queue-url or set NOTMETA_QUEUE_URL")?;
    let url = url.trim().to_owned();
    if let QueueCommand::Purge { yes: false, .. } = args.command {
        return Err(
            "purge deletes dead letters for good: pass --yes to do it (nothing was deleted)"
                .to_owned(),
        );
    }
    let scrub = Scrub::new(&url);
    let limit = Duration::from_secs(args.timeout);
    let work = async {
        let queue = open(&args, &url).await?;
        act(&args.command, &queue, &scrub).await
    };
    match tokio::time::timeout(limit, work).await {
        Ok(Ok(code)) => Ok(code),
        Ok(Err(Failure::Use(message))) => Err(scrub.text(&message)),
        Ok(Err(Failure::Store(message))) => {
            note(format_args!("error: {}", scrub.text(&message)));
            Ok(ExitCode::FAILURE)
        }
        Err(_) => {
            note(format_args!(
                "error: the queue's store at {} did not answer within {} s",
                redacted(&url),
                args.timeout
            ));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Why a command did not succeed: an error of use (exit 2), or the store (exit 1).
enum Failure {
    Use(String),
    Store(String),
}

impl From<QueueError> for Failure {
    fn from(error: QueueError) -> Self {
        Self::Store(chain(&error))
    }
}

/// The queue `url` names, with the settings of `args`.
async fn open(args: &Args, url: &str) -> Result<Queue, Failure> {
    let limit = Duration::from_secs(args.timeout);
    let queue = if url.starts_with("redis://")
        || url.starts_with("rediss://")
        || url.starts_with("redis+unix://")
        || url.starts_with("unix://")
    {
        let client = redis::Client::open(url).map_err(|e| {
            Failure::Use(format!(
                "{} is not a Redis URL this tool can use: {e}",
                redacted(url)
            ))
        })?;
        // One try, no reconnection loop: an unreachable server is said at once.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(limit));
        let connection = redis::aio::ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| {
                Failure::Store(format!(
                    "cannot connect to Redis at {}: {}",
                    redacted(url),
                    chain(&e)
                ))
            })?;
        let mut probe = connection.clone();
        let queue = Queue::new(connection)
            .with_namespace(args.namespace.clone())
            .with_partitions(args.partitions)
            .with_group(args.group.clone());
        // An operator's tool lays out nothing: a namespace no endpoint or worker
        // has used (a typo) is said as such, not paused or counted as empty.
        let layout = format!("{{{}}}:layout", args.namespace);
        let used: bool = redis::AsyncCommands::exists(&mut probe, &layout)
            .await
            .map_err(|e| Failure::Store(chain(&e)))?;
        if !used {
            return Err(Failure::Store(format!(
                "no queue in the namespace {:?} on this server (no {layout} key: no endpoint or worker has used it; check --namespace)",
                args.namespace
            )));
        }
        queue
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        postgres(args, url, limit).await?
    } else {
        return Err(Failure::Use(format!(
            "{} is not a queue URL: it starts with redis:// or postgres://",
            redacted(url)
        )));
    };
    Ok(queue.with_timeout(limit))
}

#[cfg(feature = "postgres")]
async fn postgres(args: &Args, url: &str, limit: Duration) -> Result<Queue, Failure> {
    use std::str::FromStr as _;

    use notmeta_webhooks::postgres::Tables;

    let options = sqlx::postgres::PgConnectOptions::from_str(url).map_err(|e| {
        Failure::Use(format!(
            "{} is not a PostgreSQL URL this tool can use: {e}",
            redacted(url)
        ))
    })?;
    let tables = Tables::default()
        .with_schema(args.schema.clone())
        .and_then(|t| t.with_prefix(args.prefix.clone()))
        .map_err(|e| Failure::Use(e.to_string()))?;
    let unreachable = |e: sqlx::Error| {
        Failure::Store(format!(
            "cannot connect to PostgreSQL at {}: {}",
            redacted(url),
            chain(&e)
        ))
    };
    // One connection first: the pool would try again until its time limit.
    let probe = sqlx::ConnectOptions::connect(&options)
        .await
        .map_err(unreachable)?;
    let _ = sqlx::Connection::close(probe).await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(limit)
        .connect_with(options)
        .await
        .map_err(unreachable)?;
    // An operator's tool creates no tables: a wrong database, schema or prefix is
    // said as such.
    let found: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(tables.jobs())
        .fetch_one(&pool)
        .await
        .map_err(|e| Failure::Store(chain(&e)))?;
    if !found {
        return Err(Failure::Store(format!(
            "no queue in this database: {} does not exist (check --schema and --prefix)",
            tables.jobs()
        )));
    }
    Queue::postgres(pool, &tables).await.map_err(Failure::from)
}

#[cfg(not(feature = "postgres"))]
async fn postgres(_: &Args, url: &str, _: Duration) -> Result<Queue, Failure> {
    Err(Failure::Use(format!(
        "{} is a PostgreSQL URL, and this build of the tool has no PostgreSQL support (its `postgres` feature)",
        redacted(url)
    )))
}

/// Runs `command` on `queue`.
async fn act(command: &QueueCommand, queue: &Queue, scrub: &Scrub) -> Result<ExitCode, Failure> {
    let printed = |r: Result<(), String>| r.map_err(Failure::Use);
    match command {
        QueueCommand::Stats => {
            let counts = queue.counts().await?;
            printed(out(stats(&counts)))?;
        }
        QueueCommand::DeadLetters { limit } => {
            let limit = usize::try_from(*limit).unwrap_or(usize::MAX);
            // One more than shown: says whether there are more.
            let mut letters = queue.dead_letters(limit.saturating_add(1)).await?;
            let more = letters.len() > limit;
            letters.truncate(limit);
            if letters.is_empty() {
                printed(out("no dead letters\n"))?;
            } else {
                let mut table = Table::new(["id", "type", "reason", "attempts", "received"]);
                for letter in &letters {
                    table.row(scrub.cells([
                        letter.event_id.clone(),
                        letter.event_type.clone(),
                        letter.error.clone(),
                        letter.attempts.to_string(),
                        when(letter.received_at),
                    ]));
                }
                printed(out(&table))?;
            }
            if more {
                note(format_args!(
                    "note: there are more dead letters than the {limit} shown (--limit)"
                ));
            }
        }
        QueueCommand::Replay { limit } => {
            let limit = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
            let moved = queue.replay_dead_letters(limit).await?;
            printed(out(format_args!(
                "replayed {moved} dead letter{}\n",
                plural(moved)
            )))?;
        }
        QueueCommand::Purge { older_than, .. } => {
            let purged = queue.purge_dead_letters(*older_than).await?;
            printed(out(format_args!(
                "purged {purged} dead letter{} given up on at least {} ago\n",
                plural(usize::try_from(purged).unwrap_or(usize::MAX)),
                age_text(*older_than)
            )))?;
        }
        QueueCommand::Pause => {
            queue.pause().await?;
            let paused = queue.is_paused().await?;
            printed(out(state(paused)))?;
        }
        QueueCommand::Resume => {
            queue.resume().await?;
            let paused = queue.is_paused().await?;
            printed(out(state(paused)))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `queue stats`: one figure a row.
fn stats(counts: &QueueCounts) -> Table<2> {
    let mut table = Table::new(["figure", "value"]);
    table.row(["state".into(), state_word(counts.paused).into()]);
    table.row(["pending".into(), counts.pending.to_string()]);
    table.row(["in progress".into(), counts.in_progress.to_string()]);
    table.row(["retrying".into(), counts.retrying.to_string()]);
    table.row(["dead letters".into(), counts.dead_letters.to_string()]);
    let oldest = counts.oldest_pending.map_or("-".to_owned(), age_text);
    table.row(["oldest pending".into(), oldest]);
    table
}

/// The state line `pause` and `resume` print.
fn state(paused: bool) -> String {
    let what = if paused {
        " (workers take nothing new; the endpoint still enqueues)"
    } else {
        ""
    };
    format!("state: {}{what}\n", state_word(paused))
}

fn state_word(paused: bool) -> &'static str {
    if paused { "paused" } else { "running" }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A time as RFC 3339, in whole seconds.
fn when(time: SystemTime) -> String {
    Timestamp::from(time).trunc_seconds().to_string()
}

/// The units of an age, largest first: (suffix, seconds).
const UNITS: [(&str, u64); 5] = [
    ("w", 7 * 86_400),
    ("d", 86_400),
    ("h", 3_600),
    ("m", 60),
    ("s", 1),
];

/// An age as the largest units that fit, such as `1d2h`, in whole seconds (under
/// a second: `0s`).
fn age_text(age: Duration) -> String {
    let mut left = age.as_secs();
    if left == 0 {
        return "0s".to_owned();
    }
    let mut text = String::new();
    for (suffix, seconds) in UNITS {
        if left >= seconds {
            text.push_str(&format!("{}{suffix}", left / seconds));
            left %= seconds;
        }
    }
    text
}

/// The clap value parser of `--older-than`: one or more numbers each followed by a
/// unit (`w`, `d`, `h`, `m`, `s`), such as `7d`, `12h`, `1h30m`, `0s`; at most
/// 100 years.
fn parse_age(text: &str) -> Result<Duration, String> {
    const MAX: u64 = 100 * 366 * 86_400;
    let bad = || {
        format!(
            "{text:?} is not an age: write a number and a unit (s, m, h, d or w), such as 7d, 12h or 1h30m"
        )
    };
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut any = false;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = UNITS
            .iter()
            .find(|(suffix, _)| suffix.starts_with(c))
            .map(|(_, seconds)| *seconds)
            .ok_or_else(bad)?;
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .filter(|s| *s <= MAX)
            .ok_or_else(|| format!("{text:?} is longer than 100 years"))?;
        any = true;
    }
    if !digits.is_empty() || !any {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// `url` with its password, if any, shown as `***`.
fn redacted(url: &str) -> String {
    match password_span(url) {
        Some((start, end)) => format!("{}***{}", &url[..start], &url[end..]),
        None => url.to_owned(),
    }
}

/// Where the password of `url` is: between the `:` after the user and the `@` that
/// ends the user information.
fn password_span(url: &str) -> Option<(usize, usize)> {
    let after_scheme = url.find("://")? + 3;
    let rest = &url[after_scheme..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@')?;
    let colon = rest[..at].find(':')?;
    (colon + 1 < at).then_some((after_scheme + colon + 1, after_scheme + at))
}

/// The URL's password, in every form an error may echo it: no line the tool prints
/// shows it.
struct Scrub(Vec<String>);

impl Scrub {
    fn new(url: &str) -> Self {
        let mut hidden = Vec::new();
        if let Some((start, end)) = password_span(url) {
            let raw = &url[start..end];
            hidden.push(raw.to_owned());
            let decoded = percent_decoded(raw);
            if decoded != raw {
                hidden.push(decoded);
            }
        }
        Self(hidden)
    }

    fn text(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.0 {
            text = text.replace(secret.as_str(), "***");
        }
        text
    }

    fn cells<const N: usize>(&self, cells: [String; N]) -> [String; N] {
        cells.map(|c| self.text(&c))
    }
}

/// `%XX` escapes decoded (lossily, as text).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An error with its sources, `: `-separated.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let more = s.to_string();
        // Some errors repeat their source's text in their own.
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse_in_every_unit_and_refuse_the_rest() {
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(parse_age("7d"), Ok(h(7 * 24)));
        assert_eq!(parse_age("12h"), Ok(h(12)));
        assert_eq!(parse_age("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_age("2w"), Ok(h(14 * 24)));
        assert_eq!(parse_age("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_age("90s"), Ok(Duration::from_secs(90)));
        for bad in ["", "7", "d", "7x", "-1d", "1.5h", "7 d", "1h30", "h1"] {
            assert!(parse_age(bad).is_err(), "{bad:?}");
        }
        assert!(parse_age("99999999999999999999d").is_err());
        assert!(parse_age("101y").is_err());
        assert!(parse_age("5300w").unwrap_err().contains("100 years"));
    }

    #[test]
    fn ages_print_in_the_largest_units() {
        assert_eq!(age_text(Duration::from_secs(93_784)), "1d2h3m4s");
        assert_eq!(age_text(Duration::from_millis(400)), "0s");
        assert_eq!(age_text(Duration::from_secs(7 * 86_400)), "1w");
        assert_eq!(
            parse_age(&age_text(Duration::from_secs(1_000_000))),
            Ok(Duration::from_secs(1_000_000))
        );
    }

    #[test]
    fn passwords_are_hidden_in_urls_and_in_text() {
        assert_eq!(
            redacted("redis://user:s3cret@host:6379/0"),
            "redis://user:***@host:6379/0"
        );
        assert_eq!(redacted("redis://:s3cret@host/"), "redis://:***@host/");
        assert_eq!(redacted("postgres://app@host/db"), "postgres://app@host/db");
        assert_eq!(redacted("redis://host/"), "redis://host/");
        assert_eq!(
            redacted("postgres://app:p%40ss@host/db?user=x@y"),
            "postgres://app:***@host/db?user=x@y"
        );
        let scrub = Scrub::new("postgres://app:p%40ss@host/db");
        assert_eq!(
            scrub.text("auth failed for p@ss and p%40ss"),
            "auth failed for *** and ***"
        );
    }
}
