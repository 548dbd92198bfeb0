//! Odd inputs through the whole pipeline: a typed error or an empty result, never a panic.

use facegate_face::decode::{decode_image, DEFAULT_MAX_PIXELS};
use facegate_face::{FaceError, Pipeline, PipelineConfig, Precision};
use facegate_testkit::models;
use image::{Rgb, RgbImage};

fn pipeline() -> Pipeline {
    Pipeline::load(&models(), Precision::Int8, PipelineConfig::default()).unwrap()
}

#[test]
fn blank_noise_and_tiny_images_have_no_faces() {
    let door = Pipeline::load(&models(), Precision::Int8, PipelineConfig::door()).unwrap();
    for p in [pipeline(), door] {
        assert!(p.faces(&RgbImage::from_pixel(640, 480, Rgb([128, 128, 128]))).is_empty());
        nothing_in_noise_or_slivers(&p);
    }
    // Above CNN_MAX_SIDE the photo is shrunk before the CNN runs.
    assert!(pipeline().faces(&RgbImage::from_pixel(3000, 2000, Rgb([90, 90, 90]))).is_empty());
}

#[test]
fn batched_embeddings_equal_single_ones() {
    let p = pipeline();
    let side = p.embedder.network().chip_size();
    let chips: Vec<RgbImage> = (0..2u32)
        .map(|k| RgbImage::from_fn(side, side, |x, y| Rgb([(x * (k + 3)) as u8, (y * 5 + k) as u8, ((x ^ y) + k) as u8])))
        .collect();
    let views = [(&chips[0], false), (&chips[1], false), (&chips[0], true)];
    let batch = p.embedder.embed_batch(&views).unwrap();
    assert_eq!(batch.len(), 3);
    for ((chip, mirrored), e) in views.iter().zip(&batch) {
        assert_eq!(*e, p.embedder.embed_chip(chip, *mirrored).unwrap());
    }
    assert_ne!(batch[0], batch[2], "the mirrored chip is a different input");
    assert!(p.embedder.embed_batch(&[(&RgbImage::new(10, 10), false)]).is_err(), "a chip of the wrong size");
}

fn nothing_in_noise_or_slivers(p: &Pipeline) {
    let mut state = 12345u32;
    let noise = RgbImage::from_fn(320, 240, |_, _| {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
        Rgb([(state >> 24) as u8, (state >> 16) as u8, (state >> 8) as u8])
    });
    assert!(p.faces(&noise).is_empty(), "faces in noise");
    for (w, h) in [(1, 1), (3, 200), (200, 3), (17, 17), (0, 0)] {
        assert!(p.faces(&RgbImage::new(w, h)).is_empty(), "{w}×{h}");
    }
}

#[test]
fn bad_files_are_typed_errors() {
    for bytes in [&b""[..], b"GIF89a not really", b"\xff\xd8\xff\xe0 truncated jpeg", b"plain text named photo.jpg"] {
        assert!(matches!(decode_image(bytes, DEFAULT_MAX_PIXELS), Err(FaceError::Decode(_))), "{bytes:?}");
    }
}

#[test]
fn a_group_photo_gives_every_face() {
    let Some((data, _)) = facegate_testkit::lfw("the group-photo test") else { return };
    let names =
        ["Abel_Pacheco/Abel_Pacheco_0001.jpg", "Amber_Tamblyn/Amber_Tamblyn_0001.jpg", "Ann_Veneman/Ann_Veneman_0003.jpg"];
    let mut group = RgbImage::from_pixel(750, 250, Rgb([90, 90, 90]));
    for (i, n) in names.iter().enumerate() {
        let img = decode_image(&data.read(n).unwrap(), DEFAULT_MAX_PIXELS).unwrap();
        image::imageops::overlay(&mut group, &img, 250 * i as i64, 0);
    }
    let p = pipeline();
    let faces = p.faces(&group);
    let mut columns: Vec<i64> = faces.iter().map(|f| (f.detection.rect.left + f.detection.rect.right) / 2 / 250).collect();
    columns.sort_unstable();
    columns.dedup();
    assert_eq!(columns, vec![0, 1, 2], "one face per photo: {:?}", faces.iter().map(|f| f.detection).collect::<Vec<_>>());
    for f in &faces {
        let side = p.embedder.network().chip_size();
        assert_eq!((f.chip.width(), f.chip.height()), (side, side));
        let e = p.embed(f).unwrap();
        let norm = e.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!(norm > 0.5 && norm < 3.0, "embedding norm {norm}");
    }
}

#[test]
fn a_large_photo_is_shrunk_for_the_cnn_and_boxes_come_back_to_scale() {
    let Some((data, _)) = facegate_testkit::lfw("the large-photo test") else { return };
    let img = decode_image(&data.read("Abel_Pacheco/Abel_Pacheco_0001.jpg").unwrap(), DEFAULT_MAX_PIXELS).unwrap();
    let p = pipeline();
    let small = p.detect(&img);
    assert_eq!(small.len(), 1);
    // A 2,500 × 2,500 photo of the same scene (a phone picture of a face).
    let large = image::imageops::resize(&img, 2500, 2500, image::imageops::FilterType::Triangle);
    let found = p.detect(&large);
    assert_eq!(found.len(), 1, "{found:?}");
    // The same face, at another pyramid level and sliding-window step: close, not equal.
    let s = small[0].rect;
    let scaled = facegate_face::Rect::new(s.left * 10, s.top * 10, s.right * 10, s.bottom * 10);
    let iou = found[0].rect.iou(&scaled);
    assert!(iou > 0.6, "box {:?} is not about 10× {s:?} (IoU {iou:.2})", found[0].rect);
}
