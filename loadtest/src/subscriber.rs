//! One subscription: a `GET` event stream read incrementally.
//!
//! [`SseStream::open`] connects, sends the request, checks the answer is 200 and waits for the
//! first bytes of the body (the hub's opening `:` comment), which is when the subscription is
//! known to be registered. [`SseStream::next_event`] then yields events as they arrive, decoding
//! chunked framing and SSE on the fly through one small buffer.

use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use crate::http::{
    self, ChunkedDecoder, Connection, Connector, Framing, HttpError, ResponseHead, Selector, Target,
};
use crate::sse::{Event, SseParser};

/// Bytes read at a time from a stream: small, because there may be tens of thousands of streams.
const READ_BUFFER: usize = 4096;

/// How the body is delimited, with the decoding state.
#[derive(Debug)]
enum Body {
    Chunked(ChunkedDecoder),
    Length(u64),
    UntilClose,
}

/// An open event stream.
#[derive(Debug)]
pub struct SseStream {
    stream: Connection,
    buf: Box<[u8]>,
    body: Body,
    parser: SseParser,
    ended: bool,
    /// The response head.
    pub head: ResponseHead,
}

/// A stream just opened, with its timings.
#[derive(Debug)]
pub struct Opened {
    /// The stream.
    pub stream: SseStream,
    /// From starting to connect (TLS handshake included) to receiving the first bytes of the body.
    pub connect_time: Duration,
}

impl SseStream {
    /// Opens a subscription to `selectors`, resuming after `last_event_id` if given, with `token`
    /// or anonymously. The whole opening (connect, head, first body bytes) is bounded by
    /// `timeout`.
    pub async fn open(
        connector: &Connector,
        target: &Target,
        token: Option<&str>,
        selectors: &[Selector],
        last_event_id: Option<&str>,
        timeout: Duration,
    ) -> Result<Opened, HttpError> {
        let started = Instant::now();
        let request = http::subscribe_request(target, token, selectors, last_event_id);
        let opening = async {
            let mut stream = connector.connect().await?;
            stream.send(&request).await.map_err(HttpError::Io)?;
            let mut head_buf = Vec::with_capacity(1024);
            let (head, head_length) = http::read_head(&mut stream, &mut head_buf).await?;
            if head.status != 200 {
                return Err(HttpError::Status(head.status));
            }
            let body = match head.framing {
                Framing::Chunked => Body::Chunked(ChunkedDecoder::new()),
                Framing::Length(length) => Body::Length(length),
                Framing::UntilClose => Body::UntilClose,
            };
            let mut sse = SseStream {
                stream,
                buf: vec![0; READ_BUFFER].into_boxed_slice(),
                body,
                parser: SseParser::default(),
                ended: false,
                head,
            };
            let mut body_bytes =
                absorb(&mut sse.body, &mut sse.parser, &mut sse.ended, &head_buf[head_length..])?;
            while body_bytes == 0 {
                if sse.ended {
                    return Err(HttpError::Closed);
                }
                body_bytes = sse.read_more().await?.ok_or(HttpError::Closed)?;
            }
            Ok(sse)
        };
        let stream = tokio::time::timeout(timeout, opening)
            .await
            .map_err(|_| HttpError::Timeout("opening the stream"))??;
        Ok(Opened { stream, connect_time: started.elapsed() })
    }

    /// The next event; `None` once the hub has ended the stream.
    pub async fn next_event(&mut self) -> Result<Option<Event>, HttpError> {
        loop {
            if let Some(event) = self.parser.next_event() {
                return Ok(Some(event));
            }
            if self.ended || self.read_more().await?.is_none() {
                return Ok(None);
            }
        }
    }

    /// Comment lines received so far (the opening `:` and heartbeats).
    pub fn comments(&self) -> u64 {
        self.parser.comments()
    }

    /// Reads once from the socket and decodes what came. Returns the number of body bytes read,
    /// or `None` at the end of the connection.
    async fn read_more(&mut self) -> Result<Option<usize>, HttpError> {
        let read = self.stream.read(&mut self.buf).await.map_err(HttpError::Io)?;
        if read == 0 {
            self.ended = true;
            return Ok(None);
        }
        absorb(&mut self.body, &mut self.parser, &mut self.ended, &self.buf[..read]).map(Some)
    }
}

/// Feeds bytes read from the socket through the body framing into the SSE parser. Returns the
/// number of body bytes they held; sets `ended` when the body is complete.
fn absorb(
    body: &mut Body,
    parser: &mut SseParser,
    ended: &mut bool,
    bytes: &[u8],
) -> Result<usize, HttpError> {
    let malformed = |error: &dyn std::fmt::Display| HttpError::Malformed(error.to_string());
    match body {
        Body::Chunked(decoder) => {
            let mut body_bytes = 0;
            let mut too_long = None;
            decoder
                .decode(bytes, |piece| {
                    body_bytes += piece.len();
                    if too_long.is_none() {
                        too_long = parser.feed(piece).err();
                    }
                })
                .map_err(|error| malformed(&error))?;
            if let Some(error) = too_long {
                return Err(malformed(&error));
            }
            *ended = decoder.is_done();
            Ok(body_bytes)
        }
        Body::Length(left) => {
            let take = usize::try_from(*left).unwrap_or(usize::MAX).min(bytes.len());
            parser.feed(&bytes[..take]).map_err(|error| malformed(&error))?;
            *left -= take as u64;
            *ended = *left == 0;
            Ok(take)
        }
        Body::UntilClose => {
            parser.feed(bytes).map_err(|error| malformed(&error))?;
            Ok(bytes.len())
        }
    }
}
