//! PostgreSQL: an idempotency store shared by every replica, and handlers whose writes
//! commit in the same transaction as the event's done mark (feature `postgres`).
//!
//! Every other store leaves one window open: a process that dies after the handler's
//! side effects and before the done mark is recorded runs the event again. When the
//! handler's effects live in PostgreSQL, the window closes: a [`Transactional`]
//! handler does its writes in a transaction the receiver opens, the receiver records
//! the event as done in that same transaction and commits it, so after any crash
//! either both happened or neither did.
//!
//! - [`PostgresStore`] is an [`IdempotencyStore`](crate::dedup::IdempotencyStore)
//!   on a table: claims with a lease renewed while the handler runs, completion,
//!   release, expiry after the dedup window. Use it alone (the same guarantees as
//!   `RedisStore`, on the database you already run) or with a transactional handler.
//! - [`PostgresStore::transactional`] wraps a handler that takes the open transaction
//!   (`&mut PgConnection`, the connection type of sqlx 0.8, which is what most axum
//!   services use).
//! - [`Tables`] names where the crate's tables live (schema and prefix);
//!   [`migrate`] creates them, idempotently, and records the schema version.
//!
//! ```no_run
//! use notmeta_webhooks::postgres::{PostgresStore, Tables};
//! use notmeta_webhooks::receiver::{HandlerError, Receiver, ResultExt as _};
//! use notmeta_webhooks::{Event, EventKind, Verifier};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = sqlx::PgPool::connect("postgres://app@127.0.0.1/app").await?;
//! let store = PostgresStore::open(pool, &Tables::default()).await?;
//! let handler = store.transactional(|event: Event<'static>, tx| {
//!     Box::pin(async move {
//!         if let EventKind::MessageReceived(m) = &event.kind {
//!             sqlx::query("INSERT INTO messages (event_id, text) VALUES ($1, $2)")
//!                 .bind(event.id.as_str())
//!                 .bind(m.message.text.as_deref())
//!                 .execute(&mut *tx)
//!                 .await
//!                 .temporary()?;
//!         }
//!         Ok::<(), HandlerError>(())
//!     })
//! });
//! let receiver = Receiver::new(Verifier::new("whsec_abc123")?, handler).with_store(store);
//! # let _ = receiver;
//! # Ok(()) }
//! ```
//!
//! # Which guarantee holds
//!
//! | Handler | Its effects after a crash at any point |
//! |---|---|
//! | transactional, writes only through the given connection | exactly once |
//! | transactional, with effects outside the transaction (an e-mail, a call) | those may repeat, as with any store |
//! | plain handler with `PostgresStore` | may repeat if the process dies between the effect and the done mark |
//!
//! A duplicate that arrives while the first delivery is still being handled finds a
//! live claim (committed before the handler starts) and is answered 503 at once; it
//! never waits for the first delivery's transaction. See the guide's
//! [PostgreSQL chapter](crate::guide::postgres) for when to pick it, the table
//! layout, what an operator may do with the tables, the pool, and durability.

use std::borrow::Cow;

mod schema;
mod store;
mod transactional;

pub use schema::{SCHEMA_VERSION, Tables, migrate};
pub use store::PostgresStore;
pub use transactional::{ClaimLost, DEFAULT_IDLE_TIMEOUT, TransactionEnded, Transactional};

/// What went wrong setting up the crate's tables.
///
/// ```
/// use notmeta_webhooks::postgres::{PostgresError, Tables};
/// let error = Tables::default().with_prefix("bad-prefix").unwrap_err();
/// assert!(matches!(error, PostgresError::InvalidName { .. }));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    /// PostgreSQL could not be reached, or refused a statement.
    #[error("PostgreSQL failed")]
    Database(#[from] sqlx::Error),
    /// A schema or prefix that is not a plain lower-case SQL identifier.
    #[error(
        "{what} {name:?} is not a plain identifier (lower-case ASCII letters, digits and `_`, not starting with a digit, at most {max} bytes)"
    )]
    InvalidName {
        /// `schema` or `prefix`.
        what: &'static str,
        /// The name given.
        name: String,
        /// The longest name accepted.
        max: usize,
    },
    /// The database does not store text as UTF-8 (every event id is UTF-8).
    #[error("the database's encoding is {encoding}, not UTF8")]
    Encoding {
        /// The database's `server_encoding`.
        encoding: String,
    },
    /// The tables were created by a newer version of this crate.
    #[error(
        "the tables are at schema version {stored}, newer than this version of the crate knows ({supported}); upgrade the crate"
    )]
    SchemaTooNew {
        /// The version recorded in the database.
        stored: i32,
        /// The newest version this crate applies.
        supported: i32,
    },
}

/// Event ids longer than this, holding a NUL (which PostgreSQL's `text` cannot
/// store), or starting with `sha256:`, are kept as `sha256:<hex>` of the id.
pub(crate) const MAX_PLAIN_ID: usize = 256;

/// The prefix of a stored hash.
const HASHED: &str = "sha256:";

/// The key an event id is stored under: the id itself, or its SHA-256 for ids that
/// are too long for an index entry or hold a NUL.
pub(crate) fn key(event_id: &str) -> Cow<'_, str> {
    // An id that looks like a stored hash is hashed too, so it cannot meet the
    // hash of another id.
    if event_id.len() <= MAX_PLAIN_ID && !event_id.contains('\0') && !event_id.starts_with(HASHED) {
        Cow::Borrowed(event_id)
    } else {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(event_id.as_bytes());
        Cow::Owned(format!("{HASHED}{}", hex::encode(digest)))
    }
}

/// Milliseconds, as PostgreSQL's `bigint`, of a clamped duration.
pub(crate) fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(crate::clock::clamp(duration).as_millis()).unwrap_or(i64::MAX)
}

/// The store's error from a database error.
pub(crate) fn store_error(error: sqlx::Error) -> crate::dedup::StoreError {
    crate::dedup::StoreError::new(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ids_are_kept_and_others_hashed() {
        assert_eq!(key("evt_1"), "evt_1");
        let long = "x".repeat(MAX_PLAIN_ID + 1);
        let hashed = key(&long);
        assert!(hashed.starts_with("sha256:") && hashed.len() == 7 + 64);
        assert_ne!(key("a\0b"), "a\0b");
        assert_ne!(key("a\0b"), key("a\0c"));
        assert_eq!(key(&"y".repeat(MAX_PLAIN_ID)).len(), MAX_PLAIN_ID);
        // An id spelling another's stored hash is hashed in turn.
        let spelled = key(&long).into_owned();
        assert_ne!(key(&spelled), spelled);
    }

    #[test]
    fn durations_become_milliseconds_without_overflow() {
        assert_eq!(millis(std::time::Duration::from_secs(2)), 2000);
        assert!(millis(std::time::Duration::MAX) > 0);
    }
}
