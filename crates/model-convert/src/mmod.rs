//! dlib's CNN face detector (`mmod_human_face_detector.dat`) → ONNX.
//!
//! The graph is the network alone, fully convolutional over an input of any
//! height and width: the caller builds dlib's tiled image pyramid, and decodes
//! the score map with the geometry stored in the model's metadata.

use crate::onnx::{Attr, Dim, GraphBuilder};
use crate::resnet::fold_affine;
use anyhow::{bail, ensure, Result};
use facegate_dlib::mmod::MmodDetector;
use facegate_dlib::resnet::Layer;
use tract_onnx::pb::ModelProto;

/// Input name: float 1×3×H×W, RGB planar, (pixel − mean) / 256 (the tiled pyramid,
/// built in that space as dlib does: padding 0, levels resized as floats).
pub const INPUT: &str = "pyramid";
/// Output name: float 1×1×H'×W' detection scores.
pub const OUTPUT: &str = "scores";

/// Builds the graph; `metadata` is stored with the detector's own geometry
/// (`facegate.mean`, `facegate.window`, `facegate.nms`, `facegate.output_to_input`).
pub fn build(det: &MmodDetector, metadata: &[(&str, String)]) -> Result<ModelProto> {
    let mut g = GraphBuilder::default();
    g.input_dims(INPUT, &[Dim::Fixed(1), Dim::Fixed(3), Dim::Sym("H"), Dim::Sym("W")]);
    let mut x = INPUT.to_string();
    // Output position p maps to input position scale·p + offset (dlib's
    // map_output_to_input, composed over the convolutions, last layer first).
    let mut convs = Vec::new();
    let mut channels = 3;
    let mut layers = det.layers.iter().peekable();
    while let Some(layer) = layers.next() {
        match layer {
            Layer::Conv { filters, inputs, kernel, stride, pad, weights, bias } => {
                ensure!(*inputs == channels, "conv expects {inputs} channels, gets {channels}");
                let (w, b) = match layers.peek() {
                    Some(Layer::Affine { gamma, beta }) => {
                        layers.next();
                        fold_affine(weights, bias, gamma, beta)
                    }
                    _ => (weights.clone(), bias.clone()),
                };
                let dims = [*filters as i64, *inputs as i64, kernel[0] as i64, kernel[1] as i64];
                let w = g.f32_const("w", &dims, &w);
                let b = g.f32_const("b", &[*filters as i64], &b);
                let (p0, p1) = (pad[0] as i64, pad[1] as i64);
                x = g.node(
                    "Conv",
                    &[&x, &w, &b],
                    vec![
                        ("kernel_shape", Attr::Ints(vec![kernel[0] as i64, kernel[1] as i64])),
                        ("strides", Attr::Ints(vec![stride[0] as i64, stride[1] as i64])),
                        ("pads", Attr::Ints(vec![p0, p1, p0, p1])),
                    ],
                );
                ensure!(stride[0] == stride[1] && pad[0] == pad[1] && kernel[0] == kernel[1], "only square convolutions");
                convs.push((stride[0] as i64, pad[0] as i64, kernel[0] as i64));
                channels = *filters;
            }
            Layer::Relu => x = g.node("Relu", &[&x], vec![]),
            other => bail!("unexpected layer in the detector: {other:?}"),
        }
    }
    ensure!(channels == 1, "the detector must end in one score map, not {channels}");
    let (scale, offset) = convs.iter().rev().fold((1i64, 0i64), |(a, b), (s, p, k)| (a * s, b * s - p + k / 2));
    g.output_dims(&x, OUTPUT, &[Dim::Fixed(1), Dim::Fixed(1), Dim::Sym("OH"), Dim::Sym("OW")]);
    let mut meta = metadata.to_vec();
    let [r, g_, b] = det.input_mean;
    meta.push(("facegate.mean", format!("{r:?} {g_:?} {b:?}")));
    meta.push(("facegate.window", format!("{} {}", det.window[0], det.window[1])));
    meta.push(("facegate.nms", format!("{:?} {:?}", det.nms_iou, det.nms_covered)));
    meta.push(("facegate.output_to_input", format!("{scale} {offset}")));
    Ok(g.finish("dlib_mmod_human_face_detector", &meta))
}
