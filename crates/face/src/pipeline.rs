//! The whole path from an image to face embeddings, with its settings.

use crate::arcface::{arcface_chip, ArcfacePlacement};
use crate::chip::{chip_placement, extract_chip, face_chip};
use crate::detect::cnn::CnnDetector;
use crate::detect::hog::HogDetector;
use crate::detect::yunet::YunetDetector;
use crate::detect::Detection;
use crate::embed::{unit_length, Embedder, Embedding, LastLayer, Network, Precision};
use crate::geometry::Rect;
use crate::landmarks::{LandmarkModel, Landmarks};
use crate::model_files::ModelDir;
use crate::resize::resize_bilinear;
use crate::FaceError;
use image::RgbImage;
use std::path::Path;

/// File names inside the models directory.
pub const DETECTOR_FILE: &str = "face_detector_hog.fghd";
/// CNN detector file name.
pub const CNN_DETECTOR_FILE: &str = "face_detector_cnn.onnx";
/// YuNet detector file name.
pub const YUNET_DETECTOR_FILE: &str = "face_detector_yunet.onnx";
/// Landmark model file name.
pub const LANDMARKS_FILE: &str = "landmarks_5.fgsp";

/// Photos are shrunk to this longest side before the CNN detector runs: its
/// cost and memory grow with the pixels, and a face in a photo this size is
/// still far above the smallest face it finds (~80 px).
pub const CNN_MAX_SIDE: u32 = 1024;

/// Which face detector runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetectorKind {
    /// dlib's HOG detector: ~12 ms per 640×480 frame, frontal faces (the door camera).
    Hog,
    /// dlib's MMOD CNN detector: finds turned and badly lit faces HOG misses,
    /// at about 25× the cost (photos: enrolment, benchmarks).
    Cnn,
    /// YuNet: a small CNN that finds turned and tilted faces, on a copy of
    /// the frame scaled to at most 320 px (the camera).
    Yunet,
}

impl DetectorKind {
    /// The name used in configuration files and on the command line.
    pub fn as_str(&self) -> &'static str {
        match self {
            DetectorKind::Hog => "hog",
            DetectorKind::Cnn => "cnn",
            DetectorKind::Yunet => "yunet",
        }
    }
}

impl std::str::FromStr for DetectorKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "hog" => Ok(DetectorKind::Hog),
            "cnn" => Ok(DetectorKind::Cnn),
            "yunet" => Ok(DetectorKind::Yunet),
            other => Err(format!("unknown detector {other:?} (expected yunet, hog or cnn)")),
        }
    }
}

/// Where SFace's five alignment points come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArcfacePoints {
    /// The detector's own five points when it gives them (YuNet), else dlib's
    /// landmarks placed on their measured template.
    #[default]
    Detector,
    /// dlib's five landmarks always (to measure them against YuNet's).
    Landmarks,
}

impl std::str::FromStr for ArcfacePoints {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "detector" => Ok(ArcfacePoints::Detector),
            "landmarks" => Ok(ArcfacePoints::Landmarks),
            other => Err(format!("unknown alignment points {other:?} (expected detector or landmarks)")),
        }
    }
}

/// Detection and embedding settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineConfig {
    /// The embedding network (and with it the chip: dlib's or ArcFace's).
    pub network: Network,
    /// Where SFace's chip takes its five points from.
    pub arcface_points: ArcfacePoints,
    /// The face detector.
    pub detector: DetectorKind,
    /// Times the image is doubled before detection (dlib's `upsample`): finds
    /// faces down to ~40 px at 1, ~80 px at 0, at four times the cost per step.
    pub upsample: u32,
    /// Faces whose box is narrower than this (pixels, original image) are ignored.
    pub min_face: u32,
    /// Added to the detector threshold; negative finds weaker faces.
    pub adjust_threshold: f64,
    /// When nothing is found, retry once with this threshold adjustment (None: no
    /// retry); the CNN detector's retry also doubles the image once more.
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

/// The photo pipeline (enrolment, benchmarks): the CNN detector, mirror and
/// jitter averaging. Measured on LFW View 2 (int8): HOG ×2 + mirror 99.12 %;
/// + 4 jitters 99.23 %; CNN + mirror 99.20 % (every face found); CNN + mirror
/// + 4 jitters 99.35 %.
impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            network: Network::default(),
            arcface_points: ArcfacePoints::Detector,
            detector: DetectorKind::Cnn,
            upsample: 0,
            min_face: 40,
            adjust_threshold: 0.0,
            retry_threshold: Some(0.0),
            mirror: true,
            jitter: JITTERS.len() - 1,
        }
    }
}

impl PipelineConfig {
    /// The door camera's pipeline: HOG at the frame's own resolution, faces of
    /// at least 100 px (a person within about a metre of a 60° camera), one
    /// network run per face, so a frame fits in the time between frames.
    pub fn door() -> Self {
        PipelineConfig {
            network: Network::default(),
            arcface_points: ArcfacePoints::Detector,
            detector: DetectorKind::Hog,
            upsample: 0,
            min_face: 100,
            adjust_threshold: 0.0,
            retry_threshold: None,
            mirror: false,
            jitter: 0,
        }
    }
}

/// One face found in an image.
#[derive(Debug, Clone)]
pub struct Face {
    /// What the detector reported.
    pub detection: Detection,
    /// The five landmarks.
    pub landmarks: Landmarks,
    /// The aligned chip: 150×150 for dlib's network, 112×112 for SFace.
    pub chip: RgbImage,
}

/// Loaded models plus settings.
pub struct Pipeline {
    /// The HOG face detector.
    pub detector: HogDetector,
    /// The CNN face detector (loaded when the configuration asks for it).
    pub cnn: Option<CnnDetector>,
    /// The YuNet face detector (loaded when the configuration asks for it).
    pub yunet: Option<YunetDetector>,
    /// The landmark model.
    pub landmarks: LandmarkModel,
    /// The embedding network.
    pub embedder: Embedder,
    /// Settings.
    pub config: PipelineConfig,
}

impl Pipeline {
    /// Loads the models from `models_dir`, each checked against its MANIFEST.
    pub fn load(models_dir: &Path, precision: Precision, config: PipelineConfig) -> Result<Self, FaceError> {
        Self::load_with_last_layer(models_dir, precision, config, None)
    }

    /// [`Pipeline::load`], with a retrained last layer in place of the
    /// network's own when one is given (its embeddings carry its own model id).
    pub fn load_with_last_layer(
        models_dir: &Path,
        precision: Precision,
        config: PipelineConfig,
        last_layer: Option<LastLayer>,
    ) -> Result<Self, FaceError> {
        let dir = ModelDir::open(models_dir)?;
        let network = dir.read(config.network.file_name(precision))?;
        let embedder = match last_layer {
            None => Embedder::from_bytes(&network, config.network, precision)?,
            Some(_) if config.network != Network::Dlib => {
                return Err(FaceError::Model(format!("a retrained last layer is for dlib's network, not {}", config.network)))
            }
            Some(layer) => Embedder::with_last_layer(&network, precision, layer)?,
        };
        let cnn = match config.detector {
            DetectorKind::Cnn => Some(CnnDetector::from_bytes(&dir.read(CNN_DETECTOR_FILE)?)?),
            _ => None,
        };
        let yunet = match config.detector {
            DetectorKind::Yunet => Some(YunetDetector::from_bytes(&dir.read(YUNET_DETECTOR_FILE)?)?),
            _ => None,
        };
        Ok(Pipeline {
            detector: HogDetector::from_bytes(&dir.read(DETECTOR_FILE)?)?,
            cnn,
            yunet,
            landmarks: LandmarkModel::from_bytes(&dir.read(LANDMARKS_FILE)?)?,
            embedder,
            config,
        })
    }

    /// Face boxes, best first; retries once (see [`PipelineConfig::retry_threshold`]) when none is found.
    pub fn detect(&self, img: &RgbImage) -> Vec<Detection> {
        let c = &self.config;
        let big_enough = |d: &Detection| d.rect.width() >= c.min_face as i64;
        let pass = |extra_upsample: u32, threshold: f64| -> Vec<Detection> {
            let hog = || self.detector.detect_min(img, c.upsample, threshold, c.min_face);
            // The CNNs are loaded exactly when the configuration asks for them; only a
            // failed allocation makes them fail, and HOG still gives an answer then.
            let found = match (&self.cnn, &self.yunet) {
                (Some(cnn), _) => cnn_detect(cnn, img, c.upsample + extra_upsample, threshold).unwrap_or_else(|_| hog()),
                (None, Some(yunet)) => yunet.detect_min(img, threshold, c.min_face).unwrap_or_else(|_| hog()),
                (None, None) => hog(),
            };
            found.into_iter().filter(big_enough).collect()
        };
        let found = pass(0, c.adjust_threshold);
        match c.retry_threshold {
            Some(t) if found.is_empty() => pass(u32::from(c.detector == DetectorKind::Cnn), t),
            _ => found,
        }
    }

    /// Landmarks and chip for one detection.
    pub fn align(&self, img: &RgbImage, detection: Detection) -> Face {
        let landmarks = self.landmarks.predict(img, detection.rect);
        let chip = match self.config.network {
            Network::Dlib => face_chip(img, &landmarks),
            Network::Sface => arcface_chip(img, &self.arcface_placement(&detection, &landmarks)),
        };
        Face { detection, chip, landmarks }
    }

    /// Where SFace's chip lies: from the detector's five points, or dlib's landmarks.
    fn arcface_placement(&self, detection: &Detection, landmarks: &Landmarks) -> ArcfacePlacement {
        match (self.config.arcface_points, &detection.points) {
            (ArcfacePoints::Detector, Some(points)) => ArcfacePlacement::from_points(points),
            _ => ArcfacePlacement::from_landmarks(landmarks),
        }
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
        if self.config.jitter == 0 {
            return self.embed(face);
        }
        self.embed_mean(&self.jitter_chips(img, face))
    }

    /// The configured jitter chips of a face (the plain chip first), cut from `img`.
    pub fn jitter_chips(&self, img: &RgbImage, face: &Face) -> Vec<RgbImage> {
        let n = self.config.jitter.min(JITTERS.len() - 1);
        match self.config.network {
            Network::Dlib => {
                let base = chip_placement(&face.landmarks);
                JITTERS[..=n]
                    .iter()
                    .map(|(dx, dy, s, deg)| extract_chip(img, &base.jittered(*dx, *dy, *s, deg.to_radians())))
                    .collect()
            }
            Network::Sface => {
                let base = self.arcface_placement(&face.detection, &face.landmarks);
                JITTERS[..=n]
                    .iter()
                    .map(|(dx, dy, s, deg)| arcface_chip(img, &base.jittered(*dx, *dy, *s, deg.to_radians())))
                    .collect()
            }
        }
    }

    /// Whether each chip also runs mirrored: `[false]`, or `[false, true]` with mirroring on.
    pub fn mirrors(&self) -> &'static [bool] {
        if self.config.mirror {
            &[false, true]
        } else {
            &[false]
        }
    }

    /// One embedding per view: every jitter chip, plain then mirrored when
    /// configured. Their mean is [`Pipeline::embed_jittered`]'s embedding;
    /// training uses them one by one as augmentations.
    pub fn view_embeddings(&self, img: &RgbImage, face: &Face) -> Result<Vec<Embedding>, FaceError> {
        let chips = self.jitter_chips(img, face);
        chips.iter().flat_map(|chip| self.mirrors().iter().map(move |&m| self.embedder.embed_chip(chip, m))).collect()
    }

    /// Mean embedding of the chips (and their mirror images when configured).
    fn embed_mean(&self, chips: &[RgbImage]) -> Result<Embedding, FaceError> {
        let mirrors = self.mirrors();
        // Summed as they come: the door runs this for every face, with nothing to allocate.
        let mut sum = [0f32; crate::EMBEDDING_DIM];
        for chip in chips {
            for &mirrored in mirrors {
                let e = self.embedder.embed_chip(chip, mirrored)?;
                sum.iter_mut().zip(e).for_each(|(s, v)| *s += v);
            }
        }
        let mean = sum.map(|s| s / (chips.len() * mirrors.len()) as f32);
        // SFace's views are unit vectors; their mean is put back on the sphere.
        Ok(if self.embedder.network() == Network::Sface { unit_length(mean) } else { mean })
    }
}

/// The CNN detector on `img`, shrunk first to [`CNN_MAX_SIDE`] when larger; boxes on `img`.
fn cnn_detect(cnn: &CnnDetector, img: &RgbImage, upsample: u32, threshold: f64) -> Result<Vec<Detection>, FaceError> {
    let longest = img.width().max(img.height());
    if longest <= CNN_MAX_SIDE {
        return cnn.detect(img, upsample, threshold);
    }
    let scale = longest as f64 / CNN_MAX_SIDE as f64;
    let (w, h) = ((img.width() as f64 / scale).round().max(1.0) as u32, (img.height() as f64 / scale).round().max(1.0) as u32);
    let mut found = cnn.detect(&resize_bilinear(img, w, h), upsample, threshold)?;
    let up = |v: i64| (v as f64 * scale).round() as i64;
    for d in &mut found {
        let r = d.rect;
        d.rect = Rect::new(up(r.left), up(r.top), up(r.right), up(r.bottom));
    }
    Ok(found)
}
