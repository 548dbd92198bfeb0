//! The pipeline against dlib itself, on numbers written by
//! `tests/reference/make_reference.py` (dlib-bin, pinned) from LFW images.
//! The images come from `../shared` (or `$FACEGATE_LFW_DIR`); without them
//! the LFW cases skip loudly. The synthetic cases always run.

use facegate_face::chip::face_chip;
use facegate_face::cores::Cores;
use facegate_face::decode::{decode_image, DEFAULT_MAX_PIXELS};
use facegate_face::detect::cnn::CnnDetector;
use facegate_face::detect::hog::HogDetector;
use facegate_face::{Embedder, LandmarkModel, Point, Precision, Rect};
use facegate_testkit::workspace;
use image::{Rgb, RgbImage};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Largest distance of an int8-computed descriptor from dlib's: twice the
/// 0.041 measured on the first six reference faces (the door's threshold is 0.6).
const BOUND_QINT8_DISTANCE: f32 = 0.08;

fn reference() -> Value {
    let path = workspace().join("tests/reference/dlib_reference.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn lfw() -> Option<facegate_lfw::Dataset> {
    facegate_testkit::lfw("dlib parity on LFW").map(|(data, _)| data)
}

fn points(v: &Value) -> Vec<Point> {
    v.as_array().unwrap().iter().map(|p| Point::new(p[0].as_f64().unwrap(), p[1].as_f64().unwrap())).collect()
}

fn chip_sha(chip: &RgbImage) -> String {
    facegate_core::hex(&Sha256::digest(chip.as_raw()))
}

fn synthetic(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let (x, y) = (x as u64, y as u64);
        Rgb([((x * 7 + y * 13) % 256) as u8, ((x * x + 3 * y) % 256) as u8, ((x ^ y) % 256) as u8])
    })
}

#[test]
fn chips_match_dlib_on_rotated_and_pyramid_cases() {
    let r = reference();
    let cases = r["synthetic_chips"].as_array().unwrap();
    assert!(cases.len() >= 4);
    for case in cases {
        let img = synthetic(case["width"].as_u64().unwrap() as u32, case["height"].as_u64().unwrap() as u32);
        let lm: [Point; 5] = points(&case["landmarks"]).try_into().unwrap();
        let chip = face_chip(&img, &lm);
        let sums: Vec<u64> = (0..3).map(|c| chip.pixels().map(|p| p.0[c] as u64).sum()).collect();
        let want: Vec<u64> = case["chip_sums"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        assert_eq!(sums, want, "channel sums for {case}");
        assert_eq!(chip_sha(&chip), case["chip_sha256"].as_str().unwrap(), "chip pixels for {case}");
        let b: Vec<i64> = case["box"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        let lm = LandmarkModel::from_bytes(&std::fs::read(workspace().join("models/landmarks_5.fgsp")).unwrap()).unwrap();
        let ours = lm.predict(&img, Rect::new(b[0], b[1], b[2], b[3]));
        assert_eq!(ours.to_vec(), points(&case["landmarks_from_box"]), "landmarks for {case}");
    }
}

#[test]
fn landmarks_chips_and_descriptors_match_dlib_on_lfw() {
    let Some(data) = lfw() else { return };
    let models = workspace().join("models");
    let lm_model = LandmarkModel::from_bytes(&std::fs::read(models.join("landmarks_5.fgsp")).unwrap()).unwrap();
    let f32_net = Embedder::load(&models, facegate_face::Network::Dlib, Precision::F32).unwrap();
    let int8_net = Embedder::load(&models, facegate_face::Network::Dlib, Precision::Int8).unwrap();
    let r = reference();
    let images = r["images"].as_array().unwrap();
    assert!(images.len() >= 40);
    let (mut worst_f32, mut worst_int8) = (0f32, 0f32);
    for rec in images {
        let name = rec["image"].as_str().unwrap();
        let img = decode_image(&data.read(name).unwrap(), DEFAULT_MAX_PIXELS).unwrap();
        // The reference was computed on these exact pixels; a decoder change shows here first.
        assert_eq!(chip_sha(&img), rec["pixels_sha256"].as_str().unwrap(), "decoded pixels of {name}");
        let b: Vec<i64> = rec["fixed_box"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        let ours = lm_model.predict(&img, Rect::new(b[0], b[1], b[2], b[3]));
        let want = points(&rec["landmarks_fixed_box"]);
        assert_eq!(ours.to_vec(), want, "landmarks of {name}");
        let chip = face_chip(&img, &ours);
        assert_eq!(chip_sha(&chip), rec["chip_sha256"].as_str().unwrap(), "chip of {name}");
        let want: Vec<f32> = rec["descriptor"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let d32 = f32_net.embed(&chip).unwrap();
        let d8 = int8_net.embed(&chip).unwrap();
        for i in 0..128 {
            worst_f32 = worst_f32.max((d32[i] - want[i]).abs());
            worst_int8 = worst_int8.max((d8[i] - want[i]).abs());
        }
    }
    eprintln!("descriptor max |Δ| vs dlib over {} faces: f32 {worst_f32:.2e}, int8 {worst_int8:.2e}", images.len());
    assert!(worst_f32 <= 1e-4, "f32 descriptors differ from dlib by {worst_f32}");
    assert!(worst_int8 <= 0.03, "int8 descriptors differ from dlib by {worst_int8}");
}

/// The network computed in int8 (calibrated activations) stays near dlib's
/// descriptors: a few faces only, tract's int8 convolution being slow on x86.
#[test]
fn int8_computed_descriptors_stay_near_dlib() {
    let Some(data) = lfw() else { return };
    let models = workspace().join("models");
    let lm_model = LandmarkModel::from_bytes(&std::fs::read(models.join("landmarks_5.fgsp")).unwrap()).unwrap();
    let qint8_net = Embedder::load(&models, facegate_face::Network::Dlib, Precision::QInt8).unwrap();
    let r = reference();
    let (mut worst, mut worst_distance) = (0f32, 0f32);
    for rec in r["images"].as_array().unwrap().iter().take(6) {
        let name = rec["image"].as_str().unwrap();
        let img = decode_image(&data.read(name).unwrap(), DEFAULT_MAX_PIXELS).unwrap();
        let b: Vec<i64> = rec["fixed_box"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        let chip = face_chip(&img, &lm_model.predict(&img, Rect::new(b[0], b[1], b[2], b[3])));
        let want: Vec<f32> = rec["descriptor"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let got = qint8_net.embed(&chip).unwrap();
        worst = (0..128).fold(worst, |w, i| w.max((got[i] - want[i]).abs()));
        worst_distance = worst_distance.max((0..128).map(|i| (got[i] - want[i]).powi(2)).sum::<f32>().sqrt());
    }
    eprintln!("int8-computed descriptors vs dlib: max |Δ| {worst:.2e}, largest distance {worst_distance:.3}");
    assert!(worst_distance <= BOUND_QINT8_DISTANCE, "int8-computed descriptors are {worst_distance} from dlib's");
}

fn boxes(v: &Value) -> Vec<(Rect, f64)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let b: Vec<i64> = d["box"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
            (Rect::new(b[0], b[1], b[2], b[3]), d["score"].as_f64().unwrap())
        })
        .collect()
}

#[test]
fn hog_detections_match_dlib_on_lfw() {
    let Some(data) = lfw() else { return };
    let det = HogDetector::from_bytes(&std::fs::read(workspace().join("models/face_detector_hog.fghd")).unwrap()).unwrap();
    let r = reference();
    // On a pool's workers the pyramid levels are searched at once: same boxes.
    let cores = Cores::new(2, "parity").unwrap();
    let (mut same, mut total, mut worst_score) = (0, 0, 0f64);
    for rec in r["images"].as_array().unwrap() {
        let name = rec["image"].as_str().unwrap();
        let img = decode_image(&data.read(name).unwrap(), DEFAULT_MAX_PIXELS).unwrap();
        for (up, on_cores) in [(0u32, false), (1, false), (0, true), (1, true)] {
            let want = boxes(&rec[format!("hog_upsample{up}")]);
            let got = if on_cores { cores.split(|| det.detect(&img, up, 0.0)) } else { det.detect(&img, up, 0.0) };
            total += 1;
            let got_boxes: Vec<Rect> = got.iter().map(|d| d.rect).collect();
            let want_boxes: Vec<Rect> = want.iter().map(|d| d.0).collect();
            if got_boxes == want_boxes {
                same += 1;
                for (g, w) in got.iter().zip(&want) {
                    worst_score = worst_score.max((g.score - w.1).abs());
                }
            } else {
                eprintln!("{name} upsample {up} (on cores: {on_cores}): ours {got:?}, dlib {want:?}");
            }
        }
    }
    eprintln!("HOG boxes identical to dlib in {same}/{total} cases; worst score difference {worst_score:.2e}");
    assert_eq!(same, total, "HOG detections differ from dlib");
    assert!(worst_score < 1e-3, "HOG scores differ from dlib by {worst_score}");
}

#[test]
fn cnn_detections_match_dlib_on_lfw() {
    let Some(data) = lfw() else { return };
    let bytes = std::fs::read(workspace().join("models/face_detector_cnn.onnx")).unwrap();
    let det = CnnDetector::from_bytes(&bytes).unwrap();
    let r = reference();
    let (mut same, mut total, mut worst_score, mut worst_iou) = (0, 0, 0f64, 1f64);
    for rec in r["images"].as_array().unwrap() {
        let name = rec["image"].as_str().unwrap();
        let img = decode_image(&data.read(name).unwrap(), DEFAULT_MAX_PIXELS).unwrap();
        let want = boxes(&rec["cnn_upsample0"]);
        let got = det.detect(&img, 0, 0.0).unwrap();
        total += 1;
        // Every face dlib finds is found here (reported before the exact comparison).
        for (w, w_score) in &want {
            let best = got.iter().max_by(|a, b| a.rect.iou(w).total_cmp(&b.rect.iou(w))).expect("a face dlib finds");
            worst_iou = worst_iou.min(best.rect.iou(w));
            if best.rect == *w {
                worst_score = worst_score.max((best.score - w_score).abs());
            }
        }
        if got.iter().map(|d| d.rect).collect::<Vec<_>>() == want.iter().map(|d| d.0).collect::<Vec<_>>() {
            same += 1;
        } else {
            eprintln!("{name}: ours {got:?}, dlib {want:?}");
        }
    }
    eprintln!(
        "CNN boxes identical to dlib in {same}/{total} images; worst IoU {worst_iou:.2}, worst score difference {worst_score:.3}"
    );
    assert_eq!(same, total, "CNN detections differ from dlib");
    assert!(worst_iou >= 0.6, "a CNN box is far from dlib's (IoU {worst_iou})");
    assert!(worst_score < 1e-3, "CNN scores differ from dlib by {worst_score}");
}
