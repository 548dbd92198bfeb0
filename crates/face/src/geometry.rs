//! Points and rectangles in image pixel coordinates.

/// A point in pixels (x right, y down).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Point {
    /// Column.
    pub x: f64,
    /// Row.
    pub y: f64,
}

impl Point {
    /// A point from its coordinates.
    pub const fn new(x: f64, y: f64) -> Self {
        Point { x, y }
    }
}

/// An axis-aligned box with inclusive integer corners, as dlib's `rectangle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rect {
    /// First column inside the box.
    pub left: i64,
    /// First row inside the box.
    pub top: i64,
    /// Last column inside the box.
    pub right: i64,
    /// Last row inside the box.
    pub bottom: i64,
}

impl Rect {
    /// A box from its inclusive corners.
    pub const fn new(left: i64, top: i64, right: i64, bottom: i64) -> Self {
        Rect { left, top, right, bottom }
    }

    /// Width in pixels (0 when empty).
    pub fn width(&self) -> i64 {
        (self.right - self.left + 1).max(0)
    }

    /// Height in pixels (0 when empty).
    pub fn height(&self) -> i64 {
        (self.bottom - self.top + 1).max(0)
    }

    /// Number of pixels inside.
    pub fn area(&self) -> i64 {
        self.width() * self.height()
    }

    /// The overlapping part of two boxes (may be empty).
    pub fn intersect(&self, other: &Rect) -> Rect {
        Rect::new(self.left.max(other.left), self.top.max(other.top), self.right.min(other.right), self.bottom.min(other.bottom))
    }

    /// Intersection over union, 0 for disjoint boxes.
    pub fn iou(&self, other: &Rect) -> f64 {
        let inter = self.intersect(other).area() as f64;
        let union = (self.area() + other.area()) as f64 - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }
}

/// Rounds as dlib converts a real vector to an integer point: floor(v + 0.5).
pub fn round_half_up(v: f64) -> i64 {
    (v + 0.5).floor() as i64
}

/// Least-squares similarity transform `from` → `to` (dlib's `find_similarity_transform`):
/// (a, b, tx, ty) with x' = a·x − b·y + tx, y' = b·x + a·y + ty.
pub fn similarity(from: &[Point], to: &[Point]) -> [f64; 4] {
    let n = from.len() as f64;
    let mf = Point::new(from.iter().map(|p| p.x).sum::<f64>() / n, from.iter().map(|p| p.y).sum::<f64>() / n);
    let mt = Point::new(to.iter().map(|p| p.x).sum::<f64>() / n, to.iter().map(|p| p.y).sum::<f64>() / n);
    let (mut dot, mut cross, mut norm) = (0.0, 0.0, 0.0);
    for (f, t) in from.iter().zip(to) {
        let (x, y, x2, y2) = (f.x - mf.x, f.y - mf.y, t.x - mt.x, t.y - mt.y);
        dot += x * x2 + y * y2;
        cross += x * y2 - y * x2;
        norm += x * x + y * y;
    }
    let (a, b) = if norm > 0.0 { (dot / norm, cross / norm) } else { (1.0, 0.0) };
    [a, b, mt.x - (a * mf.x - b * mf.y), mt.y - (b * mf.x + a * mf.y)]
}
