//! `shape_predictor_5_face_landmarks.dat`: dlib's cascade of regression trees.

use crate::reader::Reader;
use crate::Result;

/// One split: go left when `f[idx1] - f[idx2] > threshold`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Split {
    /// First feature index.
    pub idx1: u32,
    /// Second feature index.
    pub idx2: u32,
    /// Threshold on the pixel difference.
    pub threshold: f32,
}

/// A complete binary tree: splits in breadth-first order, then its leaves.
#[derive(Debug, Clone)]
pub struct Tree {
    /// Internal nodes; children of i are 2i+1 and 2i+2.
    pub splits: Vec<Split>,
    /// Leaf values, each one shape delta (2 × landmarks values).
    pub leaves: Vec<Vec<f32>>,
}

/// One cascade level.
#[derive(Debug, Clone)]
pub struct Cascade {
    /// The trees, applied in order.
    pub trees: Vec<Tree>,
    /// Landmark each feature pixel is anchored to.
    pub anchors: Vec<u32>,
    /// Offset of each feature pixel from its anchor, in mean-shape units.
    pub deltas: Vec<[f32; 2]>,
}

/// The parsed predictor.
#[derive(Debug, Clone)]
pub struct ShapePredictor {
    /// Mean shape x0, y0, x1, y1, … in box-normalised units.
    pub initial_shape: Vec<f32>,
    /// Cascade levels, applied in order.
    pub cascades: Vec<Cascade>,
}

fn count(r: &mut Reader, limit: usize, what: &str) -> Result<usize> {
    let n = r.size()?;
    if n > limit {
        return Err(r.unexpected(format!("{what}: count {n} over {limit}")));
    }
    Ok(n)
}

/// Parses the whole file; every byte must be accounted for.
pub fn parse(bytes: &[u8]) -> Result<ShapePredictor> {
    let mut r = Reader::new(bytes);
    r.expect_int(1, "shape_predictor version")?;
    let (rows, cols, initial_shape) = r.matrix()?;
    if cols != 1 || rows % 2 != 0 || rows == 0 {
        return Err(r.unexpected(format!("initial shape {rows}×{cols}")));
    }
    let n_cascades = count(&mut r, 100, "cascades")?;
    let mut forests = Vec::with_capacity(n_cascades);
    for _ in 0..n_cascades {
        let n_trees = count(&mut r, 10_000, "trees")?;
        let mut trees = Vec::with_capacity(n_trees);
        for _ in 0..n_trees {
            let n_splits = count(&mut r, 1 << 16, "splits")?;
            let mut splits = Vec::with_capacity(n_splits);
            for _ in 0..n_splits {
                let idx1 = r.size()? as u32;
                let idx2 = r.size()? as u32;
                let threshold = r.float()? as f32;
                splits.push(Split { idx1, idx2, threshold });
            }
            let n_leaves = count(&mut r, 1 << 17, "leaves")?;
            if n_leaves != n_splits + 1 {
                return Err(r.unexpected(format!("{n_splits} splits but {n_leaves} leaves")));
            }
            let mut leaves = Vec::with_capacity(n_leaves);
            for _ in 0..n_leaves {
                let (lr, lc, values) = r.matrix()?;
                if lr != rows || lc != 1 {
                    return Err(r.unexpected("leaf size differs from shape size"));
                }
                leaves.push(values);
            }
            trees.push(Tree { splits, leaves });
        }
        forests.push(trees);
    }
    let n = count(&mut r, 100, "anchor lists")?;
    if n != n_cascades {
        return Err(r.unexpected("anchor lists differ from cascade count"));
    }
    let mut anchors = Vec::with_capacity(n);
    for _ in 0..n {
        let m = count(&mut r, 1 << 16, "anchors")?;
        anchors.push((0..m).map(|_| r.size().map(|v| v as u32)).collect::<Result<Vec<_>>>()?);
    }
    let n = count(&mut r, 100, "delta lists")?;
    if n != n_cascades {
        return Err(r.unexpected("delta lists differ from cascade count"));
    }
    let mut deltas = Vec::with_capacity(n);
    for _ in 0..n {
        let m = count(&mut r, 1 << 16, "deltas")?;
        let mut list = Vec::with_capacity(m);
        for _ in 0..m {
            // dlib::vector<float,2> writes x and y.
            list.push([r.float()? as f32, r.float()? as f32]);
        }
        deltas.push(list);
    }
    if !r.at_end() {
        return Err(r.unexpected("trailing bytes"));
    }
    let landmarks = (rows / 2) as u32;
    let mut cascades = Vec::with_capacity(n_cascades);
    for ((trees, anchors), deltas) in forests.into_iter().zip(anchors).zip(deltas) {
        let features = anchors.len() as u32;
        let bad_split = trees.iter().flat_map(|t| &t.splits).any(|s| s.idx1 >= features || s.idx2 >= features);
        if deltas.len() != anchors.len() || anchors.iter().any(|a| *a >= landmarks) || bad_split {
            return Err(r.unexpected("feature indices out of range"));
        }
        cascades.push(Cascade { trees, anchors, deltas });
    }
    Ok(ShapePredictor { initial_shape, cascades })
}
