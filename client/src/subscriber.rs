//! [`Subscriber`]: the settings of a subscription; [`EventStream`]: the events, received over
//! as many connections as it takes.
//!
//! The stream behaves as a browser's `EventSource`, with what a program needs besides:
//!
//! - when a connection ends (end of stream, network error), it reconnects by itself, sending
//!   `Last-Event-ID` with the last id received so that the hub replays what was missed;
//! - the last event id belongs to the stream, not to one connection (the WHATWG `EventSource`'s
//!   "last event ID string"): each connection starts from it, so a block without an `id` field
//!   (a proxy's keep-alive `:` and blank line) leaves it as it is, and an event without an `id`
//!   carries it. Only an `id` field with an empty value clears it, as the standard says: the
//!   next connection then sends no `Last-Event-ID`;
//! - it waits the reconnection time first: the last `retry` the hub sent, else the default
//!   ([`DEFAULT_RETRY`], as browsers do); consecutive attempts that bring no event (refused
//!   connections, 408, 429, 5xx, answers that do not come, streams ending empty, events over
//!   [`SubscriberBuilder::max_event_size`]) double the wait, from at least 50 ms, up to a cap
//!   ([`SubscriberBuilder::max_backoff`]), plus up to a tenth at random; an event resets it.
//!   When a 408, 429 or 5xx answer has a `Retry-After` (in seconds), the wait is at least that
//!   long (capped the same way): it can lengthen the wait, never shorten it, so that
//!   `Retry-After: 0` cannot make the stream hammer a hub;
//! - it skips an event whose `id` field holds an id among the last [`DEFAULT_DEDUP_WINDOW`]
//!   (1,024; see [`SubscriberBuilder::dedup_window`]) ids received on this stream: a replay
//!   that overlaps what was already received, or an update a publisher stored twice under one
//!   id, is delivered once if the two arrive within that window. Events without an `id` field
//!   (or with an empty one) are never skipped;
//! - it ends, with the error as its last item, when the hub refuses the subscription itself
//!   (400, 401, 403, 404, ...): trying again would be refused again. Failures that may pass
//!   (network, no answer within [`SubscriberBuilder::head_timeout`], 408, 429, 5xx) are retried
//!   for ever, or until [`SubscriberBuilder::give_up_after`] consecutive failed attempts.
//!
//! Every `Err` is the stream's last item. The stream does its work when polled, in the
//! caller's task: it needs a Tokio runtime with its timer, as reqwest does.

use std::collections::{HashSet, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::header::{HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use reqwest::StatusCode;

use crate::credentials::{Credentials, TokenSetting};
use crate::error::{hub_url, BuildError};
use crate::event::Event;
use crate::http;
use crate::sse::{Frame, Parser};
use crate::token::{MintError, SigningKey, TokenRequest};

/// The reconnection time before the hub sends one: browsers' usual value.
pub const DEFAULT_RETRY: Duration = Duration::from_secs(3);
/// The default cap of the exponential backoff.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How many recent event ids are remembered to skip duplicates.
pub const DEFAULT_DEDUP_WINDOW: usize = 1024;
/// How long a connection attempt may take until the answer's status and headers are in. A hub
/// answers at once, before any event; a resumption may first look the id up in its history.
pub const DEFAULT_HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// The most bytes held for one event while it is read (16 MiB): far above the updates hubs
/// take by default (Quicksilver refuses a publication body over 1 MiB), and low enough that a
/// peer sending a line without end cannot exhaust the memory.
pub const DEFAULT_MAX_EVENT_SIZE: usize = 16 * 1024 * 1024;
/// The shortest wait the backoff doubles from, so that a `retry` of 0 cannot make a hub that
/// closes every connection at once a busy loop.
const MIN_BACKOFF_BASE: Duration = Duration::from_millis(50);

/// Why a subscription ended. Always the last item of an [`EventStream`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// 401: a token is needed (the hub does not allow anonymous subscribers), or the one sent
    /// is not accepted (malformed, expired, badly signed, for another hub).
    #[error("the hub refused the subscription's credentials (401): {message}")]
    Unauthorized {
        /// The hub's explanation.
        message: String,
        /// The `WWW-Authenticate` challenge.
        challenge: Option<String>,
    },
    /// 403: the token does not allow this subscription.
    #[error("the token may not subscribe (403): {message}")]
    Forbidden {
        /// The hub's explanation.
        message: String,
    },
    /// Another refusal that trying again cannot change: 400 (a selector or parameter the hub
    /// refuses), 404 (no hub at this URL), a redirection not followed, ...
    #[error("the hub refused the subscription ({status}): {message}")]
    Rejected {
        /// The status.
        status: StatusCode,
        /// The hub's explanation.
        message: String,
    },
    /// The answer is not an event stream (`text/event-stream`): not a hub, or a proxy's page.
    #[error("the answer is not an event stream (Content-Type: {content_type:?})")]
    NotAnEventStream {
        /// The answer's `Content-Type`.
        content_type: Option<String>,
    },
    /// The token could not be minted again.
    #[error("cannot mint the subscriber's token: {0}")]
    Token(#[from] MintError),
    /// The last of [`SubscriberBuilder::give_up_after`] failed attempts: 503.
    #[error("the hub is unavailable (503): {message}")]
    Unavailable {
        /// The hub's `Retry-After`.
        retry_after: Option<Duration>,
        /// The hub's explanation.
        message: String,
    },
    /// The last of [`SubscriberBuilder::give_up_after`] failed attempts: a status worth
    /// retrying (5xx, 408, 429).
    #[error("the hub failed ({status}): {message}")]
    Server {
        /// The status.
        status: StatusCode,
        /// The hub's explanation.
        message: String,
    },
    /// The last of [`SubscriberBuilder::give_up_after`] failed attempts: the hub could not be
    /// reached.
    #[error("cannot reach the hub: {}", http::describe(.0))]
    Network(#[source] reqwest::Error),
    /// The last of [`SubscriberBuilder::give_up_after`] failed attempts: the answer's status
    /// and headers did not come within [`SubscriberBuilder::head_timeout`].
    #[error("the hub did not answer within {after:?}")]
    Timeout {
        /// The timeout.
        after: Duration,
    },
}

/// The selectors of a subscription, in one protocol.
#[derive(Debug, Clone)]
enum Selectors {
    /// Draft-07 `topic` parameters: topics, URI templates, `*`.
    Topics(Vec<String>),
    /// Mercure 1.0 matchers: (`match` or `match_urlpattern`, value).
    Matchers(Vec<(&'static str, String)>),
}

/// Settings of a [`Subscriber`], from [`Subscriber::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until built"]
pub struct SubscriberBuilder {
    hub: String,
    topics: Vec<String>,
    matchers: Vec<(&'static str, String)>,
    token: Option<TokenSetting>,
    last_event_id: Option<String>,
    http: Option<reqwest::Client>,
    retry: Duration,
    max_backoff: Duration,
    dedup_window: usize,
    give_up_after: Option<u32>,
    idle_timeout: Option<Duration>,
    head_timeout: Duration,
    max_event_size: usize,
}

impl SubscriberBuilder {
    /// Adds a draft-07 topic selector (`topic` parameter): a topic, a URI template
    /// (`https://example.com/books/{id}`) or `*`.
    pub fn topic(mut self, selector: impl Into<String>) -> Self {
        self.topics.push(selector.into());
        self
    }

    /// Adds a Mercure 1.0 exact matcher (`match` parameter; the hub reads `match_exact` the
    /// same): the topic compared byte for byte, or `*`.
    pub fn match_exact(mut self, topic: impl Into<String>) -> Self {
        self.matchers.push(("match", topic.into()));
        self
    }

    /// Adds a Mercure 1.0 URL Pattern matcher (`match_urlpattern` parameter):
    /// `https://example.com/books/:id`, or a pattern relative to the hub's URL.
    pub fn match_urlpattern(mut self, pattern: impl Into<String>) -> Self {
        self.matchers.push(("match_urlpattern", pattern.into()));
        self
    }

    /// Sends `token` in `Authorization: Bearer`: needed for private updates, and by hubs that
    /// refuse anonymous subscribers. Draft-07 topics need a token with a `mercure` claim,
    /// Mercure 1.0 matchers an RFC 9068 access token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(TokenSetting::Given(token.into()));
        self
    }

    /// Sends tokens minted from `key` and `request`, minted again shortly before each expires
    /// (the hub ends a stream when its token expires: the stream reconnects with a new one).
    pub fn mint_token(mut self, key: SigningKey, request: TokenRequest) -> Self {
        self.token = Some(TokenSetting::Minted(Box::new((key, request))));
        self
    }

    /// Starts after the event `id` (sent as `Last-Event-ID`): the hub replays what came after
    /// it. `earliest` replays the whole history the hub keeps.
    pub fn last_event_id(mut self, id: impl Into<String>) -> Self {
        self.last_event_id = Some(id.into());
        self
    }

    /// Connects with `client` rather than one of the subscriber's own. It must set no overall
    /// timeout: a subscription lasts.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Sets the reconnection time used until the hub sends a `retry` (default
    /// [`DEFAULT_RETRY`]).
    pub fn retry(mut self, retry: Duration) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the cap of the exponential backoff (default [`DEFAULT_MAX_BACKOFF`]). A `retry`
    /// sent by the hub is honoured even when longer; a cap under 50 ms counts as 50 ms, the
    /// shortest wait the backoff doubles from.
    pub fn max_backoff(mut self, cap: Duration) -> Self {
        self.max_backoff = cap;
        self
    }

    /// Sets how many recent ids are remembered to skip duplicates (default
    /// [`DEFAULT_DEDUP_WINDOW`]; 0 keeps none): an event whose `id` field holds one of the last
    /// `ids` ids received on the stream is skipped. Events without an `id` field are never
    /// skipped.
    pub fn dedup_window(mut self, ids: usize) -> Self {
        self.dedup_window = ids;
        self
    }

    /// Ends the stream with the last error after `attempts` consecutive failed connection
    /// attempts (default: never, as browsers do).
    pub fn give_up_after(mut self, attempts: u32) -> Self {
        self.give_up_after = Some(attempts.max(1));
        self
    }

    /// Takes a connection that sent nothing for `timeout` for dead, and reconnects. Hubs send a
    /// comment after some silence (Quicksilver and the reference hub: every 40 s by default):
    /// a timeout above that finds connections that died without a word (a peer that vanished,
    /// a NAT that forgot them). Default: none. Zero is refused by [`build`](Self::build): it
    /// would drop every connection at once (leave it unset for no timeout).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// Sets how long a connection attempt may take, from connecting to the answer's status and
    /// headers (default [`DEFAULT_HEAD_TIMEOUT`]). An attempt that takes longer (a peer that
    /// accepts the connection and never answers) fails as a network error does: it is retried
    /// after the backoff. Zero is refused by [`build`](Self::build).
    pub fn head_timeout(mut self, timeout: Duration) -> Self {
        self.head_timeout = timeout;
        self
    }

    /// Sets the most bytes held for one event while it is read (default
    /// [`DEFAULT_MAX_EVENT_SIZE`]): its data so far, a line break after each `data` line, plus
    /// the line not yet complete, field name included. So an event's data can take the limit
    /// less a few bytes, and no line of the stream, comments included, can be longer.
    ///
    /// A connection that passes it is dropped, as one that fails: the events completed before
    /// are delivered, then the stream reconnects after the backoff and resumes after the last
    /// of them. The event over the limit is never delivered; a hub replays it on each
    /// reconnection, so the stream makes no progress past it (waiting longer each time) until
    /// the limit is raised. Zero is refused by [`build`](Self::build).
    pub fn max_event_size(mut self, bytes: usize) -> Self {
        self.max_event_size = bytes;
        self
    }

    /// Checks the settings and makes the subscriber. The checks are those the hub would
    /// answer with 400 (no selector, draft-07 topics mixed with Mercure 1.0 matchers, a token
    /// for the other protocol, control characters in a selector), and settings that would
    /// make every connection fail (a zero [`idle_timeout`](Self::idle_timeout),
    /// [`head_timeout`](Self::head_timeout) or [`max_event_size`](Self::max_event_size)).
    pub fn build(self) -> Result<Subscriber, BuildError> {
        let mut url = hub_url(&self.hub)?;
        let invalid = |setting, reason| Err(BuildError::InvalidSetting { setting, reason });
        if self.idle_timeout == Some(Duration::ZERO) {
            return invalid(
                "idle_timeout",
                "zero would drop every connection at once; leave it unset for no idle timeout",
            );
        }
        if self.head_timeout.is_zero() {
            return invalid("head_timeout", "zero would fail every connection attempt");
        }
        if self.max_event_size == 0 {
            return invalid("max_event_size", "zero would refuse every event");
        }
        let selectors = match (self.topics.is_empty(), self.matchers.is_empty()) {
            (true, true) => return Err(BuildError::NoSelector),
            (false, false) => return Err(BuildError::MixedSelectors),
            (false, true) => Selectors::Topics(self.topics),
            (true, false) => Selectors::Matchers(self.matchers),
        };
        let values: Vec<&String> = match &selectors {
            Selectors::Topics(topics) => topics.iter().collect(),
            Selectors::Matchers(matchers) => matchers.iter().map(|(_, value)| value).collect(),
        };
        for value in values {
            let reason = if value.chars().any(char::is_control) {
                "a selector must not hold control characters"
            } else if value.is_empty() {
                "an empty selector matches nothing"
            } else {
                continue;
            };
            return Err(BuildError::InvalidSelector { selector: value.clone(), reason });
        }
        let credentials = self.token.map(TokenSetting::check).transpose()?;
        let v1 = matches!(selectors, Selectors::Matchers(_));
        if let Some(access_token) = credentials.as_ref().and_then(Credentials::is_access_token) {
            if access_token != v1 {
                let name = |v1: bool| if v1 { "Mercure 1.0" } else { "draft-07" };
                return Err(BuildError::TokenProtocol {
                    token: if access_token {
                        "an RFC 9068 access token"
                    } else {
                        "a draft-07 token"
                    },
                    selectors: name(v1),
                });
            }
        }
        {
            let mut query = url.query_pairs_mut();
            match &selectors {
                Selectors::Topics(topics) => {
                    for topic in topics {
                        query.append_pair("topic", topic);
                    }
                }
                Selectors::Matchers(matchers) => {
                    for (name, value) in matchers {
                        query.append_pair(name, value);
                    }
                }
            }
        }
        let http = match self.http {
            Some(client) => client,
            None => reqwest::Client::builder()
                .connect_timeout(http::CONNECT_TIMEOUT)
                .build()
                .map_err(BuildError::HttpClient)?,
        };
        Ok(Subscriber {
            settings: Arc::new(Settings {
                url,
                v1,
                credentials,
                // An empty cursor is no cursor: nothing to send back.
                last_event_id: self.last_event_id.filter(|id| !id.is_empty()),
                http,
                retry: self.retry,
                max_backoff: self.max_backoff,
                dedup_window: self.dedup_window,
                give_up_after: self.give_up_after,
                idle_timeout: self.idle_timeout,
                head_timeout: self.head_timeout,
                max_event_size: self.max_event_size,
            }),
        })
    }
}

/// A subscription's settings: [`Subscriber::stream`] opens it, as many times as wanted.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use futures_util::StreamExt;
/// use quicksilver_client::Subscriber;
///
/// let subscriber = Subscriber::builder("https://hub.example.com/.well-known/mercure")
///     .match_urlpattern("https://example.com/books/:id")
///     .build()?;
/// let mut events = subscriber.stream();
/// while let Some(event) = events.next().await {
///     let event = event?; // an error ends the stream
///     println!("{} {}: {}", event.id, event.event_type, event.data);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Subscriber {
    settings: Arc<Settings>,
}

#[derive(Debug)]
struct Settings {
    /// The hub's URL with the selectors in its query string.
    url: url::Url,
    /// Mercure 1.0 (matchers) rather than draft-07 (topics).
    v1: bool,
    credentials: Option<Credentials>,
    last_event_id: Option<String>,
    http: reqwest::Client,
    retry: Duration,
    max_backoff: Duration,
    dedup_window: usize,
    give_up_after: Option<u32>,
    idle_timeout: Option<Duration>,
    head_timeout: Duration,
    max_event_size: usize,
}

impl Subscriber {
    /// Starts the settings of a subscription to the hub at `hub`
    /// (`https://example.com/.well-known/mercure`).
    pub fn builder(hub: impl Into<String>) -> SubscriberBuilder {
        SubscriberBuilder {
            hub: hub.into(),
            topics: Vec::new(),
            matchers: Vec::new(),
            token: None,
            last_event_id: None,
            http: None,
            retry: DEFAULT_RETRY,
            max_backoff: DEFAULT_MAX_BACKOFF,
            dedup_window: DEFAULT_DEDUP_WINDOW,
            give_up_after: None,
            idle_timeout: None,
            head_timeout: DEFAULT_HEAD_TIMEOUT,
            max_event_size: DEFAULT_MAX_EVENT_SIZE,
        }
    }

    /// The URL the stream connects to: the hub's, with the selectors.
    pub fn url(&self) -> &url::Url {
        &self.settings.url
    }

    /// Opens the subscription. Nothing happens until the stream is polled; each stream has its
    /// own connection, cursor and window of recent ids.
    pub fn stream(&self) -> EventStream {
        let status = Arc::new(Mutex::new(Status {
            last_event_id: self.settings.last_event_id.clone(),
            retry: self.settings.retry,
            connections: 0,
            failures: 0,
            connected: false,
        }));
        let session = Session {
            settings: self.settings.clone(),
            status: status.clone(),
            body: None,
            // Replaced by each connection's own.
            parser: Parser::new(String::new(), self.settings.max_event_size),
            recent: RecentIds::new(self.settings.dedup_window),
            ended: false,
            wait: None,
            failures: 0,
            failed_attempts: 0,
            finished: false,
        };
        let events = futures_util::stream::unfold(session, |mut session| async move {
            let item = session.next().await?;
            Some((item, session))
        });
        // Fused: polling after the end answers the end again.
        let events: Events = Box::pin(events);
        EventStream { events: events.fuse(), status }
    }
}

/// What the stream's owner can inspect while the session runs.
#[derive(Debug)]
struct Status {
    /// The cursor sent on the next connection: the last event id received (or given); `None`
    /// rather than empty.
    last_event_id: Option<String>,
    /// The reconnection time: the hub's last `retry`, or the default.
    retry: Duration,
    /// Connections accepted by the hub (200), the first included.
    connections: u64,
    /// Consecutive attempts that brought no event.
    failures: u32,
    /// Whether a connection is open.
    connected: bool,
}

/// The events of a subscription: a [`Stream`] of `Result<Event, SubscribeError>` that
/// reconnects by itself (see the [module documentation](self)). An `Err` is the last item.
pub struct EventStream {
    events: futures_util::stream::Fuse<Events>,
    status: Arc<Mutex<Status>>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").field("status", &*lock(&self.status)).finish_non_exhaustive()
    }
}

/// The status, whatever a panic elsewhere left in it (plain values, always whole).
fn lock(status: &Mutex<Status>) -> MutexGuard<'_, Status> {
    status.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl EventStream {
    /// The id the next connection will resume after (`Last-Event-ID`): the last one the hub
    /// sent in an `id` field, on this connection or an earlier one, else the one the subscriber
    /// started from. Blocks without an `id` field leave it as it is; an `id` field with an
    /// empty value clears it (`None`), as the WHATWG standard says.
    pub fn last_event_id(&self) -> Option<String> {
        lock(&self.status).last_event_id.clone()
    }

    /// The reconnection time: the hub's last `retry`, else the subscriber's default. Failed
    /// attempts wait longer (exponential backoff).
    pub fn retry_delay(&self) -> Duration {
        lock(&self.status).retry
    }

    /// How many times the stream reconnected after its first connection.
    pub fn reconnections(&self) -> u64 {
        lock(&self.status).connections.saturating_sub(1)
    }

    /// Consecutive connection attempts that brought no event.
    pub fn consecutive_failures(&self) -> u32 {
        lock(&self.status).failures
    }

    /// Whether a connection to the hub is open.
    pub fn is_connected(&self) -> bool {
        lock(&self.status).connected
    }
}

/// The stream of a session.
type Events = Pin<Box<dyn Stream<Item = Result<Event, SubscribeError>> + Send>>;

impl futures_util::stream::FusedStream for EventStream {
    fn is_terminated(&self) -> bool {
        self.events.is_terminated()
    }
}

impl Stream for EventStream {
    type Item = Result<Event, SubscribeError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_next_unpin(cx)
    }
}

/// The recent ids, oldest first, with a set to find them.
#[derive(Debug)]
struct RecentIds {
    order: VecDeque<String>,
    set: HashSet<String>,
    capacity: usize,
}

impl RecentIds {
    fn new(capacity: usize) -> Self {
        Self { order: VecDeque::new(), set: HashSet::new(), capacity }
    }

    /// Remembers `id`; `false` when it was already among the recent ones.
    fn insert(&mut self, id: &str) -> bool {
        if self.capacity == 0 {
            return true;
        }
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.set.remove(&oldest);
            }
        }
        self.order.push_back(id.to_owned());
        self.set.insert(id.to_owned());
        true
    }
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// Why a connection attempt failed.
enum Refusal {
    /// For good: the stream ends with this error.
    Final(SubscribeError),
    /// For now: try again after the backoff (or the hub's `Retry-After`).
    Passing(SubscribeError, Option<Duration>),
}

/// The state of one stream, moved through `unfold`.
struct Session {
    settings: Arc<Settings>,
    status: Arc<Mutex<Status>>,
    /// The open connection's body.
    body: Option<Body>,
    /// The parser of the open connection.
    parser: Parser,
    recent: RecentIds,
    /// The connection ended (or was dropped): the wait before the next one is set once the
    /// frames it brought are applied (a last `retry`, an event that resets the backoff).
    ended: bool,
    /// The wait before the next connection attempt.
    wait: Option<Duration>,
    /// Consecutive attempts that brought no event: the backoff's exponent.
    failures: u32,
    /// Consecutive connection attempts that failed: counted for `give_up_after`.
    failed_attempts: u32,
    finished: bool,
}

impl Session {
    /// The next item: an event, or the error that ends the stream (`None` after it).
    async fn next(&mut self) -> Option<Result<Event, SubscribeError>> {
        loop {
            if self.finished {
                return None;
            }
            if let Some(event) = self.take_event() {
                return Some(Ok(event));
            }
            if self.body.is_some() {
                self.read().await;
                continue;
            }
            if std::mem::take(&mut self.ended) {
                self.schedule_reconnection(None);
            }
            if let Some(wait) = self.wait.take() {
                tokio::time::sleep(wait).await;
            }
            let cursor = lock(&self.status).last_event_id.clone();
            match connect(self.settings.clone(), cursor.clone()).await {
                Ok(body) => {
                    self.body = Some(body);
                    // The last event ID outlives the connection: a blank line without an `id`
                    // field on this one must not clear it (see the `sse` module).
                    self.parser =
                        Parser::new(cursor.unwrap_or_default(), self.settings.max_event_size);
                    self.failed_attempts = 0;
                    let mut status = lock(&self.status);
                    status.connections += 1;
                    status.connected = true;
                }
                Err(Refusal::Final(error)) => {
                    self.finished = true;
                    return Some(Err(error));
                }
                Err(Refusal::Passing(error, retry_after)) => {
                    self.failed_attempts += 1;
                    if self.settings.give_up_after.is_some_and(|n| self.failed_attempts >= n) {
                        self.finished = true;
                        return Some(Err(error));
                    }
                    self.schedule_reconnection(retry_after);
                }
            }
        }
    }

    /// The next new event already parsed, applying the other frames on the way.
    fn take_event(&mut self) -> Option<Event> {
        while let Some(frame) = self.parser.next_frame() {
            let mut status = lock(&self.status);
            match frame {
                Frame::Retry(retry) => status.retry = retry,
                Frame::LastEventId(id) => status.last_event_id = cursor(id),
                Frame::Event { event, explicit_id } => {
                    status.last_event_id = cursor(event.id.clone());
                    if explicit_id && !event.id.is_empty() && !self.recent.insert(&event.id) {
                        // Already delivered: a replay overlapping what was received, or an
                        // update stored twice.
                        continue;
                    }
                    self.failures = 0;
                    status.failures = 0;
                    return Some(event);
                }
            }
        }
        None
    }

    /// Reads the open connection once: a chunk for the parser, or the end of the connection.
    async fn read(&mut self) {
        let Some(body) = self.body.as_mut() else { return };
        let next = match self.settings.idle_timeout {
            Some(limit) => tokio::time::timeout(limit, body.next()).await.unwrap_or(None),
            None => body.next().await,
        };
        let fed = match next {
            Some(Ok(chunk)) => self.parser.feed(&chunk).is_ok(),
            Some(Err(_)) | None => false,
        };
        if !fed {
            // The end of the stream, an error, silence or an event over the limit: reconnect.
            // What was not completed by a blank line is dropped with the parser, as the
            // standard says; the frames completed before are still applied.
            self.body = None;
            self.ended = true;
            lock(&self.status).connected = false;
        }
    }

    /// Counts a failure and sets the wait before the next attempt.
    fn schedule_reconnection(&mut self, retry_after: Option<Duration>) {
        self.failures = self.failures.saturating_add(1);
        let mut status = lock(&self.status);
        status.failures = self.failures;
        let wait = backoff(status.retry, self.failures, self.settings.max_backoff, retry_after);
        self.wait = Some(http::with_jitter(wait));
    }
}

/// The cursor for an id the parser dispatched: none for the empty string.
fn cursor(id: String) -> Option<String> {
    (!id.is_empty()).then_some(id)
}

/// One connection attempt, resuming after `cursor`: the request, then the answer's status and
/// headers sorted into an open stream or a refusal.
async fn connect(settings: Arc<Settings>, cursor: Option<String>) -> Result<Body, Refusal> {
    let mut url = settings.url.clone();
    let mut cursor_header = None;
    if let Some(id) = cursor {
        match HeaderValue::from_bytes(id.as_bytes()) {
            Ok(value) => cursor_header = Some(value),
            Err(_) => {
                // An id a header cannot carry (a control character): the query parameter
                // hubs read for clients that cannot set headers.
                let name = if settings.v1 { "last_event_id" } else { "lastEventID" };
                url.query_pairs_mut().append_pair(name, &id);
            }
        }
    }
    let mut request = settings
        .http
        .get(url)
        .header(ACCEPT, "text/event-stream")
        .header(CACHE_CONTROL, "no-cache");
    if let Some(value) = cursor_header {
        request = request.header("last-event-id", value);
    }
    if let Some(credentials) = &settings.credentials {
        let token = credentials.token().map_err(|e| Refusal::Final(e.into()))?;
        request = request.bearer_auth(token);
    }
    // `send` resolves with the status and headers: a peer that accepts the connection and never
    // answers would keep it pending for ever.
    let response = match tokio::time::timeout(settings.head_timeout, request.send()).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => return Err(Refusal::Passing(SubscribeError::Network(error), None)),
        Err(_) => {
            let error = SubscribeError::Timeout { after: settings.head_timeout };
            return Err(Refusal::Passing(error, None));
        }
    };
    let status = response.status();
    if status == StatusCode::OK {
        let content_type = response.headers().get(CONTENT_TYPE);
        let essence = content_type
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .map(|essence| essence.trim().to_ascii_lowercase());
        if essence.as_deref() != Some("text/event-stream") {
            let content_type =
                content_type.map(|value| String::from_utf8_lossy(value.as_bytes()).into());
            return Err(Refusal::Final(SubscribeError::NotAnEventStream { content_type }));
        }
        return Ok(Box::pin(response.bytes_stream()));
    }
    let headers = response.headers().clone();
    let retry_after = http::retry_after(&headers);
    let message = http::message(response).await;
    Err(match status {
        StatusCode::UNAUTHORIZED => Refusal::Final(SubscribeError::Unauthorized {
            message,
            challenge: http::challenge(&headers),
        }),
        StatusCode::FORBIDDEN => Refusal::Final(SubscribeError::Forbidden { message }),
        StatusCode::SERVICE_UNAVAILABLE => {
            Refusal::Passing(SubscribeError::Unavailable { retry_after, message }, retry_after)
        }
        StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => {
            Refusal::Passing(SubscribeError::Server { status, message }, retry_after)
        }
        status if status.is_server_error() => {
            Refusal::Passing(SubscribeError::Server { status, message }, retry_after)
        }
        status => Refusal::Final(SubscribeError::Rejected { status, message }),
    })
}

/// The wait before the next attempt after `failures` consecutive attempts without an event
/// (1 for the first): `retry` after the first, then doubling from `retry` (at least
/// [`MIN_BACKOFF_BASE`]) up to `cap` (at least [`MIN_BACKOFF_BASE`] too), or to `retry` when
/// the hub asked for more. A `Retry-After`, capped the same way, is a lower bound: it can
/// lengthen the wait, never shorten it, or `Retry-After: 0` on every attempt would make the
/// stream a busy loop.
fn backoff(
    retry: Duration,
    failures: u32,
    cap: Duration,
    retry_after: Option<Duration>,
) -> Duration {
    let cap = cap.max(retry).max(MIN_BACKOFF_BASE);
    let doubled = if failures <= 1 {
        retry
    } else {
        let factor = 1u32 << (failures - 1).min(30);
        retry.max(MIN_BACKOFF_BASE).saturating_mul(factor).min(cap)
    };
    match retry_after {
        Some(after) => doubled.max(after.min(cap)),
        None => doubled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HUB: &str = "http://127.0.0.1:1/.well-known/mercure";

    #[test]
    fn backoff_doubles_from_retry_up_to_the_cap() {
        let ms = Duration::from_millis;
        let cap = Duration::from_secs(60);
        let waits: Vec<u128> =
            (1..=8).map(|n| backoff(ms(3000), n, cap, None).as_millis()).collect();
        assert_eq!(waits, [3000, 6000, 12000, 24000, 48000, 60000, 60000, 60000]);
        assert_eq!(backoff(ms(0), 1, cap, None), ms(0), "a retry of 0 is honoured once");
        assert_eq!(backoff(ms(0), 2, cap, None), ms(100), "then the wait grows");
        assert_eq!(backoff(ms(0), 3, cap, None), ms(200));
        assert_eq!(backoff(ms(500), 1, cap, Some(ms(5000))), ms(5000), "Retry-After wins");
        assert_eq!(backoff(ms(500), 1, cap, Some(Duration::from_secs(3600))), cap, "capped");
        // Retry-After is a lower bound: it cannot shorten the doubling.
        assert_eq!(backoff(ms(500), 1, cap, Some(Duration::ZERO)), ms(500));
        let waits: Vec<u128> =
            (1..=4).map(|n| backoff(ms(10), n, cap, Some(Duration::ZERO)).as_millis()).collect();
        assert_eq!(waits, [10, 100, 200, 400], "Retry-After: 0 every time still backs off");
        assert_eq!(backoff(ms(3000), 3, cap, Some(ms(1000))), ms(12000));
        // A cap under the floor does not lower it.
        let tiny = ms(1);
        assert_eq!(backoff(ms(0), 2, tiny, None), ms(50), "the floor holds under a tiny cap");
        assert_eq!(backoff(ms(0), 9, tiny, Some(Duration::from_secs(9))), ms(50));
        let long = Duration::from_secs(120);
        assert_eq!(backoff(long, 5, cap, None), long, "the hub's retry is honoured past the cap");
        assert_eq!(backoff(ms(1), u32::MAX, cap, None), cap, "no overflow");
    }

    #[test]
    fn recent_ids_are_a_bounded_window() {
        let mut recent = RecentIds::new(2);
        assert!(recent.insert("a"));
        assert!(!recent.insert("a"));
        assert!(recent.insert("b"));
        assert!(recent.insert("c"), "a is forgotten");
        assert!(recent.insert("a"));
        assert!(!recent.insert("c"));
        assert_eq!((recent.order.len(), recent.set.len()), (2, 2));
        let mut none = RecentIds::new(0);
        assert!(none.insert("a") && none.insert("a"));
    }

    #[test]
    fn the_builder_refuses_what_the_hub_would() {
        let refused = |builder: SubscriberBuilder| builder.build().expect_err("refused");
        assert!(matches!(refused(Subscriber::builder(HUB)), BuildError::NoSelector));
        assert!(matches!(
            refused(Subscriber::builder(HUB).topic("a").match_exact("b")),
            BuildError::MixedSelectors
        ));
        assert!(matches!(
            refused(Subscriber::builder(HUB).topic("a\nb")),
            BuildError::InvalidSelector { .. }
        ));
        assert!(matches!(
            refused(Subscriber::builder(HUB).match_urlpattern("")),
            BuildError::InvalidSelector { .. }
        ));
        assert!(matches!(
            refused(Subscriber::builder("/relative").topic("a")),
            BuildError::InvalidHubUrl { .. }
        ));
        let key = SigningKey::new("HS256", b"k").expect("key");
        let any = || crate::token::Selector::Exact("*".into());
        let access = TokenRequest::new(crate::token::Format::Rfc9068).subscribe(any());
        let legacy = TokenRequest::new(crate::token::Format::Legacy).subscribe(any());
        assert!(matches!(
            refused(Subscriber::builder(HUB).topic("a").mint_token(key.clone(), access.clone())),
            BuildError::TokenProtocol { .. }
        ));
        let legacy_token = crate::token::mint(&legacy, &key).expect("mint");
        assert!(matches!(
            refused(Subscriber::builder(HUB).match_exact("a").token(legacy_token)),
            BuildError::TokenProtocol { .. }
        ));
        Subscriber::builder(HUB)
            .match_exact("a")
            .mint_token(key.clone(), access)
            .build()
            .expect("v1");
        Subscriber::builder(HUB).topic("a").mint_token(key, legacy).build().expect("draft-07");
        Subscriber::builder(HUB).topic("a").token("opaque").build().expect("unknown protocol");
    }

    #[test]
    fn settings_that_fail_every_connection_are_refused() {
        let setting = |builder: SubscriberBuilder| match builder.build() {
            Err(BuildError::InvalidSetting { setting, .. }) => setting,
            other => panic!("refused: {other:?}"),
        };
        let builder = || Subscriber::builder(HUB).topic("a");
        assert_eq!(setting(builder().idle_timeout(Duration::ZERO)), "idle_timeout");
        assert_eq!(setting(builder().head_timeout(Duration::ZERO)), "head_timeout");
        assert_eq!(setting(builder().max_event_size(0)), "max_event_size");
        let message = builder().idle_timeout(Duration::ZERO).build().expect_err("zero");
        assert!(message.to_string().contains("leave it unset"), "{message}");
        builder()
            .idle_timeout(Duration::from_nanos(1))
            .head_timeout(Duration::from_nanos(1))
            .max_event_size(1)
            .build()
            .expect("small but not zero");
    }

    #[test]
    fn the_url_carries_the_selectors() {
        let topics = Subscriber::builder(HUB)
            .topic("https://example.com/books/{id}")
            .topic("*")
            .build()
            .expect("valid");
        assert_eq!(
            topics.url().as_str(),
            "http://127.0.0.1:1/.well-known/mercure?topic=https%3A%2F%2Fexample.com%2Fbooks%2F%7Bid%7D&topic=*"
        );
        let matchers = Subscriber::builder(HUB)
            .match_exact("a b")
            .match_urlpattern("/books/:id")
            .build()
            .expect("valid");
        assert_eq!(matchers.url().query(), Some("match=a+b&match_urlpattern=%2Fbooks%2F%3Aid"));
    }

    #[tokio::test]
    async fn a_hub_that_cannot_be_reached_is_retried_then_given_up() {
        // Port 1 on loopback: nothing listens there, the connection is refused at once.
        let subscriber = Subscriber::builder(HUB)
            .topic("a")
            .retry(Duration::from_millis(10))
            .give_up_after(3)
            .build()
            .expect("valid");
        let mut stream = subscriber.stream();
        let started = std::time::Instant::now();
        let first = stream.next().await.expect("an item");
        assert!(matches!(first, Err(SubscribeError::Network(_))), "{first:?}");
        // Two waits: 10 ms, then 100 ms (doubled from the 50 ms floor).
        assert!(started.elapsed() >= Duration::from_millis(110), "{:?}", started.elapsed());
        assert_eq!(stream.consecutive_failures(), 2);
        assert!(stream.next().await.is_none(), "the error was the last item");
        assert!(!stream.is_connected());
        assert_eq!(stream.reconnections(), 0);
    }
}
