//! Slow and oversized requests: a client that trickles its request head (slowloris) or sends
//! nothing is cut at `read_timeout`, while an idle event stream, whose request was read long ago,
//! lives past it; headers over `max_header_size` get a 431 that names the setting.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// A bound for a hung test only.
const WITHIN: Duration = Duration::from_secs(30);

/// Reads `stream` until the hub closes it (or `WITHIN` passes), on a thread of its own; returns
/// what it received and whether it was closed.
fn read_until_closed(stream: &TcpStream) -> std::thread::JoinHandle<(String, bool)> {
    let mut stream = stream.try_clone().expect("a second handle");
    stream.set_read_timeout(Some(WITHIN)).expect("a read timeout");
    std::thread::spawn(move || {
        let mut received = Vec::new();
        let mut buffer = [0; 1024];
        loop {
            match stream.read(&mut buffer) {
                Ok(0) => return (String::from_utf8_lossy(&received).into_owned(), true),
                Ok(n) => received.extend_from_slice(&buffer[..n]),
                // Reset by the hub: closed too.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return (String::from_utf8_lossy(&received).into_owned(), true)
                }
                Err(_) => return (String::from_utf8_lossy(&received).into_owned(), false),
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_request_head_is_cut_while_an_idle_stream_lives_on() {
    let hub = TestHub::start(&[("MERCURE_READ_TIMEOUT", "1s"), ("MERCURE_HEARTBEAT", "0s")]);
    let topic = "https://example.com/slow";
    let mut stream = Events::open(&hub, &topics_query(&[topic]), Some(&subscriber())).await;

    // One byte every 200 ms of a request head that never ends: 20 s of it, far past 1 s.
    let trickle = std::thread::spawn({
        let addr = hub.addr;
        move || {
            let mut socket = TcpStream::connect(addr).expect("connected");
            let reader = read_until_closed(&socket);
            let head = format!("GET /healthz HTTP/1.1\r\nHost: hub\r\nX-Slow: {}", "a".repeat(80));
            let started = Instant::now();
            for byte in head.bytes() {
                if reader.is_finished() || socket.write_all(&[byte]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            let (answer, closed) = reader.join().expect("the reader");
            (answer, closed, started.elapsed())
        }
    });
    // A connection that sends nothing at all is cut too.
    let silent = TcpStream::connect(hub.addr).expect("connected");
    let (_, silent_closed) = read_until_closed(&silent).join().expect("the reader");
    assert!(silent_closed, "a silent connection is closed");

    let (answer, closed, elapsed) = tokio::task::spawn_blocking(move || trickle.join())
        .await
        .expect("joined")
        .expect("the trickling client");
    assert!(closed, "the trickling connection is closed");
    assert!(elapsed < Duration::from_secs(20), "before its head was complete ({elapsed:?})");
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");

    // The stream opened before all this, idle for well over read_timeout, still delivers.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(publish(&hub, &[("topic", topic), ("id", "still-here")]).await.0, 200);
    assert_eq!(stream.next().await.id, "still-here");
}

#[tokio::test]
async fn headers_over_the_limit_get_a_431_naming_the_setting() {
    let hub = TestHub::start(&[("MERCURE_MAX_HEADER_SIZE", "4KiB")]);
    let small = "a".repeat(3000);
    let response = client().get(hub.at("/healthz")).header("cookie", &small).send().await;
    assert_eq!(response.expect("healthz").status(), 200);
    let large = "a".repeat(5000);
    let h2c = reqwest::Client::builder().http2_prior_knowledge().build().expect("a client");
    for client in [client(), h2c] {
        let response = client.get(hub.at("/healthz")).header("cookie", &large).send().await;
        let response = response.expect("an answer");
        assert_eq!(response.status(), 431);
        let body = response.text().await.expect("a body");
        assert!(body.contains("max_header_size") && body.contains("4096"), "{body}");
    }
}
