//! A Mercure client: publish updates, subscribe to them, discover hubs, mint tokens.
#![deny(missing_docs)]

pub mod token;
