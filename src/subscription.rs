//! A subscription: what one subscriber asked for and what its token allows, and the rule that
//! decides which updates it receives. A value with no I/O, shared by the router (which selects
//! through its index and checks only the authorization half), the subscriber's stream (which
//! filters history with the whole rule) and the presence events (which describe it).

use serde::{Deserialize, Serialize};

use crate::topic_selector::{matches_any, TopicSelector};
use crate::update::{Dispatched, HUB_EVENT_TYPE};

/// Path of the subscriptions API and prefix of subscription event topics.
pub const SUBSCRIPTIONS_PATH: &str = "/.well-known/mercure/subscriptions";

/// The version of the Mercure protocol a request speaks, told by what it carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// Draft-07: `topic` parameters (URI templates), tokens with a `mercure` claim.
    #[default]
    #[serde(rename = "draft-07")]
    Draft07,
    /// Mercure 1.0: `match` parameters (exact or URL Pattern), RFC 9068 access tokens.
    #[serde(rename = "1.0")]
    V1,
}

/// The protocol whose subscribers a subscription event is for, `None` for any other update.
/// Each arrival and departure is announced in the format of each protocol the hub serves:
/// draft-07 events (JSON-LD, no event type) go to draft-07 subscribers only, Mercure 1.0 events
/// (`event: mercure`) to Mercure 1.0 subscribers only, so nobody receives one twice.
pub fn presence_protocol(update: &Dispatched) -> Option<Protocol> {
    let topic = update.topics.first()?.as_str();
    let is_event = update.private
        && topic.strip_prefix(SUBSCRIPTIONS_PATH).is_some_and(|rest| rest.starts_with('/'));
    // The event type is the frame's first field when set, and publishers may not use this
    // one: the frame tells without a field of its own on every dispatched update.
    is_event.then(|| {
        let hub_event = update
            .frame
            .strip_prefix(b"event: ")
            .and_then(|rest| rest.strip_prefix(HUB_EVENT_TYPE.as_bytes()))
            .is_some_and(|rest| rest.starts_with(b"\n"));
        if hub_event {
            Protocol::V1
        } else {
            Protocol::Draft07
        }
    })
}

/// What one subscriber asked for and what its credentials allow.
#[derive(Debug)]
pub struct Subscription {
    /// The protocol its request spoke: it decides the format of the subscription events it
    /// receives and makes.
    pub protocol: Protocol,
    /// The subscriber's id: `urn:uuid:` and a random UUID, as the reference hub.
    pub id: String,
    /// The token's `mercure.payload`, published with subscription events.
    pub payload: Option<serde_json::Value>,
    /// The `topic` selectors (draft-07) or matchers (Mercure 1.0) of the request.
    pub selectors: Vec<TopicSelector>,
    /// The token's `mercure.subscribe` selectors; `None` for anonymous subscribers, who never
    /// receive private updates.
    pub authorized: Option<Vec<TopicSelector>>,
}

impl Subscription {
    /// A new draft-07 subscription with a fresh subscriber id.
    pub fn new(
        selectors: Vec<TopicSelector>,
        authorized: Option<Vec<TopicSelector>>,
        payload: Option<serde_json::Value>,
    ) -> Self {
        Self {
            protocol: Protocol::Draft07,
            id: format!("urn:uuid:{}", uuid::Uuid::new_v4()),
            payload,
            selectors,
            authorized,
        }
    }

    /// The same subscription, for a request that spoke `protocol`.
    pub fn with_protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Whether this subscriber receives `update`: one of its topics matches one of the selectors
    /// and, for a private update, one of its topics (not necessarily the same one) matches one of
    /// the authorized selectors.
    pub fn wants(&self, update: &Dispatched) -> bool {
        let selected = update.topics.iter().any(|t| matches_any(&self.selectors, t.as_str()));
        selected && self.may_receive(update)
    }

    /// A subscription to `selectors`, anonymous or with a token allowing `authorized` (tests).
    #[cfg(test)]
    pub(crate) fn for_test(
        selectors: &[&str],
        authorized: Option<&[&str]>,
    ) -> std::sync::Arc<Self> {
        let parse = |raw: &[&str]| raw.iter().map(|s| TopicSelector::parse(s)).collect();
        std::sync::Arc::new(Self::new(parse(selectors), authorized.map(parse), None))
    }

    /// The authorization half of [`Self::wants`]: public updates always, private ones when a
    /// topic matches the token's `mercure.subscribe` selectors. The router, which selects
    /// through its index, only needs this half.
    ///
    /// Subscription events are private updates like others, and also go only to subscribers
    /// of the protocol whose format they are in (see [`presence_protocol`]).
    pub fn may_receive(&self, update: &Dispatched) -> bool {
        if !update.private {
            return true;
        }
        if presence_protocol(update).is_some_and(|protocol| protocol != self.protocol) {
            return false;
        }
        self.authorized.as_ref().is_some_and(|allowed| {
            update.topics.iter().any(|topic| matches_any(allowed, topic.as_str()))
        })
    }
}
