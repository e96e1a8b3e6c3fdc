//! SKELETON (issue 3): `flowrun up` — executes a [`Plan`].

use crate::plan::Plan;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `flowrun | api.0 started pid 1234` lines on stderr.
    #[default]
    Human,
    /// One JSON object per lifecycle event on stderr (docs/events.md).
    Json,
}

#[derive(Clone, Debug)]
pub struct UpOptions {
    /// The topology file as given on the command line (for `reload`).
    pub file: PathBuf,
    /// The file's directory: `cwd` settings are relative to it.
    pub base_dir: PathBuf,
    pub scale: crate::plan::Scale,
    pub log_format: LogFormat,
    /// Prefix relayed output lines with a timestamp.
    pub timestamps: bool,
    /// Colour the `group.index | ` prefixes (tty and no `NO_COLOR`).
    pub color: bool,
}

/// Run the plan until it finishes or is drained; returns the exit status.
/// Must be called before any tokio runtime or thread exists (it forks).
pub fn up(_plan: Plan, _opts: UpOptions) -> i32 {
    eprintln!("flowrun: `up` is not implemented yet");
    1
}
