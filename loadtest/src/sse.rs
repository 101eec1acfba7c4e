//! Incremental `text/event-stream` parser (the WHATWG "interpret an event stream" algorithm).
//!
//! Bytes are fed as they arrive, split anywhere, after transfer decoding; complete events queue up
//! and are taken with [`SseParser::next_event`]. Lines end with LF, CRLF or a lone CR; comments
//! (lines starting with `:`) are counted, not queued; `data` lines are joined with LF. A line
//! longer than the parser's limit is an error, so a broken hub cannot make it grow without bound.

use std::collections::VecDeque;

/// Longest line accepted, so memory stays bounded whatever the hub sends.
pub const DEFAULT_MAX_LINE: usize = 16 * 1024 * 1024;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The last event ID at dispatch time (it carries over between events, as in browsers).
    pub id: Option<String>,
    /// The `event` field, if any.
    pub event_type: Option<String>,
    /// The `data` lines joined with LF.
    pub data: String,
    /// The `retry` field, if any.
    pub retry: Option<u64>,
}

/// A line exceeded the parser's limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event-stream line longer than {0} bytes")]
pub struct LineTooLong(pub usize);

/// Parser state between reads.
#[derive(Debug)]
pub struct SseParser {
    max_line: usize,
    /// The line being read, when it spans reads.
    line: Vec<u8>,
    /// The previous read ended with CR: a following LF belongs to it.
    pending_cr: bool,
    data: Vec<u8>,
    has_data: bool,
    event_type: Option<String>,
    retry: Option<u64>,
    last_id: Option<String>,
    events: VecDeque<Event>,
    comments: u64,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_LINE)
    }
}

impl SseParser {
    /// A parser refusing lines longer than `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        SseParser {
            max_line,
            line: Vec::new(),
            pending_cr: false,
            data: Vec::new(),
            has_data: false,
            event_type: None,
            retry: None,
            last_id: None,
            events: VecDeque::new(),
            comments: 0,
        }
    }

    /// Number of comment lines seen (the opening `:` and heartbeats).
    pub fn comments(&self) -> u64 {
        self.comments
    }

    /// The next complete event, if one is queued.
    pub fn next_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Feeds the next bytes of the stream.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), LineTooLong> {
        let mut rest = bytes;
        if self.pending_cr && !rest.is_empty() {
            self.pending_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while !rest.is_empty() {
            let Some(end) = rest.iter().position(|&byte| byte == b'\n' || byte == b'\r') else {
                if self.line.len() + rest.len() > self.max_line {
                    return Err(LineTooLong(self.max_line));
                }
                self.line.extend_from_slice(rest);
                break;
            };
            if self.line.is_empty() {
                if end > self.max_line {
                    return Err(LineTooLong(self.max_line));
                }
                self.process_line(&rest[..end]);
            } else {
                if self.line.len() + end > self.max_line {
                    return Err(LineTooLong(self.max_line));
                }
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&rest[..end]);
                self.process_line(&line);
                line.clear();
                self.line = line;
            }
            let ended_with_cr = rest[end] == b'\r';
            rest = &rest[end + 1..];
            if ended_with_cr {
                match rest.first() {
                    None => self.pending_cr = true,
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }

    /// Handles one complete line (without its line ending).
    fn process_line(&mut self, line: &[u8]) {
        if line.is_empty() {
            self.dispatch();
            return;
        }
        if line[0] == b':' {
            self.comments += 1;
            return;
        }
        let (field, value) = match line.iter().position(|&byte| byte == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"id" if !value.contains(&0) => {
                self.last_id = Some(String::from_utf8_lossy(value).into_owned());
            }
            b"event" => self.event_type = Some(String::from_utf8_lossy(value).into_owned()),
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                self.retry = std::str::from_utf8(value).ok().and_then(|text| text.parse().ok());
            }
            _ => {}
        }
    }

    /// An empty line: queue the event being built, if it has data.
    fn dispatch(&mut self) {
        let event_type = self.event_type.take();
        let retry = self.retry.take();
        if !self.has_data {
            return;
        }
        self.has_data = false;
        let data = match String::from_utf8(std::mem::take(&mut self.data)) {
            Ok(text) => text,
            Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
        };
        self.events.push_back(Event { id: self.last_id.clone(), event_type, data, retry });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(parser: &mut SseParser) -> Vec<Event> {
        std::iter::from_fn(|| parser.next_event()).collect()
    }

    fn event(id: &str, data: &str) -> Event {
        Event { id: Some(id.into()), event_type: None, data: data.into(), retry: None }
    }

    const STREAM: &[u8] = b":\nid: a\ndata: one\n\n: heartbeat\nevent: note\nretry: 1500\nid: b\n\
                            data: two\ndata: lines\ndata\n\nid: c\r\ndata: crlf\r\n\r\n\
                            id: d\rdata: cr\r\r";

    fn expected() -> Vec<Event> {
        vec![
            event("a", "one"),
            Event {
                id: Some("b".into()),
                event_type: Some("note".into()),
                data: "two\nlines\n".into(),
                retry: Some(1500),
            },
            event("c", "crlf"),
            event("d", "cr"),
        ]
    }

    #[test]
    fn a_whole_stream() {
        let mut parser = SseParser::default();
        parser.feed(STREAM).expect("short lines");
        assert_eq!(events(&mut parser), expected());
        assert_eq!(parser.comments(), 2);
    }

    #[test]
    fn split_across_reads_anywhere() {
        for size in 1..8 {
            let mut parser = SseParser::default();
            for piece in STREAM.chunks(size) {
                parser.feed(piece).expect("short lines");
            }
            assert_eq!(events(&mut parser), expected(), "pieces of {size}");
            assert_eq!(parser.comments(), 2);
        }
    }

    #[test]
    fn through_chunked_framing_with_splits() {
        // The same body as a hub sends it: chunked, then cut at arbitrary points by TCP.
        let wire: &[u8] = b"2\r\n:\n\r\n17\r\nid: x\ndata: a\ndata: b\n\n\r\n";
        for split in 0..wire.len() {
            let mut decoder = crate::http::ChunkedDecoder::new();
            let mut parser = SseParser::default();
            for piece in [&wire[..split], &wire[split..]] {
                decoder
                    .decode(piece, |body| parser.feed(body).expect("short lines"))
                    .expect("valid framing");
            }
            assert_eq!(events(&mut parser), vec![event("x", "a\nb")], "split at {split}");
            assert_eq!(parser.comments(), 1);
        }
    }

    #[test]
    fn empty_data_is_an_event_and_no_data_is_none() {
        let mut parser = SseParser::default();
        parser.feed(b"id: 1\ndata: \n\nid: 2\n\nevent: x\n\n").expect("short lines");
        // The event without data is not dispatched, but its id becomes the last event ID.
        assert_eq!(events(&mut parser), vec![event("1", "")]);
        parser.feed(b"data:no space\n\n").expect("short lines");
        assert_eq!(events(&mut parser), vec![event("2", "no space")]);
    }

    #[test]
    fn an_unfinished_event_waits() {
        let mut parser = SseParser::default();
        parser.feed(b"id: 1\ndata: half").expect("short lines");
        assert_eq!(parser.next_event(), None);
        parser.feed(b"\n").expect("short lines");
        assert_eq!(parser.next_event(), None);
        parser.feed(b"\n").expect("short lines");
        assert_eq!(parser.next_event(), Some(event("1", "half")));
    }

    #[test]
    fn long_lines_are_refused() {
        let mut parser = SseParser::new(8);
        parser.feed(b"data: 12").expect("exactly the limit");
        assert_eq!(parser.feed(b"3"), Err(LineTooLong(8)));
        let mut parser = SseParser::new(8);
        assert_eq!(parser.feed(b"data: 123456\n"), Err(LineTooLong(8)));
    }
}
