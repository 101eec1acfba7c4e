//! Transports: where updates are numbered, stored, and fed to the topic router.
//!
//! A transport gives every update its place in one total order (its [`Seq`]), sends updates to
//! the router in that order through the [`feed`] it was built from, and serves history to
//! subscribers that resume with `Last-Event-ID`. The transport knows nothing of the router but
//! its feed, nor of HTTP: its errors say what kind of failure happened ([`TransportError`]), and
//! `crate::error` decides what a client is told.
//!
//! The single-node transports share one sequencer ([`local::LocalTransport`]) over a [`Store`]:
//! [`embedded`] (a redb file, durable, the default) and [`memory`] (volatile). The clustered
//! transport, [`nats`], implements [`Transport`] directly, its JetStream stream being the order.

pub mod embedded;
mod error;
pub mod feed;
pub mod local;
pub mod memory;
pub mod nats;
pub mod pages;
pub mod recent;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::subscription::Protocol;

use crate::update::{Dispatched, Seq, Update};
pub use error::{TransportError, RETRY_AFTER_CLOSED};
use pages::{Chunk, Page};
use recent::Keep;

/// The operations the hub needs from a transport.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Gives `update` the next sequence number and stores it (durably, as far as the transport
    /// is durable). Resolves with its sequence number once the update is *durably ordered*: no
    /// later failure can lose it or change its place. Delivery to subscribers follows through
    /// the feed; it may not have happened yet when this resolves.
    async fn publish(&self, update: Update) -> Result<Seq, TransportError> {
        self.publish_all(vec![update], Keep::History).await
    }

    /// Publishes `updates` together, in this order and in one write, with nothing else between
    /// them, kept as `keep` says; resolves with the last one's sequence number. `updates` must
    /// not be empty.
    async fn publish_all(&self, updates: Vec<Update>, keep: Keep) -> Result<Seq, TransportError>;

    /// The first stored update whose id is `id`, if it is still in history.
    async fn find(&self, id: &str) -> Result<Option<Arc<Dispatched>>, TransportError>;

    /// The page of history that follows `after`, for a replay that goes up to `bound`, at most
    /// about [`pages::PAGE_BYTES`] and shared with the replays reading the same page. Its reader
    /// continues after [`Page::through`]. A page is never empty while an update is stored in
    /// `after..=bound`: an empty page means that nothing is (it was trimmed, or never existed),
    /// and the replay is over.
    async fn read(&self, after: Seq, bound: Seq) -> Result<Page, TransportError>;

    /// Whether the transport currently accepts publications (readiness probe).
    fn is_ready(&self) -> bool;

    /// Announces that a subscription started: publishes its `arrivals` (subscription events)
    /// and records its `announcements`, so that the other nodes of a cluster list it and one of
    /// them announces its end if this node dies first. A single node only publishes.
    async fn arrive(
        &self,
        arrivals: Vec<Update>,
        announcements: Vec<Announcement>,
    ) -> Result<(), TransportError> {
        let _ = announcements;
        self.publish_all(arrivals, Keep::Recent).await.map(drop)
    }

    /// Announces that a subscription [`arrive`](Self::arrive)d with these announcements ended,
    /// publishing their departures.
    async fn depart(&self, announcements: Vec<Announcement>) -> Result<(), TransportError> {
        let departures = announcements.into_iter().map(|a| a.departure).collect();
        self.publish_all(departures, Keep::Recent).await.map(drop)
    }

    /// The subscriptions that the other live nodes of the cluster announced; none on a single
    /// node.
    fn announced_elsewhere(&self) -> Vec<Announcement> {
        Vec::new()
    }

    /// Waits, at most `within`, until the announcements still queued (a cluster transport
    /// queues them while its servers are unreachable) are made: called before the process
    /// exits.
    async fn settle(&self, within: Duration) {
        let _ = within;
    }

    /// Resolves, with the reason, if the transport has given up for good: it can never work
    /// with this configuration (a NATS stream that exists with settings the hub cannot apply,
    /// a server too old). The hub then stops. Never resolves for a transport that cannot fail
    /// that way.
    async fn fatal(&self) -> String {
        std::future::pending().await
    }
}

/// One subscription (to one selector) as the cluster lists it, with the update announcing its
/// end. The departure is made at arrival, so that whichever node publishes it publishes the
/// same update, which a clustered transport then stores once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// The subscriber's id.
    pub subscriber: String,
    /// The subscription's selector.
    pub topic: String,
    /// The token's `mercure.payload`, if any.
    pub payload: Option<serde_json::Value>,
    /// The subscription event that says it ended (`active: false`).
    pub departure: Update,
    /// The protocol whose format `departure` is in (records of older nodes: draft-07).
    #[serde(default)]
    pub protocol: Protocol,
    /// The selector's Mercure 1.0 matcher type; `None` for a draft-07 URI template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_type: Option<String>,
}

/// Synchronous storage behind [`local::LocalTransport`]. Only the sequencer thread appends, so
/// implementations need no ordering of their own; reads may run concurrently with appends.
pub trait Store: Send + Sync + 'static {
    /// The newest stored update, `None` when history is empty. Read once at start: the router
    /// bounds replays by its sequence number and reports its id as the last event id.
    fn last(&self) -> Result<Option<Arc<Dispatched>>, TransportError>;

    /// Appends `updates` in order, numbering them after the newest one, in one atomic step.
    /// Those to keep [`Keep::Recent`] are numbered like the others but kept in memory only,
    /// the last [`recent::RECENT_EPHEMERAL`] of them.
    fn append(&self, updates: Vec<(Update, Keep)>) -> Result<Vec<Arc<Dispatched>>, TransportError>;

    /// How many updates history holds now, recent ephemeral ones included (for the
    /// `mercure_history_updates` gauge).
    fn len(&self) -> u64;

    /// Whether history is empty.
    #[cfg(any(test, feature = "unstable-internals"))]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// See [`Transport::find`].
    fn find(&self, id: &str) -> Result<Option<Arc<Dispatched>>, TransportError>;

    /// The updates after `after`, in order, up to about `max_bytes` (at least one when any is
    /// stored after `after`); see [`Chunk::through`].
    fn read(&self, after: Seq, max_bytes: usize) -> Result<Chunk, TransportError>;
}
