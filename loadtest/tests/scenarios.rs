//! End-to-end tests of the `loadtest` binary.
//!
//! The tests that need a hub run every scenario, small, against the real Quicksilver binary named
//! by `QUICKSILVER_BIN` (build it first: `cargo build --release -p quicksilver`); without that
//! variable they print why and pass without doing anything. The HTTPS tests also need `openssl`
//! to make a self-signed certificate, and are skipped the same way without it. The others need no
//! hub.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const KEY: &str = "loadtest-end-to-end-key";

/// A Quicksilver process on an ephemeral port, killed when dropped.
struct Hub {
    child: Child,
    url: String,
}

impl Hub {
    /// Starts the binary named by `QUICKSILVER_BIN` serving plain HTTP, or returns `None` (with
    /// the reason printed).
    fn start() -> Option<Hub> {
        Hub::start_with("http", &[])
    }

    /// Starts the binary named by `QUICKSILVER_BIN` serving HTTPS with the PEM certificate `cert`
    /// and its key `key`, or returns `None` (with the reason printed).
    fn start_https(cert: &Path, key: &Path) -> Option<Hub> {
        let (cert, key) = (cert.to_str().expect("a UTF-8 path"), key.to_str().expect("UTF-8"));
        Hub::start_with("https", &[("MERCURE_CERT_FILE", cert), ("MERCURE_KEY_FILE", key)])
    }

    /// Starts the binary with the settings `env` on top of the common ones; its URL has `scheme`.
    fn start_with(scheme: &str, env: &[(&str, &str)]) -> Option<Hub> {
        let Some(binary) = std::env::var_os("QUICKSILVER_BIN") else {
            eprintln!("skipped: set QUICKSILVER_BIN to a quicksilver binary to run this test");
            return None;
        };
        // Ask the system for a free port, then hand it to the hub.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(binary)
            .env("MERCURE_JWT_KEY", KEY)
            .env("MERCURE_TRANSPORT", "memory")
            .env("MERCURE_ADDR", &addr)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .expect("QUICKSILVER_BIN starts");
        let hub = Hub { child, url: format!("{scheme}://{addr}/.well-known/mercure") };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "the hub did not listen on {addr} within 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(hub)
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory of this test run in the temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = temp_path(name);
        std::fs::create_dir_all(&path).expect("a temporary directory");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a test certificate is marked as.
#[derive(Clone, Copy, PartialEq)]
enum Marked {
    /// `basicConstraints=critical,CA:FALSE`: a server certificate, which rustls accepts.
    Server,
    /// Left as `openssl req -x509` makes it, CA:TRUE, which rustls refuses as a server's.
    Ca,
}

/// Makes a self-signed certificate for 127.0.0.1 and localhost in `dir`, `{name}.pem` with its
/// key `{name}.key`, and returns their paths; `None` (with the reason printed) without openssl.
fn self_signed(dir: &Path, name: &str, marked: Marked) -> Option<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    let mut command = Command::new("openssl");
    command
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"])
        .args(["-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert);
    if marked == Marked::Server {
        command.args(["-addext", "basicConstraints=critical,CA:FALSE"]);
    }
    match command.output() {
        Ok(output) if output.status.success() => Some((cert, key)),
        Ok(output) => panic!("openssl failed: {}", String::from_utf8_lossy(&output.stderr)),
        Err(error) => {
            eprintln!("skipped: openssl cannot run ({error}); it makes the test certificate");
            None
        }
    }
}

/// A `sleep` process to follow, killed and reaped when dropped.
struct Sleeper(Child);

impl Sleeper {
    fn start() -> Self {
        Sleeper(Command::new("sleep").arg("1000").spawn().expect("sleep runs"))
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `loadtest` command with `args`, `--json FILE`, and bounds that keep a broken run short.
fn loadtest_command(args: &[&str], json: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_loadtest"));
    command.args(args).arg("--json").arg(json).args(["--time-limit", "60s", "--timeout", "5s"]);
    command
}

/// Runs `loadtest` with `args` plus `--json`, and returns the JSON report.
fn loadtest(name: &str, args: &[&str]) -> Value {
    let json = temp_path(name);
    let output = loadtest_command(args, &json).output().expect("loadtest runs");
    report_of(args, &output, &json)
}

/// Checks that a `loadtest` run succeeded, and returns its JSON report.
fn report_of(args: &[&str], output: &std::process::Output, json: &Path) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "loadtest {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{stdout}");
    let text = std::fs::read_to_string(json).expect("the JSON report was written");
    let _ = std::fs::remove_file(json);
    serde_json::from_str(&text).expect("valid JSON")
}

/// A loopback port nothing listens on (just released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Accepts one connection on `listener`, failing instead of waiting forever if `run` ends first.
fn accept_from(listener: &TcpListener, run: &mut Child) -> TcpStream {
    listener.set_nonblocking(true).expect("a listener can be made non-blocking");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match listener.accept() {
            Ok((connection, _)) => return connection,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) => panic!("accept failed: {error}"),
        }
        if let Some(status) = run.try_wait().expect("the child can be polled") {
            panic!("loadtest ended ({status}) before connecting");
        }
        assert!(Instant::now() < deadline, "loadtest did not connect within 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The names and pids of the processes of a report, and whether each ended.
fn processes(report: &Value) -> Vec<(String, u64, bool)> {
    let listed = report["processes"].as_array().unwrap_or_else(|| panic!("{report:#}"));
    listed
        .iter()
        .map(|process| {
            let name = process["name"].as_str().unwrap_or_else(|| panic!("{process}"));
            let pid = process["pid"].as_u64().unwrap_or_else(|| panic!("{process}"));
            let ended = process["ended"].as_bool().unwrap_or_else(|| panic!("{process}"));
            (name.to_owned(), pid, ended)
        })
        .collect()
}

/// A file name of this test run in the temporary directory.
fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("loadtest-e2e-{}-{name}", std::process::id()))
}

/// Asserts a complete, clean run: everything connected, delivered once, no error.
fn assert_clean(report: &Value, connected_key: &str) {
    let results = &report["results"];
    assert_eq!(report["timed_out"], false, "{report:#}");
    assert_eq!(results[connected_key]["count"], results[connected_key]["of"], "{report:#}");
    assert_eq!(results["lost"], 0, "{report:#}");
    assert_eq!(results["duplicates"], 0, "{report:#}");
    assert_eq!(results["unexpected"], 0, "{report:#}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report:#}");
}

#[test]
fn every_scenario_against_quicksilver() {
    let Some(hub) = Hub::start() else { return };
    let pid = hub.child.id().to_string();
    let common = ["--hub", hub.url.as_str(), "--key", KEY, "--hub-pid", pid.as_str()];
    let with = |args: &[&'static str]| -> Vec<&str> {
        common.iter().copied().chain(args.iter().copied()).collect()
    };

    let report = loadtest("fanout", &with(&["fanout", "--subscribers", "20", "--updates", "50"]));
    assert_clean(&report, "subscribers_connected");
    assert_eq!(report["results"]["deliveries"]["count"], 1000);
    assert_eq!(report["results"]["out_of_order"], 0);
    assert_eq!(report["processes"][0]["name"], "hub", "{report:#}");
    assert!(report["processes"][0]["rss_after_kib"].as_u64().is_some_and(|kib| kib > 0));

    let report = loadtest("topics", &with(&["topics", "--subscribers", "20", "--updates", "50"]));
    assert_clean(&report, "subscribers_connected");
    assert_eq!(report["results"]["deliveries"]["count"], 50);

    let report = loadtest(
        "templates",
        &with(&["topics", "--subscribers", "20", "--updates", "50", "--templates"]),
    );
    assert_clean(&report, "subscribers_connected");
    assert_eq!(report["results"]["deliveries"]["count"], 50);

    let report = loadtest("idle", &with(&["idle", "--connections", "50", "--hold", "1s"]));
    assert_eq!(report["results"]["connections_opened"]["count"], 50, "{report:#}");
    assert_eq!(report["results"]["closed_during_hold"], 0, "{report:#}");
    assert!(report["results"]["hub_rss_per_connection_kib"].is_number(), "{report:#}");

    let report = loadtest(
        "publish",
        &with(&["publish", "--publishers", "2", "--requests", "200", "--label", "quicksilver"]),
    );
    assert_eq!(report["label"], "quicksilver");
    assert_eq!(report["results"]["requests_ok"]["count"], 200, "{report:#}");
    assert_eq!(report["results"]["publish_latency"]["count"], 200, "{report:#}");

    let report =
        loadtest("reconnect", &with(&["reconnect", "--subscribers", "20", "--history", "40"]));
    assert_clean(&report, "reconnected");
    assert_eq!(report["results"]["replayed"]["count"], 20 * 20);
    assert_eq!(report["results"]["last_event_id_mismatch"], 0);
}

#[test]
fn url_patterns_against_an_anonymous_quicksilver() {
    // Mercure 1.0 subscriptions (match_urlpattern) without a token; updates published with the
    // draft-07 publisher token still reach them.
    let Some(hub) = Hub::start_with("http", &[("MERCURE_ANONYMOUS", "1")]) else { return };
    let pid = hub.child.id().to_string();
    let args = ["--hub", hub.url.as_str(), "--key", KEY, "--hub-pid", pid.as_str(), "--anonymous"];
    let scenario = ["topics", "--subscribers", "20", "--updates", "100", "--urlpatterns"];
    let report = loadtest("urlpatterns", &[&args[..], &scenario].concat());
    assert_clean(&report, "subscribers_connected");
    assert_eq!(report["results"]["deliveries"]["count"], 100, "{report:#}");
    assert_eq!(report["params"]["urlpatterns"], true, "{report:#}");
    assert_eq!(report["params"]["anonymous"], true, "{report:#}");
}

#[test]
fn url_patterns_with_a_minted_token_are_refused_before_running() {
    // The hub would answer 400 (a draft-07 token on a Mercure 1.0 subscription) to every
    // subscriber: the tool says so at once instead. No hub is needed.
    let hub = format!("http://127.0.0.1:{}/.well-known/mercure", closed_port());
    let args = ["--hub", &hub, "--key", "k", "topics", "--subscribers", "3", "--urlpatterns"];
    let json = temp_path("urlpatterns-minted");
    let output = loadtest_command(&args, &json).output().expect("loadtest runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("--urlpatterns") && stderr.contains("--anonymous"), "{stderr}");

    let both = ["--hub", &hub, "--anonymous", "topics", "--templates", "--urlpatterns"];
    let output = loadtest_command(&both, &json).output().expect("loadtest runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}

#[test]
fn following_the_hub_and_other_processes() {
    let Some(hub) = Hub::start() else { return };
    let sleeper = Sleeper::start();
    let (hub_pid, sleeper_pid, own_pid) = (hub.child.id(), sleeper.0.id(), std::process::id());
    // A directory of pid files, as deploy/cluster leaves: the hub's is skipped, being already
    // followed as `hub`.
    let dir = temp_path("pids");
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    std::fs::write(dir.join("hub-1.pid"), format!("{hub_pid}\n")).expect("writable");
    std::fs::write(dir.join("sleeper.pid"), format!("{sleeper_pid}\n")).expect("writable");
    let (hub_arg, own_arg) = (hub_pid.to_string(), format!("tests={own_pid}"));
    let dir_arg = dir.to_string_lossy().into_owned();
    let common = ["--hub", &hub.url, "--key", KEY, "--hub-pid", &hub_arg];
    let follow = ["--follow", &own_arg, "--follow-dir", &dir_arg];
    let args: Vec<&str> = common
        .into_iter()
        .chain(["fanout", "--subscribers", "5", "--updates", "20"])
        .chain(follow)
        .collect();

    let report = loadtest("follow", &args);
    let _ = std::fs::remove_dir_all(&dir);
    assert_clean(&report, "subscribers_connected");
    let loadtest_pid = processes(&report)[3].1;
    assert_eq!(
        processes(&report),
        [
            ("hub".to_owned(), u64::from(hub_pid), false),
            ("tests".to_owned(), u64::from(own_pid), false),
            ("sleeper".to_owned(), u64::from(sleeper_pid), false),
            ("loadtest".to_owned(), loadtest_pid, false),
        ]
    );
    for process in report["processes"].as_array().expect("a list") {
        assert!(process["rss_after_kib"].as_u64().is_some_and(|kib| kib > 0), "{process}");
        assert!(process["cpu_seconds"].as_f64().is_some_and(|cpu| cpu >= 0.0), "{process}");
        assert!(process["cpu_percent"].is_number(), "{process}");
    }
}

#[test]
fn a_followed_process_that_ends_is_reported_not_fatal() {
    // The "hub" is this test: it accepts the one subscription, which comes once the run has read
    // every followed process, then ends the followed process and only then closes the connection.
    // So the process ends during the run whatever the speed of the machine. No hub is needed.
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().expect("bound").port();
    let mut sleeper = Sleeper::start();
    let sleeper_pid = sleeper.0.id();
    let hub = format!("http://127.0.0.1:{port}/.well-known/mercure");
    let follow = format!("sleeper={sleeper_pid}");
    let args = ["--hub", &hub, "--key", "k", "--follow", &follow, "idle"];
    let args = [&args[..], &["--connections", "1", "--hold", "0s"]].concat();
    let json = temp_path("ended");
    let mut run = loadtest_command(&args, &json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("loadtest runs");

    let connection = accept_from(&listener, &mut run);
    sleeper.0.kill().expect("the sleeper can be killed");
    sleeper.0.wait().expect("the sleeper is reaped");
    drop(connection);
    let report = report_of(&args, &run.wait_with_output().expect("loadtest ends"), &json);

    assert_eq!(processes(&report)[0], ("sleeper".to_owned(), u64::from(sleeper_pid), true));
    assert_eq!(report["processes"][0]["cpu_seconds"], Value::Null, "{report:#}");
    assert_eq!(processes(&report)[1].0, "loadtest");
    let ended = format!("process sleeper (pid {sleeper_pid}) ended during the run");
    assert_eq!(report["errors"][ended.as_str()], 1, "{report:#}");
    assert_eq!(report["results"]["connections_opened"]["count"], 0, "{report:#}");
}

#[test]
fn publishing_and_subscribing_on_different_urls() {
    let Some(hub) = Hub::start() else { return };
    // Two subscribe URLs of one hub stand for two nodes of a cluster: the latency machinery and
    // the loss accounting are the same as for two real nodes.
    let url = hub.url.as_str();
    let hubs = ["--key", KEY, "--publish-hub", url, "--subscribe-hub", url, "--subscribe-hub", url];
    let with = |args: &[&'static str]| -> Vec<&str> {
        hubs.iter().copied().chain(args.iter().copied()).collect()
    };

    let report = loadtest("cross", &with(&["fanout", "--subscribers", "20", "--updates", "50"]));
    assert_clean(&report, "subscribers_connected");
    assert_eq!(report["publish_hub"], url);
    assert_eq!(report["subscribe_hubs"], serde_json::json!([url, url]));
    assert_eq!(report["results"]["deliveries"]["count"], 1000);
    assert_eq!(report["results"]["delivery_latency_via_1"]["count"], 500, "{report:#}");
    assert_eq!(report["results"]["delivery_latency_via_2"]["count"], 500, "{report:#}");

    let report = loadtest(
        "cross-topics",
        &with(&["topics", "--subscribers", "20", "--updates", "50", "--seed", "7"]),
    );
    assert_clean(&report, "subscribers_connected");
    assert_eq!(report["results"]["deliveries"]["count"], 50);

    // Every subscriber resumes on the other URL than the one it first used.
    let report = loadtest(
        "cross-reconnect",
        &with(&["reconnect", "--subscribers", "20", "--history", "40"]),
    );
    assert_clean(&report, "reconnected");
    assert_eq!(report["results"]["replayed"]["count"], 20 * 20);
    assert_eq!(report["results"]["last_event_id_mismatch"], 0);

    // A URL where nothing listens gets every other subscriber, and its errors name it.
    let dead = format!("http://127.0.0.1:{}/.well-known/mercure", closed_port());
    let args = ["--key", KEY, "--subscribe-hub", url, "--subscribe-hub", &dead];
    let args = [&args[..], &["idle", "--connections", "10", "--hold", "0s"]].concat();
    let report = loadtest("cross-idle", &args);
    assert_eq!(report["publish_hub"], Value::Null);
    assert_eq!(report["results"]["connections_opened"]["count"], 5, "{report:#}");
    let dead_host = dead.trim_start_matches("http://").split('/').next().expect("a host");
    let refused = format!("subscribe via {dead_host}: connect: refused");
    assert_eq!(report["errors"][refused.as_str()], 5, "{report:#}");
}

#[test]
fn fanout_over_https() {
    let dir = TempDir::new("tls");
    let Some((cert, key)) = self_signed(&dir.0, "hub", Marked::Server) else { return };
    let Some(hub) = Hub::start_https(&cert, &key) else { return };
    assert!(hub.url.starts_with("https://127.0.0.1:"), "{}", hub.url);
    let ca = cert.to_str().expect("a UTF-8 path");
    let args = ["--hub", &hub.url, "--key", KEY, "--tls-ca", ca];
    let args = [&args[..], &["fanout", "--subscribers", "20", "--updates", "20"]].concat();

    let json = temp_path("https-fanout");
    let output = loadtest_command(&args, &json).output().expect("loadtest runs");
    let report = report_of(&args, &output, &json);
    assert_clean(&report, "subscribers_connected");
    assert_eq!(report["results"]["deliveries"]["count"], 20 * 20, "{report:#}");
    assert_eq!(report["results"]["out_of_order"], 0, "{report:#}");
    assert_eq!(report["publish_hub"], hub.url.as_str());
    // The table names the scheme too.
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.lines().any(|line| line.starts_with("hub ") && line.contains(&hub.url)));
}

#[test]
fn https_with_a_certificate_not_trusted_is_a_clear_error() {
    let dir = TempDir::new("tls-untrusted");
    let Some((cert, key)) = self_signed(&dir.0, "hub", Marked::Server) else { return };
    let Some((other, _)) = self_signed(&dir.0, "other", Marked::Server) else { return };
    let Some((ca_cert, ca_key)) = self_signed(&dir.0, "ca", Marked::Ca) else { return };
    let Some(hub) = Hub::start_https(&cert, &key) else { return };

    // Without --tls-ca the run does not start, and says what is missing.
    let scenario = ["fanout", "--subscribers", "3", "--updates", "2"];
    let args = [&["--hub", hub.url.as_str(), "--key", KEY][..], &scenario].concat();
    let json = temp_path("https-no-ca");
    let output = loadtest_command(&args, &json).output().expect("loadtest runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("--hub {}: ", hub.url)), "{stderr}");
    assert!(stderr.contains("needs --tls-ca PATH"), "{stderr}");

    // With another certificate to trust, every handshake fails, each counted under a name that
    // says why; nothing is delivered.
    let other = other.to_str().expect("a UTF-8 path");
    let args = [&["--hub", hub.url.as_str(), "--key", KEY, "--tls-ca", other][..], &scenario];
    let report = loadtest("https-other-ca", &args.concat());
    let untrusted = "TLS: the hub's certificate is not signed by a --tls-ca certificate";
    assert_eq!(report["results"]["subscribers_connected"]["count"], 0, "{report:#}");
    assert_eq!(report["errors"][format!("subscribe: {untrusted}")], 3, "{report:#}");
    assert_eq!(report["errors"][format!("publish: {untrusted}")], 2, "{report:#}");

    // A hub serving a CA:TRUE certificate is refused even when it is the one trusted, and the
    // error says so.
    let Some(ca_hub) = Hub::start_https(&ca_cert, &ca_key) else { return };
    let ca = ca_cert.to_str().expect("a UTF-8 path");
    let args = [&["--hub", ca_hub.url.as_str(), "--key", KEY, "--tls-ca", ca][..], &scenario];
    let report = loadtest("https-ca-as-server", &args.concat());
    let refused = "TLS: the hub's certificate is a CA certificate (CA:TRUE), refused as a server \
                   certificate";
    assert_eq!(report["results"]["subscribers_connected"]["count"], 0, "{report:#}");
    assert_eq!(report["errors"][format!("subscribe: {refused}")], 3, "{report:#}");
}

#[test]
fn help_documents_every_scenario() {
    let output =
        Command::new(env!("CARGO_BIN_EXE_loadtest")).arg("--help").output().expect("loadtest runs");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for scenario in ["fanout", "topics", "idle", "publish", "reconnect"] {
        assert!(help.contains(scenario), "--help does not mention {scenario}:\n{help}");
        let output = Command::new(env!("CARGO_BIN_EXE_loadtest"))
            .args([scenario, "--help"])
            .output()
            .expect("loadtest runs");
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(help.contains("Measures"), "{scenario} --help says nothing of what it measures");
        assert!(help.contains("[default: "), "{scenario} --help shows no defaults");
    }
}

#[test]
fn a_hub_that_is_not_there_is_counted_not_fatal() {
    let hub = format!("http://127.0.0.1:{}/.well-known/mercure", closed_port());
    let report = loadtest(
        "refused",
        &["--hub", &hub, "--key", "k", "fanout", "--subscribers", "3", "--updates", "2"],
    );
    assert_eq!(report["results"]["subscribers_connected"]["count"], 0);
    assert_eq!(report["errors"]["subscribe: connect: refused"], 3, "{report:#}");
    assert_eq!(report["errors"]["publish: connect: refused"], 2, "{report:#}");
}

#[test]
fn soak_against_quicksilver() {
    // A few seconds of churn: the run's structure and its delivery guarantees, never its timing
    // or memory figures (CI machines are slow and noisy).
    let Some(hub) = Hub::start() else { return };
    let pid = hub.child.id().to_string();
    let plot = temp_path("soak.svg");
    let plot_arg = plot.to_string_lossy().into_owned();
    let scenario = "soak --duration 4s --subscribers 10 --hold-min 500ms --hold-max 2s \
                    --witnesses 3 --topics 4 --rate 50 --sample-every 1s --reference 1s \
                    --drain 5s --settle 5s --grace 200ms";
    let common = ["--hub", hub.url.as_str(), "--key", KEY, "--hub-pid", pid.as_str()];
    let args: Vec<&str> = common
        .into_iter()
        .chain(scenario.split_whitespace())
        .chain(["--plot", plot_arg.as_str()])
        .collect();
    let report = loadtest("soak", &args);
    let results = &report["results"];
    assert_eq!(report["timed_out"], false, "{report:#}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report:#}");
    assert_eq!(results["witnesses_connected"]["count"], 3, "{report:#}");
    // Every acknowledged update reaches every witness, exactly once.
    let published = results["updates_published"]["count"].as_u64().expect("a count");
    assert!(published > 0, "{report:#}");
    assert_eq!(results["publish_failures"], 0, "{report:#}");
    assert_eq!(results["witness_deliveries"]["of"], published * 3, "{report:#}");
    assert_eq!(results["witness_deliveries"]["count"], published * 3, "{report:#}");
    assert_eq!(results["witness_lost"], 0, "{report:#}");
    assert_eq!(results["witness_duplicates"], 0, "{report:#}");
    assert_eq!(results["witness_unexpected"], 0, "{report:#}");
    // Churning subscribers: only their own topic, once each; what was due is counted.
    assert!(results["sessions_opened"].as_u64().is_some_and(|sessions| sessions >= 10));
    assert_eq!(results["churn_unexpected"], 0, "{report:#}");
    assert_eq!(results["churn_duplicates"], 0, "{report:#}");
    let due = &results["churn_deliveries"];
    assert!(due["of"].as_u64().is_some_and(|of| of > 0), "{report:#}");
    assert!(due["count"].as_u64() <= due["of"].as_u64(), "{report:#}");
    assert_eq!(
        results["churn_lost"].as_u64(),
        due["of"].as_u64().zip(due["count"].as_u64()).map(|(of, count)| of - count),
        "{report:#}"
    );
    // The hub was read: memory, open files, and tasks from its metrics page.
    for key in ["hub_rss_baseline_kib", "hub_rss_reference_kib", "hub_rss_end_kib", "hub_rss_ratio"]
    {
        assert!(results[key].is_number(), "{key}: {report:#}");
    }
    let verdict = results["hub_rss_flat"].as_str().expect("a verdict");
    assert!(verdict.starts_with("pass") || verdict.starts_with("FAIL"), "{report:#}");
    for key in ["hub_fds_baseline", "hub_fds_end", "hub_fds_after_settle", "hub_fds_leaked"] {
        assert!(results[key].is_u64(), "{key}: {report:#}");
    }
    for key in ["hub_tasks_baseline", "hub_tasks_end", "hub_tasks_after_settle", "hub_tasks_leaked"]
    {
        assert!(results[key].is_u64(), "{key}: {report:#}");
    }
    assert_eq!(results["hub_subscribers_after_settle"], 0, "{report:#}");
    assert!(results["hub_history_end"].is_u64(), "{report:#}");
    let series: Vec<&str> = report["series"]
        .as_array()
        .unwrap_or_else(|| panic!("{report:#}"))
        .iter()
        .filter_map(|series| series["name"].as_str())
        .collect();
    for name in ["hub RSS", "hub open files", "hub tasks", "hub subscribers connected"] {
        assert!(series.contains(&name), "{name} missing from {series:?}");
    }
    let svg = std::fs::read_to_string(&plot).expect("the plot was written");
    let _ = std::fs::remove_file(&plot);
    assert!(svg.starts_with("<svg") && svg.contains("hub RSS"), "{svg:.200}");

    // A soak longer than the time limit allows is refused before it starts.
    let json = temp_path("soak-too-long");
    let too_long = ["--hub", hub.url.as_str(), "--key", KEY, "soak", "--duration", "10m"];
    let output = loadtest_command(&too_long, &json).output().expect("loadtest runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("--time-limit"), "{stderr}");
}

#[test]
fn overload_against_quicksilver() {
    // Tiny phases: every phase is reported, every request is accounted for, and deliveries match
    // acknowledged publications when no stream was cut. No figure of time or rate is checked.
    let Some(hub) = Hub::start() else { return };
    let pid = hub.child.id().to_string();
    let common = ["--hub", hub.url.as_str(), "--key", KEY, "--hub-pid", pid.as_str()];
    let phases = "overload --subscribers 5 --calibrate 1s --publishers 2 --duration 2s \
                  --max-in-flight 16 --probe-rate 20 --baseline 1s --recovery 2s --drain 10s";
    let phases: Vec<&str> = phases.split_whitespace().collect();
    let report = loadtest("overload", &[&common[..], &phases].concat());
    let results = &report["results"];
    assert_eq!(report["timed_out"], false, "{report:#}");
    assert_eq!(results["subscribers_connected"]["count"], 5, "{report:#}");
    let sustainable = results["sustainable_rate"].as_f64().expect("a rate");
    assert!(sustainable > 0.0, "{report:#}");
    let offered = results["offered_rate"].as_f64().expect("a rate");
    assert!((offered - 2.0 * sustainable).abs() < 0.01 * offered + 0.01, "{report:#}");
    let intact = results["streams_closed_early"] == 0;
    for phase in ["calibration", "baseline", "overload", "recovery"] {
        let count = |what: &str| {
            results[format!("{phase}_{what}")]
                .as_u64()
                .unwrap_or_else(|| panic!("{phase}_{what}: {report:#}"))
        };
        let answered = count("answered_200")
            + count("answered_503")
            + count("answered_429")
            + count("answered_other")
            + count("errors");
        assert_eq!(answered, count("requests_sent"), "{phase}: {report:#}");
        assert!(count("requests_sent") > 0, "{phase}: {report:#}");
        let deliveries = &results[format!("{phase}_deliveries")];
        assert_eq!(deliveries["of"].as_u64(), Some(count("answered_200") * 5), "{report:#}");
        if intact {
            assert_eq!(deliveries["count"], deliveries["of"], "{phase}: {report:#}");
        }
    }
    assert_eq!(results["duplicates"], 0, "{report:#}");
    assert!(results.get("recovered_after_seconds").is_some(), "{report:#}");

    // With the sustainable rate given, there is no calibration.
    let given = "overload --subscribers 2 --sustainable-rate 40 --duration 1s --probe-rate 10 \
                 --baseline 1s --recovery 1s";
    let given: Vec<&str> = given.split_whitespace().collect();
    let report = loadtest("overload-given", &[&common[..], &given].concat());
    let results = &report["results"];
    assert_eq!(results["sustainable_rate"], 40.0, "{report:#}");
    assert_eq!(results["offered_rate"], 80.0, "{report:#}");
    assert!(results.get("calibration_requests_sent").is_none(), "{report:#}");
    assert!(results["overload_requests_sent"].as_u64().is_some_and(|sent| sent > 0));
}
