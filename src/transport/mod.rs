//! Transports: where updates are stored, numbered, and fed to the topic router.
//!
//! A transport gives every update its place in one total order (its [`Seq`]), hands updates to the
//! router in that order, and serves history to subscribers that resume with `Last-Event-ID`. The
//! single-node transports share one sequencer ([`local::LocalTransport`]) over a [`Store`]:
//! [`embedded`] (a redb file, durable, the default) and [`memory`] (volatile). A clustered
//! transport (NATS JetStream) implements [`Transport`] directly, its stream being the order.

pub mod embedded;
pub mod local;
pub mod memory;
pub mod pages;
pub mod recent;

use std::sync::Arc;

use async_trait::async_trait;
use thiserror::Error;

use crate::update::{Dispatched, Seq, Update};
use pages::{Chunk, Page};
use recent::Keep;

/// Why a transport operation failed.
#[derive(Debug, Clone, Error)]
pub enum TransportError {
    /// The store refused or failed the operation (disk full, I/O error, corrupted file...).
    #[error("history store failure: {0}")]
    Store(String),
    /// The transport has shut down or its writer died.
    #[error("the transport is not running")]
    Closed,
}

/// The operations the hub needs from a transport.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Stores `update` durably (as far as the transport is durable), gives it the next sequence
    /// number and hands it to the router. Resolves once that is done, with the sequence number.
    async fn publish(&self, update: Update) -> Result<Seq, TransportError> {
        self.publish_all(vec![update], Keep::History).await
    }

    /// Publishes `updates` together, in this order and in one write, with nothing else between
    /// them, kept as `keep` says; resolves with the last one's sequence number. `updates` must
    /// not be empty.
    async fn publish_all(&self, updates: Vec<Update>, keep: Keep) -> Result<Seq, TransportError>;

    /// The first stored update whose id is `id`, if it is still in history.
    async fn find(&self, id: &str) -> Result<Option<Arc<Dispatched>>, TransportError>;

    /// The page of history that follows `after`, for a replay that goes up to `bound`: at least
    /// one update when any is stored after `after`, at most about [`pages::PAGE_BYTES`], shared
    /// with the replays reading the same page. Its reader continues after [`Page::through`].
    async fn read(&self, after: Seq, bound: Seq) -> Result<Page, TransportError>;

    /// Whether the transport currently accepts publications (readiness probe).
    fn is_ready(&self) -> bool;
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
