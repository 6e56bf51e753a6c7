//! Progress reporting of pulls, on stderr: `indicatif` bars, plain lines, or nothing.

use std::io::IsTerminal;
use std::sync::Arc;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How a pull reports progress (always on stderr).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Progress {
    /// One `indicatif` bar per blob (for a terminal).
    Bars,
    /// Plain lines: one when a blob starts, one when it is done (for logs and pipes).
    Lines,
    /// Nothing.
    #[default]
    Quiet,
}

impl Progress {
    /// `Bars` when stderr is a terminal, else `Lines`.
    pub fn auto() -> Progress {
        if std::io::stderr().is_terminal() {
            Progress::Bars
        } else {
            Progress::Lines
        }
    }
}

/// The reporter of one operation.
#[derive(Clone)]
pub(crate) struct Reporter {
    mode: Progress,
    multi: Option<Arc<MultiProgress>>,
}

/// `1.1 MB`, `532 kB`, `12 B` (decimal units, as docker prints them).
pub(crate) fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.0} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

/// `sha256:0123456789ab…` → `0123456789ab`
pub(crate) fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

impl Reporter {
    pub fn new(mode: Progress) -> Reporter {
        let multi = (mode == Progress::Bars)
            .then(|| Arc::new(MultiProgress::with_draw_target(ProgressDrawTarget::stderr())));
        Reporter { mode, multi }
    }

    /// A line of its own ("Pulling …", "Digest: …").
    pub fn line(&self, msg: &str) {
        match (&self.mode, &self.multi) {
            (Progress::Bars, Some(m)) => {
                let _ = m.println(msg);
            }
            (Progress::Lines, _) => eprintln!("{msg}"),
            _ => {}
        }
    }

    /// A tracker for one blob of `size` bytes.
    pub fn blob(&self, digest: &str, size: u64) -> BlobProgress {
        let bar = self.multi.as_ref().map(|m| {
            let b = m.add(ProgressBar::new(size));
            let style = ProgressStyle::with_template(
                "{prefix}: {msg:<18} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            b.set_style(style);
            b.set_prefix(short(digest).to_string());
            b.set_message("Waiting");
            b
        });
        BlobProgress {
            reporter: self.clone(),
            short: short(digest).to_string(),
            bar,
        }
    }
}

/// Progress of one blob.
pub(crate) struct BlobProgress {
    reporter: Reporter,
    short: String,
    bar: Option<ProgressBar>,
}

impl BlobProgress {
    /// A state change: shown as the bar's message, or as a line.
    pub fn status(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.set_message(msg.to_string()),
            None => {
                if self.reporter.mode == Progress::Lines {
                    eprintln!("{}: {msg}", self.short);
                }
            }
        }
    }

    /// Bytes so far.
    pub fn position(&self, pos: u64) {
        if let Some(b) = &self.bar {
            b.set_position(pos);
        }
    }

    /// The final state; the bar stays on screen with it.
    pub fn finish(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.finish_with_message(msg.to_string()),
            None => self.status(msg),
        }
    }
}

impl Drop for BlobProgress {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            if !b.is_finished() {
                b.abandon();
            }
        }
    }
}
