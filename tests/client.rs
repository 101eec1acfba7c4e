//! The client crate (`quicksilver_client`) against real hubs: in-process ones (`TestHub`), and the
//! `quicksilver` binary for a restart. Publication and reception in both protocols, private
//! updates, resumption across a hub restart without loss or duplicate, the `retry` field, and each
//! error kind as a real hub answers it (the 503s from a transport that fails on purpose).
//!
//! Every wait is for an event or a condition, bounded by [`PATIENCE`]; timings are only checked
//! as lower bounds. Run alone with `cargo test --test client`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::{free_port, history_file, TestHub, KEY};
use futures_util::StreamExt;
use quicksilver::transport::local::LocalTransport;
use quicksilver::transport::memory::MemoryStore;
use quicksilver::transport::pages::Page;
use quicksilver::transport::recent::Keep;
use quicksilver::transport::{Transport, TransportError};
use quicksilver::update::{Dispatched, Seq};
use quicksilver_client::token::{Format, Selector, SigningKey, TokenRequest};
use quicksilver_client::{
    discovery, Event, EventStream, PublishError, Publisher, RetryPolicy, SubscribeError,
    Subscriber, Update,
};

/// The bound of every wait: reached only by a test that is broken or hung.
const PATIENCE: Duration = Duration::from_secs(30);

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_quicksilver");

/// The test key, as a signing key.
fn key() -> SigningKey {
    SigningKey::new("HS256", KEY.as_bytes()).expect("the test key signs")
}

/// A publisher to `url` with a draft-07 token that may publish everywhere.
fn publisher(url: &str) -> Publisher {
    Publisher::builder(url).token(common::publisher()).build().expect("a valid publisher")
}

/// Publishes `update`, which must succeed, and checks that the hub kept its id.
async fn publish(publisher: &Publisher, update: &Update) {
    let id = publisher.publish(update).await.unwrap_or_else(|error| panic!("publish: {error}"));
    assert_eq!(id, update.id(), "the hub answers the update's own id");
}

/// Publishes `update` as a careful caller does: after a failure that may or may not have reached
/// the hub (a connection that closed once the request was sent), the same update again, whose
/// id the subscribers skip if the first attempt was stored after all.
async fn publish_again_if_unsure(publisher: &Publisher, update: &Update) {
    for _ in 0..3 {
        match publisher.publish(update).await {
            Ok(id) => return assert_eq!(id, update.id()),
            Err(PublishError::Network(error)) if error.may_have_reached_hub() => continue,
            Err(error) => panic!("publish: {error}"),
        }
    }
    panic!("three ambiguous failures in a row");
}

/// An update on `topic` with `data` (and a generated id).
fn update(topic: &str, data: &str) -> Update {
    Update::builder(topic).data(data).build().expect("a valid update")
}

/// A request without a token gets `WWW-Authenticate: Bearer` with no `error` (RFC 6750 §3.1).
fn assert_plain_bearer_challenge(challenge: Option<String>) {
    let challenge = challenge.expect("a challenge");
    assert!(challenge.starts_with("Bearer") && !challenge.contains("error="), "{challenge}");
}

/// The next item of `stream`, within [`PATIENCE`].
async fn next(stream: &mut EventStream) -> Option<Result<Event, SubscribeError>> {
    tokio::time::timeout(PATIENCE, stream.next()).await.expect("an item within the patience")
}

/// The next event of `stream`, which must come.
async fn next_event(stream: &mut EventStream) -> Event {
    match next(stream).await {
        Some(Ok(event)) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// The error that ends `stream`, which must come, followed by the end of the stream.
async fn final_error(stream: &mut EventStream) -> SubscribeError {
    let error = match next(stream).await {
        Some(Err(error)) => error,
        other => panic!("expected an error, got {other:?}"),
    };
    assert!(next(stream).await.is_none(), "the error ends the stream");
    error
}

#[tokio::test]
async fn draft_07_publish_and_receive_with_private_updates_for_tokens_only() {
    let hub = TestHub::start(&[("MERCURE_ANONYMOUS", "1")]);
    let topic = "https://example.com/books/1";
    let subscribe = |token: Option<String>| {
        let builder = Subscriber::builder(&hub.url)
            .topic("https://example.com/books/{id}")
            // The whole history: nothing published before the first connection is missed.
            .last_event_id("earliest");
        match token {
            Some(token) => builder.token(token),
            None => builder,
        }
        .build()
        .expect("a valid subscriber")
        .stream()
    };
    let mut allowed = subscribe(Some(common::subscriber()));
    let mut anonymous = subscribe(None);

    let publisher = publisher(&hub.url);
    let secret = Update::builder(topic).data("secret").private(true).build().expect("valid");
    let public = Update::builder(topic)
        .topic("https://example.com/authors/7")
        .data("line 1\nline 2")
        .event_type("book")
        .id("public-1")
        .build()
        .expect("valid");
    publish(&publisher, &secret).await;
    publish(&publisher, &public).await;

    let first = next_event(&mut allowed).await;
    assert_eq!((first.id.as_str(), first.data.as_str()), (secret.id(), "secret"));
    assert_eq!(first.event_type, "message");
    let second = next_event(&mut allowed).await;
    assert_eq!(second, Event::new("public-1", "book", "line 1\nline 2"));
    assert_eq!(allowed.last_event_id().as_deref(), Some("public-1"));
    // The private update was published first: a subscriber without a token sees only the other.
    assert_eq!(next_event(&mut anonymous).await, second);
}

#[tokio::test]
async fn mercure_1_matchers_with_minted_access_tokens() {
    let hub = TestHub::start(&[
        ("MERCURE_ANONYMOUS", "1"),
        ("MERCURE_TRUSTED_ISSUERS", quicksilver_client::token::DEFAULT_ISSUER),
    ]);
    // The audience of access tokens: the hub's URL as the client reaches it.
    let rights = |request: TokenRequest| request.audience(&hub.url);
    let publisher = Publisher::builder(&hub.url)
        .mint_token(
            key(),
            rights(TokenRequest::new(Format::Rfc9068).publish(Selector::parse("*").expect("*"))),
        )
        .build()
        .expect("a valid publisher");
    let books = Selector::parse("urlpattern:https://example.com/books/:id").expect("a pattern");
    let mut allowed = Subscriber::builder(&hub.url)
        .match_urlpattern("https://example.com/books/:id")
        .mint_token(key(), rights(TokenRequest::new(Format::Rfc9068).subscribe(books)))
        .last_event_id("earliest")
        .build()
        .expect("a valid subscriber")
        .stream();
    let mut anonymous = Subscriber::builder(&hub.url)
        .match_exact("https://example.com/books/1")
        .last_event_id("earliest")
        .build()
        .expect("a valid subscriber")
        .stream();

    let topic = "https://example.com/books/1";
    let secret = Update::builder(topic).data("secret").private(true).build().expect("valid");
    let public = update(topic, "public");
    publish(&publisher, &secret).await;
    publish(&publisher, &public).await;

    assert_eq!(next_event(&mut allowed).await.id, secret.id());
    assert_eq!(next_event(&mut allowed).await.id, public.id());
    assert_eq!(
        next_event(&mut anonymous).await.id,
        public.id(),
        "no private update without rights"
    );
}

#[tokio::test]
async fn an_update_published_twice_with_one_id_is_received_once() {
    let hub = TestHub::start(&[("MERCURE_ANONYMOUS", "1")]);
    let topic = "https://example.com/twice";
    let publisher = publisher(&hub.url);
    let once = update(topic, "once");
    // What a caller does after an ambiguous failure: the same update again. The hub stores
    // both; the stream skips the id it already delivered.
    publish(&publisher, &once).await;
    publish(&publisher, &once).await;
    let after = update(topic, "after");
    publish(&publisher, &after).await;
    let mut stream = Subscriber::builder(&hub.url)
        .topic(topic)
        .last_event_id("earliest")
        .build()
        .expect("a valid subscriber")
        .stream();
    assert_eq!(next_event(&mut stream).await.id, once.id());
    assert_eq!(next_event(&mut stream).await.id, after.id(), "the copy was skipped");
}

/// A `quicksilver` process on a fixed port, killed when dropped.
struct HubProcess {
    child: Child,
}

impl HubProcess {
    /// Starts the binary on `port` with the embedded store at `history`, and waits until it
    /// listens.
    fn start(port: u16, history: &Path) -> Self {
        let mut child = Command::new(BIN)
            .env_clear()
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .env("MERCURE_ADDR", format!("127.0.0.1:{port}"))
            .env("MERCURE_JWT_KEY", KEY)
            .env("MERCURE_TRANSPORT", "embedded")
            .env("MERCURE_HISTORY_PATH", history)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the hub");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (lines, received) = mpsc::channel();
        // Drains stderr for the life of the process, so that it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match received.recv_timeout(left) {
                Ok(line) if line.contains("listening on") => return Self { child },
                Ok(_) => {}
                Err(error) => panic!("the hub did not start listening: {error}"),
            }
        }
    }

    /// Kills the process (SIGKILL: no drain, no goodbye) and reaps it.
    fn kill(mut self) {
        self.child.kill().expect("kill the hub");
        self.child.wait().expect("reap the hub");
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_subscription_survives_a_hub_restart_without_loss_or_duplicate() {
    let (_dir, history) = history_file();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/.well-known/mercure");
    let topic = "https://example.com/restart";
    let hub = HubProcess::start(port, &history);

    let publisher = Publisher::builder(&url)
        .token(common::publisher())
        // The restarted hub may refuse connections for a moment: retried, never sent.
        .retry_policy(RetryPolicy::default().max_attempts(10).max_delay(Duration::from_secs(1)))
        .build()
        .expect("a valid publisher");
    let mut stream = Subscriber::builder(&url)
        .topic(topic)
        .token(common::subscriber())
        .last_event_id("earliest")
        .retry(Duration::from_millis(100))
        .max_backoff(Duration::from_millis(500))
        .build()
        .expect("a valid subscriber")
        .stream();

    let mut published = Vec::new();
    for n in 1..=3 {
        let update = update(topic, &format!("before {n}"));
        publish(&publisher, &update).await;
        published.push(update.id().to_owned());
    }
    let mut received = Vec::new();
    while received.len() < 3 {
        received.push(next_event(&mut stream).await.id);
    }
    assert!(stream.is_connected());

    hub.kill();
    // Started from a blocking thread, so that the runtime meanwhile sees the old connections
    // close.
    let restart = tokio::task::spawn_blocking(move || HubProcess::start(port, &history));
    let hub = restart.await.expect("the hub restarted");
    for n in 1..=3 {
        let update = update(topic, &format!("after {n}"));
        // The publisher's pooled connection to the killed hub may still look open.
        publish_again_if_unsure(&publisher, &update).await;
        published.push(update.id().to_owned());
    }
    while received.len() < 6 {
        received.push(next_event(&mut stream).await.id);
    }
    assert_eq!(received, published, "every update once, in order");
    assert!(stream.reconnections() >= 1, "the stream reconnected by itself");

    // Nothing else was queued: the next event is the next update.
    let last = update(topic, "last");
    publish_again_if_unsure(&publisher, &last).await;
    assert_eq!(next_event(&mut stream).await.id, last.id());
    drop(hub);
}

#[tokio::test]
async fn the_retry_field_sets_the_wait_before_reconnecting() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("an ephemeral port");
    let addr = listener.local_addr().expect("its address");
    let anonymous = [("MERCURE_ANONYMOUS", "1")];
    let first = TestHub::start_on(listener, &anonymous);
    let topic = "https://example.com/retry";
    let mut stream = Subscriber::builder(&first.url)
        .topic(topic)
        .last_event_id("earliest")
        .retry(Duration::from_millis(100))
        .build()
        .expect("a valid subscriber")
        .stream();
    assert_eq!(stream.retry_delay(), Duration::from_millis(100), "the default until told");

    let retry = Duration::from_millis(1500);
    let slow = Update::builder(topic).retry(retry).build().expect("valid");
    publish(&publisher(&first.url), &slow).await;
    assert_eq!(next_event(&mut stream).await.id, slow.id());
    assert_eq!(stream.retry_delay(), retry, "the hub's retry replaces the default");

    // The hub goes (its connections with it) and another takes its port, with an empty
    // history: the stream resumes there, no sooner than `retry` after it lost the first.
    let lost = Instant::now();
    drop(first);
    let listener = std::net::TcpListener::bind(addr).expect("the same port again");
    let second = TestHub::start_on(listener, &anonymous);
    let next_update = update(topic, "on the second hub");
    publish(&publisher(&second.url), &next_update).await;
    assert_eq!(next_event(&mut stream).await.id, next_update.id());
    let waited = lost.elapsed();
    assert!(waited >= retry, "reconnected after {waited:?}, before the {retry:?} asked");
    assert_eq!(stream.reconnections(), 1);
}

#[tokio::test]
async fn publish_errors_name_the_check_that_failed() {
    let hub = TestHub::start(&[
        ("MERCURE_MAX_REQUEST_BODY_SIZE", "2048"),
        ("MERCURE_MAX_TOPICS_PER_UPDATE", "2"),
        ("MERCURE_MAX_FORM_FIELDS", "20"),
    ]);
    let topic = "https://example.com/allowed";
    let small = update(topic, "x");

    let anonymous = Publisher::builder(&hub.url).build().expect("a valid publisher");
    match anonymous.publish(&small).await {
        Err(PublishError::Unauthorized { challenge, .. }) => {
            assert_plain_bearer_challenge(challenge);
        }
        other => panic!("no token: {other:?}"),
    }
    let forged =
        common::token_with("another key", serde_json::json!({"mercure": {"publish": ["*"]}}));
    let forger = Publisher::builder(&hub.url).token(forged).build().expect("a valid publisher");
    match forger.publish(&small).await {
        Err(PublishError::Unauthorized { message, challenge }) => {
            assert!(challenge.is_some_and(|c| c.contains("invalid_token")), "{message}");
        }
        other => panic!("bad token: {other:?}"),
    }

    let narrow = common::token(serde_json::json!({"publish": [topic]}));
    let narrow = Publisher::builder(&hub.url).token(narrow).build().expect("a valid publisher");
    publish(&narrow, &small).await;
    match narrow.publish(&update("https://example.com/elsewhere", "x")).await {
        Err(PublishError::Forbidden { message }) => {
            assert!(message.contains("elsewhere"), "{message}")
        }
        other => panic!("a topic the token does not allow: {other:?}"),
    }

    let publisher = publisher(&hub.url);
    match publisher.publish(&update(topic, &"x".repeat(4096))).await {
        Err(PublishError::PayloadTooLarge { message }) => {
            assert!(message.contains("max_request_body_size"), "{message}")
        }
        other => panic!("a body over the limit: {other:?}"),
    }
    let three = Update::builder(topic).topic("b").topic("c").build().expect("valid");
    match publisher.publish(&three).await {
        Err(PublishError::PayloadTooLarge { message }) => {
            assert!(message.contains("max_topics_per_update"), "{message}")
        }
        other => panic!("too many topics: {other:?}"),
    }

    // Everything the hub refuses with 400 in an update is refused before sending (see the
    // crate's unit tests); a hub URL whose query string is over the hub's field limit is not.
    let query: Vec<String> = (0..21).map(|n| format!("p{n}=x")).collect();
    let crowded = Publisher::builder(format!("{}?{}", hub.url, query.join("&")))
        .token(common::publisher())
        .build()
        .expect("a valid publisher");
    match crowded.publish(&small).await {
        Err(PublishError::Rejected { status, message }) => {
            assert_eq!(status, 400, "{message}");
            assert!(message.contains("max_form_fields"), "{message}");
        }
        other => panic!("a query string over the limit: {other:?}"),
    }
}

#[tokio::test]
async fn a_hub_that_is_not_there_is_a_network_error_from_before_sending() {
    let url = format!("http://127.0.0.1:{}/.well-known/mercure", free_port());
    let publisher = Publisher::builder(&url)
        .token(common::publisher())
        .retry_policy(
            RetryPolicy::default().max_attempts(3).initial_delay(Duration::from_millis(50)),
        )
        .build()
        .expect("a valid publisher");
    let started = Instant::now();
    match publisher.publish(&update("a", "x")).await {
        Err(PublishError::Network(error)) => {
            assert!(!error.may_have_reached_hub(), "{error}");
            assert!(!error.is_timeout(), "{error}");
        }
        other => panic!("nothing listening: {other:?}"),
    }
    // Three attempts: two waits, of 50 ms and 100 ms at least.
    assert!(started.elapsed() >= Duration::from_millis(150), "{:?}", started.elapsed());
}

/// A real transport whose first publications and history lookups fail with 503.
struct Flaky {
    inner: LocalTransport<MemoryStore>,
    /// Publications still to refuse.
    refuse_publish: AtomicUsize,
    /// History lookups (a subscriber resuming) still to refuse.
    refuse_find: AtomicUsize,
    /// Publications attempted.
    publish_attempts: AtomicUsize,
    retry_after: Duration,
}

impl Flaky {
    fn unavailable(&self) -> TransportError {
        TransportError::Unavailable {
            reason: "the cluster is out of reach".into(),
            retry_after: self.retry_after,
        }
    }

    /// Takes one refusal from `counter`, if any is left.
    fn refuse(counter: &AtomicUsize) -> bool {
        counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    }
}

#[async_trait]
impl Transport for Flaky {
    async fn publish_all(
        &self,
        updates: Vec<quicksilver::update::Update>,
        keep: Keep,
    ) -> Result<Seq, TransportError> {
        self.publish_attempts.fetch_add(1, Ordering::SeqCst);
        if Self::refuse(&self.refuse_publish) {
            return Err(self.unavailable());
        }
        self.inner.publish_all(updates, keep).await
    }

    async fn find(&self, id: &str) -> Result<Option<Arc<Dispatched>>, TransportError> {
        if Self::refuse(&self.refuse_find) {
            return Err(self.unavailable());
        }
        self.inner.find(id).await
    }

    async fn read(&self, after: Seq, bound: Seq) -> Result<Page, TransportError> {
        self.inner.read(after, bound).await
    }

    fn is_ready(&self) -> bool {
        self.inner.is_ready()
    }
}

/// An anonymous hub over a [`Flaky`] transport that refuses the first `publishes` publications
/// and `finds` lookups, answering `Retry-After: 1`; and a handle on the transport.
fn flaky_hub(publishes: usize, finds: usize) -> (TestHub, Arc<Flaky>) {
    let (sender, receiver) = mpsc::channel();
    let hub = TestHub::start_with_transport(
        &[("MERCURE_ANONYMOUS", "1")],
        move |feed, config, metrics| {
            let inner =
                LocalTransport::start(MemoryStore::new(0), feed, metrics, config.replay_memory)?;
            let flaky = Arc::new(Flaky {
                inner,
                refuse_publish: AtomicUsize::new(publishes),
                refuse_find: AtomicUsize::new(finds),
                publish_attempts: AtomicUsize::new(0),
                retry_after: Duration::from_secs(1),
            });
            sender.send(flaky.clone()).expect("the test waits for the transport");
            Ok(flaky)
        },
    );
    let flaky = receiver.recv_timeout(PATIENCE).expect("the transport was built");
    (hub, flaky)
}

#[tokio::test]
async fn a_503_is_retried_after_retry_after_with_the_same_id() {
    let (hub, flaky) = flaky_hub(1, 0);
    let topic = "https://example.com/flaky";
    let mut stream = Subscriber::builder(&hub.url)
        .topic(topic)
        .last_event_id("earliest")
        .build()
        .expect("a valid subscriber")
        .stream();
    let update = update(topic, "kept");
    let started = Instant::now();
    publish(&publisher(&hub.url), &update).await;
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After: 1 was honoured");
    assert_eq!(flaky.publish_attempts.load(Ordering::SeqCst), 2, "refused, then stored");
    assert_eq!(next_event(&mut stream).await.id, update.id());
}

#[tokio::test]
async fn a_503_that_lasts_is_unavailable_with_its_retry_after() {
    let (hub, flaky) = flaky_hub(usize::MAX, 0);
    let publisher = Publisher::builder(&hub.url)
        .token(common::publisher())
        .retry_policy(RetryPolicy::default().max_attempts(2).max_delay(Duration::from_millis(200)))
        .build()
        .expect("a valid publisher");
    let started = Instant::now();
    match publisher.publish(&update("a", "lost")).await {
        Err(PublishError::Unavailable { retry_after, message }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(1)));
            assert!(message.contains("the cluster is out of reach"), "{message}");
        }
        other => panic!("a hub that stays unavailable: {other:?}"),
    }
    // One wait, Retry-After capped by the policy.
    assert!(started.elapsed() >= Duration::from_millis(200), "{:?}", started.elapsed());
    assert_eq!(flaky.publish_attempts.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_subscription_waits_out_a_503_then_resumes() {
    let (hub, _flaky) = flaky_hub(0, 1);
    let topic = "https://example.com/resume";
    let before = update(topic, "before");
    publish(&publisher(&hub.url), &before).await;
    // Resuming needs the history, whose first lookup fails.
    let mut stream = Subscriber::builder(&hub.url)
        .topic(topic)
        .last_event_id("unknown-id")
        .retry(Duration::from_millis(10))
        .build()
        .expect("a valid subscriber")
        .stream();
    let started = Instant::now();
    // An unknown id replays the whole history.
    assert_eq!(next_event(&mut stream).await.id, before.id());
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After: 1 was honoured");
    assert_eq!(stream.reconnections(), 0, "the first connection was the 503");

    let (hub, _flaky) = flaky_hub(0, usize::MAX);
    let mut stream = Subscriber::builder(&hub.url)
        .topic(topic)
        .last_event_id("unknown-id")
        .retry(Duration::from_millis(10))
        .max_backoff(Duration::from_millis(10))
        .give_up_after(2)
        .build()
        .expect("a valid subscriber")
        .stream();
    match final_error(&mut stream).await {
        SubscribeError::Unavailable { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(1)))
        }
        other => panic!("a hub that stays unavailable: {other:?}"),
    }
}

#[tokio::test]
async fn refused_subscriptions_end_the_stream_with_the_reason() {
    let hub = TestHub::start(&[("MERCURE_MAX_SELECTOR_LENGTH", "64")]);
    let stream = |builder: quicksilver_client::SubscriberBuilder| {
        builder.retry(Duration::from_millis(10)).build().expect("a valid subscriber").stream()
    };

    let mut no_token = stream(Subscriber::builder(&hub.url).topic("a"));
    match final_error(&mut no_token).await {
        SubscribeError::Unauthorized { challenge, .. } => {
            assert_plain_bearer_challenge(challenge);
        }
        other => panic!("no token on a hub without anonymous access: {other:?}"),
    }
    let forged =
        common::token_with("another key", serde_json::json!({"mercure": {"subscribe": ["*"]}}));
    let mut bad_token = stream(Subscriber::builder(&hub.url).topic("a").token(forged));
    assert!(matches!(final_error(&mut bad_token).await, SubscribeError::Unauthorized { .. }));

    let long = format!("https://example.com/{}", "x".repeat(100));
    let mut too_long =
        stream(Subscriber::builder(&hub.url).topic(long).token(common::subscriber()));
    match final_error(&mut too_long).await {
        SubscribeError::Rejected { status, message } => {
            assert_eq!(status, 400);
            assert!(message.contains("max_selector_length"), "{message}");
        }
        other => panic!("a selector over the limit: {other:?}"),
    }
    let mut nowhere = stream(Subscriber::builder(hub.at("/nowhere")).topic("a"));
    match final_error(&mut nowhere).await {
        SubscribeError::Rejected { status, .. } => assert_eq!(status, 404),
        other => panic!("no hub at that URL: {other:?}"),
    }
}

#[tokio::test]
async fn the_hub_link_of_the_subscriptions_api_is_discovered() {
    let hub = TestHub::start(&[
        ("MERCURE_SUBSCRIPTIONS", "1"),
        ("MERCURE_TRUSTED_ISSUERS", quicksilver_client::token::DEFAULT_ISSUER),
    ]);
    let request = TokenRequest::new(Format::Rfc9068)
        .subscribe(Selector::parse("*").expect("*"))
        .audience(&hub.url);
    let token = quicksilver_client::token::mint(&request, &key()).expect("a token");
    let api = hub.at("/.well-known/mercure/subscriptions");
    let found = discovery::discover_with(common::client().get(&api).bearer_auth(&token))
        .await
        .expect("the API answers");
    let hub_link = found.hub().expect("a hub link");
    assert_eq!(hub_link.url.as_str(), hub.url, "the relative link, resolved");
    assert!(hub_link.last_event_id.is_some(), "{hub_link:?}");
    assert_eq!(hub_link.content_type.as_deref(), Some("application/json"));

    let error =
        discovery::discover(&common::client(), &api).await.expect_err("401 without a token");
    assert!(
        matches!(error, discovery::DiscoveryError::Status { status } if status == 401),
        "{error}"
    );
}
