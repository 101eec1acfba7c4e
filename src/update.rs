//! Updates: the validated fields a publisher sends, and their Server-Sent Events frame.
//!
//! Everything a publisher controls is checked here, before it is stored or framed: a CR, LF or NUL
//! in an id, a type or a topic would let a publisher inject SSE fields into other subscribers'
//! streams (the reference hub v0.21.4 does not check). The frame is built once per update and
//! shared, as `Bytes`, by every subscriber that receives it.
//!
//! Some values are refused only when a publisher sends them, because the hub itself uses them for
//! its own events (Mercure 1.0, section "Publication"): topics in the reserved namespace
//! `/.well-known/mercure` ([`Topic::check_published`]) and the event type `mercure`
//! ([`EventType::check_published`]). The constructors accept them, so that presence events
//! (`hub::presence`) are built from the same types.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The rules hubs and clients share (the client crate checks them before sending, so the two
/// never disagree): which characters are invisible, which topics are the hub's own.
pub use quicksilver_client::protocol::{
    in_reserved_namespace, is_format_character, EARLIEST, HUB_EVENT_TYPE,
};

/// Position of an update in the hub's history: 1 for the first update ever stored, 0 for "none".
pub type Seq = u64;

/// Why a publisher-supplied field was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum InvalidField {
    /// A control character (CR, LF, NUL, ...) that would corrupt the event stream.
    #[error("\"{0}\" must not contain control characters (CR, LF, NUL, ...)")]
    ControlCharacter(&'static str),
    /// An id starting with `#`, which the protocol reserves for ids the hub generates.
    #[error("\"id\" must not start with \"#\": such ids are reserved for the hub")]
    ReservedIdPrefix,
    /// The id `earliest`, which means "the beginning of history" in `Last-Event-ID`.
    #[error("\"id\" must not be \"earliest\": that value means the start of history")]
    ReservedIdEarliest,
    /// An invisible Unicode format character (category Cf), such as U+202E RIGHT-TO-LEFT
    /// OVERRIDE, which would make a value display as another.
    #[error(
        "\"{0}\" must not contain invisible Unicode format characters (U+200B, U+202E, U+FEFF, ...)"
    )]
    FormatCharacter(&'static str),
    /// A topic in the namespace of the hub's own events.
    #[error(
        "\"topic\" {0:?} is in the hub's reserved namespace (/.well-known/mercure, however \
         written): those topics carry the hub's own events"
    )]
    ReservedTopic(String),
    /// The event type of the hub's own events.
    #[error(
        "\"type\" must not be \"mercure\": that event type is reserved for the hub's own events"
    )]
    ReservedType,
}

fn has_control(value: &str) -> bool {
    value.chars().any(char::is_control)
}

/// Whether `value` holds a Unicode format (Cf) character.
fn has_format(value: &str) -> bool {
    value.chars().any(is_format_character)
}

/// A topic: any string without control characters (usually an IRI).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Topic(String);

impl Topic {
    /// Validates a topic.
    pub fn new(value: impl Into<String>) -> Result<Self, InvalidField> {
        let value = value.into();
        if has_control(&value) {
            return Err(InvalidField::ControlCharacter("topic"));
        }
        Ok(Self(value))
    }

    /// The topic text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The checks of a topic a publisher sends, beyond those of [`Topic::new`]: no Unicode format
    /// character, and not in the reserved namespace ([`in_reserved_namespace`]). Without them a
    /// publisher could forge the hub's subscription events, which subscribers trust as the hub's
    /// word. Never applied to the hub's own topics.
    pub fn check_published(&self) -> Result<(), InvalidField> {
        if has_format(&self.0) {
            return Err(InvalidField::FormatCharacter("topic"));
        }
        if in_reserved_namespace(&self.0) {
            return Err(InvalidField::ReservedTopic(self.0.clone()));
        }
        Ok(())
    }
}

/// An update id, also the SSE `id` field and the cursor of `Last-Event-ID`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(String);

impl EventId {
    /// Validates an id chosen by a publisher. Besides control characters, which would break the
    /// frame, it refuses what would confuse a reconnecting client's cursor: `#...` (the hub's
    /// own ids), `earliest` (the start of history) and invisible format characters (an id that
    /// looks like another).
    pub fn new(value: impl Into<String>) -> Result<Self, InvalidField> {
        let value = value.into();
        if has_control(&value) {
            return Err(InvalidField::ControlCharacter("id"));
        }
        if has_format(&value) {
            return Err(InvalidField::FormatCharacter("id"));
        }
        if value.starts_with('#') {
            return Err(InvalidField::ReservedIdPrefix);
        }
        if value == EARLIEST {
            return Err(InvalidField::ReservedIdEarliest);
        }
        Ok(Self(value))
    }

    /// A fresh hub-generated id: `urn:uuid:` and a time-ordered UUIDv7, as the reference hub does.
    pub fn generate() -> Self {
        Self(format!("urn:uuid:{}", uuid::Uuid::now_v7()))
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An SSE event type (`event:` field), chosen by the publisher with the `type` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventType(String);

impl EventType {
    /// Validates an event type: no control character (which would break the frame) and no
    /// invisible format character (a type that looks like another).
    pub fn new(value: impl Into<String>) -> Result<Self, InvalidField> {
        let value = value.into();
        if has_control(&value) {
            return Err(InvalidField::ControlCharacter("type"));
        }
        if has_format(&value) {
            return Err(InvalidField::FormatCharacter("type"));
        }
        Ok(Self(value))
    }

    /// The check of a type a publisher sends: not `mercure`, the type of the hub's own events,
    /// which a publisher could otherwise forge. Never applied to the hub's own events.
    pub fn check_published(&self) -> Result<(), InvalidField> {
        if self.0 == HUB_EVENT_TYPE {
            return Err(InvalidField::ReservedType);
        }
        Ok(())
    }

    /// The type text.
    #[cfg(any(test, feature = "unstable-internals"))]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One publication. Immutable once built: the canonical topic is `topics[0]` forever (the
/// reference hub once reordered topics during dispatch; nothing here can).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    /// The update id.
    pub id: EventId,
    /// The canonical topic first, then the alternate topics. Never empty.
    pub topics: Vec<Topic>,
    /// The payload, opaque to the hub.
    pub data: String,
    /// Private updates reach only subscribers whose token allows one of the topics.
    pub private: bool,
    /// The SSE event type, when not the default `message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<EventType>,
    /// The SSE reconnection time in milliseconds; 0 and absent are the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<u64>,
}

impl Update {
    /// The checks of what only the hub may send, for an update from a publisher: no topic in
    /// the reserved namespace or with a format character ([`Topic::check_published`]) and not
    /// the hub's event type ([`EventType::check_published`]).
    pub fn check_published(&self) -> Result<(), InvalidField> {
        for topic in &self.topics {
            topic.check_published()?;
        }
        self.event_type.as_ref().map_or(Ok(()), EventType::check_published)
    }

    /// The wire form of this update, byte for byte as the reference hub writes it: `event:` (when a
    /// type is set), `retry:` (when above 0), `id:`, one `data:` line per line of data (split on
    /// CRLF, CR and LF), then an empty line.
    pub fn frame(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.data.len() + self.id.0.len() + 32);
        if let Some(event_type) = self.event_type.as_ref().filter(|t| !t.0.is_empty()) {
            put_field(&mut out, "event", &event_type.0);
        }
        if let Some(retry) = self.retry.filter(|&r| r > 0) {
            put_field(&mut out, "retry", &retry.to_string());
        }
        put_field(&mut out, "id", &self.id.0);
        for line in lines(&self.data) {
            put_field(&mut out, "data", line);
        }
        out.put_u8(b'\n');
        out.freeze()
    }
}

impl TryFrom<&quicksilver_client::Update> for Update {
    type Error = InvalidField;

    /// The update an application publishes in-process ([`crate::Hub::publish`]), checked again
    /// with the hub's own rules (the client's builder already applied the same ones).
    fn try_from(update: &quicksilver_client::Update) -> Result<Self, InvalidField> {
        let update = Update {
            id: EventId::new(update.id())?,
            topics: update.topics().iter().map(Topic::new).collect::<Result<_, _>>()?,
            data: update.data().to_owned(),
            private: update.is_private(),
            event_type: update.event_type().map(EventType::new).transpose()?,
            retry: update
                .retry()
                .map(|retry| u64::try_from(retry.as_millis()).unwrap_or(u64::MAX))
                .filter(|&retry| retry > 0),
        };
        update.check_published()?;
        Ok(update)
    }
}

fn put_field(out: &mut BytesMut, name: &str, value: &str) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    out.put_slice(value.as_bytes());
    out.put_u8(b'\n');
}

/// Splits on CRLF, CR and LF; always yields at least one (possibly empty) line, and a trailing
/// line break yields a final empty line, so the client reassembles exactly the original text.
fn lines(data: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.find(['\r', '\n']) {
            Some(at) => {
                let skip = if text[at..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&text[at + skip..]);
                Some(&text[..at])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

/// An update as the hub carries it after storing it: its position in history, what matching and
/// authorization need, and its frame, built once and shared by every receiver. The data lives
/// only inside the frame, so an update held in history, in a replay page or in subscriber queues
/// costs its size once.
#[derive(Debug)]
pub struct Dispatched {
    /// Position in the hub's history.
    pub seq: Seq,
    /// The update id.
    pub id: EventId,
    /// The canonical topic first, then the alternate topics.
    pub topics: Vec<Topic>,
    /// Whether only authorized subscribers receive it.
    pub private: bool,
    /// The SSE bytes of the update.
    pub frame: Bytes,
}

impl Dispatched {
    /// Frames a stored update, keeping only what routing needs beside the frame.
    pub fn new(seq: Seq, update: Update) -> Self {
        let frame = update.frame();
        let Update { id, topics, private, .. } = update;
        Self { seq, id, topics, private, frame }
    }

    /// The memory this update holds, approximately: its frame, its id and topics, and the fixed
    /// part. What replay pages count against their budget.
    pub fn size(&self) -> usize {
        const FIXED: usize = std::mem::size_of::<Dispatched>() + 32;
        let topics: usize = self.topics.iter().map(|t| t.as_str().len() + 24).sum();
        FIXED + self.frame.len() + self.id.as_str().len() + topics
    }
}

#[cfg(test)]
impl Update {
    /// A public update with this id, on topic `t`, without data: for tests of the stores.
    pub(crate) fn for_test(id: &str) -> Self {
        Self {
            id: EventId::new(id).expect("valid test id"),
            topics: vec![Topic::new("t").expect("valid test topic")],
            data: String::new(),
            private: false,
            event_type: None,
            retry: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(data: &str) -> Update {
        Update {
            id: EventId::new("id-1").expect("valid id"),
            topics: vec![Topic::new("https://e.com/a").expect("valid topic")],
            data: data.into(),
            private: false,
            event_type: None,
            retry: None,
        }
    }

    #[test]
    fn an_update_from_the_client_crate_keeps_every_field() {
        let sent = quicksilver_client::Update::builder("a")
            .topic("b")
            .data("x")
            .private(true)
            .id("i")
            .event_type("t")
            .retry(std::time::Duration::from_millis(1500))
            .build()
            .expect("valid");
        let update = Update::try_from(&sent).expect("the hub accepts what the client builds");
        assert_eq!(update.topics.iter().map(Topic::as_str).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!((update.id.as_str(), update.data.as_str()), ("i", "x"));
        assert_eq!(update.event_type.as_ref().map(EventType::as_str), Some("t"));
        assert_eq!(update.retry, Some(1500));
        assert!(update.private);

        let defaults = quicksilver_client::Update::builder("a").build().expect("valid");
        let update = Update::try_from(&defaults).expect("valid");
        assert!(update.id.as_str().starts_with("urn:uuid:") && !update.private);
        assert_eq!((update.retry, update.event_type), (None, None));
    }

    #[test]
    fn frames_lines_split_on_every_line_break() {
        assert_eq!(
            update("a\r\nb\rc\n").frame(),
            &b"id: id-1\ndata: a\ndata: b\ndata: c\ndata: \n\n"[..]
        );
    }

    #[test]
    fn frames_empty_data_as_one_empty_line() {
        assert_eq!(update("").frame(), &b"id: id-1\ndata: \n\n"[..]);
    }

    #[test]
    fn frames_type_and_retry_before_id() {
        let mut u = update("x");
        u.event_type = Some(EventType::new("ping").expect("valid type"));
        u.retry = Some(1500);
        assert_eq!(u.frame(), &b"event: ping\nretry: 1500\nid: id-1\ndata: x\n\n"[..]);
    }

    #[test]
    fn omits_empty_type_and_zero_retry() {
        let mut u = update("x");
        u.event_type = Some(EventType::new("").expect("valid type"));
        u.retry = Some(0);
        assert_eq!(u.frame(), &b"id: id-1\ndata: x\n\n"[..]);
    }

    #[test]
    fn keeps_blank_lines_inside_data() {
        assert_eq!(
            update("data for\n\n        x").frame(),
            &b"id: id-1\ndata: data for\ndata: \ndata:         x\n\n"[..]
        );
    }

    #[test]
    fn refuses_injection_and_reserved_ids() {
        assert!(EventId::new("a\nretry: 1").is_err());
        assert!(EventId::new("a\0").is_err());
        assert_eq!(EventId::new("#1"), Err(InvalidField::ReservedIdPrefix));
        assert_eq!(EventId::new("earliest"), Err(InvalidField::ReservedIdEarliest));
        assert!(EventType::new("x\r").is_err());
        assert!(Topic::new("https://e.com/\n").is_err());
        assert!(Topic::new("").is_ok());
    }

    #[test]
    fn format_characters_are_refused_in_ids_and_types() {
        for c in
            ['\u{AD}', '\u{200B}', '\u{202E}', '\u{2066}', '\u{FEFF}', '\u{1343F}', '\u{E0041}']
        {
            let text = format!("a{c}b");
            assert_eq!(EventId::new(text.clone()), Err(InvalidField::FormatCharacter("id")));
            assert_eq!(EventType::new(text.clone()), Err(InvalidField::FormatCharacter("type")));
            let topic = Topic::new(text).expect("the hub's constructor accepts it");
            assert_eq!(topic.check_published(), Err(InvalidField::FormatCharacter("topic")));
        }
        // Neighbours of the ranges, and visible non-ASCII text, are fine.
        for text in ["\u{AC}\u{AE}", "\u{200A}\u{2010}", "\u{2065}", "\u{E0000}\u{E0080}", "café ✓"]
        {
            assert!(EventId::new(text).is_ok(), "{text:?}");
            assert!(Topic::new(text).expect("topic").check_published().is_ok(), "{text:?}");
        }
        // C1 controls are controls (category Cc).
        assert_eq!(EventId::new("a\u{85}"), Err(InvalidField::ControlCharacter("id")));
    }

    #[test]
    fn the_mercure_type_is_reserved_for_publishers_only() {
        let hub_type = EventType::new("mercure").expect("the hub's own events use it");
        assert_eq!(hub_type.check_published(), Err(InvalidField::ReservedType));
        for fine in ["Mercure", "mercure2", "message", ""] {
            assert!(EventType::new(fine).expect("type").check_published().is_ok(), "{fine}");
        }
    }

    #[test]
    fn generated_ids_are_uuid_urns() {
        let id = EventId::generate();
        assert!(id.as_str().starts_with("urn:uuid:"));
        assert!(uuid::Uuid::parse_str(&id.as_str()["urn:uuid:".len()..]).is_ok());
        assert_ne!(id, EventId::generate());
    }
}
