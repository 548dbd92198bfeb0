//! The door refuses model files that are not the ones `MANIFEST` lists: a
//! flipped byte in a liveness network, or a directory without a MANIFEST,
//! stops `device check` and `device run` with the file's name (fail closed).

use std::path::Path;
use std::process::{Command, Output};

/// A copy of the workspace's models in `dir`.
fn copy_models(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for entry in std::fs::read_dir(facegate_testkit::models()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
}

fn device(args: &[&str], models: &Path, scratch: &Path) -> Output {
    let frames = scratch.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    image::RgbImage::new(64, 48).save(frames.join("0.png")).unwrap();
    Command::new(facegate_testkit::binary("device"))
        .args(args)
        .arg("--models")
        .arg(models)
        .arg("--gallery")
        .arg(scratch.join("gallery.fg"))
        .arg("--source")
        .arg(format!("replay:{}", frames.display()))
        .env_remove("FACEGATE_MODELS")
        .output()
        .unwrap()
}

#[test]
fn check_accepts_the_shipped_models() {
    let dir = tempfile::tempdir().unwrap();
    copy_models(&dir.path().join("m"));
    let out = device(&["check"], &dir.path().join("m"), dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("models: ok") && stdout.contains("liveness: ok"), "{stdout}");
}

#[test]
fn a_changed_liveness_model_stops_the_door() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("m");
    copy_models(&models);
    let file = models.join("liveness_minifasnet_v2.onnx");
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&file, bytes).unwrap();
    for args in [&["check"][..], &["run", "--lock", "sim", "--until-end", "--serial", "none", "--log", "none"][..]] {
        let out = device(args, &models, dir.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started with a changed model");
        assert!(stderr.contains("liveness_minifasnet_v2.onnx") && stderr.contains("MANIFEST"), "{args:?}: {stderr}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("liveness: ok"));
    }
}

#[test]
fn a_directory_without_manifest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("m");
    copy_models(&models);
    std::fs::remove_file(models.join("MANIFEST")).unwrap();
    let out = device(&["check"], &models, dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no MANIFEST"), "{stderr}");
}
