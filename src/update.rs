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
use std::sync::LazyLock;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use thiserror::Error;

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

/// The characters of Unicode's general category Cf (format), Unicode 15.0 to 16.0, as inclusive
/// ranges. Rust's standard library has no general-category lookup, and the list is short and
/// stable (the last addition, U+13439 to U+1343F, came with Unicode 15.0).
const FORMAT_CHARACTERS: [(char, char); 21] = [
    ('\u{AD}', '\u{AD}'),
    ('\u{600}', '\u{605}'),
    ('\u{61C}', '\u{61C}'),
    ('\u{6DD}', '\u{6DD}'),
    ('\u{70F}', '\u{70F}'),
    ('\u{890}', '\u{891}'),
    ('\u{8E2}', '\u{8E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007F}'),
];

/// Whether `value` holds a Unicode format (Cf) character.
fn has_format(value: &str) -> bool {
    value.chars().any(is_format_character)
}

/// Whether `c` is a Unicode format (Cf) character: invisible, it can make two different strings
/// look the same (U+200B) or reorder what is displayed (U+202E).
pub fn is_format_character(c: char) -> bool {
    FORMAT_CHARACTERS.iter().any(|&(low, high)| (low..=high).contains(&c))
}

/// The path of the hub, and the root of the namespace reserved for its own events.
const RESERVED_PATH: &str = "/.well-known/mercure";

/// The bases a relative topic is resolved against. Only the path of the result matters, so the
/// host is a placeholder: the hub's URL (how Mercure 1.0 resolves topics for URL Pattern
/// matching), and the bare origin (the reference hub's base when its resource identifier is not
/// a hub URL), so that a relative topic landing in the namespace under either is refused.
static BASES: LazyLock<[url::Url; 2]> = LazyLock::new(|| {
    let base = |text| url::Url::parse(text).expect("a constant, valid absolute URL");
    [base("https://hub.invalid/.well-known/mercure"), base("https://hub.invalid/")]
});

/// Whether `topic`, resolved like a URL, lies in the namespace of the hub's own events: its path,
/// with dot segments removed (the WHATWG parser does it, `%2e` forms included) and `%XX` escapes
/// of unreserved characters decoded, is `/.well-known/mercure` or below it. The host does not
/// matter, since a subscriber's URL Pattern may match a topic on any host. A topic that is not a
/// URL at all is outside unless its resolution lands inside.
pub fn in_reserved_namespace(topic: &str) -> bool {
    // A reference without a path (``, `?x`, `#x`) resolves to the hub's URL itself only because
    // the hub's URL is the base: the empty topic has always been accepted (tests/http.rs), and
    // the hub publishes nothing there. Such topics are resolved against the origin alone.
    let pathless = topic.trim_start().is_empty() || topic.trim_start().starts_with(['?', '#']);
    BASES.iter().skip(usize::from(pathless)).any(|base| {
        base.join(topic).is_ok_and(|url| {
            let path = decode_unreserved(url.path());
            path == RESERVED_PATH
                || path.strip_prefix(RESERVED_PATH).is_some_and(|rest| rest.starts_with('/'))
        })
    })
}

/// `path` with every `%XX` escape of an unreserved character (RFC 3986: ALPHA, DIGIT, `-`, `.`,
/// `_`, `~`) decoded, hex digits in either case: `/.well-known/%6Dercure` is the hub's path.
/// Other escapes stay as they are (`%2F` is not a `/`).
fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| path.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        match decoded {
            Some(byte) => {
                out.push(char::from(byte));
                i += 3;
            }
            None => {
                // `path` is ASCII (the URL parser escapes the rest), so one byte is one char.
                out.push(char::from(bytes[i]));
                i += 1;
            }
        }
    }
    out
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
        if value == "earliest" {
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
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The SSE event type of the hub's own events (Mercure 1.0).
pub const HUB_EVENT_TYPE: &str = "mercure";

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
    /// Starts an update whose canonical topic is `topic`; the other fields have their defaults
    /// (no data, public, an id the hub generates, type `message`, no `retry`). Nothing is
    /// checked before [`UpdateBuilder::build`].
    ///
    /// ```
    /// use quicksilver::update::Update;
    ///
    /// let update = Update::builder("https://example.com/books/1")
    ///     .topic("https://example.com/books")
    ///     .data(r#"{"title": "Dune"}"#)
    ///     .private(true)
    ///     .build()?;
    /// assert_eq!(update.topics.len(), 2);
    /// assert!(update.id.as_str().starts_with("urn:uuid:"));
    /// # Ok::<(), quicksilver::update::InvalidField>(())
    /// ```
    pub fn builder(topic: impl Into<String>) -> UpdateBuilder {
        UpdateBuilder { topics: vec![topic.into()], ..UpdateBuilder::default() }
    }

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

/// The fields of an [`Update`] before they are checked; made by [`Update::builder`].
#[derive(Debug, Clone, Default)]
#[must_use = "an update builder does nothing until `build` is called"]
pub struct UpdateBuilder {
    topics: Vec<String>,
    data: String,
    private: bool,
    id: Option<String>,
    event_type: Option<String>,
    retry: Option<u64>,
}

impl UpdateBuilder {
    /// Adds an alternate topic: subscribers to it receive the update too.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topics.push(topic.into());
        self
    }

    /// The payload (empty by default), opaque to the hub.
    pub fn data(mut self, data: impl Into<String>) -> Self {
        self.data = data.into();
        self
    }

    /// Whether only subscribers allowed one of the topics receive it (`false` by default).
    pub fn private(mut self, private: bool) -> Self {
        self.private = private;
        self
    }

    /// The update's id, instead of one the hub generates (`urn:uuid:` and a UUIDv7).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The SSE event type, instead of the default `message`.
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = Some(event_type.into());
        self
    }

    /// The reconnection time the update tells its receivers (whole milliseconds; zero means
    /// none).
    pub fn retry(mut self, retry: std::time::Duration) -> Self {
        self.retry = Some(u64::try_from(retry.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Checks every field as the hub checks a publisher's (the same rules as `POST`, but for
    /// the number of topics, which [`crate::Hub::publish`] checks against its setting).
    pub fn build(self) -> Result<Update, InvalidField> {
        let topics = self.topics.into_iter().map(Topic::new).collect::<Result<Vec<_>, _>>()?;
        let id = match self.id.filter(|id| !id.is_empty()) {
            Some(id) => EventId::new(id)?,
            None => EventId::generate(),
        };
        let event_type = self.event_type.map(EventType::new).transpose()?;
        let update = Update {
            id,
            topics,
            data: self.data,
            private: self.private,
            event_type,
            retry: self.retry.filter(|&retry| retry > 0),
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
    fn the_builder_checks_every_field_as_a_publish_does() {
        let update = Update::builder("a")
            .topic("b")
            .data("x")
            .private(true)
            .id("i")
            .event_type("t")
            .retry(std::time::Duration::from_millis(1500))
            .build()
            .expect("valid");
        assert_eq!(update.topics.iter().map(Topic::as_str).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!((update.id.as_str(), update.data.as_str()), ("i", "x"));
        assert_eq!(update.event_type.as_ref().map(EventType::as_str), Some("t"));
        assert_eq!(update.retry, Some(1500));
        assert!(update.private);

        let defaults = Update::builder("a").retry(std::time::Duration::ZERO).build().expect("ok");
        assert!(defaults.id.as_str().starts_with("urn:uuid:") && !defaults.private);
        assert_eq!((defaults.retry, defaults.event_type), (None, None));

        let refused = [
            Update::builder("a\n").build(),
            Update::builder("a").topic("/.well-known/mercure/x").build(),
            Update::builder("a").id("#1").build(),
            Update::builder("a").id("earliest").build(),
            Update::builder("a").event_type("mercure").build(),
            Update::builder("a").event_type("t\u{202E}").build(),
        ];
        for result in refused {
            assert!(result.is_err(), "{result:?}");
        }
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
    fn reserved_namespace_in_every_spelling() {
        for topic in [
            "/.well-known/mercure",
            "/.well-known/mercure/",
            "/.well-known/mercure/subscriptions/x",
            "/.well-known/%6Dercure/x",
            "/.well-known/%6dercure/x",
            "/%2Ewell-known/mercure",
            "/.well-known/merc%75re",
            "https://evil.example/.well-known/mercure",
            "http://evil.example:8080/.well-known/mercure/x?y#z",
            "urn-like://host/.well-known/mercure",
            "/a/../.well-known/mercure/x",
            "/./.well-known/mercure",
            "/a/%2e%2e/.well-known/mercure",
            "/a/%2E./.well-known/mercure",
            "/a/.%2e/.well-known/mercure",
            "/.well-known/mercure/%2e",
            ".well-known/mercure/x",
            "mercure/x",
            "../.well-known/mercure",
            "\\.well-known\\mercure",
            "https://evil.example\\.well-known\\mercure\\x",
            "//other.example/.well-known/mercure",
            " /.well-known/mercure",
        ] {
            assert!(in_reserved_namespace(topic), "{topic:?} should be reserved");
            let topic = Topic::new(topic).expect("the hub's constructor accepts it");
            assert!(matches!(topic.check_published(), Err(InvalidField::ReservedTopic(_))));
        }
    }

    #[test]
    fn topics_outside_the_namespace() {
        for topic in [
            "https://example.com/books/1",
            "https://example.com/.well-known/mercure-not/x",
            "/.well-known/mercurex",
            "/.well-known/mercure%2Fx",
            "/.well-known%2Fmercure",
            "/.WELL-KNOWN/mercure",
            "/x/.well-known/mercure",
            "foo bar",
            "",
            "?x",
            "#x",
            "*",
            "urn:uuid:0190-.well-known/mercure",
            "mailto:a@.well-known/mercure",
            "http://[::1",
        ] {
            assert!(!in_reserved_namespace(topic), "{topic:?} is an ordinary topic");
        }
    }

    #[test]
    fn decodes_only_unreserved_escapes() {
        assert_eq!(decode_unreserved("/%41%7a%2D%2e%5F%7E"), "/Az-._~");
        assert_eq!(decode_unreserved("/%2F%20%25%zz%4"), "/%2F%20%25%zz%4");
    }

    #[test]
    fn generated_ids_are_uuid_urns() {
        let id = EventId::generate();
        assert!(id.as_str().starts_with("urn:uuid:"));
        assert!(uuid::Uuid::parse_str(&id.as_str()["urn:uuid:".len()..]).is_ok());
        assert_ne!(id, EventId::generate());
    }
}
