//! The small endpoints: liveness, readiness, Prometheus metrics, and the welcome page at `/`.

use actix_web::{web, HttpRequest, HttpResponse};

use super::HUB_PATH;
use crate::hub::Hub;
use crate::metrics::Metrics;

/// `/metrics`, on the hub's listener or on `metrics_addr`'s.
pub async fn render_metrics(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok().content_type(Metrics::CONTENT_TYPE).body(metrics.render())
}

/// Liveness: the process serves HTTP.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("ok\n")
}

/// Readiness: the transport accepts publications, and the node is not shutting down.
pub async fn readyz(hub: web::Data<Hub>) -> HttpResponse {
    if hub.is_ready() {
        HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("ready\n")
    } else {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain; charset=utf-8")
            .body("not ready: shutting down, or the transport cannot store updates\n")
    }
}

/// A small page saying what this server is, as the reference hub serves at `/`.
pub async fn welcome(req: HttpRequest, hub: web::Data<Hub>) -> HttpResponse {
    let client = super::forwarded::client_info(&req);
    let hub_url = html_escape(&format!("{}://{}{HUB_PATH}", client.scheme, client.host));
    let ui = if hub.config.ui {
        format!("<p>Debugging UI: <a href=\"{HUB_PATH}/ui/\">{HUB_PATH}/ui/</a>.</p>")
    } else {
        String::new()
    };
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Quicksilver \
         Mercure hub</title></head><body><h1>Quicksilver</h1><p>This is a \
         <a href=\"https://mercure.rocks\">Mercure</a> hub. Subscribe and publish at \
         <code>{hub_url}</code>.</p>{ui}</body></html>\n"
    ))
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
