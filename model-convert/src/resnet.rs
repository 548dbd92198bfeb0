//! dlib's face ResNet → ONNX, in f32 or with int8 weights.

use crate::onnx::{Attr, GraphBuilder};
use anyhow::{bail, ensure, Context, Result};
use facegate_dlib::resnet::{Layer, ResNet};
use tract_onnx::pb::ModelProto;

/// How weights are stored in the produced graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// Plain f32 weights.
    F32,
    /// Symmetric per-output-channel int8 conv weights behind DequantizeLinear;
    /// the final fully-connected layer stays f32 (it maps straight onto the
    /// descriptor: quantizing it raised the error vs dlib from 5e-3 to 8e-3).
    Int8,
}

impl Precision {
    /// Name stored in the model metadata and used in file names.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
        }
    }
}

/// Block kinds in forward order, as in dlib's `dnn_face_recognition_ex.cpp`
/// (level 4: 3 res, level 3: down + 3, level 2: down + 2, level 1: down + 2, level 0: down).
const BLOCKS: &str = "rrrdrrrdrrdrrd";

/// Input name: float N×3×150×150, RGB planar, raw 0..255 pixel values.
pub const INPUT: &str = "chips";
/// Output name: float N×128 descriptors (not normalised).
pub const OUTPUT: &str = "descriptors";

struct Builder<'a> {
    g: GraphBuilder,
    layers: std::iter::Peekable<std::slice::Iter<'a, Layer>>,
    precision: Precision,
}

/// Value in the graph with its C×H×W shape.
#[derive(Clone)]
struct Value {
    name: String,
    shape: [usize; 3],
}

fn out_size(input: usize, kernel: usize, stride: usize, pad: usize) -> Result<usize> {
    ensure!(input + 2 * pad >= kernel && stride > 0, "window larger than input");
    Ok(1 + (input + 2 * pad - kernel) / stride)
}

/// Symmetric per-row int8 quantisation of `rows` equal-length rows.
fn quantize_rows(data: &[f32], rows: usize) -> (Vec<i8>, Vec<f32>) {
    let per_row = data.len() / rows;
    let mut q = Vec::with_capacity(data.len());
    let mut scales = Vec::with_capacity(rows);
    for row in data.chunks(per_row) {
        let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        q.extend(row.iter().map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8));
        scales.push(scale);
    }
    (q, scales)
}

/// A conv followed by a per-channel affine y = x·gamma + beta, as one conv:
/// each filter and its bias scaled by gamma, beta added to the bias.
pub fn fold_affine(weights: &[f32], bias: &[f32], gamma: &[f32], beta: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let per_filter = weights.len() / gamma.len();
    let folded =
        weights.chunks(per_filter).zip(gamma).flat_map(|(w, g)| w.iter().map(move |v| (*v as f64 * *g as f64) as f32)).collect();
    let folded_bias = bias.iter().zip(gamma).zip(beta).map(|((b, g), be)| (*b as f64 * *g as f64 + *be as f64) as f32).collect();
    (folded, folded_bias)
}

impl Builder<'_> {
    fn next(&mut self) -> Result<&Layer> {
        self.layers.next().context("layer records end early")
    }

    /// Conv weights (O×…) as a graph value: a constant, or int8 per output channel + DequantizeLinear.
    fn weights(&mut self, dims: &[i64], data: &[f32]) -> String {
        match self.precision {
            Precision::F32 => self.g.f32_const("w", dims, data),
            Precision::Int8 => {
                let channels = dims[0] as usize;
                let (q, scales) = quantize_rows(data, channels);
                let qw = self.g.i8_const("wq", dims, &q);
                let scale = self.g.f32_const("ws", &[channels as i64], &scales);
                let zero = self.g.i8_const("wz", &[channels as i64], &vec![0; channels]);
                self.g.node("DequantizeLinear", &[&qw, &scale, &zero], vec![("axis", Attr::Int(0))])
            }
        }
    }

    /// Conv record followed by an Affine record, folded into one Conv node.
    fn conv_affine(&mut self, x: &Value) -> Result<Value> {
        let Layer::Conv { filters, inputs, kernel, stride, pad, weights, bias } = self.next()?.clone() else {
            bail!("expected a conv record");
        };
        ensure!(inputs == x.shape[0], "conv expects {inputs} channels, gets {}", x.shape[0]);
        let Layer::Affine { gamma, beta } = self.next()?.clone() else { bail!("expected an affine record after conv") };
        ensure!(gamma.len() == filters, "affine size differs from conv filters");
        let (folded, folded_bias) = fold_affine(&weights, &bias, &gamma, &beta);
        let dims = [filters as i64, inputs as i64, kernel[0] as i64, kernel[1] as i64];
        let w = self.weights(&dims, &folded);
        let b = self.g.f32_const("b", &[filters as i64], &folded_bias);
        let (p0, p1) = (pad[0] as i64, pad[1] as i64);
        let name = self.g.node(
            "Conv",
            &[&x.name, &w, &b],
            vec![
                ("kernel_shape", Attr::Ints(vec![kernel[0] as i64, kernel[1] as i64])),
                ("strides", Attr::Ints(vec![stride[0] as i64, stride[1] as i64])),
                ("pads", Attr::Ints(vec![p0, p1, p0, p1])),
            ],
        );
        let shape =
            [filters, out_size(x.shape[1], kernel[0], stride[0], pad[0])?, out_size(x.shape[2], kernel[1], stride[1], pad[1])?];
        Ok(Value { name, shape })
    }

    fn relu(&mut self, x: Value) -> Result<Value> {
        ensure!(matches!(self.next()?, Layer::Relu), "expected a relu record");
        let name = self.g.node("Relu", &[&x.name], vec![]);
        Ok(Value { name, shape: x.shape })
    }

    fn pool(&mut self, op: &str, x: &Value, kernel: [usize; 2], stride: [usize; 2], pad: [usize; 2]) -> Result<Value> {
        ensure!(pad == [0, 0], "pooling with padding is not used by this network");
        let name = self.g.node(
            op,
            &[&x.name],
            vec![
                ("kernel_shape", Attr::Ints(vec![kernel[0] as i64, kernel[1] as i64])),
                ("strides", Attr::Ints(vec![stride[0] as i64, stride[1] as i64])),
            ],
        );
        let shape = [x.shape[0], out_size(x.shape[1], kernel[0], stride[0], 0)?, out_size(x.shape[2], kernel[1], stride[1], 0)?];
        Ok(Value { name, shape })
    }

    /// Zero-pads `x` at the end of C, H and W up to `shape` (dlib's add_prev semantics).
    fn pad_to(&mut self, x: Value, shape: [usize; 3]) -> Value {
        if x.shape == shape {
            return x;
        }
        let end: Vec<i64> = (0..3).map(|i| (shape[i] - x.shape[i]) as i64).collect();
        let pads = self.g.i64_const("pads", &[8], &[0, 0, 0, 0, 0, end[0], end[1], end[2]]);
        let name = self.g.node("Pad", &[&x.name, &pads], vec![("mode", Attr::Str("constant"))]);
        Value { name, shape }
    }

    fn residual(&mut self, x: Value, down: bool) -> Result<Value> {
        let y = self.conv_affine(&x)?;
        let y = self.relu(y)?;
        let y = self.conv_affine(&y)?;
        let skip = if down {
            let Layer::AvgPool { kernel, stride, pad } = self.next()?.clone() else { bail!("expected the skip avg_pool") };
            self.pool("AveragePool", &x, kernel, stride, pad)?
        } else {
            x
        };
        ensure!(matches!(self.next()?, Layer::AddPrev), "expected add_prev");
        let shape = [0, 1, 2].map(|i| y.shape[i].max(skip.shape[i]));
        let y = self.pad_to(y, shape);
        let skip = self.pad_to(skip, shape);
        let name = self.g.node("Add", &[&y.name, &skip.name], vec![]);
        self.relu(Value { name, shape })
    }
}

/// Builds the ONNX model for the parsed network.
pub fn build(net: &ResNet, precision: Precision, metadata: &[(&str, String)]) -> Result<ModelProto> {
    ensure!(net.input_size == [150, 150], "unexpected input size {:?}", net.input_size);
    let mut b = Builder { g: GraphBuilder::default(), layers: net.layers.iter().peekable(), precision };
    b.g.input(INPUT, "N", &[3, 150, 150]);
    let mean: Vec<f32> = net.input_mean.to_vec();
    let mean = b.g.f32_const("mean", &[1, 3, 1, 1], &mean);
    let inv = b.g.f32_const("inv256", &[], &[1.0 / 256.0]);
    let centred = b.g.node("Sub", &[INPUT, &mean], vec![]);
    let scaled = b.g.node("Mul", &[&centred, &inv], vec![]);
    let x = Value { name: scaled, shape: [3, 150, 150] };

    let x = b.conv_affine(&x)?;
    let x = b.relu(x)?;
    let Layer::MaxPool { kernel, stride, pad } = b.next()?.clone() else { bail!("expected the stem max_pool") };
    let mut x = b.pool("MaxPool", &x, kernel, stride, pad)?;

    let mut seen = String::new();
    for expected in BLOCKS.chars() {
        // A down block is the one whose skip path is an avg_pool (5 records ahead).
        let down = matches!(b.layers.clone().nth(5), Some(Layer::AvgPool { .. }));
        seen.push(if down { 'd' } else { 'r' });
        ensure!(seen.ends_with(expected), "block structure {seen} differs from dlib's {BLOCKS}");
        x = b.residual(x, down)?;
    }
    let Layer::AvgPool { kernel: [0, 0], .. } = b.next()?.clone() else { bail!("expected the global average pool") };
    let pooled = b.g.node("GlobalAveragePool", &[&x.name], vec![]);
    let flat = b.g.node("Flatten", &[&pooled], vec![("axis", Attr::Int(1))]);
    let Layer::FcNoBias { outputs, inputs, weights } = b.next()?.clone() else { bail!("expected fc_2") };
    ensure!(inputs == x.shape[0], "fc expects {inputs} inputs, gets {}", x.shape[0]);
    // The head stays f32 in both precisions (see Precision::Int8).
    let w = b.g.f32_const("w", &[inputs as i64, outputs as i64], &weights);
    let out = b.g.node("MatMul", &[&flat, &w], vec![]);
    ensure!(b.layers.next().is_none(), "records left after fc_2");
    b.g.output(&out, OUTPUT, "N", &[outputs as i64]);
    Ok(b.g.finish("dlib_face_recognition_resnet_v1", metadata))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantized_rows_reconstruct_within_half_a_step() {
        let data = [0.5f32, -1.0, 0.25, 0.0, 0.0, 0.0, 2.0, -0.01, 1.3];
        let (q, s) = quantize_rows(&data, 3);
        assert_eq!(s[1], 1.0, "an all-zero row keeps a usable scale");
        for (i, v) in data.iter().enumerate() {
            let back = q[i] as f32 * s[i / 3];
            assert!((back - v).abs() <= s[i / 3] / 2.0 + 1e-7, "{v} -> {back}");
        }
        assert_eq!(q[1], -127);
        assert_eq!(q[6], 127);
    }
}
