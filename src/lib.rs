//! Quicksilver: a Mercure hub.
//!
//! Publishers `POST` updates to `/.well-known/mercure`; subscribers keep a `GET` event stream open
//! on the same URL and receive the updates whose topics match their selectors and that their token
//! allows. The modules, from the top down (each imports only from those below it):
//!
//! - [`http`]: routes, middleware and one handler per endpoint; the server's life;
//! - [`hub`]: the actors (the topic [`router`](hub::router), one
//!   [`subscriber`](hub::subscriber) stream per connection, [`presence`](hub::presence) events)
//!   and [`Hub`], which starts them over a transport;
//! - [`transport`]: where updates are numbered, stored and fed to the router (`embedded` redb
//!   file, `memory`, or `nats`: a NATS JetStream stream shared by the nodes of a cluster);
//! - [`error`] (HTTP errors, one place for status codes), [`config`], [`metrics`], [`telemetry`];
//! - protocol values, with no I/O: [`update`], [`topic_selector`], [`subscription`], [`form`],
//!   [`jwt`].
//!
//! The binary (`main.rs`) loads the configuration, binds, and calls [`serve`]; tests call the same
//! function on `127.0.0.1:0`.

pub mod access_token;
pub mod config;
pub mod error;
pub mod form;
pub mod http;
pub mod hub;
pub mod jwks;
pub mod jwt;
pub mod metrics;
pub mod mint;
pub mod subscription;
pub mod telemetry;
pub mod topic_selector;
pub mod transport;
pub mod update;
pub mod url_pattern;

pub use http::{bind, serve, serve_metrics, shutdown_on_signal, HUB_METHODS, HUB_PATH};
pub use hub::Hub;
