//! What every scenario shares: the target, tokens, the connector, the stop signal and the error
//! counts.
//!
//! [`Ctx::stop`] is cancelled when `--time-limit` passes or on Ctrl-C; every task watches it (or a
//! child token), which is how the tool always stops by itself.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::cli::CommonArgs;
use crate::http::{Connector, Target};
use crate::procstat::{self, Pid, Sample, Usage};
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

/// State shared by all tasks of a run.
#[derive(Debug)]
pub struct Ctx {
    /// The hub.
    pub target: Target,
    /// Opens connections to it.
    pub connector: Connector,
    /// Given or minted; `None` when neither a token nor a key was given.
    publisher_token: Option<String>,
    /// Given or minted; `None` when neither a token nor a key was given.
    subscriber_token: Option<String>,
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
    /// The hub's process, if given.
    pub hub_pid: Option<u32>,
    /// Name of the hub, for the report.
    pub label: Option<String>,
    /// Whether to draw progress bars (stderr is a terminal).
    pub progress: bool,
}

impl Ctx {
    /// Resolves the hub, prepares the tokens, and checks that `--hub-pid` is readable.
    pub async fn new(args: &CommonArgs) -> anyhow::Result<Self> {
        let target = Target::resolve(&args.hub).await?;
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
        let subscriber_token = token(&args.subscriber_token, Role::Subscriber)?;
        if let Some(pid) = args.hub_pid {
            procstat::sample(Pid::Other(pid))
                .with_context(|| format!("cannot read /proc/{pid} (--hub-pid)"))?;
        }
        let started = Instant::now();
        let permits = usize::try_from(args.connect_concurrency).unwrap_or(usize::MAX);
        Ok(Ctx {
            connector: Connector::new(target.addr, args.source_ips),
            target,
            publisher_token,
            subscriber_token,
            timeout: args.timeout,
            connect_slots: Semaphore::new(permits.min(Semaphore::MAX_PERMITS)),
            stop: CancellationToken::new(),
            started,
            deadline: started + args.time_limit,
            errors: ErrorCounts::default(),
            run_id: rand::random(),
            hub_pid: args.hub_pid,
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

    /// The subscriber token, or why there is none.
    pub fn subscriber_token(&self) -> anyhow::Result<&str> {
        self.subscriber_token.as_deref().ok_or_else(|| missing_token("subscriber"))
    }

    /// Whether the run was stopped (time limit or Ctrl-C).
    pub fn stopped(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Nanoseconds since the run started: a compact, monotonic timestamp for atomics.
    pub fn now_offset_ns(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Reads the hub's process, if `--hub-pid` was given. A failure (the hub died) is counted.
    pub fn sample_hub(&self) -> Option<Sample> {
        let pid = self.hub_pid?;
        match procstat::sample(Pid::Other(pid)) {
            Ok(sample) => Some(sample),
            Err(error) => {
                self.errors.add(format!("reading /proc/{pid}: {}", error.kind()));
                None
            }
        }
    }
}

/// The error for a scenario that needs a token the command line does not provide.
fn missing_token(role: &str) -> anyhow::Error {
    anyhow::anyhow!("no {role} token: give --key (or --key-file) to mint one, or --{role}-token")
}

/// Readings of the hub and of this process taken at the start of a scenario.
#[derive(Debug, Clone, Copy)]
pub struct ProcessWatch {
    at: Instant,
    hub: Option<Sample>,
    client: Option<Sample>,
}

impl ProcessWatch {
    /// Takes the "before" readings.
    pub fn start(ctx: &Ctx) -> Self {
        ProcessWatch {
            at: Instant::now(),
            hub: ctx.sample_hub(),
            client: procstat::sample(Pid::Current).ok(),
        }
    }

    /// Takes the "after" readings: the usage of the hub and of this process since the start.
    pub fn finish(&self, ctx: &Ctx) -> (Option<Usage>, Option<Usage>) {
        let seconds = self.at.elapsed().as_secs_f64();
        let hub = self.hub.zip(ctx.sample_hub()).map(|(a, b)| Usage::between(a, b, seconds));
        let client = self
            .client
            .zip(procstat::sample(Pid::Current).ok())
            .map(|(a, b)| Usage::between(a, b, seconds));
        (hub, client)
    }
}
