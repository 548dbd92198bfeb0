//! Felzenszwalb HOG features (31 planes per 8×8 cell) as dlib computes them,
//! including its f32 arithmetic, so detector scores match dlib's.

use image::RgbImage;

/// Orientation unit vectors (9 undirected bins; 18 directed with the sign).
const DIRECTIONS: [[f32; 2]; 9] = [
    [1.0000, 0.0000],
    [0.9397, 0.3420],
    [0.7660, 0.6428],
    [0.500, 0.8660],
    [0.1736, 0.9848],
    [-0.1736, 0.9848],
    [-0.5000, 0.8660],
    [-0.7660, 0.6428],
    [-0.9397, 0.3420],
];

/// Number of feature planes.
pub const PLANES: usize = 31;

/// A feature image: 31 planes of `rows × cols`, zero-padded for the filters.
#[derive(Debug, Clone, Default)]
pub struct FhogImage {
    /// Rows of each plane.
    pub rows: usize,
    /// Columns of each plane.
    pub cols: usize,
    /// Plane-major values: `data[(p * rows + r) * cols + c]`.
    pub data: Vec<f32>,
}

/// Buffers reused between calls so extraction allocates nothing once warm.
#[derive(Debug, Default)]
pub struct FhogScratch {
    hist: Vec<f32>,
    norm: Vec<f32>,
}

/// `v` resized to `n` zeros, keeping its allocation.
fn zeroed(v: &mut Vec<f32>, n: usize) {
    v.clear();
    v.resize(n, 0.0);
}

/// The strongest colour channel's gradient at column `x` of the row `cur`;
/// ties go to the earlier channel (`earlier_wins`, dlib's scalar path) or the
/// later one (its SIMD path).
#[inline(always)]
fn gradient(prev: &[u8], cur: &[u8], next: &[u8], x: usize, earlier_wins: bool) -> (i32, i32, i32) {
    let mut best = (0, 0, -1);
    for ch in 0..3 {
        let gx = cur[(x + 1) * 3 + ch] as i32 - cur[(x - 1) * 3 + ch] as i32;
        let gy = next[x * 3 + ch] as i32 - prev[x * 3 + ch] as i32;
        let len = gx * gx + gy * gy;
        if len > best.2 || (!earlier_wins && len == best.2) {
            best = (gx, gy, len);
        }
    }
    best
}

/// dlib's orientation bin (0..18) of a gradient, by its f32 dot products.
fn orientation_exact(gx: f32, gy: f32) -> u8 {
    let (mut best_dot, mut best_o) = (0f32, 0u8);
    for (o, d) in DIRECTIONS.iter().enumerate() {
        let dot = d[0] * gx + d[1] * gy;
        if dot > best_dot {
            best_dot = dot;
            best_o = o as u8;
        } else if -dot > best_dot {
            best_dot = -dot;
            best_o = o as u8 + 9;
        }
    }
    best_o
}

/// Orientation bins of every integer gradient (−255..=255)², computed once with
/// the exact f32 procedure: a table look-up instead of nine dot products per pixel.
fn orientation_table() -> &'static [u8] {
    static TABLE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        (-255..=255i32).flat_map(|gy| (-255..=255i32).map(move |gx| orientation_exact(gx as f32, gy as f32))).collect()
    })
}

#[inline(always)]
fn orientation(table: &[u8], gx: i32, gy: i32) -> usize {
    table[((gy + 255) * 511 + gx + 255) as usize] as usize
}

/// Sum of four lanes in the order SSE's horizontal add uses.
fn sum4(v: [f32; 4]) -> f32 {
    (v[0] + v[1]) + (v[2] + v[3])
}

/// Extracts fHOG features with `cell` pixel cells, padded for a
/// `filter_rows × filter_cols` filter (dlib's `extract_fhog_features`).
pub fn extract(img: &RgbImage, cell: usize, filter_rows: usize, filter_cols: usize) -> FhogImage {
    let mut out = FhogImage::default();
    extract_into(img, cell, filter_rows, filter_cols, &mut FhogScratch::default(), &mut out);
    out
}

/// As [`extract`], into reused buffers.
pub fn extract_into(
    img: &RgbImage,
    cell: usize,
    filter_rows: usize,
    filter_cols: usize,
    scratch: &mut FhogScratch,
    out: &mut FhogImage,
) {
    let (nr, nc) = (img.height() as usize, img.width() as usize);
    let cells_nr = (nr as f32 / cell as f32 + 0.5) as usize;
    let cells_nc = (nc as f32 / cell as f32 + 0.5) as usize;
    if cells_nr <= 2 || cells_nc <= 2 {
        out.rows = 0;
        out.cols = 0;
        out.data.clear();
        return;
    }
    let (hog_nr, hog_nc) = (cells_nr - 2, cells_nc - 2);
    // Histograms with a one-cell border so the bilinear votes need no bounds checks.
    let hist_cols = cells_nc + 2;
    let hist = &mut scratch.hist;
    zeroed(hist, (cells_nr + 2) * hist_cols * 18);
    let raw = img.as_raw();
    let visible_nr = (cells_nr * cell).min(nr) - 1;
    let visible_nc = (cells_nc * cell).min(nc) - 1;
    let cell_f = cell as f32;
    let table = orientation_table();
    let row_len = nc * 3;
    for y in 1..visible_nr {
        let yp = ((y as f64 + 0.5) / cell as f64 - 0.5) as f32;
        let iyp = yp.floor() as i64;
        let vy0 = yp - iyp as f32;
        let vy1 = 1.0 - vy0;
        let row0 = (iyp + 1) as usize;
        let (prev, cur, next) =
            (&raw[(y - 1) * row_len..][..row_len], &raw[y * row_len..][..row_len], &raw[(y + 1) * row_len..][..row_len]);
        let (upper, lower) = hist.split_at_mut((row0 + 1) * hist_cols * 18);
        let upper = &mut upper[row0 * hist_cols * 18..];
        let lower = &mut lower[..hist_cols * 18];
        let mut vote = |ix: usize, o: usize, w: [f32; 4]| {
            upper[ix * 18 + o] += w[0];
            lower[ix * 18 + o] += w[1];
            upper[(ix + 1) * 18 + o] += w[2];
            lower[(ix + 1) * 18 + o] += w[3];
        };
        let mut x = 1;
        // dlib's 8-wide SIMD loop: later channel wins ties, weights as vy·(vx·v).
        while x + 7 < visible_nc {
            for xx in x..x + 8 {
                let (gx, gy, len) = gradient(prev, cur, next, xx, false);
                let v = (len as f32).sqrt();
                let o = orientation(table, gx, gy);
                let xp = (xx as f32 + 0.5) / cell_f + 0.5;
                let ixp = xp as i32;
                let vx0 = xp - ixp as f32;
                let vx1 = 1.0 - vx0;
                let (vx1, vx0) = (vx1 * v, vx0 * v);
                vote(ixp as usize, o, [vy1 * vx1, vy0 * vx1, vy1 * vx0, vy0 * vx0]);
            }
            x += 8;
        }
        // Scalar tail: earlier channel wins ties, weights as (vy·vx)·v.
        while x < visible_nc {
            let (gx, gy, len) = gradient(prev, cur, next, x, true);
            let o = orientation(table, gx, gy);
            let v = (len as f32).sqrt();
            let xp = ((x as f64 + 0.5) / cell as f64 - 0.5) as f32;
            let ixp = xp.floor() as i64;
            let vx0 = xp - ixp as f32;
            let vx1 = 1.0 - vx0;
            vote((ixp + 1) as usize, o, [vy1 * vx1 * v, vy0 * vx1 * v, vy1 * vx0 * v, vy0 * vx0 * v]);
            x += 1;
        }
    }
    let h = |r: usize, c: usize, o: usize| hist[(r * hist_cols + c) * 18 + o];
    let norm = &mut scratch.norm;
    zeroed(norm, cells_nr * cells_nc);
    for r in 0..cells_nr {
        for c in 0..cells_nc {
            let mut s = 0f32;
            for o in 0..9 {
                let v = h(r + 1, c + 1, o) + h(r + 1, c + 1, o + 9);
                s += v * v;
            }
            norm[r * cells_nc + c] = s;
        }
    }
    let rows = hog_nr + filter_rows - 1;
    let cols = hog_nc + filter_cols - 1;
    let (off_r, off_c) = ((filter_rows - 1) / 2, (filter_cols - 1) / 2);
    zeroed(&mut out.data, PLANES * rows * cols);
    out.rows = rows;
    out.cols = cols;
    let data = &mut out.data;
    let n = |r: usize, c: usize| norm[r * cells_nc + c];
    let eps = 0.0001f32;
    for y in 0..hog_nr {
        for x in 0..hog_nc {
            let z1 = [n(y + 1, x + 1), n(y, x + 1), n(y + 1, x), n(y, x)];
            let z2 = [n(y + 1, x + 2), n(y, x + 2), n(y + 1, x + 1), n(y, x + 1)];
            let z3 = [n(y + 2, x + 1), n(y + 1, x + 1), n(y + 2, x), n(y + 1, x)];
            let z4 = [n(y + 2, x + 2), n(y + 1, x + 2), n(y + 2, x + 1), n(y + 1, x + 1)];
            let nn: [f32; 4] = std::array::from_fn(|i| 0.2f32 * (z1[i] + z2[i] + z3[i] + z4[i] + eps).sqrt());
            let inv: [f32; 4] = std::array::from_fn(|i| 0.1f32 / nn[i]);
            let at = |p: usize| (p * rows + y + off_r) * cols + x + off_c;
            let mut t = [0f32; 4];
            for o in (0..18).step_by(3) {
                let hs: [[f32; 4]; 3] =
                    std::array::from_fn(|k| std::array::from_fn(|i| h(y + 2, x + 2, o + k).min(nn[i]) * inv[i]));
                for k in 0..3 {
                    data[at(o + k)] = sum4(hs[k]);
                }
                for i in 0..4 {
                    t[i] += (hs[0][i] + hs[1][i]) + hs[2][i];
                }
            }
            for ti in &mut t {
                *ti *= (2.0 * 0.2357) as f32;
            }
            for o in 0..9 {
                let v = h(y + 2, x + 2, o) + h(y + 2, x + 2, o + 9);
                data[at(18 + o)] = sum4(std::array::from_fn(|i| v.min(nn[i]) * inv[i]));
            }
            for (i, ti) in t.iter().enumerate() {
                data[at(27 + i)] = *ti;
            }
        }
    }
}
