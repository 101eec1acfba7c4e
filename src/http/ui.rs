//! The debugging UI: a static page at `/.well-known/mercure/ui/` to subscribe, publish and list
//! active subscriptions from a browser, at the path where the reference hub serves its own UI.
//!
//! The assets live in `src/http/ui/` and are compiled into the binary, so the page needs no file
//! at run time and no build step. They are plain HTML, CSS and JavaScript in separate files,
//! because the hub's `Content-Security-Policy` (`default-src 'self' …`) forbids inline scripts
//! and styles.
//! Every asset is sent with `Cache-Control: no-cache`, so a browser revalidates it after an
//! upgrade of the hub.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

use crate::error::HubError;

/// The path of the UI, without its trailing slash.
pub const UI_PATH: &str = "/.well-known/mercure/ui";

/// The files of the UI: name under `ui/`, content type, content.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("index.html", "text/html; charset=utf-8", include_bytes!("ui/index.html")),
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("ui/app.js")),
    ("app.css", "text/css; charset=utf-8", include_bytes!("ui/app.css")),
    ("favicon.svg", "image/svg+xml", include_bytes!("ui/favicon.svg")),
];

/// Registers the UI routes at `path`, [`UI_PATH`] relative to the hub's scope. Call only when
/// `ui` is on.
///
/// `…/ui` redirects (301) to `…/ui/`, which serves `index.html`; `…/ui/{file}` serves the named
/// asset. Unknown files answer 404, and methods other than `GET` and `HEAD` answer 405.
pub fn configure(cfg: &mut web::ServiceConfig, path: &str, compress: bool) {
    cfg.service(
        web::resource(path)
            .route(web::get().to(redirect))
            .route(web::head().to(redirect))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        // `[^/]*` also matches the empty name of `…/ui/` itself.
        web::resource(format!("{path}/{{file:[^/]*}}"))
            .wrap(super::compression(compress))
            .route(web::get().to(asset))
            .route(web::head().to(asset))
            .default_service(web::to(method_not_allowed)),
    );
}

/// `…/ui` → `…/ui/`, keeping the query string.
async fn redirect(req: HttpRequest) -> HttpResponse {
    let location = match req.query_string() {
        "" => format!("{UI_PATH}/"),
        query => format!("{UI_PATH}/?{query}"),
    };
    HttpResponse::MovedPermanently().insert_header((header::LOCATION, location)).finish()
}

/// One asset, or 404.
async fn asset(file: web::Path<String>) -> HttpResponse {
    let name = match file.as_str() {
        "" => "index.html",
        name => name,
    };
    match ASSETS.iter().find(|(asset, _, _)| *asset == name) {
        Some((_, content_type, body)) => {
            // For `HEAD`, actix-web sends the headers (with the length) and drops the body.
            HttpResponse::Ok()
                .content_type(*content_type)
                .insert_header((header::CACHE_CONTROL, "no-cache"))
                .body(*body)
        }
        None => HubError::NotFound.error_response(),
    }
}

async fn method_not_allowed() -> HttpResponse {
    HubError::MethodNotAllowed("GET, HEAD").error_response()
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderMap;
    use actix_web::http::{Method, StatusCode};
    use actix_web::{test, App};

    use super::*;

    /// Status, headers and body of `method path` on an app with only the UI routes.
    async fn call(method: Method, path: &str) -> (StatusCode, HeaderMap, String) {
        let app =
            test::init_service(App::new().configure(|cfg| configure(cfg, UI_PATH, false))).await;
        let request = test::TestRequest::default().method(method).uri(path).to_request();
        let response = test::call_service(&app, request).await;
        let status = response.status();
        let headers = response.headers().clone();
        let body = test::read_body(response).await;
        let body = String::from_utf8(body.to_vec()).expect("utf-8 body");
        (status, headers, body)
    }

    fn header(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
        headers.get(name).and_then(|value| value.to_str().ok())
    }

    #[actix_web::test]
    async fn serves_the_assets_with_their_types_and_no_cache() {
        for (file, content_type, needle) in [
            ("", "text/html; charset=utf-8", "<!DOCTYPE html>"),
            ("index.html", "text/html; charset=utf-8", "<script src=\"app.js\""),
            ("app.js", "text/javascript; charset=utf-8", "EventSource"),
            ("app.css", "text/css; charset=utf-8", ".events"),
            ("favicon.svg", "image/svg+xml", "<svg"),
        ] {
            let path = format!("{UI_PATH}/{file}");
            let (status, headers, body) = call(Method::GET, &path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(header(&headers, header::CONTENT_TYPE), Some(content_type));
            assert_eq!(header(&headers, header::CACHE_CONTROL), Some("no-cache"));
            assert!(body.contains(needle), "{path} contains {needle}");
        }
    }

    #[actix_web::test]
    async fn redirects_to_the_trailing_slash() {
        for (path, location) in [
            (UI_PATH.to_owned(), "/.well-known/mercure/ui/"),
            (format!("{UI_PATH}?a=b"), "/.well-known/mercure/ui/?a=b"),
        ] {
            let (status, headers, _) = call(Method::GET, &path).await;
            assert_eq!(status, StatusCode::MOVED_PERMANENTLY, "{path}");
            assert_eq!(header(&headers, header::LOCATION), Some(location));
        }
    }

    #[actix_web::test]
    async fn unknown_files_are_not_found() {
        for file in ["nope.js", "app.js.map", "..%2Fui.rs", "APP.JS"] {
            let path = format!("{UI_PATH}/{file}");
            let (status, _, _) = call(Method::GET, &path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        }
    }

    #[actix_web::test]
    async fn head_is_served_and_other_methods_are_refused() {
        let (status, headers, _) = call(Method::HEAD, &format!("{UI_PATH}/app.css")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header(&headers, header::CONTENT_TYPE), Some("text/css; charset=utf-8"));

        for path in [format!("{UI_PATH}/"), UI_PATH.to_owned()] {
            let (status, headers, _) = call(Method::POST, &path).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
            assert_eq!(header(&headers, header::ALLOW), Some("GET, HEAD"));
        }
    }

    /// The CSP forbids inline code: the page must load its script and style from files.
    #[actix_web::test]
    async fn the_page_has_no_inline_script_or_style() {
        let (_, _, html) = call(Method::GET, &format!("{UI_PATH}/")).await;
        assert!(!html.contains("<style"), "no style element");
        assert!(!html.contains("style="), "no style attribute");
        let handler = html.split(" on").skip(1).find(|rest| {
            let name_len = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            name_len > 0 && rest[name_len..].starts_with('=')
        });
        assert_eq!(handler, None, "no inline event handler");
        for script in html.split("<script").skip(1) {
            let script = script.trim_start();
            assert!(script.starts_with("src="), "external scripts only");
        }
    }
}
