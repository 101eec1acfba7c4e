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

use async_trait::async_trait;

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

    /// Resolves, with the reason, if the transport has given up for good: it can never work
    /// with this configuration (a NATS stream that exists with settings the hub cannot apply,
    /// a server too old). The hub then stops. Never resolves for a transport that cannot fail
    /// that way.
    async fn fatal(&self) -> String {
        std::future::pending().await
    }
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
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// See [`Transport::find`].
    fn find(&self, id: &str) -> Result<Option<Arc<Dispatched>>, TransportError>;

    /// The updates after `after`, in order, up to about `max_bytes` (at least one when any is
    /// stored after `after`); see [`Chunk::through`].
    fn read(&self, after: Seq, max_bytes: usize) -> Result<Chunk, TransportError>;
}
