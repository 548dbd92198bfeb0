//! The whole path from an image to face embeddings, with its settings.

use crate::chip::{chip_placement, extract_chip, face_chip};
use crate::detect::hog::HogDetector;
use crate::detect::Detection;
use crate::embed::{Embedder, Embedding, Precision};
use crate::landmarks::{LandmarkModel, Landmarks};
use crate::FaceError;
use image::RgbImage;
use std::path::Path;

/// File names inside the models directory.
pub const DETECTOR_FILE: &str = "face_detector_hog.fghd";
/// Landmark model file name.
pub const LANDMARKS_FILE: &str = "landmarks_5.fgsp";

/// Detection and embedding settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineConfig {
    /// Times the image is doubled before detection (dlib's `upsample`): finds
    /// faces down to ~40 px at 1, ~80 px at 0, at four times the cost per step.
    pub upsample: u32,
    /// Faces whose box is narrower than this (pixels, original image) are ignored.
    pub min_face: u32,
    /// Added to the detector threshold; negative finds weaker faces.
    pub adjust_threshold: f64,
    /// When nothing is found, retry once with this threshold adjustment (None: no retry).
    pub retry_threshold: Option<f64>,
    /// Average the embedding with the mirrored chip's (two network runs per face).
    pub mirror: bool,
    /// Extra chips cut with small shifts, scales and rotations, averaged in
    /// (0 = none; at most [`JITTERS`]`.len() - 1`). Each costs one or two network runs.
    pub jitter: usize,
}

/// Test-time jitter: (dx, dy) in chip widths, scale, rotation in degrees; the first is the plain chip.
pub const JITTERS: [(f64, f64, f64, f64); 5] =
    [(0.0, 0.0, 1.0, 0.0), (0.02, 0.0, 0.98, 3.0), (-0.02, 0.0, 0.98, -3.0), (0.0, 0.02, 1.02, 0.0), (0.0, -0.02, 1.02, 0.0)];

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig { upsample: 1, min_face: 40, adjust_threshold: 0.0, retry_threshold: Some(-0.6), mirror: true, jitter: 0 }
    }
}

/// One face found in an image.
#[derive(Debug, Clone)]
pub struct Face {
    /// What the detector reported.
    pub detection: Detection,
    /// The five landmarks.
    pub landmarks: Landmarks,
    /// The aligned 150×150 chip.
    pub chip: RgbImage,
}

/// Loaded models plus settings.
pub struct Pipeline {
    /// The face detector.
    pub detector: HogDetector,
    /// The landmark model.
    pub landmarks: LandmarkModel,
    /// The embedding network.
    pub embedder: Embedder,
    /// Settings.
    pub config: PipelineConfig,
}

fn read(path: &Path) -> Result<Vec<u8>, FaceError> {
    std::fs::read(path).map_err(|source| FaceError::Io { path: path.to_path_buf(), source })
}

impl Pipeline {
    /// Loads the three models from `models_dir`.
    pub fn load(models_dir: &Path, precision: Precision, config: PipelineConfig) -> Result<Self, FaceError> {
        Ok(Pipeline {
            detector: HogDetector::from_bytes(&read(&models_dir.join(DETECTOR_FILE))?)?,
            landmarks: LandmarkModel::from_bytes(&read(&models_dir.join(LANDMARKS_FILE))?)?,
            embedder: Embedder::load(models_dir, precision)?,
            config,
        })
    }

    /// Face boxes, best first; retries with a lower threshold when none is found.
    pub fn detect(&self, img: &RgbImage) -> Vec<Detection> {
        let c = &self.config;
        let big_enough = |d: &Detection| d.rect.width() >= c.min_face as i64;
        let mut found: Vec<Detection> =
            self.detector.detect_min(img, c.upsample, c.adjust_threshold, c.min_face).into_iter().filter(big_enough).collect();
        if found.is_empty() {
            if let Some(t) = c.retry_threshold {
                found = self.detector.detect_min(img, c.upsample, t, c.min_face).into_iter().filter(big_enough).collect();
            }
        }
        found
    }

    /// Landmarks and chip for one detection.
    pub fn align(&self, img: &RgbImage, detection: Detection) -> Face {
        let landmarks = self.landmarks.predict(img, detection.rect);
        Face { detection, chip: face_chip(img, &landmarks), landmarks }
    }

    /// Every face in the image, aligned.
    pub fn faces(&self, img: &RgbImage) -> Vec<Face> {
        self.detect(img).into_iter().map(|d| self.align(img, d)).collect()
    }

    /// The embedding of an aligned face (mirror-averaged when configured; no jitter).
    pub fn embed(&self, face: &Face) -> Result<Embedding, FaceError> {
        self.embed_mean(std::slice::from_ref(&face.chip))
    }

    /// The embedding of a face with the configured jitter, cut again from `img`.
    pub fn embed_jittered(&self, img: &RgbImage, face: &Face) -> Result<Embedding, FaceError> {
        let n = self.config.jitter.min(JITTERS.len() - 1);
        if n == 0 {
            return self.embed(face);
        }
        let base = chip_placement(&face.landmarks);
        let chips = JITTERS[..=n]
            .iter()
            .map(|(dx, dy, s, deg)| extract_chip(img, &base.jittered(*dx, *dy, *s, deg.to_radians())))
            .collect::<Vec<_>>();
        self.embed_mean(&chips)
    }

    /// Mean embedding of the chips (and their mirror images when configured).
    fn embed_mean(&self, chips: &[RgbImage]) -> Result<Embedding, FaceError> {
        let mirrors: &[bool] = if self.config.mirror { &[false, true] } else { &[false] };
        let mut sum = [0f32; crate::EMBEDDING_DIM];
        for chip in chips {
            for &mirrored in mirrors {
                let e = self.embedder.embed_chip(chip, mirrored)?;
                sum.iter_mut().zip(e).for_each(|(s, v)| *s += v);
            }
        }
        let n = (chips.len() * mirrors.len()) as f32;
        Ok(sum.map(|s| s / n))
    }
}
