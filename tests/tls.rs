//! HTTPS and HTTP/2: the hub serves TLS from `cert_file` and `key_file`, negotiates HTTP/2 by
//! ALPN while still serving HTTP/1.1, picks up replaced certificate files without dropping open
//! streams, and speaks HTTP/2 with prior knowledge on plain connections (load balancers'
//! backends).

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

/// A bound for a hung test only.
const WITHIN: Duration = Duration::from_secs(30);

/// A client trusting the test CA of `dir` only; `http1` refuses HTTP/2.
fn https_client(dir: &Path, http1: bool) -> reqwest::Client {
    let ca = std::fs::read(dir.join("ca.pem")).expect("the CA");
    let builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("a PEM certificate"))
        .tls_info(true);
    let builder = if http1 { builder.http1_only() } else { builder };
    builder.build().expect("a client")
}

/// A hub serving HTTPS with `{name}.pem` of `dir`, the files it reads being `hub.pem` and
/// `hub.key` (so that a test can replace them).
fn https_hub(dir: &Path, name: &str) -> (TestHub, String) {
    install(dir, name);
    let (cert, key) = (dir.join("hub.pem"), dir.join("hub.key"));
    let hub = TestHub::start(&[
        ("MERCURE_CERT_FILE", cert.to_str().expect("utf-8")),
        ("MERCURE_KEY_FILE", key.to_str().expect("utf-8")),
    ]);
    let url = format!("https://localhost:{}{HUB}", hub.addr.port());
    (hub, url)
}

/// Puts `{name}.pem` and `{name}.key` where the hub reads its certificate, each file replaced
/// in one step (written aside, then renamed), as certificate tools do.
fn install(dir: &Path, name: &str) {
    for extension in ["pem", "key"] {
        let staged = dir.join(format!("staged.{extension}"));
        std::fs::copy(dir.join(format!("{name}.{extension}")), &staged).expect("copied");
        std::fs::rename(&staged, dir.join(format!("hub.{extension}"))).expect("renamed");
    }
}

/// The DER of the first certificate in the PEM file `path`.
fn der_of(path: &Path) -> Vec<u8> {
    let pem = std::fs::read_to_string(path).expect("a PEM file");
    let body: String = pem
        .lines()
        .skip_while(|line| !line.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|line| !line.starts_with("-----END"))
        .collect();
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(body).expect("base64")
}

/// The certificate the server presented for `response`.
fn served_certificate(response: &reqwest::Response) -> Vec<u8> {
    let info = response.extensions().get::<reqwest::tls::TlsInfo>().expect("TLS info");
    info.peer_certificate().expect("a peer certificate").to_vec()
}

/// Publishes `form` over HTTPS (HTTP/1.1 only with `http1`) and checks the answer.
async fn publish_over_https(dir: &Path, url: &str, http1: bool, form: &[(&str, &str)]) {
    let response = https_client(dir, http1)
        .post(url)
        .bearer_auth(publisher())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode_form(form))
        .send()
        .await
        .expect("published");
    assert_eq!(response.status(), 200);
    let version = if http1 { reqwest::Version::HTTP_11 } else { reqwest::Version::HTTP_2 };
    assert_eq!(response.version(), version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_http2_and_http1_and_delivers_updates_over_both() {
    let dir = tempfile::tempdir().expect("temp dir");
    make_certificates(dir.path(), &["first"], &[]);
    let (_hub, url) = https_hub(dir.path(), "first");
    let topic = "https://example.com/tls";
    let subscribe = format!("{url}?{}", topics_query(&[topic]));

    let mut streams = Vec::new();
    for (http1, version) in [(false, reqwest::Version::HTTP_2), (true, reqwest::Version::HTTP_11)] {
        let client = https_client(dir.path(), http1);
        let response =
            client.get(&subscribe).bearer_auth(subscriber()).send().await.expect("subscribed");
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), version);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        streams.push(response);
    }
    // Published over HTTPS too, over each protocol.
    for (http1, id) in [(false, "over-h2"), (true, "over-h1")] {
        publish_over_https(dir.path(), &url, http1, &[("topic", topic), ("id", id)]).await;
    }
    for response in streams {
        read_until_id(&mut response.bytes_stream(), "over-h1").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_certificate_files_reach_new_connections_while_open_streams_carry_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    make_certificates(dir.path(), &["first", "renewed"], &[]);
    let (_hub, url) = https_hub(dir.path(), "first");
    let topic = "https://example.com/renewal";
    let subscribe = format!("{url}?{}", topics_query(&[topic]));
    let open = https_client(dir.path(), false)
        .get(&subscribe)
        .bearer_auth(subscriber())
        .send()
        .await
        .expect("subscribed");
    assert_eq!(served_certificate(&open), der_of(&dir.path().join("first.pem")));

    install(dir.path(), "renewed");
    let renewed = der_of(&dir.path().join("renewed.pem"));
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        // A new client each time: a new connection and handshake.
        let client = https_client(dir.path(), true);
        let response = client.get(url.replace(HUB, "/healthz")).send().await.expect("healthz");
        assert_eq!(response.status(), 200);
        if served_certificate(&response) == renewed {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the renewed certificate is served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The stream opened before the renewal is still open and still delivers.
    publish_over_https(dir.path(), &url, false, &[("topic", topic), ("id", "after-renewal")]).await;
    read_until_id(&mut open.bytes_stream(), "after-renewal").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_speaks_http2_with_prior_knowledge_and_http1() {
    let hub = TestHub::start(&[]);
    let topic = "https://example.com/h2c";
    let subscribe = format!("{}?{}", hub.url, topics_query(&[topic]));
    let h2c = reqwest::Client::builder().http2_prior_knowledge().build().expect("a client");
    let response = h2c.get(&subscribe).bearer_auth(subscriber()).send().await.expect("subscribed");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    // HTTP/1.1 as before, on the same listener; publishing over HTTP/2 too.
    let (status, _) = publish(&hub, &[("topic", topic), ("id", "over-h1")]).await;
    assert_eq!(status, 200);
    let published = h2c
        .post(&hub.url)
        .bearer_auth(publisher())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode_form(&[("topic", topic), ("id", "over-h2c")]))
        .send()
        .await
        .expect("published");
    assert_eq!(published.status(), 200);
    assert_eq!(published.version(), reqwest::Version::HTTP_2);
    read_until_id(&mut response.bytes_stream(), "over-h2c").await;
}
