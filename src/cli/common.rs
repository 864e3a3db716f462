//! Pieces shared by the subcommands: the shipped default model, progress output.

use mamba_rt::{Error, Result};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The shipped model used when `--model` is not given.
pub const DEFAULT_MODEL_FILE: &str = "models/default-q8_0.gguf";

/// Where the shipped default model is: `$MAMBA_DEFAULT_MODEL`, else the repository's
/// `models/` folder (as built), else `models/` beside the executable.
pub fn default_model_path() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("MAMBA_DEFAULT_MODEL") {
        return Ok(PathBuf::from(p));
    }
    let mut tried = Vec::new();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_MODEL_FILE);
    if repo.exists() {
        return Ok(repo);
    }
    tried.push(repo);
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|p| p.to_path_buf()))
    {
        let p = dir.join(DEFAULT_MODEL_FILE);
        if p.exists() {
            return Ok(p);
        }
        tried.push(p);
    }
    Err(Error::Invalid(format!(
        "no --model given and the shipped model was not found (looked at {}); pass --model FILE",
        tried
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// A throttled one-line progress bar on stderr.
pub struct Progress {
    label: &'static str,
    total: usize,
    start: Instant,
    last: Instant,
}

impl Progress {
    /// A bar for `total` units.
    pub fn new(label: &'static str, total: usize) -> Self {
        let now = Instant::now();
        Progress {
            label,
            total,
            start: now,
            last: now - Duration::from_secs(1),
        }
    }
    /// Report `done` units (redraws at most 5 times a second).
    pub fn update(&mut self, done: usize) {
        let now = Instant::now();
        if now - self.last < Duration::from_millis(200) && done < self.total {
            return;
        }
        self.last = now;
        let frac = if self.total == 0 {
            1.0
        } else {
            done as f64 / self.total as f64
        };
        let width = 30;
        let filled = (frac * width as f64) as usize;
        let rate = done as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
        let eta = if rate > 0.0 {
            (self.total - done.min(self.total)) as f64 / rate
        } else {
            0.0
        };
        eprint!(
            "\r{} [{}{}] {:>5.1}% {}/{} {:.0}/s eta {:.0}s ",
            self.label,
            "=".repeat(filled),
            " ".repeat(width - filled),
            frac * 100.0,
            done,
            self.total,
            rate,
            eta
        );
        let _ = std::io::stderr().flush();
    }
    /// End the bar's line.
    pub fn finish(&mut self) {
        self.update(self.total);
        eprintln!();
    }
}
