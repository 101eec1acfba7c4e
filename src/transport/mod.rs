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

use std::sync::Arc;

use async_trait::async_trait;
use thiserror::Error;

use crate::update::{Dispatched, Seq, Update};

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
    async fn publish(&self, update: Update) -> Result<Seq, TransportError>;

    /// The sequence number of the first stored update whose id is `id`, if it is still in history.
    async fn find(&self, id: &str) -> Result<Option<Seq>, TransportError>;

    /// Up to `limit` stored updates with `after < seq <= up_to`, in order.
    async fn read(
        &self,
        after: Seq,
        up_to: Seq,
        limit: usize,
    ) -> Result<Vec<Arc<Dispatched>>, TransportError>;

    /// Whether the transport currently accepts publications (readiness probe).
    fn is_ready(&self) -> bool;
}

/// Synchronous storage behind [`local::LocalTransport`]. Only the sequencer thread appends, so
/// implementations need no ordering of their own; reads may run concurrently with appends.
pub trait Store: Send + Sync + 'static {
    /// The newest stored update, `None` when history is empty. Read once at start: the router
    /// bounds replays by its sequence number and reports its id as the last event id.
    fn last(&self) -> Result<Option<Arc<Dispatched>>, TransportError>;

    /// Appends `updates` in order, numbering them after the newest stored one, in one atomic
    /// step.
    fn append(&self, updates: Vec<Update>) -> Result<Vec<Arc<Dispatched>>, TransportError>;

    /// How many updates history holds now (for the `mercure_history_updates` gauge).
    fn len(&self) -> u64;

    /// Whether history is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// See [`Transport::find`].
    fn find(&self, id: &str) -> Result<Option<Seq>, TransportError>;

    /// See [`Transport::read`].
    fn read(
        &self,
        after: Seq,
        up_to: Seq,
        limit: usize,
    ) -> Result<Vec<Arc<Dispatched>>, TransportError>;
}
