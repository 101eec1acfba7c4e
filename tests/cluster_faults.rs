//! Cluster faults (issue 9): hub nodes, the real binary on `transport = nats`, over real
//! nats-server processes (`tests/nats/mod.rs`), while things break.
//!
//! - A hub node SIGKILLed under continuous publishing: its subscribers reconnect to another node
//!   with their `Last-Event-ID`, as a load balancer sends them elsewhere, and miss nothing.
//! - The NATS server leading the stream SIGKILLed while publishing goes on: every acknowledged
//!   update reaches every subscriber once, live and in history.
//! - Every NATS server killed, then back: publications answered 503 at once, the node unready but
//!   alive, open streams kept with their heartbeats, then no gap and no duplicate.
//! - A NATS server that silently stops answering (`SIGSTOP`): the node turns unready, then ready
//!   again when the server goes on.
//!
//! Each test has its own cluster and stream. No process outlives a test: the NATS harness and
//! [`Node`] kill theirs when dropped, and when the test process itself dies. Failover times are
//! printed (`--nocapture` shows them); timing is asserted only by generous guards against a hang.

mod common;
mod nats;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use nats::node::{Node, READY_WITHIN};
use nats::NatsCluster;
use tokio::time::Instant;

/// How long a publication may take to be acknowledged, retries included.
const ACKNOWLEDGED_WITHIN: Duration = Duration::from_secs(90);
/// How long a subscriber may take to receive everything it waits for (a node whose consumer
/// vanished with a NATS server may take a minute to notice: see the stream leader test).
const RECEIVED_WITHIN: Duration = Duration::from_secs(180);
/// How often a publisher tries again after a 503 (shorter than `Retry-After`, so that the time a
/// publisher waited during a fault is measured finely).
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// The pause between two publications of a continuous publisher: enough that the fault happens
/// while the publications go on, short enough to keep the test quick.
const PACE: Duration = Duration::from_millis(10);

// ---------------------------------------------------------------------------------------------
// Publishers and subscribers
// ---------------------------------------------------------------------------------------------

/// What it took to get one publication acknowledged.
#[derive(Debug)]
struct Acknowledged {
    /// From the first attempt to the 200.
    took: Duration,
    /// 503s (or failed requests) before it.
    refused: u32,
}

/// Publishes update `id` to the hub endpoint at `url` until it is acknowledged. A 503 (or a
/// request that failed) is tried again with the same id and data, which the hub stores once, as
/// a publisher is asked to; any other answer fails the test, as does no 200 within
/// [`ACKNOWLEDGED_WITHIN`].
async fn publish_acknowledged(url: &str, topic: &str, id: &str, data: &str) -> Acknowledged {
    let form = [("topic", topic), ("id", id), ("data", data)];
    let start = Instant::now();
    let mut refused = 0;
    loop {
        let request = publish_request(url, &publisher(), &form).timeout(ACKNOWLEDGED_WITHIN);
        let failure = match request.send().await {
            Ok(response) if response.status() == 200 => {
                let body = response.text().await.unwrap_or_default();
                assert_eq!(body, id, "the hub answers the id it was given");
                return Acknowledged { took: start.elapsed(), refused };
            }
            Ok(response) if response.status() == 503 => {
                assert!(response.headers().contains_key("retry-after"), "503 with Retry-After");
                format!("503 {}", response.text().await.unwrap_or_default())
            }
            Ok(response) => panic!("publishing {id}: {} {:?}", response.status(), response),
            Err(error) => error.to_string(),
        };
        refused += 1;
        assert!(
            start.elapsed() < ACKNOWLEDGED_WITHIN,
            "{id} is not acknowledged within {ACKNOWLEDGED_WITHIN:?}: {failure}"
        );
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// A subscriber following one topic, as an `EventSource` behind a load balancer does: it reads
/// from the first of `urls`, and when that stream ends (its node died) it reconnects to the next
/// with the `Last-Event-ID` of the last update it received. It stops once `last` has arrived and
/// a short silence followed (so that a duplicate of `last` is seen too), when its last stream
/// ends, or after [`RECEIVED_WITHIN`].
struct Follow {
    urls: Vec<String>,
    query: String,
    last: String,
    /// Counts the followers whose first stream is open.
    opened: Arc<AtomicUsize>,
    /// Counts the updates this one received.
    received: Arc<AtomicUsize>,
    /// Whether it stays away a while before reconnecting.
    away: Option<Away>,
}

/// A subscriber that reconnects only once `missed` more publications than it received were
/// acknowledged: what it missed must come from history, not from luck in a race.
struct Away {
    acknowledged: Arc<AtomicUsize>,
    missed: usize,
}

/// What a [`Follow`] received.
struct Follower {
    /// The ids received, in order.
    ids: Vec<String>,
    /// How many streams it opened.
    connections: usize,
    /// How long its last stream took to open (a resume: finding its `Last-Event-ID`).
    opened_in: Duration,
    /// When `last` arrived.
    finished: Option<Instant>,
}

impl Follow {
    /// Starts following, on a task of its own.
    fn spawn(self) -> tokio::task::JoinHandle<Follower> {
        tokio::spawn(self.run())
    }

    async fn run(self) -> Follower {
        let deadline = Instant::now() + RECEIVED_WITHIN;
        let mut follower =
            Follower { ids: Vec::new(), connections: 0, opened_in: Duration::ZERO, finished: None };
        for url in &self.urls {
            if let (Some(away), true) = (&self.away, follower.connections > 0) {
                let back = follower.ids.len() + away.missed;
                while away.acknowledged.load(Ordering::SeqCst) < back && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            let ids = &mut follower.ids;
            let headers: Vec<(&str, &str)> =
                ids.last().map(|id| ("last-event-id", id.as_str())).into_iter().collect();
            let opening = Instant::now();
            let mut events =
                Events::open_url(url, &self.query, Some(&subscriber()), &headers).await;
            follower.opened_in = opening.elapsed();
            follower.connections += 1;
            if follower.connections == 1 {
                self.opened.fetch_add(1, Ordering::SeqCst);
            }
            while Instant::now() < deadline {
                let done = follower.finished.is_some();
                let limit = if done { Duration::from_millis(500) } else { Duration::from_secs(1) };
                match events.read_within(limit).await {
                    Read::Update(event) => {
                        if event.id == self.last {
                            follower.finished = Some(Instant::now());
                        }
                        ids.push(event.id);
                        self.received.fetch_add(1, Ordering::SeqCst);
                    }
                    Read::Silent if done => return follower,
                    Read::Silent => {}
                    Read::Ended => break,
                }
            }
            if follower.finished.is_some() || Instant::now() >= deadline {
                break;
            }
        }
        follower
    }
}

/// Waits for every follower, each within [`RECEIVED_WITHIN`] (it bounds itself).
async fn join_all(followers: Vec<tokio::task::JoinHandle<Follower>>) -> Vec<Follower> {
    let mut joined = Vec::new();
    for follower in followers {
        let follower = tokio::time::timeout(RECEIVED_WITHIN + Duration::from_secs(10), follower);
        joined.push(follower.await.expect("the follower bounds itself").expect("no panic"));
    }
    joined
}

/// Waits until `done()` holds, checking every 20 ms; panics with `what` after `limit`.
async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts that `received` is `expected`, each once and in order, naming the first difference.
fn assert_exactly(who: &str, received: &[String], expected: &[String]) {
    if received == expected {
        return;
    }
    let first = received.iter().zip(expected).position(|(r, e)| r != e);
    let mut seen = std::collections::HashSet::new();
    let duplicated: Vec<&String> = received.iter().filter(|id| !seen.insert(*id)).collect();
    let missing: Vec<&String> = expected.iter().filter(|id| !received.contains(id)).collect();
    panic!(
        "{who}: received {} updates, expected {}; first difference at {first:?}; \
         missing {missing:?}; duplicated {duplicated:?}",
        received.len(),
        expected.len()
    );
}

/// The updates a new stream on the node at `url` replays after `last_event_id` (an id, or
/// `earliest`): until `expected` have arrived and a short silence followed, or
/// [`RECEIVED_WITHIN`].
async fn history(url: &str, query: &str, last_event_id: &str, expected: usize) -> Vec<String> {
    let headers = [("last-event-id", last_event_id)];
    let mut events = Events::open_url(url, query, Some(&subscriber()), &headers).await;
    let mut ids = Vec::new();
    let deadline = Instant::now() + RECEIVED_WITHIN;
    loop {
        let limit = if ids.len() >= expected {
            Duration::from_millis(500)
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        match events.read_within(limit).await {
            Read::Update(event) => ids.push(event.id),
            Read::Silent | Read::Ended => return ids,
        }
    }
}

/// When an update arrived (`at`) compared with its acknowledgement, in words.
fn lateness(at: Option<Instant>, acknowledged: Instant) -> String {
    match at {
        None => "never arrived".to_owned(),
        Some(at) if at <= acknowledged => "arrived before its publisher's 200".to_owned(),
        Some(at) => format!("arrived {:?} after its publisher's 200", at - acknowledged),
    }
}

/// How many SSE comment lines (`:`, the opening comment and heartbeats) `raw` holds.
fn comment_lines(raw: &[u8]) -> usize {
    raw.split(|&b| b == b'\n').filter(|line| *line == b":").count()
}

// ---------------------------------------------------------------------------------------------
// The faults
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_publishing_loses_nothing_for_its_subscribers() {
    const UPDATES: usize = 200;
    const MOVING: usize = 4;
    /// How many publications the subscribers of the killed node miss before they reconnect
    /// (fewer than the publications after the kill).
    const MISSED: usize = 20;
    let cluster = NatsCluster::start(3).await;
    let nodes = [
        Node::start(&cluster, "FAULTS_NODE", &[]).await,
        Node::start(&cluster, "FAULTS_NODE", &[]).await,
        Node::start(&cluster, "FAULTS_NODE", &[]).await,
    ];
    let topic = "https://example.com/faults/node";
    let query = topics_query(&[topic]);
    let ids: Vec<String> = (0..UPDATES).map(|n| format!("node-{n}")).collect();
    let last = ids[UPDATES - 1].clone();

    // Subscribers on node 2, which will be killed, and one on node 3 that stays as a witness.
    // Those of node 2 come back on node 3 only after missing a few publications, as a browser
    // reconnects after its retry delay.
    let opened = Arc::new(AtomicUsize::new(0));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let mut received = Vec::new();
    let mut followers = Vec::new();
    for n in 0..=MOVING {
        received.push(Arc::new(AtomicUsize::new(0)));
        let moving = n < MOVING;
        let (urls, away) = if moving {
            let away = Away { acknowledged: acknowledged.clone(), missed: MISSED };
            (vec![nodes[1].url.clone(), nodes[2].url.clone()], Some(away))
        } else {
            (vec![nodes[2].url.clone()], None)
        };
        let follow = Follow {
            urls,
            query: query.clone(),
            last: last.clone(),
            opened: opened.clone(),
            received: received[n].clone(),
            away,
        };
        followers.push(follow.spawn());
    }
    wait_until("subscribers connected", READY_WITHIN, || {
        opened.load(Ordering::SeqCst) == MOVING + 1
    })
    .await;

    // One publisher on node 1, continuously; node 2 dies half-way, once each of its subscribers
    // has something to resume from.
    let mut killed_at = None;
    for (n, id) in ids.iter().enumerate() {
        if n == UPDATES / 2 {
            wait_until("an update on each subscriber of node 2", RECEIVED_WITHIN, || {
                received[..MOVING].iter().all(|r| r.load(Ordering::SeqCst) > 0)
            })
            .await;
            let behind: Vec<usize> = received.iter().map(|r| r.load(Ordering::SeqCst)).collect();
            nodes[1].kill();
            killed_at = Some(Instant::now());
            eprintln!(
                "[faults] node 2 SIGKILLed after {n} publications; received so far {behind:?}"
            );
        }
        publish_acknowledged(&nodes[0].url, topic, id, &format!("update {n}")).await;
        acknowledged.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(PACE).await;
    }
    let killed_at = killed_at.expect("node 2 was killed");
    let published = Instant::now();
    eprintln!(
        "[faults] the last {} publications went on for {:?} after the kill",
        UPDATES / 2,
        published.duration_since(killed_at)
    );

    for (n, follower) in join_all(followers).await.into_iter().enumerate() {
        let who =
            format!("subscriber {n} ({})", if n < MOVING { "node 2 then 3" } else { "node 3" });
        assert_exactly(&who, &follower.ids, &ids);
        let expected_connections = if n < MOVING { 2 } else { 1 };
        assert_eq!(follower.connections, expected_connections, "{who} connections");
        eprintln!(
            "[faults] {who}: its last stream opened in {:?}, the last update {}",
            follower.opened_in,
            lateness(follower.finished, published)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_leader_killed_under_publishing_loses_and_duplicates_nothing() {
    const UPDATES: usize = 200;
    const STREAM: &str = "FAULTS_LEADER";
    let mut cluster = NatsCluster::start(3).await;
    // Long enough for an election: the node retries with the same message id meanwhile.
    let settings = [("MERCURE_NATS_PUBLISH_TIMEOUT", "30s")];
    // Node 1 is given every server, and connects to any; node 2 only those that will survive, so
    // that its connection lives on while the server its reading depends on dies.
    let first = Node::start(&cluster, STREAM, &settings).await;
    let leader = cluster.index_of(&cluster.stream_leader(STREAM).await);
    let survivors: Vec<usize> = (0..cluster.servers.len()).filter(|&i| i != leader).collect();
    let nodes = [first, Node::start_on(&cluster, &survivors, STREAM, &settings).await];
    let topic = "https://example.com/faults/leader";
    let query = topics_query(&[topic]);
    let ids: Vec<String> = (0..UPDATES).map(|n| format!("leader-{n}")).collect();
    let last = ids[UPDATES - 1].clone();

    // Two subscribers on each node.
    let opened = Arc::new(AtomicUsize::new(0));
    let mut followers = Vec::new();
    for n in 0..4 {
        let follow = Follow {
            urls: vec![nodes[n % 2].url.clone()],
            query: query.clone(),
            last: last.clone(),
            opened: opened.clone(),
            received: Arc::new(AtomicUsize::new(0)),
            away: None,
        };
        followers.push(follow.spawn());
    }
    wait_until("subscribers connected", READY_WITHIN, || opened.load(Ordering::SeqCst) == 4).await;

    // Publications alternate between the nodes; the stream leader dies half-way.
    let mut killed = None;
    let mut killed_at = None;
    let mut first_after_kill = None;
    let (mut slowest, mut refused) = (Duration::ZERO, 0);
    for (n, id) in ids.iter().enumerate() {
        if n == UPDATES / 2 {
            let leader = cluster.stream_leader(STREAM).await;
            let index = cluster.index_of(&leader);
            cluster.kill(index);
            killed = Some(index);
            killed_at = Some(Instant::now());
            eprintln!("[faults] stream leader {leader} SIGKILLed after {n} publications");
        }
        let ack = publish_acknowledged(&nodes[n % 2].url, topic, id, &format!("update {n}")).await;
        if let (Some(at), None) = (killed_at, first_after_kill) {
            first_after_kill = Some(at.elapsed());
        }
        slowest = slowest.max(ack.took);
        refused += ack.refused;
        tokio::time::sleep(PACE).await;
    }
    eprintln!(
        "[faults] publishers during the election: first acknowledgement {first_after_kill:?} \
         after the kill, slowest publication {slowest:?}, {refused} answers 503 (retried)"
    );

    let published = Instant::now();
    for (n, node) in nodes.iter().enumerate() {
        let ready = node.status("/readyz").await;
        eprintln!("[faults] node {}: /readyz {ready:?} after the last publication", n + 1);
    }

    // Live: every acknowledged update, once, in order, on every subscriber. A node whose
    // consumer lived on the killed server (an ordered consumer of async-nats) notices only after
    // two missed idle heartbeats of 15 s, then catches up: measured 30 to 70 s here, printed.
    for (n, follower) in join_all(followers).await.into_iter().enumerate() {
        let who = format!("subscriber {n} (node {})", n % 2 + 1);
        assert_exactly(&who, &follower.ids, &ids);
        eprintln!("[faults] {who}: the last update {}", lateness(follower.finished, published));
    }
    // History: the same, on each node.
    for (n, node) in nodes.iter().enumerate() {
        let replaying = Instant::now();
        let replayed = history(&node.url, &query, "earliest", UPDATES).await;
        assert_exactly(&format!("history on node {}", n + 1), &replayed, &ids);
        eprintln!("[faults] history on node {} in {:?}", n + 1, replaying.elapsed());
    }

    // The killed server comes back, catches up, and the cluster goes on.
    let index = killed.expect("the leader was killed");
    let restarted = Instant::now();
    cluster.restart(index).await;
    let settled = [ids[UPDATES - 1].clone(), "settled-1".to_owned(), "settled-2".to_owned()];
    for (n, id) in settled[1..].iter().enumerate() {
        publish_acknowledged(&nodes[n].url, topic, id, "after the restart").await;
    }
    let headers = [("last-event-id", settled[0].as_str())];
    for node in &nodes {
        let mut events = Events::open_url(&node.url, &query, Some(&subscriber()), &headers).await;
        for id in &settled[1..] {
            let event = events.next_within(RECEIVED_WITHIN).await.expect("an update");
            assert_eq!(&event.id, id, "after the restart, on {}", node.url);
        }
    }
    let server = &cluster.servers[index];
    let stored = UPDATES as u64 + 2;
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        let detail = server.stream_detail(STREAM).await;
        let messages = detail.as_ref().and_then(|d| d.pointer("/state/messages")?.as_u64());
        if messages == Some(stored) {
            break;
        }
        assert!(Instant::now() < deadline, "{} holds {messages:?} of {stored}", server.name);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "[faults] the killed server is back with all {stored} messages in {:?}",
        restarted.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_keeps_streams_open_and_leaves_no_gap() {
    const STREAM: &str = "FAULTS_OUTAGE";
    let mut cluster = NatsCluster::start(3).await;
    // A publication timeout far above "at once", so that a 503 held until it would show.
    let settings = [("MERCURE_HEARTBEAT", "1s"), ("MERCURE_NATS_PUBLISH_TIMEOUT", "60s")];
    let node = Node::start(&cluster, STREAM, &settings).await;
    let topic = "https://example.com/faults/outage";
    let query = topics_query(&[topic]);
    let mut events = Events::open_url(&node.url, &query, Some(&subscriber()), &[]).await;
    let before: Vec<String> = (1..=3).map(|n| format!("before-{n}")).collect();
    for id in &before {
        publish_acknowledged(&node.url, topic, id, "before the outage").await;
    }
    for id in &before {
        assert_eq!(&events.next().await.id, id);
    }

    // Every NATS server dies.
    for index in 0..cluster.servers.len() {
        cluster.kill(index);
    }
    // At once, a publication, and readiness checks beside it.
    let outage = Instant::now();
    let form = [("topic", topic), ("id", "refused"), ("data", "during the outage")];
    let publication = async {
        let request = publish_request(&node.url, &publisher(), &form).timeout(ACKNOWLEDGED_WITHIN);
        let response = request.send().await.expect("the node answers");
        (response, outage.elapsed())
    };
    let ((response, answered), unready) = tokio::join!(publication, node.wait_ready(false));
    assert_eq!(response.status(), 503, "{:?}", response.text().await);
    assert!(response.headers().contains_key("retry-after"), "503 with Retry-After");
    // A hang guard, far below the 60 s publication timeout the node would otherwise wait.
    assert!(answered < Duration::from_secs(30), "answered after {answered:?}");
    let unready = unready.unwrap_or_else(|| panic!("still ready:\n{}", node.logs()));
    eprintln!(
        "[faults] NATS gone: publication answered 503 after {answered:?}, /readyz not 200 after \
         {unready:?}"
    );
    assert_eq!(node.status("/healthz").await, Some(200), "alive while NATS is away");

    // The open stream stays open, and its heartbeats go on.
    let comments = comment_lines(&events.raw);
    for _ in 0..15 {
        match events.read_within(Duration::from_secs(1)).await {
            Read::Silent => {}
            other => panic!("the stream must stay open and silent during the outage: {other:?}"),
        }
        if comment_lines(&events.raw) >= comments + 3 {
            break;
        }
    }
    assert!(comment_lines(&events.raw) >= comments + 3, "heartbeats during the outage");

    // A subscriber resuming meanwhile is served (a 5xx would make an EventSource give up for
    // good): what the node read lately comes from its memory.
    let resuming = [("last-event-id", before[1].as_str())];
    let mut resumed = Events::open_url(&node.url, &query, Some(&subscriber()), &resuming).await;
    assert_eq!(resumed.response_headers["last-event-id"], before[1].as_str());
    assert_eq!(resumed.next().await.id, before[2], "replayed during the outage");

    // NATS comes back: the node is ready again, and what is published now arrives, after what
    // arrived before, with nothing in between.
    let back = Instant::now();
    cluster.restart_all().await;
    let healthy = back.elapsed();
    let ready = node.wait_ready(true).await;
    let ready = ready.unwrap_or_else(|| panic!("not ready again:\n{}", node.logs()));
    eprintln!(
        "[faults] NATS restarted: cluster healthy after {healthy:?}, node ready {ready:?} later"
    );
    let after: Vec<String> = (1..=3).map(|n| format!("after-{n}")).collect();
    let publishing = Instant::now();
    for id in &after {
        publish_acknowledged(&node.url, topic, id, "after the outage").await;
    }
    eprintln!("[faults] the first publications after the outage took {:?}", publishing.elapsed());
    let delivering = Instant::now();
    let mut live = Vec::new();
    for _ in &after {
        match events.read_within(RECEIVED_WITHIN).await {
            Read::Update(event) => live.push(event.id),
            other => panic!("after the outage, {live:?} then {other:?}:\n{}", node.logs()),
        }
    }
    eprintln!(
        "[faults] delivered to the open stream {:?} after acknowledgement",
        delivering.elapsed()
    );
    assert_exactly("the open stream, after the outage", &live, &after);
    events.assert_silent(Duration::from_millis(500)).await;
    for id in &after {
        assert_eq!(&resumed.next_within(RECEIVED_WITHIN).await.expect("live").id, id);
    }

    // History holds each acknowledged update once, and not the refused one.
    let everything: Vec<String> = before[1..].iter().chain(&after).cloned().collect();
    let replayed = history(&node.url, &query, &before[0], everything.len()).await;
    assert_exactly("history after the first update", &replayed, &everything);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_dead_server_makes_the_node_unready_until_it_answers_again() {
    const STREAM: &str = "FAULTS_SILENT";
    let mut cluster = NatsCluster::start(1).await;
    let node = Node::start(&cluster, STREAM, &[]).await;
    let topic = "https://example.com/faults/silent";
    let query = topics_query(&[topic]);
    let mut events = Events::open_url(&node.url, &query, Some(&subscriber()), &[]).await;
    publish_acknowledged(&node.url, topic, "before", "before the stop").await;
    assert_eq!(events.next().await.id, "before");

    // The server stops answering; its sockets stay open, so only the lack of answers tells.
    cluster.pause(0);
    let stopped = Instant::now();
    let unready = node.wait_ready(false).await;
    let unready = unready.unwrap_or_else(|| panic!("still ready:\n{}", node.logs()));
    eprintln!("[faults] server stopped (SIGSTOP): /readyz not 200 after {unready:?}");
    assert_eq!(node.status("/healthz").await, Some(200), "alive while NATS is silent");
    let form = [("topic", topic), ("id", "refused"), ("data", "while stopped")];
    let asked = Instant::now();
    let response = publish_request(&node.url, &publisher(), &form)
        .timeout(ACKNOWLEDGED_WITHIN)
        .send()
        .await
        .expect("the node answers");
    eprintln!(
        "[faults] a publication while unready answered {} after {:?}",
        response.status(),
        asked.elapsed()
    );
    assert_eq!(response.status(), 503);

    // The server goes on: the node is ready again and publishing works.
    cluster.resume(0);
    let resumed = Instant::now();
    let ready = node.wait_ready(true).await;
    let ready = ready.unwrap_or_else(|| panic!("not ready again:\n{}", node.logs()));
    eprintln!(
        "[faults] server continued (SIGCONT) after {:?} stopped: ready again after {ready:?}",
        resumed.duration_since(stopped)
    );
    publish_acknowledged(&node.url, topic, "after", "after the stop").await;
    match events.read_within(RECEIVED_WITHIN).await {
        Read::Update(event) => assert_eq!(event.id, "after", "nothing refused is delivered"),
        other => panic!("after the stop: {other:?}:\n{}", node.logs()),
    }
}
