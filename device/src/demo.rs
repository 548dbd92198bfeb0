//! `device demo`: the door on LFW photos with a simulated lock, no hardware needed.

use crate::config::Config;
use crate::events::{now_ms, Events};
use crate::lock::{SharedRelay, SimRelay};
use crate::policy::Policy;
use crate::runner::{DoorLoop, LoopSettings};
use crate::shared::Shared;
use crate::source::ReplaySource;
use anyhow::{Context, Result};
use facegate_face::liveness::Liveness;
use facegate_face::Pipeline;
use facegate_provision::GalleryHome;
use facegate_store::Gallery;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

/// Who is enrolled in the demo, and from which photos.
const PERSON: &str = "Colin_Powell";

/// The demo's settings: 3 of 5 frames, 2 s cooldown, 1.5 s pulse, 5 fps replay.
pub fn config() -> Config {
    let mut c = Config::default();
    (c.recognition.frames_agree, c.recognition.frames_window, c.recognition.cooldown_ms) = (3, 5, 2000);
    c.lock.pulse_ms = 1500;
    c.camera.fps = 5;
    c
}

/// Enrols one LFW person from 3 photos, then replays 5 other photos of them
/// followed by 20 strangers, printing every event as JSON. With `keep`, the
/// frames (`frames/`), the gallery (`gallery.fg`) and the settings
/// (`demo.toml`) stay there, so `device run` can replay the same scenario
/// (the ARM check runs the shipped build, which has no `demo`, on them).
/// With `other` (another network's pipeline), the kept gallery holds that
/// network's templates of the same photos too, and `demo-<network>.toml`
/// runs each network on YuNet's points.
pub fn run(
    pipeline: &Pipeline,
    other: Option<&Pipeline>,
    liveness: Option<&Liveness>,
    lfw: &Path,
    keep: Option<&Path>,
) -> Result<()> {
    let data = facegate_lfw::Dataset::open(lfw).with_context(|| format!("opening LFW at {}", lfw.display()))?;
    let dir = keep.map_or_else(|| std::env::temp_dir().join(format!("facegate-demo-{}", std::process::id())), Path::to_path_buf);
    std::fs::create_dir_all(&dir)?;
    let settings = config();
    let result = (|| -> Result<()> {
        let photos = (1..=3)
            .map(|i| {
                let bytes = data.read(&facegate_lfw::image_path(PERSON, i))?;
                Ok(facegate_face::decode::decode_image(&bytes, facegate_face::decode::DEFAULT_MAX_PIXELS)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let templates_of = |p: &Pipeline| -> Result<Vec<_>> {
            photos
                .iter()
                .map(|img| {
                    let face = p.faces(img).into_iter().next().context("no face in an enrolment photo")?;
                    Ok(p.embed(&face)?)
                })
                .collect()
        };
        let mut gallery = Gallery::new(pipeline.embedder.model_id());
        gallery.add_person(PERSON, templates_of(pipeline)?, pipeline.embedder.model_id(), now_ms() as u64 / 1000)?;
        if keep.is_some() {
            std::fs::write(dir.join("demo.toml"), toml::to_string(&settings)?)?;
            if let Some(other) = other {
                let mut saved = gallery.clone();
                saved.set_other_templates(PERSON, other.embedder.model_id(), &templates_of(other)?)?;
                saved.save(&dir.join("gallery.fg"))?;
                // One settings file per network, each on YuNet's five points.
                for network in [pipeline.embedder.network(), other.embedder.network()] {
                    let mut on_yunet = settings.clone();
                    on_yunet.recognition.network = network;
                    on_yunet.recognition.detector = crate::config::DoorDetector::Yunet;
                    std::fs::write(dir.join(format!("demo-{network}.toml")), toml::to_string(&on_yunet)?)?;
                }
            } else {
                gallery.save(&dir.join("gallery.fg"))?;
            }
        }
        eprintln!("enrolled {PERSON} from 3 photos; replaying 5 other photos of them, then 20 strangers");
        let frames = dir.join("frames");
        std::fs::create_dir_all(&frames)?;
        let mut k = 0;
        let mut put = |rel: &str| -> Result<()> {
            std::fs::write(frames.join(format!("{k:03}.jpg")), data.read(rel)?)?;
            k += 1;
            Ok(())
        };
        for i in 10..15 {
            put(&facegate_lfw::image_path(PERSON, i))?;
        }
        for stranger in ["Tony_Blair", "Gerhard_Schroeder", "Ariel_Sharon", "Hugo_Chavez", "Jean_Chretien"] {
            for i in 1..=4 {
                put(&facegate_lfw::image_path(stranger, i))?;
            }
        }
        let r = &settings.recognition;
        let relay: SharedRelay = Arc::new(Mutex::new(Box::new(SimRelay::default())));
        // Nothing is saved: the demo's gallery only lives in memory.
        let shared = Shared::new(Arc::new(GalleryHome::new(&dir.join("gallery.fg"), gallery)), Events::new(None, true)?);
        let mut door = DoorLoop::new(
            pipeline,
            &shared,
            relay,
            Policy::new(r.frames_agree, r.frames_window, r.cooldown_ms),
            LoopSettings {
                threshold: r.threshold(),
                pulse: std::time::Duration::from_millis(settings.lock.pulse_ms),
                until_end: true,
                door_held: std::time::Duration::from_secs(settings.lock.door_held_s),
                live_threshold: settings.liveness.required().then_some(settings.liveness.threshold),
                threads: r.threads(),
            },
            Box::new(crate::lock::NoInputs),
            Arc::new(AtomicBool::new(false)),
        );
        door.liveness = liveness;
        door.run(&mut ReplaySource::open(&frames, settings.camera.fps)?)?;
        eprintln!("{}", door.stats.summary());
        Ok(())
    })();
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}
