//! What the tests of `notmeta-webhooks queue …` share: running the tool with the
//! queue URL in its environment, sending events to the queue's endpoint, and a
//! worker run in the test.

#![allow(dead_code)]

use std::collections::HashMap;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notmeta_webhooks::queue::{Enqueuer, Queue, QueueError, Worker, WorkerStats};
use notmeta_webhooks::receiver::HandlerError;
use notmeta_webhooks::{Event, Verifier, sign};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_notmeta-webhooks");
const SECRET: &str = "whsec_cli_queue";

/// Runs `notmeta-webhooks queue <args>` with `url` in `NOTMETA_QUEUE_URL` (if any),
/// off the runtime's threads: the exit code, standard output and standard error.
pub(crate) async fn tool(url: Option<&str>, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["queue".to_owned()];
    all.extend(args.iter().map(|&a| a.to_owned()));
    let url = url.map(str::to_owned);
    let output: Output = tokio::task::spawn_blocking(move || {
        let mut command = Command::new(BIN);
        command.args(&all).stdin(Stdio::null());
        for name in [
            "NOTMETA_QUEUE_URL",
            "NOTMETA_QUEUE_NAMESPACE",
            "NOTMETA_QUEUE_PARTITIONS",
            "NOTMETA_QUEUE_GROUP",
            "NOTMETA_QUEUE_SCHEMA",
            "NOTMETA_QUEUE_PREFIX",
        ] {
            command.env_remove(name);
        }
        if let Some(url) = url {
            command.env("NOTMETA_QUEUE_URL", url);
        }
        command.output().unwrap()
    })
    .await
    .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The value of the row `figure` of `queue stats`' table.
pub(crate) fn figure(stats: &str, figure: &str) -> String {
    stats
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(figure)?;
            rest.starts_with("  ").then(|| rest.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no row {figure:?} in {stats}"))
}

/// Sends `user.online` events with these ids to the queue's endpoint; each must be
/// answered 200 and queued.
pub(crate) async fn enqueue(queue: &Queue, ids: &[&str]) {
    let endpoint = Enqueuer::new(Verifier::new(SECRET).unwrap(), queue.clone());
    for id in ids {
        let body = format!(
            r#"{{"id":"{id}","type":"user.online","created_at":"2024-01-01T12:00:00Z","data":{{}}}}"#
        );
        let answer = endpoint
            .receive(body.as_bytes(), [sign(body.as_bytes(), SECRET).as_bytes()])
            .await;
        assert_eq!(answer.status().as_u16(), 200, "{id}");
        assert_eq!(answer.body(), "OK", "{id}");
    }
}

/// Runs of each event id, as a worker's handler saw them.
pub(crate) type Runs = Arc<Mutex<HashMap<String, usize>>>;

pub(crate) fn total(runs: &Runs) -> usize {
    runs.lock().unwrap().values().sum()
}

/// A worker whose handler counts its runs and gives each event up for good
/// (`refused: <id>`) when `refuse` is true.
pub(crate) fn worker(
    queue: &Queue,
    runs: &Runs,
    refuse: bool,
) -> Worker<impl notmeta_webhooks::receiver::Handler> {
    let runs = Arc::clone(runs);
    Worker::new(queue.clone(), move |event: Event<'static>| {
        let id = event.id.to_string();
        *runs.lock().unwrap().entry(id.clone()).or_default() += 1;
        async move {
            if refuse {
                Err(HandlerError::permanent(format!("refused: {id}")))
            } else {
                Ok(())
            }
        }
    })
    .with_poll_interval(Duration::from_millis(20))
}

/// A worker running in the background, and the means to stop it.
pub(crate) struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<WorkerStats, QueueError>>,
}

impl Running {
    pub(crate) fn start<H: notmeta_webhooks::receiver::Handler>(worker: Worker<H>) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(worker.run(async {
            let _ = stopped.await;
        }));
        Self { stop, task }
    }

    pub(crate) async fn stop(self) -> WorkerStats {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap()
    }
}

/// Waits until `done` holds, checked every 20 ms, for at most 30 s.
pub(crate) async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Dead-letters `ids`: enqueued, and given up on by a worker run until they are
/// all dead letters.
pub(crate) async fn dead_letter(queue: &Queue, ids: &[&str]) {
    enqueue(queue, ids).await;
    // Counted before the worker starts: read after, it could already include some of
    // these, and the wait below would never end.
    let before = queue.counts().await.unwrap().dead_letters;
    let runs = Runs::default();
    let running = Running::start(worker(queue, &runs, true));
    let want = u64::try_from(ids.len()).unwrap();
    wait_for("the events are dead letters", async || {
        let counts = queue.counts().await.unwrap();
        counts.dead_letters >= before + want && counts.pending + counts.in_progress == 0
    })
    .await;
    running.stop().await;
}

/// The whole life of a queue through the tool, on whichever store `url` names
/// (`args`: the settings naming the queue): stats on an empty and a filled queue,
/// dead letters listed, replayed and purged, pause and resume seen by a worker.
pub(crate) async fn every_command(queue: &Queue, url: &str, args: &[&str]) {
    let with = |command: &[&str]| -> Vec<String> {
        args.iter().chain(command).map(|&a| a.to_owned()).collect()
    };
    let run = async |command: &[&str]| {
        let all = with(command);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        tool(Some(url), &all).await
    };

    // Empty, laid out as its first endpoint or worker does.
    queue.check_layout().await.unwrap();
    let (code, stats, _) = run(&["stats"]).await;
    assert_eq!(code, Some(0), "{stats}");
    for (row, value) in [
        ("state", "running"),
        ("pending", "0"),
        ("in progress", "0"),
        ("retrying", "0"),
        ("dead letters", "0"),
        ("oldest pending", "-"),
    ] {
        assert_eq!(figure(&stats, row), value, "{stats}");
    }
    let (code, listed, _) = run(&["dead-letters"]).await;
    assert_eq!((code, listed.as_str()), (Some(0), "no dead letters\n"));

    // Filled: three waiting, the oldest for at least a second.
    enqueue(queue, &["evt_w1", "evt_w2", "evt_w3"]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (code, stats, _) = run(&["stats"]).await;
    assert_eq!(code, Some(0));
    assert_eq!(figure(&stats, "pending"), "3", "{stats}");
    let oldest = figure(&stats, "oldest pending");
    assert!(oldest.ends_with('s') && oldest != "0s", "{stats}");

    // Drained by a worker that refuses three others for good.
    let runs = Runs::default();
    let running = Running::start(worker(queue, &runs, false));
    wait_for("the waiting events ran", async || total(&runs) == 3).await;
    running.stop().await;
    dead_letter(queue, &["evt_d1", "evt_d2", "evt_d3"]).await;

    let (code, listed, _) = run(&["dead-letters"]).await;
    assert_eq!(code, Some(0), "{listed}");
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 4, "{listed}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["id", "type", "reason", "attempts", "received"]);
    for id in ["evt_d1", "evt_d2", "evt_d3"] {
        let line = lines.iter().find(|l| l.starts_with(id)).expect(id);
        let cells: Vec<&str> = line.split("  ").filter(|c| !c.is_empty()).collect();
        assert_eq!(cells.len(), 5, "{listed}");
        assert_eq!(cells[1].trim(), "user.online", "{listed}");
        assert!(cells[2].contains(&format!("refused: {id}")), "{listed}");
        assert_eq!(cells[3].trim(), "1", "{listed}");
        // When the endpoint received it: now, as RFC 3339 in whole seconds.
        let received = cells[4].trim();
        assert!(received.len() == 20 && received.ends_with('Z'), "{listed}");
    }
    let (code, listed, note) = run(&["dead-letters", "--limit", "2"]).await;
    assert_eq!((code, listed.lines().count()), (Some(0), 3), "{listed}");
    assert!(
        note.contains("more dead letters than the 2 shown"),
        "{note}"
    );

    // Purge: refused without --yes, nothing younger than asked deleted.
    let (code, out, err) = run(&["purge", "--older-than", "0s"]).await;
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(queue.counts().await.unwrap().dead_letters, 3);
    let (code, out, _) = run(&["purge", "--older-than", "1h", "--yes"]).await;
    assert_eq!(
        (code, out.as_str()),
        (
            Some(0),
            "purged 0 dead letters given up on at least 1h ago\n"
        )
    );
    assert_eq!(queue.counts().await.unwrap().dead_letters, 3);

    // Replay: one, then the rest; back in the queue.
    let (code, out, _) = run(&["replay", "--limit", "1"]).await;
    assert_eq!((code, out.as_str()), (Some(0), "replayed 1 dead letter\n"));
    let counts = queue.counts().await.unwrap();
    assert_eq!((counts.dead_letters, counts.pending), (2, 1), "{counts:?}");
    let (code, out, _) = run(&["replay"]).await;
    assert_eq!((code, out.as_str()), (Some(0), "replayed 2 dead letters\n"));
    let counts = queue.counts().await.unwrap();
    assert_eq!((counts.dead_letters, counts.pending), (0, 3), "{counts:?}");

    // Dead again, then purged for good.
    let runs = Runs::default();
    let running = Running::start(worker(queue, &runs, true));
    wait_for("the replayed events ran again", async || {
        queue.counts().await.unwrap().dead_letters == 3
    })
    .await;
    running.stop().await;
    let (code, out, _) = run(&["purge", "--older-than", "0s", "--yes"]).await;
    assert_eq!(
        (code, out.as_str()),
        (
            Some(0),
            "purged 3 dead letters given up on at least 0s ago\n"
        )
    );
    assert_eq!(queue.counts().await.unwrap().dead_letters, 0);

    // Pause and resume, seen by a running worker.
    let runs = Runs::default();
    let running = Running::start(worker(queue, &runs, false));
    let (code, out, _) = run(&["pause"]).await;
    assert_eq!(code, Some(0));
    assert!(out.starts_with("state: paused"), "{out}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    enqueue(queue, &["evt_p1", "evt_p2"]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(total(&runs), 0, "a paused worker took an entry");
    let (_, stats, _) = run(&["stats"]).await;
    assert_eq!(figure(&stats, "state"), "paused", "{stats}");
    assert_eq!(figure(&stats, "pending"), "2", "{stats}");
    let (code, out, _) = run(&["resume"]).await;
    assert_eq!((code, out.as_str()), (Some(0), "state: running\n"));
    wait_for("the resumed worker drained the queue", async || {
        total(&runs) == 2
    })
    .await;
    running.stop().await;
    let (_, stats, _) = run(&["stats"]).await;
    assert_eq!(figure(&stats, "state"), "running", "{stats}");
    assert_eq!(figure(&stats, "pending"), "0", "{stats}");
}
