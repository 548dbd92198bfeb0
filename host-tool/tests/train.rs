//! `host-tool train` and `bench lfw --train-metric` through the real program,
//! on a small LFW slice (40 people × 4 photos) laid out like LFW, with a
//! two-fold pairs.txt of its own: the file, the curve, the resumable cache,
//! the JSON interfaces, using the metric offline, and refusing bad files.
//! Needs LFW in ../shared (or $FACEGATE_LFW_DIR); skips loudly without it.

use facegate_lfw::image_path;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn host_tool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_host-tool")).arg("--models").arg(facegate_testkit::models()).args(args).output().unwrap()
}

fn json_of(out: &Output) -> Value {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// 40 people with 4+ photos, their first 4 photos copied to `dir`; their names.
fn slice(dir: &Path) -> Option<Vec<String>> {
    facegate_testkit::lfw_people_with_four_photos(dir, 40, "the training tests")
}

#[test]
fn train_writes_a_metric_that_offline_matching_uses_and_bad_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    let Some(people) = slice(&photos) else { return };
    // A damaged file and a photo without a face among them: reported and left out.
    std::fs::write(photos.join(&people[1]).join("broken.jpg"), b"\xff\xd8\xff\xe0 not a whole jpeg").unwrap();
    image::RgbImage::from_pixel(250, 250, image::Rgb([120, 120, 120])).save(photos.join(&people[2]).join("wall.png")).unwrap();
    let (out, cache) = (dir.path().join("site.fgmetric"), dir.path().join("f.fgfeat"));
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let args = ["train", "--photos", &s(&photos), "--out", &s(&out), "--epochs", "4", "--cache", &s(&cache), "--json"];
    let first = json_of(&host_tool(&args));
    for key in ["id", "base_model", "threshold", "best_epoch", "epochs_run", "validation", "counts", "features"] {
        assert!(first.get(key).is_some(), "train --json lacks {key}: {first}");
    }
    assert_eq!(first["features"]["embedded_now"], 161, "160 faces and the wall");
    assert_eq!(first["features"]["photos"], 160, "the wall is left out of training");
    assert_eq!(first["features"]["no_face"].as_array().unwrap().len(), 1, "{}", first["features"]);
    let unreadable = first["features"]["unreadable"].as_array().unwrap();
    assert!(unreadable.len() == 1 && unreadable[0][0].as_str().unwrap().ends_with("broken.jpg"), "{unreadable:?}");
    assert_eq!(first["counts"]["validation_people"], 4, "10 % of 40 people, held out by person");
    assert!(first["validation"]["pretrained"]["tar_at_far_1e3"].is_number());
    assert!(out.with_extension("png").is_file(), "the loss/validation curve");
    // Run again: every photo comes from the cache, the same head comes out.
    let again = json_of(&host_tool(&args));
    assert_eq!(again["features"]["embedded_now"], 0, "only the damaged file is tried again");
    assert_eq!(again["id"], first["id"], "same data, same seed, same head");
    // The metric offline: enrol from two photos, identify two others in it.
    let gallery = s(&dir.path().join("g.fg"));
    let p = &people[0];
    let photo = |i| s(&photos.join(image_path(p, i)));
    let enrolled = host_tool(&["--gallery", &gallery, "enroll", p, &photo(1), &photo(2)]);
    assert!(enrolled.status.success(), "{}", String::from_utf8_lossy(&enrolled.stderr));
    let found = host_tool(&["--gallery", &gallery, "--metric", &s(&out), "--json", "identify", &photo(3), &photo(4)]);
    assert!(found.status.success(), "{}", String::from_utf8_lossy(&found.stderr));
    let found: Vec<Value> = facegate_testkit::json_lines(&found.stdout);
    assert_eq!(found.len(), 2);
    for f in &found {
        assert_eq!(f["name"], p.as_str(), "{f}");
        let t = f["threshold"].as_f64().unwrap();
        assert!((t - first["threshold"].as_f64().unwrap()).abs() < 1e-6, "the metric's own threshold: {f}");
    }
    // A damaged metric file is refused with its name; so is an unknown kind.
    let good = std::fs::read(&out).unwrap();
    let mut bytes = good.clone();
    let at = bytes.len() - 40;
    bytes[at] ^= 0x01;
    std::fs::write(&out, &bytes).unwrap();
    let refused = host_tool(&["--gallery", &gallery, "--metric", &s(&out), "identify", &photo(3)]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("site.fgmetric") && stderr.contains("damaged"), "{stderr}");
    // dlib's last layer, on pooled features (a cache of its own); SFace, the
    // default, has none to retrain and says which flag to use.
    let layer = dir.path().join("layer.fgmetric");
    let pooled = dir.path().join("p.fgfeat");
    let refused = host_tool(&["train", "--photos", &s(&photos), "--kind", "last-layer", "--out", &s(&layer)]);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("--network dlib"));
    let trained = json_of(&host_tool(&[
        "--network",
        "dlib",
        "train",
        "--photos",
        &s(&photos),
        "--kind",
        "last-layer",
        "--out",
        &s(&layer),
        "--epochs",
        "2",
        "--cache",
        &s(&pooled),
        "--json",
    ]));
    assert_eq!(trained["kind"], "last-layer");
    assert_eq!(trained["features"]["photos"], 160);
    let file = facegate_train::MetricHead::load(&layer, &trained["base_model"].as_str().unwrap().parse().unwrap()).unwrap();
    assert_eq!(file.inputs(), 256);
    // A last layer makes new embeddings: a gallery enrolled without it is refused, plainly…
    let dlib_gallery = s(&dir.path().join("dlib.fg"));
    let enrolled = host_tool(&["--network", "dlib", "--gallery", &dlib_gallery, "enroll", p, &photo(1), &photo(2)]);
    assert!(enrolled.status.success(), "{}", String::from_utf8_lossy(&enrolled.stderr));
    let refused = host_tool(&["--network", "dlib", "--gallery", &dlib_gallery, "--metric", &s(&layer), "identify", &photo(3)]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("enrolled again"), "{stderr}");
    // A head trained on the default network's embeddings is refused on dlib's
    // templates, the network read from the gallery file (no --network given).
    std::fs::write(&out, &good).unwrap();
    let mixed = host_tool(&["--gallery", &dlib_gallery, "--metric", &s(&out), "identify", &photo(3)]);
    let stderr = String::from_utf8_lossy(&mixed.stderr);
    assert!(!mixed.status.success() && stderr.contains("site.fgmetric"), "a head of another network applied: {stderr}");
    assert!(host_tool(&["--gallery", &gallery, "--metric", &s(&out), "identify", &photo(3)]).status.success());
    // …and one enrolled with it finds its person (the threshold is given: two
    // epochs on four validation people make no threshold worth testing).
    let layered = s(&dir.path().join("layered.fg"));
    let with_layer =
        |args: &[&str]| host_tool(&[&["--network", "dlib", "--gallery", &layered, "--metric", &s(&layer)], args].concat());
    let enrolled = with_layer(&["enroll", p, &photo(1), &photo(2)]);
    assert!(enrolled.status.success(), "{}", String::from_utf8_lossy(&enrolled.stderr));
    let found = with_layer(&["--threshold", "0.6", "--json", "identify", &photo(3), &photo(4)]);
    assert!(found.status.success(), "{}", String::from_utf8_lossy(&found.stderr));
    let found: Vec<Value> = facegate_testkit::json_lines(&found.stdout);
    assert!(found.len() == 2 && found.iter().all(|f| f["name"] == p.as_str()), "{found:?}");
    // Without the file, that gallery's templates match no model here.
    let plain = host_tool(&["--gallery", &layered, "identify", &photo(3)]);
    assert!(!plain.status.success() && String::from_utf8_lossy(&plain.stderr).contains("--metric"));
    // The embedding cache is not mistaken for pooled features.
    let mixed =
        host_tool(&["--network", "dlib", "train", "--photos", &s(&photos), "--kind", "last-layer", "--cache", &s(&cache)]);
    assert!(!mixed.status.success() && String::from_utf8_lossy(&mixed.stderr).contains("feature cache made for"));
}

#[test]
fn bench_lfw_train_metric_has_the_interface() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    let Some(people) = slice(&photos) else { return };
    // Two folds of 20 people each: 10 same-person and 10 different-person pairs per fold.
    let pairs_file = dir.path().join("pairs.txt");
    std::fs::write(&pairs_file, facegate_testkit::two_fold_pairs(&people)).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let cache = s(&dir.path().join("f.fgfeat"));
    let args = [
        "bench",
        "lfw",
        "--lfw",
        &s(&photos),
        "--pairs",
        &s(&pairs_file),
        "--train-metric",
        "head",
        "--epochs",
        "3",
        "--cache",
        &cache,
        "--json",
    ];
    let v = json_of(&host_tool(&args));
    assert_eq!(v["kind"], "head");
    assert_eq!(v["folds"], 2);
    for side in ["pretrained", "trained"] {
        for key in ["accuracy_mean", "eer", "tar_at_far_1e-3", "tar_at_far_1e-4", "fnir_at_fpir_0.003"] {
            let x = v[side][key].as_f64().unwrap_or_else(|| panic!("{side}.{key} missing: {v}"));
            assert!((0.0..=100.0).contains(&x), "{side}.{key} = {x} is not a percentage");
        }
    }
    // Options of the photo pipeline do not apply to cached features: refused, not ignored.
    let mut with_detector = args.to_vec();
    with_detector.extend(["--detector", "hog"]);
    let refused = host_tool(&with_detector);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("cannot be used with"));
    // Trained on the other fold's people only.
    for run in v["fold_runs"].as_array().unwrap() {
        assert_eq!(run["counts"]["train_people"].as_u64().unwrap() + run["counts"]["validation_people"].as_u64().unwrap(), 20);
    }
}
