//! `host-tool train`: learns a metric head on labelled photos with the
//! triplet loss and writes it with its figures, plus a loss/validation curve.

use crate::features;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use facegate_face::Network;
use facegate_train::trainer::EpochRecord;
use facegate_train::{train_head, train_last_layer, PhotoFeatures, TrainConfig, TrainReport};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use std::path::{Path, PathBuf};

/// What is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// A linear map on the embedding (galleries keep their templates).
    Head,
    /// The network's last layer (256 pooled features → 128), retrained on
    /// pooled features; new embeddings with their own model id, so galleries
    /// are enrolled again with the file.
    LastLayer,
}

impl Kind {
    /// The name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Head => "head",
            Kind::LastLayer => "last-layer",
        }
    }
}

/// Training settings shared by `train` and `bench lfw --train-metric`.
#[derive(Args, Clone)]
pub struct TrainingArgs {
    /// Most passes over the training photos (early stopping may end sooner).
    #[arg(long, default_value_t = TrainConfig::default().epochs)]
    pub epochs: usize,
    /// Triplet margin α on squared distances (dlib's scale).
    #[arg(long, default_value_t = TrainConfig::default().margin)]
    pub margin: f32,
    /// People per batch (P).
    #[arg(long, default_value_t = TrainConfig::default().people_per_batch)]
    pub people_per_batch: usize,
    /// Photos per person per batch (K).
    #[arg(long, default_value_t = TrainConfig::default().photos_per_person)]
    pub photos_per_person: usize,
    /// AdamW learning rate.
    #[arg(long, default_value_t = TrainConfig::default().learning_rate)]
    pub learning_rate: f64,
    /// Seed of the validation split and the batches.
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    pub seed: u64,
    /// Feature cache file (default: in the user's cache directory, named after the photos and the model).
    #[arg(long)]
    pub cache: Option<PathBuf>,
}

impl TrainingArgs {
    /// The trainer's settings.
    pub fn config(&self) -> TrainConfig {
        TrainConfig {
            epochs: self.epochs,
            margin: self.margin,
            people_per_batch: self.people_per_batch,
            photos_per_person: self.photos_per_person,
            learning_rate: self.learning_rate,
            seed: self.seed,
            ..TrainConfig::default()
        }
    }
}

/// Arguments of `train`.
#[derive(Args)]
pub struct TrainArgs {
    /// Photos, one folder per person (LFW's layout), or lfw.tgz.
    #[arg(long)]
    photos: PathBuf,
    /// The trained file.
    #[arg(long, default_value = "metric.fgmetric")]
    out: PathBuf,
    /// What to train.
    #[arg(long, value_enum, default_value_t = Kind::Head)]
    kind: Kind,
    /// The loss/validation curve (default: the output file with .png).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Print one JSON object instead of progress and a summary.
    #[arg(long)]
    json: bool,
    /// Worker threads for embedding photos (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    training: TrainingArgs,
}

/// A progress bar over epochs showing loss and validation TAR.
pub fn epoch_bar(epochs: usize, quiet: bool) -> ProgressBar {
    let bar = ProgressBar::new(epochs as u64).with_style(
        ProgressStyle::with_template("{spinner} training [{bar:30}] epoch {pos}/{len} {msg}")
            .expect("template")
            .progress_chars("=> "),
    );
    bar.set_draw_target(if quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() });
    bar
}

/// The message an epoch leaves on the bar.
pub fn epoch_message(r: &EpochRecord) -> String {
    format!(
        "loss {:.4}, active {:.1} %, validation TAR@1e-3 {:.2} %, EER {:.2} %",
        r.loss,
        100.0 * r.active_share,
        r.validation.tar_at_far_1e3,
        r.validation.eer
    )
}

/// One training run's split, epochs and validation figures.
pub fn run_json(report: &TrainReport) -> serde_json::Value {
    json!({
        "counts": report.counts,
        "best_epoch": report.best_epoch,
        "epochs_run": report.history.len(),
        "validation_pretrained": report.pretrained_validation,
        "validation_trained": report.validation,
        "seconds": report.seconds,
    })
}

/// What is kept of the features once trained on: (photos, JSON, seconds, embedded now, cache).
fn strip<const D: usize>(u: Usable<'_, D>) -> (usize, serde_json::Value, f64, usize, PathBuf) {
    (u.photos.len(), u.summary, u.seconds, u.embedded_now, u.cache)
}

/// The photos to train on (a face was detected) and the rest, reported.
struct Usable<'a, const D: usize> {
    photos: Vec<&'a PhotoFeatures<D>>,
    summary: serde_json::Value,
    seconds: f64,
    embedded_now: usize,
    cache: PathBuf,
}

/// A photo without a detected face would train on whatever sits in the
/// fallback box: left out (the LFW benchmark keeps them, as its protocol does).
fn usable<const D: usize>(features: &features::Features<D>, quiet: bool) -> Usable<'_, D> {
    let photos: Vec<&PhotoFeatures<D>> = features.photos.values().filter(|p| p.detected).collect();
    let no_face: Vec<&str> = features.photos.values().filter(|p| !p.detected).map(|p| p.name.as_str()).collect();
    if !quiet {
        for (name, why) in &features.unreadable {
            eprintln!("warning: {name} left out: {why}");
        }
        if !no_face.is_empty() {
            eprintln!("warning: {} photos without a face left out (e.g. {})", no_face.len(), no_face[0]);
        }
    }
    let summary = json!({"cache": features.cache, "photos": photos.len(), "embedded_now": features.embedded_now,
        "seconds": features.seconds, "no_face": no_face, "unreadable": features.unreadable});
    Usable { photos, summary, seconds: features.seconds, embedded_now: features.embedded_now, cache: features.cache.clone() }
}

/// A last layer is dlib's network's (SFace's has no pooled layer to cut
/// before): any other network is refused with the flag that picks dlib.
pub(crate) fn refuse_last_layer_of(network: Network, kind: Kind) -> Result<()> {
    if kind == Kind::LastLayer && network != Network::Dlib {
        bail!("a retrained last layer is for dlib's network, not {network}: add --network dlib (a metric head, --kind head, works on either)");
    }
    Ok(())
}

/// Runs `host-tool train` on `network`'s embeddings (a last layer: dlib's only).
pub fn run(models: &Path, network: Network, args: TrainArgs) -> Result<()> {
    refuse_last_layer_of(network, args.kind)?;
    let config = args.training.config();
    let bar = epoch_bar(config.epochs, args.json);
    let progress = |r: &EpochRecord| {
        bar.set_message(epoch_message(r));
        bar.inc(1);
    };
    let (cache, threads, quiet) = (args.training.cache.as_deref(), args.threads, args.json);
    let (report, used) = match args.kind {
        Kind::Head => {
            let features = features::extract(models, network, &args.photos, cache, threads, quiet)?;
            let used = usable(&features, quiet);
            (train_head(&used.photos, features.model_id, &config, progress)?, strip(used))
        }
        Kind::LastLayer => {
            let (features, network) = features::extract_pooled(models, &args.photos, cache, threads, quiet)?;
            let used = usable(&features, quiet);
            (train_last_layer(&used.photos, features.model_id, &network, &config, progress)?, strip(used))
        }
    };
    bar.finish_and_clear();
    let (photo_count, features_json, features_seconds, embedded_now, cache_path) = used;
    let mut head = report.head.clone();
    let command: Vec<String> = std::env::args().collect();
    head.meta.training = json!({
        "command": command.join(" "),
        "photos": args.photos.file_name().map(|n| n.to_string_lossy().into_owned()),
        "photo_count": photo_count,
        "config": config,
        "run": run_json(&report),
        "trainer": concat!("facegate-train ", env!("CARGO_PKG_VERSION")),
    });
    head.save(&args.out).with_context(|| format!("writing {}", args.out.display()))?;
    let plot = args.plot.clone().unwrap_or_else(|| args.out.with_extension("png"));
    draw_curve(&report, &plot).with_context(|| format!("drawing {}", plot.display()))?;
    let summary = json!({
        "out": args.out,
        "plot": plot,
        "kind": args.kind.as_str(),
        "id": head.id(),
        "base_model": head.meta.base_model,
        "threshold": head.meta.threshold,
        "best_epoch": report.best_epoch,
        "epochs_run": report.history.len(),
        "counts": report.counts,
        "validation": {"pretrained": report.pretrained_validation, "trained": report.validation},
        "features": features_json,
        "training_seconds": report.seconds,
    });
    if args.json {
        println!("{summary}");
        return Ok(());
    }
    let (b, a) = (&report.pretrained_validation, &report.validation);
    println!("trained {} → {} (id {})", args.kind.as_str(), args.out.display(), &head.id()[..16]);
    println!(
        "  {} people / {} photos trained, {} people / {} photos validated (split by person)",
        report.counts.train_people, report.counts.train_photos, report.counts.validation_people, report.counts.validation_photos
    );
    println!("  validation      pretrained   trained");
    println!("  TAR@FAR=1e-3    {:>8.2} %  {:>8.2} %", b.tar_at_far_1e3, a.tar_at_far_1e3);
    println!("  TAR@FAR=1e-4    {:>8.2} %  {:>8.2} %", b.tar_at_far_1e4, a.tar_at_far_1e4);
    println!("  EER             {:>8.2} %  {:>8.2} %", b.eer, a.eer);
    println!("  threshold (FAR 1e-4 on the validation people): {:.4}", head.meta.threshold);
    println!(
        "  best epoch {} of {}; features {:.0} s ({} photos embedded now, cache {}), training {:.0} s",
        report.best_epoch,
        report.history.len(),
        features_seconds,
        embedded_now,
        cache_path.display(),
        report.seconds
    );
    println!("  curve: {}", plot.display());
    Ok(())
}

/// Training loss and validation TAR at FAR 1e-3 per epoch, one PNG.
pub fn draw_curve(report: &TrainReport, path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let labels = crate::plot::font_available();
    let root = BitMapBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(450);
    let epochs = report.history.len().max(1) as f64;
    let loss_max = report.history.iter().map(|r| f64::from(r.loss)).fold(1e-6, f64::max) * 1.1;
    let mut builder = ChartBuilder::on(&left);
    let chart = builder.margin(12).x_label_area_size(if labels { 32 } else { 0 }).y_label_area_size(if labels { 48 } else { 0 });
    if labels {
        chart.caption("training loss", ("sans-serif", 18));
    }
    let mut chart = chart.build_cartesian_2d(0f64..epochs, 0f64..loss_max)?;
    if labels {
        chart.configure_mesh().x_desc("epoch").draw()?;
    }
    chart.draw_series(LineSeries::new(report.history.iter().map(|r| (r.epoch as f64, f64::from(r.loss))), &BLUE))?;
    let tars: Vec<f64> =
        report.history.iter().map(|r| r.validation.tar_at_far_1e3).chain([report.pretrained_validation.tar_at_far_1e3]).collect();
    let (lo, hi) = (tars.iter().copied().fold(100.0, f64::min), tars.iter().copied().fold(0.0, f64::max));
    let mut builder = ChartBuilder::on(&right);
    let chart = builder.margin(12).x_label_area_size(if labels { 32 } else { 0 }).y_label_area_size(if labels { 48 } else { 0 });
    if labels {
        chart.caption("validation TAR @ FAR 1e-3 (%)", ("sans-serif", 18));
    }
    let mut chart = chart.build_cartesian_2d(0f64..epochs, (lo - 0.5).max(0.0)..(hi + 0.5).min(100.0))?;
    if labels {
        chart.configure_mesh().x_desc("epoch").draw()?;
    }
    let base = report.pretrained_validation.tar_at_far_1e3;
    chart.draw_series(LineSeries::new([(0.0, base), (epochs, base)], &BLACK.mix(0.4)))?;
    chart.draw_series(LineSeries::new(
        std::iter::once((0.0, base)).chain(report.history.iter().map(|r| (r.epoch as f64, r.validation.tar_at_far_1e3))),
        &RED,
    ))?;
    root.present()?;
    Ok(())
}
