//! The crate's front page (the README) shows the set-up and one snippet per
//! framework; these chapters hold the rest. Their examples are compiled and run as
//! doctests, so they are built with every feature on: read them on docs.rs, or
//! build them with `cargo doc --all-features --open`.
//!
//! | chapter | what it covers |
//! |---|---|
//! | [`delivery`](crate::guide::delivery) | what the endpoints answer and why, retries, duplicates and replays, writing a handler, storing events |
//! | [`verification`](crate::guide::verification) | the signature rules, rotating secrets, the challenge, errors and their statuses |
//! | [`stores`](crate::guide::stores) | the idempotency stores: in memory and in Redis, sizing, and sharing one Redis with the queue |
//! | [`queue`](crate::guide::queue) | acknowledge fast, process later: the queue on Redis Streams or PostgreSQL, its faults, durability and partitions; testing an app that uses it (the queue in memory, `run_until_idle`) |
//! | [`postgres`](crate::guide::postgres) | PostgreSQL: exactly-once effects with transactional handlers, the tables, the pool, durability |
//! | [`failover`](crate::guide::failover) | Redis replicas: closing the failover window with `WAIT`, its cost and Redis settings |
//! | [`limits`](crate::guide::limits) | every size and time limit, and what the crate decided where NotMeta's contract is silent |
//! | [`operations`](crate::guide::operations) | tracing, metrics, the outcome hook, the queue's counts and dead letters, shutting down |
//! | [`testing`](crate::guide::testing) | the test kit: sample events, signed requests, a NotMeta simulator, and a queue in memory for queued apps |
//! | [`cli`](crate::guide::cli) | the `notmeta-webhooks` command-line tool and the management API client |
//!
//! Measured figures (benchmarks, load, the cost of Redis) and the evidence behind
//! the claims (fuzzing, interop, timing, hostile input) are in the repository's
//! `docs/PERFORMANCE.md` and `docs/EVIDENCE.md`.

/// Declares the chapters: each one's markdown file when the features its examples
/// need are on (as on docs.rs), otherwise one line saying how to read it.
macro_rules! chapters {
    ($($name:ident: $file:literal, $title:literal;)+) => {$(
        #[cfg_attr(
            all(
                feature = "axum",
                feature = "actix",
                feature = "queue",
                feature = "postgres",
                feature = "testing"
            ),
            doc = include_str!($file)
        )]
        #[cfg_attr(
            not(all(
                feature = "axum",
                feature = "actix",
                feature = "queue",
                feature = "postgres",
                feature = "testing"
            )),
            doc = concat!(
                $title,
                ": this chapter is built with every feature on (docs.rs, or `cargo doc --all-features`)."
            )
        )]
        pub mod $name {}
    )+};
}

chapters! {
    delivery: "guide/delivery.md", "Delivery and statuses";
    verification: "guide/verification.md", "Verification and secret rotation";
    stores: "guide/stores.md", "Idempotency stores";
    queue: "guide/queue.md", "The queue";
    postgres: "guide/postgres.md", "PostgreSQL: exactly-once effects";
    failover: "guide/failover.md", "Failover (Redis replicas)";
    limits: "guide/limits.md", "Limits";
    operations: "guide/operations.md", "Operations and observability";
    testing: "guide/testing.md", "The test kit";
    cli: "guide/cli.md", "The command-line tool and the management API";
}
