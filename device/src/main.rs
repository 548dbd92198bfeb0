//! `device`: the program at the door.

mod bench;
mod config;
mod demo;
mod lock;
mod notify;
mod policy;
mod provision;
mod runner;
mod serial;
mod shared;
mod source;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use config::Config;
use facegate_face::{Pipeline, PipelineConfig, Precision};
use facegate_store::{AccessLog, Gallery};
use lock::{install_panic_release, Relay, SharedRelay, SimRelay};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

#[global_allocator]
static ALLOCATOR: facegate_arena::FrameArenaAllocator = facegate_arena::FrameArenaAllocator;

#[derive(Parser)]
#[command(name = "device", version, about = "facegate door unit: recognise enrolled faces, drive the lock relay")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Common {
    /// Configuration file (TOML); defaults apply to everything it leaves out.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Model directory (overrides paths.models).
    #[arg(long)]
    models: Option<PathBuf>,
    /// Gallery file (overrides paths.gallery).
    #[arg(long)]
    gallery: Option<PathBuf>,
    /// Frame source: `replay:DIR` (or `replay:LIST`), or a V4L2 device such as /dev/video0.
    #[arg(long, default_value = "/dev/video0")]
    source: String,
}

#[derive(Subcommand)]
enum Command {
    /// Run the door loop.
    Run {
        #[command(flatten)]
        common: Common,
        /// Lock: `sim` (records transitions) or `gpio` (relay pin from the config).
        #[arg(long, default_value = "gpio")]
        lock: String,
        /// Access log file (overrides paths.log); `none` for no log.
        #[arg(long)]
        log: Option<String>,
        /// Stop when a replay source ends.
        #[arg(long)]
        until_end: bool,
        /// Print one JSON object per event and relay transition on stdout.
        #[arg(long)]
        events_json: bool,
        /// Print fps and per-stage milliseconds at exit.
        #[arg(long)]
        stats: bool,
        /// Provisioning link: a serial device, `pty` (prints `serial: /dev/pts/N` on stderr), or `none`
        /// (overrides serial.port).
        #[arg(long)]
        serial: Option<String>,
        /// Serial line rate (overrides serial.baud).
        #[arg(long)]
        baud: Option<u32>,
        /// Setup mode: hosts may pair (for serial.setup_window_s seconds).
        #[arg(long)]
        setup: bool,
        /// Play a replay source over and over (demos, enrolment from the "camera").
        #[arg(long)]
        replay_loop: bool,
        /// Pace the link's replies like a real line at this baud rate (benchmarks over a PTY).
        #[arg(long, hide = true)]
        emulate_baud: Option<u32>,
    },
    /// Drive the relay to locked and exit (systemd's ExecStopPost: after a crash,
    /// a kill or a watchdog restart the door is locked even before the next start).
    Release {
        #[command(flatten)]
        common: Common,
    },
    /// Print the embedding of the largest face in each image as JSON (for
    /// comparing builds, e.g. ARM under qemu against x86).
    #[command(hide = true)]
    Embed {
        #[command(flatten)]
        common: Common,
        /// Images.
        images: Vec<PathBuf>,
    },
    /// Forget paired hosts (device-side reset); they must pair again in setup mode.
    Unpair {
        #[command(flatten)]
        common: Common,
        /// Forget every host (required: there is no per-host reset here).
        #[arg(long)]
        all: bool,
    },
    /// Per-stage latency, identify time over 50,000 templates, peak memory with a
    /// 10,000-person gallery, allocations per frame: run it on the unit itself.
    Bench {
        #[command(flatten)]
        common: Common,
        /// Runs per figure (medians are reported).
        #[arg(long, default_value_t = 50)]
        runs: usize,
        /// Also save the benchmark's synthetic 10,000-person gallery here, to
        /// measure a real `device run` with it (its people cannot be recognised).
        #[arg(long)]
        save_gallery: Option<PathBuf>,
    },
    /// Demo without hardware: enrol an LFW person, replay photos, simulated lock.
    Demo {
        /// LFW images: lfw.tgz or an unpacked directory.
        #[arg(long, default_value = "../shared/datasets/lfw/lfw.tgz")]
        lfw: PathBuf,
        /// Model directory.
        #[arg(long)]
        models: Option<PathBuf>,
    },
    /// Validate the configuration, models, gallery and camera, then exit.
    Check {
        #[command(flatten)]
        common: Common,
    },
}

/// Models: --models, else the configured directory, else the workspace's models/ (development).
fn models_dir(common: &Common, config: &Config) -> PathBuf {
    if let Some(m) = &common.models {
        return m.clone();
    }
    if common.config.is_some() || config.paths.models.is_dir() {
        return config.paths.models.clone();
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// Where the gallery, log and pairing file are. With `--gallery` and no
/// `--config`, the log and pairing file live beside the gallery, so a test or
/// demo needs one writable directory and nothing under /var/lib.
struct DataPaths {
    gallery: PathBuf,
    log: PathBuf,
    pairing: PathBuf,
}

fn data_paths(common: &Common, config: &Config) -> DataPaths {
    match (&common.gallery, &common.config) {
        (Some(g), None) => {
            let dir = g.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
            DataPaths { gallery: g.clone(), log: dir.join("access.log"), pairing: dir.join("pairing.fg") }
        }
        _ => DataPaths {
            gallery: common.gallery.clone().unwrap_or(config.paths.gallery.clone()),
            log: config.paths.log.clone(),
            pairing: config.paths.pairing.clone(),
        },
    }
}

/// Setup mode: `--setup`, or the setup button held at start (GPIO lock only).
fn setup_requested(flag: bool, lock: &str, config: &Config) -> bool {
    if flag {
        return true;
    }
    #[cfg(target_os = "linux")]
    if let (Some(pin), "gpio") = (config.serial.setup_button_pin, lock) {
        return lock::gpio::button_held(pin).unwrap_or_else(|e| {
            tracing::warn!("setup button on GPIO {pin}: {e}");
            false
        });
    }
    let _ = (lock, config);
    false
}

fn load_config(path: Option<&Path>) -> Result<Config> {
    match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading config {}", p.display()))?;
            Config::from_toml(&text).with_context(|| format!("in {}", p.display()))
        }
        None => Ok(Config::default()),
    }
}

fn load_pipeline(dir: &Path, config: &Config) -> Result<Pipeline> {
    let r = &config.recognition;
    let precision: Precision = r.precision.parse().map_err(anyhow::Error::msg)?;
    let settings = PipelineConfig { upsample: r.upsample, min_face: r.min_face, ..PipelineConfig::door() };
    Pipeline::load(dir, precision, settings).with_context(|| format!("loading models from {}", dir.display()))
}

fn load_gallery(path: &Path, model_id: &str) -> Result<Gallery> {
    if !path.exists() {
        tracing::warn!("no gallery at {}: nobody is enrolled, every face is a stranger", path.display());
        return Ok(Gallery::new(model_id));
    }
    let g = Gallery::load(path).with_context(|| format!("loading gallery {}", path.display()))?;
    if g.model_id() != model_id {
        bail!(
            "gallery {} holds templates of model {} but the device runs model {model_id}: re-enrol, or run the matching model",
            path.display(),
            g.model_id()
        );
    }
    Ok(g)
}

fn open_source(spec: &str, config: &Config, replay_loop: bool) -> Result<Box<dyn source::FrameSource>> {
    if let Some(path) = spec.strip_prefix("replay:") {
        let mut replay = source::ReplaySource::open(Path::new(path), config.camera.fps)?;
        replay.repeat = replay_loop;
        return Ok(Box::new(replay));
    }
    #[cfg(target_os = "linux")]
    {
        let cam = source::v4l2::ReopeningCamera::open(spec, config.camera.width, config.camera.height)?;
        Ok(Box::new(cam))
    }
    #[cfg(not(target_os = "linux"))]
    bail!("camera sources need Linux (V4L2); use replay:DIR")
}

type Hardware = (Box<dyn Relay>, Box<dyn lock::DoorInputs>);

fn open_hardware(kind: &str, config: &Config) -> Result<Hardware> {
    match kind {
        "sim" => Ok((Box::new(SimRelay::default()), Box::new(lock::NoInputs))),
        #[cfg(target_os = "linux")]
        "gpio" => {
            let l = &config.lock;
            let relay = lock::gpio::GpioRelay::open(l.relay_pin, l.active_high)?;
            let inputs = lock::gpio::GpioInputs::open(l.exit_button_pin, l.door_contact_pin)?;
            Ok((Box::new(relay), Box::new(inputs)))
        }
        other => bail!("unknown lock {other:?}: use `sim` or `gpio`"),
    }
}

fn main() -> Result<()> {
    facegate_arena::configure_system_heap();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    match Cli::parse().command {
        Command::Check { common } => {
            let config = load_config(common.config.as_deref())?;
            println!("config: ok");
            let models = models_dir(&common, &config);
            let pipeline = load_pipeline(&models, &config)?;
            println!("models: ok ({}, model id {})", models.display(), pipeline.embedder.model_id());
            let g = load_gallery(&data_paths(&common, &config).gallery, pipeline.embedder.model_id())?;
            println!("gallery: ok ({} people, {} templates)", g.people().len(), g.template_count());
            let mut src = open_source(&common.source, &config, false)?;
            match src.next_frame() {
                Some(Ok(f)) => println!("source: ok ({}, first frame {}×{})", src.describe(), f.width(), f.height()),
                Some(Err(e)) => bail!("source {}: {e}", src.describe()),
                None => bail!("source {} gave no frame", src.describe()),
            }
            Ok(())
        }
        Command::Demo { lfw, models } => {
            let config = Config::default();
            let common = Common { config: None, models, gallery: None, source: String::new() };
            let pipeline = load_pipeline(&models_dir(&common, &config), &config)?;
            demo::run(&pipeline, &lfw, config.recognition.threshold)
        }
        Command::Bench { common, runs, save_gallery } => {
            let config = load_config(common.config.as_deref())?;
            let pipeline = load_pipeline(&models_dir(&common, &config), &config)?;
            let mut src = open_source(&common.source, &config, false)?;
            let figures =
                bench::run(&pipeline, src.as_mut(), runs.max(1), config.recognition.threshold, save_gallery.as_deref())?;
            println!("{figures}");
            Ok(())
        }
        Command::Release { common } => {
            let config = load_config(common.config.as_deref())?;
            let (mut relay, _) = open_hardware("gpio", &config)?;
            relay.set_unlocked(false)?;
            println!("relay released (door locked): {}", relay.describe());
            Ok(())
        }
        Command::Embed { common, images } => {
            let config = load_config(common.config.as_deref())?;
            let pipeline = load_pipeline(&models_dir(&common, &config), &config)?;
            let mut out = Vec::new();
            for path in &images {
                let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                let img = facegate_face::decode::decode_image(&bytes, facegate_face::decode::DEFAULT_MAX_PIXELS)?;
                let dets = pipeline.detect(&img);
                let embedding = match dets.iter().max_by_key(|d| d.rect.area()) {
                    Some(d) => Some(pipeline.embed(&pipeline.align(&img, *d))?.to_vec()),
                    None => None,
                };
                out.push(serde_json::json!({"image": path, "embedding": embedding}));
            }
            println!("{}", serde_json::Value::Array(out));
            Ok(())
        }
        Command::Unpair { common, all } => {
            if !all {
                bail!("say `--all`: every paired host will have to pair again");
            }
            let config = load_config(common.config.as_deref())?;
            let path = data_paths(&common, &config).pairing;
            let mut p = provision::load_pairings(&path).unwrap_or_else(facegate_protocol::server::Pairings::new_random);
            let n = p.hosts.len();
            p.hosts.clear();
            provision::save_pairings(&path, &p).with_context(|| format!("writing {}", path.display()))?;
            println!("forgot {n} paired host(s) in {}", path.display());
            Ok(())
        }
        Command::Run { common, lock, log, until_end, events_json, stats, serial, baud, setup, replay_loop, emulate_baud } => {
            let config = load_config(common.config.as_deref())?;
            let paths = data_paths(&common, &config);
            let (relay, inputs) = open_hardware(&lock, &config)?;
            let relay: SharedRelay = Arc::new(Mutex::new(relay));
            // Locked from the first moment, and again on any panic.
            relay.lock().unwrap_or_else(|p| p.into_inner()).set_unlocked(false)?;
            install_panic_release(relay.clone(), events_json);
            let stop = Arc::new(AtomicBool::new(false));
            for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(signal, stop.clone())?;
            }
            let pipeline = load_pipeline(&models_dir(&common, &config), &config)?;
            let gallery = load_gallery(&paths.gallery, pipeline.embedder.model_id())?;
            let log_path = match log.as_deref() {
                Some("none") => None,
                Some(p) => Some(PathBuf::from(p)),
                None => Some(paths.log.clone()),
            };
            let access_log = log_path
                .map(|p| {
                    AccessLog::open(&p, config.paths.log_capacity).with_context(|| format!("opening access log {}", p.display()))
                })
                .transpose()?;
            let mut src = open_source(&common.source, &config, replay_loop)?;
            tracing::info!(
                "source: {}; lock: {}; gallery: {} people",
                src.describe(),
                relay.lock().unwrap_or_else(|p| p.into_inner()).describe(),
                gallery.people().len()
            );
            facegate_arena::trim_system_heap();
            let shared = Arc::new(shared::Shared::new(gallery, access_log, events_json));
            let (commands_tx, commands_rx) = std::sync::mpsc::channel();
            let serial_spec = serial::SerialSpec::parse(serial.as_deref().unwrap_or(&config.serial.port));
            if serial_spec != serial::SerialSpec::None {
                let pairings = provision::open_pairings(&paths.pairing)?;
                let setup = setup_requested(setup, &lock, &config);
                if setup {
                    tracing::warn!("setup mode: hosts may pair for the next {} s", config.serial.setup_window_s);
                }
                let handler = provision::DeviceHandler::new(
                    shared.clone(),
                    paths.gallery.clone(),
                    paths.pairing.clone(),
                    config.clone(),
                    common.config.clone(),
                    commands_tx,
                );
                let window = setup.then(|| std::time::Duration::from_secs(config.serial.setup_window_s));
                let server = facegate_protocol::server::Server::new(pairings, window, handler);
                serial::start(serial_spec, baud.unwrap_or(config.serial.baud), emulate_baud, server, stop.clone())?;
            }
            let r = &config.recognition;
            let mut door = runner::DoorLoop::new(
                &pipeline,
                &shared,
                relay,
                policy::Policy::new(r.frames_agree, r.frames_window, r.cooldown_ms),
                runner::LoopSettings {
                    threshold: r.threshold,
                    pulse: std::time::Duration::from_millis(config.lock.pulse_ms),
                    until_end,
                    events_json,
                    door_held: std::time::Duration::from_secs(config.lock.door_held_s),
                },
                inputs,
                stop,
            );
            door.commands = Some(commands_rx);
            let notifier = notify::Notifier::from_env();
            notifier.send("READY=1");
            door.notifier = Some(notifier);
            let result = door.run(src.as_mut());
            if stats {
                eprintln!("{}", door.stats.summary());
            }
            result
        }
    }
}
