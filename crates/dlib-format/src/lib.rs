#![warn(missing_docs)]
//! Reader for dlib's `.dat` serialization, limited to what face models need.
//!
//! dlib writes its models with its own portable encoding (variable-length
//! integers, mantissa/exponent floats, raw f32 tensors). This crate decodes
//! the face model files into plain Rust structs; it knows nothing about
//! ONNX or inference. The byte layout is described in `docs/dlib-models.md`
//! (section 1) and in each module.

pub mod hog_detector;
pub mod mmod;
mod reader;
pub mod resnet;
pub mod shape_predictor;

pub use reader::Reader;

/// Errors while decoding a dlib file.
#[derive(Debug, thiserror::Error)]
pub enum DlibError {
    /// The file ended in the middle of a value.
    #[error("unexpected end of file at byte {0}")]
    Eof(usize),
    /// An integer's control byte announces more bytes than the target type holds.
    #[error("bad integer encoding at byte {0}")]
    BadInteger(usize),
    /// A record did not have the expected name, version or shape.
    #[error("unexpected content at byte {at}: {what}")]
    Unexpected {
        /// Byte offset where the record starts.
        at: usize,
        /// What was expected and what was found.
        what: String,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, DlibError>;
