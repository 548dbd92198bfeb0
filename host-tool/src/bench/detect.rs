//! `host-tool bench detect`: which door detector finds more faces. Runs HOG
//! (the door's settings) and YuNet on LFW photos as they are, rotated ±20° and
//! mirrored, counts the centred face found at the minimum face size, and fits
//! YuNet's box → dlib box mapping ([`BoxMap`]) on the photos where both agree.

use anyhow::{bail, Context, Result};
use clap::Args;
use facegate_face::decode::{decode_image, DEFAULT_MAX_PIXELS};
use facegate_face::detect::hog::HogDetector;
use facegate_face::detect::yunet::{BoxMap, YunetDetector, YunetFace};
use facegate_face::model_files::ModelDir;
use facegate_face::pipeline::{DETECTOR_FILE, YUNET_DETECTOR_FILE};
use facegate_face::Rect;
use image::{Rgb, RgbImage};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Arguments of `bench detect`.
#[derive(Args)]
pub struct DetectArgs {
    /// LFW (lfw.tgz or directory); default ../shared/datasets/lfw.
    #[arg(long)]
    lfw: Option<PathBuf>,
    /// Use every n-th image (1: all 13,233).
    #[arg(long, default_value_t = 1)]
    every: usize,
    /// A face counts as found when its box is at least this wide (pixels).
    #[arg(long, default_value_t = 60)]
    min_face: u32,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// The views of each photo the detectors are tried on.
const VIEWS: [&str; 4] = ["upright", "rotated_plus20", "rotated_minus20", "mirrored"];

/// A photo rotated by `degrees` about its centre (bilinear, grey outside).
fn rotated(img: &RgbImage, degrees: f64) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    let (s, c) = degrees.to_radians().sin_cos();
    let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
    RgbImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (x as f64 - cx, y as f64 - cy);
        let (sx, sy) = (c * dx + s * dy + cx, -s * dx + c * dy + cy);
        if sx < 0.0 || sy < 0.0 || sx > (w - 1) as f64 || sy > (h - 1) as f64 {
            return Rgb([118, 118, 118]);
        }
        let (x0, y0) = (sx.floor() as u32, sy.floor() as u32);
        let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
        let (fx, fy) = (sx - x0 as f64, sy - y0 as f64);
        Rgb(std::array::from_fn(|ch| {
            let p = |x: u32, y: u32| img.get_pixel(x, y)[ch] as f64;
            let top = p(x0, y0) + (p(x1, y0) - p(x0, y0)) * fx;
            let bottom = p(x0, y1) + (p(x1, y1) - p(x0, y1)) * fx;
            (top + (bottom - top) * fy).round() as u8
        }))
    })
}

/// The box whose centre is nearest the image centre, if that centre lies within a quarter of the image of it.
fn centred<T>(items: &[T], centre_of: impl Fn(&T) -> (f64, f64), w: u32, h: u32) -> Option<&T> {
    let off = |t: &T| {
        let (x, y) = centre_of(t);
        (x - w as f64 / 2.0).abs().max((y - h as f64 / 2.0).abs())
    };
    items.iter().min_by(|a, b| off(a).total_cmp(&off(b))).filter(|t| off(t) <= w.min(h) as f64 / 4.0)
}

fn rect_centre(r: &Rect) -> (f64, f64) {
    ((r.left + r.right) as f64 / 2.0, (r.top + r.bottom) as f64 / 2.0)
}

/// What one photo gave.
#[derive(Default)]
struct PhotoResult {
    hog_found: [bool; 4],
    yunet_found: [bool; 4],
    /// The upright photo's centred HOG box and YuNet face, when both found one.
    pair: Option<(Rect, YunetFace)>,
    hog_ms: f64,
    yunet_ms: f64,
}

fn photo(hog: &HogDetector, yunet: &YunetDetector, img: &RgbImage, min_face: u32) -> Result<PhotoResult> {
    let mut out = PhotoResult::default();
    let views = [img.clone(), rotated(img, 20.0), rotated(img, -20.0), image::imageops::flip_horizontal(img)];
    let (w, h) = (img.width(), img.height());
    for (v, view) in views.iter().enumerate() {
        let t = Instant::now();
        let boxes: Vec<Rect> =
            hog.detect(view, 0, 0.0).into_iter().map(|d| d.rect).filter(|r| r.width() >= min_face as i64).collect();
        out.hog_ms += t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        let faces = yunet.detect_faces_min(view, yunet.threshold, min_face)?;
        out.yunet_ms += t.elapsed().as_secs_f64() * 1000.0;
        let mapped: Vec<(Rect, YunetFace)> =
            faces.iter().map(|f| (yunet.box_map.apply(f), *f)).filter(|(r, _)| r.width() >= min_face as i64).collect();
        let hog_box = centred(&boxes, rect_centre, w, h);
        let yunet_face = centred(&mapped, |(r, _)| rect_centre(r), w, h);
        out.hog_found[v] = hog_box.is_some();
        out.yunet_found[v] = yunet_face.is_some();
        if v == 0 {
            out.pair = hog_box.zip(yunet_face).map(|(r, (_, f))| (*r, *f));
        }
    }
    Ok(out)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The mapping that puts YuNet's boxes where HOG's are: medians of the centre
/// offsets and of the side ratio over the photos where both found the face.
pub fn fit_box_map(pairs: &[(Rect, YunetFace)]) -> BoxMap {
    let get = |f: &dyn Fn(&(Rect, YunetFace)) -> f64| median(pairs.iter().map(f).collect());
    BoxMap {
        dx: get(&|(r, f)| (rect_centre(r).0 + 0.5 - (f.bbox[0] + f.bbox[2] / 2.0)) / f.bbox[2]),
        dy: get(&|(r, f)| (rect_centre(r).1 + 0.5 - (f.bbox[1] + f.bbox[3] / 2.0)) / f.bbox[3]),
        scale: get(&|(r, f)| r.width() as f64 / (f.bbox[2] * f.bbox[3]).sqrt()),
    }
}

fn mean_iou(pairs: &[(Rect, YunetFace)], map: &BoxMap) -> f64 {
    pairs.iter().map(|(r, f)| r.iou(&map.apply(f))).sum::<f64>() / pairs.len().max(1) as f64
}

/// Runs the benchmark and prints the result.
pub fn run(models: &Path, args: DetectArgs) -> Result<()> {
    if args.every < 1 {
        bail!("--every must be at least 1");
    }
    let lfw = match args.lfw {
        Some(p) => p,
        None => facegate_lfw::locate(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."))
            .map(|(images, _)| images)
            .context("no LFW found: pass --lfw <lfw.tgz|dir>")?,
    };
    let data = facegate_lfw::Dataset::open(&lfw)?;
    let names: Vec<String> = data.names()?.into_iter().step_by(args.every).collect();
    let dir = ModelDir::open(models)?;
    let hog = HogDetector::from_bytes(&dir.read(DETECTOR_FILE)?)?;
    let yunet = YunetDetector::from_bytes(&dir.read(YUNET_DETECTOR_FILE)?)?;
    let bar = ProgressBar::new(names.len() as u64).with_style(
        ProgressStyle::with_template("{spinner} detecting [{bar:40}] {pos}/{len} photos ×4 views, eta {eta}")
            .expect("template")
            .progress_chars("=> "),
    );
    if args.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    }
    let results: Mutex<Vec<PhotoResult>> = Mutex::new(Vec::with_capacity(names.len()));
    let next = AtomicUsize::new(0);
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    std::thread::scope(|s| -> Result<()> {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    while let Some(name) = names.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let img =
                            decode_image(&data.read(name)?, DEFAULT_MAX_PIXELS).with_context(|| format!("decoding {name}"))?;
                        let r = photo(&hog, &yunet, &img, args.min_face)?;
                        results.lock().expect("no worker panicked").push(r);
                        bar.inc(1);
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| w.join().expect("worker panicked"))
    })?;
    bar.finish_and_clear();
    let results = results.into_inner().expect("no worker panicked");
    let n = results.len() as f64;
    let rate = |f: &dyn Fn(&PhotoResult) -> bool| results.iter().filter(|r| f(r)).count() as f64 / n;
    let found = |yunet: bool| {
        let mut m = serde_json::Map::new();
        for (v, view) in VIEWS.iter().enumerate() {
            let r = rate(&|r: &PhotoResult| if yunet { r.yunet_found[v] } else { r.hog_found[v] });
            m.insert(view.to_string(), r.into());
        }
        m
    };
    let pairs: Vec<(Rect, YunetFace)> = results.iter().filter_map(|r| r.pair).collect();
    let fitted = fit_box_map(&pairs);
    let per_view = |f: fn(&PhotoResult) -> f64| results.iter().map(f).sum::<f64>() / n / VIEWS.len() as f64;
    let json = serde_json::json!({
        "images": results.len(),
        "min_face": args.min_face,
        "found_hog": found(false),
        "found_yunet": found(true),
        "ms_per_photo_hog": per_view(|r| r.hog_ms),
        "ms_per_photo_yunet": per_view(|r| r.yunet_ms),
        "box_map_in_use": { "dx": yunet.box_map.dx, "dy": yunet.box_map.dy, "scale": yunet.box_map.scale },
        "box_map_fitted": { "dx": fitted.dx, "dy": fitted.dy, "scale": fitted.scale },
        "box_pairs": pairs.len(),
        "mean_iou_vs_hog_in_use": mean_iou(&pairs, &yunet.box_map),
        "mean_iou_vs_hog_fitted": mean_iou(&pairs, &fitted),
    });
    if args.json {
        println!("{json}");
        return Ok(());
    }
    println!("LFW, {} photos, face found when centred and ≥ {} px wide ({threads} threads)", results.len(), args.min_face);
    println!("{:<18} {:>8} {:>8}", "view", "HOG", "YuNet");
    for view in VIEWS {
        let pct = |k: &str| json[k][view].as_f64().unwrap_or(f64::NAN) * 100.0;
        println!("{view:<18} {:>7.2}% {:>7.2}%", pct("found_hog"), pct("found_yunet"));
    }
    println!(
        "time per photo: HOG {:.2} ms, YuNet {:.2} ms",
        json["ms_per_photo_hog"].as_f64().unwrap_or(f64::NAN),
        json["ms_per_photo_yunet"].as_f64().unwrap_or(f64::NAN)
    );
    println!(
        "box map (YuNet → HOG box), {} photos: in use dx {:.4} dy {:.4} scale {:.4} (mean IoU {:.3}); fitted dx {:.4} dy {:.4} scale {:.4} (mean IoU {:.3})",
        pairs.len(),
        yunet.box_map.dx,
        yunet.box_map.dy,
        yunet.box_map.scale,
        mean_iou(&pairs, &yunet.box_map),
        fitted.dx,
        fitted.dy,
        fitted.scale,
        mean_iou(&pairs, &fitted)
    );
    Ok(())
}
