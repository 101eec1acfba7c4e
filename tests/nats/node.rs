//! A hub node as a user runs it: the real binary on `transport = nats`, in a process of its own
//! on an ephemeral port, started under the same kind of watchdog shell as the NATS servers, so
//! that it dies with the test process however that dies. Its log is kept for failure messages.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{NatsCluster, WATCHDOG};
use crate::common::{client, HUB, KEY};

const BIN: &str = env!("CARGO_BIN_EXE_quicksilver");
/// How long a node may take to log its address.
const LISTENING_WITHIN: Duration = Duration::from_secs(30);
/// How long a node may take to become ready (or not); only a bound for a hung test.
pub const READY_WITHIN: Duration = Duration::from_secs(60);

/// A hub process on `transport = nats`, on an ephemeral port; killed (`SIGKILL`) when dropped.
pub struct Node {
    pub addr: SocketAddr,
    /// The hub endpoint, `http://addr/.well-known/mercure`.
    pub url: String,
    pub pid: u32,
    watchdog: Child,
    /// Closing it makes the watchdog kill the hub.
    lifeline: Option<ChildStdin>,
    /// Every log line so far, for failure messages.
    lines: Arc<Mutex<Vec<String>>>,
}

impl Node {
    /// A node on `cluster`'s stream `stream` (replicated on every server), with more settings,
    /// once it is ready.
    pub async fn start(cluster: &NatsCluster, stream: &str, settings: &[(&str, &str)]) -> Self {
        let every: Vec<usize> = (0..cluster.servers.len()).collect();
        Self::start_on(cluster, &every, stream, settings).await
    }

    /// [`Self::start`], given the URLs of the servers numbered `servers` only (it may still learn
    /// of the others from them, as NATS clients do).
    pub async fn start_on(
        cluster: &NatsCluster,
        servers: &[usize],
        stream: &str,
        settings: &[(&str, &str)],
    ) -> Self {
        let urls: Vec<String> = servers.iter().map(|&i| cluster.servers[i].url()).collect();
        let urls = urls.join(",");
        let replicas = cluster.servers.len().to_string();
        let mut env = vec![
            ("MERCURE_NATS_URL", urls.as_str()),
            ("MERCURE_NATS_STREAM", stream),
            ("MERCURE_NATS_REPLICAS", replicas.as_str()),
        ];
        env.extend_from_slice(settings);
        let node = Self::spawn(&env);
        let waited = node.wait_ready(true).await;
        assert!(
            waited.is_some(),
            "the node is not ready within {READY_WITHIN:?}:\n{}",
            node.logs()
        );
        node
    }

    /// Spawns the binary with a cleared environment plus `env`, and waits for its "listening on"
    /// log line.
    pub fn spawn(env: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir();
        let mut command = Command::new("sh");
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .env("MERCURE_ADDR", "127.0.0.1:0")
            .env("MERCURE_WORKERS", "1")
            .env("MERCURE_JWT_KEY", KEY)
            .env("MERCURE_TRANSPORT", "nats")
            .current_dir(dir);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut watchdog = command
            .args(["-c", WATCHDOG, BIN])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sh runs");
        let mut pid = String::new();
        let stdout = watchdog.stdout.take().expect("piped stdout");
        BufReader::new(stdout).read_line(&mut pid).expect("the watchdog prints the pid");
        let pid = pid.trim().parse().expect("a pid");
        let lifeline = watchdog.stdin.take();
        let stderr = watchdog.stderr.take().expect("piped stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (listening, is_listening) = std::sync::mpsc::channel();
        {
            // Drains the log for the life of the hub, so that it never blocks on a full pipe.
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(addr) = listening_addr(&line) {
                        let _ = listening.send(addr);
                    }
                    lines.lock().expect("no panic while holding the log").push(line);
                }
            });
        }
        let mut node = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            url: String::new(),
            pid,
            watchdog,
            lifeline,
            lines,
        };
        match is_listening.recv_timeout(LISTENING_WITHIN) {
            Ok(addr) => {
                node.addr = addr;
                node.url = format!("http://{addr}{HUB}");
                node
            }
            Err(_) => {
                panic!("no \"listening on\" line within {LISTENING_WITHIN:?}:\n{}", node.logs())
            }
        }
    }

    /// `http://addr` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The status of `GET path`; `None` when the node does not answer.
    pub async fn status(&self, path: &str) -> Option<u16> {
        let request = client().get(self.at(path)).timeout(Duration::from_secs(5));
        Some(request.send().await.ok()?.status().as_u16())
    }

    /// Waits until `/readyz` answers 200 (`ready`) or not; how long that took, `None` after
    /// [`READY_WITHIN`].
    pub async fn wait_ready(&self, ready: bool) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < READY_WITHIN {
            // A node that does not answer at all is neither.
            if let Some(status) = self.status("/readyz").await {
                if (status == 200) == ready {
                    return Some(start.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Kills the hub at once (`SIGKILL`), as a crash.
    pub fn kill(&self) {
        let status = Command::new("kill").args(["-9", &self.pid.to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -9 {}", self.pid);
    }

    /// The log so far.
    pub fn logs(&self) -> String {
        let lines = self.lines.lock().expect("no panic while holding the log");
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Closing the lifeline makes the watchdog kill the hub; wait for both to be gone.
        if let Some(mut lifeline) = self.lifeline.take() {
            let _ = lifeline.write_all(b"\n");
        }
        let _ = self.watchdog.wait();
    }
}

/// `ADDR` in "... listening on http://ADDR/.well-known/mercure ...".
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.split_once("listening on http://")?.1;
    rest.split(['/', ' ']).next()?.parse().ok()
}
