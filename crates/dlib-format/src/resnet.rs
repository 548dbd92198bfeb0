//! `dlib_face_recognition_resnet_model_v1.dat`: the 128-d face embedding ResNet.
//!
//! The file stores layers without their topology (tags and skips both write
//! the same marker), so this module returns the flat list of layer records in
//! forward order; the caller knows the architecture and checks it against them.

use crate::reader::{Reader, Tensor};
use crate::Result;

/// One layer record, in forward order.
#[derive(Debug, Clone)]
pub enum Layer {
    /// Convolution (cross-correlation) with bias.
    Conv {
        /// Output channels.
        filters: usize,
        /// Input channels (derived from the parameter count).
        inputs: usize,
        /// Kernel height and width.
        kernel: [usize; 2],
        /// Stride y, x.
        stride: [usize; 2],
        /// Padding y, x.
        pad: [usize; 2],
        /// Weights O×I×kh×kw.
        weights: Vec<f32>,
        /// O biases.
        bias: Vec<f32>,
    },
    /// Per-channel y = x·gamma + beta (a frozen batch norm).
    Affine {
        /// Scale per channel.
        gamma: Vec<f32>,
        /// Offset per channel.
        beta: Vec<f32>,
    },
    /// max(x, 0).
    Relu,
    /// Max pooling.
    MaxPool {
        /// Window height, width.
        kernel: [usize; 2],
        /// Stride y, x.
        stride: [usize; 2],
        /// Padding y, x.
        pad: [usize; 2],
    },
    /// Average pooling; a 0×0 window means global average.
    AvgPool {
        /// Window height, width (0 = whole input).
        kernel: [usize; 2],
        /// Stride y, x.
        stride: [usize; 2],
        /// Padding y, x.
        pad: [usize; 2],
    },
    /// Adds the tagged earlier output (zero-padded to the larger shape).
    AddPrev,
    /// Fully connected without bias: y = x·W, W stored [inputs][outputs].
    FcNoBias {
        /// Output count.
        outputs: usize,
        /// Input count.
        inputs: usize,
        /// W row-major [inputs][outputs].
        weights: Vec<f32>,
    },
}

/// The parsed network: input normalisation and the layer records.
#[derive(Debug, Clone)]
pub struct ResNet {
    /// Mean subtracted from R, G, B before dividing by 256.
    pub input_mean: [f32; 3],
    /// Input rows and columns (150×150).
    pub input_size: [usize; 2],
    /// Metric-loss distance threshold stored in the file (0.6).
    pub loss_threshold: f64,
    /// Layer records, input side first.
    pub layers: Vec<Layer>,
}

/// Parses the whole file; every byte must be accounted for.
pub fn parse(bytes: &[u8]) -> Result<ResNet> {
    let mut r = Reader::new(bytes);
    r.expect_int(1, "loss version")?;
    r.expect_string("loss_metric_2")?;
    let _margin = r.float()?;
    let loss_threshold = r.float()?;
    let depth = nesting_depth(&mut r)?;
    r.expect_string("input_rgb_image_sized")?;
    let input_mean = [r.float()? as f32, r.float()? as f32, r.float()? as f32];
    let input_size = [r.size()?, r.size()?];
    let layers = layer_records(&mut r, layer)?;
    // Tag and skip markers are counted in `depth` but have no record.
    if depth < layers.len() {
        return Err(r.unexpected(format!("{} layer records but only {depth} nesting levels", layers.len())));
    }
    Ok(ResNet { input_mean, input_size, loss_threshold, layers })
}

/// The nested add_layer versions, outermost first, up to the innermost (3):
/// how many layers (records and tag/skip markers) the network has.
pub(crate) fn nesting_depth(r: &mut Reader) -> Result<usize> {
    let mut depth = 0usize;
    loop {
        match r.int()? {
            1 | 2 => depth += 1,
            3 => return Ok(depth),
            v => return Err(r.unexpected(format!("layer version {v}"))),
        }
    }
}

/// The layer records to the end of the file, input side first, each read by
/// `record` and followed by its add_layer state.
pub(crate) fn layer_records(r: &mut Reader, mut record: impl FnMut(&mut Reader) -> Result<Layer>) -> Result<Vec<Layer>> {
    let mut layers = Vec::new();
    while !r.at_end() {
        layers.push(record(r)?);
        // add_layer state: three flags and three (empty) gradient tensors.
        for _ in 0..3 {
            r.bool()?;
        }
        for _ in 0..3 {
            r.tensor()?;
        }
        if layers.len() == 1 {
            // The innermost add_layer also writes its sample expansion factor.
            r.expect_int(1, "sample expansion factor")?;
        }
    }
    Ok(layers)
}

fn pair(r: &mut Reader) -> Result<[usize; 2]> {
    Ok([r.size()?, r.size()?])
}

fn split_params(r: &Reader, t: Tensor, weights: usize, what: &str) -> Result<(Vec<f32>, Vec<f32>)> {
    if t.data.len() < weights {
        return Err(r.unexpected(format!("{what}: {} parameters, need at least {weights}", t.data.len())));
    }
    let mut w = t.data;
    let rest = w.split_off(weights);
    Ok((w, rest))
}

pub(crate) fn layer(r: &mut Reader) -> Result<Layer> {
    let name = r.string()?;
    Ok(match name.as_str() {
        "con_4" => {
            let params = r.tensor()?;
            let filters = r.size()?;
            let kernel = pair(r)?;
            let stride = pair(r)?;
            let pad = pair(r)?;
            let filter_dims = r.alias_tensor()?;
            let bias_dims = r.alias_tensor()?;
            for _ in 0..4 {
                r.float()?; // learning-rate and weight-decay multipliers
            }
            let inputs = filter_dims[1];
            if filter_dims != [filters, inputs, kernel[0], kernel[1]] || bias_dims != [1, filters, 1, 1] {
                return Err(r.unexpected(format!("con_4 shapes {filter_dims:?} / {bias_dims:?}")));
            }
            let n = filters * inputs * kernel[0] * kernel[1];
            let (weights, bias) = split_params(r, params, n, "con_4")?;
            if bias.len() != filters {
                return Err(r.unexpected("con_4 bias count"));
            }
            Layer::Conv { filters, inputs, kernel, stride, pad, weights, bias }
        }
        "affine_" => {
            let params = r.tensor()?;
            let gamma_dims = r.alias_tensor()?;
            let beta_dims = r.alias_tensor()?;
            let _mode = r.int()?;
            let k = gamma_dims[1];
            if gamma_dims != beta_dims || params.data.len() != 2 * k {
                return Err(r.unexpected("affine_ shapes"));
            }
            let (gamma, beta) = split_params(r, params, k, "affine_")?;
            Layer::Affine { gamma, beta }
        }
        "relu_" => Layer::Relu,
        "add_prev_" => Layer::AddPrev,
        "max_pool_2" | "avg_pool_2" => {
            let kernel = pair(r)?;
            let stride = pair(r)?;
            let pad = pair(r)?;
            if name == "max_pool_2" {
                Layer::MaxPool { kernel, stride, pad }
            } else {
                Layer::AvgPool { kernel, stride, pad }
            }
        }
        "fc_2" => {
            let outputs = r.size()?;
            let inputs = r.size()?;
            let params = r.tensor()?;
            let weight_dims = r.alias_tensor()?;
            let _bias_dims = r.alias_tensor()?;
            let _bias_mode = r.int()?;
            for _ in 0..4 {
                r.float()?;
            }
            if weight_dims[..2] != [inputs, outputs] {
                return Err(r.unexpected(format!("fc_2 weight shape {weight_dims:?}")));
            }
            let (weights, _) = split_params(r, params, inputs * outputs, "fc_2")?;
            Layer::FcNoBias { outputs, inputs, weights }
        }
        other => return Err(r.unexpected(format!("unknown layer record {other:?}"))),
    })
}
