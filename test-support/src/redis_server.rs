//! A real `redis-server` on a free loopback port, stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child process; killed and reaped when dropped.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    /// The loopback port it listens on.
    pub port: u16,
    args: Vec<String>,
}

impl RedisServer {
    /// Starts `redis-server` without persistence. Panics with a clear message if the
    /// binary is missing (install it with `apt-get install -y redis-server`).
    pub fn start() -> Self {
        Self::start_with(free_port(), &["--save", "", "--appendonly", "no"])
    }

    /// Starts `redis-server` with an append-only file in `dir` written with
    /// `appendfsync always`: every write acknowledged is on disk, and survives
    /// [`RedisServer::kill`] and [`RedisServer::restart`].
    pub fn start_durable(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let dir = dir.to_str().expect("a UTF-8 path").to_owned();
        Self::start_with(
            free_port(),
            &[
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                &dir,
            ],
        )
    }

    /// Starts `redis-server` without persistence as a replica of the server on
    /// `primary_port`, and waits until the primary counts it online.
    pub fn start_replica_of(primary_port: u16) -> Self {
        let primary = primary_port.to_string();
        // The primary sends the data at once, not after the 5 s it waits by default
        // for more replicas to share the transfer.
        let _ = Command::new("redis-cli")
            .args([
                "-p",
                &primary,
                "config",
                "set",
                "repl-diskless-sync-delay",
                "0",
            ])
            .output();
        let replica = Self::start_with(
            free_port(),
            &[
                "--save",
                "",
                "--appendonly",
                "no",
                // Loaded from the socket: no dump file in the working directory.
                "--repl-diskless-load",
                "on-empty-db",
                "--replicaof",
                "127.0.0.1",
                &primary,
            ],
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let info = Command::new("redis-cli")
                .args(["-p", &primary, "info", "replication"])
                .output()
                .expect("redis-cli must be installed for these tests");
            let port = format!("port={},state=online", replica.port);
            if String::from_utf8_lossy(&info.stdout).contains(&port) && acknowledges(&primary) {
                return replica;
            }
            assert!(Instant::now() < deadline, "the replica did not connect");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts `redis-server` on `port` with extra arguments.
    pub fn start_with(port: u16, args: &[&str]) -> Self {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let child = spawn(port, &args);
        Self { child, port, args }
    }

    /// `redis://127.0.0.1:{port}/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered.
    pub fn pause(&self) {
        signal("STOP", self.child.id());
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        signal("CONT", self.child.id());
    }

    /// Kills the server at once (SIGKILL): no shutdown save, no goodbye to clients.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port with the same arguments (after
    /// [`RedisServer::kill`]).
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn(self.port, &self.args);
    }
}

fn spawn(port: u16, args: &[String]) -> Child {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed for these tests: apt-get install -y redis-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "redis-server did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Whether the replica of the server on `port` acknowledges a write within 1 s (a
/// replica just synced takes a moment to). The write leaves nothing behind.
fn acknowledges(port: &str) -> bool {
    use std::io::Write as _;
    let mut cli = Command::new("redis-cli")
        .args(["-p", port])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli must be installed for these tests");
    let commands =
        b"SET notmeta-test-support:probe 1\nDEL notmeta-test-support:probe\nWAIT 1 1000\n";
    let _ = cli.stdin.take().map(|mut stdin| stdin.write_all(commands));
    let out = cli.wait_with_output().expect("redis-cli ran");
    String::from_utf8_lossy(&out.stdout).lines().last() == Some("1")
}

fn signal(name: &str, pid: u32) {
    let status = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .expect("kill(1) is needed to signal redis-server");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// A free loopback port (below 55536, so that a Redis Cluster bus port, the port
/// plus 10000, exists and is free too).
pub fn free_port() -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port < 55_536 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// A fresh directory under the system's temporary directory, removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `<tmp>/notmeta-<label>-<pid>-<n>`.
    pub fn new(label: &str) -> Self {
        Self::new_in(&std::env::temp_dir(), label)
    }

    /// Creates `<parent>/notmeta-<label>-<pid>-<n>`.
    pub fn new_in(parent: &Path, label: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = parent.join(format!(
            "notmeta-{label}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A Redis Cluster of `redis-server --cluster-enabled yes` nodes on loopback,
/// created with `redis-cli --cluster create`; stopped when dropped.
#[derive(Debug)]
pub struct RedisCluster {
    /// The nodes, in the order started (dropped before the directory). Which are
    /// primaries changes with failovers: ask [`RedisCluster::shard`].
    pub nodes: Vec<RedisServer>,
    _dir: TempDir,
}

/// The nodes serving one slot: indexes into [`RedisCluster::nodes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// The primary.
    pub primary: usize,
    /// Its replica (clusters started with replicas).
    pub replica: Option<usize>,
}

impl RedisCluster {
    /// Starts `masters` nodes (at least 3), creates the cluster with no replicas,
    /// and waits until every node reports `cluster_state:ok`.
    pub fn start(masters: usize) -> Self {
        Self::create(masters, 0, 5000)
    }

    /// Starts `masters` primaries (at least 3) with one replica each, with
    /// `cluster-node-timeout` of `node_timeout_ms` (a replica takes over a primary
    /// unreachable for about that long), and waits until every node reports
    /// `cluster_state:ok` and every primary has its replica in sync.
    pub fn start_with_replicas(masters: usize, node_timeout_ms: u32) -> Self {
        Self::create(masters, 1, node_timeout_ms)
    }

    fn create(masters: usize, replicas: usize, node_timeout_ms: u32) -> Self {
        let dir = TempDir::new("cluster");
        let timeout = node_timeout_ms.to_string();
        let nodes: Vec<RedisServer> = (0..masters * (1 + replicas))
            .map(|_| {
                let port = free_port();
                let node_dir = dir.path().join(port.to_string());
                std::fs::create_dir_all(&node_dir).unwrap();
                let node_dir = node_dir.to_str().unwrap().to_owned();
                RedisServer::start_with(
                    port,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        &timeout,
                        "--dir",
                        &node_dir,
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ],
                )
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let status = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli must be installed for these tests");
        assert!(status.success(), "redis-cli --cluster create failed");
        let cluster = Self { nodes, _dir: dir };
        let all: Vec<usize> = (0..cluster.nodes.len()).collect();
        cluster.wait_until_ok(&all);
        if replicas > 0 {
            cluster.wait_for("every replica in sync", || {
                all.iter().all(|&i| {
                    let info = cluster.cli(i, &["info", "replication"]);
                    // A primary counts a replica for WAIT once it is online.
                    info.contains("role:master") && info.contains("state=online")
                        || info.contains("master_link_status:up")
                })
            });
        }
        cluster
    }

    /// `redis://127.0.0.1:{port}/` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// `redis-cli -p <node's port> args…`: its standard output.
    pub fn cli(&self, node: usize, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.nodes[node].port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli must be installed for these tests");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Which nodes serve `key`'s slot, as node `asked` sees the cluster.
    pub fn shard_as_seen_by(&self, asked: usize, key: &str) -> Shard {
        let slot: u16 = self
            .cli(asked, &["cluster", "keyslot", key])
            .trim()
            .parse()
            .expect("a slot number");
        let nodes = self.cli(asked, &["cluster", "nodes"]);
        let index = |addr: &str| {
            let port: u16 = addr.split(['@', ':']).nth(1)?.parse().ok()?;
            self.nodes.iter().position(|n| n.port == port)
        };
        let mut primary = None;
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let owns = fields[8..].iter().any(|range| {
                let mut ends = range.split('-').map(|n| n.parse::<u16>());
                match (ends.next(), ends.next()) {
                    (Some(Ok(a)), Some(Ok(b))) => (a..=b).contains(&slot),
                    (Some(Ok(a)), None) => a == slot,
                    _ => false,
                }
            });
            if owns {
                primary = Some((fields[0].to_owned(), index(fields[1])));
            }
        }
        let (id, primary) = primary.expect("the slot has a primary");
        let replica = nodes.lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() > 3 && fields[2].contains("slave") && fields[3] == id)
                .then(|| index(fields[1]))
                .flatten()
        });
        Shard {
            primary: primary.expect("the primary is one of these nodes"),
            replica,
        }
    }

    /// Which nodes serve `key`'s slot, as the first node that answers sees it.
    pub fn shard(&self, key: &str) -> Shard {
        self.shard_as_seen_by(0, key)
    }

    /// Waits until `primary`'s replica has every write `primary` has made (its
    /// acknowledged offset reaches the primary's).
    pub fn wait_for_sync(&self, primary: usize) {
        self.wait_for("the replica to catch up", || {
            let info = self.cli(primary, &["info", "replication"]);
            // `master_repl_offset:N`, and `slaveK:ip=…,port=…,state=…,offset=N,lag=…`.
            let offset = info
                .lines()
                .find_map(|l| l.strip_prefix("master_repl_offset:"))
                .and_then(|v| v.trim().parse::<u64>().ok());
            let acked = info
                .lines()
                .filter(|l| l.starts_with("slave"))
                .flat_map(|l| l.split(','))
                .filter_map(|kv| kv.strip_prefix("offset=")?.parse::<u64>().ok())
                .max();
            matches!((offset, acked), (Some(offset), Some(acked)) if acked >= offset)
        });
    }

    /// Promotes replica `node` at once (`CLUSTER FAILOVER TAKEOVER`: no agreement
    /// with its primary or the other primaries needed), then waits until it is a
    /// primary and the nodes in `live` report `cluster_state:ok`. Before that it
    /// waits until no node in `live` flags `node` as failing (after a pause).
    pub fn take_over(&self, node: usize, live: &[usize]) {
        let port = format!(":{}@", self.nodes[node].port);
        self.wait_for("the replica to be seen as reachable", || {
            live.iter().filter(|&&i| i != node).all(|&i| {
                self.cli(i, &["cluster", "nodes"])
                    .lines()
                    .filter(|l| l.contains(&port))
                    .all(|l| !l.split_whitespace().nth(2).unwrap_or("").contains("fail"))
            })
        });
        let reply = self.cli(node, &["cluster", "failover", "takeover"]);
        assert!(reply.trim() == "OK", "CLUSTER FAILOVER TAKEOVER: {reply}");
        self.wait_for_primary(node);
        self.wait_until_ok(live);
    }

    /// Freezes `primary`'s replica (SIGSTOP) and closes its replication link
    /// (`CLIENT KILL TYPE replica` on `primary`), so that it receives nothing more,
    /// not even into its socket buffer, until resumed.
    pub fn cut_replica(&self, primary: usize, replica: usize) {
        self.nodes[replica].pause();
        let killed = self.cli(primary, &["client", "kill", "type", "replica"]);
        assert_eq!(killed.trim(), "1", "CLIENT KILL TYPE replica: {killed}");
    }

    /// Starts `node` again (after [`RedisServer::kill`]) from its cluster
    /// configuration: a primary that lost its slots to a failover rejoins as a
    /// replica. Waits until it is a replica in sync with its primary.
    pub fn rejoin(&mut self, node: usize) {
        self.nodes[node].restart();
        self.wait_for("the node to rejoin as a replica", || {
            let info = self.cli(node, &["info", "replication"]);
            info.contains("role:slave") && info.contains("master_link_status:up")
        });
    }

    /// Waits until `node` reports itself a primary.
    pub fn wait_for_primary(&self, node: usize) {
        self.wait_for("the replica to become a primary", || {
            self.cli(node, &["role"]).starts_with("master")
        });
    }

    /// Waits until every node in `live` reports `cluster_state:ok`.
    pub fn wait_until_ok(&self, live: &[usize]) {
        self.wait_for("cluster_state:ok", || {
            live.iter().all(|&i| {
                self.cli(i, &["cluster", "info"])
                    .contains("cluster_state:ok")
            })
        });
    }

    /// Polls `ready` every 50 ms for up to 30 s.
    fn wait_for(&self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
