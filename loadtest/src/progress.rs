//! Progress bars on stderr, drawn only when stderr is a terminal.
//!
//! Scenarios keep their counts in atomics and call [`Progress::set`] from their polling loop, so
//! the hot paths never touch the bar.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// One bar for one phase of a scenario.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar titled `title` going to `total`, hidden unless `visible`.
    pub fn new(visible: bool, title: &str, total: u64) -> Self {
        let bar = ProgressBar::with_draw_target(
            Some(total),
            if visible { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() },
        );
        let style = ProgressStyle::with_template(
            "{prefix:>12} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(title.to_owned());
        Progress { bar }
    }

    /// Moves the bar to `position`, with `message` beside it.
    pub fn set(&self, position: u64, message: impl Into<String>) {
        self.bar.set_position(position);
        let message = message.into();
        if !message.is_empty() {
            self.bar.set_message(message);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if !self.bar.is_finished() {
            self.bar.finish_and_clear();
        }
    }
}
