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
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
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

/// A Redis Cluster of `redis-server --cluster-enabled yes` masters on loopback,
/// created with `redis-cli --cluster create`; stopped when dropped.
#[derive(Debug)]
pub struct RedisCluster {
    /// The masters (dropped before the directory).
    pub nodes: Vec<RedisServer>,
    _dir: TempDir,
}

impl RedisCluster {
    /// Starts `masters` nodes (at least 3), creates the cluster with no replicas,
    /// and waits until every node reports `cluster_state:ok`.
    pub fn start(masters: usize) -> Self {
        let dir = TempDir::new("cluster");
        let nodes: Vec<RedisServer> = (0..masters)
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
                        "5000",
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
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli must be installed for these tests");
        assert!(status.success(), "redis-cli --cluster create failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        for node in &nodes {
            loop {
                let info = Command::new("redis-cli")
                    .args(["-p", &node.port.to_string(), "cluster", "info"])
                    .output()
                    .unwrap();
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster did not become ready"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Self { nodes, _dir: dir }
    }

    /// `redis://127.0.0.1:{port}/` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
