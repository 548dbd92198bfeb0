//! Odd inputs through the whole pipeline: a typed error or an empty result, never a panic.

use facegate_face::decode::{decode_image, DEFAULT_MAX_PIXELS};
use facegate_face::{FaceError, Pipeline, PipelineConfig, Precision};
use image::{Rgb, RgbImage};
use std::path::Path;

fn pipeline() -> Pipeline {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    Pipeline::load(&models, Precision::Int8, PipelineConfig::default()).unwrap()
}

#[test]
fn blank_noise_and_tiny_images_have_no_faces() {
    let p = pipeline();
    assert!(p.faces(&RgbImage::from_pixel(640, 480, Rgb([128, 128, 128]))).is_empty());
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
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let Some((images, _)) = facegate_lfw::locate(workspace) else {
        eprintln!("SKIPPED: LFW not found; group-photo test not run");
        return;
    };
    let data = facegate_lfw::Dataset::open(&images).unwrap();
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
        assert_eq!((f.chip.width(), f.chip.height()), (150, 150));
        let e = p.embed(f).unwrap();
        let norm = e.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!(norm > 0.5 && norm < 3.0, "embedding norm {norm}");
    }
}
