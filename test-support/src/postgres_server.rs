//! A real PostgreSQL server (`initdb`, then `postgres`) on a free loopback port, with
//! its data in a temporary directory; stopped and removed when dropped.
//!
//! The binaries `initdb`, `postgres`, `pg_isready` and `psql` are taken from `PATH`,
//! or else from the highest `/usr/lib/postgresql/<version>/bin` (where Debian and
//! Ubuntu put the server's): `apt-get install -y postgresql`.
//!
//! The server runs with `fsync=off` and `full_page_writes=off`, which only saves the
//! tests time: a crash of the `postgres` processes ([`PostgresServer::stop_immediate`],
//! [`PostgresServer::kill`]) loses nothing committed, since every commit is in the
//! operating system's page cache; only a crash of the operating system could.
//!
//! PostgreSQL refuses to run as root. When the tests run as root, `initdb` and
//! `postgres` run as the unprivileged account `nobody` (uid 65534 if
//! `/etc/passwd` has none), and own the temporary directory, which is then made under
//! a directory every user can traverse (`/tmp` when the system's temporary directory
//! is not). The faults find the server's processes in `/proc`: Linux only.
//!
//! ```no_run
//! use notmeta_test_support::PostgresServer;
//!
//! let mut server = PostgresServer::start_with(&[("synchronous_commit", "off")]);
//! let url = server.create_database("events");
//! assert_eq!(url, format!("postgres://postgres@127.0.0.1:{}/events", server.port()));
//! server.psql("events", "create table t (v int); insert into t values (1)");
//! server.kill(); // or stop_immediate(): a crash
//! server.restart(); // crash recovery, same port
//! assert_eq!(server.psql("events", "select v from t"), "1");
//! server.pause(); // connections stay open, nothing answers
//! server.resume();
//! server.terminate_backends(); // every client connection cut
//! ```

use std::fs::File;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis_server::{TempDir, free_port};

const INSTALL: &str = "install PostgreSQL for these tests: apt-get install -y postgresql";
/// How long the server has to accept queries after it is started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopping server has to exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`PostgresServer::psql`] waits for an answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// A PostgreSQL server for a test: user `postgres` without a password (`trust`), on
/// `127.0.0.1` and a free port. Stopped, and its data removed, when dropped.
#[derive(Debug)]
pub struct PostgresServer {
    /// The postmaster, while it runs.
    child: Option<Child>,
    port: u16,
    /// `name=value`, each passed as `-c name=value`.
    settings: Vec<String>,
    /// The uid and gid the server runs as, when the tests run as root.
    user: Option<(u32, u32)>,
    postgres: PathBuf,
    /// `data/` (the cluster), `socket/` (the Unix socket) and `postgres.log`.
    dir: TempDir,
}

impl PostgresServer {
    /// Creates a database cluster and starts a server on it; returns once it accepts
    /// queries. Panics with the server's log if it does not within 30 s, and with a
    /// clear message if PostgreSQL is not installed.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// [`PostgresServer::start`] with extra settings, each passed as
    /// `-c name=value`, e.g. `("synchronous_commit", "off")`. They stay in force
    /// across [`PostgresServer::restart`].
    pub fn start_with(settings: &[(&str, &str)]) -> Self {
        let initdb = binary("initdb");
        let postgres = binary("postgres");
        let user = unprivileged_user();
        let dir = TempDir::new_in(&temp_parent(user.is_some()), "postgres");
        let socket = dir.path().join("socket");
        std::fs::create_dir(&socket).expect("the socket directory");
        if let Some((uid, gid)) = user {
            for path in [dir.path(), &socket] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
            }
        }
        let mut command = Command::new(&initdb);
        command
            .current_dir(dir.path())
            .arg("-D")
            .arg(dir.path().join("data"))
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync")
            .stdin(Stdio::null());
        as_user(&mut command, user);
        let out = command
            .output()
            .unwrap_or_else(|e| panic!("could not run {}: {e}", initdb.display()));
        assert!(
            out.status.success(),
            "initdb failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut server = Self {
            child: None,
            port: free_port(),
            settings: settings.iter().map(|(n, v)| format!("{n}={v}")).collect(),
            user,
            postgres,
            dir,
        };
        // Another process may take the free port before the server binds it: then
        // it tries another.
        for attempt in 1.. {
            match server.spawn() {
                Ok(()) => break,
                Err(log) if attempt < 5 && log.contains("could not bind") => {
                    server.port = free_port();
                }
                Err(log) => server.exited(&log),
            }
        }
        server
    }

    /// Whether PostgreSQL's server binaries are installed (on `PATH` or in
    /// `/usr/lib/postgresql/*/bin`).
    pub fn installed() -> bool {
        ["initdb", "postgres", "pg_isready"]
            .iter()
            .all(|name| find(name).is_some())
    }

    /// `postgres://postgres@127.0.0.1:{port}/postgres`.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// `postgres://postgres@127.0.0.1:{port}/{database}` (the name percent-encoded).
    pub fn url_for(&self, database: &str) -> String {
        let mut name = String::new();
        for byte in database.bytes() {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                name.push(char::from(byte));
            } else {
                name.push_str(&format!("%{byte:02X}"));
            }
        }
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// The loopback port it listens on (kept across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log (its standard output and error, across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// Creates an empty database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        self.psql("postgres", &format!("CREATE DATABASE {quoted}"));
        self.url_for(name)
    }

    /// Runs `sql` in `database` with `psql` and returns what it printed (rows
    /// unaligned, `|` between columns, no headers), trimmed. Panics if psql fails or
    /// has no answer within 30 s.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        self.try_psql(database, sql, QUERY_TIMEOUT)
            .unwrap_or_else(|e| panic!("psql -c {sql:?} failed: {e}"))
    }

    /// [`PostgresServer::psql`], with psql's error output, or a message saying it timed
    /// out, as the error; a psql without an answer after `timeout` is killed.
    pub fn try_psql(&self, database: &str, sql: &str, timeout: Duration) -> Result<String, String> {
        let child = Command::new(binary("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
            ])
            .args(["-c", sql])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("could not run psql: {e}; {INSTALL}"));
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || tx.send(child.wait_with_output()));
        let out = match rx.recv_timeout(timeout) {
            Ok(out) => out,
            Err(_) => {
                // Not reaped yet (the waiter still waits), so the pid is still psql's.
                signal("KILL", &[pid]);
                let _ = waiter.join();
                return Err(format!("no answer within {timeout:?}"));
            }
        };
        let _ = waiter.join();
        let out = out.map_err(|e| format!("psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(format!(
                "psql {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Cuts every client connection (`pg_terminate_backend` on each client backend
    /// but psql's own), waits until those backends are gone, and returns how many
    /// there were.
    pub fn terminate_backends(&self) -> usize {
        let pids = self.psql(
            "postgres",
            "SELECT t.pid FROM (SELECT pid, pg_terminate_backend(pid) AS done \
             FROM pg_stat_activity \
             WHERE pid <> pg_backend_pid() AND backend_type = 'client backend') AS t \
             WHERE t.done",
        );
        let pids: Vec<&str> = pids.lines().filter(|l| !l.is_empty()).collect();
        if !pids.is_empty() {
            let left = format!(
                "SELECT count(*) FROM pg_stat_activity WHERE pid IN ({})",
                pids.join(",")
            );
            let exited = poll(STOP_TIMEOUT, || self.psql("postgres", &left) == "0");
            assert!(
                exited,
                "terminated backends still run after {STOP_TIMEOUT:?}"
            );
        }
        pids.len()
    }

    /// Stops the server as `pg_ctl -m immediate stop` does (SIGQUIT to the
    /// postmaster, which quits its children at once) and waits for it to exit: no
    /// checkpoint, so [`PostgresServer::restart`] runs crash recovery. Nothing
    /// committed is lost. Kills the server if it has not exited within 5 s. Does
    /// nothing if it is not running.
    pub fn stop_immediate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id();
        let children = children_of(pid);
        signal("QUIT", &[pid]);
        // A paused server handles the signal once it runs again.
        signal("CONT", &[pid]);
        signal("CONT", &children);
        if wait_timeout(&mut child, STOP_TIMEOUT) {
            return;
        }
        self.child = Some(child);
        self.kill();
    }

    /// Kills the postmaster and every process it started (SIGKILL), as a crash of
    /// the server would, and waits until they are gone. Nothing committed is lost;
    /// [`PostgresServer::restart`] runs crash recovery. Does nothing if it is not
    /// running.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id();
        // Stopped, it starts no more children; killed, its children would be
        // reparented and could no longer be found by their parent.
        signal("STOP", &[pid]);
        wait_stopped(pid);
        let children = children_of(pid);
        signal("KILL", &[pid]);
        signal("KILL", &children);
        let _ = child.wait();
        // Gone, or dead and left for an init that may not reap (no panic: Drop
        // comes here).
        poll(STOP_TIMEOUT, || {
            children
                .iter()
                .all(|&c| matches!(state(c), None | Some('Z' | 'X')))
        });
    }

    /// Starts the server again on the same data and port (first stopping it with
    /// [`PostgresServer::stop_immediate`] if it runs), and waits until it accepts
    /// queries, after crash recovery if it was stopped or killed.
    pub fn restart(&mut self) {
        self.stop_immediate();
        if let Err(log) = self.spawn() {
            self.exited(&log);
        }
    }

    /// Freezes the postmaster and every process it started (SIGSTOP): connections
    /// stay open, and nothing is answered, not even a new connection's startup.
    pub fn pause(&self) {
        let pid = self.pid();
        assert!(signal("STOP", &[pid]), "kill -STOP {pid} failed");
        wait_stopped(pid);
        signal("STOP", &children_of(pid));
    }

    /// Thaws a paused server (SIGCONT to the postmaster and its children).
    pub fn resume(&self) {
        let pid = self.pid();
        signal("CONT", &children_of(pid));
        assert!(signal("CONT", &[pid]), "kill -CONT {pid} failed");
    }

    /// The postmaster's process id (its children are the server's other
    /// processes). Panics if the server is stopped.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .expect("the server is not running: restart() it")
            .id()
    }

    /// Starts the postmaster and waits until it accepts queries; if it exits
    /// before, returns what it logged.
    fn spawn(&mut self) -> Result<(), String> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("the server's log file");
        let logged_before = log.metadata().map_or(0, |m| m.len());
        let mut command = Command::new(&self.postgres);
        command
            .current_dir(self.dir.path())
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(self.dir.path().join("socket"))
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"]);
        for setting in &self.settings {
            command.args(["-c", setting]);
        }
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log file"))
            .stderr(log);
        as_user(&mut command, self.user);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("could not run {}: {e}", self.postgres.display()));
        self.child = Some(child);
        self.wait_ready(logged_before)
    }

    /// Polls `pg_isready` until the server accepts queries (after any crash
    /// recovery), for up to 30 s, on its Unix socket: another server that took the
    /// port cannot answer for it, and the socket is made once the port is bound; if it exits before, returns what it logged (from
    /// byte `logged_before` of the log on).
    fn wait_ready(&mut self, logged_before: u64) -> Result<(), String> {
        let pg_isready = binary("pg_isready");
        let port = self.port.to_string();
        let socket = self.dir.path().join("socket");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("started");
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return Err(self.log_tail(logged_before));
            }
            let ready = Command::new(&pg_isready)
                .arg("-q")
                .arg("-h")
                .arg(&socket)
                .args(["-p", &port, "-U", "postgres"])
                .args(["-d", "postgres", "-t", "1"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap_or_else(|e| panic!("could not run pg_isready: {e}; {INSTALL}"));
            if ready.success() {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not accept connections on port {} within {READY_TIMEOUT:?}; \
                 the end of its log:\n{}",
                self.port,
                self.log_tail(logged_before)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Panics: the server exited before accepting connections, having logged `log`.
    fn exited(&self, log: &str) -> ! {
        panic!(
            "postgres exited before accepting connections on port {}; the end of its log \
             ({}):\n{log}",
            self.port,
            self.log_path().display()
        )
    }

    /// The last 40 lines of the server's log from byte `from` on.
    fn log_tail(&self, from: u64) -> String {
        let log = std::fs::read(self.log_path()).unwrap_or_default();
        let from = usize::try_from(from).unwrap_or(usize::MAX).min(log.len());
        let log = String::from_utf8_lossy(&log[from..]);
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // Then the directory goes, with the data.
        self.stop_immediate();
    }
}

/// `name` on `PATH`, or else in the highest `/usr/lib/postgresql/<version>/bin`.
fn binary(name: &str) -> PathBuf {
    find(name).unwrap_or_else(|| {
        panic!("`{name}` is neither on PATH nor in /usr/lib/postgresql/*/bin: {INSTALL}")
    })
}

fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p));
    on_path.or_else(|| {
        let mut found: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .filter_map(|entry| {
                let bin = entry.path().join("bin").join(name);
                let version = entry
                    .file_name()
                    .to_string_lossy()
                    .split('.')
                    .map(|n| n.parse().unwrap_or(0))
                    .collect();
                is_executable(&bin).then_some((version, bin))
            })
            .collect();
        found.sort();
        found.pop().map(|(_, bin)| bin)
    })
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The uid and gid to run the server as: `nobody`'s when this process runs as root
/// (its effective uid, the owner of `/proc/self`, is 0), else none.
fn unprivileged_user() -> Option<(u32, u32)> {
    let euid = match std::fs::metadata("/proc/self") {
        Ok(meta) => meta.uid(),
        Err(_) => {
            let out = Command::new("id").arg("-u").output().expect("id -u");
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("a uid")
        }
    };
    if euid != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let nobody = passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields[..] {
            ["nobody", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
            _ => None,
        }
    });
    Some(nobody.unwrap_or((65_534, 65_534)))
}

/// Where to make the temporary directory: the system's, unless the server runs as
/// another user who could not reach it, then `/tmp`.
fn temp_parent(other_user: bool) -> PathBuf {
    let tmp = std::env::temp_dir();
    let traversable = tmp
        .ancestors()
        .all(|dir| std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0));
    if other_user && !traversable {
        PathBuf::from("/tmp")
    } else {
        tmp
    }
}

fn as_user(command: &mut Command, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
}

/// Sends signal `name` to `pids` with kill(1); whether it reached them all.
fn signal(name: &str, pids: &[u32]) -> bool {
    if pids.is_empty() {
        return true;
    }
    Command::new("kill")
        .arg(format!("-{name}"))
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status()
        .expect("kill(1) is needed to signal postgres")
        .success()
}

/// The processes whose parent is `pid`, from `/proc/<pid>/stat`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| stat(p).is_some_and(|(_, parent)| parent == pid))
        .collect()
}

/// A process's state letter and parent pid, from `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.next()?.parse().ok()?))
}

fn state(pid: u32) -> Option<char> {
    stat(pid).map(|(state, _)| state)
}

/// Waits (up to 1 s) until `pid` is stopped by a signal.
fn wait_stopped(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while !matches!(state(pid), None | Some('T' | 'Z' | 'X')) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits up to `timeout` for `child` to exit; whether it did (and was reaped).
fn wait_timeout(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) if Instant::now() >= deadline => return false,
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Polls `done` every 10 ms for up to `timeout`; whether it became true.
fn poll(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_and_creates_databases() {
        let started = Instant::now();
        let server = PostgresServer::start();
        eprintln!("initdb + start + ready: {:?}", started.elapsed());
        assert_eq!(server.psql("postgres", "select 1"), "1");
        assert_eq!(
            server.url(),
            format!("postgres://postgres@127.0.0.1:{}/postgres", server.port())
        );
        let url = server.create_database("app db");
        assert_eq!(url, server.url_for("app db"));
        assert!(url.ends_with("/app%20db"), "{url}");
        assert_eq!(server.psql("app db", "select current_database()"), "app db");
        assert_eq!(
            server.psql(
                "app db",
                "select count(*) from pg_tables where schemaname = 'public'"
            ),
            "0"
        );
        let err = server
            .try_psql("postgres", "select * from missing", QUERY_TIMEOUT)
            .unwrap_err();
        assert!(err.contains("missing"), "{err}");
    }

    /// Commits a row, crashes the server with `crash`, checks that it no longer
    /// answers, restarts it and checks that crash recovery ran and kept the row.
    fn crash_and_recover(server: &mut PostgresServer, crash: fn(&mut PostgresServer)) {
        let rows = server.psql(
            "postgres",
            "select count(*) from pg_tables where tablename = 't'",
        );
        if rows == "0" {
            server.psql("postgres", "create table t (v text)");
        }
        server.psql("postgres", "insert into t values ('kept')");
        let before = server.psql("postgres", "select count(*) from t");
        crash(server);
        let down = server.try_psql("postgres", "select 1", QUERY_TIMEOUT);
        assert!(down.is_err(), "{down:?}");
        let recovered = recoveries(server);
        server.restart();
        assert_eq!(recoveries(server), recovered + 1, "crash recovery ran");
        assert_eq!(server.psql("postgres", "select count(*) from t"), before);
    }

    /// How many times the server's log says it ran crash recovery.
    fn recoveries(server: &PostgresServer) -> usize {
        let log = std::fs::read_to_string(server.log_path()).unwrap();
        log.matches("automatic recovery in progress").count()
    }

    #[test]
    fn committed_rows_survive_stop_immediate() {
        let mut server = PostgresServer::start();
        crash_and_recover(&mut server, PostgresServer::stop_immediate);
        crash_and_recover(&mut server, PostgresServer::stop_immediate);
    }

    #[test]
    fn kill_leaves_no_process_and_restart_recovers() {
        let mut server = PostgresServer::start();
        let pid = server.pid();
        let children = children_of(pid);
        assert!(
            !children.is_empty(),
            "the postmaster has its background processes"
        );
        crash_and_recover(&mut server, PostgresServer::kill);
        assert!(state(pid).is_none(), "the postmaster is reaped");
        for child in children {
            assert!(
                matches!(state(child), None | Some('Z' | 'X')),
                "{child} still runs"
            );
        }
        crash_and_recover(&mut server, PostgresServer::kill);
    }

    #[test]
    fn pause_stalls_queries_until_resume() {
        let server = PostgresServer::start();
        server.pause();
        let started = Instant::now();
        let err = server
            .try_psql("postgres", "select 1", Duration::from_secs(2))
            .unwrap_err();
        assert!(err.contains("no answer"), "{err}");
        assert!(started.elapsed() >= Duration::from_secs(2));
        let processes: Vec<u32> = [server.pid()]
            .into_iter()
            .chain(children_of(server.pid()))
            .collect();
        for &pid in &processes {
            // Or a backend that had exited, left for the stopped postmaster to reap.
            let stopped = state(pid);
            assert!(matches!(stopped, Some('T' | 'Z')), "{pid}: {stopped:?}");
        }
        server.resume();
        assert_eq!(server.psql("postgres", "select 1"), "1");
        // A server dropped while paused stops too.
        server.pause();
        let dir = server.dir.path().to_owned();
        drop(server);
        for pid in processes {
            assert!(
                matches!(state(pid), None | Some('Z' | 'X')),
                "{pid} still runs"
            );
        }
        assert!(!dir.exists(), "the data is removed");
    }

    #[test]
    fn terminate_backends_cuts_open_connections() {
        let server = PostgresServer::start();
        let mut sleeper = Command::new(binary("psql"))
            .args(["-X", "-h", "127.0.0.1", "-p", &server.port().to_string()])
            .args(["-U", "postgres", "-c", "select pg_sleep(60)"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let query = "select count(*) from pg_stat_activity where query like 'select pg_sleep%'";
        assert!(poll(Duration::from_secs(10), || server
            .psql("postgres", query)
            == "1"));
        assert_eq!(server.terminate_backends(), 1);
        assert!(
            wait_timeout(&mut sleeper, Duration::from_secs(5)),
            "psql still connected"
        );
        assert!(!sleeper.wait().unwrap().success());
        assert_eq!(server.psql("postgres", query), "0");
    }

    #[test]
    fn a_server_that_cannot_start_panics_with_its_log() {
        let panic = std::panic::catch_unwind(|| {
            PostgresServer::start_with(&[("no_such_setting", "1")]);
        })
        .unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(message.contains("\"no_such_setting\""), "{message}");
        assert!(
            message.contains("exited before accepting connections"),
            "{message}"
        );
    }

    #[test]
    fn a_taken_port_is_reported_as_one_the_start_retries() {
        let a = PostgresServer::start();
        let mut b = PostgresServer::start();
        b.stop_immediate();
        b.port = a.port();
        let log = b.spawn().unwrap_err();
        assert!(log.contains("could not bind"), "{log}");
    }

    #[test]
    fn two_servers_at_once_with_their_own_settings_and_data() {
        let a = PostgresServer::start_with(&[("synchronous_commit", "off")]);
        let b = PostgresServer::start();
        assert_ne!(a.port(), b.port());
        assert_eq!(a.psql("postgres", "show synchronous_commit"), "off");
        assert_eq!(b.psql("postgres", "show synchronous_commit"), "on");
        assert_eq!(a.psql("postgres", "show fsync"), "off");
        a.psql("postgres", "create table only_in_a (v int)");
        assert!(
            b.try_psql("postgres", "select * from only_in_a", QUERY_TIMEOUT)
                .is_err()
        );
        let dir = a.dir.path().to_owned();
        drop(a);
        assert!(!dir.exists(), "the data is removed");
        assert_eq!(b.psql("postgres", "select 1"), "1");
    }
}
