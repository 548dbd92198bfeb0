//! The frame loop: camera → detect → align → embed → identify → decide → actuate,
//! with the access log and the event stream beside it.

use crate::events::now_ms;
use crate::lock::{DoorInputs, SharedRelay};
use crate::policy::{Decision, Observation, Policy};
use crate::recognise::{recognise, Capture, LiveCheck};
use crate::shared::{LoopCommand, Shared};
use crate::source::{FrameSource, SourceError};
use facegate_arena::FrameScope;
use facegate_face::liveness::Liveness;
use facegate_face::Pipeline;
use facegate_store::{Event, EventKind};
use image::RgbImage;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Settings of the loop itself.
pub struct LoopSettings {
    /// Per-frame match threshold.
    pub threshold: f32,
    /// How long an unlock lasts.
    pub pulse: Duration,
    /// Stop when the source ends (replays) instead of waiting for more.
    pub until_end: bool,
    /// Door open longer than this raises a door-held event.
    pub door_held: Duration,
    /// A grant needs the agreeing frames' mean live score at or above this;
    /// `None`: liveness off (`[liveness] mode = "off"`).
    pub live_threshold: Option<f32>,
    /// Cores the frame path may use (`recognition.threads`, resolved): at 2 or
    /// more, liveness is scored beside the embedding instead of after it.
    pub threads: usize,
}

/// Per-stage timing totals, for `--stats`.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Frames read.
    pub frames: u64,
    /// Frames with a usable face.
    pub faces: u64,
    /// Seconds spent per stage: detect, align, embed, identify, liveness.
    pub stage_seconds: [f64; 5],
    /// Wall time of the loop.
    pub wall_seconds: f64,
    /// Longest wait for the gallery (while the provisioning server swapped in a new one), seconds.
    pub max_gallery_wait: f64,
    /// Calls into the system allocator made by frames after the first
    /// [`WARM_UP_FRAMES`] (the frame path draws on the frame arena instead).
    pub system_allocations_after_warm_up: u64,
}

/// Frames that may still fill the frame arena's free lists.
pub const WARM_UP_FRAMES: u64 = 5;

impl Stats {
    /// Human-readable summary.
    pub fn summary(&self) -> String {
        let per = |s: f64, n: u64| if n == 0 { 0.0 } else { 1000.0 * s / n as f64 };
        format!(
            "{} frames ({} with a face) in {:.1} s = {:.1} fps; per frame: detect {:.1} ms; per face: align {:.2} ms, embed {:.1} ms, identify {:.3} ms, liveness {:.1} ms; longest gallery wait {:.3} ms; system allocations after warm-up {} (frame arena {:.1} MB)",
            self.frames,
            self.faces,
            self.wall_seconds,
            self.frames as f64 / self.wall_seconds.max(1e-9),
            per(self.stage_seconds[0], self.frames),
            per(self.stage_seconds[1], self.faces),
            per(self.stage_seconds[2], self.faces),
            per(self.stage_seconds[3], self.faces),
            per(self.stage_seconds[4], self.faces),
            self.max_gallery_wait * 1000.0,
            self.system_allocations_after_warm_up,
            facegate_arena::arena_bytes() as f64 / (1 << 20) as f64,
        )
    }
}

/// The running door unit.
pub struct DoorLoop<'a> {
    /// Face models and settings.
    pub pipeline: &'a Pipeline,
    /// Gallery, log and event stream (shared with the provisioning server).
    pub shared: &'a Shared,
    /// The relay.
    pub relay: SharedRelay,
    /// Commands from the provisioning server.
    pub commands: Option<Receiver<LoopCommand>>,
    /// Decision policy.
    pub policy: Policy,
    /// Loop settings.
    pub settings: LoopSettings,
    /// Exit button and door contact.
    pub inputs: Box<dyn DoorInputs + 'a>,
    /// Set by SIGINT/SIGTERM.
    pub stop: Arc<AtomicBool>,
    /// Timings.
    pub stats: Stats,
    /// systemd watchdog keep-alives.
    pub notifier: Option<crate::notify::Notifier>,
    /// The liveness ensemble; required whenever `settings.live_threshold` is set
    /// (without it every recognised face then counts as not live).
    pub liveness: Option<&'a Liveness>,
    capture: Option<Capture>,
    /// Two workers for the embedding and the live score of a face at once
    /// (`settings.threads` ≥ 2; none when the threads cannot be started).
    pool: Option<rayon::ThreadPool>,
}

impl<'a> DoorLoop<'a> {
    /// A loop with no provisioning commands and fresh statistics.
    pub fn new(
        pipeline: &'a Pipeline,
        shared: &'a Shared,
        relay: SharedRelay,
        policy: Policy,
        settings: LoopSettings,
        inputs: Box<dyn DoorInputs + 'a>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        let mut policy = policy;
        policy.live_threshold = settings.live_threshold;
        let pool = (settings.threads > 1)
            .then(|| rayon::ThreadPoolBuilder::new().num_threads(2).thread_name(|i| format!("facegate-frame-{i}")).build())
            .and_then(|built| {
                built.map_err(|e| tracing::warn!("one core for the frame path: cannot start its threads: {e}")).ok()
            });
        DoorLoop {
            pipeline,
            shared,
            relay,
            commands: None,
            liveness: None,
            policy,
            settings,
            inputs,
            stop,
            stats: Stats::default(),
            notifier: None,
            capture: None,
            pool,
        }
    }

    fn emit(&mut self, event: &Event) {
        self.shared.events.emit(event);
    }

    /// Drives the relay and reports the transition; an error leaves the door locked.
    fn set_relay(&mut self, unlocked: bool) -> anyhow::Result<()> {
        let result = self.relay.lock().unwrap_or_else(|p| p.into_inner()).set_unlocked(unlocked);
        if result.is_ok() {
            self.shared.events.relay(unlocked);
        }
        result
    }

    fn error_event(&mut self, why: &str) {
        tracing::error!("{why}");
        let mut e = Event::new(EventKind::Error, now_ms());
        e.name = None;
        self.emit(&e);
    }

    fn observe(&mut self, frame: &RgbImage) -> Observation {
        let live = match (self.settings.live_threshold, self.liveness) {
            (Some(threshold), Some(model)) => Some(LiveCheck { model, threshold, pool: self.pool.as_ref() }),
            _ => None,
        };
        let result =
            recognise(self.pipeline, frame, &self.shared.gallery, self.settings.threshold, live.as_ref(), self.capture.as_mut());
        // Required but not loaded: fail closed, nobody recognised is live.
        let result = result.map(|mut r| {
            if let (Some(_), None, Observation::Known { live, .. }) =
                (self.settings.live_threshold, self.liveness, &mut r.observation)
            {
                *live = 0.0;
            }
            r
        });
        match result {
            Ok(r) => {
                let t = r.timings;
                for (total, stage) in
                    self.stats.stage_seconds.iter_mut().zip([t.detect, t.align, t.embed, t.identify, t.liveness])
                {
                    *total += stage;
                }
                self.stats.max_gallery_wait = self.stats.max_gallery_wait.max(t.gallery_wait);
                if r.observation != Observation::NoFace {
                    self.stats.faces += 1;
                }
                tracing::debug!(detect_ms = t.detect * 1e3, align_ms = t.align * 1e3, embed_ms = t.embed * 1e3, "frame");
                r.observation
            }
            Err(e) => {
                self.error_event(&format!("embedding failed: {e}"));
                Observation::NoFace
            }
        }
    }

    fn act(&mut self, decision: Decision, unlock_until: &mut Option<Instant>) -> anyhow::Result<()> {
        match decision {
            Decision::Grant { person, distance, frames } => {
                let mut e = Event::new(EventKind::Granted, now_ms());
                e.person = Some(person);
                e.name = self.shared.gallery().by_id(person).map(|p| p.name.clone());
                e.distance = Some(distance);
                e.frames = frames;
                self.emit(&e);
                if unlock_until.is_none() {
                    self.set_relay(true)?;
                }
                *unlock_until = Some(Instant::now() + self.settings.pulse);
            }
            Decision::Spoof { person, distance, live, frames } => {
                let mut e = Event::new(EventKind::Spoof, now_ms());
                e.person = Some(person);
                e.name = self.shared.gallery().by_id(person).map(|p| p.name.clone());
                (e.distance, e.live, e.frames) = (Some(distance), Some(live), frames);
                self.emit(&e);
            }
            Decision::Stranger { nearest, frames } => {
                let mut e = Event::new(EventKind::Unknown, now_ms());
                e.distance = nearest.is_finite().then_some(nearest);
                e.frames = frames;
                self.emit(&e);
            }
        }
        Ok(())
    }

    /// Applies what the provisioning server asked for; also ends finished captures.
    fn take_commands(&mut self, unlock_until: &mut Option<Instant>) -> anyhow::Result<()> {
        while let Some(command) = self.commands.as_ref().and_then(|c| c.try_recv().ok()) {
            match command {
                LoopCommand::Unlock { by } => {
                    let mut e = Event::new(EventKind::RemoteUnlock, now_ms());
                    e.name = Some(by);
                    self.emit(&e);
                    if unlock_until.is_none() {
                        self.set_relay(true)?;
                    }
                    *unlock_until = Some(Instant::now() + self.settings.pulse);
                }
                LoopCommand::Capture { frames, deadline, reply } => {
                    self.capture = Some(Capture::new(frames, deadline, reply));
                }
                LoopCommand::Settings(config) => {
                    let r = &config.recognition;
                    self.settings.threshold = r.threshold;
                    self.settings.pulse = Duration::from_millis(config.lock.pulse_ms);
                    self.settings.door_held = Duration::from_secs(config.lock.door_held_s);
                    self.policy = Policy::new(r.frames_agree, r.frames_window, r.cooldown_ms);
                    self.settings.live_threshold = config.liveness.required().then_some(config.liveness.threshold);
                    self.policy.live_threshold = self.settings.live_threshold;
                    tracing::info!("settings changed");
                }
            }
        }
        if self.capture.as_ref().is_some_and(|c| c.finished(Instant::now())) {
            if let Some(c) = self.capture.take() {
                c.finish();
            }
        }
        Ok(())
    }

    /// Runs until the source ends (with `until_end`) or a stop signal; the relay is
    /// released at start, on every error path and at the end.
    pub fn run(&mut self, source: &mut dyn FrameSource) -> anyhow::Result<()> {
        self.set_relay(false)?;
        let start = Instant::now();
        let mut unlock_until: Option<Instant> = None;
        let mut backoff = Duration::from_millis(200);
        let (mut exit_was_pressed, mut door_opened_at, mut held_reported) = (false, None::<Instant>, false);
        // Test hook: prove that a panic in the pipeline releases the relay.
        let panic_after: Option<u64> = std::env::var("FACEGATE_INJECT_PANIC_AFTER_FRAMES").ok().and_then(|v| v.parse().ok());
        let result = loop {
            if self.stop.load(Ordering::Relaxed) {
                break Ok(());
            }
            // Only a loop that goes round keeps systemd's watchdog quiet.
            if let Some(n) = self.notifier.as_mut() {
                n.watchdog();
            }
            // Exit button: unlock on the press (not while held), logged.
            let exit = self.inputs.exit_pressed();
            if exit && !exit_was_pressed {
                self.emit(&Event::new(EventKind::Exit, now_ms()));
                if unlock_until.is_none() {
                    if let Err(e) = self.set_relay(true) {
                        break Err(e);
                    }
                }
                unlock_until = Some(Instant::now() + self.settings.pulse);
            }
            exit_was_pressed = exit;
            // Door contact: one door-held event per opening that lasts too long.
            match self.inputs.door_open() {
                Some(true) => {
                    let since = *door_opened_at.get_or_insert_with(Instant::now);
                    if !held_reported && since.elapsed() >= self.settings.door_held {
                        held_reported = true;
                        self.emit(&Event::new(EventKind::DoorHeld, now_ms()));
                    }
                }
                _ => (door_opened_at, held_reported) = (None, false),
            }
            if let Err(e) = self.take_commands(&mut unlock_until) {
                break Err(e);
            }
            if unlock_until.is_some_and(|t| Instant::now() >= t) {
                unlock_until = None;
                if let Err(e) = self.set_relay(false) {
                    break Err(e);
                }
            }
            // Everything a frame allocates comes from the frame arena; counted once it is warm.
            let _frame = FrameScope::enter();
            let system_before = facegate_arena::system_allocations();
            let warm = self.stats.frames >= WARM_UP_FRAMES;
            match source.next_frame() {
                None if self.settings.until_end => break Ok(()),
                None => std::thread::sleep(Duration::from_millis(50)),
                Some(Err(SourceError::BadFrame { index, why })) => {
                    self.stats.frames += 1;
                    self.shared.frames.fetch_add(1, Ordering::Relaxed);
                    self.error_event(&format!("unusable frame {index}: {why}"));
                }
                Some(Err(SourceError::Camera(why))) => {
                    // Door stays locked while the camera is away; retry with back-off.
                    if unlock_until.take().is_some() {
                        let _ = self.set_relay(false);
                    }
                    self.error_event(&format!("camera unavailable, retrying in {} ms: {why}", backoff.as_millis()));
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                Some(Ok(frame)) => {
                    backoff = Duration::from_millis(200);
                    self.stats.frames += 1;
                    self.shared.frames.fetch_add(1, Ordering::Relaxed);
                    if panic_after.is_some_and(|n| self.stats.frames > n) {
                        panic!("injected panic after {} frames (FACEGATE_INJECT_PANIC_AFTER_FRAMES)", self.stats.frames - 1);
                    }
                    let obs = self.observe(&frame);
                    if let Some(decision) = self.policy.observe(obs, now_ms()) {
                        if let Err(e) = self.act(decision, &mut unlock_until) {
                            break Err(e);
                        }
                    }
                }
            }
            if warm {
                self.stats.system_allocations_after_warm_up += facegate_arena::system_allocations() - system_before;
            }
        };
        self.stats.wall_seconds = start.elapsed().as_secs_f64();
        // A capture still waiting gets its answer now, not at its deadline.
        if let Some(c) = self.capture.take() {
            c.finish();
        }
        // Fail secure: whatever ended the loop, the door is locked.
        let released = self.set_relay(false);
        result.and(released)
    }
}
