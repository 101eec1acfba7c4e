//! Presence across the cluster: which subscriptions every live node holds, and a departure for
//! every arrival, also when a node dies or NATS is out of reach.
//!
//! - **Listing.** Every node records each subscription it announced in a key-value bucket,
//!   `{stream}_presence` (key `{node}.{digest of subscriber and selector}`, value the
//!   [`Announcement`] as JSON), and watches that bucket, so that its subscriptions API lists the
//!   subscriptions of every node.
//! - **Liveness.** Every node keeps an entry of its own in `{stream}_nodes`, refreshed every
//!   [`NODE_REFRESH`]. An entry older than [`NODE_TTL`] (by the server's time stamps, compared
//!   with the newest entry's, so that the nodes' clocks do not matter) is stale, and its node's
//!   records are no longer listed. A node still stale [`NODE_TTL`] later is dead (the wait lets
//!   live nodes refresh again after a NATS restart): the live node with the smallest id publishes
//!   the departures of its records and deletes them, then its entry. A departure is made at
//!   arrival, so that if the dead node had published it already, JetStream's duplicate window
//!   drops the second copy. A node that finds its records deleted while their subscriptions are
//!   open (it was cut off from NATS, and taken for dead) ends their streams.
//! - **Outages.** Announcements are queued, in order, and made by one task, which waits while
//!   NATS is out of reach: a subscription opened meanwhile is served and announced when NATS is
//!   back, and one that also ended meanwhile is never announced at all. The record is written
//!   before the arrival is published, and the departure published before the record is deleted,
//!   so that a node dying in between leaves at worst a departure to publish, never an arrival
//!   without one.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation, Store};
use async_nats::jetstream::stream::StorageType;
use async_nats::jetstream::Context;
use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::connection::{Connection, PRESENCE_TTL, RETRY, SETUP_TIMEOUT};
use crate::subscription::Protocol;
use crate::transport::{Announcement, TransportError};
use crate::update::Update;

/// How long a node is taken for alive after its last refresh.
const NODE_TTL: Duration = Duration::from_secs(6);
/// How often a node refreshes its entry and looks for dead nodes' records.
const NODE_REFRESH: Duration = Duration::from_secs(2);
/// Announcements made together: their events are sent at once, then acknowledged.
const BATCH: usize = 256;

/// One announcement still to make.
#[derive(Debug)]
enum Pending {
    Arrive {
        arrivals: Vec<Update>,
        announcements: Vec<Announcement>,
        /// Told once the arrival is made.
        made: Option<tokio::sync::oneshot::Sender<()>>,
    },
    Depart(Vec<Announcement>),
}

impl Pending {
    fn is_arrival_of(&self, subscriber: &str) -> bool {
        matches!(self, Pending::Arrive { announcements, .. }
            if announcements.first().is_some_and(|a| a.subscriber == subscriber))
    }
}

/// The announcements to make, oldest first, and whether one is being made.
#[derive(Debug, Default)]
struct Queue {
    pending: VecDeque<Pending>,
    busy: bool,
}

/// This node's presence: its queue of announcements, and what every node announced.
#[derive(Debug)]
pub(super) struct Presence {
    /// This node's id, the first part of the key of each of its records.
    node: String,
    queue: Mutex<Queue>,
    /// Wakes the task that makes announcements.
    queued: tokio::sync::Notify,
    /// Every node's records, by key, as the bucket holds them.
    listed: Mutex<HashMap<String, Announcement>>,
    /// The nodes listed as alive at the last look, `None` before the first.
    live: Mutex<Option<BTreeSet<String>>>,
    /// The keys of this node's records whose subscriptions are still open.
    own: Mutex<HashSet<String>>,
    /// Told when another node deleted one of those records: it took this node for dead (cut
    /// off from NATS for longer than [`NODE_TTL`] twice) and announced the departures.
    taken_for_dead: tokio::sync::Notify,
}

impl Presence {
    pub(super) fn new() -> Self {
        Self {
            node: uuid::Uuid::new_v4().simple().to_string(),
            queue: Mutex::default(),
            queued: tokio::sync::Notify::new(),
            listed: Mutex::default(),
            live: Mutex::default(),
            own: Mutex::default(),
            taken_for_dead: tokio::sync::Notify::new(),
        }
    }

    /// Resolves when another node took this one for dead and announced the departures of its
    /// subscriptions, although they are open: their streams must end (their clients then come
    /// back, and are announced again).
    pub(super) async fn taken_for_dead(&self) {
        self.taken_for_dead.notified().await;
    }

    /// Queues the announcement of a subscription, and waits until it is made, at most
    /// `within` (as on a single node, a subscriber then sees its arrival listed at once). It
    /// stays queued after that.
    pub(super) async fn arrive(
        &self,
        arrivals: Vec<Update>,
        announcements: Vec<Announcement>,
        within: Duration,
    ) {
        let (made, is_made) = tokio::sync::oneshot::channel();
        let arrival = Pending::Arrive { arrivals, announcements, made: Some(made) };
        lock(&self.queue).pending.push_back(arrival);
        self.queued.notify_one();
        let _ = tokio::time::timeout(within, is_made).await;
    }

    /// Queues the end of a subscription, or forgets both when its arrival was not made yet.
    pub(super) fn depart(&self, announcements: Vec<Announcement>) {
        let Some(subscriber) = announcements.first().map(|a| a.subscriber.clone()) else {
            return;
        };
        let mut queue = lock(&self.queue);
        if let Some(at) = queue.pending.iter().position(|p| p.is_arrival_of(&subscriber)) {
            queue.pending.remove(at);
            return;
        }
        queue.pending.push_back(Pending::Depart(announcements));
        drop(queue);
        self.queued.notify_one();
    }

    /// The subscriptions the other live nodes announced.
    pub(super) fn elsewhere(&self) -> Vec<Announcement> {
        let live = lock(&self.live).clone();
        let listed = lock(&self.listed);
        listed
            .iter()
            .filter(|(key, _)| {
                let node = node_of(key);
                node != self.node && live.as_ref().is_none_or(|live| live.contains(node))
            })
            .map(|(_, a)| a.clone())
            .collect()
    }

    /// Waits, at most `within`, until every queued announcement is made.
    pub(super) async fn settle(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            {
                let queue = lock(&self.queue);
                if queue.pending.is_empty() && !queue.busy {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = lock(&self.queue).pending.len();
        tracing::warn!(left, "announcements not made before exit; other nodes will make them");
    }

    /// Sets up the buckets, then makes the announcements, follows the records and the nodes,
    /// for as long as the bridge runs.
    pub(super) async fn run(&self, connection: &Connection, jetstream: Context) {
        let (records, nodes) = loop {
            match self.buckets(connection, &jetstream).await {
                Ok(buckets) => break buckets,
                Err(error) => {
                    tracing::warn!(%error, "cannot set up the presence buckets; trying again");
                    tokio::time::sleep(RETRY).await;
                }
            }
        };
        tokio::join!(
            self.announce(connection, &records),
            self.follow(&records),
            self.keep_alive(connection, &records, &nodes),
        );
    }

    /// Creates or updates the two buckets (`{stream}_presence`, `{stream}_nodes`), then lists
    /// this node as alive.
    async fn buckets(
        &self,
        connection: &Connection,
        jetstream: &Context,
    ) -> Result<(Store, Store), String> {
        let mut jetstream = jetstream.clone();
        jetstream.set_timeout(SETUP_TIMEOUT);
        let bucket = |suffix: &str, description: &str| {
            jetstream.create_or_update_key_value(kv::Config {
                bucket: format!("{}_{suffix}", connection.settings.stream),
                description: format!("Quicksilver: {description}"),
                history: 1,
                storage: StorageType::File,
                num_replicas: connection.settings.replicas,
                ..kv::Config::default()
            })
        };
        let records = bucket("presence", "the subscriptions of every node").await;
        let records = records.map_err(|e| e.to_string())?;
        let nodes = bucket("nodes", "the live nodes").await.map_err(|e| e.to_string())?;
        // Listed as alive before any record is written: a record is never seen without its
        // node's entry (see `keep_alive`).
        nodes.put(&self.node, Bytes::new()).await.map_err(|e| e.to_string())?;
        Ok((records, nodes))
    }

    /// Makes the queued announcements, up to [`BATCH`] at a time, each batch again until it is
    /// made (what was already stored is stored once: same message ids, same keys).
    async fn announce(&self, connection: &Connection, records: &Store) {
        loop {
            let batch: Vec<Pending> = {
                let mut queue = lock(&self.queue);
                let size = queue.pending.len().min(BATCH);
                let batch: Vec<Pending> = queue.pending.drain(..size).collect();
                queue.busy = !batch.is_empty();
                batch
            };
            if batch.is_empty() {
                self.queued.notified().await;
                continue;
            }
            match self.make(connection, records, &batch).await {
                Ok(()) => {
                    lock(&self.queue).busy = false;
                    for pending in batch {
                        if let Pending::Arrive { made: Some(made), .. } = pending {
                            let _ = made.send(());
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot announce subscriptions yet; trying again");
                    {
                        let mut queue = lock(&self.queue);
                        for pending in batch.into_iter().rev() {
                            queue.pending.push_front(pending);
                        }
                        queue.busy = false;
                    }
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// Makes a batch: the arrivals' records, then every event in order (sent together, then
    /// acknowledged), then the departed records' deletion.
    async fn make(
        &self,
        connection: &Connection,
        records: &Store,
        batch: &[Pending],
    ) -> Result<(), String> {
        let mut puts = Vec::new();
        let mut events = Vec::new();
        let mut deletes = Vec::new();
        for pending in batch {
            match pending {
                Pending::Arrive { arrivals, announcements, .. } => {
                    for announcement in announcements {
                        let record = serde_json::to_vec(announcement).map_err(|e| e.to_string())?;
                        let key = self.key(announcement);
                        lock(&self.own).insert(key.clone());
                        puts.push((key, Bytes::from(record)));
                    }
                    events.extend(arrivals);
                }
                Pending::Depart(announcements) => {
                    for announcement in announcements {
                        events.push(&announcement.departure);
                        let key = self.key(announcement);
                        lock(&self.own).remove(&key);
                        deletes.push(key);
                    }
                }
            }
        }
        connection.jetstream().map_err(|e| e.to_string())?;
        let puts = puts.into_iter().map(|(key, record)| records.put(key, record));
        futures_util::future::try_join_all(puts).await.map_err(|e| e.to_string())?;
        match connection.publish_batch(&events, Some(PRESENCE_TTL)).await {
            Ok(()) => {}
            Err(TransportError::Unavailable { reason, .. }) => return Err(reason),
            // Trying again cannot help: said, and dropped, so that the queue goes on.
            Err(error) => tracing::error!(%error, "cannot publish subscription events"),
        }
        connection.jetstream().map_err(|e| e.to_string())?;
        let deletes = deletes.iter().map(|key| records.delete(key));
        futures_util::future::try_join_all(deletes).await.map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The key of this node's record of `announcement`.
    fn key(&self, announcement: &Announcement) -> String {
        let mut digest = Sha256::new();
        digest.update(announcement.subscriber.as_bytes());
        digest.update(b"\n");
        digest.update(announcement.topic.as_bytes());
        // The same subscription is announced once per protocol; draft-07 keys stay as they
        // were before Mercure 1.0, so that nodes of both versions agree during an upgrade.
        if announcement.protocol == Protocol::V1 {
            digest.update(b"\n1.0");
        }
        let digest = digest.finalize();
        let short: String = digest.iter().take(12).map(|byte| format!("{byte:02x}")).collect();
        format!("{}.{short}", self.node)
    }

    /// Keeps [`Self::listed`] as the records bucket is, watching it again after any failure.
    async fn follow(&self, records: &Store) {
        loop {
            match records.watch_with_history(">").await {
                Ok(mut changes) => {
                    lock(&self.listed).clear();
                    while let Some(change) = changes.next().await {
                        let Ok(entry) = change else { break };
                        let mut listed = lock(&self.listed);
                        match entry.operation {
                            Operation::Put => match serde_json::from_slice(&entry.value) {
                                Ok(announcement) => {
                                    listed.insert(entry.key, announcement);
                                }
                                Err(error) => tracing::warn!(key = entry.key, %error, "bad record"),
                            },
                            Operation::Delete | Operation::Purge => {
                                listed.remove(&entry.key);
                                if lock(&self.own).remove(&entry.key) {
                                    tracing::warn!(
                                        key = entry.key,
                                        "another node took this one for dead and announced \
                                         the end of its open subscriptions: ending them"
                                    );
                                    self.taken_for_dead.notify_one();
                                }
                            }
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot watch the presence records"),
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Refreshes this node's entry, and announces the departures of the dead nodes' records
    /// when this node is the live one with the smallest id.
    async fn keep_alive(&self, connection: &Connection, records: &Store, nodes: &Store) {
        let mut tick = tokio::time::interval(NODE_REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Nodes with records but no entry, since when this node has seen them so.
        let mut missing: HashMap<String, tokio::time::Instant> = HashMap::new();
        loop {
            tick.tick().await;
            if connection.jetstream().is_err() {
                continue;
            }
            if let Err(error) = nodes.put(&self.node, Bytes::new()).await {
                tracing::warn!(%error, "cannot refresh this node's entry");
                continue;
            }
            // The records first, the live nodes then: a node whose record is seen here was
            // listed as alive before it wrote it, so it is in the list below unless it died.
            let others: Vec<(String, Announcement)> = {
                let listed = lock(&self.listed);
                listed.iter().filter(|(k, _)| node_of(k) != self.node).map(clone_pair).collect()
            };
            let (live, stale) = match live_nodes(nodes).await {
                Ok(nodes) => nodes,
                Err(error) => {
                    tracing::warn!(%error, "cannot list the live nodes");
                    continue;
                }
            };
            *lock(&self.live) = Some(live.clone());
            let now = tokio::time::Instant::now();
            let absent: HashSet<&str> =
                others.iter().map(|(key, _)| node_of(key)).filter(|n| !live.contains(*n)).collect();
            missing.retain(|node, _| absent.contains(node.as_str()));
            for node in absent {
                missing.entry(node.to_owned()).or_insert(now);
            }
            if live.first() != Some(&self.node) {
                continue;
            }
            // The entries of dead nodes whose records are all dealt with.
            for node in stale.iter().filter(|n| !others.iter().any(|(k, _)| node_of(k) == *n)) {
                if let Err(error) = nodes.delete(node).await {
                    tracing::warn!(%error, "cannot delete a dead node's entry");
                }
            }
            for (key, announcement) in others {
                let node = node_of(&key);
                if missing.get(node).is_none_or(|since| now - *since < NODE_TTL) {
                    continue;
                }
                let departed = publish(connection, &announcement.departure).await;
                if let Err(error) = departed {
                    tracing::warn!(%error, "cannot announce a dead node's departures yet");
                    break;
                }
                if let Err(error) = records.delete(&key).await {
                    tracing::warn!(%error, "cannot delete a dead node's record");
                    break;
                }
                tracing::info!(
                    node,
                    subscriber = announcement.subscriber,
                    "announced the departure of a dead node's subscription"
                );
            }
        }
    }
}

/// The node of a record's key.
fn node_of(key: &str) -> &str {
    key.split('.').next().unwrap_or_default()
}

async fn publish(connection: &Connection, update: &Update) -> Result<(), String> {
    match connection.publish_one(update, Some(PRESENCE_TTL)).await {
        Ok(_) => Ok(()),
        Err(TransportError::Unavailable { reason, .. }) => Err(reason),
        // Trying again cannot help: said, and dropped, so that the queue goes on.
        Err(error) => {
            tracing::error!(%error, id = %update.id, "cannot publish a subscription event");
            Ok(())
        }
    }
}

/// The nodes whose entries are fresh (refreshed within [`NODE_TTL`] of the newest entry), and
/// those whose entries are stale.
async fn live_nodes(nodes: &Store) -> Result<(BTreeSet<String>, Vec<String>), String> {
    let mut keys = nodes.keys().await.map_err(|e| e.to_string())?;
    let mut stamped = Vec::new();
    while let Some(key) = keys.next().await {
        let key = key.map_err(|e| e.to_string())?;
        if let Some(entry) = nodes.entry(&key).await.map_err(|e| e.to_string())? {
            stamped.push((key, entry.created.unix_timestamp_nanos()));
        }
    }
    let newest = stamped.iter().map(|(_, at)| *at).max().unwrap_or_default();
    let ttl = i128::try_from(NODE_TTL.as_nanos()).unwrap_or(i128::MAX);
    let (live, stale): (Vec<_>, Vec<_>) =
        stamped.into_iter().partition(|(_, at)| newest - at <= ttl);
    Ok((
        live.into_iter().map(|(key, _)| key).collect(),
        stale.into_iter().map(|(key, _)| key).collect(),
    ))
}

fn clone_pair((key, announcement): (&String, &Announcement)) -> (String, Announcement) {
    (key.clone(), announcement.clone())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every change under these locks completes before anything can panic.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announcement(subscriber: &str) -> Announcement {
        Announcement {
            subscriber: subscriber.into(),
            topic: "/t".into(),
            payload: None,
            departure: Update::for_test(&format!("{subscriber}-departs")),
            protocol: Protocol::Draft07,
            match_type: Some("exact".into()),
        }
    }

    fn queued(presence: &Presence) -> Vec<String> {
        let queue = lock(&presence.queue);
        let describe = |p: &Pending| match p {
            Pending::Arrive { announcements, .. } => format!("+{}", announcements[0].subscriber),
            Pending::Depart(announcements) => format!("-{}", announcements[0].subscriber),
        };
        queue.pending.iter().map(describe).collect()
    }

    #[test]
    fn a_subscription_that_ends_before_it_was_announced_is_never_announced() {
        let presence = Presence::new();
        for subscriber in ["a", "b"] {
            let arrival = Pending::Arrive {
                arrivals: vec![Update::for_test(subscriber)],
                announcements: vec![announcement(subscriber)],
                made: None,
            };
            lock(&presence.queue).pending.push_back(arrival);
        }
        // "c" arrived before (its arrival was made): its departure is queued.
        presence.depart(vec![announcement("c")]);
        assert_eq!(queued(&presence), ["+a", "+b", "-c"]);
        presence.depart(vec![announcement("a")]);
        assert_eq!(queued(&presence), ["+b", "-c"], "both forgotten");
        presence.depart(vec![]);
        assert_eq!(queued(&presence), ["+b", "-c"]);
    }

    #[test]
    fn keys_are_per_node_subscriber_and_selector() {
        let (one, two) = (Presence::new(), Presence::new());
        let a = announcement("a");
        let mut other_topic = a.clone();
        other_topic.topic = "/u".into();
        assert_eq!(node_of(&one.key(&a)), one.node);
        assert_ne!(one.key(&a), two.key(&a));
        assert_ne!(one.key(&a), one.key(&other_topic));
        assert_ne!(one.key(&a), one.key(&announcement("b")));
        assert!(one.key(&a).bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'));
    }
}
