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

/// A family of topic selectors whose matching is known without the hub's matcher, and
/// `proptest` strategies over it: the oracle of the property tests that check who receives
/// what, here and in the subscriber stream's tests.
#[cfg(test)]
pub(crate) mod arbitrary {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::Subscription;
    use crate::topic_selector::TopicSelector;
    use crate::update::{Topic, Update};

    /// Topics the generated updates carry: short paths so that selectors often match.
    pub(crate) const TOPICS: [&str; 6] = ["/a/1", "/a/2", "/b/1", "/b/2", "/c", "/d/1"];

    /// What a selector matches, written out by hand.
    pub(crate) type Meaning = fn(&str) -> bool;

    /// Selectors of every kind (the wildcard, exact topics, URI templates with a variable in
    /// either segment, a topic no update has), each with its meaning written out by hand.
    pub(crate) const SELECTORS: [(&str, Meaning); 7] = [
        ("*", |_| true),
        ("/a/1", |topic| topic == "/a/1"),
        ("/a/{id}", |topic| topic.strip_prefix("/a/").is_some_and(segment)),
        ("/b/{id}", |topic| topic.strip_prefix("/b/").is_some_and(segment)),
        ("/{section}/1", |topic| {
            topic.strip_prefix('/').and_then(|rest| rest.strip_suffix("/1")).is_some_and(segment)
        }),
        ("/c", |topic| topic == "/c"),
        ("/e", |topic| topic == "/e"),
    ];

    /// One non-empty path segment, what a `{var}` expression matches in these topics.
    fn segment(text: &str) -> bool {
        !text.is_empty() && !text.contains('/')
    }

    /// Indexes into [`SELECTORS`]: what a subscriber asks for, or what its token allows.
    pub(crate) fn selectors(min: usize) -> impl Strategy<Value = Vec<usize>> {
        vec(0..SELECTORS.len(), min..=3)
    }

    /// An anonymous subscriber (`None`) or a token allowing the selectors at these indexes.
    pub(crate) fn authorization() -> impl Strategy<Value = Option<Vec<usize>>> {
        proptest::option::of(selectors(0))
    }

    /// The topics of an update (canonical first, then alternates), as indexes into [`TOPICS`],
    /// and whether it is private.
    pub(crate) fn update_shape() -> impl Strategy<Value = (Vec<usize>, bool)> {
        (vec(0..TOPICS.len(), 1..=3), any::<bool>())
    }

    /// The subscription the hub builds from these indexes, plus `extra` selectors.
    pub(crate) fn subscription(
        selected: &[usize],
        authorized: Option<&[usize]>,
        extra: &[&str],
    ) -> Subscription {
        let parse = |indexes: &[usize]| -> Vec<TopicSelector> {
            indexes.iter().map(|&i| TopicSelector::parse(SELECTORS[i].0)).collect()
        };
        let mut selectors = parse(selected);
        selectors.extend(extra.iter().map(|raw| TopicSelector::parse(raw)));
        Subscription::new(selectors, authorized.map(parse), None)
    }

    /// The update `id` these indexes describe.
    pub(crate) fn make_update(id: &str, topics: &[usize], private: bool) -> Update {
        let mut update = Update::for_test(id);
        update.topics = topics.iter().map(|&i| Topic::new(TOPICS[i]).expect("valid")).collect();
        update.private = private;
        update
    }

    /// Whether a subscriber selecting `selected`, with a token allowing `authorized`, receives
    /// the update on `topics`, by the protocol's rule and the hand-written meanings: one topic
    /// selected, and for a private update one topic (not necessarily the same) authorized.
    pub(crate) fn expected(
        selected: &[usize],
        authorized: Option<&[usize]>,
        topics: &[usize],
        private: bool,
    ) -> bool {
        let any_match =
            |indexes: &[usize]| topics.iter().any(|&t| indexes.iter().any(|&s| SELECTORS[s].1(TOPICS[t])));
        any_match(selected) && (!private || authorized.is_some_and(any_match))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::arbitrary::{self, authorization, selectors, update_shape};
    use crate::update::Dispatched;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// A private update reaches only a subscriber whose token allows one of its topics;
        /// public updates reach every subscriber that selects one of their topics.
        #[test]
        fn a_subscriber_receives_exactly_what_it_selects_and_may_read(
            selected in selectors(1),
            authorized in authorization(),
            (topics, private) in update_shape(),
        ) {
            let subscription = arbitrary::subscription(&selected, authorized.as_deref(), &[]);
            let update = Dispatched::new(1, arbitrary::make_update("u", &topics, private));
            prop_assert_eq!(
                subscription.wants(&update),
                arbitrary::expected(&selected, authorized.as_deref(), &topics, private)
            );
            if private && !subscription.may_receive(&update) {
                prop_assert!(!subscription.wants(&update));
            }
        }
    }
}
