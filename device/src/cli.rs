//! The `device` command line: what each subcommand takes.

use crate::lock::LockKind;
use crate::source::SourceSpec;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// `device`.
#[derive(Parser)]
#[command(name = "device", version, about = "facegate door unit: recognise enrolled faces, drive the lock relay")]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand shares.
#[derive(clap::Args, Clone, Debug)]
pub struct Common {
    /// Configuration file (TOML); defaults apply to everything it leaves out.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Model directory (overrides paths.models).
    #[arg(long, env = "FACEGATE_MODELS")]
    pub models: Option<PathBuf>,
    /// Gallery file (overrides paths.gallery).
    #[arg(long)]
    pub gallery: Option<PathBuf>,
    /// Frame source: `replay:DIR` (or `replay:LIST`), or a V4L2 device such as /dev/video0.
    #[arg(long, default_value = "/dev/video0")]
    pub source: SourceSpec,
    /// Liveness check (overrides liveness.mode): `required` or `off`.
    #[arg(long, value_enum)]
    pub liveness: Option<crate::config::LivenessMode>,
}

/// `device run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// Lock: `sim` (records transitions) or `gpio` (relay pin from the config).
    #[arg(long, value_enum, default_value = "gpio")]
    pub lock: LockKind,
    /// Access log file (overrides paths.log); `none` for no log.
    #[arg(long)]
    pub log: Option<String>,
    /// Stop when a replay source ends.
    #[arg(long)]
    pub until_end: bool,
    /// Print one JSON object per event and relay transition on stdout.
    #[arg(long)]
    pub events_json: bool,
    /// Print fps and per-stage milliseconds at exit.
    #[arg(long)]
    pub stats: bool,
    /// Provisioning link: a serial device, `pty` (prints `serial: /dev/pts/N` on stderr), or `none`
    /// (overrides serial.port).
    #[arg(long)]
    pub serial: Option<String>,
    /// Serial line rate (overrides serial.baud).
    #[arg(long)]
    pub baud: Option<u32>,
    /// Setup mode: hosts may pair (for serial.setup_window_s seconds).
    #[arg(long)]
    pub setup: bool,
    /// Play a replay source over and over (demos, enrolment from the "camera").
    #[arg(long)]
    pub replay_loop: bool,
    /// Pace the link's replies like a real line at this baud rate (benchmarks over a PTY).
    #[arg(long, hide = true)]
    pub emulate_baud: Option<u32>,
    /// Run the wall clock from this instant (RFC 3339, e.g.
    /// 2026-12-02T10:00:00+01:00) instead of the system's: schedules,
    /// validity windows and event times follow it (tests and demonstrations).
    #[arg(long, hide = true, value_parser = parse_clock)]
    pub clock_start: Option<i64>,
}

/// An RFC 3339 instant as Unix milliseconds.
fn parse_clock(text: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("not an RFC 3339 time (2026-12-02T10:00:00+01:00): {e}"))
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Run the door loop.
    Run(RunArgs),
    /// Drive the relay to locked and exit (systemd's ExecStopPost: after a crash,
    /// a kill or a watchdog restart the door is locked even before the next start).
    Release {
        /// Shared options.
        #[command(flatten)]
        common: Common,
    },
    /// Print the embedding of the largest face in each image as JSON (for
    /// comparing builds, e.g. ARM under qemu against x86).
    #[command(hide = true)]
    Embed {
        /// Shared options.
        #[command(flatten)]
        common: Common,
        /// Images.
        images: Vec<PathBuf>,
    },
    /// Forget paired hosts (device-side reset); they must pair again in setup mode.
    Unpair {
        /// Shared options.
        #[command(flatten)]
        common: Common,
        /// Forget every host (required: there is no per-host reset here).
        #[arg(long)]
        all: bool,
    },
    /// Per-stage latency, identify time over 50,000 templates, peak memory with a
    /// 10,000-person gallery, allocations per frame: run it on the unit itself.
    #[cfg(feature = "tools")]
    Bench {
        /// Shared options.
        #[command(flatten)]
        common: Common,
        /// Runs per figure (medians are reported).
        #[arg(long, default_value_t = 50)]
        runs: usize,
        /// Also save the benchmark's synthetic 10,000-person gallery here, to
        /// measure a real `device run` with it (its people cannot be recognised).
        #[arg(long)]
        save_gallery: Option<PathBuf>,
        /// Cores for the whole-frame figure (default: recognition.threads, 0 = all).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Demo without hardware: enrol an LFW person, replay photos, simulated lock.
    #[cfg(feature = "tools")]
    Demo {
        /// LFW images: lfw.tgz or an unpacked directory.
        #[arg(long, default_value = "../shared/datasets/lfw/lfw.tgz")]
        lfw: PathBuf,
        /// Model directory.
        #[arg(long)]
        models: Option<PathBuf>,
        /// Keep the scenario here (frames/, gallery.fg, demo.toml) for `device run --config DIR/demo.toml`.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
    /// Validate the configuration, models, gallery and camera, then exit.
    Check {
        /// Shared options.
        #[command(flatten)]
        common: Common,
    },
}
