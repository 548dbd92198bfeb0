//! `host-tool bench lfw --train-metric KIND`: the triplet-trained metric on
//! people it never saw. LFW View 2's ten folds are identity-disjoint: for
//! each fold, a metric is trained on every photo of the people of the other
//! nine folds and tested on the held-out fold's pairs, beside the pretrained
//! model. Thresholds come from the training run's validation people, never
//! from the fold under test.

use super::lfw_args::LfwArgs;
use crate::features;
use crate::train::{epoch_bar, epoch_message, run_json, Kind};
use anyhow::{bail, Context, Result};
use facegate_core::{distance, Embedding};
use facegate_face::Network;
use facegate_lfw::{evaluate, parse_pairs, Pair};
use facegate_train::figures::{fnir_at_fpir, open_set_searches, Search};
use facegate_train::trainer::EpochRecord;
use facegate_train::{train_head, train_last_layer, MetricHead, PhotoFeatures, TrainConfig, TrainReport};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The open-set operating point reported (FPIR 0.3 %).
const FPIR: f64 = 0.003;

fn person(name: &str) -> &str {
    name.split('/').next().unwrap_or(name)
}

/// Pair distances, fold accuracies and open-set searches of one metric.
#[derive(Default)]
struct Scores {
    pairs: Vec<(f32, bool, usize)>,
    /// The same pairs' distances unscaled (for one metric across folds, the standard protocol).
    unscaled: Vec<(f32, bool, usize)>,
    fold_accuracy: Vec<f64>,
    fold_threshold: Vec<f32>,
    mated: Vec<Search>,
    strangers: Vec<Search>,
}

impl Scores {
    /// Adds fold `k`: its pairs, accuracy at `threshold`, and the open-set
    /// searches among its people. Each fold's metric has its own scale, so
    /// distances are pooled as multiples of the fold's threshold (each door
    /// would use its own metric with its own threshold).
    fn add_fold(
        &mut self,
        k: usize,
        pairs: &[&Pair],
        embed: impl Fn(&str) -> Embedding,
        threshold: f32,
        fold_photos: &[(usize, &str)],
    ) {
        let unscaled: Vec<(f32, bool, usize)> = pairs.iter().map(|p| (distance(&embed(&p.a), &embed(&p.b)), p.same, k)).collect();
        let scored: Vec<(f32, bool, usize)> = unscaled.iter().map(|(d, same, k)| (d / threshold, *same, *k)).collect();
        self.unscaled.extend(unscaled);
        let right = scored.iter().filter(|(d, same, _)| (*d < 1.0) == *same).count();
        self.fold_accuracy.push(100.0 * right as f64 / scored.len().max(1) as f64);
        self.fold_threshold.push(threshold);
        self.pairs.extend(scored);
        let labels: Vec<usize> = fold_photos.iter().map(|(l, _)| *l).collect();
        let embeddings: Vec<Embedding> = fold_photos.iter().map(|(_, n)| embed(n)).collect();
        let (mated, strangers) = open_set_searches(&labels, &embeddings);
        let scaled = |s: Search| Search { nearest: s.nearest / threshold, ..s };
        self.mated.extend(mated.into_iter().map(scaled));
        self.strangers.extend(strangers.into_iter().map(scaled));
    }

    fn json(&self) -> serde_json::Value {
        let e = evaluate(&self.pairs);
        let raw = evaluate(&self.unscaled);
        let n = self.fold_accuracy.len().max(1) as f64;
        let mean = self.fold_accuracy.iter().sum::<f64>() / n;
        let std = (self.fold_accuracy.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / n).sqrt();
        let (fnir, open_threshold) = fnir_at_fpir(&self.mated, &self.strangers, FPIR);
        json!({
            "accuracy_mean": mean,
            "accuracy_std": std,
            "fold_accuracy": self.fold_accuracy,
            "fold_thresholds": self.fold_threshold,
            "accuracy_mean_nine_fold_threshold": e.accuracy_mean,
            "unscaled": {"accuracy_mean_nine_fold_threshold": raw.accuracy_mean, "eer": raw.eer, "tar_at_far_1e-3": raw.tar_at_far_1e3, "tar_at_far_1e-4": raw.tar_at_far_1e4},
            "eer": e.eer,
            "tar_at_far_1e-3": e.tar_at_far_1e3,
            "tar_at_far_1e-4": e.tar_at_far_1e4,
            "fnir_at_fpir_0.003": fnir,
            "open_set_threshold_relative": open_threshold,
            "open_set_mated_searches": self.mated.len(),
            "open_set_stranger_searches": self.strangers.len(),
        })
    }
}

/// Runs the trained-metric benchmark and prints it.
pub fn run(models: &Path, network: Network, args: &LfwArgs, kind: Kind) -> Result<()> {
    crate::train::refuse_last_layer_of(network, kind)?;
    let (lfw, pairs_file, folds, threads, json_out, training) =
        (&args.lfw, &args.pairs, args.folds, args.threads, args.json, &args.training);
    let text = std::fs::read_to_string(pairs_file).with_context(|| format!("reading {}", pairs_file.display()))?;
    let pairs = parse_pairs(&text)?;
    let fold_count = pairs.iter().map(|p| p.fold + 1).max().unwrap_or(0);
    if fold_count < 2 {
        bail!("pairs.txt has {fold_count} fold(s); training on the other folds needs two or more");
    }
    let tested = folds.unwrap_or(fold_count).min(fold_count);
    let config = training.config();
    let (cache, quiet) = (training.cache.as_deref(), json_out);
    let protocol = Protocol { pairs: &pairs, fold_count, tested, config: &config, quiet };
    let mut out = match kind {
        Kind::Head => {
            let features = features::extract(models, network, lfw, cache, threads, quiet)?;
            let initial = MetricHead::identity(features.model_id, 0.0);
            protocol.run(&features, &initial, |photos, progress| Ok(train_head(photos, features.model_id, &config, progress)?))?
        }
        Kind::LastLayer => {
            let (features, network) = features::extract_pooled(models, lfw, cache, threads, quiet)?;
            let initial = MetricHead::last_layer(features.model_id, &network, 0.0);
            protocol.run(&features, &initial, |photos, progress| {
                Ok(train_last_layer(photos, features.model_id, &network, &config, progress)?)
            })?
        }
    };
    out["kind"] = json!(kind.as_str());
    out["folds"] = json!(tested);
    out["config"] = json!(config);
    if json_out {
        println!("{out}");
        return Ok(());
    }
    let (p, t) = (&out["pretrained"], &out["trained"]);
    println!("LFW View 2, {} trained per fold on the other folds' people ({tested} folds)", kind.as_str());
    println!("                         pretrained     trained");
    let row = |label: &str, key: &str| {
        println!("  {label:<22} {:>8.2} %  {:>8.2} %", p[key].as_f64().unwrap_or(f64::NAN), t[key].as_f64().unwrap_or(f64::NAN));
    };
    row("accuracy", "accuracy_mean");
    row("EER", "eer");
    row("TAR@FAR=1e-3", "tar_at_far_1e-3");
    row("TAR@FAR=1e-4", "tar_at_far_1e-4");
    row("FNIR@FPIR=0.3 %", "fnir_at_fpir_0.003");
    let f = &out["features"];
    println!(
        "  features {:.0} s ({} photos embedded now), training {:.0} s",
        f["seconds"].as_f64().unwrap_or(0.0),
        f["embedded_now"],
        out["training_seconds"].as_f64().unwrap_or(0.0)
    );
    Ok(())
}

/// The View 2 folds and how to run them.
struct Protocol<'a> {
    pairs: &'a [Pair],
    fold_count: usize,
    tested: usize,
    config: &'a TrainConfig,
    quiet: bool,
}

impl Protocol<'_> {
    /// Trains per fold on the other folds' people (`train`) and scores the
    /// held-out fold with `initial` (the pretrained map) and the trained one.
    fn run<const D: usize>(
        &self,
        features: &features::Features<D>,
        initial: &MetricHead,
        train: impl Fn(&[&PhotoFeatures<D>], &mut dyn FnMut(&EpochRecord)) -> Result<TrainReport>,
    ) -> Result<serde_json::Value> {
        let (pairs, fold_count, tested) = (self.pairs, self.fold_count, self.tested);
        let fold_people: Vec<BTreeSet<&str>> = (0..fold_count)
            .map(|k| pairs.iter().filter(|p| p.fold == k).flat_map(|p| [person(&p.a), person(&p.b)]).collect())
            .collect();
        let mut by_person: BTreeMap<&str, Vec<&PhotoFeatures<D>>> = BTreeMap::new();
        features.photos.values().for_each(|p| by_person.entry(person(&p.name)).or_default().push(p));
        // Every photo named by a pair must be there before any training starts.
        for name in pairs.iter().flat_map(|p| [&p.a, &p.b]) {
            features.photos.get(name).with_context(|| format!("{name} is in pairs.txt but not among the photos"))?;
        }
        let (mut pretrained, mut trained) = (Scores::default(), Scores::default());
        let mut runs = Vec::new();
        for k in 0..tested {
            let test_people = &fold_people[k];
            let train_photos: Vec<&PhotoFeatures<D>> = (0..fold_count)
                .filter(|&j| j != k)
                .flat_map(|j| fold_people[j].iter())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .filter(|p| !test_people.contains(*p))
                .flat_map(|p| by_person.get(p).into_iter().flatten().copied())
                .collect();
            let bar = epoch_bar(self.config.epochs, self.quiet);
            let report = train(&train_photos, &mut |r: &EpochRecord| {
                bar.set_message(format!("fold {}/{tested}: {}", k + 1, epoch_message(r)));
                bar.inc(1);
            })?;
            bar.finish_and_clear();
            let fold_pairs: Vec<&Pair> = pairs.iter().filter(|p| p.fold == k).collect();
            // Fold k's people with every photo, for the open-set study.
            let fold_photos: Vec<(usize, &str)> = test_people
                .iter()
                .enumerate()
                .flat_map(|(i, p)| by_person.get(p).into_iter().flatten().map(move |f| (i, f.name.as_str())))
                .collect();
            let plain = |n: &str| initial.apply_slice(&features.photos[n].mean());
            let learnt = |n: &str| report.head.apply_slice(&features.photos[n].mean());
            pretrained.add_fold(k, &fold_pairs, plain, report.pretrained_validation.threshold_balanced, &fold_photos);
            trained.add_fold(k, &fold_pairs, learnt, report.validation.threshold_balanced, &fold_photos);
            if !self.quiet {
                eprintln!(
                    "fold {}: {} training people, best epoch {}, validation TAR@1e-3 {:.2} → {:.2} %, fold accuracy {:.2} → {:.2} %",
                    k + 1,
                    report.counts.train_people,
                    report.best_epoch,
                    report.pretrained_validation.tar_at_far_1e3,
                    report.validation.tar_at_far_1e3,
                    pretrained.fold_accuracy[k],
                    trained.fold_accuracy[k]
                );
            }
            let mut run = run_json(&report);
            run["fold"] = json!(k + 1);
            runs.push(run);
        }
        let training_seconds: f64 = runs.iter().filter_map(|r| r["seconds"].as_f64()).sum();
        Ok(json!({
            "pretrained": pretrained.json(),
            "trained": trained.json(),
            "fold_runs": runs,
            "features": {"photos": features.photos.len(), "embedded_now": features.embedded_now, "seconds": features.seconds, "cache": features.cache},
            "training_seconds": training_seconds,
            "model_id": features.model_id,
        }))
    }
}
