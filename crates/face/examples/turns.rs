//! Times ONNX networks in turns (one run of each, repeated 300 times), so a
//! machine whose speed drifts slows them all alike; prints each one's median
//! and its largest output difference from the first entry's.
//! `cargo run --release -p facegate-face --example turns -- 1,3,80,80 A.onnx A.onnx:nhwc B.onnx:split=16 …`
//! - `:nhwc`: convolutions run channel-last, as `Liveness` runs its networks;
//! - `:split=P`: the products split over two workers, as `Cores::split` runs
//!   them, with tract keeping products of fewer than P output tiles on one
//!   thread (`cores::SPLIT_PANEL_THRESHOLD`; tract's default is 64).

mod common;

use facegate_core::stats::median;
use std::time::Instant;
use tract_linalg::multithread::{multithread_tract_scope, set_threading_panel_threshold, Executor};
use tract_onnx::prelude::*;

const RUNS: usize = 300;

fn main() -> TractResult<()> {
    let mut args = std::env::args().skip(1);
    let shape = common::parse_shape(&args.next().expect("usage: turns SHAPE MODEL[:nhwc][:split=P] …"));
    let workers = std::sync::Arc::new(rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("two workers"));
    let mut entries = vec![];
    for arg in args {
        let mut parts = arg.split(':');
        let path = parts.next().unwrap_or_default();
        let (mut nhwc, mut split) = (false, None);
        for option in parts {
            match option.strip_prefix("split=") {
                Some(p) => split = Some(p.parse::<usize>().expect("split=TILES")),
                None if option == "nhwc" => nhwc = true,
                None => panic!("unknown option {option:?} (nhwc or split=TILES)"),
            }
        }
        entries.push((arg.clone(), split, common::load(path, &shape, nhwc)?.into_runnable()?));
    }
    let input = common::input(&shape)?;
    let run = |split: Option<usize>, plan: &std::sync::Arc<TypedRunnableModel>| match split {
        None => plan.run(tvec!(input.clone())),
        Some(tiles) => {
            set_threading_panel_threshold(tiles);
            multithread_tract_scope(Executor::MultiThread(workers.clone()), || plan.run(tvec!(input.clone())))
        }
    };
    let mut times = vec![Vec::with_capacity(RUNS); entries.len()];
    let mut outputs = vec![];
    // One warm-up turn, whose outputs are compared.
    for turn in 0..=RUNS {
        for (i, (_, split, plan)) in entries.iter().enumerate() {
            let t = Instant::now();
            let out = run(*split, plan)?;
            if turn == 0 {
                outputs.push(out[0].clone().into_tensor());
            } else {
                times[i].push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    let first = outputs[0].try_as_plain_ram()?;
    for (((name, _, _), times), out) in entries.iter().zip(times).zip(&outputs) {
        let out = out.try_as_plain_ram()?;
        let diff = out.as_slice::<f32>()?.iter().zip(first.as_slice::<f32>()?).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        println!("{name:<50} median {:.3} ms  max|Δ| vs the first {diff:.2e}", median(times));
    }
    Ok(())
}
