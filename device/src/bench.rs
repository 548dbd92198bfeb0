//! `device bench`: figures a user can measure on their own unit (a Pi 4, say).

use crate::recognise::{frame_workers, pick_face, recognise, LiveCheck};
use crate::source::FrameSource;
use anyhow::{bail, Context, Result};
use facegate_arena::FrameScope;
use facegate_core::stats::{in_turns, median};
use facegate_face::cores::Cores;
use facegate_face::liveness::Liveness;
use facegate_face::{Embedding, Pipeline};
use facegate_provision::GalleryHome;
use facegate_store::Gallery;
use std::time::Instant;

/// A memory figure of this process from /proc/self/status (`VmHWM`: peak, `VmRSS`: now), in MB.
fn status_mb(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// A gallery of `people` × `per_person` pseudo-random templates (norm ≈ 1.4 like real ones).
pub fn synthetic_gallery(model_id: facegate_face::ModelId, people: usize, per_person: usize) -> Result<Gallery> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let mut g = Gallery::new(model_id);
    for p in 0..people {
        let templates = (0..per_person).map(|_| std::array::from_fn(|_| next() * 0.43)).collect();
        g.add_person(&format!("person {p}"), templates, model_id, 0)?;
    }
    Ok(g)
}

/// What `device bench` measures with.
pub struct BenchSettings<'a> {
    /// Runs per figure (medians are reported).
    pub runs: usize,
    /// Match threshold.
    pub threshold: f32,
    /// The liveness ensemble and its threshold, when the door requires it.
    pub liveness: Option<(&'a Liveness, f32)>,
    /// Cores for the whole-frame figure (resolved, ≥ 1).
    pub threads: usize,
}

/// Whole door frames through [`recognise`] (the loop's own path: detect,
/// align, embed, identify, liveness) on one core and, in turns with them (so
/// a drift in the machine's speed affects both alike), with the loop's
/// workers (liveness on `pool` beside the embedding, the detector split over
/// `cores`): the median milliseconds of each, the median of each turn's
/// ratio, and the median of the system allocations a frame on the workers
/// (on one core, without them) made, all threads counted.
fn whole_frames_ms(
    pipeline: &Pipeline,
    frame: &image::RgbImage,
    home: &GalleryHome,
    settings: &BenchSettings,
    workers: Option<&(rayon::ThreadPool, Cores)>,
) -> Result<FrameTimes> {
    let one_frame = |workers: Option<&(rayon::ThreadPool, Cores)>| -> Result<(f64, f64)> {
        let (pool, cores) = (workers.map(|w| &w.0), workers.map(|w| &w.1));
        let live = settings.liveness.map(|(model, threshold)| LiveCheck { model, threshold, pool });
        let _frame = FrameScope::enter();
        let system_before = facegate_arena::system_allocations();
        let t = Instant::now();
        std::hint::black_box(recognise(pipeline, frame, home, settings.threshold, live.as_ref(), None, cores)?);
        Ok((t.elapsed().as_secs_f64() * 1000.0, (facegate_arena::system_allocations() - system_before) as f64))
    };
    const WARMUP: usize = 5;
    let all = |frames: Vec<Result<(f64, f64)>>| frames.into_iter().collect::<Result<Vec<_>>>();
    let (one, on_workers) = match workers {
        Some(w) => {
            let (one, on_workers) = in_turns(settings.runs, WARMUP, || one_frame(None), || one_frame(Some(w)));
            (all(one)?, all(on_workers)?)
        }
        None => {
            let one = all((0..WARMUP + settings.runs).map(|_| one_frame(None)).skip(WARMUP).collect())?;
            (one.clone(), one)
        }
    };
    Ok(FrameTimes {
        one_thread_ms: median(one.iter().map(|f| f.0).collect()),
        ms: median(on_workers.iter().map(|f| f.0).collect()),
        ratio: median(one.iter().zip(&on_workers).map(|(a, b)| b.0 / a.0).collect()),
        system_allocations: median(on_workers.iter().map(|f| f.1).collect()),
    })
}

/// What [`whole_frames_ms`] measured.
struct FrameTimes {
    one_thread_ms: f64,
    ms: f64,
    ratio: f64,
    system_allocations: f64,
}

/// Runs the benchmark on the first frame with a face from `source`.
pub fn run(
    pipeline: &Pipeline,
    source: &mut dyn FrameSource,
    settings: &BenchSettings,
    save_gallery: Option<&std::path::Path>,
) -> Result<serde_json::Value> {
    let (runs, threshold) = (settings.runs, settings.threshold);
    let frame = loop {
        match source.next_frame() {
            Some(Ok(f)) if pick_face(&pipeline.detect(&f), f.width(), f.height(), pipeline.config.min_face).is_some() => break f,
            Some(_) => continue,
            None => bail!("the source has no frame with a face (min_face {} px)", pipeline.config.min_face),
        }
    };
    facegate_arena::trim_system_heap();
    let rss_models = status_mb("VmRSS:");
    let gallery = synthetic_gallery(pipeline.embedder.model_id(), 10_000, 5)?;
    if let Some(path) = save_gallery {
        gallery.save(path).with_context(|| format!("saving the synthetic gallery to {}", path.display()))?;
    }
    let probe: Embedding = gallery.people()[1234].template(2).map(|v| v + 0.01);
    let mut identify_ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        std::hint::black_box(gallery.identify(std::hint::black_box(&probe), threshold));
        identify_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut stages: [Vec<f64>; 4] = std::array::from_fn(|_| Vec::with_capacity(runs));
    // Sized up front: growing them inside the frame scope would count as the frame's.
    let mut system_allocations = Vec::with_capacity(runs);
    let mut allocations = Vec::with_capacity(runs);
    let mut stage_allocations: [Vec<f64>; 4] = std::array::from_fn(|_| Vec::with_capacity(runs));
    let count = || facegate_arena::arena_allocations() + facegate_arena::system_allocations();
    for i in 0..runs + 5 {
        let _frame = FrameScope::enter();
        let (before, system_before) = (count(), facegate_arena::system_allocations());
        let t0 = Instant::now();
        let dets = pipeline.detect(&frame);
        let det = pick_face(&dets, frame.width(), frame.height(), pipeline.config.min_face).expect("face found before");
        let (t1, a1) = (Instant::now(), count());
        let face = pipeline.align(&frame, det);
        let (t2, a2) = (Instant::now(), count());
        let e = pipeline.embed(&face)?;
        let (t3, a3) = (Instant::now(), count());
        std::hint::black_box(gallery.identify(&e, threshold));
        let (t4, a4) = (Instant::now(), count());
        if i >= 5 {
            allocations.push((a4 - before) as f64);
            system_allocations.push((facegate_arena::system_allocations() - system_before) as f64);
            for (k, (a, b)) in [(before, a1), (a1, a2), (a2, a3), (a3, a4)].into_iter().enumerate() {
                stage_allocations[k].push((b - a) as f64);
            }
            for (k, (a, b)) in [(t0, t1), (t1, t2), (t2, t3), (t3, t4)].into_iter().enumerate() {
                stages[k].push((b - a).as_secs_f64() * 1000.0);
            }
        }
    }
    let [detect, align, embed, identify] = stages.map(median);
    let [a_detect, a_align, a_embed, a_identify] = stage_allocations.map(median);
    let (people, templates) = (gallery.people().len(), gallery.template_count());
    // Whole frames as the loop runs them, the face enrolled (so it is
    // recognised and, with liveness required, scored as a grant would be):
    // on one core, then on `threads` (liveness beside the embedding).
    let mut gallery = gallery;
    let own = pipeline.embed(
        &pipeline
            .align(&frame, pick_face(&pipeline.detect(&frame), frame.width(), frame.height(), 0).expect("face found before")),
    )?;
    gallery.add_person("bench face", vec![own], pipeline.embedder.model_id(), 0)?;
    let home = GalleryHome::new(std::path::Path::new("(not saved)"), gallery);
    let cores =
        (settings.threads > 1).then(|| frame_workers(settings.threads)).transpose().context("starting the frame threads")?;
    let frames = whole_frames_ms(pipeline, &frame, &home, settings, cores.as_ref())?;
    let (frame_ms, frame_ms_1_thread) = (frames.ms, frames.one_thread_ms);
    let frame_system_allocations = frames.system_allocations;
    Ok(serde_json::json!({
        "threads": settings.threads,
        "liveness": settings.liveness.is_some(),
        "frame_ms": frame_ms,
        "frame_ms_1_thread": frame_ms_1_thread,
        // The median of the ratios of frames measured in turns.
        "frame_ratio_vs_1_thread": frames.ratio,
        "fps": 1000.0 / frame_ms,
        "frame": format!("{}×{}", frame.width(), frame.height()),
        "detect_ms": detect,
        "align_ms": align,
        "embed_ms": embed,
        "identify_ms_50k_templates_in_frame": identify,
        "identify_ms_50k_templates": median(identify_ms),
        "frame_to_decision_ms": detect + align + embed + identify,
        "gallery_people": people,
        "gallery_templates": templates,
        "peak_rss_mb": status_mb("VmHWM:"),
        "rss_mb": status_mb("VmRSS:"),
        "rss_mb_models_only": rss_models,
        "allocations_per_frame": median(allocations),
        "system_allocations_per_frame": median(system_allocations),
        "system_allocations_per_frame_on_threads": frame_system_allocations,
        "arena_mb": facegate_arena::arena_bytes() as f64 / (1 << 20) as f64,
        "allocations_by_stage": { "detect": a_detect, "align": a_align, "embed": a_embed, "identify": a_identify },
        "precision": pipeline.embedder.precision().as_str(),
        "runs": runs,
    }))
}
