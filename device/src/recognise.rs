//! One frame → what it shows: detect → pick the face → align → embed →
//! identify (open set). Also where enrolment captures take their frames, held
//! to the same enrolment policy as photos.

use crate::policy::Observation;
use crate::shared::{CaptureResult, CaptureShort};
use facegate_face::cores::Cores;
use facegate_face::detect::Detection;
use facegate_face::enrol::{self, EnrolProblem, Purpose};
use facegate_face::liveness::Liveness;
use facegate_face::matching::Identification;
use facegate_face::{Embedding, FaceError, Pipeline};
use facegate_provision::GalleryHome;
use image::RgbImage;
use std::sync::mpsc::Sender;
use std::time::Instant;

/// The face to act on: the largest that is big enough and not cut by the frame edge.
pub fn pick_face(dets: &[Detection], width: u32, height: u32, min_face: u32) -> Option<Detection> {
    dets.iter()
        .filter(|d| d.rect.width() >= min_face as i64)
        .filter(|d| d.rect.left >= 0 && d.rect.top >= 0 && d.rect.right < width as i64 && d.rect.bottom < height as i64)
        .max_by_key(|d| d.rect.area())
        .copied()
}

/// An enrolment capture in progress.
pub struct Capture {
    /// Usable frames wanted.
    pub frames: usize,
    /// Give up then.
    pub deadline: Instant,
    /// Where the result goes.
    pub reply: Sender<CaptureResult>,
    /// Templates of the usable frames so far.
    pub got: Vec<Embedding>,
    /// Why the last refused frame was refused.
    pub last_problem: Option<EnrolProblem>,
}

impl Capture {
    /// A capture of `frames` usable frames until `deadline`.
    pub fn new(frames: usize, deadline: Instant, reply: Sender<CaptureResult>) -> Self {
        Capture { frames, deadline, reply, got: Vec::new(), last_problem: None }
    }

    /// Has it got what it wanted, or run out of time?
    pub fn finished(&self, now: Instant) -> bool {
        self.got.len() >= self.frames || now >= self.deadline
    }

    /// Sends the templates, or why there are too few.
    pub fn finish(self) {
        let result = if self.got.len() >= self.frames {
            Ok(self.got)
        } else {
            Err(CaptureShort { got: self.got.len(), wanted: self.frames, last_problem: self.last_problem })
        };
        let _ = self.reply.send(result);
    }
}

/// Seconds per stage of one frame.
#[derive(Debug, Default, Clone, Copy)]
pub struct Timings {
    /// Detection.
    pub detect: f64,
    /// Landmarks and chip.
    pub align: f64,
    /// The network.
    pub embed: f64,
    /// The gallery search.
    pub identify: f64,
    /// Waiting for the gallery's read lock.
    pub gallery_wait: f64,
    /// The liveness ensemble.
    pub liveness: f64,
}

/// What one frame showed, and how long each stage took (stages not reached are 0).
pub struct Recognised {
    /// For the decision policy.
    pub observation: Observation,
    /// Stage times.
    pub timings: Timings,
}

/// Liveness as the door runs it: the ensemble and the live threshold.
pub struct LiveCheck<'a> {
    /// The networks.
    pub model: &'a Liveness,
    /// Live at or above this.
    pub threshold: f32,
    /// With a pool (`recognition.threads` ≥ 2, one frame at a time), every
    /// face is scored on one of its workers while this thread aligns and
    /// embeds it (the score is then ready whether or not the face is
    /// recognised); without, only a recognised face is scored, after
    /// identification.
    pub pool: Option<&'a rayon::ThreadPool>,
}

/// The workers of a door with `threads` cores (at least two): `frames`, two
/// workers that recognise two frames at once or score liveness beside the
/// embedding, and `split`, the workers one frame's detector and networks
/// split their work over. Each worker stays in the frame arena.
pub fn frame_workers(threads: usize) -> Result<(rayon::ThreadPool, Cores), rayon::ThreadPoolBuildError> {
    let in_arena = |_| std::mem::forget(facegate_arena::FrameScope::enter());
    let frames = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .thread_name(|i| format!("facegate-frame-{i}"))
        .start_handler(in_arena)
        .build()?;
    Ok((frames, Cores::with_start(threads.max(2), "facegate-split", in_arena)?))
}

/// Runs a stage split over `cores` when the frame has them (see [`Cores::split`]).
fn on_cores<R>(cores: Option<&Cores>, f: impl FnOnce() -> R) -> R {
    match cores {
        Some(c) => c.split(f),
        None => f(),
    }
}

/// The live score of the face at `rect`; an error scores 0 (it denies).
fn live_score(model: &Liveness, frame: &RgbImage, rect: facegate_face::Rect) -> f32 {
    model.score(frame, rect).unwrap_or_else(|e| {
        tracing::error!("liveness failed, the face counts as not live: {e}");
        0.0
    })
}

/// Recognises the face in `frame` against the gallery at `threshold`; with
/// `live`, a recognised face (and every capture frame) also gets a live score;
/// with `capture`, a frame whose face passes the enrolment policy (live
/// included) also gives it a template. A liveness error scores 0: it denies.
/// With `cores`, the detector (and the embedding, when no live score runs
/// beside it) split their work over its workers (this thread must then be a
/// plain thread: see [`Cores::split`]).
pub fn recognise(
    pipeline: &Pipeline,
    frame: &RgbImage,
    gallery: &GalleryHome,
    threshold: f32,
    live: Option<&LiveCheck>,
    capture: Option<&mut Capture>,
    cores: Option<&Cores>,
) -> Result<Recognised, FaceError> {
    let mut timings = Timings::default();
    let t0 = Instant::now();
    let dets = on_cores(cores, || pipeline.detect(frame));
    let t1 = Instant::now();
    timings.detect = (t1 - t0).as_secs_f64();
    let picked = pick_face(&dets, frame.width(), frame.height(), pipeline.config.min_face);
    // An enrolment frame must pass the same checks as an enrolment photo, on the face the door acts on.
    let enrol_pick =
        capture.as_ref().map(|_| match (enrol::pick_one_face(&dets, frame.width(), frame.height(), Purpose::Enrol), picked) {
            (Ok(d), Some(p)) if d == p => Ok(()),
            (Err(problem), _) => Err(problem),
            (Ok(d), _) => Err(EnrolProblem::TooSmall(d.rect.width())),
        });
    let Some(det) = picked else {
        if let (Some(c), Some(Err(problem))) = (capture, enrol_pick) {
            c.last_problem = Some(problem);
        }
        return Ok(Recognised { observation: Observation::NoFace, timings });
    };
    // Aligns and embeds the face; the time the alignment took.
    let align_and_embed = || {
        let t = Instant::now();
        let face = pipeline.align(frame, det);
        let aligned = t.elapsed().as_secs_f64();
        let embedding = pipeline.embed(&face);
        (face, aligned, embedding)
    };
    // With a pool, the live score (which needs only the box) runs on one of
    // its workers while this thread aligns and embeds the face (the worker
    // kept warm across frames and inside the frame arena, so the frame path
    // stays without system allocations). The embedding then runs whole: split
    // as well, its products waited for workers the live score descheduled
    // (docs/benchmarks.md, "Cores").
    let ((face, aligned, embedding), early_live) = match live {
        Some(LiveCheck { model, pool: Some(pool), .. }) => {
            let mut scored = None;
            let embedded = pool.in_place_scope(|scope| {
                scope.spawn(|_| {
                    let t = Instant::now();
                    scored = Some((live_score(model, frame, det.rect), t.elapsed().as_secs_f64()));
                });
                align_and_embed()
            });
            (embedded, scored)
        }
        _ => (on_cores(cores, align_and_embed), None),
    };
    let embedding = embedding?;
    let t3 = Instant::now();
    // In the trained metric when one is configured (the probe mapped like the templates).
    let probe = gallery.map_probe(&embedding);
    let gallery = gallery.matching();
    let t4 = Instant::now();
    let id = gallery.identify(&probe, threshold);
    let t5 = Instant::now();
    // Liveness only where it can matter: a recognised face, or a capture frame.
    let needs_live = matches!(id, Identification::Known { .. }) || capture.is_some();
    let live_score = match (live, early_live) {
        (Some(_), Some((score, seconds))) => {
            timings.liveness = seconds;
            needs_live.then_some(score)
        }
        // Whole on this worker: its small products cost less than handing them out.
        (Some(l), None) if needs_live => Some(live_score(l.model, frame, det.rect)),
        _ => None,
    };
    let t6 = Instant::now();
    if let Some(c) = capture {
        let not_live = match (live, live_score) {
            (Some(l), Some(s)) if !facegate_face::liveness::is_live(s, l.threshold) => Some(EnrolProblem::NotLive(s)),
            _ => None,
        };
        let checked = enrol_pick
            .unwrap_or(Ok(()))
            .and_then(|()| enrol::check_sharpness(&face.chip, pipeline.embedder.network(), Purpose::Enrol))
            .and_then(|_| not_live.map_or(Ok(()), Err));
        match checked {
            Ok(()) => c.got.push(embedding),
            Err(problem) => c.last_problem = Some(problem),
        }
    }
    timings.align = aligned;
    timings.embed = (t3 - t1).as_secs_f64() - aligned;
    timings.gallery_wait = (t4 - t3).as_secs_f64();
    timings.identify = (t5 - t4).as_secs_f64();
    if early_live.is_none() {
        timings.liveness = (t6 - t5).as_secs_f64();
    }
    let observation = match id {
        Identification::Known { index, distance, .. } => {
            Observation::Known { person: gallery.people()[index].id, distance, live: live_score.unwrap_or(1.0) }
        }
        Identification::Unknown { nearest } => Observation::Stranger { nearest },
    };
    Ok(Recognised { observation, timings })
}

#[cfg(test)]
mod tests {
    use super::*;
    use facegate_face::Rect;

    #[test]
    fn the_largest_whole_face_is_picked() {
        let d = |l, t, r, b| Detection { rect: Rect::new(l, t, r, b), score: 1.0, filter: 0, points: None };
        let dets = [d(0, 0, 99, 99), d(200, 100, 399, 299), d(-10, 50, 300, 300), d(500, 10, 540, 50)];
        assert_eq!(pick_face(&dets, 640, 480, 80), Some(dets[1]), "the bigger one is cut by the edge");
        assert_eq!(pick_face(&dets[3..], 640, 480, 80), None, "too small");
    }
}
