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

/// How a face and its surroundings moved between two frames, in face
/// widths: a real head moves before a still background, a hand-held print
/// or screen carries what surrounds the face with it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SurroundMotion {
    /// The face's shift.
    pub face: f64,
    /// The median shift of the patches beside and above the face.
    pub surround: f64,
}

/// Side of the square patches matched, in pixels after scaling the face to
/// about this width.
const PATCH: i64 = 24;

/// The shifts of the face in `face` (a box in both frames' coordinates)
/// and of the patches one face width beside and above it, from frame `a` to
/// frame `b` (grey, the same size), each found by block matching within
/// half a face width. `None` when the frames differ in size or the face is
/// too small; patches outside the frame are left out, and with none left
/// the surround is `None` too.
pub fn surround_motion(a: &image::GrayImage, b: &image::GrayImage, face: crate::Rect) -> Option<SurroundMotion> {
    if a.dimensions() != b.dimensions() || face.width() < 2 * PATCH {
        return None;
    }
    // Work at a scale where the face is 2 patches wide.
    let scale = (2 * PATCH) as f64 / face.width() as f64;
    let (w, h) = ((a.width() as f64 * scale) as u32, (a.height() as f64 * scale) as u32);
    let (a, b) = (
        image::imageops::resize(a, w, h, image::imageops::FilterType::Triangle),
        image::imageops::resize(b, w, h, image::imageops::FilterType::Triangle),
    );
    let cx = ((face.left + face.right) as f64 / 2.0 * scale) as i64;
    let cy = ((face.top + face.bottom) as f64 / 2.0 * scale) as i64;
    let span = 2 * PATCH;
    let search = PATCH;
    let at = |x: i64, y: i64| shift(&a, &b, x - PATCH / 2, y - PATCH / 2, search);
    let face_shift = at(cx, cy)?;
    let mut around: Vec<f64> =
        [(cx - span, cy), (cx + span, cy), (cx, cy - span), (cx - span, cy - span), (cx + span, cy - span)]
            .into_iter()
            .filter_map(|(x, y)| at(x, y))
            .map(|(dx, dy)| ((dx * dx + dy * dy) as f64).sqrt())
            .collect();
    if around.is_empty() {
        return None;
    }
    around.sort_by(f64::total_cmp);
    let unit = span as f64;
    let (fx, fy) = face_shift;
    Some(SurroundMotion { face: ((fx * fx + fy * fy) as f64).sqrt() / unit, surround: around[around.len() / 2] / unit })
}

/// The integer shift (dx, dy) within ±`search` that best carries the
/// PATCH-square at (`x`, `y`) in `a` onto `b` (least absolute difference);
/// `None` when the patch or its search area leaves the frame, or the patch
/// is flat (nothing to match).
fn shift(a: &image::GrayImage, b: &image::GrayImage, x: i64, y: i64, search: i64) -> Option<(i64, i64)> {
    let (w, h) = (a.width() as i64, a.height() as i64);
    if x - search < 0 || y - search < 0 || x + PATCH + search > w || y + PATCH + search > h {
        return None;
    }
    let px = |img: &image::GrayImage, x: i64, y: i64| i64::from(img.get_pixel(x as u32, y as u32)[0]);
    let (lo, hi) = (0..PATCH).flat_map(|j| (0..PATCH).map(move |i| (i, j))).fold((255, 0), |(lo, hi), (i, j)| {
        let v = px(a, x + i, y + j);
        (lo.min(v), hi.max(v))
    });
    if hi - lo < 16 {
        return None;
    }
    let mut best = (i64::MAX, (0, 0));
    for dy in -search..=search {
        for dx in -search..=search {
            let mut cost = 0;
            for j in 0..PATCH {
                for i in 0..PATCH {
                    cost += (px(a, x + i, y + j) - px(b, x + i + dx, y + j + dy)).abs();
                }
                if cost >= best.0 {
                    break;
                }
            }
            // Ties go to the smaller shift: a still patch stays at (0, 0).
            if cost < best.0 || (cost == best.0 && dx * dx + dy * dy < best.1 .0 * best.1 .0 + best.1 .1 * best.1 .1) {
                best = (cost, (dx, dy));
            }
        }
    }
    Some(best.1)
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

    /// A textured frame with a textured square "face" of side 48 at
    /// (`fx`, `fy`), the rest shifted by (`sx`, `sy`).
    fn scene(fx: i64, fy: i64, sx: i64, sy: i64) -> image::GrayImage {
        // A hash of the position: no shift repeats it.
        let texture = |x: i64, y: i64, seed: i64| {
            let h = (x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663) ^ seed.wrapping_mul(83_492_791)) as u64;
            (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
        };
        image::GrayImage::from_fn(320, 240, |x, y| {
            let (x, y) = (x as i64, y as i64);
            let inside = (fx..fx + 48).contains(&x) && (fy..fy + 48).contains(&y);
            image::Luma([if inside { texture(x - fx, y - fy, 1) } else { texture(x - sx, y - sy, 2) }])
        })
    }

    #[test]
    fn a_face_moving_before_a_still_background_differs_from_one_carried_with_it() {
        let face = crate::Rect::new(136, 96, 184, 144);
        let moved = 10.0 / 48.0;
        // A head: the face moves 10 px, the background stays.
        let head = surround_motion(&scene(136, 96, 0, 0), &scene(146, 96, 0, 0), face).unwrap();
        assert!((head.face - moved).abs() < 1e-9 && head.surround == 0.0, "{head:?}");
        // A held picture: face and surroundings move 10 px together.
        let held = surround_motion(&scene(136, 96, 0, 0), &scene(146, 96, 10, 0), face).unwrap();
        assert!((held.face - moved).abs() < 1e-9 && (held.surround - moved).abs() < 1e-9, "{held:?}");
        // Frames of two sizes, or a face too small to match: nothing said.
        let small = image::GrayImage::new(160, 120);
        assert_eq!(surround_motion(&scene(0, 0, 0, 0), &small, face), None);
        assert_eq!(surround_motion(&small, &small, crate::Rect::new(0, 0, 20, 20)), None);
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
