//! Publishers: P tasks, each on a keep-alive connection, sending M updates in total.
//!
//! Sequence numbers are handed out from one counter, so the M updates are spread over the
//! publishers whatever their speed; with a rate, update `i` is not sent before `start + i / rate`.
//! Each update's data is stamped (see [`crate::payload`]) just before it is written. The tasks
//! record which updates the hub acknowledged (200), with the id it answered, and the latency of
//! each request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::context::Ctx;
use crate::http::{self, KeepAlive};
use crate::payload::{self, Stamp};
use crate::stats;

/// Chooses the topic of update `seq`.
pub type TopicFn = Arc<dyn Fn(u64) -> String + Send + Sync>;

/// What to publish.
#[derive(Clone)]
pub struct PublishPlan {
    /// Number of updates.
    pub total: u64,
    /// Concurrent publishers.
    pub publishers: u32,
    /// Updates per second, or as fast as possible.
    pub rate: Option<f64>,
    /// Size of each update's data.
    pub payload: usize,
    /// Topic of each update.
    pub topic: TopicFn,
    /// Whether to keep the ids the hub answered.
    pub keep_ids: bool,
}

/// Counters shared by the publisher tasks, readable while they run.
#[derive(Debug, Default)]
pub struct PublishShared {
    /// Requests answered 200.
    pub ok: AtomicU64,
    /// Requests that failed (error or other status).
    pub failed: AtomicU64,
    /// Publisher tasks that finished.
    pub finished: AtomicU64,
    /// First send, in [`Ctx::now_offset_ns`] time (`u64::MAX`: none yet).
    pub first_send_ns: AtomicU64,
    /// Latest answer, in [`Ctx::now_offset_ns`] time.
    pub last_answer_ns: AtomicU64,
}

/// What the publishers did.
#[derive(Debug)]
pub struct PublishOutcome {
    /// Which updates were acknowledged, by sequence number.
    pub acked: Vec<bool>,
    /// The id the hub answered for each acknowledged update (if `keep_ids`).
    pub ids: Vec<Option<String>>,
    /// Request latency (write to end of answer).
    pub latency: Histogram<u64>,
    /// Requests answered 200.
    pub ok: u64,
    /// Failed requests.
    pub failed: u64,
    /// Seconds from the first send to the last answer.
    pub seconds: f64,
    /// First send, in [`Ctx::now_offset_ns`] time, if any.
    pub first_send_ns: Option<u64>,
}

/// Running publisher tasks.
pub struct Publishers {
    /// Counters, readable while they run.
    pub shared: Arc<PublishShared>,
    count: u64,
    total: u64,
    keep_ids: bool,
    handles: Vec<JoinHandle<TaskOutcome>>,
}

/// What one task hands back.
struct TaskOutcome {
    latency: Histogram<u64>,
    acked: Vec<(u64, Option<String>)>,
}

impl Publishers {
    /// Starts the publishers. They stop after `plan.total` updates or when `ctx.stop` fires.
    pub fn spawn(ctx: &Arc<Ctx>, plan: PublishPlan) -> anyhow::Result<Self> {
        let token: Arc<str> = Arc::from(ctx.publisher_token()?);
        let shared = Arc::new(PublishShared {
            first_send_ns: AtomicU64::new(u64::MAX),
            ..PublishShared::default()
        });
        let next = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let handles = (0..plan.publishers)
            .map(|_| {
                let task = PublisherTask {
                    ctx: Arc::clone(ctx),
                    shared: Arc::clone(&shared),
                    token: Arc::clone(&token),
                    next: Arc::clone(&next),
                    plan: plan.clone(),
                    start,
                };
                tokio::spawn(task.run())
            })
            .collect();
        Ok(Publishers {
            shared,
            count: u64::from(plan.publishers),
            total: plan.total,
            keep_ids: plan.keep_ids,
            handles,
        })
    }

    /// Whether every task has finished.
    pub fn finished(&self) -> bool {
        self.shared.finished.load(Ordering::Relaxed) >= self.count
    }

    /// Requests answered so far (successfully or not).
    pub fn answered(&self) -> u64 {
        self.shared.ok.load(Ordering::Relaxed) + self.shared.failed.load(Ordering::Relaxed)
    }

    /// Waits for the tasks and gathers what they did.
    pub async fn join(self) -> PublishOutcome {
        let total = usize::try_from(self.total).unwrap_or(usize::MAX);
        let mut acked = vec![false; total];
        let mut ids = if self.keep_ids { vec![None; total] } else { Vec::new() };
        let mut latency = stats::histogram();
        for handle in self.handles {
            let Ok(outcome) = handle.await else {
                // A task cannot panic by design; should one, its updates count as unacknowledged.
                eprintln!("a publisher task failed");
                continue;
            };
            // Same bounds on both sides, so adding cannot fail.
            latency.add(&outcome.latency).expect("histograms with the same bounds");
            for (seq, id) in outcome.acked {
                let index = seq as usize;
                acked[index] = true;
                if let Some(slot) = ids.get_mut(index) {
                    *slot = id;
                }
            }
        }
        let first = self.shared.first_send_ns.load(Ordering::Relaxed);
        let last = self.shared.last_answer_ns.load(Ordering::Relaxed);
        let first_send_ns = (first != u64::MAX).then_some(first);
        PublishOutcome {
            acked,
            ids,
            latency,
            ok: self.shared.ok.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
            seconds: first_send_ns.map_or(0.0, |first| last.saturating_sub(first) as f64 / 1e9),
            first_send_ns,
        }
    }
}

/// Everything one publisher task needs.
struct PublisherTask {
    ctx: Arc<Ctx>,
    shared: Arc<PublishShared>,
    token: Arc<str>,
    next: Arc<AtomicU64>,
    plan: PublishPlan,
    start: Instant,
}

impl PublisherTask {
    async fn run(self) -> TaskOutcome {
        let ctx = &self.ctx;
        let mut outcome = TaskOutcome { latency: stats::histogram(), acked: Vec::new() };
        let mut client = KeepAlive::new(ctx.timeout);
        // Connect before the clock starts; a failure here is retried by the first send.
        let _ = client.connect(&ctx.publish.connector).await;
        loop {
            let seq = self.next.fetch_add(1, Ordering::Relaxed);
            if seq >= self.plan.total || ctx.stopped() {
                break;
            }
            if let Some(rate) = self.plan.rate {
                let due = self.start + Duration::from_secs_f64(seq as f64 / rate);
                tokio::select! {
                    () = tokio::time::sleep_until(due) => {}
                    () = ctx.stop.cancelled() => break,
                }
            }
            let topic = (self.plan.topic)(seq);
            let stamp = Stamp { run: ctx.run_id, seq, sent_ns: payload::now_ns() };
            let data = payload::encode(stamp, self.plan.payload);
            let request = http::publish_request(&ctx.publish.target, &self.token, &topic, &data);
            self.shared.first_send_ns.fetch_min(ctx.now_offset_ns(), Ordering::Relaxed);
            let sent = Instant::now();
            let answer = tokio::select! {
                () = ctx.stop.cancelled() => break,
                answer = client.send(&ctx.publish.connector, &request) => answer,
            };
            stats::record(&mut outcome.latency, sent.elapsed());
            self.shared.last_answer_ns.fetch_max(ctx.now_offset_ns(), Ordering::Relaxed);
            match answer {
                Ok(response) if response.status == 200 => {
                    self.shared.ok.fetch_add(1, Ordering::Relaxed);
                    let id = self
                        .plan
                        .keep_ids
                        .then(|| String::from_utf8_lossy(&response.body).into_owned());
                    outcome.acked.push((seq, id));
                }
                Ok(response) => {
                    self.shared.failed.fetch_add(1, Ordering::Relaxed);
                    ctx.errors.add(format!("publish: HTTP {}", response.status));
                }
                Err(error) => {
                    self.shared.failed.fetch_add(1, Ordering::Relaxed);
                    ctx.errors.add(format!("publish: {}", error.kind()));
                }
            }
        }
        self.shared.finished.fetch_add(1, Ordering::Relaxed);
        outcome
    }
}
