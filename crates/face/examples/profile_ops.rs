//! Time per operator kind of an ONNX network on tract, to see where a model's time goes.
//! `cargo run --release -p facegate-face --example profile_ops -- MODEL.onnx 1,3,256,320 [THREADS]`
//! (THREADS > 1: tract's matrix kernels split over that many workers; NHWC=1 in
//! the environment runs the convolutions channel-last; SHOW=1 prints the
//! first matrix products with the kernels tract chose).

mod common;

use std::collections::BTreeMap;
use std::time::Instant;
use tract_core::plan::SimpleState;
use tract_onnx::prelude::*;
use tract_onnx::tract_core;

fn main() -> TractResult<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: profile_ops MODEL.onnx SHAPE");
    let shape = common::parse_shape(&args.next().expect("SHAPE like 1,3,256,320"));
    let opt = common::load(&path, &shape, std::env::var_os("NHWC").is_some())?;
    if std::env::var_os("SHOW").is_some() {
        for n in opt.nodes().iter().filter(|n| n.op().name().contains("MatMul")).take(40) {
            println!("{} {:?}", n.name, n.op().info()?);
        }
    }
    let plan = opt.into_runnable()?;
    let input = common::input(&shape)?;
    let threads: usize = args.next().map(|t| t.parse().unwrap()).unwrap_or(1);
    if threads > 1 {
        tract_linalg::multithread::set_default_executor(tract_linalg::multithread::Executor::multithread(threads));
    }
    let mut per_op: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    let runs = 20;
    let mut total = 0.0;
    for run in 0..=runs {
        let mut state = SimpleState::new(&plan)?;
        let t0 = Instant::now();
        state.run_plan_with_eval(tvec!(input.clone()), |ctx, st, node, inputs| {
            let t = Instant::now();
            let r = tract_core::plan::eval(ctx, st, node, inputs);
            if run > 0 {
                let e = per_op.entry(node.op().name().to_string()).or_default();
                e.0 += t.elapsed().as_secs_f64() * 1000.0;
                e.1 += 1;
            }
            r
        })?;
        if run > 0 {
            total += t0.elapsed().as_secs_f64() * 1000.0;
        }
    }
    let mut rows: Vec<_> = per_op.into_iter().collect();
    rows.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    println!("total {:.2} ms per run", total / runs as f64);
    for (op, (ms, n)) in rows {
        println!("{op:<28} {:>8.3} ms  ({} nodes)", ms / runs as f64, n / runs);
    }
    Ok(())
}
