//! The benchmark commands' JSON interfaces, which other checks call: every key
//! there, figures that are numbers and agree with each other. (The figures
//! themselves are measured, not asserted: timings belong to benchmarks.)

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn lfw() -> Option<std::path::PathBuf> {
    match facegate_lfw::locate(&Path::new(env!("CARGO_MANIFEST_DIR")).join("..")) {
        Some((images, _)) => Some(images),
        None => {
            eprintln!("SKIPPED: LFW not found (../shared/datasets/lfw or $FACEGATE_LFW_DIR); bench interface tests not run");
            None
        }
    }
}

fn bench_json(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_host-tool"))
        .args(["--models"])
        .arg(facegate_testkit::models())
        .arg("bench")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "bench {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("bench {args:?} printed no JSON ({e})"))
}

#[test]
fn bench_speed_json_has_the_speed_interface() {
    let Some(lfw) = lfw() else { return };
    let frame = tempfile::tempdir().unwrap();
    let frame_png = frame.path().join("frame.png");
    let j = bench_json(&[
        "speed",
        "--json",
        "--runs",
        "3",
        "--threads",
        "2",
        "--lfw",
        lfw.to_str().unwrap(),
        "--save-frame",
        frame_png.to_str().unwrap(),
    ]);
    for key in [
        "frame_ms",
        "frame_ms_1_thread",
        "fps",
        "detect_ms_640x480",
        "detect_ms_640x480_yunet",
        "embed_ms_f32",
        "embed_ms_other_network",
        "frame_ms_other_network",
        "frame_ratio_vs_other_network",
        "liveness_ms",
        "detect_ms_640x480_threads",
        "embed_ms_threads",
        "embed_ratio_vs_1_thread",
        "embed_ms_per_face_in_parallel",
        "embed_parallel_ratio_vs_1_thread",
        "detect_ratio_vs_1_thread",
        "frame_ratio_vs_1_thread",
        "fps_ratio_vs_1_thread",
    ] {
        let v = j[key].as_f64().unwrap_or_else(|| panic!("{key} missing or not a number: {j}"));
        assert!(v.is_finite() && v > 0.0, "{key} = {v}");
    }
    assert_eq!(j["threads"], 2);
    // The default network (SFace) ships in f32 only; dlib's precisions are timed with it.
    assert_eq!((j["network"].as_str(), j["other_network"].as_str()), (Some("sface"), Some("dlib")), "{j}");
    assert!(j["embed_ms_int8"].is_null() && j["embed_ms_qint8"].is_null(), "{j}");
    let dlib = bench_json(&["speed", "--network", "dlib", "--json", "--runs", "1", "--lfw", lfw.to_str().unwrap()]);
    for key in ["embed_ms_f32", "embed_ms_int8", "embed_ms_qint8", "frame_ratio_vs_other_network"] {
        let v = dlib[key].as_f64().unwrap_or_else(|| panic!("dlib: {key} missing or not a number: {dlib}"));
        assert!(v.is_finite() && v > 0.0, "dlib: {key} = {v}");
    }
    assert_eq!(dlib["other_network"], "sface");
    // At 2 threads the door pipelines frames: its frame rate is that of whole frames on both cores.
    assert_eq!(j["fps"], j["fps_frames_in_parallel"], "{j}");
    // The frame it measured, for `device bench` on the unit.
    let saved = image::open(&frame_png).unwrap_or_else(|e| panic!("--save-frame wrote no image: {e}"));
    assert_eq!((saved.width(), saved.height()), (640, 480));
}

#[test]
fn bench_detect_counts_faces_and_fits_the_box_map() {
    let Some(lfw) = lfw() else { return };
    let j = bench_json(&["detect", "--json", "--every", "100", "--lfw", lfw.to_str().unwrap()]);
    assert_eq!(j["images"], 133, "every 100th of LFW's 13,233 photos");
    for view in ["upright", "rotated_plus20", "rotated_minus20", "mirrored"] {
        for detector in ["found_hog", "found_yunet"] {
            let r = j[detector][view].as_f64().unwrap_or_else(|| panic!("{detector}.{view} missing: {j}"));
            assert!((0.0..=1.0).contains(&r), "{detector}.{view} = {r}");
        }
        // LFW's faces are large and centred: YuNet finds nearly all of them in every view.
        assert!(j["found_yunet"][view].as_f64().unwrap() >= 0.95, "{view}: {j}");
    }
    // The shipped mapping is the fit on all of LFW: on a sample it must do nearly as well as a
    // map fitted to that very sample (which flatters itself), and better than the box alone.
    let iou = |k: &str| j[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {j}"));
    assert!(j["box_map_fitted"]["side"].as_array().is_some_and(|c| c.len() == 13), "{j}");
    assert!(iou("mean_iou_vs_hog_in_use") > iou("mean_iou_vs_hog_fitted") - 0.03, "{j}");
    assert!(iou("mean_iou_vs_hog_in_use") > 0.8, "{j}");
    // From either box, dlib's landmark model lands nearly the same points (LFW: 0.006 eye spans).
    assert!(iou("landmark_error_eye_spans") < 0.03, "{j}");
    assert!(iou("mean_iou_vs_hog_in_use") > iou("mean_iou_vs_hog_box_only"), "{j}");
    assert!(iou("mean_iou_vs_hog_box_only") > iou("mean_iou_vs_hog_unmapped"), "{j}");
}

#[test]
fn bench_liveness_json_has_the_liveness_interface() {
    let Some(nuaa) = facegate_testkit::shared_dir("datasets/spoof-dev/nuaa-dev", "the bench liveness interface test") else {
        return;
    };
    // A small set in the per-type layout: 12 live frames, 12 printed photos (copied at run
    // time into a temporary directory, never into the repository).
    let set = tempfile::tempdir().unwrap();
    for (from, to) in [("real", "real"), ("attack", "attack-print")] {
        std::fs::create_dir(set.path().join(to)).unwrap();
        let mut names: Vec<_> = std::fs::read_dir(nuaa.join(from)).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        for p in names.iter().step_by(names.len() / 12).take(12) {
            std::fs::copy(p, set.path().join(to).join(p.file_name().unwrap())).unwrap();
        }
    }
    let spec = format!("nuaa12={}", set.path().display());
    let csv_path = set.path().join("scores.csv");
    let j = bench_json(&["liveness", "--json", "--set", &spec, "--scores-csv", csv_path.to_str().unwrap()]);
    assert_eq!(j["threshold"], 0.5, "the shipped threshold: {j}");
    let s = &j["sets"]["nuaa12"];
    assert_eq!((s["real"].as_u64(), s["attack"].as_u64(), s["no_face"].as_u64()), (Some(12), Some(12), Some(0)), "{j}");
    for key in ["bpcer", "apcer", "acer"] {
        let v = s[key].as_f64().unwrap_or_else(|| panic!("{key} missing: {j}"));
        assert!((0.0..=100.0).contains(&v), "{key} = {v}");
    }
    assert_eq!(s["apcer_by_type"]["print"], s["apcer"], "one attack type: {j}");
    // ACER is the mean of the two.
    assert!((s["acer"].as_f64().unwrap() - (s["bpcer"].as_f64().unwrap() + s["apcer"].as_f64().unwrap()) / 2.0).abs() < 1e-9);
    // NUAA's frames are what the shipped crop box was measured on (0.2 % / 0 % over 834 frames).
    assert!(s["bpcer"].as_f64().unwrap() <= 10.0 && s["apcer"].as_f64().unwrap() <= 10.0, "{j}");
    // The per-image CSV: a row an image, the score is the networks' mean live
    // probability, and its live rows give the JSON's BPCER.
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("set,label,file,score,net0_attack_a,net0_live,net0_attack_b,net1_attack_a,net1_live,net1_attack_b")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 24, "{csv}");
    let mut live_accepted = 0;
    for r in &rows {
        assert_eq!((r.len(), r[0]), (10, "nuaa12"), "{r:?}");
        let v: Vec<f64> = r[3..].iter().map(|x| x.parse().unwrap()).collect();
        assert!((v[0] - (v[2] + v[5]) / 2.0).abs() < 1e-5, "score is the mean live probability: {r:?}");
        assert!((v[1] + v[2] + v[3] - 1.0).abs() < 1e-4 && (v[4] + v[5] + v[6] - 1.0).abs() < 1e-4, "{r:?}");
        live_accepted += usize::from(r[1] == "real" && v[0] >= 0.5);
    }
    assert_eq!(rows.iter().filter(|r| r[1] == "print").count(), 12);
    assert!((100.0 * (12 - live_accepted) as f64 / 12.0 - s["bpcer"].as_f64().unwrap()).abs() < 1e-9, "{csv}\n{j}");
    let shipped: Vec<f64> = serde_json::from_value(j["box_map"].clone()).unwrap();
    assert!((shipped[0] - 1.2).abs() < 1e-6 && (shipped[2] + 0.05).abs() < 1e-6, "{j}");
    // Another crop box is taken and reported; a malformed one is refused.
    let other = bench_json(&["liveness", "--json", "--set", &spec, "--box-map", "0.913,1.209,-0.066"]);
    let used: Vec<f64> = serde_json::from_value(other["box_map"].clone()).unwrap();
    assert!((used[0] - 0.913).abs() < 1e-6 && (used[1] - 1.209).abs() < 1e-6, "{other}");
    let out = Command::new(env!("CARGO_BIN_EXE_host-tool"))
        .args(["bench", "liveness", "--set", &spec, "--box-map", "1.2,0,-0.05"])
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("WIDTH,HEIGHT,SHIFT"));
}

#[test]
fn bench_liveness_sequences_judges_each_clip_as_the_door_judges_an_approach() {
    let Some(nuaa) = facegate_testkit::shared_dir("datasets/spoof-dev/nuaa-dev", "the bench liveness --sequences test") else {
        return;
    };
    // Two live sessions and two print sessions of subject 1, their first eight frames
    // each (NUAA's names: subject_subject_glasses_place_session_frame), copied into clips.
    let set = tempfile::tempdir().unwrap();
    let clips = [
        ("real", "0001_0001_00_00_01"),
        ("real", "0001_0001_00_00_02"),
        ("attack-print", "0001_0001_00_01_03"),
        ("attack-print", "0001_0001_00_02_03"),
    ];
    for (kind, session) in clips {
        let from = nuaa.join(if kind == "real" { "real" } else { "attack" });
        let clip = set.path().join(kind).join(session);
        std::fs::create_dir_all(&clip).unwrap();
        let mut frames: Vec<_> = std::fs::read_dir(&from)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(&format!("{session}_")))
            .collect();
        frames.sort();
        for p in frames.iter().take(8) {
            std::fs::copy(p, clip.join(p.file_name().unwrap())).unwrap();
        }
    }
    let spec = format!("nuaa={}", set.path().display());
    let j = bench_json(&["liveness", "--sequences", "--json", "--set", &spec]);
    assert_eq!((j["threshold"].as_f64(), j["agree"].as_u64(), j["window"].as_u64()), (Some(0.5), Some(3), Some(5)), "{j}");
    let s = &j["sets"]["nuaa"];
    assert_eq!((s["clips_real"].as_u64(), s["clips_attack"].as_u64(), s["frames"].as_u64()), (Some(2), Some(2), Some(32)), "{j}");
    // The shipped ensemble refuses NUAA's prints and lets its live sessions in at the third frame.
    assert_eq!(s["per_frame"]["apcer_by_type"]["print"], 0.0, "{j}");
    assert_eq!(s["per_frame"]["bpcer_approach"], 0.0, "{j}");
    let clips = s["clips"].as_array().unwrap();
    assert_eq!(clips.len(), 4);
    for c in clips {
        assert_eq!((c["frames"].as_u64(), c["faces"].as_u64()), (Some(8), Some(8)), "{c}");
        let passed = c["passed_at"].as_u64();
        assert_eq!(passed.is_some(), c["kind"] == "real", "{c}");
        assert!(passed.is_none_or(|f| (3..=5).contains(&f)), "3 of 5 frames cannot pass before the third: {c}");
    }
    for key in ["bpcer_approach", "bpcer_clip", "apcer_by_type"] {
        assert!(!s["fused"][key].is_null(), "{key}: {j}");
    }
    for cue in ["depth", "carry"] {
        let with = s[cue]["real_with_verdict"].as_u64().unwrap() + s[cue]["attack_with_verdict"].as_u64().unwrap();
        let said = clips.iter().filter(|c| !c[cue].is_null()).count() as u64;
        assert_eq!(with, said, "{cue}: a verdict is a clip's value: {j}");
    }
    // Three live frames needed of a window of two: refused before anything is read.
    let out = Command::new(env!("CARGO_BIN_EXE_host-tool"))
        .args(["bench", "liveness", "--sequences", "--set", &spec, "--agree", "3", "--window", "2"])
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--agree 3 must be between 1 and --window 2"));
}
