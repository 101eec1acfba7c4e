//! The result of a scenario: named figures, errors and the usage of every followed process, shown
//! as a table for people and as JSON for machines. The latency histograms are kept too, for the
//! plot.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use crate::context::Ctx;
use crate::follow::ProcessUsage;
use crate::stats::Summary;

/// One measured value.
#[derive(Debug, Clone, PartialEq)]
pub enum Figure {
    /// A count.
    Count(u64),
    /// A count out of an expected total.
    OutOf {
        /// What was counted.
        got: u64,
        /// What was expected.
        of: u64,
    },
    /// Events per second.
    Rate(f64),
    /// A duration in seconds (`None`: it did not happen, e.g. never completed).
    Seconds(Option<f64>),
    /// A quantity of memory in KiB.
    Kib(f64),
    /// A latency distribution.
    Latency(Summary),
    /// A dimensionless ratio, such as memory at the end over memory at a reference point.
    Ratio(f64),
    /// Free text.
    Text(String),
}

impl Figure {
    fn to_json(&self) -> Value {
        match self {
            Figure::Count(count) => json!(count),
            Figure::OutOf { got, of } => json!({ "count": got, "of": of }),
            Figure::Rate(rate) => json!(round(*rate, 3)),
            Figure::Seconds(seconds) => json!(seconds.map(|seconds| round(seconds, 6))),
            Figure::Kib(kib) => json!(round(*kib, 3)),
            Figure::Latency(summary) => json!({
                "count": summary.count,
                "min_ms": round(summary.min_ms, 3),
                "mean_ms": round(summary.mean_ms, 3),
                "p50_ms": round(summary.p50_ms, 3),
                "p90_ms": round(summary.p90_ms, 3),
                "p99_ms": round(summary.p99_ms, 3),
                "p999_ms": round(summary.p999_ms, 3),
                "max_ms": round(summary.max_ms, 3),
            }),
            Figure::Ratio(ratio) => json!(round(*ratio, 4)),
            Figure::Text(text) => json!(text),
        }
    }

    fn to_text(&self) -> String {
        match self {
            Figure::Count(count) => count.to_string(),
            Figure::OutOf { got, of } => format!("{got} / {of}"),
            Figure::Rate(rate) => format!("{rate:.1} /s"),
            Figure::Seconds(Some(seconds)) => format!("{seconds:.3} s"),
            Figure::Seconds(None) => "-".into(),
            Figure::Kib(kib) if kib.abs() >= 1024.0 => format!("{:.1} MiB", kib / 1024.0),
            Figure::Kib(kib) => format!("{kib:.1} KiB"),
            Figure::Latency(summary) if summary.count == 0 => "-".into(),
            Figure::Latency(summary) => format!(
                "p50 {}  p90 {}  p99 {}  max {}  (n={})",
                ms(summary.p50_ms),
                ms(summary.p90_ms),
                ms(summary.p99_ms),
                ms(summary.max_ms),
                summary.count
            ),
            Figure::Ratio(ratio) => format!("{ratio:.3}"),
            Figure::Text(text) => text.clone(),
        }
    }
}

/// Milliseconds with a precision that suits their size.
fn ms(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.3} ms")
    } else if value < 1000.0 {
        format!("{value:.1} ms")
    } else {
        format!("{:.2} s", value / 1000.0)
    }
}

/// Rounds to `digits` decimals, for readable JSON.
fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// Which hub URLs a scenario talks to, so that its report names those and only those.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uses {
    /// Only the publish URL (`publish`).
    Publish,
    /// Only the subscribe URLs (`idle`).
    Subscribe,
    /// Both.
    Both,
}

/// Values sampled over a run, for the time-series plot (see [`crate::plot`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// What is measured, e.g. `hub RSS`.
    pub name: String,
    /// Its unit, e.g. `MiB`: series of one unit share a panel of the plot.
    pub unit: String,
    /// (seconds since the scenario started, value) pairs, in time order.
    pub points: Vec<(f64, f64)>,
}

/// A scenario's results.
#[derive(Debug)]
pub struct Report {
    /// Scenario name.
    pub scenario: &'static str,
    /// `--label`.
    pub label: Option<String>,
    /// URL publications went to, if the scenario publishes.
    pub publish_hub: Option<String>,
    /// URLs subscribers connected to, round-robin; empty if the scenario does not subscribe.
    pub subscribe_hubs: Vec<String>,
    /// The scenario's parameters.
    pub params: Value,
    /// Unix time the run started, in seconds.
    pub started_unix: u64,
    /// Seconds the scenario took.
    pub wall_seconds: f64,
    /// Whether it was cut short by `--time-limit` or Ctrl-C.
    pub timed_out: bool,
    /// Figures, in display order: JSON key, title, value.
    pub figures: Vec<(String, String, Figure)>,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// CPU and memory of every followed process over the scenario, this tool last.
    pub processes: Vec<ProcessUsage>,
    /// Distributions to plot: name and histogram of microseconds.
    pub distributions: Vec<(String, Histogram<u64>)>,
    /// Values sampled over time (`soak`); when there are some, the plot shows them instead of
    /// the latency curves.
    pub series: Vec<Series>,
}

impl Report {
    /// An empty report for `scenario`, which talks to the hub URLs `uses` says, with its
    /// parameters.
    pub fn new(ctx: &Ctx, scenario: &'static str, uses: Uses, params: Value) -> Self {
        let started_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs())
            .saturating_sub(ctx.started.elapsed().as_secs());
        Report {
            scenario,
            label: ctx.label.clone(),
            publish_hub: (uses != Uses::Subscribe).then(|| ctx.publish.target.url.to_string()),
            subscribe_hubs: match uses {
                Uses::Publish => Vec::new(),
                Uses::Subscribe | Uses::Both => {
                    ctx.subscribe.iter().map(|endpoint| endpoint.target.url.to_string()).collect()
                }
            },
            params,
            started_unix,
            wall_seconds: 0.0,
            timed_out: false,
            figures: Vec::new(),
            errors: BTreeMap::new(),
            processes: Vec::new(),
            distributions: Vec::new(),
            series: Vec::new(),
        }
    }

    /// Adds a figure under JSON key `key` and table title `title`.
    pub fn add(&mut self, key: &str, title: &str, figure: Figure) {
        self.figures.push((key.to_owned(), title.to_owned(), figure));
    }

    /// Adds a latency figure and keeps its histogram for the plot.
    pub fn add_latency(&mut self, key: &str, title: &str, histogram: Histogram<u64>) {
        self.add(key, title, Figure::Latency(Summary::of(&histogram)));
        if !histogram.is_empty() {
            self.distributions.push((title.to_owned(), histogram));
        }
    }

    /// The value of figure `key`, if present.
    pub fn figure(&self, key: &str) -> Option<&Figure> {
        self.figures.iter().find(|(name, _, _)| name == key).map(|(_, _, figure)| figure)
    }

    /// Fills in what every scenario ends with: duration, stop state, errors and process usage.
    pub fn finish(&mut self, ctx: &Ctx, wall_seconds: f64, processes: Vec<ProcessUsage>) {
        self.wall_seconds = wall_seconds;
        self.timed_out = ctx.stopped();
        self.errors = ctx.errors.snapshot();
        self.processes = processes;
    }

    /// The machine-readable form.
    pub fn to_json(&self) -> Value {
        let mut results = Map::new();
        for (key, _, figure) in &self.figures {
            results.insert(key.clone(), figure.to_json());
        }
        let mut value = json!({
            "tool": concat!("loadtest ", env!("CARGO_PKG_VERSION")),
            "scenario": self.scenario,
            "label": self.label,
            "publish_hub": self.publish_hub,
            "subscribe_hubs": self.subscribe_hubs,
            "started_unix": self.started_unix,
            "wall_seconds": round(self.wall_seconds, 3),
            "timed_out": self.timed_out,
            "params": self.params,
            "results": results,
            "errors": self.errors,
            "processes": self.processes.iter().map(process_json).collect::<Vec<_>>(),
        });
        // Only the scenarios that sample over time have series: the others' JSON is unchanged.
        if !self.series.is_empty() {
            let series: Vec<Value> = self
                .series
                .iter()
                .map(|series| {
                    let points: Vec<Value> = series
                        .points
                        .iter()
                        .map(|(seconds, value)| json!([round(*seconds, 3), round(*value, 3)]))
                        .collect();
                    json!({ "name": series.name, "unit": series.unit, "points": points })
                })
                .collect();
            value["series"] = Value::Array(series);
        }
        value
    }

    /// The human-readable form: a two-column table.
    pub fn render_table(&self) -> String {
        let mut rows: Vec<(String, String)> = vec![("scenario".into(), self.scenario.into())];
        rows.extend(self.hub_rows());
        if let Some(label) = &self.label {
            rows.push(("label".into(), label.clone()));
        }
        let params = match &self.params {
            Value::Object(params) => params
                .iter()
                .map(|(key, value)| format!("{key}={}", value.to_string().trim_matches('"')))
                .collect::<Vec<_>>()
                .join(" "),
            other => other.to_string(),
        };
        rows.push(("parameters".into(), params));
        let mut duration = format!("{:.3} s", self.wall_seconds);
        if self.timed_out {
            duration.push_str("  (STOPPED by --time-limit or Ctrl-C: figures are partial)");
        }
        rows.push(("duration".into(), duration));
        for (_, title, figure) in &self.figures {
            rows.push((title.clone(), figure.to_text()));
        }
        if self.errors.is_empty() {
            rows.push(("errors".into(), "none".into()));
        }
        for (kind, count) in &self.errors {
            rows.push((format!("error: {kind}"), count.to_string()));
        }
        for process in &self.processes {
            let title = format!("{} (pid {})", process.name, process.pid);
            let Some(usage) = process.usage else {
                rows.push((title, "ENDED during the run: no figures".into()));
                continue;
            };
            rows.push((
                title,
                format!(
                    "CPU {:.2} s ({:.1} %)  RSS {} -> {}  {} threads",
                    usage.cpu_seconds,
                    usage.cpu_percent,
                    Figure::Kib(usage.rss_before_kib as f64).to_text(),
                    Figure::Kib(usage.rss_after_kib as f64).to_text(),
                    usage.threads
                ),
            ));
        }
        let width = rows.iter().map(|(title, _)| title.chars().count()).max().unwrap_or(0);
        let mut table = String::new();
        let rule = "-".repeat(width + 40);
        let _ = writeln!(table, "{rule}");
        for (title, value) in rows {
            let _ = writeln!(table, "{title:<width$}  {value}");
        }
        let _ = writeln!(table, "{rule}");
        table
    }

    /// The hub URLs used, for the table: one `hub` row when publishers and subscribers used the
    /// same single URL, else which side used what.
    fn hub_rows(&self) -> Vec<(String, String)> {
        if let (Some(publish), [subscribe]) = (&self.publish_hub, self.subscribe_hubs.as_slice()) {
            if publish == subscribe {
                return vec![("hub".into(), publish.clone())];
            }
        }
        let mut rows = Vec::new();
        if let Some(publish) = &self.publish_hub {
            rows.push(("publish hub".into(), publish.clone()));
        }
        match self.subscribe_hubs.as_slice() {
            [] => {}
            [one] => rows.push(("subscribe hub".into(), one.clone())),
            several => rows
                .push(("subscribe hubs".into(), format!("{} (round-robin)", several.join(", ")))),
        }
        rows
    }

    /// The hub URLs used, in a few words, for the title of the plot.
    pub fn hubs_text(&self) -> String {
        self.hub_rows().into_iter().map(|(_, urls)| urls).collect::<Vec<_>>().join(" -> ")
    }
}

/// JSON form of a followed process: the same keys whether it ran to the end or not, null figures
/// when it ended during the run.
fn process_json(process: &ProcessUsage) -> Value {
    let usage = process.usage;
    json!({
        "name": process.name,
        "pid": process.pid,
        "ended": usage.is_none(),
        "cpu_seconds": usage.map(|usage| round(usage.cpu_seconds, 3)),
        "cpu_percent": usage.map(|usage| round(usage.cpu_percent, 1)),
        "rss_before_kib": usage.map(|usage| usage.rss_before_kib),
        "rss_after_kib": usage.map(|usage| usage.rss_after_kib),
        "threads": usage.map(|usage| usage.threads),
    })
}

/// Reports for other modules' tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// A report with parameters and no figures.
    pub(crate) fn empty_report() -> Report {
        Report {
            scenario: "fanout",
            label: Some("quicksilver".into()),
            publish_hub: Some("http://127.0.0.1:8090/.well-known/mercure".into()),
            subscribe_hubs: vec!["http://127.0.0.1:8090/.well-known/mercure".into()],
            params: json!({ "subscribers": 2, "updates": 3 }),
            started_unix: 1,
            wall_seconds: 1.5,
            timed_out: false,
            figures: Vec::new(),
            errors: BTreeMap::from([("subscribe: HTTP 401".to_owned(), 2)]),
            processes: Vec::new(),
            distributions: Vec::new(),
            series: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procstat::Usage;
    use crate::stats;
    use std::time::Duration;

    fn report() -> Report {
        let mut latency = stats::histogram();
        for ms in 1..=100 {
            stats::record(&mut latency, Duration::from_millis(ms));
        }
        let mut report = tests_support::empty_report();
        report.add("deliveries", "deliveries", Figure::OutOf { got: 5, of: 6 });
        report.add("deliveries_per_second", "deliveries/s", Figure::Rate(1234.5678));
        report.add("completed_after_seconds", "completed after", Figure::Seconds(None));
        report.add_latency("delivery_latency", "delivery latency", latency);
        report
    }

    #[test]
    fn json_has_every_figure() {
        let value = report().to_json();
        assert_eq!(value["scenario"], "fanout");
        assert_eq!(value["label"], "quicksilver");
        assert_eq!(value["params"]["subscribers"], 2);
        assert_eq!(value["results"]["deliveries"], json!({ "count": 5, "of": 6 }));
        assert_eq!(value["results"]["deliveries_per_second"], 1234.568);
        assert_eq!(value["results"]["completed_after_seconds"], Value::Null);
        assert_eq!(value["results"]["delivery_latency"]["count"], 100);
        let p50 = value["results"]["delivery_latency"]["p50_ms"].as_f64().expect("a number");
        assert!((p50 - 50.0).abs() < 0.05, "{p50}");
        assert_eq!(value["errors"]["subscribe: HTTP 401"], 2);
        assert_eq!(value["processes"], json!([]));
    }

    /// Three followed processes, one of which ended during the run, and this tool.
    fn processes() -> Vec<ProcessUsage> {
        let usage = |cpu_seconds: f64, rss_kib: u64| Usage {
            cpu_seconds,
            cpu_percent: 100.0 * cpu_seconds / 2.0,
            rss_before_kib: rss_kib,
            rss_after_kib: rss_kib * 2,
            threads: 3,
        };
        let process = |name: &str, pid: u32, usage: Option<Usage>| ProcessUsage {
            name: name.into(),
            pid,
            usage,
        };
        vec![
            process("hub-1", 101, Some(usage(1.5, 10_240))),
            process("nats-1", 201, None),
            process("haproxy", 301, Some(usage(0.25, 512))),
            process("loadtest", 401, Some(usage(0.5, 2048))),
        ]
    }

    #[test]
    fn json_lists_every_process() {
        let mut report = report();
        report.processes = processes();
        let value = report.to_json();
        let listed = value["processes"].as_array().expect("a list");
        let names: Vec<&str> =
            listed.iter().filter_map(|process| process["name"].as_str()).collect();
        assert_eq!(names, ["hub-1", "nats-1", "haproxy", "loadtest"]);
        assert_eq!(
            listed[0],
            json!({
                "name": "hub-1",
                "pid": 101,
                "ended": false,
                "cpu_seconds": 1.5,
                "cpu_percent": 75.0,
                "rss_before_kib": 10240,
                "rss_after_kib": 20480,
                "threads": 3,
            })
        );
        assert_eq!(listed[1]["ended"], true);
        assert_eq!(listed[1]["pid"], 201);
        assert_eq!(listed[1]["cpu_seconds"], Value::Null);
        assert_eq!(listed[1]["rss_after_kib"], Value::Null);
    }

    #[test]
    fn the_hub_urls_used_are_named() {
        let one = "http://127.0.0.1:8090/.well-known/mercure";
        let report = report();
        assert_eq!(report.to_json()["publish_hub"], one);
        assert_eq!(report.to_json()["subscribe_hubs"], json!([one]));
        let table = report.render_table();
        assert!(table.lines().any(|line| line.starts_with("hub ") && line.ends_with(one)));
        assert!(!table.contains("publish hub"), "{table}");

        let (node1, node2, node3) =
            ("http://127.0.0.1:8081/m", "http://127.0.0.1:8082/m", "http://127.0.0.1:8083/m");
        let mut report = report;
        report.publish_hub = Some(node1.into());
        report.subscribe_hubs = vec![node2.into(), node3.into()];
        let value = report.to_json();
        assert_eq!(value["publish_hub"], node1);
        assert_eq!(value["subscribe_hubs"], json!([node2, node3]));
        let table = report.render_table();
        assert!(table
            .lines()
            .any(|line| line.starts_with("publish hub ") && line.ends_with(node1)));
        let subscribe = format!("{node2}, {node3} (round-robin)");
        assert!(table
            .lines()
            .any(|line| line.starts_with("subscribe hubs ") && line.ends_with(&subscribe)));
        assert_eq!(report.hubs_text(), format!("{node1} -> {subscribe}"));

        // A scenario that only subscribes names no publish URL.
        report.publish_hub = None;
        report.subscribe_hubs = vec![node2.into()];
        assert_eq!(report.to_json()["publish_hub"], Value::Null);
        let table = report.render_table();
        assert!(table
            .lines()
            .any(|line| line.starts_with("subscribe hub ") && line.ends_with(node2)));
        assert!(!table.contains("publish hub"), "{table}");
    }

    #[test]
    fn table_shows_every_process() {
        let mut report = report();
        report.processes = processes();
        let table = report.render_table();
        let row = |start: &str| {
            table.lines().find(|line| line.starts_with(start)).unwrap_or_else(|| panic!("{table}"))
        };
        assert!(row("hub-1 (pid 101) ").contains("CPU 1.50 s (75.0 %)  RSS 10.0 MiB -> 20.0 MiB"));
        assert!(row("nats-1 (pid 201) ").contains("ENDED"));
        assert!(row("haproxy (pid 301) ").contains("RSS 512.0 KiB -> 1.0 MiB  3 threads"));
        assert!(row("loadtest (pid 401) ").contains("CPU 0.50 s (25.0 %)"));
    }

    #[test]
    fn table_lists_figures_and_errors() {
        let report = report();
        let table = report.render_table();
        assert!(table
            .lines()
            .any(|line| line.starts_with("deliveries ") && line.ends_with(" 5 / 6")));
        assert!(table.contains("1234.6 /s"), "{table}");
        assert!(table.contains("p50 50.0 ms"), "{table}");
        assert!(table.contains("error: subscribe: HTTP 401"), "{table}");
        assert_eq!(report.distributions.len(), 1);
        assert_eq!(report.figure("deliveries"), Some(&Figure::OutOf { got: 5, of: 6 }));
    }
}
