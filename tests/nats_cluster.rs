//! The NATS cluster the cluster tests run on: three real nats-server processes with JetStream,
//! clustered on loopback (see `tests/nats/mod.rs`). This checks the harness itself, so that a
//! failure of the hub's cluster tests is never the harness's: the cluster forms, loses its meta
//! leader to a crash and elects another, takes the crashed server back, and leaves no process
//! behind.

mod common;
mod nats;

use nats::{server_binary, NatsCluster};

#[test]
fn the_pinned_server_is_recent_enough() {
    let output = std::process::Command::new(server_binary())
        .arg("--version")
        .output()
        .expect("nats-server runs (scripts/test installs it: see scripts/nats-server)");
    let version = String::from_utf8_lossy(&output.stdout);
    let numbers: Vec<u32> = version
        .trim()
        .trim_start_matches("nats-server: v")
        .split('.')
        .filter_map(|part| part.parse().ok())
        .collect();
    assert!(numbers.as_slice() >= [2, 11].as_slice(), "{version}: 2.11 or later is needed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_server_cluster_survives_a_crash_of_its_meta_leader() {
    let mut cluster = NatsCluster::start(3).await;
    let leader = cluster.agreed_meta_leader().await;
    let crashed = cluster.index_of(&leader);
    let ports_before: Vec<u16> = cluster.servers.iter().map(|s| s.client_port).collect();

    cluster.kill(crashed);
    let elected = cluster.agreed_meta_leader().await;
    assert_ne!(elected, leader, "the two survivors elect another meta leader");

    cluster.restart(crashed).await;
    let ports: Vec<u16> = cluster.servers.iter().map(|s| s.client_port).collect();
    assert_eq!(ports, ports_before, "back on the same ports");
    assert!(cluster.servers[crashed].is_healthy().await, "and healthy");
    let urls = cluster.urls();
    assert_eq!(urls.split(',').count(), 3, "{urls}");

    let monitors: Vec<u16> = cluster.servers.iter().map(|s| s.monitor_port).collect();
    drop(cluster);
    for port in monitors {
        let gone = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err();
        assert!(gone, "no server is left on port {port} once the cluster is dropped");
    }
}
