#![warn(missing_docs)]
//! facegate's persistent state, shared by the device and the host tool:
//! the [`gallery`] of enrolled people and the [`access_log`].
//!
//! Both survive power cuts: the gallery is replaced atomically (temporary file,
//! fsync, rename, fsync of the directory) and keeps the previous good copy;
//! the access log is a ring of checksummed fixed-size records.

pub mod access_log;
pub mod atomic;
pub mod disk;
pub mod gallery;
pub mod log_writer;
mod positional;

pub use access_log::{AccessLog, Event, EventKind};
pub use gallery::{Enrolled, Gallery, Person};
pub use log_writer::LogWriter;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing a file failed (disk full, permissions, …).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a facegate file of this kind, or of an unknown version.
    #[error("{path}: {why}")]
    Format {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The file is damaged (checksum mismatch, truncated).
    #[error("{path} is damaged ({why}); the previous good copy is {backup}")]
    Corrupt {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        why: String,
        /// Where the last good copy is.
        backup: String,
    },
    /// Templates made with another embedding model cannot be compared.
    #[error("templates were made with model {found}, this gallery uses {expected}")]
    ModelMismatch {
        /// The gallery's model id.
        expected: facegate_core::ModelId,
        /// The offered model id.
        found: facegate_core::ModelId,
    },
    /// Switching a gallery to another network's templates needs them for everyone.
    #[error("{missing} of the people enrolled have no templates of model {model} (the first: {first:?})")]
    TemplatesMissing {
        /// The model switched to.
        model: facegate_core::ModelId,
        /// How many people lack its templates.
        missing: usize,
        /// One of them.
        first: String,
    },
    /// Nobody of that name is enrolled.
    #[error("no one named {0:?} is enrolled")]
    NotFound(String),
    /// The name is taken.
    #[error("{0:?} is already enrolled")]
    AlreadyEnrolled(String),
    /// The gallery holds its maximum number of people.
    #[error("the gallery is full ({} people)", gallery::MAX_PEOPLE)]
    Full,
    /// A name is empty, too long or has control characters.
    #[error("{0}")]
    InvalidName(String),
    /// A request the gallery cannot satisfy (bad templates, …).
    #[error("{0}")]
    Invalid(String),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, StoreError>;

impl StoreError {
    /// The disk (or quota) is full: nothing was changed, free space and retry.
    pub fn is_storage_full(&self) -> bool {
        matches!(self, StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull || source.raw_os_error() == Some(28))
    }
}

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}
