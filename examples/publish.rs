//! Publishes one update and prints the id the hub answered.
//!
//! Against a local hub (see `examples/subscribe.rs` for the subscriber's side):
//!
//! ```sh
//! MERCURE_JWT_KEY=dev-secret cargo run                       # the hub, on 127.0.0.1:8080
//! MERCURE_JWT_KEY=dev-secret cargo run --example publish -- https://example.com/books/1 '{"title": "Dune"}'
//! ```
//!
//! Arguments: the topic (default `https://example.com/books/1`) and the data (default `hello`).
//! Environment:
//!
//! - `MERCURE_HUB_URL`: the hub (default `http://127.0.0.1:8080/.well-known/mercure`);
//! - `MERCURE_TOKEN`: a publisher token; without it, one is minted from `MERCURE_JWT_KEY` (the
//!   hub's HMAC secret) for every topic;
//! - `PRIVATE`: set to publish a private update.
//!
//! The hub ignores `MERCURE_HUB_URL` and `MERCURE_TOKEN`, as it ignores other clients' variables:
//! one shell can export them for both.

use quicksilver_client::token::{Format, Selector, SigningKey, TokenRequest};
use quicksilver_client::{PublishError, Publisher, Update};

const DEFAULT_HUB_URL: &str = "http://127.0.0.1:8080/.well-known/mercure";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("publish: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let hub = std::env::var("MERCURE_HUB_URL").unwrap_or_else(|_| DEFAULT_HUB_URL.to_owned());
    let mut args = std::env::args().skip(1);
    let topic = args.next().unwrap_or_else(|| "https://example.com/books/1".to_owned());
    let data = args.next().unwrap_or_else(|| "hello".to_owned());

    let builder = Publisher::builder(&hub);
    let builder = match (std::env::var("MERCURE_TOKEN"), std::env::var("MERCURE_JWT_KEY")) {
        (Ok(token), _) => builder.token(token),
        (Err(_), Ok(secret)) => {
            let key = SigningKey::new("HS256", secret.as_bytes())?;
            let rights = TokenRequest::new(Format::Legacy).publish(Selector::parse("*")?);
            builder.mint_token(key, rights)
        }
        (Err(_), Err(_)) => {
            return Err("set MERCURE_TOKEN, or MERCURE_JWT_KEY to mint a token".into());
        }
    };
    let publisher = builder.build()?;
    let update =
        Update::builder(topic).data(data).private(std::env::var_os("PRIVATE").is_some()).build()?;

    match publisher.publish(&update).await {
        Ok(id) => {
            println!("{id}");
            Ok(())
        }
        // Safe to send again as is: the same id, which subscribers receive once.
        Err(PublishError::Network(error)) if error.may_have_reached_hub() => {
            Err(format!("{error}; it may have been published as {}", update.id()).into())
        }
        Err(error) => Err(error.into()),
    }
}
