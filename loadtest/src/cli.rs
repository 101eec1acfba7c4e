//! The command line: options common to every scenario, and one subcommand per scenario.
//!
//! Every option documents its default here, because `--help` is the tool's manual. Common options
//! are global: they can be written before or after the subcommand.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};
use jsonwebtoken::Algorithm;

use crate::follow::FollowArg;

/// Hub URL used when `--hub` is not given: Quicksilver's default address.
pub const DEFAULT_HUB: &str = "http://127.0.0.1:8080/.well-known/mercure";

/// Measures a Mercure hub (Quicksilver, the reference hub, or any other) over HTTP or HTTPS.
#[derive(Debug, Parser)]
#[command(
    name = "loadtest",
    version,
    long_about = "Measures a Mercure hub (Quicksilver, the reference Go hub, or any other) over \
HTTP/1.1, plain (http:// URLs) or over TLS (https:// URLs, trusting --tls-ca), using only the \
protocol: subscriptions are GET event streams, publications are form POSTs, tokens are JWTs \
minted from --key or given with --publisher-token/--subscriber-token (or, with --anonymous, \
subscribers send none).

Scenarios (see `loadtest <SCENARIO> --help` for their options):
  fanout     N subscribers on one topic, M updates: deliveries/s, delivery latency, lost and
             duplicate deliveries, publish req/s, connect time.
  topics     N subscribers on N distinct topics (or URI templates, or URL Patterns), M updates
             to random ones: the same figures, checked per subscriber against exactly what was
             sent to its topic.
  idle       N idle subscriptions held open: connect time, errors, and the hub's memory per
             connection (with --hub-pid).
  publish    P concurrent keep-alive publishers sending M requests: req/s, latency, errors.
  reconnect  K updates in history, N subscribers that all reconnect at once with Last-Event-ID
             from the middle: reconnect latency, time to replay, lost and duplicate updates.
  soak       subscribers connect and disconnect continuously while updates are published, for a
             set time: the hub's RSS, open files and tasks over time (leaks), deliveries.
  overload   subscribers stay connected while publishers offer twice the sustainable rate:
             publish latency and status codes (backpressure), delivery, and recovery after.

Every run reports the CPU time and memory of the processes it follows (--hub-pid, --follow, \
--follow-dir: hubs, NATS servers, a load balancer) and of itself. Publishers may use one URL \
(--publish-hub) and subscribers others (--subscribe-hub), e.g. nodes of a cluster.

Common options go before or after the scenario name; the repeatable ones (--follow, \
--follow-dir, --subscribe-hub, --tls-ca) all on the same side.

A progress bar is drawn on stderr when it is a terminal; the results are printed as a table on \
stdout, and written as JSON (--json) and as an SVG or HTML latency chart (--plot) when asked. \
The run always stops by itself within --time-limit. Only the hub URLs given (--hub, \
--publish-hub, --subscribe-hub) are contacted."
)]
pub struct Cli {
    /// Options shared by every scenario.
    #[command(flatten)]
    pub common: CommonArgs,
    /// The scenario to run.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// Common options that may be given several times. Clap keeps only the occurrences on one side of
/// the scenario name when they are on both (clap-rs/clap#3959), so [`Cli::try_parse_checked`]
/// refuses that instead of dropping some silently.
const REPEATABLE: [&str; 4] = ["--follow", "--follow-dir", "--subscribe-hub", "--tls-ca"];

impl Cli {
    /// Parses `args` (the program name first) like [`Parser::try_parse_from`], and refuses a
    /// repeatable common option written both before and after the scenario name.
    pub fn try_parse_checked<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        let cli = Cli::try_parse_from(&args)?;
        let common = &cli.common;
        let parsed = [
            common.follow.len(),
            common.follow_dir.len(),
            common.subscribe_hub.len(),
            common.tls_ca.len(),
        ];
        for (option, parsed) in REPEATABLE.into_iter().zip(parsed) {
            // Each occurrence takes exactly one value, and clap refuses an option name as a value:
            // counting the tokens counts the occurrences.
            let given = args
                .iter()
                .skip(1)
                .filter_map(|arg| arg.to_str())
                .filter(|arg| *arg == option || arg.starts_with(&format!("{option}=")))
                .count();
            if given != parsed {
                let message = format!(
                    "write every {option} on the same side of the scenario name (all before it or \
                     all after it): here those after it would replace those before"
                );
                return Err(Cli::command().error(clap::error::ErrorKind::ArgumentConflict, message));
            }
        }
        Ok(cli)
    }
}

/// Options shared by every scenario.
#[derive(Debug, Args)]
#[command(next_help_heading = "Common options (before or after the scenario)")]
pub struct CommonArgs {
    /// URL of the hub, http:// or https:// (then with --tls-ca). Publishers and subscribers use it
    /// unless --publish-hub or --subscribe-hub says otherwise.
    #[arg(long, global = true, default_value = DEFAULT_HUB, value_name = "URL")]
    pub hub: String,

    /// URL publications are POSTed to, e.g. one node of a cluster. Default: --hub.
    #[arg(long, global = true, value_name = "URL")]
    pub publish_hub: Option<String>,

    /// URL subscribers connect to. Repeatable: subscribers are spread over the URLs round-robin
    /// (subscriber i uses URL i mod n), e.g. the nodes of a cluster other than the --publish-hub
    /// one, to measure cross-node delivery; with several, delivery latency is also reported per
    /// URL. In reconnect each subscriber comes back on the URL after the one it first used.
    /// Default: --hub.
    #[arg(long, global = true, value_name = "URL")]
    pub subscribe_hub: Vec<String>,

    /// PEM certificate to trust for https:// URLs: the CA that signed the hub's certificate, or the
    /// hub's self-signed certificate itself. Repeatable, and a file may hold several. Required by
    /// https:// URLs: the tool has no built-in trust roots. Every connection makes a full TLS
    /// handshake (no session resumption), counted in the connect time. Default: none.
    #[arg(long, global = true, value_name = "PATH")]
    pub tls_ca: Vec<PathBuf>,

    /// Key used to mint tokens: the HMAC secret for HS*, a PEM private key for RS*/PS*/ES*/EdDSA.
    /// Default: none (then tokens must be given, unless --key-file is).
    #[arg(long, global = true, value_name = "KEY", conflicts_with = "key_file")]
    pub key: Option<String>,

    /// File holding the key used to mint tokens (same meaning as --key). Default: none.
    #[arg(long, global = true, value_name = "PATH")]
    pub key_file: Option<PathBuf>,

    /// Algorithm of the minted tokens: HS256 HS384 HS512 RS256 RS384 RS512 PS256 PS384 PS512
    /// ES256 ES384 EdDSA.
    #[arg(long, global = true, default_value = "HS256", value_parser = parse_algorithm)]
    pub alg: Algorithm,

    /// Publisher token to use as is, instead of minting `{"mercure":{"publish":["*"]}}`.
    /// Default: minted from the key.
    #[arg(long, global = true, value_name = "JWT")]
    pub publisher_token: Option<String>,

    /// Subscriber token to use as is, instead of minting `{"mercure":{"subscribe":["*"]}}`: e.g.
    /// a Mercure 1.0 access token (`quicksilver token`) for `topics --urlpatterns`.
    /// Default: minted from the key.
    #[arg(long, global = true, value_name = "JWT")]
    pub subscriber_token: Option<String>,

    /// Subscribe without a token (no Authorization header). The hub must allow anonymous
    /// subscribers (Quicksilver: MERCURE_ANONYMOUS=1); they receive the public updates the tool
    /// publishes. Needed by `topics --urlpatterns` unless a Mercure 1.0 --subscriber-token is given.
    #[arg(long, global = true, conflicts_with = "subscriber_token")]
    pub anonymous: bool,

    /// PID of the hub process: the same as `--follow hub=PID`. The idle scenario reports the
    /// memory per connection of the process named hub. Default: none.
    #[arg(long, global = true, value_name = "PID")]
    pub hub_pid: Option<u32>,

    /// A process to follow (Linux): its CPU time (/proc/PID/stat) and resident memory
    /// (/proc/PID/status) are read before and after the run and reported under NAME. PID is a
    /// number; @FILE names a pid file, read at start. Repeatable, e.g. `--follow hub-1=4242
    /// --follow nats-1=@/tmp/quicksilver-cluster/nats-1.pid`. A followed process that ends
    /// during the run is reported as ended and counted as an error. The tool always follows
    /// itself, as loadtest. Default: none.
    #[arg(long, global = true, value_name = "NAME=PID|NAME=@FILE")]
    pub follow: Vec<FollowArg>,

    /// Follow every process that has a pid file (*.pid) in DIR, named after its file (hub-1.pid:
    /// hub-1); a pid already followed under another name is not followed twice. Repeatable.
    /// deploy/cluster writes hub-N.pid, nats-N.pid and haproxy.pid in its --dir. Default: none.
    #[arg(long, global = true, value_name = "DIR")]
    pub follow_dir: Vec<PathBuf>,

    /// Spread client sockets over the source addresses 127.0.0.1 .. 127.0.0.N (each socket is bound
    /// before connecting) so that many connections do not exhaust the ephemeral ports of one
    /// address. Used only when the hub is on an IPv4 loopback address; 0 lets the system choose.
    #[arg(long, global = true, default_value_t = 8, value_name = "N",
          value_parser = clap::value_parser!(u8).range(0..=254))]
    pub source_ips: u8,

    /// Hard bound on the whole run (e.g. 90s, 5m): when it passes, everything stops and the
    /// figures gathered so far are reported, marked as timed out.
    #[arg(long, global = true, default_value = "120s", value_parser = humantime::parse_duration,
          value_name = "DURATION")]
    pub time_limit: Duration,

    /// Bound on each connection attempt (connect, response head and first bytes of a stream) and
    /// on each publish request.
    #[arg(long, global = true, default_value = "10s", value_parser = humantime::parse_duration,
          value_name = "DURATION")]
    pub timeout: Duration,

    /// Subscriptions being opened at the same time (connect to first bytes), so that opening many
    /// does not overflow the hub's accept queue. The reconnect storm ignores it on purpose.
    #[arg(long, global = true, default_value_t = 256, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub connect_concurrency: u32,

    /// Write the results as JSON to this file. Default: none.
    #[arg(long, global = true, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Draw the latency distributions (percentile curves) to this file: SVG, or an HTML page
    /// around the SVG when the name ends in .html. Default: none.
    #[arg(long, global = true, value_name = "FILE")]
    pub plot: Option<PathBuf>,

    /// Name of the hub being measured, carried into the table, the JSON and the plot.
    /// Default: none.
    #[arg(long, global = true, value_name = "TEXT")]
    pub label: Option<String>,
}

/// One subcommand per scenario.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// N subscribers on one topic receive M updates.
    ///
    /// N subscribers connect to one topic; once all are connected, M updates are published to it
    /// as fast as possible (or at --rate per second). Each update's data carries its sequence
    /// number and its send time (nanoseconds since the Unix epoch), padded to --payload bytes.
    ///
    /// Measures: deliveries/s (unique deliveries / time from the first publish to the last
    /// delivery), lost deliveries (N x acknowledged updates - unique deliveries), duplicates,
    /// out-of-order deliveries, delivery latency (receive time - send time) p50/p90/p99/max,
    /// publish req/s and latency, connect time (to the first bytes of the stream).
    Fanout(FanoutArgs),

    /// N subscribers on N distinct topics, M updates to random ones.
    ///
    /// Subscriber i subscribes to https://example.com/t/<i>, or with --templates to the URI
    /// template https://example.com/t/<i>/{x} (updates then go to https://example.com/t/<i>/<seq>),
    /// or with --urlpatterns to the Mercure 1.0 URL Pattern https://example.com/t/<i>/:x (same
    /// updates; with --anonymous or a Mercure 1.0 --subscriber-token).
    /// Each of the M updates goes to the topic of a subscriber drawn at random (--seed).
    ///
    /// Measures the same figures as fanout; lost, duplicate and unexpected deliveries are checked
    /// per subscriber against exactly what was sent to its topic.
    Topics(TopicsArgs),

    /// N idle subscriptions, held open.
    ///
    /// Opens N subscriptions (topics https://example.com/idle/<i>, nothing is published), holds
    /// them for --hold, then closes them.
    ///
    /// Measures: connect time, errors, connections the hub closed during the hold and, with
    /// --hub-pid, the hub's RSS before, after opening, and after closing, RSS per connection
    /// ((after - before) / N) and its CPU time.
    Idle(IdleArgs),

    /// P concurrent publishers send M requests.
    ///
    /// P publishers, each on its own keep-alive connection, send M publications in total to one
    /// topic, as fast as the hub answers. Nobody subscribes.
    ///
    /// Measures: requests/s (successful requests / time from the first request to the last
    /// answer), latency p50/p90/p99/max, errors by kind.
    Publish(PublishArgs),

    /// K updates in history, then N subscribers reconnect at once with Last-Event-ID.
    ///
    /// Publishes K updates to a topic of its own, opens N subscribers to it (they connect, then
    /// are all dropped, as in a network cut), then all N reconnect at the same moment with
    /// Last-Event-ID set to the id of update K/2 - 1, so each must replay the K - K/2 updates it
    /// missed.
    ///
    /// The history is published to --publish-hub. With several --subscribe-hub URLs, each
    /// subscriber reconnects to the URL after the one it first connected to: every resume happens
    /// on another node of a cluster.
    ///
    /// Measures: reconnect latency (to the first bytes) p50/p99/max, replay time (until a
    /// subscriber has all it missed) p50/p99/max, time until every subscriber is reconnected and
    /// complete, lost and duplicate updates, updates outside the missed range, and responses whose
    /// Last-Event-ID header differs from the one sent.
    Reconnect(ReconnectArgs),

    /// Subscribers connect and disconnect continuously for --duration while updates are
    /// published: memory, file descriptor and task leaks.
    ///
    /// --subscribers slots each open a subscription to one of --topics topics
    /// (https://example.com/soak/<k>, drawn at random), hold it for a random time between
    /// --hold-min and --hold-max, close it and open the next, until --duration has passed.
    /// --witnesses subscribers stay connected throughout on the URI template
    /// https://example.com/soak/{k} and must receive every update. One publisher sends --rate
    /// updates per second, round-robin over the topics. Every --sample-every, the hub's RSS (with
    /// --hub-pid), open file descriptors (/proc/PID/fd, with --hub-pid) and live tokio tasks
    /// (mercure_runtime_alive_tasks on the metrics page, Quicksilver) are read. At the end
    /// everything is closed and the hub gets up to --settle to come back to its baseline.
    ///
    /// Measures: RSS at --reference (1 min) and at the end of the churn, their ratio and whether it
    /// is within --rss-tolerance; open files and tasks before, at the end and after settling
    /// (leaks); sessions opened; deliveries to the witnesses (every acknowledged update) and to
    /// the churning subscribers (those acknowledged while they were connected, --grace before
    /// they closed). --plot draws RSS, open files and tasks over time. Give --time-limit above
    /// --duration + --settle + 30 s.
    Soak(SoakArgs),

    /// Publishers offer twice the sustainable publish rate while subscribers stay connected:
    /// backpressure and recovery.
    ///
    /// Phases: --subscribers connect to one topic; the sustainable rate is measured by
    /// --publishers keep-alive publishers as fast as the hub answers for --calibrate (or taken
    /// from --sustainable-rate); a baseline at --probe-rate for --baseline; the overload at
    /// --factor times the sustainable rate for --duration, from up to --max-in-flight concurrent
    /// requests; then --probe-rate again for --recovery.
    ///
    /// Measures, per phase: publish latency (from the time each request was due, so client-side
    /// queueing counts, and from the time it was sent), answers by status (200, 503, 429, other)
    /// and errors or timeouts, deliveries to the subscribers and their delay, streams the hub
    /// closed, the hub's RSS (with --hub-pid). Recovery: the first second of the recovery phase
    /// from which publish and delivery latency p99 stay within --recovered-within times the
    /// baseline's (or 5 ms above it, whichever is larger).
    Overload(OverloadArgs),
}

/// Options of `fanout`.
#[derive(Debug, Args)]
pub struct FanoutArgs {
    /// Number of subscribers.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub subscribers: u32,
    /// Number of updates published.
    #[arg(long, default_value_t = 1000, value_name = "M")]
    pub updates: u64,
    /// Publish at this many updates per second. Default: as fast as possible.
    #[arg(long, value_name = "R", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Size of each update's data, in bytes (at least the ~40 bytes of the stamp).
    #[arg(long, default_value_t = 100, value_name = "BYTES")]
    pub payload: usize,
    /// Topic the subscribers subscribe to and the updates are published to.
    #[arg(long, default_value = "https://example.com/loadtest/fanout", value_name = "T")]
    pub topic: String,
    /// Concurrent publishers (keep-alive connections). With 1, updates leave in sequence order,
    /// so out-of-order deliveries are meaningful.
    #[arg(long, default_value_t = 1, value_name = "P",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub publishers: u32,
    /// After the last publication is answered, how long to wait for missing deliveries.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration,
          value_name = "DURATION")]
    pub drain: Duration,
}

/// Options of `topics`.
#[derive(Debug, Args)]
pub struct TopicsArgs {
    /// Number of subscribers, each on its own topic.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub subscribers: u32,
    /// Number of updates published, each to one subscriber's topic.
    #[arg(long, default_value_t = 1000, value_name = "M")]
    pub updates: u64,
    /// Subscribe with URI templates (https://example.com/t/<i>/{x}) instead of exact topics.
    #[arg(long)]
    pub templates: bool,
    /// Subscribe with Mercure 1.0 URL Patterns (match_urlpattern=https://example.com/t/<i>/:x)
    /// instead of exact topics; updates go where they go with --templates. A hub refuses the
    /// draft-07 token the tool mints on such a subscription: give --anonymous (the hub allowing
    /// anonymous subscribers) or a Mercure 1.0 --subscriber-token.
    #[arg(long, conflicts_with = "templates")]
    pub urlpatterns: bool,
    /// Publish at this many updates per second. Default: as fast as possible.
    #[arg(long, value_name = "R", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Size of each update's data, in bytes.
    #[arg(long, default_value_t = 100, value_name = "BYTES")]
    pub payload: usize,
    /// Concurrent publishers (keep-alive connections).
    #[arg(long, default_value_t = 1, value_name = "P",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub publishers: u32,
    /// Seed of the random choice of target topics. Default: drawn at random (and reported).
    #[arg(long, value_name = "SEED")]
    pub seed: Option<u64>,
    /// After the last publication is answered, how long to wait for missing deliveries.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration,
          value_name = "DURATION")]
    pub drain: Duration,
}

/// Options of `idle`.
#[derive(Debug, Args)]
pub struct IdleArgs {
    /// Number of subscriptions to open (each its own connection and topic).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub connections: u32,
    /// How long to hold them once all are open.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration,
          value_name = "DURATION")]
    pub hold: Duration,
}

/// Options of `publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Concurrent publishers, each on its own keep-alive connection.
    #[arg(long, default_value_t = 4, value_name = "P",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub publishers: u32,
    /// Number of publications in total.
    #[arg(long, default_value_t = 10_000, value_name = "M")]
    pub requests: u64,
    /// Size of each update's data, in bytes.
    #[arg(long, default_value_t = 100, value_name = "BYTES")]
    pub payload: usize,
    /// Topic the updates are published to.
    #[arg(long, default_value = "https://example.com/loadtest/publish", value_name = "T")]
    pub topic: String,
}

/// Options of `reconnect`.
#[derive(Debug, Args)]
pub struct ReconnectArgs {
    /// Number of subscribers that reconnect together.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub subscribers: u32,
    /// Updates published before the subscribers connect; they resume from update K/2 - 1.
    #[arg(long, default_value_t = 200, value_name = "K",
          value_parser = clap::value_parser!(u64).range(2..))]
    pub history: u64,
    /// Size of each update's data, in bytes.
    #[arg(long, default_value_t = 100, value_name = "BYTES")]
    pub payload: usize,
    /// After the reconnections, how long to wait at most for the replays to complete.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration,
          value_name = "DURATION")]
    pub drain: Duration,
}

/// Options of `soak`.
#[derive(Debug, Args)]
pub struct SoakArgs {
    /// How long subscribers churn and updates are published.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration,
          value_name = "DURATION")]
    pub duration: Duration,
    /// Churning subscribers connected at a time (slots that each connect, hold, close, again).
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub subscribers: u32,
    /// Shortest time a churning subscriber stays connected.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration,
          value_name = "DURATION")]
    pub hold_min: Duration,
    /// Longest time a churning subscriber stays connected.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration,
          value_name = "DURATION")]
    pub hold_max: Duration,
    /// Subscribers connected for the whole run, which must receive every update.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub witnesses: u32,
    /// Distinct topics the updates go to and the churning subscribers choose from.
    #[arg(long, default_value_t = 100, value_name = "T",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub topics: u64,
    /// Updates published per second (one publisher).
    #[arg(long, default_value_t = 100.0, value_name = "R", value_parser = parse_rate)]
    pub rate: f64,
    /// Size of each update's data, in bytes.
    #[arg(long, default_value_t = 100, value_name = "BYTES")]
    pub payload: usize,
    /// How often the hub's RSS, open files and tasks are read.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration,
          value_name = "DURATION")]
    pub sample_every: Duration,
    /// When the reference RSS is read, counted from the start of the churn: the end of the churn
    /// is compared with it.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration,
          value_name = "DURATION")]
    pub reference: Duration,
    /// Largest accepted change of RSS from the reference to the end, in percent.
    #[arg(long, default_value_t = 10.0, value_name = "PERCENT")]
    pub rss_tolerance: f64,
    /// After the churn, how long the hub gets to close everything and come back to its baseline
    /// of open files and tasks.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration,
          value_name = "DURATION")]
    pub settle: Duration,
    /// An update acknowledged less than this before a churning subscriber closed is not counted
    /// as lost if it did not arrive: it may have been on its way.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration,
          value_name = "DURATION")]
    pub grace: Duration,
    /// Where the witnesses may still receive missing updates after the churn, at most.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration,
          value_name = "DURATION")]
    pub drain: Duration,
    /// The hub's Prometheus metrics page. Default: /metrics at the --hub URL's host and port.
    #[arg(long, value_name = "URL")]
    pub metrics_url: Option<String>,
}

/// Options of `overload`.
#[derive(Debug, Args)]
pub struct OverloadArgs {
    /// Subscribers that stay connected through every phase.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub subscribers: u32,
    /// The sustainable publish rate, from an earlier run. Default: measured (--calibrate).
    #[arg(long, value_name = "R", value_parser = parse_rate)]
    pub sustainable_rate: Option<f64>,
    /// How long the sustainable rate is measured, publishing as fast as the hub answers.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration,
          value_name = "DURATION")]
    pub calibrate: Duration,
    /// Keep-alive publishers of the calibration.
    #[arg(long, default_value_t = 8, value_name = "P",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub publishers: u32,
    /// Offered rate during the overload, as a multiple of the sustainable rate.
    #[arg(long, default_value_t = 2.0, value_name = "X", value_parser = parse_rate)]
    pub factor: f64,
    /// How long the overload lasts.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration,
          value_name = "DURATION")]
    pub duration: Duration,
    /// Most publish requests in flight at once during the overload (one connection each); a
    /// request due when all are busy waits for one, and its wait counts in its latency.
    #[arg(long, default_value_t = 256, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,
    /// Rate of the baseline and recovery phases, updates per second.
    #[arg(long, default_value_t = 50.0, value_name = "R", value_parser = parse_rate)]
    pub probe_rate: f64,
    /// How long the baseline is measured, before the overload.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration,
          value_name = "DURATION")]
    pub baseline: Duration,
    /// How long the recovery is watched, after the overload.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration,
          value_name = "DURATION")]
    pub recovery: Duration,
    /// After the recovery, how long the subscribers may still receive what is on its way.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration,
          value_name = "DURATION")]
    pub drain: Duration,
    /// Recovered: p99 latencies back within this multiple of the baseline's.
    #[arg(long, default_value_t = 2.0, value_name = "X", value_parser = parse_rate)]
    pub recovered_within: f64,
    /// Size of each update's data, in bytes.
    #[arg(long, default_value_t = 100, value_name = "BYTES")]
    pub payload: usize,
    /// Topic the subscribers subscribe to and the updates are published to.
    #[arg(long, default_value = "https://example.com/loadtest/overload", value_name = "T")]
    pub topic: String,
}

/// Parses a JWT algorithm name as jsonwebtoken spells it (`HS256`, `EdDSA`, ...).
fn parse_algorithm(text: &str) -> Result<Algorithm, String> {
    text.parse().map_err(|_| format!("unknown algorithm {text:?}"))
}

/// Parses a positive, finite rate.
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!("{text:?} is not a positive number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::follow::PidSource;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn common_options_go_after_the_subcommand_too() {
        let cli = Cli::try_parse_from([
            "loadtest",
            "fanout",
            "--subscribers",
            "3",
            "--key",
            "k",
            "--time-limit",
            "5s",
            "--alg",
            "HS512",
        ])
        .expect("valid command line");
        assert_eq!(cli.common.key.as_deref(), Some("k"));
        assert_eq!(cli.common.time_limit, Duration::from_secs(5));
        assert_eq!(cli.common.alg, Algorithm::HS512);
        match cli.scenario {
            Scenario::Fanout(args) => {
                assert_eq!(args.subscribers, 3);
                assert_eq!(args.updates, 1000);
                assert_eq!(args.rate, None);
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn processes_to_follow_accumulate() {
        let cli = Cli::try_parse_checked([
            "loadtest",
            "--follow-dir",
            "/tmp/cluster",
            "idle",
            "--follow",
            "hub-1=123",
            "--follow=nats-1=@/tmp/cluster/nats-1.pid",
            "--hub-pid",
            "77",
        ])
        .expect("valid command line");
        let follow = &cli.common.follow;
        assert_eq!(follow.len(), 2);
        assert_eq!((follow[0].name.as_str(), &follow[0].source), ("hub-1", &PidSource::Pid(123)));
        assert_eq!(
            (follow[1].name.as_str(), &follow[1].source),
            ("nats-1", &PidSource::File("/tmp/cluster/nats-1.pid".into()))
        );
        assert_eq!(cli.common.follow_dir, [PathBuf::from("/tmp/cluster")]);
        assert_eq!(cli.common.hub_pid, Some(77));
        for bad in ["123", "hub=abc", "=1", "loadtest=1"] {
            assert!(
                Cli::try_parse_checked(["loadtest", "idle", "--follow", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn repeated_options_on_both_sides_of_the_scenario_are_refused() {
        // Clap would keep only the occurrences after `idle`.
        let both = ["loadtest", "--follow", "a=1", "idle", "--follow", "b=2"];
        let error = Cli::try_parse_checked(both).expect_err("refused");
        assert!(error.to_string().contains("same side"), "{error}");
        let both = ["loadtest", "--follow-dir=/a", "idle", "--follow-dir", "/b"];
        assert!(Cli::try_parse_checked(both).is_err());
        let both = ["loadtest", "--tls-ca", "a.pem", "idle", "--tls-ca", "b.pem"];
        assert!(Cli::try_parse_checked(both).is_err());
        let before = ["loadtest", "--tls-ca", "a.pem", "--tls-ca=b.pem", "idle"];
        assert_eq!(Cli::try_parse_checked(before).expect("valid").common.tls_ca.len(), 2);
        let after = ["loadtest", "idle", "--follow", "a=1", "--follow", "b=2"];
        assert_eq!(Cli::try_parse_checked(after).expect("valid").common.follow.len(), 2);
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Cli::try_parse_from(["loadtest", "fanout", "--rate", "0"]).is_err());
        assert!(Cli::try_parse_from(["loadtest", "publish", "--alg", "none"]).is_err());
        assert!(Cli::try_parse_from(["loadtest", "reconnect", "--history", "1"]).is_err());
    }
}
