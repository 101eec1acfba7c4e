//! The local cluster of `deploy/cluster`, as a user starts it: three NATS servers, two hub
//! processes (the real binary) and HAProxy. Subscribers connecting through the load balancer land
//! on different nodes, and a publication through it reaches them all. `down` leaves nothing
//! running, and runs even when an assertion fails.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// The hub binary for the script: the one `scripts/test` builds, else cargo's.
fn hub_binary() -> String {
    std::env::var("QUICKSILVER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_quicksilver").into())
}

/// Every port the script takes for a load balancer on `base`.
fn ports(base: u16, nodes: u16) -> Vec<u16> {
    let mut ports: Vec<u16> = (0..=nodes).map(|n| base + n).collect();
    for n in 1..=3 {
        ports.extend([base + 100 + n, base + 110 + n, base + 120 + n]);
    }
    ports
}

/// A base port whose whole range is free now (below the kernel's ephemeral range).
fn free_base(nodes: u16) -> u16 {
    let free =
        |base: u16| ports(base, nodes).iter().all(|&p| TcpListener::bind(("127.0.0.1", p)).is_ok());
    (20_000..32_000).step_by(200).find(|&base| free(base)).expect("a free range of ports")
}

/// The running cluster; `deploy/cluster down` when dropped.
struct Cluster {
    dir: PathBuf,
    output: String,
}

impl Cluster {
    fn up(dir: &Path, port: u16, nodes: u16) -> Self {
        let output = Command::new("deploy/cluster")
            .args(["up", "--nodes", &nodes.to_string(), "--port", &port.to_string(), "--dir"])
            .arg(dir)
            .env("QUICKSILVER_BIN", hub_binary())
            // The hubs inherit the environment: a short drain keeps `down` quick.
            .env("MERCURE_DRAIN_TIMEOUT", "1s")
            .output()
            .expect("deploy/cluster runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let cluster = Self { dir: dir.to_path_buf(), output: stdout };
        assert!(
            output.status.success(),
            "deploy/cluster up failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        cluster
    }

    /// The value printed after `label:`.
    fn printed(&self, label: &str) -> String {
        let line = self.output.lines().find(|l| l.trim_start().starts_with(label));
        let line = line.unwrap_or_else(|| panic!("no {label} in:\n{}", self.output));
        line.split_once(':').map(|(_, value)| value.trim().to_owned()).expect("label: value")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("deploy/cluster").arg("down").arg("--dir").arg(&self.dir).status();
    }
}

/// `mercure_subscribers_connected` on the node at `base_url`.
async fn connected(base_url: &str) -> String {
    let text = client().get(format!("{base_url}/metrics")).send().await.expect("metrics");
    let text = text.text().await.expect("metrics text");
    let line = text.lines().find_map(|l| l.strip_prefix("mercure_subscribers_connected "));
    line.expect("the gauge").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_cluster_balances_subscribers_and_delivers_everywhere() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let base = free_base(2);
    let all_ports = ports(base, 2);
    {
        let cluster = Cluster::up(&dir.path().join("cluster"), base, 2);
        let url = cluster.printed("hub URL");
        let publisher = cluster.printed("publisher token");
        let subscriber = cluster.printed("subscriber token");
        assert_eq!(url, format!("http://127.0.0.1:{base}/.well-known/mercure"));

        let query = topics_query(&["https://example.com/demo"]);
        let mut first = Events::open_url(&url, &query, Some(&subscriber), &[]).await;
        let mut second = Events::open_url(&url, &query, Some(&subscriber), &[]).await;
        let nodes =
            [format!("http://127.0.0.1:{}", base + 1), format!("http://127.0.0.1:{}", base + 2)];
        assert_eq!(
            [connected(&nodes[0]).await, connected(&nodes[1]).await],
            ["1", "1"],
            "least connections: one subscriber on each node"
        );

        for n in 0..4 {
            let id = format!("demo-{n}");
            let form = [("topic", "https://example.com/demo"), ("id", id.as_str())];
            let (status, body) = publish_to(&url, &publisher, &form).await;
            assert_eq!((status, body.as_str()), (200, id.as_str()));
        }
        for events in [&mut first, &mut second] {
            for n in 0..4 {
                assert_eq!(events.next().await.id, format!("demo-{n}"));
            }
        }
    }
    // Dropped: `down` ran.
    for port in all_ports {
        assert!(TcpListener::bind(("127.0.0.1", port)).is_ok(), "port {port} is free again");
    }
}
