//! Where dlib's five landmarks fall on ArcFace chips: aligns LFW faces on
//! YuNet's five points, maps dlib's landmarks (predicted in YuNet's box) onto
//! the chip and prints their mean and spread: the source of
//! `arcface::DLIB_ON_ARCFACE`.
//! `cargo run --release -p facegate-face --example arcface_landmarks -- MODELS_DIR LFW [EVERY]`

use facegate_face::arcface::ArcfacePlacement;
use facegate_face::decode::{decode_image, DEFAULT_MAX_PIXELS};
use facegate_face::{DetectorKind, Pipeline, PipelineConfig, Precision};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [models, lfw, rest @ ..] = &args[..] else { return Err("usage: arcface_landmarks MODELS_DIR LFW [EVERY]".into()) };
    let every: usize = rest.first().map_or(Ok(10), |s| s.parse())?;
    let config = PipelineConfig { detector: DetectorKind::Yunet, min_face: 40, ..PipelineConfig::door() };
    let pipeline = Pipeline::load(models.as_ref(), Precision::Int8, config)?;
    let data = facegate_lfw::Dataset::open(lfw.as_ref())?;
    let (mut sum, mut sq, mut n) = ([[0f64; 2]; 5], [[0f64; 2]; 5], 0usize);
    for name in data.names()?.iter().step_by(every.max(1)) {
        let img = decode_image(&data.read(name)?, DEFAULT_MAX_PIXELS)?;
        // The face nearest the centre, as LFW labels it.
        let centre = (img.width() as f64 / 2.0, img.height() as f64 / 2.0);
        let Some(det) = pipeline.detect(&img).into_iter().filter(|d| d.points.is_some()).min_by(|a, b| {
            let d = |r: &facegate_face::Rect| {
                ((r.left + r.right) as f64 / 2.0 - centre.0).hypot((r.top + r.bottom) as f64 / 2.0 - centre.1)
            };
            d(&a.rect).total_cmp(&d(&b.rect))
        }) else {
            continue;
        };
        let placement = ArcfacePlacement::from_points(&det.points.expect("filtered"));
        let landmarks = pipeline.landmarks.predict(&img, det.rect);
        for (i, p) in landmarks.iter().enumerate() {
            let on = placement.to_chip(*p);
            for (k, v) in [on.x, on.y].into_iter().enumerate() {
                sum[i][k] += v;
                sq[i][k] += v * v;
            }
        }
        n += 1;
    }
    println!("{n} faces");
    for i in 0..5 {
        let mean = sum[i].map(|s| s / n as f64);
        let sd: Vec<f64> = (0..2).map(|k| (sq[i][k] / n as f64 - mean[k] * mean[k]).max(0.0).sqrt()).collect();
        println!("[{:.2}, {:.2}],  // sd {:.2} {:.2}", mean[0], mean[1], sd[0], sd[1]);
    }
    Ok(())
}
