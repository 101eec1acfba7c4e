//! The hub embedded in an actix-web application: the application's own routes and the hub's on
//! one port, the application publishing in-process, and a status endpoint of its own built from
//! the hub's state.
//!
//! ```sh
//! cargo run --example embed                       # listens on 127.0.0.1:8080 (ADDR to change)
//! curl -N 'http://127.0.0.1:8080/.well-known/mercure?topic=https://example.com/books/1' &
//! curl -X POST -d 'Dune, second edition' http://127.0.0.1:8080/books/1   # the application's route
//! curl http://127.0.0.1:8080/status
//! ```
//!
//! The hub's settings use the names of the binary's (`MERCURE_*` variables override nothing
//! here: the application sets them in code). Ctrl-C drains the streams, then stops.

use actix_web::{web, App, HttpResponse, HttpServer};
use quicksilver::config::Config;
use quicksilver::{Hub, Update};

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let config = Config::builder()
        // Publishers other than the application itself need a token signed with this key.
        .set("jwt_key", "!ChangeThisMercureHubJWTSecretKey!")
        // Subscribers need no token for public updates.
        .set("anonymous", true)
        .set("transport", "memory")
        .set("drain_timeout", "2s")
        .build()?;
    let hub = Hub::start(config)?;

    let server = HttpServer::new({
        let hub = hub.clone();
        move || {
            App::new()
                // The hub's routes: /.well-known/mercure and below.
                .configure(hub.configure())
                .app_data(web::Data::new(hub.clone()))
                .route("/books/{id}", web::post().to(update_book))
                .route("/status", web::get().to(status))
        }
    })
    // The hub drains its streams before the server stops (see shutdown_on_signal below).
    .disable_signals()
    .bind(&addr)?;
    for addr in server.addrs() {
        println!("listening on http://{addr}");
    }
    let server = server.run();
    actix_web::rt::spawn(quicksilver::shutdown_on_signal(hub, server.handle()));
    server.await?;
    Ok(())
}

/// The application's own route: it changes a book, then tells the book's subscribers.
async fn update_book(
    hub: web::Data<Hub>,
    id: web::Path<u32>,
    body: String,
) -> actix_web::Result<HttpResponse> {
    let update = Update::builder(format!("https://example.com/books/{id}"))
        .data(body)
        .build()
        .map_err(actix_web::error::ErrorBadRequest)?;
    // Resolves once the update is stored, with its id.
    let event_id = hub.publish(&update).await.map_err(actix_web::error::ErrorServiceUnavailable)?;
    Ok(HttpResponse::Ok().body(event_id))
}

/// A status endpoint of the application's, from the hub's state.
async fn status(hub: web::Data<Hub>) -> HttpResponse {
    let subscriptions = hub.subscriptions().await.unwrap_or_default();
    let body = serde_json::json!({
        "ready": hub.is_ready(),
        "subscriptions": subscriptions.len(),
    });
    HttpResponse::Ok().json(body)
}
