//! `host-tool bench detect`: which door detector finds more faces. Runs HOG
//! (the door's settings) and YuNet on LFW photos as they are, rotated ±20° and
//! mirrored, counts the centred face found at the minimum face size, and fits
//! YuNet's box → dlib box mapping ([`BoxMap`]) on the photos where both agree.

use anyhow::{bail, Context, Result};
use clap::Args;
use facegate_core::stats::median;
use facegate_face::decode::{decode_image, DEFAULT_MAX_PIXELS};
use facegate_face::detect::hog::HogDetector;
use facegate_face::detect::yunet::{BoxMap, YunetDetector, YunetFace, BOX_FEATURES};
use facegate_face::landmarks::{LandmarkModel, Landmarks};
use facegate_face::model_files::ModelDir;
use facegate_face::pipeline::{DETECTOR_FILE, LANDMARKS_FILE, YUNET_DETECTOR_FILE};
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
    /// Then: how far dlib's landmarks from YuNet's box lie from those from
    /// HOG's (mean over the points, in eye spans).
    landmark_error: Option<f64>,
    hog_ms: f64,
    yunet_ms: f64,
}

/// Mean distance between corresponding landmarks, in eye spans of `reference`.
fn landmark_distance(reference: &Landmarks, other: &Landmarks) -> f64 {
    let span = (reference[0].x - reference[2].x).hypot(reference[0].y - reference[2].y).max(1.0);
    reference.iter().zip(other).map(|(a, b)| (a.x - b.x).hypot(a.y - b.y)).sum::<f64>() / reference.len() as f64 / span
}

fn photo(
    hog: &HogDetector,
    yunet: &YunetDetector,
    landmarks: &LandmarkModel,
    img: &RgbImage,
    min_face: u32,
) -> Result<PhotoResult> {
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
        if let (0, Some(r), Some((mapped, f))) = (v, hog_box, yunet_face) {
            out.pair = Some((*r, *f));
            out.landmark_error = Some(landmark_distance(&landmarks.predict(view, *r), &landmarks.predict(view, *mapped)));
        }
    }
    Ok(out)
}

/// The box-only mapping that puts YuNet's boxes where HOG's are: medians of
/// the centre offsets and of the side ratio over the photos where both found
/// the face.
pub fn fit_box_only(pairs: &[(Rect, YunetFace)]) -> BoxMap {
    let get = |f: &dyn Fn(&(Rect, YunetFace)) -> f64| median(pairs.iter().map(f).collect());
    BoxMap::from_box(
        get(&|(r, f)| (rect_centre(r).0 + 0.5 - (f.bbox[0] + f.bbox[2] / 2.0)) / f.bbox[2]),
        get(&|(r, f)| (rect_centre(r).1 + 0.5 - (f.bbox[1] + f.bbox[3] / 2.0)) / f.bbox[3]),
        get(&|(r, f)| r.width() as f64 / (f.bbox[2] * f.bbox[3]).sqrt()),
    )
}

/// What HOG's box is in a YuNet face's frame (see [`BoxMap`]): centre offsets and side over s.
fn target(r: &Rect, f: &YunetFace) -> [f64; 3] {
    let s = (f.bbox[2] * f.bbox[3]).sqrt();
    let (cx, cy) = rect_centre(r);
    [(cx + 0.5 - (f.bbox[0] + f.bbox[2] / 2.0)) / s, (cy + 0.5 - (f.bbox[1] + f.bbox[3] / 2.0)) / s, r.width() as f64 / s]
}

/// Solves `a · x = b` (`a` symmetric positive definite) by Cholesky; `None` if it is not.
fn solve_spd<const N: usize>(mut a: [[f64; N]; N], mut b: [f64; N]) -> Option<[f64; N]> {
    for j in 0..N {
        let d = a[j][j] - (0..j).map(|k| a[j][k] * a[j][k]).sum::<f64>();
        if d <= 0.0 || !d.is_finite() {
            return None;
        }
        a[j][j] = d.sqrt();
        for i in j + 1..N {
            a[i][j] = (a[i][j] - (0..j).map(|k| a[i][k] * a[j][k]).sum::<f64>()) / a[j][j];
        }
    }
    // L y = b, then Lᵀ x = y.
    for i in 0..N {
        b[i] = (b[i] - (0..i).map(|k| a[i][k] * b[k]).sum::<f64>()) / a[i][i];
    }
    for i in (0..N).rev() {
        b[i] = (b[i] - (i + 1..N).map(|k| a[k][i] * b[k]).sum::<f64>()) / a[i][i];
    }
    Some(b)
}

/// Least squares of the targets on the features (a tiny ridge keeps it solvable).
fn least_squares(pairs: &[&(Rect, YunetFace)]) -> Option<BoxMap> {
    let mut gram = [[0.0; BOX_FEATURES]; BOX_FEATURES];
    let mut rhs = [[0.0; BOX_FEATURES]; 3];
    for (r, f) in pairs {
        let (x, _) = BoxMap::features(f);
        let y = target(r, f);
        for i in 0..BOX_FEATURES {
            for j in 0..BOX_FEATURES {
                gram[i][j] += x[i] * x[j];
            }
            for (k, rhs_k) in rhs.iter_mut().enumerate() {
                rhs_k[i] += x[i] * y[k];
            }
        }
    }
    for (i, row) in gram.iter_mut().enumerate() {
        row[i] += 1e-6 * pairs.len() as f64;
    }
    let mut coef = [[0.0; BOX_FEATURES]; 3];
    for k in 0..3 {
        coef[k] = solve_spd(gram, rhs[k])?;
    }
    Some(BoxMap { coef })
}

/// The linear mapping of YuNet's box and points to HOG's box ([`BoxMap`]):
/// least squares over the photos where both found the face and agree (IoU ≥
/// 0.5 under the box-only fit), refitted once without the worst 5 %.
/// `None` with too few photos to fit it.
pub fn fit_box_map(pairs: &[(Rect, YunetFace)]) -> Option<BoxMap> {
    let box_only = fit_box_only(pairs);
    let agreeing: Vec<&(Rect, YunetFace)> = pairs.iter().filter(|(r, f)| r.iou(&box_only.apply(f)) >= 0.5).collect();
    if agreeing.len() < 4 * BOX_FEATURES {
        return None;
    }
    let first = least_squares(&agreeing)?;
    // How far the first fit misses a photo's box, in units of s.
    let miss = |(r, f): &(Rect, YunetFace)| {
        let predicted = first.predict(&BoxMap::features(f).0);
        predicted.iter().zip(target(r, f)).map(|(p, t)| (p - t).powi(2)).sum::<f64>().sqrt()
    };
    let cut = {
        let mut m: Vec<f64> = agreeing.iter().map(|p| miss(p)).collect();
        m.sort_by(f64::total_cmp);
        m[m.len() * 95 / 100]
    };
    let kept: Vec<&(Rect, YunetFace)> = agreeing.into_iter().filter(|p| miss(p) <= cut).collect();
    least_squares(&kept)
}

/// The liveness networks' box (like YuNet's, which the reference used) from
/// HOG's: medians over the photos of YuNet's centre offset and size, in HOG box sides.
fn fit_liveness_box(pairs: &[(Rect, YunetFace)]) -> serde_json::Value {
    let get = |f: &dyn Fn(&(Rect, YunetFace)) -> f64| median(pairs.iter().map(f).collect());
    let side = |r: &Rect| r.width() as f64;
    serde_json::json!({
        "shift_x": get(&|(r, f)| (f.bbox[0] + f.bbox[2] / 2.0 - rect_centre(r).0 - 0.5) / side(r)),
        "shift_y": get(&|(r, f)| (f.bbox[1] + f.bbox[3] / 2.0 - rect_centre(r).1 - 0.5) / side(r)),
        "scale_x": get(&|(r, f)| f.bbox[2] / side(r)),
        "scale_y": get(&|(r, f)| f.bbox[3] / side(r)),
    })
}

fn mean_iou(pairs: &[(Rect, YunetFace)], map: &BoxMap) -> f64 {
    pairs.iter().map(|(r, f)| r.iou(&map.apply(f))).sum::<f64>() / pairs.len().max(1) as f64
}

/// A map as JSON: its coefficient rows.
fn map_json(map: &BoxMap) -> serde_json::Value {
    serde_json::json!({ "centre_x": map.coef[0], "centre_y": map.coef[1], "side": map.coef[2] })
}

/// A map as the Rust constant that ships it.
fn map_rust(map: &BoxMap) -> String {
    let row = |r: &[f64; BOX_FEATURES]| r.iter().map(|c| format!("{c:.5}")).collect::<Vec<_>>().join(", ");
    format!("BoxMap {{ coef: [\n    [{}],\n    [{}],\n    [{}],\n] }}", row(&map.coef[0]), row(&map.coef[1]), row(&map.coef[2]))
}

/// Runs the benchmark and prints the result.
pub fn run(models: &Path, args: DetectArgs) -> Result<()> {
    if args.every < 1 {
        bail!("--every must be at least 1");
    }
    let lfw = match args.lfw {
        Some(p) => p,
        None => facegate_lfw::locate(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
            .map(|(images, _)| images)
            .context("no LFW found: pass --lfw <lfw.tgz|dir>")?,
    };
    let data = facegate_lfw::Dataset::open(&lfw)?;
    let names: Vec<String> = data.names()?.into_iter().step_by(args.every).collect();
    let dir = ModelDir::open(models)?;
    let hog = HogDetector::from_bytes(&dir.read(DETECTOR_FILE)?)?;
    let yunet = YunetDetector::from_bytes(&dir.read(YUNET_DETECTOR_FILE)?)?;
    let landmarks = LandmarkModel::from_bytes(&dir.read(LANDMARKS_FILE)?)?;
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
                        let r = photo(&hog, &yunet, &landmarks, &img, args.min_face)?;
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
    let box_only = fit_box_only(&pairs);
    let fitted = fit_box_map(&pairs);
    let errors: Vec<f64> = results.iter().filter_map(|r| r.landmark_error).collect();
    let landmark_error = errors.iter().sum::<f64>() / errors.len().max(1) as f64;
    let per_view = |f: fn(&PhotoResult) -> f64| results.iter().map(f).sum::<f64>() / n / VIEWS.len() as f64;
    let json = serde_json::json!({
        "images": results.len(),
        "min_face": args.min_face,
        "found_hog": found(false),
        "found_yunet": found(true),
        "ms_per_photo_hog": per_view(|r| r.hog_ms),
        "ms_per_photo_yunet": per_view(|r| r.yunet_ms),
        "box_pairs": pairs.len(),
        "box_map_in_use": map_json(&yunet.box_map),
        "box_map_fitted": fitted.as_ref().map(map_json),
        "mean_iou_vs_hog_unmapped": mean_iou(&pairs, &BoxMap::from_box(0.0, 0.0, 1.0)),
        "mean_iou_vs_hog_box_only": mean_iou(&pairs, &box_only),
        "mean_iou_vs_hog_in_use": mean_iou(&pairs, &yunet.box_map),
        "mean_iou_vs_hog_fitted": fitted.as_ref().map(|m| mean_iou(&pairs, m)),
        "landmark_error_eye_spans": landmark_error,
        "liveness_box_from_hog": fit_liveness_box(&pairs),
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
    let iou = |k: &str| json[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "mean IoU with HOG's box over {} photos: unmapped {:.3}, box only {:.3}, in use {:.3}, fitted {:.3}",
        pairs.len(),
        iou("mean_iou_vs_hog_unmapped"),
        iou("mean_iou_vs_hog_box_only"),
        iou("mean_iou_vs_hog_in_use"),
        iou("mean_iou_vs_hog_fitted")
    );
    println!("YuNet's own box from HOG's (for liveness, in HOG box sides): {}", json["liveness_box_from_hog"]);
    println!("dlib's landmarks from YuNet's box against those from HOG's box: {landmark_error:.4} eye spans apart (mean)");
    match &fitted {
        Some(m) => println!("fitted map (YuNet face → dlib box):\n{}", map_rust(m)),
        None => println!("too few photos where both detectors agree to fit a map"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use facegate_face::geometry::Point;

    /// Faces of many sizes, places and poses, from a fixed sequence.
    fn faces() -> Vec<YunetFace> {
        let mut state = 12345u64;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..400)
            .map(|_| {
                let w = 60.0 + 140.0 * next();
                let h = w * (1.1 + 0.3 * next());
                let (l, t) = (400.0 * next(), 300.0 * next());
                let points = std::array::from_fn(|_| Point::new(l + w * next(), t + h * next()));
                YunetFace { bbox: [l, t, w, h], points, score: 0.9 }
            })
            .collect()
    }

    #[test]
    fn the_fit_recovers_a_map_that_uses_the_points() {
        let mut truth = BoxMap::from_box(0.02, 0.06, 0.95);
        truth.coef[0][3] = 0.2; // the centre follows the right eye's x
        truth.coef[2][10] = 0.3; // the side grows with the mouth's drop
        let pairs: Vec<(Rect, YunetFace)> = faces().into_iter().map(|f| (truth.apply(&f), f)).collect();
        let fitted = fit_box_map(&pairs).expect("enough pairs");
        // Boxes are whole pixels, so the fit is close, not exact.
        assert!(mean_iou(&pairs, &fitted) > 0.97, "{fitted:?}");
        assert!((fitted.coef[0][3] - 0.2).abs() < 0.02 && (fitted.coef[2][10] - 0.3).abs() < 0.02, "{fitted:?}");
        // The box alone cannot follow the points.
        assert!(mean_iou(&pairs, &fit_box_only(&pairs)) < mean_iou(&pairs, &fitted));
        assert!(fit_box_map(&pairs[..20]).is_none(), "20 photos cannot fix 39 coefficients");
    }

    #[test]
    fn cholesky_solves_and_refuses_a_singular_system() {
        let x = solve_spd([[4.0, 2.0], [2.0, 3.0]], [2.0, 5.0]).expect("positive definite");
        assert!((4.0 * x[0] + 2.0 * x[1] - 2.0).abs() < 1e-12 && (2.0 * x[0] + 3.0 * x[1] - 5.0).abs() < 1e-12);
        assert!(solve_spd([[1.0, 1.0], [1.0, 1.0]], [1.0, 1.0]).is_none());
    }
}
