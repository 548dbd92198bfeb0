//! Verification and open-set figures on a set of labelled embeddings: what
//! training validates on and what the benchmark reports.

use facegate_core::{distance, Embedding};

/// Figures over every pair of a set of photos.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PairFigures {
    /// Genuine (same-person) pairs.
    pub genuine: usize,
    /// Impostor pairs.
    pub impostor: usize,
    /// Equal error rate, percent.
    pub eer: f64,
    /// True-accept rate at a false-accept rate ≤ 1e-3, percent.
    pub tar_at_far_1e3: f64,
    /// True-accept rate at a false-accept rate ≤ 1e-4, percent.
    pub tar_at_far_1e4: f64,
    /// Accept below this for FAR ≤ 1e-3.
    pub threshold_far_1e3: f32,
    /// Accept below this for FAR ≤ 1e-4.
    pub threshold_far_1e4: f32,
    /// The threshold with the fewest errors when genuine and impostor pairs
    /// weigh the same (LFW's balanced pairs).
    pub threshold_balanced: f32,
}

/// Accepting `d < t` with t the (k+1)-th smallest impostor distance admits at most k impostors.
fn threshold_at_far(impostor_sorted: &[f32], far: f64) -> f32 {
    let k = (far * impostor_sorted.len() as f64).floor() as usize;
    impostor_sorted.get(k).copied().unwrap_or(f32::INFINITY)
}

fn share_below(sorted: &[f32], t: f32) -> f64 {
    sorted.partition_point(|d| *d < t) as f64 / sorted.len().max(1) as f64
}

/// Figures from genuine and impostor distances.
pub fn pair_figures(mut genuine: Vec<f32>, mut impostor: Vec<f32>) -> PairFigures {
    genuine.sort_by(f32::total_cmp);
    impostor.sort_by(f32::total_cmp);
    let (t3, t4) = (threshold_at_far(&impostor, 1e-3), threshold_at_far(&impostor, 1e-4));
    // Sweep every genuine distance as a threshold: FRR falls, FAR rises.
    let mut eer = (f64::MAX, 100.0);
    let mut balanced = (f64::MAX, 0.0f32);
    for (i, &d) in genuine.iter().enumerate() {
        let t = d + f32::EPSILON.max(d.abs() * 1e-6);
        let frr = 1.0 - (i + 1) as f64 / genuine.len() as f64;
        let far = share_below(&impostor, t);
        if (frr - far).abs() < eer.0 {
            eer = ((frr - far).abs(), 50.0 * (frr + far));
        }
        if frr + far < balanced.0 {
            balanced = (frr + far, t);
        }
    }
    PairFigures {
        genuine: genuine.len(),
        impostor: impostor.len(),
        eer: eer.1,
        tar_at_far_1e3: 100.0 * share_below(&genuine, t3),
        tar_at_far_1e4: 100.0 * share_below(&genuine, t4),
        threshold_far_1e3: t3,
        threshold_far_1e4: t4,
        threshold_balanced: balanced.1,
    }
}

/// Figures over every pair of `embeddings` (`labels[i]` is item i's person).
pub fn all_pairs(labels: &[usize], embeddings: &[Embedding]) -> PairFigures {
    let (mut genuine, mut impostor) = (Vec::new(), Vec::new());
    for i in 0..embeddings.len() {
        for j in i + 1..embeddings.len() {
            let d = distance(&embeddings[i], &embeddings[j]);
            if labels[i] == labels[j] {
                genuine.push(d)
            } else {
                impostor.push(d)
            }
        }
    }
    pair_figures(genuine, impostor)
}

/// One open-set search: the nearest enrolled person's distance and whether
/// that person is the probe's own (always false for a stranger).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Search {
    /// Distance to the nearest template.
    pub nearest: f32,
    /// The nearest template is the probe's own person.
    pub right_person: bool,
}

/// Open-set identification of a set of photos: the first photo of every
/// other person with two or more photos is enrolled; the rest of those
/// people's photos are mated probes; the photos of the people left out are
/// strangers. Returns (mated searches, stranger searches).
pub fn open_set_searches(labels: &[usize], embeddings: &[Embedding]) -> (Vec<Search>, Vec<Search>) {
    let mut first: std::collections::BTreeMap<usize, Vec<usize>> = std::collections::BTreeMap::new();
    labels.iter().enumerate().for_each(|(i, l)| first.entry(*l).or_default().push(i));
    let people: Vec<&Vec<usize>> = first.values().collect();
    let (mut gallery, mut mated, mut strangers) = (Vec::new(), Vec::new(), Vec::new());
    let mut enrol_next = true;
    for photos in people {
        if photos.len() >= 2 && enrol_next {
            gallery.push(photos[0]);
            mated.extend_from_slice(&photos[1..]);
        } else {
            strangers.extend_from_slice(photos);
        }
        if photos.len() >= 2 {
            enrol_next = !enrol_next;
        }
    }
    let search = |probe: usize| {
        let best = gallery
            .iter()
            .map(|&g| (distance(&embeddings[probe], &embeddings[g]), labels[g]))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .expect("a gallery");
        Search { nearest: best.0, right_person: best.1 == labels[probe] }
    };
    if gallery.is_empty() {
        return (Vec::new(), Vec::new());
    }
    (mated.into_iter().map(search).collect(), strangers.into_iter().map(search).collect())
}

/// FNIR (percent) at the threshold where at most `fpir` of the strangers are
/// accepted as someone; also returns that threshold. A mated probe is missed
/// when its nearest person is not its own or is beyond the threshold.
pub fn fnir_at_fpir(mated: &[Search], strangers: &[Search], fpir: f64) -> (f64, f32) {
    let mut s: Vec<f32> = strangers.iter().map(|s| s.nearest).collect();
    s.sort_by(f32::total_cmp);
    let t = threshold_at_far(&s, fpir);
    let hits = mated.iter().filter(|m| m.right_person && m.nearest < t).count();
    (100.0 * (1.0 - hits as f64 / mated.len().max(1) as f64), t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separated_sets_have_no_errors_and_overlap_shows() {
        let f = pair_figures(vec![0.1, 0.2, 0.3], vec![0.7, 0.8, 0.9, 1.0]);
        assert_eq!((f.eer, f.tar_at_far_1e3), (0.0, 100.0));
        assert!(f.threshold_balanced > 0.3 && f.threshold_balanced < 0.7);
        let f = pair_figures(vec![0.1, 0.2, 0.8, 0.9], vec![0.15, 0.7, 0.85, 1.0]);
        assert!(f.eer > 20.0 && f.eer < 60.0, "{f:?}");
        assert!(f.tar_at_far_1e3 < 50.0);
    }

    #[test]
    fn open_set_counts_strangers_and_wrong_people() {
        let e = |x: f32| {
            let mut v = [0f32; 128];
            v[0] = x;
            v
        };
        // Persons 0 and 2 enrolled (the first and third with two photos), 1 and 3 strangers.
        let labels = [0, 0, 1, 1, 2, 2, 3];
        let emb = [e(0.0), e(0.1), e(5.0), e(5.1), e(10.0), e(10.2), e(0.5)];
        let (mated, strangers) = open_set_searches(&labels, &emb);
        assert_eq!(mated.len(), 2);
        assert_eq!(strangers.len(), 3);
        assert!(mated.iter().all(|m| m.right_person));
        // The stranger at 0.5 is 0.5 from person 0: accepting it (FPIR 1/3) needs t > 0.5.
        let (fnir, t) = fnir_at_fpir(&mated, &strangers, 0.0);
        assert!((t - 0.5).abs() < 1e-6 && fnir == 0.0, "{t} {fnir}");
    }
}
