//! What clients are told when the transport fails, for each kind of failure: unavailable (503 with
//! `Retry-After`), too large (413), store failure (500). The hub runs a real local transport
//! behind a switch that makes its operations fail with a chosen error, the way a clustered
//! transport fails when its cluster is out of reach or its message limit is passed. (A real full
//! disk is in `tests/disk_full.rs`.)

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use quicksilver::transport::local::LocalTransport;
use quicksilver::transport::memory::MemoryStore;
use quicksilver::transport::pages::Page;
use quicksilver::transport::recent::Keep;
use quicksilver::transport::{Transport, TransportError};
use quicksilver::update::{Dispatched, Seq, Update};

/// A real transport whose operations fail with `failure` while it is set.
struct Switch {
    inner: LocalTransport<MemoryStore>,
    failure: Arc<Mutex<Option<TransportError>>>,
}

impl Switch {
    fn check(&self) -> Result<(), TransportError> {
        match self.failure.lock().expect("not poisoned").clone() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Transport for Switch {
    async fn publish_all(&self, updates: Vec<Update>, keep: Keep) -> Result<Seq, TransportError> {
        self.check()?;
        self.inner.publish_all(updates, keep).await
    }

    async fn find(&self, id: &str) -> Result<Option<Arc<Dispatched>>, TransportError> {
        self.check()?;
        self.inner.find(id).await
    }

    async fn read(&self, after: Seq, bound: Seq) -> Result<Page, TransportError> {
        self.check()?;
        self.inner.read(after, bound).await
    }

    fn is_ready(&self) -> bool {
        self.inner.is_ready()
    }
}

/// A hub (subscriptions API on) over a [`Switch`], and the switch.
fn hub() -> (TestHub, Arc<Mutex<Option<TransportError>>>) {
    let failure = Arc::new(Mutex::new(None));
    let switch = failure.clone();
    let hub = TestHub::start_with_transport(
        &[("MERCURE_SUBSCRIPTIONS", "true")],
        move |feed, config, metrics| {
            let inner =
                LocalTransport::start(MemoryStore::new(0), feed, metrics, config.replay_memory)?;
            Ok(Arc::new(Switch { inner, failure: switch }))
        },
    );
    (hub, failure)
}

async fn subscribe(hub: &TestHub, last_event_id: &str) -> reqwest::Response {
    client()
        .get(format!("{}?topic=a", hub.url))
        .bearer_auth(subscriber())
        .header("last-event-id", last_event_id)
        .send()
        .await
        .expect("subscribe request")
}

#[tokio::test]
async fn an_unavailable_transport_is_a_503_with_retry_after() {
    let (hub, failure) = hub();
    let mut events = Events::open(&hub, "topic=a", Some(&subscriber())).await;
    *failure.lock().expect("not poisoned") = Some(TransportError::Unavailable {
        reason: "the cluster is out of reach".into(),
        retry_after: Duration::from_secs(5),
    });

    let form = [("topic", "a"), ("data", "lost"), ("id", "lost")];
    let response = publish_request(&hub.url, &publisher(), &form).send().await;
    let response = response.expect("publish request");
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let body = response.text().await.expect("body");
    assert!(body.contains("the cluster is out of reach"), "{body}");

    // A subscriber resuming needs history, and a new one must announce itself: both wait too.
    let response = subscribe(&hub, "some-id").await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");

    *failure.lock().expect("not poisoned") = None;
    let (status, _) = publish(&hub, &[("topic", "a"), ("data", "kept"), ("id", "kept")]).await;
    assert_eq!(status, 200);
    let next = events.next().await;
    assert_eq!((next.id.as_str(), next.data.as_str()), ("kept", "kept"), "nothing was stored");
}

#[tokio::test]
async fn an_update_too_large_for_the_transport_is_a_413() {
    let (hub, failure) = hub();
    *failure.lock().expect("not poisoned") =
        Some(TransportError::TooLarge { size: 2_000_000, limit: 1_048_576 });
    let (status, body) = publish(&hub, &[("topic", "a"), ("data", "big")]).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("2000000 bytes") && body.contains("1048576"), "{body}");
}

#[tokio::test]
async fn a_store_failure_is_a_500() {
    let (hub, failure) = hub();
    *failure.lock().expect("not poisoned") = Some(TransportError::Store("disk full".into()));
    let (status, body) = publish(&hub, &[("topic", "a"), ("data", "x")]).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("history store failure: disk full"), "{body}");
    let response = subscribe(&hub, "some-id").await;
    assert_eq!(response.status(), 500);
    assert!(response.headers().get("retry-after").is_none(), "an operator must look first");
}
