//! A TCP proxy on loopback that injects network faults between a client and a
//! server: pauses, held replies, latency, a byte-rate limit, and cut connections.
//! It also counts round trips: see [`Proxy::round_trips`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// Which way bytes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// Client to server (requests).
    Up,
    /// Server to client (replies).
    Down,
}

#[derive(Debug, Default)]
struct Faults {
    paused: bool,
    /// Replies are held until then.
    hold_replies_until: Option<Instant>,
    latency: Duration,
    /// Bytes per second each way, 0 for no limit.
    rate: u64,
}

/// A fault-injecting TCP proxy; stops accepting when dropped (connections already
/// open go on until cut or closed).
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    faults: Arc<Mutex<Faults>>,
    /// Bumped to wake waiting pumps (a fault was lifted) …
    changed: watch::Sender<u64>,
    /// … and this one to close every open connection.
    cuts: Arc<AtomicU64>,
    /// Request→reply turns, over every connection.
    turns: Arc<AtomicU64>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy on a free loopback port forwarding to `127.0.0.1:target`.
    /// Must be called within a Tokio runtime.
    pub async fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let faults = Arc::new(Mutex::new(Faults::default()));
        let (changed, _) = watch::channel(0u64);
        let cuts = Arc::new(AtomicU64::new(0));
        let turns = Arc::new(AtomicU64::new(0));
        let state = (
            Arc::clone(&faults),
            changed.clone(),
            Arc::clone(&cuts),
            Arc::clone(&turns),
        );
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let generation = state.2.load(Ordering::SeqCst);
                // Set when the client has sent bytes since the server last replied.
                let awaiting = Arc::new(AtomicBool::new(false));
                for (from, to, way) in [
                    (PumpRead::Client(cr), PumpWrite::Server(sw), Way::Up),
                    (PumpRead::Server(sr), PumpWrite::Client(cw), Way::Down),
                ] {
                    let faults = Arc::clone(&state.0);
                    let changed = state.1.subscribe();
                    let cuts = Arc::clone(&state.2);
                    let turns = Turns {
                        awaiting: Arc::clone(&awaiting),
                        count: Arc::clone(&state.3),
                    };
                    tokio::spawn(pump(
                        from, to, way, faults, changed, cuts, turns, generation,
                    ));
                }
            }
        });
        Self {
            addr,
            faults,
            changed,
            cuts,
            turns,
            accept,
        }
    }

    /// Round trips so far, over every connection: the times a server began to reply
    /// after its client had sent something since the server's last reply. Bytes the
    /// client writes before the reply arrives belong to the same round trip, so a
    /// pipeline (several commands or statements written before the first reply is
    /// read) counts once, and so does a request the client writes in several pieces.
    /// Exact while each connection carries one exchange at a time; requests of
    /// independent callers multiplexed on one connection may share a turn.
    pub fn round_trips(&self) -> u64 {
        self.turns.load(Ordering::SeqCst)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `redis://127.0.0.1:{port}/`.
    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port())
    }

    fn set(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.faults.lock().expect("faults"));
        self.changed.send_modify(|n| *n += 1);
    }

    /// Stops forwarding either way; connections stay open (a network partition, or
    /// a frozen peer).
    pub fn pause(&self) {
        self.set(|f| f.paused = true);
    }

    /// Forwards again what was held.
    pub fn resume(&self) {
        self.set(|f| f.paused = false);
    }

    /// Holds every reply for `duration` from now (requests still reach the
    /// server, so what they do is applied, and their replies arrive late).
    pub fn hold_replies(&self, duration: Duration) {
        self.set(|f| f.hold_replies_until = Some(Instant::now() + duration));
    }

    /// Delays each chunk of bytes, either way, by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.set(|f| f.latency = latency);
    }

    /// Limits each way to `bytes_per_second` (0: no limit).
    pub fn set_rate(&self, bytes_per_second: u64) {
        self.set(|f| f.rate = bytes_per_second);
    }

    /// Closes every open connection at once (new ones are accepted).
    pub fn cut(&self) {
        self.cuts.fetch_add(1, Ordering::SeqCst);
        self.changed.send_modify(|n| *n += 1);
    }

    /// Lifts every fault.
    pub fn heal(&self) {
        self.set(|f| *f = Faults::default());
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

enum PumpRead {
    Client(tokio::net::tcp::OwnedReadHalf),
    Server(tokio::net::tcp::OwnedReadHalf),
}

enum PumpWrite {
    Client(tokio::net::tcp::OwnedWriteHalf),
    Server(tokio::net::tcp::OwnedWriteHalf),
}

impl PumpRead {
    fn half(&mut self) -> &mut tokio::net::tcp::OwnedReadHalf {
        match self {
            Self::Client(h) | Self::Server(h) => h,
        }
    }
}

impl PumpWrite {
    fn half(&mut self) -> &mut tokio::net::tcp::OwnedWriteHalf {
        match self {
            Self::Client(h) | Self::Server(h) => h,
        }
    }
}

/// A connection's round-trip count: `awaiting` is set by the client's bytes and
/// cleared, counting one, by the server's first bytes after them.
struct Turns {
    awaiting: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
}

#[allow(clippy::too_many_arguments)]
async fn pump(
    mut from: PumpRead,
    mut to: PumpWrite,
    way: Way,
    faults: Arc<Mutex<Faults>>,
    mut changed: watch::Receiver<u64>,
    cuts: Arc<AtomicU64>,
    turns: Turns,
    generation: u64,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let cut = |cuts: &AtomicU64| cuts.load(Ordering::SeqCst) != generation;
    loop {
        let n = tokio::select! {
            read = from.half().read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = changed.changed() => {
                if cut(&cuts) { return; }
                continue;
            }
        };
        // Wait while the way is closed.
        loop {
            if cut(&cuts) {
                return;
            }
            let wait = {
                let f = faults.lock().expect("faults");
                let held = (way == Way::Down)
                    .then_some(f.hold_replies_until)
                    .flatten()
                    .filter(|until| *until > Instant::now());
                if f.paused { Some(None) } else { held.map(Some) }
            };
            match wait {
                None => break,
                Some(None) => {
                    if changed.changed().await.is_err() {
                        return;
                    }
                }
                Some(Some(until)) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(until) => {}
                        _ = changed.changed() => {}
                    }
                }
            }
        }
        let (latency, rate) = {
            let f = faults.lock().expect("faults");
            (f.latency, f.rate)
        };
        let mut pause = latency;
        if rate > 0 {
            pause += Duration::from_secs_f64(n as f64 / rate as f64);
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        // Marked before the request reaches the server, so its reply finds the mark.
        match way {
            Way::Up => turns.awaiting.store(true, Ordering::SeqCst),
            Way::Down => {
                if turns.awaiting.swap(false, Ordering::SeqCst) {
                    turns.count.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        if cut(&cuts) || to.half().write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RedisServer;

    /// Writes `request` in one piece and reads until `replies` lines came back.
    async fn exchange(stream: &mut TcpStream, request: &[u8], replies: usize) {
        stream.write_all(request).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while got.iter().filter(|b| **b == b'\n').count() < replies {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed");
            got.extend_from_slice(&buf[..n]);
        }
    }

    #[tokio::test]
    async fn counts_a_round_trip_per_reply_awaited_and_a_pipeline_once() {
        let redis = RedisServer::start();
        let proxy = Proxy::start(redis.port).await;
        let mut client = TcpStream::connect(("127.0.0.1", proxy.port()))
            .await
            .unwrap();
        assert_eq!(proxy.round_trips(), 0);
        exchange(&mut client, b"PING\r\n", 1).await;
        assert_eq!(proxy.round_trips(), 1);
        // Two commands in one write: one round trip.
        exchange(&mut client, b"PING\r\nPING\r\n", 2).await;
        assert_eq!(proxy.round_trips(), 2);
        // A command written in two pieces, the reply awaited once: one round trip.
        client.write_all(b"PI").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        exchange(&mut client, b"NG\r\n", 1).await;
        assert_eq!(proxy.round_trips(), 3);
        // Another connection adds its own.
        let mut other = TcpStream::connect(("127.0.0.1", proxy.port()))
            .await
            .unwrap();
        exchange(&mut other, b"PING\r\n", 1).await;
        exchange(&mut client, b"PING\r\n", 1).await;
        assert_eq!(proxy.round_trips(), 5);
    }
}
