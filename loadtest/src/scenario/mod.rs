//! The scenarios. Each one builds its subscribers and publishers, drives them through its phases
//! while showing progress, and turns what they did into a [`Report`].
//!
//! `fanout` and `topics` differ only in who subscribes to what, so they share [`pubsub`].

pub mod fanout;
pub mod idle;
pub mod overload;
pub mod publish;
pub mod pubsub;
pub mod reconnect;
pub mod soak;
pub mod topics;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::context::Ctx;
use crate::fleet::Fleet;
use crate::http::HttpError;
use crate::progress::Progress;
use crate::report::Report;
use crate::sse::Event;

/// How often scenarios look at their counters.
const POLL: Duration = Duration::from_millis(20);

/// Waits until every subscriber of `fleet` has opened its stream or failed to, or the run stops.
/// Returns how long that took.
async fn wait_connected(ctx: &Ctx, fleet: &Fleet, title: &str) -> Duration {
    let bar = Progress::new(ctx.progress, title, fleet.size());
    while fleet.settled() < fleet.size() && !ctx.stopped() {
        let failed = fleet.shared.failed.load(Ordering::Relaxed);
        bar.set(
            fleet.settled(),
            if failed > 0 { format!("{failed} failed") } else { String::new() },
        );
        tokio::time::sleep(POLL).await;
    }
    bar.finish();
    fleet.started.elapsed()
}

/// Sleeps for `duration`, or less if the run stops.
async fn pause(ctx: &Ctx, duration: Duration) {
    tokio::select! {
        () = tokio::time::sleep(duration) => {}
        () = ctx.stop.cancelled() => {}
    }
}

/// The report of a scenario that could not get far, with the reason as a figure.
fn abandoned(report: &mut Report, reason: String) {
    report.add("abandoned", "abandoned", crate::report::Figure::Text(reason));
}

/// The event a subscriber's stream yielded, or `None` once the stream is over: ended by the
/// hub or broken, which is recorded in the run's errors and counted in `closed_early`.
pub(crate) fn event_or_close(
    ctx: &Ctx,
    closed_early: &AtomicU64,
    next: Result<Option<Event>, HttpError>,
) -> Option<Event> {
    match next {
        Ok(Some(event)) => return Some(event),
        Ok(None) => ctx.errors.add("subscribe: stream ended by the hub"),
        Err(error) => ctx.errors.add(format!("subscribe: {}", error.kind())),
    }
    closed_early.fetch_add(1, Ordering::Relaxed);
    None
}
