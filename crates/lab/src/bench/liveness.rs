//! `host-tool bench liveness`: presentation-attack detection measured per
//! ISO/IEC 30107-3 on labelled sets of live and attack images: BPCER (live
//! people refused), APCER per attack type (attacks accepted), ACER, the
//! thresholds for BPCER 1 % and 5 %, faces not found, time per face; a DET
//! curve per set as PNG; and BPCER on LFW's photos as a bona-fide check.

use anyhow::{bail, Context, Result};
use clap::Args;
use facegate_face::decode::{decode_image, DEFAULT_MAX_PIXELS};
use facegate_face::liveness::{ensemble_score, BoxMap, Liveness, THRESHOLD};
use facegate_face::{Pipeline, PipelineConfig, Precision};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// Arguments of `bench liveness`.
#[derive(Args)]
pub struct LivenessArgs {
    /// A labelled set as NAME=DIR: DIR holds `real/` and `attack/`, or
    /// `attack-TYPE/` folders per attack type. Repeat for several sets.
    #[arg(long = "set", value_name = "NAME=DIR", required = true)]
    sets: Vec<String>,
    /// Decision threshold on the live score (default: the shipped one).
    #[arg(long)]
    live_threshold: Option<f32>,
    /// Also measure BPCER on every LFW photo (live people, web-compressed): lfw.tgz or a directory.
    #[arg(long)]
    lfw: Option<PathBuf>,
    /// Write a DET curve per set to this PNG file.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// The crop box from the detector's, as WIDTH,HEIGHT,SHIFT: width and
    /// height factors and the centre's shift down in box heights (default:
    /// the shipped one; the networks then apply their own 2.7× and 4×).
    #[arg(long, value_name = "SX,SY,DY", value_parser = parse_box_map)]
    box_map: Option<BoxMap>,
    /// Write every image's outcome to this CSV file: set, label, file, live
    /// score and each network's class probabilities (empty: no face found).
    #[arg(long, value_name = "FILE.csv")]
    scores_csv: Option<PathBuf>,
    /// Each set holds clips: `real/CLIP/`, `attack/CLIP/` (or
    /// `attack-TYPE/CLIP/`) folders of consecutive frames, judged per clip as
    /// the door judges an approach (k of n frames), with and without the
    /// face-motion depth cue.
    #[arg(long)]
    sequences: bool,
    /// With --sequences: live frames needed in the window (the door's recognition.frames_agree).
    #[arg(long, default_value_t = 3, requires = "sequences")]
    agree: usize,
    /// With --sequences: the window of frames (recognition.frames_window).
    #[arg(long, default_value_t = 5, requires = "sequences")]
    window: usize,
    /// With --sequences: a pair of frames speaks of depth when the face
    /// plane turned at least this much (eye distances).
    #[arg(long, default_value_t = DEFAULT_MIN_TURN, requires = "sequences")]
    min_turn: f64,
    /// With --sequences: a clip that turned with less parallax per unit of
    /// turn moved as one flat surface and is refused.
    #[arg(long, default_value_t = DEFAULT_MIN_DEPTH, requires = "sequences")]
    min_depth: f64,
    /// With --sequences: a frame speaks of the face's surroundings when the
    /// face moved at least this much since the frame before (face widths).
    #[arg(long, default_value_t = 0.05, requires = "sequences")]
    min_move: f64,
    /// With --sequences: a clip whose surroundings shared at least this
    /// share of the face's motion (a held print or screen) is refused.
    #[arg(long, default_value_t = 0.6, requires = "sequences")]
    max_carry: f64,
}

/// `--min-turn`'s default.
pub const DEFAULT_MIN_TURN: f64 = 0.03;
/// `--min-depth`'s default.
pub const DEFAULT_MIN_DEPTH: f64 = 0.5;

fn parse_box_map(s: &str) -> Result<BoxMap, String> {
    let v: Vec<f32> =
        s.split(',').map(|x| x.trim().parse::<f32>().map_err(|e| format!("{x:?}: {e}"))).collect::<Result<_, _>>()?;
    match v[..] {
        [scale_x, scale_y, shift_y] if scale_x > 0.0 && scale_y > 0.0 && shift_y.is_finite() => {
            Ok(BoxMap { scale_x, scale_y, shift_y })
        }
        _ => Err("give three numbers WIDTH,HEIGHT,SHIFT with positive factors, e.g. 1.2,1.2,-0.05".into()),
    }
}

/// One image's outcome: its label and live score (`None`: no face found),
/// with each network's class probabilities behind the score.
struct Scored {
    kind: String,
    file: String,
    score: Option<f32>,
    classes: Vec<[f32; 3]>,
}

/// The door's detector settings, also for small crops: HOG at the image's own
/// size, then doubled when nothing is found, then (for face crops cut tight,
/// where HOG needs some margin) on the image with a border of its edge pixels.
pub(super) struct Finder {
    plain: Pipeline,
    doubled: Pipeline,
}

impl Finder {
    pub(super) fn load(models: &Path) -> Result<Self> {
        let c = PipelineConfig { min_face: 40, ..PipelineConfig::door() };
        Ok(Finder {
            plain: Pipeline::load(models, Precision::Int8, c.clone())?,
            doubled: Pipeline::load(models, Precision::Int8, PipelineConfig { upsample: 1, ..c })?,
        })
    }

    pub(super) fn face(&self, img: &image::RgbImage) -> Option<facegate_face::Rect> {
        let largest =
            |p: &Pipeline, img: &image::RgbImage| p.detect(img).into_iter().max_by_key(|d| d.rect.area()).map(|d| d.rect);
        largest(&self.plain, img).or_else(|| largest(&self.doubled, img)).or_else(|| {
            let pad = img.width().max(img.height()) / 2;
            let (w, h) = (img.width() as i64, img.height() as i64);
            let padded = image::RgbImage::from_fn(img.width() + 2 * pad, img.height() + 2 * pad, |x, y| {
                let sx = (x as i64 - pad as i64).clamp(0, w - 1) as u32;
                let sy = (y as i64 - pad as i64).clamp(0, h - 1) as u32;
                *img.get_pixel(sx, sy)
            });
            let r = largest(&self.plain, &padded)?;
            let p = pad as i64;
            Some(facegate_face::Rect::new(r.left - p, r.top - p, r.right - p, r.bottom - p))
        })
    }
}

pub(super) fn images_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|e| ["jpg", "jpeg", "png", "bmp", "webp"].contains(&e.to_string_lossy().to_lowercase().as_str()))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The labelled images of a set: (`real` or the attack type, path).
fn labelled(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let kind = match name.as_str() {
            "real" => "real".to_string(),
            "attack" => "attack".to_string(),
            n if n.starts_with("attack-") => n["attack-".len()..].to_string(),
            _ => continue,
        };
        out.extend(images_in(&path)?.into_iter().map(|p| (kind.clone(), p)));
    }
    if !out.iter().any(|(k, _)| k == "real") || !out.iter().any(|(k, _)| k != "real") {
        bail!("{} needs real/ and attack/ (or attack-TYPE/) folders of images", dir.display());
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// Scores every image on `threads` workers; returns the outcomes and the seconds spent in liveness.
fn score_all(finder: &Finder, live: &Liveness, items: &[(String, String, Vec<u8>)], threads: usize) -> (Vec<Scored>, f64, usize) {
    let results = Mutex::new(Vec::with_capacity(items.len()));
    let timing = Mutex::new((0f64, 0usize));
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((kind, file, bytes)) = items.get(i) else { break };
                let classes = decode_image(bytes, DEFAULT_MAX_PIXELS).ok().and_then(|img| {
                    let face = finder.face(&img)?;
                    let t = Instant::now();
                    let c = live.class_probabilities(&img, live.box_map.apply(face)).ok();
                    let mut tm = timing.lock().expect("timing lock");
                    tm.0 += t.elapsed().as_secs_f64();
                    tm.1 += 1;
                    c
                });
                let score = classes.as_deref().map(ensemble_score);
                let (kind, file, classes) = (kind.clone(), file.clone(), classes.unwrap_or_default());
                results.lock().expect("results lock").push((i, Scored { kind, file, score, classes }));
            });
        }
    });
    let mut r = results.into_inner().expect("results");
    r.sort_by_key(|(i, _)| *i);
    let (secs, faces) = timing.into_inner().expect("timing");
    (r.into_iter().map(|(_, s)| s).collect(), secs, faces)
}

/// Percent of `scores` at or above `t` (a face not found is never accepted).
fn accepted(scores: &[Option<f32>], t: f32) -> f64 {
    100.0 * scores.iter().filter(|s| s.is_some_and(|v| v >= t)).count() as f64 / scores.len().max(1) as f64
}

/// The threshold that refuses `bpcer` % of live images (faces not found are refused anyway).
fn threshold_for_bpcer(live: &[Option<f32>], bpcer: f64) -> f32 {
    let mut found: Vec<f32> = live.iter().flatten().copied().collect();
    found.sort_by(f32::total_cmp);
    let missing = live.len() - found.len();
    let allowed = (bpcer / 100.0 * live.len() as f64).floor() as usize;
    let k = allowed.saturating_sub(missing);
    // Refusing the k lowest scores: the threshold is the (k+1)-th lowest.
    found.get(k).copied().unwrap_or(f32::INFINITY)
}

/// The figures of one set at threshold `t`.
fn figures(scored: &[Scored], t: f32) -> serde_json::Value {
    let live: Vec<Option<f32>> = scored.iter().filter(|s| s.kind == "real").map(|s| s.score).collect();
    let mut by_type: BTreeMap<&str, Vec<Option<f32>>> = BTreeMap::new();
    for s in scored.iter().filter(|s| s.kind != "real") {
        by_type.entry(&s.kind).or_default().push(s.score);
    }
    let bpcer = 100.0 - accepted(&live, t);
    let apcer_by_type: BTreeMap<&str, f64> = by_type.iter().map(|(k, v)| (*k, accepted(v, t))).collect();
    // ISO/IEC 30107-3: the worst attack type is the system's APCER.
    let apcer = apcer_by_type.values().copied().fold(0.0, f64::max);
    let attacks: Vec<Option<f32>> = by_type.values().flatten().copied().collect();
    let at = |b: f64| {
        let th = threshold_for_bpcer(&live, b);
        json!({"threshold": th, "apcer": accepted(&attacks, th)})
    };
    json!({
        "real": live.len(),
        "attack": attacks.len(),
        "no_face": scored.iter().filter(|s| s.score.is_none()).count(),
        "no_face_real": live.iter().filter(|s| s.is_none()).count(),
        "bpcer": bpcer,
        "apcer": apcer,
        "apcer_by_type": apcer_by_type,
        "acer": (apcer + bpcer) / 2.0,
        "at_bpcer_1": at(1.0),
        "at_bpcer_5": at(5.0),
    })
}

/// Leave one set out: for each set, the threshold is chosen on the *other*
/// sets' live images (BPCER 5 % over them, pooled) and applied to the set
/// left out, so its figures say how a threshold generalises to material it
/// was not chosen on.
fn leave_one_out(all: &[(String, Vec<Scored>)]) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    if all.len() < 2 {
        return out;
    }
    for (name, scored) in all {
        let others: Vec<Option<f32>> = all
            .iter()
            .filter(|(n, _)| n != name)
            .flat_map(|(_, s)| s.iter().filter(|s| s.kind == "real").map(|s| s.score))
            .collect();
        let t = threshold_for_bpcer(&others, 5.0);
        let mut f = figures(scored, t);
        f["threshold"] = json!(t);
        out.insert(name.clone(), f);
    }
    out
}

/// (APCER, BPCER) in percent over every threshold.
fn det_points(scored: &[Scored]) -> Vec<(f64, f64)> {
    let live: Vec<Option<f32>> = scored.iter().filter(|s| s.kind == "real").map(|s| s.score).collect();
    let attacks: Vec<Option<f32>> = scored.iter().filter(|s| s.kind != "real").map(|s| s.score).collect();
    let mut ts: Vec<f32> = scored.iter().filter_map(|s| s.score).collect();
    ts.push(f32::INFINITY);
    ts.sort_by(f32::total_cmp);
    ts.dedup();
    ts.iter().map(|t| (accepted(&attacks, *t), 100.0 - accepted(&live, *t))).collect()
}

/// Runs the benchmark.
pub fn run(models: &Path, args: LivenessArgs) -> Result<()> {
    let threshold = args.live_threshold.unwrap_or(THRESHOLD);
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let mut live = Liveness::load(models).context("loading the liveness models")?;
    if let Some(map) = args.box_map {
        live.box_map = map;
    }
    let specs = args
        .sets
        .iter()
        .map(|spec| {
            let (name, dir) = spec.split_once('=').with_context(|| format!("--set {spec:?}: give NAME=DIR"))?;
            Ok((name.to_string(), PathBuf::from(dir)))
        })
        .collect::<Result<Vec<_>>>()?;
    let finder = Finder::load(models)?;
    if args.sequences {
        if args.window == 0 || args.agree == 0 || args.agree > args.window {
            bail!("--agree {} must be between 1 and --window {}", args.agree, args.window);
        }
        let rules = super::liveness_clips::ClipRules {
            threshold,
            agree: args.agree,
            window: args.window,
            min_turn: args.min_turn,
            min_depth: args.min_depth,
            min_move: args.min_move,
            max_carry: args.max_carry,
        };
        let out = super::liveness_clips::run(models, &finder, &live, &specs, rules, threads, args.json)?;
        if args.json {
            facegate_core::print::print_json(&out);
        }
        return Ok(());
    }
    let mut sets = serde_json::Map::new();
    let mut curves = Vec::new();
    let mut all_scored = Vec::new();
    let (mut secs, mut faces) = (0f64, 0usize);
    for (name, dir) in &specs {
        let items: Vec<(String, String, Vec<u8>)> = labelled(dir)?
            .into_iter()
            .map(|(k, p)| {
                let b = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
                Ok((k, p.display().to_string(), b))
            })
            .collect::<Result<_>>()?;
        let (scored, s, n) = score_all(&finder, &live, &items, threads);
        (secs, faces) = (secs + s, faces + n);
        let f = figures(&scored, threshold);
        if !args.json {
            println!(
                "{name:<22} real {:>4}  attack {:>4}  no face {:>3}  BPCER {:>5.1} %  APCER {:>5.1} % {}  ACER {:>5.1} %  (BPCER 5 %: threshold {:.3}, APCER {:.1} %)",
                f["real"], f["attack"], f["no_face"], f["bpcer"].as_f64().unwrap_or(0.0), f["apcer"].as_f64().unwrap_or(0.0),
                f["apcer_by_type"], f["acer"].as_f64().unwrap_or(0.0), f["at_bpcer_5"]["threshold"].as_f64().unwrap_or(0.0),
                f["at_bpcer_5"]["apcer"].as_f64().unwrap_or(0.0),
            );
        }
        curves.push((name.to_string(), det_points(&scored)));
        sets.insert(name.to_string(), f);
        all_scored.push((name.to_string(), scored));
    }
    if let Some(path) = &args.scores_csv {
        write_scores_csv(path, &all_scored, live.crop_scales().len())?;
    }
    let lodo = leave_one_out(&all_scored);
    if !args.json {
        for (name, f) in &lodo {
            println!(
                "left out: {name:<12} threshold {:.3} (BPCER 5 % on the other sets)  BPCER {:>5.1} %  APCER {:>5.1} % {}  ACER {:>5.1} %",
                f["threshold"].as_f64().unwrap_or(0.0),
                f["bpcer"].as_f64().unwrap_or(0.0),
                f["apcer"].as_f64().unwrap_or(0.0),
                f["apcer_by_type"],
                f["acer"].as_f64().unwrap_or(0.0),
            );
        }
    }
    let b = live.box_map;
    let mut out = json!({"threshold": threshold, "sets": sets, "leave_one_out": lodo, "box_map": [b.scale_x, b.scale_y, b.shift_y],
        "ms_per_face": 1000.0 * secs / faces.max(1) as f64, "threads": threads});
    if let Some(lfw) = &args.lfw {
        let data = facegate_lfw::Dataset::open(lfw).with_context(|| format!("opening {}", lfw.display()))?;
        let names = data.names()?;
        let items: Vec<(String, String, Vec<u8>)> =
            names.iter().map(|n| data.read(n).map(|b| ("real".to_string(), n.clone(), b))).collect::<Result<_, _>>()?;
        let (scored, _, _) = score_all(&finder, &live, &items, threads);
        let scores: Vec<Option<f32>> = scored.iter().map(|s| s.score).collect();
        let lfw_fig = json!({"photos": scores.len(), "no_face": scores.iter().filter(|s| s.is_none()).count(),
            "bpcer": 100.0 - accepted(&scores, threshold)});
        if !args.json {
            println!(
                "LFW bona fide          photos {}  no face {}  BPCER {:.1} %",
                lfw_fig["photos"],
                lfw_fig["no_face"],
                lfw_fig["bpcer"].as_f64().unwrap_or(0.0)
            );
        }
        out["lfw"] = lfw_fig;
    }
    if let Some(path) = &args.plot {
        plot_det(path, &curves, threshold)?;
        if !args.json {
            println!("DET curves: {}", path.display());
        }
    }
    if args.json {
        facegate_core::print::print_json(&out);
    } else {
        println!(
            "threshold {threshold}, {:.2} ms per face (liveness only, one core)",
            out["ms_per_face"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(())
}

/// Every image's outcome as CSV, one row an image; a file name with a comma
/// or a quote is quoted.
fn write_scores_csv(path: &Path, all: &[(String, Vec<Scored>)], nets: usize) -> Result<()> {
    use std::fmt::Write as _;
    let mut csv = String::from("set,label,file,score");
    for k in 0..nets {
        let _ = write!(csv, ",net{k}_attack_a,net{k}_live,net{k}_attack_b");
    }
    csv.push('\n');
    let quoted = |f: &str| if f.contains([',', '"', '\n']) { format!("\"{}\"", f.replace('"', "\"\"")) } else { f.to_string() };
    for (set, scored) in all {
        for s in scored {
            let score = s.score.map(|v| v.to_string()).unwrap_or_default();
            let _ = write!(csv, "{},{},{},{score}", quoted(set), quoted(&s.kind), quoted(&s.file));
            for k in 0..nets {
                match s.classes.get(k) {
                    Some(p) => {
                        let _ = write!(csv, ",{},{},{}", p[0], p[1], p[2]);
                    }
                    None => csv.push_str(",,,"),
                }
            }
            csv.push('\n');
        }
    }
    std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))
}

/// A DET plot: BPCER against APCER per set, both in percent.
fn plot_det(path: &Path, curves: &[(String, Vec<(f64, f64)>)], threshold: f32) -> Result<()> {
    use plotters::prelude::*;
    let root = BitMapBackend::new(path, (900, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let fonts = crate::plot::font_available();
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20).x_label_area_size(if fonts { 45 } else { 10 }).y_label_area_size(if fonts { 55 } else { 10 });
    if fonts {
        builder.caption(format!("Liveness DET (shipped threshold {threshold})"), ("sans-serif", 22));
    }
    let mut chart = builder.build_cartesian_2d(0f64..100f64, 0f64..100f64)?;
    let mut mesh = chart.configure_mesh();
    if fonts {
        mesh.x_desc("APCER % (attacks accepted)").y_desc("BPCER % (live refused)");
    } else {
        mesh.disable_x_axis().disable_y_axis();
    }
    mesh.draw()?;
    for (i, (name, pts)) in curves.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let series = chart.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?;
        if fonts {
            series.label(name.clone()).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
    }
    if fonts {
        chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw()?;
    }
    root.present().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(real: &[f32], attack: &[f32]) -> Vec<Scored> {
        let s = |kind: &str, v: &f32| Scored { kind: kind.into(), file: String::new(), score: Some(*v), classes: vec![] };
        real.iter().map(|v| s("real", v)).chain(attack.iter().map(|v| s("print", v))).collect()
    }

    #[test]
    fn a_left_out_set_is_judged_at_the_threshold_of_the_others() {
        // Set a's live scores are high, set b's low: a threshold chosen on a
        // refuses most of b's live faces, which only the left-out view shows.
        let a = set(&(0..20).map(|i| 0.8 + i as f32 * 0.01).collect::<Vec<_>>(), &[0.1, 0.2]);
        let b = set(&[0.3, 0.35, 0.4, 0.9], &[0.05]);
        let lodo = leave_one_out(&[("a".into(), a), ("b".into(), b)]);
        let (ta, tb) = (lodo["a"]["threshold"].as_f64().unwrap(), lodo["b"]["threshold"].as_f64().unwrap());
        assert!((ta - 0.3).abs() < 1e-6, "a is judged at b's lowest live score: {ta}");
        assert!((tb - 0.81).abs() < 1e-6, "b at a's, which refuses its lowest 1 of 20 (5 %): {tb}");

        assert_eq!(lodo["b"]["bpcer"].as_f64().unwrap(), 75.0);
        assert_eq!(lodo["a"]["bpcer"].as_f64().unwrap(), 0.0);
        assert!(leave_one_out(&[("only".into(), set(&[0.9], &[0.1]))]).is_empty());
    }
}
