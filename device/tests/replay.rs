//! The door end to end on LFW photos: enrol from 3 photos, replay other photos
//! → one grant and one relay pulse; replay 200 strangers → no grant; damaged
//! frames → error events, no crash, door locked at the end; `device bench`
//! times a frame on one core and on two.
//! Needs LFW in ../shared (or $FACEGATE_LFW_DIR); skips loudly without it.

use facegate_face::decode::{decode_image, DEFAULT_MAX_PIXELS};
use facegate_face::{LastLayer, Network, Pipeline, PipelineConfig, Precision};
use facegate_store::Gallery;
use facegate_testkit::models;
use serde_json::Value;
use std::path::Path;

fn lfw() -> Option<(facegate_lfw::Dataset, Vec<String>)> {
    let (data, pairs) = facegate_testkit::lfw("the door replay test")?;
    let names: Vec<String> = facegate_lfw::parse_pairs(&std::fs::read_to_string(pairs).unwrap())
        .unwrap()
        .into_iter()
        .flat_map(|p| [p.a, p.b])
        .collect();
    Some((data, names))
}

/// Enrols `person` from their photos 1–3 with HOG (doubled image) and one
/// run per face of `network` (dlib's with `last_layer` in place of its own).
fn enrol_with(data: &facegate_lfw::Dataset, person: &str, gallery: &Path, network: Network, last_layer: Option<LastLayer>) {
    let pipeline = Pipeline::load_with_last_layer(
        &models(),
        Precision::Int8,
        PipelineConfig { network, upsample: 1, min_face: 40, retry_threshold: Some(-0.6), ..PipelineConfig::door() },
        last_layer,
    )
    .unwrap();
    let templates = (1..=3)
        .map(|i| {
            let img = decode_image(&data.read(&facegate_lfw::image_path(person, i)).unwrap(), DEFAULT_MAX_PIXELS).unwrap();
            let faces = pipeline.faces(&img);
            pipeline.embed(&faces[0]).unwrap()
        })
        .collect();
    let mut g = Gallery::new(pipeline.embedder.model_id());
    g.add_person(person, templates, pipeline.embedder.model_id(), 0).unwrap();
    g.save(gallery).unwrap();
}

/// Colin Powell enrolled from photos 1–3 into `gallery` with `network`,
/// photos 10–14 in `approach`; his name.
fn enrol_and_approach(data: &facegate_lfw::Dataset, gallery: &Path, approach: &Path, network: Network) -> &'static str {
    let person = "Colin_Powell";
    enrol_with(data, person, gallery, network, None);
    std::fs::create_dir(approach).unwrap();
    for (k, i) in (10..15).enumerate() {
        std::fs::write(approach.join(format!("{k:03}.jpg")), data.read(&facegate_lfw::image_path(person, i)).unwrap()).unwrap();
    }
    person
}

/// A scene in a fresh directory: Colin enrolled in `gallery.fg`, his other
/// photos in `approach/`; LFW's names beside.
struct Scene {
    dir: tempfile::TempDir,
    gallery: std::path::PathBuf,
    approach: std::path::PathBuf,
    person: &'static str,
    names: Vec<String>,
    data: facegate_lfw::Dataset,
}

/// The scene with the default network's templates.
fn colin_at_the_door() -> Option<Scene> {
    colin_at_a_door_of(Network::default())
}

fn colin_at_a_door_of(network: Network) -> Option<Scene> {
    let (data, names) = lfw()?;
    let dir = tempfile::tempdir().unwrap();
    let (gallery, approach) = (dir.path().join("gallery.fg"), dir.path().join("approach"));
    let person = enrol_and_approach(&data, &gallery, &approach, network);
    Some(Scene { dir, gallery, approach, person, names, data })
}

fn run_device(replay: &Path, gallery: &Path) -> (Vec<Value>, String) {
    run_device_with(replay, gallery, &[])
}

fn run_device_with(replay: &Path, gallery: &Path, env: &[(&str, &str)]) -> (Vec<Value>, String) {
    let out = facegate_testkit::device_replay(replay, gallery).envs(env.iter().copied()).arg("--stats").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success() || !env.is_empty(), "device failed: {stderr}");
    (facegate_testkit::json_lines(&out.stdout), stderr)
}

/// `dir/strangers/`: the first photo of each of `count` people other than `person`, in name order.
fn strangers_in(dir: &Path, names: &[String], data: &facegate_lfw::Dataset, person: &str, count: usize) -> std::path::PathBuf {
    let strangers = dir.join("strangers");
    std::fs::create_dir(&strangers).unwrap();
    let mut people: Vec<&str> = names.iter().map(|n| n.split('/').next().unwrap()).filter(|p| *p != person).collect();
    people.sort_unstable();
    people.dedup();
    for (k, p) in people.iter().take(count).enumerate() {
        std::fs::write(strangers.join(format!("{k:03}.jpg")), data.read(&facegate_lfw::image_path(p, 1)).unwrap()).unwrap();
    }
    strangers
}

fn kinds(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|e| e["kind"] == kind).count()
}

#[test]
fn enrolled_person_is_granted_once_strangers_never_and_bad_frames_do_no_harm() {
    let Some(Scene { dir, gallery, approach, person, names, data }) = colin_at_the_door() else { return };

    // Other photos of the enrolled person: one approach, one grant, one pulse.
    let (events, stderr) = run_device(&approach, &gallery);
    assert_eq!(kinds(&events, "granted"), 1, "{events:?}\n{stderr}");
    let granted = events.iter().find(|e| e["kind"] == "granted").unwrap();
    assert_eq!(granted["person"], person);
    assert!(granted["distance"].as_f64().unwrap() < f64::from(Network::default().door_threshold()));
    for key in ["kind", "person", "distance", "time"] {
        assert!(granted.get(key).is_some(), "event lacks {key}");
    }
    let relay: Vec<&str> = events.iter().filter(|e| e["kind"] == "relay").map(|e| e["state"].as_str().unwrap()).collect();
    assert_eq!(relay, vec!["locked", "unlocked", "locked"], "locked at start, one pulse, locked at the end");

    // A panic in the pipeline while the door is open: the panic hook locks it.
    let mut env = vec![("FACEGATE_INJECT_PANIC_AFTER_FRAMES", "4")];
    let (events, stderr) = run_device_with(&approach, &gallery, &env);
    let relay: Vec<(&str, Option<&str>)> =
        events.iter().filter(|e| e["kind"] == "relay").map(|e| (e["state"].as_str().unwrap(), e["cause"].as_str())).collect();
    assert_eq!(relay, vec![("locked", None), ("unlocked", None), ("locked", Some("panic"))], "{stderr}");
    assert!(stderr.contains("injected panic"), "{stderr}");
    env.clear();

    // 200 strangers (one photo each of 200 other people), with damaged frames among them.
    let strangers = strangers_in(dir.path(), &names, &data, person, 200);
    std::fs::write(strangers.join("050b.jpg"), b"\xff\xd8\xff\xe0 this is not a whole jpeg").unwrap();
    std::fs::write(strangers.join("150b.jpg"), b"").unwrap();
    let (events, stderr) = run_device(&strangers, &gallery);
    assert_eq!(kinds(&events, "granted"), 0, "a stranger was let in: {events:?}");
    // Strangers are logged, at most once per cooldown (5 s), never with a name.
    assert!(kinds(&events, "unknown") >= 1, "strangers are logged\n{stderr}");
    assert!(events.iter().filter(|e| e["kind"] == "unknown").all(|e| e["person"].is_null()));
    assert_eq!(kinds(&events, "error"), 2, "one error event per damaged frame");
    let relay: Vec<&str> = events.iter().filter(|e| e["kind"] == "relay").map(|e| e["state"].as_str().unwrap()).collect();
    assert!(relay.iter().all(|s| *s == "locked"), "never unlocked: {relay:?}");
    // 200 photos of different sizes, events and errors: once warm, no frame
    // calls the system allocator (all of it comes from the frame arena).
    let system = stderr
        .split("system allocations after warm-up ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("--stats gives no allocation count:\n{stderr}"));
    assert_eq!(system, 0, "{stderr}");
}

#[test]
fn a_damaged_gallery_is_refused_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let gallery = dir.path().join("gallery.fg");
    std::fs::write(&gallery, b"FGGL\x01\0\0\0garbage").unwrap();
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    image::RgbImage::new(64, 64).save(frames.join("a.png")).unwrap();
    let out = facegate_testkit::device_replay(&frames, &gallery).arg("--stats").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gallery") && err.contains("damaged"), "{err}");
    // The only relay transition is the lock at start.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("unlocked"), "{stdout}");
}

/// Runs the replay on dlib's network (trained metrics are dlib's) with
/// `recognition.metric = metric` in a config file.
fn run_device_with_metric(replay: &Path, gallery: &Path, metric: &Path) -> (Vec<Value>, String, bool) {
    let config = gallery.with_extension("toml");
    let settings = format!("[recognition]\nnetwork = \"dlib\"\nmetric = {:?}\n", metric.display().to_string());
    std::fs::write(&config, settings).unwrap();
    let out = facegate_testkit::device_replay(replay, gallery).arg("--config").arg(&config).output().unwrap();
    (facegate_testkit::json_lines(&out.stdout), String::from_utf8_lossy(&out.stderr).into_owned(), out.status.success())
}

#[test]
fn a_trained_metric_is_applied_to_probes_and_templates_and_a_bad_one_stops_the_door() {
    use facegate_train::MetricHead;
    let Some(Scene { dir, gallery, approach, .. }) = colin_at_a_door_of(Network::Dlib) else { return };
    let model = Gallery::load(&gallery).unwrap().model_id();
    let metric = dir.path().join("m.fgmetric");
    // The identity: the same grant as without a metric.
    MetricHead::identity(model, 0.52).save(&metric).unwrap();
    let (events, stderr, ok) = run_device_with_metric(&approach, &gallery, &metric);
    assert!(ok, "{stderr}");
    assert_eq!(kinds(&events, "granted"), 1, "{events:?}\n{stderr}");
    // W = 3·I triples every distance: the same person is now beyond 0.52,
    // which proves the frame path searches in the file's metric.
    let mut tripled = MetricHead::identity(model, 0.52);
    tripled.weights.iter_mut().for_each(|w| *w *= 3.0);
    tripled.save(&metric).unwrap();
    let (events, stderr, ok) = run_device_with_metric(&approach, &gallery, &metric);
    assert!(ok, "{stderr}");
    assert_eq!(kinds(&events, "granted"), 0, "{events:?}");
    // `device check` names the metric and its threshold.
    let check = std::process::Command::new(facegate_testkit::binary("device"))
        .args(["check", "--models"])
        .arg(facegate_testkit::models())
        .arg("--gallery")
        .arg(&gallery)
        .arg("--config")
        .arg(gallery.with_extension("toml"))
        .arg("--source")
        .arg(format!("replay:{}", approach.display()))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success() && said.contains("metric: ok") && said.contains("0.5200"), "{said}");
    assert!(kinds(&events, "unknown") >= 1, "{events:?}\n{stderr}");
    // A damaged file, or one trained for another model, stops the door before any frame.
    let mut bytes = std::fs::read(&metric).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(&metric, &bytes).unwrap();
    let (events, stderr, ok) = run_device_with_metric(&approach, &gallery, &metric);
    assert!(!ok && stderr.contains("recognition.metric") && stderr.contains("damaged"), "{stderr}");
    assert!(events.iter().all(|e| e["kind"] != "granted"));
    // A last layer makes new embeddings: the gallery enrolled without it is refused, with the way out.
    MetricHead::last_layer(model, &vec![0.0; 256 * 128], 0.52).save(&metric).unwrap();
    let (_, stderr, ok) = run_device_with_metric(&approach, &gallery, &metric);
    assert!(!ok && stderr.contains("re-enrol") && stderr.contains("host-tool --metric"), "{stderr}");
    MetricHead::identity(facegate_face::ModelId::of_file_bytes(b"another model"), 0.52).save(&metric).unwrap();
    let (_, stderr, ok) = run_device_with_metric(&approach, &gallery, &metric);
    assert!(!ok && stderr.contains("train again"), "{stderr}");
}

#[test]
fn a_retrained_last_layer_runs_on_the_door_with_a_gallery_enrolled_with_it() {
    use facegate_face::embed::PooledEmbedder;
    use facegate_train::MetricHead;
    let Some((data, _)) = lfw() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (gallery, approach) = (dir.path().join("gallery.fg"), dir.path().join("approach"));
    let person = enrol_and_approach(&data, &gallery, &approach, Network::Dlib);
    let bytes = std::fs::read(models().join(Precision::Int8.file_name())).unwrap();
    let cut = PooledEmbedder::from_bytes(&bytes).unwrap();
    // The network's own layer as a last-layer file: a new template id, the same embeddings.
    let file = MetricHead::last_layer(cut.model_id(), cut.last_layer(), 0.52);
    let metric = dir.path().join("layer.fgmetric");
    file.save(&metric).unwrap();
    assert_ne!(file.template_model(), cut.model_id());
    let layer = LastLayer { weights: file.weights.clone(), template_model: file.template_model() };
    enrol_with(&data, person, &gallery, Network::Dlib, Some(layer));
    assert_eq!(Gallery::load(&gallery).unwrap().model_id(), file.template_model());
    let (events, stderr, ok) = run_device_with_metric(&approach, &gallery, &metric);
    assert!(ok, "{stderr}");
    assert_eq!(kinds(&events, "granted"), 1, "{events:?}\n{stderr}");
    // Without the file the door runs the plain network, and refuses that gallery.
    let (events, stderr, ok) = run_device_with_config(&approach, &gallery, "[recognition]\nnetwork = \"dlib\"\n");
    assert!(!ok && stderr.contains("re-enrol"), "{stderr}");
    assert!(events.iter().all(|e| e["kind"] != "granted"));
}

#[test]
fn bench_times_the_frame_on_one_core_and_on_two_in_turns() {
    let Some((data, _)) = lfw() else { return };
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    std::fs::write(frames.join("000.jpg"), data.read(&facegate_lfw::image_path("Colin_Powell", 10)).unwrap()).unwrap();
    // LFW's 250 px photos hold faces narrower than the door's 100 px minimum.
    let config = dir.path().join("door.toml");
    std::fs::write(&config, "[recognition]\nmin_face = 60\n").unwrap();
    let out = std::process::Command::new(facegate_testkit::binary("device"))
        .args(["bench", "--threads", "2", "--runs", "3", "--config"])
        .arg(&config)
        .arg("--models")
        .arg(models())
        .arg("--source")
        .arg(format!("replay:{}", frames.display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let j: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stderr}"));
    assert_eq!(j["threads"], 2);
    assert_eq!(j["liveness"], true, "required by default");
    let ms = |k: &str| j[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {j}"));
    for key in ["frame_ms", "frame_ms_1_thread", "detect_ms", "embed_ms", "identify_ms_50k_templates"] {
        assert!(ms(key).is_finite() && ms(key) > 0.0, "{key} = {}", ms(key));
    }
    // A median of per-turn ratios: near the ratio of the medians, never a copy of 1.
    let ratio = ms("frame_ratio_vs_1_thread");
    assert!(ratio > 0.0 && ratio < 2.0 && ratio != 1.0, "frame_ratio_vs_1_thread = {ratio}: {j}");
    // Once warm, neither way calls the system allocator.
    assert_eq!(ms("system_allocations_per_frame"), 0.0, "{j}");
    assert_eq!(ms("system_allocations_per_frame_on_threads"), 0.0, "{j}");
}

/// `paths.gallery_key`: the door seals its gallery at rest on start, still
/// lets Colin in from it, and without the key (a copied card) refuses to run.
#[test]
fn a_gallery_sealed_at_rest_is_read_only_with_its_key() {
    let Some(Scene { dir, gallery, approach, person, .. }) = colin_at_the_door() else { return };
    let key = dir.path().join("gallery.key");
    std::fs::write(&key, "5a".repeat(32)).unwrap();
    let with_key = dir.path().join("sealed.toml");
    std::fs::write(&with_key, format!("[paths]\ngallery_key = {:?}\n", key.display().to_string())).unwrap();
    let run = |config: &Path| facegate_testkit::device_replay(&approach, &gallery).arg("--config").arg(config).output().unwrap();
    let out = run(&with_key);
    let events: Vec<Value> = facegate_testkit::json_lines(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(events.iter().filter(|e| e["kind"] == "granted" && e["person"] == person).count(), 1, "{events:?}");
    for file in [gallery.clone(), gallery.with_extension("fg.bak")] {
        let bytes = std::fs::read(&file).unwrap();
        assert!(bytes.starts_with(b"FGSEALD1"), "{} is sealed", file.display());
        assert!(!bytes.windows(person.len()).any(|w| w == person.as_bytes()), "no name in {}", file.display());
    }
    let plain = dir.path().join("plain.toml");
    std::fs::write(&plain, "").unwrap();
    let out = run(&plain);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("gallery_key"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("granted"));
}

/// Colin enrolled from photos 1–3 into `gallery` with SFace on YuNet's points.
fn enrol_sface(data: &facegate_lfw::Dataset, person: &str, gallery: &Path) {
    use facegate_face::DetectorKind;
    let config =
        PipelineConfig { network: Network::Sface, detector: DetectorKind::Yunet, min_face: 40, ..PipelineConfig::door() };
    let pipeline = Pipeline::load(&models(), Precision::F32, config).unwrap();
    let templates = (1..=3)
        .map(|i| {
            let img = decode_image(&data.read(&facegate_lfw::image_path(person, i)).unwrap(), DEFAULT_MAX_PIXELS).unwrap();
            pipeline.embed(&pipeline.faces(&img)[0]).unwrap()
        })
        .collect();
    let mut g = Gallery::new(pipeline.embedder.model_id());
    g.add_person(person, templates, pipeline.embedder.model_id(), 0).unwrap();
    g.save(gallery).unwrap();
}

/// Runs the replay with the TOML `config`.
fn run_device_with_config(replay: &Path, gallery: &Path, config: &str) -> (Vec<Value>, String, bool) {
    let path = gallery.with_extension("toml");
    std::fs::write(&path, config).unwrap();
    let out = facegate_testkit::device_replay(replay, gallery).arg("--config").arg(&path).output().unwrap();
    (facegate_testkit::json_lines(&out.stdout), String::from_utf8_lossy(&out.stderr).into_owned(), out.status.success())
}

#[test]
fn an_sface_door_grants_its_people_keeps_strangers_out_and_refuses_the_other_networks_gallery() {
    let Some(Scene { dir, gallery: dlib_gallery, approach, person, names, data }) = colin_at_a_door_of(Network::Dlib) else {
        return;
    };
    let sface_gallery = dir.path().join("sface.fg");
    enrol_sface(&data, person, &sface_gallery);
    let sface = "[recognition]\nnetwork = \"sface\"\ndetector = \"yunet\"\n";
    let (events, stderr, ok) = run_device_with_config(&approach, &sface_gallery, sface);
    assert!(ok, "{stderr}");
    assert_eq!(kinds(&events, "granted"), 1, "{events:?}\n{stderr}");
    let granted = events.iter().find(|e| e["kind"] == "granted").unwrap();
    assert_eq!(granted["person"], person);
    assert!(granted["distance"].as_f64().unwrap() < f64::from(facegate_face::Network::Sface.door_threshold()));
    // 100 strangers: nobody let in.
    let strangers = strangers_in(dir.path(), &names, &data, person, 100);
    let (events, stderr, ok) = run_device_with_config(&strangers, &sface_gallery, sface);
    assert!(ok, "{stderr}");
    assert_eq!(kinds(&events, "granted"), 0, "a stranger was let in: {events:?}");
    assert!(kinds(&events, "unknown") >= 1, "{stderr}");
    // Templates of the other network are refused, with the way out, in both directions.
    let (events, stderr, ok) = run_device_with_config(&approach, &dlib_gallery, sface);
    assert!(!ok && stderr.contains("--network sface"), "{stderr}");
    assert!(events.iter().all(|e| e["kind"] != "granted"));
    let (_, stderr, ok) = run_device_with_config(&approach, &sface_gallery, "[recognition]\nnetwork = \"dlib\"\n");
    assert!(!ok && stderr.contains("--network dlib"), "{stderr}");
}
