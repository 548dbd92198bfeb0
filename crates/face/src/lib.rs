#![warn(missing_docs)]
//! facegate's face pipeline: photo or frame → face embeddings → decisions.
//!
//! The data flows one way: [`decode`] → detect → [`landmarks`] → [`chip`]
//! (alignment) → [`embed`] → [`matching`]. Each step is a plain function or a
//! small type so the device and the host tool can use any part on its own.

pub mod approach;
pub mod arcface;
mod bytes;
pub mod chip;
pub mod cores;
pub mod decode;
pub mod detect;
pub mod embed;
pub mod enrol;
pub mod geometry;
pub mod landmarks;
pub mod liveness;
pub mod matching;
pub mod model_files;
pub mod pipeline;
pub mod prelu;
pub mod resize;

pub use embed::{Embedder, LastLayer, Network, Precision};
pub use facegate_core::{Embedding, ModelId, EMBEDDING_DIM};
pub use geometry::{Point, Rect};
pub use landmarks::{LandmarkModel, Landmarks};
pub use pipeline::{ArcfacePoints, DetectorKind, Face, Pipeline, PipelineConfig};

/// Everything that can go wrong in the face pipeline.
#[derive(Debug, thiserror::Error)]
pub enum FaceError {
    /// The bytes are not an image in a supported format, or are damaged.
    #[error("cannot decode image: {0}")]
    Decode(String),
    /// The image is larger than the configured pixel budget.
    #[error("image is {width}×{height} pixels, over the limit of {limit} pixels")]
    TooLarge {
        /// Declared width.
        width: u64,
        /// Declared height.
        height: u64,
        /// The pixel budget.
        limit: u64,
    },
    /// The image has no pixels.
    #[error("image is empty (zero width or height)")]
    Empty,
    /// A model file is missing, damaged or of the wrong kind.
    #[error("model: {0}")]
    Model(String),
    /// The inference engine failed.
    #[error("inference failed: {0}")]
    Inference(String),
    /// A model file is not listed in its directory's `MANIFEST`.
    #[error("{path}: not listed in the models' MANIFEST (a stray or renamed file)")]
    Unlisted {
        /// The file.
        path: std::path::PathBuf,
    },
    /// A model file differs from what `MANIFEST` records: damaged, truncated,
    /// or from another release.
    #[error("{path}: is not the file MANIFEST lists ({found_bytes} bytes, sha256 {found}; expected {expected_bytes} bytes, sha256 {expected}): damaged, or from another release — reinstall the models")]
    Mismatch {
        /// The file.
        path: std::path::PathBuf,
        /// The sha256 MANIFEST records.
        expected: String,
        /// The sha256 of the file.
        found: String,
        /// The size MANIFEST records.
        expected_bytes: u64,
        /// The file's size.
        found_bytes: u64,
    },
    /// No models directory was found.
    #[error("no models found; searched:\n  {}\n(set --models or FACEGATE_MODELS to the directory holding MANIFEST)", searched.join("\n  "))]
    ModelsNotFound {
        /// Each place searched, with why it was on the list.
        searched: Vec<String>,
    },
    /// Reading a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}
