//! What the benches that drive the device program share: synthetic
//! templates to enrol, and the figures of the device's `--stats` line.

use facegate_face::Embedding;

/// Deterministic descriptor-like vectors (norm ≈ 1.4 like real ones).
pub(crate) fn synthetic(person: usize, k: usize) -> Embedding {
    let mut state = (person as u64 * 1_000_003 + k as u64 * 7919 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    std::array::from_fn(|_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.43
    })
}

/// A figure in the device's `--stats` summary line, e.g. `stats_figure(line,
/// "longest gallery wait", "ms")`: the number after `key`, up to `unit`.
pub fn stats_figure(summary: &str, key: &str, unit: &str) -> Option<f64> {
    let rest = &summary[summary.find(key)? + key.len()..];
    rest.trim_start().split(unit).next()?.trim().parse().ok()
}
