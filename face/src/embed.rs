//! Face chip → 128-d embedding with dlib's ResNet, run by tract.

use crate::chip::CHIP_SIZE;
use crate::FaceError;
use image::RgbImage;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use tract_onnx::prelude::*;

/// Length of an embedding.
pub const EMBEDDING_DIM: usize = 128;

/// A face embedding (not normalised; dlib's distances are Euclidean on these).
pub type Embedding = [f32; EMBEDDING_DIM];

/// Which model file runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// f32 weights.
    F32,
    /// int8 per-channel weights (the shipped default).
    #[default]
    Int8,
}

impl Precision {
    /// "f32" or "int8".
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
        }
    }

    /// The model's file name inside the models directory.
    pub fn file_name(self) -> &'static str {
        match self {
            Precision::F32 => "face_resnet_f32.onnx",
            Precision::Int8 => "face_resnet_int8.onnx",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Precision::F32),
            "int8" => Ok(Precision::Int8),
            other => Err(format!("unknown precision {other:?} (expected f32 or int8)")),
        }
    }
}

type Plan = TypedRunnableModel;

/// Runs the embedding network; one optimised plan per batch size, built on first use.
pub struct Embedder {
    onnx: Vec<u8>,
    plans: Mutex<HashMap<usize, Arc<Plan>>>,
    model_id: String,
    precision: Precision,
}

fn inference(e: impl std::fmt::Display) -> FaceError {
    FaceError::Inference(e.to_string())
}

impl Embedder {
    /// Loads `<models_dir>/<precision file>`.
    pub fn load(models_dir: &std::path::Path, precision: Precision) -> Result<Self, FaceError> {
        let path = models_dir.join(precision.file_name());
        let bytes = std::fs::read(&path).map_err(|source| FaceError::Io { path: path.clone(), source })?;
        Self::from_bytes(&bytes, precision)
    }

    /// The model id of `<models_dir>/<precision file>` without loading the network.
    pub fn model_id_of(models_dir: &std::path::Path, precision: Precision) -> Result<String, FaceError> {
        let path = models_dir.join(precision.file_name());
        let bytes = std::fs::read(&path).map_err(|source| FaceError::Io { path: path.clone(), source })?;
        Ok(hex(&Sha256::digest(&bytes)))
    }

    /// Loads an ONNX model from memory.
    pub fn from_bytes(bytes: &[u8], precision: Precision) -> Result<Self, FaceError> {
        let model_id = hex(&Sha256::digest(bytes));
        let embedder = Embedder { onnx: bytes.to_vec(), plans: Mutex::new(HashMap::new()), model_id, precision };
        embedder.plan(1)?; // fail at load time, not on the first face
        Ok(embedder)
    }

    /// sha256 of the model file: templates made with another model are not comparable.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// The precision this embedder runs.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    fn plan(&self, batch: usize) -> Result<Arc<Plan>, FaceError> {
        let mut plans = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = plans.get(&batch) {
            return Ok(p.clone());
        }
        let s = CHIP_SIZE as usize;
        let plan = tract_onnx::onnx()
            .model_for_read(&mut &self.onnx[..])
            .and_then(|m| m.with_input_fact(0, f32::fact([batch, 3, s, s]).into()))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| FaceError::Model(format!("cannot load embedding network: {e}")))?;
        plans.insert(batch, plan.clone());
        Ok(plan)
    }

    /// Embeds one aligned chip.
    pub fn embed(&self, chip: &RgbImage) -> Result<Embedding, FaceError> {
        Ok(self.embed_batch(std::slice::from_ref(chip))?[0])
    }

    /// Embeds several chips in one run of the network.
    pub fn embed_batch(&self, chips: &[RgbImage]) -> Result<Vec<Embedding>, FaceError> {
        if chips.is_empty() {
            return Ok(Vec::new());
        }
        let s = CHIP_SIZE as usize;
        let mut planar = vec![0f32; chips.len() * 3 * s * s];
        for (i, chip) in chips.iter().enumerate() {
            if chip.width() != CHIP_SIZE || chip.height() != CHIP_SIZE {
                return Err(FaceError::Model(format!("chip is {}×{}, expected {s}×{s}", chip.width(), chip.height())));
            }
            let dst = &mut planar[i * 3 * s * s..(i + 1) * 3 * s * s];
            for (p, px) in chip.as_raw().chunks_exact(3).enumerate() {
                for ch in 0..3 {
                    dst[ch * s * s + p] = px[ch] as f32;
                }
            }
        }
        let input = Tensor::from_shape(&[chips.len(), 3, s, s], &planar).map_err(inference)?;
        let out = self.plan(chips.len())?.run(tvec!(input.into_tvalue())).map_err(inference)?;
        let view = out[0].to_plain_array_view::<f32>().map_err(inference)?;
        let flat: Vec<f32> = view.iter().copied().collect();
        if flat.len() != chips.len() * EMBEDDING_DIM {
            return Err(FaceError::Model(format!("network gave {} values for {} chips", flat.len(), chips.len())));
        }
        Ok(flat.chunks_exact(EMBEDDING_DIM).map(|c| c.try_into().expect("128 values")).collect())
    }
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
