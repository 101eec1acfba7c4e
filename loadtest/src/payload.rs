//! What each published update carries, so that a subscriber can tell which update it received and
//! how long it took.
//!
//! The data is `<run> <seq> <sent_ns> ` followed by `x` padding up to the requested size: the run
//! id (8 hex digits, so that updates of another run are recognised as foreign), the sequence
//! number, and the send time in nanoseconds since the Unix epoch. Publisher and subscribers run in
//! the same process, so their clocks agree.

use std::time::{SystemTime, UNIX_EPOCH};

/// What an update's data says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The run that published it.
    pub run: u32,
    /// Its sequence number within the run.
    pub seq: u64,
    /// When it was sent, in nanoseconds since the Unix epoch.
    pub sent_ns: u64,
}

/// Now, in nanoseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}

/// The data of an update: the stamp, padded with `x` to `size` bytes (never truncated).
pub fn encode(stamp: Stamp, size: usize) -> String {
    let mut data = format!("{:08x} {} {} ", stamp.run, stamp.seq, stamp.sent_ns);
    if data.len() < size {
        data.extend(std::iter::repeat_n('x', size - data.len()));
    }
    data
}

/// Reads the stamp back from an update's data; `None` if the data is not one of ours.
pub fn decode(data: &str) -> Option<Stamp> {
    let mut fields = data.splitn(4, ' ');
    let run = u32::from_str_radix(fields.next()?, 16).ok()?;
    let seq = fields.next()?.parse().ok()?;
    let sent_ns = fields.next()?.parse().ok()?;
    // The padding follows the third space; its absence means the data was cut.
    fields.next()?;
    Some(Stamp { run, seq, sent_ns })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_padding() {
        let stamp = Stamp { run: 0xbeef, seq: 42, sent_ns: 1_732_000_000_123_456_789 };
        let data = encode(stamp, 100);
        assert_eq!(data.len(), 100);
        assert!(data.starts_with("0000beef 42 1732000000123456789 xxx"));
        assert_eq!(decode(&data), Some(stamp));
    }

    #[test]
    fn small_sizes_keep_the_whole_stamp() {
        let stamp = Stamp { run: 1, seq: 0, sent_ns: now_ns() };
        let data = encode(stamp, 0);
        assert!(data.len() > 8);
        assert_eq!(decode(&data), Some(stamp));
    }

    #[test]
    fn foreign_data_is_not_decoded() {
        assert_eq!(decode(""), None);
        assert_eq!(decode("{\"title\":\"Dune\"}"), None);
        assert_eq!(decode("0000beef 42"), None);
        assert_eq!(decode("0000beef 42 17"), None);
        assert_eq!(decode("zzzzzzzz 42 17 x"), None);
    }

    #[test]
    fn the_clock_is_after_2020() {
        assert!(now_ns() > 1_577_836_800_000_000_000);
    }
}
