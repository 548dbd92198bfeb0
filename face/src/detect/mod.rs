//! Face detection: where the faces are in a frame.

pub mod fhog;
pub mod hog;

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
}
