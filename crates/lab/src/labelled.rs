//! LFW's labelled face among a detector's finds.

use facegate_face::detect::Detection;
use facegate_face::Rect;

/// The face LFW labels (see [`facegate_lfw::labelled_box`]) and whether it was detected.
pub fn lfw_face(dets: &[Detection], width: u32, height: u32) -> (Detection, bool) {
    let boxes: Vec<_> = dets.iter().map(|d| (d.rect.left, d.rect.top, d.rect.right, d.rect.bottom)).collect();
    let ((l, t, r, b), detected) = facegate_lfw::labelled_box(&boxes, width, height);
    let rect = Rect::new(l, t, r, b);
    // The chosen detection keeps its own five points (SFace aligns on YuNet's).
    let points = dets.iter().find(|d| detected && d.rect == rect).and_then(|d| d.points);
    (Detection { rect, score: 0.0, filter: 0, points }, detected)
}
