//! The enrolment policy: which faces may become templates. One set of rules
//! for photo files (host tool) and camera captures (the device), so a capture
//! at the door is held to the same standard as a photo on a laptop.
//!
//! A template must show exactly one face, large enough, not cut by the edge
//! and sharp; the templates of one person must agree with each other.

use crate::detect::Detection;
use crate::matching::distance;
use crate::{Embedding, Face, FaceError, Network, Pipeline};
use image::RgbImage;

/// Faces narrower than this (pixels in the image) are refused: the 150 px chip
/// would be mostly interpolation.
pub const MIN_FACE_PX: i64 = 80;

/// A second face at least this fraction of the main face's width makes the image ambiguous.
pub const OTHER_FACE_RATIO: f64 = 0.6;

/// Chips with less detail than this are refused as blurred: the variance of the
/// Laplacian of the grey 150×150 chip. Chosen with `host-tool bench blur` on
/// 600 LFW photos: their own (JPEG, often soft) chips have a median of 50 and a
/// 1st percentile of 9.8; blurred with a Gaussian of σ = 2 px, a median of 3.4
/// and a 99th percentile of 8.5; with σ = 1.5 px, a median of 6.2.
pub const MIN_SHARPNESS: f32 = 10.0;

/// The same on SFace's 112×112 ArcFace chip (a tighter crop with fewer
/// pixels per feature, so sharper per pixel), from `host-tool --network sface
/// bench blur`: see docs/benchmarks.md.
pub const MIN_SHARPNESS_SFACE: f32 = 36.0;

/// Why an image cannot give a template.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EnrolProblem {
    /// Not readable as an image.
    #[error("not a readable image: {0}")]
    Unreadable(String),
    /// No face found.
    #[error("no face found")]
    NoFace,
    /// Several faces of similar size.
    #[error("{0} faces found; use a photo of one person")]
    SeveralFaces(usize),
    /// The face is too small.
    #[error("the face is only {0} px wide (at least {MIN_FACE_PX} px needed)")]
    TooSmall(i64),
    /// The face is cut by the image's edge.
    #[error("the face is cut by the edge of the photo")]
    Cut,
    /// Too little detail.
    #[error("the face is too blurred (sharpness {0:.0}, at least {1:.0} needed)")]
    Blurred(f32, f32),
    /// The face does not look live (a print or a screen): camera captures only.
    #[error("the face does not look live (live score {0:.2}); enrol the person in front of the camera, not a photo of them")]
    NotLive(f32),
}

/// What an image is for: templates must pass every check; a probe to verify
/// or identify only needs one face.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A template to keep: every check applies.
    Enrol,
    /// A probe: no size, edge or sharpness requirement.
    Probe,
}

/// The one face of an image of `width`×`height` with these detections, checked
/// for `purpose` (no allocation: the door's capture path calls it per frame).
pub fn pick_one_face(dets: &[Detection], width: u32, height: u32, purpose: Purpose) -> Result<Detection, EnrolProblem> {
    let main = *dets.iter().max_by_key(|d| d.rect.width()).ok_or(EnrolProblem::NoFace)?;
    let similar = dets.iter().filter(|d| d.rect.width() as f64 >= OTHER_FACE_RATIO * main.rect.width() as f64).count();
    if similar > 1 {
        return Err(EnrolProblem::SeveralFaces(similar));
    }
    if purpose == Purpose::Probe {
        return Ok(main);
    }
    let (r, w) = (main.rect, main.rect.width());
    if w < MIN_FACE_PX {
        return Err(EnrolProblem::TooSmall(w));
    }
    // dlib boxes are tight on the inner face; allow a little overhang.
    let slack = w / 4;
    if r.left < -slack || r.top < -slack || r.right >= width as i64 + slack || r.bottom >= height as i64 + slack {
        return Err(EnrolProblem::Cut);
    }
    Ok(main)
}

/// Variance of the 4-neighbour Laplacian of an image's grey levels.
pub fn sharpness(img: &RgbImage) -> f32 {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let grey = |x: usize, y: usize| {
        let p = img.get_pixel(x as u32, y as u32);
        0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32
    };
    let (mut sum, mut sum2, mut n) = (0f64, 0f64, 0f64);
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let l = (grey(x - 1, y) + grey(x + 1, y) + grey(x, y - 1) + grey(x, y + 1) - 4.0 * grey(x, y)) as f64;
            sum += l;
            sum2 += l * l;
            n += 1.0;
        }
    }
    ((sum2 / n) - (sum / n).powi(2)) as f32
}

/// Refuses a chip of `network` too blurred to enrol; returns its sharpness.
pub fn check_sharpness(chip: &RgbImage, network: Network, purpose: Purpose) -> Result<f32, EnrolProblem> {
    let s = sharpness(chip);
    let needed = network.min_sharpness();
    if purpose == Purpose::Enrol && s < needed {
        return Err(EnrolProblem::Blurred(s, needed));
    }
    Ok(s)
}

/// A checked face of an image.
pub struct CheckedFace {
    /// The aligned face.
    pub face: Face,
    /// Face width in the image, pixels.
    pub width: i64,
    /// Chip sharpness.
    pub sharpness: f32,
}

/// Detects, picks and checks the one face of a decoded image.
pub fn checked_face(pipeline: &Pipeline, img: &RgbImage, purpose: Purpose) -> Result<CheckedFace, EnrolProblem> {
    let det = pick_one_face(&pipeline.detect(img), img.width(), img.height(), purpose)?;
    let face = pipeline.align(img, det);
    let sharpness = check_sharpness(&face.chip, pipeline.embedder.network(), purpose)?;
    Ok(CheckedFace { face, width: det.rect.width(), sharpness })
}

/// A photo's template: the checked face, embedded with the pipeline's
/// averaging (mirror, jitter). The outer error is the pipeline's own failure.
pub fn photo_template(
    pipeline: &Pipeline,
    bytes: &[u8],
    purpose: Purpose,
) -> Result<Result<(Embedding, CheckedFace), EnrolProblem>, FaceError> {
    let img = match crate::decode::decode_image(bytes, crate::decode::DEFAULT_MAX_PIXELS) {
        Ok(img) => img,
        Err(e) => return Ok(Err(EnrolProblem::Unreadable(e.to_string()))),
    };
    match checked_face(pipeline, &img, purpose) {
        Ok(c) => Ok(Ok((pipeline.embed_jittered(&img, &c.face)?, c))),
        Err(p) => Ok(Err(p)),
    }
}

/// Photos of one person agree: the indices of templates that match none of
/// the others (at `threshold`, the network's balanced one) are probably
/// someone else. A person's photos are chosen by an operator, so an odd one
/// is dropped and named, and the rest are enrolled.
pub fn odd_ones_out(templates: &[Embedding], threshold: f32) -> Vec<usize> {
    if templates.len() < 2 {
        return Vec::new();
    }
    (0..templates.len())
        .filter(|&a| (0..templates.len()).filter(|&b| b != a).all(|b| distance(&templates[a], &templates[b]) > threshold))
        .collect()
}

/// The largest distance between two frames of a camera capture. Anyone may
/// step into an unattended capture, so every pair of its frames must agree
/// (within the door's threshold), not just each frame with one other.
pub fn capture_spread(templates: &[Embedding]) -> f32 {
    templates.iter().flat_map(|a| templates.iter().map(move |b| distance(a, b))).fold(0f32, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matching::THRESHOLD_BALANCED;
    use crate::Rect;

    #[test]
    fn sharpness_falls_with_blur() {
        let img = RgbImage::from_fn(150, 150, |x, y| {
            let v = (((x / 5 + y / 7) % 2) * 200 + 20) as u8;
            image::Rgb([v, v, v])
        });
        let sharp = sharpness(&img);
        let soft = sharpness(&image::imageops::blur(&img, 2.0));
        assert!(sharp > 10.0 * soft && soft >= 0.0, "{sharp} vs {soft}");
        assert_eq!(sharpness(&RgbImage::new(150, 150)), 0.0);
        let flat = RgbImage::from_pixel(150, 150, image::Rgb([90, 90, 90]));
        assert_eq!(check_sharpness(&flat, Network::Dlib, Purpose::Enrol), Err(EnrolProblem::Blurred(0.0, MIN_SHARPNESS)));
        assert_eq!(check_sharpness(&flat, Network::Sface, Purpose::Probe), Ok(0.0));
        assert!(check_sharpness(&img, Network::Dlib, Purpose::Enrol).is_ok());
        // The ArcFace chip measures sharper: its threshold is higher.
        let needed = |n: Network| check_sharpness(&flat, n, Purpose::Enrol).unwrap_err();
        assert_eq!(needed(Network::Sface), EnrolProblem::Blurred(0.0, MIN_SHARPNESS_SFACE));
        const { assert!(MIN_SHARPNESS_SFACE > MIN_SHARPNESS) };
    }

    #[test]
    fn one_whole_large_face_is_required_to_enrol() {
        let d = |l, t, r, b| Detection { rect: Rect::new(l, t, r, b), score: 1.0, filter: 0, points: None };
        assert_eq!(pick_one_face(&[], 640, 480, Purpose::Probe), Err(EnrolProblem::NoFace));
        let big = d(200, 100, 399, 299);
        assert_eq!(pick_one_face(&[big, d(10, 10, 40, 40)], 640, 480, Purpose::Enrol), Ok(big), "a small face behind is fine");
        assert_eq!(pick_one_face(&[big, d(0, 0, 150, 150)], 640, 480, Purpose::Enrol), Err(EnrolProblem::SeveralFaces(2)));
        assert_eq!(pick_one_face(&[d(10, 10, 59, 59)], 640, 480, Purpose::Enrol), Err(EnrolProblem::TooSmall(50)));
        assert!(pick_one_face(&[d(10, 10, 59, 59)], 640, 480, Purpose::Probe).is_ok());
        assert_eq!(pick_one_face(&[d(500, 100, 699, 299)], 640, 480, Purpose::Enrol), Err(EnrolProblem::Cut));
    }

    #[test]
    fn the_odd_photo_and_the_capture_spread() {
        let at = |x: f32| {
            let mut e = [0.0; 128];
            e[0] = x;
            e
        };
        assert_eq!(odd_ones_out(&[at(0.0), at(0.1), at(2.0)], THRESHOLD_BALANCED), vec![2]);
        assert!(odd_ones_out(&[at(0.0)], THRESHOLD_BALANCED).is_empty());
        assert_eq!(capture_spread(&[at(0.0), at(0.3), at(0.5)]), 0.5);
    }
}
