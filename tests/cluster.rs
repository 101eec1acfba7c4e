//! Cluster mode: hub nodes on `transport = nats` over a real three-server JetStream cluster
//! (`tests/nats/mod.rs`). A publication on any node reaches the subscribers of every node, in one
//! order, and a subscriber resumes on any node with its `Last-Event-ID`, also right after the
//! update was acknowledged on another node, and on a node started after the updates were
//! published.

mod common;
mod nats;

use std::time::Duration;

use futures_util::StreamExt;

use common::*;
use nats::node::Node;
use nats::NatsCluster;

/// How long a node may take to connect and read the stream (a bound for a hung test only).
const READY_WITHIN: Duration = Duration::from_secs(60);

/// A hub node on the cluster's stream, once it is ready.
async fn node(cluster: &NatsCluster, stream: &str) -> TestHub {
    node_with(cluster, stream, &[]).await
}

/// A hub node on the cluster (the stream on every server) with more settings.
fn start_node(cluster: &NatsCluster, stream: &str, settings: &[(&str, &str)]) -> TestHub {
    let urls = cluster.urls();
    let replicas = cluster.servers.len().to_string();
    let mut all = vec![
        ("MERCURE_TRANSPORT", "nats"),
        ("MERCURE_NATS_URL", urls.as_str()),
        ("MERCURE_NATS_STREAM", stream),
        ("MERCURE_NATS_REPLICAS", replicas.as_str()),
    ];
    all.extend_from_slice(settings);
    TestHub::start(&all)
}

/// [`start_node`], once the node is ready.
async fn node_with(cluster: &NatsCluster, stream: &str, settings: &[(&str, &str)]) -> TestHub {
    let hub = start_node(cluster, stream, settings);
    let deadline = tokio::time::Instant::now() + READY_WITHIN;
    loop {
        let ready = client().get(hub.at("/readyz")).send().await.expect("readyz");
        if ready.status() == 200 {
            return hub;
        }
        assert!(tokio::time::Instant::now() < deadline, "the node is not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publications_on_any_node_reach_every_node_and_resume_anywhere() {
    let cluster = NatsCluster::start(3).await;
    let nodes = [
        node(&cluster, "CLUSTER").await,
        node(&cluster, "CLUSTER").await,
        node(&cluster, "CLUSTER").await,
    ];
    let topic = "https://example.com/books/1";
    let query = topics_query(&[topic]);
    let mut streams = Vec::new();
    for hub in &nodes {
        streams.push(Events::open(hub, &query, Some(&subscriber())).await);
    }

    // One publication on each node, then more alternating: every subscriber gets them all, in
    // the same order everywhere.
    let mut ids = Vec::new();
    for n in 0..9 {
        let id = format!("u{n}");
        let data = format!("update {n}");
        let hub = &nodes[n % 3];
        let (status, body) = publish(hub, &[("topic", topic), ("id", &id), ("data", &data)]).await;
        assert_eq!((status, body.as_str()), (200, id.as_str()), "published on node {}", n % 3);
        ids.push(id);
    }
    let mut orders = Vec::new();
    for events in &mut streams {
        let mut order = Vec::new();
        for _ in 0..ids.len() {
            order.push(events.next().await.id);
        }
        orders.push(order);
    }
    for order in &orders {
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, ids, "every update, once");
        assert_eq!(order, &orders[0], "in one order on every node");
    }
    for events in &mut streams {
        events.assert_silent(Duration::from_millis(300)).await;
    }

    // Resuming on another node than the one that acknowledged, at once.
    let (status, _) = publish(&nodes[0], &[("topic", topic), ("id", "fresh")]).await;
    assert_eq!(status, 200);
    let resumed = Events::open_with(
        &nodes[2],
        &query,
        Some(&subscriber()),
        &[("last-event-id", orders[0][7].as_str())],
    )
    .await;
    assert_eq!(resumed.response_headers["last-event-id"], orders[0][7].as_str());
    let mut resumed = resumed;
    assert_eq!(resumed.next().await.id, orders[0][8], "what followed the cursor");
    assert_eq!(resumed.next().await.id, "fresh", "then what was acknowledged elsewhere");
    resumed.assert_silent(Duration::from_millis(300)).await;

    // `earliest` replays the whole stream; an unknown id too, and says so.
    let mut all =
        Events::open_with(&nodes[1], &query, Some(&subscriber()), &[("last-event-id", "earliest")])
            .await;
    for id in orders[0].iter().chain(["fresh".to_owned()].iter()) {
        assert_eq!(&all.next().await.id, id);
    }
    let unknown =
        Events::open_with(&nodes[1], &query, Some(&subscriber()), &[("last-event-id", "nope")])
            .await;
    assert_eq!(unknown.response_headers["last-event-id"], "earliest");

    // A publication retried with the same id and content is stored once.
    let retry = [("topic", topic), ("id", "twice"), ("data", "same")];
    let (first, _) = publish(&nodes[0], &retry).await;
    let (second, _) = publish(&nodes[1], &retry).await;
    assert_eq!((first, second), (200, 200));
    assert_eq!(streams[2].next().await.id, "fresh");
    assert_eq!(streams[2].next().await.id, "twice");
    streams[2].assert_silent(Duration::from_millis(500)).await;

    // A node started now has read none of this: it replays from the stream itself.
    let late = node(&cluster, "CLUSTER").await;
    let everything: Vec<String> =
        orders[0].iter().cloned().chain(["fresh".to_owned(), "twice".to_owned()]).collect();
    let mut replay =
        Events::open_with(&late, &query, Some(&subscriber()), &[("last-event-id", "earliest")])
            .await;
    for id in &everything {
        assert_eq!(&replay.next().await.id, id, "from the stream, in order");
    }
    let mut resumed =
        Events::open_with(&late, &query, Some(&subscriber()), &[("last-event-id", "u0")]).await;
    for id in everything.iter().skip_while(|id| *id != "u0").skip(1) {
        assert_eq!(&resumed.next().await.id, id, "after the cursor, from the stream");
    }
    let (status, _) = publish(&nodes[1], &[("topic", topic), ("id", "live")]).await;
    assert_eq!(status, 200);
    assert_eq!(replay.next().await.id, "live", "then live");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_authenticate_to_nats_and_a_wrong_password_keeps_them_unready() {
    let cluster = NatsCluster::start_with(1, &["--user", "hub", "--pass", "right-password"]).await;
    let user = ("MERCURE_NATS_USER", "hub");
    let bad = start_node(&cluster, "AUTH", &[user, ("MERCURE_NATS_PASSWORD", "wrong")]);
    let good =
        node_with(&cluster, "AUTH", &[user, ("MERCURE_NATS_PASSWORD", "right-password")]).await;
    let (status, _) = publish(&good, &[("topic", "a"), ("id", "in")]).await;
    assert_eq!(status, 200);

    // Refused, it is not ready, and it answers publications at once with 503 and Retry-After
    // rather than holding them.
    cluster.servers[0].logged("authentication error").await;
    let ready = client().get(bad.at("/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status(), 503);
    let form = [("topic", "a"), ("id", "out")];
    let response = publish_request(&bad.url, &publisher(), &form).send().await;
    let response = response.expect("publish request");
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
}

/// Runs the hub binary on `transport = nats` with `settings` until it exits, and returns its
/// standard error; panics if it is still running after a minute (it was expected to stop).
fn run_until_exit(cluster: &NatsCluster, settings: &[(&str, &str)]) -> String {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_quicksilver"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MERCURE_JWT_KEY", KEY)
        .env("MERCURE_ADDR", "127.0.0.1:0")
        .env("MERCURE_TRANSPORT", "nats")
        .env("MERCURE_NATS_URL", cluster.urls())
        .envs(settings.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("the hub starts");
    // Read as it comes, so that a chatty hub never blocks on a full pipe.
    let mut pipe = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut stderr = String::new();
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        stderr
    });
    let deadline = std::time::Instant::now() + READY_WITHIN;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let stderr = reader.join().unwrap_or_default();
            panic!("the hub did not stop: {settings:?}\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = reader.join().expect("stderr read");
    assert!(!status.success(), "the hub must fail: {stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_the_hub_cannot_set_up_stops_start_up_naming_the_setting() {
    use async_nats::jetstream::stream::{Config, RetentionPolicy, StorageType};
    let cluster = NatsCluster::start(1).await;
    let jetstream =
        async_nats::jetstream::new(async_nats::connect(cluster.urls()).await.expect("connect"));
    // Streams made by hand: one in memory (the hub keeps its stream on disk), one holding the
    // subjects another stream name would need.
    for (name, subjects, storage) in
        [("MEM", "MEM.>", StorageType::Memory), ("OTHER", "TAKEN.>", StorageType::File)]
    {
        let config = Config {
            name: name.into(),
            subjects: vec![subjects.into()],
            storage,
            ..Config::default()
        };
        jetstream.create_stream(config).await.expect("stream created");
    }
    // And one that deletes what a consumer acknowledged: history would vanish.
    let config = Config {
        name: "QUEUE".into(),
        subjects: vec!["QUEUE.>".into()],
        retention: RetentionPolicy::WorkQueue,
        ..Config::default()
    };
    jetstream.create_stream(config).await.expect("stream created");

    // A single server cannot hold 3 copies.
    let stderr = run_until_exit(&cluster, &[("MERCURE_NATS_REPLICAS", "3")]);
    assert!(stderr.contains("nats_replicas is 3"), "{stderr}");
    let stderr = run_until_exit(&cluster, &[("MERCURE_NATS_STREAM", "MEM")]);
    assert!(stderr.contains("stream MEM exists with settings"), "{stderr}");
    assert!(stderr.contains("nats_stream"), "{stderr}");
    let stderr = run_until_exit(&cluster, &[("MERCURE_NATS_STREAM", "QUEUE")]);
    assert!(stderr.contains("stream QUEUE exists with settings"), "{stderr}");
    let stderr = run_until_exit(&cluster, &[("MERCURE_NATS_STREAM", "TAKEN")]);
    assert!(stderr.contains("of nats_stream TAKEN belong to another stream"), "{stderr}");
    let info = jetstream.get_stream("MEM").await.expect("still there").cached_info().clone();
    assert_eq!(info.config.storage, StorageType::Memory, "left as it was");
}

/// The value of a metric sample line on the node, 0 when absent.
async fn metric(hub: &TestHub, sample: &str) -> u64 {
    let text = client().get(hub.at("/metrics")).send().await.expect("metrics");
    let text = text.text().await.expect("metrics text");
    let prefix = format!("{sample} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)?.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_deleted_and_created_again_ends_open_streams_and_is_never_replayed_as_live() {
    let cluster = NatsCluster::start(1).await;
    let hub = node(&cluster, "RESET").await;
    let topic = "https://example.com/reset";
    let query = topics_query(&[topic]);
    let mut events = Events::open(&hub, &query, Some(&subscriber())).await;
    for id in ["old-1", "old-2"] {
        assert_eq!(publish(&hub, &[("topic", topic), ("id", id)]).await.0, 200);
        assert_eq!(events.next().await.id, id);
    }

    let jetstream =
        async_nats::jetstream::new(async_nats::connect(cluster.urls()).await.expect("connect"));
    jetstream.delete_stream("RESET").await.expect("stream deleted");
    // The node sets the stream up again, sees that it is not the one it read, and ends every
    // open stream, so that its client resumes.
    assert!(events.closed_within(READY_WITHIN).await, "the open stream ends");
    assert_eq!(metric(&hub, "mercure_nats_stream_resets_total").await, 1);
    assert!(metric(&hub, "mercure_nats_consumer_recreations_total").await >= 1);

    // The new stream numbers from 1 again: an update published now is delivered once, and
    // nothing of the old stream comes back.
    let deadline = tokio::time::Instant::now() + READY_WITHIN;
    let mut resumed = loop {
        let resumed =
            Events::open_with(&hub, &query, Some(&subscriber()), &[("last-event-id", "old-2")])
                .await;
        if resumed.response_headers.contains_key("last-event-id") {
            break resumed;
        }
        assert!(tokio::time::Instant::now() < deadline, "the node serves again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(resumed.response_headers["last-event-id"], "earliest", "old-2 is gone");
    assert_eq!(publish(&hub, &[("topic", topic), ("id", "new-1")]).await.0, 200);
    assert_eq!(resumed.next().await.id, "new-1");
    resumed.assert_silent(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_trimmed_while_a_node_was_away_end_its_open_streams() {
    // Servers that do not tell clients about each other: a node knows only its own URLs.
    let mut cluster = NatsCluster::start_with(3, &["--no_advertise"]).await;
    let urls: Vec<String> = cluster.servers.iter().map(|s| s.url()).collect();
    let trimmed = [("MERCURE_HISTORY_SIZE", "2"), ("MERCURE_NATS_PUBLISH_TIMEOUT", "60s")];
    // The node that goes away talks to the first server only; the other to the other two.
    let away =
        node_with(&cluster, "TRIM", &[trimmed[0], trimmed[1], ("MERCURE_NATS_URL", &urls[0])])
            .await;
    let others = urls[1..].join(",");
    let stays =
        node_with(&cluster, "TRIM", &[trimmed[0], trimmed[1], ("MERCURE_NATS_URL", &others)]).await;
    let topic = "https://example.com/trim";
    let query = topics_query(&[topic]);
    let mut events = Events::open(&away, &query, Some(&subscriber())).await;
    assert_eq!(publish(&stays, &[("topic", topic), ("id", "seen")]).await.0, 200);
    assert_eq!(events.next().await.id, "seen");

    cluster.kill(0);
    // Four updates while it is away: the stream keeps the last two only.
    for n in 0..4 {
        let id = format!("missed-{n}");
        assert_eq!(publish(&stays, &[("topic", topic), ("id", &id)]).await.0, 200);
    }
    cluster.restart(0).await;
    // Back, the node finds that two updates left the stream before it could read them: its
    // subscribers must resume rather than miss them silently.
    assert!(events.closed_within(READY_WITHIN).await, "the open stream ends");
    assert_eq!(metric(&away, "mercure_nats_stream_resets_total").await, 1);
    let mut resumed =
        Events::open_with(&away, &query, Some(&subscriber()), &[("last-event-id", "seen")]).await;
    assert_eq!(resumed.response_headers["last-event-id"], "earliest", "seen was trimmed");
    for id in ["missed-2", "missed-3"] {
        assert_eq!(resumed.next().await.id, id, "what the stream still holds");
    }
    resumed.assert_silent(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_reach_nats_over_tls_with_a_client_certificate() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    make_certificates(dir.path(), &["server"], &["client"]);
    let file = |name: &str| dir.path().join(name).to_str().expect("utf-8 path").to_owned();
    let (ca, cert, key) = (file("ca.pem"), file("client.pem"), file("client.key"));
    let (server_cert, server_key) = (file("server.pem"), file("server.key"));
    // The server requires TLS and a client certificate signed by the CA.
    let cluster = NatsCluster::start_with(
        1,
        &["--tlsverify", "--tlscert", &server_cert, "--tlskey", &server_key, "--tlscacert", &ca],
    )
    .await;

    // Without the CA, the server's certificate is not trusted; without a client certificate,
    // the server refuses the node. Both stay unready and refuse publications at once.
    let untrusted = start_node(&cluster, "TLS", &[]);
    let anonymous = start_node(&cluster, "TLS", &[("MERCURE_NATS_TLS_CA", &ca)]);
    let tls = [
        ("MERCURE_NATS_TLS_CA", ca.as_str()),
        ("MERCURE_NATS_TLS_CERT", cert.as_str()),
        ("MERCURE_NATS_TLS_KEY", key.as_str()),
    ];
    let good = node_with(&cluster, "TLS", &tls).await;
    let topic = "https://example.com/tls";
    let mut events = Events::open(&good, &topics_query(&[topic]), Some(&subscriber())).await;
    assert_eq!(publish(&good, &[("topic", topic), ("id", "sealed")]).await.0, 200);
    assert_eq!(events.next().await.id, "sealed");
    cluster.servers[0].logged("tls: unknown certificate authority").await;
    cluster.servers[0].logged("tls: client didn't provide a certificate").await;
    for refused in [&untrusted, &anonymous] {
        let ready = client().get(refused.at("/readyz")).send().await.expect("readyz");
        assert_eq!(ready.status(), 503);
        let response = publish_request(&refused.url, &publisher(), &[("topic", topic)]).send();
        assert_eq!(response.await.expect("publish request").status(), 503);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_authenticate_to_nats_with_a_token() {
    let cluster = NatsCluster::start_with(1, &["--auth", "s3cret-token"]).await;
    let wrong = start_node(&cluster, "TOKEN", &[("MERCURE_NATS_TOKEN", "guess")]);
    let good = node_with(&cluster, "TOKEN", &[("MERCURE_NATS_TOKEN", "s3cret-token")]).await;
    assert_eq!(publish(&good, &[("topic", "a"), ("id", "in")]).await.0, 200);
    cluster.servers[0].logged("authentication error").await;
    let ready = client().get(wrong.at("/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status(), 503);
}

/// A NATS JWT (the `ed25519-nkey` kind the server's decentralised authentication reads):
/// `claims` about `subject`, signed by `issuer`.
fn nats_jwt(issuer: &nkeys::KeyPair, subject: &str, claims: serde_json::Value) -> String {
    use base64::Engine as _;
    let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock");
    let body = serde_json::json!({
        "jti": format!("{subject}-{}", now.as_nanos()),
        "iat": now.as_secs(),
        "iss": issuer.public_key(),
        "sub": subject,
        "name": "quicksilver-test",
        "nats": claims,
    });
    let header = encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let signed = format!("{header}.{}", encode(body.to_string().as_bytes()));
    let signature = issuer.sign(signed.as_bytes()).expect("signed");
    format!("{signed}.{}", encode(&signature))
}

/// A server configuration in operator mode (accounts and users as JWTs, the accounts preloaded)
/// with one JetStream-enabled account, and in `dir` a credentials file for a user of it
/// (`hub.creds`) and one for a user signed by an account the server does not know
/// (`stranger.creds`). Returns the configuration file's path.
fn operator_mode(dir: &std::path::Path) -> String {
    let operator = nkeys::KeyPair::new_operator();
    let operator_jwt = nats_jwt(
        &operator,
        &operator.public_key(),
        serde_json::json!({ "type": "operator", "version": 2 }),
    );
    let unlimited = serde_json::json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true,
        "conn": -1, "leaf": -1, "mem_storage": -1, "disk_storage": -1, "streams": -1,
        "consumer": -1,
    });
    let account = |limits: serde_json::Value| {
        let key = nkeys::KeyPair::new_account();
        let claims = serde_json::json!({ "limits": limits, "type": "account", "version": 2 });
        let jwt = nats_jwt(&operator, &key.public_key(), claims);
        (key, jwt)
    };
    let (hub, hub_jwt) = account(unlimited);
    let (system, system_jwt) = account(serde_json::json!({ "conn": -1 }));
    let (stranger, _) = account(serde_json::json!({}));
    for (name, signer) in [("hub", &hub), ("stranger", &stranger)] {
        let user = nkeys::KeyPair::new_user();
        let claims = serde_json::json!({
            "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
            "type": "user", "version": 2,
        });
        let jwt = nats_jwt(signer, &user.public_key(), claims);
        let seed = user.seed().expect("a seed");
        let creds = format!(
            "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        );
        std::fs::write(dir.join(format!("{name}.creds")), creds).expect("creds written");
    }
    let config = format!(
        "operator: {operator_jwt}\nsystem_account: {sys}\nresolver: MEMORY\n\
         resolver_preload: {{\n  {sys}: {system_jwt}\n  {hub_key}: {hub_jwt}\n}}\n",
        sys = system.public_key(),
        hub_key = hub.public_key(),
    );
    let path = dir.join("operator.conf");
    std::fs::write(&path, config).expect("config written");
    path.to_str().expect("utf-8 path").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_authenticate_to_nats_with_a_credentials_file() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = operator_mode(dir.path());
    let creds = |name: &str| dir.path().join(name).to_str().expect("utf-8 path").to_owned();
    let cluster = NatsCluster::start_with(1, &["-c", &config]).await;
    let stranger =
        start_node(&cluster, "CREDS", &[("MERCURE_NATS_CREDS", &creds("stranger.creds"))]);
    let good = node_with(&cluster, "CREDS", &[("MERCURE_NATS_CREDS", &creds("hub.creds"))]).await;
    let topic = "https://example.com/creds";
    let mut events = Events::open(&good, &topics_query(&[topic]), Some(&subscriber())).await;
    assert_eq!(publish(&good, &[("topic", topic), ("id", "signed")]).await.0, 200);
    assert_eq!(events.next().await.id, "signed");
    // A user of an account the server does not know is refused, and stays unready.
    cluster.servers[0].logged("authentication error").await;
    let ready = client().get(stranger.at("/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status(), 503);
}

const WATCH: &str = "/.well-known/mercure/subscriptions{/topic}{/subscriber}";

/// The subscriptions the API of `hub` lists, as (topic, subscriber) pairs.
async fn listed(hub: &TestHub) -> Vec<(String, String)> {
    let response = client()
        .get(hub.at("/.well-known/mercure/subscriptions"))
        .bearer_auth(token(serde_json::json!({ "subscribe": ["/.well-known/mercure/subscriptions{/topic}{/subscriber}", "/.well-known/mercure/subscriptions"] })))
        .send()
        .await
        .expect("the API answers");
    assert_eq!(response.status(), 200);
    let body = response.text().await.expect("a body");
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let subscriptions = body["subscriptions"].as_array().expect("a list").clone();
    subscriptions
        .iter()
        .map(|s| {
            (
                s["topic"].as_str().unwrap_or_default().to_owned(),
                s["subscriber"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_lists_every_subscription_and_a_killed_node_departs_once() {
    let cluster = NatsCluster::start(1).await;
    let presence = [("MERCURE_SUBSCRIPTIONS", "true")];
    let here = node_with(&cluster, "PRESENCE", &presence).await;
    let there = Node::start(&cluster, "PRESENCE", &presence).await;
    let watcher_token = token(serde_json::json!({ "subscribe": [WATCH] }));
    let mut watcher = Events::open(&here, &topics_query(&[WATCH]), Some(&watcher_token)).await;
    let own: serde_json::Value = serde_json::from_str(&watcher.next().await.data).expect("JSON");
    assert_eq!(own["topic"], WATCH, "the watcher's own arrival");

    // A subscriber on the other node (a separate process) is announced here, and listed here.
    let room = "https://example.com/room";
    let response = client()
        .get(format!("{}?topic={}", there.url, urlencode(room)))
        .bearer_auth(subscriber())
        .send()
        .await
        .expect("subscribed on the other node");
    assert_eq!(response.status(), 200);
    let arrival: serde_json::Value =
        serde_json::from_str(&watcher.next().await.data).expect("JSON");
    assert_eq!((arrival["topic"].as_str(), arrival["active"].as_bool()), (Some(room), Some(true)));
    let id = arrival["subscriber"].as_str().expect("an id").to_owned();
    let deadline = tokio::time::Instant::now() + READY_WITHIN;
    while !listed(&here).await.contains(&(room.to_owned(), id.clone())) {
        assert!(tokio::time::Instant::now() < deadline, "listed on every node");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Killed, the other node cannot say goodbye: this node does, once, and stops listing it.
    let killed = tokio::time::Instant::now();
    there.kill();
    drop(response);
    let departure = watcher.next_within(READY_WITHIN).await.expect("a departure");
    let departure: serde_json::Value = serde_json::from_str(&departure.data).expect("JSON");
    assert_eq!(departure["subscriber"].as_str(), Some(id.as_str()));
    assert_eq!(departure["active"], false);
    eprintln!("departure of a killed node's subscriber announced after {:?}", killed.elapsed());
    assert!(!listed(&here).await.iter().any(|(_, s)| *s == id), "no longer listed");
    watcher.assert_silent(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_during_a_nats_outage_are_served_and_announced_when_it_is_back() {
    let mut cluster = NatsCluster::start(1).await;
    let hub = node_with(&cluster, "OUTAGE", &[("MERCURE_SUBSCRIPTIONS", "true")]).await;
    let watcher_token = token(serde_json::json!({ "subscribe": [WATCH] }));
    let mut watcher = Events::open(&hub, &topics_query(&[WATCH]), Some(&watcher_token)).await;
    let event = |e: Event| -> (String, String, bool) {
        let body: serde_json::Value = serde_json::from_str(&e.data).expect("JSON");
        let field = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
        (field("topic"), field("subscriber"), body["active"].as_bool().unwrap_or_default())
    };
    assert_eq!(event(watcher.next().await).0, WATCH, "the watcher's own arrival");
    let before = Events::open(&hub, &topics_query(&["/before"]), Some(&subscriber())).await;
    let (topic, before_id, active) = event(watcher.next().await);
    assert_eq!((topic.as_str(), active), ("/before", true));
    assert_eq!(metric(&hub, "mercure_nats_connected").await, 1);

    cluster.kill(0);
    let deadline = tokio::time::Instant::now() + READY_WITHIN;
    while client().get(hub.at("/readyz")).send().await.expect("readyz").status() == 200 {
        assert!(tokio::time::Instant::now() < deadline, "unready without NATS");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while metric(&hub, "mercure_nats_connected").await != 0 {
        assert!(tokio::time::Instant::now() < deadline, "the metric says disconnected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Meanwhile: one subscription ends, one opens (and is served: no 5xx, which would make an
    // EventSource give up), and one opens and ends.
    drop(before);
    let during = Events::open(&hub, &topics_query(&["/during"]), Some(&subscriber())).await;
    let brief = Events::open(&hub, &topics_query(&["/brief"]), Some(&subscriber())).await;
    drop(brief);
    cluster.restart(0).await;

    // Back: the departure and the arrival are announced (in the order the server noticed
    // them). The brief one is not announced at all if it ended before NATS was back, and else
    // arrives and departs once.
    let mut seen = Vec::new();
    while !(seen.contains(&("/before".to_owned(), false))
        && seen.contains(&("/during".to_owned(), true)))
    {
        let (topic, id, active) = event(watcher.next_within(READY_WITHIN).await.expect("an event"));
        if topic == "/before" {
            assert_eq!(id, before_id);
        }
        seen.push((topic, active));
    }
    watcher.assert_silent(Duration::from_secs(1)).await;
    assert_eq!(metric(&hub, "mercure_nats_connected").await, 1, "connected again");
    let brief: Vec<bool> = seen.iter().filter(|(t, _)| t == "/brief").map(|(_, a)| *a).collect();
    assert!(brief.is_empty() || brief == [true, false], "{seen:?}");
    assert_eq!(seen.len(), 2 + brief.len(), "once each: {seen:?}");
    drop(during);
    let (topic, _, active) = event(watcher.next().await);
    assert_eq!((topic.as_str(), active), ("/during", false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_with_sigterm_announces_its_departures_before_it_exits() {
    let cluster = NatsCluster::start(1).await;
    let settings = [("MERCURE_SUBSCRIPTIONS", "true"), ("MERCURE_DRAIN_TIMEOUT", "1s")];
    let node = Node::start(&cluster, "BYE", &settings).await;
    let response = client()
        .get(format!("{}?topic=%2Fbye", node.url))
        .bearer_auth(subscriber())
        .send()
        .await
        .expect("subscribed");
    assert_eq!(response.status(), 200);
    let jetstream =
        async_nats::jetstream::new(async_nats::connect(cluster.urls()).await.expect("connect"));
    let records = jetstream.get_key_value("BYE_presence").await.expect("the presence bucket");
    let deadline = tokio::time::Instant::now() + READY_WITHIN;
    while records.keys().await.expect("keys").count().await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the subscription is recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let pid = node.pid.to_string();
    let status = std::process::Command::new("kill").args(["-TERM", &pid]).status();
    assert!(status.is_ok_and(|s| s.success()));
    let deadline = tokio::time::Instant::now() + READY_WITHIN;
    // Exited: gone, or a zombie until its watchdog shell reaps it.
    let running = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
        state.is_some_and(|state| state != 'Z')
    };
    while running() {
        assert!(tokio::time::Instant::now() < deadline, "the node exits:\n{}", node.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(node.logs().ends_with("stopped"), "a clean exit:\n{}", node.logs());
    drop(response);

    // No other node exists: what the stream and the bucket hold now, the node did itself.
    let stream = jetstream.get_stream("BYE").await.expect("the stream");
    let last = stream.cached_info().state.last_sequence;
    let mut events = Vec::new();
    for seq in 1..=last {
        let message = stream.get_raw_message(seq).await.expect("a message");
        let ttl = message.headers.get("Nats-TTL").map(|v| v.as_str().to_owned());
        assert_eq!(ttl.as_deref(), Some("3600"), "subscription events expire from the stream");
        let update: serde_json::Value = serde_json::from_slice(&message.payload).expect("JSON");
        let data: serde_json::Value =
            serde_json::from_str(update["data"].as_str().unwrap_or_default()).expect("a document");
        // Draft-07 documents name the selector `topic`, Mercure 1.0 ones `match`.
        let selector = data.get("topic").or_else(|| data.get("match"));
        events.push((
            selector.and_then(|s| s.as_str()).unwrap_or_default().to_owned(),
            data.get("@context").is_some(),
            data["active"].clone(),
        ));
    }
    let event = |draft_07, active: bool| ("/bye".to_owned(), draft_07, active.into());
    let expected = [event(true, true), event(false, true), event(true, false), event(false, false)];
    assert_eq!(events, expected, "one arrival, then one departure, in each protocol's format");
    assert_eq!(records.keys().await.expect("keys").count().await, 0, "its record is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_limit_above_the_servers_max_payload_is_warned_about_then_refused_with_413() {
    let cluster = NatsCluster::start(1).await;
    // The servers' max_payload is 1 MiB by default.
    let node = Node::start(&cluster, "BODY", &[("MERCURE_MAX_REQUEST_BODY_SIZE", "2MiB")]).await;
    let logs = node.logs();
    assert!(logs.contains("max_payload=1048576") && logs.contains("will get 413"), "{logs}");
    // As warned: a publication the hub accepts but the servers cannot carry is a 413 naming
    // the limit; a smaller one goes through.
    let big = "x".repeat(1_500_000);
    let (status, body) =
        publish_to(&node.url, &publisher(), &[("topic", "a"), ("data", &big)]).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("1048576"), "{body}");
    let small = "x".repeat(100_000);
    let form = [("topic", "a"), ("data", small.as_str()), ("id", "small")];
    assert_eq!(publish_to(&node.url, &publisher(), &form).await, (200, "small".to_owned()));
    let quiet = Node::start(&cluster, "BODY", &[("MERCURE_MAX_REQUEST_BODY_SIZE", "512KiB")]).await;
    assert!(!quiet.logs().contains("will get 413"), "{}", quiet.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_taken_for_dead_ends_the_streams_whose_departure_was_announced() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("quicksilver=debug,async_nats::jetstream=debug")
        .try_init();
    // Servers that do not tell clients about each other: the first node knows only the first.
    let mut cluster = NatsCluster::start_with(3, &["--no_advertise"]).await;
    let urls: Vec<String> = cluster.servers.iter().map(|s| s.url()).collect();
    let others = urls[1..].join(",");
    let presence = ("MERCURE_SUBSCRIPTIONS", "true");
    let cut = node_with(&cluster, "TAKEN", &[presence, ("MERCURE_NATS_URL", &urls[0])]).await;
    let watching = node_with(&cluster, "TAKEN", &[presence, ("MERCURE_NATS_URL", &others)]).await;
    let watcher_token = token(serde_json::json!({ "subscribe": [WATCH] }));
    let mut watcher = Events::open(&watching, &topics_query(&[WATCH]), Some(&watcher_token)).await;
    let event = |e: Event| -> (String, bool) {
        let body: serde_json::Value = serde_json::from_str(&e.data).expect("JSON");
        (body["topic"].as_str().unwrap_or_default().to_owned(), body["active"] == true)
    };
    let own = watcher.next_within(READY_WITHIN).await.expect("its own arrival");
    assert_eq!(event(own), (WATCH.to_owned(), true));
    let mut open = Events::open(&cut, &topics_query(&["/cut"]), Some(&subscriber())).await;
    assert_eq!(event(watcher.next().await), ("/cut".to_owned(), true));

    // Cut off from NATS long enough to be taken for dead: its subscription's departure is
    // announced by the other node while the stream is still open.
    cluster.kill(0);
    let departure = watcher.next_within(READY_WITHIN).await.expect("a departure");
    assert_eq!(event(departure), ("/cut".to_owned(), false));
    cluster.restart(0).await;
    // Back, the node learns it and ends the stream, so that the departure is true and the
    // client comes back; its own departure is the same update, stored once.
    assert!(open.closed_within(READY_WITHIN).await, "the stream ends");
    watcher.assert_silent(Duration::from_secs(2)).await;
}
