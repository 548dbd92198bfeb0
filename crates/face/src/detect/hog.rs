//! dlib's HOG face detector (5 fHOG filters on a pyramid_down<6> image
//! pyramid), in facegate's own model format, with boxes matching dlib's.
//!
//! Each filter plane is stored as dlib runs it: a sum of separable terms
//! (column vector ⊗ row vector, from its SVD), ~2 per plane instead of 100
//! weights, which makes filtering about 2.5× cheaper.
//!
//! Format (`FGHD` v2, little-endian): magic, version u32, cell size u32,
//! filter rows u32, filter cols u32, padding u32, min pyramid layer w/h u32,
//! max pyramid levels u32, NMS iou f64, NMS covered f64, filter count u32;
//! then per filter an f64 threshold and, per plane (31), a term count u32 and
//! the terms: row vector (cols f32) then column vector (rows f32).

use super::fhog::{self, FhogImage, PLANES};
use super::{non_max_suppression, round_rect, undo_upsampling, up_6_5, Detection};
use crate::bytes::{ByteReader, ByteWriter};
use crate::geometry::Rect;
use crate::resize::{pyramid_up_size, resize_bilinear_into, resize_bilinear_into_on_pool, ResizeScratch};
use crate::FaceError;
use image::RgbImage;
use std::cell::RefCell;

const MAGIC: &[u8; 4] = b"FGHD";
const VERSION: u32 = 2;

/// One rank-1 part of a filter plane: `weight[i][j] = col[i] · row[j]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SeparableTerm {
    /// Horizontal factor (filter columns long).
    pub row: Vec<f32>,
    /// Vertical factor (filter rows long).
    pub col: Vec<f32>,
}

/// One linear filter over fHOG features.
#[derive(Debug, Clone, PartialEq)]
pub struct HogFilter {
    /// Per feature plane, the separable terms whose sum is the plane's weights.
    pub planes: Vec<Vec<SeparableTerm>>,
    /// Detection when the filter response reaches this value.
    pub threshold: f64,
}

/// The HOG face detector.
#[derive(Debug, Clone, PartialEq)]
pub struct HogDetector {
    /// fHOG cell size in pixels.
    pub cell_size: usize,
    /// Filter height in cells.
    pub filter_rows: usize,
    /// Filter width in cells.
    pub filter_cols: usize,
    /// Cells of padding around the detection box inside the filter.
    pub padding: usize,
    /// The pyramid stops below this width and height.
    pub min_pyramid_layer: [usize; 2],
    /// At most this many pyramid levels.
    pub max_pyramid_levels: usize,
    /// Non-max suppression: intersection over bounding box above this suppresses.
    pub nms_iou: f64,
    /// Non-max suppression: a box covered more than this suppresses.
    pub nms_covered: f64,
    /// The filters (frontal, left, right, rotated left, rotated right).
    pub filters: Vec<HogFilter>,
}

/// Per-thread buffers: detection allocates nothing once they have grown.
#[derive(Default)]
struct Scratch {
    up: [RgbImage; 2],
    /// The pyramid's levels after the first (index 0 unused: level 0 is the base image).
    levels: Vec<RgbImage>,
    resize: ResizeScratch,
    /// One per level searched, so levels can be searched at once.
    features: Vec<LevelFeatures>,
    /// One per level searched and filter (level-major).
    searches: Vec<FilterSearch>,
    raw: Vec<(f64, usize, Rect)>,
}

/// The features of one pyramid level searched.
#[derive(Default)]
struct LevelFeatures {
    level: usize,
    fhog: fhog::FhogScratch,
    feats: FhogImage,
}

/// One filter's search of one level: its buffers and what it found.
#[derive(Default)]
struct FilterSearch {
    saliency: Vec<f32>,
    separable: Vec<f32>,
    found: Vec<(f64, usize, Rect)>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// pyramid_down<6>::point_down applied to both corners.
fn rect_down_5_6(r: &Rect) -> Rect {
    let d = |v: i64| (v as f64 - 0.3) * 5.0 / 6.0;
    round_rect(d(r.left), d(r.top), d(r.right), d(r.bottom))
}

/// pyramid_down<6>::point_up applied `levels` times to both corners.
fn rect_up_6_5(r: &Rect, levels: usize) -> Rect {
    let up = |v: i64| up_6_5(v as f64, levels);
    round_rect(up(r.left), up(r.top), up(r.right), up(r.bottom))
}

impl HogDetector {
    /// Parses the compact format.
    pub fn from_bytes(data: &[u8]) -> Result<Self, FaceError> {
        let mut r = ByteReader::new(data, "HOG detector");
        r.header(MAGIC, VERSION)?;
        let mut field = || r.u32().map(|v| v as usize);
        let (cell_size, filter_rows, filter_cols, padding) = (field()?, field()?, field()?, field()?);
        let min_pyramid_layer = [field()?, field()?];
        let max_pyramid_levels = field()?;
        let (nms_iou, nms_covered) = (r.f64()?, r.f64()?);
        let count = r.u32()? as usize;
        let sane =
            (1..=64).contains(&filter_rows) && (1..=64).contains(&filter_cols) && 2 * padding < filter_rows.min(filter_cols);
        if cell_size == 0 || !sane || !(1..=64).contains(&count) {
            return Err(r.bad("implausible header"));
        }
        let mut filters = Vec::with_capacity(count);
        for _ in 0..count {
            let threshold = r.f64()?;
            let mut planes = Vec::with_capacity(PLANES);
            for _ in 0..PLANES {
                let terms = r.u32()? as usize;
                if terms > filter_rows.min(filter_cols) {
                    return Err(r.bad("more separable terms than the filter's rank allows"));
                }
                let plane = (0..terms)
                    .map(|_| Ok(SeparableTerm { row: r.f32s(filter_cols)?, col: r.f32s(filter_rows)? }))
                    .collect::<Result<Vec<_>, FaceError>>()?;
                planes.push(plane);
            }
            filters.push(HogFilter { planes, threshold });
        }
        r.finish()?;
        Ok(HogDetector {
            cell_size,
            filter_rows,
            filter_cols,
            padding,
            min_pyramid_layer,
            max_pyramid_levels,
            nms_iou,
            nms_covered,
            filters,
        })
    }

    /// Writes the compact format.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = ByteWriter::default();
        w.bytes(MAGIC);
        let [min_w, min_h] = self.min_pyramid_layer;
        for v in [
            VERSION as usize,
            self.cell_size,
            self.filter_rows,
            self.filter_cols,
            self.padding,
            min_w,
            min_h,
            self.max_pyramid_levels,
        ] {
            w.u32(v);
        }
        w.f64(self.nms_iou);
        w.f64(self.nms_covered);
        w.u32(self.filters.len());
        for f in &self.filters {
            w.f64(f.threshold);
            for plane in &f.planes {
                w.u32(plane.len());
                for t in plane {
                    w.f32s(&t.row);
                    w.f32s(&t.col);
                }
            }
        }
        w.0
    }

    /// Number of pyramid levels dlib uses for an image of this size.
    fn levels(&self, width: u32, height: u32) -> usize {
        let mut rect = Rect::new(0, 0, width as i64 - 1, height as i64 - 1);
        let mut levels = 0;
        loop {
            rect = rect_down_5_6(&rect);
            levels += 1;
            let big = rect.width() >= self.min_pyramid_layer[0] as i64 && rect.height() >= self.min_pyramid_layer[1] as i64;
            if !big || levels >= self.max_pyramid_levels {
                return levels;
            }
        }
    }

    /// Filter `index`'s response over one feature image, where the filter fits whole.
    #[allow(clippy::too_many_arguments)]
    fn respond(
        &self,
        index: usize,
        feats: &FhogImage,
        out: &mut Vec<(f64, usize, Rect)>,
        adjust: f64,
        level: usize,
        saliency: &mut Vec<f32>,
        scratch: &mut Vec<f32>,
    ) {
        let (fr, fc) = (self.filter_rows, self.filter_cols);
        if feats.rows < fr || feats.cols < fc {
            return;
        }
        let (out_rows, out_cols) = (feats.rows - fr + 1, feats.cols - fc + 1);
        let box_w = (fc - 2 * self.padding) as i64;
        let box_h = (fr - 2 * self.padding) as i64;
        saliency.resize(out_rows * out_cols, 0.0);
        scratch.resize(feats.rows * out_cols, 0.0);
        let (saliency, scratch) = (&mut saliency[..out_rows * out_cols], &mut scratch[..feats.rows * out_cols]);
        {
            let filter = &self.filters[index];
            correlate(feats, filter, fr, fc, scratch, saliency);
            let thresh = filter.threshold + adjust;
            for r in 0..out_rows {
                for c in 0..out_cols {
                    let s = saliency[r * out_cols + c] as f64;
                    if s >= thresh {
                        // Centre of the filter in padded feature coordinates, then to pixels.
                        let (cr, cc) = ((r + fr / 2) as i64, (c + fc / 2) as i64);
                        let fb =
                            Rect::new(cc - box_w / 2, cr - box_h / 2, cc - box_w / 2 + box_w - 1, cr - box_h / 2 + box_h - 1);
                        let img_rect = self.feats_to_image(&fb);
                        out.push((s - filter.threshold, index, rect_up_6_5(&img_rect, level)));
                    }
                }
            }
        }
    }

    /// dlib's `fhog_to_image` for a rectangle in padded feature coordinates.
    fn feats_to_image(&self, r: &Rect) -> Rect {
        let cell = self.cell_size as i64;
        let half = cell / 2;
        let (pc, pr) = (((self.filter_cols - 1) / 2) as i64, ((self.filter_rows - 1) / 2) as i64);
        let map = |v: i64, pad: i64| {
            let p = (v + 1 - pad) * cell + 1;
            if p >= 0 {
                p + half
            } else {
                p - half
            }
        };
        Rect::new(map(r.left, pc), map(r.top, pr), map(r.right, pc), map(r.bottom, pr))
    }

    /// Width in pixels of the boxes found at pyramid `level` (before upsampling is undone).
    fn box_width_at(&self, level: usize) -> i64 {
        let (w, h) = ((self.filter_cols - 2 * self.padding) as i64, (self.filter_rows - 2 * self.padding) as i64);
        let (c, r) = (4 * self.filter_cols as i64, 4 * self.filter_rows as i64); // any position away from the border
        rect_up_6_5(&self.feats_to_image(&Rect::new(c - w / 2, r - h / 2, c - w / 2 + w - 1, r - h / 2 + h - 1)), level).width()
    }

    /// Runs the detector on `img` (dlib's `detector(img, upsample)` with
    /// `adjust_threshold`); every face box with its score and filter index,
    /// best first, after non-max suppression.
    pub fn detect(&self, img: &RgbImage, upsample: u32, adjust_threshold: f64) -> Vec<Detection> {
        self.detect_min(img, upsample, adjust_threshold, 0)
    }

    /// As [`detect`](Self::detect), skipping the pyramid levels whose boxes are
    /// narrower than `min_width` pixels: large levels cost the most, and a door
    /// camera does not need faces smaller than a person standing at the door.
    pub fn detect_min(&self, img: &RgbImage, upsample: u32, adjust_threshold: f64, min_width: u32) -> Vec<Detection> {
        SCRATCH.with(|cell| {
            let mut guard = cell.borrow_mut();
            let scratch = &mut *guard;
            self.detect_with(img, upsample, adjust_threshold, min_width, scratch)
        })
    }

    /// Resizes the pyramid's levels one after the other (level 0 is `base`)
    /// and hands each searched level to `searched` as soon as it exists, with
    /// its feature buffers and its filters' searches; stops after the last.
    /// `on_pool`: each level's two halves are resized at once on the current
    /// rayon pool (the first level searched waits for the resizes before it).
    #[allow(clippy::too_many_arguments)]
    fn walk_pyramid<'a>(
        &self,
        on_pool: bool,
        base: &'a RgbImage,
        images: &'a mut [RgbImage],
        resize: &mut ResizeScratch,
        features: &'a mut [LevelFeatures],
        searches: &'a mut [FilterSearch],
        mut searched: impl FnMut(&'a RgbImage, &'a mut LevelFeatures, &'a mut [FilterSearch]),
    ) {
        let mut work = features.iter_mut().zip(searches.chunks_mut(self.filters.len().max(1))).peekable();
        let mut previous = base;
        for (level, slot) in images.iter_mut().enumerate() {
            let Some((next, _)) = work.peek() else { return };
            let next = next.level;
            let image: &'a RgbImage = if level == 0 {
                base
            } else {
                let (w, h) = (5 * previous.width() / 6, 5 * previous.height() / 6);
                if on_pool {
                    resize_bilinear_into_on_pool(previous, w, h, resize, slot);
                } else {
                    resize_bilinear_into(previous, w, h, resize, slot);
                }
                slot
            };
            if level == next {
                let (features, found) = work.next().expect("peeked");
                searched(image, features, found);
            }
            previous = image;
        }
    }

    /// The fHOG features of one pyramid level.
    fn extract(&self, image: &RgbImage, level: &mut LevelFeatures) {
        fhog::extract_into(image, self.cell_size, self.filter_rows, self.filter_cols, &mut level.fhog, &mut level.feats);
    }

    /// Filter `filter`'s search of one level's features, into `search.found`.
    fn search(&self, level: &LevelFeatures, filter: usize, search: &mut FilterSearch, adjust_threshold: f64) {
        search.found.clear();
        self.respond(
            filter,
            &level.feats,
            &mut search.found,
            adjust_threshold,
            level.level,
            &mut search.saliency,
            &mut search.separable,
        );
    }

    fn detect_with(
        &self,
        img: &RgbImage,
        upsample: u32,
        adjust_threshold: f64,
        min_width: u32,
        s: &mut Scratch,
    ) -> Vec<Detection> {
        // Upsampled copies and pyramid levels alternate between two buffers each.
        let (mut up, mut up_spare) = (std::mem::take(&mut s.up[0]), std::mem::take(&mut s.up[1]));
        for i in 0..upsample {
            let (w, h) =
                if i == 0 { pyramid_up_size(img.width(), img.height()) } else { pyramid_up_size(up.width(), up.height()) };
            resize_bilinear_into(if i == 0 { img } else { &up }, w, h, &mut s.resize, &mut up_spare);
            std::mem::swap(&mut up, &mut up_spare);
        }
        let base = if upsample > 0 { &up } else { img };
        s.raw.clear();
        // The levels searched: those whose boxes are wide enough, a suffix of
        // the pyramid (boxes widen level by level).
        let mut levels = 0;
        let mut searched = 0;
        if base.width() > 0 && base.height() > 0 {
            levels = self.levels(base.width(), base.height());
            if s.levels.len() < levels {
                s.levels.resize_with(levels, RgbImage::default);
            }
            for level in (0..levels).filter(|&l| self.box_width_at(l) >> upsample >= min_width as i64) {
                if s.features.len() <= searched {
                    s.features.push(LevelFeatures::default());
                }
                s.features[searched].level = level;
                searched += 1;
            }
        }
        let filters = self.filters.len();
        if s.searches.len() < searched * filters {
            s.searches.resize_with(searched * filters, FilterSearch::default);
        }
        let (images, resize) = (&mut s.levels[..levels], &mut s.resize);
        let (features, searches) = (&mut s.features[..searched], &mut s.searches[..searched * filters]);
        // Inside `Cores::split` (the door with several cores, one frame at a
        // time) each level is handed to the pool as soon as it is resized,
        // and its filters' searches as soon as its features are: the next
        // levels are resized meanwhile, each in two halves at once. Otherwise
        // one after the other.
        let split = crate::cores::on_splitting_pool(|| {
            rayon::scope(|tasks| {
                self.walk_pyramid(true, base, images, resize, features, searches, |image, level, found| {
                    tasks.spawn(move |tasks| {
                        self.extract(image, level);
                        let level = &*level;
                        for (filter, search) in found.iter_mut().enumerate() {
                            tasks.spawn(move |_| self.search(level, filter, search, adjust_threshold));
                        }
                    })
                })
            })
        });
        if !split {
            let (images, resize) = (&mut s.levels[..levels], &mut s.resize);
            let (features, searches) = (&mut s.features[..searched], &mut s.searches[..searched * filters]);
            self.walk_pyramid(false, base, images, resize, features, searches, |image, level, found| {
                self.extract(image, level);
                for (filter, search) in found.iter_mut().enumerate() {
                    self.search(level, filter, search, adjust_threshold);
                }
            });
        }
        let searches = &s.searches[..searched * filters];
        for w in searches.iter() {
            s.raw.extend_from_slice(&w.found);
        }
        s.up = [up, up_spare];
        let mut kept = non_max_suppression(&mut s.raw, self.nms_iou, self.nms_covered);
        undo_upsampling(&mut kept, upsample);
        kept
    }
}

/// `dst[i] += k · src[i]`, fused where the target has FMA.
#[inline(always)]
fn axpy<const FMA: bool>(dst: &mut [f32], src: &[f32], k: f32) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = if FMA { s.mul_add(k, *d) } else { *d + k * s };
    }
}

/// Filter response on the valid area: per plane and term, a horizontal pass
/// into `scratch` (all rows), then a vertical pass added into `saliency`.
#[inline(always)]
fn correlate_with<const FMA: bool>(
    feats: &FhogImage,
    filter: &HogFilter,
    fr: usize,
    fc: usize,
    scratch: &mut [f32],
    saliency: &mut [f32],
) {
    let (rows, cols) = (feats.rows, feats.cols);
    let (out_rows, out_cols) = (rows - fr + 1, cols - fc + 1);
    saliency.fill(0.0);
    for (p, terms) in filter.planes.iter().enumerate() {
        let plane = &feats.data[p * rows * cols..(p + 1) * rows * cols];
        for term in terms {
            scratch.fill(0.0);
            for r in 0..rows {
                let dst = &mut scratch[r * out_cols..(r + 1) * out_cols];
                let src = &plane[r * cols..(r + 1) * cols];
                for (j, k) in term.row.iter().enumerate() {
                    axpy::<FMA>(dst, &src[j..j + out_cols], *k);
                }
            }
            for r in 0..out_rows {
                let dst = &mut saliency[r * out_cols..(r + 1) * out_cols];
                for (i, k) in term.col.iter().enumerate() {
                    axpy::<FMA>(dst, &scratch[(r + i) * out_cols..(r + i + 1) * out_cols], *k);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn correlate_avx2(feats: &FhogImage, filter: &HogFilter, fr: usize, fc: usize, scratch: &mut [f32], saliency: &mut [f32]) {
    correlate_with::<true>(feats, filter, fr, fc, scratch, saliency)
}

/// Picks the widest vector unit the CPU has (AVX2+FMA on x86-64, NEON on aarch64).
fn correlate(feats: &FhogImage, filter: &HogFilter, fr: usize, fc: usize, scratch: &mut [f32], saliency: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function was compiled for.
        return unsafe { correlate_avx2(feats, filter, fr, fc, scratch, saliency) };
    }
    correlate_with::<{ cfg!(target_arch = "aarch64") }>(feats, filter, fr, fc, scratch, saliency)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyramid_levels_stop_below_the_minimum_layer() {
        let d = HogDetector {
            cell_size: 8,
            filter_rows: 10,
            filter_cols: 10,
            padding: 0,
            min_pyramid_layer: [64, 64],
            max_pyramid_levels: 1000,
            nms_iou: 0.33,
            nms_covered: 0.79,
            filters: vec![HogFilter {
                planes: vec![vec![SeparableTerm { row: vec![0.5; 10], col: vec![2.0; 10] }]; PLANES],
                threshold: 0.0,
            }],
        };
        // 250 → 208 → 173 → 144 → 120 → 100 → 83 → 69 → (57 < 64): 8 levels.
        assert_eq!(d.levels(250, 250), 8);
        // Level boxes grow by 6/5 per level from the 80-pixel window.
        let widths: Vec<i64> = (0..4).map(|l| d.box_width_at(l)).collect();
        assert!(widths[0] >= 72 && widths[0] <= 82 && widths.windows(2).all(|w| w[1] > w[0]), "{widths:?}");
        assert_eq!(HogDetector::from_bytes(&d.to_bytes()).unwrap(), d);
        assert!(HogDetector::from_bytes(&d.to_bytes()[..100]).is_err());
    }
}
