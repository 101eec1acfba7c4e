//! End to end: subscription events (presence) and the subscriptions API.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const WATCH: &str = "/.well-known/mercure/subscriptions{/topic}{/subscriber}";
const BOOK: &str = "https://e.com/books/1";

fn watcher_token() -> String {
    token(json!({ "subscribe": [WATCH] }))
}

fn parse(event: &Event) -> Value {
    serde_json::from_str(&event.data).expect("subscription events are JSON")
}

#[tokio::test]
async fn connect_and_disconnect_are_announced() {
    let hub = TestHub::start(&[("MERCURE_SUBSCRIPTIONS", "1"), ("MERCURE_ANONYMOUS", "1")]);
    let mut watcher = Events::open(&hub, &topics_query(&[WATCH]), Some(&watcher_token())).await;
    let mut anonymous = Events::open(&hub, &topics_query(&[WATCH]), None).await;
    // The two watchers' own arrivals.
    assert_eq!(parse(&watcher.next().await)["topic"], WATCH);
    assert_eq!(parse(&watcher.next().await)["topic"], WATCH);

    let member = token(json!({ "subscribe": [], "payload": { "user": 7 } }));
    let subscriber = Events::open(&hub, &topics_query(&[BOOK]), Some(&member)).await;
    let arrival = watcher.next().await;
    let body = parse(&arrival);
    let id = body["subscriber"].as_str().expect("subscriber id").to_owned();
    assert!(id.starts_with("urn:uuid:"), "{id}");
    let expected_topic = format!(
        "/.well-known/mercure/subscriptions/https%3A%2F%2Fe.com%2Fbooks%2F1/{}",
        id.replace(':', "%3A")
    );
    assert_eq!(
        body,
        json!({
            "@context": "https://mercure.rocks/",
            "id": expected_topic,
            "type": "Subscription",
            "subscriber": id,
            "topic": BOOK,
            "active": true,
            "payload": { "user": 7 },
        })
    );
    // Key order and two-space indentation, as the reference hub writes them.
    assert!(arrival.data.starts_with("{\n  \"@context\": \"https://mercure.rocks/\",\n  \"id\""));
    assert!(arrival.id.starts_with("urn:uuid:"));
    assert_eq!(arrival.event_type, None);

    drop(subscriber);
    let departure = parse(&watcher.next().await);
    assert_eq!(departure["active"], false);
    assert_eq!(departure["subscriber"], id.as_str());

    // Private updates: the anonymous watcher saw nothing.
    anonymous.assert_silent(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_subscriber_sees_its_own_arrival() {
    let hub = TestHub::start(&[("MERCURE_SUBSCRIPTIONS", "1")]);
    let mut events = Events::open(&hub, &topics_query(&[WATCH]), Some(&watcher_token())).await;
    let own = parse(&events.next().await);
    assert_eq!(own["topic"], WATCH);
    assert_eq!(own["active"], true);
    assert!(own.get("payload").is_none(), "no payload claim, no payload key");
}

async fn get(
    hub: &TestHub,
    path: &str,
    token: Option<&str>,
    etag: Option<&str>,
) -> (u16, String, reqwest::header::HeaderMap) {
    get_with(hub, path, token, etag).await
}

#[tokio::test]
async fn the_api_lists_active_subscriptions() {
    let hub = TestHub::start(&[("MERCURE_SUBSCRIPTIONS", "true")]);
    let api =
        token(json!({ "subscribe": ["/.well-known/mercure/subscriptions{/topic}{/subscriber}"] }));
    let member = token(json!({ "payload": "p" }));
    let _book = Events::open(&hub, &topics_query(&[BOOK, "a b"]), Some(&member)).await;
    let _other = Events::open(&hub, "topic=other", Some(&subscriber())).await;

    let (status, body, headers) =
        get(&hub, "/.well-known/mercure/subscriptions?x=1", Some(&api), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "application/ld+json");
    let collection: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(collection["@context"], "https://mercure.rocks/");
    assert_eq!(collection["id"], "/.well-known/mercure/subscriptions?x=1");
    assert_eq!(collection["type"], "Subscriptions");
    let last_event_id = collection["lastEventID"].as_str().expect("lastEventID").to_owned();
    assert!(last_event_id.starts_with("urn:uuid:"), "the last arrival event");
    assert_eq!(headers["etag"], last_event_id.as_str());
    let subscriptions = collection["subscriptions"].as_array().expect("array");
    assert_eq!(subscriptions.len(), 3);
    assert!(subscriptions.iter().all(|s| s.get("@context").is_none()));
    let book = subscriptions.iter().find(|s| s["topic"] == BOOK).expect("book subscription");
    assert_eq!(book["payload"], "p");
    assert_eq!(book["active"], true);
    let subscriber_id = book["subscriber"].as_str().expect("id").to_owned();

    // Unchanged since: 304 with an empty body.
    let (status, body, _) =
        get(&hub, "/.well-known/mercure/subscriptions", Some(&api), Some(&last_event_id)).await;
    assert_eq!((status, body.as_str()), (304, ""));

    // Filtered by topic; `+` decodes to a space (a `+` is outside the template's characters, so
    // this request is authorized with `*`).
    let (status, body, _) =
        get(&hub, "/.well-known/mercure/subscriptions/a+b", Some(&subscriber()), None).await;
    assert_eq!(status, 200);
    let filtered: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(filtered["subscriptions"].as_array().map(Vec::len), Some(1));
    assert_eq!(filtered["subscriptions"][0]["topic"], "a b");

    // One subscription, with @context and lastEventID.
    let path = format!(
        "/.well-known/mercure/subscriptions/{}/{}",
        urlencode(BOOK),
        urlencode(&subscriber_id)
    );
    let (status, body, _) = get(&hub, &path, Some(&api), None).await;
    assert_eq!(status, 200, "{body}");
    let one: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(one["@context"], "https://mercure.rocks/");
    assert_eq!(one["subscriber"], subscriber_id.as_str());
    assert_eq!(one["lastEventID"], last_event_id.as_str());
    assert!(body.find("\"lastEventID\"") < body.find("\"payload\""), "reference key order");

    let unknown =
        format!("/.well-known/mercure/subscriptions/{}/urn%3Auuid%3Anope", urlencode(BOOK));
    assert_eq!(get(&hub, &unknown, Some(&api), None).await.0, 404);
}

#[tokio::test]
async fn the_api_needs_an_allowed_token() {
    let hub = TestHub::start(&[("MERCURE_SUBSCRIPTIONS", "1"), ("MERCURE_ANONYMOUS", "1")]);
    let path = "/.well-known/mercure/subscriptions";
    assert_eq!(get(&hub, path, None, None).await.0, 401, "anonymous hubs do not expose it");
    assert_eq!(get(&hub, path, Some("garbage"), None).await.0, 401);
    let elsewhere = token(json!({ "subscribe": ["https://e.com/{x}"] }));
    assert_eq!(get(&hub, path, Some(&elsewhere), None).await.0, 403);
    let exact = token(json!({ "subscribe": [path] }));
    assert_eq!(get(&hub, path, Some(&exact), None).await.0, 200);
    // The query string is not part of what is authorized.
    assert_eq!(get(&hub, &format!("{path}?x=1"), Some(&exact), None).await.0, 200);
    assert_eq!(get(&hub, &format!("{path}/t"), Some(&exact), None).await.0, 403);

    let response = client().post(hub.at(path)).bearer_auth(&exact).send().await.expect("post");
    assert_eq!(response.status(), 405);
    // It serves GET only, and says so (it used to claim GET, HEAD and POST).
    assert_eq!(response.headers()["allow"], "GET");
    assert_eq!(response.headers()["cache-control"], "private, no-store");
    let response = client().delete(hub.at(&format!("{path}/t"))).send().await.expect("delete");
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET");
}

#[tokio::test]
async fn without_the_setting_there_is_no_api_and_no_event() {
    let hub = TestHub::start(&[]);
    assert_eq!(
        get(&hub, "/.well-known/mercure/subscriptions", Some(&subscriber()), None).await.0,
        404
    );
    let mut watcher = Events::open(&hub, "topic=*", Some(&subscriber())).await;
    let _other = Events::open(&hub, "topic=a", Some(&subscriber())).await;
    watcher.assert_silent(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn history_replays_subscription_events_like_any_update() {
    let hub = TestHub::start(&[("MERCURE_SUBSCRIPTIONS", "1")]);
    let (_, first) = publish(&hub, &[("topic", "x")]).await;
    drop(Events::open(&hub, "topic=a", Some(&subscriber())).await);
    let mut replay = Events::open(
        &hub,
        &format!("{}&lastEventID={first}", topics_query(&[WATCH])),
        Some(&watcher_token()),
    )
    .await;
    // The departure is announced asynchronously: it comes from history or live, but it comes.
    let mut seen = Vec::new();
    for _ in 0..3 {
        let body = parse(&replay.next().await);
        if body["topic"] == "a" {
            seen.push(body["active"].as_bool().expect("active flag"));
        }
    }
    assert_eq!(seen, [true, false]);
}

#[tokio::test]
async fn the_api_cursor_is_the_last_subscription_event_the_caller_may_read() {
    // The attack: the cursor used to be the id of the last update of any kind, so a caller of
    // the API learnt the id of a private update on a topic it may not read.
    let hub = TestHub::start(&[("MERCURE_SUBSCRIPTIONS", "1")]);
    let mut watcher = Events::open(&hub, &topics_query(&[WATCH]), Some(&watcher_token())).await;
    let own_arrival = watcher.next().await.id;
    let book = Events::open(&hub, &topics_query(&[BOOK]), Some(&subscriber())).await;
    let book_arrival = watcher.next().await.id;
    let (status, _) =
        publish(&hub, &[("topic", "https://e.com/secret"), ("id", "secret-1"), ("private", "on")])
            .await;
    assert_eq!(status, 200);

    let path = "/.well-known/mercure/subscriptions";
    let (status, body, headers) = get(&hub, path, Some(&watcher_token()), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("secret-1"), "{body}");
    assert_eq!(headers["etag"], book_arrival.as_str(), "the last subscription event");
    let collection: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(collection["lastEventID"], book_arrival.as_str());

    // A caller allowed to see only the watcher's own subscriptions gets the last event of those.
    let escaped_watch = urlencode(WATCH);
    let narrow = token(json!({ "subscribe": [
        format!("/.well-known/mercure/subscriptions/{escaped_watch}{{/subscriber}}"),
    ] }));
    let path = format!("/.well-known/mercure/subscriptions/{escaped_watch}");
    let (status, body, headers) = get(&hub, &path, Some(&narrow), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["etag"], own_arrival.as_str());

    // The cursor follows subscription changes: a departure changes it, an update does not.
    let (status, _, _) = get(
        &hub,
        "/.well-known/mercure/subscriptions",
        Some(&watcher_token()),
        Some(&book_arrival),
    )
    .await;
    assert_eq!(status, 304);
    drop(book);
    let departure = watcher.next().await.id;
    let (status, _, headers) = get(
        &hub,
        "/.well-known/mercure/subscriptions",
        Some(&watcher_token()),
        Some(&book_arrival),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["etag"], departure.as_str());
}

#[tokio::test]
async fn presence_of_a_large_subscription_is_written_at_once_and_capped() {
    // The attack: one anonymous request with 5,000 topics made the hub commit 5,000 arrival
    // events one by one before answering, and 5,000 more departures. Now a subscription has at
    // most `max_topics_per_subscription` selectors, announced in one write.
    // Draft-07 only, so that each subscription makes one event per selector (with Mercure 1.0
    // on too, each is announced in both formats: see tests/mercure_1.rs).
    let hub = TestHub::start(&[
        ("MERCURE_SUBSCRIPTIONS", "1"),
        ("MERCURE_ANONYMOUS", "1"),
        ("MERCURE_PROTOCOLS", "draft-07"),
    ]);
    // Short topics, so that 5,000 of them fit in a request line.
    let many: Vec<String> = (0..5000).map(|i| i.to_string()).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let refused = |topics: &[&str]| {
        let url = format!("{}?{}", hub.url, topics_query(topics));
        async move {
            let response = client().get(url).send().await.expect("subscribe request");
            (response.status().as_u16(), response.text().await.expect("body"))
        }
    };
    let (status, body) = refused(&many).await;
    assert_eq!(status, 400);
    assert!(body.contains("max_form_fields"), "{body}");
    let (status, body) = refused(&many[..4000]).await;
    assert_eq!(status, 400);
    assert!(body.contains("max_topics_per_subscription"), "{body}");
    // The number of updates history holds, on a single node (on NATS the gauge follows the
    // stream every 2 s).
    let single_node = test_nats_url().is_none();
    let history = || history_updates(&hub);
    if single_node {
        assert_eq!(history().await, 0, "a refused subscription writes nothing");
    }

    // The largest subscription allowed: its 100 arrivals are stored together and reach a
    // watcher in order, with nothing between them.
    let mut watcher = Events::open(&hub, &topics_query(&[WATCH]), Some(&watcher_token())).await;
    watcher.next().await;
    let largest = Events::open(&hub, &topics_query(&many[..100]), None).await;
    for topic in &many[..100] {
        assert_eq!(parse(&watcher.next().await)["topic"], *topic);
    }
    if single_node {
        assert_eq!(history().await, 101);
    }
    drop(largest);
    for topic in &many[..100] {
        let departure = parse(&watcher.next().await);
        assert_eq!(
            (departure["topic"].as_str(), departure["active"].as_bool()),
            (Some(*topic), Some(false))
        );
    }
}

#[tokio::test]
async fn the_api_refuses_a_query_over_the_field_limit_naming_it() {
    let hub = TestHub::start(&[("MERCURE_SUBSCRIPTIONS", "1")]);
    let query = vec!["a=1"; 5000].join("&");
    let path = format!("/.well-known/mercure/subscriptions?{query}");
    let (status, body, headers) = get(&hub, &path, Some(&watcher_token()), None).await;
    assert_eq!(status, 400);
    assert!(body.contains("max_form_fields"), "{body}");
    assert_eq!(headers["cache-control"], "private, no-store");
}

#[tokio::test]
async fn subscription_events_stay_out_of_durable_history() {
    // The attack left 10,000 permanent records per request, never trimmed with the default
    // `history_size = 0`. Subscription events are now kept in memory, the most recent ones only:
    // a restart (which ends every subscription anyway) finds none of them in the file. (On NATS
    // they are in the stream, which every node reads, and expire after an hour: see
    // tests/cluster.rs.)
    if test_nats_url().is_some() {
        return;
    }
    let (_dir, path) = history_file();
    // Draft-07 only: one event per selector (see above).
    let settings = [
        ("MERCURE_SUBSCRIPTIONS", "1"),
        ("MERCURE_ANONYMOUS", "1"),
        ("MERCURE_PROTOCOLS", "draft-07"),
    ];
    {
        let hub = TestHub::start_embedded(&path, &settings);
        let topics: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        let mut watcher = Events::open(&hub, &topics_query(&[WATCH]), Some(&watcher_token())).await;
        watcher.next().await;
        let large = Events::open(&hub, &topics_query(&topics), None).await;
        drop(large);
        for _ in 0..200 {
            watcher.next().await;
        }
        let (status, _) = publish(&hub, &[("topic", BOOK), ("id", "kept")]).await;
        assert_eq!(status, 200);
        assert_eq!(
            history_updates(&hub).await,
            202,
            "201 recent subscription events and one update"
        );
        // Still replayed like any update while recent.
        let mut replay = Events::open_with(
            &hub,
            &topics_query(&[WATCH, BOOK]),
            Some(&watcher_token()),
            &[("Last-Event-ID", "earliest")],
        )
        .await;
        let mut ids = Vec::new();
        for _ in 0..202 {
            ids.push(replay.next().await.id);
        }
        assert_eq!(ids.last().map(String::as_str), Some("kept"));
    }
    let hub = TestHub::start_embedded(&path, &settings);
    assert_eq!(history_updates(&hub).await, 1, "only the update was written to the file");
}
