//! The HTTP side: routes, middleware, the server's life (bind, serve, shut down), and one file per
//! endpoint. Handlers translate requests into calls on the hub's handles ([`Hub`]) and their
//! answers or errors into responses; `crate::error` maps every error to its status code.
//!
//! - `publish` and `subscribe`: the two sides of `/.well-known/mercure`;
//! - `subscriptions`: the subscriptions API; `ui`: the debugging page;
//! - `health`: `/healthz`, `/readyz`, `/metrics` and the welcome page at `/`;
//! - `authorization` (tokens of a request) and `cors` (browsers on other origins);
//! - `connection`: every accepted socket, watched for a client that stops reading;
//! - `forwarded`: the client behind proxies (`use_forwarded_headers`, `trusted_proxies`);
//! - `redirect`: plain HTTP sent to HTTPS (`http_redirect_addr`);
//! - `resource`: the hub's URL in Mercure 1.0, `public_urls`, and its metadata document;
//! - `tls`: HTTPS (and HTTP/2 by ALPN) from certificate files reloaded when they change;
//! - `acme`: HTTPS with certificates obtained and renewed automatically (`acme_hosts`).

pub(crate) mod acme;
pub(crate) mod authorization;
pub(crate) mod connection;
pub(crate) mod cors;
pub(crate) mod forwarded;
pub(crate) mod health;
pub(crate) mod publish;
pub(crate) mod redirect;
pub(crate) mod resource;
pub(crate) mod subscribe;
pub(crate) mod subscriptions;
pub(crate) mod tls;
pub(crate) mod ui;

pub use redirect::serve_redirect;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_http::error::DispatchError;
use actix_http::{ConnectionType, Protocol};
use actix_service::ServiceFactoryExt;
use actix_web::body::EitherBody;
use actix_web::dev::{AppConfig, Server, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::DefaultHeaders;
use actix_web::rt::net::TcpStream;
use actix_web::{web, App, HttpResponse, HttpServer};
use futures_util::FutureExt;

use crate::config::Config;
use crate::error::HubError;
use crate::hub::{presence, Hub};
use crate::metrics::Metrics;
use crate::telemetry;
use connection::{Connection, ConnectionLimit, OverLimit};

/// The path of the hub, fixed by the protocol.
pub const HUB_PATH: &str = "/.well-known/mercure";
/// `QUERY` (RFC 10008), the safe method with a body Mercure 1.0 subscribes with.
static QUERY: std::sync::LazyLock<actix_web::http::Method> = std::sync::LazyLock::new(|| {
    actix_web::http::Method::from_bytes(b"QUERY").expect("QUERY is a valid method token")
});
/// The methods the hub's URL accepts (`Allow` of its 405 answers).
pub const HUB_METHODS: &str = "GET, HEAD, POST, QUERY";

/// Starts the HTTP server on `listener`: HTTPS when `cert_file` and `key_file` (or `acme_hosts`) are set (HTTP/2
/// or HTTP/1.1 by ALPN), else plain HTTP (HTTP/1.1, and HTTP/2 with prior knowledge, as load
/// balancers speak it to their backends). The returned [`Server`] runs when awaited (inside an
/// actix system) and is stopped through its handle: signals are the caller's business (see
/// [`shutdown_on_signal`]), so that a shutdown can drain streams first.
///
/// The server is assembled from actix's parts rather than with `HttpServer` for one reason: every
/// accepted connection is wrapped in a `Connection`, which ends it when its client accepts no
/// data for `dispatch_timeout` (`HttpServer` has no way to wrap the socket).
pub fn serve(listener: TcpListener, hub: Hub) -> std::io::Result<Server> {
    let workers = hub.config.workers;
    let dispatch_timeout = hub.config.dispatch_timeout;
    let read_timeout = hub.config.read_timeout;
    // Slack past the drain time for in-flight publications to be answered.
    let shutdown_timeout = hub.config.drain_timeout.as_secs() + 2;
    let tls = match &hub.config.tls {
        Some(files) => {
            let certificates = tls::CertificateFiles::load(&files.cert_file, &files.key_file)
                .map_err(std::io::Error::other)?;
            let config = certificates.server_config().map_err(std::io::Error::other)?;
            actix_web::rt::spawn(certificates.watch());
            Some(tokio_rustls::TlsAcceptor::from(config))
        }
        None => match &hub.config.acme {
            Some(settings) => {
                let certificates =
                    acme::AcmeCertificates::load(settings).map_err(std::io::Error::other)?;
                let config = certificates.server_config().map_err(std::io::Error::other)?;
                actix_web::rt::spawn(certificates.run());
                Some(tokio_rustls::TlsAcceptor::from(config))
            }
            None => None,
        },
    };
    let local_addr = listener.local_addr()?;
    let limit = ConnectionLimit::from_config(hub.config.max_connections);
    let builder = actix_server::Server::build();
    let shutting_down = builder.graceful_shutdown_signal();
    let shared = AppShared::new(hub);
    Ok(builder
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(shutdown_timeout)
        .listen("quicksilver", listener, move || {
            let http =
                Http { shared: &shared, shutting_down: &shutting_down, local_addr, read_timeout };
            // Boxed, one type for both branches. Measured with 19,000 idle connections, boxing
            // also costs less memory per connection (13.4 KiB) than a concrete service type in
            // two `listen` calls (14.5 KiB): each connection's future is then allocated at its
            // own size.
            match &tls {
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    let http = http.service(|tls: &TlsConnection| tls.get_ref().0);
                    let limit = limit.clone();
                    let accept = move |stream: TcpStream| {
                        let acceptor = acceptor.clone();
                        let permit = limit.admit();
                        async move {
                            let permit = permit.ok_or_else(too_many_connections)?;
                            let peer = stream.peer_addr().ok();
                            let connection =
                                Connection::new(stream, dispatch_timeout).with_permit(permit);
                            let handshake = acceptor.accept(connection);
                            let tls = within(read_timeout, handshake)
                                .await?
                                .map_err(DispatchError::Io)?;
                            let protocol = match tls.get_ref().1.alpn_protocol() {
                                Some(b"h2") => Protocol::Http2,
                                // An ACME server's TLS-ALPN-01 validation: the handshake was
                                // the whole exchange, no HTTP follows.
                                Some(acme::ACME_TLS_ALPN) => {
                                    return Err(DispatchError::Io(std::io::Error::other(
                                        "ACME validation connection closed after its handshake",
                                    )));
                                }
                                _ => Protocol::Http1,
                            };
                            Ok((tls, protocol, peer))
                        }
                    };
                    actix_service::boxed::factory(actix_service::fn_service(accept).and_then(http))
                }
                None => {
                    let http = http.service(|connection: &Connection| connection);
                    let limit = limit.clone();
                    let accept = move |stream: TcpStream| {
                        let permit = limit.admit();
                        async move {
                            let permit = permit.ok_or_else(too_many_connections)?;
                            let protocol = within(read_timeout, plain_protocol(&stream)).await??;
                            let peer = stream.peer_addr().ok();
                            let connection =
                                Connection::new(stream, dispatch_timeout).with_permit(permit);
                            Ok((connection, protocol, peer))
                        }
                    };
                    actix_service::boxed::factory(actix_service::fn_service(accept).and_then(http))
                }
            }
        })?
        .run())
}

/// Why an accepted connection was closed at once: over `max_connections` and past the budget
/// of connections being answered 503.
fn too_many_connections() -> DispatchError {
    DispatchError::Io(std::io::Error::other(
        "connection closed unanswered: over max_connections, and as many are being refused",
    ))
}

/// `Retry-After` of a connection over `max_connections`: 6 to 15 seconds, spread so that the
/// clients refused together do not all come back together, and after the refused connection
/// has ended (at the latest [`connection::REFUSAL_TIME`] after it was accepted, over HTTP/2).
fn connections_retry_after() -> Duration {
    Duration::from_secs(rand::random_range(6..=15))
}

/// A client connection under TLS.
type TlsConnection = tokio_rustls::server::TlsStream<Connection>;

/// The protocol of a plain connection: HTTP/2 when it opens with the HTTP/2 preface (prior
/// knowledge, RFC 9113 §3.3), else HTTP/1.1.
async fn plain_protocol(stream: &TcpStream) -> Result<Protocol, DispatchError> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";
    let mut seen = [0; PREFACE.len()];
    loop {
        let read = stream.peek(&mut seen).await.map_err(DispatchError::Io)?;
        // Decided as soon as the bytes differ, or the whole line is in (or the client closed:
        // HTTP/1.1's parser reports that).
        if read == 0 || read == PREFACE.len() || seen[..read] != PREFACE[..read] {
            let http2 = read == PREFACE.len() && seen == *PREFACE;
            return Ok(if http2 { Protocol::Http2 } else { Protocol::Http1 });
        }
        // Part of the preface: wait for more without spinning on the same bytes.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `future`, failed as a slow request after `limit` (`read_timeout`) unless that is `None`.
async fn within<T>(
    limit: Option<Duration>,
    future: impl std::future::Future<Output = T>,
) -> Result<T, DispatchError> {
    match limit {
        Some(limit) => {
            tokio::time::timeout(limit, future).await.map_err(|_| DispatchError::SlowRequestTimeout)
        }
        None => Ok(future.await),
    }
}

/// What the HTTP service of one worker is built from.
struct Http<'a> {
    shared: &'a AppShared,
    shutting_down: &'a actix_server::GracefulShutdownSignal,
    local_addr: std::net::SocketAddr,
    /// `read_timeout`: for a request's head.
    read_timeout: Option<Duration>,
}

impl Http<'_> {
    /// The HTTP/1.1 and HTTP/2 service over connections of type `T`, each over a
    /// [`Connection`]: its flag for "ended for not reading", and whether it came over
    /// `max_connections`, go into the connection's data for the handlers and the middleware.
    fn service<T>(
        self,
        connection: fn(&T) -> &Connection,
    ) -> impl actix_service::ServiceFactory<
        (T, Protocol, Option<std::net::SocketAddr>),
        Config = (),
        Response = (),
        Error = DispatchError,
        InitError = (),
    >
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
    {
        let shutting_down = self.shutting_down.clone();
        actix_http::HttpService::build()
            // The defaults of actix-web's `HttpServer`, but for the request head's time.
            .keep_alive(Duration::from_secs(5))
            .client_request_timeout(self.read_timeout.unwrap_or(Duration::ZERO))
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
            .local_addr(self.local_addr)
            .on_connect_ext(move |io: &T, data| {
                let connection = connection(io);
                data.insert(connection.cut_off());
                if let Some(over_limit) = connection.over_limit() {
                    data.insert(over_limit);
                }
            })
            .finish(actix_service::map_config(app(self.shared), |()| AppConfig::default()))
    }
}

/// What every worker's application shares, and the hub's middleware (see [`AppShared::layer`]).
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

    /// The hub's middleware around `service`, for one request: refuses headers over
    /// `max_header_size` and misdirected requests (`public_urls`), then counts the response in
    /// the metrics, adds the Mercure 1.0 metadata to `WWW-Authenticate` challenges, logs the
    /// request at debug level and adds the CORS headers.
    fn layer<S, B>(
        &self,
        req: ServiceRequest,
        service: &S,
    ) -> impl std::future::Future<
        Output = Result<ServiceResponse<EitherBody<B, actix_web::body::BoxBody>>, actix_web::Error>,
    >
    where
        S: actix_web::dev::Service<
            ServiceRequest,
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    {
        let origins = self.cors_origins.clone();
        let metrics = self.metrics.clone();
        let hub = self.hub.clone();
        let max_header_size = hub.config.max_header_size;
        let request = RequestLog::start(&req);
        let size: usize =
            req.headers().iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
        let over_limit = req.conn_data::<OverLimit>().copied();
        let refusal = if let Some(OverLimit { max }) = over_limit {
            Some(HubError::Unavailable(
                format!("the hub holds as many connections as it may ({max}, max_connections)"),
                connections_retry_after(),
            ))
        } else if size > max_header_size {
            Some(HubError::HeadersTooLarge { size, limit: max_header_size })
        } else {
            misdirected(req.request(), &hub.config)
        };
        let answer = if let Some(error) = refusal {
            let mut response = req.error_response(error);
            if over_limit.is_some() {
                // Frees the connection (HTTP/1.1) for a client within the limit.
                response.response_mut().head_mut().set_connection_type(ConnectionType::Close);
            }
            let response = response.map_into_right_body();
            futures_util::future::Either::Left(std::future::ready(Ok(response)))
        } else {
            let answer = service.call(req);
            futures_util::future::Either::Right(
                answer.map(|result| result.map(|response| response.map_into_left_body())),
            )
        };
        answer.map(move |result| {
            result.map(|mut response| {
                metrics.http_response(response.status().as_u16());
                if response.headers().contains_key(header::WWW_AUTHENTICATE) {
                    let req = response.request().clone();
                    resource::add_challenge_metadata(&req, &hub.config, response.headers_mut());
                }
                if let Some(request) = request {
                    request.finish(response.status());
                }
                cors::add_headers(&origins, response)
            })
        })
    }
}

/// The headers every answer of the hub carries. The UI loads nothing from elsewhere, so one
/// strict policy serves every page.
fn security_headers() -> DefaultHeaders {
    let csp = "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";
    DefaultHeaders::new()
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        // The auditor this header once enabled is gone, and its blocking mode could itself be
        // abused to suppress scripts: `0` is the current advice.
        .add((header::X_XSS_PROTECTION, "0"))
        .add((header::CONTENT_SECURITY_POLICY, csp))
}

/// The hub's HTTP application as the binary serves it: the hub's routes, the health checks,
/// metrics and welcome page, under the hub's middleware. Built once per worker.
fn app(
    shared: &AppShared,
) -> App<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let config = &shared.hub.config;
    // With `metrics_addr`, metrics move to their own listener (see `serve_metrics`).
    let metrics_here = config.metrics_addr.is_none();
    let compress = config.compress;
    let layer = shared.clone();
    App::new()
        .app_data(shared.hub.clone())
        .app_data(shared.metrics.clone())
        .wrap_fn(move |req, service| layer.layer(req, service))
        .wrap(security_headers())
        .configure(|cfg| hub_routes(cfg, shared, false))
        .configure(|cfg| {
            if metrics_here {
                cfg.route("/metrics", web::get().to(health::render_metrics));
            }
        })
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .service(
            web::resource("/").wrap(compression(compress)).route(web::get().to(health::welcome)),
        )
        .default_service(web::to(not_found))
}

/// The hub's own routes: `/.well-known/mercure` and what is below it (the subscriptions API,
/// the UI), and the Mercure 1.0 metadata document. With `layered` (an application embedding
/// the hub), they carry the hub's data and middleware themselves; the binary's [`app`] puts
/// those around everything instead.
fn hub_routes(cfg: &mut web::ServiceConfig, shared: &AppShared, layered: bool) {
    let config = &shared.hub.config;
    let compress = config.compress;
    let (subscriptions, ui) = (config.subscriptions, config.ui);
    // Paths inside the scope are relative to the hub's URL.
    let relative = |path: &str| path.strip_prefix(HUB_PATH).unwrap_or(path).to_owned();
    let scope = web::scope(HUB_PATH)
        .configure(|cfg| {
            if ui {
                ui::configure(cfg, &relative(ui::UI_PATH), compress);
            }
            if subscriptions {
                let api = |path: String| {
                    web::resource(path)
                        .wrap(compression(compress))
                        .route(web::get().to(subscriptions::api))
                        .default_service(web::to(subscriptions::method_not_allowed))
                };
                let collection = relative(presence::SUBSCRIPTIONS_PATH);
                let one = format!("{collection}/{{rest:.*}}");
                cfg.service(api(collection)).service(api(one));
            }
        })
        .service(
            web::resource("")
                .route(web::get().to(subscribe::subscribe))
                .route(web::head().to(subscribe::subscribe))
                .route(web::post().to(publish::publish))
                .route(web::method(QUERY.clone()).to(subscribe::subscribe_query))
                .route(web::method(actix_web::http::Method::OPTIONS).to(cors::preflight))
                .default_service(web::to(method_not_allowed)),
        );
    let metadata = resource::serves_metadata(config).then(|| {
        web::resource(resource::METADATA_PATH)
            .route(web::get().to(resource::metadata))
            .route(web::head().to(resource::metadata))
    });
    if layered {
        let layer = shared.clone();
        cfg.service(
            scope
                .app_data(shared.hub.clone())
                .app_data(shared.metrics.clone())
                .wrap_fn(move |req, service| layer.layer(req, service))
                .wrap(security_headers()),
        );
        if let Some(metadata) = metadata {
            let layer = shared.clone();
            cfg.service(
                metadata
                    .app_data(shared.hub.clone())
                    .wrap_fn(move |req, service| layer.layer(req, service))
                    .wrap(security_headers()),
            );
        }
    } else {
        cfg.service(scope);
        if let Some(metadata) = metadata {
            cfg.service(metadata);
        }
    }
}

impl Hub {
    /// The hub's routes for an actix-web application that embeds it: `/.well-known/mercure`
    /// (publish, subscribe, and the subscriptions API and UI when enabled) and the Mercure 1.0
    /// metadata document, each with the hub's middleware (CORS, header limits, metrics,
    /// security headers) and nothing else of the application's. Call it in the server's
    /// application factory, once per worker:
    ///
    /// ```no_run
    /// use actix_web::{web, App, HttpServer};
    /// use quicksilver::{config::Config, Hub};
    ///
    /// # async fn run() -> anyhow::Result<()> {
    /// let config = Config::builder().set("jwt_key", "!ChangeThisMercureHubJWTSecretKey!").build()?;
    /// let hub = Hub::start(config)?;
    /// let server = HttpServer::new({
    ///     let hub = hub.clone();
    ///     move || {
    ///         App::new()
    ///             .configure(hub.configure())
    ///             .route("/", web::get().to(|| async { "the application's own page" }))
    ///     }
    /// })
    /// .disable_signals()
    /// .bind("127.0.0.1:8080")?
    /// .run();
    /// // On SIGTERM or Ctrl-C: drain the streams, then stop the server.
    /// actix_web::rt::spawn(quicksilver::shutdown_on_signal(hub, server.handle()));
    /// server.await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// The hub's scope answers every path under `/.well-known/mercure`: mount it before any
    /// application scope that contains it (a `web::scope("/.well-known")` registered first
    /// would take the hub's requests), and put no route of the application under it. The
    /// application's `App::wrap` middleware wraps the hub's routes too: keep middleware that
    /// buffers responses (`Compress`, which would hold back an event stream) or refuses
    /// requests (its own authentication, which would refuse subscribers) on the application's
    /// own scopes and resources instead.
    ///
    /// The application's server decides what the binary's settings would otherwise decide:
    /// `addr`, `workers`, TLS and ACME, `read_timeout`, and `dispatch_timeout` (which needs the
    /// binary's own connection handling); the health checks and metrics are the application's
    /// to serve, from [`Hub::is_ready`] and [`Metrics::render`].
    pub fn configure(&self) -> impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static {
        let shared = AppShared::new(self.clone());
        move |cfg: &mut web::ServiceConfig| hub_routes(cfg, &shared, true)
    }
}

/// With `public_urls`, the refusal (421) of a request to the hub's URLs (`/.well-known/...`)
/// for another host. Health checks and metrics answer whatever the host: probes use addresses.
fn misdirected(req: &actix_web::HttpRequest, config: &Config) -> Option<HubError> {
    if config.public_urls.is_empty() || !req.path().starts_with("/.well-known/") {
        return None;
    }
    resource::hub_url(req, config).err()
}

/// Compression (gzip or brotli, as the client accepts) for the responses that gain from it,
/// with `compress` on: the UI, the subscriptions API and the welcome page. Never on the hub's
/// URL: an encoder holds data back until it has enough to compress, which an event stream must
/// never wait for, and its other answers are a few bytes long.
fn compression(
    compress: bool,
) -> actix_web::middleware::Condition<actix_web::middleware::Compress> {
    actix_web::middleware::Condition::new(compress, actix_web::middleware::Compress::default())
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

/// Waits for SIGTERM or SIGINT, then shuts down gracefully: turns unready (`/readyz` 503), stops
/// accepting connections, ends open streams spread over `drain_timeout` (clients reconnect,
/// through a load balancer to another node), lets in-flight publications finish, and returns so
/// the process exits 0.
/// Every acknowledged publication was already durably stored before its answer.
///
/// An application embedding the hub uses it as the binary does, with its own server's handle
/// (and `HttpServer::disable_signals`, so that actix-web does not stop the server first).
pub async fn shutdown_on_signal(hub: Hub, server: actix_web::dev::ServerHandle) {
    wait_for_signal().await;
    tracing::info!(drain = ?hub.config.drain_timeout, "shutdown signal received: draining");
    // `stop(true)` stops accepting at once and waits for open connections (the streams, which
    // the hub's shutdown ends within `drain_timeout`) up to the server's shutdown timeout.
    tokio::join!(hub.shutdown(), server.stop(true));
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
            .route("/metrics", web::get().to(health::render_metrics))
            .route("/healthz", web::get().to(health::healthz))
            .default_service(web::to(not_found))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run())
}

/// One request, logged at debug level when it ends, with tokens in the query string redacted.
struct RequestLog {
    client: Option<std::net::IpAddr>,
    method: actix_web::http::Method,
    path: String,
    query: String,
    started: std::time::Instant,
}

impl RequestLog {
    /// `None` (and no allocation) unless debug logging is on.
    fn start(req: &actix_web::dev::ServiceRequest) -> Option<Self> {
        tracing::enabled!(tracing::Level::DEBUG).then(|| Self {
            client: forwarded::client_address(req.request()),
            method: req.method().clone(),
            path: req.path().to_owned(),
            query: telemetry::redact_query(req.query_string()).into_owned(),
            started: std::time::Instant::now(),
        })
    }

    fn finish(self, status: actix_web::http::StatusCode) {
        tracing::debug!(
            client = self.client.map(tracing::field::display),
            method = %self.method,
            path = %self.path,
            query = %self.query,
            status = status.as_u16(),
            elapsed = ?self.started.elapsed(),
            "request"
        );
    }
}
