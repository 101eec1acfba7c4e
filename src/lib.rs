//! Quicksilver: a Mercure hub, as a program and as a library.
//!
//! [Mercure](https://mercure.rocks) pushes updates to browsers and apps over Server-Sent Events:
//! publishers `POST` updates to `/.well-known/mercure`; subscribers keep a `GET` event stream open
//! on the same URL and receive the updates whose topics match their selectors and that their
//! token allows. The `quicksilver` program runs a hub on its own; this library runs the same hub
//! inside an [actix-web](https://actix.rs) application, next to the application's routes.
//!
//! # Embedding the hub
//!
//! Build a [`config::Config`] (the binary's setting names and checks), start a [`Hub`], and
//! mount its routes with [`Hub::configure`]:
//!
//! ```no_run
//! use actix_web::{web, App, HttpServer};
//! use quicksilver::{config::Config, Hub, Update};
//!
//! #[actix_web::main]
//! async fn main() -> anyhow::Result<()> {
//!     let config = Config::builder()
//!         .set("jwt_key", "!ChangeThisMercureHubJWTSecretKey!")
//!         .set("transport", "embedded") // history in quicksilver.redb; or "memory", or "nats"
//!         .build()?;
//!     let hub = Hub::start(config)?;
//!     let server = HttpServer::new({
//!         let hub = hub.clone();
//!         move || App::new().configure(hub.configure()).app_data(web::Data::new(hub.clone()))
//!     })
//!     .disable_signals() // the hub drains its streams first: see shutdown_on_signal
//!     .bind("127.0.0.1:8080")?
//!     .run();
//!     actix_web::rt::spawn(quicksilver::shutdown_on_signal(hub.clone(), server.handle()));
//!
//!     // Anywhere in the application: publish without HTTP; resolves once stored.
//!     let update = Update::builder("https://example.com/books/1").data("{}").build()?;
//!     let id = hub.publish(&update).await?;
//!     println!("published {id}");
//!     server.await?;
//!     Ok(())
//! }
//! ```
//!
//! [`Hub::subscriptions`] and [`Hub::is_ready`] give the hub's state to the application's own
//! endpoints; [`Hub::shutdown`] (or [`shutdown_on_signal`]) ends it as the binary does.
//! Publishers and subscribers in Rust use the `quicksilver-client` crate, re-exported as
//! [`client`].
//!
//! # Modules
//!
//! - [`config`]: every setting, from a TOML file, `MERCURE_*` variables or
//!   [`config::Config::builder`];
//! - [`hub`]: the [`Hub`] handle, in-process publishing and the hub's state;
//! - [`Update`] ([`Update::builder`]): what [`Hub::publish`] takes, from the [`client`] crate;
//! - [`http`]: the hub's HTTP server as the binary runs it ([`serve`], [`bind`],
//!   [`shutdown_on_signal`]) and the routes an application mounts;
//! - [`metrics`] (Prometheus), [`telemetry`] (logs and OpenTelemetry traces), and [`mint`], the
//!   key lookup of the `quicksilver token` command.
//!
//! The rest is private: transports (`embedded` redb file, `memory`, `nats` JetStream), the topic
//! router and subscriber actors, selectors, tokens. Each internal module documents its own part
//! (`cargo doc --document-private-items`); each imports only from those below it.

/// Declares a module of the hub's internals: crate-private, but public (and hidden from the
/// documentation) with the `unstable-internals` feature, which only the repository's own
/// integration tests enable. Nothing reached that way is covered by semantic versioning.
macro_rules! internal_modules {
    ($($(#[$meta:meta])* $name:ident;)*) => {$(
        #[cfg(feature = "unstable-internals")]
        #[doc(hidden)]
        $(#[$meta])*
        pub mod $name;
        #[cfg(not(feature = "unstable-internals"))]
        $(#[$meta])*
        pub(crate) mod $name;
    )*};
}

pub mod config;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod mint;
pub mod telemetry;

internal_modules! {
    access_token;
    error;
    form;
    jwks;
    jwt;
    subscription;
    topic_selector;
    transport;
    update;
    url_pattern;
}

pub use http::{bind, serve, serve_metrics, shutdown_on_signal, HUB_METHODS, HUB_PATH};
pub use hub::Hub;
/// The client crate, for publishers and subscribers in Rust; its [`Update`] is also what
/// [`Hub::publish`] takes.
pub use quicksilver_client as client;
pub use quicksilver_client::{InvalidUpdate, Update, UpdateBuilder};
