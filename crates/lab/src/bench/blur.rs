//! `host-tool bench blur`: how sharp LFW's enrolment-style chips are, and how
//! sharp the same photos are once blurred: the data behind the blur check.

use anyhow::{Context, Result};
use clap::Args;
use facegate_face::decode::{decode_image, DEFAULT_MAX_PIXELS};
use facegate_face::{Network, Pipeline, PipelineConfig, Precision};
use facegate_lfw::{parse_pairs, Dataset};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Arguments of `bench blur`.
#[derive(Args)]
pub struct BlurArgs {
    /// LFW images: lfw.tgz or an unpacked directory.
    #[arg(long)]
    lfw: PathBuf,
    /// The official pairs.txt (its images are used).
    #[arg(long)]
    pairs: PathBuf,
    /// Images to use.
    #[arg(long, default_value_t = 400)]
    images: usize,
    /// Gaussian blur (σ, pixels of the photo) for the blurred set.
    #[arg(long, default_value_t = 2.0)]
    sigma: f32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn percentile(sorted: &[f32], p: f64) -> f32 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs the study on `network`'s chips (their sizes and crops differ, so
/// each network has its own threshold).
pub fn run(models: &Path, network: Network, args: BlurArgs) -> Result<()> {
    let data = Dataset::open(&args.lfw).with_context(|| format!("opening {}", args.lfw.display()))?;
    let pairs = parse_pairs(&std::fs::read_to_string(&args.pairs)?)?;
    let images: BTreeSet<String> = pairs.iter().flat_map(|p| [p.a.clone(), p.b.clone()]).collect();
    let pipeline = Pipeline::load(models, Precision::Int8, PipelineConfig { network, ..PipelineConfig::default() })?;
    let (mut sharp, mut soft) = (Vec::new(), Vec::new());
    for rel in images.iter().take(args.images) {
        let img = decode_image(&data.read(rel)?, DEFAULT_MAX_PIXELS)?;
        let blurred = image::imageops::blur(&img, args.sigma);
        for (img, out) in [(&img, &mut sharp), (&blurred, &mut soft)] {
            let dets = pipeline.detect(img);
            if let Some(d) = dets.iter().max_by_key(|d| d.rect.width()) {
                out.push(facegate_face::enrol::sharpness(&pipeline.align(img, *d).chip));
            }
        }
    }
    sharp.sort_by(f32::total_cmp);
    soft.sort_by(f32::total_cmp);
    let threshold = network.min_sharpness();
    let below = |v: &[f32]| v.iter().filter(|x| **x < threshold).count() as f64 / v.len().max(1) as f64;
    let summary = serde_json::json!({
        "network": network.as_str(),
        "images": args.images.min(images.len()),
        "sigma": args.sigma,
        "threshold": threshold,
        "sharp": {"faces": sharp.len(), "p01": percentile(&sharp, 0.01), "p05": percentile(&sharp, 0.05), "median": percentile(&sharp, 0.5), "refused": below(&sharp)},
        "blurred": {"faces": soft.len(), "median": percentile(&soft, 0.5), "p95": percentile(&soft, 0.95), "p99": percentile(&soft, 0.99), "refused": below(&soft)},
    });
    if args.json {
        println!("{summary}");
    } else {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(())
}
