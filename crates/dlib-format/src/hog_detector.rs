//! dlib's frontal face detector: `object_detector<scan_fhog_pyramid<pyramid_down<6>>>`
//! as written by `dlib.get_frontal_face_detector().save(path)`.

use crate::reader::Reader;
use crate::Result;

/// The parsed detector.
#[derive(Debug, Clone)]
pub struct HogDetector {
    /// fHOG cell size in pixels (8).
    pub cell_size: usize,
    /// Padding around the window, in cells (0).
    pub padding: usize,
    /// Detection window width and height in pixels (80×80).
    pub window: [usize; 2],
    /// Pyramid levels stop when a level would be smaller than this (64×64).
    pub min_pyramid_layer: [usize; 2],
    /// At most this many pyramid levels.
    pub max_pyramid_levels: usize,
    /// Non-max suppression: overlap (intersection / bounding box) above this suppresses.
    pub iou_threshold: f64,
    /// Non-max suppression: a box covered by more than this share suppresses.
    pub covered_threshold: f64,
    /// One weight vector per filter: 31 planes × rows × cols, then the threshold.
    pub filters: Vec<Vec<f64>>,
}

/// Parses the whole file; every byte must be accounted for.
pub fn parse(bytes: &[u8]) -> Result<HogDetector> {
    let mut r = Reader::new(bytes);
    r.expect_int(2, "object_detector version")?;
    r.expect_int(1, "scan_fhog_pyramid version")?;
    // Cached feature pyramid: dlib::array max_size and size, both empty.
    r.expect_int(0, "feature cache max size")?;
    r.expect_int(0, "feature cache size")?;
    let cell_size = r.size()?;
    let padding = r.size()?;
    let window = [r.size()?, r.size()?];
    let max_pyramid_levels = r.size()?;
    let min_pyramid_layer = [r.size()?, r.size()?];
    let _nuclear_norm = r.float()?;
    let dims = r.size()?;
    let iou_threshold = r.float()?;
    let covered_threshold = r.float()?;
    let count = r.size()?;
    if count > 64 || dims > 1 << 20 || cell_size == 0 {
        return Err(r.unexpected("implausible detector header"));
    }
    let mut filters = Vec::with_capacity(count);
    for _ in 0..count {
        let rows = -r.int()?;
        let cols = -r.int()?;
        if rows != dims as i64 + 1 || cols != 1 {
            return Err(r.unexpected(format!("weight vector {rows}×{cols}, expected {}×1", dims + 1)));
        }
        filters.push((0..=dims).map(|_| r.float()).collect::<Result<Vec<f64>>>()?);
    }
    if !r.at_end() {
        return Err(r.unexpected("trailing bytes"));
    }
    Ok(HogDetector {
        cell_size,
        padding,
        window,
        min_pyramid_layer,
        max_pyramid_levels,
        iou_threshold,
        covered_threshold,
        filters,
    })
}
