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
