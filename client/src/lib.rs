//! A Mercure client: publish updates, subscribe to them, discover hubs, mint tokens.

#![deny(missing_docs)]

mod event;
mod sse;
pub mod token;

pub use event::Event;
