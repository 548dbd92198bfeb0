//! Face embeddings and the distance between them.

/// Length of an embedding.
pub const EMBEDDING_DIM: usize = 128;

/// A face embedding (not normalised; dlib's distances are Euclidean on these).
pub type Embedding = [f32; EMBEDDING_DIM];

/// Euclidean distance between two embeddings.
pub fn distance(a: &Embedding, b: &Embedding) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt()
}

/// Symmetric int8 quantisation of one vector: writes the values and returns the
/// step (max|v|/127), so that `v[i] ≈ out[i] as f32 * step`. The error per value
/// is at most step/2, about 1e-3 for descriptors, against distances of ~0.5.
pub fn quantize_i8(v: &[f32], out: &mut [i8]) -> f32 {
    let step = v.iter().fold(0f32, |m, x| m.max(x.abs())).max(f32::MIN_POSITIVE) / 127.0;
    for (o, x) in out.iter_mut().zip(v) {
        *o = (x / step).round().clamp(-127.0, 127.0) as i8;
    }
    step
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantisation_error_is_at_most_half_a_step() {
        let v: Vec<f32> = (0..EMBEDDING_DIM).map(|i| ((i as f32) * 0.77).sin() * 0.2).collect();
        let mut q = [0i8; EMBEDDING_DIM];
        let step = quantize_i8(&v, &mut q);
        assert!((step - 0.2 / 127.0).abs() < 1e-4);
        for (x, q) in v.iter().zip(q) {
            assert!((x - q as f32 * step).abs() <= step / 2.0 + 1e-7);
        }
    }
}
