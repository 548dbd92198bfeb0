//! Cues of an approach that one frame cannot give: whether a face moves as
//! one flat surface between two frames.
//!
//! The eyes and the mouth corners lie close to one plane; the nose tip stands
//! about half an eye distance in front of it. The homography that carries the
//! four plane points of one frame onto the next carries the nose tip of a
//! flat picture (a print, a screen) onto its new place too; the nose of a
//! real head that turned lands elsewhere (parallax). A face that did not turn
//! shows neither, so the cue only speaks when the plane itself was seen to
//! turn (its motion departs from a shift, turn and zoom of the image).

use crate::geometry::{similarity, Point};
use nalgebra::{SMatrix, SVector};

/// How one face moved between two frames, in eye distances of the second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlaneMotion {
    /// How far the plane points' motion departs from the best similarity
    /// (shift, rotation in the image, zoom): foreshortening, a turned face.
    pub turn: f64,
    /// How far the nose tip lands from where the plane's homography puts it:
    /// depth.
    pub parallax: f64,
}

/// Index of the nose tip in a detector's five points (YuNet's order: eyes,
/// nose tip, mouth corners); the other four are the plane points.
const NOSE: usize = 2;
const PLANE: [usize; 4] = [0, 1, 3, 4];

/// The motion of a face's five points (YuNet's order) from `a` to `b`;
/// `None` when the points are degenerate (eyes together, plane points in a line).
pub fn plane_motion(a: &[Point; 5], b: &[Point; 5]) -> Option<PlaneMotion> {
    let eyes = |p: &[Point; 5]| ((p[0].x - p[1].x).powi(2) + (p[0].y - p[1].y).powi(2)).sqrt();
    let (eyes_a, eyes_b) = (eyes(a), eyes(b));
    if eyes_a < 1.0 || eyes_b < 1.0 {
        return None;
    }
    // Coordinates about the plane points' centre, in eye distances: the
    // system below is then well scaled whatever the face's size.
    let frame = |p: &[Point; 5], unit: f64| {
        let c = PLANE.iter().fold((0.0, 0.0), |s, &i| (s.0 + p[i].x / 4.0, s.1 + p[i].y / 4.0));
        p.map(|q| Point::new((q.x - c.0) / unit, (q.y - c.1) / unit))
    };
    let (a, b) = (frame(a, eyes_a), frame(b, eyes_b));
    // Eyes over mouth span about half a square eye distance; far less is a
    // misdetection, and its homography would be noise.
    if quad_area(&a) < 0.1 || quad_area(&b) < 0.1 {
        return None;
    }
    let h = homography(&PLANE.map(|i| a[i]), &PLANE.map(|i| b[i]))?;
    let nose = apply(&h, a[NOSE])?;
    let parallax = ((nose.x - b[NOSE].x).powi(2) + (nose.y - b[NOSE].y).powi(2)).sqrt();
    let from: Vec<Point> = PLANE.iter().map(|&i| a[i]).collect();
    let to: Vec<Point> = PLANE.iter().map(|&i| b[i]).collect();
    let [sa, sb, tx, ty] = similarity(&from, &to);
    let residual: f64 = from
        .iter()
        .zip(&to)
        .map(|(f, t)| (sa * f.x - sb * f.y + tx - t.x).powi(2) + (sb * f.x + sa * f.y + ty - t.y).powi(2))
        .sum::<f64>();
    Some(PlaneMotion { turn: (residual / 4.0).sqrt(), parallax })
}

/// The homography (h33 = 1) taking four points onto four others.
fn homography(from: &[Point; 4], to: &[Point; 4]) -> Option<[f64; 8]> {
    let mut m = SMatrix::<f64, 8, 8>::zeros();
    let mut v = SVector::<f64, 8>::zeros();
    for (k, (f, t)) in from.iter().zip(to).enumerate() {
        let (r, s) = (2 * k, 2 * k + 1);
        m.row_mut(r).copy_from_slice(&[f.x, f.y, 1.0, 0.0, 0.0, 0.0, -t.x * f.x, -t.x * f.y]);
        m.row_mut(s).copy_from_slice(&[0.0, 0.0, 0.0, f.x, f.y, 1.0, -t.y * f.x, -t.y * f.y]);
        (v[r], v[s]) = (t.x, t.y);
    }
    let h = m.lu().solve(&v)?;
    h.iter().all(|x| x.is_finite()).then(|| std::array::from_fn(|i| h[i]))
}

/// The area of the plane points' quadrilateral (eye, eye, mouth corner, mouth corner).
fn quad_area(p: &[Point; 5]) -> f64 {
    let ring = [p[0], p[1], p[4], p[3]];
    let twice: f64 = (0..4).map(|i| ring[i].x * ring[(i + 1) % 4].y - ring[(i + 1) % 4].x * ring[i].y).sum();
    twice.abs() / 2.0
}

fn apply(h: &[f64; 8], p: Point) -> Option<Point> {
    let w = h[6] * p.x + h[7] * p.y + 1.0;
    (w.abs() > 1e-9).then(|| Point::new((h[0] * p.x + h[1] * p.y + h[2]) / w, (h[3] * p.x + h[4] * p.y + h[5]) / w))
}

/// What a clip's pairs of frames say of depth: over every pair whose plane
/// visibly turned (`turn` ≥ `min_turn`), the parallax seen per unit of turn.
/// `None` when no pair turned enough: the clip gives no verdict.
pub fn depth_per_turn(motions: &[PlaneMotion], min_turn: f64) -> Option<f64> {
    let turned: Vec<&PlaneMotion> = motions.iter().filter(|m| m.turn >= min_turn).collect();
    if turned.is_empty() {
        return None;
    }
    let turn: f64 = turned.iter().map(|m| m.turn).sum();
    Some(turned.iter().map(|m| m.parallax).sum::<f64>() / turn)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A face in 3-D (units of eye distance, x right, y down, z towards the
    /// camera): eyes and mouth corners at depth 0, the nose tip `nose_depth` in front.
    fn face(nose_depth: f64) -> [[f64; 3]; 5] {
        [[-0.5, -0.4, 0.0], [0.5, -0.4, 0.0], [0.0, 0.1, nose_depth], [-0.4, 0.6, 0.0], [0.4, 0.6, 0.0]]
    }

    /// The face turned by `yaw` (radians) about the vertical axis, seen by a
    /// pinhole camera (focal length 600 px) from `distance` eye distances.
    fn seen(points: [[f64; 3]; 5], yaw: f64, distance: f64) -> [Point; 5] {
        points.map(|[x, y, z]| {
            let (x, z) = (x * yaw.cos() + z * yaw.sin(), -x * yaw.sin() + z * yaw.cos());
            let depth = distance - z;
            Point::new(320.0 + 600.0 * x / depth, 240.0 + 600.0 * y / depth)
        })
    }

    #[test]
    fn a_flat_face_that_turns_shows_no_parallax_and_a_real_one_does() {
        for (depth, flat) in [(0.0, true), (0.5, false)] {
            let m = plane_motion(&seen(face(depth), 0.0, 8.0), &seen(face(depth), 0.3, 8.0)).unwrap();
            assert!(m.turn > 0.005, "the plane turned: {m:?}");
            assert_eq!(m.parallax < 1e-9, flat, "nose depth {depth}: {m:?}");
            if !flat {
                assert!(m.parallax > 0.1, "{m:?}");
            }
        }
    }

    #[test]
    fn a_face_that_only_moves_in_the_image_shows_neither() {
        let a = seen(face(0.5), 0.0, 8.0);
        // Shifted, rotated in the image and zoomed: a similarity.
        let (c, s) = (0.2f64.cos() * 1.3, 0.2f64.sin() * 1.3);
        let b = a.map(|p| Point::new(c * p.x - s * p.y + 40.0, s * p.x + c * p.y - 25.0));
        let m = plane_motion(&a, &b).unwrap();
        assert!(m.turn < 1e-9 && m.parallax < 1e-9, "{m:?}");
    }

    #[test]
    fn degenerate_points_give_no_motion_and_no_turn_gives_no_verdict() {
        let same = [Point::new(10.0, 10.0); 5];
        assert_eq!(plane_motion(&same, &same), None);
        let line: [Point; 5] = std::array::from_fn(|i| Point::new(10.0 * i as f64, 0.0));
        assert_eq!(plane_motion(&line, &line), None, "plane points in a line");
        let still = PlaneMotion { turn: 0.001, parallax: 0.0 };
        assert_eq!(depth_per_turn(&[still], 0.01), None);
        let turned = [PlaneMotion { turn: 0.02, parallax: 0.01 }, PlaneMotion { turn: 0.04, parallax: 0.05 }, still];
        assert!((depth_per_turn(&turned, 0.01).unwrap() - 1.0).abs() < 1e-12);
    }
}
