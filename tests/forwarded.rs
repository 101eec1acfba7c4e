//! Behind a proxy: with `use_forwarded_headers`, the scheme and host a client used (and its
//! address) come from the headers of a trusted proxy only. The welcome page shows the hub's URL
//! as the hub derives it. (The resolution rules, spoofed chains included, are unit-tested in
//! `src/http/forwarded.rs`; the client's address in logs in `tests/binary.rs`.)

mod common;

use common::*;

/// The hub URL the welcome page of `hub` shows to a request carrying `headers`.
async fn advertised_url(hub: &TestHub, headers: &[(&str, &str)]) -> String {
    let mut request = client().get(hub.at("/"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let page = request.send().await.expect("welcome page").text().await.expect("a body");
    let start = page.find("<code>").expect("the URL") + "<code>".len();
    let end = page[start..].find("</code>").expect("its end") + start;
    page[start..end].to_owned()
}

const FROM_PROXY: &[(&str, &str)] = &[
    ("x-forwarded-for", "203.0.113.9"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "app.example.com"),
];

#[tokio::test]
async fn a_trusted_proxy_sets_the_scheme_and_host() {
    let hub = TestHub::start(&[
        ("MERCURE_USE_FORWARDED_HEADERS", "1"),
        ("MERCURE_TRUSTED_PROXIES", "127.0.0.0/8"),
    ]);
    assert_eq!(advertised_url(&hub, FROM_PROXY).await, format!("https://app.example.com{HUB}"));
    let rfc7239 = [("forwarded", "for=203.0.113.9;proto=https;host=rfc.example")];
    assert_eq!(advertised_url(&hub, &rfc7239).await, format!("https://rfc.example{HUB}"));
}

#[tokio::test]
async fn headers_from_an_untrusted_peer_or_without_the_setting_are_ignored() {
    let own = |hub: &TestHub| format!("http://{}{HUB}", hub.addr);
    let untrusted = TestHub::start(&[
        ("MERCURE_USE_FORWARDED_HEADERS", "1"),
        ("MERCURE_TRUSTED_PROXIES", "10.0.0.0/8"),
    ]);
    assert_eq!(advertised_url(&untrusted, FROM_PROXY).await, own(&untrusted));
    let off = TestHub::start(&[]);
    assert_eq!(advertised_url(&off, FROM_PROXY).await, own(&off));
}
