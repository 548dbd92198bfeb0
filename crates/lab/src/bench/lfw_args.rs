//! The command line of `bench lfw`, read by its runner and by the
//! trained-metric runner (`--train-metric`).

use clap::Args;
use facegate_face::{ArcfacePoints, DetectorKind, Precision};
use std::path::PathBuf;
use std::str::FromStr;

/// Arguments of `bench lfw`.
#[derive(Args)]
pub struct LfwArgs {
    /// LFW images: lfw.tgz or an unpacked directory.
    #[arg(long)]
    pub lfw: PathBuf,
    /// The official pairs.txt.
    #[arg(long)]
    pub pairs: PathBuf,
    /// Embedding precision.
    #[arg(long, default_value = "int8", value_parser = Precision::from_str)]
    pub precision: Precision,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only the first N folds (a quick regression slice); thresholds then come from those folds.
    #[arg(long)]
    pub folds: Option<usize>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No mirror averaging of embeddings.
    #[arg(long)]
    pub no_mirror: bool,
    /// Extra jittered chips per face, averaged in (0–4; default: the photo pipeline's).
    #[arg(long)]
    pub jitter: Option<usize>,
    /// Face detector (default: the photo pipeline's, cnn).
    #[arg(long, value_parser = parse_detector)]
    pub detector: Option<DetectorKind>,
    /// Smallest face width the pipeline keeps, in pixels (default: the photo
    /// pipeline's, 40); YuNet shrinks its input until such a face is 24 px.
    #[arg(long)]
    pub min_face: Option<u32>,
    /// SFace's alignment points: the detector's own (YuNet's five) or dlib's
    /// five landmarks on their template.
    #[arg(long, default_value = "detector", value_parser = ArcfacePoints::from_str)]
    pub arcface_points: ArcfacePoints,
    /// Also embed with the other precision and count the pair decisions that differ.
    #[arg(long)]
    pub compare_precision: bool,
    /// Also report the accuracy on the selected pairs at this fixed threshold.
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Write every pair's distance to this CSV file (for ROC plots and threshold studies).
    #[arg(long)]
    pub distances_csv: Option<PathBuf>,
    /// Compare, pair by pair, with an earlier run's `--distances-csv` file
    /// (another detector, precision or setting on the same pairs.txt): the
    /// pairs only one of the two decides right, and the exact McNemar p-value
    /// of that split (whether the accuracy difference is more than chance).
    #[arg(long, value_name = "CSV")]
    pub compare_with: Option<PathBuf>,
    /// Train a metric per fold on the other folds' people (triplet loss) and
    /// report it beside the pretrained model on the held-out fold.
    /// (Features come from the photo pipeline's cache: the detector, jitter,
    /// mirror and precision options do not apply.)
    #[arg(long, value_enum, conflicts_with_all = ["precision", "no_mirror", "jitter", "detector", "min_face", "compare_precision", "threshold", "distances_csv", "compare_with"])]
    pub train_metric: Option<crate::train::Kind>,
    #[command(flatten)]
    pub training: crate::train::TrainingArgs,
}

fn parse_detector(s: &str) -> Result<DetectorKind, String> {
    s.parse()
}
