#![warn(missing_docs)]
//! facegate's face pipeline: photo or frame → face embeddings → decisions.
//!
//! The data flows one way: [`decode`] → detect → [`landmarks`] → [`chip`]
//! (alignment) → [`embed`] → [`matching`]. Each step is a plain function or a
//! small type so the device and the host tool can use any part on its own.

mod bytes;
pub mod chip;
pub mod decode;
pub mod detect;
pub mod embed;
pub mod enrol;
pub mod geometry;
pub mod landmarks;
pub mod liveness;
pub mod matching;
pub mod pipeline;
pub mod resize;

pub use embed::{Embedder, Precision};
pub use facegate_core::{Embedding, ModelId, EMBEDDING_DIM};
pub use geometry::{Point, Rect};
pub use landmarks::{LandmarkModel, Landmarks};
pub use pipeline::{DetectorKind, Face, Pipeline, PipelineConfig};

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
