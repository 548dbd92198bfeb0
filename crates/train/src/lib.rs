#![warn(missing_docs)]
//! Metric learning for facegate (FaceNet's triplet loss on frozen features).
//!
//! The embedding network stays as shipped; what is learnt sits on top of its
//! output, trained on features cached once per photo ([`features`]):
//! - a **metric head** ([`head::MetricHead`]): a linear map W (128 → 128,
//!   initialised to the identity), distances taken as ‖W(a − b)‖, so galleries
//!   keep their raw templates and the head is applied at load.
//!
//! Training ([`trainer`]) draws batches of P people × K photos, picks
//! semi-hard triplets online ([`mining`]) and minimises
//! Σ max(‖f(A) − f(P)‖² − ‖f(A) − f(N)‖² + α, 0) with AdamW (candle), stopping
//! early on a validation split by person ([`figures`]).

pub mod features;
pub mod figures;
pub mod head;
pub mod mining;
#[cfg(feature = "trainer")]
pub mod trainer;

pub use features::{FeatureCache, PhotoFeatures};
pub use head::{MetricHead, MetricMeta};
#[cfg(feature = "trainer")]
pub use trainer::{train_head, train_last_layer, TrainConfig, TrainReport};

/// Errors of training and of trained-metric files.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A file could not be read or written: the file and the cause.
    #[error("{path}: {1}", path = .0.display())]
    Io(std::path::PathBuf, #[source] std::io::Error),
    /// The file is not what it claims to be (bad magic, checksum, truncation).
    #[error("{path}: {why}")]
    Corrupt {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The metric was trained on another embedding model's features.
    #[error("{path}: trained on model {found}, but the embedding model is {expected}; train again for this model")]
    WrongBase {
        /// The file.
        path: std::path::PathBuf,
        /// The model in use.
        expected: String,
        /// The model the file was trained on.
        found: String,
    },
    /// A feature cache made with other settings or another model.
    #[error("{path}: feature cache made for {found}, not {expected}; delete it or choose another cache file")]
    CacheMismatch {
        /// The cache file.
        path: std::path::PathBuf,
        /// What this run needs.
        expected: String,
        /// What the cache holds.
        found: String,
    },
    /// Too little data to train or validate.
    #[error("not enough data: {0}")]
    NotEnoughData(String),
    /// The autodiff library failed.
    #[cfg(feature = "trainer")]
    #[error("training: {0}")]
    Candle(#[from] candle_core::Error),
}
