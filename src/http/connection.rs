//! One client connection: the TCP stream under the HTTP server, watched for a client that stops
//! reading.
//!
//! A subscriber that stops reading (a frozen tab, a proxy that buffers, an attacker) fills its
//! socket buffers; from then on the HTTP layer cannot write, so it stops polling that stream, and
//! no timer of the stream itself can run. The check therefore lives here, under the HTTP layer:
//! when the socket has refused every byte for `dispatch_timeout` while the hub had something to
//! send, [`Connection`] fails the write. The HTTP layer then drops the connection, which ends the
//! subscriber's stream (its client resumes from history when it comes back), and the socket is
//! reset rather than closed, so the kernel frees its buffered data at once.
//!
//! This is the one mechanism that ends a connection for not reading; the router's own check is
//! the queue of updates waiting for a subscriber (`queue_full`). The connection marks itself
//! [`CutOff`] so that the subscriber's stream, when dropped, tells the router why it ended, and
//! the router counts it once under `dispatch_timeout`.
//!
//! Connections are also counted here, against `max_connections` ([`ConnectionLimit`]): each one
//! holds a [`Permit`] while it is open. Past the limit, a connection is still read, so that its
//! client gets an answer it understands (503 with `Retry-After`, then the connection closes)
//! rather than a connection that hangs in the listen queue; a small budget of such refusals
//! ([`REFUSALS`]) bounds the files they take, and beyond it connections are closed at once.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::rt::net::TcpStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::hub::subscriber::CutOff;

/// How a transport is aborted when its client stopped reading.
pub trait Abort {
    /// Makes the coming close discard unsent data and reset the connection.
    fn abort(&self);
}

impl Abort for TcpStream {
    fn abort(&self) {
        // A linger time of zero turns the close into a reset: the kernel drops the unsent data
        // (up to megabytes per stalled client) instead of trying to deliver it for minutes.
        if let Err(error) = socket2::SockRef::from(self).set_linger(Some(Duration::ZERO)) {
            tracing::debug!(%error, "cannot set SO_LINGER on a stalled connection");
        }
    }
}

/// Connections over `max_connections` that may be open at once to be answered 503; more are
/// closed without an answer. Part of the files `max_connections` leaves to the process
/// ([`crate::config::RESERVED_FILES`]).
pub const REFUSALS: usize = 32;

/// How long a connection over `max_connections` stays open: time to send its request and read
/// the 503. HTTP/1.1 closes after that answer (`Connection: close`); HTTP/2 cannot ask for that,
/// and would otherwise keep the connection, and its 503s, for as long as the client pings it.
pub const REFUSAL_TIME: Duration = Duration::from_secs(5);

/// The connections open at once, shared by every worker, against `max_connections`.
#[derive(Debug, Clone)]
pub struct ConnectionLimit {
    counts: Arc<Counts>,
}

#[derive(Debug)]
struct Counts {
    max: usize,
    open: AtomicUsize,
    refusing: AtomicUsize,
}

/// An open connection's place under [`ConnectionLimit`], given back when dropped.
#[derive(Debug)]
pub struct Permit {
    counts: Arc<Counts>,
    over_limit: bool,
}

/// Put in the data of a connection that came over `max_connections`: each of its requests is
/// answered 503, and the connection closed.
#[derive(Debug, Clone, Copy)]
pub struct OverLimit {
    /// `max_connections`.
    pub max: usize,
}

impl ConnectionLimit {
    /// Counts connections against `max`.
    pub fn new(max: usize) -> Self {
        let counts = Counts { max, open: AtomicUsize::new(0), refusing: AtomicUsize::new(0) };
        Self { counts: Arc::new(counts) }
    }

    /// `max_connections` as configured, or the process's open-file limit less the files it
    /// keeps for itself.
    pub fn from_config(max_connections: Option<usize>) -> Self {
        Self::new(max_connections.unwrap_or_else(|| {
            let files = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
            let free = files.saturating_sub(crate::config::RESERVED_FILES).max(1);
            usize::try_from(free).unwrap_or(usize::MAX)
        }))
    }

    /// A permit for a newly accepted connection: within the limit, or over it (to be answered
    /// 503) while fewer than [`REFUSALS`] such connections are open; `None` past both, and the
    /// connection should be closed at once.
    pub fn admit(&self) -> Option<Permit> {
        let counts = &self.counts;
        let take = |count: &AtomicUsize, max: usize| {
            count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
        };
        if take(&counts.open, counts.max).is_ok() {
            return Some(Permit { counts: counts.clone(), over_limit: false });
        }
        take(&counts.refusing, REFUSALS)
            .ok()
            .map(|_| Permit { counts: counts.clone(), over_limit: true })
    }

    /// Connections open within the limit.
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.counts.open.load(Ordering::Acquire)
    }
}

impl Permit {
    /// Set when the connection came over the limit and is only to be answered 503.
    pub fn over_limit(&self) -> Option<OverLimit> {
        self.over_limit.then_some(OverLimit { max: self.counts.max })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let count = if self.over_limit { &self.counts.refusing } else { &self.counts.open };
        count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A client connection whose writes may not stall for longer than a timeout.
#[derive(Debug)]
pub struct Connection<T = TcpStream> {
    io: T,
    /// Its place under `max_connections`, for as long as it is open.
    permit: Option<Permit>,
    /// Over `max_connections`: when reads start answering end-of-file, ending the connection.
    refused_until: Option<Pin<Box<Sleep>>>,
    /// `dispatch_timeout`; `None` never cuts a connection off.
    timeout: Option<Duration>,
    /// Runs while writes are refused; allocated on the first stall, re-armed on later ones.
    stall: Option<Pin<Box<Sleep>>>,
    stalled: bool,
    cut_off: CutOff,
}

impl<T: AsyncRead + AsyncWrite + Abort + Unpin> Connection<T> {
    /// Wraps an accepted connection.
    pub fn new(io: T, timeout: Option<Duration>) -> Self {
        Self {
            io,
            timeout,
            permit: None,
            refused_until: None,
            stall: None,
            stalled: false,
            cut_off: CutOff::default(),
        }
    }

    /// Holds `permit` for as long as the connection is open; over the limit, the connection
    /// ends after [`REFUSAL_TIME`], whatever its protocol.
    pub fn with_permit(mut self, permit: Permit) -> Self {
        if permit.over_limit {
            self.refused_until = Some(Box::pin(tokio::time::sleep(REFUSAL_TIME)));
        }
        self.permit = Some(permit);
        self
    }

    /// Set when this connection came over `max_connections`.
    pub fn over_limit(&self) -> Option<OverLimit> {
        self.permit.as_ref().and_then(Permit::over_limit)
    }

    /// The flag this connection raises when it ends itself for not reading.
    pub fn cut_off(&self) -> CutOff {
        self.cut_off.clone()
    }

    /// Follows one write attempt: progress clears the stall; a refusal starts (or continues)
    /// it, and once it has lasted the timeout the write fails.
    fn watch(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match result {
            Poll::Ready(Ok(written)) => {
                self.stalled = false;
                Poll::Ready(Ok(written))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => {
                let Some(timeout) = self.timeout else { return Poll::Pending };
                let deadline = Instant::now() + timeout;
                let stall =
                    self.stall.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if !self.stalled {
                    self.stalled = true;
                    stall.as_mut().reset(deadline);
                }
                // Polling the timer registers this task to be woken when it fires: the HTTP
                // layer then tries to write again and meets the error below.
                if stall.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.cut_off.raise();
                self.io.abort();
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client accepted no data for dispatch_timeout",
                )))
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Abort + Unpin> AsyncRead for Connection<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // As if the client had closed: the HTTP layer then ends the connection cleanly.
        if let Some(end) = &mut self.refused_until {
            if end.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Abort + Unpin> AsyncWrite for Connection<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    impl Abort for DuplexStream {
        fn abort(&self) {}
    }

    /// Writes until the peer's buffer is full, returning how much was accepted.
    async fn fill(connection: &mut Connection<DuplexStream>) -> usize {
        let mut written = 0;
        while let Some(result) = connection.write(&[0u8; 256]).now_or_never() {
            written += result.expect("the peer has room");
        }
        written
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_reads_nothing_is_cut_off_after_the_timeout() {
        let (server, mut client) = tokio::io::duplex(1024);
        let mut connection = Connection::new(server, Some(Duration::from_secs(5)));
        let cut_off = connection.cut_off();
        assert_eq!(fill(&mut connection).await, 1024);
        // Refused for less than the timeout: still waiting, not cut.
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(connection.write(b"x").now_or_never().is_none());
        assert!(!cut_off.is_raised());
        // The client reads a little: progress restarts the clock.
        let mut buffer = [0u8; 100];
        client.read_exact(&mut buffer).await.expect("read");
        fill(&mut connection).await;
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(connection.write(b"x").now_or_never().is_none(), "4 s since the last progress");
        assert!(!cut_off.is_raised());
        // Five seconds without accepting a byte: the write fails and the flag is up.
        let error = connection.write(b"x").await.expect_err("cut off");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(cut_off.is_raised());
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_over_the_limit_reads_end_of_file_after_the_refusal_time() {
        let limit = ConnectionLimit::new(1);
        let within = limit.admit().expect("within the limit");
        let over = limit.admit().expect("to be answered 503");
        let (server, mut client) = tokio::io::duplex(1024);
        let (kept_server, _kept_client) = tokio::io::duplex(1024);
        let mut refused = Connection::new(server, None).with_permit(over);
        let mut kept = Connection::new(kept_server, None).with_permit(within);
        // Until then, it reads what the client sends.
        client.write_all(b"GET").await.expect("write");
        let mut buffer = [0u8; 16];
        assert_eq!(refused.read(&mut buffer).await.expect("read"), 3);
        tokio::time::advance(REFUSAL_TIME).await;
        let read = refused.read(&mut buffer).now_or_never().expect("answered at once");
        assert_eq!(read.expect("end of file"), 0);
        assert!(kept.read(&mut buffer).now_or_never().is_none(), "within the limit: still open");
    }

    #[test]
    fn connections_over_the_limit_are_refused_within_a_budget_and_permits_come_back() {
        let limit = ConnectionLimit::new(2);
        let admitted: Vec<Permit> = (0..2).map(|_| limit.admit().expect("within")).collect();
        assert!(admitted.iter().all(|permit| permit.over_limit().is_none()));
        assert_eq!(limit.open(), 2);
        let refused: Vec<Permit> =
            (0..REFUSALS).map(|_| limit.admit().expect("to be answered 503")).collect();
        assert!(refused.iter().all(|permit| permit.over_limit().is_some_and(|o| o.max == 2)));
        assert!(limit.admit().is_none(), "past the refusal budget: closed at once");
        drop(refused);
        assert!(limit.admit().is_some_and(|permit| permit.over_limit().is_some()));
        drop(admitted);
        assert_eq!(limit.open(), 0);
        let again = limit.admit().expect("a permit came back");
        assert!(again.over_limit().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_timeout_a_stalled_connection_waits() {
        let (server, _client) = tokio::io::duplex(64);
        let mut connection = Connection::new(server, None);
        fill(&mut connection).await;
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(connection.write(b"x").now_or_never().is_none());
        assert!(!connection.cut_off().is_raised());
    }
}
