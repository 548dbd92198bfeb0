//! Training a metric head on cached features with candle: batches of P
//! people × K photos (a random view of each), semi-hard triplets mined on the
//! batch's current distances, AdamW on W = I + Δ (weight decay pulls Δ, so the
//! head stays near the pretrained metric), early stopping on the validation
//! people's TAR at FAR 1e-3.

use crate::figures::{all_pairs, PairFigures};
use crate::head::{MetricHead, MetricMeta, LAST_LAYER_INPUTS};
use crate::mining::{semi_hard_triplets, squared_distances, Triplet};
use crate::{PhotoFeatures, TrainError};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use facegate_core::{Embedding, ModelId, EMBEDDING_DIM};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::time::Instant;

/// Training settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrainConfig {
    /// Most passes over the training photos.
    pub epochs: usize,
    /// α of the triplet loss, on squared distances at dlib's scale.
    pub margin: f32,
    /// P: people per batch.
    pub people_per_batch: usize,
    /// K: photos per person per batch (drawn again when a person has fewer).
    pub photos_per_person: usize,
    /// AdamW's learning rate.
    pub learning_rate: f64,
    /// AdamW's weight decay on Δ = W − I.
    pub weight_decay: f64,
    /// Stop after this many epochs without a better validation TAR.
    pub patience: usize,
    /// Share of the people held out for validation.
    pub validation_share: f64,
    /// Seed of the split and the batches.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 40,
            margin: 0.2,
            people_per_batch: 32,
            photos_per_person: 4,
            learning_rate: 1e-4,
            weight_decay: 1e-2,
            patience: 6,
            validation_share: 0.1,
            seed: 1,
        }
    }
}

/// One epoch's figures.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EpochRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean triplet loss over every anchor–positive pair of the epoch's
    /// batches, each with its semi-hard negative (0 where the margin holds).
    pub loss: f32,
    /// Share of anchor–positive pairs whose semi-hard triplet violated the margin.
    pub active_share: f64,
    /// Validation figures after the epoch.
    pub validation: PairFigures,
}

/// What training produced.
#[derive(Debug, Clone)]
pub struct TrainReport {
    /// The best head (by validation TAR at FAR 1e-3), threshold filled in.
    pub head: MetricHead,
    /// Its epoch (0: the identity was never beaten).
    pub best_epoch: usize,
    /// Every epoch.
    pub history: Vec<EpochRecord>,
    /// The pretrained metric on the validation people.
    pub pretrained_validation: PairFigures,
    /// The best head on the validation people.
    pub validation: PairFigures,
    /// People and photos used to train and to validate.
    pub counts: SplitCounts,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// Sizes of the split by person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SplitCounts {
    /// People trained on.
    pub train_people: usize,
    /// Their photos.
    pub train_photos: usize,
    /// People held out for validation.
    pub validation_people: usize,
    /// Their photos.
    pub validation_photos: usize,
}

/// Splits photos by person: (training people's photos, validation people's
/// photos), each grouped by person. Deterministic for a seed.
pub fn split_by_person<'a, const D: usize>(
    photos: &[&'a PhotoFeatures<D>],
    share: f64,
    seed: u64,
) -> (People<'a, D>, People<'a, D>) {
    let mut people: BTreeMap<&str, Vec<&PhotoFeatures<D>>> = BTreeMap::new();
    photos.iter().for_each(|p| people.entry(p.person()).or_default().push(p));
    let mut people: People<D> = people.into_values().collect();
    people.shuffle(&mut StdRng::seed_from_u64(seed));
    let held = ((people.len() as f64 * share).round() as usize).min(people.len());
    let train = people.split_off(held);
    (train, people)
}

/// Photos grouped by person.
pub type People<'a, const D: usize> = Vec<Vec<&'a PhotoFeatures<D>>>;

fn mean_figures<const D: usize>(people: &[Vec<&PhotoFeatures<D>>], head: &MetricHead) -> PairFigures {
    let mut labels = Vec::new();
    let mut embeddings: Vec<Embedding> = Vec::new();
    for (i, photos) in people.iter().enumerate() {
        for p in photos {
            labels.push(i);
            embeddings.push(head.apply_slice(&p.mean()));
        }
    }
    all_pairs(&labels, &embeddings)
}

fn better(a: &PairFigures, b: &PairFigures) -> bool {
    (a.tar_at_far_1e3, -a.eer) > (b.tar_at_far_1e3, -b.eer)
}

/// Trains a metric head on `photos` (views cached per photo) for the model
/// `base_model`; `on_epoch` sees every epoch's figures (progress bars).
pub fn train_head(
    photos: &[&PhotoFeatures],
    base_model: ModelId,
    config: &TrainConfig,
    on_epoch: impl FnMut(&EpochRecord),
) -> Result<TrainReport, TrainError> {
    train_linear(photos, MetricHead::identity(base_model, 0.0), config, on_epoch)
}

/// Trains the network's last layer on pooled features (256 per view),
/// starting from the network's own weights (`network`, row-major 256 × 128).
pub fn train_last_layer(
    photos: &[&PhotoFeatures<LAST_LAYER_INPUTS>],
    base_model: ModelId,
    network: &[f32],
    config: &TrainConfig,
    on_epoch: impl FnMut(&EpochRecord),
) -> Result<TrainReport, TrainError> {
    train_linear(photos, MetricHead::last_layer(base_model, network, 0.0), config, on_epoch)
}

/// Trains W = W₀ + Δ (W₀: `initial`'s weights, 128 × D) on views of D values.
fn train_linear<const D: usize>(
    photos: &[&PhotoFeatures<D>],
    initial: MetricHead,
    config: &TrainConfig,
    mut on_epoch: impl FnMut(&EpochRecord),
) -> Result<TrainReport, TrainError> {
    assert_eq!(initial.inputs(), D, "the starting map takes the views' width");
    let base_model = initial.meta.base_model;
    let start = Instant::now();
    let (train, validation) = split_by_person(photos, config.validation_share, config.seed);
    let anchors: Vec<&Vec<&PhotoFeatures<D>>> = train.iter().filter(|p| p.len() >= 2).collect();
    let validation_genuine = validation.iter().any(|p| p.len() >= 2);
    if anchors.len() < 2 || !validation_genuine || validation.len() < 2 {
        return Err(TrainError::NotEnoughData(format!(
            "{} training people with two or more photos and {} validation people (need 2+ of each, with a person of 2+ photos among the validation people)",
            anchors.len(),
            validation.len()
        )));
    }
    let counts = SplitCounts {
        train_people: train.len(),
        train_photos: train.iter().map(Vec::len).sum(),
        validation_people: validation.len(),
        validation_photos: validation.iter().map(Vec::len).sum(),
    };
    let dev = Device::Cpu;
    let eye = Tensor::from_vec(initial.weights.clone(), (EMBEDDING_DIM, D), &dev)?;
    let delta = Var::zeros((EMBEDDING_DIM, D), DType::F32, &dev)?;
    let params = ParamsAdamW { lr: config.learning_rate, weight_decay: config.weight_decay, ..Default::default() };
    let mut optimiser = AdamW::new(vec![delta.clone()], params)?;
    let mut rng = StdRng::seed_from_u64(config.seed ^ 0x5eed);
    let mut head = initial;
    let pretrained_validation = mean_figures(&validation, &head);
    let (mut best, mut best_epoch, mut best_figures) = (head.weights.clone(), 0, pretrained_validation.clone());
    let anchor_photos: usize = anchors.iter().map(|p| p.len()).sum();
    let batch = config.people_per_batch.max(2) * config.photos_per_person.max(2);
    let steps = anchor_photos.div_ceil(batch).max(1);
    let mut history = Vec::new();
    for epoch in 1..=config.epochs {
        let (mut loss_sum, mut active, mut pairs) = (0f64, 0usize, 0usize);
        for _ in 0..steps {
            let people: Vec<&&Vec<&PhotoFeatures<D>>> =
                anchors.choose_multiple(&mut rng, config.people_per_batch.max(2)).collect();
            let mut rows: Vec<f32> = Vec::with_capacity(batch * D);
            let mut labels = Vec::with_capacity(batch);
            for (label, photos) in people.iter().enumerate() {
                let mut order: Vec<usize> = (0..photos.len()).collect();
                order.shuffle(&mut rng);
                for k in 0..config.photos_per_person.max(2) {
                    // Fewer photos than K: the same photos again, other views.
                    let photo = photos[order[k % order.len()]];
                    let view = &photo.views[rng.random_range(0..photo.views.len())];
                    rows.extend_from_slice(view);
                    labels.push(label);
                }
            }
            let x = Tensor::from_vec(rows, (labels.len(), D), &dev)?;
            let w = eye.add(delta.as_tensor())?;
            let y = x.matmul(&w.t()?)?;
            let d2 = squared_distances(&y.flatten_all()?.to_vec1::<f32>()?, EMBEDDING_DIM);
            let triplets = semi_hard_triplets(&d2, &labels, config.margin);
            pairs += labels
                .iter()
                .enumerate()
                .map(|(a, la)| labels.iter().enumerate().filter(|(p, lp)| *p != a && *lp == la).count())
                .sum::<usize>();
            active += triplets.len();
            if triplets.is_empty() {
                continue;
            }
            let pick = |f: fn(&Triplet) -> usize| -> candle_core::Result<Tensor> {
                let idx: Vec<u32> = triplets.iter().map(|t| f(t) as u32).collect();
                y.index_select(&Tensor::from_vec(idx, triplets.len(), &dev)?, 0)
            };
            let (a, p, n) = (pick(|t| t.anchor)?, pick(|t| t.positive)?, pick(|t| t.negative)?);
            let ap = a.sub(&p)?.sqr()?.sum(1)?;
            let an = a.sub(&n)?.sqr()?.sum(1)?;
            let loss = ap.sub(&an)?.affine(1.0, f64::from(config.margin))?.relu()?.mean_all()?;
            optimiser.backward_step(&loss)?;
            loss_sum += f64::from(loss.to_scalar::<f32>()?) * triplets.len() as f64;
        }
        let w = eye.add(delta.as_tensor())?;
        head.weights = w.flatten_all()?.to_vec1::<f32>()?;
        let figures = mean_figures(&validation, &head);
        let record = EpochRecord {
            epoch,
            loss: (loss_sum / pairs.max(1) as f64) as f32,
            active_share: active as f64 / pairs.max(1) as f64,
            validation: figures.clone(),
        };
        on_epoch(&record);
        history.push(record);
        if better(&figures, &best_figures) {
            (best, best_epoch, best_figures) = (head.weights.clone(), epoch, figures);
        } else if epoch - best_epoch >= config.patience {
            break;
        }
    }
    head.weights = best;
    head.meta = MetricMeta {
        kind: head.meta.kind.clone(),
        id: String::new(),
        base_model,
        threshold: best_figures.threshold_far_1e4,
        training: serde_json::Value::Null,
    };
    head.meta.id = head.id();
    Ok(TrainReport {
        head,
        best_epoch,
        history,
        pretrained_validation,
        validation: best_figures,
        counts,
        seconds: start.elapsed().as_secs_f64(),
    })
}
