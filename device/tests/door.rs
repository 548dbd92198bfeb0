//! Door scenarios in process: the real frame loop over a replay source, a
//! simulated relay and scripted door inputs. (tests/replay.rs keeps one
//! run of the real `device` program end to end.)

use facegate_device::events::Events;
use facegate_device::lock::{DoorInputs, NoInputs, SimRelay};
use facegate_device::policy::Policy;
use facegate_device::runner::{DoorLoop, LoopSettings, CAMERA_POLL, STALL_REPORTED};
use facegate_device::shared::{CaptureResult, LoopCommand, Shared};
use facegate_device::source::{ReplaySource, Watched};
use facegate_face::enrol::EnrolProblem;
use facegate_face::{Pipeline, PipelineConfig, Precision};
use facegate_provision::GalleryHome;
use facegate_store::{AccessLog, Event, EventKind, Gallery};
use image::RgbImage;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The loop the scenarios run: 3 of 5 frames, a minute's pulse and
/// cooldown, to the end of the replay, one thread, no liveness.
fn test_loop<'a>(pipeline: &'a Pipeline, shared: &'a Shared, sim: &SimRelay, inputs: Box<dyn DoorInputs>) -> DoorLoop<'a> {
    DoorLoop::new(
        pipeline,
        shared,
        Arc::new(Mutex::new(Box::new(sim.clone()))),
        Policy::new(3, 5, 60_000),
        LoopSettings {
            threshold: pipeline.embedder.network().door_threshold(),
            pulse: Duration::from_secs(60),
            until_end: true,
            door_held: Duration::ZERO,
            live_threshold: None,
            threads: 1,
        },
        inputs,
        Arc::new(AtomicBool::new(false)),
    )
}

/// What a run of the loop left: the logged events and the relay's states.
struct Outcome {
    events: Vec<Event>,
    relay: Vec<bool>,
}

fn run_door(
    pipeline: &Pipeline,
    gallery: Gallery,
    frames: &Path,
    inputs: Box<dyn DoorInputs>,
    commands: Option<Receiver<LoopCommand>>,
    dir: &Path,
) -> Outcome {
    let sim = SimRelay::default();
    let log = AccessLog::open(&dir.join("log"), 1000).unwrap();
    let home = GalleryHome::new(&dir.join("gallery.fg"), gallery);
    let shared = Shared::new(Arc::new(home), Events::new(Some(log), false).unwrap());
    let mut door = test_loop(pipeline, &shared, &sim, inputs);
    door.commands = commands;
    door.run(&mut ReplaySource::open(frames, 0).unwrap()).unwrap();
    drop(door);
    let events = shared.events.log().unwrap().events_since(0).unwrap();
    let relay = sim.transitions.lock().unwrap().iter().map(|t| t.unlocked).collect();
    Outcome { events, relay }
}

fn door_pipeline() -> Pipeline {
    Pipeline::load(&facegate_testkit::models(), Precision::Int8, PipelineConfig::door()).unwrap()
}

/// Inputs that follow a script, one step per loop iteration.
struct Scripted {
    step: usize,
    exit_at: usize,
    door_open_from: usize,
}

impl DoorInputs for Scripted {
    fn exit_pressed(&mut self) -> bool {
        self.step += 1;
        self.step == self.exit_at
    }
    fn door_open(&mut self) -> Option<bool> {
        Some(self.step >= self.door_open_from)
    }
}

#[test]
fn exit_button_unlocks_and_a_held_door_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    for i in 0..8 {
        RgbImage::new(64, 64).save(frames.join(format!("{i}.png"))).unwrap();
    }
    let pipeline = door_pipeline();
    let gallery = Gallery::new(pipeline.embedder.model_id());
    let inputs = Box::new(Scripted { step: 0, exit_at: 3, door_open_from: 5 });
    let out = run_door(&pipeline, gallery, &frames, inputs, None, dir.path());
    let kinds: Vec<EventKind> = out.events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![EventKind::Exit, EventKind::DoorHeld]);
    assert_eq!(out.relay, vec![false, true, false], "locked, exit unlock, locked when the loop ends");
}

#[test]
fn the_loop_does_not_wait_for_the_access_log() {
    let dir = tempfile::tempdir().unwrap();
    let frames = replay_dir(dir.path(), "frames", &vec![RgbImage::new(64, 64); 8]);
    let pipeline = door_pipeline();
    let sim = SimRelay::default();
    let log = AccessLog::open(&dir.path().join("log"), 1000).unwrap();
    let home = GalleryHome::new(&dir.path().join("gallery.fg"), Gallery::new(pipeline.embedder.model_id()));
    let shared = Shared::new(Arc::new(home), Events::new(Some(log), false).unwrap());
    // Holding the log is a disk whose sync does not return: the writer
    // thread cannot append. The loop must run on regardless.
    let stalled = shared.events.writer().unwrap().lock_now();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut door = test_loop(&pipeline, &shared, &sim, Box::new(Scripted { step: 0, exit_at: 3, door_open_from: 5 }));
            let result = door.run(&mut ReplaySource::open(&frames, 0).unwrap());
            done_tx.send(result.is_ok()).unwrap();
        });
        let finished = done_rx.recv_timeout(Duration::from_secs(120));
        let queued = shared.events.writer().unwrap().pending();
        assert_eq!(stalled.last_seq(), 0, "nothing reached the stalled log");
        drop(stalled);
        assert_eq!(finished, Ok(true), "the loop ran to the end while the log could not be written");
        assert_eq!(queued, 2, "its two events waited in the queue");
    });
    let kinds: Vec<EventKind> = shared.events.log().unwrap().events_since(0).unwrap().iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![EventKind::Exit, EventKind::DoorHeld], "and reached the log, in order, once it could be written");
    let relay: Vec<bool> = sim.transitions.lock().unwrap().iter().map(|t| t.unlocked).collect();
    assert_eq!(relay, vec![false, true, false]);
}

#[test]
fn a_stalled_camera_neither_holds_the_relay_open_nor_the_exit_button_unread() {
    let dir = tempfile::tempdir().unwrap();
    RgbImage::new(64, 64).save(dir.path().join("0.png")).unwrap();
    // The second frame is a FIFO nobody writes: reading it hangs, as a V4L2
    // driver that neither delivers nor fails.
    let fifo = dir.path().join("stall.png");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success(), "mkfifo");
    std::fs::write(dir.path().join("frames.txt"), "0.png\nstall.png\n").unwrap();
    let pipeline = door_pipeline();
    let sim = SimRelay::default();
    let log = AccessLog::open(&dir.path().join("log"), 1000).unwrap();
    let home = GalleryHome::new(&dir.path().join("gallery.fg"), Gallery::new(pipeline.embedder.model_id()));
    let shared = Shared::new(Arc::new(home), Events::new(Some(log), false).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let pulse = Duration::from_millis(300);
    let transitions = sim.transitions.clone();
    let mut stopped_ms = 0;
    let relay_now = || transitions.lock().unwrap().iter().map(|t| (t.time_ms, t.unlocked)).collect::<Vec<_>>();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut door = DoorLoop::new(
                &pipeline,
                &shared,
                Arc::new(Mutex::new(Box::new(sim.clone()))),
                Policy::new(3, 5, 60_000),
                LoopSettings {
                    threshold: 0.52,
                    pulse,
                    until_end: true,
                    door_held: Duration::from_secs(60),
                    live_threshold: None,
                    threads: 1,
                },
                // Pressed on the loop's third turn: while the camera hangs.
                Box::new(Scripted { step: 0, exit_at: 3, door_open_from: usize::MAX }),
                stop.clone(),
            );
            let source = ReplaySource::open(&dir.path().join("frames.txt"), 0).unwrap();
            let mut watched = Watched::start(Box::new(source), CAMERA_POLL).unwrap();
            door.run(&mut watched).unwrap();
        });
        let deadline = Instant::now() + STALL_REPORTED + Duration::from_secs(2);
        while relay_now().len() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Wait out the stall report, then let the hung read end (EOF: a bad frame, then the end).
        std::thread::sleep((deadline - Duration::from_secs(1)).saturating_duration_since(Instant::now()));
        stopped_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        drop(std::fs::OpenOptions::new().write(true).open(&fifo).unwrap());
    });
    let relay = relay_now();
    let states: Vec<bool> = relay.iter().map(|r| r.1).collect();
    assert_eq!(&states[..3], [false, true, false], "the exit button was read and its pulse ended while the camera hung");
    let held = relay[2].0 - relay[1].0;
    assert!(held < (pulse + CAMERA_POLL * 2).as_millis() as i64, "the pulse lasted {held} ms, not about {pulse:?}");
    let events = shared.events.log().unwrap().events_since(0).unwrap();
    assert_eq!(events[0].kind, EventKind::Exit);
    let errors_in_stall = events.iter().filter(|e| e.kind == EventKind::Error && e.time_ms < stopped_ms).count();
    assert_eq!(errors_in_stall, 1, "the stall is logged, once: {events:?}");
}

/// Writes `frames` as numbered PNG files into a new folder `name`.
fn replay_dir(dir: &Path, name: &str, frames: &[RgbImage]) -> std::path::PathBuf {
    let out = dir.join(name);
    std::fs::create_dir(&out).unwrap();
    for (i, f) in frames.iter().enumerate() {
        f.save(out.join(format!("{i:03}.png"))).unwrap();
    }
    out
}

fn lfw_image(data: &facegate_lfw::Dataset, person: &str, i: u32) -> RgbImage {
    let bytes = data.read(&facegate_lfw::image_path(person, i)).unwrap();
    facegate_face::decode::decode_image(&bytes, facegate_face::decode::DEFAULT_MAX_PIXELS).unwrap()
}

/// Runs the loop over `frames` with a capture of 3 frames asked for at the start.
fn capture(pipeline: &Pipeline, frames: &[RgbImage], name: &str) -> CaptureResult {
    let dir = tempfile::tempdir().unwrap();
    let replay = replay_dir(dir.path(), name, frames);
    let (tx, rx) = std::sync::mpsc::channel();
    let (reply_tx, reply_rx) = std::sync::mpsc::channel();
    tx.send(LoopCommand::Capture { frames: 3, deadline: Instant::now() + Duration::from_secs(600), reply: reply_tx }).unwrap();
    let gallery = Gallery::new(pipeline.embedder.model_id());
    run_door(pipeline, gallery, &replay, Box::new(NoInputs), Some(rx), dir.path());
    reply_rx.recv_timeout(Duration::from_secs(5)).expect("the loop answers the capture when the replay ends")
}

#[test]
fn camera_enrolment_applies_the_photo_rules() {
    let Some((data, _)) = facegate_testkit::lfw("camera enrolment checks") else { return };
    // Faces down to 40 px reach the door's recogniser, so the enrolment rules are what refuses.
    let pipeline = Pipeline::load(
        &facegate_testkit::models(),
        Precision::Int8,
        PipelineConfig { upsample: 1, min_face: 40, ..PipelineConfig::door() },
    )
    .unwrap();
    let big = |i| image::imageops::resize(&lfw_image(&data, "Colin_Powell", i), 500, 500, image::imageops::FilterType::Triangle);
    let sharp: Vec<RgbImage> = (1..=4).map(big).collect();
    let got = capture(&pipeline, &sharp, "sharp").expect("sharp, large frames of one face are captured");
    assert_eq!(got.len(), 3);

    let blurred: Vec<RgbImage> = sharp.iter().map(|f| image::imageops::blur(f, 4.0)).collect();
    let short = capture(&pipeline, &blurred, "blurred").expect_err("blurred frames are refused");
    assert_eq!(short.got, 0);
    assert!(matches!(short.last_problem, Some(EnrolProblem::Blurred(..))), "{short}");

    let small: Vec<RgbImage> = (1..=4)
        .map(|i| image::imageops::resize(&lfw_image(&data, "Colin_Powell", i), 140, 140, image::imageops::FilterType::Triangle))
        .collect();
    let short = capture(&pipeline, &small, "small").expect_err("small faces are refused");
    assert!(matches!(short.last_problem, Some(EnrolProblem::TooSmall(w)) if w < 80), "{short}");
}

#[test]
fn an_enrolled_person_is_granted_once_and_strangers_never() {
    let Some((data, _)) = facegate_testkit::lfw("the in-process door scenario") else { return };
    let dir = tempfile::tempdir().unwrap();
    let enrol = Pipeline::load(
        &facegate_testkit::models(),
        Precision::Int8,
        PipelineConfig { upsample: 1, min_face: 40, retry_threshold: Some(-0.6), ..PipelineConfig::door() },
    )
    .unwrap();
    let person = "Colin_Powell";
    let templates = (1..=3).map(|i| enrol.embed(&enrol.faces(&lfw_image(&data, person, i))[0]).unwrap()).collect();
    let mut gallery = Gallery::new(enrol.embedder.model_id());
    gallery.add_person(person, templates, enrol.embedder.model_id(), 0).unwrap();

    let pipeline = door_pipeline();
    let big = |p: &str, i| image::imageops::resize(&lfw_image(&data, p, i), 500, 500, image::imageops::FilterType::Triangle);
    let approach: Vec<RgbImage> = (10..15).map(|i| big(person, i)).collect();
    let out = run_door(
        &pipeline,
        gallery.clone(),
        &replay_dir(dir.path(), "approach", &approach),
        Box::new(NoInputs),
        None,
        dir.path(),
    );
    let granted: Vec<&Event> = out.events.iter().filter(|e| e.kind == EventKind::Granted).collect();
    assert_eq!(granted.len(), 1, "{:?}", out.events);
    assert_eq!(granted[0].name.as_deref(), Some(person));
    assert_eq!(out.relay, vec![false, true, false], "locked, one pulse, locked at the end");

    let strangers: Vec<RgbImage> = ["Tony_Blair", "Gerhard_Schroeder", "Ariel_Sharon", "Hugo_Chavez", "Jean_Chretien"]
        .iter()
        .flat_map(|p| (1..=3).map(move |i| (*p, i)))
        .map(|(p, i)| big(p, i))
        .collect();
    let sub = dir.path().join("s");
    std::fs::create_dir(&sub).unwrap();
    let out = run_door(&pipeline, gallery, &replay_dir(&sub, "strangers", &strangers), Box::new(NoInputs), None, &sub);
    assert!(out.events.iter().all(|e| e.kind != EventKind::Granted), "a stranger was let in: {:?}", out.events);
    assert!(out.events.iter().any(|e| e.kind == EventKind::Unknown), "strangers are logged");
    assert!(out.relay.iter().all(|u| !u), "never unlocked: {:?}", out.relay);
}
