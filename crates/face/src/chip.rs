//! Face alignment: the 150×150 chip dlib's ResNet expects, pixel-identical to
//! `dlib.get_face_chip(img, shape, 150, 0.25)`.

use crate::geometry::{similarity, Point};
use crate::landmarks::{Landmarks, LANDMARKS};
use image::{Rgb, RgbImage};

/// Chip side in pixels.
pub const CHIP_SIZE: u32 = 150;
/// Border around the mean face, as a fraction of the chip (dlib's default 0.25).
pub const CHIP_PADDING: f64 = 0.25;

/// dlib's 5-point mean face in the unit square (same part order as the landmarks).
const MEAN_FACE: [[f64; 2]; LANDMARKS] = [
    [0.8595674595992, 0.2134981538014],
    [0.6460604764104, 0.2289674387677],
    [0.1205750620789, 0.2137274526848],
    [0.3340850613712, 0.2290642403242],
    [0.4901123135679, 0.6277975316475],
];

/// A rectangle with real corners; width is `right - left + 1` as in dlib.
#[derive(Debug, Clone, Copy, PartialEq)]
struct DRect {
    l: f64,
    t: f64,
    r: f64,
    b: f64,
}

impl DRect {
    fn area(&self) -> f64 {
        if self.r < self.l || self.b < self.t {
            0.0
        } else {
            (self.r - self.l + 1.0) * (self.b - self.t + 1.0)
        }
    }
    fn center(&self) -> Point {
        Point::new((self.l + self.r) / 2.0, (self.t + self.b) / 2.0)
    }
    /// One level of dlib's `pyramid_down<2>` applied to both corners.
    fn down(&self) -> DRect {
        DRect { l: self.l / 2.0 - 1.25, t: self.t / 2.0 - 0.75, r: self.r / 2.0 - 1.25, b: self.b / 2.0 - 0.75 }
    }
    fn translate(&self, dx: f64, dy: f64) -> DRect {
        DRect { l: self.l + dx, t: self.t + dy, r: self.r + dx, b: self.b + dy }
    }
}

/// Where the chip lies in the image: a square and its rotation about its centre.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChipPlacement {
    rect: DRect,
    /// Rotation in radians.
    pub angle: f64,
}

impl ChipPlacement {
    /// The same chip moved by (`dx`, `dy`) chip widths, scaled by `scale` and
    /// turned by `dangle` radians: test-time jitter around the aligned face.
    pub fn jittered(&self, dx: f64, dy: f64, scale: f64, dangle: f64) -> ChipPlacement {
        let side = self.rect.r - self.rect.l + 1.0;
        let c = self.rect.center();
        let (cx, cy) = (c.x + dx * side, c.y + dy * side);
        let half = (side * scale - 1.0) / 2.0;
        ChipPlacement { rect: DRect { l: cx - half, t: cy - half, r: cx + half, b: cy + half }, angle: self.angle + dangle }
    }
}

fn rotate(center: Point, p: Point, angle: f64) -> Point {
    let (s, c) = angle.sin_cos();
    let (x, y) = (p.x - center.x, p.y - center.y);
    Point::new(c * x - s * y + center.x, s * x + c * y + center.y)
}

/// dlib's `get_face_chip_details(shape, 150, 0.25)`.
pub fn chip_placement(landmarks: &Landmarks) -> ChipPlacement {
    let size = CHIP_SIZE as f64;
    let template: Vec<Point> = MEAN_FACE
        .iter()
        .map(|p| {
            Point::new(
                size * (CHIP_PADDING + p[0]) / (2.0 * CHIP_PADDING + 1.0),
                size * (CHIP_PADDING + p[1]) / (2.0 * CHIP_PADDING + 1.0),
            )
        })
        .collect();
    let [a, b, tx, ty] = similarity(&template, landmarks);
    let angle = b.atan2(a);
    let scale = (a * a + b * b).sqrt();
    let c = Point::new(a * size / 2.0 - b * size / 2.0 + tx, b * size / 2.0 + a * size / 2.0 + ty);
    let half = (size * scale - 1.0) / 2.0;
    ChipPlacement { rect: DRect { l: c.x - half, t: c.y - half, r: c.x + half, b: c.y + half }, angle }
}

/// One `pyramid_down<2>` step: [1 4 6 4 1]² filter, every other pixel.
fn pyramid_down(src: &RgbImage) -> RgbImage {
    let (w, h) = (src.width() as usize, src.height() as usize);
    if w < 5 || h < 5 {
        return RgbImage::new(0, 0);
    }
    let (ow, oh) = ((w - 3) / 2, (h - 3) / 2);
    const K: [u32; 5] = [1, 4, 6, 4, 1];
    // Horizontal pass on every source row, kept unscaled (factor 16).
    let raw = src.as_raw();
    let mut horiz = vec![0u32; h * ow * 3];
    for y in 0..h {
        for ox in 0..ow {
            for ch in 0..3 {
                let s: u32 = (0..5).map(|k| K[k] * raw[(y * w + 2 * ox + k) * 3 + ch] as u32).sum();
                horiz[(y * ow + ox) * 3 + ch] = s;
            }
        }
    }
    let mut out = RgbImage::new(ow as u32, oh as u32);
    for oy in 0..oh {
        for ox in 0..ow {
            let px: [u8; 3] = std::array::from_fn(|ch| {
                ((0..5).map(|k| K[k] * horiz[((2 * oy + k) * ow + ox) * 3 + ch]).sum::<u32>() / 256) as u8
            });
            out.put_pixel(ox as u32, oy as u32, Rgb(px));
        }
    }
    out
}

/// Cuts the chip out of `img` as dlib's `extract_image_chip` does.
pub fn extract_chip(img: &RgbImage, placement: &ChipPlacement) -> RgbImage {
    let target_area = (CHIP_SIZE * CHIP_SIZE) as f64;
    let mut depth = 0;
    let mut grow = 2.0;
    let mut probe = placement.rect.down();
    while probe.area() > target_area {
        probe = probe.down();
        depth += 1;
        grow = grow * 2.0 + 2.0;
    }
    let mut rect = placement.rect;
    let pyramid;
    let source = if depth == 0 {
        img
    } else {
        let c = rect.center();
        let corners = [(rect.l, rect.t), (rect.r, rect.t), (rect.l, rect.b), (rect.r, rect.b)]
            .map(|(x, y)| rotate(c, Point::new(x, y), placement.angle));
        let min_x = corners.iter().map(|p| p.x).fold(f64::INFINITY, f64::min) - grow;
        let min_y = corners.iter().map(|p| p.y).fold(f64::INFINITY, f64::min) - grow;
        let max_x = corners.iter().map(|p| p.x).fold(f64::NEG_INFINITY, f64::max) + grow;
        let max_y = corners.iter().map(|p| p.y).fold(f64::NEG_INFINITY, f64::max) + grow;
        let l = min_x.max(0.0).round() as i64;
        let t = min_y.max(0.0).round() as i64;
        let r = max_x.min(img.width() as f64 - 1.0).round() as i64;
        let b = max_y.min(img.height() as f64 - 1.0).round() as i64;
        let mut level = if r >= l && b >= t {
            image::imageops::crop_imm(img, l as u32, t as u32, (r - l + 1) as u32, (b - t + 1) as u32).to_image()
        } else {
            RgbImage::new(0, 0)
        };
        rect = rect.translate(-(l as f64), -(t as f64));
        for _ in 0..depth {
            level = pyramid_down(&level);
            rect = rect.down();
        }
        pyramid = level;
        &pyramid
    };
    let c = rect.center();
    let last = (CHIP_SIZE - 1) as f64;
    let o = rotate(c, Point::new(rect.l, rect.t), placement.angle);
    let x_end = rotate(c, Point::new(rect.r, rect.t), placement.angle);
    let y_end = rotate(c, Point::new(rect.l, rect.b), placement.angle);
    let (ax, ay) = ((x_end.x - o.x) / last, (x_end.y - o.y) / last);
    let (bx, by) = ((y_end.x - o.x) / last, (y_end.y - o.y) / last);
    let (w, h) = (source.width() as i64, source.height() as i64);
    let raw = source.as_raw();
    let mut chip = RgbImage::new(CHIP_SIZE, CHIP_SIZE);
    for row in 0..CHIP_SIZE {
        for col in 0..CHIP_SIZE {
            let (cf, rf) = (col as f64, row as f64);
            let x = ax * cf + bx * rf + o.x;
            let y = ay * cf + by * rf + o.y;
            let (left, top) = (x.floor() as i64, y.floor() as i64);
            if left < 0 || top < 0 || left + 1 >= w || top + 1 >= h {
                continue; // any neighbour outside: black, as dlib
            }
            let (fx, fy) = (x - left as f64, y - top as f64);
            let at = |yy: i64, xx: i64, ch: usize| raw[((yy * w + xx) * 3) as usize + ch] as f64;
            let px: [u8; 3] = std::array::from_fn(|ch| {
                let upper = (1.0 - fx) * at(top, left, ch) + fx * at(top, left + 1, ch);
                let lower = (1.0 - fx) * at(top + 1, left, ch) + fx * at(top + 1, left + 1, ch);
                ((1.0 - fy) * upper + fy * lower) as u8
            });
            chip.put_pixel(col, row, Rgb(px));
        }
    }
    chip
}

/// Landmarks → aligned 150×150 chip.
pub fn face_chip(img: &RgbImage, landmarks: &Landmarks) -> RgbImage {
    extract_chip(img, &chip_placement(landmarks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn landmarks_on_the_template_give_an_unrotated_chip_of_the_same_scale() {
        let size = CHIP_SIZE as f64;
        let lm: Landmarks = std::array::from_fn(|i| {
            Point::new(10.0 + size * (CHIP_PADDING + MEAN_FACE[i][0]) / 1.5, 20.0 + size * (CHIP_PADDING + MEAN_FACE[i][1]) / 1.5)
        });
        let p = chip_placement(&lm);
        assert!(p.angle.abs() < 1e-9);
        assert!((p.rect.l - 10.5).abs() < 1e-9 && (p.rect.r - 159.5).abs() < 1e-9, "{:?}", p.rect);
    }

    #[test]
    fn pyramid_down_of_flat_image_stays_flat_and_shrinks() {
        let img = RgbImage::from_pixel(23, 13, Rgb([200, 100, 7]));
        let d = pyramid_down(&img);
        assert_eq!((d.width(), d.height()), (10, 5));
        assert!(d.pixels().all(|p| p.0 == [200, 100, 7]));
    }

    #[test]
    fn chip_outside_the_image_is_black() {
        let img = RgbImage::from_pixel(50, 50, Rgb([255, 255, 255]));
        let lm: Landmarks = std::array::from_fn(|i| Point::new(1000.0 + 50.0 * MEAN_FACE[i][0], 1000.0 + 50.0 * MEAN_FACE[i][1]));
        assert!(face_chip(&img, &lm).pixels().all(|p| p.0 == [0, 0, 0]));
    }
}
