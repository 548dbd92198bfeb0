//! `host-tool`: provisions a facegate door unit and measures the face pipeline.

mod bench;

use anyhow::Result;
use clap::{Parser, Subcommand};
use facegate_face::Precision;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "host-tool", version, about = "facegate host tool: provisioning and benchmarks")]
struct Cli {
    /// Directory with the model files (default: the workspace's models/).
    #[arg(long, global = true, env = "FACEGATE_MODELS")]
    models: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Benchmarks of the face pipeline.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// LFW View 2 verification: 10 folds, threshold chosen on nine, applied to the tenth.
    Lfw(bench::lfw::LfwArgs),
    /// Per-stage timings on one core (median of repeated runs).
    Speed(bench::speed::SpeedArgs),
}

/// The models directory: --models, else `models/` next to the workspace this binary was built in.
fn models_dir(arg: Option<PathBuf>) -> PathBuf {
    arg.unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models"))
}

/// Parses `f32|int8` for clap.
pub fn parse_precision(s: &str) -> Result<Precision, String> {
    s.parse()
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let models = models_dir(cli.models);
    match cli.command {
        Command::Bench(BenchCommand::Lfw(args)) => bench::lfw::run(&models, args),
        Command::Bench(BenchCommand::Speed(args)) => bench::speed::run(&models, args),
    }
}
