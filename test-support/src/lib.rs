//! Fixtures and helpers shared by the tests, benches, examples and tools of
//! `notmeta-webhooks`.
//!
//! The wire-contract fixtures live in the repository's `data/` directory
//! (`data/vectors/signatures.json` and `data/events/*.json`); [`fixtures`] reads them.
//! This crate does not depend on `notmeta-webhooks`: it holds data and generic
//! helpers only, so the crate under test is built once, with the features the test
//! run asked for. Helpers that need the library's own types (the adapters' shared
//! checks, the queue tests' endpoint) are in the repository's `tests/common/`.
//!
//! Always built: [`fixtures`], [`bodies`], [`rng`], [`redis_server`] (a
//! `redis-server` or a Redis Cluster started for a test) and [`postgres_server`] (a
//! PostgreSQL server started for a test, with its faults). Each feature adds one
//! module:
//!
//! | feature       | module        | what                                               |
//! |---------------|---------------|----------------------------------------------------|
//! | `client`      | `client`      | a hyper HTTP/1.1 client for talking to a receiver  |
//! | `http-server` | `http_server` | an app served on loopback (axum, actix-web, hyper) |
//! | `proxy`       | `proxy`       | a TCP proxy that injects network faults            |
//! | `metrics`     | `recorder`    | a `metrics` recorder that counts                   |
//! | `bench`       | `cpu_time`    | criterion's measurement of the thread's CPU time   |

pub mod bodies;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "bench")]
pub mod cpu_time;
pub mod fixtures;
#[cfg(feature = "http-server")]
pub mod http_server;
pub mod postgres_server;
#[cfg(feature = "proxy")]
pub mod proxy;
#[cfg(feature = "metrics")]
pub mod recorder;
pub mod redis_server;
pub mod rng;

pub use fixtures::{Vector, data_dir, example_events, signature_vectors};
pub use postgres_server::PostgresServer;
pub use redis_server::{RedisCluster, RedisServer, Shard, TempDir};
pub use rng::Rng;
