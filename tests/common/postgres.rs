//! The PostgreSQL tests' pool and their child processes (this test binary run
//! again, one ignored test of it, so that a crash test can kill a real process).

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// A pool of up to 24 connections on `url`, waiting at most 5 s for one.
pub async fn pool(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(24)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .unwrap()
}

/// Runs the ignored test `test` of this binary in a child process, with `setting`
/// in its environment variable `env`, until it prints a line holding `until`; then
/// kills it (SIGKILL) and reaps it. Panics if the child exits first, or prints a
/// line holding `never` (if given) before.
pub fn kill_child_at(test: &str, env: &str, setting: &str, until: &str, never: Option<&str>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            test,
            "--nocapture",
            "--test-threads=1",
        ])
        .env(env, setting)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("the child process exited").unwrap();
        if let Some(never) = never {
            assert!(!line.contains(never), "{never} before {until}: {line}");
        }
        if line.contains(until) {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
