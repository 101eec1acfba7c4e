//! Presence: the events that announce subscriptions, and their lifecycle.
//!
//! With `subscriptions` on, every subscription (one per `topic` selector of a connection) is
//! announced by a private update when its subscriber is registered, and again when it leaves. The
//! update's topic is `/.well-known/mercure/subscriptions/{selector}/{subscriber}` (both
//! form-escaped), so a client watches presence by subscribing to a template such as
//! `/.well-known/mercure/subscriptions{/topic}{/subscriber}` with a token that allows it. Its data
//! is the subscription's JSON-LD document, the same one the subscriptions API lists.
//!
//! [`arrive`] announces a subscription and returns the [`Departure`] that announces its end when
//! dropped, so that every arrival is followed by exactly one departure, whichever way the
//! connection ends. The departure events are made at arrival ([`Announcement`]): in a cluster,
//! another node publishes them if this one dies first, and JetStream stores them once. Both are
//! ephemeral on a single node ([`Keep::Recent`](crate::transport::recent::Keep)): they describe
//! connections that a restart ends anyway.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::config::Protocols;
use crate::subscription::{Protocol, Subscription};
use crate::topic_selector::TopicSelector;
use crate::transport::{Announcement, Transport, TransportError};
use crate::update::{Dispatched, EventId, EventType, Topic, Update, HUB_EVENT_TYPE};

/// JSON-LD context of subscription documents.
pub const CONTEXT: &str = "https://mercure.rocks/";
pub use crate::subscription::SUBSCRIPTIONS_PATH;

/// The `match_type` a Mercure 1.0 document gives a draft-07 URI template, which is not a
/// Mercure 1.0 matcher type (an extension: Mercure 1.0 lets hubs name other types).
pub const URI_TEMPLATE_TYPE: &str = "uritemplate";

/// One subscription as a Mercure 1.0 document: plain JSON, no `@context`.
#[derive(Debug, Serialize)]
pub struct ModernDocument<'a> {
    /// The subscription's topic, which is also its URL in the API.
    pub id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    subscriber: &'a str,
    /// The subscription's matcher.
    #[serde(rename = "match")]
    pub pattern: &'a str,
    /// Its type: `exact`, `urlpattern` (or `uritemplate` for a draft-07 subscription).
    pub match_type: &'a str,
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a Value>,
}

impl<'a> ModernDocument<'a> {
    /// The document of `subscription`'s subscription to `selector`.
    pub fn new(subscription: &'a Subscription, selector: &'a TopicSelector, active: bool) -> Self {
        let match_type = match_type_of(selector);
        Self {
            id: modern_topic_of(match_type, selector.as_str(), &subscription.id),
            kind: "subscription",
            subscriber: &subscription.id,
            pattern: selector.as_str(),
            match_type,
            active,
            payload: subscription.payload.as_ref().filter(|p| !p.is_null()),
        }
    }

    /// The subscriber's id.
    pub fn subscriber(&self) -> &str {
        self.subscriber
    }

    /// The document of a subscription another node announced.
    pub fn announced(announcement: &'a Announcement) -> Self {
        let match_type = announcement.match_type.as_deref().unwrap_or(URI_TEMPLATE_TYPE);
        Self {
            id: modern_topic_of(match_type, &announcement.topic, &announcement.subscriber),
            kind: "subscription",
            subscriber: &announcement.subscriber,
            pattern: &announcement.topic,
            match_type,
            active: true,
            payload: announcement.payload.as_ref().filter(|p| !p.is_null()),
        }
    }
}

/// The Mercure 1.0 `match_type` of `selector`.
pub fn match_type_of(selector: &TopicSelector) -> &'static str {
    selector.match_kind().map_or(URI_TEMPLATE_TYPE, |kind| kind.as_str())
}

/// One subscription as JSON-LD; field order is the reference hub's.
#[derive(Debug, Serialize)]
pub struct Document<'a> {
    /// The JSON-LD context: present on a document that stands alone (an event, or the API's
    /// answer for one subscription), absent inside a collection.
    #[serde(rename = "@context", skip_serializing_if = "Option::is_none")]
    pub context: Option<&'static str>,
    /// The subscription's topic, which is also its URL in the API.
    pub id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    subscriber: &'a str,
    /// The subscription's selector.
    pub topic: &'a str,
    active: bool,
    /// The API's cursor, on its answer for one subscription.
    #[serde(rename = "lastEventID", skip_serializing_if = "Option::is_none")]
    pub last_event_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a Value>,
}

impl<'a> Document<'a> {
    /// The document of `subscription`'s subscription to `selector`, without context.
    pub fn new(subscription: &'a Subscription, selector: &'a TopicSelector, active: bool) -> Self {
        Self {
            context: None,
            id: topic_of(selector.as_str(), &subscription.id),
            kind: "Subscription",
            subscriber: &subscription.id,
            topic: selector.as_str(),
            active,
            last_event_id: None,
            payload: subscription.payload.as_ref().filter(|p| !p.is_null()),
        }
    }

    /// The document of a subscription another node announced, without context.
    pub fn announced(announcement: &'a Announcement) -> Self {
        Self {
            context: None,
            id: topic_of(&announcement.topic, &announcement.subscriber),
            kind: "Subscription",
            subscriber: &announcement.subscriber,
            topic: &announcement.topic,
            active: true,
            last_event_id: None,
            payload: announcement.payload.as_ref().filter(|p| !p.is_null()),
        }
    }
}

/// Form-style escaping, as Go's `url.QueryEscape`: unreserved characters stay, a space becomes
/// `+`, every other byte `%XX` (upper case).
pub fn query_escape(text: &str) -> String {
    escape(text, "+")
}

/// Percent-encoding of one path segment, applied once to the raw text: every byte but the
/// unreserved characters becomes `%XX` (a space `%20`), as Mercure 1.0 builds its topics.
pub fn path_escape(text: &str) -> String {
    escape(text, "%20")
}

/// Keeps the unreserved characters of `text`, writes `space` for a space and `%XX` (upper case)
/// for every other byte.
fn escape(text: &str, space: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char);
            }
            b' ' => out.push_str(space),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The Mercure 1.0 topic (and document id) of `subscriber`'s subscription to `pattern`.
pub fn modern_topic_of(match_type: &str, pattern: &str, subscriber: &str) -> String {
    format!(
        "{SUBSCRIPTIONS_PATH}/{match_type}/{}/{}",
        path_escape(pattern),
        path_escape(subscriber)
    )
}

/// Whether `topic` is one of the hub's subscription event topics.
pub fn is_topic(topic: &str) -> bool {
    topic.strip_prefix(SUBSCRIPTIONS_PATH).is_some_and(|rest| rest.starts_with('/'))
}

/// Whether `update` is a subscription event: private, on a subscription event topic.
pub fn is_event(update: &Dispatched) -> bool {
    update.private && update.topics.first().is_some_and(|topic| is_topic(topic.as_str()))
}

/// The topic (and document id) of the subscription of `subscriber` to `selector`.
pub fn topic_of(selector: &str, subscriber: &str) -> String {
    format!("{SUBSCRIPTIONS_PATH}/{}/{}", query_escape(selector), query_escape(subscriber))
}

/// The private updates announcing that `subscription` became active or inactive: one per
/// selector and per protocol the hub serves (see [`crate::subscription::presence_protocol`]).
/// Draft-07 events hold the JSON-LD document (indented by two spaces, as the reference hub),
/// Mercure 1.0 events the plain JSON one, with the event type `mercure`.
pub fn updates(subscription: &Subscription, active: bool, protocols: Protocols) -> Vec<Update> {
    subscription
        .selectors
        .iter()
        .flat_map(|selector| {
            let draft_07 =
                protocols.draft_07.then(|| legacy_update(subscription, selector, active));
            let v1 = protocols.v1.then(|| modern_update(subscription, selector, active));
            draft_07.into_iter().chain(v1)
        })
        .collect()
}

fn legacy_update(subscription: &Subscription, selector: &TopicSelector, active: bool) -> Update {
    let mut document = Document::new(subscription, selector, active);
    document.context = Some(CONTEXT);
    Update {
        id: EventId::generate(),
        topics: vec![Topic::new(document.id.clone())
            .expect("query_escape leaves no control characters in the topic")],
        data: serde_json::to_string_pretty(&document).unwrap_or_default(),
        private: true,
        event_type: None,
        retry: None,
    }
}

fn modern_update(subscription: &Subscription, selector: &TopicSelector, active: bool) -> Update {
    let document = ModernDocument::new(subscription, selector, active);
    Update {
        id: EventId::generate(),
        topics: vec![Topic::new(document.id.clone())
            .expect("path_escape leaves no control characters in the topic")],
        data: serde_json::to_string(&document).unwrap_or_default(),
        private: true,
        event_type: Some(
            EventType::new(HUB_EVENT_TYPE).expect("the hub's event type is a valid type"),
        ),
        retry: None,
    }
}

/// What the cluster is told of `subscription`: one announcement per selector and protocol,
/// each with its departure event, made now.
pub fn announcements(subscription: &Subscription, protocols: Protocols) -> Vec<Announcement> {
    let payload = subscription.payload.clone().filter(|p| !p.is_null());
    let departures = updates(subscription, false, protocols);
    let formats = [Protocol::Draft07, Protocol::V1]
        .into_iter()
        .filter(|protocol| match protocol {
            Protocol::Draft07 => protocols.draft_07,
            Protocol::V1 => protocols.v1,
        })
        .collect::<Vec<_>>();
    subscription
        .selectors
        .iter()
        .flat_map(|selector| formats.iter().map(move |protocol| (selector, *protocol)))
        .zip(departures)
        .map(|((selector, protocol), departure)| Announcement {
            subscriber: subscription.id.clone(),
            topic: selector.as_str().to_owned(),
            payload: payload.clone(),
            departure,
            protocol,
            match_type: selector.match_kind().map(|kind| kind.as_str().to_owned()),
        })
        .collect()
}

/// Announces `subscription` (one write for all its selectors) and returns what announces its
/// end. Call it once the subscriber is registered, so that it can see its own arrival, and once
/// nothing else can fail, so that the departure always follows.
pub async fn arrive(
    transport: Arc<dyn Transport>,
    subscription: Arc<Subscription>,
    protocols: Protocols,
) -> Result<Departure, TransportError> {
    let announcements = announcements(&subscription, protocols);
    transport.arrive(updates(&subscription, true, protocols), announcements.clone()).await?;
    Ok(Departure { transport, subscriber: subscription.id.clone(), announcements })
}

/// Publishes a subscription's `active: false` events when dropped, that is when its connection
/// ends for any reason (client gone, deadline, dropped as too slow, shutdown).
pub struct Departure {
    transport: Arc<dyn Transport>,
    subscriber: String,
    announcements: Vec<Announcement>,
}

impl std::fmt::Debug for Departure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Departure").field("subscriber", &self.subscriber).finish()
    }
}

impl Drop for Departure {
    fn drop(&mut self) {
        let announcements = std::mem::take(&mut self.announcements);
        let transport = self.transport.clone();
        // Dropped on an HTTP worker, inside its runtime. Outside one (the process is ending)
        // there is nobody left to tell.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = transport.depart(announcements).await {
                    tracing::warn!(%error, "cannot announce the end of a subscription");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscription::presence_protocol;
    use crate::topic_selector::MatchType;

    const DRAFT_07: Protocols = Protocols { draft_07: true, v1: false };

    #[test]
    fn each_protocol_gets_events_in_its_own_format() {
        let base = url::Url::parse("https://hub.example/.well-known/mercure").expect("a URL");
        let selectors = vec![
            TopicSelector::parse_matcher("https://e.com/a b", MatchType::Exact, &base)
                .expect("exact"),
            TopicSelector::parse_matcher("/books/:id", MatchType::UrlPattern, &base)
                .expect("a pattern"),
        ];
        let payload = serde_json::json!({"user": 42});
        let subscription =
            Subscription::new(selectors, None, Some(payload)).with_protocol(Protocol::V1);
        let events = updates(&subscription, true, Protocols::ALL);
        assert_eq!(events.len(), 4, "two selectors, two formats");
        let (legacy, modern) = (&events[0], &events[1]);
        assert_eq!(legacy.event_type, None);
        assert!(legacy.data.contains("\"@context\""));
        assert_eq!(modern.event_type.as_ref().map(EventType::as_str), Some("mercure"));
        let id = &subscription.id;
        let escaped_id = id.replace(':', "%3A");
        assert_eq!(
            modern.topics[0].as_str(),
            format!(
                "/.well-known/mercure/subscriptions/exact/https%3A%2F%2Fe.com%2Fa%20b/{escaped_id}"
            )
        );
        let document: serde_json::Value = serde_json::from_str(&modern.data).expect("JSON");
        assert_eq!(
            document,
            serde_json::json!({
                "id": modern.topics[0].as_str(),
                "type": "subscription",
                "subscriber": id,
                "match": "https://e.com/a b",
                "match_type": "exact",
                "active": true,
                "payload": {"user": 42},
            })
        );
        assert_eq!(
            events[3].topics[0].as_str(),
            format!("/.well-known/mercure/subscriptions/urlpattern/%2Fbooks%2F%3Aid/{escaped_id}")
        );
        let dispatched: Vec<Dispatched> =
            events.into_iter().enumerate().map(|(i, e)| Dispatched::new(i as u64 + 1, e)).collect();
        assert_eq!(presence_protocol(&dispatched[0]), Some(Protocol::Draft07));
        assert_eq!(presence_protocol(&dispatched[1]), Some(Protocol::V1));
        // A subscriber allowed to read every subscription event gets those of its protocol.
        let watcher = |protocol| {
            Subscription::new(vec![TopicSelector::Any], Some(vec![TopicSelector::Any]), None)
                .with_protocol(protocol)
        };
        let (old, new) = (watcher(Protocol::Draft07), watcher(Protocol::V1));
        assert!(old.may_receive(&dispatched[0]) && !old.may_receive(&dispatched[1]));
        assert!(!new.may_receive(&dispatched[0]) && new.may_receive(&dispatched[1]));
        // One format only when the hub serves one protocol.
        let v1_only = Protocols { draft_07: false, v1: true };
        assert_eq!(updates(&subscription, false, v1_only).len(), 2);
        let announced = announcements(&subscription, Protocols::ALL);
        assert_eq!(announced.len(), 4);
        assert_eq!(announced[1].protocol, Protocol::V1);
        assert_eq!(announced[3].match_type.as_deref(), Some("urlpattern"));
        assert!(announced[3].departure.data.contains("\"active\":false"));
    }

    #[test]
    fn escapes_like_go_query_escape() {
        assert_eq!(
            query_escape("https://e.com/a b?c=d&e"),
            "https%3A%2F%2Fe.com%2Fa+b%3Fc%3Dd%26e"
        );
        assert_eq!(query_escape("urn:uuid:1-2"), "urn%3Auuid%3A1-2");
        assert_eq!(query_escape("é~_.-"), "%C3%A9~_.-");
    }

    #[test]
    fn events_are_private_updates_on_subscription_topics() {
        let subscription = Subscription::new(
            vec![TopicSelector::parse("/a b"), TopicSelector::parse("*")],
            None,
            None,
        );
        let events = updates(&subscription, true, DRAFT_07);
        assert_eq!(events.len(), 2, "one per selector");
        let topic = events[0].topics[0].as_str();
        assert_eq!(topic, topic_of("/a b", &subscription.id));
        assert!(topic.starts_with("/.well-known/mercure/subscriptions/%2Fa+b/urn%3Auuid%3A"));
        assert!(events.iter().all(|e| e.private && e.data.contains("\"active\": true")));
        assert!(is_event(&Dispatched::new(1, events[0].clone())));
        let mut public = events[0].clone();
        public.private = false;
        assert!(!is_event(&Dispatched::new(2, public)), "a public update is not one");
        assert!(!is_topic(SUBSCRIPTIONS_PATH) && !is_topic("/.well-known/mercure/subscriptionsX"));
    }

    #[test]
    fn announcements_carry_the_departure_of_each_selector() {
        let payload = serde_json::json!({"user": "a"});
        let selectors = vec![TopicSelector::parse("/a"), TopicSelector::parse("/b/{id}")];
        let subscription = Subscription::new(selectors, None, Some(payload.clone()));
        let announced = announcements(&subscription, DRAFT_07);
        assert_eq!(announced.len(), 2);
        for (announcement, selector) in announced.iter().zip(["/a", "/b/{id}"]) {
            assert_eq!(
                (announcement.topic.as_str(), announcement.subscriber.as_str()),
                (selector, subscription.id.as_str())
            );
            assert_eq!(
                announcement.departure.topics[0].as_str(),
                topic_of(selector, &subscription.id)
            );
            assert!(announcement.departure.data.contains("\"active\": false"));
            let listed = Document::announced(announcement);
            let local = Document::new(&subscription, &subscription.selectors[0], true);
            if selector == "/a" {
                assert_eq!(
                    serde_json::to_value(&listed).ok(),
                    serde_json::to_value(&local).ok(),
                    "listed alike everywhere"
                );
            }
        }
        assert_eq!(announced[0].payload, Some(payload));
    }
}
