//! dlib's CNN face detector (MMOD, `mmod_human_face_detector.dat`) run by tract,
//! with dlib's tiled image pyramid and box decoding, so boxes match dlib's.
//!
//! It finds faces the HOG detector misses (turned heads, hard light) and places
//! boxes more steadily, at about 25× the door's HOG cost: it is the detector for
//! photos (enrolment, benchmarks), not for every camera frame on a Pi.
//!
//! The network is fully convolutional. dlib packs every pyramid level of the
//! image (each 5/6 of the one before, down to 5 rows) into one tiled image,
//! runs the network once over it, and maps each score above the threshold back
//! through the level it fell in. The window size, non-max suppression and the
//! network's output → input mapping come from the model file's metadata.

use super::{non_max_suppression, round_rect, undo_upsampling, up_6_5, Detection};
use crate::geometry::Rect;
use crate::resize::{pyramid_up_size, resize_bilinear};
use crate::FaceError;
use image::RgbImage;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tract_onnx::prelude::*;

/// Gap between pyramid levels in the tiled image (dlib's `pyramid_padding`).
const LEVEL_PADDING: i64 = 10;
/// Border around the tiled image (dlib's `pyramid_outer_padding`).
const OUTER_PADDING: i64 = 11;
/// Levels stop below this many rows.
const MIN_LEVEL_ROWS: i64 = 5;
/// Optimised plans kept for different input sizes (photos vary; frames do not).
const MAX_PLANS: usize = 4;

type Plan = TypedRunnableModel;

/// The CNN face detector.
pub struct CnnDetector {
    model: InferenceModel,
    plans: Mutex<HashMap<(usize, usize), Arc<Plan>>>,
    /// Sliding-window width and height in pixels of a pyramid level.
    pub window: [f64; 2],
    /// Non-max suppression: intersection over bounding box above this suppresses.
    pub nms_iou: f64,
    /// Non-max suppression: a box covered by more than this share suppresses.
    pub nms_covered: f64,
    /// Score-map position p lies at input position `scale · p + offset`.
    output_to_input: (f64, f64),
    /// Mean R, G, B subtracted before scaling by 1/256.
    mean: [f32; 3],
}

fn model_error(e: impl std::fmt::Display) -> FaceError {
    FaceError::Model(format!("CNN face detector: {e}"))
}

fn inference(e: impl std::fmt::Display) -> FaceError {
    FaceError::Inference(e.to_string())
}

/// `n` numbers from a metadata value like "80 80".
fn numbers(meta: &HashMap<String, String>, key: &str, n: usize) -> Result<Vec<f64>, FaceError> {
    let v: Vec<f64> = meta
        .get(key)
        .ok_or_else(|| model_error(format!("metadata {key} missing")))?
        .split_whitespace()
        .map(|s| s.parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|e| model_error(format!("metadata {key}: {e}")))?;
    if v.len() != n || v.iter().any(|x| !x.is_finite()) {
        return Err(model_error(format!("metadata {key}: expected {n} numbers")));
    }
    Ok(v)
}

/// Where each pyramid level sits in the tiled image (dlib's
/// `compute_tiled_image_pyramid_details`): the levels down the left in one
/// column until the rest fit beside them, the rest up the right from the
/// bottom. Returns the level rectangles and the tiled image's width and height.
pub fn tiled_pyramid_layout(width: u32, height: u32) -> (Vec<Rect>, i64, i64) {
    let (mut w, mut h) = (width as i64, height as i64);
    if w * h == 0 {
        return (Vec::new(), 0, 0);
    }
    let mut sizes = vec![(w, h)];
    loop {
        (w, h) = (5 * w / 6, 5 * h / 6);
        if w * h == 0 || h < MIN_LEVEL_ROWS {
            break;
        }
        sizes.push((w, h));
    }
    let (first_w, first_h) = sizes[0];
    let total_height: i64 = sizes.iter().map(|s| s.1 + LEVEL_PADDING).sum::<i64>() - 2 * LEVEL_PADDING;
    let (mut column, mut prev_width) = (0i64, 0i64);
    for &(w, h) in &sizes {
        if w <= first_w - prev_width - LEVEL_PADDING && (column - first_h) * 2 >= total_height - first_h {
            break;
        }
        column += h + LEVEL_PADDING;
        prev_width = w;
    }
    column -= LEVEL_PADDING;
    let mut rects = Vec::with_capacity(sizes.len());
    let mut y = OUTER_PADDING;
    while y < column + OUTER_PADDING && rects.len() < sizes.len() {
        let (w, h) = sizes[rects.len()];
        rects.push(Rect::new(OUTER_PADDING, y, OUTER_PADDING + w - 1, y + h - 1));
        y += h + LEVEL_PADDING;
    }
    y -= LEVEL_PADDING;
    while rects.len() < sizes.len() {
        let (w, h) = sizes[rects.len()];
        let right = OUTER_PADDING + first_w - 1;
        let r = Rect::new(right - (w - 1), y - h, right, y - 1);
        if r.intersect(&rects[0]).area() > 0 {
            break;
        }
        rects.push(r);
        y -= h + LEVEL_PADDING;
    }
    (rects, first_w + 2 * OUTER_PADDING, column + 2 * OUTER_PADDING)
}

/// Bilinear resize of the `from` region of a row-major plane (row length
/// `stride`) into its `to` region, in f32 as dlib's `tt::resize_bilinear`.
fn resize_region(plane: &mut [f32], stride: usize, from: &Rect, to: &Rect, scratch: &mut Vec<f32>) {
    let (src_w, src_h) = (from.width() as usize, from.height() as usize);
    let (dst_w, dst_h) = (to.width() as usize, to.height() as usize);
    scratch.clear();
    for y in 0..src_h {
        let at = (from.top as usize + y) * stride + from.left as usize;
        scratch.extend_from_slice(&plane[at..at + src_w]);
    }
    let x_scale = (src_w as f32 - 1.0) / (dst_w.max(2) - 1) as f32;
    let y_scale = (src_h as f32 - 1.0) / (dst_h.max(2) - 1) as f32;
    for r in 0..dst_h {
        let y = r as f32 * y_scale;
        let top = y.floor() as usize;
        let bottom = (top + 1).min(src_h - 1);
        let tb = y - top as f32;
        let out = &mut plane[(to.top as usize + r) * stride + to.left as usize..][..dst_w];
        for (c, o) in out.iter_mut().enumerate() {
            let x = c as f32 * x_scale;
            let left = x.floor() as usize;
            let right = (left + 1).min(src_w - 1);
            let lr = x - left as f32;
            let (tl, tr) = (scratch[top * src_w + left], scratch[top * src_w + right]);
            let (bl, br) = (scratch[bottom * src_w + left], scratch[bottom * src_w + right]);
            *o = (1.0 - tb) * ((1.0 - lr) * tl + lr * tr) + tb * ((1.0 - lr) * bl + lr * br);
        }
    }
}

/// Index of the rectangle nearest `(x, y)` (first on ties), as dlib's `nearest_rect`.
fn nearest_rect(rects: &[Rect], x: f64, y: f64) -> usize {
    let dist = |r: &Rect| {
        let dx = x.clamp(r.left as f64, r.right as f64) - x;
        let dy = y.clamp(r.top as f64, r.bottom as f64) - y;
        dx * dx + dy * dy
    };
    let mut best = 0;
    for (i, r) in rects.iter().enumerate() {
        if dist(r) < dist(&rects[best]) {
            best = i;
        }
    }
    best
}

impl CnnDetector {
    /// Loads `face_detector_cnn.onnx` from memory.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, FaceError> {
        let onnx = tract_onnx::onnx();
        let proto = onnx.proto_model_for_read(&mut &bytes[..]).map_err(model_error)?;
        let meta: HashMap<String, String> = proto.metadata_props.iter().map(|p| (p.key.clone(), p.value.clone())).collect();
        let window = numbers(&meta, "facegate.window", 2)?;
        let nms = numbers(&meta, "facegate.nms", 2)?;
        let mapping = numbers(&meta, "facegate.output_to_input", 2)?;
        let mean = numbers(&meta, "facegate.mean", 3)?;
        if window.iter().any(|v| *v < 1.0) || mapping[0] < 1.0 {
            return Err(model_error("implausible geometry in the metadata"));
        }
        let model = onnx.model_for_proto_model(&proto).map_err(model_error)?;
        Ok(CnnDetector {
            model,
            plans: Mutex::new(HashMap::new()),
            window: [window[0], window[1]],
            nms_iou: nms[0],
            nms_covered: nms[1],
            output_to_input: (mapping[0], mapping[1]),
            mean: [mean[0] as f32, mean[1] as f32, mean[2] as f32],
        })
    }

    /// The optimised network for a tiled image of `width × height`.
    fn plan(&self, width: usize, height: usize) -> Result<Arc<Plan>, FaceError> {
        let mut plans = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = plans.get(&(width, height)) {
            return Ok(p.clone());
        }
        let plan = self
            .model
            .clone()
            .with_input_fact(0, f32::fact([1, 3, height, width]).into())
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(model_error)?;
        if plans.len() >= MAX_PLANS {
            plans.clear();
        }
        plans.insert((width, height), plan.clone());
        Ok(plan)
    }

    /// The network's input: as dlib 19.8+ builds it, the image centred and
    /// scaled into a zeroed tensor (so the padding is the mean colour), each
    /// smaller level resized from the one before in that float space.
    fn pyramid_tensor(&self, base: &RgbImage, rects: &[Rect], tw: usize, th: usize) -> Result<Tensor, FaceError> {
        let mut input = Tensor::zero::<f32>(&[1, 3, th, tw]).map_err(inference)?;
        let mut view = input.try_as_plain_ram_mut().map_err(inference)?;
        let planes = view.as_slice_mut::<f32>().map_err(inference)?;
        let r0 = rects[0];
        for (y, row) in base.as_raw().chunks_exact(3 * base.width() as usize).enumerate() {
            let at = (r0.top as usize + y) * tw + r0.left as usize;
            for (x, px) in row.chunks_exact(3).enumerate() {
                for (ch, v) in px.iter().enumerate() {
                    planes[ch * th * tw + at + x] = (*v as f32 - self.mean[ch]) / 256.0;
                }
            }
        }
        let mut scratch = Vec::new();
        for plane in planes.chunks_exact_mut(th * tw) {
            for pair in rects.windows(2) {
                resize_region(plane, tw, &pair[0], &pair[1], &mut scratch);
            }
        }
        Ok(input)
    }

    /// Every score-map position above `threshold` as (score, 0, box on the
    /// image): dlib's window centred on the position's input point, taken
    /// back through the pyramid level it falls in.
    fn windows_above(&self, scores: &[f32], cols: usize, rects: &[Rect], threshold: f64) -> Vec<(f64, usize, Rect)> {
        let (scale, offset) = self.output_to_input;
        let (half_w, half_h) = ((self.window[0] - 1.0) / 2.0, (self.window[1] - 1.0) / 2.0);
        let mut raw = Vec::new();
        for (i, score) in scores.iter().map(|s| *s as f64).enumerate() {
            if score <= threshold {
                continue;
            }
            let (x, y) = ((i % cols) as f64 * scale + offset, (i / cols) as f64 * scale + offset);
            let level = nearest_rect(rects, x, y);
            let (ox, oy) = (rects[level].left as f64, rects[level].top as f64);
            let up = |v: f64| up_6_5(v, level);
            raw.push((score, 0, round_rect(up(x - half_w - ox), up(y - half_h - oy), up(x + half_w - ox), up(y + half_h - oy))));
        }
        raw
    }

    /// Every face in `img` (dlib's `cnn_face_detection_model_v1(img, upsample)`
    /// with scores above `adjust_threshold`), best first, after non-max suppression.
    pub fn detect(&self, img: &RgbImage, upsample: u32, adjust_threshold: f64) -> Result<Vec<Detection>, FaceError> {
        let mut base = std::borrow::Cow::Borrowed(img);
        for _ in 0..upsample {
            let (w, h) = pyramid_up_size(base.width(), base.height());
            base = std::borrow::Cow::Owned(resize_bilinear(&base, w, h));
        }
        let (rects, tiled_w, tiled_h) = tiled_pyramid_layout(base.width(), base.height());
        if rects.is_empty() {
            return Ok(Vec::new());
        }
        let (tw, th) = (tiled_w as usize, tiled_h as usize);
        let input = self.pyramid_tensor(&base, &rects, tw, th)?;
        let out = self.plan(tw, th)?.run(tvec!(input.into_tvalue())).map_err(inference)?;
        crate::embed::clear_wide_register_state();
        let scores = out[0].to_plain_array_view::<f32>().map_err(inference)?;
        let shape = scores.shape().to_vec();
        let [_, _, _, cols] = shape[..] else { return Err(FaceError::Inference(format!("score map of shape {shape:?}"))) };
        let scores = scores.as_slice().ok_or_else(|| FaceError::Inference("score map is not contiguous".into()))?;
        let mut raw = self.windows_above(scores, cols, &rects, adjust_threshold);
        let mut found = non_max_suppression(&mut raw, self.nms_iou, self.nms_covered);
        undo_upsampling(&mut found, upsample);
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiled_layout_keeps_levels_apart_and_inside() {
        for (w, h) in [(250, 250), (640, 480), (480, 640), (37, 12), (1, 1)] {
            let (rects, tw, th) = tiled_pyramid_layout(w, h);
            assert!(!rects.is_empty(), "{w}×{h}");
            assert_eq!((rects[0].width(), rects[0].height()), (w as i64, h as i64));
            for (i, r) in rects.iter().enumerate() {
                assert!(r.left >= 0 && r.top >= 0 && r.right < tw && r.bottom < th, "{w}×{h}: level {i} {r:?} outside");
                if i > 0 {
                    let prev = rects[i - 1];
                    assert_eq!((r.width(), r.height()), (5 * prev.width() / 6, 5 * prev.height() / 6));
                }
                for other in &rects[..i] {
                    assert_eq!(r.intersect(other).area(), 0, "{w}×{h}: level {i} overlaps");
                }
            }
        }
        // 250×250: the first levels go down the left, the small ones up the right.
        let (rects, tw, _) = tiled_pyramid_layout(250, 250);
        assert_eq!(tw, 250 + 2 * OUTER_PADDING);
        assert!(rects.iter().any(|r| r.left > OUTER_PADDING), "some levels are placed in the second column");
        assert_eq!(tiled_pyramid_layout(0, 10).0.len(), 0);
    }

    #[test]
    fn nearest_rect_prefers_containing_then_closest() {
        let rects = [Rect::new(0, 0, 9, 9), Rect::new(20, 0, 29, 9)];
        assert_eq!(nearest_rect(&rects, 5.0, 5.0), 0);
        assert_eq!(nearest_rect(&rects, 25.0, 5.0), 1);
        assert_eq!(nearest_rect(&rects, 16.0, 5.0), 1);
        assert_eq!(nearest_rect(&rects, 14.5, 5.0), 0, "ties go to the first");
    }
}
