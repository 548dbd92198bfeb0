//! One network on one thread against two workers at several of tract's panel
//! thresholds (products with fewer output tiles stay on one thread), in turns.
//! `cargo run --release -p facegate-face --example split_turns -- MODEL.onnx 1,3,150,150`
use std::time::Instant;
use tract_linalg::multithread::{multithread_tract_scope, set_threading_panel_threshold, Executor};
use tract_onnx::prelude::*;

fn main() -> TractResult<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap();
    let shape: Vec<usize> = args.next().unwrap().split(',').map(|s| s.parse().unwrap()).collect();
    let plan = tract_onnx::onnx()
        .model_for_path(&path)?
        .with_input_fact(0, f32::fact(&shape).into())?
        .into_optimized()?
        .into_runnable()?;
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 200.0).collect();
    let input: TValue = Tensor::from_shape(&shape, &data)?.into_tvalue();
    let pool = std::sync::Arc::new(rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap());
    let configs: Vec<(usize, usize)> = vec![(1, 64), (2, 64), (2, 16), (2, 8), (2, 4), (2, 0)];
    let mut times = vec![vec![]; configs.len()];
    for run in 0..201 {
        for (i, &(threads, panels)) in configs.iter().enumerate() {
            set_threading_panel_threshold(panels);
            let t = Instant::now();
            if threads == 1 {
                plan.run(tvec!(input.clone()))?;
            } else {
                multithread_tract_scope(Executor::MultiThread(pool.clone()), || plan.run(tvec!(input.clone())))?;
            }
            if run > 0 {
                times[i].push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    let base = {
        let mut t = times[0].clone();
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    for (i, t) in times.iter_mut().enumerate() {
        t.sort_by(f64::total_cmp);
        println!(
            "threads {} panels {:>3}: median {:.2} ms ({:.2}× one thread)",
            configs[i].0,
            configs[i].1,
            t[t.len() / 2],
            t[t.len() / 2] / base
        );
    }
    Ok(())
}
