//! The engine's one error type. It knows nothing of Python: the bindings map each variant onto
//! the matching Python class (`irt_fast.errors`, FileNotFoundError, OSError, MemoryError).

use std::path::PathBuf;

/// Everything that can go wrong when loading weights or running inference.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The weights file does not exist.
    #[error("weights file not found: {}", .0.display())]
    NotFound(PathBuf),
    /// The file exists but cannot be read (permissions, a directory, an I/O error).
    #[error("cannot read weights file {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is corrupt, truncated, of another format version or has a tensor of the wrong
    /// name, dtype or shape.
    #[error("{origin}: {msg}")]
    Format { origin: String, msg: String },
    /// A caller's argument is malformed (wrong shape, NaN, empty, out of range).
    #[error("{0}")]
    Input(String),
    /// A result or working buffer does not fit in memory (reported, never an abort).
    #[error("{0}")]
    Memory(String),
}

impl Error {
    pub(crate) fn format(origin: &str, msg: impl Into<String>) -> Self {
        Error::Format {
            origin: origin.to_string(),
            msg: msg.into(),
        }
    }
}

/// The engine's result type.
pub type Result<T> = std::result::Result<T, Error>;
