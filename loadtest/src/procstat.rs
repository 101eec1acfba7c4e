//! CPU time and resident memory of a process, read from `/proc` (Linux).
//!
//! Used for the followed processes (see [`crate::follow`]) and for the tool itself, before and after
//! a run, so that a report says how much CPU each side burnt: on a small machine the load generator
//! competes with the hub. A process that ended is told apart from a live one, including a zombie
//! (ended, not yet reaped) and a new process that reused the pid (another start time).

use std::io;
use std::path::PathBuf;

use serde::Serialize;

/// Clock ticks per second in `/proc/PID/stat`: `USER_HZ`, which Linux fixes at 100 for user space on
/// every mainstream architecture (reading it with `sysconf` would need `unsafe`).
const TICKS_PER_SECOND: f64 = 100.0;

/// Which process to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pid {
    /// This process.
    Current,
    /// Another one.
    Other(u32),
}

impl Pid {
    fn dir(self) -> PathBuf {
        match self {
            Pid::Current => PathBuf::from("/proc/self"),
            Pid::Other(pid) => PathBuf::from(format!("/proc/{pid}")),
        }
    }
}

/// One reading.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sample {
    /// User + system CPU time so far, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size, in KiB.
    pub rss_kib: u64,
    /// Number of threads.
    pub threads: u64,
    /// When the process started, in clock ticks after boot: tells a process from a later one that
    /// was given the same pid.
    pub start_ticks: u64,
    /// Whether the process has ended and waits for its parent to reap it (state `Z` or `X`).
    pub ended: bool,
}

/// Reads the CPU time, RSS, thread count and state of `pid`.
pub fn sample(pid: Pid) -> io::Result<Sample> {
    let dir = pid.dir();
    let stat = std::fs::read_to_string(dir.join("stat"))?;
    let status = std::fs::read_to_string(dir.join("status"))?;
    parse(&stat, &status)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc format"))
}

/// Number of open file descriptors of `pid` (entries of `/proc/PID/fd`): sockets, files, pipes,
/// epoll and event fds. Reading another user's process needs the rights to it.
pub fn open_fds(pid: Pid) -> io::Result<u64> {
    let mut count = 0;
    for entry in std::fs::read_dir(pid.dir().join("fd"))? {
        entry?;
        count += 1;
    }
    Ok(count)
}

/// Parses `/proc/PID/stat` (state, utime, stime, num_threads, starttime) and `/proc/PID/status`
/// (VmRSS).
fn parse(stat: &str, status: &str) -> Option<Sample> {
    // The command name (field 2) is in parentheses and may contain spaces: count after its end.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 3 (state), 14 (utime), 15 (stime), 20 (num_threads) and 22 (starttime), counted from
    // field 3 at index 0.
    let ended = matches!(*fields.first()?, "Z" | "X");
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let threads: u64 = fields.get(17)?.parse().ok()?;
    let start_ticks: u64 = fields.get(19)?.parse().ok()?;
    let rss_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        // A zombie has no VmRSS line.
        .unwrap_or(0);
    Some(Sample {
        cpu_seconds: (utime + stime) as f64 / TICKS_PER_SECOND,
        rss_kib,
        threads,
        start_ticks,
        ended,
    })
}

/// Two readings of one process, around a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Usage {
    /// CPU seconds used between the two readings.
    pub cpu_seconds: f64,
    /// CPU seconds per wall-clock second between them, as a percentage: 100 is one core busy the
    /// whole time, 200 two cores.
    pub cpu_percent: f64,
    /// RSS at the first reading, KiB.
    pub rss_before_kib: u64,
    /// RSS at the second reading, KiB.
    pub rss_after_kib: u64,
    /// Threads at the second reading.
    pub threads: u64,
}

impl Usage {
    /// The usage between `before` and `after`, `wall_seconds` apart; `None` when they are not
    /// readings of one live process (it ended, or its pid now names another process).
    pub fn between(before: Sample, after: Sample, wall_seconds: f64) -> Option<Self> {
        if before.ended || after.ended || before.start_ticks != after.start_ticks {
            return None;
        }
        let cpu_seconds = (after.cpu_seconds - before.cpu_seconds).max(0.0);
        Some(Usage {
            cpu_seconds,
            cpu_percent: if wall_seconds > 0.0 { 100.0 * cpu_seconds / wall_seconds } else { 0.0 },
            rss_before_kib: before.rss_kib,
            rss_after_kib: after.rss_kib,
            threads: after.threads,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_the_name() {
        let stat = "4242 (tokio (worker) 1) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 \
                    7 0 123456 1000000 2500 18446744073709551615";
        let status = "Name:\tquicksilver\nVmPeak:\t  99999 kB\nVmRSS:\t   20480 kB\nThreads:\t7\n";
        let sample = parse(stat, status).expect("valid");
        assert_eq!(sample.cpu_seconds, 3.25);
        assert_eq!(sample.rss_kib, 20480);
        assert_eq!(sample.threads, 7);
        assert_eq!(sample.start_ticks, 123456);
        assert!(!sample.ended);
        assert!(parse("garbage", status).is_none());
    }

    #[test]
    fn a_zombie_is_ended_and_has_no_rss() {
        let stat = "4242 (quicksilver) Z 1 4242 4242 0 -1 4227084 1234 0 0 0 250 75 0 0 20 0 \
                    1 0 123456 0 0 18446744073709551615";
        let sample = parse(stat, "Name:\tquicksilver\nState:\tZ (zombie)\n").expect("valid");
        assert!(sample.ended);
        assert_eq!(sample.rss_kib, 0);
    }

    #[test]
    fn reads_this_process() {
        let sample = sample(Pid::Current).expect("/proc/self is readable");
        assert!(sample.rss_kib > 0);
        assert!(sample.threads >= 1);
    }

    #[test]
    fn counts_the_open_files_of_this_process() {
        // Other tests of this process open and close files meanwhile: no exact count.
        let file = std::fs::File::open("/proc/self/stat").expect("readable");
        assert!(open_fds(Pid::Current).expect("/proc/self/fd is readable") >= 1);
        drop(file);
        // Pid 0 has no /proc entry.
        assert!(open_fds(Pid::Other(0)).is_err());
    }

    #[test]
    fn usage_between_two_samples() {
        let before =
            Sample { cpu_seconds: 1.0, rss_kib: 1000, threads: 2, start_ticks: 9, ended: false };
        let after = Sample { cpu_seconds: 3.0, rss_kib: 3000, threads: 4, ..before };
        let usage = Usage::between(before, after, 4.0).expect("one live process");
        assert_eq!(usage.cpu_seconds, 2.0);
        assert_eq!(usage.cpu_percent, 50.0);
        assert_eq!(usage.rss_after_kib, 3000);
    }

    #[test]
    fn no_usage_across_an_end_or_a_reused_pid() {
        let before =
            Sample { cpu_seconds: 1.0, rss_kib: 1000, threads: 2, start_ticks: 9, ended: false };
        let zombie = Sample { ended: true, rss_kib: 0, ..before };
        let another = Sample { start_ticks: 10, ..before };
        assert_eq!(Usage::between(before, zombie, 1.0), None);
        assert_eq!(Usage::between(before, another, 1.0), None);
    }
}
