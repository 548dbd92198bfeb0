//! A small builder for ONNX graphs on top of tract's protobuf types.

use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto, AttributeProto, GraphProto,
    ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// Opset the graphs target (per-axis DequantizeLinear needs ≥ 13).
pub const OPSET: i64 = 13;

/// Accumulates nodes and initializers; names are generated, deterministic.
#[derive(Default)]
pub struct GraphBuilder {
    graph: GraphProto,
    counter: usize,
}

/// A node attribute value.
pub enum Attr {
    /// Integer.
    Int(i64),
    /// Integer list.
    Ints(Vec<i64>),
    /// String.
    Str(&'static str),
}

impl GraphBuilder {
    /// A fresh value name with the given prefix.
    pub fn fresh(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}_{}", self.counter)
    }

    /// Adds an f32 constant and returns its name.
    pub fn f32_const(&mut self, prefix: &str, dims: &[i64], data: &[f32]) -> String {
        let name = self.fresh(prefix);
        self.graph.initializer.push(f32_tensor(&name, dims, data));
        name
    }

    /// Adds an i8 constant and returns its name.
    pub fn i8_const(&mut self, prefix: &str, dims: &[i64], data: &[i8]) -> String {
        let name = self.fresh(prefix);
        let raw = data.iter().map(|v| *v as u8).collect();
        self.push_init(&name, dims, DataType::Int8, raw);
        name
    }

    /// Adds an i32 constant and returns its name.
    pub fn i32_const(&mut self, prefix: &str, dims: &[i64], data: &[i32]) -> String {
        let name = self.fresh(prefix);
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_init(&name, dims, DataType::Int32, raw);
        name
    }

    /// Adds an i64 constant and returns its name.
    pub fn i64_const(&mut self, prefix: &str, dims: &[i64], data: &[i64]) -> String {
        let name = self.fresh(prefix);
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_init(&name, dims, DataType::Int64, raw);
        name
    }

    fn push_init(&mut self, name: &str, dims: &[i64], ty: DataType, raw: Vec<u8>) {
        self.graph.initializer.push(TensorProto {
            name: name.to_string(),
            dims: dims.to_vec(),
            data_type: ty as i32,
            raw_data: raw,
            ..Default::default()
        });
    }

    /// Adds a node with one output and returns the output's name.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>) -> String {
        let out = self.fresh(&op.to_lowercase());
        let attribute = attrs.into_iter().map(|(name, value)| attribute(name, value)).collect();
        self.graph.node.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name: out.clone(),
            op_type: op.to_string(),
            attribute,
            ..Default::default()
        });
        out
    }

    /// Declares a float input with a symbolic first dimension.
    pub fn input(&mut self, name: &str, batch: &'static str, dims: &[i64]) {
        self.input_dims(name, &batch_then(batch, dims));
    }

    /// Declares a float input of the given shape.
    pub fn input_dims(&mut self, name: &str, dims: &[Dim]) {
        self.graph.input.push(value_info(name, dims));
    }

    /// Renames `value` to `name` through an Identity node and declares it an output.
    pub fn output(&mut self, value: &str, name: &str, batch: &'static str, dims: &[i64]) {
        self.output_dims(value, name, &batch_then(batch, dims));
    }

    /// As [`output`](Self::output), with any shape.
    pub fn output_dims(&mut self, value: &str, name: &str, dims: &[Dim]) {
        self.graph.node.push(NodeProto {
            input: vec![value.to_string()],
            output: vec![name.to_string()],
            name: name.to_string(),
            op_type: "Identity".into(),
            ..Default::default()
        });
        self.graph.output.push(value_info(name, dims));
    }

    /// Wraps the graph in a model with metadata.
    pub fn finish(mut self, graph_name: &str, metadata: &[(&str, String)]) -> ModelProto {
        self.graph.name = graph_name.to_string();
        ModelProto {
            ir_version: 7,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
            producer_name: "facegate model-convert".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(self.graph),
            metadata_props: metadata
                .iter()
                .map(|(k, v)| StringStringEntryProto { key: k.to_string(), value: v.clone() })
                .collect(),
            ..Default::default()
        }
    }
}

/// An f32 initializer (raw little-endian data).
pub fn f32_tensor(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        name: name.to_string(),
        dims: dims.to_vec(),
        data_type: DataType::Float as i32,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// A node attribute.
pub fn attribute(name: &str, value: Attr) -> AttributeProto {
    let mut a = AttributeProto { name: name.to_string(), ..Default::default() };
    match value {
        Attr::Int(i) => {
            a.i = i;
            a.r#type = AttributeType::Int as i32;
        }
        Attr::Ints(v) => {
            a.ints = v;
            a.r#type = AttributeType::Ints as i32;
        }
        Attr::Str(s) => {
            a.s = s.as_bytes().to_vec();
            a.r#type = AttributeType::String as i32;
        }
    }
    a
}

/// One dimension of a declared input or output.
#[derive(Clone, Copy)]
pub enum Dim {
    /// Named, fixed when the model is loaded.
    Sym(&'static str),
    /// Fixed.
    Fixed(i64),
}

fn batch_then(batch: &'static str, dims: &[i64]) -> Vec<Dim> {
    std::iter::once(Dim::Sym(batch)).chain(dims.iter().map(|d| Dim::Fixed(*d))).collect()
}

fn value_info(name: &str, dims: &[Dim]) -> ValueInfoProto {
    use tensor_shape_proto::dimension::Value;
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Sym(s) => Value::DimParam(s.to_string()),
                Dim::Fixed(v) => Value::DimValue(*v),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The float values of initializer `name` (raw little-endian or `float_data`).
pub fn initializer_floats(graph: &GraphProto, name: &str) -> Option<Vec<f32>> {
    let t = graph.initializer.iter().find(|t| t.name == name)?;
    if t.data_type != tract_onnx::pb::tensor_proto::DataType::Float as i32 {
        return None;
    }
    if !t.raw_data.is_empty() {
        return Some(t.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect());
    }
    Some(t.float_data.clone())
}

/// Rewrites each PReLU whose slopes are all ≤ 1, one per channel, as
/// `max(x, a·x)` with `a·x` a 1×1 depthwise convolution; returns how many.
pub fn prelu_as_max(graph: &mut GraphProto) -> usize {
    let mut rewritten = 0;
    let mut nodes = Vec::with_capacity(graph.node.len() + 40);
    let mut weights = Vec::new();
    for node in std::mem::take(&mut graph.node) {
        let slopes = (node.op_type == "PRelu" && node.input.len() == 2)
            .then(|| per_channel_slopes(graph, &node.input[1]))
            .flatten()
            .filter(|a| a.iter().all(|&v| v <= 1.0));
        let Some(slopes) = slopes else {
            nodes.push(node);
            continue;
        };
        let channels = slopes.len() as i64;
        let kernel = format!("{}_as_depthwise", node.input[1]);
        weights.push(f32_tensor(&kernel, &[channels, 1, 1, 1], &slopes));
        let scaled = format!("{}_scaled", node.output[0]);
        nodes.push(NodeProto {
            input: vec![node.input[0].clone(), kernel],
            output: vec![scaled.clone()],
            name: format!("{}_mul", node.name),
            op_type: "Conv".into(),
            attribute: vec![attribute("group", Attr::Int(channels)), attribute("kernel_shape", Attr::Ints(vec![1, 1]))],
            ..Default::default()
        });
        nodes.push(NodeProto {
            input: vec![node.input[0].clone(), scaled],
            output: node.output.clone(),
            name: format!("{}_max", node.name),
            op_type: "Max".into(),
            ..Default::default()
        });
        rewritten += 1;
    }
    graph.node = nodes;
    // The slopes now live in the depthwise kernels only.
    let used: std::collections::HashSet<&String> = graph.node.iter().flat_map(|n| &n.input).collect();
    let kept: Vec<_> = std::mem::take(&mut graph.initializer).into_iter().filter(|t| used.contains(&t.name)).collect();
    graph.initializer = kept;
    graph.initializer.extend(weights);
    rewritten
}

/// The slopes of a PReLU that has one per channel (`[C, 1, 1]` or `[1, C, 1, 1]`).
fn per_channel_slopes(graph: &GraphProto, name: &str) -> Option<Vec<f32>> {
    let dims = &graph.initializer.iter().find(|t| t.name == name)?.dims;
    let channels = *dims.iter().max()?;
    let per_channel = matches!(dims.as_slice(), [c, 1, 1] | [1, c, 1, 1] if *c == channels);
    let slopes = initializer_floats(graph, name)?;
    (per_channel && slopes.len() as i64 == channels).then_some(slopes)
}

/// Folds each `BatchNormalization` that alone reads a `Conv`'s or a
/// `Gemm`'s (`transB = 1`, `alpha = beta = 1`) output into that node's
/// weights and bias; returns how many. tract fuses a normalisation into a
/// convolution it runs as a matrix product, but not into a depthwise one or a
/// `Gemm`, where it stays a pass of its own over the tensor.
pub fn fold_batchnorm(graph: &mut GraphProto) -> usize {
    let mut folded = 0;
    let mut index = 0;
    while index < graph.node.len() {
        match fold_one_batchnorm(graph, index) {
            Some(()) => folded += 1,
            None => index += 1,
        }
    }
    let used: std::collections::HashSet<String> = graph.node.iter().flat_map(|n| n.input.iter().cloned()).collect();
    graph.initializer.retain(|t| used.contains(&t.name));
    folded
}

/// Folds the normalisation at `graph.node[index]` (removing it) if it can.
fn fold_one_batchnorm(graph: &mut GraphProto, index: usize) -> Option<()> {
    let bn = &graph.node[index];
    if bn.op_type != "BatchNormalization" || bn.input.len() != 5 || bn.output.len() != 1 {
        return None;
    }
    let readers = graph.node.iter().filter(|n| n.input.contains(&bn.input[0])).count();
    let is_output = graph.output.iter().any(|o| o.name == bn.input[0]);
    let producer = graph.node.iter().position(|n| n.output.first() == Some(&bn.input[0]))?;
    let layer = &graph.node[producer];
    let int_attr = |n: &NodeProto, name: &str, default: i64| n.attribute.iter().find(|a| a.name == name).map_or(default, |a| a.i);
    let float_attr =
        |n: &NodeProto, name: &str, default: f32| n.attribute.iter().find(|a| a.name == name).map_or(default, |a| a.f);
    let foldable = match layer.op_type.as_str() {
        "Conv" => true,
        "Gemm" => {
            int_attr(layer, "transB", 0) == 1 && float_attr(layer, "alpha", 1.0) == 1.0 && float_attr(layer, "beta", 1.0) == 1.0
        }
        _ => false,
    };
    if !foldable || readers != 1 || is_output || layer.input.len() < 2 {
        return None;
    }
    let [gamma, beta, mean, var] = [1, 2, 3, 4].map(|i| initializer_floats(graph, &bn.input[i]));
    let (gamma, beta, mean, var) = (gamma?, beta?, mean?, var?);
    let epsilon = float_attr(bn, "epsilon", 1e-5) as f64;
    let weight = graph.initializer.iter().find(|t| t.name == layer.input[1])?;
    let weight_dims = weight.dims.clone();
    let mut weights = initializer_floats(graph, &layer.input[1])?;
    let outputs = gamma.len();
    if [beta.len(), mean.len(), var.len()].iter().any(|&l| l != outputs) || weight_dims.first() != Some(&(outputs as i64)) {
        return None;
    }
    let bias = match layer.input.get(2).filter(|b| !b.is_empty()) {
        Some(name) => initializer_floats(graph, name)?,
        None => vec![0.0; outputs],
    };
    if bias.len() != outputs || weights.len() % outputs != 0 {
        return None;
    }
    // y = γ·(x − μ)/√(σ² + ε) + β with x = W·in + b: scale W's rows and b by
    // s = γ/√(σ² + ε), then shift b by β − s·μ (in f64, then rounded once).
    let per_output = weights.len() / outputs;
    let scale: Vec<f64> = (0..outputs).map(|o| gamma[o] as f64 / (var[o] as f64 + epsilon).sqrt()).collect();
    for (o, row) in weights.chunks_exact_mut(per_output).enumerate() {
        row.iter_mut().for_each(|w| *w = (*w as f64 * scale[o]) as f32);
    }
    let bias: Vec<f32> = (0..outputs).map(|o| ((bias[o] as f64 - mean[o] as f64) * scale[o] + beta[o] as f64) as f32).collect();
    let (weight_name, bias_name) = (format!("{}_bn_folded", layer.input[1]), format!("{}_bn_folded_bias", layer.name));
    graph.initializer.push(f32_tensor(&weight_name, &weight_dims, &weights));
    graph.initializer.push(f32_tensor(&bias_name, &[outputs as i64], &bias));
    let bn_output = graph.node[index].output[0].clone();
    let layer = &mut graph.node[producer];
    layer.input.truncate(2);
    layer.input[1] = weight_name;
    layer.input.push(bias_name);
    layer.output[0] = bn_output;
    graph.node.remove(index);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use tract_onnx::prelude::*;

    /// x (1×2×3×3) → depthwise Conv → BN → y1, and → Flatten → Gemm → BN → y2;
    /// with `shared`, the convolution's output is also an output of its own.
    fn graph(shared: bool) -> ModelProto {
        let mut g = GraphBuilder::default();
        let dims = [Dim::Fixed(1), Dim::Fixed(2), Dim::Fixed(3), Dim::Fixed(3)];
        g.input_dims("x", &dims);
        let kernel: Vec<f32> = (0..18).map(|i| (i as f32 - 8.0) / 7.0).collect();
        let w = g.f32_const("w", &[2, 1, 3, 3], &kernel);
        let conv = g.node(
            "Conv",
            &["x", &w],
            vec![("group", Attr::Int(2)), ("kernel_shape", Attr::Ints(vec![3, 3])), ("pads", Attr::Ints(vec![1, 1, 1, 1]))],
        );
        let bn = |g: &mut GraphBuilder, x: &str, n: usize, shift: f32| {
            let values = |k: f32| (0..n).map(|i| k + shift + i as f32 * 0.25).collect::<Vec<_>>();
            let [gamma, beta, mean, var] = [1.5, -0.5, 0.75, 2.0].map(|k| g.f32_const("bn", &[n as i64], &values(k)));
            g.node("BatchNormalization", &[x, &gamma, &beta, &mean, &var], vec![])
        };
        let y1 = bn(&mut g, &conv, 2, 0.0);
        g.output_dims(&y1, "y1", &dims);
        let flat = g.node("Flatten", &[&y1], vec![]);
        let fc: Vec<f32> = (0..3 * 18).map(|i| ((i * 7 % 11) as f32 - 5.0) / 9.0).collect();
        let fw = g.f32_const("fc", &[3, 18], &fc);
        let fb = g.f32_const("fc_bias", &[3], &[0.1, -0.2, 0.3]);
        let gemm = g.node("Gemm", &[&flat, &fw, &fb], vec![("transB", Attr::Int(1))]);
        let y2 = bn(&mut g, &gemm, 3, 0.5);
        g.output_dims(&y2, "y2", &[Dim::Fixed(1), Dim::Fixed(3)]);
        if shared {
            g.output_dims(&conv, "conv", &dims);
        }
        g.finish("bn", &[])
    }

    fn run(model: &ModelProto) -> Vec<Vec<f32>> {
        let plan = tract_onnx::onnx()
            .model_for_read(&mut &model.encode_to_vec()[..])
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .unwrap();
        let x: Vec<f32> = (0..18).map(|i| ((i * 5 % 7) as f32 - 3.0) / 2.0).collect();
        let out = plan.run(tvec!(Tensor::from_shape(&[1, 2, 3, 3], &x).unwrap().into_tvalue())).unwrap();
        out.iter().map(|t| t.try_as_plain_ram().unwrap().as_slice::<f32>().unwrap().to_vec()).collect()
    }

    fn ops(model: &ModelProto) -> Vec<&str> {
        model.graph.as_ref().unwrap().node.iter().map(|n| n.op_type.as_str()).collect()
    }

    #[test]
    fn normalisations_after_a_conv_and_a_gemm_fold_into_their_weights_with_the_same_values() {
        let original = graph(false);
        let mut folded = original.clone();
        assert_eq!(fold_batchnorm(folded.graph.as_mut().unwrap()), 2);
        assert!(!ops(&folded).contains(&"BatchNormalization"), "{:?}", ops(&folded));
        let (want, got) = (run(&original), run(&folded));
        for (w, g) in want.iter().zip(&got) {
            assert_eq!(w.len(), g.len());
            let worst = w.iter().zip(g).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-5, "folded values differ by {worst}: {w:?} vs {g:?}");
        }
        // The weights of the folded layers are fresh initializers; the old ones are gone.
        let names: Vec<_> = folded.graph.as_ref().unwrap().initializer.iter().map(|t| t.name.clone()).collect();
        assert!(names.iter().any(|n| n.ends_with("_bn_folded")), "{names:?}");
        assert!(!names.iter().any(|n| n.starts_with("bn")), "{names:?}");
    }

    #[test]
    fn a_conv_output_read_elsewhere_keeps_its_normalisation() {
        let mut model = graph(true);
        assert_eq!(fold_batchnorm(model.graph.as_mut().unwrap()), 1, "only the Gemm's normalisation folds");
        assert_eq!(ops(&model).iter().filter(|o| **o == "BatchNormalization").count(), 1);
    }
}
