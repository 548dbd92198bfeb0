//! Face alignment for SFace: the 112×112 chip of the ArcFace five-point
//! template, as OpenCV's `FaceRecognizerSF::alignCrop` cuts it (a
//! least-squares similarity from the five points to the template, then a
//! bilinear warp with black outside the image).
//!
//! The five points come from YuNet (eyes, nose tip, mouth corners) or from
//! dlib's five landmarks (eye corners, base of the nose), which are placed on
//! a template of their own, measured where they fall on ArcFace chips.

use crate::geometry::{similarity, Point};
use crate::landmarks::Landmarks;
use image::{Rgb, RgbImage};

/// Chip side in pixels.
pub const ARCFACE_SIZE: u32 = 112;

/// The ArcFace template on a 112×112 chip: the image-left eye, the
/// image-right eye, the nose tip, the image-left and image-right mouth
/// corners (YuNet's point order).
pub const ARCFACE_TEMPLATE: [[f64; 2]; 5] =
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]];

/// Where dlib's five landmarks (outer and inner corner of the image-right eye,
/// outer and inner corner of the image-left eye, base of the nose) fall on
/// ArcFace chips: their mean over 1,324 LFW faces (every 10th photo) aligned
/// on YuNet's points, landmarks predicted in YuNet's box; the spread is 2–3 px
/// per coordinate (`cargo run --release -p facegate-face --example
/// arcface_landmarks -- models lfw.tgz 10`).
pub const DLIB_ON_ARCFACE: [[f64; 2]; 5] = [[79.09, 52.57], [65.44, 52.99], [30.79, 52.90], [44.42, 53.14], [55.10, 79.37]];

/// An affine map from image to chip pixels: chip = [a b c; d e f] · (x, y, 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArcfacePlacement {
    /// Row-major 2×3 matrix.
    pub m: [f64; 6],
}

impl ArcfacePlacement {
    /// The chip of five points (YuNet's order), fitted to [`ARCFACE_TEMPLATE`].
    pub fn from_points(points: &[Point; 5]) -> Self {
        Self::fit(points, &ARCFACE_TEMPLATE)
    }

    /// The chip of dlib's five landmarks, fitted to [`DLIB_ON_ARCFACE`].
    pub fn from_landmarks(landmarks: &Landmarks) -> Self {
        Self::fit(landmarks, &DLIB_ON_ARCFACE)
    }

    fn fit(points: &[Point; 5], template: &[[f64; 2]; 5]) -> Self {
        let to: Vec<Point> = template.iter().map(|p| Point::new(p[0], p[1])).collect();
        let [a, b, tx, ty] = similarity(points, &to);
        ArcfacePlacement { m: [a, -b, tx, b, a, ty] }
    }

    /// Where an image point lands on the chip.
    pub fn to_chip(&self, p: Point) -> Point {
        let m = &self.m;
        Point::new(m[0] * p.x + m[1] * p.y + m[2], m[3] * p.x + m[4] * p.y + m[5])
    }

    /// The image point a chip point comes from.
    pub fn to_image(&self, p: Point) -> Point {
        let m = &self.m;
        let det = m[0] * m[4] - m[1] * m[3];
        let (x, y) = (p.x - m[2], p.y - m[5]);
        Point::new((m[4] * x - m[1] * y) / det, (-m[3] * x + m[0] * y) / det)
    }

    /// The same chip moved by (`dx`, `dy`) chip widths, covering `scale` times
    /// as much face and turned by `dangle` radians: test-time jitter.
    pub fn jittered(&self, dx: f64, dy: f64, scale: f64, dangle: f64) -> Self {
        let side = ARCFACE_SIZE as f64;
        let c = side / 2.0;
        // chip' = R(−dangle)/scale · (chip − c − d·side) + c, composed with self.
        let (s, co) = (-dangle).sin_cos();
        let (a, b) = (co / scale, s / scale);
        let (ox, oy) = (c + dx * side, c + dy * side);
        let m = &self.m;
        let rows = [[a, -b], [b, a]];
        let mut out = [0.0; 6];
        for r in 0..2 {
            let [p, q] = rows[r];
            out[3 * r] = p * m[0] + q * m[3];
            out[3 * r + 1] = p * m[1] + q * m[4];
            out[3 * r + 2] = p * (m[2] - ox) + q * (m[5] - oy) + c;
        }
        ArcfacePlacement { m: out }
    }
}

/// Cuts the 112×112 chip: each chip pixel is the bilinear sample of the image
/// at its source point (OpenCV's `warpAffine`: no half-pixel shift, source
/// points on a 1/32-pixel grid, neighbours outside the image black).
pub fn arcface_chip(img: &RgbImage, placement: &ArcfacePlacement) -> RgbImage {
    let side = ARCFACE_SIZE;
    let mut chip = RgbImage::new(side, side);
    let (w, h) = (img.width() as i64, img.height() as i64);
    let raw = img.as_raw();
    let pixel = |x: i64, y: i64, ch: usize| -> f64 {
        if x < 0 || y < 0 || x >= w || y >= h {
            0.0
        } else {
            raw[((y * w + x) * 3) as usize + ch] as f64
        }
    };
    for row in 0..side {
        for col in 0..side {
            let p = placement.to_image(Point::new(col as f64, row as f64));
            // OpenCV keeps 5 fractional bits of the source position.
            let (qx, qy) = ((p.x * 32.0).round(), (p.y * 32.0).round());
            if !qx.is_finite() || !qy.is_finite() || qx.abs() > 1e12 || qy.abs() > 1e12 {
                continue;
            }
            let (x0, y0) = ((qx / 32.0).floor() as i64, (qy / 32.0).floor() as i64);
            let (fx, fy) = ((qx - 32.0 * x0 as f64) / 32.0, (qy - 32.0 * y0 as f64) / 32.0);
            if x0 + 1 < 0 || y0 + 1 < 0 || x0 >= w || y0 >= h {
                continue;
            }
            let px: [u8; 3] = std::array::from_fn(|ch| {
                let top = (1.0 - fx) * pixel(x0, y0, ch) + fx * pixel(x0 + 1, y0, ch);
                let bottom = (1.0 - fx) * pixel(x0, y0 + 1, ch) + fx * pixel(x0 + 1, y0 + 1, ch);
                ((1.0 - fy) * top + fy * bottom).round().clamp(0.0, 255.0) as u8
            });
            chip.put_pixel(col, row, Rgb(px));
        }
    }
    chip
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template_points(scale: f64, angle: f64, shift: (f64, f64)) -> [Point; 5] {
        let (s, c) = angle.sin_cos();
        std::array::from_fn(|i| {
            let [x, y] = ARCFACE_TEMPLATE[i];
            Point::new(scale * (c * x - s * y) + shift.0, scale * (s * x + c * y) + shift.1)
        })
    }

    #[test]
    fn points_on_a_scaled_turned_template_map_back_onto_it() {
        let pts = template_points(2.5, 0.3, (40.0, -7.0));
        let p = ArcfacePlacement::from_points(&pts);
        for (q, t) in pts.iter().zip(ARCFACE_TEMPLATE) {
            let on = p.to_chip(*q);
            assert!((on.x - t[0]).abs() < 1e-9 && (on.y - t[1]).abs() < 1e-9, "{on:?} vs {t:?}");
            let back = p.to_image(on);
            assert!((back.x - q.x).abs() < 1e-9 && (back.y - q.y).abs() < 1e-9);
        }
    }

    #[test]
    fn a_chip_of_a_template_sized_face_copies_the_pixels() {
        let img = RgbImage::from_fn(200, 150, |x, y| Rgb([(x % 256) as u8, (y % 256) as u8, ((x * 3 + y) % 256) as u8]));
        let p = ArcfacePlacement::from_points(&template_points(1.0, 0.0, (30.0, 20.0)));
        let chip = arcface_chip(&img, &p);
        assert_eq!(chip.get_pixel(0, 0), img.get_pixel(30, 20));
        assert_eq!(chip.get_pixel(111, 57), img.get_pixel(141, 77));
        // Outside the image: black.
        let far = ArcfacePlacement::from_points(&template_points(1.0, 0.0, (5000.0, 20.0)));
        assert!(arcface_chip(&img, &far).pixels().all(|px| px.0 == [0, 0, 0]));
    }

    #[test]
    fn jitter_moves_scales_and_turns_about_the_chip_centre() {
        let p = ArcfacePlacement::from_points(&template_points(1.0, 0.0, (0.0, 0.0)));
        assert_eq!(p.jittered(0.0, 0.0, 1.0, 0.0).m.map(|v| (v * 1e9).round()), p.m.map(|v| (v * 1e9).round()));
        // Moved right by 10 % of a chip: the image point that was at the centre is now left of it.
        let moved = p.jittered(0.1, 0.0, 1.0, 0.0).to_chip(Point::new(56.0, 56.0));
        assert!((moved.x - (56.0 - 11.2)).abs() < 1e-9 && (moved.y - 56.0).abs() < 1e-9, "{moved:?}");
        // Twice the coverage: a point 20 px from the centre lands 10 px from it.
        let wide = p.jittered(0.0, 0.0, 2.0, 0.0).to_chip(Point::new(76.0, 56.0));
        assert!((wide.x - 66.0).abs() < 1e-9, "{wide:?}");
    }
}
