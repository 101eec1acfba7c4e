//! End to end: history, `Last-Event-ID`, the handoff from history to live, durability.

mod common;

use std::time::Duration;

use common::*;

async fn publish_ids(hub: &TestHub, topic: &str, ids: &[&str]) {
    for id in ids {
        let (status, body) = publish(hub, &[("topic", topic), ("id", id), ("data", id)]).await;
        assert_eq!((status, body.as_str()), (200, *id));
    }
}

async fn ids(events: &mut Events, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..count {
        ids.push(events.next().await.id);
    }
    ids
}

#[tokio::test]
async fn resumes_after_the_last_event_id() {
    for transport in ["memory", "embedded"] {
        let (_dir, path) = history_file();
        let hub = if transport == "memory" {
            TestHub::start(&[])
        } else {
            TestHub::start_embedded(&path, &[])
        };
        publish_ids(&hub, "a", &["1", "2", "3"]).await;
        publish_ids(&hub, "b", &["4"]).await;
        publish_ids(&hub, "a", &["5"]).await;

        let token = subscriber();
        let mut header =
            Events::open_with(&hub, "topic=a", Some(&token), &[("last-event-id", "2")]).await;
        assert_eq!(header.response_headers["last-event-id"], "2", "{transport}");
        assert_eq!(ids(&mut header, 2).await, ["3", "5"], "{transport}");

        let mut query = Events::open(&hub, "topic=a&lastEventID=1", Some(&token)).await;
        assert_eq!(query.response_headers["last-event-id"], "1");
        assert_eq!(ids(&mut query, 3).await, ["2", "3", "5"]);

        // The header wins over the query parameter; an empty header counts as absent.
        let mut both = Events::open_with(
            &hub,
            "topic=*&lastEventID=1",
            Some(&token),
            &[("last-event-id", "4")],
        )
        .await;
        assert_eq!(ids(&mut both, 1).await, ["5"]);
        let mut empty = Events::open_with(
            &hub,
            "topic=*&lastEventID=3",
            Some(&token),
            &[("last-event-id", "")],
        )
        .await;
        assert_eq!(ids(&mut empty, 2).await, ["4", "5"]);

        let mut earliest = Events::open(&hub, "topic=a&lastEventID=earliest", Some(&token)).await;
        assert_eq!(earliest.response_headers["last-event-id"], "earliest");
        assert_eq!(ids(&mut earliest, 4).await, ["1", "2", "3", "5"]);

        // Unknown id: the answer says `earliest` and the whole history follows.
        let mut unknown = Events::open(&hub, "topic=b&lastEventID=nope", Some(&token)).await;
        assert_eq!(unknown.response_headers["last-event-id"], "earliest");
        assert_eq!(ids(&mut unknown, 1).await, ["4"]);

        // Live continues after the replay.
        publish_ids(&hub, "a", &["6"]).await;
        assert_eq!(ids(&mut header, 1).await, ["6"]);
        assert_eq!(ids(&mut earliest, 1).await, ["6"]);
        header.assert_silent(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn replay_applies_private_rules_with_the_current_token() {
    let hub = TestHub::start(&[("MERCURE_ANONYMOUS", "1")]);
    publish(&hub, &[("topic", "a"), ("id", "p"), ("private", "")]).await;
    publish(&hub, &[("topic", "a"), ("id", "q")]).await;
    let mut anonymous = Events::open(&hub, "topic=a&lastEventID=earliest", None).await;
    assert_eq!(ids(&mut anonymous, 1).await, ["q"]);
    anonymous.assert_silent(Duration::from_millis(200)).await;
    let mut allowed = Events::open(&hub, "topic=a&lastEventID=earliest", Some(&subscriber())).await;
    assert_eq!(ids(&mut allowed, 2).await, ["p", "q"]);
}

#[tokio::test]
async fn history_size_keeps_the_newest_updates() {
    let (_dir, path) = history_file();
    let hub = TestHub::start_embedded(&path, &[("MERCURE_HISTORY_SIZE", "3")]);
    publish_ids(&hub, "a", &["1", "2", "3", "4", "5"]).await;
    let token = subscriber();
    let mut earliest = Events::open(&hub, "topic=a&lastEventID=earliest", Some(&token)).await;
    assert_eq!(ids(&mut earliest, 3).await, ["3", "4", "5"]);
    earliest.assert_silent(Duration::from_millis(200)).await;
    let mut trimmed = Events::open(&hub, "topic=a&lastEventID=1", Some(&token)).await;
    assert_eq!(trimmed.response_headers["last-event-id"], "earliest");
    assert_eq!(ids(&mut trimmed, 3).await, ["3", "4", "5"]);
}

#[tokio::test]
async fn history_survives_a_restart() {
    let (_dir, path) = history_file();
    {
        let hub = TestHub::start_embedded(&path, &[]);
        publish_ids(&hub, "a", &["1", "2", "3"]).await;
    }
    let hub = TestHub::start_embedded(&path, &[]);
    let token = subscriber();
    // Right after a restart, before any publish: the replay is bounded by the stored history,
    // and live updates follow without duplicates.
    let mut events = Events::open(&hub, "topic=a&lastEventID=1", Some(&token)).await;
    assert_eq!(events.response_headers["last-event-id"], "1");
    publish_ids(&hub, "a", &["4"]).await;
    assert_eq!(ids(&mut events, 3).await, ["2", "3", "4"]);
    events.assert_silent(Duration::from_millis(200)).await;
    let (status, id) = publish(&hub, &[("topic", "a")]).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&mut events, 1).await, [id]);
}

/// Subscribers connect with a cursor while a publisher keeps publishing: each must see exactly
/// the updates after its cursor, in order, none missing, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_gap_and_no_duplicate_between_history_and_live() {
    const TOTAL: usize = 400;
    let (_dir, path) = history_file();
    let hub = std::sync::Arc::new(TestHub::start_embedded(&path, &[]));
    let publisher_hub = hub.clone();
    let publishing = tokio::spawn(async move {
        for i in 0..TOTAL {
            let id = format!("u{i}");
            let (status, _) = publish(&publisher_hub, &[("topic", "t"), ("id", &id)]).await;
            assert_eq!(status, 200);
        }
    });
    let token = subscriber();
    let mut checked = 0;
    for cursor in (0..TOTAL - 50).step_by(37) {
        // Wait until the cursor's update exists, then resume from it while publishing goes on.
        let cursor_id = format!("u{cursor}");
        loop {
            let mut resumed =
                Events::open(&hub, &format!("topic=t&lastEventID={cursor_id}"), Some(&token)).await;
            if resumed.response_headers["last-event-id"] != cursor_id.as_str() {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            let expected: Vec<String> =
                (cursor + 1..(cursor + 40).min(TOTAL)).map(|i| format!("u{i}")).collect();
            assert_eq!(ids(&mut resumed, expected.len()).await, expected, "after {cursor_id}");
            checked += 1;
            break;
        }
    }
    publishing.await.expect("publisher");
    assert!(checked >= 9, "checked {checked} cursors");
}

#[tokio::test]
async fn a_long_replay_streams_beyond_the_queue_capacity() {
    let hub = TestHub::start(&[]);
    // More than the 1000-update queue: the replay must stream page by page.
    for i in 0..1500 {
        let (status, _) = publish(&hub, &[("topic", "t"), ("id", &format!("r{i}"))]).await;
        assert_eq!(status, 200);
    }
    let mut events = Events::open(&hub, "topic=t&lastEventID=earliest", Some(&subscriber())).await;
    for i in 0..1500 {
        assert_eq!(events.next().await.id, format!("r{i}"));
    }
}

#[tokio::test]
async fn the_cursor_of_an_update_the_subscriber_may_not_read_is_not_revealed() {
    // The attack: an anonymous subscriber sent the id of a private update as Last-Event-ID and
    // got it back in the response header (an unknown id gets `earliest`): it learnt that the
    // update exists. Now both are answered alike.
    let hub = TestHub::start(&[("MERCURE_ANONYMOUS", "1")]);
    let topic = "https://e.com/private";
    publish(&hub, &[("topic", topic), ("id", "secret-1"), ("private", "on")]).await;
    publish(&hub, &[("topic", topic), ("id", "public-1")]).await;
    let cursor = |events: &Events| {
        events.response_headers.get("last-event-id").map(|v| v.to_str().expect("ascii").to_owned())
    };
    let query = topics_query(&[topic]);
    for id in ["secret-1", "never-published"] {
        let events = Events::open_with(&hub, &query, None, &[("Last-Event-ID", id)]).await;
        assert_eq!(cursor(&events).as_deref(), Some("earliest"), "{id}");
    }
    let allowed = token(serde_json::json!({ "subscribe": [topic] }));
    let mut events =
        Events::open_with(&hub, &query, Some(&allowed), &[("Last-Event-ID", "secret-1")]).await;
    assert_eq!(cursor(&events).as_deref(), Some("secret-1"), "a subscriber that may read it");
    assert_eq!(events.next().await.id, "public-1");
    let public = Events::open_with(&hub, &query, None, &[("Last-Event-ID", "public-1")]).await;
    assert_eq!(cursor(&public).as_deref(), Some("public-1"), "public updates are anyone's");
}
