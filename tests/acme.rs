//! Automatic certificates (`acme_hosts`) against a real ACME server, Pebble: the hub obtains a
//! certificate by TLS-ALPN-01 on its own port and serves it, renews a short-lived one while an
//! open stream keeps delivering, and after a restart serves the stored one without a new order.

mod common;
mod pebble;

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use common::*;
use pebble::Pebble;

/// The host name the hub's certificate is for; Pebble's DNS mock answers 127.0.0.1 for it.
const HOST: &str = "hub.quicksilver.test";
/// A bound for a hung test only: each step takes a second or two.
const WITHIN: Duration = Duration::from_secs(60);

/// A hub getting its certificate from `pebble`, keeping it in `cert_dir`, on `listener`.
fn acme_hub(listener: TcpListener, pebble: &Pebble, cert_dir: &Path) -> TestHub {
    TestHub::start_on(
        listener,
        &[
            ("MERCURE_ACME_HOSTS", HOST),
            ("MERCURE_ACME_DIRECTORY", &pebble.directory),
            ("MERCURE_ACME_CA_ROOT", pebble.directory_ca.to_str().expect("utf-8")),
            ("MERCURE_ACME_CERT_DIR", cert_dir.to_str().expect("utf-8")),
            ("MERCURE_ACME_EMAIL", "ops@quicksilver.test"),
        ],
    )
}

/// A new client (a new connection each time) trusting Pebble's issuing root only, reaching
/// `HOST` at the hub's port on loopback.
fn client(root: &[u8], port: u16) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root).expect("a PEM root"))
        .resolve(HOST, ([127, 0, 0, 1], port).into())
        .tls_info(true)
        .build()
        .expect("a client")
}

fn hub_url(port: u16) -> String {
    format!("https://{HOST}:{port}{HUB}")
}

/// The certificate the server presented for `response`.
fn served_certificate(response: &reqwest::Response) -> Vec<u8> {
    let info = response.extensions().get::<reqwest::tls::TlsInfo>().expect("TLS info");
    info.peer_certificate().expect("a peer certificate").to_vec()
}

/// Waits until a handshake with the hub succeeds with a certificate other than `not`, and
/// returns that certificate.
async fn served_other_than(pebble: &Pebble, root: &[u8], port: u16, not: &[u8]) -> Vec<u8> {
    let url = format!("https://{HOST}:{port}/healthz");
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        if let Ok(response) = client(root, port).get(&url).send().await {
            assert_eq!(response.status(), 200);
            let served = served_certificate(&response);
            if served != not {
                return served;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new certificate served within {WITHIN:?}; Pebble's log:\n{}",
            pebble.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn publish_to_hub(root: &[u8], port: u16, topic: &str, id: &str) {
    let response = client(root, port)
        .post(hub_url(port))
        .bearer_auth(publisher())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode_form(&[("topic", topic), ("id", id)]))
        .send()
        .await
        .expect("published");
    assert_eq!(response.status(), 200);
}

async fn subscribe(root: &[u8], port: u16, topic: &str) -> reqwest::Response {
    let url = format!("{}?{}", hub_url(port), topics_query(&[topic]));
    let response =
        client(root, port).get(url).bearer_auth(subscriber()).send().await.expect("subscribed");
    assert_eq!(response.status(), 200);
    response
}

fn bind_port() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("an ephemeral port");
    let port = listener.local_addr().expect("its address").port();
    (listener, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_is_obtained_and_served_and_a_restart_reuses_it_without_a_new_order() {
    let cert_dir = tempfile::tempdir().expect("temp dir");
    let (listener, port) = bind_port();
    let pebble = Pebble::start(port, 3600).await;
    let root = pebble.issuing_root().await;
    let hub = acme_hub(listener, &pebble, cert_dir.path());

    let first = served_other_than(&pebble, &root, port, &[]).await;
    let topic = "https://example.com/acme";
    let mut stream = subscribe(&root, port, topic).await.bytes_stream();
    publish_to_hub(&root, port, topic, "over-acme").await;
    read_until_id(&mut stream, "over-acme").await;
    assert_eq!(pebble.issued(), 1, "one certificate ordered");
    drop(stream);
    drop(hub);

    // Another hub on the same directory, on another port: Pebble could not validate a new
    // order there, and is not asked to.
    let (listener, port) = bind_port();
    let _hub = acme_hub(listener, &pebble, cert_dir.path());
    let response = client(&root, port)
        .get(format!("https://{HOST}:{port}/healthz"))
        .send()
        .await
        .expect("the stored certificate is served at once");
    assert_eq!(served_certificate(&response), first, "the same certificate");
    assert_eq!(pebble.issued(), 1, "no new order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lived_certificate_is_renewed_while_an_open_stream_keeps_delivering() {
    let cert_dir = tempfile::tempdir().expect("temp dir");
    let (listener, port) = bind_port();
    // Renewed when a third of its 15 s is left: about 10 s after it was issued.
    let pebble = Pebble::start(port, 15).await;
    let root = pebble.issuing_root().await;
    let _hub = acme_hub(listener, &pebble, cert_dir.path());

    let first = served_other_than(&pebble, &root, port, &[]).await;
    let topic = "https://example.com/acme-renewal";
    let mut stream = subscribe(&root, port, topic).await.bytes_stream();
    publish_to_hub(&root, port, topic, "before-renewal").await;
    read_until_id(&mut stream, "before-renewal").await;

    let renewed = served_other_than(&pebble, &root, port, &first).await;
    assert_ne!(renewed, first);
    // The stream opened under the first certificate still delivers.
    publish_to_hub(&root, port, topic, "after-renewal").await;
    read_until_id(&mut stream, "after-renewal").await;
}
