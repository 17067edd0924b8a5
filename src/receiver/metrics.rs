//! The names of the metrics the crate records with the `metrics` feature, for
//! dashboards and alerts.
//!
//! Every counter and histogram goes through the [`metrics`](https://docs.rs/metrics)
//! facade; install any recorder (Prometheus, StatsD, ...) to collect them. Without the
//! `metrics` feature nothing is recorded, and these names are only constants.
//!
//! | name | kind | labels | recorded |
//! |---|---|---|---|
//! | [`DELIVERIES_TOTAL`] | counter | `outcome` ([`Outcome::as_str`](super::Outcome::as_str)) | once per delivery answered by a [`Receiver`](super::Receiver) |
//! | [`HANDLER_SECONDS`] | histogram | | a handler's run time, for deliveries that ran it |
//! | [`LEASE_RENEWALS_TOTAL`] | counter | | each renewal of a claim's lease (by the lease keeper's thread, so a thread-local recorder does not see it) |
//! | [`LEASES_LOST_TOTAL`] | counter | | each lease lost while its handler ran |
//! | [`STORE_ERRORS_TOTAL`] | counter | `operation` | each idempotency store call that failed |
//! | [`SETTLE_FAILURES_TOTAL`] | counter | `operation` | each outcome that could not be recorded in the store |
//! | [`ENQUEUED_TOTAL`] | counter | `outcome` | once per delivery answered by the queue's endpoint (feature `queue`) |
//! | [`QUEUE_HANDLER_SECONDS`] | histogram | | a queue worker's handler run time |
//! | [`QUEUE_RUNS_TOTAL`] | counter | `outcome` | each handler run by a queue worker |
//! | [`QUEUE_RENEWALS_TOTAL`] | counter | | each renewal of a worker's entries, counted when the entry's run ends, in the worker's own context |
//! | [`QUEUE_GROUPS_RECREATED_TOTAL`] | counter | | each consumer group a worker created again |
//! | [`QUEUE_REDIS_ERRORS_TOTAL`] | counter | `operation` | each failed Redis call of a worker (PostgreSQL statement, on a queue in PostgreSQL) |
//! | [`QUEUE_PENDING`], [`QUEUE_IN_PROGRESS`], [`QUEUE_RETRYING`], [`QUEUE_DEAD_LETTERS`], [`QUEUE_PAUSED`], [`QUEUE_OLDEST_PENDING_SECONDS`] | gauge | | set by each `Queue::counts` |
//! | [`CIRCUIT_BREAKER_STATE`] | gauge | `breaker` | set at each change of a [circuit breaker](crate::breaker)'s state: 0 closed, 1 open, 2 half-open |
//! | [`CIRCUIT_BREAKER_TRANSITIONS_TOTAL`] | counter | `breaker`, `to` (`open`, `half_open`, `closed`) | each change of a circuit breaker's state |
//!
//! ```
//! use notmeta_webhooks::receiver::metrics;
//!
//! assert_eq!(metrics::DELIVERIES_TOTAL, "notmeta_webhooks_deliveries_total");
//! ```

/// Deliveries answered by a receiver, labelled with their `outcome`.
pub const DELIVERIES_TOTAL: &str = "notmeta_webhooks_deliveries_total";
/// Deliveries answered by the queue's endpoint, labelled with their `outcome`.
pub const ENQUEUED_TOTAL: &str = "notmeta_webhooks_enqueued_total";
/// The handler's run time in seconds (a receiver's deliveries).
pub const HANDLER_SECONDS: &str = "notmeta_webhooks_handler_seconds";
/// Renewals of a claim's lease.
pub const LEASE_RENEWALS_TOTAL: &str = "notmeta_webhooks_lease_renewals_total";
/// Leases lost while their handler ran.
pub const LEASES_LOST_TOTAL: &str = "notmeta_webhooks_leases_lost_total";
/// Idempotency store calls that failed, labelled with the `operation`.
pub const STORE_ERRORS_TOTAL: &str = "notmeta_webhooks_store_errors_total";
/// Outcomes that could not be recorded in the store, labelled with the `operation`.
pub const SETTLE_FAILURES_TOTAL: &str = "notmeta_webhooks_settle_failures_total";
/// A queue worker's handler run time in seconds.
pub const QUEUE_HANDLER_SECONDS: &str = "notmeta_webhooks_queue_handler_seconds";
/// Handler runs by queue workers, labelled with their `outcome`.
pub const QUEUE_RUNS_TOTAL: &str = "notmeta_webhooks_queue_runs_total";
/// Renewals of the entries a queue worker holds.
pub const QUEUE_RENEWALS_TOTAL: &str = "notmeta_webhooks_queue_renewals_total";
/// Consumer groups a queue worker created again.
pub const QUEUE_GROUPS_RECREATED_TOTAL: &str = "notmeta_webhooks_queue_groups_recreated_total";
/// Failed Redis calls of a queue worker, labelled with the `operation`.
pub const QUEUE_REDIS_ERRORS_TOTAL: &str = "notmeta_webhooks_queue_redis_errors_total";
/// Queued entries waiting for a worker (gauge).
pub const QUEUE_PENDING: &str = "notmeta_webhooks_queue_pending";
/// Queued entries a worker is running (gauge).
pub const QUEUE_IN_PROGRESS: &str = "notmeta_webhooks_queue_in_progress";
/// Queued entries waiting for a retry (gauge).
pub const QUEUE_RETRYING: &str = "notmeta_webhooks_queue_retrying";
/// Dead letters (gauge).
pub const QUEUE_DEAD_LETTERS: &str = "notmeta_webhooks_queue_dead_letters";
/// Whether the queue is paused (gauge: 1 paused, 0 running).
pub const QUEUE_PAUSED: &str = "notmeta_webhooks_queue_paused";
/// How long the oldest entry waiting for a worker has waited, in seconds (gauge; 0
/// when nothing waits): the figure to alert on.
pub const QUEUE_OLDEST_PENDING_SECONDS: &str = "notmeta_webhooks_queue_oldest_pending_seconds";
/// A circuit breaker's state (gauge: 0 closed, 1 open, 2 half-open), labelled with
/// its `breaker` name.
pub const CIRCUIT_BREAKER_STATE: &str = "notmeta_webhooks_circuit_breaker_state";
/// Changes of a circuit breaker's state, labelled with its `breaker` name and the
/// state it went `to`.
pub const CIRCUIT_BREAKER_TRANSITIONS_TOTAL: &str =
    "notmeta_webhooks_circuit_breaker_transitions_total";
