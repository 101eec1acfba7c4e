//! Test harness: a real NATS JetStream cluster on loopback.
//!
//! [`NatsCluster::start`] runs `n` nats-server processes (the binary `scripts/nats-server`
//! provides, named by `NATS_SERVER_BIN`, else `nats-server` on PATH), clustered through routes,
//! each with JetStream, its own store directory and ephemeral ports, and waits until every one
//! reports JetStream healthy. Servers can be killed (`SIGKILL`) and restarted on the same ports and
//! store, as a crashed node comes back, or stopped (`SIGSTOP`) and continued (`SIGCONT`), as a
//! server that silently stops answering while its sockets stay open.
//!
//! No server outlives its test: each runs under a small shell that holds a pipe from the test
//! process and kills the server when that pipe closes, which happens when the cluster is dropped
//! and also when the test process itself dies, however it dies. `SIGKILL` ends a stopped process
//! too, so a server left stopped by a failing test is gone as well.
#![allow(dead_code, missing_docs)]

pub mod node;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

/// How long a cluster may take to report itself healthy (on a loaded 2-core machine, a few
/// seconds; the limit only bounds a test that would otherwise hang).
const HEALTHY_WITHIN: Duration = Duration::from_secs(60);

/// Runs the program given as `$0` with the arguments given (its standard output discarded, its
/// standard error the shell's), prints its pid, then waits for its stdin to close and kills the
/// program: a server or a hub dies with the test process, however that dies.
pub const WATCHDOG: &str = r#""$0" "$@" >/dev/null &
child=$!
echo "$child"
read -r _ || true
kill -9 "$child" 2>/dev/null
wait "$child" 2>/dev/null
exit 0"#;

/// The nats-server binary to run.
pub fn server_binary() -> String {
    std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".to_owned())
}

/// One server of the cluster.
pub struct NatsServer {
    pub name: String,
    pub client_port: u16,
    pub cluster_port: u16,
    pub monitor_port: u16,
    store: PathBuf,
    log: PathBuf,
    running: Option<Running>,
}

/// A running server: its watchdog shell, the pipe that keeps it alive, and the server's pid.
struct Running {
    watchdog: Child,
    lifeline: ChildStdin,
    pid: u32,
}

impl Drop for Running {
    fn drop(&mut self) {
        // Closing the lifeline makes the watchdog kill the server; wait for both to be gone.
        let _ = self.lifeline.write_all(b"\n");
        let _ = self.watchdog.wait();
    }
}

impl NatsServer {
    /// `nats://127.0.0.1:port` for clients.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Waits until the server's log holds `fragment` (for example a refused client's
    /// `authentication error`); panics with the log's tail after a minute.
    pub async fn logged(&self, fragment: &str) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        while !std::fs::read_to_string(&self.log).unwrap_or_default().contains(fragment) {
            let tail = self.log_tail();
            assert!(tokio::time::Instant::now() < deadline, "{fragment:?} logged:\n{tail}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Starts the server; `routes` empty for a server alone.
    fn spawn(&mut self, routes: &str, extra: &[String]) {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(WATCHDOG)
            .arg(server_binary())
            .args(["--jetstream", "--store_dir"])
            .arg(&self.store)
            .args(["--name", &self.name, "--addr", "127.0.0.1"])
            .args(["--port", &self.client_port.to_string()])
            .args(["--http_port", &self.monitor_port.to_string()]);
        if !routes.is_empty() {
            command
                .args(["--cluster_name", "quicksilver-test"])
                .args(["--cluster", &format!("nats://127.0.0.1:{}", self.cluster_port)])
                .args(["--routes", routes]);
        }
        let mut watchdog = command
            .args(extra)
            .arg("--log")
            .arg(&self.log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sh runs");
        let stdout = watchdog.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("the watchdog prints the pid");
        let pid = line.trim().parse().expect("a pid");
        let lifeline = watchdog.stdin.take().expect("piped stdin");
        self.running = Some(Running { watchdog, lifeline, pid });
    }

    /// `GET` of `path` on the monitoring port; `None` when the server does not answer.
    async fn monitor(&self, path: &str) -> Option<reqwest::Response> {
        let url = format!("http://127.0.0.1:{}{path}", self.monitor_port);
        reqwest::Client::new().get(url).timeout(Duration::from_secs(2)).send().await.ok()
    }

    /// Whether the server answers its health check with JetStream healthy.
    pub async fn is_healthy(&self) -> bool {
        self.monitor("/healthz").await.is_some_and(|r| r.status().is_success())
    }

    /// The server's JetStream report (`/jsz`).
    pub async fn jsz(&self) -> Option<serde_json::Value> {
        let response = self.monitor("/jsz").await?;
        serde_json::from_slice(&response.bytes().await.ok()?).ok()
    }

    /// What this server reports of stream `name` (`/jsz?streams=true` lists the streams it holds
    /// a replica of: `state`, `cluster`), if it holds one.
    pub async fn stream_detail(&self, name: &str) -> Option<serde_json::Value> {
        let response = self.monitor("/jsz?streams=true").await?;
        let jsz: serde_json::Value = serde_json::from_slice(&response.bytes().await.ok()?).ok()?;
        let accounts = jsz.get("account_details")?.as_array()?;
        let stream = accounts
            .iter()
            .filter_map(|account| account.get("stream_detail")?.as_array())
            .flatten()
            .find(|stream| stream.get("name").and_then(|n| n.as_str()) == Some(name))?;
        Some(stream.clone())
    }

    /// The leader of stream `name` as this server reports it, if it holds a replica and knows a
    /// leader.
    pub async fn stream_leader(&self, name: &str) -> Option<String> {
        let stream = self.stream_detail(name).await?;
        let leader = stream.pointer("/cluster/leader")?.as_str()?;
        (!leader.is_empty()).then(|| leader.to_owned())
    }

    /// The name of the JetStream meta leader this server knows, if any.
    pub async fn meta_leader(&self) -> Option<String> {
        let jsz = self.jsz().await?;
        let leader = jsz.pointer("/meta_cluster/leader")?.as_str()?;
        (!leader.is_empty()).then(|| leader.to_owned())
    }
}

/// A JetStream cluster of servers on loopback, stopped when dropped.
pub struct NatsCluster {
    pub servers: Vec<NatsServer>,
    routes: String,
    /// More arguments for every server (authentication, say).
    extra: Vec<String>,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `size` clustered servers and waits until each reports JetStream healthy.
    pub async fn start(size: usize) -> Self {
        Self::start_with(size, &[]).await
    }

    /// [`Self::start`], each server with the `extra` arguments; a single server runs alone.
    pub async fn start_with(size: usize, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let servers: Vec<NatsServer> = (1..=size)
            .map(|n| NatsServer {
                name: format!("n{n}"),
                client_port: crate::common::free_port(),
                cluster_port: crate::common::free_port(),
                monitor_port: crate::common::free_port(),
                store: dir.path().join(format!("n{n}")),
                log: dir.path().join(format!("n{n}.log")),
                running: None,
            })
            .collect();
        let routes = if size > 1 {
            servers
                .iter()
                .map(|s| format!("nats://127.0.0.1:{}", s.cluster_port))
                .collect::<Vec<_>>()
                .join(",")
        } else {
            String::new()
        };
        let extra = extra.iter().map(|a| a.to_string()).collect();
        let mut cluster = Self { servers, routes, extra, _dir: dir };
        for index in 0..size {
            cluster.spawn(index);
        }
        cluster.wait_healthy().await;
        cluster
    }

    fn spawn(&mut self, index: usize) {
        let (routes, extra) = (self.routes.clone(), self.extra.clone());
        self.servers[index].spawn(&routes, &extra);
    }

    /// The client URLs of every server, comma-separated (the hub's `nats_url`).
    pub fn urls(&self) -> String {
        self.servers.iter().map(NatsServer::url).collect::<Vec<_>>().join(",")
    }

    /// Kills server `index` at once (`SIGKILL`), as a crash.
    pub fn kill(&mut self, index: usize) {
        let Some(running) = self.servers[index].running.as_ref() else { return };
        let status = Command::new("kill").args(["-9", &running.pid.to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -9 {}", running.pid);
        self.servers[index].running = None;
    }

    /// Stops server `index` (`SIGSTOP`): its sockets stay open but it answers nothing, as a
    /// server that hangs or a host that vanished without closing its connections.
    pub fn pause(&mut self, index: usize) {
        self.signal(index, "-STOP");
    }

    /// Lets server `index` go on after [`Self::pause`] (`SIGCONT`).
    pub fn resume(&mut self, index: usize) {
        self.signal(index, "-CONT");
    }

    fn signal(&self, index: usize, signal: &str) {
        let running = self.servers[index].running.as_ref().expect("a running server");
        let status = Command::new("kill").args([signal, &running.pid.to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill {signal} {}", running.pid);
    }

    /// Starts every killed server again, all before waiting, since a JetStream cluster is only
    /// healthy again once a majority is back; then waits until the whole cluster is healthy.
    pub async fn restart_all(&mut self) {
        for index in 0..self.servers.len() {
            if self.servers[index].running.is_none() {
                self.spawn(index);
            }
        }
        self.wait_healthy().await;
    }

    /// The leader of stream `name`, once every running server holding a replica names the same
    /// running server; panics after [`HEALTHY_WITHIN`].
    pub async fn stream_leader(&self, name: &str) -> String {
        let deadline = tokio::time::Instant::now() + HEALTHY_WITHIN;
        loop {
            let mut seen = Vec::new();
            for server in self.servers.iter().filter(|s| s.running.is_some()) {
                seen.push(server.stream_leader(name).await);
            }
            let named: Vec<&String> = seen.iter().flatten().collect();
            if let Some(first) = named.first() {
                let running = self.servers.iter().any(|s| &&s.name == first && s.running.is_some());
                if running && named.iter().all(|n| n == first) {
                    return (*first).clone();
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "no leader of {name}: {seen:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts server `index` again, on its ports and with its store, and waits until the whole
    /// cluster is healthy.
    pub async fn restart(&mut self, index: usize) {
        assert!(self.servers[index].running.is_none(), "{} is running", self.servers[index].name);
        self.spawn(index);
        self.wait_healthy().await;
    }

    /// Waits until every running server reports JetStream healthy; panics with their logs after
    /// [`HEALTHY_WITHIN`].
    pub async fn wait_healthy(&self) {
        let deadline = tokio::time::Instant::now() + HEALTHY_WITHIN;
        loop {
            let mut healthy = true;
            for server in self.servers.iter().filter(|s| s.running.is_some()) {
                healthy &= server.is_healthy().await;
            }
            if healthy {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let logs: Vec<String> = self
                    .servers
                    .iter()
                    .map(|s| format!("--- {} ---\n{}", s.name, s.log_tail()))
                    .collect();
                panic!("the NATS cluster is not healthy:\n{}", logs.join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The meta leader as every running server sees it, once they agree on one; panics after
    /// [`HEALTHY_WITHIN`].
    pub async fn agreed_meta_leader(&self) -> String {
        let deadline = tokio::time::Instant::now() + HEALTHY_WITHIN;
        loop {
            let mut seen = Vec::new();
            for server in self.servers.iter().filter(|s| s.running.is_some()) {
                seen.push(server.meta_leader().await);
            }
            if let Some(Some(first)) = seen.first() {
                let running: Vec<&str> = self
                    .servers
                    .iter()
                    .filter(|s| s.running.is_some())
                    .map(|s| s.name.as_str())
                    .collect();
                if seen.iter().all(|s| s.as_ref() == Some(first))
                    && running.contains(&first.as_str())
                {
                    return first.clone();
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "no agreed meta leader: {seen:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The index of the server named `name`.
    pub fn index_of(&self, name: &str) -> usize {
        self.servers.iter().position(|s| s.name == name).expect("a server of this cluster")
    }
}
