//! Image resampling exactly as dlib does it, so detector boxes match dlib's.

use image::RgbImage;

/// Bilinear resize of an RGB image, reproducing dlib's `resize_image` for
/// `rgb_pixel` (its SSE path in f32 for groups of four columns, then a
/// double-precision tail), so pyramid levels are pixel-identical to dlib's.
pub fn resize_bilinear(src: &RgbImage, out_w: u32, out_h: u32) -> RgbImage {
    let mut out = RgbImage::new(out_w, out_h);
    let (in_w, in_h) = (src.width() as i64, src.height() as i64);
    if out_w == 0 || out_h == 0 || in_w == 0 || in_h == 0 {
        return out;
    }
    let raw = src.as_raw();
    let px = |r: i64, c: i64, ch: usize| raw[((r * in_w + c) * 3) as usize + ch];
    let x_scale = (in_w - 1) as f64 / (out_w as i64 - 1).max(1) as f64;
    let y_scale = (in_h - 1) as f64 / (out_h as i64 - 1).max(1) as f64;
    let dst = out.as_mut();
    let mut y = -y_scale;
    for r in 0..out_h as usize {
        y += y_scale;
        let top = y.floor() as i64;
        let bottom = (top + 1).min(in_h - 1);
        let tb = y - top as f64;
        let (tb_f, inv_tb_f) = (tb as f32, (1.0 - tb) as f32);
        let step = (4.0 * x_scale) as f32;
        let x0 = -4.0 * x_scale;
        let mut lanes = [x0 as f32, (x0 + x_scale) as f32, (x0 + 2.0 * x_scale) as f32, (x0 + 3.0 * x_scale) as f32];
        let mut c = 0usize;
        loop {
            for l in &mut lanes {
                *l += step;
            }
            let left = lanes.map(|v| v as i32 as i64); // truncation, as _mm_cvttps_epi32
            if left[3] + 1 >= in_w || c + 4 > out_w as usize {
                break;
            }
            for lane in 0..4 {
                let lr = lanes[lane] - left[lane] as f32;
                let inv_lr = 1.0 - lr;
                let (tlf, trf, blf, brf) = (inv_tb_f * inv_lr, inv_tb_f * lr, tb_f * inv_lr, tb_f * lr);
                let (l, rr) = (left[lane], left[lane] + 1);
                for ch in 0..3 {
                    let v = tlf * px(top, l, ch) as f32
                        + trf * px(top, rr, ch) as f32
                        + blf * px(bottom, l, ch) as f32
                        + brf * px(bottom, rr, ch) as f32;
                    dst[(r * out_w as usize + c + lane) * 3 + ch] = v as i32 as u8;
                }
            }
            c += 4;
        }
        let mut x = -x_scale + c as f64 * x_scale;
        while c < out_w as usize {
            x += x_scale;
            let left = x.floor() as i64;
            let right = (left + 1).min(in_w - 1);
            let lr = x - left as f64;
            for ch in 0..3 {
                let v = (1.0 - tb) * ((1.0 - lr) * px(top, left, ch) as f64 + lr * px(top, right, ch) as f64)
                    + tb * ((1.0 - lr) * px(bottom, left, ch) as f64 + lr * px(bottom, right, ch) as f64);
                dst[(r * out_w as usize + c) * 3 + ch] = v.clamp(0.0, 255.0) as u8;
            }
            c += 1;
        }
    }
    out
}

/// One level of dlib's `pyramid_down<6>`: ⌊5n/6⌋ rows and columns, bilinear.
pub fn pyramid_down_5_6(src: &RgbImage) -> RgbImage {
    resize_bilinear(src, 5 * src.width() / 6, 5 * src.height() / 6)
}

/// dlib's `pyramid_up` with `pyramid_down<2>`: about twice the size, bilinear.
pub fn pyramid_up_2(src: &RgbImage) -> RgbImage {
    if src.width() == 0 || src.height() == 0 {
        return RgbImage::new(0, 0);
    }
    // rect_up maps the last pixel p to 2p + (2.5, 1.5), rounded half up.
    let w = ((2.0 * (src.width() - 1) as f64 + 2.5 + 0.5).floor() as u32) + 1;
    let h = ((2.0 * (src.height() - 1) as f64 + 1.5 + 0.5).floor() as u32) + 1;
    resize_bilinear(src, w, h)
}
