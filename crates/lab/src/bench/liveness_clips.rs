//! `bench liveness --sequences`: liveness judged per clip, as the door judges
//! an approach. A set holds `real/CLIP/`, `attack/CLIP/` or
//! `attack-TYPE/CLIP/` folders of consecutive frames (in file-name order,
//! numbers read as numbers). Per clip: the door's decisions (k of n frames,
//! then their mean live score: the shipped decision), and what the
//! face's motion says of depth ([`facegate_face::approach`]), alone and
//! fused with the per-frame decision.

use super::liveness::{images_in, Finder};
use anyhow::{bail, Context, Result};
use facegate_face::approach::{depth_per_turn, plane_motion, surround_motion, PlaneMotion, SurroundMotion};
use facegate_face::decode::{decode_image, DEFAULT_MAX_PIXELS};
use facegate_face::geometry::Point;
use facegate_face::liveness::{ensemble_score, is_live, Liveness};
use facegate_face::{DetectorKind, Pipeline, PipelineConfig, Precision};
use rayon::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How clips are judged.
#[derive(Debug, Clone, Copy)]
pub struct ClipRules {
    /// The live-score threshold of one frame.
    pub threshold: f32,
    /// Live frames needed among the last `window` (the door's `frames_agree`).
    pub agree: usize,
    /// The window (the door's `frames_window`); a live approach should pass within it.
    pub window: usize,
    /// A pair of frames speaks of depth when the face plane turned at least
    /// this much (eye distances).
    pub min_turn: f64,
    /// A clip whose face turned and showed less parallax per unit of turn
    /// than this moved as one flat surface: refused.
    pub min_depth: f64,
    /// A frame speaks of the surroundings when the face moved at least this
    /// much since the frame before (face widths).
    pub min_move: f64,
    /// A clip whose surroundings shared at least this share of the face's
    /// motion was carried with it (a held print or screen): refused.
    pub max_carry: f64,
}

/// One clip of a set: its label, name and frames in order.
struct Clip {
    kind: String,
    name: String,
    frames: Vec<PathBuf>,
}

/// What one frame gave: the live score (`None`: no face) and the detector's
/// five points of the largest face (`None`: YuNet found none).
#[derive(Clone, Copy)]
struct Frame {
    score: Option<f32>,
    points: Option<[Point; 5]>,
    /// How the face and its surroundings moved since the frame before.
    surround: Option<SurroundMotion>,
}

/// A clip's outcome.
struct Judged {
    kind: String,
    name: String,
    frames: usize,
    faces: usize,
    /// The frame (1-based) of the first grant.
    passed_at: Option<usize>,
    /// The door's first decision: (frame, granted).
    first_decision: Option<(usize, bool)>,
    /// Parallax per unit of turn over the pairs that turned; `None`: none did.
    depth: Option<f64>,
    /// Pairs of frames that turned enough to speak.
    turned_pairs: usize,
    /// How much of the face's motion its surroundings shared (median over
    /// consecutive frames where the face moved); `None`: it never moved enough.
    carry: Option<f64>,
}

impl Judged {
    /// Refused by the motion cues: turned as a flat surface, or moved with
    /// its surroundings.
    fn flat(&self, rules: &ClipRules) -> bool {
        self.depth.is_some_and(|d| d < rules.min_depth) || self.carry.is_some_and(|c| c >= rules.max_carry)
    }

    /// Accepted by the shipped decision alone: granted at some frame.
    fn accepted(&self) -> bool {
        self.passed_at.is_some()
    }

    /// Accepted by the shipped decision with the flatness veto.
    fn accepted_fused(&self, rules: &ClipRules) -> bool {
        self.accepted() && !self.flat(rules)
    }
}

/// Sorts file names with their digit runs read as numbers (`f_9` before `f_10`).
fn natural_key(path: &Path) -> Vec<(u64, String)> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut key = Vec::new();
    let mut chars = name.chars().peekable();
    while chars.peek().is_some() {
        let digits: String = std::iter::from_fn(|| chars.next_if(char::is_ascii_digit)).collect();
        let text: String = std::iter::from_fn(|| chars.next_if(|c| !c.is_ascii_digit())).collect();
        key.push((digits.parse().unwrap_or(0), text));
    }
    key
}

/// The clips of a set directory.
fn clips_in(dir: &Path) -> Result<Vec<Clip>> {
    let mut clips = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let kind = match name.as_str() {
            "real" | "attack" => name.clone(),
            n if n.starts_with("attack-") => n["attack-".len()..].to_string(),
            _ => continue,
        };
        for clip in std::fs::read_dir(&path).with_context(|| format!("reading {}", path.display()))? {
            let clip = clip?.path();
            if !clip.is_dir() {
                continue;
            }
            let mut frames = images_in(&clip)?;
            frames.sort_by_key(|p| natural_key(p));
            if !frames.is_empty() {
                let name = clip.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                clips.push(Clip { kind: kind.clone(), name, frames });
            }
        }
    }
    // A set of live clips alone still measures BPCER per approach.
    if !clips.iter().any(|c| c.kind == "real") {
        bail!("{} needs real/ (and attack/ or attack-TYPE/) folders of clips, each a folder of frames", dir.display());
    }
    clips.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
    Ok(clips)
}

/// The door's decisions over a clip, each recognised face taken for the
/// same person (`recognition.frames_agree` of the last `frames_window`
/// frames with a face, then the mean live score of those frames against the
/// threshold, then a fresh window): (frame, 1-based; granted). `window`
/// frames without a face empty the window, as at the door. The door's
/// cooldown after a decision is not modelled (the frames' times are not
/// known): every later window gets its chance, which favours attacks.
fn door_decisions(scores: &[Option<f32>], agree: usize, window: usize, threshold: f32) -> Vec<(usize, bool)> {
    let (mut ring, mut empty, mut out) = (std::collections::VecDeque::new(), 0, Vec::new());
    for (i, score) in scores.iter().enumerate() {
        let Some(score) = score else {
            empty += 1;
            if empty >= window {
                ring.clear();
            }
            continue;
        };
        empty = 0;
        if ring.len() == window {
            ring.pop_front();
        }
        ring.push_back(*score);
        if ring.len() >= agree {
            let mean = ring.iter().sum::<f32>() / ring.len() as f32;
            out.push((i + 1, is_live(mean, threshold)));
            ring.clear();
        }
    }
    out
}

/// The plane motions between every pair of frames less than `window` apart.
fn motions(frames: &[Frame], window: usize) -> Vec<PlaneMotion> {
    let mut out = Vec::new();
    for (i, a) in frames.iter().enumerate() {
        for b in frames.iter().skip(i + 1).take(window - 1) {
            if let (Some(pa), Some(pb)) = (&a.points, &b.points) {
                out.extend(plane_motion(pa, pb));
            }
        }
    }
    out
}

fn judge(clip: &Clip, frames: &[Frame], rules: &ClipRules) -> Judged {
    let scores: Vec<Option<f32>> = frames.iter().map(|f| f.score).collect();
    let decisions = door_decisions(&scores, rules.agree, rules.window, rules.threshold);
    let moved = motions(frames, rules.window);
    Judged {
        kind: clip.kind.clone(),
        name: clip.name.clone(),
        frames: frames.len(),
        faces: frames.iter().filter(|f| f.score.is_some()).count(),
        passed_at: decisions.iter().find(|(_, granted)| *granted).map(|(frame, _)| *frame),
        first_decision: decisions.first().copied(),
        depth: depth_per_turn(&moved, rules.min_turn),
        turned_pairs: moved.iter().filter(|m| m.turn >= rules.min_turn).count(),
        carry: median(
            frames.iter().filter_map(|f| f.surround).filter(|m| m.face >= rules.min_move).map(|m| m.surround / m.face).collect(),
        ),
    }
}

/// Percent of `clips` that `accept` takes.
fn percent(clips: &[&Judged], accept: impl Fn(&Judged) -> bool) -> f64 {
    100.0 * clips.iter().filter(|c| accept(c)).count() as f64 / clips.len().max(1) as f64
}

/// The figures of one set's clips.
fn figures(judged: &[Judged], rules: &ClipRules) -> Value {
    let real: Vec<&Judged> = judged.iter().filter(|j| j.kind == "real").collect();
    let mut by_type: BTreeMap<&str, Vec<&Judged>> = BTreeMap::new();
    for j in judged.iter().filter(|j| j.kind != "real") {
        by_type.entry(&j.kind).or_default().push(j);
    }
    // A live person let in by the door's first decision, within the window's frames.
    let within = |j: &Judged, fused: bool| {
        j.first_decision.is_some_and(|(f, granted)| granted && f <= rules.window) && (!fused || !j.flat(rules))
    };
    let apcer = |accept: &dyn Fn(&Judged) -> bool| -> BTreeMap<&str, f64> {
        by_type.iter().map(|(k, v)| (*k, percent(v, accept))).collect()
    };
    let depths = |clips: &[&Judged]| -> Vec<f64> { clips.iter().filter_map(|j| j.depth).collect() };
    let carries = |clips: &[&Judged]| -> Vec<f64> { clips.iter().filter_map(|j| j.carry).collect() };
    let attacks: Vec<&Judged> = by_type.values().flatten().copied().collect();
    json!({
        "clips_real": real.len(),
        "clips_attack": attacks.len(),
        "frames": judged.iter().map(|j| j.frames).sum::<usize>(),
        "per_frame": {
            "bpcer_approach": 100.0 - percent(&real, |j| within(j, false)),
            "bpcer_clip": 100.0 - percent(&real, Judged::accepted),
            "apcer_by_type": apcer(&Judged::accepted),
        },
        "fused": {
            "bpcer_approach": 100.0 - percent(&real, |j| within(j, true)),
            "bpcer_clip": 100.0 - percent(&real, |j| j.accepted_fused(rules)),
            "apcer_by_type": apcer(&|j: &Judged| j.accepted_fused(rules)),
        },
        "depth": {
            "real_with_verdict": depths(&real).len(),
            "attack_with_verdict": depths(&attacks).len(),
            "real_flat": real.iter().filter(|j| j.flat(rules)).count(),
            "attack_flat": attacks.iter().filter(|j| j.flat(rules)).count(),
            "real_median": median(depths(&real)),
            "attack_median": median(depths(&attacks)),
            "auc": auc(&depths(&real), &depths(&attacks)),
        },
        "carry": {
            "real_with_verdict": carries(&real).len(),
            "attack_with_verdict": carries(&attacks).len(),
            "real_median": median(carries(&real)),
            "attack_median": median(carries(&attacks)),
            "real_carried": real.iter().filter(|j| j.carry.is_some_and(|c| c >= rules.max_carry)).count(),
            "attack_carried": attacks.iter().filter(|j| j.carry.is_some_and(|c| c >= rules.max_carry)).count(),
            // Live clips should carry less: the attacks' values rank above.
            "auc": auc(&carries(&attacks), &carries(&real)),
        },
        "clips": judged.iter().map(|j| json!({
            "clip": j.name, "kind": j.kind, "frames": j.frames, "faces": j.faces,
            "passed_at": j.passed_at, "first_decision": j.first_decision.map(|(frame, granted)| json!({"frame": frame, "granted": granted})),
            "depth": j.depth, "turned_pairs": j.turned_pairs, "carry": j.carry,
        })).collect::<Vec<_>>(),
    })
}

/// How often a live clip shows more depth than an attack clip (ties count
/// half): 1 separates, 0.5 is chance. `None` without both.
fn auc(real: &[f64], attack: &[f64]) -> Option<f64> {
    if real.is_empty() || attack.is_empty() {
        return None;
    }
    let wins: f64 =
        real.iter().flat_map(|r| attack.iter().map(move |a| f64::from(u8::from(r > a)) + if r == a { 0.5 } else { 0.0 })).sum();
    Some(wins / (real.len() * attack.len()) as f64)
}

/// The median, `None` for no values.
fn median(values: Vec<f64>) -> Option<f64> {
    (!values.is_empty()).then(|| facegate_core::stats::median(values))
}

/// Scores every frame of `clips` (the per-image bench's face finder and
/// ensemble; YuNet's five points for the motion cue) on `threads` workers.
fn score_frames(
    (finder, yunet, live): (&Finder, &Pipeline, &Liveness),
    pool: &rayon::ThreadPool,
    clips: &[Clip],
) -> Result<Vec<Vec<Frame>>> {
    // A clip's frames in order on one worker: each frame is matched against the one before.
    let clip_frames = |clip: &Clip| -> Result<Vec<Frame>> {
        let mut before: Option<(image::GrayImage, facegate_face::Rect)> = None;
        let mut out = Vec::with_capacity(clip.frames.len());
        for path in &clip.frames {
            let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let Ok(img) = decode_image(&bytes, DEFAULT_MAX_PIXELS) else {
                out.push(Frame { score: None, points: None, surround: None });
                before = None;
                continue;
            };
            let face = finder.face(&img);
            let score =
                face.and_then(|face| live.class_probabilities(&img, live.box_map.apply(face)).ok()).map(|c| ensemble_score(&c));
            let points = yunet.detect(&img).into_iter().max_by_key(|d| d.rect.area()).and_then(|d| d.points);
            let gray = image::DynamicImage::ImageRgb8(img).to_luma8();
            let surround = before.as_ref().and_then(|(prev, rect)| surround_motion(prev, &gray, *rect));
            before = face.map(|rect| (gray, rect));
            out.push(Frame { score, points, surround });
        }
        Ok(out)
    };
    pool.install(|| clips.par_iter().map(clip_frames).collect())
}

/// Runs `--sequences` over `sets` (NAME, DIR); prints per set and returns the JSON.
pub(super) fn run(
    models: &Path,
    finder: &Finder,
    live: &Liveness,
    sets: &[(String, PathBuf)],
    rules: ClipRules,
    threads: usize,
    quiet: bool,
) -> Result<Value> {
    let config = PipelineConfig { detector: DetectorKind::Yunet, min_face: 40, ..PipelineConfig::door() };
    let yunet = Pipeline::load(models, Precision::Int8, config)?;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    let mut out = serde_json::Map::new();
    for (name, dir) in sets {
        let clips = clips_in(dir)?;
        let frames = score_frames((finder, &yunet, live), &pool, &clips)?;
        let judged: Vec<Judged> = clips.iter().zip(&frames).map(|(c, f)| judge(c, f, &rules)).collect();
        let f = figures(&judged, &rules);
        if !quiet {
            let pct = |v: &Value| v.as_f64().unwrap_or(0.0);
            println!(
                "{name:<22} clips real {:>3} attack {:>3}  per frame: BPCER per approach {:>5.1} %  APCER {}  |  with the motion cues: BPCER {:>5.1} %  APCER {}  (depth AUC {}, carry AUC {})",
                f["clips_real"], f["clips_attack"], pct(&f["per_frame"]["bpcer_approach"]), f["per_frame"]["apcer_by_type"],
                pct(&f["fused"]["bpcer_approach"]), f["fused"]["apcer_by_type"], f["depth"]["auc"], f["carry"]["auc"],
            );
        }
        out.insert(name.clone(), f);
    }
    Ok(json!({
        "threshold": rules.threshold, "agree": rules.agree, "window": rules.window,
        "min_turn": rules.min_turn, "min_depth": rules.min_depth, "min_move": rules.min_move, "max_carry": rules.max_carry,
        "sets": out,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_sort_with_their_numbers_read_as_numbers() {
        let mut names: Vec<PathBuf> = ["s_1_112.jpg", "s_1_12.jpg", "s_1_0.jpg", "s_2_3.jpg"].map(PathBuf::from).to_vec();
        names.sort_by_key(|p| natural_key(p));
        assert_eq!(names, ["s_1_0.jpg", "s_1_12.jpg", "s_1_112.jpg", "s_2_3.jpg"].map(PathBuf::from));
    }

    #[test]
    fn the_door_decides_on_the_mean_live_score_of_k_frames_then_starts_afresh() {
        let d = |scores: &[Option<f32>]| door_decisions(scores, 3, 5, 0.5);
        assert_eq!(d(&[Some(0.9), Some(0.9), Some(0.9)]), vec![(3, true)]);
        // One weak frame among strong ones: the mean passes, as at the door.
        assert_eq!(d(&[Some(0.9), Some(0.2), Some(0.9)]), vec![(3, true)]);
        assert_eq!(d(&[Some(0.4), Some(0.5), Some(0.5), Some(0.9), Some(0.9), Some(0.9)]), vec![(3, false), (6, true)]);
        // Frames without a face add nothing; five in a row empty the window.
        let gap = [Some(0.9), None, Some(0.9), None, None, None, None, None, Some(0.9), Some(0.9)];
        assert_eq!(d(&gap), vec![]);
        assert_eq!(d(&[Some(0.9), None, Some(0.9), Some(0.9)]), vec![(4, true)]);
        assert_eq!(d(&[]), vec![]);
        assert_eq!(d(&[Some(f32::NAN), Some(0.9), Some(0.9)]), vec![(3, false)], "NaN never passes");
    }

    #[test]
    fn depth_separation_is_counted_over_every_pair() {
        assert_eq!(auc(&[2.0, 3.0], &[1.0]), Some(1.0));
        assert_eq!(auc(&[1.0], &[1.0, 2.0]), Some(0.25));
        assert_eq!(auc(&[], &[1.0]), None);
    }

    #[test]
    fn a_flat_clip_is_refused_only_with_a_depth_verdict() {
        let rules =
            ClipRules { threshold: 0.5, agree: 3, window: 5, min_turn: 0.02, min_depth: 0.5, min_move: 0.05, max_carry: 0.6 };
        let clip = |depth| Judged {
            kind: "attack".into(),
            name: "c".into(),
            frames: 5,
            faces: 5,
            passed_at: Some(3),
            first_decision: Some((3, true)),
            depth,
            turned_pairs: 1,
            carry: None,
        };
        assert!(clip(None).accepted_fused(&rules), "no turn, no verdict: the per-frame decision stands");
        assert!(!clip(Some(0.1)).accepted_fused(&rules));
        assert!(clip(Some(0.9)).accepted_fused(&rules));
    }
}
