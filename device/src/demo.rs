//! `device demo`: the door on LFW photos with a simulated lock, no hardware needed.

use crate::events::{now_ms, Events};
use crate::lock::{SharedRelay, SimRelay};
use crate::policy::Policy;
use crate::runner::{DoorLoop, LoopSettings};
use crate::shared::Shared;
use crate::source::ReplaySource;
use anyhow::{Context, Result};
use facegate_face::Pipeline;
use facegate_provision::GalleryHome;
use facegate_store::Gallery;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

/// Who is enrolled in the demo, and from which photos.
const PERSON: &str = "Colin_Powell";

/// Enrols one LFW person from 3 photos, then replays 5 other photos of them
/// followed by 20 strangers, printing every event as JSON.
pub fn run(pipeline: &Pipeline, lfw: &Path, threshold: f32) -> Result<()> {
    let data = facegate_lfw::Dataset::open(lfw).with_context(|| format!("opening LFW at {}", lfw.display()))?;
    let dir = std::env::temp_dir().join(format!("facegate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = (|| -> Result<()> {
        let mut templates = Vec::new();
        for i in 1..=3 {
            let img = facegate_face::decode::decode_image(
                &data.read(&facegate_lfw::image_path(PERSON, i))?,
                facegate_face::decode::DEFAULT_MAX_PIXELS,
            )?;
            let face = pipeline.faces(&img).into_iter().next().context("no face in an enrolment photo")?;
            templates.push(pipeline.embed(&face)?);
        }
        let mut gallery = Gallery::new(pipeline.embedder.model_id());
        gallery.add_person(PERSON, templates, pipeline.embedder.model_id(), now_ms() as u64 / 1000)?;
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
        let relay: SharedRelay = Arc::new(Mutex::new(Box::new(SimRelay::default())));
        // Nothing is saved: the demo's gallery only lives in memory.
        let shared = Shared::new(Arc::new(GalleryHome::new(&dir.join("gallery.fg"), gallery)), Events::new(None, true));
        let mut door = DoorLoop::new(
            pipeline,
            &shared,
            relay,
            Policy::new(3, 5, 2000),
            LoopSettings {
                threshold,
                pulse: std::time::Duration::from_millis(1500),
                until_end: true,
                door_held: std::time::Duration::from_secs(30),
            },
            Box::new(crate::lock::NoInputs),
            Arc::new(AtomicBool::new(false)),
        );
        door.run(&mut ReplaySource::open(&frames, 5)?)?;
        eprintln!("{}", door.stats.summary());
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
