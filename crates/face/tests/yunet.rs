//! YuNet at the door: it finds the face in a camera-sized frame, its points
//! sit where a face's are, its mapped box lands dlib's landmarks where HOG's
//! box does, and it still finds the face tilted by 20°, where HOG may not.

use facegate_face::decode::{decode_image, DEFAULT_MAX_PIXELS};
use facegate_face::{DetectorKind, Pipeline, PipelineConfig, Precision};
use facegate_testkit::models;
use image::{imageops, Rgb, RgbImage};
use std::path::Path;

/// An LFW photo scaled ×1.5 onto a grey 640×480 frame (as `bench speed` builds it).
fn door_frame(face: &RgbImage) -> RgbImage {
    let mut frame = RgbImage::from_pixel(640, 480, Rgb([118, 118, 118]));
    let scaled = imageops::resize(face, face.width() * 3 / 2, face.height() * 3 / 2, imageops::FilterType::Triangle);
    imageops::overlay(&mut frame, &scaled, (640 - scaled.width() as i64) / 2, (480 - scaled.height() as i64) / 2);
    frame
}

fn lfw_frames() -> Option<Vec<RgbImage>> {
    let (data, _) = facegate_lfw::open_or_skip(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."), "YuNet door tests")?;
    let names = ["Abel_Pacheco/Abel_Pacheco_0001.jpg", "Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "Zico/Zico_0001.jpg"];
    Some(names.iter().map(|n| door_frame(&decode_image(&data.read(n).unwrap(), DEFAULT_MAX_PIXELS).unwrap())).collect())
}

fn door(detector: DetectorKind) -> Pipeline {
    Pipeline::load(&models(), Precision::Int8, PipelineConfig { detector, ..PipelineConfig::door() }).unwrap()
}

#[test]
fn yunet_finds_the_face_and_lands_landmarks_where_hog_does() {
    let Some(frames) = lfw_frames() else { return };
    let (hog, yunet) = (door(DetectorKind::Hog), door(DetectorKind::Yunet));
    let detector = yunet.yunet.as_ref().expect("YuNet loaded for DetectorKind::Yunet");
    for frame in &frames {
        let found = detector.detect_faces(frame, detector.threshold).unwrap();
        assert_eq!(found.len(), 1, "one face in the frame, got {found:?}");
        let p = found[0].points;
        // Eyes above the nose tip, the nose above the mouth corners; right eye (as seen) left of the left eye.
        assert!(p[0].x < p[1].x && p[3].x < p[4].x, "{p:?}");
        assert!(p[0].y.max(p[1].y) < p[2].y && p[2].y < p[3].y.min(p[4].y), "{p:?}");
        // The door (faces ≥ 100 px) runs it on a 154×115 copy: the same face, nearly the same box.
        let coarse = detector.detect_faces_min(frame, detector.threshold, yunet.config.min_face).unwrap();
        assert_eq!(coarse.len(), 1, "one face at the door's scale, got {coarse:?}");
        let (fine_box, coarse_box) = (detector.box_map.apply(&found[0]), detector.box_map.apply(&coarse[0]));
        assert!(fine_box.iou(&coarse_box) > 0.8, "{fine_box:?} at 320 px, {coarse_box:?} at the door's scale");
        let (h, y) = (hog.faces(frame), yunet.faces(frame));
        assert_eq!((h.len(), y.len()), (1, 1));
        assert!(h[0].detection.rect.iou(&y[0].detection.rect) > 0.6, "{:?} vs {:?}", h[0].detection.rect, y[0].detection.rect);
        for (a, b) in h[0].landmarks.iter().zip(&y[0].landmarks) {
            assert!((a.x - b.x).abs() < 6.0 && (a.y - b.y).abs() < 6.0, "landmark {a:?} vs {b:?}");
        }
        // dlib's landmarks and YuNet's points give nearly the same chip: the
        // embeddings lie well inside the door's threshold (half of it).
        let d = facegate_core::distance(&hog.embed(&h[0]).unwrap(), &yunet.embed(&y[0]).unwrap());
        let bound = 0.5 * hog.embedder.network().door_threshold();
        assert!(d < bound, "same frame, embeddings {d} apart (bound {bound})");
    }
}

#[test]
fn yunet_finds_tilted_faces() {
    let Some(frames) = lfw_frames() else { return };
    let yunet = door(DetectorKind::Yunet);
    for frame in &frames {
        for degrees in [20.0f32, -20.0] {
            let tilted = rotated(frame, degrees);
            assert_eq!(yunet.faces(&tilted).len(), 1, "face tilted {degrees}° not found");
        }
    }
}

/// Rotation about the centre, nearest neighbour, grey outside.
fn rotated(img: &RgbImage, degrees: f32) -> RgbImage {
    let (s, c) = degrees.to_radians().sin_cos();
    let (cx, cy) = (img.width() as f32 / 2.0, img.height() as f32 / 2.0);
    RgbImage::from_fn(img.width(), img.height(), |x, y| {
        let (dx, dy) = (x as f32 - cx, y as f32 - cy);
        let (sx, sy) = ((c * dx + s * dy + cx).round(), (-s * dx + c * dy + cy).round());
        if sx < 0.0 || sy < 0.0 || sx >= img.width() as f32 || sy >= img.height() as f32 {
            Rgb([118, 118, 118])
        } else {
            *img.get_pixel(sx as u32, sy as u32)
        }
    })
}

#[test]
fn blank_frames_have_no_yunet_faces() {
    let yunet = door(DetectorKind::Yunet);
    assert!(yunet.faces(&RgbImage::from_pixel(640, 480, Rgb([128, 128, 128]))).is_empty());
    assert!(yunet.faces(&RgbImage::new(1, 1)).is_empty());
    assert!(yunet.faces(&RgbImage::from_pixel(2000, 3, Rgb([10, 200, 30]))).is_empty());
}
