//! `host-tool bench …`: accuracy and speed of the face pipeline, the serial
//! link and the fleet.

pub mod blur;
pub mod detect;
pub mod fixtures;
pub mod fleet;
pub mod lfw;
pub mod lfw_args;
pub mod link;
pub mod liveness;
pub mod liveness_clips;
pub mod load;
pub mod speed;
pub mod trained;

use anyhow::Result;
use clap::Subcommand;
use std::path::Path;

/// `host-tool bench …`.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// LFW View 2 verification: 10 folds, threshold chosen on nine, applied to the tenth.
    Lfw(lfw_args::LfwArgs),
    /// Per-stage timings on one core (median of repeated runs).
    Speed(speed::SpeedArgs),
    /// Door detectors on LFW photos upright, rotated ±20° and mirrored; fits YuNet's box map.
    Detect(detect::DetectArgs),
    /// Sharpness of LFW face chips, plain and blurred: the data behind the blur check.
    Blur(blur::BlurArgs),
    /// Bulk enrolment through the device program over a PTY paced at a baud rate.
    Link(link::LinkArgs),
    /// Liveness (presentation-attack detection) on labelled live/attack sets: BPCER, APCER, ACER, DET curves.
    Liveness(liveness::LivenessArgs),
    /// A site pushed to many doors through a local mosquitto: convergence, broker bytes, events collected.
    Fleet(fleet::FleetArgs),
    /// The whole door under load at once: frames, serial enrolment, site syncs, log reads; stalls, events lost, memory.
    Load(load::LoadArgs),
}

/// Runs one benchmark with the model files in `models`, and prints it.
/// `network` is the embedding network the pipeline benches run.
pub fn run(models: &Path, network: facegate_face::Network, command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Lfw(args) => lfw::run(models, network, args),
        BenchCommand::Speed(args) => speed::run(models, network, args),
        BenchCommand::Detect(args) => detect::run(models, args),
        BenchCommand::Blur(args) => blur::run(models, network, args),
        BenchCommand::Link(args) => link::run(models, args),
        BenchCommand::Liveness(args) => liveness::run(models, args),
        BenchCommand::Fleet(args) => fleet::run(models, network, args),
        BenchCommand::Load(args) => load::run(models, network, args),
    }
}
