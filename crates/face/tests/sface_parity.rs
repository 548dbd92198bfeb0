//! SFace against OpenCV and onnxruntime, on numbers written by
//! `tests/reference/make_sface_reference.py` (pinned OpenCV 5.1, onnxruntime
//! 1.32, the original block-quantised network) from 220 LFW images.
//! The synthetic inputs always run; the LFW cases skip loudly without LFW.

use facegate_face::arcface::{arcface_chip, ArcfacePlacement};
use facegate_face::decode::{decode_image, DEFAULT_MAX_PIXELS};
use facegate_face::pipeline::YUNET_DETECTOR_FILE;
use facegate_face::{detect::yunet::YunetDetector, Embedder, Network, Point, Precision};
use facegate_testkit::workspace;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tract_onnx::prelude::*;

/// Largest difference per output between tract on our f32 file and
/// onnxruntime on the original (the bound).
const BOUND_OUTPUT: f32 = 1e-4;
/// Largest distance between where our chip and OpenCV's `alignCrop` take a pixel from.
const BOUND_ALIGNMENT_PX: f64 = 0.5;
/// Smallest cosine between our embedding and OpenCV's, from the same five points.
const BOUND_COSINE: f32 = 0.999;

fn reference() -> Value {
    let path = workspace().join("tests/reference/sface_reference.json");
    serde_json::from_slice(&std::fs::read(path).expect("tests/reference/sface_reference.json")).expect("JSON")
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number") as f32).collect()
}

fn points(v: &Value) -> Vec<Point> {
    v.as_array().expect("array").iter().map(|p| Point::new(p[0].as_f64().unwrap(), p[1].as_f64().unwrap())).collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

/// The reference script's synthetic input `k`: 1×3×112×112 values in 0..255.
fn synthetic_input(k: usize) -> Tensor {
    const PRIMES: [u64; 3] = [7919, 104729, 1299709];
    let data: Vec<f32> = (0..3 * 112 * 112u64).map(|i| ((i * PRIMES[k] + 31 * k as u64) % 256) as f32).collect();
    Tensor::from_shape(&[1, 3, 112, 112], &data).expect("shape")
}

#[test]
fn tract_on_the_expanded_file_matches_onnxruntime_on_the_original() {
    let r = reference();
    let path = workspace().join("models/face_sface_f32.onnx");
    let plan = tract_onnx::onnx()
        .model_for_path(&path)
        .and_then(|m| m.with_input_fact(0, f32::fact([1, 3, 112, 112]).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .expect("tract loads the SFace file");
    let embedder = Embedder::load(&workspace().join("models"), Network::Sface, Precision::F32).expect("loads SFace");
    let cases = r["synthetic"].as_array().expect("synthetic cases");
    assert_eq!(cases.len(), 3);
    for case in cases {
        let k = case["formula"].as_u64().unwrap() as usize;
        let want = floats(&case["output"]);
        let out = plan.run(tvec!(synthetic_input(k).into_tvalue())).expect("runs");
        let view = out[0].try_as_plain_ram().expect("plain tensor");
        let got = view.as_slice::<f32>().expect("f32 output");
        assert_eq!(got.len(), 128);
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        eprintln!("synthetic input {k}: largest difference from onnxruntime {worst:.2e}");
        assert!(worst <= BOUND_OUTPUT, "input {k}: tract differs from onnxruntime by {worst}");
        // The door's loader (one-pass PReLU, channel-last layout) on the same
        // input as a chip: the same unit-length embedding.
        let planes = synthetic_input(k);
        let planes = planes.try_as_plain_ram().unwrap().as_slice::<f32>().unwrap().to_vec();
        let chip = image::RgbImage::from_fn(112, 112, |x, y| {
            let at = (y * 112 + x) as usize;
            image::Rgb([0, 1, 2].map(|c| planes[c * 112 * 112 + at] as u8))
        });
        let door = embedder.embed(&chip).expect("embeds");
        let norm = want.iter().map(|v| v * v).sum::<f32>().sqrt();
        let worst = door.iter().zip(&want).map(|(a, b)| (a - b / norm).abs()).fold(0f32, f32::max);
        eprintln!("synthetic input {k}: facegate's loader differs from onnxruntime (unit length) by {worst:.2e}");
        assert!(worst * norm <= BOUND_OUTPUT, "input {k}: facegate's loader differs by {worst} (unit length)");
    }
}

#[test]
fn alignment_and_embeddings_match_opencv_on_lfw() {
    let Some((data, _)) = facegate_testkit::lfw("SFace parity on LFW") else { return };
    let r = reference();
    let models = workspace().join("models");
    let embedder = Embedder::load(&models, Network::Sface, Precision::F32).expect("loads SFace");
    let yunet = YunetDetector::from_bytes(&std::fs::read(models.join(YUNET_DETECTOR_FILE)).unwrap()).unwrap();
    let images = r["images"].as_array().expect("images");
    assert!(images.len() >= 200, "the reference holds {} images", images.len());
    let (mut worst_px, mut worst_cos, mut own_points) = (0f64, 1f32, Vec::new());
    for case in images {
        let name = case["image"].as_str().unwrap();
        let img = decode_image(&data.read(name).unwrap(), DEFAULT_MAX_PIXELS).unwrap();
        let sha = facegate_core::hex(&Sha256::digest(img.as_raw()));
        assert_eq!(sha, case["pixels_sha256"].as_str().unwrap(), "{name}: decoded pixels differ from the reference's");
        let pts: [Point; 5] = points(&case["points"]).try_into().unwrap();
        let placement = ArcfacePlacement::from_points(&pts);
        for (probe, source) in points(&case["chip_probes"]).iter().zip(points(&case["chip_sources"])) {
            let ours = placement.to_image(*probe);
            worst_px = worst_px.max((ours.x - source.x).hypot(ours.y - source.y));
        }
        let want = floats(&case["embedding"]);
        let got = embedder.embed(&arcface_chip(&img, &placement)).unwrap();
        let c = cosine(&got, &want);
        worst_cos = worst_cos.min(c);
        assert!(c >= BOUND_COSINE, "{name}: cosine {c} to OpenCV's embedding");
        // Our own detector's points, end to end (reported: another YuNet build).
        let nose_off = |p: &[Point; 5]| (p[2].x - pts[2].x).hypot(p[2].y - pts[2].y);
        let found = yunet.detect(&img, 0.0).unwrap().into_iter().filter_map(|d| d.points);
        if let Some(face) = found.min_by(|a, b| nose_off(a).total_cmp(&nose_off(b))).filter(|p| nose_off(p) < 10.0) {
            own_points.push(cosine(&embedder.embed(&arcface_chip(&img, &ArcfacePlacement::from_points(&face))).unwrap(), &want));
        }
    }
    own_points.sort_by(f32::total_cmp);
    let median = own_points.get(own_points.len() / 2).copied().unwrap_or(f32::NAN);
    eprintln!(
        "{} images: alignment within {worst_px:.3} px of alignCrop, cosine ≥ {worst_cos:.5}; from our YuNet's points: median cosine {median:.4} over {}",
        images.len(),
        own_points.len()
    );
    assert!(worst_px <= BOUND_ALIGNMENT_PX, "alignment differs from alignCrop by {worst_px} px");
    assert!(own_points.len() >= images.len() * 9 / 10, "our YuNet matched OpenCV's face in only {} images", own_points.len());
}
