//! `host-tool bench …`: accuracy and speed of the face pipeline.

pub mod blur;
pub mod detect;
pub mod fleet;
pub mod lfw;
pub mod link;
pub mod liveness;
pub mod speed;
pub mod trained;

/// A figure in the device's `--stats` summary line, e.g. `stats_figure(line,
/// "longest gallery wait", "ms")`: the number after `key`, up to `unit`.
pub fn stats_figure(summary: &str, key: &str, unit: &str) -> Option<f64> {
    let rest = &summary[summary.find(key)? + key.len()..];
    rest.trim_start().split(unit).next()?.trim().parse().ok()
}
