//! The tutorial's "integrate into a web app": one page posts a message, every open board page
//! shows it at once. The application serves both pages and a form handler of its own; the handler
//! publishes in-process, and the board subscribes to the embedded hub with a plain `EventSource`.
//!
//! ```sh
//! cargo run --example webapp          # listens on 127.0.0.1:8080 (ADDR to change)
//! ```
//! Open <http://127.0.0.1:8080/> (the board) in one window and <http://127.0.0.1:8080/post> in
//! another, then post.

use actix_web::http::header;
use actix_web::{web, App, HttpResponse, HttpServer};
use quicksilver::config::Config;
use quicksilver::{Hub, Update};
use serde::Deserialize;

/// The topic of the board's messages.
const TOPIC: &str = "https://example.com/board";
/// The longest message the form accepts, in characters.
const MAX_MESSAGE: usize = 500;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let config = Config::builder()
        .set("jwt_key", "!ChangeThisMercureHubJWTSecretKey!")
        // The board's messages are public: browsers subscribe without a token.
        .set("anonymous", true)
        .set("transport", "memory")
        .set("drain_timeout", "2s")
        .build()?;
    let hub = Hub::start(config)?;
    let server = HttpServer::new({
        let hub = hub.clone();
        move || {
            App::new()
                .configure(hub.configure())
                .app_data(web::Data::new(hub.clone()))
                .route("/", web::get().to(board))
                .route("/post", web::get().to(post_form))
                .route("/messages", web::post().to(post_message))
        }
    })
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

/// The board: lists every message posted while it is open.
async fn board() -> HttpResponse {
    let query: String =
        url::form_urlencoded::Serializer::new(String::new()).append_pair("topic", TOPIC).finish();
    let hub = format!("{}?{query}", quicksilver::HUB_PATH);
    html(&format!(
        r#"<!doctype html>
<meta charset="utf-8">
<title>Board</title>
<h1>Board</h1>
<p id="state">connecting…</p>
<ul id="messages"></ul>
<p><a href="/post" target="_blank">Post a message</a></p>
<script>
  const events = new EventSource("{hub}");
  events.onopen = () => {{ document.getElementById("state").textContent = "connected"; }};
  events.onmessage = (event) => {{
    const item = document.createElement("li");
    item.textContent = JSON.parse(event.data).text;
    document.getElementById("messages").append(item);
  }};
</script>
"#
    ))
}

/// The page that posts: a plain form, sent to the application's own handler.
async fn post_form() -> HttpResponse {
    html(&format!(
        r#"<!doctype html>
<meta charset="utf-8">
<title>Post a message</title>
<h1>Post a message</h1>
<form method="post" action="/messages">
  <input name="text" maxlength="{MAX_MESSAGE}" required autofocus>
  <button>Post</button>
</form>
"#
    ))
}

#[derive(Deserialize)]
struct Message {
    text: String,
}

/// The form's handler: checks the message, publishes it in-process, and sends the browser back
/// to the form.
async fn post_message(hub: web::Data<Hub>, form: web::Form<Message>) -> HttpResponse {
    let text = form.text.trim();
    if text.is_empty() || text.chars().count() > MAX_MESSAGE {
        return HttpResponse::BadRequest()
            .body(format!("a message has 1 to {MAX_MESSAGE} characters"));
    }
    let data = serde_json::json!({ "text": text }).to_string();
    let published = match Update::builder(TOPIC).data(data).build() {
        Ok(update) => hub.publish(&update).await.map_err(|error| error.to_string()),
        Err(error) => Err(error.to_string()),
    };
    match published {
        Ok(_) => HttpResponse::SeeOther().insert_header((header::LOCATION, "/post")).finish(),
        Err(error) => HttpResponse::ServiceUnavailable().body(error),
    }
}

fn html(body: &str) -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(body.to_owned())
}
