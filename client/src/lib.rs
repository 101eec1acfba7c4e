//! A Mercure client: publish updates, subscribe to them, discover hubs, mint tokens.
//!
//! [Mercure](https://mercure.rocks) publishers `POST` updates to a hub at
//! `/.well-known/mercure`; subscribers keep a server-sent events stream open on the same URL and
//! receive the updates of the topics they selected. This crate speaks both sides, for the
//! draft-07 protocol and for Mercure 1.0, to any hub (it is tested against Quicksilver).
//!
//! # Publish
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use quicksilver_client::token::{Format, Selector, SigningKey, TokenRequest};
//! use quicksilver_client::{Publisher, Update};
//!
//! // A token minted from the hub's key (or give one with `.token(...)`).
//! let key = SigningKey::new("HS256", b"the hub's secret")?;
//! let rights = TokenRequest::new(Format::Legacy).publish(Selector::parse("*")?);
//! let publisher = Publisher::builder("http://localhost:8080/.well-known/mercure")
//!     .mint_token(key, rights)
//!     .build()?;
//! let update = Update::builder("https://example.com/books/1").data(r#"{"title": "Dune"}"#).build()?;
//! let id = publisher.publish(&update).await?;
//! # Ok(())
//! # }
//! ```
//!
//! A publication is retried by itself only after a 503 (the hub reports that it stored nothing)
//! or when no connection could be opened, always with the same id: see [`publisher`].
//!
//! # Subscribe
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use futures_util::StreamExt;
//! use quicksilver_client::Subscriber;
//!
//! let subscriber = Subscriber::builder("http://localhost:8080/.well-known/mercure")
//!     .topic("https://example.com/books/{id}") // draft-07; or .match_urlpattern(...)
//!     .build()?;
//! let mut events = subscriber.stream();
//! while let Some(event) = events.next().await {
//!     let event = event?;
//!     println!("{}: {}", event.id, event.data);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The stream reconnects by itself and resumes after the last event id received
//! (`Last-Event-ID`). It skips an event whose id is among the last 1,024 ids received on the
//! stream (a replay overlapping what was received, an update stored twice); events without an
//! id are not deduplicated: see [`subscriber`].
//!
//! # Discover
//!
//! ```
//! use quicksilver_client::discovery::parse_link_headers;
//!
//! // The headers of `GET https://example.com/books/1`; `discovery::discover` fetches them.
//! let resource = url::Url::parse("https://example.com/books/1")?;
//! let found = parse_link_headers(
//!     [&b"</.well-known/mercure>; rel=\"mercure\", </books/1.jsonld>; rel=\"self\""[..]],
//!     &resource,
//! );
//! assert_eq!(found.hubs[0].url.as_str(), "https://example.com/.well-known/mercure");
//! let topic = found.self_url.map(String::from);
//! assert_eq!(topic.as_deref(), Some("https://example.com/books/1.jsonld"));
//! # Ok::<(), url::ParseError>(())
//! ```
//!
//! # Mint tokens
//!
//! ```
//! use quicksilver_client::token::{mint, Format, Selector, SigningKey, TokenRequest};
//!
//! let key = SigningKey::new("HS256", b"the hub's secret")?;
//! let request = TokenRequest::new(Format::Rfc9068) // Mercure 1.0; Format::Legacy for draft-07
//!     .subscribe(Selector::parse("urlpattern:https://example.com/books/:id")?);
//! let token = mint(&request, &key)?;
//! # Ok::<(), quicksilver_client::token::MintError>(())
//! ```

#![deny(missing_docs)]

mod credentials;
pub mod discovery;
mod error;
mod event;
mod http;
pub mod protocol;
pub mod publisher;
mod sse;
pub mod subscriber;
pub mod token;
mod update;

pub use error::BuildError;
pub use event::Event;
pub use publisher::{NetworkError, PublishError, Publisher, PublisherBuilder, RetryPolicy};
pub use subscriber::{EventStream, SubscribeError, Subscriber, SubscriberBuilder};
pub use update::{InvalidUpdate, Update, UpdateBuilder};
