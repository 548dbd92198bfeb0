//! `host-tool bench lfw`: the LFW View 2 protocol on the full pipeline.

use super::lfw_args::LfwArgs;
use crate::labelled::lfw_face;
use anyhow::{bail, Context, Result};
use facegate_face::decode::{decode_image, DEFAULT_MAX_PIXELS};
use facegate_face::matching::{distance, THRESHOLD_BALANCED, THRESHOLD_DOOR};
use facegate_face::{DetectorKind, Embedding, Network, Pipeline, PipelineConfig, Precision};
use facegate_lfw::{compare_paired, enrolment_study, evaluate, operating_points, parse_pairs, Dataset, Pair};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// The first line of a `--distances-csv` file: its columns.
const DISTANCES_CSV_HEADER: &str = "fold,same,distance,a,b";

/// An earlier run's `--distances-csv` file as `(distance, same, fold)` in
/// the order of `pairs`; every selected pair must be in it.
fn read_distances_csv(path: &Path, pairs: &[Pair]) -> Result<Vec<(f32, bool, usize)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines().enumerate();
    if lines.next().map(|(_, header)| header) != Some(DISTANCES_CSV_HEADER) {
        bail!("{} is not a --distances-csv file (its first line is not {DISTANCES_CSV_HEADER})", path.display());
    }
    let mut rows = BTreeMap::new();
    for (i, line) in lines.filter(|(_, l)| !l.is_empty()) {
        let bad = || anyhow::anyhow!("{} line {}: expected {DISTANCES_CSV_HEADER}", path.display(), i + 1);
        let [fold, same, d, a, b] = line.split(',').collect::<Vec<_>>()[..] else { return Err(bad()) };
        let same = match same {
            "0" => false,
            "1" => true,
            _ => return Err(bad()),
        };
        let d: f32 = d.parse().map_err(|_| bad())?;
        rows.insert((a, b), (d, same, fold.parse::<usize>().map_err(|_| bad())?));
    }
    pairs
        .iter()
        .map(|p| {
            rows.get(&(p.a.as_str(), p.b.as_str())).copied().with_context(|| {
                format!("{} has no distance for {} / {} (another pairs.txt or --folds?)", path.display(), p.a, p.b)
            })
        })
        .collect()
}

struct ImageResult {
    embedding: Embedding,
    /// The same face with the other precision (with --compare-precision).
    other: Option<Embedding>,
    detected: bool,
    seconds: f64,
}

fn embed_image(pipeline: &Pipeline, other: Option<&Pipeline>, data: &Dataset, name: &str) -> Result<ImageResult> {
    let start = Instant::now();
    let img = decode_image(&data.read(name)?, DEFAULT_MAX_PIXELS).with_context(|| format!("decoding {name}"))?;
    let (detection, detected) = lfw_face(&pipeline.detect(&img), img.width(), img.height());
    let face = pipeline.align(&img, detection);
    let embedding = pipeline.embed_jittered(&img, &face)?;
    let seconds = start.elapsed().as_secs_f64();
    let other = other.map(|p| p.embed_jittered(&img, &face)).transpose()?;
    Ok(ImageResult { embedding, other, detected, seconds })
}

/// Runs the benchmark and prints the result.
pub fn run(models: &Path, network: Network, args: LfwArgs) -> Result<()> {
    if let Some(kind) = args.train_metric {
        return super::trained::run(models, network, &args, kind);
    }
    let text = std::fs::read_to_string(&args.pairs).with_context(|| format!("reading {}", args.pairs.display()))?;
    let mut pairs = parse_pairs(&text)?;
    if let Some(n) = args.folds {
        pairs.retain(|p| p.fold < n);
    }
    if pairs.is_empty() {
        bail!("no pairs selected");
    }
    let data = Dataset::open(&args.lfw).with_context(|| format!("opening {}", args.lfw.display()))?;
    let defaults = PipelineConfig::default();
    let config = match args.detector.unwrap_or(defaults.detector) {
        // HOG needs the image doubled to find LFW's smaller faces, and a lower threshold on retry.
        DetectorKind::Hog => PipelineConfig { detector: DetectorKind::Hog, upsample: 1, retry_threshold: Some(-0.6), ..defaults },
        DetectorKind::Cnn => defaults,
        DetectorKind::Yunet => PipelineConfig { detector: DetectorKind::Yunet, retry_threshold: Some(-0.3), ..defaults },
    };
    let config = PipelineConfig {
        network,
        arcface_points: args.arcface_points,
        mirror: !args.no_mirror,
        jitter: args.jitter.unwrap_or(config.jitter),
        min_face: args.min_face.unwrap_or(config.min_face),
        ..config
    };
    let pipeline = Pipeline::load(models, args.precision, config.clone()).context("loading models")?;
    // int8 against f32; f32 and int8-computed against the shipped int8.
    let other_precision = if args.precision == Precision::Int8 { Precision::F32 } else { Precision::Int8 };
    if args.compare_precision && network != Network::Dlib {
        bail!("--compare-precision is for dlib's network: {network} ships one precision");
    }
    let other = args.compare_precision.then(|| Pipeline::load(models, other_precision, config)).transpose()?;
    let names: Vec<&str> = {
        let mut set: Vec<&str> = pairs.iter().flat_map(|p| [p.a.as_str(), p.b.as_str()]).collect();
        set.sort_unstable();
        set.dedup();
        set
    };
    let bar = ProgressBar::new(names.len() as u64).with_style(
        ProgressStyle::with_template("{spinner} embedding LFW [{bar:40}] {pos}/{len} images, {per_sec}, eta {eta}")
            .expect("template")
            .progress_chars("=> "),
    );
    if args.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    }
    let results: Mutex<BTreeMap<&str, ImageResult>> = Mutex::new(BTreeMap::new());
    let next = AtomicUsize::new(0);
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let wall = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(name) = names.get(i) else { return Ok(()) };
                        let r = embed_image(&pipeline, other.as_ref(), &data, name)?;
                        results.lock().expect("no worker panicked").insert(name, r);
                        bar.inc(1);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("worker thread")?;
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    let results = results.into_inner().expect("no worker panicked");
    let scored: Vec<(f32, bool, usize)> = pairs
        .iter()
        .map(|p| (distance(&results[p.a.as_str()].embedding, &results[p.b.as_str()].embedding), p.same, p.fold))
        .collect();
    if let Some(path) = &args.distances_csv {
        let mut csv = format!("{DISTANCES_CSV_HEADER}\n");
        for (p, (d, _, _)) in pairs.iter().zip(&scored) {
            csv += &format!("{},{},{d},{},{}\n", p.fold, p.same as u8, p.a, p.b);
        }
        std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))?;
    }
    let e = evaluate(&scored);
    let paired = match &args.compare_with {
        Some(path) => {
            let baseline = read_distances_csv(path, &pairs)?;
            Some((path, compare_paired(&baseline, &scored).with_context(|| format!("comparing with {}", path.display()))?))
        }
        None => None,
    };
    // Decisions that change with the other precision, at the shipped thresholds.
    let flips = args.compare_precision.then(|| {
        let other_d: Vec<f32> = pairs
            .iter()
            .map(|p| distance(results[p.a.as_str()].other.as_ref().expect("compared"), results[p.b.as_str()].other.as_ref().expect("compared")))
            .collect();
        let count = |t: f32| scored.iter().zip(&other_d).filter(|((d, _, _), o)| (*d < t) != (**o < t)).count();
        let max_delta = scored.iter().zip(&other_d).map(|((d, _, _), o)| (d - o).abs()).fold(0f32, f32::max);
        serde_json::json!({
            "other_precision": other_precision.as_str(),
            "flips_at_balanced": count(THRESHOLD_BALANCED),
            "flips_at_door": count(THRESHOLD_DOOR),
            "max_pair_distance_delta": max_delta,
            "other_accuracy_mean": evaluate(&scored.iter().zip(&other_d).map(|((_, s, f), o)| (*o, *s, *f)).collect::<Vec<_>>()).accuracy_mean,
        })
    });
    // Open-set operating points over all pairs of the embedded images.
    let person_ids: BTreeMap<&str, usize> = {
        let mut ids = BTreeMap::new();
        for n in results.keys() {
            let next_id = ids.len();
            ids.entry(n.split('/').next().unwrap_or(n)).or_insert(next_id);
        }
        ids
    };
    let embeddings: Vec<&Embedding> = results.values().map(|r| &r.embedding).collect();
    let labels: Vec<usize> = results.keys().map(|n| person_ids[n.split('/').next().unwrap_or(n)]).collect();
    let (points, genuine_all, impostor_all) =
        operating_points(&labels, |i, j| distance(embeddings[i], embeddings[j]), &[1e-3, 1e-4, 1e-5]);
    // Several templates per person: nearest template vs mean distance, 3 enrolment photos.
    let dist = |i: usize, j: usize| distance(embeddings[i], embeddings[j]);
    let min_rule = enrolment_study(&labels, dist, 3, |d| d.iter().copied().fold(f32::INFINITY, f32::min), 1e-3);
    let mean_rule = enrolment_study(&labels, dist, 3, |d| d.iter().sum::<f32>() / d.len() as f32, 1e-3);
    let rule_json = |p: Option<facegate_lfw::OperatingPoint>| {
        p.map(|p| serde_json::json!({"far": p.far, "threshold": p.threshold, "tar": 100.0 * p.tar}))
    };
    let at_threshold = args.threshold.map(|t| {
        let right = scored.iter().filter(|(d, same, _)| (*d < t) == *same).count();
        100.0 * right as f64 / scored.len() as f64
    });
    let undetected: Vec<&str> = results.iter().filter(|(_, r)| !r.detected).map(|(n, _)| *n).collect();
    let ms_per_image = 1000.0 * results.values().map(|r| r.seconds).sum::<f64>() / results.len() as f64;
    let json = serde_json::json!({
        "accuracy_mean": e.accuracy_mean,
        "accuracy_std": e.accuracy_std,
        "threshold": e.threshold,
        "fold_thresholds": e.fold_threshold,
        "fold_accuracy": e.fold_accuracy,
        "eer": e.eer,
        "tar_at_far_1e3": e.tar_at_far_1e3,
        "tar_at_far_1e4": e.tar_at_far_1e4,
        "accuracy_at_threshold": at_threshold,
        "precision_comparison": flips,
        "paired_comparison": paired.as_ref().map(|(path, c)| serde_json::json!({
            "baseline": path.display().to_string(),
            "right_baseline": c.right_a,
            "right": c.right_b,
            "only_baseline_right": c.only_a,
            "only_this_right": c.only_b,
            "p_value": c.p_value,
        })),
        "fixed_threshold": args.threshold,
        "operating_points": points.iter().map(|p| serde_json::json!({"far": p.far, "threshold": p.threshold, "tar": 100.0 * p.tar})).collect::<Vec<_>>(),
        "threshold_at_far_1e3": points[0].threshold,
        "threshold_at_far_1e4": points[1].threshold,
        "threshold_at_far_1e5": points[2].threshold,
        "genuine_pairs_all": genuine_all,
        "templates3_min": rule_json(min_rule),
        "templates3_mean": rule_json(mean_rule),
        "impostor_pairs_all": impostor_all,
        "images": results.len(),
        "pairs": pairs.len(),
        "undetected": undetected.len(),
        "undetected_images": undetected,
        "ms_per_image": ms_per_image,
        "wall_seconds": wall.elapsed().as_secs_f64(),
        "threads": threads,
        "network": network.as_str(),
        "precision": pipeline.embedder.precision().as_str(),
        "detector": pipeline.config.detector.as_str(),
        "min_face": pipeline.config.min_face,
        "mirror": pipeline.config.mirror,
        "jitter": pipeline.config.jitter,
        "model_id": pipeline.embedder.model_id(),
    });
    if args.json {
        println!("{json}");
    } else {
        println!(
            "LFW View 2, {} pairs, {} images, network {network}, precision {}",
            pairs.len(),
            results.len(),
            pipeline.embedder.precision().as_str()
        );
        println!("  accuracy      {:.2} % ± {:.2}", e.accuracy_mean, e.accuracy_std);
        println!("  threshold     {:.4} (all folds)", e.threshold);
        println!("  EER           {:.2} %", e.eer);
        println!("  TAR@FAR=1e-3  {:.2} %", e.tar_at_far_1e3);
        println!("  TAR@FAR=1e-4  {:.2} %", e.tar_at_far_1e4);
        println!("  undetected    {} images (fallback box used)", undetected.len());
        if let Some(f) = &flips {
            println!(
                "  vs {}: {} decisions differ at {THRESHOLD_BALANCED}, {} at {THRESHOLD_DOOR}",
                f["other_precision"], f["flips_at_balanced"], f["flips_at_door"]
            );
        }
        if let Some((path, c)) = &paired {
            println!(
                "  vs {}: {} pairs right there, {} here; {} only there, {} only here (McNemar p = {:.3})",
                path.display(),
                c.right_a,
                c.right_b,
                c.only_a,
                c.only_b,
                c.p_value
            );
        }
        if let Some(a) = at_threshold {
            println!("  accuracy at fixed threshold {:.4}: {a:.2} %", args.threshold.unwrap_or_default());
        }
        println!("  all {impostor_all} impostor / {genuine_all} genuine pairs of these images:");
        for p in &points {
            println!("    FAR {:.0e}: threshold {:.4}, TAR {:.2} %", p.far, p.threshold, 100.0 * p.tar);
        }
        for (rule, p) in [("nearest", min_rule), ("mean", mean_rule)] {
            if let Some(p) = p {
                println!("  3 templates, {rule} rule: FAR {:.0e} at {:.4}, TAR {:.2} %", p.far, p.threshold, 100.0 * p.tar);
            }
        }
        println!(
            "  time          {ms_per_image:.1} ms per image per core, {:.0} s wall on {threads} threads",
            wall.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
