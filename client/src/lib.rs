//! A Mercure client: publish updates, subscribe to them, discover hubs, mint tokens.

#![deny(missing_docs)]

mod credentials;
mod error;
mod event;
mod http;
pub mod publisher;
mod sse;
pub mod token;
mod update;

pub use error::BuildError;
pub use event::Event;
pub use publisher::{NetworkError, PublishError, Publisher, PublisherBuilder, RetryPolicy};
pub use update::{InvalidUpdate, Update, UpdateBuilder};
