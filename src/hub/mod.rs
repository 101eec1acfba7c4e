//! The hub: the actors between HTTP and the transport.
//!
//! - `router`: the topic-router actor. It owns every live subscription, takes updates from the
//!   transport's feed in sequence order, and offers each one to the subscribers it selects.
//! - `subscriber`: the actor of one subscriber connection, which is its response body: history
//!   first, then its queue from the router, framed for the socket.
//! - `presence`: the events that announce subscriptions, and their lifecycle.
//!
//! [`Hub`] picks the transport the configuration names, builds it from the feed into a new
//! router, and is what the HTTP handlers share. It is also what an application that embeds the
//! hub holds: it publishes through [`Hub::publish`], reads [`Hub::subscriptions`] and
//! [`Hub::is_ready`], and ends the hub with [`Hub::shutdown`] (the routes come from
//! `Hub::configure`, in [`crate::http`]).

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
    /// Raised when a shutdown starts: the node is no longer ready.
    stopping: Arc<AtomicBool>,
}

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
        Ok(Self {
            config: Arc::new(config),
            transport,
            router,
            metrics,
            issuers,
            stopping: Arc::default(),
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
    /// The update is the client crate's ([`crate::Update`]), so that an application builds
    /// updates the same way for an embedded hub and for a remote one.
    pub async fn publish(&self, update: &crate::Update) -> Result<String, PublishError> {
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
    /// announced, one entry per selector. `None` once the hub has stopped.
    pub async fn subscriptions(&self) -> Option<Vec<ActiveSubscription>> {
        let snapshot = self.router.snapshot().await.ok()?;
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
    /// Dropping every handle of the hub instead ends the streams at once, all together.
    pub async fn shutdown(&self) {
        let drain = self.config.drain_timeout;
        let deadline = tokio::time::Instant::now() + drain + SETTLE_TIMEOUT;
        self.stop();
        if self.router.drain(drain).is_ok() {
            // The router ends the streams on its own schedule; a stream's end unregisters it.
            const POLL: Duration = Duration::from_millis(50);
            while let Ok(snapshot) = self.router.snapshot().await {
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
}
