//! Embedding a folder of photos (one folder per person) into a feature cache,
//! once: every view the photo pipeline averages, for training and the
//! trained-metric benchmark. Resumable: photos already cached are skipped.

use anyhow::{Context, Result};
use facegate_face::decode::{decode_image, DEFAULT_MAX_PIXELS};
use facegate_face::embed::{PooledEmbedder, POOLED_DIM};
use facegate_face::{Network, Pipeline, PipelineConfig, Precision};
use facegate_lfw::Dataset;
use facegate_train::{FeatureCache, PhotoFeatures};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

/// Cached features of a photo collection: embeddings (`D` = 128) or the
/// network's pooled features (`D` = 256).
pub struct Features<const D: usize = 128> {
    /// Every photo, by name (`Person/file.jpg`).
    pub photos: std::collections::BTreeMap<String, PhotoFeatures<D>>,
    /// The embedding model's id.
    pub model_id: facegate_core::ModelId,
    /// The cache file.
    pub cache: PathBuf,
    /// Photos embedded in this run (the rest came from the cache).
    pub embedded_now: usize,
    /// Files that could not be decoded (name, why): left out, not cached.
    pub unreadable: Vec<(String, String)>,
    /// Seconds spent embedding in this run.
    pub seconds: f64,
}

/// The default cache file for a photo collection, model and kind of
/// features (`suffix`), in the user's cache directory.
pub fn default_cache(photos: &Path, model: &facegate_core::ModelId, suffix: &str) -> PathBuf {
    let where_ = std::fs::canonicalize(photos).unwrap_or_else(|_| photos.to_path_buf());
    let tag = facegate_core::hex(&Sha256::digest(where_.to_string_lossy().as_bytes())[..6]);
    let dir = dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("facegate");
    dir.join(format!("features-{tag}-{}{suffix}.fgfeat", &model.to_hex()[..12]))
}

/// Embeds every photo of `photos` not yet in the cache with `network` (the
/// photo pipeline: CNN detector, 5 jittered chips, each plain and mirrored).
pub fn extract(
    models: &Path,
    network: Network,
    photos: &Path,
    cache: Option<&Path>,
    threads: Option<usize>,
    quiet: bool,
) -> Result<Features> {
    let pipeline = photo_pipeline(models, network)?;
    extract_views(&pipeline, photos, cache, "", threads, quiet, |img, face| Ok(pipeline.view_embeddings(img, face)?))
}

/// The pooled features (the last layer's input) of every view of every photo
/// not yet in the cache, and the network's last layer (row-major 256 × 128):
/// dlib's network, the one whose last layer is retrained.
pub fn extract_pooled(
    models: &Path,
    photos: &Path,
    cache: Option<&Path>,
    threads: Option<usize>,
    quiet: bool,
) -> Result<(Features<POOLED_DIM>, Vec<f32>)> {
    let pipeline = photo_pipeline(models, Network::Dlib)?;
    let bytes = facegate_face::model_files::ModelDir::open(models)?.read(Precision::Int8.file_name())?;
    let cut = PooledEmbedder::from_bytes(&bytes)?;
    let features = extract_views(&pipeline, photos, cache, "-pooled", threads, quiet, |img, face| {
        let (chips, cut) = (pipeline.jitter_chips(img, face), &cut);
        chips.iter().flat_map(|chip| pipeline.mirrors().iter().map(move |&m| Ok(cut.pooled_chip(chip, m)?))).collect()
    })?;
    Ok((features, cut.last_layer().to_vec()))
}

fn photo_pipeline(models: &Path, network: Network) -> Result<Pipeline> {
    Pipeline::load(models, Precision::Int8, PipelineConfig { network, ..PipelineConfig::default() }).context("loading models")
}

/// Runs `views` on the face of every photo not yet cached, on `threads` workers.
fn extract_views<const D: usize>(
    pipeline: &Pipeline,
    photos: &Path,
    cache: Option<&Path>,
    suffix: &str,
    threads: Option<usize>,
    quiet: bool,
    views: impl Fn(&image::RgbImage, &facegate_face::Face) -> Result<Vec<[f32; D]>> + Sync,
) -> Result<Features<D>> {
    let config = &pipeline.config;
    let model_id = pipeline.embedder.model_id();
    let key = format!(
        "model {} precision {} detector {} jitter {} mirror {}",
        model_id.to_hex(),
        pipeline.embedder.precision().as_str(),
        config.detector.as_str(),
        config.jitter,
        config.mirror
    );
    let cache_path = cache.map(Path::to_path_buf).unwrap_or_else(|| default_cache(photos, &model_id, suffix));
    let mut cache =
        FeatureCache::open(&cache_path, &key).with_context(|| format!("opening the feature cache {}", cache_path.display()))?;
    let data = Dataset::open(photos).with_context(|| format!("opening {}", photos.display()))?;
    let names: Vec<String> = data.names()?.into_iter().filter(|n| n.contains('/') && !cache.contains(n)).collect();
    let bar = ProgressBar::new(names.len() as u64).with_style(
        ProgressStyle::with_template("{spinner} embedding photos [{bar:40}] {pos}/{len}, {per_sec}, eta {eta}")
            .expect("template")
            .progress_chars("=> "),
    );
    bar.set_draw_target(if quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() });
    let start = Instant::now();
    let next = AtomicUsize::new(0);
    let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let (send, receive) = mpsc::sync_channel::<Result<Embedded<D>>>(64);
    let mut unreadable = Vec::new();
    std::thread::scope(|s| -> Result<()> {
        for _ in 0..threads {
            let send = send.clone();
            let (data, names, next, views) = (&data, &names, &next, &views);
            s.spawn(move || loop {
                let Some(name) = names.get(next.fetch_add(1, Ordering::Relaxed)) else { return };
                if send.send(embed_photo(pipeline, data, name, views)).is_err() {
                    return;
                }
            });
        }
        drop(send);
        let mut written = 0usize;
        for photo in receive {
            // An error stops the workers (the channel closes), keeping what is cached.
            match photo? {
                Embedded::Photo(photo) => cache.add(photo)?,
                Embedded::Unreadable(name, why) => unreadable.push((name, why)),
            }
            written += 1;
            if written.is_multiple_of(256) {
                cache.sync()?;
            }
            bar.inc(1);
        }
        cache.sync()?;
        Ok(())
    })?;
    bar.finish_and_clear();
    Ok(Features {
        photos: cache.into_photos(),
        model_id,
        cache: cache_path,
        embedded_now: names.len() - unreadable.len(),
        unreadable,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// One photo's outcome: its views, or why it could not be decoded (a
/// damaged file in a folder of thousands is reported and left out).
enum Embedded<const D: usize> {
    Photo(PhotoFeatures<D>),
    Unreadable(String, String),
}

fn embed_photo<const D: usize>(
    pipeline: &Pipeline,
    data: &Dataset,
    name: &str,
    views: &impl Fn(&image::RgbImage, &facegate_face::Face) -> Result<Vec<[f32; D]>>,
) -> Result<Embedded<D>> {
    let img = match decode_image(&data.read(name)?, DEFAULT_MAX_PIXELS) {
        Ok(img) => img,
        Err(e) => return Ok(Embedded::Unreadable(name.to_string(), e.to_string())),
    };
    let (detection, detected) = crate::labelled::lfw_face(&pipeline.detect(&img), img.width(), img.height());
    let face = pipeline.align(&img, detection);
    let views = views(&img, &face).with_context(|| format!("embedding {name}"))?;
    Ok(Embedded::Photo(PhotoFeatures { name: name.to_string(), detected, views }))
}
