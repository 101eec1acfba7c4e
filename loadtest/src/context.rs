//! What every scenario shares: the hub URLs to publish to and to subscribe at, tokens, the stop
//! signal, the error counts and the followed processes.
//!
//! [`Ctx::stop`] is cancelled when `--time-limit` passes or on Ctrl-C; every task watches it (or a
//! child token), which is how the tool always stops by itself.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::cli::CommonArgs;
use crate::follow::{self, Followed, ProcessUsage, Watch};
use crate::http::Endpoint;
use crate::procstat::Sample;
use crate::tls;
use crate::token::{self, Role};

/// Errors counted by category; they are rare, so one lock is enough.
#[derive(Debug, Default)]
pub struct ErrorCounts {
    counts: Mutex<BTreeMap<String, u64>>,
}

impl ErrorCounts {
    /// Counts one error of `kind`.
    pub fn add(&self, kind: impl Into<String>) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        *counts.entry(kind.into()).or_default() += 1;
    }

    /// The counts so far.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// How subscribers authenticate.
#[derive(Debug)]
pub enum SubscriberAuth {
    /// No `Authorization` header (`--anonymous`): the hub must allow anonymous subscribers.
    Anonymous,
    /// `--subscriber-token`, sent as it is (draft-07 or Mercure 1.0: the tool does not look).
    Given(String),
    /// Minted from the key: draft-07, `{"mercure":{"subscribe":["*"]}}`. A hub refuses it on a
    /// Mercure 1.0 (`match_*`) subscription.
    Minted(String),
    /// Neither a token, nor a key, nor `--anonymous`.
    Missing,
}

/// State shared by all tasks of a run.
#[derive(Debug)]
pub struct Ctx {
    /// Where publications go: `--publish-hub`, else `--hub`.
    pub publish: Endpoint,
    /// The TLS client configuration of `https://` URLs (from `--tls-ca`), for scenarios that open
    /// connections of their own (the metrics page).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Where subscribers connect, spread round-robin: `--subscribe-hub`, else `--hub`. Never empty.
    pub subscribe: Vec<Endpoint>,
    /// Given or minted; `None` when neither a token nor a key was given.
    publisher_token: Option<String>,
    /// How subscribers authenticate.
    subscriber_auth: SubscriberAuth,
    /// Bound on each connection attempt and request.
    pub timeout: Duration,
    /// Limits subscriptions being opened at once.
    pub connect_slots: Semaphore,
    /// Cancelled at the time limit or on Ctrl-C.
    pub stop: CancellationToken,
    /// When the run started.
    pub started: Instant,
    /// When it must end.
    pub deadline: Instant,
    /// Errors by kind.
    pub errors: ErrorCounts,
    /// Random id of this run, carried in every update (see [`crate::payload`]).
    pub run_id: u32,
    /// The followed processes (the hub among them when `--hub-pid` is given), this tool last.
    pub processes: Vec<Followed>,
    /// Names of the followed processes already counted as ended, so that each is counted once.
    ended: Mutex<BTreeSet<String>>,
    /// Name of the hub, for the report.
    pub label: Option<String>,
    /// Whether to draw progress bars (stderr is a terminal).
    pub progress: bool,
}

impl Ctx {
    /// Resolves the hub URLs, reads the certificates to trust for https:// ones, prepares the
    /// tokens, and finds the processes to follow (they must be running).
    pub async fn new(args: &CommonArgs) -> anyhow::Result<Self> {
        // One TLS configuration for every connection of the run, whatever its URL.
        let tls = tls::client_config(&args.tls_ca)?;
        let (publish_option, publish_url) = match &args.publish_hub {
            Some(url) => ("--publish-hub", url),
            None => ("--hub", &args.hub),
        };
        let publish = Endpoint::resolve(publish_url, args.source_ips, tls.as_ref())
            .await
            .with_context(|| format!("{publish_option} {publish_url}"))?;
        let (subscribe_option, subscribe_urls) = if args.subscribe_hub.is_empty() {
            ("--hub", std::slice::from_ref(&args.hub))
        } else {
            ("--subscribe-hub", args.subscribe_hub.as_slice())
        };
        let mut subscribe = Vec::with_capacity(subscribe_urls.len());
        for url in subscribe_urls {
            let endpoint = Endpoint::resolve(url, args.source_ips, tls.as_ref())
                .await
                .with_context(|| format!("{subscribe_option} {url}"))?;
            subscribe.push(endpoint);
        }
        let key = match (&args.key, &args.key_file) {
            (Some(key), _) => Some(key.clone().into_bytes()),
            (None, Some(path)) => Some(
                std::fs::read(path)
                    .with_context(|| format!("reading --key-file {}", path.display()))?,
            ),
            (None, None) => None,
        };
        let token = |given: &Option<String>, role: Role| -> anyhow::Result<Option<String>> {
            match (given, &key) {
                (Some(token), _) => Ok(Some(token.clone())),
                (None, Some(key)) => Ok(Some(token::mint(role, args.alg, key)?)),
                (None, None) => Ok(None),
            }
        };
        let publisher_token = token(&args.publisher_token, Role::Publisher)?;
        let subscriber_auth = match (&args.subscriber_token, &key) {
            _ if args.anonymous => SubscriberAuth::Anonymous,
            (Some(token), _) => SubscriberAuth::Given(token.clone()),
            (None, Some(key)) => {
                SubscriberAuth::Minted(token::mint(Role::Subscriber, args.alg, key)?)
            }
            (None, None) => SubscriberAuth::Missing,
        };
        let processes = follow::resolve(args.hub_pid, &args.follow, &args.follow_dir)?;
        let started = Instant::now();
        let permits = usize::try_from(args.connect_concurrency).unwrap_or(usize::MAX);
        Ok(Ctx {
            publish,
            tls,
            subscribe,
            publisher_token,
            subscriber_auth,
            timeout: args.timeout,
            connect_slots: Semaphore::new(permits.min(Semaphore::MAX_PERMITS)),
            stop: CancellationToken::new(),
            started,
            deadline: started + args.time_limit,
            errors: ErrorCounts::default(),
            run_id: rand::random(),
            processes,
            ended: Mutex::default(),
            label: args.label.clone(),
            progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        })
    }

    /// Cancels [`Ctx::stop`] when the deadline passes or on Ctrl-C.
    pub fn arm_stop_signals(&self) {
        let stop = self.stop.clone();
        let deadline = tokio::time::Instant::from_std(self.deadline);
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                _ = tokio::signal::ctrl_c() => eprintln!("interrupted: stopping and reporting"),
                () = stop.cancelled() => {}
            }
            stop.cancel();
        });
    }

    /// The publisher token, or why there is none.
    pub fn publisher_token(&self) -> anyhow::Result<&str> {
        self.publisher_token.as_deref().ok_or_else(|| missing_token("publisher"))
    }

    /// The subscriber token (`None` for anonymous subscribers), or why there is none.
    pub fn subscriber_token(&self) -> anyhow::Result<Option<&str>> {
        match &self.subscriber_auth {
            SubscriberAuth::Anonymous => Ok(None),
            SubscriberAuth::Given(token) | SubscriberAuth::Minted(token) => Ok(Some(token)),
            SubscriberAuth::Missing => Err(anyhow::anyhow!(
                "no subscriber token: give --key (or --key-file) to mint one, \
                 --subscriber-token, or --anonymous"
            )),
        }
    }

    /// How subscribers authenticate.
    pub fn subscriber_auth(&self) -> &SubscriberAuth {
        &self.subscriber_auth
    }

    /// Whether the run was stopped (time limit or Ctrl-C).
    pub fn stopped(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Nanoseconds since the run started: a compact, monotonic timestamp for atomics.
    pub fn now_offset_ns(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The process named `hub` (`--hub-pid`), if followed.
    pub fn hub(&self) -> Option<&Followed> {
        self.processes.iter().find(|process| process.name == follow::HUB)
    }

    /// Reads the process named `hub`, if followed. Its end is counted as an error.
    pub fn sample_hub(&self) -> Option<Sample> {
        let hub = self.hub()?;
        let sample = hub.sample();
        if sample.is_none() {
            self.process_ended(&hub.name, hub.pid);
        }
        sample
    }

    /// Counts, once per process, that a followed process ended during the run.
    fn process_ended(&self, name: &str, pid: u32) {
        let mut ended = self.ended.lock().unwrap_or_else(PoisonError::into_inner);
        if ended.insert(name.to_owned()) {
            self.errors.add(format!("process {name} (pid {pid}) ended during the run"));
        }
    }
}

/// The error for a scenario that needs a token the command line does not provide.
fn missing_token(role: &str) -> anyhow::Error {
    anyhow::anyhow!("no {role} token: give --key (or --key-file) to mint one, or --{role}-token")
}

/// Readings of the followed processes taken at the start of a scenario.
#[derive(Debug, Clone)]
pub struct ProcessWatch {
    watch: Watch,
}

impl ProcessWatch {
    /// Takes the "before" readings.
    pub fn start(ctx: &Ctx) -> Self {
        ProcessWatch { watch: Watch::start(&ctx.processes) }
    }

    /// Takes the "after" readings: what each followed process used since the start. Those that
    /// ended meanwhile are counted as errors.
    pub fn finish(&self, ctx: &Ctx) -> Vec<ProcessUsage> {
        let usage = self.watch.finish(&ctx.processes);
        for process in usage.iter().filter(|process| process.usage.is_none()) {
            ctx.process_ended(&process.name, process.pid);
        }
        usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;

    async fn ctx_with(args: &[&str]) -> Ctx {
        let cli = Cli::try_parse_checked(["loadtest", "fanout"].iter().chain(args))
            .expect("valid command line");
        Ctx::new(&cli.common).await.expect("a context")
    }

    fn urls(endpoints: &[Endpoint]) -> Vec<String> {
        endpoints.iter().map(|endpoint| endpoint.target.url.to_string()).collect()
    }

    #[tokio::test]
    async fn publishers_and_subscribers_use_hub_unless_told_otherwise() {
        let hub = "http://127.0.0.1:8090/.well-known/mercure";
        let ctx = ctx_with(&["--hub", hub]).await;
        assert_eq!(ctx.publish.target.url.as_str(), hub);
        assert_eq!(urls(&ctx.subscribe), [hub]);

        let (node1, node2, node3) =
            ("http://127.0.0.1:8081/m", "http://127.0.0.1:8082/m", "http://127.0.0.1:8083/m");
        let ctx = ctx_with(&[
            "--hub",
            hub,
            "--publish-hub",
            node1,
            "--subscribe-hub",
            node2,
            "--subscribe-hub",
            node3,
        ])
        .await;
        assert_eq!(ctx.publish.target.url.as_str(), node1);
        assert_eq!(urls(&ctx.subscribe), [node2, node3]);
        assert_eq!(ctx.subscribe[1].name(), "127.0.0.1:8083");
    }

    #[tokio::test]
    async fn a_bad_url_names_its_option() {
        let cli = Cli::try_parse_checked(["loadtest", "fanout", "--subscribe-hub", "ftp://x/"])
            .expect("valid command line");
        let error = Ctx::new(&cli.common).await.expect_err("ftp is refused");
        assert!(format!("{error:#}").starts_with("--subscribe-hub ftp://x/: "), "{error:#}");
    }

    #[tokio::test]
    async fn https_without_a_certificate_to_trust_is_refused() {
        let url = "https://127.0.0.1:8443/.well-known/mercure";
        let cli = Cli::try_parse_checked(["loadtest", "fanout", "--publish-hub", url])
            .expect("valid command line");
        let error = Ctx::new(&cli.common).await.expect_err("no --tls-ca");
        let message = format!("{error:#}");
        assert!(message.starts_with(&format!("--publish-hub {url}: ")), "{message}");
        assert!(message.contains("needs --tls-ca PATH"), "{message}");
    }
}
