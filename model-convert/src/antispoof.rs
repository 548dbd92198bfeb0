//! The passive liveness networks (Silent-Face-Anti-Spoofing's MiniFASNetV2 and
//! MiniFASNetV1SE, Apache-2.0): their ONNX exports with a softmax appended, so
//! the file outputs class probabilities (index 1 = live), and facegate's
//! metadata (crop scale, input layout, source) so the crop geometry travels
//! with the weights. The network's arithmetic is left as exported; only its
//! PReLUs are rewritten as `max(x, a·x)`, the same values (for every slope
//! a ≤ 1, which holds for all of them) in two vectorised operators where
//! tract runs PReLU as three scalar ones (half the network's time).

use anyhow::{ensure, Context, Result};
use prost::Message;
use tract_onnx::pb::{GraphProto, ModelProto, NodeProto, StringStringEntryProto};

/// One liveness network of the ensemble.
pub struct AntispoofSource {
    /// File name of the ONNX export.
    pub export: &'static str,
    /// Its pinned sha256.
    pub export_sha256: &'static str,
    /// The original PyTorch weights it was exported from (for the record).
    pub original: &'static str,
    /// Their sha256.
    pub original_sha256: &'static str,
    /// Face box scale of the crop the network was trained on.
    pub crop_scale: &'static str,
    /// Output file name.
    pub out: &'static str,
}

/// The ensemble, pinned.
pub const ANTISPOOF: [AntispoofSource; 2] = [
    AntispoofSource {
        export: "MiniFASNetV2.onnx",
        export_sha256: "4eed38f0bde33c9b805942a5f25e42ce1161e2bda545254be622be957727794e",
        original: "2.7_80x80_MiniFASNetV2.pth",
        original_sha256: "a5eb02e1843f19b5386b953cc4c9f011c3f985d0ee2bb9819eea9a142099bec0",
        crop_scale: "2.7",
        out: "liveness_minifasnet_v2.onnx",
    },
    AntispoofSource {
        export: "MiniFASNetV1SE.onnx",
        export_sha256: "d819a69bac6b9ade2a0f4d9b60b618e1260f7bf3ba1fddff6c5d82131cb1083f",
        original: "4_0_0_80x80_MiniFASNetV1SE.pth",
        original_sha256: "84ee1d37d96894d5e82de5a57df044ef80a58be2b218b5ed7cdfd875ec2f5990",
        crop_scale: "4.0",
        out: "liveness_minifasnet_v1se.onnx",
    },
];

/// The float values of initializer `name` (raw little-endian or `float_data`).
fn initializer_floats(graph: &GraphProto, name: &str) -> Option<Vec<f32>> {
    let t = graph.initializer.iter().find(|t| t.name == name)?;
    if t.data_type != tract_onnx::pb::tensor_proto::DataType::Float as i32 {
        return None;
    }
    if !t.raw_data.is_empty() {
        return Some(t.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect());
    }
    Some(t.float_data.clone())
}

/// Rewrites each PReLU whose slopes are all ≤ 1 as `max(x, a·x)`; returns how many.
fn prelu_as_max(graph: &mut GraphProto) -> usize {
    let mut rewritten = 0;
    let mut nodes = Vec::with_capacity(graph.node.len() + 40);
    for node in std::mem::take(&mut graph.node) {
        let fits = node.op_type == "PRelu"
            && node.input.len() == 2
            && initializer_floats(graph, &node.input[1]).is_some_and(|a| !a.is_empty() && a.iter().all(|&v| v <= 1.0));
        if !fits {
            nodes.push(node);
            continue;
        }
        let scaled = format!("{}_scaled", node.output[0]);
        nodes.push(NodeProto {
            input: node.input.clone(),
            output: vec![scaled.clone()],
            name: format!("{}_mul", node.name),
            op_type: "Mul".into(),
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
    rewritten
}

/// The export with its PReLUs as `max(x, a·x)`, a softmax on its logits and facegate's metadata.
pub fn convert(export: &[u8], src: &AntispoofSource) -> Result<Vec<u8>> {
    let mut model = ModelProto::decode(export).with_context(|| format!("{} is not an ONNX model", src.export))?;
    let graph = model.graph.as_mut().context("the model has no graph")?;
    let prelus = graph.node.iter().filter(|n| n.op_type == "PRelu").count();
    ensure!(prelu_as_max(graph) == prelus, "{}: a PReLU slope above 1 (max(x, a·x) would differ)", src.export);
    ensure!(graph.output.len() == 1 && graph.input.len() == 1, "{}: expected one input and one output", src.export);
    let logits = graph.output[0].name.clone();
    let mut probabilities = graph.output[0].clone();
    probabilities.name = "probabilities".into();
    graph.node.push(NodeProto {
        input: vec![logits],
        output: vec![probabilities.name.clone()],
        name: "facegate_softmax".into(),
        op_type: "Softmax".into(),
        attribute: vec![tract_onnx::pb::AttributeProto {
            name: "axis".into(),
            r#type: tract_onnx::pb::attribute_proto::AttributeType::Int as i32,
            i: 1,
            ..Default::default()
        }],
        ..Default::default()
    });
    graph.output = vec![probabilities];
    let meta = [
        ("facegate.source", format!("Silent-Face-Anti-Spoofing {} (sha256:{}), exported as {} (sha256:{})", src.original, src.original_sha256, src.export, src.export_sha256)),
        ("facegate.crop_scale", src.crop_scale.to_string()),
        ("facegate.input", "1×3×80×80 BGR planar, raw 0..255: the face box scaled by crop_scale about its centre, shifted inside the image, resized".into()),
        ("facegate.output", "probabilities of (attack, live, attack): index 1 = live".into()),
        ("facegate.license", "Apache-2.0 (Minivision, Silent-Face-Anti-Spoofing)".into()),
    ];
    model.metadata_props.extend(meta.into_iter().map(|(k, v)| StringStringEntryProto { key: k.into(), value: v }));
    Ok(model.encode_to_vec())
}
