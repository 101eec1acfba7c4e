//! The hub: the actors between HTTP and the transport.
//!
//! - `router`: the topic-router actor. It owns every live subscription, takes updates from the
//!   transport's feed in sequence order, and offers each one to the subscribers it selects.
//! - `subscriber`: the actor of one subscriber connection, which is its response body: history
//!   first, then its queue from the router, framed for the socket.
//! - `presence`: the events that announce subscriptions, and their lifecycle.
//! - `client_streams`: how many event streams each client address holds
//!   (`max_streams_per_client`).
//!
//! [`Hub`] picks the transport the configuration names, builds it from the feed into a new
//! router, and is what the HTTP handlers share. It is also what an application that embeds the
//! hub holds: it publishes through [`Hub::publish`], reads [`Hub::subscriptions`] and
//! [`Hub::is_ready`], and ends the hub with [`Hub::shutdown`] (the routes come from
//! `Hub::configure`, in [`crate::http`]).

pub(crate) mod client_streams;
pub(crate) mod presence;
pub(crate) mod router;
pub(crate) mod subscriber;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::access_token::{JwksOptions, TrustedIssuers};
use crate::config::{Config, NatsSettings, TransportKind};
use crate::metrics::Metrics;
use crate::topic_selector;
use crate::transport::embedded::EmbeddedStore;
use crate::transport::feed::{self, NewFeed};
use crate::transport::local::LocalTransport;
use crate::transport::memory::MemoryStore;
use crate::transport::nats::NatsTransport;
use crate::transport::{Transport, TransportError};
use crate::update::{EventId, Update};
use router::Router;

/// How long [`Hub::shutdown`] waits, past `drain_timeout`, for the last streams to end and for
/// the announcements still queued (subscription departures during a NATS outage); past it, the
/// other nodes of a cluster make them.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why [`Hub::publish`] did not store an update. Nothing was stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// A field the hub refuses from publishers (the client crate's builder refuses the same).
    #[error("{0}")]
    Invalid(String),
    /// More topics than `max_topics_per_update`.
    #[error(
        "more than {limit} topics in one update (max_topics_per_update); publish the update in \
         several parts or raise the setting"
    )]
    TooManyTopics {
        /// The setting's value.
        limit: usize,
    },
    /// The transport cannot store it now (shutting down, or NATS out of reach); a retry after
    /// `retry_after` may succeed.
    #[error("{reason}")]
    Unavailable {
        /// What is unavailable.
        reason: String,
        /// When a retry may succeed.
        retry_after: Duration,
    },
    /// Larger than the transport carries in one message (NATS's `max_payload`).
    #[error("the update takes {size} bytes, more than the {limit} bytes the transport carries")]
    TooLarge {
        /// The encoded update's size in bytes.
        size: usize,
        /// The transport's limit in bytes.
        limit: usize,
    },
    /// The history store failed (disk full, I/O error...): an operator must look.
    #[error("history store failure: {0}")]
    Store(String),
}

impl From<TransportError> for PublishError {
    fn from(error: TransportError) -> Self {
        match error {
            TransportError::Unavailable { reason, retry_after } => {
                Self::Unavailable { reason, retry_after }
            }
            TransportError::TooLarge { size, limit } => Self::TooLarge { size, limit },
            TransportError::Store(reason) => Self::Store(reason),
        }
    }
}

/// A subscription to one selector, as the subscriptions API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveSubscription {
    /// The subscriber's id (`urn:uuid:...`), one per connection.
    pub subscriber: String,
    /// The topic selector: a topic, a URI template, a URL Pattern, or `*`.
    pub selector: String,
    /// The `payload` of the subscriber's token, if any.
    pub payload: Option<serde_json::Value>,
    /// Whether the subscriber is connected to this node (else to another node of the cluster).
    pub here: bool,
}

/// What the HTTP handlers share: the configuration and the handles of the hub's parts.
#[derive(Clone)]
pub struct Hub {
    /// The validated configuration.
    pub(crate) config: Arc<Config>,
    /// Where updates are numbered and stored.
    pub(crate) transport: Arc<dyn Transport>,
    /// The topic router.
    pub(crate) router: Router,
    /// Prometheus metrics.
    pub(crate) metrics: Metrics,
    /// Mercure 1.0: the trusted issuers that verify access tokens (their JWK Sets fetched and
    /// refreshed by actors of their own).
    pub(crate) issuers: TrustedIssuers,
    /// The event streams each client holds, with `max_streams_per_client`.
    pub(crate) client_streams: Option<Arc<client_streams::StreamsPerClient>>,
    /// Raised when a shutdown starts: the node is no longer ready.
    stopping: Arc<AtomicBool>,
    /// Drains the streams when the last handle is dropped.
    _drain_on_drop: Arc<DrainOnDrop>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("transport", &self.config.transport)
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

/// Held by every handle of a hub: when the last one goes, the router is told to end the streams
/// over `drain_timeout`, as on a shutdown, rather than leave them open with nothing to feed them.
struct DrainOnDrop {
    router: Router,
    drain: Duration,
}

impl Drop for DrainOnDrop {
    fn drop(&mut self) {
        // Fails only when the router has already stopped: nothing is left to drain.
        let _ = self.router.drain(self.drain);
    }
}

/// How long [`Hub::subscriptions`] waits for the router, which answers nothing until the
/// transport has read where its history ends (a NATS stream out of reach keeps it waiting).
const ROUTER_WAIT: Duration = Duration::from_secs(5);

impl Hub {
    /// Starts the router and the transport the configuration names, opening its store.
    pub fn start(config: Config) -> anyhow::Result<Self> {
        Self::start_with(config, |feed, config, metrics| {
            let memory = config.replay_memory;
            Ok(match &config.transport {
                TransportKind::Embedded => {
                    let store = EmbeddedStore::open(&config.history_path, config.history_size)?;
                    Arc::new(LocalTransport::start(store, feed, metrics, memory)?)
                }
                TransportKind::Memory => {
                    let store = MemoryStore::new(config.history_size);
                    Arc::new(LocalTransport::start(store, feed, metrics, memory)?)
                }
                TransportKind::Nats(settings) => {
                    let settings = NatsSettings::clone(settings);
                    Arc::new(NatsTransport::start(settings, config, feed, &metrics)?)
                }
            })
        })
    }

    /// Starts a router and a transport that `build` makes from the router's feed: for this
    /// repository's tests, which inject faults into a transport of their own. Not an API.
    #[cfg(feature = "unstable-internals")]
    #[doc(hidden)]
    pub fn with_transport(
        config: Config,
        build: impl FnOnce(NewFeed, &Config, Metrics) -> anyhow::Result<Arc<dyn Transport>>,
    ) -> anyhow::Result<Self> {
        Self::start_with(config, build)
    }

    /// Starts a router and a transport that `build` makes from the router's feed. The router
    /// serves nothing until the transport has started the feed (said where its history ends).
    fn start_with(
        config: Config,
        build: impl FnOnce(NewFeed, &Config, Metrics) -> anyhow::Result<Arc<dyn Transport>>,
    ) -> anyhow::Result<Self> {
        // Once here rather than on every subscription: the cache is process-wide.
        topic_selector::set_cache_size(config.selector_cache_size);
        let metrics = Metrics::new();
        let (feed, received) = feed::channel();
        let router = router::start(received, metrics.clone())?;
        let transport = build(feed, &config, metrics.clone())?;
        let options = JwksOptions { ca_file: config.jwks_ca.clone(), ..JwksOptions::default() };
        let issuers = TrustedIssuers::start(config.issuers.clone(), &options)?;
        let drain_on_drop = DrainOnDrop { router: router.clone(), drain: config.drain_timeout };
        let client_streams =
            config.max_streams_per_client.map(client_streams::StreamsPerClient::new);
        Ok(Self {
            config: Arc::new(config),
            transport,
            router,
            metrics,
            issuers,
            client_streams,
            stopping: Arc::default(),
            _drain_on_drop: Arc::new(drain_on_drop),
        })
    }

    /// Starts a shutdown: from now on the node is not ready, so that load balancers send new
    /// clients elsewhere while its streams drain.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// The validated configuration the hub runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The hub's Prometheus metrics ([`Metrics::render`] gives the text format).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Resolves, with the reason, if the hub can never work with its configuration (a NATS
    /// stream that exists with settings the hub cannot apply, a server too old): the binary
    /// then exits with that reason rather than stay unready for ever. Never resolves otherwise.
    pub async fn failed(&self) -> String {
        self.transport.fatal().await
    }

    /// Waits, at most `within`, until the announcements still queued are made (a cluster
    /// transport queues subscription departures while NATS is out of reach); [`Hub::shutdown`]
    /// calls it. For a process about to exit after its server stopped for another reason.
    pub async fn settle(&self, within: Duration) {
        self.transport.settle(within).await;
    }

    /// Whether the node accepts new work: its transport is ready and it is not shutting down.
    pub fn is_ready(&self) -> bool {
        !self.stopping.load(Ordering::Acquire) && self.transport.is_ready()
    }

    /// Publishes `update` from inside the process, without HTTP or token: the application is
    /// trusted as a publisher of every topic. The hub's rules for publishers still apply (no
    /// reserved topic or type, `max_topics_per_update`). Resolves with the update's id once it
    /// is stored (durably, with the embedded and NATS transports), as a `POST` is answered.
    ///
    /// The update is the client crate's (`quicksilver::Update`, re-exported), so that an
    /// application builds updates the same way for an embedded hub and for a remote one.
    pub async fn publish(
        &self,
        update: &quicksilver_client::Update,
    ) -> Result<String, PublishError> {
        let limit = self.config.max_topics_per_update;
        if update.topics().len() > limit {
            return Err(PublishError::TooManyTopics { limit });
        }
        let update = Update::try_from(update).map_err(|e| PublishError::Invalid(e.to_string()))?;
        let id = self.store(update, Instant::now()).await?;
        Ok(id.to_string())
    }

    /// Stores an update that passed the publisher's checks, counting it in the metrics (its
    /// latency from `started`) and logging a failure.
    pub(crate) async fn store(
        &self,
        update: Update,
        started: Instant,
    ) -> Result<EventId, TransportError> {
        let id = update.id.clone();
        let seq = self.transport.publish(update).await.map_err(|error| {
            self.metrics.publish_failed();
            match error {
                TransportError::Store(_) => tracing::error!(%error, "publish failed"),
                _ => tracing::warn!(%error, "publish refused by the transport"),
            }
            error
        })?;
        self.metrics.update_published(started.elapsed());
        tracing::debug!(id = %id, seq, "published");
        Ok(id)
    }

    /// The active subscriptions: this node's, then those the other nodes of a cluster
    /// announced, one entry per selector. `None` when the router cannot answer: it has
    /// stopped, or has not started within 5 s (its transport has not read where history ends,
    /// as when NATS is out of reach at start).
    pub async fn subscriptions(&self) -> Option<Vec<ActiveSubscription>> {
        let snapshot =
            tokio::time::timeout(ROUTER_WAIT, self.router.snapshot()).await.ok()?.ok()?;
        let mut all: Vec<ActiveSubscription> = snapshot
            .subscriptions
            .iter()
            .flat_map(|subscription| {
                subscription.selectors.iter().map(|selector| ActiveSubscription {
                    subscriber: subscription.id.clone(),
                    selector: selector.as_str().to_owned(),
                    payload: subscription.payload.clone(),
                    here: true,
                })
            })
            .collect();
        // Each subscription elsewhere is announced once per protocol the cluster serves.
        let mut seen = std::collections::HashSet::new();
        for announcement in self.transport.announced_elsewhere() {
            if seen.insert((announcement.subscriber.clone(), announcement.topic.clone())) {
                all.push(ActiveSubscription {
                    subscriber: announcement.subscriber,
                    selector: announcement.topic,
                    payload: announcement.payload,
                    here: false,
                });
            }
        }
        Some(all)
    }

    /// Shuts the hub down as the binary does on SIGTERM: from now on it is not ready (so load
    /// balancers send new clients elsewhere), every stream is ended at a random moment within
    /// `drain_timeout` (clients reconnect, spread over that time), then the announcements
    /// still queued are made. Resolves when the streams have ended (or `drain_timeout` and
    /// [`SETTLE_TIMEOUT`] have passed); the caller then stops its HTTP server. Every
    /// acknowledged publication was stored before its answer.
    ///
    /// Dropping every handle of the hub drains its streams the same way (over
    /// `drain_timeout`), without waiting: the application's server holds handles as long as
    /// it runs, so a server stopped first waits for streams that nothing ends.
    pub async fn shutdown(&self) {
        let drain = self.config.drain_timeout;
        let now = tokio::time::Instant::now();
        // A drain too long to add is as good as for ever: a year stands for it.
        let forever = now + Duration::from_secs(365 * 24 * 3600);
        let deadline = now.checked_add(drain.saturating_add(SETTLE_TIMEOUT)).unwrap_or(forever);
        self.stop();
        if self.router.drain(drain).is_ok() {
            // The router ends the streams on its own schedule; a stream's end unregisters it.
            // Bounded: a router that never started (its transport could not) never answers.
            const POLL: Duration = Duration::from_millis(50);
            while let Ok(Ok(snapshot)) =
                tokio::time::timeout_at(deadline, self.router.snapshot()).await
            {
                if snapshot.subscriptions.is_empty() || tokio::time::Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(POLL).await;
            }
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.settle(left.min(SETTLE_TIMEOUT)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hub_that_is_stopping_is_not_ready() {
        let env = [("MERCURE_JWT_KEY", "k"), ("MERCURE_TRANSPORT", "memory")];
        let env = env.map(|(k, v)| (k.to_owned(), v.to_owned()));
        let hub = Hub::start(Config::from_sources(None, env).expect("valid")).expect("started");
        assert!(hub.is_ready());
        hub.clone().stop();
        assert!(!hub.is_ready(), "every handle sees it");
        assert!(hub.transport.is_ready(), "while the transport still works");
    }

    fn config(settings: &[(&str, &str)]) -> Config {
        let builder = Config::builder().set("jwt_key", "k");
        settings.iter().fold(builder, |b, (key, value)| b.set(key, value)).build().expect("valid")
    }

    /// A hang guard only: what is awaited ends on its own well before it.
    const GUARD: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn dropping_every_handle_drains_the_streams() {
        let hub = Hub::start(config(&[("transport", "memory"), ("drain_timeout", "100ms")]))
            .expect("started");
        let subscription = crate::subscription::Subscription::new(
            vec![crate::topic_selector::TopicSelector::parse("*")],
            None,
            None,
        );
        let mut registered = hub.router.register(Arc::new(subscription), 8).await.expect("live");
        drop(hub);
        // The stream's queue closes when the router ends it; without the drain, the
        // registration alone would keep the router, and the stream, alive for ever.
        let end = tokio::time::timeout(GUARD, registered.queue.recv()).await;
        assert!(matches!(end, Ok(None)), "the stream was ended: {end:?}");
    }

    #[tokio::test]
    async fn a_hub_whose_transport_never_starts_answers_and_shuts_down() {
        // Nothing listens on port 1: the NATS bridge keeps trying, the router never starts.
        let settings =
            [("transport", "nats"), ("nats_url", "nats://127.0.0.1:1"), ("drain_timeout", "1s")];
        let hub = Hub::start(config(&settings)).expect("started");
        assert!(!hub.is_ready());
        let listed = tokio::time::timeout(GUARD, hub.subscriptions()).await;
        assert_eq!(listed, Ok(None), "no answer from a router that never started");
        tokio::time::timeout(GUARD, hub.shutdown()).await.expect("shutdown is bounded");
    }
}
