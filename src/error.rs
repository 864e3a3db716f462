//! Errors of the std side: file I/O, JSON, and everything mamba-core reports.

use std::path::PathBuf;

/// An error with the path or item it concerns.
#[derive(Debug)]
pub enum Error {
    /// An I/O failure on a path.
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A problem reported by mamba-core (model layout, shapes, state, sampling).
    Core(mamba_core::Error),
    /// A malformed input file, with a message naming the problem.
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// Bad usage or an invalid argument.
    Invalid(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Core(e) => write!(f, "{e}"),
            Error::Format { path, msg } => write!(f, "{}: {msg}", path.display()),
            Error::Invalid(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Core(e) => Some(e),
            _ => None,
        }
    }
}

impl From<mamba_core::Error> for Error {
    fn from(e: mamba_core::Error) -> Self {
        Error::Core(e)
    }
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Attach a path to an io::Error.
pub fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}

/// A format error for `path`.
pub fn format_err(path: impl Into<PathBuf>, msg: impl Into<String>) -> Error {
    Error::Format {
        path: path.into(),
        msg: msg.into(),
    }
}
