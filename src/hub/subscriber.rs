//! A subscriber connection: the actor that turns its history and live updates into the bytes of
//! its event stream.
//!
//! The actor is the response body itself ([`SubscriberStream`]): it owns the subscriber's state
//! (its queue from the router, its replay cursor, its heartbeat and deadline timers) and is driven
//! by the HTTP connection polling it. That costs no extra task and no extra channel per connection,
//! and backpressure is natural: when the client stops reading, nothing is polled and the bounded
//! queue fills. Either the router drops the subscriber when its queue is full, or the connection
//! under the HTTP layer ends itself after `dispatch_timeout` without progress and raises the
//! stream's [`CutOff`] flag; the stream then tells the router why, so that the subscriber is
//! counted once as cut off.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

use super::presence::Departure;
use super::router::{Queue, Registered, Registration};
use crate::metrics::{DropReason, Metrics};
use crate::subscription::Subscription;
use crate::transport::pages::Page;
use crate::transport::{Transport, TransportError};
use crate::update::Seq;

/// Updates a subscriber may have waiting before it counts as too slow and is dropped; the same
/// figure as the reference hub. The queue holds pointers to shared frames, so this bounds memory
/// per subscriber to a few kilobytes of pointers plus the frames themselves.
pub const QUEUE_CAPACITY: usize = 1000;
/// The SSE comment line: sent first (so `EventSource.onopen` fires at once) and as heartbeat.
const COMMENT: &[u8] = b":\n";

/// Raised by a connection that the hub ended because its client accepted nothing for
/// `dispatch_timeout`; read by the stream it carried, when dropped. Cheap to clone: the
/// connection and the stream each hold one.
#[derive(Debug, Clone, Default)]
pub struct CutOff(Arc<AtomicBool>);

impl CutOff {
    /// Marks the connection as ended for not reading.
    pub fn raise(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether the connection was ended for not reading.
    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

type PageRequest = Pin<Box<dyn Future<Output = Result<Page, TransportError>>>>;

/// Where the replay of history stands.
enum Replay {
    /// Replaying: everything with `cursor < seq <= bound` still has to be sent. One page is held
    /// at a time, and released before the next one is requested.
    Running {
        cursor: Seq,
        request: Option<PageRequest>,
        /// The page being sent and the index of its next update.
        page: Option<(Page, usize)>,
    },
    Done,
}

/// The event stream of one subscriber connection.
pub struct SubscriberStream {
    subscription: Arc<Subscription>,
    transport: Arc<dyn Transport>,
    queue: Queue,
    /// Keeps the subscriber registered while the stream lives.
    registration: Registration,
    /// Raised by the connection when it ends itself because the client stopped reading.
    cut_off: Option<CutOff>,
    /// Dropped after the registration, so the departure is announced once it is effective.
    _departure: Option<Departure>,
    /// Live updates up to this sequence number were covered by history (or skipped): not resent.
    bound: Seq,
    replay: Replay,
    opened: bool,
    heartbeat: Option<(Duration, Pin<Box<Sleep>>)>,
    deadline: Option<Pin<Box<Sleep>>>,
    /// Counted as connected while the stream lives (from `new` to `drop`).
    metrics: Metrics,
}

impl Drop for SubscriberStream {
    fn drop(&mut self) {
        self.metrics.subscriber_disconnected();
        if self.cut_off.as_ref().is_some_and(CutOff::is_raised) {
            self.registration.cut_off(DropReason::DispatchTimeout);
        }
    }
}

/// How a new stream starts.
#[derive(Debug)]
pub struct StreamStart {
    /// Replay history after this sequence number (`None`: no replay).
    pub replay_after: Option<Seq>,
    /// Send a comment after this much silence.
    pub heartbeat: Option<Duration>,
    /// End the stream at this instant (write timeout, token expiry).
    pub deadline: Option<Instant>,
    /// Announces the end of the subscription when the stream is dropped.
    pub departure: Option<Departure>,
    /// The connection's flag for "ended because the client stopped reading", when it has one.
    pub cut_off: Option<CutOff>,
}

impl SubscriberStream {
    /// Builds the stream of a registered subscriber. `bound` is the sequence number the router
    /// returned at registration: history covers up to it, the queue everything after.
    pub fn new(
        subscription: Arc<Subscription>,
        transport: Arc<dyn Transport>,
        Registered { registration, queue, bound }: Registered,
        start: StreamStart,
        metrics: Metrics,
    ) -> Self {
        metrics.subscriber_connected();
        let replay = match start.replay_after {
            Some(cursor) if cursor < bound => Replay::Running { cursor, request: None, page: None },
            _ => Replay::Done,
        };
        Self {
            subscription,
            transport,
            queue,
            registration,
            cut_off: start.cut_off,
            _departure: start.departure,
            // A cursor found *after* the bound (published while we registered) means the client
            // already has everything up to it, live updates included.
            bound: bound.max(start.replay_after.unwrap_or(0)),
            replay,
            opened: false,
            heartbeat: start.heartbeat.map(|every| (every, Box::pin(tokio::time::sleep(every)))),
            deadline: start.deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
            metrics,
        }
    }

    /// Polls the history replay; `Ready(None)` once it is complete.
    fn poll_replay(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, ()>>> {
        let bound = self.bound;
        loop {
            let Replay::Running { cursor, request, page } = &mut self.replay else {
                return Poll::Ready(None);
            };
            if let Some((current, next)) = page {
                while let Some(update) = current.updates().get(*next) {
                    *next += 1;
                    if update.seq <= *cursor {
                        continue;
                    }
                    if update.seq > bound {
                        self.replay = Replay::Done;
                        return Poll::Ready(None);
                    }
                    *cursor = update.seq;
                    if self.subscription.wants(update) {
                        return Poll::Ready(Some(Ok(update.frame.clone())));
                    }
                }
                *cursor = (*cursor).max(current.through());
                *page = None;
            }
            if *cursor >= bound {
                self.replay = Replay::Done;
                return Poll::Ready(None);
            }
            let fetch = request.get_or_insert_with(|| {
                let (transport, after) = (self.transport.clone(), *cursor);
                Box::pin(async move { transport.read(after, bound).await })
            });
            let next = match fetch.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => {
                    tracing::error!(%error, "history replay failed; closing the stream");
                    return Poll::Ready(Some(Err(())));
                }
                Poll::Ready(Ok(next)) => next,
            };
            *request = None;
            if next.updates().is_empty() && next.through() <= *cursor {
                // Nothing is stored after the cursor: the rest of the range was trimmed.
                self.replay = Replay::Done;
                return Poll::Ready(None);
            }
            *page = Some((next, 0));
        }
    }

    fn reset_heartbeat(&mut self) {
        if let Some((every, timer)) = &mut self.heartbeat {
            timer.as_mut().reset(Instant::now() + *every);
        }
    }
}

impl Stream for SubscriberStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if !this.opened {
            this.opened = true;
            return Poll::Ready(Some(Ok(Bytes::from_static(COMMENT))));
        }
        if let Some(deadline) = &mut this.deadline {
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
        }
        match this.poll_replay(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.reset_heartbeat();
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(()))) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {}
        }
        loop {
            match this.queue.poll_recv(cx) {
                Poll::Ready(Some(update)) => {
                    if update.seq <= this.bound {
                        continue;
                    }
                    this.reset_heartbeat();
                    return Poll::Ready(Some(Ok(update.frame.clone())));
                }
                // The router dropped us (too slow, or shutting down): end cleanly so the client
                // reconnects and resumes from history.
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => break,
            }
        }
        if let Some((every, timer)) = &mut this.heartbeat {
            if timer.as_mut().poll(cx).is_ready() {
                timer.as_mut().reset(Instant::now() + *every);
                return Poll::Ready(Some(Ok(Bytes::from_static(COMMENT))));
            }
        }
        Poll::Pending
    }
}
