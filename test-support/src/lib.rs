//! Fixtures and helpers shared by the tests, benches, examples and tools of
//! `notmeta-webhooks`.
//!
//! The wire-contract fixtures live in the repository's `data/` directory
//! (`data/vectors/signatures.json` and `data/events/*.json`); [`fixtures`] reads them.
//! This crate does not depend on `notmeta-webhooks`: it holds data and generic
//! helpers only, so the crate under test is built once.
//!
//! Features: `client` (a hyper HTTP/1.1 client, [`client`]), `bench` (a criterion
//! clock of the thread's CPU time, `cpu_time`) `metrics` (a recorder that
//! counts, `recorder`) and `proxy` (a fault-injecting TCP proxy, `proxy`).

pub mod bodies;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "bench")]
pub mod cpu_time;
pub mod fixtures;
#[cfg(feature = "proxy")]
pub mod proxy;
#[cfg(feature = "metrics")]
pub mod recorder;
pub mod redis_server;
pub mod rng;

pub use fixtures::{Vector, data_dir, example_events, signature_vectors};
pub use redis_server::{RedisCluster, RedisServer, Shard, TempDir};
pub use rng::Rng;
