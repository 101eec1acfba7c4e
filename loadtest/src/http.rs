//! Minimal HTTP/1.1 client side: just what the Mercure protocol needs.
//!
//! - [`Target`]: a hub URL (`http://` or `https://`), resolved once;
//! - [`Connector`]: opens sockets, each bound to the next of the loopback source addresses
//!   `127.0.0.1 .. 127.0.0.N` so that tens of thousands of connections do not exhaust the ephemeral
//!   ports of a single address, and makes the TLS handshake on them for `https://`;
//! - [`Connection`]: what it returns, plain TCP or TLS over it, read and written alike;
//! - [`Endpoint`]: the two together, one per hub URL the run uses (publishers may use one node of
//!   a cluster and subscribers others);
//! - [`parse_head`] and [`read_head`]: response status line and headers (with `httparse`);
//! - [`ChunkedDecoder`]: incremental `Transfer-Encoding: chunked` decoding (event streams are
//!   chunked);
//! - [`KeepAlive`]: one persistent connection that sends a request and reads the whole answer,
//!   framed by `Content-Length` or chunked, for publishers.
//!
//! Requests are written by hand ([`subscribe_request`] for draft-07 `topic` or Mercure 1.0
//! `match_urlpattern` [`Selector`]s, [`publish_request`]): a subscriber costs
//! one socket, one small buffer and one task (and, over TLS, the client's TLS state; see
//! [`crate::tls`]).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use url::form_urlencoded;
use url::{Host, Url};

/// Largest response head accepted; a hub's heads are a few hundred bytes.
const MAX_HEAD: usize = 64 * 1024;
/// Largest publish answer accepted; the hub answers with the update id.
const MAX_BODY: usize = 1024 * 1024;
/// Headers parsed per response.
const MAX_HEADERS: usize = 64;
/// `EMFILE`: the process ran out of file descriptors.
const EMFILE: i32 = 24;

/// Why an exchange with the hub failed. [`HttpError::kind`] names the category counted in reports.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The TCP connection could not be established.
    #[error("connect: {0}")]
    Connect(io::Error),
    /// The TLS handshake failed (an `https://` URL).
    #[error("TLS handshake: {0}")]
    Tls(io::Error),
    /// Reading or writing failed on an established connection.
    #[error("i/o: {0}")]
    Io(io::Error),
    /// Something took longer than the configured timeout.
    #[error("timed out while {0}")]
    Timeout(&'static str),
    /// The hub closed the connection before the response was complete.
    #[error("connection closed by the hub before the response was complete")]
    Closed,
    /// The answer was not 200.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The response could not be parsed.
    #[error("malformed response: {0}")]
    Malformed(String),
}

impl HttpError {
    /// A short, stable category for counting errors of the same kind together.
    pub fn kind(&self) -> String {
        match self {
            HttpError::Connect(error) => match error.kind() {
                io::ErrorKind::ConnectionRefused => "connect: refused".into(),
                io::ErrorKind::AddrNotAvailable | io::ErrorKind::AddrInUse => {
                    "connect: no local address or port available".into()
                }
                _ if error.raw_os_error() == Some(EMFILE) => "connect: too many open files".into(),
                kind => format!("connect: {kind:?}"),
            },
            HttpError::Tls(error) => crate::tls::failure_kind(error),
            HttpError::Io(error) => match error.kind() {
                io::ErrorKind::ConnectionReset => "connection reset".into(),
                io::ErrorKind::BrokenPipe => "broken pipe".into(),
                kind => format!("i/o: {kind:?}"),
            },
            HttpError::Timeout(phase) => format!("timeout while {phase}"),
            HttpError::Closed => "closed before the response was complete".into(),
            HttpError::Status(status) => format!("HTTP {status}"),
            HttpError::Malformed(_) => "malformed response".into(),
        }
    }
}

/// The hub URL, resolved once.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as given.
    pub url: Url,
    /// The socket address connected to.
    pub addr: SocketAddr,
    /// For an `https://` URL, the name the hub's certificate must be valid for: the URL's host.
    pub tls_name: Option<ServerName<'static>>,
    /// Value of the `Host` header.
    pub host_header: String,
    /// Path (and query, if the URL has one) used in the request line.
    pub path_and_query: String,
}

impl Target {
    /// Parses and resolves a hub URL, `http://` or `https://`.
    pub async fn resolve(url: &str) -> anyhow::Result<Self> {
        let url =
            Url::parse(url).map_err(|error| anyhow::anyhow!("invalid hub URL {url:?}: {error}"))?;
        let https = match url.scheme() {
            "http" => false,
            "https" => true,
            _ => anyhow::bail!("a hub URL must be http:// or https://, not {url}"),
        };
        let host =
            url.host_str().ok_or_else(|| anyhow::anyhow!("the hub URL {url} has no host"))?;
        let tls_name = match url.host() {
            Some(host) if https => Some(server_name(host)?),
            _ => None,
        };
        // Both schemes have a known default port.
        let port = url.port_or_known_default().unwrap_or(if https { 443 } else { 80 });
        let addr = tokio::net::lookup_host((host, port))
            .await
            .map_err(|error| anyhow::anyhow!("cannot resolve {host}: {error}"))?
            .next()
            .ok_or_else(|| anyhow::anyhow!("{host} resolves to no address"))?;
        let host_header = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let mut path_and_query = url.path().to_owned();
        if let Some(query) = url.query() {
            path_and_query.push('?');
            path_and_query.push_str(query);
        }
        Ok(Target { url, addr, tls_name, host_header, path_and_query })
    }
}

/// The name an `https://` hub's certificate must be valid for: the host of its URL. An address
/// is matched against the certificate's IP address names, a domain against its DNS names.
fn server_name(host: Host<&str>) -> anyhow::Result<ServerName<'static>> {
    Ok(match host {
        Host::Ipv4(ip) => ServerName::IpAddress(IpAddr::V4(ip).into()),
        Host::Ipv6(ip) => ServerName::IpAddress(IpAddr::V6(ip).into()),
        Host::Domain(name) => ServerName::try_from(name.to_owned()).map_err(|error| {
            anyhow::anyhow!("{name:?} cannot be checked against a certificate: {error}")
        })?,
    })
}

/// What a [`Connector`] needs for the TLS handshake.
struct TlsSetup {
    /// Holds the one client configuration of the run, shared by every connection.
    connector: TlsConnector,
    /// The name the hub's certificate must be valid for.
    name: ServerName<'static>,
}

impl std::fmt::Debug for TlsSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSetup").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Opens connections to the target, spreading them over loopback source addresses, with a TLS
/// handshake when the target is `https://`.
#[derive(Debug)]
pub struct Connector {
    target: SocketAddr,
    /// Source addresses used in turn; empty lets the system choose.
    sources: Vec<Ipv4Addr>,
    next: AtomicUsize,
    /// `None`: plain TCP.
    tls: Option<TlsSetup>,
}

impl Connector {
    /// A connector to `target` over `source_ips` loopback addresses (`127.0.0.1 ..= 127.0.0.N`).
    /// Binding is used only when the target itself is an IPv4 loopback address: other addresses
    /// are not reachable from 127.0.0.x.
    pub fn new(target: SocketAddr, source_ips: u8) -> Self {
        let loopback = matches!(target.ip(), IpAddr::V4(ip) if ip.is_loopback());
        let sources = if loopback {
            (1..=source_ips).map(|last| Ipv4Addr::new(127, 0, 0, last)).collect()
        } else {
            Vec::new()
        };
        Connector { target, sources, next: AtomicUsize::new(0), tls: None }
    }

    /// The same connector, making a TLS handshake with `config` on each connection and checking
    /// that the hub's certificate is valid for `name`.
    pub fn with_tls(self, config: Arc<ClientConfig>, name: ServerName<'static>) -> Self {
        Connector { tls: Some(TlsSetup { connector: TlsConnector::from(config), name }), ..self }
    }

    /// Number of source addresses in use (0 when the system chooses).
    pub fn source_count(&self) -> usize {
        self.sources.len()
    }

    /// Opens one connection, bound to the next source address, with Nagle's algorithm off (each
    /// request is written at once and must leave at once). For `https://` the TLS handshake is
    /// part of it, so it counts in the connect time.
    pub async fn connect(&self) -> Result<Connection, HttpError> {
        let socket = match self.target {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(HttpError::Connect)?;
        if !self.sources.is_empty() {
            let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.sources.len();
            let local = SocketAddr::new(IpAddr::V4(self.sources[turn]), 0);
            socket.bind(local).map_err(HttpError::Connect)?;
        }
        let stream = socket.connect(self.target).await.map_err(HttpError::Connect)?;
        stream.set_nodelay(true).map_err(HttpError::Connect)?;
        let Some(tls) = &self.tls else { return Ok(Connection::Plain(stream)) };
        let stream =
            tls.connector.connect(tls.name.clone(), stream).await.map_err(HttpError::Tls)?;
        Ok(Connection::Tls(Box::new(stream)))
    }
}

/// One connection to the hub, plain or TLS, read and written through tokio's traits. The TLS
/// state is boxed so that a plain connection stays the size of a `TcpStream`.
#[derive(Debug)]
pub enum Connection {
    /// `http://`.
    Plain(TcpStream),
    /// `https://`.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection {
    /// Writes all of `bytes` and flushes them: TLS buffers records until flushed.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes).await?;
        self.flush().await
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Connection::Tls(stream) => match Pin::new(stream.as_mut()).poll_read(cx, buf) {
                // The hub closed the connection without a TLS close_notify: an end, as the same
                // close is on a plain connection, so that both schemes count closes alike.
                Poll::Ready(Err(error)) if error.kind() == io::ErrorKind::UnexpectedEof => {
                    Poll::Ready(Ok(()))
                }
                other => other,
            },
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Connection::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Connection::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Connection::Plain(stream) => stream.is_write_vectored(),
            Connection::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Connection::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Connection::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One hub URL the run talks to, with the connector to it.
#[derive(Debug)]
pub struct Endpoint {
    /// The URL, resolved.
    pub target: Target,
    /// Opens connections to it.
    pub connector: Connector,
}

impl Endpoint {
    /// Resolves `url`; connections to it are spread over `source_ips` loopback source addresses.
    /// An `https://` URL needs `tls`, the client configuration built from `--tls-ca`.
    pub async fn resolve(
        url: &str,
        source_ips: u8,
        tls: Option<&Arc<ClientConfig>>,
    ) -> anyhow::Result<Self> {
        let target = Target::resolve(url).await?;
        let mut connector = Connector::new(target.addr, source_ips);
        if let Some(name) = &target.tls_name {
            let config = tls.ok_or_else(|| {
                anyhow::anyhow!(
                    "an https:// URL needs --tls-ca PATH, the PEM certificate of the CA that \
                     signed the hub's certificate (or the hub's self-signed certificate): the \
                     tool has no built-in trust roots"
                )
            })?;
            connector = connector.with_tls(Arc::clone(config), name.clone());
        }
        Ok(Endpoint { target, connector })
    }

    /// `host:port` as written in the URL: names the endpoint in error kinds and figures.
    pub fn name(&self) -> &str {
        &self.target.host_header
    }
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// `Content-Length` (or no body at all for 1xx, 204, 304).
    Length(u64),
    /// Neither: the body ends when the connection closes.
    UntilClose,
}

/// The parts of a response head the tool uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// Status code.
    pub status: u16,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the connection can carry another request afterwards.
    pub keep_alive: bool,
    /// The `Last-Event-ID` response header, if any.
    pub last_event_id: Option<String>,
}

/// Parses a response head at the start of `buf`. Returns the head and its length, or `None` when
/// more bytes are needed.
pub fn parse_head(buf: &[u8]) -> Result<Option<(ResponseHead, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let length = match response.parse(buf) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(HttpError::Malformed(error.to_string())),
    };
    let status = response.code.ok_or_else(|| HttpError::Malformed("no status".into()))?;
    let mut chunked = false;
    let mut content_length = None;
    let mut connection_close = response.version == Some(0);
    let mut last_event_id = None;
    for header in response.headers.iter() {
        let value = String::from_utf8_lossy(header.value);
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            // chunked must be the last coding when present (RFC 9112 §6.1).
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"));
        } else if header.name.eq_ignore_ascii_case("content-length") {
            let parsed = value.trim().parse::<u64>().map_err(|_| {
                HttpError::Malformed(format!("Content-Length {value:?} is not a number"))
            })?;
            content_length = Some(parsed);
        } else if header.name.eq_ignore_ascii_case("connection") {
            for option in value.split(',').map(str::trim) {
                if option.eq_ignore_ascii_case("close") {
                    connection_close = true;
                } else if option.eq_ignore_ascii_case("keep-alive") && response.version == Some(0) {
                    connection_close = false;
                }
            }
        } else if header.name.eq_ignore_ascii_case("last-event-id") {
            last_event_id = Some(value.into_owned());
        }
    }
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked
    } else if let Some(length) = content_length {
        Framing::Length(length)
    } else {
        Framing::UntilClose
    };
    let keep_alive = !connection_close && framing != Framing::UntilClose;
    Ok(Some((ResponseHead { status, framing, keep_alive, last_event_id }, length)))
}

/// Reads from `stream` into `buf` (which may already hold the start of the answer) until a whole
/// response head is there. Returns the head and its length; the bytes after it stay in `buf`.
pub async fn read_head(
    stream: &mut Connection,
    buf: &mut Vec<u8>,
) -> Result<(ResponseHead, usize), HttpError> {
    loop {
        if let Some(parsed) = parse_head(buf)? {
            return Ok(parsed);
        }
        if buf.len() >= MAX_HEAD {
            return Err(HttpError::Malformed("response head too large".into()));
        }
        buf.reserve(4096);
        if stream.read_buf(buf).await.map_err(HttpError::Io)? == 0 {
            return Err(HttpError::Closed);
        }
    }
}

/// Error in chunked framing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad chunked framing: {0}")]
pub struct ChunkError(&'static str);

/// Where a [`ChunkedDecoder`] is in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading the hexadecimal size; `ext` once past it (in `;extensions`).
    Size { value: u64, digits: u8, ext: bool },
    /// Got the CR after the size line.
    SizeLf { value: u64 },
    /// Inside the data of a chunk, this many bytes left.
    Data(u64),
    /// Expecting the CR after a chunk's data.
    DataCr,
    /// Expecting the LF after a chunk's data.
    DataLf,
    /// In the trailer section, at a line of this many bytes so far.
    Trailer { line: usize },
    /// Got a CR in the trailer section.
    TrailerLf { line: usize },
    /// The last chunk and the trailers were read.
    Done,
}

/// Incremental decoder of `Transfer-Encoding: chunked`: bytes can arrive split anywhere.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: ChunkState,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        ChunkedDecoder { state: ChunkState::Size { value: 0, digits: 0, ext: false } }
    }

    /// Whether the terminating chunk (and trailers) have been read.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes `input`, handing each piece of body data to `sink`. Returns how many bytes of
    /// `input` belong to the body: all of them, unless the body ended inside `input`.
    pub fn decode(
        &mut self,
        input: &[u8],
        mut sink: impl FnMut(&[u8]),
    ) -> Result<usize, ChunkError> {
        let mut at = 0;
        while at < input.len() {
            match self.state {
                ChunkState::Data(left) => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(input.len() - at);
                    sink(&input[at..at + take]);
                    at += take;
                    let left = left - take as u64;
                    self.state =
                        if left == 0 { ChunkState::DataCr } else { ChunkState::Data(left) };
                    continue;
                }
                ChunkState::Done => return Ok(at),
                _ => {}
            }
            let byte = input[at];
            at += 1;
            self.state = match self.state {
                ChunkState::Size { value, digits, ext } => match byte {
                    b'\r' | b'\n' if digits == 0 => return Err(ChunkError("empty chunk size")),
                    b'\r' => ChunkState::SizeLf { value },
                    b'\n' => Self::after_size(value),
                    _ if ext => ChunkState::Size { value, digits, ext },
                    b';' | b' ' | b'\t' if digits > 0 => {
                        ChunkState::Size { value, digits, ext: true }
                    }
                    _ => {
                        let digit = (byte as char)
                            .to_digit(16)
                            .ok_or(ChunkError("chunk size is not hexadecimal"))?;
                        if digits >= 15 {
                            return Err(ChunkError("chunk size too large"));
                        }
                        ChunkState::Size {
                            value: value * 16 + u64::from(digit),
                            digits: digits + 1,
                            ext,
                        }
                    }
                },
                ChunkState::SizeLf { value } => match byte {
                    b'\n' => Self::after_size(value),
                    _ => return Err(ChunkError("CR without LF after the chunk size")),
                },
                ChunkState::DataCr => match byte {
                    b'\r' => ChunkState::DataLf,
                    b'\n' => ChunkState::Size { value: 0, digits: 0, ext: false },
                    _ => return Err(ChunkError("chunk data longer than its size")),
                },
                ChunkState::DataLf => match byte {
                    b'\n' => ChunkState::Size { value: 0, digits: 0, ext: false },
                    _ => return Err(ChunkError("CR without LF after chunk data")),
                },
                ChunkState::Trailer { line } => match byte {
                    b'\r' => ChunkState::TrailerLf { line },
                    b'\n' if line == 0 => ChunkState::Done,
                    b'\n' => ChunkState::Trailer { line: 0 },
                    _ => ChunkState::Trailer { line: line.saturating_add(1) },
                },
                ChunkState::TrailerLf { line } => match byte {
                    b'\n' if line == 0 => ChunkState::Done,
                    b'\n' => ChunkState::Trailer { line: 0 },
                    _ => return Err(ChunkError("CR without LF in the trailers")),
                },
                // Handled before reading a byte.
                ChunkState::Data(_) | ChunkState::Done => self.state,
            };
        }
        Ok(at)
    }

    /// State after a complete size line: data, or the trailers after the last (empty) chunk.
    fn after_size(value: u64) -> ChunkState {
        if value == 0 {
            ChunkState::Trailer { line: 0 }
        } else {
            ChunkState::Data(value)
        }
    }
}

/// A response read in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

/// One keep-alive connection to the hub, reopened when the hub closes it or an exchange fails.
#[derive(Debug)]
pub struct KeepAlive {
    stream: Option<Connection>,
    buf: Vec<u8>,
    timeout: Duration,
}

impl KeepAlive {
    /// A client whose connects and exchanges are each bounded by `timeout`.
    pub fn new(timeout: Duration) -> Self {
        KeepAlive { stream: None, buf: Vec::with_capacity(4096), timeout }
    }

    /// Opens the connection now if it is not open, so that the first request does not pay for it.
    pub async fn connect(&mut self, connector: &Connector) -> Result<(), HttpError> {
        if self.stream.is_none() {
            let stream = tokio::time::timeout(self.timeout, connector.connect())
                .await
                .map_err(|_| HttpError::Timeout("connecting"))??;
            self.stream = Some(stream);
            self.buf.clear();
        }
        Ok(())
    }

    /// Sends `request` (a complete HTTP/1.1 request) and reads the whole response.
    pub async fn send(
        &mut self,
        connector: &Connector,
        request: &[u8],
    ) -> Result<Response, HttpError> {
        self.connect(connector).await?;
        let outcome = tokio::time::timeout(self.timeout, self.exchange(request))
            .await
            .unwrap_or(Err(HttpError::Timeout("waiting for the answer")));
        match outcome {
            Ok((response, keep_alive)) => {
                if !keep_alive {
                    self.stream = None;
                }
                Ok(response)
            }
            Err(error) => {
                // The connection is in an unknown state: start over on a new one.
                self.stream = None;
                Err(error)
            }
        }
    }

    /// Writes the request and reads the answer; returns it and whether the connection stays open.
    async fn exchange(&mut self, request: &[u8]) -> Result<(Response, bool), HttpError> {
        let stream = self.stream.as_mut().ok_or(HttpError::Closed)?;
        stream.send(request).await.map_err(HttpError::Io)?;
        let (head, head_length) = read_head(stream, &mut self.buf).await?;
        self.buf.drain(..head_length);
        let mut body = Vec::new();
        match head.framing {
            Framing::Length(length) => {
                let length = usize::try_from(length).unwrap_or(usize::MAX);
                if length > MAX_BODY {
                    return Err(HttpError::Malformed("response body too large".into()));
                }
                while self.buf.len() < length {
                    self.buf.reserve(length - self.buf.len());
                    if stream.read_buf(&mut self.buf).await.map_err(HttpError::Io)? == 0 {
                        return Err(HttpError::Closed);
                    }
                }
                body.extend(self.buf.drain(..length));
            }
            Framing::Chunked => {
                let mut decoder = ChunkedDecoder::new();
                loop {
                    let used = decoder
                        .decode(&self.buf, |piece| body.extend_from_slice(piece))
                        .map_err(|error| HttpError::Malformed(error.to_string()))?;
                    self.buf.drain(..used);
                    if decoder.is_done() {
                        break;
                    }
                    if body.len() > MAX_BODY {
                        return Err(HttpError::Malformed("response body too large".into()));
                    }
                    self.buf.reserve(4096);
                    if stream.read_buf(&mut self.buf).await.map_err(HttpError::Io)? == 0 {
                        return Err(HttpError::Closed);
                    }
                }
            }
            Framing::UntilClose => {
                loop {
                    if self.buf.len() > MAX_BODY {
                        return Err(HttpError::Malformed("response body too large".into()));
                    }
                    self.buf.reserve(4096);
                    if stream.read_buf(&mut self.buf).await.map_err(HttpError::Io)? == 0 {
                        break;
                    }
                }
                body.append(&mut self.buf);
            }
        }
        Ok((Response { status: head.status, body }, head.keep_alive))
    }
}

/// One topic selector of a subscription, and the query parameter that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `topic=`: an exact topic or a URI template (draft-07).
    Topic(String),
    /// `match_urlpattern=`: a WHATWG URL Pattern (Mercure 1.0), such as
    /// `https://example.com/t/1/:x`.
    UrlPattern(String),
}

impl Selector {
    /// The query parameter and its value.
    fn pair(&self) -> (&'static str, &str) {
        match self {
            Selector::Topic(topic) => ("topic", topic),
            Selector::UrlPattern(pattern) => ("match_urlpattern", pattern),
        }
    }
}

/// A `GET` subscription request for `selectors`, resuming after `last_event_id` if given, with
/// `Authorization: Bearer` when there is a token (none for an anonymous subscriber).
pub fn subscribe_request(
    target: &Target,
    token: Option<&str>,
    selectors: &[Selector],
    last_event_id: Option<&str>,
) -> Vec<u8> {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for selector in selectors {
        let (name, value) = selector.pair();
        query.append_pair(name, value);
    }
    let separator = if target.path_and_query.contains('?') { '&' } else { '?' };
    let mut request = format!(
        "GET {}{separator}{} HTTP/1.1\r\nHost: {}\r\n",
        target.path_and_query,
        query.finish(),
        target.host_header,
    );
    if let Some(token) = token {
        request.push_str("Authorization: Bearer ");
        request.push_str(token);
        request.push_str("\r\n");
    }
    request.push_str("Accept: text/event-stream\r\nCache-Control: no-cache\r\n");
    if let Some(id) = last_event_id {
        request.push_str("Last-Event-ID: ");
        request.push_str(id);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request.into_bytes()
}

/// A form `POST` publishing `data` to `topic`.
pub fn publish_request(target: &Target, token: &str, topic: &str, data: &str) -> Vec<u8> {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("topic", topic)
        .append_pair("data", data)
        .finish();
    format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        target.path_and_query,
        target.host_header,
        body.len(),
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(pieces: &[&[u8]]) -> Result<(Vec<u8>, bool), ChunkError> {
        let mut decoder = ChunkedDecoder::new();
        let mut out = Vec::new();
        for piece in pieces {
            decoder.decode(piece, |data| out.extend_from_slice(data))?;
        }
        Ok((out, decoder.is_done()))
    }

    const STREAM: &[u8] =
        b"3\r\n:\n\n\r\n1A;name=value\r\nid: a\ndata: hello world!\n\n\r\n0\r\nX: y\r\n\r\n";

    #[test]
    fn chunked_body_in_one_piece() {
        let (out, done) = decode_all(&[STREAM]).expect("valid framing");
        assert_eq!(out, b":\n\nid: a\ndata: hello world!\n\n");
        assert!(done);
    }

    #[test]
    fn chunked_body_split_at_every_byte() {
        let pieces: Vec<&[u8]> = STREAM.chunks(1).collect();
        let (out, done) = decode_all(&pieces).expect("valid framing");
        assert_eq!(out, b":\n\nid: a\ndata: hello world!\n\n");
        assert!(done);
        // And at every split point in two.
        for split in 0..STREAM.len() {
            let (out, done) =
                decode_all(&[&STREAM[..split], &STREAM[split..]]).expect("valid framing");
            assert_eq!(out, b":\n\nid: a\ndata: hello world!\n\n", "split at {split}");
            assert!(done);
        }
    }

    #[test]
    fn chunked_decoding_stops_at_the_end_of_the_body() {
        let mut input = b"2\r\nok\r\n0\r\n\r\n".to_vec();
        let body_length = input.len();
        input.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        let mut decoder = ChunkedDecoder::new();
        let used = decoder.decode(&input, |_| {}).expect("valid framing");
        assert_eq!(used, body_length);
        assert!(decoder.is_done());
    }

    #[test]
    fn bare_lf_is_tolerated_and_garbage_refused() {
        let (out, done) = decode_all(&[b"2\nab\n0\n\n"]).expect("lenient framing");
        assert_eq!(out, b"ab");
        assert!(done);
        assert!(decode_all(&[b"zz\r\n"]).is_err());
        assert!(decode_all(&[b"2\r\nabc\r\n"]).is_err());
        assert!(decode_all(&[b"\r\n"]).is_err());
        assert!(decode_all(&[b"ffffffffffffffffff\r\n"]).is_err());
    }

    #[test]
    fn unfinished_stream_is_not_done() {
        let (out, done) = decode_all(&[b"5\r\nab"]).expect("valid so far");
        assert_eq!(out, b"ab");
        assert!(!done);
    }

    #[test]
    fn heads_and_their_framing() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                     Transfer-Encoding: chunked\r\nLast-Event-ID: urn:uuid:1\r\n\r\n3\r\n:\n\n";
        let (parsed, length) = parse_head(head).expect("valid").expect("complete");
        assert_eq!(parsed.status, 200);
        assert_eq!(parsed.framing, Framing::Chunked);
        assert!(parsed.keep_alive);
        assert_eq!(parsed.last_event_id.as_deref(), Some("urn:uuid:1"));
        assert_eq!(&head[length..], b"3\r\n:\n\n");

        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 45\r\n\r\n";
        let (parsed, _) = parse_head(head).expect("valid").expect("complete");
        assert_eq!(parsed.framing, Framing::Length(45));

        let head = b"HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        let (parsed, _) = parse_head(head).expect("valid").expect("complete");
        assert_eq!(parsed.status, 401);
        assert!(!parsed.keep_alive);

        let head = b"HTTP/1.0 200 OK\r\n\r\n";
        let (parsed, _) = parse_head(head).expect("valid").expect("complete");
        assert_eq!(parsed.framing, Framing::UntilClose);
        assert!(!parsed.keep_alive);

        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le").expect("valid so far"), None);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }

    fn target() -> Target {
        Target {
            url: Url::parse("http://127.0.0.1:8090/.well-known/mercure").expect("valid URL"),
            addr: "127.0.0.1:8090".parse().expect("valid address"),
            tls_name: None,
            host_header: "127.0.0.1:8090".into(),
            path_and_query: "/.well-known/mercure".into(),
        }
    }

    #[test]
    fn requests_are_well_formed() {
        let topics = [
            Selector::Topic("https://example.com/t/1/{x}".to_owned()),
            Selector::Topic("a b".to_owned()),
        ];
        let request = subscribe_request(&target(), Some("TOKEN"), &topics, Some("urn:uuid:7"));
        let text = String::from_utf8(request).expect("ASCII");
        assert_eq!(
            text,
            "GET /.well-known/mercure?topic=https%3A%2F%2Fexample.com%2Ft%2F1%2F%7Bx%7D&topic=a+b \
             HTTP/1.1\r\nHost: 127.0.0.1:8090\r\nAuthorization: Bearer TOKEN\r\n\
             Accept: text/event-stream\r\nCache-Control: no-cache\r\nLast-Event-ID: urn:uuid:7\r\n\r\n"
        );

        // Mercure 1.0: the pattern percent-encoded (`:` too), and no Authorization when anonymous.
        let patterns = [Selector::UrlPattern("https://example.com/t/1/:x".to_owned())];
        let request = subscribe_request(&target(), None, &patterns, None);
        let text = String::from_utf8(request).expect("ASCII");
        assert_eq!(
            text,
            "GET /.well-known/mercure?match_urlpattern=https%3A%2F%2Fexample.com%2Ft%2F1%2F%3Ax \
             HTTP/1.1\r\nHost: 127.0.0.1:8090\r\n\
             Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
        );

        let request = publish_request(&target(), "TOKEN", "https://e.com/a", "1 2&x");
        let text = String::from_utf8(request).expect("ASCII");
        let body = "topic=https%3A%2F%2Fe.com%2Fa&data=1+2%26x";
        assert!(text.starts_with("POST /.well-known/mercure HTTP/1.1\r\n"));
        assert!(text.contains(&format!("Content-Length: {}\r\n\r\n", body.len())));
        assert!(text.ends_with(body));
    }

    #[tokio::test]
    async fn https_targets_name_their_host_for_the_certificate() {
        let target = Target::resolve("https://127.0.0.1/.well-known/mercure").await.expect("valid");
        assert_eq!(target.addr, "127.0.0.1:443".parse().expect("valid address"));
        assert_eq!(target.host_header, "127.0.0.1");
        let ip = IpAddr::from([127, 0, 0, 1]);
        assert_eq!(target.tls_name, Some(ServerName::IpAddress(ip.into())));

        let target = Target::resolve("https://localhost:8443/m").await.expect("valid");
        let name = ServerName::try_from("localhost").expect("a DNS name");
        assert_eq!(target.tls_name, Some(name));
        assert_eq!(target.host_header, "localhost:8443");

        let target = Target::resolve("http://127.0.0.1:8080/m").await.expect("valid");
        assert_eq!(target.tls_name, None);
        assert!(Target::resolve("ws://127.0.0.1/m").await.is_err());
    }

    #[test]
    fn loopback_targets_get_source_addresses() {
        let connector = Connector::new("127.0.0.1:80".parse().expect("valid"), 3);
        assert_eq!(connector.source_count(), 3);
        let connector = Connector::new("[::1]:80".parse().expect("valid"), 3);
        assert_eq!(connector.source_count(), 0);
    }
}
