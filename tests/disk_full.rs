//! A real full disk under the embedded store: publications that cannot be written are answered
//! 500 and change nothing, the hub turns unready, and every update acknowledged before stays
//! readable. The disk fills for real: this test process (its own binary, so no other test shares
//! the limit) lowers its file-size limit, so the store's writes fail with `EFBIG` as they would
//! with `ENOSPC`.

mod common;

use common::*;

/// `SIGXFSZ` on Linux: sent to a process that writes past its file-size limit.
const SIGXFSZ: i32 = 25;

/// Limits every file this process writes to `bytes` (with util-linux's `prlimit`), and makes a
/// write past it fail rather than kill the process: the returned handler takes `SIGXFSZ` for as
/// long as it is kept.
fn limit_file_size(bytes: u64) -> tokio::signal::unix::Signal {
    let handler = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(SIGXFSZ))
        .expect("a SIGXFSZ handler");
    let status = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--fsize={bytes}:"))
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(status.success(), "prlimit failed");
    handler
}

#[tokio::test]
async fn a_full_disk_refuses_publications_with_500_and_loses_nothing() {
    let (_dir, path) = history_file();
    let hub = TestHub::start_embedded(&path, &[]);
    let (status, _) = publish(&hub, &[("topic", "a"), ("id", "first")]).await;
    assert_eq!(status, 200);
    let size = std::fs::metadata(&path).expect("the history file").len();
    let _handler = limit_file_size(size + (1 << 20));

    let data = "x".repeat(64 * 1024);
    let mut acknowledged = vec!["first".to_owned()];
    let mut refused = None;
    // 64 KiB each: the limit is 1 MiB past the file's size, so it is reached within 100.
    for n in 0..100 {
        let id = format!("u{n}");
        let (status, body) = publish(&hub, &[("topic", "a"), ("id", &id), ("data", &data)]).await;
        match status {
            200 => acknowledged.push(id),
            _ => {
                refused = Some((status, body));
                break;
            }
        }
    }
    let (status, body) = refused.expect("the disk filled up");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("history store failure"), "{body}");
    let ready = client().get(hub.at("/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status(), 503, "the hub says it cannot store updates");

    // Everything acknowledged is still there, in order, and nothing else.
    let query = "topic=a";
    let mut events =
        Events::open_with(&hub, query, Some(&subscriber()), &[("last-event-id", "earliest")]).await;
    for id in &acknowledged {
        assert_eq!(&events.next().await.id, id);
    }
    events.assert_silent(std::time::Duration::from_millis(300)).await;
}
