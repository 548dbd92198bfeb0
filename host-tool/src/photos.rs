//! Enrolment photos: decode, find exactly one usable face, check it, embed it.

use anyhow::Result;
use facegate_face::decode::{decode_image, DEFAULT_MAX_PIXELS};
use facegate_face::{Embedding, Pipeline};
use image::RgbImage;
use std::path::Path;

/// Faces narrower than this (pixels in the photo) are refused: the 150 px chip
/// would be mostly interpolation.
pub const MIN_FACE_PX: i64 = 80;

/// A second face at least this fraction of the main face's width makes the photo ambiguous.
pub const OTHER_FACE_RATIO: f64 = 0.6;

/// Chips with less detail than this are refused as blurred: the variance of the
/// Laplacian of the grey 150×150 chip. Chosen with `host-tool bench blur` on
/// 600 LFW photos: their own (JPEG, often soft) chips have a median of 50 and a
/// 1st percentile of 9.8; blurred with a Gaussian of σ = 2 px, a median of 3.4
/// and a 99th percentile of 8.5; with σ = 1.5 px, a median of 6.2.
pub const MIN_SHARPNESS: f32 = 10.0;

/// Why a photo cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PhotoProblem {
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
    /// The face is cut by the photo's edge.
    #[error("the face is cut by the edge of the photo")]
    Cut,
    /// Too little detail.
    #[error("the face is too blurred (sharpness {0:.0}, at least {MIN_SHARPNESS:.0} needed)")]
    Blurred(f32),
}

/// Variance of the 4-neighbour Laplacian of an image's grey levels.
pub fn sharpness(img: &RgbImage) -> f32 {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let grey: Vec<f32> = img.pixels().map(|p| 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32).collect();
    let (mut sum, mut sum2, mut n) = (0f64, 0f64, 0f64);
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let i = y * w + x;
            let l = (grey[i - 1] + grey[i + 1] + grey[i - w] + grey[i + w] - 4.0 * grey[i]) as f64;
            sum += l;
            sum2 += l * l;
            n += 1.0;
        }
    }
    ((sum2 / n) - (sum / n).powi(2)) as f32
}

/// A usable face from a photo.
pub struct PhotoFace {
    /// Its embedding.
    pub embedding: Embedding,
    /// Face width in the photo.
    pub width: i64,
    /// Chip sharpness.
    pub sharpness: f32,
}

/// What a photo is for: enrolment photos must be good; a probe to verify or
/// identify only needs one face.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// A template to keep: every check applies.
    Enrol,
    /// A probe: no size or sharpness requirement.
    Probe,
}

/// Checks and embeds the one face of a decoded photo.
pub fn face_of(pipeline: &Pipeline, img: &RgbImage, purpose: Use) -> Result<std::result::Result<PhotoFace, PhotoProblem>> {
    let mut dets = pipeline.detect(img);
    dets.sort_by_key(|d| std::cmp::Reverse(d.rect.width()));
    let Some(main) = dets.first().copied() else {
        return Ok(Err(PhotoProblem::NoFace));
    };
    let similar = dets.iter().filter(|d| d.rect.width() as f64 >= OTHER_FACE_RATIO * main.rect.width() as f64).count();
    if similar > 1 {
        return Ok(Err(PhotoProblem::SeveralFaces(similar)));
    }
    let width = main.rect.width();
    let enrol = purpose == Use::Enrol;
    if enrol && width < MIN_FACE_PX {
        return Ok(Err(PhotoProblem::TooSmall(width)));
    }
    let r = main.rect;
    // dlib boxes are tight on the inner face; allow a little overhang.
    let slack = width / 4;
    if enrol
        && (r.left < -slack || r.top < -slack || r.right >= img.width() as i64 + slack || r.bottom >= img.height() as i64 + slack)
    {
        return Ok(Err(PhotoProblem::Cut));
    }
    let face = pipeline.align(img, main);
    let sharp = sharpness(&face.chip);
    if enrol && sharp < MIN_SHARPNESS {
        return Ok(Err(PhotoProblem::Blurred(sharp)));
    }
    Ok(Ok(PhotoFace { embedding: pipeline.embed_jittered(img, &face)?, width, sharpness: sharp }))
}

/// Reads, checks and embeds a photo file.
pub fn photo(pipeline: &Pipeline, path: &Path, purpose: Use) -> Result<std::result::Result<PhotoFace, PhotoProblem>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return Ok(Err(PhotoProblem::Unreadable(e.to_string()))),
    };
    match decode_image(&bytes, DEFAULT_MAX_PIXELS) {
        Ok(img) => face_of(pipeline, &img, purpose),
        Err(e) => Ok(Err(PhotoProblem::Unreadable(e.to_string()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
