//! The `nats` transport: several hub nodes over one NATS JetStream stream.
//!
//! Every publication, on any node, is published to the stream and acknowledged by JetStream before
//! its publisher is answered: the stream's sequence numbers are the cluster's one order. Each
//! node's bridge actor (`Bridge`) reads the whole stream through one ordered consumer of its
//! own, from a position it keeps itself, and feeds its router, so every node fans out the same
//! updates in the same order, and a subscriber may be on any node.
//!
//! # Message format, version 1
//!
//! - subject `{stream}.u.{key}`, where `key` is the first 16 hexadecimal digits of the SHA-256 of
//!   the update's id, so that the stream finds the first update with an id by its subject;
//! - header `Quicksilver-Format: 1` (a node refuses a message of a format it does not know);
//! - header `Nats-Msg-Id`: the id and a digest of the whole update, so that a publication retried
//!   after a lost acknowledgement is stored once, while another update reusing the id is kept;
//! - header `Nats-TTL: 3600` on subscription events, which expire from the stream after an hour;
//! - payload: the update as JSON, the embedded store's encoding.
//!
//! # History
//!
//! The bridge keeps the updates it has read in a bounded window (no more than the stream keeps);
//! a replay from inside the window is served from memory, an older one reads the stream by
//! sequence number, a page of requests in flight at once. `Last-Event-ID` is looked up with the
//! stream leader's "first message on subject" on the id's subject, never with a replica that may
//! lag behind an acknowledgement made on another node.
//!
//! # Never backwards
//!
//! The bridge checks the stream at the first message of every consumer and every 2 s: a stream
//! deleted and created again, or updates that left it before this node read them, reset the
//! router (every open stream ends, and its client resumes); a consumer that stalls is created
//! again from the bridge's own position.
//!
//! # Parts
//!
//! - `connection`: publishing (acknowledged, idempotent retries), the probe that tells when the
//!   server stops answering, and the message format's functions;
//! - `presence`: subscriptions listed across nodes, departures of dead nodes, and
//!   announcements queued through outages.

mod connection;
mod presence;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::datetime::DateTime as OffsetDateTime;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::context::CreateStreamErrorKind;
use async_nats::jetstream::stream::{
    Config as StreamConfig, RawMessageErrorKind, StorageType, Stream,
};
use async_nats::jetstream::ErrorCode;
use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::sync::watch;

use super::feed::{Feed, NewFeed, RouterStopped};
use super::pages::{self, Chunk, Page, ReplayPages};
use super::recent::{Keep, Recent};
use super::{Announcement, Transport, TransportError};
use crate::config::{Config, NatsAuth, NatsSettings};
use crate::metrics::{Metrics, NatsMetrics};
use crate::update::{Dispatched, Seq, Update};
use connection::{decode, subject, unavailable, Connection, PRESENCE_TTL, RETRY, SETUP_TIMEOUT};
use presence::Presence;

/// Oldest NATS server version the transport accepts.
const MIN_SERVER: (u64, u64) = (2, 11);
/// How often the client pings its server: a server that stops answering is given up after two
/// unanswered pings, so the node turns unready within about three times this.
const PING_INTERVAL: Duration = Duration::from_secs(4);
/// Requests for old history that one replay page keeps in flight.
const READS_IN_FLIGHT: usize = 64;
/// How often the bridge checks that the stream it reads is still there, the same, and read.
const WATCH_INTERVAL: Duration = Duration::from_secs(2);
/// How long after start a stream that cannot be placed on enough servers is still retried: the
/// servers of a cluster starting together join one by one.
const START_GRACE: Duration = Duration::from_secs(30);

/// What the bridge and the transport's handles share.
#[derive(Debug)]
struct Shared {
    connection: Arc<Connection>,
    history_size: u64,
    /// `max_request_body_size`: the largest publication the hub takes.
    largest_body: usize,
    /// Whether the bridge is reading the stream (readiness).
    reading: AtomicBool,
    /// The updates the bridge has read, most recent last. Written by the bridge only; a lock
    /// rather than messages, so that replays never wait behind the consumer.
    window: Mutex<Window>,
    /// Why the bridge gave up for good, once it has.
    fatal: watch::Sender<Option<String>>,
}

/// The last updates read from the stream (the last [`super::recent::RECENT_EPHEMERAL`], about
/// 10 MB at 1 KB each, and no more than the stream keeps), complete from `from` on.
#[derive(Debug, Default)]
struct Window {
    updates: Recent,
    /// Every update of the stream numbered `from` or more that the bridge has read is here.
    from: Seq,
}

impl Window {
    /// Keeps `update`, and no more than `limit` updates when it is not 0 (the stream's own
    /// message limit: what the stream trimmed is not replayed from here either).
    fn push(&mut self, update: Arc<Dispatched>, limit: u64) {
        if let Some(forgotten) = self.updates.push(update) {
            self.from = forgotten.seq + 1;
        }
        while limit > 0 && self.updates.len() as u64 > limit {
            if let Some(forgotten) = self.updates.pop_oldest() {
                self.from = forgotten.seq + 1;
            }
        }
    }

    /// Forgets the updates numbered before `first`, the stream's first (trimmed by age).
    fn trim_before(&mut self, first: Seq) {
        while self.updates.oldest().is_some_and(|seq| seq < first) {
            self.updates.pop_oldest();
        }
        self.from = self.from.max(first);
    }

    /// The newest update read, 0 when none.
    fn last(&self) -> Seq {
        self.updates.newest().unwrap_or(self.from.saturating_sub(1))
    }
}

/// A [`Transport`] over a NATS JetStream stream. Its bridge stops when every clone is dropped.
#[derive(Debug, Clone)]
pub struct NatsTransport {
    shared: Arc<Shared>,
    pages: Arc<ReplayPages>,
    presence: Arc<Presence>,
    /// Dropped with the last handle, which tells the bridge to stop.
    _running: Arc<tokio::sync::oneshot::Sender<()>>,
}

impl NatsTransport {
    /// Starts the bridge on a thread of its own. It connects to NATS (trying again until it
    /// can), creates or updates the stream, tells the router where the stream ends, then feeds
    /// it every update. Until then the transport is not ready and publications get 503. When
    /// the stream cannot be set up with these settings, [`Transport::fatal`] says why.
    pub fn start(
        settings: NatsSettings,
        config: &Config,
        feed: NewFeed,
        metrics: &Metrics,
    ) -> Result<Self, TransportError> {
        let (history_size, replay_memory) = (config.history_size, config.replay_memory);
        let history = metrics.clone();
        let metrics = metrics.nats();
        let shared = Arc::new(Shared {
            connection: Arc::new(Connection::new(settings, metrics.clone())),
            history_size,
            largest_body: config.max_request_body_size,
            reading: AtomicBool::new(false),
            window: Mutex::default(),
            fatal: watch::Sender::new(None),
        });
        let presence = Arc::new(Presence::new());
        let bridge = Bridge {
            shared: shared.clone(),
            presence: presence.clone(),
            metrics,
            history,
            created: None,
            position: 0,
        };
        let (running, stopped) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| TransportError::Store(format!("cannot start the NATS bridge: {e}")))?;
        std::thread::Builder::new()
            .name("quicksilver-nats-bridge".into())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::select! {
                        () = bridge.run(feed) => {}
                        _ = stopped => {}
                    }
                })
            })
            .map_err(|e| TransportError::Store(format!("cannot start the NATS bridge: {e}")))?;
        let pages = Arc::new(ReplayPages::new(replay_memory));
        Ok(Self { shared, pages, presence, _running: Arc::new(running) })
    }

    async fn stream(&self) -> Result<async_nats::jetstream::stream::Stream<()>, TransportError> {
        let name = &self.shared.connection.settings.stream;
        self.shared
            .connection
            .jetstream()?
            .get_stream_no_info(name)
            .await
            .map_err(|e| unavailable(&e.to_string()))
    }

    /// The first update of the stream whose id is `id`, asked of the stream's leader: a replica
    /// may lag behind an acknowledgement made on another node.
    async fn find_in_stream(&self, id: &str) -> Result<Option<Arc<Dispatched>>, TransportError> {
        let stream = self.stream().await?;
        let subject = subject(&self.shared.connection.settings.stream, id);
        let mut from = 1;
        // Ids whose keys collide share a subject: step over the other ids.
        loop {
            let message = match stream.get_first_raw_message_by_subject(&subject, from).await {
                Ok(message) => message,
                Err(error) if error.kind() == RawMessageErrorKind::NoMessageFound => {
                    return Ok(None)
                }
                Err(error) => return Err(unavailable(&error.to_string())),
            };
            let update = decode(message.sequence, &message.headers, &message.payload)?;
            if update.id.as_str() == id {
                return Ok(Some(update));
            }
            from = message.sequence + 1;
        }
    }

    /// The updates after `after` up to `bound`, about `max_bytes` of them, from the window when
    /// it has them, else from the stream by sequence number.
    async fn load(
        &self,
        after: Seq,
        bound: Seq,
        max_bytes: usize,
    ) -> Result<Chunk, TransportError> {
        {
            let window = lock(&self.shared.window);
            if window.from > 0 && after + 1 >= window.from {
                let updates = window.updates.range(after, bound);
                return Ok(pages::fill(updates, max_bytes, window.last().min(bound)));
            }
        }
        let stream = self.stream().await?;
        let info = stream.get_info().await.map_err(|e| unavailable(&e.to_string()))?;
        // What the stream trimmed is not asked for.
        let start = (after + 1).max(info.state.first_sequence);
        let mut chunk = Chunk { updates: Vec::new(), through: bound };
        let mut size = 0;
        // A page of requests in flight at once, answered by the stream's leader in order: a
        // replica could lag behind what this node has read.
        let stream = &stream;
        let mut messages = futures_util::stream::iter(start..=bound)
            .map(|seq| async move { (seq, stream.get_raw_message(seq).await) })
            .buffered(READS_IN_FLIGHT);
        while let Some((seq, message)) = messages.next().await {
            match message {
                Ok(message) => {
                    // As the bridge does, a message this node cannot read is skipped, not fatal.
                    let Ok(update) = decode(seq, &message.headers, &message.payload) else {
                        continue;
                    };
                    if !chunk.updates.is_empty() && size + update.size() > max_bytes {
                        chunk.through = seq - 1;
                        break;
                    }
                    size += update.size();
                    chunk.updates.push(update);
                }
                // Trimmed or deleted: nothing to replay at this number.
                Err(error) if error.kind() == RawMessageErrorKind::NoMessageFound => {}
                Err(error) => return Err(unavailable(&error.to_string())),
            }
        }
        Ok(chunk)
    }
}

#[async_trait]
impl Transport for NatsTransport {
    async fn publish_all(&self, updates: Vec<Update>, keep: Keep) -> Result<Seq, TransportError> {
        // One after the other, so that they keep their order. Ephemeral updates (subscription
        // events) travel through the stream like any update, since every node must see them,
        // and expire from it after a while.
        let ttl = (keep == Keep::Recent).then_some(PRESENCE_TTL);
        let mut last = 0;
        for update in &updates {
            last = self.shared.connection.publish_one(update, ttl).await?;
        }
        Ok(last)
    }

    async fn find(&self, id: &str) -> Result<Option<Arc<Dispatched>>, TransportError> {
        // While NATS is out of reach, a subscriber resuming waits rather than get a 5xx, which
        // would make an EventSource give up for good; an update this node read lately is found
        // in its window meanwhile.
        loop {
            match self.shared.connection.jetstream() {
                Ok(_) => match self.find_in_stream(id).await {
                    Err(TransportError::Unavailable { .. }) => {}
                    found => return found,
                },
                Err(_) => {
                    if let Some(found) = lock(&self.shared.window).updates.find(id) {
                        return Ok(Some(found));
                    }
                }
            }
            tokio::time::sleep(RETRY / 4).await;
        }
    }

    async fn read(&self, after: Seq, bound: Seq) -> Result<Page, TransportError> {
        self.pages.page(after, bound, |max| self.load(after, bound, max)).await
    }

    fn is_ready(&self) -> bool {
        self.shared.reading.load(Ordering::Acquire) && self.shared.connection.jetstream().is_ok()
    }

    async fn arrive(
        &self,
        arrivals: Vec<Update>,
        announcements: Vec<Announcement>,
    ) -> Result<(), TransportError> {
        // Queued, and made in order by the bridge, also after an outage: a subscription is
        // served while NATS is out of reach, and announced when it is back. While NATS is
        // there, the subscriber waits for its arrival to be made, as on a single node.
        let within = if self.shared.connection.jetstream().is_ok() {
            self.shared.connection.settings.publish_timeout
        } else {
            Duration::ZERO
        };
        self.presence.arrive(arrivals, announcements, within).await;
        Ok(())
    }

    async fn depart(&self, announcements: Vec<Announcement>) -> Result<(), TransportError> {
        self.presence.depart(announcements);
        Ok(())
    }

    fn announced_elsewhere(&self) -> Vec<Announcement> {
        self.presence.elsewhere()
    }

    async fn settle(&self, within: Duration) {
        self.presence.settle(within).await;
    }

    async fn fatal(&self) -> String {
        let mut fatal = self.shared.fatal.subscribe();
        let reason = fatal.wait_for(Option::is_some).await.ok().and_then(|r| r.clone());
        match reason {
            Some(reason) => reason,
            // The bridge is gone without a reason: the hub is stopping anyway.
            None => std::future::pending().await,
        }
    }
}

/// The bridge actor: connects, keeps the stream configured, and feeds the router from its own
/// consumer, resuming from its own position after any failure. It owns that position and the
/// connection; it shares with the handles only what they read: the JetStream context once
/// connected, the readiness flag and the window. It stops when the router stops or when every
/// handle of the transport is dropped.
struct Bridge {
    shared: Arc<Shared>,
    presence: Arc<Presence>,
    metrics: NatsMetrics,
    /// The hub's metrics, for the number of updates the stream holds.
    history: Metrics,
    /// What identifies the stream this node reads: its creation time and the sequence number
    /// of the last update fed to the router.
    created: Option<OffsetDateTime>,
    position: Seq,
}

/// Why the stream could not be set up.
enum SetupError {
    /// Worth trying again (NATS unreachable, JetStream not ready, a cluster still forming).
    Retry(String),
    /// Trying again cannot help: the settings or the servers must change.
    Fatal(String),
}

impl Bridge {
    async fn run(mut self, feed: NewFeed) {
        let shared = self.shared.clone();
        let settings = &shared.connection.settings;
        let servers = settings.redacted_servers();
        let started = tokio::time::Instant::now();
        let (jetstream, stream) = loop {
            match self.connect(started.elapsed() > START_GRACE).await {
                Ok(connected) => break connected,
                Err(SetupError::Fatal(reason)) => {
                    tracing::error!(%servers, %reason, "cannot use NATS");
                    // Kept for whoever asks later, even if nobody listens yet. The feed is
                    // dropped unstarted: the router stops with the hub.
                    self.shared.fatal.send_replace(Some(reason));
                    return;
                }
                Err(SetupError::Retry(error)) => {
                    tracing::warn!(%servers, %error, "NATS is not available yet; trying again");
                    tokio::time::sleep(RETRY).await;
                }
            }
        };
        let info = stream.cached_info();
        self.created = Some(info.created);
        self.position = info.state.last_sequence;
        let _ = self.shared.connection.jetstream.set(jetstream.clone());
        // The probe and presence run beside the consumer, on this thread, for as long as the
        // bridge does.
        tokio::spawn({
            let (connection, client) = (self.shared.connection.clone(), jetstream.client());
            async move { connection.probe(client).await }
        });
        tokio::spawn({
            let (presence, connection, jetstream) =
                (self.presence.clone(), self.shared.connection.clone(), jetstream.clone());
            async move { presence.run(&connection, jetstream).await }
        });
        lock(&self.shared.window).from = self.position + 1;
        let feed = feed.start(self.position);
        let mut stream = stream;
        loop {
            tracing::info!(stream = %settings.stream, position = self.position, "reading the NATS stream");
            match self.read_from(&stream, &feed).await {
                Ok(()) => return, // the router has stopped: the hub is shutting down
                Err(error) => {
                    self.shared.reading.store(false, Ordering::Release);
                    self.metrics.consumer_recreated();
                    tracing::warn!(%error, position = self.position, "reading the NATS stream failed; resuming");
                }
            }
            // The stream may have been deleted, recreated or purged meanwhile: set it up again,
            // and check that it still continues what was read.
            stream = loop {
                tokio::time::sleep(RETRY).await;
                match self.ensure_stream(&jetstream, true).await {
                    Ok(stream) => break stream,
                    Err(SetupError::Retry(error) | SetupError::Fatal(error)) => {
                        tracing::warn!(%error, "cannot read the NATS stream; trying again");
                    }
                }
            };
            let info = stream.cached_info();
            if self.created != Some(info.created) || info.state.last_sequence < self.position {
                self.created = Some(info.created);
                let reason = "the stream was deleted and created again";
                if self.reset(&feed, info.state.last_sequence, reason).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Connects, checks the server version, and creates or updates the stream. Configuration
    /// differences that cannot be applied are fatal at once; placement failures only once the
    /// start-up grace period is over (`late`), as servers starting together join one by one.
    async fn connect(
        &self,
        late: bool,
    ) -> Result<(async_nats::jetstream::Context, Stream), SetupError> {
        let settings = &self.shared.connection.settings;
        let metrics = self.metrics.clone();
        let options = async_nats::ConnectOptions::new()
            .ping_interval(PING_INTERVAL)
            .connection_timeout(Duration::from_secs(5))
            .name("quicksilver")
            .event_callback(move |event| {
                let metrics = metrics.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => metrics.set_connected(true),
                        async_nats::Event::Disconnected => metrics.set_connected(false),
                        other => tracing::warn!(event = %other, "NATS"),
                    }
                }
            });
        let options = match &settings.auth {
            NatsAuth::None => options,
            NatsAuth::UserPassword(user, password) => {
                options.user_and_password(user.clone(), password.expose().to_owned())
            }
            NatsAuth::Token(token) => options.token(token.expose().to_owned()),
            NatsAuth::CredentialsFile(path) => {
                options.credentials_file(path).await.map_err(|e| {
                    SetupError::Fatal(format!("cannot read nats_creds {}: {e}", path.display()))
                })?
            }
        };
        let mut options = options.require_tls(settings.tls.is_set());
        if let Some(ca) = &settings.tls.ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &settings.tls.client {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        let client = options
            .connect(settings.servers.as_slice())
            .await
            .map_err(|e| SetupError::Retry(format!("cannot connect: {e}")))?;
        self.metrics.set_connected(true);
        let max_payload = client.server_info().max_payload;
        if self.shared.largest_body > max_payload {
            tracing::warn!(
                max_request_body_size = self.shared.largest_body,
                max_payload,
                "publications larger than the NATS server's max_payload will get 413: lower \
                 max_request_body_size, or raise max_payload on the servers"
            );
        }
        let version = client.server_info().version;
        if !recent_enough(&version) {
            return Err(SetupError::Fatal(format!(
                "the NATS server runs {version}; Quicksilver needs {}.{} or later",
                MIN_SERVER.0, MIN_SERVER.1
            )));
        }
        let jetstream = async_nats::jetstream::new(client);
        let stream = self.ensure_stream(&jetstream, late).await?;
        Ok((jetstream, stream))
    }

    /// Creates the stream, or updates it to the settings; see [`Self::connect`] for `late`.
    async fn ensure_stream(
        &self,
        jetstream: &async_nats::jetstream::Context,
        late: bool,
    ) -> Result<Stream, SetupError> {
        let settings = &self.shared.connection.settings;
        let name = &settings.stream;
        let config = StreamConfig {
            name: name.clone(),
            subjects: vec![format!("{name}.>")],
            num_replicas: settings.replicas,
            storage: StorageType::File,
            max_messages: match self.shared.history_size {
                0 => -1,
                n => i64::try_from(n).unwrap_or(i64::MAX),
            },
            max_age: settings.max_age.unwrap_or_default(),
            allow_direct: true,
            allow_message_ttl: true,
            ..StreamConfig::default()
        };
        let mut setup = jetstream.clone();
        setup.set_timeout(SETUP_TIMEOUT);
        let info = setup.create_or_update_stream(config).await.map_err(|error| {
            let code = match error.kind() {
                CreateStreamErrorKind::JetStream(error) => Some(error.error_code()),
                _ => None,
            };
            match code {
                Some(ErrorCode::STREAM_INVALID_CONFIG | ErrorCode::STREAM_NAME_EXIST) => {
                    SetupError::Fatal(format!(
                        "stream {name} exists with settings this hub cannot change ({error}); \
                         set another nats_stream, or change or delete the stream"
                    ))
                }
                Some(ErrorCode::STREAM_SUBJECT_OVERLAP) => SetupError::Fatal(format!(
                    "the subjects {name}.> of nats_stream {name} belong to another stream \
                     ({error}); set another nats_stream"
                )),
                Some(
                    ErrorCode::STREAM_REPLICAS_NOT_SUPPORTED
                    | ErrorCode::STREAM_REPLICAS_NOT_UPDATABLE,
                ) => SetupError::Fatal(replicas_refused(settings.replicas, &error)),
                Some(ErrorCode::CLUSTER_NO_PEERS | ErrorCode::INSUFFICIENT_RESOURCES) if late => {
                    SetupError::Fatal(replicas_refused(settings.replicas, &error))
                }
                _ => SetupError::Retry(format!("cannot create or update stream {name}: {error}")),
            }
        })?;
        jetstream
            .get_stream(&info.config.name)
            .await
            .map_err(|e| SetupError::Retry(format!("cannot read stream {name}: {e}")))
    }

    /// Feeds the router from the position on, moving it with every update; `Ok` once the router
    /// has stopped, an error when the consumer must be created again.
    ///
    /// async-nats's ordered consumer recreates itself after a hiccup, retrying for ever, also on a
    /// stream that was deleted, and then on a new stream of the same name from its old position.
    /// So the bridge checks the stream itself: at the first message of every (re)created
    /// consumer, and every [`WATCH_INTERVAL`], when it also notices a consumer that stalled.
    async fn read_from(&mut self, stream: &Stream, feed: &Feed) -> Result<(), String> {
        let consumer = stream
            .create_consumer(OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: self.position + 1,
                },
                ..OrderedConfig::default()
            })
            .await
            .map_err(|e| format!("cannot create the consumer: {e}"))?;
        let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
        self.shared.reading.store(true, Ordering::Release);
        let mut watch = tokio::time::interval(WATCH_INTERVAL);
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The position at the last check, when the stream held more than that.
        let mut behind_at = None;
        loop {
            let message = tokio::select! {
                message = messages.next() => message,
                () = self.presence.taken_for_dead() => {
                    // The other nodes announced the end of this node's subscriptions: end
                    // them, so that their clients come back and are announced again.
                    if feed.reset(self.position).await.is_err() {
                        return Ok(());
                    }
                    continue;
                }
                _ = watch.tick() => {
                    let (first, last) = self.check(stream).await?;
                    lock(&self.shared.window).trim_before(first);
                    self.metrics.set_consumer_lag(last.saturating_sub(self.position));
                    if last > self.position && behind_at == Some(self.position) {
                        return Err(format!("the consumer stalled at {}", self.position));
                    }
                    behind_at = (last > self.position).then_some(self.position);
                    continue;
                }
            };
            let message = message.ok_or("the consumer ended")?.map_err(|e| e.to_string())?;
            let info = message.info().map_err(|e| e.to_string())?;
            let (seq, pending) = (info.stream_sequence, info.pending);
            if info.consumer_sequence == 1 {
                // A consumer was just (re)created: is it still on the stream read so far?
                self.check(stream).await?;
            }
            if seq <= self.position {
                continue;
            }
            self.metrics.set_consumer_lag(pending);
            if seq > self.position + 1 {
                // Updates left the stream before this node read them (trimmed by its limits
                // or purged): its subscribers would never see them.
                let reason = "updates left the stream before this node read them";
                if self.reset(feed, seq - 1, reason).await.is_err() {
                    return Ok(());
                }
            }
            let headers = message.headers.clone().unwrap_or_default();
            self.position = seq;
            let update = match decode(seq, &headers, &message.payload) {
                Ok(update) => update,
                Err(error) => {
                    // Not ours to deliver (another writer, or a newer format): skip it, loudly.
                    tracing::error!(seq, %error, "skipping a message of the stream");
                    continue;
                }
            };
            lock(&self.shared.window).push(update.clone(), self.shared.history_size);
            if feed.send(update).await.is_err() {
                return Ok(());
            }
        }
    }

    /// The stream's first and last sequence numbers, once checked that it is still the stream
    /// read so far; an error when it is gone or was created again.
    async fn check(&self, stream: &Stream) -> Result<(Seq, Seq), String> {
        let info = stream.get_info().await.map_err(|e| format!("cannot read the stream: {e}"))?;
        if Some(info.created) != self.created {
            return Err("the stream was created again".into());
        }
        self.history.set_history_size(info.state.messages);
        Ok((info.state.first_sequence, info.state.last_sequence))
    }

    /// The stream no longer continues what was read: it now ends at `last`. The router ends
    /// every open stream (their clients resume with `Last-Event-ID`), and the window forgets
    /// the old history.
    async fn reset(&mut self, feed: &Feed, last: Seq, reason: &str) -> Result<(), RouterStopped> {
        tracing::warn!(position = self.position, last, reason, "the NATS stream was reset");
        self.metrics.stream_reset();
        *lock(&self.shared.window) = Window { updates: Recent::default(), from: last + 1 };
        self.position = last;
        feed.reset(last).await
    }
}

/// Start-up stops: the stream cannot have `replicas` copies.
fn replicas_refused(replicas: usize, error: &dyn std::fmt::Display) -> String {
    format!(
        "nats_replicas is {replicas}, and NATS cannot place that many copies of the stream \
         ({error}); the NATS cluster needs at least {replicas} JetStream servers"
    )
}

/// Whether a server version (`2.11.3`, `v2.12.0-beta`) is at least [`MIN_SERVER`].
fn recent_enough(version: &str) -> bool {
    let mut numbers = version.trim_start_matches('v').split(['.', '-']).map(|n| n.parse::<u64>());
    match (numbers.next(), numbers.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor) >= MIN_SERVER,
        _ => false,
    }
}

fn lock(window: &Mutex<Window>) -> std::sync::MutexGuard<'_, Window> {
    // Every change to the window completes before anything can panic.
    window.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_versions() {
        assert!(recent_enough("2.11.0") && recent_enough("2.14.9") && recent_enough("v3.0.0"));
        assert!(!recent_enough("2.9.25") && !recent_enough("2.10.0") && !recent_enough("junk"));
    }
}
