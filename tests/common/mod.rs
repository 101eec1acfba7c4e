//! Test harness: a real hub on an ephemeral port, tokens, and an SSE reader.
//!
//! Each [`TestHub`] runs the same `serve` as the binary, in its own actix system on its own
//! thread, and is stopped when dropped. Tests talk to it over real HTTP with reqwest.
#![allow(dead_code, missing_docs)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use quicksilver::config::Config;
use quicksilver::metrics::Metrics;
use quicksilver::transport::feed::NewFeed;
use quicksilver::transport::Transport;
use quicksilver::{serve, Hub};

pub const KEY: &str = "test-key-for-quicksilver-end-to-end-tests";
pub const HUB: &str = "/.well-known/mercure";

/// A running hub.
pub struct TestHub {
    pub addr: SocketAddr,
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestHub {
    /// A hub with the test key, the memory transport and the given extra settings; on NATS
    /// instead (a stream of its own) when `QUICKSILVER_TEST_NATS_URL` names a server.
    pub fn start(settings: &[(&str, &str)]) -> Self {
        static STREAMS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = STREAMS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stream = format!("T{}_{n}", std::process::id());
        let transport = transport_settings(&[("MERCURE_TRANSPORT", "memory")], &stream);
        let mut env: Vec<(&str, &str)> = vec![("MERCURE_JWT_KEY", KEY)];
        env.extend(transport.iter().map(|(k, v)| (*k, v.as_str())));
        env.extend_from_slice(settings);
        Self::start_env_ready(&env)
    }

    /// A hub with the embedded store at `path`; on NATS instead (a stream named after `path`,
    /// so that a hub started again on it finds its history) when `QUICKSILVER_TEST_NATS_URL`
    /// names a server.
    pub fn start_embedded(path: &Path, settings: &[(&str, &str)]) -> Self {
        let path = path.to_str().expect("utf-8 temp path");
        let digest: u64 = path.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
        let stream = format!("E{digest:016x}");
        let embedded = [("MERCURE_TRANSPORT", "embedded"), ("MERCURE_HISTORY_PATH", path)];
        let transport = transport_settings(&embedded, &stream);
        let mut env: Vec<(&str, &str)> = vec![("MERCURE_JWT_KEY", KEY)];
        env.extend(transport.iter().map(|(k, v)| (*k, v.as_str())));
        env.extend_from_slice(settings);
        Self::start_env_ready(&env)
    }

    /// A hub with the test key, the given extra settings, and the transport `build` makes from
    /// the router's feed.
    pub fn start_with_transport(
        settings: &[(&str, &str)],
        build: impl FnOnce(NewFeed, &Config, Metrics) -> anyhow::Result<Arc<dyn Transport>>
            + Send
            + 'static,
    ) -> Self {
        let mut env = vec![("MERCURE_JWT_KEY", KEY)];
        env.extend_from_slice(settings);
        Self::start_env_with(&env, move |config| {
            Hub::with_transport(config, build).expect("start the hub")
        })
    }

    /// A hub with `env`, once it is ready when the end-to-end tests run on NATS.
    fn start_env_ready(env: &[(&str, &str)]) -> Self {
        let wait = test_nats_url().is_some();
        Self::start_env_with_ready(env, start_hub, wait)
    }

    /// A hub with the test key and the memory transport on `listener`, bound by the test (which
    /// needed to know the port first: to tell an ACME server where to validate, for one).
    pub fn start_on(listener: TcpListener, settings: &[(&str, &str)]) -> Self {
        let mut env = vec![("MERCURE_JWT_KEY", KEY), ("MERCURE_TRANSPORT", "memory")];
        env.extend_from_slice(settings);
        Self::start_listening(&env, start_hub, false, Some(listener))
    }

    fn start_env_with(
        env: &[(&str, &str)],
        make: impl FnOnce(Config) -> Hub + Send + 'static,
    ) -> Self {
        Self::start_env_with_ready(env, make, false)
    }

    /// Starts the hub `make` builds; with `wait_ready`, returns once it is ready.
    fn start_env_with_ready(
        env: &[(&str, &str)],
        make: impl FnOnce(Config) -> Hub + Send + 'static,
        wait_ready: bool,
    ) -> Self {
        Self::start_listening(env, make, wait_ready, None)
    }

    /// Starts the hub `make` builds on `listener` (else on an ephemeral port); with
    /// `wait_ready`, returns once it is ready.
    fn start_listening(
        env: &[(&str, &str)],
        make: impl FnOnce(Config) -> Hub + Send + 'static,
        wait_ready: bool,
        listener: Option<TcpListener>,
    ) -> Self {
        let mut env: Vec<(String, String)> =
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        env.push(("MERCURE_ADDR".into(), "127.0.0.1:0".into()));
        env.push(("MERCURE_WORKERS".into(), "1".into()));
        let config = Config::from_sources(None, env).expect("valid test configuration");
        let listener = listener
            .unwrap_or_else(|| TcpListener::bind(config.addr).expect("bind an ephemeral port"));
        let addr = listener.local_addr().expect("local address");
        let (started, is_started) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let hub = make(config);
                // A node on NATS serves once it has read the stream.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                while wait_ready && !hub.is_ready() {
                    assert!(tokio::time::Instant::now() < deadline, "the hub is not ready");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let server = serve(listener, hub).expect("start the server");
                let handle = server.handle();
                let serving = actix_web::rt::spawn(server);
                started.send(()).expect("test is waiting");
                // Stop when the test drops the hub (or the sender). Not graceful: open streams
                // would keep a graceful stop waiting.
                let _ = stopped.await;
                handle.stop(false).await;
                let _ = serving.await;
            })
        });
        is_started.recv_timeout(Duration::from_secs(70)).expect("hub started");
        Self { addr, url: format!("http://{addr}{HUB}"), stop: Some(stop), thread: Some(thread) }
    }

    /// `http://addr` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Whether the end-to-end tests run on NATS (`QUICKSILVER_TEST_NATS_URL`), and its URL.
pub fn test_nats_url() -> Option<String> {
    std::env::var("QUICKSILVER_TEST_NATS_URL").ok().filter(|url| !url.is_empty())
}

/// `single_node` as is, or the settings of the stream `stream` on the test's NATS server.
fn transport_settings(
    single_node: &[(&'static str, &str)],
    stream: &str,
) -> Vec<(&'static str, String)> {
    match test_nats_url() {
        Some(url) => vec![
            ("MERCURE_TRANSPORT", "nats".to_owned()),
            ("MERCURE_NATS_URL", url),
            ("MERCURE_NATS_STREAM", stream.to_owned()),
        ],
        None => single_node.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
    }
}

/// The embedded store's file lock is released by a thread that ends shortly after the previous
/// hub on the same file stopped: retry for a moment.
fn start_hub(config: Config) -> Hub {
    let mut attempts = 0;
    loop {
        match Hub::start(config.clone()) {
            Ok(hub) => return hub,
            Err(error) if attempts < 50 => {
                attempts += 1;
                let _ = error;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(error) => panic!("cannot start the hub: {error:#}"),
        }
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A temporary directory with a history file path inside.
pub fn history_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("history.redb");
    (dir, path)
}

/// An HS256 token signed with `key` carrying `claims`.
pub fn token_with(key: &str, claims: serde_json::Value) -> String {
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()))
        .expect("encode token")
}

/// A token with the test key and the given `mercure` claim.
pub fn token(mercure: serde_json::Value) -> String {
    token_with(KEY, serde_json::json!({ "mercure": mercure }))
}

/// A publisher token allowed everywhere.
pub fn publisher() -> String {
    token(serde_json::json!({ "publish": ["*"] }))
}

/// A subscriber token allowed to receive every private update.
pub fn subscriber() -> String {
    token(serde_json::json!({ "subscribe": ["*"] }))
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().build().expect("http client")
}

/// Publishes a form (list of pairs) with the all-topics publisher token; returns status and body.
pub async fn publish(hub: &TestHub, form: &[(&str, &str)]) -> (u16, String) {
    publish_with(hub, &publisher(), form).await
}

/// Publishes a form to `hub` with `token`; returns status and body.
pub async fn publish_with(hub: &TestHub, token: &str, form: &[(&str, &str)]) -> (u16, String) {
    publish_to(&hub.url, token, form).await
}

/// Publishes a form to the hub endpoint at `url` with `token`; returns status and body.
pub async fn publish_to(url: &str, token: &str, form: &[(&str, &str)]) -> (u16, String) {
    let response = publish_request(url, token, form).send().await.expect("publish request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("publish body"))
}

/// The publish request for `form`, not yet sent, for tests that handle a failed send themselves.
pub fn publish_request(url: &str, token: &str, form: &[(&str, &str)]) -> reqwest::RequestBuilder {
    client()
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode_form(form))
}

pub fn encode_form(form: &[(&str, &str)]) -> String {
    form.iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A query string of `topic` parameters.
pub fn topics_query(topics: &[&str]) -> String {
    topics.iter().map(|t| format!("topic={}", urlencode(t))).collect::<Vec<_>>().join("&")
}

/// One received SSE event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    pub id: String,
    pub data: String,
    pub event_type: Option<String>,
    pub retry: Option<String>,
}

impl Event {
    /// Its id and data, to compare with what was published.
    pub fn id_and_data(&self) -> (&str, &str) {
        (&self.id, &self.data)
    }
}

/// What [`Events::read_within`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// An update.
    Update(Event),
    /// No update within the limit; the stream is still open.
    Silent,
    /// The stream ended: closed by the hub, or its connection broke.
    Ended,
}

/// An open event stream.
pub struct Events {
    pub response_headers: reqwest::header::HeaderMap,
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buffer: Vec<u8>,
    /// Every byte received, for byte-exact assertions.
    pub raw: Vec<u8>,
}

impl Events {
    /// Opens a stream; panics unless the hub answers 200.
    pub async fn open(hub: &TestHub, query: &str, token: Option<&str>) -> Self {
        Self::open_with(hub, query, token, &[]).await
    }

    /// Opens a stream with extra request headers; panics unless the hub answers 200.
    pub async fn open_with(
        hub: &TestHub,
        query: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Self {
        Self::open_url(&hub.url, query, token, headers).await
    }

    /// Opens a stream from the hub endpoint at `url` (a hub that is not a [`TestHub`], such as a
    /// child process), with an optional bearer token and extra request headers; panics unless the
    /// hub answers 200 and sends the opening comment within 5 s.
    pub async fn open_url(
        url: &str,
        query: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Self {
        let mut request = client().get(format!("{url}?{query}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("subscribe request");
        assert_eq!(response.status(), 200, "subscribe to {query}");
        let mut events = Self {
            response_headers: response.headers().clone(),
            body: Box::pin(response.bytes_stream()),
            buffer: Vec::new(),
            raw: Vec::new(),
        };
        // The hub flushes `:\n` at once: once it is here, the subscriber is registered.
        let opened = events.fill_until(|raw| raw.len() >= 2, Duration::from_secs(5)).await;
        assert!(opened, "no opening comment from {url}?{query} within 5 s");
        assert_eq!(&events.raw[..2], b":\n", "stream starts with a comment");
        events.buffer.drain(..2);
        events
    }

    async fn fill_until(&mut self, done: impl Fn(&[u8]) -> bool, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while !done(&self.raw) {
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Ok(Some(Ok(chunk))) => {
                    self.raw.extend_from_slice(&chunk);
                    self.buffer.extend_from_slice(&chunk);
                }
                Ok(Some(Err(_))) | Ok(None) => return false,
                Err(_) => return false,
            }
        }
        true
    }

    /// The next update within `limit`, skipping comments; `None` on timeout or end of stream.
    pub async fn next_within(&mut self, limit: Duration) -> Option<Event> {
        match self.read_within(limit).await {
            Read::Update(event) => Some(event),
            Read::Silent | Read::Ended => None,
        }
    }

    /// The next update within `limit`, skipping comments, telling a silent stream from an ended
    /// one (a subscriber that must reconnect elsewhere when its node dies needs to know which).
    pub async fn read_within(&mut self, limit: Duration) -> Read {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse_block(&String::from_utf8_lossy(&block)) {
                    return Read::Update(event);
                }
                continue;
            }
            // Comment lines alone (`:\n`) are not followed by a blank line: drop them.
            while self.buffer.starts_with(b":\n") {
                self.buffer.drain(..2);
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Ok(Some(Ok(chunk))) => {
                    self.raw.extend_from_slice(&chunk);
                    self.buffer.extend_from_slice(&chunk);
                }
                Ok(Some(Err(_))) | Ok(None) => return Read::Ended,
                Err(_) => return Read::Silent,
            }
        }
    }

    /// The next update; panics after 5 s.
    pub async fn next(&mut self) -> Event {
        self.next_within(Duration::from_secs(5)).await.expect("an update within 5 s")
    }

    /// Asserts that no update arrives within `limit`.
    pub async fn assert_silent(&mut self, limit: Duration) {
        if let Some(event) = self.next_within(limit).await {
            panic!("unexpected update {event:?}");
        }
    }

    /// Whether the hub closed the stream within `limit` (after any pending bytes).
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Ok(Some(Ok(chunk))) => self.raw.extend_from_slice(&chunk),
                Ok(Some(Err(_))) | Ok(None) => return true,
                Err(_) => return false,
            }
        }
    }
}

fn parse_block(block: &str) -> Option<Event> {
    let mut event = Event::default();
    let mut data = Vec::new();
    let mut seen = false;
    for line in block.split('\n').filter(|l| !l.is_empty() && !l.starts_with(':')) {
        let (field, value) = line.split_once(": ").unwrap_or((line, ""));
        seen = true;
        match field {
            "id" => event.id = value.to_owned(),
            "data" => data.push(value.to_owned()),
            "event" => event.event_type = Some(value.to_owned()),
            "retry" => event.retry = Some(value.to_owned()),
            other => panic!("unexpected SSE field {other:?}"),
        }
    }
    event.data = data.join("\n");
    seen.then_some(event)
}

/// Opens a raw subscription to the hub at `addr` with `query`, reads the response head and the
/// opening comment, and then stops reading. Its receive buffer is small, so that the hub's side
/// fills quickly: a client that stopped reading (a frozen tab, or an attacker).
pub async fn stalled_reader(
    addr: SocketAddr,
    query: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("small receive buffer");
    socket.connect(&addr.into()).expect("connect");
    socket.set_nonblocking(true).expect("non-blocking");
    let mut stream = tokio::net::TcpStream::from_std(socket.into()).expect("tokio stream");
    let mut request = format!("GET {HUB}?{query} HTTP/1.1\r\nHost: {addr}\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("send request");
    let mut head = Vec::new();
    while !head.ends_with(b":\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.expect("response head");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
    stream
}

/// Resident memory of process `pid`, in bytes (Linux: `/proc/PID/status`).
pub fn process_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS line");
    kib * 1024
}

/// `GET path` with an optional bearer token and `If-None-Match`: status, body and headers.
pub async fn get_with(
    hub: &TestHub,
    path: &str,
    token: Option<&str>,
    etag: Option<&str>,
) -> (u16, String, reqwest::header::HeaderMap) {
    let mut request = client().get(hub.at(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(etag) = etag {
        request = request.header("if-none-match", etag);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, response.text().await.expect("body"), headers)
}

/// The `mercure_history_updates` gauge of a hub.
pub async fn history_updates(hub: &TestHub) -> u64 {
    let response = client().get(hub.at("/metrics")).send().await.expect("metrics");
    let text = response.text().await.expect("metrics body");
    text.lines()
        .find_map(|line| line.strip_prefix("mercure_history_updates "))
        .and_then(|value| value.trim().parse::<u64>().ok())
        .expect("history gauge")
}

/// Certificates made with openssl in `dir`: a certificate authority (`ca.pem`, `ca.key`) and,
/// signed by it, `{name}.pem` + `{name}.key` for each of `servers` (valid for 127.0.0.1 and
/// `localhost`) and each of `clients` (client authentication).
pub fn make_certificates(dir: &Path, servers: &[&str], clients: &[&str]) {
    let mut script = String::from(
        "set -e
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \\
  -subj /CN=test-ca -keyout ca.key -out ca.pem 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth\\n' > server.ext
printf 'extendedKeyUsage=clientAuth\\n' > client.ext
make() {
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj \"/CN=$1\" \\
    -keyout \"$1.key\" -out \"$1.csr\" 2>/dev/null
  openssl x509 -req -in \"$1.csr\" -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \\
    -extfile \"$2.ext\" -out \"$1.pem\" 2>/dev/null
}
",
    );
    for name in servers {
        script.push_str(&format!("make {name} server\n"));
    }
    for name in clients {
        script.push_str(&format!("make {name} client\n"));
    }
    let status = std::process::Command::new("sh")
        .args(["-c", &script])
        .current_dir(dir)
        .status()
        .expect("openssl runs");
    assert!(status.success(), "certificates made");
}

/// Reads a raw event stream until an event with `id` arrives (within 30 s; a bound for a hung
/// test only), for clients the [`Events`] reader does not cover (HTTPS with a test CA).
pub async fn read_until_id(
    body: &mut (impl Stream<Item = reqwest::Result<Bytes>> + Unpin),
    id: &str,
) {
    let mut text = String::new();
    let wanted = format!("id: {id}\n");
    let read = async {
        while !text.contains(&wanted) {
            let chunk = body.next().await.expect("the stream is open").expect("a chunk");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read).await.expect("the event arrives");
}

/// A free TCP port on loopback (free when this returns; the server binds it right after), never
/// the same twice in a test process: the kernel may hand a port it just freed out again, and two
/// servers given one port fail.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // Held until a new one is found, so that the kernel cannot give the same one again.
    let mut held = Vec::new();
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("an ephemeral port");
        let port = listener.local_addr().expect("its address").port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
        held.push(listener);
    }
}
