//! The liveness ensemble against its reference: Silent-Face's own ONNX
//! exports run by onnxruntime (numbers in tests/reference/liveness_reference.json,
//! written by make_liveness_reference.sh, which also checks the exports against
//! the original PyTorch weights). The sample images come from
//! ../shared/models/antispoof/samples; without them those cases skip loudly.

use facegate_face::decode::{decode_image, DEFAULT_MAX_PIXELS};
use facegate_face::liveness::{crop_bounds, crop_tensor, Liveness, INPUT};
use serde_json::Value;
use tract_onnx::prelude::Tensor;

fn reference() -> Value {
    let path = facegate_testkit::workspace().join("tests/reference/liveness_reference.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The formula of make_liveness_reference.py's `synthetic`.
fn synthetic(k: usize) -> Tensor {
    let values: Vec<f32> = (0..3 * INPUT * INPUT)
        .map(|i| {
            let (c, y, x) = (i / (INPUT * INPUT), (i / INPUT) % INPUT, i % INPUT);
            ((x * (7 + k) + y * 13 + c * 29 + k * k) % 256) as f32
        })
        .collect();
    Tensor::from_shape(&[1, 3, INPUT, INPUT], &values).unwrap()
}

#[test]
fn the_converted_networks_equal_the_reference_on_the_same_input() {
    let live = Liveness::load(&facegate_testkit::models()).unwrap();
    let r = reference();
    let mut worst = 0f64;
    for case in r["synthetic"].as_array().unwrap() {
        let k = case["k"].as_u64().unwrap() as usize;
        for (net, want) in case["probabilities"].as_array().unwrap().iter().enumerate() {
            let got = live.run(net, synthetic(k)).unwrap();
            for (g, w) in got.iter().zip(want.as_array().unwrap()) {
                worst = worst.max((*g as f64 - w.as_f64().unwrap()).abs());
            }
        }
    }
    assert!(worst < 1e-4, "tract vs onnxruntime: max |Δp| {worst}");
    eprintln!("tract vs onnxruntime on identical inputs: max |Δp| {worst:.2e}");
}

#[test]
fn sample_images_crop_and_score_like_the_reference() {
    let Some(samples) = facegate_testkit::shared_dir("models/antispoof/samples", "liveness parity on the sample images") else {
        return;
    };
    let live = Liveness::load(&facegate_testkit::models()).unwrap();
    let scales = live.crop_scales();
    let r = reference();
    let mut worst = 0f64;
    for (name, case) in r["samples"].as_object().unwrap() {
        let img = decode_image(&std::fs::read(samples.join(format!("{name}.jpg"))).unwrap(), DEFAULT_MAX_PIXELS).unwrap();
        let size: Vec<u64> = case["size"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        assert_eq!(size, vec![img.width() as u64, img.height() as u64], "{name}: EXIF orientation applied on both sides");
        let b: Vec<f32> = case["box"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let bbox = [b[0], b[1], b[2], b[3]];
        for (k, crop) in case["crops"].as_array().unwrap().iter().enumerate() {
            let bounds = crop_bounds(img.width(), img.height(), bbox, scales[k]);
            let want: Vec<i64> = crop["bounds"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
            assert_eq!(vec![bounds.0, bounds.1, bounds.2, bounds.3], want, "{name} net {k}: crop bounds");
            let input = crop_tensor(&img, bounds).unwrap();
            let view = input.try_as_plain_ram().unwrap();
            let values = view.as_slice::<f32>().unwrap();
            for (c, mean) in crop["bgr_means"].as_array().unwrap().iter().enumerate() {
                let ours = values[c * INPUT * INPUT..(c + 1) * INPUT * INPUT].iter().sum::<f32>() as f64 / (INPUT * INPUT) as f64;
                assert!((ours - mean.as_f64().unwrap()).abs() < 0.5, "{name} net {k} channel {c}: {ours} vs {mean}");
            }
            let p = live.run(k, input).unwrap()[1] as f64;
            worst = worst.max((p - crop["live"].as_f64().unwrap()).abs());
        }
        let ensemble = live.probabilities(&img, bbox).unwrap().iter().sum::<f32>() as f64 / 2.0;
        let want = case["ensemble_live"].as_f64().unwrap();
        assert_eq!(ensemble >= 0.5, want >= 0.5, "{name}: same live/attack call ({ensemble} vs {want})");
    }
    // Our resize and OpenCV's can differ by one grey level here and there.
    assert!(worst < 5e-3, "live probability vs the reference: max |Δ| {worst}");
    eprintln!("sample images, own crops vs OpenCV's: max |Δ live| {worst:.2e}");
}
