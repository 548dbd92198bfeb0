//! Time ONNX networks in turns (one run of each, repeated 300 times), so a
//! machine whose speed drifts slows them all alike; prints each one's median
//! and its largest output difference from the first network's.
//! `cargo run --release -p facegate-face --example turns -- 1,3,80,80 A.onnx B.onnx:nhwc …`
//! (`:nhwc`: convolutions run channel-last, as `Liveness` runs its networks).
use std::time::Instant;
use tract_onnx::prelude::*;
use tract_onnx::tract_core;

fn main() -> TractResult<()> {
    let mut args = std::env::args().skip(1);
    let shape: Vec<usize> = args.next().unwrap().split(',').map(|s| s.parse().unwrap()).collect();
    let mut plans = vec![];
    let mut names = vec![];
    for a in args {
        let (path, nhwc) = match a.strip_suffix(":nhwc") {
            Some(p) => (p.to_string(), true),
            None => (a.clone(), false),
        };
        let mut model = tract_onnx::onnx().model_for_path(&path)?.with_input_fact(0, f32::fact(&shape).into())?;
        for i in 0..model.output_outlets()?.len() {
            model = model.with_output_fact(i, InferenceFact::default())?;
        }
        let mut typed = model.into_typed()?.into_decluttered()?;
        if nhwc {
            typed.transform(&*tract_core::transform::get_transform("conv_nhwc")?.unwrap())?;
        }
        plans.push(typed.into_optimized()?.into_runnable()?);
        names.push(a);
    }
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 200.0).collect();
    let input: TValue = Tensor::from_shape(&shape, &data)?.into_tvalue();
    let mut times = vec![vec![]; plans.len()];
    let mut outs = vec![];
    for run in 0..301 {
        for (i, p) in plans.iter().enumerate() {
            let t = Instant::now();
            let o = p.run(tvec!(input.clone()))?;
            if run > 0 {
                times[i].push(t.elapsed().as_secs_f64() * 1000.0);
            }
            if run == 0 {
                outs.push(o[0].clone().into_tensor());
            }
        }
    }
    for (i, t) in times.iter_mut().enumerate() {
        t.sort_by(f64::total_cmp);
        let (a, b) = (outs[i].try_as_plain_ram()?, outs[0].try_as_plain_ram()?);
        let diff = a.as_slice::<f32>()?.iter().zip(b.as_slice::<f32>()?).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        println!("{:<45} median {:.3} ms  p10 {:.3}  max|Δ| vs first {:.2e}", names[i], t[t.len() / 2], t[t.len() / 10], diff);
    }
    Ok(())
}
