//! The topic router: one actor that owns every live subscription and matches each update to the
//! subscribers that should receive it.
//!
//! It runs on its own thread and hears from two sources: control messages (register, unregister,
//! snapshot, drain) from the HTTP side through its [`Router`] handle, and updates from the
//! transport, in sequence order, through the transport's [`feed`](crate::transport::feed). It
//! serves nothing before the transport has said where its history ends.
//! Matching uses an index so that a publish does not scan every subscriber: exact selectors in a
//! hash map keyed by topic, `*` and URI templates in a set checked one by one. Delivery is a
//! `try_send` into each subscriber's bounded queue; a subscriber whose queue is full is dropped (it
//! reconnects and resumes from history). So a slow reader never slows the router or anyone else.
//! A subscriber that reads nothing at all is cut off under the HTTP layer (the connection watches
//! its own writes); its stream then unregisters with that reason, and the router counts every
//! subscriber it loses for slowness exactly once, whichever way it went.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::presence;
use crate::metrics::{DropReason, Metrics};
use crate::subscription::Subscription;
use crate::topic_selector::TopicSelector;
pub use crate::transport::feed::RouterStopped;
use crate::transport::feed::{Fed, FeedReceiver};
use crate::update::{Dispatched, Seq};
use crate::url_pattern::{TopicUrl, UrlPatternMatcher};

/// Identifies a subscriber connection inside this process.
pub type SubscriberKey = u64;

/// What a subscriber connection receives: shared, already framed updates.
pub type Queue = mpsc::Receiver<Arc<Dispatched>>;

/// Every message the router's handle sends it (updates come through the feed).
enum Control {
    Register {
        key: SubscriberKey,
        subscription: Arc<Subscription>,
        queue: mpsc::Sender<Arc<Dispatched>>,
        registered: oneshot::Sender<Seq>,
    },
    /// The subscriber's stream ended; `reason` when the hub cut it off for slowness.
    Unregister {
        key: SubscriberKey,
        reason: Option<DropReason>,
    },
    Snapshot(oneshot::Sender<Snapshot>),
    Drain(Duration),
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Control::Register { key, .. } => write!(f, "Register({key})"),
            Control::Unregister { key, reason } => write!(f, "Unregister({key}, {reason:?})"),
            Control::Snapshot(_) => f.write_str("Snapshot"),
            Control::Drain(within) => write!(f, "Drain({within:?})"),
        }
    }
}

/// Subscription events the router remembers for the subscriptions API's cursor.
const RECENT_PRESENCE: usize = 1024;

/// The router's view at one instant, for the subscriptions API.
#[derive(Debug)]
pub struct Snapshot {
    /// The most recent subscription events (arrivals and departures), oldest first: the API
    /// derives each caller's cursor from those it may read.
    pub presence: Vec<Arc<Dispatched>>,
    /// Every registered subscription.
    pub subscriptions: Vec<Arc<Subscription>>,
}

/// The router's handle for the HTTP side. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Router {
    control: mpsc::UnboundedSender<Control>,
    /// Keys are handed out by the handles, so that a registration is one message; the counter
    /// is all they share, and the actor never reads it.
    next_key: Arc<AtomicU64>,
}

/// A registered subscriber's end of the router.
#[derive(Debug)]
pub struct Registered {
    /// Keeps the subscriber registered; dropping it unregisters.
    pub registration: Registration,
    /// Updates after `bound` that the subscription wants, in order.
    pub queue: Queue,
    /// Sequence number of the last update handed out before registration: history covers up to
    /// it, the queue everything after.
    pub bound: Seq,
}

/// Starts the router on a thread of its own, fed by `feed`. It stops when its handles and the
/// transport's end of the feed are all dropped.
pub fn start(feed: FeedReceiver, metrics: Metrics) -> std::io::Result<Router> {
    let (router, actor) = new(feed, metrics);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
    std::thread::Builder::new()
        .name("quicksilver-router".into())
        .spawn(move || runtime.block_on(actor))?;
    Ok(router)
}

/// The router as a task of the current runtime, whose clock tests may pause.
#[cfg(test)]
pub(crate) fn spawn(feed: FeedReceiver, metrics: Metrics) -> Router {
    let (router, actor) = new(feed, metrics);
    tokio::spawn(actor);
    router
}

/// A router's handle and the actor to run.
fn new(
    mut feed: FeedReceiver,
    metrics: Metrics,
) -> (Router, impl std::future::Future<Output = ()> + Send) {
    // Control messages come one or two per connection and their sender must not block (the
    // unregister is sent from `Drop`); their number is bounded by the number of connections.
    let (control, control_rx) = mpsc::unbounded_channel();
    let actor = async move {
        // Registrations wait meanwhile: each is answered with the last sequence number seen.
        let Some(last_seq) = feed.started().await else { return };
        let state = RouterState { last_seq, metrics, ..RouterState::default() };
        state.run(control_rx, feed).await;
    };
    (Router { control, next_key: Arc::new(AtomicU64::new(1)) }, actor)
}

impl Router {
    /// Registers a subscription with a queue of `capacity` updates. From the moment this
    /// returns, every update after [`Registered::bound`] that the subscription wants arrives in
    /// the queue; updates up to it must come from history.
    pub async fn register(
        &self,
        subscription: Arc<Subscription>,
        capacity: usize,
    ) -> Result<Registered, RouterStopped> {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let (sender, queue) = mpsc::channel(capacity);
        let (registered, bound) = oneshot::channel();
        let message = Control::Register { key, subscription, queue: sender, registered };
        self.control.send(message).map_err(|_| RouterStopped)?;
        let registration = Registration { key, control: self.control.clone(), reason: None };
        let bound = bound.await.map_err(|_| RouterStopped)?;
        Ok(Registered { registration, queue, bound })
    }

    /// The registered subscriptions and the last event id, at one instant.
    pub async fn snapshot(&self) -> Result<Snapshot, RouterStopped> {
        let (reply, snapshot) = oneshot::channel();
        self.control.send(Control::Snapshot(reply)).map_err(|_| RouterStopped)?;
        snapshot.await.map_err(|_| RouterStopped)
    }

    /// Starts draining for a shutdown: every stream, and every stream registered from now on,
    /// is ended at a random moment within `within`, so that clients reconnect (elsewhere) spread
    /// over that time instead of all at once.
    pub fn drain(&self, within: Duration) -> Result<(), RouterStopped> {
        self.control.send(Control::Drain(within)).map_err(|_| RouterStopped)
    }
}

/// Keeps a subscriber registered with the router; dropping it unregisters.
#[derive(Debug)]
pub struct Registration {
    key: SubscriberKey,
    control: mpsc::UnboundedSender<Control>,
    reason: Option<DropReason>,
}

impl Registration {
    /// Records that the hub cut this subscriber off for `reason`: the router counts it when the
    /// registration is dropped, unless it had already dropped the subscriber itself.
    pub fn cut_off(&mut self, reason: DropReason) {
        self.reason = Some(reason);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Fails only when the router already stopped, and then there is nothing to undo.
        let _ = self.control.send(Control::Unregister { key: self.key, reason: self.reason });
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
    /// The most recent subscription events, oldest first, at most [`RECENT_PRESENCE`].
    presence: VecDeque<Arc<Dispatched>>,
    subscribers: HashMap<SubscriberKey, Entry>,
    index: SelectorIndex,
    metrics: Metrics,
    /// While shutting down: the time within which streams are ended.
    draining: Option<Duration>,
    /// Streams to end, soonest first.
    closing: BinaryHeap<Reverse<(Instant, SubscriberKey)>>,
}

impl RouterState {
    async fn run(mut self, mut control: mpsc::UnboundedReceiver<Control>, mut feed: FeedReceiver) {
        loop {
            let next_close = self.closing.peek().map(|Reverse((at, _))| *at);
            tokio::select! {
                Some(message) = control.recv() => self.handle(message),
                Some(fed) = feed.recv() => match fed {
                    Fed::Update(update) => self.dispatch(&update),
                    Fed::Reset { last } => self.reset(last),
                },
                () = sleep_until_some(next_close) => self.close_due(),
                else => break,
            }
        }
    }

    fn handle(&mut self, message: Control) {
        match message {
            Control::Register { key, subscription, queue, registered } => {
                for selector in &subscription.selectors {
                    self.index.insert(key, selector);
                }
                let entry = Entry { subscription, queue, last_offered: 0 };
                self.subscribers.insert(key, entry);
                if let Some(within) = self.draining {
                    self.schedule_close(key, within);
                }
                // The subscriber may have gone already; its unregister message follows.
                let _ = registered.send(self.last_seq);
            }
            Control::Unregister { key, reason } => {
                if self.remove(key) {
                    if let Some(reason) = reason {
                        self.count_drop(key, reason);
                    }
                }
            }
            Control::Snapshot(reply) => {
                let _ = reply.send(Snapshot {
                    presence: self.presence.iter().cloned().collect(),
                    subscriptions: self
                        .subscribers
                        .values()
                        .map(|e| e.subscription.clone())
                        .collect(),
                });
            }
            Control::Drain(within) => {
                self.draining = Some(within);
                let keys: Vec<_> = self.subscribers.keys().copied().collect();
                for key in keys {
                    self.schedule_close(key, within);
                }
            }
        }
    }

    fn schedule_close(&mut self, key: SubscriberKey, within: Duration) {
        let at = Instant::now() + within.mul_f64(rand::rng().random_range(0.0..1.0));
        self.closing.push(Reverse((at, key)));
    }

    fn close_due(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, key))) = self.closing.peek().copied() {
            if at > now {
                break;
            }
            self.closing.pop();
            self.remove(key);
        }
    }

    /// History was reset under the router (the transport lost its place): ends every stream, so
    /// that each client resumes from history with its `Last-Event-ID`, and continues after
    /// `last`. Subscription events of the old history no longer describe anything.
    fn reset(&mut self, last: Seq) {
        tracing::warn!(
            previous = self.last_seq,
            last,
            subscribers = self.subscribers.len(),
            "history was reset: ending every stream so that its client resumes"
        );
        self.last_seq = last;
        self.presence.clear();
        let keys: Vec<_> = self.subscribers.keys().copied().collect();
        for key in keys {
            self.remove(key);
        }
    }

    /// Forgets a subscriber; false when it was already gone.
    fn remove(&mut self, key: SubscriberKey) -> bool {
        let Some(entry) = self.subscribers.remove(&key) else { return false };
        for selector in &entry.subscription.selectors {
            self.index.remove(key, selector);
        }
        true
    }

    fn count_drop(&self, key: SubscriberKey, reason: DropReason) {
        tracing::info!(subscriber = key, reason = reason.as_str(), "slow subscriber dropped");
        self.metrics.subscriber_dropped(reason);
    }

    fn dispatch(&mut self, dispatched: &Arc<Dispatched>) {
        self.last_seq = dispatched.seq;
        if presence::is_event(dispatched) {
            if self.presence.len() == RECENT_PRESENCE {
                self.presence.pop_front();
            }
            self.presence.push_back(dispatched.clone());
        }
        let span = tracing::info_span!(
            "mercure.dispatch",
            mercure.update.id = %dispatched.id,
            mercure.topic = dispatched.topics.first().map_or("", |t| t.as_str()),
            mercure.subscribers = tracing::field::Empty,
        );
        let _entered = span.enter();
        let mut dropped = Vec::new();
        let mut deliveries = 0;
        let mut selected = Vec::new();
        self.index.select(dispatched.topics.iter().map(|t| t.as_str()), &mut selected);
        for key in &selected {
            let Some(entry) = self.subscribers.get_mut(key) else { continue };
            if entry.last_offered == dispatched.seq {
                continue;
            }
            entry.last_offered = dispatched.seq;
            if !entry.subscription.may_receive(dispatched) {
                continue;
            }
            match entry.queue.try_send(dispatched.clone()) {
                Ok(()) => deliveries += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    dropped.push((*key, Some(DropReason::QueueFull)));
                }
                Err(mpsc::error::TrySendError::Closed(_)) => dropped.push((*key, None)),
            }
        }
        // Dropping the entry closes the queue: the connection sends what it holds, then ends,
        // and the client resumes from history with its Last-Event-ID. A connection that reads
        // nothing at all is cut off under the HTTP layer.
        span.record("mercure.subscribers", deliveries);
        self.metrics.updates_dispatched(deliveries);
        for (key, reason) in dropped {
            if self.remove(key) {
                if let Some(reason) = reason {
                    self.count_drop(key, reason);
                }
            }
        }
    }
}

/// Which subscribers each topic selects, without looking at every subscriber: exact selectors in
/// a hash map, `*` in a set, and each distinct template or URL Pattern once, compiled once, found
/// through its literal prefix (a topic can only match templates whose prefix it starts with, and
/// URL Patterns whose host it has and whose literal path prefix its path starts with). So the cost
/// of an update grows with the subscribers it reaches, not with those it cannot.
#[derive(Default)]
struct SelectorIndex {
    exact: HashMap<String, HashSet<SubscriberKey>>,
    any: HashSet<SubscriberKey>,
    /// Distinct templates, by their text, found by their literal prefix.
    templates: HashMap<String, (TopicSelector, HashSet<SubscriberKey>)>,
    template_prefixes: PrefixSet,
    /// URL Patterns, grouped by the base URL they resolve against (one per hub URL in use).
    url_patterns: HashMap<String, UrlPatternGroup>,
}

/// Names (template texts, URL Patterns) by literal prefix, and the prefix lengths in use, so that
/// a string finds the names whose prefix it starts with in one lookup per length.
#[derive(Default)]
struct PrefixSet {
    by_prefix: HashMap<String, HashSet<String>>,
    /// How many distinct prefixes have each length: the lengths to try on a topic.
    lengths: BTreeMap<usize, usize>,
}

impl PrefixSet {
    fn insert(&mut self, prefix: &str, name: &str) {
        let names = self.by_prefix.entry(prefix.to_owned()).or_default();
        if names.is_empty() {
            *self.lengths.entry(prefix.len()).or_default() += 1;
        }
        names.insert(name.to_owned());
    }

    fn remove(&mut self, prefix: &str, name: &str) {
        let Some(names) = self.by_prefix.get_mut(prefix) else { return };
        names.remove(name);
        if names.is_empty() {
            self.by_prefix.remove(prefix);
            if let Some(count) = self.lengths.get_mut(&prefix.len()) {
                *count -= 1;
                if *count == 0 {
                    self.lengths.remove(&prefix.len());
                }
            }
        }
    }

    /// Every name whose prefix `text` starts with.
    fn candidates<'a>(&'a self, text: &'a str) -> impl Iterator<Item = &'a String> + 'a {
        self.lengths
            .keys()
            .take_while(move |&&length| length <= text.len())
            // Not a character boundary: no prefix of this length can equal the text's start.
            .filter_map(move |&length| text.get(..length))
            .flat_map(move |prefix| self.by_prefix.get(prefix).into_iter().flatten())
    }

    fn is_empty(&self) -> bool {
        self.by_prefix.is_empty() && self.lengths.is_empty()
    }
}

/// The URL Patterns resolved against one base URL: by literal host then literal path prefix
/// when the pattern has them (nearly all do), else in a short list tried on every topic.
struct UrlPatternGroup {
    base: url::Url,
    patterns: HashMap<String, (UrlPatternMatcher, HashSet<SubscriberKey>)>,
    by_host: HashMap<String, PrefixSet>,
    unindexed: HashSet<String>,
}

impl UrlPatternGroup {
    fn select(&self, topic: &str, absolute: Option<&TopicUrl>, selected: &mut Vec<SubscriberKey>) {
        let resolved;
        let url = match absolute {
            Some(url) => url,
            None => {
                resolved = TopicUrl::parse(topic, Some(&self.base));
                &resolved
            }
        };
        let mut check = |raw: &String| {
            if let Some((pattern, keys)) = self.patterns.get(raw) {
                if pattern.matches(url) {
                    selected.extend(keys);
                }
            }
        };
        if let (Some(host), Some(path)) = (url.hostname(), url.pathname()) {
            if let Some(prefixes) = self.by_host.get(host) {
                prefixes.candidates(path).for_each(&mut check);
            }
        }
        self.unindexed.iter().for_each(check);
    }
}

impl SelectorIndex {
    fn insert(&mut self, key: SubscriberKey, selector: &TopicSelector) {
        match selector {
            TopicSelector::Any => {
                self.any.insert(key);
            }
            TopicSelector::Exact(topic) => {
                self.exact.entry(topic.clone()).or_default().insert(key);
            }
            TopicSelector::Template { raw, .. } => {
                let (_, keys) = self.templates.entry(raw.clone()).or_insert_with(|| {
                    self.template_prefixes.insert(selector.literal_prefix(), raw);
                    (selector.clone(), HashSet::new())
                });
                keys.insert(key);
            }
            TopicSelector::UrlPattern(pattern) => {
                let group =
                    self.url_patterns.entry(pattern.base().to_string()).or_insert_with(|| {
                        UrlPatternGroup {
                            base: pattern.base().clone(),
                            patterns: HashMap::new(),
                            by_host: HashMap::new(),
                            unindexed: HashSet::new(),
                        }
                    });
                let raw = pattern.as_str();
                let (_, keys) = group.patterns.entry(raw.to_owned()).or_insert_with(|| {
                    match pattern.index_key() {
                        Some(index) => group
                            .by_host
                            .entry(index.hostname)
                            .or_default()
                            .insert(&index.path_prefix, raw),
                        None => {
                            group.unindexed.insert(raw.to_owned());
                        }
                    }
                    (pattern.clone(), HashSet::new())
                });
                keys.insert(key);
            }
        }
    }

    fn remove(&mut self, key: SubscriberKey, selector: &TopicSelector) {
        match selector {
            TopicSelector::Any => {
                self.any.remove(&key);
            }
            TopicSelector::Exact(topic) => {
                if let Some(keys) = self.exact.get_mut(topic) {
                    keys.remove(&key);
                    if keys.is_empty() {
                        self.exact.remove(topic);
                    }
                }
            }
            TopicSelector::Template { raw, .. } => {
                let Some((_, keys)) = self.templates.get_mut(raw) else { return };
                keys.remove(&key);
                if keys.is_empty() {
                    self.templates.remove(raw);
                    self.template_prefixes.remove(selector.literal_prefix(), raw);
                }
            }
            TopicSelector::UrlPattern(pattern) => {
                let base = pattern.base().to_string();
                let Some(group) = self.url_patterns.get_mut(&base) else { return };
                let raw = pattern.as_str();
                let Some((_, keys)) = group.patterns.get_mut(raw) else { return };
                keys.remove(&key);
                if !keys.is_empty() {
                    return;
                }
                group.patterns.remove(raw);
                match pattern.index_key() {
                    Some(index) => {
                        if let Some(prefixes) = group.by_host.get_mut(&index.hostname) {
                            prefixes.remove(&index.path_prefix, raw);
                            if prefixes.is_empty() {
                                group.by_host.remove(&index.hostname);
                            }
                        }
                    }
                    None => {
                        group.unindexed.remove(raw);
                    }
                }
                if group.patterns.is_empty() {
                    self.url_patterns.remove(&base);
                }
            }
        }
    }

    /// Appends the subscribers that one of `topics` selects (a subscriber may appear more than
    /// once). `*` subscribers are added once, however many topics the update has.
    fn select<'t>(
        &self,
        topics: impl IntoIterator<Item = &'t str>,
        selected: &mut Vec<SubscriberKey>,
    ) {
        selected.extend(&self.any);
        for topic in topics {
            self.select_topic(topic, selected);
        }
    }

    /// Appends the subscribers whose exact, template or URL Pattern selector matches `topic`.
    fn select_topic(&self, topic: &str, selected: &mut Vec<SubscriberKey>) {
        if let Some(keys) = self.exact.get(topic) {
            selected.extend(keys);
        }
        for raw in self.template_prefixes.candidates(topic) {
            if let Some((template, keys)) = self.templates.get(raw) {
                if template.matches(topic) {
                    selected.extend(keys);
                }
            }
        }
        if !self.url_patterns.is_empty() {
            // An absolute topic is the same URL whatever the base: parsed once for all groups.
            let parsed = TopicUrl::parse(topic, None);
            let absolute = parsed.is_url().then_some(parsed);
            for group in self.url_patterns.values() {
                group.select(topic, absolute.as_ref(), selected);
            }
        }
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.exact.is_empty()
            && self.any.is_empty()
            && self.templates.is_empty()
            && self.template_prefixes.is_empty()
            && self.url_patterns.is_empty()
    }
}

/// Waits until `at`, or forever when there is nothing to wait for.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic_selector::MatchType;
    use crate::transport::feed::{self, Feed};
    use crate::update::{Topic, Update};

    fn select(index: &SelectorIndex, topic: &str) -> Vec<SubscriberKey> {
        let mut selected = Vec::new();
        index.select([topic], &mut selected);
        selected.sort_unstable();
        selected.dedup();
        selected
    }

    #[test]
    fn the_index_selects_like_the_matcher_and_empties_on_removal() {
        let selectors = [
            (1, "https://e.com/books/{id}"),
            (2, "https://e.com/books/{id}"),
            (3, "https://e.com/books/1"),
            (4, "*"),
            (5, "https://e.com/{+path}"),
            (6, "https://e.com/users/{id}/books"),
            (7, "{scheme}://e.com/books/1"),
            (8, "https://e.com/b{x}"),
        ];
        let mut index = SelectorIndex::default();
        for (key, raw) in selectors {
            index.insert(key, &TopicSelector::parse(raw));
        }
        for topic in [
            "https://e.com/books/1",
            "https://e.com/books/",
            "https://e.com/users/7/books",
            "https://e.com/bx",
            "http://e.com/books/1",
            "",
            "https://e.com",
            "https://é.com/books/1",
        ] {
            let expected: Vec<SubscriberKey> = selectors
                .iter()
                .filter(|(_, raw)| TopicSelector::parse(raw).matches(topic))
                .map(|(key, _)| *key)
                .collect();
            assert_eq!(select(&index, topic), expected, "{topic:?}");
        }
        for (key, raw) in selectors {
            index.remove(key, &TopicSelector::parse(raw));
        }
        assert!(index.is_empty());
    }

    #[test]
    fn url_patterns_are_selected_through_their_host_and_path_prefix() {
        let base = url::Url::parse("https://hub.example/.well-known/mercure").expect("a URL");
        let other_base =
            url::Url::parse("https://other.example/.well-known/mercure").expect("a URL");
        let pattern = |raw: &str, base: &url::Url| {
            TopicSelector::parse_matcher(raw, MatchType::UrlPattern, base).expect("a pattern")
        };
        let selectors = [
            (1, pattern("https://e.com/books/:id", &base)),
            (2, pattern("https://e.com/books/:id", &base)),
            (3, pattern("https://*.e.com/books/:id", &base)),
            (4, pattern("/books/:id", &base)),
            (5, pattern("/books/:id", &other_base)),
            (6, pattern("https://e.com/(books|users)/:id", &base)),
            (7, TopicSelector::Exact("https://e.com/books/1".into())),
        ];
        let mut index = SelectorIndex::default();
        for (key, selector) in &selectors {
            index.insert(*key, selector);
        }
        for topic in [
            "https://e.com/books/1",
            "https://E.com/books/1",
            "https://a.e.com/books/1",
            "https://e.com/users/1",
            "https://e.com/books/1/x",
            "/books/1",
            "https://hub.example/books/1",
            "https://other.example/books/1",
            "not a url",
        ] {
            let expected: Vec<SubscriberKey> = selectors
                .iter()
                .filter(|(_, selector)| selector.matches(topic))
                .map(|(key, _)| *key)
                .collect();
            assert_eq!(select(&index, topic), expected, "{topic:?}");
        }
        assert_eq!(select(&index, "/books/1"), [4, 5], "relative: against each base");
        for (key, selector) in &selectors {
            index.remove(*key, selector);
        }
        assert!(index.is_empty());
    }

    #[test]
    fn url_patterns_that_cannot_match_are_not_evaluated() {
        // As for templates: 1,000 distinct patterns on one host, found by path prefix.
        let base = url::Url::parse("https://hub.example/.well-known/mercure").expect("a URL");
        let mut index = SelectorIndex::default();
        for key in 0..1_000 {
            let raw = format!("https://e.com/t/{key}/:x");
            let selector = TopicSelector::parse_matcher(&raw, MatchType::UrlPattern, &base)
                .expect("a pattern");
            index.insert(key, &selector);
        }
        let group = index.url_patterns.values().next().expect("one base");
        assert!(group.unindexed.is_empty(), "every pattern has an index key");
        let prefixes = &group.by_host["e.com"];
        assert!(prefixes.lengths.len() <= 5, "{:?}", prefixes.lengths);
        assert_eq!(prefixes.candidates("/t/424/anything").count(), 1);
        assert_eq!(select(&index, "https://e.com/t/424/anything"), [424]);
        assert_eq!(select(&index, "https://other.com/t/424/anything"), Vec::<u64>::new());
    }

    #[test]
    fn a_wildcard_subscriber_is_selected_once_however_many_topics() {
        let mut index = SelectorIndex::default();
        index.insert(1, &TopicSelector::parse("*"));
        let topics: Vec<String> = (0..1000).map(|i| format!("https://e.com/{i}")).collect();
        let mut selected = Vec::new();
        index.select(topics.iter().map(String::as_str), &mut selected);
        assert_eq!(selected, [1]);
    }

    /// A router task on the test's runtime, already told that history ends at `last_seq`.
    fn router_at(last_seq: Seq, metrics: &Metrics) -> (Router, Feed) {
        let (feed, received) = feed::channel();
        (spawn(received, metrics.clone()), feed.start(last_seq))
    }

    fn update(seq: Seq, topic: &str, private: bool) -> Arc<Dispatched> {
        let mut update = Update::for_test(&format!("u{seq}"));
        update.topics = vec![Topic::new(topic.to_owned()).expect("valid topic")];
        update.private = private;
        Arc::new(Dispatched::new(seq, update))
    }

    fn count(metrics: &Metrics, reason: &str) -> String {
        let line = format!("mercure_subscribers_dropped_total{{reason=\"{reason}\"}} ");
        let text = metrics.render();
        let value = text.lines().find_map(|l| l.strip_prefix(line.as_str()).map(str::to_owned));
        value.expect("the counter is rendered")
    }

    #[tokio::test]
    async fn registration_waits_for_the_transport_and_is_bounded_by_its_history() {
        let (feed, received) = feed::channel();
        let router = spawn(received, Metrics::new());
        let registering = tokio::spawn({
            let router = router.clone();
            async move { router.register(Subscription::for_test(&["*"], None), 10).await }
        });
        tokio::task::yield_now().await;
        assert!(!registering.is_finished(), "nothing is served before the transport starts");
        let feed = feed.start(7);
        let mut first = registering.await.expect("task").expect("registered");
        assert_eq!(first.bound, 7);
        feed.send(update(8, "a", false)).await.expect("fed");
        // Updates and control messages come on two channels: once the first subscriber has the
        // update, the router has seen it.
        assert_eq!(first.queue.recv().await.map(|d| d.seq), Some(8));
        let later =
            router.register(Subscription::for_test(&["*"], None), 10).await.expect("registered");
        assert_eq!(later.bound, 8, "the bound follows what was fed");
    }

    #[tokio::test]
    async fn updates_reach_the_subscribers_that_select_them_and_may_read_them() {
        let (router, feed) = router_at(0, &Metrics::new());
        let register = |subscription| router.register(subscription, 10);
        let mut books =
            register(Subscription::for_test(&["/books/{id}"], None)).await.expect("registered");
        let mut both =
            register(Subscription::for_test(&["/books/1", "*"], None)).await.expect("registered");
        let authorized = Subscription::for_test(&["*"], Some(&["/books/{id}"]));
        let mut private = register(authorized).await.expect("registered");
        feed.send(update(1, "/books/1", false)).await.expect("fed");
        feed.send(update(2, "/users/1", false)).await.expect("fed");
        feed.send(update(3, "/books/2", true)).await.expect("fed");
        feed.send(update(4, "/books/3", false)).await.expect("fed");
        // Every subscriber receives this last one: what each got before it is all it gets.
        feed.send(update(5, "/books/5", false)).await.expect("fed");
        async fn received(registered: &mut Registered) -> Vec<Seq> {
            let mut seqs = Vec::new();
            while let Some(update) = registered.queue.recv().await {
                seqs.push(update.seq);
                if update.seq == 5 {
                    break;
                }
            }
            seqs
        }
        assert_eq!(received(&mut books).await, [1, 4, 5]);
        let got = received(&mut both).await;
        assert_eq!(got, [1, 2, 4, 5], "once each, however many selectors match; not private ones");
        let got = received(&mut private).await;
        assert_eq!(got, [1, 2, 3, 4, 5], "private ones when the token allows one of their topics");
    }

    #[tokio::test]
    async fn a_full_queue_drops_the_subscriber_and_counts_it_once() {
        let metrics = Metrics::new();
        let (router, feed) = router_at(0, &metrics);
        let mut full =
            router.register(Subscription::for_test(&["*"], None), 1).await.expect("registered");
        for seq in 1..=3 {
            feed.send(update(seq, "a", false)).await.expect("fed");
        }
        // Not reading meanwhile: the second update finds the queue full, the third no one.
        assert_eq!(full.queue.recv().await.map(|d| d.seq), Some(1), "what it held is sent");
        assert!(full.queue.recv().await.is_none(), "then its stream ends");
        assert!(router.snapshot().await.expect("snapshot").subscriptions.is_empty());
        // Its stream ending afterwards, even marked as cut off, is not counted a second time.
        full.registration.cut_off(DropReason::DispatchTimeout);
        drop(full);
        router.snapshot().await.expect("snapshot");
        assert_eq!(count(&metrics, "queue_full"), "1");
        assert_eq!(count(&metrics, "dispatch_timeout"), "0");
    }

    #[tokio::test]
    async fn a_stalled_reader_cut_off_by_its_connection_is_counted_once() {
        let metrics = Metrics::new();
        let (router, _feed) = router_at(0, &metrics);
        let mut cut =
            router.register(Subscription::for_test(&["*"], None), 10).await.expect("registered");
        cut.registration.cut_off(DropReason::DispatchTimeout);
        drop(cut);
        let gone =
            router.register(Subscription::for_test(&["*"], None), 10).await.expect("registered");
        drop(gone);
        assert!(router.snapshot().await.expect("snapshot").subscriptions.is_empty());
        assert_eq!(count(&metrics, "dispatch_timeout"), "1", "a plain departure is not counted");
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_ends_every_stream_within_its_time_spread_over_it() {
        let (router, _feed) = router_at(0, &Metrics::new());
        let mut queues = Vec::new();
        for _ in 0..50 {
            queues.push(
                router
                    .register(Subscription::for_test(&["*"], None), 10)
                    .await
                    .expect("registered"),
            );
        }
        router.drain(Duration::from_secs(100)).expect("draining");
        let late =
            router.register(Subscription::for_test(&["*"], None), 10).await.expect("registered");
        queues.push(late);
        let ended = |queues: &[Registered]| queues.iter().filter(|r| r.queue.is_closed()).count();
        tokio::time::sleep(Duration::from_secs(50)).await;
        let halfway = ended(&queues);
        // Each ends at a uniformly random moment: none or all of 51 by halfway is ~2^-50.
        assert!(halfway > 0 && halfway < 51, "spread over the drain time: {halfway} by halfway");
        tokio::time::sleep(Duration::from_secs(51)).await;
        assert_eq!(ended(&queues), 51, "every stream, including one opened while draining");
    }

    #[tokio::test]
    async fn subscription_events_are_remembered_for_the_api_cursor() {
        let (router, feed) = router_at(0, &Metrics::new());
        let watcher = Subscription::for_test(&["*"], Some(&["*"]));
        let mut watching = router.register(watcher, 10).await.expect("registered");
        let watched = Subscription::new(vec![TopicSelector::parse("/a")], None, None);
        let mut seq = 0;
        let draft_07 = crate::config::Protocols { draft_07: true, v1: false };
        for event in
            presence::updates(&watched, true, draft_07).into_iter().chain([Update::for_test("x")])
        {
            seq += 1;
            feed.send(Arc::new(Dispatched::new(seq, event))).await.expect("fed");
        }
        for seq in 1..=2 {
            assert_eq!(watching.queue.recv().await.map(|d| d.seq), Some(seq), "seen by the router");
        }
        let snapshot = router.snapshot().await.expect("snapshot");
        let remembered: Vec<Seq> = snapshot.presence.iter().map(|d| d.seq).collect();
        assert_eq!(remembered, [1], "the arrival, not the ordinary update");
    }

    #[tokio::test]
    async fn a_reset_ends_every_stream_and_moves_the_bound() {
        let (router, feed) = router_at(0, &Metrics::new());
        let watcher = Subscription::for_test(&["*"], Some(&["*"]));
        let mut open = router.register(watcher.clone(), 10).await.expect("registered");
        let event = presence::updates(&watcher, true, crate::config::Protocols::ALL).remove(0);
        feed.send(Arc::new(Dispatched::new(1, event))).await.expect("fed");
        feed.send(update(2, "/a", false)).await.expect("fed");
        // The stream was recreated: what follows starts again at 1 after 0.
        feed.reset(0).await.expect("fed");
        feed.send(update(1, "/a", false)).await.expect("fed");
        let mut received = Vec::new();
        while let Some(update) = open.queue.recv().await {
            received.push(update.seq);
        }
        assert_eq!(received, [1, 2], "the open stream ends at the reset, before the new history");
        let later = router.register(watcher, 10).await.expect("registered");
        assert_eq!(later.bound, 1, "new subscribers are bounded by the new history");
        let snapshot = router.snapshot().await.expect("snapshot");
        assert!(snapshot.presence.is_empty(), "events of the old history are forgotten");
    }

    #[test]
    fn templates_that_cannot_match_are_not_evaluated() {
        // 10,000 subscribers on distinct templates: a topic reaches only the one whose literal
        // prefix it starts with, among the few prefix lengths present.
        let mut index = SelectorIndex::default();
        for key in 0..10_000 {
            index.insert(key, &TopicSelector::parse(&format!("https://e.com/t/{key}/{{x}}")));
        }
        assert!(
            index.template_prefixes.lengths.len() <= 5,
            "{:?}",
            index.template_prefixes.lengths
        );
        assert_eq!(select(&index, "https://e.com/t/4242/anything"), [4242]);
        assert_eq!(select(&index, "https://other.com/t/4242/anything"), Vec::<u64>::new());
    }
}
