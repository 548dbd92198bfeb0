//! What the benches that drive the device program share: the program
//! itself, the camera's frames, synthetic templates to enrol, the figures of
//! the device's `--stats` line, and how the results are printed.

use anyhow::{bail, Context, Result};
use facegate_face::Embedding;
use std::path::{Path, PathBuf};

/// The `device` program: `given`, else the one next to this program.
pub(crate) fn device_program(given: Option<PathBuf>) -> Result<PathBuf> {
    let device = match given {
        Some(d) => d,
        None => std::env::current_exe()?.parent().context("program directory")?.join("device"),
    };
    if !device.exists() {
        bail!("{} not found (hint: cargo build --release -p facegate-device, or --device PATH)", device.display());
    }
    Ok(device)
}

/// Fills `dir` (made if missing) with the one frame a door's replay loops
/// over: `face` (a photo), or an empty grey frame.
pub(crate) fn approach_frames(dir: &Path, face: Option<&Path>) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    match face {
        Some(photo) => {
            let ext = photo.extension().and_then(|e| e.to_str()).unwrap_or("jpg");
            std::fs::copy(photo, dir.join(format!("face.{ext}"))).with_context(|| format!("reading {}", photo.display()))?;
        }
        None => image::RgbImage::from_pixel(320, 240, image::Rgb([90, 90, 90])).save(dir.join("empty.png"))?,
    }
    Ok(())
}

/// Prints a bench's figures: one JSON line with `json`, else indented.
pub(crate) fn print_figures(figures: &serde_json::Value, json: bool) -> Result<()> {
    match json {
        true => println!("{figures}"),
        false => println!("{}", serde_json::to_string_pretty(figures)?),
    }
    Ok(())
}

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
