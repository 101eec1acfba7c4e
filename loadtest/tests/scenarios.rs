//! End-to-end tests of the `loadtest` binary.
//!
//! The tests that need a hub run every scenario, small, against the real Quicksilver binary named
//! by `QUICKSILVER_BIN` (build it first: `cargo build --release -p quicksilver`); without that
//! variable they print why and pass without doing anything. The others need no hub.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
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
    /// Starts the binary named by `QUICKSILVER_BIN`, or returns `None` (with the reason printed).
    fn start() -> Option<Hub> {
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
            .stdout(Stdio::null())
            .spawn()
            .expect("QUICKSILVER_BIN starts");
        let hub = Hub { child, url: format!("http://{addr}/.well-known/mercure") };
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

/// Runs `loadtest` with `args` plus `--json`, and returns the JSON report.
fn loadtest(name: &str, args: &[&str]) -> Value {
    let json = temp_path(name);
    let output = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(args)
        .arg("--json")
        .arg(&json)
        .args(["--time-limit", "60s", "--timeout", "5s"])
        .output()
        .expect("loadtest runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "loadtest {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{stdout}");
    let text = std::fs::read_to_string(&json).expect("the JSON report was written");
    let _ = std::fs::remove_file(&json);
    serde_json::from_str(&text).expect("valid JSON")
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
    // A port just released: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let hub = format!("http://127.0.0.1:{port}/.well-known/mercure");
    let report = loadtest(
        "refused",
        &["--hub", &hub, "--key", "k", "fanout", "--subscribers", "3", "--updates", "2"],
    );
    assert_eq!(report["results"]["subscribers_connected"]["count"], 0);
    assert_eq!(report["errors"]["subscribe: connect: refused"], 3, "{report:#}");
    assert_eq!(report["errors"]["publish: connect: refused"], 2, "{report:#}");
}
