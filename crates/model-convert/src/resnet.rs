//! dlib's face ResNet → ONNX: f32, int8 weights, or int8 weights and activations.

use crate::onnx::{Attr, GraphBuilder};
use anyhow::{bail, ensure, Context, Result};
use facegate_dlib::resnet::{Layer, ResNet};
use std::collections::BTreeMap;
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
    /// Weights and activations in int8 (QLinearConv: i8 activations with
    /// calibrated scales, per-output-channel int8 weights, i32 accumulation);
    /// residual additions, pooling and the final layer stay f32.
    QInt8,
}

impl Precision {
    /// Name stored in the model metadata and used in file names.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
            Precision::QInt8 => "qint8",
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

/// Observed value ranges of the network's activations, by probe label
/// (`stem`, `b3.conv1`, `b3.conv2`, `b3.out`, …): what the int8-activation
/// model's scales come from. Text form: one `label min max` line each.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ActivationRanges(pub BTreeMap<String, (f32, f32)>);

impl ActivationRanges {
    /// Parses the text form (`#` comments and blank lines allowed).
    pub fn parse(text: &str) -> Result<Self> {
        let mut ranges = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [label, lo, hi] = fields[..] else { bail!("line {}: expected `label min max`", n + 1) };
            let (lo, hi): (f32, f32) = (lo.parse()?, hi.parse()?);
            ensure!(lo.is_finite() && hi.is_finite() && lo <= hi, "line {}: bad range {lo} {hi}", n + 1);
            ranges.insert(label.to_string(), (lo, hi));
        }
        Ok(ActivationRanges(ranges))
    }

    /// The text form, with a header comment.
    pub fn to_text(&self, header: &str) -> String {
        let mut out: String = header.lines().map(|l| format!("# {l}\n")).collect();
        for (label, (lo, hi)) in &self.0 {
            out.push_str(&format!("{label} {lo:e} {hi:e}\n"));
        }
        out
    }
}

/// i8 quantisation of a range: scale and zero point (0 lies on the grid).
/// i8, not u8: tract's integer kernels multiply i8 by i8.
fn i8_params((lo, hi): (f32, f32)) -> (f32, i8) {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
    (scale, ((-lo / scale).round() - 128.0).clamp(-128.0, 127.0) as i8)
}

struct Builder<'a> {
    g: GraphBuilder,
    layers: std::iter::Peekable<std::slice::Iter<'a, Layer>>,
    precision: Precision,
    /// QInt8: the calibrated ranges.
    ranges: Option<&'a ActivationRanges>,
    /// F32/Int8: the f32 tensors a calibration observes, by label.
    probes: Vec<(String, String)>,
}

/// Value in the graph with its C×H×W shape.
#[derive(Clone)]
struct Value {
    /// The f32 form's graph name; empty while the value exists only in i8
    /// (an int8 conv's ReLU output, until [`Builder::dequantized`] is asked).
    name: String,
    shape: [usize; 3],
    /// QInt8: the same value in i8 with its scale and zero point (graph names) and scale.
    quantized: Option<Quantized>,
}

#[derive(Clone)]
struct Quantized {
    name: String,
    scale: String,
    zero: String,
    scale_value: f32,
}

/// What follows a conv: a ReLU (fused into the int8 conv's output range) or nothing.
#[derive(Clone, Copy, PartialEq)]
enum After {
    Relu,
    Nothing,
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

    fn value(name: String, shape: [usize; 3]) -> Value {
        Value { name, shape, quantized: None }
    }

    /// Records `value` as the calibration probe `label` (f32 graphs), or
    /// returns the calibrated range of `label` (QInt8).
    fn probe(&mut self, label: &str, value: &str) -> Result<Option<(f32, f32)>> {
        match self.ranges {
            Some(r) => Ok(Some(*r.0.get(label).with_context(|| format!("no calibrated range for {label}"))?)),
            None => {
                self.probes.push((label.to_string(), value.to_string()));
                Ok(None)
            }
        }
    }

    /// Scale and zero point constants for a range.
    fn quant_params(&mut self, range: (f32, f32)) -> (String, String, f32) {
        let (scale, zero) = i8_params(range);
        (self.g.f32_const("qs", &[], &[scale]), self.g.i8_const("qz", &[], &[zero]), scale)
    }

    /// QInt8: `x` quantised to i8 over `range`.
    fn quantize(&mut self, x: &Value, range: (f32, f32)) -> Value {
        let (scale, zero, scale_value) = self.quant_params(range);
        let name = self.g.node("QuantizeLinear", &[&x.name, &scale, &zero], vec![]);
        Value { quantized: Some(Quantized { name, scale, zero, scale_value }), ..x.clone() }
    }

    /// Conv weights (O×…) as a graph value: a constant, or int8 per output channel + DequantizeLinear.
    fn weights(&mut self, dims: &[i64], data: &[f32]) -> String {
        match self.precision {
            Precision::F32 => self.g.f32_const("w", dims, data),
            Precision::Int8 | Precision::QInt8 => {
                let channels = dims[0] as usize;
                let (q, scales) = quantize_rows(data, channels);
                let qw = self.g.i8_const("wq", dims, &q);
                let scale = self.g.f32_const("ws", &[channels as i64], &scales);
                let zero = self.g.i8_const("wz", &[channels as i64], &vec![0; channels]);
                self.g.node("DequantizeLinear", &[&qw, &scale, &zero], vec![("axis", Attr::Int(0))])
            }
        }
    }

    /// Conv record followed by an Affine record, folded into one conv, then
    /// `after`. In QInt8 `x` must be quantised; the output is i8 over the
    /// range calibrated for `label` (a ReLU is the clamp at its zero point)
    /// and, without a ReLU, also dequantised to f32.
    fn conv_affine(&mut self, x: &Value, label: &str, after: After) -> Result<Value> {
        let Layer::Conv { filters, inputs, kernel, stride, pad, weights, bias } = self.next()?.clone() else {
            bail!("expected a conv record");
        };
        ensure!(inputs == x.shape[0], "conv expects {inputs} channels, gets {}", x.shape[0]);
        let Layer::Affine { gamma, beta } = self.next()?.clone() else { bail!("expected an affine record after conv") };
        ensure!(gamma.len() == filters, "affine size differs from conv filters");
        let (folded, folded_bias) = fold_affine(&weights, &bias, &gamma, &beta);
        let dims = [filters as i64, inputs as i64, kernel[0] as i64, kernel[1] as i64];
        let (p0, p1) = (pad[0] as i64, pad[1] as i64);
        let attrs = || {
            vec![
                ("kernel_shape", Attr::Ints(vec![kernel[0] as i64, kernel[1] as i64])),
                ("strides", Attr::Ints(vec![stride[0] as i64, stride[1] as i64])),
                ("pads", Attr::Ints(vec![p0, p1, p0, p1])),
            ]
        };
        let shape =
            [filters, out_size(x.shape[1], kernel[0], stride[0], pad[0])?, out_size(x.shape[2], kernel[1], stride[1], pad[1])?];
        if self.precision != Precision::QInt8 {
            let w = self.weights(&dims, &folded);
            let b = self.g.f32_const("b", &[filters as i64], &folded_bias);
            let conv = Self::value(self.g.node("Conv", &[&x.name, &w, &b], attrs()), shape);
            let out = match after {
                After::Relu => self.relu(conv)?,
                After::Nothing => conv,
            };
            self.probe(label, &out.name)?;
            return Ok(out);
        }
        let xq = x.quantized.clone().context("an int8 conv needs a quantised input")?;
        let range = self.probe(label, "")?.context("QInt8 has ranges")?;
        let range = if after == After::Relu { (0.0, range.1) } else { range };
        let (q, w_scales) = quantize_rows(&folded, filters);
        let w = self.g.i8_const("wq", &dims, &q);
        let w_scale = self.g.f32_const("ws", &[filters as i64], &w_scales);
        // One zero point for every channel (the weights are symmetric, so it is 0): with
        // a per-channel vector tract cannot see that it is 0 and sums every input
        // patch to correct for it, which took 40 % of the network's time.
        let w_zero = self.g.i8_const("wz", &[], &[0]);
        let b: Vec<i32> = folded_bias.iter().zip(&w_scales).map(|(b, s)| (b / (xq.scale_value * s)).round() as i32).collect();
        let b = self.g.i32_const("bq", &[filters as i64], &b);
        let (y_scale, y_zero, y_scale_value) = self.quant_params(range);
        let y =
            self.g.node("QLinearConv", &[&xq.name, &xq.scale, &xq.zero, &w, &w_scale, &w_zero, &y_scale, &y_zero, &b], attrs());
        if after == After::Relu {
            ensure!(matches!(self.next()?, Layer::Relu), "expected a relu record");
        }
        let quantized = Quantized { name: y.clone(), scale: y_scale.clone(), zero: y_zero.clone(), scale_value: y_scale_value };
        let name = match after {
            After::Relu => String::new(),
            After::Nothing => self.g.node("DequantizeLinear", &[&y, &y_scale, &y_zero], vec![]),
        };
        Ok(Value { name, shape, quantized: Some(quantized) })
    }

    /// QInt8: the f32 form of a value known only quantised.
    fn dequantized(&mut self, x: Value) -> Value {
        if !x.name.is_empty() {
            return x;
        }
        let q = x.quantized.clone().expect("a value has an f32 or an i8 form");
        let name = self.g.node("DequantizeLinear", &[&q.name, &q.scale, &q.zero], vec![]);
        Value { name, ..x }
    }

    fn relu(&mut self, x: Value) -> Result<Value> {
        ensure!(matches!(self.next()?, Layer::Relu), "expected a relu record");
        let name = self.g.node("Relu", &[&x.name], vec![]);
        Ok(Self::value(name, x.shape))
    }

    fn pool(&mut self, op: &str, x: &Value, kernel: [usize; 2], stride: [usize; 2], pad: [usize; 2]) -> Result<Value> {
        ensure!(pad == [0, 0], "pooling with padding is not used by this network");
        let attrs = || {
            vec![
                ("kernel_shape", Attr::Ints(vec![kernel[0] as i64, kernel[1] as i64])),
                ("strides", Attr::Ints(vec![stride[0] as i64, stride[1] as i64])),
            ]
        };
        let shape = [x.shape[0], out_size(x.shape[1], kernel[0], stride[0], 0)?, out_size(x.shape[2], kernel[1], stride[1], 0)?];
        // Max pooling commutes with a monotonic quantisation: the i8 form pools as is.
        let quantized = match (&x.quantized, op) {
            (Some(q), "MaxPool") => Some(Quantized { name: self.g.node(op, &[&q.name], attrs()), ..q.clone() }),
            _ => None,
        };
        let name = if x.name.is_empty() { String::new() } else { self.g.node(op, &[&x.name], attrs()) };
        Ok(Value { name, shape, quantized })
    }

    /// Zero-pads `x` at the end of C, H and W up to `shape` (dlib's add_prev semantics).
    fn pad_to(&mut self, x: Value, shape: [usize; 3]) -> Value {
        if x.shape == shape {
            return x;
        }
        let end: Vec<i64> = (0..3).map(|i| (shape[i] - x.shape[i]) as i64).collect();
        let pads = self.g.i64_const("pads", &[8], &[0, 0, 0, 0, 0, end[0], end[1], end[2]]);
        let name = self.g.node("Pad", &[&x.name, &pads], vec![("mode", Attr::Str("constant"))]);
        Self::value(name, shape)
    }

    fn residual(&mut self, x: Value, block: usize, down: bool) -> Result<Value> {
        let y = self.conv_affine(&x, &format!("b{block}.conv1"), After::Relu)?;
        let y = self.conv_affine(&y, &format!("b{block}.conv2"), After::Nothing)?;
        let x = self.dequantized(x);
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
        let out = self.relu(Self::value(name, shape))?;
        match self.probe(&format!("b{block}.out"), &out.name)? {
            Some(range) if block + 1 < BLOCKS.len() => Ok(self.quantize(&out, range)),
            _ => Ok(out),
        }
    }
}

/// Builds the ONNX model for the parsed network. `ranges` is required for
/// [`Precision::QInt8`] and ignored otherwise.
pub fn build(
    net: &ResNet,
    precision: Precision,
    ranges: Option<&ActivationRanges>,
    metadata: &[(&str, String)],
) -> Result<ModelProto> {
    Ok(build_with_probes(net, precision, ranges, metadata)?.0)
}

/// As [`build`], also returning the calibration probes of an f32 or int8
/// graph: (label, tensor name) pairs, in graph order.
pub fn build_with_probes(
    net: &ResNet,
    precision: Precision,
    ranges: Option<&ActivationRanges>,
    metadata: &[(&str, String)],
) -> Result<(ModelProto, Vec<(String, String)>)> {
    ensure!(net.input_size == [150, 150], "unexpected input size {:?}", net.input_size);
    let ranges = match precision {
        Precision::QInt8 => Some(ranges.context("an int8-activation model needs calibrated ranges")?),
        _ => None,
    };
    let mut b =
        Builder { g: GraphBuilder::default(), layers: net.layers.iter().peekable(), precision, ranges, probes: Vec::new() };
    b.g.input(INPUT, "N", &[3, 150, 150]);
    let mean: Vec<f32> = net.input_mean.to_vec();
    let mean = b.g.f32_const("mean", &[1, 3, 1, 1], &mean);
    let inv = b.g.f32_const("inv256", &[], &[1.0 / 256.0]);
    let centred = b.g.node("Sub", &[INPUT, &mean], vec![]);
    let scaled = b.g.node("Mul", &[&centred, &inv], vec![]);
    let mut x = Builder::value(scaled, [3, 150, 150]);
    if precision == Precision::QInt8 {
        // The input's range follows from pixels in 0..=255.
        let lo = net.input_mean.iter().fold(f32::MAX, |m, v| m.min(*v));
        let hi = net.input_mean.iter().fold(f32::MIN, |m, v| m.max(*v));
        x = b.quantize(&x, ((0.0 - hi) / 256.0, (255.0 - lo) / 256.0));
    }

    let x = b.conv_affine(&x, "stem", After::Relu)?;
    let Layer::MaxPool { kernel, stride, pad } = b.next()?.clone() else { bail!("expected the stem max_pool") };
    let mut x = b.pool("MaxPool", &x, kernel, stride, pad)?;

    let mut seen = String::new();
    for (block, expected) in BLOCKS.chars().enumerate() {
        // A down block is the one whose skip path is an avg_pool (5 records ahead).
        let down = matches!(b.layers.clone().nth(5), Some(Layer::AvgPool { .. }));
        seen.push(if down { 'd' } else { 'r' });
        ensure!(seen.ends_with(expected), "block structure {seen} differs from dlib's {BLOCKS}");
        x = b.residual(x, block, down)?;
    }
    let Layer::AvgPool { kernel: [0, 0], .. } = b.next()?.clone() else { bail!("expected the global average pool") };
    let pooled = b.g.node("GlobalAveragePool", &[&x.name], vec![]);
    let flat = b.g.node("Flatten", &[&pooled], vec![("axis", Attr::Int(1))]);
    let Layer::FcNoBias { outputs, inputs, weights } = b.next()?.clone() else { bail!("expected fc_2") };
    ensure!(inputs == x.shape[0], "fc expects {inputs} inputs, gets {}", x.shape[0]);
    // The head stays f32 in every precision (see Precision::Int8).
    let w = b.g.f32_const("w", &[inputs as i64, outputs as i64], &weights);
    let out = b.g.node("MatMul", &[&flat, &w], vec![]);
    ensure!(b.layers.next().is_none(), "records left after fc_2");
    b.g.output(&out, OUTPUT, "N", &[outputs as i64]);
    let probes = std::mem::take(&mut b.probes);
    Ok((b.g.finish("dlib_face_recognition_resnet_v1", metadata), probes))
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

    #[test]
    fn activation_grids_hold_zero_and_span_the_range() {
        // A ReLU output: 0 is the lowest code, so the clamp at -128 is the ReLU.
        let (scale, zero) = i8_params((0.0, 10.2));
        assert_eq!(zero, -128);
        assert!((scale * 255.0 - 10.2).abs() < 1e-5);
        // Both signs: 0 falls on a code, both ends within the 256 codes.
        let (scale, zero) = i8_params((-3.0, 5.0));
        let code = |v: f32| (v / scale).round() + zero as f32;
        assert!(code(-3.0) >= -128.0 && code(5.0) <= 127.5, "{} {}", code(-3.0), code(5.0));
        assert_eq!(code(0.0), zero as f32, "0 is exactly a code");
        // A range not holding 0 is widened to it.
        assert_eq!(i8_params((2.0, 4.0)).1, -128);
    }

    #[test]
    fn activation_ranges_round_trip_and_refuse_garbage() {
        let text = "# header\nb0.conv1 0e0 1.5e1\nb0.conv2 -9.5e0 7.25e0\n";
        let r = ActivationRanges::parse(text).unwrap();
        assert_eq!(r.0["b0.conv2"], (-9.5, 7.25));
        assert_eq!(ActivationRanges::parse(&r.to_text("again")).unwrap(), r);
        assert!(ActivationRanges::parse("b0.conv1 3 1").is_err(), "min above max");
        assert!(ActivationRanges::parse("b0.conv1 0 NaN").is_err());
        assert!(ActivationRanges::parse("b0.conv1 0").is_err());
    }
}
