//! The hub embedded in a host actix-web application: the host's routes and the hub's on one
//! port, publishing in-process, the hub's state read by the host, and the host's shutdown.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use common::{client, publisher, subscriber, Events};
use quicksilver::config::Config;
use quicksilver::hub::PublishError;
use quicksilver::{Hub, InvalidUpdate, Update};

const TOPIC: &str = "https://example.com/books/1";

/// A host application on an ephemeral port, with its own routes and the hub's, in an actix
/// system on a thread of its own. The hub stays with the test, which drives it directly.
struct Host {
    base: String,
    hub: Hub,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Host {
    fn start(settings: &[(&str, &str)]) -> Self {
        let mut builder = Config::builder().set("jwt_key", common::KEY).set("transport", "memory");
        for (key, value) in settings {
            builder = builder.set(key, value);
        }
        let config = builder.build().expect("valid settings");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let (started, is_started) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                // Started inside the system, as an application would in its `main`.
                let hub = Hub::start(config).expect("hub");
                let server = HttpServer::new({
                    let hub = hub.clone();
                    move || {
                        App::new()
                            .configure(hub.configure())
                            .app_data(web::Data::new(hub.clone()))
                            .route("/hello", web::get().to(|| async { "hello from the host" }))
                            .route("/notify", web::post().to(notify))
                            .default_service(web::to(|| async {
                                HttpResponse::NotFound().body("the host's own 404")
                            }))
                    }
                })
                .workers(1)
                .disable_signals()
                .listen(listener)
                .expect("listen")
                .run();
                started.send((hub, server.handle())).expect("test waits");
                server.await.expect("server ran");
            });
        });
        let (hub, handle) = is_started.recv_timeout(Duration::from_secs(30)).expect("started");
        Self { base: format!("http://{addr}"), hub, handle, thread: Some(thread) }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        // Not graceful: open streams would keep a graceful stop waiting.
        block_on_thread(handle.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs a future to completion on a throwaway runtime (inside `Drop`, outside any runtime).
fn block_on_thread(future: impl std::future::Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt")
            .block_on(future)
    })
    .join();
}

/// The host's own route that publishes in-process: the body becomes the data of an update on
/// [`TOPIC`]; answers the id.
async fn notify(hub: web::Data<Hub>, body: String) -> HttpResponse {
    let update = match Update::builder(TOPIC).data(body).build() {
        Ok(update) => update,
        Err(error) => return HttpResponse::BadRequest().body(error.to_string()),
    };
    match hub.publish(&update).await {
        Ok(id) => HttpResponse::Ok().body(id),
        Err(error) => HttpResponse::ServiceUnavailable().body(error.to_string()),
    }
}

/// The hub's count of 200 answers, from its Prometheus text.
fn responses_200(hub: &Hub) -> u64 {
    let text = hub.metrics().render();
    text.lines()
        .find(|line| line.starts_with("mercure_http_responses_total{") && line.contains("\"200\""))
        .and_then(|line| line.rsplit(' ').next())
        .map_or(0, |count| count.parse().expect("a count"))
}

fn hub_url(host: &Host) -> String {
    host.url(quicksilver::HUB_PATH)
}

#[tokio::test]
async fn the_host_serves_its_own_routes_and_the_hubs_on_one_port() {
    let host = Host::start(&[("cors_origins", "https://app.example.com")]);
    let hello = client().get(host.url("/hello")).send().await.expect("host route");
    assert_eq!(hello.status(), 200);
    assert!(
        hello.headers().get("content-security-policy").is_none(),
        "the hub's headers stay on its routes"
    );
    assert_eq!(hello.text().await.expect("body"), "hello from the host");

    let mut events =
        Events::open_url(&hub_url(&host), &format!("topic={TOPIC}"), Some(&subscriber()), &[])
            .await;
    assert_eq!(
        events.response_headers.get("x-content-type-options").map(|v| v.as_bytes()),
        Some(&b"nosniff"[..]),
        "the hub's security headers on its routes"
    );

    // In-process, through the host's route.
    let answer =
        client().post(host.url("/notify")).body("from the host").send().await.expect("notify");
    assert_eq!(answer.status(), 200);
    let id = answer.text().await.expect("id");
    assert_eq!(events.next().await.id_and_data(), (id.as_str(), "from the host"));

    // Over HTTP, as any publisher.
    let (status, id) = common::publish_to(
        &hub_url(&host),
        &publisher(),
        &[("topic", TOPIC), ("data", "over HTTP")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(events.next().await.id_and_data(), (id.as_str(), "over HTTP"));

    // The hub's middleware answers CORS for the hub's URL.
    let preflight = client()
        .request(reqwest::Method::OPTIONS, hub_url(&host))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("preflight");
    let allowed: Vec<_> =
        preflight.headers().get_all("access-control-allow-origin").iter().collect();
    assert_eq!(allowed, ["https://app.example.com"], "the hub's middleware ran once");
    assert_eq!(preflight.headers().get_all("x-frame-options").iter().count(), 1);

    // Each answer of the hub is counted once; the host's own answers are not the hub's.
    let before = responses_200(&host.hub);
    let hello = client().get(host.url("/hello")).send().await.expect("host route");
    assert_eq!(hello.status(), 200);
    assert_eq!(responses_200(&host.hub), before, "the host's routes are not counted");
    let (status, _) = common::publish_to(&hub_url(&host), &publisher(), &[("topic", TOPIC)]).await;
    assert_eq!(status, 200);
    assert_eq!(responses_200(&host.hub), before + 1, "one publish, counted once");

    // A path the hub does not serve reaches the host's default service, even under the hub's URL.
    for path in ["/nowhere", "/.well-known/mercure/nowhere"] {
        let missing = client().get(host.url(path)).send().await.expect("404");
        assert_eq!(missing.status(), 404, "{path}");
        assert_eq!(missing.text().await.expect("body"), "the host's own 404", "{path}");
    }
    // Off by default: the subscriptions API and the UI are not mounted.
    let api =
        client().get(host.url("/.well-known/mercure/subscriptions")).send().await.expect("api");
    assert_eq!(api.status(), 404);
}

#[tokio::test]
async fn the_subscriptions_api_and_ui_mount_with_the_hub_when_enabled() {
    let host = Host::start(&[("subscriptions", "true"), ("ui", "true")]);
    let api = client()
        .get(host.url("/.well-known/mercure/subscriptions"))
        .bearer_auth(subscriber())
        .send()
        .await
        .expect("api");
    assert_eq!(api.status(), 200);
    let ui = client().get(host.url("/.well-known/mercure/ui/")).send().await.expect("ui");
    assert_eq!(ui.status(), 200);
    assert!(ui.text().await.expect("page").contains("<html"), "the UI's page");
}

#[tokio::test]
async fn in_process_publish_follows_the_publisher_rules() {
    let host = Host::start(&[("max_topics_per_update", "2")]);
    let reserved = Update::builder("/.well-known/mercure/subscriptions/x").build();
    assert!(matches!(reserved, Err(InvalidUpdate::ReservedTopic(_))), "{reserved:?}");
    let event_type = Update::builder(TOPIC).event_type("mercure").build();
    assert!(event_type.is_err(), "{event_type:?}");

    let three = Update::builder(TOPIC).topic("b").topic("c").build().expect("valid fields");
    let refused = host.hub.publish(&three).await;
    assert_eq!(refused, Err(PublishError::TooManyTopics { limit: 2 }));

    let mut events =
        Events::open_url(&hub_url(&host), &format!("topic={TOPIC}"), Some(&subscriber()), &[])
            .await;
    let update = Update::builder(TOPIC)
        .id("book-1-v2")
        .event_type("book")
        .retry(Duration::from_millis(1500))
        .data("line 1\nline 2")
        .build()
        .expect("valid");
    let id = host.hub.publish(&update).await.expect("stored");
    assert_eq!(id, "book-1-v2");
    let event = events.next().await;
    assert_eq!(event.id_and_data(), ("book-1-v2", "line 1\nline 2"));
    assert_eq!(event.event_type.as_deref(), Some("book"));
    assert_eq!(event.retry.as_deref(), Some("1500"));
}

#[tokio::test]
async fn the_host_reads_the_hubs_subscriptions_and_readiness() {
    let host = Host::start(&[]);
    assert!(host.hub.is_ready());
    assert_eq!(host.hub.subscriptions().await, Some(Vec::new()));
    let _events = Events::open_url(
        &hub_url(&host),
        "topic=https://example.com/books/{id}&topic=*",
        Some(&subscriber()),
        &[],
    )
    .await;
    let subscriptions = host.hub.subscriptions().await.expect("running");
    let mut selectors: Vec<&str> = subscriptions.iter().map(|s| s.selector.as_str()).collect();
    selectors.sort_unstable();
    assert_eq!(selectors, ["*", "https://example.com/books/{id}"]);
    assert!(subscriptions.iter().all(|s| s.here && s.subscriber.starts_with("urn:uuid:")));
    assert_eq!(subscriptions[0].subscriber, subscriptions[1].subscriber, "one connection");
}

#[tokio::test]
async fn shutdown_turns_the_hub_unready_and_ends_its_streams() {
    let host = Host::start(&[("drain_timeout", "1s")]);
    let mut events =
        Events::open_url(&hub_url(&host), &format!("topic={TOPIC}"), Some(&subscriber()), &[])
            .await;
    let shutdown = tokio::spawn({
        let hub = host.hub.clone();
        async move { hub.shutdown().await }
    });
    // Ended by the drain (within drain_timeout), not by the test's limit.
    assert!(events.closed_within(Duration::from_secs(30)).await, "the stream ends");
    tokio::time::timeout(Duration::from_secs(30), shutdown)
        .await
        .expect("shutdown resolves once the streams are gone")
        .expect("no panic");
    assert!(!host.hub.is_ready());
    assert_eq!(host.hub.subscriptions().await.map(|s| s.len()), Some(0));
    // The host's own routes still answer until the host stops its server.
    let hello = client().get(host.url("/hello")).send().await.expect("host route");
    assert_eq!(hello.status(), 200);
}

#[test]
fn the_builder_uses_the_binarys_names_and_checks() {
    let config = Config::builder()
        .set("jwt_key", "k")
        .set("transport", "memory")
        .set("cors_origins", "https://a.example https://b.example")
        .set("drain_timeout", "3s")
        .build()
        .expect("valid");
    assert_eq!(config.cors_origins, ["https://a.example", "https://b.example"]);
    assert_eq!(config.drain_timeout, Duration::from_secs(3));
    let bad = Config::builder().set("jwt_key", "k").set("history_size", "many").build();
    assert!(bad.expect_err("not a number").to_string().contains("history_size"));
    let unknown = Config::builder().set("jwt_kee", "k").build().expect_err("unknown").to_string();
    assert!(unknown.contains("jwt_kee") && unknown.contains("ConfigBuilder::set"), "{unknown}");
}
