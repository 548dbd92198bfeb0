//! Prints CNN detector boxes for image files: `cnn_boxes MODELS_DIR UPSAMPLE IMG...`
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let det = facegate_face::detect::cnn::CnnDetector::from_bytes(
        &std::fs::read(format!("{}/face_detector_cnn.onnx", args[1])).unwrap(),
    )
    .unwrap();
    let up: u32 = args[2].parse().unwrap();
    for path in &args[3..] {
        let img = facegate_face::decode::decode_image(&std::fs::read(path).unwrap(), 1 << 26).unwrap();
        let t = std::time::Instant::now();
        let d = det.detect(&img, up, 0.0).unwrap();
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        let boxes: Vec<String> = d
            .iter()
            .map(|d| format!("({},{},{},{}) {:.4}", d.rect.left, d.rect.top, d.rect.right, d.rect.bottom, d.score))
            .collect();
        println!("{path} {ms:.1}ms {}", boxes.join(" "));
    }
}
