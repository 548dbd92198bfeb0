//! Comparing embeddings: distances, 1:1 verification, 1:K open-set
//! identification. They live in `facegate-core` (the gallery and the protocol
//! use them without the network); re-exported here for the pipeline's users.

pub use facegate_core::matching::*;
