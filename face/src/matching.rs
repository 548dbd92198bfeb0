//! Comparing embeddings: distances, 1:1 verification, 1:K open-set identification.

use crate::embed::Embedding;

/// Euclidean distance between two embeddings.
pub fn distance(a: &Embedding, b: &Embedding) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt()
}
