//! ONNX's `PRelu` with one slope per channel, as one pass over the tensor.
//!
//! tract expands `PRelu` into a comparison, a broadcast product and a select:
//! three passes and two temporaries, and the product by a `[C, 1, 1]` slope
//! runs a channel row at a time. On SFace (27 PReLUs, the first two on
//! 32×112×112 maps) that expansion, or its rewrite as a 1×1 depthwise product
//! and a maximum, took a quarter of the network's time. [`onnx`] gives a
//! loader whose `PRelu` becomes [`ChannelPrelu`] when its slopes are a constant
//! with one value per channel of an NCHW input, and a maximum, minimum,
//! product and sum of tract's own ops otherwise.

use tract_linalg::multithread::par_chunks_mut;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::change_axes::wire_with_rank_broadcast;
use tract_onnx::tract_core::ops::math;
use tract_onnx::tract_hir::internal::{expand, Expansion, InferenceResult, Solver, TensorProxy};

/// tract's ONNX loader with `PRelu` run by [`ChannelPrelu`] where it can be.
pub fn onnx() -> tract_onnx::Onnx {
    let mut onnx = tract_onnx::onnx();
    onnx.op_register.insert("PRelu", |_, _| Ok((expand(PreluExpansion), vec![])));
    onnx
}

/// `PRelu(x, slope)` while the graph is being typed: [`ChannelPrelu`] for a
/// per-channel constant slope, tract's elementwise ops for any other.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct PreluExpansion;

impl Expansion for PreluExpansion {
    fn name(&self) -> StaticName {
        "PRelu".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        if inputs.len() != 2 || outputs.len() != 1 {
            bail!("PRelu takes two inputs and gives one output");
        }
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
    }

    fn wire(&self, name: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let (x, slope) = (inputs[0], inputs[1]);
        let x_fact = model.outlet_fact(x)?.clone();
        if let Some(slopes) = per_channel_slopes(&x_fact, model.outlet_fact(slope)?) {
            return model.wire_node(name, ChannelPrelu { slopes: Arc::new(slopes), channel_axis: 1 }, &[x]);
        }
        // Any other slope (broadcast, computed): max(x, 0) + slope · min(x, 0).
        let zero = model.add_const(format!("{name}.zero"), tensor0(0f32).cast_to_dt(x_fact.datum_type)?.into_owned())?;
        let positive = wire_with_rank_broadcast(format!("{name}.positive"), model, math::max(), &[x, zero])?[0];
        let negative = wire_with_rank_broadcast(format!("{name}.negative"), model, math::min(), &[x, zero])?[0];
        let scaled = wire_with_rank_broadcast(format!("{name}.scaled"), model, math::mul(), &[negative, slope])?[0];
        wire_with_rank_broadcast(name, model, math::add(), &[positive, scaled])
    }
}

/// The slopes as `C` f32 values when `slope` is a constant holding one per
/// channel of the f32 NCHW input `x` (`[C, 1, 1]` or `[1, C, 1, 1]`; a `[C]`
/// slope broadcasts along the last axis, as numpy's rules say).
fn per_channel_slopes(x: &TypedFact, slope: &TypedFact) -> Option<Vec<f32>> {
    let konst = slope.konst.as_ref()?;
    if x.datum_type != f32::datum_type() || konst.datum_type() != f32::datum_type() || x.rank() < 2 {
        return None;
    }
    let channels = x.shape[1].to_usize().ok()?;
    let dims = konst.shape();
    let trailing_ones = x.rank() - 2;
    let per_channel = dims.iter().filter(|&&d| d != 1).count() <= 1
        && konst.len() == channels
        && dims.len() <= x.rank()
        && (channels == 1 || dims.len() > trailing_ones && dims[dims.len() - 1 - trailing_ones] == channels);
    per_channel.then(|| konst.try_as_plain_ram().and_then(|v| v.as_slice::<f32>().map(<[f32]>::to_vec)).ok()).flatten()
}

/// PReLU over an f32 tensor with one slope per channel: `x` where `x > 0`,
/// `slope[c] · x` elsewhere; one pass, in place when the input is not shared.
#[derive(Debug, Clone)]
pub struct ChannelPrelu {
    /// One slope per channel.
    pub slopes: Arc<Vec<f32>>,
    /// The channels' axis (1 in NCHW; it moves when tract drops the batch
    /// axis or turns a layout around, see `change_axes`).
    pub channel_axis: usize,
}

// tract compares ops to merge equal nodes: slopes equal bit for bit.
impl PartialEq for ChannelPrelu {
    fn eq(&self, other: &Self) -> bool {
        self.channel_axis == other.channel_axis
            && self.slopes.len() == other.slopes.len()
            && self.slopes.iter().zip(other.slopes.iter()).all(|(a, b)| a.to_bits() == b.to_bits())
    }
}

impl Eq for ChannelPrelu {}

impl Op for ChannelPrelu {
    fn name(&self) -> StaticName {
        "ChannelPrelu".into()
    }

    op_as_typed_op!();
}

impl EvalOp for ChannelPrelu {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let mut y = x.into_tensor();
        let (channels, axis) = (self.slopes.len(), self.channel_axis);
        if y.rank() <= axis || y.shape()[axis] != channels {
            bail!("ChannelPrelu with {channels} slopes on axis {axis} given a {:?} tensor", y.shape());
        }
        let plane: usize = y.shape()[axis + 1..].iter().product();
        let mut view = y.try_as_plain_ram_mut()?;
        let values = view.as_slice_mut::<f32>()?;
        // A select, not a branch: the loops vectorise.
        let prelu = |v: f32, slope: f32| if v > 0.0 { v } else { v * slope };
        // A row is one channel plane (one slope), or channel-last one
        // position's channels. Split over the pool tract splits its products
        // over (if any), which also clears every worker's state.
        let row = if plane == 1 { channels } else { plane };
        if row > 0 {
            par_chunks_mut(values, row, values.len(), |first, rows| {
                clear_upper_halves();
                for (r, values) in rows.chunks_exact_mut(row).enumerate() {
                    if plane == 1 {
                        values.iter_mut().zip(self.slopes.iter()).for_each(|(v, &slope)| *v = prelu(*v, slope));
                    } else {
                        let slope = self.slopes[(first + r) % channels];
                        values.iter_mut().for_each(|v| *v = prelu(*v, slope));
                    }
                }
                Ok(())
            })?;
        }
        Ok(tvec!(y.into_tvalue()))
    }
}

/// x86: tract's AVX-512 matrix kernels return with the vector registers'
/// upper halves in use, and the SSE code after them (this op, tract's
/// depthwise convolutions) then ran up to 3× slower on a Zen 4 (SFace's
/// stride-2 depthwise layers: 2.1 ms → 0.7 ms). Each of SFace's PReLUs
/// follows a convolution and one comes before each depthwise layer, so they
/// clear the state on the threads they run on. Elsewhere this does nothing.
fn clear_upper_halves() {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx") {
        #[target_feature(enable = "avx")]
        fn zero_upper() {
            std::arch::x86_64::_mm256_zeroupper()
        }
        // SAFETY: AVX is present (checked above).
        unsafe { zero_upper() }
    }
}

impl TypedOp for ChannelPrelu {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type == f32::datum_type(), "ChannelPrelu runs on f32");
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    fn axes_mapping(&self, inputs: &[&TypedFact], outputs: &[&TypedFact]) -> TractResult<AxesMapping> {
        AxesMapping::natural(inputs, outputs)
    }

    // Without this, the op would pin the batch axis that tract removes from
    // the rest of the network (the depthwise convolutions then ran 2-3× slower).
    fn change_axes(
        &self,
        model: &TypedModel,
        node: &TypedNode,
        _io: InOut,
        change: &AxisOp,
    ) -> TractResult<Option<AxisChangeConsequence>> {
        Ok(change.transform_axis(self.channel_axis).map(|channel_axis| {
            let op = ChannelPrelu { channel_axis, ..self.clone() };
            AxisChangeConsequence::new(model, node, Some(Box::new(op)), change)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-node ONNX graph `y = PRelu(x, slope)` with `slope` of `slope_dims`,
    /// run on `x` by [`onnx`]'s loader: the output and the plan's op names.
    fn run(x_dims: &[usize], x: &[f32], slope_dims: &[i64], slopes: &[f32]) -> (Vec<f32>, Vec<String>) {
        use tract_onnx::pb::*;
        let slope = TensorProto {
            name: "slope".into(),
            dims: slope_dims.to_vec(),
            data_type: tensor_proto::DataType::Float as i32,
            float_data: slopes.to_vec(),
            ..Default::default()
        };
        let value = |name: &str| ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: tensor_proto::DataType::Float as i32,
                    shape: None,
                })),
                ..Default::default()
            }),
            ..Default::default()
        };
        let graph = GraphProto {
            node: vec![NodeProto {
                input: vec!["x".into(), "slope".into()],
                output: vec!["y".into()],
                op_type: "PRelu".into(),
                ..Default::default()
            }],
            initializer: vec![slope],
            input: vec![value("x")],
            output: vec![value("y")],
            ..Default::default()
        };
        let proto = ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 16 }],
            graph: Some(graph),
            ..Default::default()
        };
        let plan = onnx()
            .model_for_proto_model(&proto)
            .unwrap()
            .with_input_fact(0, f32::fact(x_dims).into())
            .unwrap()
            .into_optimized()
            .unwrap();
        let ops = plan.nodes().iter().map(|n| n.op().name().to_string()).collect();
        let input = Tensor::from_shape(x_dims, x).unwrap();
        let y = plan.into_runnable().unwrap().run(tvec!(input.into_tvalue())).unwrap();
        (y[0].try_as_plain_ram().unwrap().as_slice::<f32>().unwrap().to_vec(), ops)
    }

    fn reference(x: &[f32], plane: usize, slopes: &[f32]) -> Vec<f32> {
        x.iter().enumerate().map(|(i, &v)| if v > 0.0 { v } else { v * slopes[(i / plane) % slopes.len()] }).collect()
    }

    #[test]
    fn a_per_channel_slope_runs_as_one_op_with_prelu_values() {
        // Slopes below, at and above one, a negative one; two images.
        let slopes = [0.25, 1.0, 1.75, -0.5];
        let x: Vec<f32> = (0..2 * 4 * 3 * 5).map(|i| ((i * 37 % 23) as f32 - 11.0) / 3.0).collect();
        for dims in [&[4i64, 1, 1][..], &[1, 4, 1, 1]] {
            let (y, ops) = run(&[2, 4, 3, 5], &x, dims, &slopes);
            assert_eq!(y, reference(&x, 15, &slopes), "slope dims {dims:?}");
            assert!(ops.iter().any(|o| o == "ChannelPrelu"), "slope dims {dims:?}: {ops:?}");
            assert!(!ops.iter().any(|o| o == "Iff"), "{ops:?}");
        }
        // Channels last (rank 2, one value per channel per row): the same values.
        let x: Vec<f32> = (0..3 * 4).map(|i| i as f32 - 6.5).collect();
        let (y, ops) = run(&[3, 4], &x, &[4], &slopes);
        let want: Vec<f32> = x.iter().enumerate().map(|(i, &v)| if v > 0.0 { v } else { v * slopes[i % 4] }).collect();
        assert_eq!(y, want);
        assert!(ops.iter().any(|o| o == "ChannelPrelu"), "{ops:?}");
    }

    #[test]
    fn a_slope_that_is_not_per_channel_falls_back_with_the_same_values() {
        // One slope per column: broadcast along the last axis, not the channels.
        let slopes = [0.5, 2.0, -1.0];
        let x: Vec<f32> = (0..2 * 2 * 3).map(|i| i as f32 - 6.0).collect();
        let (y, ops) = run(&[1, 2, 2, 3], &x, &[3], &slopes);
        let expected: Vec<f32> = x.iter().enumerate().map(|(i, &v)| if v > 0.0 { v } else { v * slopes[i % 3] }).collect();
        assert_eq!(y, expected);
        assert!(!ops.iter().any(|o| o == "ChannelPrelu"), "{ops:?}");
    }
}
