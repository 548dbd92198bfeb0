//! A head trained on synthetic people learns to ignore what does not tell
//! them apart: each person is a point in a few dimensions, and every photo
//! adds large noise in other dimensions (like pose or light). The pretrained
//! (identity) metric is swamped by the noise; the trained one is not.

use facegate_core::{distance, Embedding, ModelId, EMBEDDING_DIM};
use facegate_train::{train_head, PhotoFeatures, TrainConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn gaussian(rng: &mut StdRng) -> f32 {
    // Box–Muller.
    let (u, v): (f32, f32) = (rng.random_range(1e-6..1.0), rng.random());
    (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
}

fn people(count: usize, photos: usize, seed: u64) -> Vec<PhotoFeatures> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    for p in 0..count {
        let centre: Vec<f32> = (0..6).map(|_| 0.25 * gaussian(&mut rng)).collect();
        for i in 0..photos {
            let views = (0..4)
                .map(|_| {
                    let mut e: Embedding = [0.0; EMBEDDING_DIM];
                    e[..6].copy_from_slice(&centre);
                    e[6..6 + 24].iter_mut().for_each(|v| *v = 0.15 * gaussian(&mut rng));
                    e
                })
                .collect();
            out.push(PhotoFeatures { name: format!("P{p:03}/P{p:03}_{i:04}.jpg"), detected: true, views });
        }
    }
    out
}

#[test]
fn a_trained_head_separates_people_the_pretrained_metric_confuses() {
    let photos = people(120, 5, 7);
    let refs: Vec<&PhotoFeatures> = photos.iter().collect();
    let base = ModelId::of_file_bytes(b"synthetic");
    let config = TrainConfig { epochs: 30, validation_share: 0.25, learning_rate: 1e-2, ..TrainConfig::default() };
    let mut epochs = 0;
    let report = train_head(&refs, base, &config, |_| epochs += 1).unwrap();
    let (before, after) = (&report.pretrained_validation, &report.validation);
    eprintln!(
        "validation TAR@1e-3 {:.1} → {:.1} %, EER {:.2} → {:.2} % in {epochs} epochs",
        before.tar_at_far_1e3, after.tar_at_far_1e3, before.eer, after.eer
    );
    assert!(before.tar_at_far_1e3 < 60.0, "the noise must confuse the identity metric: {before:?}");
    assert!(after.tar_at_far_1e3 > before.tar_at_far_1e3 + 25.0 && after.eer < before.eer / 2.0, "{after:?}");
    assert!(report.best_epoch >= 1 && report.head.meta.threshold.is_finite());
    // Two of the held-out people, one photo each against another of theirs and of the other.
    let (train, validation) = facegate_train::trainer::split_by_person(&refs, config.validation_share, config.seed);
    assert!(train.iter().flatten().all(|p| validation.iter().flatten().all(|q| p.person() != q.person())), "split by person");
    let two: Vec<_> = validation.iter().filter(|p| p.len() >= 2).take(2).collect();
    let d = |a: &PhotoFeatures, b: &PhotoFeatures| distance(&report.head.apply(&a.mean()), &report.head.apply(&b.mean()));
    assert!(d(two[0][0], two[0][1]) < d(two[0][0], two[1][0]));
}

#[test]
fn too_few_people_is_a_clear_error() {
    let photos = people(2, 3, 1);
    let refs: Vec<&PhotoFeatures> = photos.iter().collect();
    let err = train_head(&refs, ModelId::of_file_bytes(b"x"), &TrainConfig::default(), |_| {}).unwrap_err();
    assert!(err.to_string().contains("not enough data"), "{err}");
}

#[test]
fn a_trained_last_layer_reaches_features_the_network_ignored() {
    use facegate_train::head::LAST_LAYER_INPUTS;
    // The network's last layer reads pooled features 0..128 only; who a
    // person is lives in features 200..206, pose-like noise in 0..24. The
    // network's embedding cannot tell people apart; a retrained layer can.
    let mut rng = StdRng::seed_from_u64(3);
    let mut photos = Vec::new();
    for p in 0..120 {
        let centre: Vec<f32> = (0..6).map(|_| 0.25 * gaussian(&mut rng)).collect();
        for i in 0..5 {
            let views = (0..4)
                .map(|_| {
                    let mut v = [0f32; LAST_LAYER_INPUTS];
                    v[200..206].copy_from_slice(&centre);
                    v[..24].iter_mut().for_each(|x| *x = 0.15 * gaussian(&mut rng));
                    v
                })
                .collect();
            photos.push(PhotoFeatures::<LAST_LAYER_INPUTS> { name: format!("P{p:03}/{i}.jpg"), detected: true, views });
        }
    }
    let mut network = vec![0f32; LAST_LAYER_INPUTS * EMBEDDING_DIM];
    (0..EMBEDDING_DIM).for_each(|i| network[i * EMBEDDING_DIM + i] = 1.0);
    let refs: Vec<&PhotoFeatures<LAST_LAYER_INPUTS>> = photos.iter().collect();
    let config = TrainConfig { epochs: 30, validation_share: 0.25, learning_rate: 1e-2, ..TrainConfig::default() };
    let base = ModelId::of_file_bytes(b"synthetic");
    let report = facegate_train::train_last_layer(&refs, base, &network, &config, |_| {}).unwrap();
    let (before, after) = (&report.pretrained_validation, &report.validation);
    eprintln!("last layer: validation TAR@1e-3 {:.1} → {:.1} %", before.tar_at_far_1e3, after.tar_at_far_1e3);
    assert!(before.tar_at_far_1e3 < 20.0, "{before:?}");
    assert!(after.tar_at_far_1e3 > before.tar_at_far_1e3 + 40.0, "{after:?}");
    assert_eq!(report.head.meta.kind, "last-layer");
    assert_ne!(report.head.template_model(), base);
}
