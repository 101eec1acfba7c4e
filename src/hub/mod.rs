//! The hub: the actors between HTTP and the transport.
//!
//! - [`router`]: the topic-router actor. It owns every live subscription, takes updates from the
//!   transport's feed in sequence order, and offers each one to the subscribers it selects.
//! - [`subscriber`]: the actor of one subscriber connection, which is its response body: history
//!   first, then its queue from the router, framed for the socket.
//! - [`presence`]: the events that announce subscriptions, and their lifecycle.
//!
//! [`Hub`] picks the transport the configuration names, builds it from the feed into a new
//! router, and is what the HTTP handlers share.

pub mod presence;
pub mod router;
pub mod subscriber;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::access_token::{JwksOptions, TrustedIssuers};
use crate::config::{Config, NatsSettings, TransportKind};
use crate::metrics::Metrics;
use crate::topic_selector;
use crate::transport::embedded::EmbeddedStore;
use crate::transport::feed::{self, NewFeed};
use crate::transport::local::LocalTransport;
use crate::transport::memory::MemoryStore;
use crate::transport::nats::NatsTransport;
use crate::transport::Transport;
use router::Router;

/// What the HTTP handlers share: the configuration and the handles of the hub's parts.
#[derive(Clone)]
pub struct Hub {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Where updates are numbered and stored.
    pub transport: Arc<dyn Transport>,
    /// The topic router.
    pub router: Router,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Mercure 1.0: the trusted issuers that verify access tokens (their JWK Sets fetched and
    /// refreshed by actors of their own).
    pub issuers: TrustedIssuers,
    /// Raised when a shutdown starts: the node is no longer ready.
    stopping: Arc<AtomicBool>,
}

impl Hub {
    /// Starts the router and the transport the configuration names, opening its store.
    pub fn start(config: Config) -> anyhow::Result<Self> {
        Self::with_transport(config, |feed, config, metrics| {
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

    /// Starts a router and a transport that `build` makes from the router's feed. The router
    /// serves nothing until the transport has started the feed (said where its history ends).
    pub fn with_transport(
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

    /// Whether the node accepts new work: its transport is ready and it is not shutting down.
    pub fn is_ready(&self) -> bool {
        !self.stopping.load(Ordering::Acquire) && self.transport.is_ready()
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
