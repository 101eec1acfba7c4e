//! Test harness: Pebble, Let's Encrypt's test ACME server, with its DNS mock
//! (`pebble-challtestsrv`) answering 127.0.0.1 for every host name.
//!
//! The binaries come from the directory named by `PEBBLE_BIN_DIR` (what `scripts/pebble`
//! prints; `scripts/test` sets it), which must also hold `certs/` (Pebble's own TLS certificate
//! and the CA that signed it). When the variable is unset, the test runs `scripts/pebble`
//! itself, which builds them once per machine. When it is set and the binaries are missing, the
//! test fails: it never skips quietly.
//!
//! No process outlives its test: both run under the watchdog shell of `tests/nats`, which kills
//! them when the test process lets go of their pipe, however it ends.
#![allow(dead_code, missing_docs)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

/// Bounds a wait that would otherwise hang a failing test.
const WITHIN: Duration = Duration::from_secs(60);

/// Runs `$0 "$@"` with its output appended to `$LOG`, prints its pid, and kills it when its
/// stdin closes (the watchdog of `tests/nats`, keeping the output for failure messages).
const WATCHDOG: &str = r#""$0" "$@" >>"$LOG" 2>&1 &
child=$!
echo "$child"
read -r _ || true
kill -9 "$child" 2>/dev/null
wait "$child" 2>/dev/null
exit 0"#;

/// The directory holding `pebble`, `pebble-challtestsrv` and `certs/`.
pub fn bin_dir() -> PathBuf {
    let dir = match std::env::var("PEBBLE_BIN_DIR") {
        Ok(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            eprintln!("PEBBLE_BIN_DIR is unset: running scripts/pebble (builds Pebble once)");
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pebble");
            let output = Command::new(&script)
                .stderr(Stdio::inherit())
                .output()
                .expect("scripts/pebble runs");
            assert!(output.status.success(), "scripts/pebble failed: Pebble is needed");
            PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
        }
    };
    for needed in ["pebble", "pebble-challtestsrv", "certs/pebble.minica.pem"] {
        assert!(
            dir.join(needed).exists(),
            "{} is missing (run scripts/pebble)",
            dir.join(needed).display()
        );
    }
    dir
}

/// One watched process.
struct Running {
    watchdog: Child,
    lifeline: ChildStdin,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.lifeline.write_all(b"\n");
        let _ = self.watchdog.wait();
    }
}

fn spawn(program: &Path, args: &[String], log: &Path, env: &[(&str, &str)]) -> Running {
    let mut watchdog = Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg(program)
        .args(args)
        .env("LOG", log)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("sh runs");
    let stdout = watchdog.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("the watchdog prints the pid");
    let lifeline = watchdog.stdin.take().expect("piped stdin");
    Running { watchdog, lifeline }
}

/// A running Pebble and its DNS mock.
pub struct Pebble {
    /// The ACME directory URL (`https://localhost:PORT/dir`).
    pub directory: String,
    /// The CA of the directory's own TLS certificate (for `acme_ca_root`).
    pub directory_ca: PathBuf,
    management_port: u16,
    log: PathBuf,
    // Dropped (killed) after the fields above are of no use.
    _pebble: Running,
    _dns: Running,
    _dir: tempfile::TempDir,
}

impl Pebble {
    /// Starts Pebble validating TLS-ALPN-01 challenges on `tls_port` (the hub's port), issuing
    /// certificates valid for `validity` seconds; returns once its directory answers.
    pub async fn start(tls_port: u16, validity: u64) -> Self {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("temp dir");
        let (port, management_port, dns_port, dns_management_port) = (
            crate::common::free_port(),
            crate::common::free_port(),
            crate::common::free_port(),
            crate::common::free_port(),
        );
        let certs = bin.join("certs");
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{port}"),
                "managementListenAddress": format!("127.0.0.1:{management_port}"),
                "certificate": certs.join("cert.pem"),
                "privateKey": certs.join("key.pem"),
                "httpPort": crate::common::free_port(),
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
                "keyAlgorithm": "ecdsa",
                "profiles": {
                    "default": { "description": "test", "validityPeriod": validity }
                }
            }
        });
        let config_file = dir.path().join("pebble.json");
        std::fs::write(&config_file, config.to_string()).expect("pebble config written");
        let log = dir.path().join("pebble.log");
        let dns = spawn(
            &bin.join("pebble-challtestsrv"),
            &[
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-dnsserver",
                &format!("127.0.0.1:{dns_port}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-doh",
                "",
                "-management",
                &format!("127.0.0.1:{dns_management_port}"),
            ]
            .map(str::to_owned),
            &dir.path().join("challtestsrv.log"),
            &[],
        );
        let pebble = spawn(
            &bin.join("pebble"),
            &[
                "-config".to_owned(),
                config_file.to_str().expect("utf-8").to_owned(),
                "-dnsserver".to_owned(),
                format!("127.0.0.1:{dns_port}"),
            ],
            &log,
            &[("PEBBLE_VA_NOSLEEP", "1"), ("PEBBLE_WFE_NONCEREJECT", "0")],
        );
        let pebble = Self {
            directory: format!("https://localhost:{port}/dir"),
            directory_ca: certs.join("pebble.minica.pem"),
            management_port,
            log,
            _pebble: pebble,
            _dns: dns,
            _dir: dir,
        };
        let client = pebble.directory_client();
        let deadline = tokio::time::Instant::now() + WITHIN;
        loop {
            let answered = client.get(&pebble.directory).send().await;
            // Any answer over TLS shows Pebble is up (it answers this client's plain GET of
            // the directory 400).
            let last = match answered {
                Ok(_) => break,
                Err(error) => format!("{error:?}"),
            };
            let log = pebble.log_tail();
            assert!(tokio::time::Instant::now() < deadline, "Pebble starts ({last}):\n{log}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        pebble
    }

    /// A client for Pebble's own HTTPS (directory and management).
    fn directory_client(&self) -> reqwest::Client {
        let ca = std::fs::read(&self.directory_ca).expect("Pebble's CA");
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("PEM"))
            .build()
            .expect("a client")
    }

    /// The root Pebble signs certificates with (generated at its start), in PEM.
    pub async fn issuing_root(&self) -> Vec<u8> {
        let url = format!("https://localhost:{}/roots/0", self.management_port);
        let response = self.directory_client().get(url).send().await.expect("Pebble's root");
        assert!(response.status().is_success());
        response.bytes().await.expect("the root").to_vec()
    }

    /// The last lines of Pebble's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// How many certificates Pebble has issued (each logged once).
    pub fn issued(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .matches("Issued certificate serial")
            .count()
    }
}
