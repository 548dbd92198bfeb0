//! `device bench`: figures a user can measure on their own unit (a Pi 4, say).

use crate::runner::pick_face;
use crate::source::FrameSource;
use anyhow::{bail, Result};
use facegate_face::{Embedding, Pipeline};
use facegate_store::Gallery;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Counts allocations so the per-frame path can be checked for allocations.
pub struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: delegates to the system allocator; only counts.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// A memory figure of this process from /proc/self/status (`VmHWM`: peak, `VmRSS`: now), in MB.
fn status_mb(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Hands memory freed after loading (tract's model parsing and optimisation
/// leave ~20 MB of free heap) back to the system, so the resident size is
/// what the running unit needs.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory at the top of glibc's heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A gallery of `people` × `per_person` pseudo-random templates (norm ≈ 1.4 like real ones).
pub fn synthetic_gallery(model_id: &str, people: usize, per_person: usize) -> Result<Gallery> {
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

/// Runs the benchmark on the first frame with a face from `source`.
pub fn run(pipeline: &Pipeline, source: &mut dyn FrameSource, runs: usize, threshold: f32) -> Result<serde_json::Value> {
    let frame = loop {
        match source.next_frame() {
            Some(Ok(f)) if pick_face(&pipeline.detect(&f), f.width(), f.height(), pipeline.config.min_face).is_some() => break f,
            Some(_) => continue,
            None => bail!("the source has no frame with a face (min_face {} px)", pipeline.config.min_face),
        }
    };
    trim_heap();
    let rss_models = status_mb("VmRSS:");
    let gallery = synthetic_gallery(pipeline.embedder.model_id(), 10_000, 5)?;
    let probe: Embedding = gallery.people()[1234].templates[2].map(|v| v + 0.01);
    let mut identify_ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        std::hint::black_box(gallery.identify(std::hint::black_box(&probe), threshold));
        identify_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut stages = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    let mut allocations = Vec::new();
    let mut stage_allocations = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    let count = || ALLOCATIONS.load(Ordering::Relaxed);
    for i in 0..runs + 5 {
        let before = count();
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
    Ok(serde_json::json!({
        "frame": format!("{}×{}", frame.width(), frame.height()),
        "detect_ms": detect,
        "align_ms": align,
        "embed_ms": embed,
        "identify_ms_50k_templates_in_frame": identify,
        "identify_ms_50k_templates": median(identify_ms),
        "frame_to_decision_ms": detect + align + embed + identify,
        "gallery_people": gallery.people().len(),
        "gallery_templates": gallery.template_count(),
        "peak_rss_mb": status_mb("VmHWM:"),
        "rss_mb": status_mb("VmRSS:"),
        "rss_mb_models_only": rss_models,
        "allocations_per_frame": median(allocations),
        "allocations_by_stage": { "detect": a_detect, "align": a_align, "embed": a_embed, "identify": a_identify },
        "precision": pipeline.embedder.precision().as_str(),
        "runs": runs,
    }))
}
