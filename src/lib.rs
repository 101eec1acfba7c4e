//! Quicksilver: a Mercure hub.
//!
//! Publishers `POST` updates to `/.well-known/mercure`; subscribers keep a `GET` event stream open
//! on the same URL and receive the updates whose topics match their selectors and that their token
//! allows. The pieces, each in the file named after its protocol concept:
//!
//! - [`config`]: settings, layered defaults < TOML file < `MERCURE_*` environment;
//! - [`update`], [`topic_selector`], [`form`]: what is published and how topics are matched;
//! - [`jwt`], [`authorization`]: tokens and what they allow;
//! - [`publish`], [`subscribe`]: the two HTTP handlers;
//! - [`router`]: the topic-router actor, matching updates to subscribers;
//! - [`subscriber`]: the per-connection actor that writes a subscriber's event stream;
//! - [`transport`]: where updates are numbered and stored (`embedded` redb file or `memory`).
//!
//! The binary (`main.rs`) loads the configuration, binds, and calls [`serve`]; tests call the same
//! function on `127.0.0.1:0`.

pub mod authorization;
pub mod config;
pub mod connection;
pub mod cors;
pub mod error;
pub mod form;
pub mod jwt;
pub mod metrics;
pub mod publish;
pub mod router;
pub mod subscribe;
pub mod subscriber;
pub mod subscriptions;
pub mod telemetry;
pub mod topic_selector;
pub mod transport;
pub mod ui;
pub mod update;

use std::net::TcpListener;
use std::sync::Arc;

use std::time::Duration;

use actix_service::ServiceFactoryExt;
use actix_web::dev::{AppConfig, Server};
use actix_web::http::header;
use actix_web::middleware::DefaultHeaders;
use actix_web::rt::net::TcpStream;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use futures_util::FutureExt;

use crate::config::{Config, TransportKind};
use crate::connection::Connection;
use crate::error::HubError;
use crate::metrics::Metrics;
use crate::router::Router;
use crate::transport::embedded::EmbeddedStore;
use crate::transport::local::LocalTransport;
use crate::transport::memory::MemoryStore;
use crate::transport::{Store, Transport};

/// The path of the hub, fixed by the protocol.
pub const HUB_PATH: &str = "/.well-known/mercure";
/// The methods the hub's URL accepts (`Allow` of its 405 answers).
pub const HUB_METHODS: &str = "GET, HEAD, POST";

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct Hub {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Where updates are stored and numbered.
    pub transport: Arc<dyn Transport>,
    /// The topic router.
    pub router: Router,
    /// Prometheus metrics.
    pub metrics: Metrics,
}

impl Hub {
    /// Opens the configured store and starts the router and the transport.
    pub fn start(config: Config) -> anyhow::Result<Self> {
        match config.transport {
            TransportKind::Embedded => {
                let store = EmbeddedStore::open(&config.history_path, config.history_size)?;
                Self::with_store(config, store)
            }
            TransportKind::Memory => {
                let store = MemoryStore::new(config.history_size);
                Self::with_store(config, store)
            }
        }
    }

    fn with_store<S: Store + std::fmt::Debug>(config: Config, store: S) -> anyhow::Result<Self> {
        // Once here rather than on every subscription: the cache is process-wide.
        topic_selector::set_cache_size(config.selector_cache_size);
        // The router must know the newest stored sequence before anything is published, so that
        // a replay after a restart is bounded by what was stored before it.
        let metrics = Metrics::new();
        let last = store.last()?;
        let (router, dispatcher) = router::start(last.map_or(0, |d| d.seq), metrics.clone())?;
        let transport = Arc::new(LocalTransport::start(
            store,
            dispatcher,
            metrics.clone(),
            config.replay_memory,
        )?);
        Ok(Self { config: Arc::new(config), transport, router, metrics })
    }
}

/// Starts the HTTP server on `listener`. The returned [`Server`] runs when awaited (inside an
/// actix system) and is stopped through its handle: signals are the caller's business (see
/// [`shutdown_on_signal`]), so that a shutdown can drain streams first.
///
/// The server is assembled from actix's parts rather than with `HttpServer` for one reason: every
/// accepted connection is wrapped in a [`Connection`], which ends it when its client accepts no
/// data for `dispatch_timeout` (`HttpServer` has no way to wrap the socket).
pub fn serve(listener: TcpListener, hub: Hub) -> std::io::Result<Server> {
    let workers = hub.config.workers;
    let dispatch_timeout = hub.config.dispatch_timeout;
    // Slack past the drain time for in-flight publications to be answered.
    let shutdown_timeout = hub.config.drain_timeout.as_secs() + 2;
    let local_addr = listener.local_addr()?;
    let builder = actix_server::Server::build();
    let shutting_down = builder.graceful_shutdown_signal();
    let shared = AppShared::new(hub);
    Ok(builder
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(shutdown_timeout)
        .listen("quicksilver", listener, move || {
            let shutting_down = shutting_down.clone();
            let http = actix_http::HttpService::build()
                // The defaults of actix-web's `HttpServer`.
                .keep_alive(Duration::from_secs(5))
                .client_request_timeout(Duration::from_secs(5))
                .client_disconnect_timeout(Duration::from_secs(1))
                // A client that closes its side has gone: end its stream at once (so its
                // departure is announced and its resources freed) instead of waiting for the
                // next failed write.
                .h1_allow_half_closed(false)
                // Idle keep-alive connections close when a shutdown starts.
                .graceful_shutdown_signal(move || {
                    let signal = shutting_down.clone();
                    async move { signal.notified().await }
                })
                .local_addr(local_addr)
                .on_connect_ext(|connection: &Connection, data| {
                    data.insert(connection.cut_off());
                })
                .h1(actix_service::map_config(app(&shared), |()| AppConfig::default()));
            actix_service::fn_service(move |stream: TcpStream| {
                let peer = stream.peer_addr().ok();
                std::future::ready(Ok::<_, actix_http::error::DispatchError>((
                    Connection::new(stream, dispatch_timeout),
                    peer,
                )))
            })
            .and_then(http)
        })?
        .run())
}

/// What every worker's application shares.
#[derive(Clone)]
struct AppShared {
    hub: web::Data<Hub>,
    metrics: web::Data<Metrics>,
    cors_origins: Arc<Vec<String>>,
}

impl AppShared {
    fn new(hub: Hub) -> Self {
        Self {
            metrics: web::Data::new(hub.metrics.clone()),
            cors_origins: Arc::new(hub.config.cors_origins.clone()),
            hub: web::Data::new(hub),
        }
    }
}

/// The hub's HTTP application: routes, middleware and shared state, built once per worker.
fn app(
    shared: &AppShared,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let config = &shared.hub.config;
    // The UI loads nothing from elsewhere, so one strict policy serves every page.
    let csp = "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";
    let subscriptions = config.subscriptions;
    let ui = config.ui;
    // With `metrics_addr`, metrics move to their own listener (see `serve_metrics`).
    let metrics_here = config.metrics_addr.is_none();
    let cors_origins = shared.cors_origins.clone();
    let metrics = shared.metrics.clone();
    App::new()
        .app_data(shared.hub.clone())
        .app_data(shared.metrics.clone())
        .wrap_fn(move |req, service| {
            let origins = cors_origins.clone();
            let metrics = metrics.clone();
            let request = RequestLog::start(&req);
            actix_web::dev::Service::call(service, req).map(move |result| {
                result.map(|response| {
                    metrics.http_response(response.status().as_u16());
                    if let Some(request) = request {
                        request.finish(response.status());
                    }
                    cors::add_headers(&origins, response)
                })
            })
        })
        .wrap(
            DefaultHeaders::new()
                .add((header::X_FRAME_OPTIONS, "DENY"))
                .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                // The auditor this header once enabled is gone, and its blocking mode could
                // itself be abused to suppress scripts: `0` is the current advice.
                .add((header::X_XSS_PROTECTION, "0"))
                .add((header::CONTENT_SECURITY_POLICY, csp)),
        )
        .configure(|cfg| {
            if ui {
                ui::configure(cfg);
            }
            if subscriptions {
                let api = |path: &'static str| {
                    web::resource(path)
                        .route(web::get().to(subscriptions::api))
                        .default_service(web::to(subscriptions::method_not_allowed))
                };
                cfg.service(api(subscriptions::SUBSCRIPTIONS_PATH))
                    .service(api("/.well-known/mercure/subscriptions/{rest:.*}"));
            }
        })
        .service(
            web::resource(HUB_PATH)
                .route(web::get().to(subscribe::subscribe))
                .route(web::head().to(subscribe::subscribe))
                .route(web::post().to(publish::publish))
                .route(web::method(actix_web::http::Method::OPTIONS).to(cors::preflight))
                .default_service(web::to(method_not_allowed)),
        )
        .configure(|cfg| {
            if metrics_here {
                cfg.route("/metrics", web::get().to(render_metrics));
            }
        })
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/", web::get().to(welcome))
        .default_service(web::to(not_found))
}

/// Binds a listening socket with a backlog fit for reconnect storms. `std::net::TcpListener::bind`
/// uses 128: thousands of clients reconnecting at once overflow it, and each dropped SYN costs its
/// client a one-second retransmission.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    const BACKLOG: i32 = 4096;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Waits for SIGTERM or SIGINT, then shuts down gracefully: stops accepting connections, ends
/// open streams spread over `drain_timeout` (clients reconnect, through a load balancer to
/// another node), lets in-flight publications finish, and returns so the process exits 0.
/// Every acknowledged publication was already durably stored before its answer.
pub async fn shutdown_on_signal(hub: Hub, server: actix_web::dev::ServerHandle) {
    wait_for_signal().await;
    let drain = hub.config.drain_timeout;
    tracing::info!(?drain, "shutdown signal received: draining");
    let _ = hub.router.drain(drain);
    // `stop(true)` stops accepting at once and waits for open connections (the streams, which
    // the router ends within `drain`) up to the shutdown timeout.
    server.stop(true).await;
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut terminate), Ok(mut interrupt)) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        }
        _ => {
            tracing::warn!("cannot listen for shutdown signals; falling back to Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn method_not_allowed() -> Result<HttpResponse, HubError> {
    Err(HubError::MethodNotAllowed(HUB_METHODS))
}

async fn not_found() -> Result<HttpResponse, HubError> {
    Err(HubError::NotFound)
}

/// Serves the Prometheus metrics on their own listener (`metrics_addr`), with `/healthz`, so that
/// they need not be exposed where the hub is.
pub fn serve_metrics(listener: TcpListener, metrics: Metrics) -> std::io::Result<Server> {
    let data = web::Data::new(metrics);
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/metrics", web::get().to(render_metrics))
            .route("/healthz", web::get().to(healthz))
            .default_service(web::to(not_found))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run())
}

/// `/metrics`, on the hub's listener or on `metrics_addr`'s.
async fn render_metrics(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok().content_type(Metrics::CONTENT_TYPE).body(metrics.render())
}

/// One request, logged at debug level when it ends, with tokens in the query string redacted.
struct RequestLog {
    method: actix_web::http::Method,
    path: String,
    query: String,
    started: std::time::Instant,
}

impl RequestLog {
    /// `None` (and no allocation) unless debug logging is on.
    fn start(req: &actix_web::dev::ServiceRequest) -> Option<Self> {
        tracing::enabled!(tracing::Level::DEBUG).then(|| Self {
            method: req.method().clone(),
            path: req.path().to_owned(),
            query: telemetry::redact_query(req.query_string()).into_owned(),
            started: std::time::Instant::now(),
        })
    }

    fn finish(self, status: actix_web::http::StatusCode) {
        tracing::debug!(
            method = %self.method,
            path = %self.path,
            query = %self.query,
            status = status.as_u16(),
            elapsed = ?self.started.elapsed(),
            "request"
        );
    }
}

/// Liveness: the process serves HTTP.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("ok\n")
}

/// Readiness: the transport accepts publications.
async fn readyz(hub: web::Data<Hub>) -> HttpResponse {
    if hub.transport.is_ready() {
        HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("ready\n")
    } else {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain; charset=utf-8")
            .body("not ready: the transport cannot store updates\n")
    }
}

/// A small page saying what this server is, as the reference hub serves at `/`.
async fn welcome(req: HttpRequest, hub: web::Data<Hub>) -> HttpResponse {
    let info = req.connection_info();
    let hub_url = html_escape(&format!("{}://{}{HUB_PATH}", info.scheme(), info.host()));
    let ui = if hub.config.ui {
        format!("<p>Debugging UI: <a href=\"{HUB_PATH}/ui/\">{HUB_PATH}/ui/</a>.</p>")
    } else {
        String::new()
    };
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Quicksilver \
         Mercure hub</title></head><body><h1>Quicksilver</h1><p>This is a \
         <a href=\"https://mercure.rocks\">Mercure</a> hub. Subscribe and publish at \
         <code>{hub_url}</code>.</p>{ui}</body></html>\n"
    ))
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
