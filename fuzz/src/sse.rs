//! An event stream parser written from the WHATWG HTML standard ("Server-sent events", section
//! 9.2.6, "Interpreting an event stream"), independent of the hub and of its client crate, so
//! that the fuzz targets can check what a browser would make of the hub's bytes.
//!
//! Besides the events a browser dispatches, it records every field line it saw, in order, so a
//! target can check that a frame holds exactly the fields the hub meant to write and nothing
//! more: a value that ends a line early would show up as an extra field (an injection).

/// One event, as an `EventSource` dispatches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `MessageEvent.type`: the `event` field, or `message` when it was empty or absent.
    pub event_type: String,
    /// `MessageEvent.data`: the `data` lines joined with LF.
    pub data: String,
    /// `MessageEvent.lastEventId`: the last `id` field seen so far in the stream (not only in
    /// this event).
    pub last_event_id: String,
}

/// One line of the stream, as the parser classified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// An empty line: dispatches the event being built.
    Blank,
    /// A line starting with `:`, with the text after the colon.
    Comment(String),
    /// A field: its name and its value (one leading space removed, as the standard says).
    Field(String, String),
}

/// Everything a stream produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Complete lines, in order. Text after the last line break is not a line yet.
    pub lines: Vec<Line>,
    /// Events dispatched, in order.
    pub events: Vec<Event>,
    /// The reconnection time the last valid `retry` field set, in milliseconds.
    pub retry: Option<u64>,
}

/// Parses a whole stream, as received from its first byte.
pub fn parse(stream: &[u8]) -> Parsed {
    // "Streams must be decoded using the UTF-8 decode algorithm", which replaces invalid
    // sequences with U+FFFD and strips one leading byte order mark.
    let text = String::from_utf8_lossy(stream);
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(&text);

    let mut parsed = Parsed::default();
    let mut data = String::new();
    let mut event_type = String::new();
    let mut last_event_id = String::new();
    for line in split_lines(text) {
        if line.is_empty() {
            parsed.lines.push(Line::Blank);
            dispatch(&mut parsed.events, &mut data, &mut event_type, &last_event_id);
            continue;
        }
        if let Some(comment) = line.strip_prefix(':') {
            parsed.lines.push(Line::Comment(comment.to_owned()));
            continue;
        }
        let (name, value) = match line.split_once(':') {
            Some((name, value)) => (name, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        parsed.lines.push(Line::Field(name.to_owned(), value.to_owned()));
        match name {
            "event" => value.clone_into(&mut event_type),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            // An id holding NUL is ignored, as the standard says.
            "id" if !value.contains('\0') => value.clone_into(&mut last_event_id),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                // Browsers keep digits that overflow their integer type in various ways; the
                // hub never writes one, so saturating is enough here.
                parsed.retry = Some(value.parse().unwrap_or(u64::MAX));
            }
            // Unknown fields, and invalid `id` and `retry` values, are ignored.
            _ => {}
        }
    }
    // At the end of the stream, an event without its blank line is discarded.
    parsed
}

/// The standard's "dispatch the event" steps.
fn dispatch(events: &mut Vec<Event>, data: &mut String, event_type: &mut String, id: &str) {
    if data.is_empty() {
        event_type.clear();
        return;
    }
    if data.ends_with('\n') {
        data.pop();
    }
    let event_type = std::mem::take(event_type);
    events.push(Event {
        event_type: if event_type.is_empty() { "message".to_owned() } else { event_type },
        data: std::mem::take(data),
        last_event_id: id.to_owned(),
    });
}

/// Splits `text` into the lines the standard sees: each ends with CRLF, LF or CR. What follows
/// the last line break is incomplete and left out.
fn split_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(['\r', '\n']) {
        lines.push(&rest[..at]);
        let skip = if rest[at..].starts_with("\r\n") { 2 } else { 1 };
        rest = &rest[at + skip..];
    }
    lines
}

/// `text` with every line break (CRLF, CR, LF) turned into LF: what a browser hands over as the
/// data of an event whose data was `text`, since the stream cannot tell line breaks apart.
pub fn normalize_line_breaks(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_standard_examples() {
        // "The following stream fires two events" (the standard's example with `data` only).
        let parsed = parse(b"data\n\ndata\ndata\n\ndata:");
        let data: Vec<&str> = parsed.events.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(data, ["", "\n"]);

        let parsed = parse(b"\xEF\xBB\xBFid: 1\revent: e\r\ndata:  x\nretry: 10\nretry: x\n\n");
        assert_eq!(
            parsed.events,
            [Event { event_type: "e".into(), data: " x".into(), last_event_id: "1".into() }]
        );
        assert_eq!(parsed.retry, Some(10));
        assert_eq!(parsed.lines[0], Line::Field("id".into(), "1".into()));
    }

    #[test]
    fn ignores_ids_with_nul_and_unterminated_events() {
        let parsed = parse(b"id: a\0\ndata: x\n\ndata: y\n");
        assert_eq!(parsed.events.len(), 1);
        assert_eq!(parsed.events[0].last_event_id, "");
    }
}
