//! Face detection: where the faces are in a frame.

pub mod cnn;
pub mod fhog;
pub mod hog;
pub mod yunet;

use crate::geometry::Rect;

/// One detected face.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Face box (HOG-like: the landmark model expects these boxes).
    pub rect: Rect,
    /// Detector confidence (above 0 means detected at the default threshold).
    pub score: f64,
    /// Which of the detector's filters fired (0 frontal, 1 left, 2 right, …).
    pub filter: usize,
    /// The detector's five points (YuNet: image-left eye, image-right eye,
    /// nose tip, image-left and image-right mouth corners), when it gives them.
    pub points: Option<[crate::geometry::Point; 5]>,
}

/// dlib's `test_box_overlap`: overlap relative to the boxes' bounding box, or coverage of either.
fn overlaps(a: &Rect, b: &Rect, iou: f64, covered: f64) -> bool {
    let inner = a.intersect(b).area() as f64;
    if inner == 0.0 {
        return false;
    }
    let outer = Rect::new(a.left.min(b.left), a.top.min(b.top), a.right.max(b.right), a.bottom.max(b.bottom)).area() as f64;
    inner / outer > iou || inner / a.area() as f64 > covered || inner / b.area() as f64 > covered
}

/// A real rectangle rounded to integer corners, as dlib converts drectangle → rectangle.
fn round_rect(l: f64, t: f64, r: f64, b: f64) -> Rect {
    let k = |v: f64| (v + 0.5).floor() as i64;
    Rect::new(k(l), k(t), k(r), k(b))
}

/// dlib's `pyramid_down<6>::point_up` applied `levels` times to one coordinate.
fn up_6_5(mut v: f64, levels: usize) -> f64 {
    for _ in 0..levels {
        v = v * (6.0 / 5.0) + 0.3;
    }
    v
}

/// dlib's non-max suppression: candidates (score, filter, box) best first, each
/// kept unless it overlaps one already kept.
fn non_max_suppression(raw: &mut [(f64, usize, Rect)], iou: f64, covered: f64) -> Vec<Detection> {
    raw.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut kept: Vec<Detection> = Vec::new();
    for &(score, filter, rect) in raw.iter() {
        if !kept.iter().any(|k| overlaps(&k.rect, &rect, iou, covered)) {
            kept.push(Detection { rect, score, filter, points: None });
        }
    }
    kept
}

/// Boxes found on an image doubled `upsample` times, back on the caller's image:
/// pyramid_down<2>::rect_down, p/2 − (1.25, 0.75), per doubling.
fn undo_upsampling(found: &mut [Detection], upsample: u32) {
    for d in found {
        for _ in 0..upsample {
            let r = d.rect;
            d.rect = round_rect(
                r.left as f64 / 2.0 - 1.25,
                r.top as f64 / 2.0 - 0.75,
                r.right as f64 / 2.0 - 1.25,
                r.bottom as f64 / 2.0 - 0.75,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_rule_is_dlibs() {
        let a = Rect::new(0, 0, 99, 99);
        assert!(overlaps(&a, &Rect::new(10, 10, 109, 109), 0.33, 0.79));
        assert!(!overlaps(&a, &Rect::new(100, 0, 199, 99), 0.33, 0.79));
        // A small box inside a big one: little IoU, but fully covered.
        assert!(overlaps(&a, &Rect::new(40, 40, 49, 49), 0.33, 0.79));
    }
}
