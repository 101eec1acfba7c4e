//! The processes a run follows: hubs, NATS servers, a load balancer, and this tool itself.
//!
//! They come from `--hub-pid` (the process named `hub`), `--follow NAME=PID`, `--follow
//! NAME=@FILE` (a pid file) and `--follow-dir DIR` (every `*.pid` file there), and form one list,
//! [`resolve`]d once at start. A [`Watch`] reads every one of them from `/proc` (through
//! [`crate::procstat`]) at the start and at the end of a measured interval and tells, for each,
//! the CPU it used and its memory, or that it ended meanwhile: a process that dies during a run is
//! a finding to report, not a reason to stop.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use anyhow::Context as _;

use crate::procstat::{self, Pid, Sample, Usage};

/// Name of the process given by `--hub-pid`, whose memory the `idle` scenario reports per
/// connection.
pub const HUB: &str = "hub";

/// Name of this tool in the list; reserved.
pub const LOADTEST: &str = "loadtest";

/// Where the pid of a followed process comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidSource {
    /// Given as a number.
    Pid(u32),
    /// Read from a pid file at start.
    File(PathBuf),
}

/// One `--follow` value: `NAME=PID` or `NAME=@FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowArg {
    /// Name in the report.
    pub name: String,
    /// Where its pid comes from.
    pub source: PidSource,
}

impl FromStr for FollowArg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, value) = text
            .split_once('=')
            .ok_or_else(|| format!("{text:?} is not NAME=PID or NAME=@FILE"))?;
        check_name(name)?;
        let source = match value.strip_prefix('@') {
            Some("") => return Err(format!("{text:?}: no file name after @")),
            Some(path) => PidSource::File(PathBuf::from(path)),
            None => PidSource::Pid(parse_pid(value).ok_or_else(|| {
                format!("{text:?}: {value:?} is not a pid (write NAME=@FILE for a pid file)")
            })?),
        };
        Ok(FollowArg { name: name.to_owned(), source })
    }
}

/// Names are shown in tables and used as JSON values: letters, digits, `-`, `_` and `.`.
fn check_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || !name.chars().all(allowed) {
        return Err(format!("{name:?} is not a process name (letters, digits, - _ .)"));
    }
    if name == LOADTEST {
        return Err(format!("the name {LOADTEST} is this tool's own, always followed"));
    }
    Ok(())
}

/// A positive pid.
fn parse_pid(text: &str) -> Option<u32> {
    text.trim().parse().ok().filter(|&pid| pid > 0)
}

/// Reads the pid in a pid file: its first line. (HAProxy writes one pid a line when it has several
/// processes; the first is the master.)
pub fn read_pid_file(path: &Path) -> anyhow::Result<u32> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the pid file {}", path.display()))?;
    let first = text.lines().next().unwrap_or("");
    parse_pid(first)
        .with_context(|| format!("the pid file {} holds no pid: {first:?}", path.display()))
}

/// A process followed during the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Followed {
    /// Its name in the report.
    pub name: String,
    /// Its pid.
    pub pid: u32,
}

impl Followed {
    /// Reads it; `None` when it no longer runs (gone, or a zombie waiting to be reaped).
    pub fn sample(&self) -> Option<Sample> {
        procstat::sample(Pid::Other(self.pid)).ok().filter(|sample| !sample.ended)
    }
}

/// The list of followed processes, in order: `--hub-pid` (as `hub`), the `--follow` values in
/// command-line order, the pid files of each `--follow-dir` sorted by name (a pid already in the
/// list is skipped, so `--follow hub=@DIR/hub-1.pid --follow-dir DIR` follows that node once, as
/// `hub`), and last this tool as `loadtest`.
///
/// Refuses a name given twice, an unreadable pid file, a directory without pid files, and a
/// process that is not running: those are mistakes on the command line, better told at once.
pub fn resolve(
    hub_pid: Option<u32>,
    follow: &[FollowArg],
    dirs: &[PathBuf],
) -> anyhow::Result<Vec<Followed>> {
    let mut list: Vec<Followed> = Vec::new();
    if let Some(pid) = hub_pid {
        add(&mut list, HUB, pid, "--hub-pid")?;
    }
    for arg in follow {
        match &arg.source {
            PidSource::Pid(pid) => add(&mut list, &arg.name, *pid, "--follow")?,
            PidSource::File(path) => {
                let pid = read_pid_file(path)?;
                add(&mut list, &arg.name, pid, &format!("from {}", path.display()))?;
            }
        }
    }
    for dir in dirs {
        for (name, path) in pid_files(dir)? {
            let pid = read_pid_file(&path)?;
            if list.iter().any(|process| process.pid == pid) {
                continue;
            }
            add(&mut list, &name, pid, &format!("from {}", path.display()))?;
        }
    }
    list.push(Followed { name: LOADTEST.to_owned(), pid: std::process::id() });
    Ok(list)
}

/// Appends process `name` to `list`, unless the name is taken or the process is not running
/// (`origin` says where its pid came from, for the error).
fn add(list: &mut Vec<Followed>, name: &str, pid: u32, origin: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        list.iter().all(|process| process.name != name),
        "the process name {name} is given twice (--hub-pid is the process named {HUB})"
    );
    let process = Followed { name: name.to_owned(), pid };
    anyhow::ensure!(
        process.sample().is_some(),
        "process {name} (pid {pid}, {origin}) is not running, or /proc/{pid} is unreadable"
    );
    list.push(process);
    Ok(())
}

/// The `*.pid` files of `dir`, with the names they give (the file name without `.pid`), sorted.
fn pid_files(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading the --follow-dir {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.with_context(|| format!("reading {}", dir.display()))?.path();
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else { continue };
        let Some(name) = name.strip_suffix(".pid") else { continue };
        if !path.is_file() {
            continue;
        }
        check_name(name).map_err(|reason| anyhow::anyhow!("{}: {reason}", path.display()))?;
        files.push((name.to_owned(), path));
    }
    anyhow::ensure!(!files.is_empty(), "no *.pid file in the --follow-dir {}", dir.display());
    files.sort();
    Ok(files)
}

/// What one followed process used over a measured interval.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessUsage {
    /// Its name.
    pub name: String,
    /// Its pid.
    pub pid: u32,
    /// Its usage; `None` when it ended during the interval (or its pid was reused).
    pub usage: Option<Usage>,
}

/// Readings of every followed process at the start of a measured interval.
#[derive(Debug, Clone)]
pub struct Watch {
    at: Instant,
    before: Vec<Option<Sample>>,
}

impl Watch {
    /// Takes the "before" readings of `processes`.
    pub fn start(processes: &[Followed]) -> Self {
        Watch { at: Instant::now(), before: processes.iter().map(Followed::sample).collect() }
    }

    /// Takes the "after" readings of the same `processes`, in the same order, and returns what
    /// each used since [`Watch::start`].
    pub fn finish(&self, processes: &[Followed]) -> Vec<ProcessUsage> {
        let seconds = self.at.elapsed().as_secs_f64();
        processes
            .iter()
            .zip(&self.before)
            .map(|(process, before)| ProcessUsage {
                name: process.name.clone(),
                pid: process.pid,
                usage: before
                    .zip(process.sample())
                    .and_then(|(before, after)| Usage::between(before, after, seconds)),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command};

    /// A `sleep` child, killed and reaped when dropped.
    struct Sleeper(Child);

    impl Sleeper {
        fn start() -> Self {
            Sleeper(Command::new("sleep").arg("1000").spawn().expect("sleep runs"))
        }

        fn pid(&self) -> u32 {
            self.0.id()
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// A fresh empty directory of this test run.
    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("loadtest-follow-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        dir
    }

    #[test]
    fn follow_values_parse() {
        let arg: FollowArg = "hub-1=123".parse().expect("valid");
        assert_eq!(arg, FollowArg { name: "hub-1".into(), source: PidSource::Pid(123) });
        let arg: FollowArg = "nats_1=@/tmp/c/nats-1.pid".parse().expect("valid");
        assert_eq!(arg.name, "nats_1");
        assert_eq!(arg.source, PidSource::File(PathBuf::from("/tmp/c/nats-1.pid")));
        for bad in
            ["123", "=123", "hub=", "hub=0", "hub=-4", "hub=x", "hub=@", "a b=1", "loadtest=1"]
        {
            assert!(bad.parse::<FollowArg>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn pid_files_are_read_by_their_first_line() {
        let dir = temp_dir("pidfile");
        let path = dir.join("haproxy.pid");
        std::fs::write(&path, "4242\n4243\n").expect("writable");
        assert_eq!(read_pid_file(&path).expect("a pid"), 4242);
        std::fs::write(&path, "not a pid\n").expect("writable");
        assert!(read_pid_file(&path).is_err());
        assert!(read_pid_file(&dir.join("missing.pid")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn one_list_from_every_option() {
        let (hub, nats, lb) = (Sleeper::start(), Sleeper::start(), Sleeper::start());
        let dir = temp_dir("list");
        std::fs::write(dir.join("nats-1.pid"), format!("{}\n", nats.pid())).expect("writable");
        std::fs::write(dir.join("haproxy.pid"), format!("{}\n", lb.pid())).expect("writable");
        // Also in the directory, but already followed as `hub`: not twice.
        std::fs::write(dir.join("hub-1.pid"), format!("{}\n", hub.pid())).expect("writable");
        std::fs::write(dir.join("notes.txt"), "ignored").expect("writable");
        let follow =
            [FollowArg { name: "lb".into(), source: PidSource::File(dir.join("haproxy.pid")) }];

        let list =
            resolve(Some(hub.pid()), &follow, std::slice::from_ref(&dir)).expect("all running");
        let names: Vec<(&str, u32)> =
            list.iter().map(|process| (process.name.as_str(), process.pid)).collect();
        assert_eq!(
            names,
            [
                ("hub", hub.pid()),
                ("lb", lb.pid()),
                ("nats-1", nats.pid()),
                (LOADTEST, std::process::id())
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn mistakes_are_refused_at_start() {
        let sleeper = Sleeper::start();
        let twice = [FollowArg { name: HUB.into(), source: PidSource::Pid(sleeper.pid()) }];
        assert!(resolve(Some(sleeper.pid()), &twice, &[]).is_err());
        let empty = temp_dir("empty");
        assert!(resolve(None, &[], std::slice::from_ref(&empty)).is_err());
        assert!(resolve(None, &[], &[empty.join("missing")]).is_err());
        let _ = std::fs::remove_dir_all(&empty);

        let mut ended = Sleeper::start();
        let pid = ended.pid();
        ended.0.kill().expect("the child can be killed");
        ended.0.wait().expect("the child is reaped");
        assert!(resolve(Some(pid), &[], &[]).is_err());
    }

    #[test]
    fn a_process_that_ends_is_reported_without_figures() {
        let (staying, mut leaving) = (Sleeper::start(), Sleeper::start());
        let processes = resolve(
            None,
            &[
                FollowArg { name: "staying".into(), source: PidSource::Pid(staying.pid()) },
                FollowArg { name: "leaving".into(), source: PidSource::Pid(leaving.pid()) },
            ],
            &[],
        )
        .expect("both running");
        let watch = Watch::start(&processes);
        leaving.0.kill().expect("the child can be killed");
        leaving.0.wait().expect("the child is reaped");

        let usage = watch.finish(&processes);
        let names: Vec<&str> = usage.iter().map(|process| process.name.as_str()).collect();
        assert_eq!(names, ["staying", "leaving", LOADTEST]);
        let staying = usage[0].usage.expect("still running");
        assert!(staying.rss_after_kib > 0);
        assert_eq!(usage[1].usage, None);
        assert_eq!(usage[1].pid, processes[1].pid);
        assert!(usage[2].usage.is_some());
    }
}
