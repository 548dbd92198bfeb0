//! One function per `device` subcommand.

use crate::cli::{Common, RunArgs};
use crate::config::Config;
use crate::events::Events;
use crate::lock::{install_panic_release, DoorInputs, LockKind, NoInputs, Relay, SharedRelay, SimRelay};
use crate::source::{open_source, FrameSource};
use crate::{notify, policy, provision, runner, serial, shared};
use anyhow::{bail, Context, Result};
use facegate_face::liveness::Liveness;
use facegate_face::{LastLayer, ModelId, Pipeline, PipelineConfig};
use facegate_provision::GalleryHome;
use facegate_store::AccessLog;
use facegate_train::MetricHead;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

/// Models: --models, else `paths.models` of the config file, else the usual
/// places (beside the program, the data directories, the source tree of a
/// development build; see `facegate_face::model_files::search_path`).
pub fn models_dir(common: &Common, config: &Config) -> Result<PathBuf> {
    resolve_models(common.models.as_deref(), common.config.is_some(), config)
}

fn resolve_models(models: Option<&Path>, config_file: bool, config: &Config) -> Result<PathBuf> {
    let explicit = models.or(config_file.then_some(config.paths.models.as_path()));
    Ok(facegate_face::model_files::locate(explicit)?.path().to_path_buf())
}

/// Where the gallery, log and pairing file are. With `--gallery` and no
/// `--config`, the log and pairing file live beside the gallery, so a test or
/// demo needs one writable directory and nothing under /var/lib.
pub struct DataPaths {
    /// The gallery file.
    pub gallery: PathBuf,
    /// The access log.
    pub log: PathBuf,
    /// The pairing file.
    pub pairing: PathBuf,
    /// The site secrets (fleet).
    pub fleet_secrets: PathBuf,
    /// The door's copy of the site's rules (fleet).
    pub site: PathBuf,
}

/// The data paths for these options.
pub fn data_paths(common: &Common, config: &Config) -> DataPaths {
    match (&common.gallery, &common.config) {
        (Some(g), None) => {
            let dir = g.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
            DataPaths {
                gallery: g.clone(),
                log: dir.join("access.log"),
                pairing: dir.join("pairing.fg"),
                fleet_secrets: dir.join("fleet.toml"),
                site: dir.join("site.fgsite"),
            }
        }
        _ => DataPaths {
            gallery: common.gallery.clone().unwrap_or(config.paths.gallery.clone()),
            log: config.paths.log.clone(),
            pairing: config.paths.pairing.clone(),
            fleet_secrets: config.paths.fleet_secrets.clone(),
            site: config.paths.site.clone(),
        },
    }
}

/// Setup mode: `--setup`, or the setup button held at start (GPIO lock only).
fn setup_requested(flag: bool, lock: LockKind, config: &Config) -> bool {
    if flag {
        return true;
    }
    #[cfg(target_os = "linux")]
    if let (Some(pin), LockKind::Gpio) = (config.serial.setup_button_pin, lock) {
        return crate::lock::gpio::button_held(pin).unwrap_or_else(|e| {
            tracing::warn!("setup button on GPIO {pin}: {e}");
            false
        });
    }
    let _ = (lock, config);
    false
}

/// The config file's settings (or the defaults without one) with the command line's overrides.
pub fn load_config(common: &Common) -> Result<Config> {
    let mut config = match &common.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading config {}", p.display()))?;
            Config::from_toml(&text).with_context(|| format!("in {}", p.display()))?
        }
        None => Config::default(),
    };
    if let Some(mode) = common.liveness {
        config.liveness.mode = mode;
    }
    Ok(config)
}

/// The liveness ensemble when the config requires it. Fail closed: with
/// `liveness.mode = "required"`, missing or damaged models stop the device.
pub fn load_liveness(dir: &Path, config: &Config) -> Result<Option<Liveness>> {
    if !config.liveness.required() {
        tracing::warn!("liveness is off: a photo or a screen showing an enrolled face opens the door");
        return Ok(None);
    }
    Liveness::load(dir).map(Some).with_context(|| {
        format!(
            "liveness.mode = \"required\" but the liveness models in {} cannot be loaded (the door does not start without them)",
            dir.display()
        )
    })
}

/// The door pipeline with the configured detector, precision, upsampling and
/// minimum face; with `recognition.metric`'s layer in place of the network's
/// last one when that file is a retrained last layer.
pub fn load_pipeline(dir: &Path, config: &Config) -> Result<Pipeline> {
    let r = &config.recognition;
    let precision = r.precision;
    let settings = PipelineConfig {
        network: r.network,
        upsample: r.upsample,
        min_face: r.min_face,
        detector: r.detector.kind(),
        ..PipelineConfig::door()
    };
    let network = facegate_face::Embedder::model_id_of(dir, r.network, precision)?;
    let last_layer = load_metric(config, network)?
        .filter(MetricHead::is_last_layer)
        .map(|m| LastLayer { template_model: m.template_model(), weights: m.weights });
    Pipeline::load_with_last_layer(dir, precision, settings, last_layer)
        .with_context(|| format!("loading models from {}", dir.display()))
}

/// The trained metric of `recognition.metric`, checked against the device's
/// network; `None` when none is set. A damaged file or one trained for
/// another network stops the device: it would otherwise match in the wrong metric.
pub fn load_metric(config: &Config, network: ModelId) -> Result<Option<MetricHead>> {
    let path = &config.recognition.metric;
    if path.is_empty() {
        return Ok(None);
    }
    let head = MetricHead::load(Path::new(path), &network).with_context(|| format!("loading recognition.metric = {path:?}"))?;
    Ok(Some(head))
}

/// The gallery of `path` searched in the configured metric: a metric head
/// maps templates and probes; a last layer is already in the pipeline, whose
/// model id the templates must carry.
pub fn open_gallery_with_metric(path: &Path, config: &Config, pipeline: &Pipeline) -> Result<(GalleryHome, Option<MetricHead>)> {
    let key = crate::at_rest::gallery_key(&config.paths.gallery_key)?;
    let home = open_gallery_sealed(path, pipeline.embedder.model_id(), pipeline.embedder.network(), key)?;
    let metric = load_metric(config, pipeline.embedder.network_id())?;
    let home = match &metric {
        Some(h) if !h.is_last_layer() => {
            let h = h.clone();
            home.with_metric(std::sync::Arc::new(move |e| h.apply(e)))
        }
        _ => home,
    };
    Ok((home, metric))
}

/// The gallery of `path` for the device's model (empty, with a warning, when there is no file).
/// With `key`, the file is sealed at rest (see [`crate::at_rest`]).
pub fn open_gallery_sealed(
    path: &Path,
    model: ModelId,
    network: facegate_face::Network,
    key: Option<facegate_site::DataKey>,
) -> Result<GalleryHome> {
    if !path.exists() {
        tracing::warn!("no gallery at {}: nobody is enrolled, every face is a stranger", path.display());
    }
    GalleryHome::open_sealed(path, model, key).map_err(|e| match e {
        facegate_store::StoreError::ModelMismatch { expected: found, .. } => anyhow::anyhow!(
            "gallery {} holds templates of model {found} but the device runs the {network} network, model {model}: templates of \
             two models are not comparable: re-enrol its people with `host-tool --network {network} enroll …` (enrolling with \
             `--network both` keeps a gallery usable by either network), or set recognition.network to the network that made \
             them (a retrained last layer in recognition.metric makes its own model id: enrol with `host-tool --metric` and the same file)",
            path.display()
        ),
        facegate_store::StoreError::TemplatesMissing { missing, first, .. } => anyhow::anyhow!(
            "gallery {} holds templates of the {network} network (model {model}) for some people only: {missing} have none \
             (the first: {first:?}); a door never searches a mix of two networks. Enrol them again with \
             `host-tool --network both enroll …` (or --network {network}), or set recognition.network back",
            path.display()
        ),
        other => anyhow::Error::new(other).context(format!("loading gallery {}", path.display())),
    })
}

type Hardware = (Box<dyn Relay>, Box<dyn DoorInputs>);

fn open_hardware(kind: LockKind, config: &Config) -> Result<Hardware> {
    match kind {
        LockKind::Sim => Ok((Box::new(SimRelay::default()), Box::new(NoInputs))),
        #[cfg(target_os = "linux")]
        LockKind::Gpio => {
            let l = &config.lock;
            let relay = crate::lock::gpio::GpioRelay::open(l.relay_pin, l.active_high)?;
            let inputs = crate::lock::gpio::GpioInputs::open(l.exit_button_pin, l.door_contact_pin)?;
            Ok((Box::new(relay), Box::new(inputs)))
        }
        #[cfg(not(target_os = "linux"))]
        LockKind::Gpio => {
            let _ = config;
            bail!("the GPIO lock needs Linux on a Raspberry Pi; use --lock sim")
        }
    }
}

/// `device check`: config, models, gallery and camera, then exit.
pub fn check(common: &Common) -> Result<()> {
    let config = load_config(common)?;
    println!("config: ok");
    let models = models_dir(common, &config)?;
    let pipeline = load_pipeline(&models, &config)?;
    println!("models: ok ({}, model id {})", models.display(), pipeline.embedder.model_id());
    match load_liveness(&models, &config)? {
        Some(l) => {
            println!("liveness: ok (required, threshold {}, {} networks)", config.liveness.threshold, l.crop_scales().len())
        }
        None => println!("liveness: off (liveness.mode = \"off\")"),
    }
    let (home, metric) = open_gallery_with_metric(&data_paths(common, &config).gallery, &config, &pipeline)?;
    match metric {
        Some(m) => {
            println!(
                "metric: ok ({} {}, its validation threshold {:.4}, recognition.threshold {})",
                if m.is_last_layer() { "retrained last layer" } else { "trained head" },
                &m.meta.id[..16],
                m.meta.threshold,
                config.recognition.threshold()
            );
            if (m.meta.threshold - config.recognition.threshold()).abs() > 0.02 {
                println!(
                    "  warning: recognition.threshold differs from the metric's measured threshold; set it to {:.4} unless you chose it from your own data",
                    m.meta.threshold
                );
            }
        }
        None => println!("metric: pretrained (recognition.metric not set)"),
    }
    let g = home.read();
    println!("gallery: ok ({} people, {} templates)", g.people().len(), g.template_count());
    let c = &config.camera;
    let mut src = open_source(&common.source, c.fps, c.width, c.height, false)?;
    match src.next_frame() {
        Some(Ok(f)) => println!("source: ok ({}, first frame {}×{})", src.describe(), f.width(), f.height()),
        Some(Err(e)) => bail!("source {}: {e}", src.describe()),
        None => bail!("source {} gave no frame", src.describe()),
    }
    Ok(())
}

/// `device release`: the relay to locked.
pub fn release(common: &Common) -> Result<()> {
    let config = load_config(common)?;
    let (mut relay, _) = open_hardware(LockKind::Gpio, &config)?;
    relay.set_unlocked(false)?;
    println!("relay released (door locked): {}", relay.describe());
    Ok(())
}

/// `device embed`: the largest face's embedding per image, as JSON.
pub fn embed(common: &Common, images: &[PathBuf]) -> Result<()> {
    let config = load_config(common)?;
    let pipeline = load_pipeline(&models_dir(common, &config)?, &config)?;
    let mut out = Vec::new();
    for path in images {
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

/// `device unpair --all`.
pub fn unpair(common: &Common, all: bool) -> Result<()> {
    if !all {
        bail!("say `--all`: every paired host will have to pair again");
    }
    let config = load_config(common)?;
    let path = data_paths(common, &config).pairing;
    let mut p = provision::load_pairings(&path).unwrap_or_else(facegate_protocol::server::Pairings::new_random);
    let n = p.hosts.len();
    p.hosts.clear();
    provision::save_pairings(&path, &p).with_context(|| format!("writing {}", path.display()))?;
    println!("forgot {n} paired host(s) in {}", path.display());
    Ok(())
}

/// `device bench`.
#[cfg(feature = "tools")]
pub fn bench(common: &Common, runs: usize, save_gallery: Option<&Path>, threads: Option<usize>) -> Result<()> {
    let mut config = load_config(common)?;
    if let Some(t) = threads {
        config.recognition.threads = t;
    }
    let models = models_dir(common, &config)?;
    let pipeline = load_pipeline(&models, &config)?;
    let liveness = load_liveness(&models, &config)?;
    let c = &config.camera;
    let mut src = open_source(&common.source, c.fps, c.width, c.height, false)?;
    let settings = crate::bench::BenchSettings {
        runs: runs.max(1),
        threshold: config.recognition.threshold(),
        liveness: liveness.as_ref().map(|l| (l, config.liveness.threshold)),
        threads: config.recognition.threads(),
    };
    let figures = crate::bench::run(&pipeline, src.as_mut(), &settings, save_gallery)?;
    println!("{figures}");
    Ok(())
}

/// `device demo`.
#[cfg(feature = "tools")]
pub fn demo(lfw: &Path, models: Option<PathBuf>, keep: Option<&Path>) -> Result<()> {
    let config = crate::demo::config();
    let models = resolve_models(models.as_deref(), false, &config)?;
    let pipeline = load_pipeline(&models, &config)?;
    let liveness = load_liveness(&models, &config)?;
    // A kept scenario's gallery also holds the other network's templates, so
    // `device run` replays it with either network (the ARM check does).
    let other = match keep {
        Some(_) => {
            let mut with_other = config.clone();
            with_other.recognition.network = config.recognition.network.other();
            with_other.recognition.detector = crate::config::DoorDetector::Yunet;
            Some(load_pipeline(&models, &with_other)?)
        }
        None => None,
    };
    crate::demo::run(&pipeline, other.as_ref(), liveness.as_ref(), lfw, keep)
}

/// `device run`: the door loop, with the provisioning link beside it.
pub fn run(args: RunArgs) -> Result<()> {
    let RunArgs { common, lock, log, until_end, events_json, stats, serial, baud, setup, replay_loop, emulate_baud, clock_start } =
        args;
    if let Some(start) = clock_start {
        crate::events::start_clock_at(start);
        tracing::warn!(
            "the door's clock is set to {} (--clock-start), not the system's",
            facegate_store::access_log::iso_time(start)
        );
    }
    let config = load_config(&common)?;
    let paths = data_paths(&common, &config);
    let (relay, inputs) = open_hardware(lock, &config)?;
    let relay: SharedRelay = Arc::new(Mutex::new(relay));
    // Locked from the first moment, and again on any panic.
    relay.lock().unwrap_or_else(|p| p.into_inner()).set_unlocked(false)?;
    install_panic_release(relay.clone(), events_json);
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let models = models_dir(&common, &config)?;
    let pipeline = load_pipeline(&models, &config)?;
    let liveness = load_liveness(&models, &config)?;
    let gallery = Arc::new(open_gallery_with_metric(&paths.gallery, &config, &pipeline)?.0);
    let log_path = match log.as_deref() {
        Some("none") => None,
        Some(p) => Some(PathBuf::from(p)),
        None => Some(paths.log.clone()),
    };
    let access_log = log_path
        .map(|p| AccessLog::open(&p, config.paths.log_capacity).with_context(|| format!("opening access log {}", p.display())))
        .transpose()?;
    let c = &config.camera;
    let mut src =
        crate::source::Watched::start(open_source(&common.source, c.fps, c.width, c.height, replay_loop)?, runner::CAMERA_POLL)?;
    tracing::info!(
        "source: {}; lock: {}; gallery: {} people",
        src.describe(),
        relay.lock().unwrap_or_else(|p| p.into_inner()).describe(),
        gallery.read().people().len()
    );
    facegate_arena::trim_system_heap();
    let shared = Arc::new(shared::Shared::new(gallery, Events::new(access_log, events_json)?));
    let (commands_tx, commands_rx) = std::sync::mpsc::channel();
    let serial_spec = serial::SerialSpec::parse(serial.as_deref().unwrap_or(&config.serial.port));
    if serial_spec != serial::SerialSpec::None {
        let pairings = provision::open_pairings(&paths.pairing)?;
        let setup = setup_requested(setup, lock, &config);
        if setup {
            tracing::warn!("setup mode: hosts may pair for the next {} s", config.serial.setup_window_s);
        }
        let handler = provision::DeviceHandler::new(
            shared.clone(),
            paths.pairing.clone(),
            config.clone(),
            common.config.clone(),
            commands_tx,
            paths.fleet_secrets.clone(),
        );
        let window = setup.then(|| std::time::Duration::from_secs(config.serial.setup_window_s));
        let server = facegate_protocol::server::Server::new(pairings, window, handler);
        serial::start(serial_spec, baud.unwrap_or(config.serial.baud), emulate_baud, server, stop.clone())?;
    }
    let fleet_stop = Arc::new(AtomicBool::new(false));
    let fleet = match config.fleet.enabled {
        true => {
            let files = crate::fleet::FleetPaths { secrets: paths.fleet_secrets.clone(), site: paths.site.clone() };
            Some(crate::fleet::start(&config.fleet, files, shared.clone(), fleet_stop.clone())?)
        }
        false => None,
    };
    let r = &config.recognition;
    let mut door = runner::DoorLoop::new(
        &pipeline,
        &shared,
        relay,
        policy::Policy::new(r.frames_agree, r.frames_window, r.cooldown_ms),
        runner::LoopSettings {
            threshold: r.threshold(),
            pulse: std::time::Duration::from_millis(config.lock.pulse_ms),
            until_end,
            door_held: std::time::Duration::from_secs(config.lock.door_held_s),
            live_threshold: config.liveness.required().then_some(config.liveness.threshold),
            threads: r.threads(),
        },
        inputs,
        stop,
    );
    door.liveness = liveness.as_ref();
    door.commands = Some(commands_rx);
    let notifier = notify::Notifier::from_env();
    notifier.send("READY=1");
    door.notifier = Some(notifier);
    let result = door.run(&mut src);
    // The link says offline and saves its cursor before the process ends.
    fleet_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(link) = fleet {
        let _ = link.join();
    }
    // Every event queued for the access log reaches it before the process ends.
    shared.events.close();
    if stats {
        eprintln!("{}", door.stats.summary());
    }
    result
}
