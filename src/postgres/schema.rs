//! The crate's tables: where they live, their layout, and applying it.

use sqlx::PgPool;

use super::PostgresError;

/// The newest schema version this crate applies (recorded in
/// `<prefix>schema_version`).
pub const SCHEMA_VERSION: i32 = 5;

/// Each version's statements, in order; `{s}` is the quoted schema and `{p}` the
/// prefix. Every statement is idempotent, so a half-applied version (impossible in
/// one transaction, but harmless) applies again.
const VERSIONS: &[&[&str]] = &[
    // 1: the idempotency table.
    &[
        r#"CREATE TABLE IF NOT EXISTS {s}."{p}events" (
    event_id   text        PRIMARY KEY,
    token      text        NOT NULL,
    done       boolean     NOT NULL,
    expires_at timestamptz NOT NULL
)"#,
        r#"CREATE INDEX IF NOT EXISTS "{p}events_expires_at" ON {s}."{p}events" (expires_at)"#,
    ],
    // 2: the queue's entries (feature `queue`); unused otherwise.
    &[
        r#"CREATE TABLE IF NOT EXISTS {s}."{p}jobs" (
    id          bigserial   PRIMARY KEY,
    event_key   text        NOT NULL UNIQUE,
    event_id    text        NOT NULL,
    event_type  text        NOT NULL,
    body        bytea       NOT NULL,
    received_ms bigint      NOT NULL,
    secret      bigint      NOT NULL,
    state       text        NOT NULL CHECK (state IN ('queued', 'running', 'retrying', 'dead')),
    runs        integer     NOT NULL DEFAULT 0,
    due_at      timestamptz NOT NULL,
    token       text,
    locked_by   text,
    last_error  text,
    dead_at     timestamptz
)"#,
        r#"CREATE INDEX IF NOT EXISTS "{p}jobs_due" ON {s}."{p}jobs" (due_at) WHERE state <> 'dead'"#,
        r#"CREATE INDEX IF NOT EXISTS "{p}jobs_dead" ON {s}."{p}jobs" (id) WHERE state = 'dead'"#,
    ],
    // 3: the trace context of the request that enqueued an entry (nullable: the
    // entries of version 2 have none, and endpoints of version 2 write none).
    &[
        r#"ALTER TABLE {s}."{p}jobs" ADD COLUMN IF NOT EXISTS traceparent text"#,
        r#"ALTER TABLE {s}."{p}jobs" ADD COLUMN IF NOT EXISTS tracestate text"#,
    ],
    // 4: the queue's pause flag (feature `queue`); unused otherwise.
    &[r#"CREATE TABLE IF NOT EXISTS {s}."{p}queue_state" (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    paused     boolean     NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
)"#],
    // 5: the queue's key limits (`queue::KeyLimit`): each entry's order key.
    &[
        r#"ALTER TABLE {s}."{p}jobs" ADD COLUMN IF NOT EXISTS order_key text"#,
        r#"CREATE INDEX IF NOT EXISTS "{p}jobs_order" ON {s}."{p}jobs" (order_key, id) WHERE order_key IS NOT NULL"#,
    ],
];

/// The version table, created before any version is applied.
const VERSION_TABLE: &str = r#"CREATE TABLE IF NOT EXISTS {s}."{p}schema_version" (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    version    integer     NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
)"#;

/// The longest schema name (PostgreSQL's identifier limit).
const MAX_SCHEMA: usize = 63;
/// The longest prefix: the longest name built from it (`<prefix>events_expires_at`)
/// stays within PostgreSQL's 63 bytes.
const MAX_PREFIX: usize = 40;

/// Where the crate's tables live: a schema (default `public`) and a prefix for
/// every table and index name (default `notmeta_webhooks_`).
///
/// Version 5 has four tables (version 1 had the first and the last; version 2
/// added the jobs table, version 3 its `traceparent` and `tracestate`, version 4
/// the queue's state table, version 5 the jobs table's `order_key`):
///
/// | Table | Columns | What a row is |
/// |---|---|---|
/// | `<prefix>events` | `event_id text PRIMARY KEY`, `token text`, `done boolean`, `expires_at timestamptz` (indexed) | one event id: claimed (`done = false`, until `expires_at`, the lease) or done (until `expires_at`, the end of the dedup window) |
/// | `<prefix>jobs` | `id bigserial PRIMARY KEY`, `event_key text UNIQUE` (the `event_id` of `<prefix>events`), `event_id text`, `event_type text`, `body bytea`, `received_ms bigint`, `secret bigint`, `state text` (`queued`, `running`, `retrying`, `dead`), `runs integer`, `due_at timestamptz`, `token text`, `locked_by text`, `last_error text`, `dead_at timestamptz`, `traceparent text`, `tracestate text` (the W3C trace context of the request that enqueued it, or NULL; validated when read), `order_key text` (the key of `queue::KeyLimit`, or NULL); indexed on `due_at` where not `dead`, on `id` where `dead`, and on `(order_key, id)` where it has one | one entry of the queue (`queue::Queue::postgres`, features `postgres` and `queue`): waiting or retrying until `due_at`, running under `token` with a lease until `due_at`, or a dead letter since `dead_at`. Done entries are deleted; the done mark is the event's row in `<prefix>events` |
/// | `<prefix>queue_state` | `singleton boolean PRIMARY KEY`, `paused boolean`, `updated_at timestamptz` (at most one row) | the queue's pause flag (`queue::Queue::pause`); no row: running |
/// | `<prefix>schema_version` | `version integer`, `updated_at timestamptz` (one row) | the version applied |
///
/// An event id of more than 256 bytes, one holding a NUL, or one starting with
/// `sha256:` is stored as `sha256:<hex of its SHA-256>`.
///
/// ```
/// use notmeta_webhooks::postgres::Tables;
/// let tables = Tables::default().with_schema("webhooks")?.with_prefix("nm_")?;
/// assert_eq!(tables.events(), r#""webhooks"."nm_events""#);
/// assert!(tables.sql().contains(r#"CREATE TABLE IF NOT EXISTS "webhooks"."nm_events""#));
/// assert!(Tables::default().with_schema("Robert'); DROP TABLE students;--").is_err());
/// # Ok::<(), notmeta_webhooks::postgres::PostgresError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    schema: String,
    prefix: String,
}

impl Default for Tables {
    fn default() -> Self {
        Self {
            schema: "public".to_owned(),
            prefix: "notmeta_webhooks_".to_owned(),
        }
    }
}

impl Tables {
    /// The schema the tables live in (created if missing). Lower-case ASCII letters,
    /// digits and `_`, not starting with a digit, at most 63 bytes; not one of
    /// PostgreSQL's own (`pg_…`, `information_schema`).
    pub fn with_schema(mut self, schema: impl Into<String>) -> Result<Self, PostgresError> {
        self.schema = checked("schema", schema.into(), MAX_SCHEMA, false)?;
        Ok(self)
    }

    /// The prefix of every table and index name. Lower-case ASCII letters, digits and
    /// `_`, not starting with a digit, at most 40 bytes; may be empty.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Result<Self, PostgresError> {
        self.prefix = checked("prefix", prefix.into(), MAX_PREFIX, true)?;
        Ok(self)
    }

    /// The schema.
    #[must_use]
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The idempotency table's quoted, schema-qualified name.
    #[must_use]
    pub fn events(&self) -> String {
        self.qualified("events")
    }

    /// The queue's entry table's quoted, schema-qualified name (see
    /// `queue::Queue::postgres`, with the `queue` feature).
    #[must_use]
    pub fn jobs(&self) -> String {
        self.qualified("jobs")
    }

    /// The queue's state table's quoted, schema-qualified name: one row, the pause
    /// flag (see `queue::Queue::pause`, with the `queue` feature).
    #[must_use]
    pub fn queue_state(&self) -> String {
        self.qualified("queue_state")
    }

    /// The version table's quoted, schema-qualified name.
    #[must_use]
    pub fn schema_version(&self) -> String {
        self.qualified("schema_version")
    }

    /// The statements [`migrate`] applies on an empty database, as one script, for
    /// an operator who reviews or applies them by hand (`psql -f`). Applying them by
    /// hand, the version row must be written too, as the script's last statement
    /// does.
    #[must_use]
    pub fn sql(&self) -> String {
        let mut script = format!("CREATE SCHEMA IF NOT EXISTS \"{}\";\n", self.schema);
        script.push_str(&self.fill(VERSION_TABLE));
        script.push_str(";\n");
        for statement in VERSIONS.iter().flat_map(|v| v.iter()) {
            script.push_str(&self.fill(statement));
            script.push_str(";\n");
        }
        script.push_str(&format!(
            "INSERT INTO {} (version) VALUES ({SCHEMA_VERSION}) ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version, updated_at = now();\n",
            self.schema_version()
        ));
        script
    }

    fn qualified(&self, table: &str) -> String {
        format!("\"{}\".\"{}{table}\"", self.schema, self.prefix)
    }

    /// A statement with the schema and prefix filled in.
    pub(crate) fn fill(&self, statement: &str) -> String {
        statement
            .replace("{s}", &format!("\"{}\"", self.schema))
            .replace("{p}", &self.prefix)
    }
}

fn checked(
    what: &'static str,
    name: String,
    max: usize,
    may_be_empty: bool,
) -> Result<String, PostgresError> {
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    let starts_well = name.bytes().next().is_none_or(|b| !b.is_ascii_digit());
    // PostgreSQL's own schemas (`pg_catalog`, `pg_toast`, `pg_temp…`, and any
    // `pg_` name, which it reserves) and `information_schema` (which pg_dump
    // skips) are refused as schemas.
    let reserved = what == "schema" && (name.starts_with("pg_") || name == "information_schema");
    if plain && starts_well && !reserved && name.len() <= max && (may_be_empty || !name.is_empty())
    {
        Ok(name)
    } else {
        Err(PostgresError::InvalidName { what, name, max })
    }
}

/// Creates or upgrades the crate's tables in `tables`' schema, idempotently, and
/// records the schema version. Refuses a database whose encoding is not UTF-8
/// ([`PostgresError::Encoding`]). Safe to run from every replica at once: the work is
/// one transaction under an advisory lock. Tables already at this version are left
/// untouched; tables at a newer version are refused
/// ([`PostgresError::SchemaTooNew`]), so an older replica never writes to a layout
/// it does not know.
///
/// [`PostgresStore::open`](super::PostgresStore::open) runs it. The database role
/// needs `CREATE` on the schema (and on the database if the schema does not exist
/// yet); a role without it can use tables an operator created with
/// [`Tables::sql`].
pub async fn migrate(pool: &PgPool, tables: &Tables) -> Result<(), PostgresError> {
    let mut tx = pool.begin().await?;
    // One lock per schema: migrations of other prefixes into one new schema would
    // otherwise race to create it.
    let lock = format!("notmeta_webhooks:{}", tables.schema);
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(&lock)
        .execute(&mut *tx)
        .await?;
    let encoding: String = sqlx::query_scalar("SELECT current_setting('server_encoding')")
        .fetch_one(&mut *tx)
        .await?;
    if encoding != "UTF8" {
        return Err(PostgresError::Encoding { encoding });
    }
    let stored: Option<i32> = if exists(&mut tx, &tables.schema_version()).await? {
        sqlx::query_scalar(&format!(
            "SELECT version FROM {} WHERE singleton",
            tables.schema_version()
        ))
        .persistent(false)
        .fetch_optional(&mut *tx)
        .await?
    } else {
        None
    };
    let stored = stored.unwrap_or(0);
    if stored > SCHEMA_VERSION {
        return Err(PostgresError::SchemaTooNew {
            stored,
            supported: SCHEMA_VERSION,
        });
    }
    if stored == SCHEMA_VERSION {
        tx.commit().await?;
        return Ok(());
    }
    let schema_exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(&tables.schema)
            .fetch_one(&mut *tx)
            .await?;
    if !schema_exists {
        run(
            &mut tx,
            &format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", tables.schema),
        )
        .await?;
    }
    run(&mut tx, &tables.fill(VERSION_TABLE)).await?;
    let from = usize::try_from(stored).unwrap_or(0);
    for statement in VERSIONS.iter().skip(from).flat_map(|v| v.iter()) {
        run(&mut tx, &tables.fill(statement)).await?;
    }
    sqlx::query(&format!(
        "INSERT INTO {} (version) VALUES ($1) ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version, updated_at = now()",
        tables.schema_version()
    ))
    .bind(SCHEMA_VERSION)
    .persistent(false)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn exists(tx: &mut sqlx::PgConnection, table: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(tx)
        .await
}

async fn run(tx: &mut sqlx::PgConnection, statement: &str) -> Result<(), sqlx::Error> {
    sqlx::query(statement).persistent(false).execute(tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        let ok = Tables::default()
            .with_schema("a_1")
            .and_then(|t| t.with_prefix(""));
        assert_eq!(ok.unwrap().events(), r#""a_1"."events""#);
        for bad in [
            "",
            "1a",
            "A",
            "a-b",
            "a\"b",
            "é",
            &"a".repeat(64),
            "pg_catalog",
            "pg_temp",
            "information_schema",
        ] {
            assert!(Tables::default().with_schema(bad).is_err(), "{bad:?}");
        }
        assert!(Tables::default().with_prefix("x".repeat(41)).is_err());
        assert!(Tables::default().with_prefix("x".repeat(40)).is_ok());
        assert!(Tables::default().with_prefix("9_").is_err());
    }

    #[test]
    fn the_longest_names_fit_postgres_identifiers() {
        let tables = Tables::default()
            .with_prefix("x".repeat(MAX_PREFIX))
            .unwrap();
        let script = tables.sql();
        // Every quoted identifier in the script is at most 63 bytes.
        for identifier in script.split('"').skip(1).step_by(2) {
            assert!(identifier.len() <= 63, "{identifier}");
        }
    }
}
