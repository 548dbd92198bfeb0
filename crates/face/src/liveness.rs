//! Passive liveness (presentation-attack detection): is the face in front of
//! the camera a live person, or a print or a screen?
//!
//! An ensemble of Silent-Face-Anti-Spoofing's MiniFASNetV2 (crop 2.7 × the face
//! box) and MiniFASNetV1SE (4.0 ×), run by tract. Each looks at an 80×80 BGR
//! crop around the face, as the reference does: the box scaled about its
//! centre (never beyond the image), shifted back inside the image, resized
//! bilinearly. The live score is the mean live probability of the networks.
//!
//! The networks were trained on the boxes of another detector (RetinaFace),
//! larger than dlib's: [`BoxMap`] turns our detector's box into one like it
//! (calibrated in `host-tool bench liveness`, documented in docs/liveness.md).

use crate::{FaceError, Rect};
use image::RgbImage;
use tract_onnx::prelude::*;

/// Live score at or above which a face counts as live: the reference's own
/// 0.5 until a calibrated threshold replaces it (docs/liveness.md).
pub const THRESHOLD: f32 = 0.5;

/// Whether a live score passes `threshold` (a NaN score never does).
pub fn is_live(score: f32, threshold: f32) -> bool {
    score >= threshold
}

/// Side of the networks' input.
pub const INPUT: usize = 80;

/// The ensemble's files in the models directory.
pub const FILES: [&str; 2] = ["liveness_minifasnet_v2.onnx", "liveness_minifasnet_v1se.onnx"];

/// A face box as `(x, y, width, height)` in pixels, the reference's form.
pub type XywhBox = [f32; 4];

/// Turns a detector's box into the kind of box the networks were trained on:
/// the same centre moved down by `shift_y` × height, width times `scale_x`,
/// height times `scale_y`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxMap {
    /// Width factor.
    pub scale_x: f32,
    /// Height factor.
    pub scale_y: f32,
    /// Vertical shift of the centre, in box heights (negative: up).
    pub shift_y: f32,
}

impl Default for BoxMap {
    /// dlib's HOG boxes are tight on the inner face; RetinaFace's take in the
    /// forehead and chin (see docs/liveness.md for the calibration).
    fn default() -> Self {
        BoxMap { scale_x: 1.2, scale_y: 1.2, shift_y: -0.05 }
    }
}

impl BoxMap {
    /// The mapped box of an inclusive `Rect`.
    pub fn apply(&self, r: Rect) -> XywhBox {
        let (w, h) = ((r.right - r.left + 1) as f32, (r.bottom - r.top + 1) as f32);
        let (cx, cy) = (r.left as f32 + w / 2.0, r.top as f32 + h / 2.0 + self.shift_y * h);
        let (w, h) = (w * self.scale_x, h * self.scale_y);
        [cx - w / 2.0, cy - h / 2.0, w, h]
    }
}

/// The crop of `bbox` scaled by `scale` in an image of `width`×`height`, as
/// the reference computes it: inclusive pixel bounds `(left, top, right, bottom)`.
pub fn crop_bounds(width: u32, height: u32, bbox: XywhBox, scale: f32) -> (i64, i64, i64, i64) {
    let [x, y, bw, bh] = bbox;
    let (sw, sh) = ((width - 1) as f32, (height - 1) as f32);
    let scale = scale.min(sh / bh).min(sw / bw);
    let (nw, nh) = (bw * scale, bh * scale);
    let (cx, cy) = (bw / 2.0 + x, bh / 2.0 + y);
    let (mut l, mut t, mut r, mut b) = (cx - nw / 2.0, cy - nh / 2.0, cx + nw / 2.0, cy + nh / 2.0);
    if l < 0.0 {
        r -= l;
        l = 0.0;
    }
    if t < 0.0 {
        b -= t;
        t = 0.0;
    }
    if r > sw {
        l -= r - sw;
        r = sw;
    }
    if b > sh {
        t -= b - sh;
        b = sh;
    }
    (l as i64, t as i64, r as i64, b as i64)
}

/// The networks' input for a crop: 1×3×80×80, BGR planes, 0..255, resized
/// bilinearly with pixel centres aligned and rounded to whole levels (as
/// OpenCV's `resize` of an 8-bit image does).
pub fn crop_tensor(img: &RgbImage, bounds: (i64, i64, i64, i64)) -> Result<Tensor, FaceError> {
    let (l, t, r, b) = bounds;
    let (l, t) = (l.clamp(0, img.width() as i64 - 1), t.clamp(0, img.height() as i64 - 1));
    let (r, b) = (r.clamp(l, img.width() as i64 - 1), b.clamp(t, img.height() as i64 - 1));
    let (cw, ch) = ((r - l + 1) as f32, (b - t + 1) as f32);
    let mut input = Tensor::zero::<f32>(&[1, 3, INPUT, INPUT]).map_err(inference)?;
    let mut view = input.try_as_plain_ram_mut().map_err(inference)?;
    let planes = view.as_slice_mut::<f32>().map_err(inference)?;
    let axis = |d: usize, size: f32, start: i64, last: i64| {
        let f = ((d as f32 + 0.5) * size / INPUT as f32 - 0.5).max(0.0);
        let i = (f.floor() as i64).min(last - start);
        let frac = if start + i >= last { 0.0 } else { f - i as f32 };
        (start + i, (start + i + 1).min(last), frac)
    };
    for dy in 0..INPUT {
        let (y0, y1, fy) = axis(dy, ch, t, b);
        for dx in 0..INPUT {
            let (x0, x1, fx) = axis(dx, cw, l, r);
            let px = |x: i64, y: i64| img.get_pixel(x as u32, y as u32).0;
            let (a, bb, c, d) = (px(x0, y0), px(x1, y0), px(x0, y1), px(x1, y1));
            for (plane, ch_rgb) in [2usize, 1, 0].into_iter().enumerate() {
                let top = a[ch_rgb] as f32 * (1.0 - fx) + bb[ch_rgb] as f32 * fx;
                let bottom = c[ch_rgb] as f32 * (1.0 - fx) + d[ch_rgb] as f32 * fx;
                // Rounded like the 8-bit crops the networks were trained on.
                planes[plane * INPUT * INPUT + dy * INPUT + dx] = (top * (1.0 - fy) + bottom * fy).round();
            }
        }
    }
    Ok(input)
}

fn inference(e: impl std::fmt::Display) -> FaceError {
    FaceError::Inference(e.to_string())
}

/// One network of the ensemble.
struct Net {
    plan: Arc<TypedRunnableModel>,
    crop_scale: f32,
}

/// The liveness ensemble.
pub struct Liveness {
    nets: Vec<Net>,
    /// How detector boxes are mapped to the networks' kind of box.
    pub box_map: BoxMap,
}

impl Liveness {
    /// Loads the ensemble from `models_dir`. A missing or damaged file is an
    /// error: a door that requires liveness must not start without it.
    pub fn load(models_dir: &std::path::Path) -> Result<Self, FaceError> {
        let dir = crate::model_files::ModelDir::open(models_dir)?;
        let nets = FILES
            .iter()
            .map(|f| {
                let bytes = dir.read(f)?;
                Self::net(&bytes).map_err(|e| FaceError::Model(format!("{}: {e}", models_dir.join(f).display())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Liveness { nets, box_map: BoxMap::default() })
    }

    fn net(bytes: &[u8]) -> Result<Net, FaceError> {
        let model = tract_onnx::onnx().proto_model_for_read(&mut &bytes[..]).map_err(|e| FaceError::Model(e.to_string()))?;
        let crop_scale = model
            .metadata_props
            .iter()
            .find(|p| p.key == "facegate.crop_scale")
            .and_then(|p| p.value.parse::<f32>().ok())
            .filter(|s| *s >= 1.0 && *s <= 8.0)
            .ok_or_else(|| FaceError::Model("no facegate.crop_scale in the metadata: not a facegate liveness model".into()))?;
        let plan = tract_onnx::onnx()
            .model_for_proto_model(&model)
            .and_then(|m| m.with_input_fact(0, f32::fact([1, 3, INPUT, INPUT]).into()))
            .and_then(|m| m.into_typed())
            .and_then(|m| m.into_decluttered())
            .and_then(channel_last)
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| FaceError::Model(format!("cannot load liveness network: {e}")))?;
        Ok(Net { plan, crop_scale })
    }

    /// Each network's crop scale, in ensemble order.
    pub fn crop_scales(&self) -> Vec<f32> {
        self.nets.iter().map(|n| n.crop_scale).collect()
    }

    /// Each network's live probability for the face in `bbox` (already mapped).
    pub fn probabilities(&self, img: &RgbImage, bbox: XywhBox) -> Result<Vec<f32>, FaceError> {
        Ok(self.class_probabilities(img, bbox)?.iter().map(|p| p[1]).collect())
    }

    /// Each network's three class probabilities (attack, live, attack) for
    /// the face in `bbox` (already mapped), in ensemble order.
    pub fn class_probabilities(&self, img: &RgbImage, bbox: XywhBox) -> Result<Vec<[f32; 3]>, FaceError> {
        if img.width() < 2 || img.height() < 2 || !(bbox[2] >= 1.0 && bbox[3] >= 1.0) {
            return Err(FaceError::Empty);
        }
        (0..self.nets.len())
            .map(|k| self.run(k, crop_tensor(img, crop_bounds(img.width(), img.height(), bbox, self.nets[k].crop_scale))?))
            .collect()
    }

    /// Network `k`'s class probabilities (attack, live, attack) for an input tensor.
    pub fn run(&self, k: usize, input: Tensor) -> Result<[f32; 3], FaceError> {
        let net = self.nets.get(k).ok_or_else(|| FaceError::Model(format!("no liveness network {k}")))?;
        let out = net.plan.run(tvec!(input.into_tvalue())).map_err(inference)?;
        crate::embed::clear_wide_register_state();
        let p = out[0].try_as_plain_ram().and_then(|v| v.as_slice::<f32>()).map_err(inference)?;
        match <[f32; 3]>::try_from(p) {
            Ok(p) if p.iter().all(|v| v.is_finite()) => Ok(p),
            _ => Err(FaceError::Model("liveness output is not 3 probabilities".into())),
        }
    }

    /// The live score in [0, 1] of the face the detector boxed as `face`.
    pub fn score(&self, img: &RgbImage, face: Rect) -> Result<f32, FaceError> {
        Ok(ensemble_score(&self.class_probabilities(img, self.box_map.apply(face))?))
    }
}

/// `model` (decluttered) with its convolutions run channel-last (NHWC), as
/// the liveness networks run: tract's depthwise kernel is vectorised over
/// channels there, which saves about 10 % of a liveness network's time on
/// x86 with the same values (`docs/liveness.md`).
pub fn channel_last(mut model: TypedModel) -> TractResult<TypedModel> {
    let nhwc = tract_onnx::tract_core::transform::get_transform("conv_nhwc")?
        .ok_or_else(|| TractError::msg("this tract has no conv_nhwc transform"))?;
    model.transform(&*nhwc)?;
    Ok(model)
}

/// The live score of the networks' class probabilities: their mean live
/// probability (NaN for no network, which [`is_live`] never passes).
pub fn ensemble_score(classes: &[[f32; 3]]) -> f32 {
    classes.iter().map(|p| p[1]).sum::<f32>() / classes.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_stay_inside_the_image_like_the_reference() {
        // Centred: scaled about the centre.
        assert_eq!(crop_bounds(640, 480, [300.0, 200.0, 40.0, 40.0], 2.0), (280, 180, 360, 260));
        // Near the left edge: shifted right, size kept.
        assert_eq!(crop_bounds(640, 480, [0.0, 200.0, 40.0, 40.0], 4.0), (0, 140, 160, 300));
        // Larger than the image allows: the scale shrinks to fit.
        let (l, t, r, b) = crop_bounds(640, 480, [200.0, 100.0, 200.0, 200.0], 4.0);
        assert!(l >= 0 && t == 0 && r <= 639 && b == 479, "{l} {t} {r} {b}");
    }

    #[test]
    fn the_crop_is_bgr_planes_of_raw_values() {
        let img = RgbImage::from_fn(100, 100, |x, _| image::Rgb([x as u8, 7, 200]));
        let t = crop_tensor(&img, (0, 0, 99, 99)).unwrap();
        let view = t.try_as_plain_ram().unwrap();
        let v = view.as_slice::<f32>().unwrap();
        let plane = INPUT * INPUT;
        assert_eq!((v[0], v[plane], v[2 * plane]), (200.0, 7.0, 0.0), "B, G, R; x = 0.125 rounds to level 0");
        let last = v[2 * plane + INPUT - 1];
        assert!((last - 99.0).abs() < 1.0, "the last column samples the right edge: {last}");
    }

    #[test]
    fn the_ensemble_score_is_the_mean_live_probability() {
        assert!((ensemble_score(&[[0.1, 0.8, 0.1], [0.3, 0.4, 0.3]]) - 0.6).abs() < 1e-6);
        assert!(!is_live(ensemble_score(&[]), 0.0), "no network: never live");
    }

    #[test]
    fn the_box_map_scales_about_a_shifted_centre() {
        let b = BoxMap { scale_x: 2.0, scale_y: 2.0, shift_y: 0.5 }.apply(Rect::new(10, 10, 19, 19));
        assert_eq!(b, [5.0, 10.0, 20.0, 20.0]);
    }
}
