//! What the network-timing examples share: loading an ONNX file for one input
//! shape, and a fixed input that is not all zeros.

use tract_onnx::prelude::*;

/// `path` optimised for an f32 input of `shape` (outputs left free), with its
/// convolutions run channel-last when `channel_last` (as `Liveness` runs its
/// networks).
pub fn load(path: &str, shape: &[usize], channel_last: bool) -> TractResult<TypedModel> {
    let mut model = facegate_face::prelu::onnx().model_for_path(path)?.with_input_fact(0, f32::fact(shape).into())?;
    for i in 0..model.output_outlets()?.len() {
        model = model.with_output_fact(i, InferenceFact::default())?;
    }
    let typed = model.into_typed()?.into_decluttered()?;
    let typed = if channel_last { facegate_face::liveness::channel_last(typed)? } else { typed };
    typed.into_optimized()
}

/// A deterministic input of `shape` spread over −100..100 (a zero input
/// hides differences between networks).
pub fn input(shape: &[usize]) -> TractResult<TValue> {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 200.0).collect();
    Ok(Tensor::from_shape(shape, &data)?.into_tvalue())
}

/// `1,3,150,150` as a shape.
pub fn parse_shape(s: &str) -> Vec<usize> {
    s.split(',').map(|d| d.parse().expect("a shape like 1,3,150,150")).collect()
}
