//! YuNet (libfacedetection.train, Apache-2.0) run by tract: a small CNN that
//! finds faces and five landmarks at every angle HOG misses, for the camera.
//!
//! The frame is shrunk so its longest side is at most [`YUNET_MAX_SIDE`]
//! (the door's 640×480 becomes 320×240), and further when the smallest face
//! wanted is large: down to where that face is [`YUNET_SMALLEST_FACE`] px
//! wide (the door's 100 px faces: 640×480 becomes 154×115); then padded to
//! multiples of 32 and run once. Each anchor (every cell of the
//! stride 8, 16 and 32 grids) scores √(class · objectness) and regresses a
//! box in stride units. The box is then mapped to the box dlib's landmark
//! model was trained on ([`BoxMap`], calibrated on LFW against dlib's HOG
//! boxes), so alignment and the embedding see what they expect.

use super::Detection;
use crate::geometry::{Point, Rect};
use crate::FaceError;
use image::RgbImage;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tract_onnx::prelude::*;

/// The longest side of the image the network sees (the cost grows with its pixels).
pub const YUNET_MAX_SIDE: u32 = 320;
/// The width in the network's input at which a face is still reliably found
/// (its finest anchors are 8 px apart): the input is shrunk no further.
pub const YUNET_SMALLEST_FACE: u32 = 24;
/// Default score threshold (√(class · objectness)).
pub const YUNET_THRESHOLD: f32 = 0.6;
/// Boxes overlapping a better one by more than this IoU are dropped.
pub const YUNET_NMS_IOU: f64 = 0.3;
/// The network's strides, in the order of its outputs.
const STRIDES: [usize; 3] = [8, 16, 32];
/// The network's outputs, in order: kind × stride.
const OUTPUTS: [&str; 12] =
    ["cls_8", "cls_16", "cls_32", "obj_8", "obj_16", "obj_32", "bbox_8", "bbox_16", "bbox_32", "kps_8", "kps_16", "kps_32"];
/// Optimised plans kept for different input sizes (photos vary; frames do not).
const MAX_PLANS: usize = 4;

/// A face as YuNet reports it, on the caller's image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YunetFace {
    /// Left, top, width, height in pixels.
    pub bbox: [f64; 4],
    /// Eyes (right, left as seen), nose tip, mouth corners.
    pub points: [Point; 5],
    /// √(class · objectness), 0..1.
    pub score: f32,
}

/// How many numbers describe a YuNet face to [`BoxMap`]: a constant, the
/// box's width and height, and the five points' coordinates.
pub const BOX_FEATURES: usize = 13;

/// YuNet's face → the square box dlib's detectors give for the same face, as
/// a linear map of the face's box and its five points.
///
/// The face is described in its own frame: relative to the centre of
/// YuNet's box and in units of s = √(w·h) (so the map does not depend on
/// where the face is or how large), by [`BoxMap::features`]: 1, w/s, h/s,
/// then x and y of each point. Row 0 of `coef` gives the dlib box's centre
/// right of YuNet's, row 1 below it, row 2 its side, each in units of s.
/// The points say where the eyes and mouth are, which a box edge (forehead,
/// chin) says only loosely, and dlib's boxes follow the eyes and mouth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxMap {
    /// Centre offset x, centre offset y, side: coefficients of the features.
    pub coef: [[f64; BOX_FEATURES]; 3],
}

impl BoxMap {
    /// Fitted on LFW against dlib's HOG boxes by least squares (`host-tool
    /// bench detect`, every photo, faces ≥ 60 px: the door's scale), on the
    /// photos where both found the centred face and agree (IoU ≥ 0.5), the
    /// worst 5 % left out. Mean IoU with HOG's box over the 13,167 photos
    /// where both found it: 0.754 unmapped, 0.786 with the box-only map
    /// ([`BoxMap::LFW_HOG_BOX_ONLY`]), 0.834 with this one.
    pub const LFW_HOG: BoxMap = BoxMap {
        coef: [
            [
                0.09683, -0.08800, 0.03207, 0.27267, 0.24957, 0.26436, -0.16559, 0.45070, 0.03544, -0.26124, 0.30975, -0.11129,
                -0.54469,
            ],
            [
                0.12171, -0.21986, -0.05897, -0.02553, 0.25343, 0.10751, -0.08551, 0.04120, 0.71232, -0.70860, 0.09198, 0.44236,
                -0.31218,
            ],
            [
                0.91201, 0.18632, -0.25242, 0.37109, -0.63798, -0.11586, 0.18746, -0.16297, -0.65220, 0.19974, 1.00884, -0.09745,
                0.14478,
            ],
        ],
    };

    /// The box-only map fitted on LFW (medians of the centre offsets and the
    /// side ratio over the same photos; mean IoU with HOG's box 0.786).
    pub const LFW_HOG_BOX_ONLY: BoxMap = BoxMap::from_box(0.0217, 0.0616, 0.9499);

    /// The box-only map: centre shifted by (`dx`, `dy`) box widths/heights,
    /// side `scale` × √(w·h).
    pub const fn from_box(dx: f64, dy: f64, scale: f64) -> BoxMap {
        let mut coef = [[0.0; BOX_FEATURES]; 3];
        coef[0][1] = dx;
        coef[1][2] = dy;
        coef[2][0] = scale;
        BoxMap { coef }
    }

    /// The face in its own frame (see [`BoxMap`]), with s = √(w·h).
    pub fn features(face: &YunetFace) -> ([f64; BOX_FEATURES], f64) {
        let [l, t, w, h] = face.bbox;
        let s = (w * h).sqrt().max(f64::MIN_POSITIVE);
        let (cx, cy) = (l + w / 2.0, t + h / 2.0);
        let mut f = [0.0; BOX_FEATURES];
        f[0] = 1.0;
        f[1] = w / s;
        f[2] = h / s;
        for (i, p) in face.points.iter().enumerate() {
            f[3 + 2 * i] = (p.x - cx) / s;
            f[4 + 2 * i] = (p.y - cy) / s;
        }
        (f, s)
    }

    /// The dlib-like box's centre offsets and side in units of s, from a
    /// face's [`features`](Self::features).
    pub fn predict(&self, features: &[f64; BOX_FEATURES]) -> [f64; 3] {
        self.coef.map(|row| row.iter().zip(features).map(|(c, v)| c * v).sum())
    }

    /// The dlib-like box's centre and side, in the caller's pixels.
    pub fn centre_and_side(&self, face: &YunetFace) -> (f64, f64, f64) {
        let (f, s) = Self::features(face);
        let [dx, dy, side] = self.predict(&f).map(|v| v * s);
        let [l, t, w, h] = face.bbox;
        (l + w / 2.0 + dx, t + h / 2.0 + dy, side.max(1.0))
    }

    /// The dlib-like box for a YuNet face.
    pub fn apply(&self, face: &YunetFace) -> Rect {
        let (cx, cy, side) = self.centre_and_side(face);
        let half = side / 2.0;
        let k = |v: f64| v.round() as i64;
        Rect::new(k(cx - half), k(cy - half), k(cx + half) - 1, k(cy + half) - 1)
    }
}

type Plan = TypedRunnableModel;

/// The YuNet face detector.
pub struct YunetDetector {
    model: InferenceModel,
    plans: Mutex<HashMap<(usize, usize), Arc<Plan>>>,
    /// Score threshold.
    pub threshold: f32,
    /// YuNet box → dlib box.
    pub box_map: BoxMap,
}

fn model_error(e: impl std::fmt::Display) -> FaceError {
    FaceError::Model(format!("YuNet face detector: {e:#}"))
}

fn inference(e: impl std::fmt::Display) -> FaceError {
    FaceError::Inference(e.to_string())
}

/// Rounds up to a multiple of 32 (the coarsest stride).
fn ceil32(v: usize) -> usize {
    v.div_ceil(32) * 32
}

impl YunetDetector {
    /// Loads the network (`face_detector_yunet.onnx`), checking its outputs are YuNet's.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, FaceError> {
        let onnx = tract_onnx::onnx();
        let proto = onnx.proto_model_for_read(&mut &bytes[..]).map_err(model_error)?;
        let names: Vec<&str> =
            proto.graph.as_ref().map(|g| g.output.iter().map(|o| o.name.as_str()).collect()).unwrap_or_default();
        if names != OUTPUTS {
            return Err(model_error(format!("outputs {names:?}, expected {OUTPUTS:?}")));
        }
        let model = onnx.model_for_proto_model(&proto).map_err(model_error)?;
        Ok(YunetDetector { model, plans: Mutex::new(HashMap::new()), threshold: YUNET_THRESHOLD, box_map: BoxMap::LFW_HOG })
    }

    /// The optimised network for an input of `width × height` (multiples of 32).
    fn plan(&self, width: usize, height: usize) -> Result<Arc<Plan>, FaceError> {
        let mut plans = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = plans.get(&(width, height)) {
            return Ok(p.clone());
        }
        let mut model = self.model.clone().with_input_fact(0, f32::fact([1, 3, height, width]).into()).map_err(model_error)?;
        // The file declares free output sizes; let tract infer them from the input.
        for i in 0..OUTPUTS.len() {
            model = model.with_output_fact(i, InferenceFact::default()).map_err(model_error)?;
        }
        let plan = model.into_optimized().and_then(|m| m.into_runnable()).map_err(model_error)?;
        if plans.len() >= MAX_PLANS {
            plans.clear();
        }
        plans.insert((width, height), plan.clone());
        Ok(plan)
    }

    /// The input tensor: `img` scaled by `scale` (bilinear, pixel centres
    /// aligned) into the top-left of a zeroed BGR 0..255 tensor of `pw × ph`.
    fn input(img: &RgbImage, scale: f64, sw: usize, sh: usize, pw: usize, ph: usize) -> Result<Tensor, FaceError> {
        let mut input = Tensor::zero::<f32>(&[1, 3, ph, pw]).map_err(inference)?;
        let mut view = input.try_as_plain_ram_mut().map_err(inference)?;
        let planes = view.as_slice_mut::<f32>().map_err(inference)?;
        let (w, h) = (img.width() as usize, img.height() as usize);
        let raw = img.as_raw();
        let plane = pw * ph;
        let put = |planes: &mut [f32], at: usize, rgb: [f32; 3]| {
            planes[at] = rgb[2];
            planes[plane + at] = rgb[1];
            planes[2 * plane + at] = rgb[0];
        };
        if sw == w && sh == h {
            for (i, px) in raw.chunks_exact(3).enumerate() {
                put(planes, (i / w) * pw + i % w, [px[0] as f32, px[1] as f32, px[2] as f32]);
            }
            return Ok(input);
        }
        // Source columns and weights are the same on every row: computed once.
        let source = |v: usize, max: usize| {
            let s = ((v as f64 + 0.5) / scale - 0.5).clamp(0.0, (max - 1) as f64);
            let i = (s.floor() as usize).min(max.saturating_sub(2));
            (i, (i + 1).min(max - 1), (s - i as f64) as f32)
        };
        let cols: Vec<(usize, usize, f32)> = (0..sw).map(|x| source(x, w)).collect();
        for y in 0..sh {
            let (y0, y1, fy) = source(y, h);
            let (row0, row1) = (&raw[y0 * w * 3..(y0 + 1) * w * 3], &raw[y1 * w * 3..(y1 + 1) * w * 3]);
            for (x, &(x0, x1, fx)) in cols.iter().enumerate() {
                let at = y * pw + x;
                for c in 0..3 {
                    let (a, b) = (row0[x0 * 3 + c] as f32, row0[x1 * 3 + c] as f32);
                    let (d, e) = (row1[x0 * 3 + c] as f32, row1[x1 * 3 + c] as f32);
                    let top = a + (b - a) * fx;
                    let bottom = d + (e - d) * fx;
                    // BGR planes.
                    planes[(2 - c) * plane + at] = top + (bottom - top) * fy;
                }
            }
        }
        Ok(input)
    }

    /// Every face in `img` scoring above `threshold`, best first, after non-max suppression.
    pub fn detect_faces(&self, img: &RgbImage, threshold: f32) -> Result<Vec<YunetFace>, FaceError> {
        self.detect_faces_min(img, threshold, 0)
    }

    /// As [`detect_faces`](Self::detect_faces) for faces at least `min_face`
    /// px wide: the input is shrunk until such a face is [`YUNET_SMALLEST_FACE`]
    /// px wide in it (smaller faces may be missed).
    pub fn detect_faces_min(&self, img: &RgbImage, threshold: f32, min_face: u32) -> Result<Vec<YunetFace>, FaceError> {
        let (w, h) = (img.width() as usize, img.height() as usize);
        if w == 0 || h == 0 {
            return Ok(Vec::new());
        }
        let for_faces = if min_face > YUNET_SMALLEST_FACE { YUNET_SMALLEST_FACE as f64 / min_face as f64 } else { 1.0 };
        let scale = (YUNET_MAX_SIDE as f64 / w.max(h) as f64).min(for_faces).min(1.0);
        let (sw, sh) = (((w as f64 * scale).round() as usize).max(1), ((h as f64 * scale).round() as usize).max(1));
        let (pw, ph) = (ceil32(sw), ceil32(sh));
        let input = Self::input(img, scale, sw, sh, pw, ph)?;
        let out = self.plan(pw, ph)?.run(tvec!(input.into_tvalue())).map_err(inference)?;
        crate::embed::clear_wide_register_state();
        let views = out.iter().map(|t| t.to_plain_array_view::<f32>().map_err(inference)).collect::<Result<Vec<_>, _>>()?;
        let slice = |i: usize| -> Result<&[f32], FaceError> {
            views
                .get(i)
                .and_then(|v| v.as_slice())
                .ok_or_else(|| FaceError::Inference(format!("YuNet output {i} missing or not contiguous")))
        };
        // Back to the caller's pixels (a pixel centre at v in the input sits at (v + 0.5)/scale − 0.5).
        let back = |v: f64| (v + 0.5) / scale - 0.5;
        let mut found = Vec::new();
        for (k, &stride) in STRIDES.iter().enumerate() {
            let cols = pw / stride;
            let (cls, obj, bbox, kps) = (slice(k)?, slice(3 + k)?, slice(6 + k)?, slice(9 + k)?);
            let anchors = (ph / stride) * cols;
            if cls.len() != anchors || obj.len() != anchors || bbox.len() != 4 * anchors || kps.len() != 10 * anchors {
                return Err(FaceError::Inference(format!("YuNet stride {stride}: outputs do not match {anchors} anchors")));
            }
            let s = stride as f64;
            for i in 0..anchors {
                let score = (cls[i].clamp(0.0, 1.0) * obj[i].clamp(0.0, 1.0)).sqrt();
                if score <= threshold {
                    continue;
                }
                let (c, r) = ((i % cols) as f64, (i / cols) as f64);
                let b = &bbox[4 * i..4 * i + 4];
                let (cx, cy) = ((c + b[0] as f64) * s, (r + b[1] as f64) * s);
                let (bw, bh) = ((b[2] as f64).exp() * s, (b[3] as f64).exp() * s);
                let (l, t) = (back(cx - bw / 2.0), back(cy - bh / 2.0));
                let p = &kps[10 * i..10 * i + 10];
                let points =
                    std::array::from_fn(|j| Point::new(back((c + p[2 * j] as f64) * s), back((r + p[2 * j + 1] as f64) * s)));
                found.push(YunetFace { bbox: [l, t, bw / scale, bh / scale], points, score });
            }
        }
        found.sort_by(|a, b| b.score.total_cmp(&a.score));
        let mut kept: Vec<YunetFace> = Vec::new();
        for f in found {
            if kept.iter().all(|k| box_iou(&k.bbox, &f.bbox) <= YUNET_NMS_IOU) {
                kept.push(f);
            }
        }
        Ok(kept)
    }

    /// Every face in `img`, as dlib-like boxes ([`BoxMap`]), best first; the
    /// score is YuNet's minus the threshold (above 0 means detected), so
    /// `adjust_threshold` works as for dlib's detectors.
    pub fn detect(&self, img: &RgbImage, adjust_threshold: f64) -> Result<Vec<Detection>, FaceError> {
        self.detect_min(img, adjust_threshold, 0)
    }

    /// As [`detect`](Self::detect) for faces at least `min_face` px wide
    /// (faster for large ones: see [`detect_faces_min`](Self::detect_faces_min)).
    pub fn detect_min(&self, img: &RgbImage, adjust_threshold: f64, min_face: u32) -> Result<Vec<Detection>, FaceError> {
        let threshold = (self.threshold as f64 + adjust_threshold).clamp(0.0, 1.0) as f32;
        Ok(self
            .detect_faces_min(img, threshold, min_face)?
            .iter()
            .map(|f| Detection {
                rect: self.box_map.apply(f),
                score: (f.score - self.threshold) as f64,
                filter: 0,
                points: Some(f.points),
            })
            .collect())
    }
}

/// Intersection over union of two (left, top, width, height) boxes.
fn box_iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let iw = ((a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0])).max(0.0);
    let ih = ((a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = a[2] * a[3] + b[2] * b[3] - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_boxes() {
        assert_eq!(box_iou(&[0.0, 0.0, 10.0, 10.0], &[0.0, 0.0, 10.0, 10.0]), 1.0);
        assert_eq!(box_iou(&[0.0, 0.0, 10.0, 10.0], &[20.0, 0.0, 10.0, 10.0]), 0.0);
        assert!((box_iou(&[0.0, 0.0, 10.0, 10.0], &[5.0, 0.0, 10.0, 10.0]) - 50.0 / 150.0).abs() < 1e-12);
    }

    #[test]
    fn box_map_centres_and_squares() {
        let face = YunetFace { bbox: [100.0, 50.0, 80.0, 120.0], points: [Point::default(); 5], score: 0.9 };
        let identity = BoxMap::from_box(0.0, 0.0, 1.0).apply(&face);
        // Centre (140, 110), side √(80·120) ≈ 98.
        assert_eq!((identity.width(), identity.height()), (98, 98));
        assert!(((identity.left + identity.right) as f64 / 2.0 - 139.5).abs() <= 1.0);
        let shifted = BoxMap::from_box(0.1, 0.2, 0.5).apply(&face);
        assert!(((shifted.top + shifted.bottom) as f64 / 2.0 - (110.0 + 24.0 - 0.5)).abs() <= 1.0);
        // Side 0.5 · 97.98 = 48.99, corners rounded: 48 or 49 pixels.
        assert!((48..=49).contains(&shifted.width()), "{shifted:?}");
    }
}
