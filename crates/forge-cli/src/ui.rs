//! Terminal output: results on stdout (text or one JSON document per command), notes and
//! summaries on stderr, progress bars on stderr only when it is a terminal and `CI` is unset.
//!
//! Output goes through `writeln!` on a locked handle, so a closed pipe (`forge gate ... | head`)
//! ends the command quietly instead of panicking.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::error::{CliError, Result};

/// Output settings shared by every command.
#[derive(Debug, Clone, Copy)]
pub struct Ui {
    /// Print machine-readable JSON on stdout instead of text.
    pub json: bool,
    /// Show progress bars (stderr is a terminal, `CI` unset, not `--quiet`).
    pub progress: bool,
}

impl Ui {
    /// Settings from the global flags and the environment.
    pub fn new(json: bool, quiet: bool) -> Self {
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
        Self {
            json,
            progress: !quiet && !ci && std::io::stderr().is_terminal(),
        }
    }

    /// Writes `text` to stdout (a closed pipe is not an error).
    pub fn print(&mut self, text: &str) -> Result<()> {
        let mut out = std::io::stdout().lock();
        match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::Io(e)),
            _ => Ok(()),
        }
    }

    /// Writes `value` as one line of JSON to stdout.
    pub fn json_line<T: Serialize>(&mut self, value: &T) -> Result<()> {
        let mut s = serde_json::to_string(value)?;
        s.push('\n');
        self.print(&s)
    }

    /// Writes `text` to stderr (errors writing to stderr are ignored).
    pub fn eprint(&self, text: &str) {
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }

    /// A progress bar of `len` steps on stderr, hidden unless [`Ui::progress`].
    pub fn bar(&self, len: u64, what: &str) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(
            Some(len),
            if self.progress {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        if let Ok(style) =
            ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {elapsed} {wide_msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(what.to_string());
        bar
    }

    /// A spinner on stderr for work of unknown length, hidden unless [`Ui::progress`].
    pub fn spinner(&self, what: &str) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let s = ProgressBar::new_spinner();
        s.set_message(what.to_string());
        s.enable_steady_tick(std::time::Duration::from_millis(120));
        s
    }
}
