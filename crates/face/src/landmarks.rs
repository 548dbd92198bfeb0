//! 5-point face landmarks: dlib's cascade of regression trees, in facegate's
//! own compact model format.
//!
//! Format (`FGSP` v1, little-endian): magic, version u32, landmarks u32,
//! cascades u32, trees per cascade u32, splits per tree u32, features per
//! cascade u32; initial shape f32 × 2L; then per cascade: anchors u8 × F,
//! deltas f32 × 2F, and per tree splits (u16, u16, f32) × S and leaves
//! f32 × 2L × (S + 1).

use crate::bytes::{ByteReader, ByteWriter};
use crate::geometry::{round_half_up, Point, Rect};
use crate::FaceError;
use image::RgbImage;

const MAGIC: &[u8; 4] = b"FGSP";
const VERSION: u32 = 1;

/// Number of landmarks the pipeline uses (dlib's 5-point model).
pub const LANDMARKS: usize = 5;

/// One tree split: left child when `f[a] - f[b] > threshold`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Split {
    /// First feature index.
    pub a: u16,
    /// Second feature index.
    pub b: u16,
    /// Threshold on the intensity difference.
    pub threshold: f32,
}

/// One cascade level.
#[derive(Debug, Clone, PartialEq)]
pub struct Cascade {
    /// Landmark each feature pixel is anchored to.
    pub anchors: Vec<u8>,
    /// Offset of each feature pixel from its anchor, in mean-shape units.
    pub deltas: Vec<[f32; 2]>,
    /// Splits of all trees, `splits_per_tree` each, breadth-first.
    pub splits: Vec<Split>,
    /// Leaves of all trees, `(splits_per_tree + 1) × 2L` values each.
    pub leaves: Vec<f32>,
}

/// The landmark model.
#[derive(Debug, Clone, PartialEq)]
pub struct LandmarkModel {
    /// Mean shape x0, y0, x1, … in box-normalised units.
    pub initial_shape: [f32; 2 * LANDMARKS],
    /// Splits per tree (complete binary trees: 2^depth − 1).
    pub splits_per_tree: usize,
    /// Cascade levels.
    pub cascades: Vec<Cascade>,
}

/// The five landmarks in dlib's order: right eye outer, right eye inner,
/// left eye outer, left eye inner, nose base (subject's left/right).
pub type Landmarks = [Point; LANDMARKS];

impl LandmarkModel {
    /// Parses the compact format, checking every index.
    pub fn from_bytes(data: &[u8]) -> Result<Self, FaceError> {
        let mut r = ByteReader::new(data, "landmark model");
        r.header(MAGIC, VERSION)?;
        let landmarks = r.u32()? as usize;
        let cascades = r.u32()? as usize;
        let trees = r.u32()? as usize;
        let splits_per_tree = r.u32()? as usize;
        let features = r.u32()? as usize;
        if landmarks != LANDMARKS || cascades > 64 || trees > 4096 || !(splits_per_tree + 1).is_power_of_two() || features > 4096
        {
            return Err(r.bad("implausible header"));
        }
        let initial_shape: [f32; 2 * LANDMARKS] = r.f32s(2 * LANDMARKS)?.try_into().expect("10 values");
        let leaf_len = (splits_per_tree + 1) * 2 * LANDMARKS;
        let mut out = Vec::with_capacity(cascades);
        for _ in 0..cascades {
            let anchors = r.take(features)?.to_vec();
            if anchors.iter().any(|a| *a as usize >= LANDMARKS) {
                return Err(r.bad("anchor out of range"));
            }
            let deltas = r.f32s(2 * features)?.chunks_exact(2).map(|c| [c[0], c[1]]).collect();
            let mut splits = Vec::with_capacity(trees * splits_per_tree);
            let mut leaves = Vec::with_capacity(trees * leaf_len);
            for _ in 0..trees {
                for _ in 0..splits_per_tree {
                    let s = Split { a: r.u16()?, b: r.u16()?, threshold: r.f32()? };
                    if s.a as usize >= features || s.b as usize >= features {
                        return Err(r.bad("split feature out of range"));
                    }
                    splits.push(s);
                }
                leaves.extend(r.f32s(leaf_len)?);
            }
            out.push(Cascade { anchors, deltas, splits, leaves });
        }
        r.finish()?;
        Ok(LandmarkModel { initial_shape, splits_per_tree, cascades: out })
    }

    /// Writes the compact format.
    pub fn to_bytes(&self) -> Vec<u8> {
        let features = self.cascades.first().map_or(0, |c| c.anchors.len());
        let trees = self.cascades.first().map_or(0, |c| c.splits.len() / self.splits_per_tree.max(1));
        let mut w = ByteWriter::default();
        w.bytes(MAGIC);
        for v in [VERSION as usize, LANDMARKS, self.cascades.len(), trees, self.splits_per_tree, features] {
            w.u32(v);
        }
        w.f32s(&self.initial_shape);
        let leaf_len = (self.splits_per_tree + 1) * 2 * LANDMARKS;
        for c in &self.cascades {
            w.bytes(&c.anchors);
            c.deltas.iter().for_each(|d| w.f32s(d));
            for (splits, leaves) in c.splits.chunks(self.splits_per_tree).zip(c.leaves.chunks(leaf_len)) {
                for s in splits {
                    w.u16(s.a);
                    w.u16(s.b);
                    w.f32s(&[s.threshold]);
                }
                w.f32s(leaves);
            }
        }
        w.0
    }

    /// Predicts the landmarks of the face in `rect` (a HOG-like face box).
    pub fn predict(&self, img: &RgbImage, rect: Rect) -> Landmarks {
        let mut shape = self.initial_shape;
        let features = self.cascades.first().map_or(0, |c| c.anchors.len());
        let mut values = vec![0f32; features];
        let (w, h) = (img.width() as i64, img.height() as i64);
        let to_image = |u: f32, v: f32| {
            let x = rect.left as f64 + u as f64 * (rect.right - rect.left) as f64;
            let y = rect.top as f64 + v as f64 * (rect.bottom - rect.top) as f64;
            (x, y)
        };
        let leaf_len = (self.splits_per_tree + 1) * 2 * LANDMARKS;
        for c in &self.cascades {
            let m = similarity(&self.initial_shape, &shape);
            for ((value, anchor), d) in values.iter_mut().zip(&c.anchors).zip(&c.deltas) {
                let a = *anchor as usize;
                let u = (m[0] * d[0] + m[1] * d[1]) + shape[2 * a];
                let v = (m[2] * d[0] + m[3] * d[1]) + shape[2 * a + 1];
                let (x, y) = to_image(u, v);
                let (px, py) = (round_half_up(x), round_half_up(y));
                *value = if px >= 0 && py >= 0 && px < w && py < h {
                    let p = img.get_pixel(px as u32, py as u32).0;
                    ((p[0] as u32 + p[1] as u32 + p[2] as u32) / 3) as f32
                } else {
                    0.0
                };
            }
            for (splits, leaves) in c.splits.chunks(self.splits_per_tree).zip(c.leaves.chunks(leaf_len)) {
                let mut i = 0;
                while i < splits.len() {
                    let s = splits[i];
                    i = if values[s.a as usize] - values[s.b as usize] > s.threshold { 2 * i + 1 } else { 2 * i + 2 };
                }
                let leaf = &leaves[(i - splits.len()) * 2 * LANDMARKS..][..2 * LANDMARKS];
                for (s, l) in shape.iter_mut().zip(leaf) {
                    *s += l;
                }
            }
        }
        std::array::from_fn(|i| {
            let (x, y) = to_image(shape[2 * i], shape[2 * i + 1]);
            Point::new(round_half_up(x) as f64, round_half_up(y) as f64)
        })
    }
}

/// 2×2 part of the similarity transform `from` → `to` (row-major a, −b, b, a),
/// computed in f64 and used in f32 as dlib does.
fn similarity(from: &[f32; 2 * LANDMARKS], to: &[f32; 2 * LANDMARKS]) -> [f32; 4] {
    let points = |s: &[f32; 2 * LANDMARKS]| -> [Point; LANDMARKS] {
        std::array::from_fn(|i| Point::new(s[2 * i] as f64, s[2 * i + 1] as f64))
    };
    let [a, b, _, _] = crate::geometry::similarity(&points(from), &points(to));
    [a as f32, -b as f32, b as f32, a as f32]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_model() -> LandmarkModel {
        LandmarkModel {
            initial_shape: [0.2, 0.3, 0.8, 0.3, 0.5, 0.5, 0.3, 0.8, 0.7, 0.8],
            splits_per_tree: 1,
            cascades: vec![Cascade {
                anchors: vec![0, 4],
                deltas: vec![[0.0, 0.0], [0.0, 0.0]],
                splits: vec![Split { a: 0, b: 1, threshold: 10.0 }],
                leaves: [[0.1f32; 10], [-0.1f32; 10]].concat(),
            }],
        }
    }

    #[test]
    fn format_round_trips_and_rejects_damage() {
        let m = tiny_model();
        let bytes = m.to_bytes();
        assert_eq!(LandmarkModel::from_bytes(&bytes).unwrap(), m);
        assert!(LandmarkModel::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        let mut bad_anchor = bytes.clone();
        bad_anchor[28 + 40] = 9; // first anchor byte
        assert!(LandmarkModel::from_bytes(&bad_anchor).is_err());
        assert!(LandmarkModel::from_bytes(b"nope").is_err());
    }

    #[test]
    fn tree_takes_the_branch_the_pixels_choose() {
        let m = tiny_model();
        let rect = Rect::new(0, 0, 100, 100);
        // Bright at landmark 0 (20, 30), dark at landmark 4 (70, 80): f0 - f1 > 10 → left leaf (+0.1).
        let mut img = RgbImage::new(101, 101);
        img.put_pixel(20, 30, image::Rgb([200, 200, 200]));
        let p = m.predict(&img, rect);
        assert_eq!(p[0], Point::new(30.0, 40.0));
        // Uniform image: difference 0 → right leaf (−0.1).
        let p = m.predict(&RgbImage::new(101, 101), rect);
        assert_eq!(p[0], Point::new(10.0, 20.0));
    }

    #[test]
    fn similarity_of_a_shape_with_itself_is_identity() {
        let s = tiny_model().initial_shape;
        let m = similarity(&s, &s);
        assert!((m[0] - 1.0).abs() < 1e-6 && m[1].abs() < 1e-6);
    }
}
