//! What the test files share that needs `notmeta-webhooks` itself; a test file
//! takes it with `mod common;`. Each module is compiled when the features it needs
//! are on.
//!
//! Helpers that do not need the library (the fixtures of `data/`, sample bodies, a
//! seeded generator, redis-server and Redis Cluster starters, HTTP servers on
//! loopback, an HTTP client, a fault-injecting proxy, a counting metrics recorder)
//! are in the workspace's `notmeta-test-support` crate.

// Each test file uses a part of it.
#![allow(dead_code, unreachable_pub)]

/// The behaviour every adapter must show over real HTTP, written once and run
/// against each adapter's server.
#[cfg(feature = "receiver")]
pub mod harness;

/// The lease keeper tests' secret, bodies, delivery, threads and runtimes.
#[cfg(feature = "redis")]
pub mod keeper;

/// The PostgreSQL tests' pool and the child processes their crash tests kill.
#[cfg(feature = "postgres")]
pub mod postgres;

/// The queue tests' secret, event bodies, endpoint, and sending to it.
#[cfg(feature = "queue")]
pub mod queue;

/// A worker whose handlers block every thread of its runtime, against another
/// that would take over its entries: both backends run it.
#[cfg(feature = "queue")]
pub mod blocked;

/// A downstream down for a while, played against a worker with a circuit breaker.
#[cfg(feature = "queue")]
pub mod outage;

/// The key-limit tests' bodies, ledger, handler and many-keys run.
#[cfg(feature = "queue")]
pub mod ordering;

/// Attacks on key limits both backends run: hostile keys, a panicking key function.
#[cfg(feature = "queue")]
pub mod ordering_attacks;

/// The helpers of the tests of the queue in PostgreSQL.
#[cfg(all(feature = "queue", feature = "postgres"))]
pub mod pg_queue;

/// The queue's end-to-end run (endpoints, worker processes, kills, shutdown),
/// shared by the single-server and the cluster tests.
#[cfg(all(feature = "queue", feature = "axum", feature = "actix"))]
pub mod queue_end_to_end;

/// The trace continuity tests' recording subscriber, propagation and runner.
#[cfg(all(feature = "queue", feature = "tracing"))]
pub mod trace;
