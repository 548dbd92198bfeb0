//! LFW View 2 scoring: 10-fold threshold selection and ROC figures.

/// Results of the protocol on pair distances.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Mean of the ten fold accuracies, percent.
    pub accuracy_mean: f64,
    /// Standard deviation of the fold accuracies (population), percent.
    pub accuracy_std: f64,
    /// Per-fold accuracy, percent.
    pub fold_accuracy: Vec<f64>,
    /// Per-fold threshold chosen on the other folds.
    pub fold_threshold: Vec<f32>,
    /// Threshold maximising accuracy over all pairs.
    pub threshold: f32,
    /// Equal error rate, percent.
    pub eer: f64,
    /// True-accept rate at a false-accept rate of at most 1e-3, percent.
    pub tar_at_far_1e3: f64,
    /// True-accept rate at a false-accept rate of at most 1e-4, percent.
    pub tar_at_far_1e4: f64,
}

/// Accuracy of "same when distance < t" over the selected pairs.
fn accuracy(scores: &[(f32, bool)], t: f32) -> f64 {
    let right = scores.iter().filter(|(d, same)| (*d < t) == *same).count();
    right as f64 / scores.len().max(1) as f64
}

/// The threshold with the best accuracy: midpoints between sorted distances.
pub fn best_threshold(scores: &[(f32, bool)]) -> f32 {
    let mut d: Vec<f32> = scores.iter().map(|s| s.0).collect();
    d.sort_by(f32::total_cmp);
    d.dedup();
    let mut best = (f64::MIN, 0.0f32);
    let candidates = d.windows(2).map(|w| (w[0] + w[1]) / 2.0).chain(d.last().map(|v| v + 1e-3));
    for t in candidates {
        let a = accuracy(scores, t);
        if a > best.0 {
            best = (a, t);
        }
    }
    best.1
}

/// Smallest false-accept-limited true-accept rate: the best TAR with FAR ≤ `far`.
fn tar_at_far(same: &[f32], diff: &[f32], far: f64) -> f64 {
    // Accepting distances < t; the largest t with at most far·|diff| impostors below it.
    let allowed = (far * diff.len() as f64).floor() as usize;
    let t = if allowed >= diff.len() { f32::INFINITY } else { diff[allowed] };
    same.iter().filter(|d| **d < t).count() as f64 / same.len().max(1) as f64
}

fn eer(same: &[f32], diff: &[f32]) -> f64 {
    // Sweep thresholds at every distance; EER where FRR and FAR cross.
    let mut best = (f64::MAX, 0.0);
    for t in same.iter().chain(diff) {
        let frr = same.iter().filter(|d| *d >= t).count() as f64 / same.len() as f64;
        let far = diff.iter().filter(|d| *d < t).count() as f64 / diff.len() as f64;
        if (frr - far).abs() < best.0 {
            best = ((frr - far).abs(), (frr + far) / 2.0);
        }
    }
    best.1
}

/// Runs the protocol on `(distance, same, fold)` triples.
pub fn evaluate(pairs: &[(f32, bool, usize)]) -> Evaluation {
    let folds = pairs.iter().map(|p| p.2 + 1).max().unwrap_or(0);
    let mut fold_accuracy = Vec::with_capacity(folds);
    let mut fold_threshold = Vec::with_capacity(folds);
    for k in 0..folds {
        let train: Vec<(f32, bool)> = pairs.iter().filter(|p| p.2 != k).map(|p| (p.0, p.1)).collect();
        let test: Vec<(f32, bool)> = pairs.iter().filter(|p| p.2 == k).map(|p| (p.0, p.1)).collect();
        let t = best_threshold(if folds > 1 { &train } else { &test });
        fold_threshold.push(t);
        fold_accuracy.push(100.0 * accuracy(&test, t));
    }
    let mean = fold_accuracy.iter().sum::<f64>() / folds.max(1) as f64;
    let var = fold_accuracy.iter().map(|a| (a - mean) * (a - mean)).sum::<f64>() / folds.max(1) as f64;
    let all: Vec<(f32, bool)> = pairs.iter().map(|p| (p.0, p.1)).collect();
    let mut same: Vec<f32> = pairs.iter().filter(|p| p.1).map(|p| p.0).collect();
    let mut diff: Vec<f32> = pairs.iter().filter(|p| !p.1).map(|p| p.0).collect();
    same.sort_by(f32::total_cmp);
    diff.sort_by(f32::total_cmp);
    Evaluation {
        accuracy_mean: mean,
        accuracy_std: var.sqrt(),
        fold_accuracy,
        fold_threshold,
        threshold: best_threshold(&all),
        eer: 100.0 * eer(&same, &diff),
        tar_at_far_1e3: 100.0 * tar_at_far(&same, &diff, 1e-3),
        tar_at_far_1e4: 100.0 * tar_at_far(&same, &diff, 1e-4),
    }
}

/// Two pipelines' decisions on the same pairs, each at its own fold thresholds
/// (chosen on the other nine folds, as [`evaluate`] does).
#[derive(Debug, Clone, PartialEq)]
pub struct PairedComparison {
    /// Pairs decided right by the first pipeline.
    pub right_a: usize,
    /// Pairs decided right by the second pipeline.
    pub right_b: usize,
    /// Pairs only the first decides right.
    pub only_a: usize,
    /// Pairs only the second decides right.
    pub only_b: usize,
    /// Exact two-sided McNemar p-value: how likely a split of the discordant
    /// pairs at least this uneven is when both pipelines are equally good.
    pub p_value: f64,
}

/// Error for [`compare_paired`]: the two runs did not score the same pairs.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("the two runs differ at pair {index}: label or fold do not match (same pairs.txt?)")]
pub struct PairsDiffer {
    /// Index of the first pair that differs.
    pub index: usize,
}

/// Compares two runs over the same `(distance, same, fold)` pairs, in the same
/// order: which pairs each decides right, and whether the difference is more
/// than chance (a difference of a few pairs in 6,000 usually is not).
pub fn compare_paired(a: &[(f32, bool, usize)], b: &[(f32, bool, usize)]) -> Result<PairedComparison, PairsDiffer> {
    if let Some(index) = (0..a.len().max(b.len())).find(|&i| a.get(i).map(|p| (p.1, p.2)) != b.get(i).map(|p| (p.1, p.2))) {
        return Err(PairsDiffer { index });
    }
    let right = |pairs: &[(f32, bool, usize)]| -> Vec<bool> {
        let thresholds = evaluate(pairs).fold_threshold;
        pairs.iter().map(|&(d, same, fold)| (d < thresholds[fold]) == same).collect()
    };
    let (ra, rb) = (right(a), right(b));
    let only_a = ra.iter().zip(&rb).filter(|(x, y)| **x && !**y).count();
    let only_b = ra.iter().zip(&rb).filter(|(x, y)| !**x && **y).count();
    Ok(PairedComparison {
        right_a: ra.iter().filter(|r| **r).count(),
        right_b: rb.iter().filter(|r| **r).count(),
        only_a,
        only_b,
        p_value: mcnemar_exact(only_a, only_b),
    })
}

/// Two-sided exact McNemar test: P(a split at least as uneven as `x`:`y`)
/// for `x + y` fair coin flips, in log space so thousands of pairs do not underflow.
pub fn mcnemar_exact(x: usize, y: usize) -> f64 {
    let (n, k) = (x + y, x.min(y));
    if n == 0 {
        return 1.0;
    }
    let mut ln_pmf = -(n as f64) * std::f64::consts::LN_2;
    let mut tail = 0.0;
    for i in 0..=k {
        tail += ln_pmf.exp();
        ln_pmf += ((n - i) as f64).ln() - ((i + 1) as f64).ln();
    }
    (2.0 * tail).min(1.0)
}

/// A threshold read off the impostor distribution at a target false-accept rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OperatingPoint {
    /// Target false-accept rate (share of impostor pairs accepted).
    pub far: f64,
    /// Accept when distance < threshold.
    pub threshold: f32,
    /// Share of genuine pairs accepted at that threshold.
    pub tar: f64,
}

/// Operating points over *all* pairs of the given embeddings (every
/// cross-identity pair is an impostor attempt), which resolves far smaller
/// false-accept rates than the 3,000 impostor pairs of pairs.txt.
/// `labels[i]` is the identity of item i; `dist(i, j)` their distance.
/// Returns the points and the numbers of genuine and impostor pairs.
pub fn operating_points(
    labels: &[usize],
    dist: impl Fn(usize, usize) -> f32,
    fars: &[f64],
) -> (Vec<OperatingPoint>, usize, usize) {
    let n = labels.len();
    let total = n * n.saturating_sub(1) / 2;
    let mut genuine = Vec::new();
    let genuine_pairs_estimate: usize = {
        let mut counts = std::collections::HashMap::new();
        labels.iter().for_each(|l| *counts.entry(l).or_insert(0usize) += 1);
        counts.values().map(|c| c * (c - 1) / 2).sum()
    };
    let impostors = total - genuine_pairs_estimate;
    // Keep the k smallest impostor distances, k for the loosest target.
    let k_max = fars.iter().map(|f| (f * impostors as f64).floor() as usize + 1).max().unwrap_or(1);
    let mut smallest = std::collections::BinaryHeap::with_capacity(k_max + 1);
    for i in 0..n {
        for j in i + 1..n {
            let d = dist(i, j);
            if labels[i] == labels[j] {
                genuine.push(d);
            } else if smallest.len() < k_max {
                smallest.push(OrdF32(d));
            } else if d < smallest.peek().map_or(f32::INFINITY, |m: &OrdF32| m.0) {
                smallest.pop();
                smallest.push(OrdF32(d));
            }
        }
    }
    let sorted: Vec<f32> = smallest.into_sorted_vec().into_iter().map(|v| v.0).collect();
    let points = fars
        .iter()
        .map(|far| {
            // Accepting d < t with t the (k+1)-th smallest impostor distance accepts at most k impostors.
            let k = (far * impostors as f64).floor() as usize;
            let threshold = sorted.get(k).copied().unwrap_or(f32::INFINITY);
            let tar = genuine.iter().filter(|d| **d < threshold).count() as f64 / genuine.len().max(1) as f64;
            OperatingPoint { far: *far, threshold, tar }
        })
        .collect();
    (points, genuine.len(), impostors)
}

/// f32 with a total order, for the heap.
struct OrdF32(f32);
impl PartialEq for OrdF32 {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for OrdF32 {}
impl PartialOrd for OrdF32 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrdF32 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[cfg(test)]
mod operating_point_tests {
    use super::*;

    #[test]
    fn thresholds_follow_the_impostor_distribution() {
        // Four people on a line: same person at distance 0.1, people 1.0 apart.
        let pos = [0.0f32, 0.1, 1.0, 1.1, 2.0, 2.1, 3.0, 3.1];
        let labels = [0, 0, 1, 1, 2, 2, 3, 3];
        let (points, genuine, impostors) = operating_points(&labels, |i, j| (pos[i] - pos[j]).abs(), &[0.0, 0.2]);
        assert_eq!((genuine, impostors), (4, 24));
        // FAR 0: threshold at the smallest impostor distance (0.9), everything genuine below it.
        assert!((points[0].threshold - 0.9).abs() < 1e-6 && points[0].tar == 1.0);
        // FAR 0.2 allows 4 of 24 impostors: the 5th smallest impostor distance.
        assert!((points[1].threshold - 1.0).abs() < 1e-6, "{points:?}");
    }
}

/// Enrolment study: people with at least `templates + 1` images enrol their
/// first `templates` images; their other images are genuine probes, and every
/// image of everyone else is an impostor probe. For a template rule `score`
/// (person distance from probe-to-template distances), returns the threshold
/// at the impostor false-accept rate `far` and the genuine accept rate there.
pub fn enrolment_study(
    labels: &[usize],
    dist: impl Fn(usize, usize) -> f32,
    templates: usize,
    score: impl Fn(&[f32]) -> f32,
    far: f64,
) -> Option<OperatingPoint> {
    let mut by_person: std::collections::BTreeMap<usize, Vec<usize>> = std::collections::BTreeMap::new();
    labels.iter().enumerate().for_each(|(i, l)| by_person.entry(*l).or_default().push(i));
    let enrolled: Vec<&Vec<usize>> = by_person.values().filter(|v| v.len() > templates).collect();
    if enrolled.is_empty() {
        return None;
    }
    let (mut genuine, mut impostor) = (Vec::new(), Vec::new());
    let mut buf = Vec::with_capacity(templates);
    for person in &enrolled {
        let gallery = &person[..templates];
        for probe in 0..labels.len() {
            buf.clear();
            buf.extend(gallery.iter().map(|t| dist(probe, *t)));
            let d = score(&buf);
            if labels[probe] == labels[gallery[0]] {
                if !gallery.contains(&probe) {
                    genuine.push(d);
                }
            } else {
                impostor.push(d);
            }
        }
    }
    impostor.sort_by(f32::total_cmp);
    let k = (far * impostor.len() as f64).floor() as usize;
    let threshold = impostor.get(k).copied().unwrap_or(f32::INFINITY);
    let tar = genuine.iter().filter(|d| **d < threshold).count() as f64 / genuine.len().max(1) as f64;
    Some(OperatingPoint { far, threshold, tar })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten folds of 30 genuine pairs at 0.30–0.33 and 30 impostor pairs at 0.70–0.73.
    fn separable_pairs() -> Vec<(f32, bool, usize)> {
        (0..10)
            .flat_map(|fold| {
                (0..30).flat_map(move |i| [(0.3 + i as f32 * 0.001, true, fold), (0.7 + i as f32 * 0.001, false, fold)])
            })
            .collect()
    }

    #[test]
    fn mcnemar_matches_the_binomial_tail() {
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        assert!((mcnemar_exact(11, 10) - 1.0).abs() < 1e-12, "a 11:10 split is what chance gives");
        // 2 · P(X ≤ 8) for X ~ Bin(24, ½) = 0.1515896…
        assert!((mcnemar_exact(16, 8) - 0.151_590).abs() < 1e-6, "{}", mcnemar_exact(16, 8));
        assert!((mcnemar_exact(0, 10) - 2.0 / 1024.0).abs() < 1e-12);
        // Thousands of discordant pairs: no underflow to 0 or NaN.
        let p = mcnemar_exact(3000, 3000);
        assert!(p > 0.9 && p <= 1.0, "{p}");
        assert!(mcnemar_exact(3200, 2800) < 1e-5);
    }

    #[test]
    fn paired_comparison_counts_the_pairs_each_run_alone_gets_right() {
        let a = separable_pairs();
        // b: one genuine pair per fold far beyond every threshold (wrong in b only).
        let mut b = a.clone();
        for fold in 0..10 {
            b[fold * 60].0 = 0.9;
        }
        let c = compare_paired(&a, &b).unwrap();
        assert_eq!((c.right_a, c.right_b, c.only_a, c.only_b), (600, 590, 10, 0));
        assert!((c.p_value - 2.0 / 1024.0).abs() < 1e-12);
        let same = compare_paired(&a, &a).unwrap();
        assert_eq!((same.only_a, same.only_b, same.p_value), (0, 0, 1.0));
        // Other pairs, or the same pairs in another order, are refused.
        let mut swapped = a.clone();
        swapped.swap(0, 1);
        assert_eq!(compare_paired(&a, &swapped), Err(PairsDiffer { index: 0 }));
        assert_eq!(compare_paired(&a, &a[..10]), Err(PairsDiffer { index: 10 }));
    }

    #[test]
    fn separable_scores_give_full_accuracy_and_a_threshold_between() {
        let e = evaluate(&separable_pairs());
        assert_eq!(e.accuracy_mean, 100.0);
        assert_eq!(e.accuracy_std, 0.0);
        assert!(e.threshold > 0.33 && e.threshold < 0.7, "{}", e.threshold);
        assert_eq!(e.eer, 0.0);
        assert_eq!(e.tar_at_far_1e3, 100.0);
    }

    #[test]
    fn one_overlapping_impostor_costs_accuracy_in_its_fold_only() {
        let mut pairs = Vec::new();
        for fold in 0..10 {
            for i in 0..10 {
                pairs.push((0.2 + i as f32 * 0.01, true, fold));
                pairs.push((0.8 + i as f32 * 0.01, false, fold));
            }
        }
        pairs.push((0.1, false, 3)); // an impostor closer than every genuine pair
        let e = evaluate(&pairs);
        assert!((e.fold_accuracy[3] - 100.0 * 20.0 / 21.0).abs() < 1e-9);
        assert!(e.fold_accuracy.iter().enumerate().all(|(k, a)| k == 3 || *a == 100.0));
        // FAR ≤ 1e-3 of 101 impostors allows none: the impostor at 0.1 forces t ≤ 0.1, TAR 0.
        assert_eq!(e.tar_at_far_1e3, 0.0);
    }
}
