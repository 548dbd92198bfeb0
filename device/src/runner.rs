//! The frame loop: camera → detect → align → embed → identify → decide → actuate,
//! with the access log and the event stream beside it.

use crate::events::now_ms;
use crate::lock::{DoorInputs, SharedRelay};
use crate::policy::{Decision, Observation, Policy};
use crate::recognise::{frame_workers, recognise, Capture, LiveCheck, Recognised};
use crate::shared::{LoopCommand, Shared};
use crate::source::{FrameSource, SourceError};
use facegate_arena::FrameScope;
use facegate_face::cores::Cores;
use facegate_face::liveness::Liveness;
use facegate_face::{FaceError, Pipeline};
use facegate_site::Denial;
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
    /// The longest turn of the loop for one frame after warm-up, from the
    /// frame's arrival to asking for the next (the wait for the camera left
    /// out), seconds: what a stall on the gallery, the log or the disk would show.
    pub longest_turn: f64,
    /// Seconds of all those turns, and how many (for the mean).
    pub turn_seconds: f64,
    /// Turns counted.
    pub turns: u64,
}

/// A frame's recognition as a worker finished it: the result, or the worker's panic.
type Finished = std::thread::Result<Result<Recognised, FaceError>>;

/// Frames being recognised on the pool, oldest first (at most two: one per worker).
struct InFlight {
    /// Sequence numbers in the order the frames were read.
    order: std::collections::VecDeque<u64>,
    /// Results that arrived before an older frame's.
    early: Vec<(u64, Finished)>,
    results: std::sync::mpsc::Receiver<(u64, Finished)>,
    sender: std::sync::mpsc::SyncSender<(u64, Finished)>,
    next: u64,
}

impl InFlight {
    fn new() -> Self {
        let (sender, results) = std::sync::mpsc::sync_channel(PIPELINE_DEPTH);
        InFlight {
            order: std::collections::VecDeque::with_capacity(PIPELINE_DEPTH),
            early: Vec::with_capacity(PIPELINE_DEPTH),
            results,
            sender,
            next: 0,
        }
    }

    /// The oldest frame's result, waiting for it; `None` when nothing is in flight.
    fn wait_oldest(&mut self) -> Option<Finished> {
        let oldest = self.order.pop_front()?;
        if let Some(i) = self.early.iter().position(|(seq, _)| *seq == oldest) {
            return Some(self.early.swap_remove(i).1);
        }
        loop {
            // The sender lives in `self`, so this only ends with a result.
            let (seq, result) = self.results.recv().ok()?;
            if seq == oldest {
                return Some(result);
            }
            self.early.push((seq, result));
        }
    }
}

/// Frames recognised at once when the loop pipelines (one per worker).
const PIPELINE_DEPTH: usize = 2;

/// Frames that may still fill the frame arena's free lists.
pub const WARM_UP_FRAMES: u64 = 5;

/// How long the loop waits for a frame before it goes round anyway (reads
/// the exit button, ends a pulse): the camera is read on its own thread.
pub const CAMERA_POLL: Duration = Duration::from_millis(250);

/// A camera without a frame this long is reported (once per stall).
pub const STALL_REPORTED: Duration = Duration::from_secs(2);

impl Stats {
    /// Human-readable summary.
    pub fn summary(&self) -> String {
        let per = |s: f64, n: u64| if n == 0 { 0.0 } else { 1000.0 * s / n as f64 };
        format!(
            "{} frames ({} with a face) in {:.1} s = {:.1} fps; per frame: detect {:.1} ms; per face: align {:.2} ms, embed {:.1} ms, identify {:.3} ms, liveness {:.1} ms; longest gallery wait {:.3} ms; longest turn {:.1} ms (mean {:.1} ms); system allocations after warm-up {} (frame arena {:.1} MB)",
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
            self.longest_turn * 1000.0,
            per(self.turn_seconds, self.turns),
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
    /// Two workers for two frames at once, or for the embedding and the live
    /// score of a face at once (`settings.threads` ≥ 2; none when the threads
    /// cannot be started).
    pool: Option<rayon::ThreadPool>,
    /// The workers a frame recognised on the loop's own thread (a capture's)
    /// splits its detector (and its embedding, when no live score runs beside it) over.
    cores: Option<Cores>,
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
        let (pool, cores) = (settings.threads > 1)
            .then(|| frame_workers(settings.threads))
            .and_then(|built| {
                built.map_err(|e| tracing::warn!("one core for the frame path: cannot start its threads: {e}")).ok()
            })
            .unzip();
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
            cores,
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

    /// Recognises `frame` on this (the loop's) thread, with liveness beside
    /// the embedding on `pool` and the detector split over the loop's cores.
    fn observe(&mut self, frame: &RgbImage, pool: Option<&rayon::ThreadPool>) -> Observation {
        let live = match (self.settings.live_threshold, self.liveness) {
            (Some(threshold), Some(model)) => Some(LiveCheck { model, threshold, pool }),
            _ => None,
        };
        let (gallery, threshold, cores) = (&self.shared.gallery, self.settings.threshold, self.cores.as_ref());
        let result = recognise(self.pipeline, frame, gallery, threshold, live.as_ref(), self.capture.as_mut(), cores);
        self.record(result)
    }

    /// Statistics of a recognised frame, and its observation for the policy.
    fn record(&mut self, result: Result<Recognised, FaceError>) -> Observation {
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

    /// Starts recognising `frame` on a worker (it owns the frame). Both workers
    /// are busy with frames here, so liveness is scored only where it matters
    /// (a recognised face), after identification: scoring every face beside
    /// the embedding would cost each stranger's frame the whole ensemble.
    fn start<'s>(&self, scope: &rayon::Scope<'s>, frame: RgbImage, flight: &mut InFlight)
    where
        'a: 's,
    {
        let (pipeline, shared, threshold) = (self.pipeline, self.shared, self.settings.threshold);
        let live = self.settings.live_threshold.zip(self.liveness);
        let seq = flight.next;
        flight.next += 1;
        flight.order.push_back(seq);
        let sender = flight.sender.clone();
        // The frame workers stay in the frame arena (`frame_workers`).
        scope.spawn(move |_| {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                // On a worker nothing may be split (see `Cores::split`): one core per frame.
                let live = live.map(|(threshold, model)| LiveCheck { model, threshold, pool: None });
                recognise(pipeline, &frame, &shared.gallery, threshold, live.as_ref(), None, None)
            }));
            // The loop waits for every frame it started; it only stops listening when it unwinds.
            let _ = sender.send((seq, result));
        });
    }

    /// Waits for the oldest frame in flight and feeds its observation to the policy.
    fn finish_oldest(&mut self, flight: &mut InFlight, unlock_until: &mut Option<Instant>) -> anyhow::Result<()> {
        let Some(result) = flight.wait_oldest() else { return Ok(()) };
        let result = match result {
            Ok(r) => r,
            // The worker's panic becomes the loop's: the panic hook locks the door.
            Err(panic) => std::panic::resume_unwind(panic),
        };
        let obs = self.record(result);
        if let Some(decision) = self.policy.observe(obs, now_ms()) {
            self.act(decision, unlock_until)?;
        }
        Ok(())
    }

    fn act(&mut self, decision: Decision, unlock_until: &mut Option<Instant>) -> anyhow::Result<()> {
        match decision {
            Decision::Grant { person, distance, frames } => {
                let now = now_ms();
                let name = self.shared.gallery().by_id(person).map(|p| p.name.clone());
                // Recognised (and live); the site's rules have the last word.
                let verdict = self.shared.site().decide(name.as_deref().unwrap_or_default(), now.div_euclid(1000));
                let kind = match verdict {
                    Ok(()) => EventKind::Granted,
                    Err(Denial::Group) => EventKind::DeniedGroup,
                    Err(Denial::Schedule) => EventKind::DeniedSchedule,
                    Err(Denial::Expired) => EventKind::DeniedExpired,
                };
                let mut e = Event::new(kind, now);
                (e.person, e.name, e.distance, e.frames) = (Some(person), name, Some(distance), frames);
                self.emit(&e);
                if verdict.is_err() {
                    return Ok(());
                }
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
                    self.settings.threshold = r.threshold();
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
    ///
    /// With the pool, frames are recognised two at a time, one per worker
    /// (each still with liveness beside its embedding when a worker is free),
    /// and their observations reach the policy in the order they were read.
    pub fn run(&mut self, source: &mut dyn FrameSource) -> anyhow::Result<()> {
        let pool = self.pool.take();
        let result = match &pool {
            Some(p) => p.in_place_scope(|scope| self.run_frames(source, Some((scope, p)))),
            None => self.run_frames(source, None),
        };
        self.pool = pool;
        result
    }

    fn run_frames<'s>(
        &mut self,
        source: &mut dyn FrameSource,
        pipelined: Option<(&rayon::Scope<'s>, &'s rayon::ThreadPool)>,
    ) -> anyhow::Result<()>
    where
        'a: 's,
    {
        let mut flight = InFlight::new();
        self.set_relay(false)?;
        let start = Instant::now();
        let mut unlock_until: Option<Instant> = None;
        let mut backoff = Duration::from_millis(200);
        let (mut camera_retry_at, mut stall_reported) = (None::<Instant>, false);
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
            if camera_retry_at.is_some_and(|t| Instant::now() < t) {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            camera_retry_at = None;
            // Everything a frame allocates comes from the frame arena; counted once it is warm.
            let _frame = FrameScope::enter();
            let system_before = facegate_arena::system_allocations();
            let warm = self.stats.frames >= WARM_UP_FRAMES;
            let mut turn: Option<Instant> = None;
            match source.next_frame() {
                None if self.settings.until_end => break Ok(()),
                None if !flight.order.is_empty() => {
                    if let Err(e) = self.finish_oldest(&mut flight, &mut unlock_until) {
                        break Err(e);
                    }
                }
                None => std::thread::sleep(Duration::from_millis(50)),
                Some(Err(SourceError::BadFrame { index, why })) => {
                    self.stats.frames += 1;
                    self.shared.frames.fetch_add(1, Ordering::Relaxed);
                    self.error_event(&format!("unusable frame {index}: {why}"));
                }
                Some(Err(SourceError::Camera(why) | SourceError::Open(why))) => {
                    // Door stays locked while the camera is away; retry with back-off,
                    // the loop going round meanwhile (exit button, pulses, commands).
                    if unlock_until.take().is_some() {
                        let _ = self.set_relay(false);
                    }
                    self.error_event(&format!("camera unavailable, retrying in {} ms: {why}", backoff.as_millis()));
                    camera_retry_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                Some(Err(SourceError::Stalled { for_ms })) => {
                    // Nothing to recognise; the loop went round. Said once per stall.
                    if for_ms >= STALL_REPORTED.as_millis() as u64 && !stall_reported {
                        stall_reported = true;
                        self.error_event(&format!(
                            "camera stalled: no frame for {for_ms} ms; nobody is let in until frames come"
                        ));
                    }
                }
                Some(Ok(frame)) => {
                    turn = warm.then(Instant::now);
                    backoff = Duration::from_millis(200);
                    stall_reported = false;
                    self.stats.frames += 1;
                    self.shared.frames.fetch_add(1, Ordering::Relaxed);
                    if panic_after.is_some_and(|n| self.stats.frames > n) {
                        panic!("injected panic after {} frames (FACEGATE_INJECT_PANIC_AFTER_FRAMES)", self.stats.frames - 1);
                    }
                    match pipelined {
                        // A capture needs its frames one by one, in order, on this thread.
                        Some((scope, _)) if self.capture.is_none() => {
                            self.start(scope, frame, &mut flight);
                            if flight.order.len() >= PIPELINE_DEPTH {
                                if let Err(e) = self.finish_oldest(&mut flight, &mut unlock_until) {
                                    break Err(e);
                                }
                            }
                        }
                        _ => {
                            let mut failed = None;
                            while failed.is_none() && !flight.order.is_empty() {
                                failed = self.finish_oldest(&mut flight, &mut unlock_until).err();
                            }
                            if let Some(e) = failed {
                                break Err(e);
                            }
                            let obs = self.observe(&frame, pipelined.map(|(_, p)| p));
                            if let Some(decision) = self.policy.observe(obs, now_ms()) {
                                if let Err(e) = self.act(decision, &mut unlock_until) {
                                    break Err(e);
                                }
                            }
                        }
                    }
                }
            }
            if warm {
                self.stats.system_allocations_after_warm_up += facegate_arena::system_allocations() - system_before;
            }
            if let Some(started) = turn.take() {
                let seconds = started.elapsed().as_secs_f64();
                self.stats.longest_turn = self.stats.longest_turn.max(seconds);
                self.stats.turn_seconds += seconds;
                self.stats.turns += 1;
            }
        };
        // Frames still in flight are decided before the loop ends.
        let mut result = result;
        while !flight.order.is_empty() {
            let finished = self.finish_oldest(&mut flight, &mut unlock_until);
            result = result.and(finished);
        }
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
