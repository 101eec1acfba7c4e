//! The Server-Sent Events framing of arbitrary updates: ids, types, data (line breaks of every
//! kind, blank lines, colons, NUL), retry, framed by the hub's own `Update::frame` one after the
//! other as a subscriber's stream carries them, then read back by the independent parser of
//! `quicksilver_fuzz::sse` (the WHATWG rules).
//!
//! Updates come in the two ways the hub receives them: fields validated one by one as the
//! publish handler does (`EventId::new`, `EventType::new`, `Topic::new`), or an update built
//! with the client crate's builder and converted as `Hub::publish` does.
//!
//! Checked:
//! - the validated types refuse exactly what cannot be framed or is reserved: an id or type
//!   with a control character (CR, LF and NUL among them) or an invisible format character, an
//!   id starting with `#` or equal to `earliest`; everything else is accepted;
//! - whatever the client crate's builder accepts, the hub accepts too;
//! - the stream's field lines are exactly those the updates call for, in order, so no value
//!   can start a field of its own (no injection), and each update comes out as one event with
//!   its type (`message` when none), its id as the last event id and its data, line breaks
//!   turned into LF as the protocol does; the last positive retry is the reconnection time.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use quicksilver::update::{is_format_character, EventId, EventType, Topic, Update, EARLIEST};
use quicksilver_fuzz::sse::{self, Event, Line};

/// One update's fields, from the input: updates are separated by U+001E (record separator),
/// and within one, id, type, data, retry, flags and topic by U+001F (unit separator), so that
/// seeds stay readable and the fuzzer mutates the field bytes themselves. A missing type is
/// none, an empty one is `Some("")`; retry is decimal digits (anything else is none); flags'
/// first byte has bit 0 for the client crate's builder and bit 1 for private.
#[derive(Debug)]
struct Fields {
    /// Built with the client crate's builder rather than field by field.
    through_client: bool,
    topic: String,
    id: String,
    event_type: Option<String>,
    data: String,
    retry: Option<u64>,
    private: bool,
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let updates: Vec<Update> =
        text.split('\u{1e}').map(fields).filter_map(|f| update(&f)).collect();

    // The comment every stream starts with, then the frames as the hub writes them.
    let mut stream = b":\n".to_vec();
    let mut expected_lines = vec![Line::Comment(String::new())];
    let mut expected_events = Vec::new();
    let mut expected_retry = None;
    for update in &updates {
        stream.extend_from_slice(&update.frame());
        let event_type = update.event_type.as_ref().map(EventType::as_str).unwrap_or_default();
        if !event_type.is_empty() {
            expected_lines.push(Line::Field("event".into(), event_type.into()));
        }
        if let Some(retry) = update.retry.filter(|&r| r > 0) {
            expected_lines.push(Line::Field("retry".into(), retry.to_string()));
            expected_retry = Some(retry);
        }
        expected_lines.push(Line::Field("id".into(), update.id.as_str().into()));
        let data = sse::normalize_line_breaks(&update.data);
        for line in data.split('\n') {
            expected_lines.push(Line::Field("data".into(), line.into()));
        }
        expected_lines.push(Line::Blank);
        expected_events.push(Event {
            event_type: if event_type.is_empty() { "message".into() } else { event_type.into() },
            data,
            last_event_id: update.id.as_str().into(),
        });
    }

    let parsed = sse::parse(&stream);
    assert_eq!(parsed.lines, expected_lines, "stream {:?}", String::from_utf8_lossy(&stream));
    assert_eq!(parsed.events, expected_events);
    assert_eq!(parsed.retry, expected_retry);
});

fn fields(record: &str) -> Fields {
    let mut parts = record.split('\u{1f}');
    let id = parts.next().unwrap_or_default().to_owned();
    let event_type = parts.next().map(str::to_owned);
    let data = parts.next().unwrap_or_default().to_owned();
    let retry = parts.next().and_then(|r| r.parse().ok());
    let flags = parts.next().and_then(|f| f.bytes().next()).unwrap_or(0);
    let topic = parts.next().unwrap_or("https://example.com/books/1").to_owned();
    Fields {
        through_client: flags & 1 != 0,
        topic,
        id,
        event_type,
        data,
        retry,
        private: flags & 2 != 0,
    }
}

/// The update the hub would frame for these fields, if it accepts them.
fn update(fields: &Fields) -> Option<Update> {
    let id = EventId::new(fields.id.as_str());
    assert_eq!(id.is_ok(), id_allowed(&fields.id), "id {:?}: {id:?}", fields.id);
    let event_type = fields.event_type.as_deref().map(EventType::new).transpose();
    let type_allowed = fields.event_type.as_deref().is_none_or(|t| !unframeable(t));
    assert_eq!(event_type.is_ok(), type_allowed, "type {:?}", fields.event_type);
    // The framing property itself, whatever the rules above say.
    let accepted = [
        id.as_ref().ok().map(EventId::as_str),
        event_type.as_ref().ok().and_then(|t| t.as_ref().map(EventType::as_str)),
    ];
    for text in accepted.into_iter().flatten() {
        assert!(!text.contains(['\r', '\n', '\0']), "{text:?} would break its frame");
    }

    if fields.through_client {
        let mut builder = quicksilver::client::Update::builder(fields.topic.as_str())
            .data(fields.data.as_str())
            .private(fields.private);
        // Without an id, the builder generates one.
        if !fields.id.is_empty() {
            builder = builder.id(fields.id.as_str());
        }
        if let Some(event_type) = &fields.event_type {
            builder = builder.event_type(event_type.as_str());
        }
        if let Some(retry) = fields.retry {
            builder = builder.retry(Duration::from_millis(retry));
        }
        let built = builder.build().ok()?;
        let update = Update::try_from(&built);
        assert!(update.is_ok(), "the client built {built:?}, the hub refuses it: {update:?}");
        return update.ok();
    }

    Some(Update {
        id: id.ok()?,
        topics: vec![Topic::new(fields.topic.as_str()).ok()?],
        data: fields.data.clone(),
        private: fields.private,
        event_type: event_type.ok()?,
        retry: fields.retry,
    })
}

/// A control character (CR, LF, NUL, the C0 and C1 sets, DEL) or an invisible format one.
fn unframeable(text: &str) -> bool {
    text.chars().any(|c| c.is_control() || is_format_character(c))
}

/// What an id may be: framable, and neither the hub's own (`#...`) nor `earliest`.
fn id_allowed(id: &str) -> bool {
    !unframeable(id) && !id.starts_with('#') && id != EARLIEST
}
