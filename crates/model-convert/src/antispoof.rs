//! The passive liveness networks (Silent-Face-Anti-Spoofing's MiniFASNetV2 and
//! MiniFASNetV1SE, Apache-2.0): their ONNX exports with a softmax appended, so
//! the file outputs class probabilities (index 1 = live), and facegate's
//! metadata (crop scale, input layout, source) so the crop geometry travels
//! with the weights. The network's arithmetic is left as exported; only its
//! PReLUs are rewritten as `max(x, a·x)`, the same values (for every slope
//! a ≤ 1, which holds for all of them) in two vectorised operators where
//! tract runs PReLU as three scalar ones (half the network's time). The
//! product `a·x` is written as a 1×1 depthwise convolution with weights `a`
//! and no bias (one multiply per value, the same result): facegate runs these
//! networks channel-last, where tract has a vectorised depthwise kernel but
//! broadcasts a per-channel `Mul` element by element.

use crate::onnx::{attribute, prelu_as_max, Attr};
use anyhow::{ensure, Context, Result};
use prost::Message;
use tract_onnx::pb::{ModelProto, NodeProto, StringStringEntryProto};

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

/// The export with its PReLUs as `max(x, a·x)`, a softmax on its logits and facegate's metadata.
pub fn convert(export: &[u8], src: &AntispoofSource) -> Result<Vec<u8>> {
    let mut model = ModelProto::decode(export).with_context(|| format!("{} is not an ONNX model", src.export))?;
    let graph = model.graph.as_mut().context("the model has no graph")?;
    let prelus = graph.node.iter().filter(|n| n.op_type == "PRelu").count();
    ensure!(
        prelu_as_max(graph) == prelus,
        "{}: a PReLU whose slope is above 1 (max(x, a·x) would differ) or not one per channel",
        src.export
    );
    ensure!(graph.output.len() == 1 && graph.input.len() == 1, "{}: expected one input and one output", src.export);
    let logits = graph.output[0].name.clone();
    let mut probabilities = graph.output[0].clone();
    probabilities.name = "probabilities".into();
    graph.node.push(NodeProto {
        input: vec![logits],
        output: vec![probabilities.name.clone()],
        name: "facegate_softmax".into(),
        op_type: "Softmax".into(),
        attribute: vec![attribute("axis", Attr::Int(1))],
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::{Dim, GraphBuilder};
    use tract_onnx::prelude::*;

    /// A PReLU over 3 channels of a 1×3×2×2 input, rewritten, run by tract.
    fn rewritten_prelu(slopes: &[f32], x: &[f32]) -> (usize, Vec<String>, Vec<f32>) {
        let mut g = GraphBuilder::default();
        g.input_dims("x", &[Dim::Fixed(1), Dim::Fixed(3), Dim::Fixed(2), Dim::Fixed(2)]);
        let a = g.f32_const("slope", &[3, 1, 1], slopes);
        let y = g.node("PRelu", &["x", &a], vec![]);
        g.output_dims(&y, "y", &[Dim::Fixed(1), Dim::Fixed(3), Dim::Fixed(2), Dim::Fixed(2)]);
        let mut model = g.finish("prelu", &[]);
        let graph = model.graph.as_mut().unwrap();
        let n = prelu_as_max(graph);
        let ops = graph.node.iter().map(|n| n.op_type.clone()).collect();
        let plan = tract_onnx::onnx()
            .model_for_read(&mut &model.encode_to_vec()[..])
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .unwrap();
        let out = plan.run(tvec!(Tensor::from_shape(&[1, 3, 2, 2], x).unwrap().into_tvalue())).unwrap();
        let y = out[0].try_as_plain_ram().unwrap().as_slice::<f32>().unwrap().to_vec();
        (n, ops, y)
    }

    #[test]
    fn a_prelu_becomes_the_max_of_x_and_a_depthwise_product_with_the_same_values() {
        let slopes = [0.25, -0.5, 1.0];
        let x: Vec<f32> = (0..12).map(|i| i as f32 - 5.5).collect();
        let (n, ops, y) = rewritten_prelu(&slopes, &x);
        assert_eq!(n, 1);
        assert_eq!(ops, ["Conv", "Max", "Identity"]);
        let want: Vec<f32> = x.iter().enumerate().map(|(i, &v)| if v >= 0.0 { v } else { slopes[i / 4] * v }).collect();
        assert_eq!(y, want);
    }

    #[test]
    fn a_slope_above_one_is_left_as_a_prelu() {
        let (n, ops, _) = rewritten_prelu(&[0.25, 1.5, 0.1], &[1.0; 12]);
        assert_eq!(n, 0);
        assert_eq!(ops, ["PRelu", "Identity"]);
    }
}
