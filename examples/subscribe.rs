//! Subscribes to topics and prints each event, reconnecting by itself when the hub goes away.
//!
//! Against a local hub (two terminals, from the repository's root):
//!
//! ```sh
//! MERCURE_JWT_KEY=dev-secret cargo run                       # the hub, on 127.0.0.1:8080
//! MERCURE_JWT_KEY=dev-secret cargo run --example subscribe -- https://example.com/books/1
//! MERCURE_JWT_KEY=dev-secret cargo run --example publish -- https://example.com/books/1 hello
//! ```
//!
//! Arguments: draft-07 topic selectors (topics, URI templates such as
//! `https://example.com/books/{id}`, or `*`); default `*`. Environment:
//!
//! - `MERCURE_HUB_URL`: the hub (default `http://127.0.0.1:8080/.well-known/mercure`);
//! - `MERCURE_TOKEN`: a subscriber token; without it, one is minted from `MERCURE_JWT_KEY` (the
//!   hub's HMAC secret) for every topic, and without either the subscription is anonymous (the
//!   hub must allow it: `MERCURE_ANONYMOUS=1`);
//! - `LAST_EVENT_ID`: resume after this id (`earliest` for the whole history).
//!
//! The hub ignores `MERCURE_HUB_URL` and `MERCURE_TOKEN`, as it ignores other clients' variables:
//! one shell can export them for both.

use futures_util::StreamExt;
use quicksilver_client::token::{Format, Selector, SigningKey, TokenRequest};
use quicksilver_client::Subscriber;

const DEFAULT_HUB_URL: &str = "http://127.0.0.1:8080/.well-known/mercure";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("subscribe: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let hub = std::env::var("MERCURE_HUB_URL").unwrap_or_else(|_| DEFAULT_HUB_URL.to_owned());
    let mut topics: Vec<String> = std::env::args().skip(1).collect();
    if topics.is_empty() {
        topics.push("*".to_owned());
    }
    let mut builder = Subscriber::builder(&hub);
    for topic in &topics {
        builder = builder.topic(topic);
    }
    builder = match (std::env::var("MERCURE_TOKEN"), std::env::var("MERCURE_JWT_KEY")) {
        (Ok(token), _) => builder.token(token),
        (Err(_), Ok(secret)) => {
            let key = SigningKey::new("HS256", secret.as_bytes())?;
            // A draft-07 token, like the topics: it lets this subscriber see private updates.
            let rights = TokenRequest::new(Format::Legacy).subscribe(Selector::parse("*")?);
            builder.mint_token(key, rights)
        }
        (Err(_), Err(_)) => builder,
    };
    if let Ok(id) = std::env::var("LAST_EVENT_ID") {
        builder = builder.last_event_id(id);
    }
    let subscriber = builder.build()?;
    eprintln!("subscribed to {topics:?} at {hub} (Ctrl-C to stop)");

    let mut events = subscriber.stream();
    while let Some(event) = events.next().await {
        // An error is the stream's last item: the hub refused the subscription.
        let event = event?;
        println!("[{}] {} {}", event.event_type, event.id, event.data);
    }
    Ok(())
}
