//! A real `redis-server` on a free loopback port, stopped when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` child process.
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
        Self::with_args(vec![
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
        ])
    }

    /// Starts `redis-server` with the durability exactly-once needs: an append-only
    /// file in `dir`, written with `appendfsync always` (every write on disk before it
    /// is acknowledged).
    pub fn start_durable(dir: &Path) -> Self {
        Self::with_args(vec![
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "yes".into(),
            "--appendfsync".into(),
            "always".into(),
            "--dir".into(),
            dir.display().to_string(),
        ])
    }

    fn with_args(mut args: Vec<String>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut all = vec![
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
        ];
        all.append(&mut args);
        let child = spawn(&all, port);
        Self {
            child,
            port,
            args: all,
        }
    }

    /// The URL to connect to.
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

    /// Kills the server (SIGKILL, no chance to save) and starts it again on the same
    /// port and data.
    pub fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.args, self.port);
    }
}

fn spawn(args: &[String], port: u16) -> Child {
    let child = Command::new("redis-server")
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

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT".to_owned(), self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
