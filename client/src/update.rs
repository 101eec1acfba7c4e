//! [`Update`]: what a publisher sends, checked before it leaves the process.
//!
//! [`UpdateBuilder::build`] refuses what a hub would answer with 400 (Quicksilver checks all of
//! it; the reference hub some), so that a mistake is reported with its reason and before any
//! network use: control characters in a topic, an id or a type (they would inject fields into
//! other subscribers' streams), invisible Unicode format characters (an id that looks like
//! another), a topic in the hub's reserved namespace `/.well-known/mercure` (the hub's own
//! events), the type `mercure`, the ids `earliest` and `#...` (cursors), no topic at all.
//!
//! An update without an id gets one here (`urn:uuid:` and a time-ordered UUIDv7, the form hubs
//! generate), so that each attempt to publish it, automatic or by the caller, carries the same
//! id: a subscriber of this crate skips an event whose id is among the last ids its stream
//! received (1,024 by default), so it receives the update once if both copies were stored and
//! arrive within that window. Limits that depend
//! on the hub's configuration (body size, number of topics) are the hub's to check (413).

use std::time::Duration;

use crate::protocol::{in_reserved_namespace, is_format_character, EARLIEST, HUB_EVENT_TYPE};

/// Why an update cannot be published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidUpdate {
    /// The update has no topic: give one to [`Update::builder`].
    #[error("an update needs at least one topic")]
    NoTopic,
    /// A control character (CR, LF, NUL, ...), which would corrupt the event stream.
    #[error("{field} {value:?} holds a control character (CR, LF, NUL, ...)")]
    ControlCharacter {
        /// `topic`, `id` or `type`.
        field: &'static str,
        /// The value refused.
        value: String,
    },
    /// An invisible Unicode format character (U+200B, U+202E, U+FEFF, ...), which makes a
    /// value look like another.
    #[error("{field} {value:?} holds an invisible Unicode format character (U+200B, U+202E, ...)")]
    FormatCharacter {
        /// `topic`, `id` or `type`.
        field: &'static str,
        /// The value refused.
        value: String,
    },
    /// A topic in the namespace of the hub's own events.
    #[error(
        "topic {0:?} is in the hub's reserved namespace /.well-known/mercure (however written), \
         which carries the hub's own events"
    )]
    ReservedTopic(String),
    /// The id is empty: hubs take it as no id and generate one, which automatic retries could
    /// then not repeat.
    #[error("the id is empty: leave it unset and the client generates one")]
    EmptyId,
    /// An id starting with `#`, a form hubs keep for the ids they generate.
    #[error("the id {0:?} starts with `#`, which hubs keep for their own ids")]
    ReservedIdPrefix(String),
    /// The id `earliest`, which means "the start of history" in `Last-Event-ID`.
    #[error("the id `earliest` means the start of history to subscribers: choose another")]
    ReservedIdEarliest,
    /// The type `mercure`, that of the hub's own events.
    #[error("the type `mercure` is that of the hub's own events: choose another")]
    ReservedType,
    /// A `retry` longer than a hub can carry (2^64 milliseconds).
    #[error("the retry delay is too long: at most 2^64 - 1 milliseconds")]
    RetryTooLong,
}

/// An update, checked and with its id: built by [`Update::builder`], published by
/// [`Publisher::publish`](crate::Publisher::publish).
///
/// ```
/// use std::time::Duration;
/// use quicksilver_client::Update;
///
/// let update = Update::builder("https://example.com/books/1")
///     .topic("https://example.com/authors/7")
///     .data(r#"{"title": "Quicksilver"}"#)
///     .private(true)
///     .event_type("book")
///     .retry(Duration::from_secs(5))
///     .build()?;
/// assert_eq!(update.topic(), "https://example.com/books/1");
/// assert!(update.id().starts_with("urn:uuid:"));
/// # Ok::<(), quicksilver_client::InvalidUpdate>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    topics: Vec<String>,
    data: String,
    private: bool,
    id: String,
    event_type: Option<String>,
    retry: Option<Duration>,
}

/// The fields of an [`Update`] being built; [`UpdateBuilder::build`] checks them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "an update is published once built"]
pub struct UpdateBuilder {
    topics: Vec<String>,
    data: String,
    private: bool,
    id: Option<String>,
    event_type: Option<String>,
    retry: Option<Duration>,
}

impl Update {
    /// Starts an update about `topic`, its canonical topic.
    pub fn builder(topic: impl Into<String>) -> UpdateBuilder {
        UpdateBuilder {
            topics: vec![topic.into()],
            data: String::new(),
            private: false,
            id: None,
            event_type: None,
            retry: None,
        }
    }

    /// The id: the one given, or the one generated when the update was built.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The canonical topic.
    pub fn topic(&self) -> &str {
        // `build` refuses an update without topics.
        self.topics.first().map_or("", String::as_str)
    }

    /// Every topic, the canonical one first.
    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// The payload.
    pub fn data(&self) -> &str {
        &self.data
    }

    /// Whether only subscribers allowed one of its topics receive it.
    pub fn is_private(&self) -> bool {
        self.private
    }

    /// The event type, when not the default `message`.
    pub fn event_type(&self) -> Option<&str> {
        self.event_type.as_deref()
    }

    /// The reconnection delay subscribers are asked to use from this event on.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    /// The `application/x-www-form-urlencoded` body of the publish request.
    pub(crate) fn form(&self) -> String {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        for topic in &self.topics {
            form.append_pair("topic", topic);
        }
        form.append_pair("data", &self.data);
        form.append_pair("id", &self.id);
        if self.private {
            // Hubs look for the field's presence; `on` is what an HTML checkbox sends.
            form.append_pair("private", "on");
        }
        if let Some(event_type) = &self.event_type {
            form.append_pair("type", event_type);
        }
        if let Some(retry) = self.retry {
            // Checked by `build` to fit.
            form.append_pair("retry", &retry.as_millis().to_string());
        }
        form.finish()
    }
}

impl UpdateBuilder {
    /// Adds an alternate topic: subscribers of any of the topics receive the update.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topics.push(topic.into());
        self
    }

    /// Sets the payload (UTF-8 text; JSON is common). Line breaks arrive as `\n`.
    pub fn data(mut self, data: impl Into<String>) -> Self {
        self.data = data.into();
        self
    }

    /// Makes the update private: only subscribers whose token allows one of its topics
    /// receive it.
    pub fn private(mut self, private: bool) -> Self {
        self.private = private;
        self
    }

    /// Sets the id, instead of a generated one. It must be unique: subscribers skip an id
    /// they have just seen, and resume after it when they reconnect.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the event type (the `type` field, the SSE `event`), instead of `message`.
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = Some(event_type.into());
        self
    }

    /// Asks subscribers to wait `retry` before reconnecting, from this event on. Sent in
    /// whole milliseconds, rounded down.
    pub fn retry(mut self, retry: Duration) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Checks the fields and makes the update, with a generated id if none was given.
    pub fn build(self) -> Result<Update, InvalidUpdate> {
        if self.topics.is_empty() {
            return Err(InvalidUpdate::NoTopic);
        }
        for topic in &self.topics {
            check_visible("topic", topic)?;
            if in_reserved_namespace(topic) {
                return Err(InvalidUpdate::ReservedTopic(topic.clone()));
            }
        }
        let id = match self.id {
            Some(id) => {
                check_visible("id", &id)?;
                if id.is_empty() {
                    return Err(InvalidUpdate::EmptyId);
                }
                if id.starts_with('#') {
                    return Err(InvalidUpdate::ReservedIdPrefix(id));
                }
                if id == EARLIEST {
                    return Err(InvalidUpdate::ReservedIdEarliest);
                }
                id
            }
            None => format!("urn:uuid:{}", uuid::Uuid::now_v7()),
        };
        if let Some(event_type) = &self.event_type {
            check_visible("type", event_type)?;
            if event_type == HUB_EVENT_TYPE {
                return Err(InvalidUpdate::ReservedType);
            }
        }
        if self.retry.is_some_and(|retry| u64::try_from(retry.as_millis()).is_err()) {
            return Err(InvalidUpdate::RetryTooLong);
        }
        Ok(Update {
            topics: self.topics,
            data: self.data,
            private: self.private,
            id,
            event_type: self.event_type,
            retry: self.retry,
        })
    }
}

/// Refuses control characters (C0, DEL, C1) and Unicode format characters in `value`.
fn check_visible(field: &'static str, value: &str) -> Result<(), InvalidUpdate> {
    if value.chars().any(char::is_control) {
        return Err(InvalidUpdate::ControlCharacter { field, value: value.to_owned() });
    }
    if value.chars().any(is_format_character) {
        return Err(InvalidUpdate::FormatCharacter { field, value: value.to_owned() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(builder: UpdateBuilder) -> InvalidUpdate {
        builder.build().expect_err("refused")
    }

    #[test]
    fn an_update_gets_a_uuid_v7_urn_once() {
        let update = Update::builder("a").build().expect("valid");
        let uuid = update.id().strip_prefix("urn:uuid:").expect("a UUID URN");
        let parsed = uuid::Uuid::parse_str(uuid).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 7);
        let again = update.clone();
        assert_eq!(again.id(), update.id(), "a copy publishes the same id");
        assert_ne!(Update::builder("a").build().expect("valid").id(), update.id());
    }

    #[test]
    fn the_form_has_every_field() {
        let update = Update::builder("https://e.com/a b")
            .topic("t&2")
            .data("x=1&y=é\nz")
            .private(true)
            .id("i+d")
            .event_type("t")
            .retry(Duration::from_micros(2_500_900))
            .build()
            .expect("valid");
        assert_eq!(
            update.form(),
            "topic=https%3A%2F%2Fe.com%2Fa+b&topic=t%262&data=x%3D1%26y%3D%C3%A9%0Az&id=i%2Bd\
             &private=on&type=t&retry=2500"
        );
        let plain = Update::builder("a").id("1").build().expect("valid");
        assert_eq!(plain.form(), "topic=a&data=&id=1");
        assert_eq!((plain.topic(), plain.topics().len()), ("a", 1));
        assert!(!plain.is_private() && plain.event_type().is_none() && plain.retry().is_none());
    }

    #[test]
    fn refuses_what_the_hub_refuses() {
        let topic = || Update::builder("https://example.com/a");
        assert!(matches!(
            refused(Update::builder("a\nb")),
            InvalidUpdate::ControlCharacter { field: "topic", .. }
        ));
        assert!(matches!(
            refused(topic().topic("x\u{0}")),
            InvalidUpdate::ControlCharacter { field: "topic", .. }
        ));
        assert!(matches!(
            refused(topic().topic("x\u{85}")),
            InvalidUpdate::ControlCharacter { field: "topic", .. }
        ));
        assert!(matches!(
            refused(topic().id("a\r\nevent: x")),
            InvalidUpdate::ControlCharacter { field: "id", .. }
        ));
        assert!(matches!(
            refused(topic().event_type("a\u{7f}")),
            InvalidUpdate::ControlCharacter { field: "type", .. }
        ));
        assert!(matches!(
            refused(topic().id("a\u{200B}")),
            InvalidUpdate::FormatCharacter { field: "id", .. }
        ));
        assert!(matches!(
            refused(topic().event_type("x\u{202E}")),
            InvalidUpdate::FormatCharacter { field: "type", .. }
        ));
        assert!(matches!(
            refused(Update::builder("a\u{FEFF}")),
            InvalidUpdate::FormatCharacter { field: "topic", .. }
        ));
        assert!(matches!(
            refused(Update::builder("a\u{E0041}")),
            InvalidUpdate::FormatCharacter { .. }
        ));
        assert_eq!(refused(topic().id("")), InvalidUpdate::EmptyId);
        assert_eq!(refused(topic().id("#1")), InvalidUpdate::ReservedIdPrefix("#1".into()));
        assert_eq!(refused(topic().id("earliest")), InvalidUpdate::ReservedIdEarliest);
        assert_eq!(refused(topic().event_type("mercure")), InvalidUpdate::ReservedType);
        assert_eq!(refused(topic().retry(Duration::MAX)), InvalidUpdate::RetryTooLong);
        let mut no_topic = topic();
        no_topic.topics.clear();
        assert_eq!(refused(no_topic), InvalidUpdate::NoTopic);
        // What looks close but is allowed.
        for valid in [
            topic().id("Earliest").event_type("Mercure").retry(Duration::ZERO),
            topic().id("a#1").event_type(""),
            Update::builder(""),
            Update::builder("é 日本"),
            Update::builder("/.well-known/mercurey"),
            Update::builder("https://example.com/.well-known/mercure-x"),
            Update::builder("/.well-known%2Fmercure"),
        ] {
            valid.clone().build().unwrap_or_else(|error| panic!("{valid:?}: {error}"));
        }
    }

    #[test]
    fn the_reserved_namespace_in_every_spelling() {
        for topic in [
            "/.well-known/mercure",
            "/.well-known/mercure/",
            "/.well-known/mercure/subscriptions/a/b",
            "https://other.example/.well-known/mercure/x",
            "HTTPS://OTHER.EXAMPLE/.well-known/mercure",
            "/.well-known/%6Dercure/x",
            "/.well-known/%6dercure",
            "/%2Ewell-known/mercure",
            "/a/../.well-known/mercure",
            "/a/%2e%2e/.well-known/mercure",
            "\\.well-known\\mercure",
            "mercure",
            "mercure/subscriptions",
            "./mercure",
            "../.well-known/mercure/x",
            "?x",
        ] {
            let outcome = Update::builder(topic).build();
            if topic == "?x" {
                assert!(outcome.is_ok(), "a query alone is read against the origin");
                continue;
            }
            assert!(
                matches!(outcome, Err(InvalidUpdate::ReservedTopic(_))),
                "{topic}: {outcome:?}"
            );
        }
        for topic in [
            "https://example.com/books/1",
            "urn:isbn:123",
            "not a url",
            "/.well-known/mercurex",
            "/.well-known%2Fmercure",
            "#/.well-known/mercure",
            "",
        ] {
            assert!(Update::builder(topic).build().is_ok(), "{topic}");
        }
    }
}
