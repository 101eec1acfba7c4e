//! The `text/event-stream` parser: bytes of one connection in, [`Frame`]s out, following the
//! interpretation rules of the WHATWG HTML standard ("Server-sent events", section "Event stream
//! interpretation").
//!
//! One [`Parser`] reads one connection: the standard gives each stream its own data and event
//! type buffers, so the subscriber starts a new parser when it reconnects. The last event ID is
//! the exception: it belongs to the `EventSource`, which sends it back when it reconnects, so a
//! new parser starts from the stream's current cursor ([`Parser::new`]), as Chromium's does.
//! Were it to start empty, a blank line without an `id` field (a proxy's keep-alive `":\n\n"`)
//! would dispatch an empty last event ID and the next reconnection would resume from nothing.
//! Only an `id` field with an empty value clears the cursor: that is the standard's way to reset.
//!
//! Chunks may be split anywhere, inside a line, a UTF-8 sequence, a CRLF pair or the byte order
//! mark: everything that cannot be decided yet is held until the next chunk. Lines are found in
//! bytes (CR and LF never occur inside a UTF-8 sequence) and decoded one by one, invalid sequences
//! becoming U+FFFD as the standard's decoder does. What is held for one event is bounded (see
//! [`TooLarge`]). Nothing here does I/O or can panic on input.

use std::collections::VecDeque;
use std::time::Duration;

use crate::event::Event;

/// The UTF-8 byte order mark, skipped once at the start of a stream.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// What the parser found, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    /// An event to dispatch.
    Event {
        /// The event.
        event: Event,
        /// Whether its block had an `id` field: only such ids identify the event itself (an
        /// event without one only repeats the previous id).
        explicit_id: bool,
    },
    /// A blank line ended a block without data: no event, but the last event ID string takes
    /// the buffer's value, as at every dispatch (unchanged unless the block had an `id` field).
    LastEventId(String),
    /// A valid `retry` field: the new reconnection time.
    Retry(Duration),
}

/// The event being read holds more than the parser's limit: its data so far plus the line not
/// yet complete. The connection must be dropped; the parser refuses anything more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLarge;

/// The parser of one event stream.
#[derive(Debug)]
pub(crate) struct Parser {
    /// Bytes of the line being read (at the very start: of the possible byte order mark too).
    line: Vec<u8>,
    /// Whether the byte order mark question is settled (it can only open the stream).
    started: bool,
    /// The previous chunk ended with CR: a LF opening the next one ends nothing.
    after_cr: bool,
    data: String,
    event_type: String,
    last_event_id: String,
    /// The current block had an `id` field.
    id_in_block: bool,
    /// The most bytes `line` and `data` may hold together.
    max_event_size: usize,
    /// The limit was passed: the stream is refused from there on.
    too_large: bool,
    frames: VecDeque<Frame>,
}

impl Parser {
    /// A parser for a new connection of a stream whose last event ID is `last_event_id` (empty
    /// when there is none), holding at most `max_event_size` bytes for one event.
    pub(crate) fn new(last_event_id: String, max_event_size: usize) -> Self {
        Self {
            line: Vec::new(),
            started: false,
            after_cr: false,
            data: String::new(),
            event_type: String::new(),
            last_event_id,
            id_in_block: false,
            max_event_size,
            too_large: false,
            frames: VecDeque::new(),
        }
    }

    /// Reads the next bytes of the stream; the frames they complete are queued for
    /// [`Parser::next_frame`], those before the limit was passed included.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<(), TooLarge> {
        if self.too_large {
            return Err(TooLarge);
        }
        let result = self.feed_bytes(chunk);
        self.too_large = result.is_err();
        result
    }

    fn feed_bytes(&mut self, chunk: &[u8]) -> Result<(), TooLarge> {
        if self.started {
            return self.scan(chunk);
        }
        // Until three bytes are in, a stream opening with EF or EF BB may still be a BOM.
        self.line.extend_from_slice(chunk);
        if self.line.len() < BOM.len() && BOM.starts_with(&self.line) {
            return Ok(());
        }
        self.started = true;
        let held = std::mem::take(&mut self.line);
        self.scan(held.strip_prefix(BOM).unwrap_or(&held))
    }

    /// The next frame found, in order.
    pub(crate) fn next_frame(&mut self) -> Option<Frame> {
        self.frames.pop_front()
    }

    /// Splits `bytes` into lines on CRLF, LF and CR.
    fn scan(&mut self, mut bytes: &[u8]) -> Result<(), TooLarge> {
        if bytes.is_empty() {
            // Nothing to say about a pending CR: the LF that may pair with it is still to come.
            return Ok(());
        }
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        while let Some(end) = bytes.iter().position(|&b| b == b'\r' || b == b'\n') {
            self.hold(&bytes[..end])?;
            let line = std::mem::take(&mut self.line);
            self.process(&String::from_utf8_lossy(&line))?;
            let crlf = bytes[end] == b'\r' && bytes.get(end + 1) == Some(&b'\n');
            if bytes[end] == b'\r' && end + 1 == bytes.len() {
                // The LF of this CR, if any, is in the next chunk.
                self.after_cr = true;
            }
            bytes = &bytes[end + 1 + usize::from(crlf)..];
        }
        self.hold(bytes)
    }

    /// Adds `bytes` to the line being read, unless the event would hold more than the limit.
    fn hold(&mut self, bytes: &[u8]) -> Result<(), TooLarge> {
        if self.line.len() + self.data.len() + bytes.len() > self.max_event_size {
            return Err(TooLarge);
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    /// Interprets one complete line.
    fn process(&mut self, line: &str) -> Result<(), TooLarge> {
        if line.is_empty() {
            self.dispatch();
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event_type),
            "data" => {
                // The raw line was within the limit, but U+FFFD takes three bytes where the
                // invalid byte it replaces took one.
                if self.data.len() + value.len() + 1 > self.max_event_size {
                    return Err(TooLarge);
                }
                self.data.push_str(value);
                self.data.push('\n');
            }
            // An id with NUL is ignored whole: it could not be sent back in a header.
            "id" if !value.contains('\0') => {
                value.clone_into(&mut self.last_event_id);
                self.id_in_block = true;
            }
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                // Digits only, so the only way to fail is a number too large: as long as can be.
                let millis = value.parse::<u64>().unwrap_or(u64::MAX);
                self.frames.push_back(Frame::Retry(Duration::from_millis(millis)));
            }
            // Unknown fields, and `id` or `retry` with invalid values, are ignored.
            _ => {}
        }
        Ok(())
    }

    /// A blank line: the block ends and its event, if it has data, is dispatched.
    fn dispatch(&mut self) {
        let explicit_id = std::mem::take(&mut self.id_in_block);
        if self.data.is_empty() {
            self.event_type.clear();
            self.frames.push_back(Frame::LastEventId(self.last_event_id.clone()));
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        // Every data line appended a LF; the last one is not part of the payload.
        data.pop();
        let event_type = match std::mem::take(&mut self.event_type) {
            empty if empty.is_empty() => Event::DEFAULT_TYPE.to_owned(),
            event_type => event_type,
        };
        let event = Event { id: self.last_event_id.clone(), event_type, data };
        self.frames.push_back(Frame::Event { event, explicit_id });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parser for a stream's first connection, without a limit.
    fn parser() -> Parser {
        Parser::new(String::new(), usize::MAX)
    }

    /// Every frame `chunks` produce, fed in order to one parser.
    fn frames(chunks: &[&[u8]]) -> Vec<Frame> {
        let mut parser = parser();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk).expect("no limit");
            while let Some(frame) = parser.next_frame() {
                out.push(frame);
            }
        }
        out
    }

    /// The events alone, as (id, type, data).
    fn events(stream: &[u8]) -> Vec<(String, String, String)> {
        frames(&[stream])
            .into_iter()
            .filter_map(|frame| match frame {
                Frame::Event { event, .. } => Some((event.id, event.event_type, event.data)),
                _ => None,
            })
            .collect()
    }

    fn event(id: &str, event_type: &str, data: &str) -> (String, String, String) {
        (id.to_owned(), event_type.to_owned(), data.to_owned())
    }

    #[test]
    fn a_mercure_frame() {
        let stream = b":\nevent: book\nretry: 2500\nid: urn:uuid:1\ndata: {\"a\":1}\n\n";
        assert_eq!(
            frames(&[stream]),
            [
                Frame::Retry(Duration::from_millis(2500)),
                Frame::Event {
                    event: Event::new("urn:uuid:1", "book", "{\"a\":1}"),
                    explicit_id: true
                },
            ]
        );
    }

    #[test]
    fn chunks_split_anywhere_give_the_same_frames() {
        let stream: &[u8] = "\u{FEFF}: hi\r\nid: é1\r\nevent: t\rdata: ünï\r\ndata:\n\r\n\
                             retry: 10\n\ndata: 2\r\r:\ndata: 3\n\n"
            .as_bytes();
        let whole = frames(&[stream]);
        assert_eq!(whole.len(), 5, "{whole:?}");
        for at in 0..=stream.len() {
            assert_eq!(frames(&[&stream[..at], &stream[at..]]), whole, "split at {at}");
            // An empty chunk (a body frame with no bytes) changes nothing.
            let parts = [&stream[..at], b"", &stream[at..]];
            assert_eq!(frames(&parts), whole, "split at {at}, with an empty chunk");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(frames(&bytes), whole, "byte by byte");
        for (a, b) in [(1, 2), (3, 5), (7, 20)] {
            let parts = [&stream[..a], &stream[a..b], &stream[b..]];
            assert_eq!(frames(&parts), whole, "split at {a} and {b}");
        }
    }

    #[test]
    fn line_ends_are_cr_lf_and_crlf() {
        let expected = vec![event("", "message", "a\nb"), event("", "message", "c")];
        assert_eq!(events(b"data: a\ndata: b\n\ndata: c\n\n"), expected);
        assert_eq!(events(b"data: a\rdata: b\r\rdata: c\r\r"), expected);
        assert_eq!(events(b"data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n"), expected);
        assert_eq!(events(b"data: a\r\ndata: b\r\rdata: c\n\r\n"), expected);
    }

    #[test]
    fn a_crlf_split_between_chunks_is_one_line_end() {
        // Were the LF taken for a second line end, the blank line would dispatch "a" alone.
        let split = frames(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]);
        assert_eq!(
            split,
            [Frame::Event { event: Event::new("", "message", "a\nb"), explicit_id: false }]
        );
        // A CR at the end of a chunk followed by something else is a line end on its own.
        assert_eq!(
            frames(&[b"data: a\r", b"\r"]),
            [Frame::Event { event: Event::new("", "message", "a"), explicit_id: false }]
        );
    }

    #[test]
    fn a_byte_order_mark_is_skipped_only_at_the_start() {
        assert_eq!(events(b"\xEF\xBB\xBFdata: x\n\n"), [event("", "message", "x")]);
        assert_eq!(
            frames(&[b"\xEF", b"\xBB", b"\xBF", b"data: x\n\n"]).len(),
            1,
            "split inside the mark"
        );
        // A second mark is part of the first field's name, which is then unknown.
        assert_eq!(
            events(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\ndata: y\n\n"),
            [event("", "message", "y")]
        );
        // A partial mark is no mark: its bytes decode to U+FFFD in the field name.
        assert_eq!(events(b"\xEF\xBBdata: x\n\ndata: y\n\n"), [event("", "message", "y")]);
        // A mark after the start of the stream is not skipped either.
        let mut parser = parser();
        parser.feed(b"data: a\n\n").expect("no limit");
        parser.feed(b"\xEF\xBB\xBFdata: b\n\n").expect("no limit");
        let frames: Vec<Frame> = std::iter::from_fn(|| parser.next_frame()).collect();
        let events = frames.iter().filter(|f| matches!(f, Frame::Event { .. })).count();
        assert_eq!(events, 1, "{frames:?}");
    }

    #[test]
    fn data_lines_are_joined_with_lf_and_one_space_is_stripped() {
        assert_eq!(
            events(b"data:no space\ndata:  two spaces\ndata\ndata:\ndata: last\n\n"),
            [event("", "message", "no space\n two spaces\n\n\nlast")]
        );
        // `data` alone is an empty line of data: the event exists, with empty data.
        assert_eq!(events(b"data\n\n"), [event("", "message", "")]);
        // A colon inside the value stays.
        assert_eq!(events(b"data: a: b\n\n"), [event("", "message", "a: b")]);
    }

    #[test]
    fn comments_and_unknown_fields_are_ignored() {
        assert_eq!(
            events(b": comment\n:\nfoo: bar\nDATA: upper\ndata : spaced\nbaz\ndata: x\n\n"),
            [event("", "message", "x")]
        );
        // Comments alone never dispatch anything.
        assert!(frames(&[b":\n:\n: keep-alive\n"]).is_empty());
    }

    #[test]
    fn the_type_defaults_to_message_and_resets_after_each_event() {
        assert_eq!(
            events(b"event: a\ndata: 1\n\ndata: 2\n\nevent:\ndata: 3\n\n"),
            [event("", "a", "1"), event("", "message", "2"), event("", "message", "3")]
        );
        // A type in a block without data is dropped with it.
        assert_eq!(events(b"event: a\n\ndata: 1\n\n"), [event("", "message", "1")]);
    }

    #[test]
    fn the_last_event_id_persists_and_an_empty_id_resets_it() {
        assert_eq!(
            frames(&[b"id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: 2\n\n"]),
            [
                Frame::Event { event: Event::new("1", "message", "a"), explicit_id: true },
                Frame::Event { event: Event::new("1", "message", "b"), explicit_id: false },
                Frame::Event { event: Event::new("", "message", "c"), explicit_id: true },
                Frame::LastEventId("2".into()),
            ]
        );
    }

    #[test]
    fn a_new_connection_starts_from_the_streams_last_event_id() {
        let mut parser = Parser::new("a".into(), usize::MAX);
        // A proxy's keep-alive (a comment and a blank line), a lone blank line, an event
        // without an id: the cursor stays, and the event carries it.
        parser.feed(b":\n\n\ndata: x\n\n").expect("no limit");
        let frames: Vec<Frame> = std::iter::from_fn(|| parser.next_frame()).collect();
        assert_eq!(
            frames,
            [
                Frame::LastEventId("a".into()),
                Frame::LastEventId("a".into()),
                Frame::Event { event: Event::new("a", "message", "x"), explicit_id: false },
            ]
        );
        // Only an `id` field with an empty value resets it.
        parser.feed(b"id\n\ndata: y\n\n").expect("no limit");
        let frames: Vec<Frame> = std::iter::from_fn(|| parser.next_frame()).collect();
        assert_eq!(
            frames,
            [
                Frame::LastEventId(String::new()),
                Frame::Event { event: Event::new("", "message", "y"), explicit_id: false },
            ]
        );
    }

    #[test]
    fn an_empty_chunk_does_not_forget_a_pending_cr() {
        // Were the empty chunk to end the CR's wait, its LF would be a second line end: a blank
        // line dispatching "a" alone.
        assert_eq!(
            frames(&[b"data: a\r", b"", b"\ndata: b\r\n\r\n"]),
            [Frame::Event { event: Event::new("", "message", "a\nb"), explicit_id: false }]
        );
    }

    #[test]
    fn what_is_held_for_one_event_is_bounded() {
        let limit = 16;
        let fed = |chunks: &[&[u8]]| {
            let mut parser = Parser::new(String::new(), limit);
            let result = chunks.iter().try_for_each(|chunk| parser.feed(chunk));
            (result, std::iter::from_fn(|| parser.next_frame()).collect::<Vec<_>>())
        };
        // A line of 16 bytes fits; the frames before the limit was passed are kept.
        let (result, frames) = fed(&[b"data: 0123456789\n\nid: 1\ndata: 0123456789a\n"]);
        assert_eq!(result, Err(TooLarge));
        assert_eq!(
            frames,
            [Frame::Event { event: Event::new("", "message", "0123456789"), explicit_id: false }]
        );
        // The data so far counts with the line being read.
        assert_eq!(fed(&[b"data: 01234\ndata: 01234\n"]).0, Err(TooLarge));
        // A line that never ends, byte by byte.
        let bytes = [b'x'; 17];
        let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(fed(&chunks).0, Err(TooLarge));
        assert_eq!(fed(&chunks[..16]).0, Ok(()));
        // Invalid bytes grow three times when decoded: the data is checked decoded.
        assert_eq!(fed(&[b"data: \xFF\xFF\xFF\xFF\xFF\xFF\n"]).0, Err(TooLarge));
        // Comments and complete events do not add up.
        let (result, frames) = fed(&[b": 0123456789abc\ndata: 1\n\n: 0123456789abc\ndata: 2\n\n"]);
        assert_eq!((result, frames.len()), (Ok(()), 2));
        // Past the limit, the parser refuses everything.
        let mut parser = Parser::new(String::new(), limit);
        assert_eq!(parser.feed(&[b'x'; 17]), Err(TooLarge));
        assert_eq!(parser.feed(b"\n\ndata: 1\n\n"), Err(TooLarge));
        assert_eq!(parser.next_frame(), None);
    }

    #[test]
    fn an_id_with_nul_is_ignored() {
        assert_eq!(
            events(b"id: good\ndata: a\n\nid: b\0ad\ndata: b\n\n"),
            [event("good", "message", "a"), event("good", "message", "b")]
        );
    }

    #[test]
    fn retry_takes_ascii_digits_only() {
        let retries = |stream: &[u8]| -> Vec<Frame> {
            frames(&[stream]).into_iter().filter(|f| matches!(f, Frame::Retry(_))).collect()
        };
        assert_eq!(retries(b"retry: 1500\n"), [Frame::Retry(Duration::from_millis(1500))]);
        assert_eq!(retries(b"retry:0\n"), [Frame::Retry(Duration::ZERO)]);
        for invalid in [
            &b"retry: \n"[..],
            b"retry\n",
            b"retry: -1\n",
            b"retry: +1\n",
            b"retry: 1.5\n",
            b"retry: 1 \n",
            b"retry:  1\n",
            b"retry: 1e3\n",
            "retry: \u{0661}\n".as_bytes(),
        ] {
            assert!(retries(invalid).is_empty(), "{:?}", String::from_utf8_lossy(invalid));
        }
        assert_eq!(
            retries(b"retry: 99999999999999999999999\n"),
            [Frame::Retry(Duration::from_millis(u64::MAX))],
            "too large for u64: as long as can be"
        );
        // Applied at once, even when the event it came with is never completed.
        assert_eq!(
            retries(b"retry: 7\ndata: incomplete"),
            [Frame::Retry(Duration::from_millis(7))]
        );
    }

    #[test]
    fn an_incomplete_event_is_never_dispatched() {
        // No blank line: the stream ends (the parser is dropped) with the event pending.
        assert!(events(b"id: 1\ndata: a\n").is_empty());
        assert!(events(b"data: a\n\ndata: b").len() == 1);
        // Neither is the id of an incomplete block: it takes effect at dispatch.
        assert!(frames(&[b"id: 1\n"]).is_empty());
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        assert_eq!(events(b"data: a\xFFb\n\n"), [event("", "message", "a\u{FFFD}b")]);
        // A truncated sequence before a line end.
        assert_eq!(
            events(b"data: \xC3\ndata: \xC3\xA9\n\n"),
            [event("", "message", "\u{FFFD}\né")]
        );
        // A sequence split between chunks decodes whole.
        let split = frames(&[b"data: \xC3", b"\xA9\n\n"]);
        assert_eq!(
            split,
            [Frame::Event { event: Event::new("", "message", "é"), explicit_id: false }]
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut parser = Parser::new(String::new(), 64);
        for _ in 0..2000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let bytes = state.to_le_bytes();
            if parser.feed(&bytes[..(state % 9) as usize]).is_err() {
                parser = Parser::new(String::new(), 64);
            }
            while parser.next_frame().is_some() {}
        }
    }
}
