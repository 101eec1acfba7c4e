//! End-to-end tests of the real `quicksilver` binary: command line, configuration errors,
//! development mode, bind errors and durability across a hard kill.
//!
//! Every child runs with a cleared environment (so a developer's own `MERCURE_*` variables never
//! leak in) and in a temporary working directory (the default embedded store is created there).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    client, publish_request, publish_to, publisher, subscriber, topics_query, Events, HUB, KEY,
};

const BIN: &str = env!("CARGO_BIN_EXE_quicksilver");
/// How long a child may take to start listening or to exit.
const PATIENCE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Process helpers
// ---------------------------------------------------------------------------------------------

/// The binary with a cleared environment, plain logs, `dir` as working directory and `env`.
fn command(dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    command.env_clear().current_dir(dir).env("NO_COLOR", "1").env("RUST_LOG", "info");
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

/// Removes ANSI escape sequences (`ESC [ ... letter`), in case colours are on anyway.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// What a finished run of the binary produced.
struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

fn read_all(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        strip_ansi(&String::from_utf8_lossy(&bytes))
    })
}

/// Runs the binary to completion; kills it (and fails) if it is still running after PATIENCE,
/// which is what a refused configuration that was wrongly accepted would look like.
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = command(dir, env)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the binary");
    let stdout = read_all(child.stdout.take().expect("stdout pipe"));
    let stderr = read_all(child.stderr.take().expect("stderr pipe"));
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the binary") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = stderr.join().unwrap_or_default();
            panic!("quicksilver {args:?} with {env:?} did not exit within {PATIENCE:?}: {stderr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// A running hub process, killed (SIGKILL) and reaped when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    /// Every stderr line so far, ANSI escapes removed.
    lines: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Spawns the binary on `127.0.0.1:0` and waits for its "listening on http://ADDR" log line.
    fn start(dir: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_with_args(dir, &[], env)
    }

    /// The same, with command-line arguments.
    fn start_with_args(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = command(dir, &[("MERCURE_ADDR", "127.0.0.1:0")]);
        command.args(args);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the binary");
        let stderr = child.stderr.take().expect("stderr pipe");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (sender, receiver) = mpsc::channel();
        {
            // Keeps draining stderr for the life of the child, so that it never blocks on a full
            // pipe.
            let lines = lines.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stderr);
                let mut raw = Vec::new();
                while reader.read_until(b'\n', &mut raw).map(|n| n > 0).unwrap_or(false) {
                    let line = strip_ansi(String::from_utf8_lossy(&raw).trim_end_matches('\n'));
                    raw.clear();
                    lines.lock().expect("lines lock").push(line.clone());
                    let _ = sender.send(line);
                }
            });
        }
        let mut server = Self { child, addr: "127.0.0.1:0".parse().expect("addr"), lines };
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = listening_addr(&line) {
                        server.addr = addr;
                        return server;
                    }
                }
                Err(_) => {
                    let status = server.child.try_wait().ok().flatten();
                    panic!(
                        "no \"listening on\" line within {PATIENCE:?} (exit: {status:?}); stderr:\n{}",
                        server.stderr()
                    );
                }
            }
        }
    }

    fn url(&self) -> String {
        format!("http://{}{HUB}", self.addr)
    }

    fn stderr(&self) -> String {
        self.lines.lock().expect("lines lock").join("\n")
    }

    /// Sends SIGTERM, as a process manager or Kubernetes does to stop a pod.
    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM");
    }

    /// Waits for the process to exit by itself, within `limit`.
    fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the hub") {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within {limit:?}:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process at once (SIGKILL on Unix) and reaps it.
    fn kill(mut self) {
        self.child.kill().expect("kill the hub");
        self.child.wait().expect("reap the hub");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ADDR` in "... listening on http://ADDR/.well-known/mercure ..." (or https://).
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.split_once("listening on http")?.1;
    let rest = rest.strip_prefix("s://").or_else(|| rest.strip_prefix("://"))?;
    let addr = rest.split(['/', ' ']).next()?;
    addr.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

#[test]
fn help_lists_every_setting() {
    let dir = tempfile::tempdir().expect("temp dir");
    for flag in ["--help", "-h"] {
        let output = run(dir.path(), &[flag], &[]);
        assert!(output.status.success(), "{flag}: {}", output.stderr);
        assert!(output.stdout.contains("Usage"), "{flag}: {}", output.stdout);
        for (key, _) in quicksilver::config::KEYS {
            assert!(
                output.stdout.lines().any(|line| line.split_whitespace().next() == Some(key)),
                "{flag} should list `{key}`:\n{}",
                output.stdout
            );
        }
    }
    // Nothing was started, so nothing was created in the working directory.
    assert_eq!(std::fs::read_dir(dir.path()).expect("read dir").count(), 0);
}

#[test]
fn version_prints_the_version() {
    let dir = tempfile::tempdir().expect("temp dir");
    for flag in ["--version", "-V"] {
        let output = run(dir.path(), &[flag], &[]);
        assert!(output.status.success(), "{flag}: {}", output.stderr);
        assert_eq!(output.stdout.trim(), format!("quicksilver {}", env!("CARGO_PKG_VERSION")));
    }
}

#[test]
fn unknown_arguments_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = run(dir.path(), &["--bogus"], &[("MERCURE_ADDR", "127.0.0.1:0")]);
    assert!(!output.status.success());
    assert!(output.stderr.contains("--bogus"), "{}", output.stderr);

    let output = run(dir.path(), &["--config"], &[("MERCURE_ADDR", "127.0.0.1:0")]);
    assert!(!output.status.success());
    assert!(output.stderr.contains("--config"), "{}", output.stderr);
}

// ---------------------------------------------------------------------------------------------
// Configuration errors
// ---------------------------------------------------------------------------------------------

/// Runs the binary with `env` (plus a harmless address) and asserts a failed start whose stderr
/// contains every `expected` fragment.
#[track_caller]
fn assert_refused(args: &[&str], env: &[(&str, &str)], expected: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut env = env.to_vec();
    if !env.iter().any(|(k, _)| *k == "MERCURE_ADDR") {
        env.push(("MERCURE_ADDR", "127.0.0.1:0"));
    }
    let output = run(dir.path(), args, &env);
    assert!(!output.status.success(), "{env:?} should be refused; stderr:\n{}", output.stderr);
    for fragment in expected {
        assert!(
            output.stderr.contains(fragment),
            "stderr should name {fragment:?}:\n{}",
            output.stderr
        );
    }
    output
}

#[test]
fn an_unknown_environment_variable_is_refused() {
    assert_refused(&[], &[("MERCURE_HEARTBEET", "1s")], &["MERCURE_HEARTBEET", "heartbeet"]);
}

#[test]
fn a_bad_heartbeat_is_refused() {
    assert_refused(&[], &[("MERCURE_HEARTBEAT", "soon")], &["heartbeat", "soon"]);
    assert_refused(
        &[],
        &[("MERCURE_JWT_KEY", KEY), ("MERCURE_TRANSPORT", "bolt")],
        &["transport", "bolt"],
    );
}

#[test]
fn an_unknown_key_in_the_config_file_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("hub.toml");
    std::fs::write(&path, "jwt_key = \"k\"\ntransport = \"memory\"\nhearbeat = \"15s\"\n")
        .expect("write config");
    let path = path.to_str().expect("utf-8 path");
    assert_refused(&["--config", path], &[], &["hearbeat", path]);

    // The same file without the typo starts (and is killed at once).
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "jwt_key = \"k\"\ntransport = \"memory\"\n").expect("write config");
    let server =
        Server::start_with_args(dir.path(), &["--config", good.to_str().expect("utf-8 path")], &[]);
    assert!(!server.stderr().contains("token:"), "the file's key is used, no development key");
    drop(server);
}

#[test]
fn a_missing_config_file_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("missing.toml");
    let path = path.to_str().expect("utf-8 path");
    let output =
        assert_refused(&["--config", path], &[("MERCURE_JWT_KEY", KEY)], &["missing.toml"]);
    assert!(output.stderr.trim().len() > 10, "a message: {}", output.stderr);
}

#[test]
fn a_config_error_never_prints_a_secret() {
    const SECRET: &str = "s3cret-publisher-key";
    let dir = tempfile::tempdir().expect("temp dir");
    // (file content, fragments stderr must contain: the line and the setting)
    let cases = [
        (format!("transport = \"memory\"\njwt_key = \"{SECRET}\n"), ["line 2", "`jwt_key`"]),
        (
            format!("transport = \"memory\"\npublisher_jwt_key = {SECRET}\n"),
            ["line 2", "`publisher_jwt_key`"],
        ),
        (
            format!("subscriber_jwt_key = '{SECRET}\nanonymous = true\n"),
            ["line 1", "`subscriber_jwt_key`"],
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("hub{i}.toml"));
        std::fs::write(&path, text).expect("write config");
        let path = path.to_str().expect("utf-8 path");
        let output = assert_refused(&["--config", path], &[], &[expected[0], expected[1], path]);
        assert!(
            !output.stderr.contains("s3cret"),
            "{text:?} leaked the secret:\n{}",
            output.stderr
        );
    }
    // A secret that is valid TOML but not a valid key for its algorithm is not echoed either.
    let output = assert_refused(
        &[],
        &[
            ("MERCURE_PUBLISHER_JWT_KEY", SECRET),
            ("MERCURE_PUBLISHER_JWT_ALG", "RS256"),
            ("MERCURE_ANONYMOUS", "1"),
        ],
        &["publisher_jwt_key"],
    );
    assert!(!output.stderr.contains("s3cret"), "leaked the secret:\n{}", output.stderr);
}

#[test]
fn a_port_in_use_is_refused_naming_addr() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = taken.local_addr().expect("local addr").to_string();
    assert_refused(
        &[],
        &[("MERCURE_ADDR", &addr), ("MERCURE_JWT_KEY", KEY), ("MERCURE_TRANSPORT", "memory")],
        &["addr", &addr],
    );
    drop(taken);
}

#[test]
fn check_config_validates_without_listening_or_connecting() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A port in use and a NATS server nobody runs: start-up would fail or wait on both.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = taken.local_addr().expect("local addr").to_string();
    let settings = [
        ("MERCURE_ADDR", addr.as_str()),
        ("MERCURE_JWT_KEY", KEY),
        ("MERCURE_TRANSPORT", "nats"),
        ("MERCURE_NATS_URL", "nats://127.0.0.1:1"),
        ("MERCURE_DRAIN_TIMEOUT", "20s"),
    ];
    let output = run(dir.path(), &["--check-config"], &settings);
    assert!(output.status.success(), "{}", output.stderr);
    assert_eq!(output.stdout.trim(), "configuration is valid");
    assert!(!output.stderr.contains("warning"), "{}", output.stderr);
    assert_eq!(std::fs::read_dir(dir.path()).expect("read dir").count(), 0);

    // The same checks as start-up: a bad value is named, and the exit status says so.
    let output = assert_refused(
        &["--check-config"],
        &[("MERCURE_JWT_KEY", KEY), ("MERCURE_DRAIN_TIMEOUT", "twenty")],
        &["drain_timeout"],
    );
    assert!(!output.stdout.contains("valid"), "{}", output.stdout);
    assert_refused(&["--check-config"], &[("MERCURE_HEARTBEET", "1s")], &["MERCURE_HEARTBEET"]);

    // A variable of the legacy hub is pointed to its setting.
    let mut legacy = settings.to_vec();
    legacy.extend([("ALLOW_ANONYMOUS", "1"), ("HEARTBEAT_INTERVAL", "15s")]);
    let output = run(dir.path(), &["--check-config"], &legacy);
    assert!(output.status.success(), "{}", output.stderr);
    for advice in
        ["MERCURE_ANONYMOUS (setting `anonymous`)", "MERCURE_HEARTBEAT (setting `heartbeat`)"]
    {
        assert!(output.stderr.contains(advice), "{advice}: {}", output.stderr);
    }

    // No key is valid (development mode) but never what a deployment wants: it says so.
    let output = run(dir.path(), &["--check-config"], &[("MERCURE_ADDR", "127.0.0.1:0")]);
    assert!(output.status.success(), "{}", output.stderr);
    assert!(output.stderr.contains("warning: no JWT key"), "{}", output.stderr);
    assert!(!output.stderr.contains("token"), "printed a token:\n{}", output.stderr);
    drop(taken);
}

#[test]
fn the_open_files_soft_limit_is_raised_to_the_hard_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The hub started as a low default starts it: a soft limit of 256 (the hard one above).
    let mut child = Command::new("sh")
        .args(["-c", "ulimit -Sn 256 && exec \"$0\"", BIN])
        .env_clear()
        .current_dir(dir.path())
        .envs([("NO_COLOR", "1"), ("RUST_LOG", "info"), ("MERCURE_ADDR", "127.0.0.1:0")])
        .envs([("MERCURE_JWT_KEY", KEY), ("MERCURE_TRANSPORT", "memory")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh runs");
    let stderr = BufReader::new(child.stderr.take().expect("piped"));
    let mut seen = String::new();
    for line in stderr.lines().map_while(Result::ok) {
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("listening on") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let line = seen.lines().find(|l| l.contains("open files limit raised")).unwrap_or_default();
    assert!(line.contains("before=256"), "the limit is raised:\n{seen}");
}

#[test]
fn certificate_files_that_cannot_be_used_stop_start_up_naming_the_setting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&key, "not a key").expect("written");
    let (cert, key) = (cert.to_str().expect("utf-8"), key.to_str().expect("utf-8"));
    let env = [("MERCURE_JWT_KEY", KEY), ("MERCURE_CERT_FILE", cert), ("MERCURE_KEY_FILE", key)];
    assert_refused(&[], &env, &["cannot read cert_file", cert]);
    std::fs::write(cert, "not a certificate").expect("written");
    assert_refused(&[], &env, &["cert_file holds no certificate"]);
    assert_refused(&[], &env[..2], &["key_file", "set key_file too"]);
}

#[test]
fn sighup_reloads_the_certificate_files_and_the_hub_carries_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    common::make_certificates(dir.path(), &["hub"], &[]);
    let path = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_owned();
    let (cert, key) = (path("hub.pem"), path("hub.key"));
    let env = [("MERCURE_JWT_KEY", KEY), ("MERCURE_CERT_FILE", &cert), ("MERCURE_KEY_FILE", &key)];
    let server = Server::start(dir.path(), &env);
    assert!(server.stderr().contains("listening on https://"), "{}", server.stderr());
    let status = Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let deadline = Instant::now() + PATIENCE;
    while !server.stderr().contains("SIGHUP: the certificate files are unchanged") {
        assert!(Instant::now() < deadline, "SIGHUP is handled:\n{}", server.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Still running: SIGHUP's default action would have ended the process.
    let mut server = server;
    assert!(server.child.try_wait().expect("poll the hub").is_none(), "{}", server.stderr());
}

// ---------------------------------------------------------------------------------------------
// Development mode
// ---------------------------------------------------------------------------------------------

/// The value after `label` on the first stderr line containing it.
fn value_after(stderr: &str, label: &str) -> String {
    let line = stderr
        .lines()
        .find(|line| line.contains(label))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{stderr}"));
    line.split_once(label).expect("label").1.trim().to_owned()
}

#[tokio::test]
async fn development_mode_prints_working_tokens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), &[]);
    let stderr = server.stderr();
    let publisher_token = value_after(&stderr, "publisher token:");
    let subscriber_token = value_after(&stderr, "subscriber token:");
    for token in [&publisher_token, &subscriber_token] {
        assert_eq!(token.split('.').count(), 3, "a compact JWS: {token:?}");
    }
    let url = server.url();
    assert!(
        stderr.lines().any(|l| l.contains("curl -N")
            && l.contains(&format!("Bearer {subscriber_token}"))
            && l.contains(&url)),
        "a subscribe example with the subscriber token and {url}:\n{stderr}"
    );
    assert!(
        stderr.lines().any(|l| l.contains("curl ")
            && l.contains(&format!("Bearer {publisher_token}"))
            && l.contains("-d topic=")
            && l.contains(&url)),
        "a publish example with the publisher token and {url}:\n{stderr}"
    );
    let topic = "https://example.com/books/1";
    let mut events =
        Events::open_url(&url, &topics_query(&[topic]), Some(&subscriber_token), &[]).await;
    let (status, id) =
        publish_to(&url, &publisher_token, &[("topic", topic), ("data", "hello")]).await;
    assert_eq!(status, 200, "publish with the printed token: {id}");
    assert_eq!(events.next().await.id_and_data(), (id.as_str(), "hello"));
    // The default store was created in the working directory (the hub opens it after logging
    // "listening", so this is checked once an update went through).
    assert!(dir.path().join("quicksilver.redb").exists(), "quicksilver.redb in the working dir");

    // The tokens are signed with a generated key, not with anything predictable.
    let (status, _) = publish_to(&url, &publisher(), &[("topic", topic)]).await;
    assert_eq!(status, 401, "a token signed with another key");
    drop(server);
}

#[tokio::test]
async fn no_token_is_printed_when_a_key_is_set() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server =
        Server::start(dir.path(), &[("MERCURE_JWT_KEY", KEY), ("MERCURE_TRANSPORT", "memory")]);
    // The banner would come before the "listening" line; a publish shows the key is in use.
    let (status, _) =
        publish_to(&server.url(), &publisher(), &[("topic", "https://example.com/k")]).await;
    assert_eq!(status, 200, "the configured key works");
    let stderr = server.stderr();
    for fragment in ["token:", "eyJ", "curl", "development key"] {
        assert!(!stderr.contains(fragment), "unexpected {fragment:?} in:\n{stderr}");
    }
    assert!(!stderr.contains(KEY), "the key itself is never printed:\n{stderr}");
    assert!(!dir.path().join("quicksilver.redb").exists(), "memory transport: no store file");
    drop(server);
}

// ---------------------------------------------------------------------------------------------
// Durability
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn history_survives_a_hard_kill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let history = dir.path().join("h.redb");
    let history = history.to_str().expect("utf-8 path").to_owned();
    let env = [("MERCURE_JWT_KEY", KEY), ("MERCURE_HISTORY_PATH", history.as_str())];
    let topic = "https://example.com/durable";

    let server = Server::start(dir.path(), &env);
    for id in ["a", "b", "c"] {
        let data = format!("update {id}");
        let (status, body) = publish_to(
            &server.url(),
            &publisher(),
            &[("topic", topic), ("id", id), ("data", &data)],
        )
        .await;
        assert_eq!((status, body.as_str()), (200, id));
    }
    server.kill();
    assert!(Path::new(&history).exists(), "the history file is where it was configured");
    assert!(!dir.path().join("quicksilver.redb").exists(), "and not at the default path");

    let server = Server::start(dir.path(), &env);
    let query = topics_query(&[topic]);
    let headers = [("last-event-id", "a")];
    let mut events = Events::open_url(&server.url(), &query, Some(&subscriber()), &headers).await;
    let last_event_id = events.response_headers.get("last-event-id");
    assert_eq!(last_event_id.map(|v| v.as_bytes()), Some(&b"a"[..]));
    assert_eq!(events.next().await.id_and_data(), ("b", "update b"));
    assert_eq!(events.next().await.id_and_data(), ("c", "update c"));
    assert_eq!(events.next_within(Duration::from_millis(300)).await, None, "nothing else");

    // The restarted hub continues live after the replay.
    let (status, _) = publish_to(
        &server.url(),
        &publisher(),
        &[("topic", topic), ("id", "d"), ("data", "update d")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(events.next().await.id_and_data(), ("d", "update d"));
    drop(server);
}

/// SIGTERM: stop accepting, end open streams within `drain_timeout`, exit 0, and lose no update
/// that was acknowledged, even while publishers keep publishing through the signal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_streams_and_keeps_every_acknowledged_update() {
    let dir = tempfile::tempdir().expect("temp dir");
    let history = dir.path().join("h.redb");
    let history = history.to_str().expect("utf-8 path").to_owned();
    let env = [
        ("MERCURE_JWT_KEY", KEY),
        ("MERCURE_HISTORY_PATH", history.as_str()),
        ("MERCURE_DRAIN_TIMEOUT", "1s"),
    ];
    let topic = "https://example.com/drain";
    let mut server = Server::start(dir.path(), &env);
    let url = server.url();
    let query = topics_query(&[topic]);
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(Events::open_url(&url, &query, Some(&subscriber()), &[]).await);
    }

    // The signal comes once some updates were acknowledged, however fast this machine is.
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let publishing = tokio::spawn({
        let url = url.clone();
        let count = count.clone();
        async move {
            let mut acknowledged = Vec::new();
            for i in 0..100_000 {
                let id = format!("p{i}");
                let form = [("topic", topic), ("id", id.as_str())];
                let response = publish_request(&url, &publisher(), &form).send().await;
                match response {
                    Ok(response) if response.status() == 200 => acknowledged.push(id),
                    _ => break,
                }
                count.store(acknowledged.len(), std::sync::atomic::Ordering::Release);
            }
            acknowledged
        }
    });
    let deadline = std::time::Instant::now() + PATIENCE;
    while count.load(std::sync::atomic::Ordering::Acquire) <= 10 {
        assert!(std::time::Instant::now() < deadline, "11 publications within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.terminate();
    // Draining, the node is no longer ready: load balancers send new clients elsewhere.
    let deadline = std::time::Instant::now() + PATIENCE;
    while !server.stderr().contains("draining") {
        assert!(std::time::Instant::now() < deadline, "{}", server.stderr());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ready = client().get(format!("http://{}/readyz", server.addr)).send().await;
    let ready = ready.map(|r| r.status().as_u16());
    assert!(!matches!(ready, Ok(200)), "ready while draining: {ready:?}");
    let status = tokio::task::block_in_place(|| server.wait_exit(PATIENCE));
    assert!(status.success(), "exit status {status:?}\n{}", server.stderr());
    assert!(server.stderr().contains("draining"), "{}", server.stderr());
    assert!(std::net::TcpStream::connect(server.addr).is_err(), "no longer accepting");

    // Every stream ended: after what it had, the body finishes.
    for stream in &mut streams {
        while stream.next_within(Duration::from_secs(5)).await.is_some() {}
    }
    let acknowledged = publishing.await.expect("publisher task");
    assert!(acknowledged.len() > 10, "published through the signal: {}", acknowledged.len());

    let server = Server::start(dir.path(), &env);
    let headers = [("last-event-id", "earliest")];
    let mut replay = Events::open_url(&server.url(), &query, Some(&subscriber()), &headers).await;
    // Every acknowledged update, then perhaps the one in flight at the signal.
    let mut stored = Vec::new();
    while stored.len() < acknowledged.len() {
        stored.push(replay.next().await.id);
    }
    while let Some(event) = replay.next_within(Duration::from_millis(500)).await {
        stored.push(event.id);
    }
    assert_eq!(&stored[..acknowledged.len()], &acknowledged[..], "acknowledged updates survive");
    assert!(stored.len() <= acknowledged.len() + 1, "at most the one in flight was unanswered");
}

// ---------------------------------------------------------------------------------------------
// Observability
// ---------------------------------------------------------------------------------------------

/// The `addr=HOST:PORT` field of the first stderr line containing `message`.
fn logged_addr(server: &Server, message: &str) -> SocketAddr {
    let stderr = server.stderr();
    let line = stderr.lines().find(|l| l.contains(message)).expect("the log line");
    let addr = line.split("addr=").nth(1).expect("an addr field");
    addr.split([' ', '"']).next().expect("address").parse().expect("a socket address")
}

#[tokio::test]
async fn logs_name_the_client_behind_a_trusted_proxy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let env = [
        ("MERCURE_JWT_KEY", KEY),
        ("MERCURE_TRANSPORT", "memory"),
        ("MERCURE_USE_FORWARDED_HEADERS", "true"),
        ("MERCURE_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8"),
        ("RUST_LOG", "quicksilver=debug"),
    ];
    let server = Server::start(dir.path(), &env);
    // The test client is the trusted proxy; its client wrote a first address itself.
    let response = client()
        .get(format!("http://{}/healthz", server.addr))
        .header("x-forwarded-for", "198.51.100.1, 203.0.113.9, 10.0.0.2")
        .send()
        .await
        .expect("healthz");
    assert_eq!(response.status(), 200);
    let deadline = Instant::now() + PATIENCE;
    let logged = |server: &Server| {
        server
            .stderr()
            .lines()
            .any(|line| line.contains("path=/healthz") && line.contains("client=203.0.113.9"))
    };
    while !logged(&server) {
        assert!(Instant::now() < deadline, "the client is logged:\n{}", server.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn plain_http_beside_https_is_redirected() {
    let dir = tempfile::tempdir().expect("temp dir");
    common::make_certificates(dir.path(), &["hub"], &[]);
    let path = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_owned();
    let (cert, key) = (path("hub.pem"), path("hub.key"));
    let env = [
        ("MERCURE_JWT_KEY", KEY),
        ("MERCURE_TRANSPORT", "memory"),
        ("MERCURE_CERT_FILE", &cert),
        ("MERCURE_KEY_FILE", &key),
        ("MERCURE_HTTP_REDIRECT_ADDR", "127.0.0.1:0"),
    ];
    let server = Server::start(dir.path(), &env);
    let redirect_addr = logged_addr(&server, "redirected to HTTPS");
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let response = no_redirects
        .post(format!("http://{redirect_addr}{HUB}?topic=a"))
        .header("host", "hub.example.com")
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 308, "the method and body are kept");
    let expected = format!("https://hub.example.com:{}{HUB}?topic=a", server.addr.port());
    assert_eq!(response.headers()["location"], expected.as_str());
}

#[tokio::test]
async fn metrics_can_move_to_their_own_listener() {
    let dir = tempfile::tempdir().expect("temp dir");
    let env = [
        ("MERCURE_JWT_KEY", KEY),
        ("MERCURE_TRANSPORT", "memory"),
        ("MERCURE_METRICS_ADDR", "127.0.0.1:0"),
    ];
    let server = Server::start(dir.path(), &env);
    let metrics_addr = logged_addr(&server, "metrics on their own listener");
    let response =
        client().get(format!("http://{metrics_addr}/metrics")).send().await.expect("metrics");
    assert_eq!(response.status(), 200);
    assert!(response.text().await.expect("body").contains("mercure_updates_total 0"));
    let response = client().get(format!("http://{}/metrics", server.addr)).send().await;
    assert_eq!(response.expect("hub").status(), 404, "not on the hub's listener any more");
}

#[tokio::test]
async fn json_logs_and_no_token_in_any_log_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let env = [
        ("MERCURE_JWT_KEY", KEY),
        ("MERCURE_TRANSPORT", "memory"),
        ("MERCURE_LOG_FORMAT", "json"),
        ("RUST_LOG", "debug"),
    ];
    let server = Server::start(dir.path(), &env);
    let token = subscriber();
    let url = format!("{}?topic=a&authorization={token}", server.url());
    let response = client().get(&url).send().await.expect("subscribe");
    assert_eq!(response.status(), 200);
    drop(response);
    let (status, _) = publish_to(&server.url(), &publisher(), &[("topic", "a")]).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let stderr = server.stderr();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() > 3, "{stderr}");
    for line in &lines {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }
    assert!(stderr.contains("authorization=REDACTED"), "request logged, redacted:\n{stderr}");
    assert!(!stderr.contains(&token), "the subscriber token leaked into the logs");
    assert!(!stderr.contains(&publisher()), "the publisher token leaked into the logs");
}

/// An OTLP/HTTP endpoint: answers 200 to every request and keeps the bodies.
fn otlp_collector() -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind collector");
    let addr = listener.local_addr().expect("collector addr");
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    std::thread::spawn(move || {
        for connection in listener.incoming().take(20).flatten() {
            let sink = sink.clone();
            std::thread::spawn(move || {
                connection.set_read_timeout(Some(Duration::from_secs(20))).ok();
                let mut reader = BufReader::new(connection.try_clone().expect("clone"));
                let mut writer = connection;
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    let mut request = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        request.push_str(&line);
                        if let Some(value) =
                            line.to_ascii_lowercase().strip_prefix("content-length:")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0u8; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let mut sink = sink.lock().expect("sink");
                    sink.extend_from_slice(request.as_bytes());
                    sink.extend_from_slice(&body);
                    drop(sink);
                    let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\n\
                                  content-length: 0\r\n\r\n";
                    if std::io::Write::write_all(&mut writer, answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp() {
    let (collector, received) = otlp_collector();
    let dir = tempfile::tempdir().expect("temp dir");
    let endpoint = format!("http://{collector}");
    let env = [
        ("MERCURE_JWT_KEY", KEY),
        ("MERCURE_TRANSPORT", "memory"),
        ("MERCURE_DRAIN_TIMEOUT", "0s"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
    ];
    let mut server = Server::start(dir.path(), &env);
    let topic = "https://example.com/traced";
    let query = topics_query(&[topic]);
    let mut events = Events::open_url(&server.url(), &query, Some(&subscriber()), &[]).await;
    let (status, _) = publish_to(&server.url(), &publisher(), &[("topic", topic)]).await;
    assert_eq!(status, 200);
    events.next().await;
    // Exiting flushes the spans still batched.
    server.terminate();
    let status = tokio::task::block_in_place(|| server.wait_exit(PATIENCE));
    assert!(status.success(), "{}", server.stderr());

    let deadline = Instant::now() + PATIENCE;
    loop {
        let body = String::from_utf8_lossy(&received.lock().expect("received")).into_owned();
        let wanted =
            ["POST /v1/traces", "mercure.publish", "mercure.subscribe", "mercure.dispatch"];
        if wanted.iter().all(|w| body.contains(w)) {
            assert!(body.contains("mercure.topic") && body.contains(topic), "attributes exported");
            assert!(body.contains("quicksilver"), "service name");
            break;
        }
        assert!(Instant::now() < deadline, "spans not exported; received:\n{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Attacks on memory
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_that_are_not_read_hold_bounded_memory() {
    // The attack: 30 MB of history, then anonymous subscribers asking for all of it with an
    // unknown Last-Event-ID and reading nothing. Each used to hold up to 256 updates twice (the
    // update and its frame): 20 of them took the hub from 48 MB to about 1 GB. Now they share one
    // byte-bounded page, and each holds at most what its connection buffers.
    let dir = tempfile::tempdir().expect("temp dir");
    let env = [
        ("MERCURE_JWT_KEY", KEY),
        ("MERCURE_ANONYMOUS", "1"),
        // Keep the stalled readers connected for the whole measurement.
        ("MERCURE_DISPATCH_TIMEOUT", "0s"),
        ("MERCURE_WORKERS", "2"),
    ];
    let server = Server::start(dir.path(), &env);
    let data = "x".repeat(100_000);
    for i in 0..300 {
        let id = format!("u{i}");
        let (status, _) = publish_to(
            &server.url(),
            &publisher(),
            &[("topic", "t"), ("id", &id), ("data", &data)],
        )
        .await;
        assert_eq!(status, 200);
    }
    let pid = server.child.id();
    let before = common::process_rss(pid);
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let query = "topic=*&lastEventID=nope";
        stalled.push(common::stalled_reader(server.addr, query, None, &[]).await);
    }
    // Growth is sampled for a while: the old behaviour reached its peak within a second of the
    // connections, whatever the speed of the build.
    let mut peak = before;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(common::process_rss(pid));
    }
    let grown = peak.saturating_sub(before);
    eprintln!(
        "20 stalled replays of 300 updates of 100 kB: RSS {} MiB -> peak {} MiB (+{} MiB)",
        before >> 20,
        peak >> 20,
        grown >> 20
    );
    assert!(grown < 150 << 20, "stalled replays grew the hub by {} MiB", grown >> 20);

    // Meanwhile a subscriber that reads gets the whole history, then live updates.
    let headers = [("Last-Event-ID", "earliest")];
    let query = topics_query(&["t"]);
    let mut reader = Events::open_url(&server.url(), &query, Some(&subscriber()), &headers).await;
    for i in 0..300 {
        let event = reader.next_within(Duration::from_secs(60)).await.expect("replayed");
        assert_eq!(event.id, format!("u{i}"));
    }
    let (status, _) =
        publish_to(&server.url(), &publisher(), &[("topic", "t"), ("id", "live")]).await;
    assert_eq!(status, 200);
    assert_eq!(reader.next().await.id, "live");
    drop(stalled);
}
