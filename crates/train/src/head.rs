//! A trained metric head and its file: W (128 × 128) applied to embeddings,
//! so that distances become ‖W(a − b)‖.
//!
//! File layout (little endian): `FGMETRIC` · version u32 · metadata length u32
//! · metadata JSON · rows u32 · cols u32 · W row-major f32 · sha256 of all
//! the bytes before it. The head's id is the sha256 of its shape and weights,
//! so it names the metric, not the notes beside it.

use crate::TrainError;
use facegate_core::{Embedding, ModelId, EMBEDDING_DIM};
use sha2::{Digest, Sha256};
use std::path::Path;

const MAGIC: &[u8; 8] = b"FGMETRIC";

/// Inputs of a `last-layer` file: the network's pooled trunk features.
pub const LAST_LAYER_INPUTS: usize = 256;

/// The inputs a kind of file maps from, or `None` for an unknown kind.
fn inputs_of(kind: &str) -> Option<usize> {
    match kind {
        "head" => Some(EMBEDDING_DIM),
        "last-layer" => Some(LAST_LAYER_INPUTS),
        _ => None,
    }
}
const VERSION: u32 = 1;

/// What a trained-metric file says about itself.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetricMeta {
    /// What was trained: `head` (128 → 128 on embeddings) or `last-layer`
    /// (256 pooled features → 128, replacing the network's last layer).
    pub kind: String,
    /// The head's id (sha256 of shape and weights, hex); filled in on save.
    #[serde(default)]
    pub id: String,
    /// The embedding model the features came from; the head is refused on any other.
    pub base_model: ModelId,
    /// Recommended match threshold on the trained distances (from the
    /// training run's validation people, at a false-accept rate of 1e-4 like
    /// the door's default).
    pub threshold: f32,
    /// Training settings, figures and the command, as the trainer recorded them.
    #[serde(default)]
    pub training: serde_json::Value,
}

/// The linear map applied to every embedding (or, for `last-layer`, to the
/// pooled features in place of the network's last layer).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricHead {
    /// W, row-major 128 × inputs.
    pub weights: Vec<f32>,
    /// Notes: base model, threshold, training record.
    pub meta: MetricMeta,
}

impl MetricHead {
    /// The identity map (the pretrained metric).
    pub fn identity(base_model: ModelId, threshold: f32) -> Self {
        let mut weights = vec![0f32; EMBEDDING_DIM * EMBEDDING_DIM];
        (0..EMBEDDING_DIM).for_each(|i| weights[i * EMBEDDING_DIM + i] = 1.0);
        let meta =
            MetricMeta { kind: "head".into(), id: String::new(), base_model, threshold, training: serde_json::Value::Null };
        MetricHead { weights, meta }
    }

    /// A last layer starting from the network's own: `network` is its
    /// row-major `256 × 128` weights (embedding = pooled · network), stored
    /// transposed so that embedding = W · pooled.
    pub fn last_layer(base_model: ModelId, network: &[f32], threshold: f32) -> Self {
        assert_eq!(network.len(), LAST_LAYER_INPUTS * EMBEDDING_DIM, "the network's last layer is 256 × 128");
        let weights = (0..EMBEDDING_DIM * LAST_LAYER_INPUTS)
            .map(|k| network[(k % LAST_LAYER_INPUTS) * EMBEDDING_DIM + k / LAST_LAYER_INPUTS])
            .collect();
        let meta =
            MetricMeta { kind: "last-layer".into(), id: String::new(), base_model, threshold, training: serde_json::Value::Null };
        MetricHead { weights, meta }
    }

    /// The model id templates carry when this file is in use: a head leaves
    /// templates raw (the base model's id; no re-enrolment); a last layer
    /// makes new embeddings, so a gallery enrolled without it is refused.
    pub fn template_model(&self) -> ModelId {
        match self.meta.kind.as_str() {
            "head" => self.meta.base_model,
            _ => ModelId::of_file_bytes(format!("{} {} {}", self.meta.base_model.to_hex(), self.meta.kind, self.id()).as_bytes()),
        }
    }

    /// Whether this file replaces the network's last layer (else it maps embeddings).
    pub fn is_last_layer(&self) -> bool {
        self.meta.kind == "last-layer"
    }

    /// How many values W maps from (128 for a head, 256 for a last layer).
    pub fn inputs(&self) -> usize {
        self.weights.len() / EMBEDDING_DIM
    }

    /// W·e (a head, on an embedding).
    pub fn apply(&self, e: &Embedding) -> Embedding {
        self.apply_slice(e)
    }

    /// W·x for any input of [`MetricHead::inputs`] values.
    pub fn apply_slice(&self, x: &[f32]) -> Embedding {
        let n = self.inputs();
        debug_assert_eq!(x.len(), n);
        std::array::from_fn(|r| self.weights[r * n..(r + 1) * n].iter().zip(x).map(|(w, v)| w * v).sum())
    }

    /// The id of these weights (sha256 of shape and values, hex).
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        h.update((EMBEDDING_DIM as u32).to_le_bytes());
        h.update((self.inputs() as u32).to_le_bytes());
        self.weights.iter().for_each(|w| h.update(w.to_le_bytes()));
        facegate_core::hex(&h.finalize())
    }

    /// The file's bytes (the id in the metadata filled in).
    pub fn to_bytes(&self) -> Vec<u8> {
        let meta = MetricMeta { id: self.id(), ..self.meta.clone() };
        let json = serde_json::to_vec_pretty(&meta).expect("metadata serialises");
        let mut out = Vec::with_capacity(64 + json.len() + self.weights.len() * 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(&(EMBEDDING_DIM as u32).to_le_bytes());
        out.extend_from_slice(&(self.inputs() as u32).to_le_bytes());
        self.weights.iter().for_each(|w| out.extend_from_slice(&w.to_le_bytes()));
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum);
        out
    }

    /// Writes the file atomically (temporary file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        let io = |source| TrainError::Io(path.to_path_buf(), source);
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&self.to_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Reads a file's bytes; `path` names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, TrainError> {
        let corrupt = |why: String| TrainError::Corrupt { path: path.to_path_buf(), why };
        if !bytes.starts_with(MAGIC) {
            return Err(corrupt("not a facegate metric file".into()));
        }
        if bytes.len() < MAGIC.len() + 8 + 32 {
            return Err(corrupt("cut short".into()));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(body).as_slice() != sum {
            return Err(corrupt("checksum does not match: the file is damaged".into()));
        }
        let u32_at = |at: usize| body.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize);
        let version = u32_at(8).ok_or_else(|| corrupt("cut short".into()))?;
        if version != VERSION as usize {
            return Err(corrupt(format!("file version {version}, this program reads {VERSION}")));
        }
        let json_len = u32_at(12).ok_or_else(|| corrupt("cut short".into()))?;
        let json = body.get(16..16 + json_len).ok_or_else(|| corrupt("cut short".into()))?;
        let meta: MetricMeta = serde_json::from_slice(json).map_err(|e| corrupt(format!("metadata: {e}")))?;
        let at = 16 + json_len;
        let (rows, cols) = (u32_at(at).unwrap_or(0), u32_at(at + 4).unwrap_or(0));
        let Some(inputs) = inputs_of(&meta.kind) else {
            return Err(corrupt(format!("kind {:?} is neither a metric head nor a last layer", meta.kind)));
        };
        if (rows, cols) != (EMBEDDING_DIM, inputs) || body.len() != at + 8 + rows * cols * 4 {
            return Err(corrupt(format!(
                "weights of shape {rows}×{cols}, expected {EMBEDDING_DIM}×{inputs} for a {}",
                meta.kind
            )));
        }
        let weights = body[at + 8..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
        let head = MetricHead { weights, meta };
        if head.id() != head.meta.id || head.weights.iter().any(|w| !w.is_finite()) {
            return Err(corrupt("weights do not match the id the file records".into()));
        }
        Ok(head)
    }

    /// Loads a file and checks it was trained for `base_model`.
    pub fn load(path: &Path, base_model: &ModelId) -> Result<Self, TrainError> {
        let bytes = std::fs::read(path).map_err(|source| TrainError::Io(path.to_path_buf(), source))?;
        let head = Self::from_bytes(&bytes, path)?;
        if &head.meta.base_model != base_model {
            return Err(TrainError::WrongBase {
                path: path.to_path_buf(),
                expected: base_model.to_hex(),
                found: head.meta.base_model.to_hex(),
            });
        }
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ModelId {
        ModelId::of_file_bytes(b"model")
    }

    fn head() -> MetricHead {
        let mut h = MetricHead::identity(base(), 0.5);
        h.weights.iter_mut().enumerate().for_each(|(i, w)| *w += (i as f32 * 0.37).sin() * 0.01);
        h
    }

    #[test]
    fn saving_and_loading_gives_the_same_distances_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.fgmetric");
        let h = head();
        h.save(&path).unwrap();
        let back = MetricHead::load(&path, &base()).unwrap();
        assert_eq!(back.weights, h.weights);
        assert_eq!(back.meta.id, h.id());
        let (a, b): (Embedding, Embedding) =
            (std::array::from_fn(|i| (i as f32).cos()), std::array::from_fn(|i| (i as f32 * 0.5).sin()));
        let d = |m: &MetricHead| facegate_core::distance(&m.apply(&a), &m.apply(&b));
        assert_eq!(d(&back).to_bits(), d(&h).to_bits());
        assert_eq!(MetricHead::identity(base(), 0.5).apply(&a), a);
    }

    #[test]
    fn a_last_layer_starts_as_the_networks_own_and_names_a_new_template_model() {
        // A network whose last layer is some 256 × 128 matrix.
        let network: Vec<f32> =
            (0..LAST_LAYER_INPUTS * EMBEDDING_DIM).map(|k| ((k * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        let layer = MetricHead::last_layer(base(), &network, 0.6);
        let pooled: Vec<f32> = (0..LAST_LAYER_INPUTS).map(|i| (i as f32 * 0.1).sin().abs()).collect();
        let by_network: Vec<f32> = (0..EMBEDDING_DIM)
            .map(|j| (0..LAST_LAYER_INPUTS).map(|i| pooled[i] * network[i * EMBEDDING_DIM + j]).sum())
            .collect();
        let worst = layer.apply_slice(&pooled).iter().zip(&by_network).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-4, "{worst}");
        assert_eq!(layer.inputs(), LAST_LAYER_INPUTS);
        // New embeddings, so a new template model; a head keeps the base's.
        assert_ne!(layer.template_model(), base());
        assert_eq!(head().template_model(), base());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.fgmetric");
        layer.save(&path).unwrap();
        assert_eq!(MetricHead::load(&path, &base()).unwrap().weights, layer.weights);
        // A file whose kind and shape disagree is refused.
        let mut lying = head();
        lying.meta.kind = "last-layer".into();
        std::fs::write(&path, lying.to_bytes()).unwrap();
        assert!(MetricHead::load(&path, &base()).unwrap_err().to_string().contains("expected 128×256"));
    }

    #[test]
    fn a_damaged_or_foreign_file_or_another_base_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.fgmetric");
        let bytes = head().to_bytes();
        let mut flipped = bytes.clone();
        let at = bytes.len() - 100;
        flipped[at] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        let err = MetricHead::load(&path, &base()).unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
        std::fs::write(&path, &bytes[..bytes.len() - 7]).unwrap();
        assert!(matches!(MetricHead::load(&path, &base()), Err(TrainError::Corrupt { .. })));
        std::fs::write(&path, b"PNG....").unwrap();
        assert!(MetricHead::load(&path, &base()).unwrap_err().to_string().contains("not a facegate metric file"));
        std::fs::write(&path, &bytes).unwrap();
        let other = ModelId::of_file_bytes(b"another model");
        let err = MetricHead::load(&path, &other).unwrap_err();
        assert!(matches!(err, TrainError::WrongBase { .. }), "{err}");
        assert!(err.to_string().contains("train again"));
    }
}
