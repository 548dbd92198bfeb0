//! Face chip → 128-d embedding with dlib's ResNet or SFace, run by tract.

use crate::arcface::ARCFACE_SIZE;
use crate::chip::CHIP_SIZE;
use crate::model_files::ModelDir;
use crate::FaceError;
pub use facegate_core::{Embedding, ModelId, EMBEDDING_DIM};
use image::RgbImage;
use tract_onnx::prelude::*;

/// Which model file runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// f32 weights.
    F32,
    /// int8 per-channel weights (the shipped default), computed in f32.
    #[default]
    Int8,
    /// Computed in int8: u8 activations with calibrated scales, int8
    /// per-channel weights, i32 accumulation (tract's quantized conv).
    QInt8,
}

impl Precision {
    /// "f32" or "int8".
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
            Precision::QInt8 => "qint8",
        }
    }

    /// The model's file name inside the models directory.
    pub fn file_name(self) -> &'static str {
        match self {
            Precision::F32 => "face_resnet_f32.onnx",
            Precision::Int8 => "face_resnet_int8.onnx",
            Precision::QInt8 => "face_resnet_qint8.onnx",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Precision::F32),
            "int8" => Ok(Precision::Int8),
            "qint8" => Ok(Precision::QInt8),
            other => Err(format!("unknown precision {other:?} (expected f32, int8 or qint8)")),
        }
    }
}

/// SFace's door threshold, a Euclidean distance between unit-length
/// embeddings (√(2 − 2·cos)). Measured with `host-tool --network sface bench
/// lfw --detector yunet --no-mirror --jitter 0` over all 29.6 M impostor
/// pairs among LFW View 2's 7,701 images: one photo against one template
/// reaches FAR 1e-3 at 1.131 (TAR 99.1 %), 1e-4 at 1.081 (TAR 97.9 %) and 1e-5
/// at 1.031 (TAR 95.6 %). A door with many people enrolled needs about 1e-5
/// per comparison (1,000 people, 1 stranger in 100 let in), so 1.03; the
/// device's agreeing frames come on top. (10-fold accuracy threshold: 1.153.)
pub const SFACE_THRESHOLD_DOOR: f32 = 1.03;

/// Which embedding network runs. Their templates are not comparable: a
/// gallery records the model id of the file that made each template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Network {
    /// dlib's ResNet (CC0): 150×150 chip of dlib's five landmarks.
    Dlib,
    /// OpenCV zoo's SFace (Apache-2.0): 112×112 ArcFace chip. The shipped
    /// default: TAR 95.6 % at FAR 1e-5 on LFW against dlib's 40.6 %, for a
    /// door frame 1.5× dlib's (docs/benchmarks.md).
    #[default]
    Sface,
}

impl Network {
    /// Both, in the order `--network both` computes them.
    pub const ALL: [Network; 2] = [Network::Dlib, Network::Sface];

    /// The other network (a gallery may hold both networks' templates).
    pub fn other(self) -> Network {
        match self {
            Network::Dlib => Network::Sface,
            Network::Sface => Network::Dlib,
        }
    }

    /// Whether its convolutions run channel-last (NHWC), as the liveness
    /// networks run: SFace's depthwise layers are vectorised over channels
    /// there (21.0 → 19.6 ms per face on one x86 core, the same values);
    /// dlib's ResNet has no depthwise layer to gain.
    pub fn channel_last(self) -> bool {
        self == Network::Sface
    }

    /// The least sharpness (variance of the Laplacian, [`crate::enrol::sharpness`])
    /// of this network's chip that enrolment accepts: the chips differ in
    /// size and crop, so the same photo measures differently on each.
    pub fn min_sharpness(self) -> f32 {
        match self {
            Network::Dlib => crate::enrol::MIN_SHARPNESS,
            Network::Sface => crate::enrol::MIN_SHARPNESS_SFACE,
        }
    }

    /// "dlib" or "sface".
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Dlib => "dlib",
            Network::Sface => "sface",
        }
    }

    /// The door's default match threshold for this network's embeddings,
    /// chosen from measured data (docs/benchmarks.md): dlib's
    /// [`THRESHOLD_DOOR`](facegate_core::matching::THRESHOLD_DOOR); SFace's
    /// [`SFACE_THRESHOLD_DOOR`].
    pub fn door_threshold(self) -> f32 {
        match self {
            Network::Dlib => facegate_core::matching::THRESHOLD_DOOR,
            Network::Sface => SFACE_THRESHOLD_DOOR,
        }
    }

    /// The threshold that maximises LFW View 2 accuracy (10 folds): for 1:1
    /// checks a person asks for, and for telling an odd enrolment photo.
    /// dlib: [`THRESHOLD_BALANCED`](facegate_core::matching::THRESHOLD_BALANCED);
    /// SFace: 1.153 (the door-like pipeline's ten fold thresholds lie in 1.152–1.169).
    pub fn balanced_threshold(self) -> f32 {
        match self {
            Network::Dlib => facegate_core::matching::THRESHOLD_BALANCED,
            Network::Sface => 1.153,
        }
    }

    /// The side of the chip the network reads.
    pub fn chip_size(self) -> u32 {
        match self {
            Network::Dlib => CHIP_SIZE,
            Network::Sface => ARCFACE_SIZE,
        }
    }

    /// The precision that runs when `requested` is asked for: SFace ships one
    /// file, f32 (its int8 weights expanded; see docs/benchmarks.md).
    pub fn precision(self, requested: Precision) -> Precision {
        match self {
            Network::Dlib => requested,
            Network::Sface => Precision::F32,
        }
    }

    /// The model's file name inside the models directory, for `requested`
    /// precision (see [`Network::precision`]).
    pub fn file_name(self, requested: Precision) -> &'static str {
        match self {
            Network::Dlib => requested.file_name(),
            Network::Sface => "face_sface_f32.onnx",
        }
    }
}

impl std::str::FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "dlib" => Ok(Network::Dlib),
            "sface" => Ok(Network::Sface),
            other => Err(format!("unknown network {other:?} (expected dlib or sface)")),
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

type Plan = TypedRunnableModel;

/// Runs the embedding network with one optimised plan for a single chip.
///
/// Several chips run one after another: measured with tract 0.23 on x86, a
/// batch of two costs 12.0 ms per chip against 9.5 ms for single runs, and
/// every batch size would need its own plan (~23 MB of weights each).
pub struct Embedder {
    plan: Arc<Plan>,
    model_id: ModelId,
    network_id: ModelId,
    network: Network,
    precision: Precision,
    /// A retrained last layer run on the pooled features in place of the network's.
    last_layer: Option<Vec<f32>>,
}

/// A retrained last layer (`host-tool train --kind last-layer`) to run in
/// place of the network's own: its embeddings differ from the network's, so
/// templates made with it carry their own model id.
#[derive(Debug, Clone, PartialEq)]
pub struct LastLayer {
    /// W, row-major `EMBEDDING_DIM × POOLED_DIM` (embedding = W · pooled).
    pub weights: Vec<f32>,
    /// The model id of templates made with this layer.
    pub template_model: ModelId,
}

fn inference(e: impl std::fmt::Display) -> FaceError {
    FaceError::Inference(e.to_string())
}

impl Embedder {
    /// Loads the network's file for `precision`, checked against the directory's MANIFEST.
    pub fn load(models_dir: &std::path::Path, network: Network, precision: Precision) -> Result<Self, FaceError> {
        let bytes = ModelDir::open(models_dir)?.read(network.file_name(precision))?;
        Self::from_bytes(&bytes, network, precision)
    }

    /// The model id of the network's file for `precision` as MANIFEST records
    /// it, without reading or hashing the network (loading it checks the file).
    pub fn model_id_of(models_dir: &std::path::Path, network: Network, precision: Precision) -> Result<ModelId, FaceError> {
        ModelDir::open(models_dir)?.recorded_id(network.file_name(precision))
    }

    /// The network and precision whose shipped file has id `model`, as the
    /// directory's MANIFEST records them (read once); `None` for another model.
    pub fn find_model(models_dir: &std::path::Path, model: ModelId) -> Result<Option<(Network, Precision)>, FaceError> {
        let dir = ModelDir::open(models_dir)?;
        let mut shipped =
            Network::ALL.into_iter().flat_map(|n| [Precision::Int8, Precision::F32, Precision::QInt8].map(|p| (n, p)));
        Ok(shipped.find(|(n, p)| dir.recorded_id(n.file_name(*p)).ok() == Some(model)))
    }

    /// Loads an ONNX model of `network` from memory.
    pub fn from_bytes(bytes: &[u8], network: Network, precision: Precision) -> Result<Self, FaceError> {
        let s = network.chip_size() as usize;
        let plan = crate::prelu::onnx()
            .model_for_read(&mut &bytes[..])
            .and_then(|m| m.with_input_fact(0, f32::fact([1, 3, s, s]).into()))
            .and_then(|m| m.into_typed())
            .and_then(|m| m.into_decluttered())
            .and_then(|m| if network.channel_last() { crate::liveness::channel_last(m) } else { Ok(m) })
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| FaceError::Model(format!("cannot load the {network} embedding network: {e}")))?;
        let id = ModelId::of_file_bytes(bytes);
        Ok(Embedder { plan, model_id: id, network_id: id, network, precision: network.precision(precision), last_layer: None })
    }

    /// Loads an ONNX model from memory with `layer` in place of its last layer.
    pub fn with_last_layer(bytes: &[u8], precision: Precision, layer: LastLayer) -> Result<Self, FaceError> {
        if layer.weights.len() != EMBEDDING_DIM * POOLED_DIM || layer.weights.iter().any(|w| !w.is_finite()) {
            return Err(FaceError::Model(format!(
                "a last layer needs {EMBEDDING_DIM}×{POOLED_DIM} finite weights, got {}",
                layer.weights.len()
            )));
        }
        let (plan, _) = cut_before_last_layer(bytes)?;
        Ok(Embedder {
            plan,
            model_id: layer.template_model,
            network_id: ModelId::of_file_bytes(bytes),
            network: Network::Dlib,
            precision,
            last_layer: Some(layer.weights),
        })
    }

    /// sha256 of the model file (or a retrained last layer's template id):
    /// templates made with another model are not comparable.
    pub fn model_id(&self) -> ModelId {
        self.model_id
    }

    /// sha256 of the network's file, with or without a retrained last layer.
    pub fn network_id(&self) -> ModelId {
        self.network_id
    }

    /// Which network this is.
    pub fn network(&self) -> Network {
        self.network
    }

    /// The side of the chip it reads.
    pub fn chip_size(&self) -> u32 {
        self.network.chip_size()
    }

    /// The precision this embedder runs.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Embeds one aligned chip.
    pub fn embed(&self, chip: &RgbImage) -> Result<Embedding, FaceError> {
        self.embed_chip(chip, false)
    }

    /// Embeds several chips, each plain or mirrored: the batched form of
    /// [`embed_chip`](Self::embed_chip). They run one after another through the
    /// single plan, which is faster than a batch plan in tract 0.23 on x86
    /// (9.5 against 12.0 ms per chip for a batch of two) and needs no second
    /// copy of the weights.
    pub fn embed_batch(&self, chips: &[(&RgbImage, bool)]) -> Result<Vec<Embedding>, FaceError> {
        chips.iter().map(|(chip, mirrored)| self.embed_chip(chip, *mirrored)).collect()
    }

    /// Embeds one aligned chip, or its mirror image (no flipped copy is made).
    /// SFace's embeddings are scaled to unit length (it is compared by angle;
    /// on the unit sphere the Euclidean distance the matcher uses ranks the same).
    pub fn embed_chip(&self, chip: &RgbImage, mirrored: bool) -> Result<Embedding, FaceError> {
        let side = self.chip_size();
        if chip.width() != side || chip.height() != side {
            return Err(FaceError::Model(format!(
                "chip is {}×{}, the {} network reads {side}×{side}",
                chip.width(),
                chip.height(),
                self.network
            )));
        }
        match &self.last_layer {
            None if self.network == Network::Sface => run_chip(&self.plan, chip, mirrored).map(unit_length),
            None => run_chip(&self.plan, chip, mirrored),
            Some(w) => {
                let pooled: [f32; POOLED_DIM] = run_chip(&self.plan, chip, mirrored)?;
                Ok(std::array::from_fn(|r| w[r * POOLED_DIM..(r + 1) * POOLED_DIM].iter().zip(&pooled).map(|(a, b)| a * b).sum()))
            }
        }
    }
}

/// `v` scaled to unit length (unchanged when it is all zeros).
pub fn unit_length(v: Embedding) -> Embedding {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.map(|x| x / norm)
    } else {
        v
    }
}

/// A square chip (or its mirror image) as the network's 1×3×S×S input:
/// planar RGB, raw 0–255 (both networks). Also what `model-convert calibrate`
/// feeds the network.
pub fn chip_input(chip: &RgbImage, mirrored: bool) -> Result<Tensor, FaceError> {
    let s = chip.width() as usize;
    if !(chip.width() == CHIP_SIZE || chip.width() == ARCFACE_SIZE) || chip.height() != chip.width() {
        return Err(FaceError::Model(format!(
            "chip is {}×{}, expected {CHIP_SIZE}² or {ARCFACE_SIZE}²",
            chip.width(),
            chip.height()
        )));
    }
    let mut input = Tensor::zero::<f32>(&[1, 3, s, s]).map_err(inference)?;
    let mut view = input.try_as_plain_ram_mut().map_err(inference)?;
    let planes = view.as_slice_mut::<f32>().map_err(inference)?;
    for (y, row) in chip.as_raw().chunks_exact(3 * s).enumerate() {
        for (x, px) in row.chunks_exact(3).enumerate() {
            let at = y * s + if mirrored { s - 1 - x } else { x };
            for (ch, v) in px.iter().enumerate() {
                planes[ch * s * s + at] = *v as f32;
            }
        }
    }
    Ok(input)
}

/// Runs a plan on one chip (planar RGB, raw 0–255, mirrored on request) and
/// returns its single output as `N` values.
fn run_chip<const N: usize>(plan: &Arc<Plan>, chip: &RgbImage, mirrored: bool) -> Result<[f32; N], FaceError> {
    let input = chip_input(chip, mirrored)?;
    let out = plan.run(tvec!(input.into_tvalue())).map_err(inference)?;
    clear_wide_register_state();
    let values = out[0].try_as_plain_ram().and_then(|v| v.as_slice::<f32>()).map_err(inference)?;
    values.try_into().map_err(|_| FaceError::Model(format!("network gave {} values, expected {N}", values.len())))
}

/// Width of the trunk's pooled features, the last layer's input.
pub const POOLED_DIM: usize = 256;

/// The embedding network cut before its last layer (dlib's `fc_no_bias`):
/// a chip's 256 globally pooled trunk features, and that layer's weights, so
/// that embedding = pooled · W. What training the last layer works on.
pub struct PooledEmbedder {
    plan: Arc<Plan>,
    last_layer: Vec<f32>,
    model_id: ModelId,
}

impl PooledEmbedder {
    /// Loads the network from memory, its output moved to the last layer's input.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, FaceError> {
        let (plan, last_layer) = cut_before_last_layer(bytes)?;
        Ok(PooledEmbedder { plan, last_layer, model_id: ModelId::of_file_bytes(bytes) })
    }

    /// The pooled features of one aligned chip, or of its mirror image.
    pub fn pooled_chip(&self, chip: &RgbImage, mirrored: bool) -> Result<[f32; POOLED_DIM], FaceError> {
        run_chip(&self.plan, chip, mirrored)
    }

    /// The last layer's weights, row-major `POOLED_DIM × EMBEDDING_DIM`.
    pub fn last_layer(&self) -> &[f32] {
        &self.last_layer
    }

    /// The id of the whole network's file.
    pub fn model_id(&self) -> ModelId {
        self.model_id
    }
}

/// The network of `bytes` cut before its last layer (dlib's `fc_no_bias`,
/// the MatMul that makes the output): a plan giving the pooled features, and
/// that layer's weights, row-major `POOLED_DIM × EMBEDDING_DIM`.
fn cut_before_last_layer(bytes: &[u8]) -> Result<(Arc<Plan>, Vec<f32>), FaceError> {
    let model_error = |e: String| FaceError::Model(format!("cannot cut the embedding network before its last layer: {e}"));
    let onnx = tract_onnx::onnx();
    let proto = onnx.proto_model_for_read(&mut &bytes[..]).map_err(|e| model_error(e.to_string()))?;
    let graph = proto.graph.as_ref().ok_or_else(|| model_error("no graph".into()))?;
    let producer = |name: &str| graph.node.iter().find(|n| n.output.iter().any(|o| o == name));
    // descriptors ← (Identity) ← MatMul(pooled, W).
    let mut at = graph.output.first().map(|o| o.name.clone()).ok_or_else(|| model_error("no output".into()))?;
    let matmul = loop {
        let node = producer(&at).ok_or_else(|| model_error(format!("nothing produces {at}")))?;
        match node.op_type.as_str() {
            "Identity" => at = node.input[0].clone(),
            "MatMul" => break node,
            other => return Err(model_error(format!("the output comes from {other}, not MatMul"))),
        }
    };
    let weights = graph
        .initializer
        .iter()
        .find(|t| t.name == matmul.input[1])
        .ok_or_else(|| model_error(format!("the last layer's weights {} are not a constant", matmul.input[1])))?;
    let last_layer: Vec<f32> = if weights.float_data.is_empty() {
        weights.raw_data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect()
    } else {
        weights.float_data.clone()
    };
    if weights.dims != [POOLED_DIM as i64, EMBEDDING_DIM as i64] || last_layer.len() != POOLED_DIM * EMBEDDING_DIM {
        return Err(model_error(format!("last layer of shape {:?}, expected [{POOLED_DIM}, {EMBEDDING_DIM}]", weights.dims)));
    }
    let pooled = producer(&matmul.input[0]).map(|n| n.name.clone()).ok_or_else(|| model_error("no pooled node".into()))?;
    let s = CHIP_SIZE as usize;
    let plan = onnx
        .model_for_proto_model(&proto)
        .and_then(|m| m.with_input_fact(0, f32::fact([1, 3, s, s]).into()))
        .and_then(|m| m.with_outputs_by_name([pooled.as_str()]))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(|e| model_error(e.to_string()))?;
    Ok((plan, last_layer))
}

/// tract's hand-written AVX kernels return with the upper halves of the vector
/// registers dirty (no `vzeroupper`), and every legacy-SSE instruction after
/// that pays for it: the detector ran at 20.6 ms per 640×480 frame right
/// after a network run against 14.9 ms on its own. Clearing the state once
/// per run brings the whole frame from 31.5 to 25.5 ms (x86-64, one core).
#[inline]
pub(crate) fn clear_wide_register_state() {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU supports AVX (checked); vzeroupper only zeroes the
        // upper register halves, which no live value uses between Rust calls.
        unsafe { zero_upper() }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn zero_upper() {
    std::arch::x86_64::_mm256_zeroupper();
}
