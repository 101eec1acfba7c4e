//! The topic router: one actor that owns every live subscription and matches each update to the
//! subscribers that should receive it.
//!
//! It runs on its own thread and hears from two sources: control messages (register, unregister)
//! from subscriber connections, and updates from the transport, in sequence order. Matching uses
//! an index so that a publish does not scan every subscriber: exact selectors in a hash map keyed
//! by topic, `*` and URI templates in a list checked one by one. Delivery is a `try_send` into each
//! subscriber's bounded queue: a subscriber whose queue is full is dropped (it reconnects and
//! resumes from history), so a slow reader never slows the router or anyone else.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::subscriber::Subscription;
use crate::update::{Dispatched, Seq};

/// Updates waiting for the router. Past this, the transport waits (backpressure to publishers).
const DISPATCH_QUEUE_CAPACITY: usize = 1024;

/// Identifies a subscriber connection inside this process.
pub type SubscriberKey = u64;

/// What a subscriber connection receives: shared, already framed updates.
pub type Queue = mpsc::Receiver<Arc<Dispatched>>;

enum Control {
    Register {
        key: SubscriberKey,
        subscription: Arc<Subscription>,
        queue: mpsc::Sender<Arc<Dispatched>>,
        registered: oneshot::Sender<Seq>,
    },
    Unregister(SubscriberKey),
    Snapshot(oneshot::Sender<Snapshot>),
}

/// The router's view at one instant, for the subscriptions API.
#[derive(Debug)]
pub struct Snapshot {
    /// Id of the last update handed out (subscription events included); `None` before any.
    pub last_event_id: Option<String>,
    /// Every registered subscription.
    pub subscriptions: Vec<Arc<Subscription>>,
}

/// The router's handle for subscriber connections. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Router {
    control: mpsc::UnboundedSender<Control>,
    next_key: Arc<AtomicU64>,
}

/// The router's handle for the transport: the one way updates enter it.
#[derive(Debug, Clone)]
pub struct Dispatcher(mpsc::Sender<Arc<Dispatched>>);

/// The router has stopped (the hub is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the router has stopped")]
pub struct RouterStopped;

impl Dispatcher {
    /// Hands an update to the router, waiting while its queue is full. For the transport's
    /// thread, never for async code.
    pub fn blocking_dispatch(&self, update: Arc<Dispatched>) -> Result<(), RouterStopped> {
        self.0.blocking_send(update).map_err(|_| RouterStopped)
    }
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Control::Register { key, .. } => write!(f, "Register({key})"),
            Control::Unregister(key) => write!(f, "Unregister({key})"),
            Control::Snapshot(_) => f.write_str("Snapshot"),
        }
    }
}

/// Starts the router thread. `last` is the newest stored update: its sequence number bounds
/// history replays correctly after a restart, and its id is the last event id until the next one.
pub fn start(last: Option<Arc<Dispatched>>) -> std::io::Result<(Router, Dispatcher)> {
    // Control messages come one or two per connection and their sender must not block (the
    // unregister is sent from `Drop`); their number is bounded by the number of connections.
    let (control, control_rx) = mpsc::unbounded_channel();
    let (dispatch, dispatch_rx) = mpsc::channel(DISPATCH_QUEUE_CAPACITY);
    let state = RouterState {
        last_seq: last.as_ref().map_or(0, |d| d.seq),
        last,
        ..RouterState::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    std::thread::Builder::new()
        .name("quicksilver-router".into())
        .spawn(move || runtime.block_on(state.run(control_rx, dispatch_rx)))?;
    Ok((
        Router {
            control,
            next_key: Arc::new(AtomicU64::new(1)),
        },
        Dispatcher(dispatch),
    ))
}

impl Router {
    /// Registers a subscription. From the moment this returns, every update after the returned
    /// sequence number that the subscription wants arrives in the queue; updates up to it must
    /// come from history. The registration ends when the returned [`Registration`] is dropped.
    pub async fn register(
        &self,
        subscription: Arc<Subscription>,
        capacity: usize,
    ) -> Result<(Registration, Queue, Seq), RouterStopped> {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let (queue, receiver) = mpsc::channel(capacity);
        let (registered, bound) = oneshot::channel();
        self.control
            .send(Control::Register {
                key,
                subscription,
                queue,
                registered,
            })
            .map_err(|_| RouterStopped)?;
        let registration = Registration {
            key,
            control: self.control.clone(),
        };
        let bound = bound.await.map_err(|_| RouterStopped)?;
        Ok((registration, receiver, bound))
    }

    /// The registered subscriptions and the last event id, at one instant.
    pub async fn snapshot(&self) -> Result<Snapshot, RouterStopped> {
        let (reply, snapshot) = oneshot::channel();
        self.control
            .send(Control::Snapshot(reply))
            .map_err(|_| RouterStopped)?;
        snapshot.await.map_err(|_| RouterStopped)
    }
}

/// Keeps a subscriber registered with the router; dropping it unregisters.
#[derive(Debug)]
pub struct Registration {
    key: SubscriberKey,
    control: mpsc::UnboundedSender<Control>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Fails only when the router already stopped, and then there is nothing to undo.
        let _ = self.control.send(Control::Unregister(self.key));
    }
}

struct Entry {
    subscription: Arc<Subscription>,
    queue: mpsc::Sender<Arc<Dispatched>>,
    /// Sequence of the last update offered, so a subscriber matched by several selectors or
    /// topics receives an update once.
    last_offered: Seq,
}

#[derive(Default)]
struct RouterState {
    last_seq: Seq,
    /// The last update handed out, for its id.
    last: Option<Arc<Dispatched>>,
    subscribers: HashMap<SubscriberKey, Entry>,
    /// Subscribers by exact topic selector.
    exact: HashMap<String, HashSet<SubscriberKey>>,
    /// Subscribers with at least one `*` or template selector: checked on every update.
    scanned: HashSet<SubscriberKey>,
}

impl RouterState {
    async fn run(
        mut self,
        mut control: mpsc::UnboundedReceiver<Control>,
        mut updates: mpsc::Receiver<Arc<Dispatched>>,
    ) {
        loop {
            tokio::select! {
                Some(message) = control.recv() => self.handle(message),
                Some(update) = updates.recv() => self.dispatch(&update),
                else => break,
            }
        }
    }

    fn handle(&mut self, message: Control) {
        match message {
            Control::Register {
                key,
                subscription,
                queue,
                registered,
            } => {
                for selector in &subscription.selectors {
                    match selector.exact() {
                        Some(topic) => {
                            self.exact.entry(topic.to_owned()).or_default().insert(key);
                        }
                        None => {
                            self.scanned.insert(key);
                        }
                    }
                }
                self.subscribers.insert(
                    key,
                    Entry {
                        subscription,
                        queue,
                        last_offered: 0,
                    },
                );
                // The subscriber may have gone already; its unregister message follows.
                let _ = registered.send(self.last_seq);
            }
            Control::Unregister(key) => self.remove(key),
            Control::Snapshot(reply) => {
                let _ = reply.send(Snapshot {
                    last_event_id: self.last.as_ref().map(|d| d.update.id.to_string()),
                    subscriptions: self
                        .subscribers
                        .values()
                        .map(|e| e.subscription.clone())
                        .collect(),
                });
            }
        }
    }

    fn remove(&mut self, key: SubscriberKey) {
        let Some(entry) = self.subscribers.remove(&key) else {
            return;
        };
        self.scanned.remove(&key);
        for topic in entry
            .subscription
            .selectors
            .iter()
            .filter_map(|s| s.exact())
        {
            if let Some(keys) = self.exact.get_mut(topic) {
                keys.remove(&key);
                if keys.is_empty() {
                    self.exact.remove(topic);
                }
            }
        }
    }

    fn dispatch(&mut self, dispatched: &Arc<Dispatched>) {
        self.last_seq = dispatched.seq;
        self.last = Some(dispatched.clone());
        let mut dropped = Vec::new();
        let exact = dispatched
            .update
            .topics
            .iter()
            .filter_map(|topic| self.exact.get(topic.as_str()))
            .flatten();
        for key in exact.chain(self.scanned.iter()) {
            let Some(entry) = self.subscribers.get_mut(key) else {
                continue;
            };
            if entry.last_offered == dispatched.seq {
                continue;
            }
            entry.last_offered = dispatched.seq;
            if !entry.subscription.wants(&dispatched.update) {
                continue;
            }
            if let Err(error) = entry.queue.try_send(dispatched.clone()) {
                if matches!(error, mpsc::error::TrySendError::Full(_)) {
                    tracing::info!(subscriber = key, "subscriber too slow, queue full: dropped");
                }
                dropped.push(*key);
            }
        }
        // Dropping the entry closes the queue: the connection sends what it holds, then ends,
        // and the client resumes from history with its Last-Event-ID.
        for key in dropped {
            self.remove(key);
        }
    }
}
