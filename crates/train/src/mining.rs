//! Online triplet selection within a batch (FaceNet §3.2): for every
//! anchor–positive pair, a **semi-hard** negative: farther from the anchor
//! than the positive, the closest such. The hardest negatives (closer than
//! the positive) collapse training early on, so they are used only when no
//! negative is farther than the positive, and then the least hard of them.

/// Indices into the batch of one triplet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Triplet {
    /// The anchor.
    pub anchor: usize,
    /// A photo of the anchor's person.
    pub positive: usize,
    /// A photo of someone else.
    pub negative: usize,
}

/// Squared Euclidean distances between all rows of `x` (n rows of `dim`), row-major n×n.
pub fn squared_distances(x: &[f32], dim: usize) -> Vec<f32> {
    let n = x.len() / dim;
    let mut d = vec![0f32; n * n];
    for i in 0..n {
        for j in i + 1..n {
            let v: f32 = x[i * dim..(i + 1) * dim].iter().zip(&x[j * dim..(j + 1) * dim]).map(|(a, b)| (a - b) * (a - b)).sum();
            d[i * n + j] = v;
            d[j * n + i] = v;
        }
    }
    d
}

/// The semi-hard negative for anchor `a` at squared positive distance `ap`:
/// the nearest negative farther than `ap`; when there is none, the farthest
/// negative. `None` when the batch has no other person.
pub fn semi_hard_negative(d2: &[f32], labels: &[usize], a: usize, ap: f32) -> Option<usize> {
    let n = labels.len();
    let negatives = (0..n).filter(|&j| labels[j] != labels[a]);
    let outside = negatives.clone().filter(|&j| d2[a * n + j] > ap).min_by(|&i, &j| d2[a * n + i].total_cmp(&d2[a * n + j]));
    outside.or_else(|| negatives.max_by(|&i, &j| d2[a * n + i].total_cmp(&d2[a * n + j])))
}

/// The hardest negative of anchor `a`: the nearest photo of anyone else.
pub fn hardest_negative(d2: &[f32], labels: &[usize], a: usize) -> Option<usize> {
    let n = labels.len();
    (0..n).filter(|&j| labels[j] != labels[a]).min_by(|&i, &j| d2[a * n + i].total_cmp(&d2[a * n + j]))
}

/// Every anchor–positive pair of the batch with its semi-hard negative,
/// keeping only triplets that violate the margin (the others have zero loss
/// and no gradient).
pub fn semi_hard_triplets(d2: &[f32], labels: &[usize], margin: f32) -> Vec<Triplet> {
    let n = labels.len();
    let mut out = Vec::new();
    for a in 0..n {
        for p in (0..n).filter(|&p| p != a && labels[p] == labels[a]) {
            let ap = d2[a * n + p];
            if let Some(neg) = semi_hard_negative(d2, labels, a, ap) {
                if ap - d2[a * n + neg] + margin > 0.0 {
                    out.push(Triplet { anchor: a, positive: p, negative: neg });
                }
            }
        }
    }
    out
}

/// The triplet loss of the given triplets on squared distances:
/// mean of max(d²(a,p) − d²(a,n) + margin, 0); 0 for no triplets.
pub fn triplet_loss(d2: &[f32], n: usize, triplets: &[Triplet], margin: f32) -> f32 {
    let sum: f32 =
        triplets.iter().map(|t| (d2[t.anchor * n + t.positive] - d2[t.anchor * n + t.negative] + margin).max(0.0)).sum();
    sum / triplets.len().max(1) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points on a line (dim 1).
    fn line(xs: &[f32]) -> Vec<f32> {
        squared_distances(xs, 1)
    }

    #[test]
    fn picks_the_semi_hard_and_the_hardest_negative() {
        // Anchor 0 at 0, positive 1 at 0.5 (d² 0.25); negatives at 0.3 (d² 0.09,
        // hard), 0.6 (0.36, semi-hard), 0.8 (0.64, semi-hard but farther), 3.
        let d2 = line(&[0.0, 0.5, 0.3, 0.6, 0.8, 3.0]);
        let labels = [0, 0, 1, 2, 3, 4];
        assert_eq!(semi_hard_negative(&d2, &labels, 0, d2[1]), Some(3));
        assert_eq!(hardest_negative(&d2, &labels, 0), Some(2));
        // With every negative closer than the positive, the least hard one.
        let d2 = line(&[0.0, 2.0, 0.3, -0.5]);
        assert_eq!(semi_hard_negative(&d2, &[0, 0, 1, 2], 0, d2[1]), Some(3));
        assert_eq!(semi_hard_negative(&d2, &[0, 0, 0, 0], 0, d2[1]), None);
    }

    #[test]
    fn the_loss_is_zero_when_every_margin_holds() {
        // Two tight clusters 10 apart: every negative beyond d²(a,p) + margin.
        let xs = [0.0, 0.1, 10.0, 10.1];
        let labels = [0, 0, 1, 1];
        let d2 = line(&xs);
        assert!(semi_hard_triplets(&d2, &labels, 0.2).is_empty());
        let all: Vec<Triplet> = (0..4)
            .flat_map(|a| (0..4).map(move |p| (a, p)))
            .filter(|&(a, p)| a != p && labels[a] == labels[p])
            .map(|(a, p)| Triplet { anchor: a, positive: p, negative: hardest_negative(&d2, &labels, a).unwrap() })
            .collect();
        assert_eq!(triplet_loss(&d2, 4, &all, 0.2), 0.0);
        // Clusters closer than the margin: every pair violates it.
        let d2 = line(&[0.0, 0.1, 0.3, 0.4]);
        let t = semi_hard_triplets(&d2, &labels, 0.2);
        assert_eq!(t.len(), 4);
        let loss = triplet_loss(&d2, 4, &t, 0.2);
        assert!(loss > 0.0 && loss < 0.2, "{loss}");
    }
}
