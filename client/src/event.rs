//! [`Event`]: one server-sent event as a subscriber receives it.
//!
//! A plain value with no I/O; the private `sse` parser builds it, the
//! [`EventStream`](crate::EventStream) hands it out.

/// One event of a subscription: an update the hub dispatched, or one of the hub's own events
/// (subscription events have the type `mercure` in Mercure 1.0).
///
/// Line breaks inside `data` arrive as `\n` whatever the publisher sent (`\r\n` and `\r` are
/// line ends in the event stream format).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Event {
    /// The event's id: the update id the hub answered to its publisher. As in browsers, an
    /// event without an `id` field carries the stream's last event id, received on this
    /// connection or an earlier one (the empty string when there is none).
    pub id: String,
    /// The event type (the publisher's `type` field), `message` when none was given.
    pub event_type: String,
    /// The payload.
    pub data: String,
}

impl Event {
    /// The event type of events sent without one.
    pub const DEFAULT_TYPE: &'static str = "message";

    /// An event, for tests and adapters; the hub's events come from the stream.
    pub fn new(
        id: impl Into<String>,
        event_type: impl Into<String>,
        data: impl Into<String>,
    ) -> Self {
        Self { id: id.into(), event_type: event_type.into(), data: data.into() }
    }
}
