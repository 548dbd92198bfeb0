//! `host-tool bench speed`: per-stage timings on one core, median of repeated runs, and whole-frame
//! throughput on every core; dlib itself is measured on the same frame when a Python with dlib-bin is given.

use anyhow::{bail, Context, Result};
use clap::Args;
use facegate_core::stats::{in_turns, median};
use facegate_face::chip::face_chip;
use facegate_face::cores::Cores;
use facegate_face::decode::{decode_image, DEFAULT_MAX_PIXELS};
use facegate_face::detect::cnn::CnnDetector;
use facegate_face::detect::yunet::YunetDetector;
use facegate_face::pipeline::{CNN_DETECTOR_FILE, YUNET_DETECTOR_FILE};
use facegate_face::{Embedder, Network, Pipeline, PipelineConfig, Precision};
use image::{imageops, Rgb, RgbImage};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

/// Arguments of `bench speed`.
#[derive(Args)]
pub struct SpeedArgs {
    /// LFW (lfw.tgz or directory) to take a face from; default ../shared/datasets/lfw.
    #[arg(long)]
    lfw: Option<PathBuf>,
    /// Runs per stage (the median is reported).
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// Precision of the `frame_ms` pipeline.
    #[arg(long, default_value = "int8", value_parser = Precision::from_str)]
    precision: Precision,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Threads for the throughput figure (`fps`), each running whole frames
    /// through the door pipeline; default: every core.
    #[arg(long)]
    threads: Option<usize>,
    /// A Python interpreter with dlib-bin: measures dlib on the same frame for the ratio.
    #[arg(long)]
    dlib_python: Option<PathBuf>,
    /// Directory with dlib's .dat files (for --dlib-python).
    #[arg(long)]
    dlib_models: Option<PathBuf>,
    /// Also write the 640×480 frame measured here as a PNG (for `device bench
    /// --source replay:DIR` on the unit: the same frame there).
    #[arg(long)]
    save_frame: Option<PathBuf>,
}

/// The face image used: the first image of LFW's pairs.
const FACE: &str = "Abel_Pacheco/Abel_Pacheco_0001.jpg";

fn median_ms<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut last = f(); // warm-up (plans, caches)
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        last = std::hint::black_box(f());
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    (median(times), last)
}

/// Medians in milliseconds of `a` and of `b` run in turns, and the median of
/// each turn's ratio b / a: on a machine whose speed drifts (a shared VM) a
/// ratio of two separately measured medians moves with the drift.
fn alternating_median_ms<T, U>(runs: usize, mut a: impl FnMut() -> T, mut b: impl FnMut() -> U) -> (f64, f64, f64) {
    let timed = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64() * 1000.0
    };
    // One warm-up turn (plans, caches, threads).
    let (times_a, times_b) =
        in_turns(runs, 1, || timed(&mut || drop(std::hint::black_box(a()))), || timed(&mut || drop(std::hint::black_box(b()))));
    medians_and_ratio(times_a, times_b)
}

/// The medians of two series timed in turns, and the median of each turn's ratio b / a.
fn medians_and_ratio(times_a: Vec<f64>, times_b: Vec<f64>) -> (f64, f64, f64) {
    let ratios = times_a.iter().zip(&times_b).map(|(a, b)| b / a).collect();
    (median(times_a), median(times_b), median(ratios))
}

/// As [`alternating_median_ms`], but each turn runs `a` (then `b`) once
/// untimed right before its timed run: a stage split over a pool whose
/// workers slept through the other's turn would otherwise be timed waking
/// them, which a door's frame (detection split over the same workers just
/// before) does not pay.
fn alternating_warm_median_ms(runs: usize, a: &dyn Fn(), b: &dyn Fn()) -> (f64, f64, f64) {
    let warm_then_timed = |f: &dyn Fn()| {
        f();
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64() * 1000.0
    };
    let (times_a, times_b) = in_turns(runs, 1, || warm_then_timed(a), || warm_then_timed(b));
    medians_and_ratio(times_a, times_b)
}

/// A 640×480 door-camera-like frame: the LFW photo scaled ×1.5 on a grey background.
fn door_frame(face: &RgbImage) -> RgbImage {
    let mut frame = RgbImage::from_pixel(640, 480, Rgb([118, 118, 118]));
    let scaled = imageops::resize(face, face.width() * 3 / 2, face.height() * 3 / 2, imageops::FilterType::Triangle);
    imageops::overlay(&mut frame, &scaled, (640 - scaled.width() as i64) / 2, (480 - scaled.height() as i64) / 2);
    frame
}

const DLIB_SCRIPT: &str = r#"
import dlib, json, sys, time
import numpy as np
from PIL import Image
img = np.array(Image.open(sys.argv[1]).convert("RGB"))
runs = int(sys.argv[3])
det = dlib.get_frontal_face_detector()
sp = dlib.shape_predictor(sys.argv[2] + "/shape_predictor_5_face_landmarks.dat")
fr = dlib.face_recognition_model_v1(sys.argv[2] + "/dlib_face_recognition_resnet_model_v1.dat")
def med(f):
    f(); ts = []
    for _ in range(runs):
        t = time.perf_counter(); f(); ts.append((time.perf_counter() - t) * 1000)
    return sorted(ts)[len(ts) // 2]
box = det(img, 0)[0]
shape = sp(img, box)
out = {"detect_ms": med(lambda: det(img, 0)), "landmarks_ms": med(lambda: sp(img, box)),
       "descriptor_ms": med(lambda: fr.compute_face_descriptor(img, shape))}
print(json.dumps(out))
"#;

fn measure_dlib(python: &Path, models: &Path, frame: &RgbImage, runs: usize) -> Result<serde_json::Value> {
    let dir = std::env::temp_dir().join(format!("facegate-speed-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let frame_path = dir.join("frame.png");
    frame.save(&frame_path)?;
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(DLIB_SCRIPT)
        .arg(&frame_path)
        .arg(models)
        .arg(runs.to_string())
        .env("OMP_NUM_THREADS", "1")
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        bail!("dlib reference failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Runs the benchmark and prints the result.
pub fn run(models: &Path, network: Network, args: SpeedArgs) -> Result<()> {
    if args.runs < 1 {
        bail!("--runs must be at least 1");
    }
    let lfw = match args.lfw {
        Some(p) => p,
        None => facegate_lfw::locate(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
            .map(|(images, _)| images)
            .context("no LFW found: pass --lfw <lfw.tgz|dir> (a face photo is needed for a realistic frame)")?,
    };
    let data = facegate_lfw::Dataset::open(&lfw)?;
    let face = decode_image(&data.read(FACE)?, DEFAULT_MAX_PIXELS)?;
    let frame = door_frame(&face);
    if let Some(path) = &args.save_frame {
        frame.save(path).with_context(|| format!("writing the frame to {}", path.display()))?;
    }
    let mut jpeg = std::io::Cursor::new(Vec::new());
    frame.write_to(&mut jpeg, image::ImageFormat::Jpeg)?;
    let jpeg = jpeg.into_inner();

    // The door configuration: HOG at native resolution, faces ≥ 100 px, one network run per face.
    let pipeline = Pipeline::load(models, args.precision, PipelineConfig { network, ..PipelineConfig::door() })?;
    // The other network at its shipped precision, for the in-run ratios.
    let other_network = network.other();
    let other = Pipeline::load(models, Precision::Int8, PipelineConfig { network: other_network, ..PipelineConfig::door() })?;
    let n = args.runs;
    let (decode_ms, _) = median_ms(n, || decode_image(&jpeg, DEFAULT_MAX_PIXELS).expect("decodes"));
    let (detect_ms, dets) = median_ms(n, || pipeline.detect(&frame));
    // HOG on the doubled frame (faces down to ~40 px) and the photo pipeline's
    // CNN detector on the frame, for the choice between them.
    let (detect_hog_x2_ms, _) = median_ms(n.div_ceil(5), || pipeline.detector.detect(&frame, 1, 0.0));
    let cnn = CnnDetector::from_bytes(&facegate_face::model_files::ModelDir::open(models)?.read(CNN_DETECTOR_FILE)?)?;
    let (detect_cnn_ms, cnn_dets) = median_ms(n.div_ceil(5), || cnn.detect(&frame, 0, 0.0).expect("runs"));
    if cnn_dets.is_empty() {
        bail!("the CNN detector found no face in the benchmark frame");
    }
    let yunet = YunetDetector::from_bytes(&facegate_face::model_files::ModelDir::open(models)?.read(YUNET_DETECTOR_FILE)?)?;
    // As the door runs it (its smallest face, 100 px, decides the input's
    // scale: 154×115), and at the full 320 px for faces down to ~24 px.
    let door_min_face = PipelineConfig::door().min_face;
    let (detect_yunet_ms, yunet_dets) = median_ms(n, || yunet.detect_min(&frame, 0.0, door_min_face).expect("runs"));
    let (detect_yunet_320_ms, _) = median_ms(n, || yunet.detect(&frame, 0.0).expect("runs"));
    if yunet_dets.is_empty() {
        bail!("YuNet found no face in the benchmark frame");
    }
    let Some(det) = dets.first().copied() else { bail!("no face found in the benchmark frame") };
    let (landmarks_ms, landmarks) = median_ms(n, || pipeline.landmarks.predict(&frame, det.rect));
    let (chip_ms, chip) = match network {
        Network::Dlib => median_ms(n, || face_chip(&frame, &landmarks)),
        // SFace's chip from the detection (HOG has no points: dlib's landmarks on their template).
        Network::Sface => median_ms(n, || pipeline.align(&frame, det).chip),
    };
    // Every precision the network ships on the same chip in the same run; the pipeline's own is one of them.
    let mut embed_by_precision = Vec::new();
    let shipped: &[Precision] = match network {
        Network::Dlib => &[Precision::F32, Precision::Int8, Precision::QInt8],
        Network::Sface => &[Precision::F32],
    };
    for &precision in shipped {
        let ms = if precision == pipeline.embedder.precision() {
            median_ms(n, || pipeline.embedder.embed(&chip).expect("embeds")).0
        } else {
            let net = Embedder::load(models, network, precision)?;
            median_ms(n, || net.embed(&chip).expect("embeds")).0
        };
        embed_by_precision.push((precision, ms));
    }
    let embed_ms_of = |p: Precision| embed_by_precision.iter().find(|(q, _)| *q == p).map_or(f64::NAN, |(_, ms)| *ms);
    let embed_default = embed_ms_of(pipeline.embedder.precision());
    // The other network's embedding of its own chip of the same face, timed in turns with ours.
    let other_chip = other.align(&frame, det).chip;
    let (_, other_embed_ms, embed_ratio_vs_other) = alternating_median_ms(
        n,
        || drop(std::hint::black_box(pipeline.embedder.embed(&chip))),
        || drop(std::hint::black_box(other.embedder.embed(&other_chip))),
    );
    // Liveness: both networks of the ensemble on the face, as the door runs them.
    let liveness = facegate_face::liveness::Liveness::load(models)?;
    let (liveness_ms, _) = median_ms(n, || liveness.score(&frame, det.rect).expect("scores"));
    let (frame_ms_without_liveness, _) = median_ms(n, || {
        let faces = pipeline.faces(&frame);
        faces.iter().map(|f| pipeline.embed(f).expect("embeds")).collect::<Vec<_>>()
    });
    // The door's frame as configured by default (liveness required): every face
    // embedded, and the recognised one checked for liveness.
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |c| c.get())).max(1);
    let cores = (threads > 1).then(|| Cores::new(threads, "bench")).transpose().context("starting the bench threads")?;
    // One door frame: every face embedded, the first one's liveness scored;
    // with `cores`, as the device does at recognition.threads ≥ 2 with one
    // frame at a time: the detector split over the workers, then liveness on
    // another core beside the alignment and embedding (which split over the
    // workers only when there is no live score to compute beside them).
    let door_frame_of = |pipeline: &Pipeline, cores: Option<&Cores>| {
        let live = |rect: facegate_face::Rect| liveness.score(&frame, rect).expect("scores");
        let Some(cores) = cores else {
            let faces = pipeline.faces(&frame);
            let embedded = faces.iter().map(|f| pipeline.embed(f).expect("embeds")).collect::<Vec<_>>();
            return (embedded, faces.first().map(|f| live(f.detection.rect)));
        };
        // Liveness needs only the box: it starts while the faces are aligned and embedded.
        let dets = cores.split(|| pipeline.detect(&frame));
        let embed_all = || dets.iter().map(|d| pipeline.embed(&pipeline.align(&frame, *d)).expect("embeds")).collect::<Vec<_>>();
        match dets.first() {
            // Two whole stages on two cores: splitting the embedding's
            // products as well only made them wait for a descheduled worker.
            Some(first) => std::thread::scope(|s| {
                let scorer = s.spawn(|| live(first.rect));
                (embed_all(), Some(scorer.join().expect("liveness thread")))
            }),
            None => (cores.split(embed_all), None),
        }
    };
    let door_frame_once = |cores: Option<&Cores>| door_frame_of(&pipeline, cores);
    // The whole door frame on every thread with this network and with the
    // other, in turns: the ratio the choice of network costs.
    let (_, frame_ms_other_network, frame_ratio_vs_other) =
        alternating_median_ms(n, || door_frame_of(&pipeline, cores.as_ref()), || door_frame_of(&other, cores.as_ref()));
    let (frame_ms_1_thread, frame_ms, frame_ratio) = match &cores {
        Some(c) => alternating_median_ms(n, || door_frame_once(None), || door_frame_once(Some(c))),
        None => {
            let ms = median_ms(n, || door_frame_once(None)).0;
            (ms, ms, 1.0)
        }
    };
    // One stage on every core (tract's kernels splitting each product, HOG
    // its pyramid), timed in turns with the stage on one thread: the time on
    // every core and the median of the turns' ratios.
    let on_threads = |f: &dyn Fn()| match &cores {
        Some(c) => {
            let (_, ms, ratio) = alternating_warm_median_ms(n, f, &|| c.split(f));
            (ms, ratio)
        }
        None => (median_ms(n, f).0, 1.0),
    };
    let (embed_threads_ms, embed_ratio) = on_threads(&|| {
        std::hint::black_box(pipeline.embedder.embed(&chip).expect("embeds"));
    });
    let (detect_threads_ms, detect_ratio) = on_threads(&|| drop(pipeline.detect(&frame)));
    let (yunet_threads_ms, yunet_ratio) = on_threads(&|| drop(yunet.detect_min(&frame, 0.0, door_min_face).expect("runs")));
    let (liveness_threads_ms, liveness_ratio) = on_threads(&|| {
        std::hint::black_box(liveness.score(&frame, det.rect).expect("scores"));
    });
    // Whole frames on every core at once, as the door pipelines them (each
    // frame's latency stays about one frame's), in blocks: each block times
    // frames on one thread, then as many on every thread at once, so the
    // throughput ratio compares runs a moment apart (see `alternating_median_ms`).
    let (blocks, per_block) = (5, n.div_ceil(5).max(2));
    let (fps_frames_in_parallel, fps_ratio) =
        runs_in_parallel(threads, blocks, per_block, &|| drop(std::hint::black_box(door_frame_once(None))));
    // The embedding's throughput on every core: one face per core at once
    // (enrolment, benchmarks, a door with several faces in view).
    let (embeds_per_s, embed_parallel_ratio) = runs_in_parallel(threads, blocks, per_block, &|| {
        std::hint::black_box(pipeline.embedder.embed(&chip).expect("embeds"));
    });
    // Where the whole-frame time goes, measured inside the same loop.
    let (mut in_detect, mut in_rest) = (Vec::with_capacity(n), Vec::<f64>::with_capacity(n));
    for _ in 0..n {
        let t = Instant::now();
        let dets = pipeline.detect(&frame);
        let t1 = Instant::now();
        let faces: Vec<_> = dets.into_iter().map(|d| pipeline.align(&frame, d)).collect();
        std::hint::black_box(faces.iter().map(|f| pipeline.embed(f).expect("embeds")).collect::<Vec<_>>());
        in_detect.push((t1 - t).as_secs_f64() * 1000.0);
        in_rest.push(t1.elapsed().as_secs_f64() * 1000.0);
    }
    let mut json = serde_json::json!({
        "frame_detect_ms": median(in_detect),
        "frame_face_ms": median(in_rest),
        "decode_ms": decode_ms,
        "detect_ms_640x480": detect_ms,
        "detect_ms_640x480_cnn": detect_cnn_ms,
        "detect_ms_640x480_yunet": detect_yunet_ms,
        "detect_ms_640x480_yunet_320": detect_yunet_320_ms,
        "threads": threads,
        // The door pipelines whole frames over its cores: that is its frame rate.
        "fps": if threads > 1 { fps_frames_in_parallel } else { 1000.0 / frame_ms },
        "frame_ms_1_thread": frame_ms_1_thread,
        // The median of the ratios of frames measured in turns (see `alternating_median_ms`).
        "frame_ratio_vs_1_thread": frame_ratio,
        "fps_frames_in_parallel": fps_frames_in_parallel,
        // Throughput on every core against one, the median of the blocks' ratios.
        "fps_ratio_vs_1_thread": fps_ratio,
        "detect_ms_640x480_hog_x2": detect_hog_x2_ms,
        "landmarks_ms": landmarks_ms,
        "chip_ms": chip_ms,
        "embed_ms_f32": embed_ms_of(Precision::F32),
        "embed_ms_int8": embed_ms_of(Precision::Int8),
        "embed_ms_qint8": embed_ms_of(Precision::QInt8),
        "embed_ms_threads": embed_threads_ms,
        "embed_ms_per_face_in_parallel": 1000.0 / embeds_per_s,
        "embed_parallel_ratio_vs_1_thread": embed_parallel_ratio,
        "detect_ms_640x480_yunet_threads": yunet_threads_ms,
        "detect_ms_640x480_threads": detect_threads_ms,
        "liveness_ms_threads": liveness_threads_ms,
        // Each stage on every core against one thread, timed in turns.
        "embed_ratio_vs_1_thread": embed_ratio,
        "detect_ratio_vs_1_thread": detect_ratio,
        "detect_yunet_ratio_vs_1_thread": yunet_ratio,
        "liveness_ratio_vs_1_thread": liveness_ratio,
        "frame_ms": frame_ms,
        "frame_ms_without_liveness": frame_ms_without_liveness,
        "liveness_ms": liveness_ms,
        "network": network.as_str(),
        "precision": pipeline.embedder.precision().as_str(),
        "other_network": other_network.as_str(),
        "embed_ms_other_network": other_embed_ms,
        // This network's time over the other's, each a median of ratios timed in turns.
        "embed_ratio_vs_other_network": 1.0 / embed_ratio_vs_other,
        "frame_ms_other_network": frame_ms_other_network,
        "frame_ratio_vs_other_network": 1.0 / frame_ratio_vs_other,
        "runs": n,
        "face_box_px": det.rect.width(),
    });
    if let Some(py) = &args.dlib_python {
        let dat = args.dlib_models.as_deref().context("--dlib-python needs --dlib-models DIR")?;
        let d = measure_dlib(py, dat, &frame, n)?;
        let get = |k: &str| d[k].as_f64().unwrap_or(f64::NAN);
        let dlib_face = get("landmarks_ms") + get("descriptor_ms");
        let ours_face = landmarks_ms + chip_ms + embed_default;
        json["dlib"] = d.clone();
        json["speedup_per_face_vs_dlib"] = (dlib_face / ours_face).into();
        json["speedup_frame_vs_dlib"] = ((get("detect_ms") + dlib_face) / frame_ms).into();
    }
    if args.json {
        println!("{json}");
    } else {
        println!("one core, median of {n} runs, 640×480 frame with one {} px face", det.rect.width());
        for key in [
            "decode_ms",
            "detect_ms_640x480",
            "detect_ms_640x480_cnn",
            "detect_ms_640x480_yunet",
            "detect_ms_640x480_yunet_320",
            "landmarks_ms",
            "chip_ms",
            "embed_ms_f32",
            "embed_ms_int8",
            "embed_ms_qint8",
            "liveness_ms",
            "frame_ms_without_liveness",
            "frame_ms",
        ] {
            println!("  {key:<24} {:>8.2}", json[key].as_f64().unwrap_or(f64::NAN));
        }
        println!(
            "  frame_ms on {threads} threads {frame_ms:>8.2}  ({frame_ratio:.2}× the 1-thread {frame_ms_1_thread:.2}; {:.1} fps; whole frames on every core at once: {fps_frames_in_parallel:.1} fps, {fps_ratio:.2}× one core's)",
            1000.0 / frame_ms
        );
        println!(
            "  one stage on {threads} threads (× its 1-thread time, in turns): embed {embed_threads_ms:.2} ms ({embed_ratio:.2}×), HOG {detect_threads_ms:.2} ms ({detect_ratio:.2}×), YuNet {yunet_threads_ms:.2} ms ({yunet_ratio:.2}×), liveness {liveness_threads_ms:.2} ms ({liveness_ratio:.2}×)"
        );
        println!(
            "  embeddings on every core at once: {:.2} ms per face ({embed_parallel_ratio:.2}× one core's rate)",
            1000.0 / embeds_per_s
        );
        println!(
            "  network {network}: embed {embed_default:.2} ms, {:.2}× {other_network}'s {other_embed_ms:.2} ms; whole door frame on {threads} threads {:.2}× {other_network}'s {frame_ms_other_network:.2} ms",
            1.0 / embed_ratio_vs_other,
            1.0 / frame_ratio_vs_other
        );
        if let Some(r) = json.get("speedup_per_face_vs_dlib") {
            println!(
                "  per face vs dlib-bin  {:.1}×   whole frame vs dlib-bin  {:.1}×",
                r.as_f64().unwrap_or(f64::NAN),
                json["speedup_frame_vs_dlib"].as_f64().unwrap_or(f64::NAN)
            );
        }
    }
    Ok(())
}

/// `f` on `threads` threads at once, in `blocks`: each block runs `f`
/// `per_block` times on one thread, then as many times on every thread at
/// once, so each ratio compares runs a moment apart (see
/// `alternating_median_ms`). Runs per second on every thread, and the median
/// of the blocks' ratios to one thread's rate.
fn runs_in_parallel(threads: usize, blocks: usize, per_block: usize, f: &(dyn Fn() + Sync)) -> (f64, f64) {
    let (mut runs, mut seconds, mut ratios) = (0, 0.0, Vec::with_capacity(blocks));
    for _ in 0..blocks {
        let start = Instant::now();
        (0..per_block).for_each(|_| f());
        let one_thread_rate = per_block as f64 / start.elapsed().as_secs_f64();
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| (0..per_block).for_each(|_| f()));
            }
        });
        let elapsed = start.elapsed().as_secs_f64();
        runs += threads * per_block;
        seconds += elapsed;
        ratios.push((threads * per_block) as f64 / elapsed / one_thread_rate);
    }
    (runs as f64 / seconds, median(ratios))
}
