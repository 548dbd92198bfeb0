//! Prints YuNet's faces in an image as JSON lines (box, score, points), to
//! compare the decoding with another implementation of YuNet.
//! `cargo run --release -p facegate-face --example yunet_faces -- MODELS_DIR IMAGE...`

use facegate_face::decode::{decode_image, DEFAULT_MAX_PIXELS};
use facegate_face::detect::yunet::YunetDetector;
use facegate_face::model_files::ModelDir;
use facegate_face::pipeline::YUNET_DETECTOR_FILE;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let models = args.next().ok_or("usage: yunet_faces MODELS_DIR IMAGE...")?;
    let detector = YunetDetector::from_bytes(&ModelDir::open(models.as_ref())?.read(YUNET_DETECTOR_FILE)?)?;
    for path in args {
        let img = decode_image(&std::fs::read(&path)?, DEFAULT_MAX_PIXELS)?;
        if std::env::var_os("YUNET_TIME").is_some() {
            let mut times: Vec<f64> = (0..31)
                .map(|_| {
                    let t = std::time::Instant::now();
                    let _ = detector.detect_faces(&img, 0.5);
                    t.elapsed().as_secs_f64() * 1000.0
                })
                .collect();
            times.sort_by(f64::total_cmp);
            eprintln!("{path}: {:.2} ms median of 31", times[15]);
        }
        for f in detector.detect_faces(&img, 0.5)? {
            let points: Vec<[f64; 2]> = f.points.iter().map(|p| [p.x, p.y]).collect();
            println!("{{\"image\":{path:?},\"bbox\":{:?},\"score\":{},\"points\":{points:?}}}", f.bbox, f.score);
        }
    }
    Ok(())
}
