//! YuNet (libfacedetection.train, Shiqi Yu, Apache-2.0): a small CNN face
//! detector with five landmarks. The export is kept as it is except that its
//! input and outputs are declared with free sizes (the graph reshapes with −1
//! and upsamples by scale, so any height and width that are multiples of 32
//! run), and facegate's metadata is added so the decoding travels with the
//! weights. The export's shape annotations of inner tensors are dropped.

use anyhow::{ensure, Context, Result};
use prost::Message;
use tract_onnx::pb::tensor_shape_proto::dimension::Value;
use tract_onnx::pb::{type_proto, ModelProto, StringStringEntryProto, ValueInfoProto};

/// The export used: `yunet_n_320_320.onnx` (the 640 file holds the same weights).
pub const EXPORT: &str = "yunet_n_320_320.onnx";
/// Its pinned sha256.
pub const EXPORT_SHA256: &str = "81dbde155e982455488235acb8ec2dec5d647edf7cf7080d33e4abb69b93a0d2";
/// Output file name.
pub const OUT: &str = "face_detector_yunet.onnx";
/// Where it comes from.
pub const SOURCE: &str = "libfacedetection.train (ShiqiYu @ 0047ac24), onnx/";

/// Replaces the fixed dimensions `dims` (by index) of a tensor's declared shape with named ones.
fn free_dims(info: &mut ValueInfoProto, dims: &[(usize, &str)]) -> Result<()> {
    let Some(type_proto::Value::TensorType(t)) = info.r#type.as_mut().and_then(|t| t.value.as_mut()) else {
        anyhow::bail!("{} is not a tensor", info.name);
    };
    let shape = t.shape.as_mut().with_context(|| format!("{} has no shape", info.name))?;
    for &(i, name) in dims {
        let d = shape.dim.get_mut(i).with_context(|| format!("{} has no dimension {i}", info.name))?;
        d.value = Some(Value::DimParam(name.into()));
    }
    Ok(())
}

/// The export with free input and output sizes and facegate's metadata.
pub fn convert(export: &[u8]) -> Result<Vec<u8>> {
    let mut model = ModelProto::decode(export).context("the YuNet export is not an ONNX model")?;
    let graph = model.graph.as_mut().context("the model has no graph")?;
    ensure!(graph.input.len() == 1 && graph.output.len() == 12, "YuNet: expected one input and 12 outputs");
    free_dims(&mut graph.input[0], &[(2, "height"), (3, "width")])?;
    // The export annotates inner tensors with their 320×320 shapes; drop them.
    graph.value_info.clear();
    for out in &mut graph.output {
        let stride = out.name.rsplit('_').next().unwrap_or_default().to_string();
        ensure!(["8", "16", "32"].contains(&stride.as_str()), "YuNet: unexpected output {}", out.name);
        free_dims(out, &[(1, &format!("anchors_{stride}"))])?;
    }
    let meta = [
        ("facegate.source", format!("{SOURCE}{EXPORT} (sha256:{EXPORT_SHA256})")),
        ("facegate.input", "1×3×H×W BGR planar, raw 0..255; H and W multiples of 32".into()),
        (
            "facegate.output",
            "per stride s in 8/16/32, anchors row-major over (H/s)×(W/s): cls_s, obj_s (score = √(cls·obj)), \
             bbox_s (cx, cy offsets and log w, log h, in stride units), kps_s (5 points: eyes, nose tip, mouth corners)"
                .into(),
        ),
        ("facegate.license", "Apache-2.0 (Shiqi Yu, libfacedetection.train)".into()),
    ];
    model.metadata_props.extend(meta.into_iter().map(|(k, v)| StringStringEntryProto { key: k.into(), value: v }));
    Ok(model.encode_to_vec())
}
