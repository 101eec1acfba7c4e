//! Plain HTTP beside HTTPS: with `http_redirect_addr`, every request that arrives there is sent to
//! the same host and path over HTTPS (308, which keeps the method and body), so that a browser
//! or a client configured with `http://` finds the hub.
//!
//! Nothing is served there: an event stream or a publication over plain HTTP would expose its
//! token. The HTTPS port in the `Location` is the hub's own (`addr`), left out when it is 443.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::http::header;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

/// Serves the redirects on `listener`, pointing at HTTPS on `https_port`.
pub fn serve_redirect(listener: TcpListener, https_port: u16) -> std::io::Result<Server> {
    Ok(HttpServer::new(move || {
        App::new().default_service(web::to(move |req: HttpRequest| async move {
            redirect(&req, https_port)
        }))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run())
}

fn redirect(req: &HttpRequest, https_port: u16) -> HttpResponse {
    let host = req.headers().get(header::HOST).and_then(|host| host.to_str().ok());
    let path = req.uri().path_and_query().map_or("/", |path| path.as_str());
    match host.and_then(|host| location(host, https_port, path)) {
        Some(location) => {
            HttpResponse::PermanentRedirect().insert_header((header::LOCATION, location)).finish()
        }
        None => HttpResponse::BadRequest()
            .content_type("text/plain; charset=utf-8")
            .body("Bad Request: this port redirects to HTTPS and needs a valid Host header\n"),
    }
}

/// `https://HOST[:PORT]PATH` for a request to `host` (its own port, if any, dropped); `None` when
/// `host` is not a host name or address.
fn location(host: &str, https_port: u16, path: &str) -> Option<String> {
    let name = match host.strip_prefix('[') {
        // An IPv6 literal: `[::1]` or `[::1]:80`.
        Some(rest) => format!("[{}]", rest.split_once(']')?.0),
        None => host.split(':').next()?.to_owned(),
    };
    let valid = !name.is_empty()
        && name.len() <= 255
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b));
    if !valid {
        return None;
    }
    let port = if https_port == 443 { String::new() } else { format!(":{https_port}") };
    Some(format!("https://{name}{port}{path}"))
}

#[cfg(test)]
mod tests {
    use super::location;

    #[test]
    fn the_location_keeps_host_and_path_and_takes_the_https_port() {
        let cases = [
            (
                "hub.example.com",
                443,
                "/.well-known/mercure?topic=a",
                "https://hub.example.com/.well-known/mercure?topic=a",
            ),
            ("hub.example.com:80", 443, "/", "https://hub.example.com/"),
            ("hub.example.com:8080", 8443, "/x", "https://hub.example.com:8443/x"),
            ("[::1]:80", 8443, "/", "https://[::1]:8443/"),
            ("127.0.0.1", 443, "/", "https://127.0.0.1/"),
        ];
        for (host, port, path, expected) in cases {
            assert_eq!(location(host, port, path).as_deref(), Some(expected), "{host}");
        }
        for bad in ["", "evil.example/path", "a b", "<script>", ":80"] {
            assert_eq!(location(bad, 443, "/"), None, "{bad:?}");
        }
    }
}
