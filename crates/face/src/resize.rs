//! Image resampling exactly as dlib does it, so detector boxes match dlib's.

use image::RgbImage;

/// Bilinear resize of an RGB image, reproducing dlib's `resize_image` for
/// `rgb_pixel` (its SSE path in f32 for groups of four columns, then a
/// double-precision tail), so pyramid levels are pixel-identical to dlib's.
pub fn resize_bilinear(src: &RgbImage, out_w: u32, out_h: u32) -> RgbImage {
    let mut out = RgbImage::new(0, 0);
    resize_bilinear_into(src, out_w, out_h, &mut ResizeScratch::default(), &mut out);
    out
}

/// Column tables reused between calls.
#[derive(Debug, Default)]
pub struct ResizeScratch {
    simd_cols: Vec<(usize, f32)>,
    tail_cols: Vec<(usize, usize, f64)>,
}

/// As [`resize_bilinear`], into `out`, reusing its pixel buffer and `scratch`.
pub fn resize_bilinear_into(src: &RgbImage, out_w: u32, out_h: u32, scratch: &mut ResizeScratch, out: &mut RgbImage) {
    resize_bilinear_rows_with(src, out_w, out_h, scratch, out, |rows, out_rows| rows.run(0..rows.out_h, out_rows));
}

/// As [`resize_bilinear_into`], with the output's two halves computed at once
/// on the current rayon pool (`rayon::join`); the same pixels.
pub fn resize_bilinear_into_on_pool(src: &RgbImage, out_w: u32, out_h: u32, scratch: &mut ResizeScratch, out: &mut RgbImage) {
    resize_bilinear_rows_with(src, out_w, out_h, scratch, out, |rows, out_rows| {
        let half = rows.out_h / 2;
        let (top, bottom) = out_rows.split_at_mut(half * rows.out_w * 3);
        rayon::join(|| rows.run(0..half, top), || rows.run(half..rows.out_h, bottom));
    });
}

/// Sets up a resize (output buffer, column tables) and hands its rows to `run_rows`.
fn resize_bilinear_rows_with(
    src: &RgbImage,
    out_w: u32,
    out_h: u32,
    scratch: &mut ResizeScratch,
    out: &mut RgbImage,
    run_rows: impl FnOnce(&Rows, &mut [u8]),
) {
    let mut buf = std::mem::take(out).into_raw();
    buf.clear();
    buf.resize(out_w as usize * out_h as usize * 3, 0);
    *out = RgbImage::from_raw(out_w, out_h, buf).expect("buffer sized for the image");
    let (in_w, in_h) = (src.width() as i64, src.height() as i64);
    if out_w == 0 || out_h == 0 || in_w == 0 || in_h == 0 {
        return;
    }
    let (out_w, out_h) = (out_w as usize, out_h as usize);
    let x_scale = (in_w - 1) as f64 / (out_w as i64 - 1).max(1) as f64;
    let y_scale = (in_h - 1) as f64 / (out_h as i64 - 1).max(1) as f64;
    // Column positions are the same on every row: dlib recomputes them per row,
    // we compute them once. Four-column groups use f32 lanes stepping by 4·x_scale
    // (dlib's SSE path); the remaining columns use f64 (its scalar tail).
    let step = (4.0 * x_scale) as f32;
    let x0 = -4.0 * x_scale;
    let mut lane_x = [x0 as f32, (x0 + x_scale) as f32, (x0 + 2.0 * x_scale) as f32, (x0 + 3.0 * x_scale) as f32];
    let simd_cols = &mut scratch.simd_cols;
    simd_cols.clear();
    while simd_cols.len() + 4 <= out_w {
        for l in &mut lane_x {
            *l += step;
        }
        let left = lane_x.map(|v| v as i32 as i64); // truncation, as _mm_cvttps_epi32
        if left[3] + 1 >= in_w {
            break;
        }
        for lane in 0..4 {
            simd_cols.push((left[lane] as usize, lane_x[lane] - left[lane] as f32));
        }
    }
    let first_tail = simd_cols.len();
    let mut x = -x_scale + first_tail as f64 * x_scale;
    let tail_cols = &mut scratch.tail_cols;
    tail_cols.clear();
    tail_cols.extend((first_tail..out_w).map(|_| {
        x += x_scale;
        let left = x.floor() as i64;
        (left as usize, (left + 1).min(in_w - 1) as usize, x - left as f64)
    }));
    let raw = src.as_raw();
    let row_len = in_w as usize * 3;
    // Columns whose right neighbour is not the row's last pixel can read 4 bytes past it.
    let wide_cols = simd_cols.partition_point(|&(l, _)| (l + 1) * 3 + 4 <= row_len);
    let rows = Rows { raw, row_len, in_h, y_scale, out_w, out_h, simd_cols, wide_cols, tail_cols, first_tail };
    run_rows(&rows, out.as_mut());
}

/// What every output row of one resize needs.
struct Rows<'a> {
    raw: &'a [u8],
    row_len: usize,
    in_h: i64,
    y_scale: f64,
    out_w: usize,
    out_h: usize,
    simd_cols: &'a [(usize, f32)],
    wide_cols: usize,
    tail_cols: &'a [(usize, usize, f64)],
    first_tail: usize,
}

impl Rows<'_> {
    /// Output rows `rows` into `dst` (those rows only).
    fn run(&self, rows: std::ops::Range<usize>, dst: &mut [u8]) {
        let Rows { raw, row_len, in_h, y_scale, out_w, simd_cols, wide_cols, tail_cols, first_tail, .. } = *self;
        // dlib steps y by y_scale from row to row: the same sums, in the same
        // order, give the same rows whichever thread computes them.
        let mut y = -y_scale;
        for _ in 0..rows.start {
            y += y_scale;
        }
        for r in 0..rows.len() {
            y += y_scale;
            let top = y.floor() as i64;
            let bottom = (top + 1).min(in_h - 1);
            let tb = y - top as f64;
            let (tb_f, inv_tb_f) = (tb as f32, (1.0 - tb) as f32);
            let top_row = &raw[top as usize * row_len..][..row_len];
            let bottom_row = &raw[bottom as usize * row_len..][..row_len];
            let out_row = &mut dst[r * out_w * 3..(r + 1) * out_w * 3];
            for (k, (px, &(l, lr))) in out_row.chunks_exact_mut(3).zip(simd_cols.iter()).enumerate() {
                let inv_lr = 1.0 - lr;
                let w = [inv_tb_f * inv_lr, inv_tb_f * lr, tb_f * inv_lr, tb_f * lr];
                let v = if k < wide_cols {
                    blend(&top_row[l * 3..l * 3 + 7], &bottom_row[l * 3..l * 3 + 7], w)
                } else {
                    let (t, b) = (&top_row[l * 3..l * 3 + 6], &bottom_row[l * 3..l * 3 + 6]);
                    std::array::from_fn(|ch| {
                        let ch = ch.min(2);
                        (w[0] * t[ch] as f32 + w[1] * t[ch + 3] as f32 + w[2] * b[ch] as f32 + w[3] * b[ch + 3] as f32) as i32
                            as u8
                    })
                };
                px.copy_from_slice(&v[..3]);
            }
            for (k, &(l, rr, lr)) in tail_cols.iter().enumerate() {
                let c = first_tail + k;
                for ch in 0..3 {
                    let (i, j) = (l * 3 + ch, rr * 3 + ch);
                    let v = (1.0 - tb) * ((1.0 - lr) * top_row[i] as f64 + lr * top_row[j] as f64)
                        + tb * ((1.0 - lr) * bottom_row[i] as f64 + lr * bottom_row[j] as f64);
                    out_row[c * 3 + ch] = v.clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
}

/// One output pixel from its four neighbours: `t[0..3]`/`t[3..6]` the top-left
/// and top-right pixels, `b` the bottom ones (7 bytes each: the seventh is read
/// and dropped), weights top-left, top-right, bottom-left, bottom-right. The
/// channels are vector lanes, with dlib's products and sums in dlib's order;
/// the fourth lane is the next pixel's byte and is dropped.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn blend(t: &[u8], b: &[u8], w: [f32; 4]) -> [u8; 4] {
    use std::arch::x86_64::*;
    let word = |p: &[u8]| i32::from_le_bytes([p[0], p[1], p[2], p[3]]);
    let (tl, tr, bl, br) = (word(&t[..4]), word(&t[3..7]), word(&b[..4]), word(&b[3..7]));
    // SAFETY: SSE2 is part of the x86-64 baseline; only registers are touched.
    unsafe {
        let zero = _mm_setzero_si128();
        let lanes = |v: i32| _mm_cvtepi32_ps(_mm_unpacklo_epi16(_mm_unpacklo_epi8(_mm_cvtsi32_si128(v), zero), zero));
        let term = |k: f32, v: i32| _mm_mul_ps(_mm_set1_ps(k), lanes(v));
        let sum = _mm_add_ps(_mm_add_ps(_mm_add_ps(term(w[0], tl), term(w[1], tr)), term(w[2], bl)), term(w[3], br));
        // Truncation as `as i32`; the sums lie in 0..=255, so packing saturates nothing.
        let bytes = _mm_packus_epi16(_mm_packs_epi32(_mm_cvttps_epi32(sum), zero), zero);
        _mm_cvtsi128_si32(bytes).to_le_bytes()
    }
}

/// As the x86-64 version, in plain arrays the compiler vectorises where it can.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn blend(t: &[u8], b: &[u8], w: [f32; 4]) -> [u8; 4] {
    std::array::from_fn(|ch| {
        (w[0] * t[ch] as f32 + w[1] * t[ch + 3] as f32 + w[2] * b[ch] as f32 + w[3] * b[ch + 3] as f32) as i32 as u8
    })
}

/// Output size of dlib's `pyramid_up` with `pyramid_down<2>` (about twice the size).
pub fn pyramid_up_size(width: u32, height: u32) -> (u32, u32) {
    if width == 0 || height == 0 {
        return (0, 0);
    }
    // rect_up maps the last pixel p to 2p + (2.5, 1.5), rounded half up.
    let w = ((2.0 * (width - 1) as f64 + 2.5 + 0.5).floor() as u32) + 1;
    let h = ((2.0 * (height - 1) as f64 + 1.5 + 0.5).floor() as u32) + 1;
    (w, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The resize, and dlib's f32 formula per pixel in its plainest form for the
    /// four-column groups (the columns the vector lanes compute).
    fn resize_and_reference(src: &RgbImage, out_w: u32, out_h: u32) -> (RgbImage, RgbImage, usize) {
        let mut scratch = ResizeScratch::default();
        let mut got = RgbImage::new(0, 0);
        resize_bilinear_into(src, out_w, out_h, &mut scratch, &mut got);
        let y_scale = (src.height() - 1) as f64 / (out_h - 1) as f64;
        let mut want = got.clone();
        let mut y = -y_scale;
        for r in 0..out_h {
            y += y_scale; // accumulated, as dlib steps down the rows
            let (top, tb) = (y.floor() as u32, y - y.floor());
            let (tb, inv_tb) = (tb as f32, (1.0 - tb) as f32);
            let bottom = (top + 1).min(src.height() - 1);
            for (c, &(l, lr)) in scratch.simd_cols.iter().enumerate() {
                let (tlf, trf, blf, brf) = (inv_tb * (1.0 - lr), inv_tb * lr, tb * (1.0 - lr), tb * lr);
                let p = |x: usize, y: u32, ch: usize| src.get_pixel(x as u32, y)[ch] as f32;
                for ch in 0..3 {
                    let v = tlf * p(l, top, ch) + trf * p(l + 1, top, ch) + blf * p(l, bottom, ch) + brf * p(l + 1, bottom, ch);
                    want.get_pixel_mut(c as u32, r)[ch] = v as i32 as u8;
                }
            }
        }
        (got, want, scratch.simd_cols.len())
    }

    #[test]
    fn vector_lanes_compute_the_scalar_formula_up_to_the_last_column() {
        let mut seed = 0x2545_f491_u32;
        for (w, h) in [(640, 480), (7, 5), (251, 249), (9, 400)] {
            let src = RgbImage::from_fn(w, h, |_, _| {
                image::Rgb([(); 3].map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                }))
            });
            let (ow, oh) = (5 * w / 6, 5 * h / 6);
            let (got, want, lane_cols) = resize_and_reference(&src, ow, oh);
            assert!(lane_cols + 8 > ow as usize, "{w}×{h}: only {lane_cols} of {ow} columns in lanes");
            for (x, y, px) in want.enumerate_pixels().filter(|(x, _, _)| (*x as usize) < lane_cols) {
                assert_eq!(got.get_pixel(x, y), px, "{w}×{h} → {ow}×{oh} at ({x}, {y})");
            }
            // In two halves on a pool: every byte the same, whatever thread ran which half.
            let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
            let mut halves = RgbImage::from_pixel(3, 3, image::Rgb([1, 2, 3])); // a reused buffer
            pool.install(|| resize_bilinear_into_on_pool(&src, ow, oh, &mut ResizeScratch::default(), &mut halves));
            assert_eq!(halves.dimensions(), (ow, oh));
            assert!(halves.as_raw() == got.as_raw(), "{w}×{h}: the halves differ from the whole");
        }
    }
}
