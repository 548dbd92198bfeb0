//! The lab behind `host-tool bench …` and `host-tool train`: accuracy and
//! speed of the face pipeline on LFW and the liveness sets, the serial link
//! and the fleet under load, and metric learning with the triplet loss.
//!
//! The operator's and the site administrator's commands live in `host-tool`;
//! this crate is what measures and trains. The modules depend one way:
//! `labelled` and `plot` at the bottom, `features` on `labelled`, `train` on
//! `features` and `plot`, and `bench` on all of them.

pub mod bench;
pub mod features;
pub mod labelled;
pub mod plot;
pub mod train;

pub use bench::{run as run_bench, BenchCommand};
pub use train::{run as run_train, TrainArgs};
