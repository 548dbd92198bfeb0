//! Liveness end to end through the real `device` program on NUAA webcam frames
//! (../shared/datasets/spoof-dev/nuaa-dev; skips loudly without them): a
//! subject enrolled from three of their live frames is granted on a replay of
//! their other live frames; a replay of printed-photo attacks of them is never
//! granted and raises `spoof` events; with liveness off the same attack replay
//! is granted, so the test can tell the difference.

use facegate_face::decode::{decode_image, DEFAULT_MAX_PIXELS};
use facegate_face::{Pipeline, PipelineConfig, Precision};
use facegate_store::Gallery;
use serde_json::Value;
use std::path::{Path, PathBuf};

const SUBJECT: &str = "0001";

fn frames(dir: &Path) -> Vec<PathBuf> {
    let mut f: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(SUBJECT))
        .collect();
    f.sort();
    f
}

fn replay(dir: &Path, name: &str, files: &[PathBuf]) -> PathBuf {
    let out = dir.join(name);
    std::fs::create_dir(&out).unwrap();
    for (i, f) in files.iter().enumerate() {
        std::fs::copy(f, out.join(format!("{i:03}.jpg"))).unwrap();
    }
    out
}

fn run_device(replay: &Path, gallery: &Path, liveness: &str) -> Vec<Value> {
    let out = facegate_testkit::device_replay(replay, gallery).args(["--liveness", liveness]).output().unwrap();
    assert!(out.status.success(), "device failed: {}", String::from_utf8_lossy(&out.stderr));
    facegate_testkit::json_lines(&out.stdout)
}

fn count(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|e| e["kind"] == kind).count()
}

#[test]
fn prints_of_an_enrolled_person_are_refused_as_spoofs() {
    let Some(nuaa) = facegate_testkit::shared_dir("datasets/spoof-dev/nuaa-dev", "the liveness replay test") else { return };
    let live = frames(&nuaa.join("real"));
    let attacks = frames(&nuaa.join("attack"));
    assert!(live.len() >= 20 && attacks.len() >= 12, "{} live, {} attack frames", live.len(), attacks.len());
    let dir = tempfile::tempdir().unwrap();
    let gallery = dir.path().join("gallery.fg");
    let pipeline = Pipeline::load(&facegate_testkit::models(), Precision::Int8, PipelineConfig::door()).unwrap();
    let templates = [0, 20, 40]
        .iter()
        .map(|&i| {
            let img = decode_image(&std::fs::read(&live[i]).unwrap(), DEFAULT_MAX_PIXELS).unwrap();
            pipeline.embed(&pipeline.faces(&img)[0]).unwrap()
        })
        .collect();
    let mut g = Gallery::new(pipeline.embedder.model_id());
    g.add_person(SUBJECT, templates, pipeline.embedder.model_id(), 0).unwrap();
    g.save(&gallery).unwrap();

    let approach = replay(dir.path(), "live", &live[5..15]);
    let events = run_device(&approach, &gallery, "required");
    assert_eq!(count(&events, "granted"), 1, "the live subject is let in: {events:?}");
    assert_eq!(count(&events, "spoof"), 0, "{events:?}");

    let printed = replay(dir.path(), "attack", &attacks[..12]);
    let events = run_device(&printed, &gallery, "required");
    assert_eq!(count(&events, "granted"), 0, "a printed photo was let in: {events:?}");
    assert!(count(&events, "spoof") >= 1, "the print is reported: {events:?}");
    let spoof = events.iter().find(|e| e["kind"] == "spoof").unwrap();
    assert_eq!(spoof["person"], SUBJECT);
    assert!(spoof["live"].as_f64().unwrap() < 0.5 && spoof["distance"].as_f64().is_some(), "{spoof}");
    let relay: Vec<&str> = events.iter().filter(|e| e["kind"] == "relay").map(|e| e["state"].as_str().unwrap()).collect();
    assert!(relay.iter().all(|s| *s == "locked"), "never unlocked: {relay:?}");

    let events = run_device(&printed, &gallery, "off");
    assert_eq!(count(&events, "granted"), 1, "without liveness the print opens the door: {events:?}");
}
