//! The feed: the one way updates enter the topic router, and the transport's only tie to it.
//!
//! A transport is built from a [`NewFeed`]. Before it hands over any update, it must say which
//! sequence number its history ends at ([`NewFeed::start`]): the router answers every
//! registration with the last sequence number it has seen, which bounds the subscriber's history
//! replay, so after a restart that bound must cover what was stored before it. The router waits
//! for that number before it serves anything. From then on the transport sends every update, in
//! sequence order, through the [`Feed`]: from async code ([`Feed::send`]) or from a thread of its
//! own ([`Feed::blocking_send`]). A full feed makes the transport wait, which slows publishers
//! rather than losing updates.
//!
//! A transport whose history can change behind its back (a NATS stream deleted and recreated, or
//! trimmed past what this node had read) says so with [`Feed::reset`]: the updates that follow
//! do not continue what the router delivered, so the router ends every open stream and its client
//! resumes with its `Last-Event-ID`. It never delivers old history again as live, and a gap is
//! never silent.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::update::{Dispatched, Seq};

/// Updates waiting for the router. Past this, the transport waits (backpressure to publishers).
pub const FEED_CAPACITY: usize = 1024;

/// The router has stopped (the hub is shutting down): nothing more can be delivered.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the router has stopped")]
pub struct RouterStopped;

/// What the transport hands the router, in order.
#[derive(Debug)]
pub enum Fed {
    /// The next update.
    Update(Arc<Dispatched>),
    /// History no longer continues what was delivered: every open stream must end, and what
    /// follows comes after `last`.
    Reset {
        /// The sequence number the new history ends at.
        last: Seq,
    },
}

/// A feed whose transport has not yet said where its history ends.
#[derive(Debug)]
pub struct NewFeed {
    start: oneshot::Sender<Seq>,
    updates: mpsc::Sender<Fed>,
}

/// The transport's end of the feed, once started. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Feed(mpsc::Sender<Fed>);

/// The router's end of the feed.
#[derive(Debug)]
pub struct FeedReceiver {
    start: Option<oneshot::Receiver<Seq>>,
    updates: mpsc::Receiver<Fed>,
}

/// A new feed: the transport's end and the router's.
pub fn channel() -> (NewFeed, FeedReceiver) {
    let (start, started) = oneshot::channel();
    let (updates, received) = mpsc::channel(FEED_CAPACITY);
    (NewFeed { start, updates }, FeedReceiver { start: Some(started), updates: received })
}

impl NewFeed {
    /// Tells the router that history ends at `last_seq` (0 when empty) and opens the feed.
    pub fn start(self, last_seq: Seq) -> Feed {
        // Fails only when the router has stopped; sending on the feed then says so.
        let _ = self.start.send(last_seq);
        Feed(self.updates)
    }
}

impl Feed {
    /// Hands an update to the router, waiting while the feed is full.
    pub async fn send(&self, update: Arc<Dispatched>) -> Result<(), RouterStopped> {
        self.0.send(Fed::Update(update)).await.map_err(|_| RouterStopped)
    }

    /// [`Self::send`] for a transport's own thread; never call it from async code (it panics
    /// inside a runtime).
    pub fn blocking_send(&self, update: Arc<Dispatched>) -> Result<(), RouterStopped> {
        self.0.blocking_send(Fed::Update(update)).map_err(|_| RouterStopped)
    }

    /// Tells the router that history was reset and now ends at `last`: the next update is
    /// numbered after it, and nothing delivered before is continued.
    pub async fn reset(&self, last: Seq) -> Result<(), RouterStopped> {
        self.0.send(Fed::Reset { last }).await.map_err(|_| RouterStopped)
    }
}

impl FeedReceiver {
    /// Waits for the transport to say where its history ends; `None` when it went away first
    /// (it failed to start), and on every call after the first.
    pub async fn started(&mut self) -> Option<Seq> {
        self.start.take()?.await.ok()
    }

    /// The next update or reset, `None` once every [`Feed`] is dropped.
    pub async fn recv(&mut self) -> Option<Fed> {
        self.updates.recv().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update::Update;

    #[tokio::test]
    async fn the_start_comes_before_every_update_and_the_end_after_them() {
        let (new, mut received) = channel();
        let feed = new.start(41);
        feed.send(Arc::new(Dispatched::new(42, Update::for_test("a")))).await.expect("open");
        feed.reset(3).await.expect("open");
        drop(feed);
        assert_eq!(received.started().await, Some(41));
        assert!(matches!(received.recv().await, Some(Fed::Update(d)) if d.seq == 42));
        assert!(matches!(received.recv().await, Some(Fed::Reset { last: 3 })), "in order");
        assert!(received.recv().await.is_none(), "closed when the transport drops its end");
    }

    #[tokio::test]
    async fn a_transport_that_fails_to_start_ends_the_feed() {
        let (new, mut received) = channel();
        drop(new);
        assert_eq!(received.started().await, None);
        assert!(received.recv().await.is_none());
    }
}
