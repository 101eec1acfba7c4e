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

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::context::Ctx;
use crate::fleet::Fleet;
use crate::progress::Progress;
use crate::report::Report;

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
