//! Load tests for Mercure hubs, over the wire protocol only.
//!
//! The tool measures any hub that speaks Mercure over HTTP/1.1, plain or inside TLS (Quicksilver,
//! the reference Go hub, ...): it subscribes with `GET` event streams and publishes with form
//! `POST`s, nothing else. The pieces:
//!
//! - [`cli`]: the command line, one subcommand per scenario;
//! - [`token`]: JWTs minted from a key, or given as they are;
//! - [`http`]: sockets spread over several loopback source addresses, response heads, chunked
//!   framing, and a keep-alive client for publishers; [`tls`]: what `https://` URLs need;
//! - [`sse`]: an incremental `text/event-stream` parser, and [`subscriber`]: one event stream;
//! - [`payload`]: what each update carries (its sequence number and send time);
//! - [`fleet`] and [`publisher`]: many subscribers and publishers driven together;
//! - [`scenario`]: the seven scenarios, each producing a [`report::Report`];
//! - [`hubmetrics`]: values read from the hub's Prometheus page (tasks, connected subscribers);
//! - [`follow`]: the processes whose CPU and memory a run reads (hubs, NATS servers, HAProxy);
//! - [`stats`], [`procstat`], [`report`], [`plot`], [`progress`]: measuring and showing results.
//!
//! Every loop is bounded in count and in time: the whole run stops at `--time-limit`, whatever the
//! hub does, and failures are counted in the report rather than aborting the run.

pub mod cli;
pub mod context;
pub mod fleet;
pub mod follow;
pub mod http;
pub mod hubmetrics;
pub mod payload;
pub mod plot;
pub mod procstat;
pub mod progress;
pub mod publisher;
pub mod report;
pub mod scenario;
pub mod sse;
pub mod stats;
pub mod subscriber;
pub mod tls;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::cli::{Cli, Scenario};
use crate::context::Ctx;

/// Extra time allowed past `--time-limit` for the scenario to wind down and report, after which
/// the run is abandoned with an error. Scenarios watch the limit themselves; this only guards
/// against a bug in that watching.
const WIND_DOWN: Duration = Duration::from_secs(15);

/// Runs the scenario chosen on the command line, prints its report, and writes the JSON and plot
/// files that were asked for.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = Arc::new(Ctx::new(&cli.common).await?);
    ctx.arm_stop_signals();

    let work = async {
        match &cli.scenario {
            Scenario::Fanout(args) => scenario::fanout::run(&ctx, args).await,
            Scenario::Topics(args) => scenario::topics::run(&ctx, args).await,
            Scenario::Idle(args) => scenario::idle::run(&ctx, args).await,
            Scenario::Publish(args) => scenario::publish::run(&ctx, args).await,
            Scenario::Reconnect(args) => scenario::reconnect::run(&ctx, args).await,
            Scenario::Soak(args) => scenario::soak::run(&ctx, args).await,
            Scenario::Overload(args) => scenario::overload::run(&ctx, args).await,
        }
    };
    let report = tokio::time::timeout(cli.common.time_limit + WIND_DOWN, work)
        .await
        .context("the scenario did not stop after --time-limit")??;

    print!("{}", report.render_table());
    if let Some(path) = &cli.common.json {
        let text = serde_json::to_string_pretty(&report.to_json())?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("writing the JSON report to {}", path.display()))?;
    }
    if let Some(path) = &cli.common.plot {
        plot::write(path, &report)
            .with_context(|| format!("writing the plot to {}", path.display()))?;
    }
    Ok(())
}
