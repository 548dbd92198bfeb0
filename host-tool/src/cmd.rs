//! The provisioning commands.

use crate::keys::Keys;
use crate::output::{iso_time, print_json, print_json_line, table};
use crate::target::{self, Target};
use anyhow::{bail, Context, Result};
use facegate_core::{hex, ModelId};
use facegate_face::enrol::{self, EnrolProblem, Purpose};
use facegate_face::{Embedding, LastLayer, Network, Pipeline, PipelineConfig, Precision};
use facegate_protocol::message::{EnrollResult, MatchReply, NewPerson, WireTemplate};
use facegate_protocol::{Request, Response, CHUNK};
use facegate_provision::wire::log_event_json;
use facegate_train::MetricHead;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Options every command shares.
#[derive(Clone)]
pub struct Global {
    /// Serial port.
    pub port: Option<String>,
    /// Line rate.
    pub baud: u32,
    /// JSON output.
    pub json: bool,
    /// Offline gallery file.
    pub gallery: Option<PathBuf>,
    /// Models directory given by --models or FACEGATE_MODELS.
    pub models: Option<PathBuf>,
    /// Answer time-out.
    pub timeout: Duration,
    /// Threshold for offline verify/identify (default: the metric's, else the door's).
    pub threshold: Option<f32>,
    /// Trained metric for offline verify/identify.
    pub metric: Option<PathBuf>,
    /// The embedding network asked for with --network (None: the default).
    pub network: Option<Network>,
    /// `--network both`: enrolment makes templates of both networks.
    pub both_networks: bool,
    /// Who makes site changes, for the audit log (the console says so);
    /// `None`: the command line.
    pub actor: Option<String>,
}

impl Global {
    /// The models directory: the one given, else the first of the usual places
    /// that holds a MANIFEST (see `facegate_face::model_files::search_path`).
    pub fn models(&self) -> Result<PathBuf> {
        let dir = facegate_face::model_files::locate(self.models.as_deref())?;
        Ok(dir.path().to_path_buf())
    }

    /// Who is making site changes, as the audit log names them.
    pub fn actor(&self) -> String {
        self.actor.clone().unwrap_or_else(|| {
            let user = std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_else(|_| "?".into());
            format!("command line (user {user})")
        })
    }

    /// The embedding network: the one asked for, else the shipped default.
    pub fn network(&self) -> Network {
        self.network.unwrap_or_default()
    }

    fn port(&self) -> Result<&str> {
        self.port.as_deref().with_context(|| {
            format!("no device given (hint: --port {}, or --gallery FILE to work on a gallery file)", crate::ports::EXAMPLE_PORT)
        })
    }

    /// The network a gallery file is worked on with: the one asked for, else
    /// the one that made the file's templates, else the shipped default.
    fn file_network(&self, path: &Path) -> Network {
        let made_it = || {
            let gallery = facegate_store::Gallery::load(path).ok()?;
            network_of(&self.models().ok()?, gallery.model_id())
        };
        self.network.or_else(made_it).unwrap_or_default()
    }

    /// The `--metric` file, checked against `network` at `precision`: a head
    /// trained on one network's embeddings means nothing on another's.
    fn metric_file(&self, network: Network, precision: Precision) -> Result<Option<MetricHead>> {
        let Some(path) = self.metric.as_deref() else { return Ok(None) };
        let network = facegate_face::Embedder::model_id_of(&self.models()?, network, precision)?;
        let head = MetricHead::load(path, &network).with_context(|| format!("loading the metric {}", path.display()))?;
        Ok(Some(head))
    }

    /// The target of a gallery command.
    pub fn target(&self) -> Result<Target> {
        match (&self.gallery, &self.port) {
            (Some(path), None) => {
                let metric = self.metric_file(self.file_network(path), Precision::Int8)?;
                let threshold =
                    self.threshold.or(metric.as_ref().map(|m| m.meta.threshold)).unwrap_or(self.network().door_threshold());
                match metric {
                    // A last layer makes new embeddings: the gallery must hold
                    // templates made with it, and nothing is mapped.
                    Some(layer) if layer.is_last_layer() => {
                        let model = layer.template_model();
                        let file = target::open_file(path, model, threshold, None, None)?;
                        let found = file.home().read().model_id();
                        if found != model {
                            bail!(
                                "{} holds templates of model {found}, not of the retrained last layer in {} (model {model}): \
                                 its people must be enrolled again, into a new gallery file, with this --metric",
                                path.display(),
                                self.metric.as_deref().unwrap_or(Path::new("")).display()
                            );
                        }
                        Ok(Target::File(file))
                    }
                    metric => {
                        let models = self.models()?;
                        let model = facegate_face::Embedder::model_id_of(&models, self.network(), Precision::Int8)?;
                        let given = self.threshold.is_some() || metric.is_some();
                        let name =
                            |m: ModelId| network_of(&models, m).map_or_else(|| format!("unknown (model {m})"), |n| n.to_string());
                        let switch = self.network.is_some().then_some(&name as &dyn Fn(ModelId) -> String);
                        let mut file = target::open_file(path, model, threshold, metric, switch)?;
                        // No threshold given: the door threshold of the network that made the file's templates.
                        let found = file.home().read().model_id();
                        if let (false, Some(network)) = (given, network_of(&models, found)) {
                            file.threshold = network.door_threshold();
                        }
                        Ok(Target::File(file))
                    }
                }
            }
            (None, Some(port)) => Ok(Target::Device(Box::new(target::connect_paired(port, self.baud, self.timeout)?))),
            (Some(_), Some(_)) => bail!("give --port or --gallery, not both"),
            (None, None) => bail!(
                "no device given (hint: --port {}, or --gallery FILE to work on a gallery file)",
                crate::ports::EXAMPLE_PORT
            ),
        }
    }
}

fn spinner(g: &Global, what: &str) -> ProgressBar {
    if g.json {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    pb.set_message(what.to_string());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

fn bar(g: &Global, len: u64, what: &str, bytes: bool) -> ProgressBar {
    if g.json {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    let template =
        if bytes { "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}" } else { "{msg} [{bar:30}] {pos}/{len}" };
    pb.set_style(ProgressStyle::with_template(template).expect("valid template").progress_chars("=> "));
    pb.set_message(what.to_string());
    pb
}

/// `ports`.
pub fn ports(g: &Global) -> Result<()> {
    let ports = serialport::available_ports().context("listing serial ports")?;
    let kind = |t: &serialport::SerialPortType| match t {
        serialport::SerialPortType::UsbPort(u) => {
            format!("USB {:04x}:{:04x} {}", u.vid, u.pid, u.product.clone().unwrap_or_default())
        }
        serialport::SerialPortType::PciPort => "PCI".into(),
        serialport::SerialPortType::BluetoothPort => "Bluetooth".into(),
        serialport::SerialPortType::Unknown => "unknown".into(),
    };
    if g.json {
        print_json(&json!(ports.iter().map(|p| json!({"name": p.port_name, "type": kind(&p.port_type)})).collect::<Vec<_>>()));
    } else if ports.is_empty() {
        println!("no serial ports found ({})", crate::ports::WHERE_ADAPTERS_APPEAR);
    } else {
        let rows: Vec<Vec<String>> = ports.iter().map(|p| vec![p.port_name.clone(), kind(&p.port_type)]).collect();
        println!("{}", table(&["PORT", "TYPE"], &rows));
    }
    Ok(())
}

/// `pair`.
pub fn pair(g: &Global) -> Result<()> {
    let port = g.port()?;
    let mut c = target::connect(port, g.baud, g.timeout)?;
    let device = c.hello().device;
    // Unix names the user and machine in USER and /etc/hostname, Windows in USERNAME and COMPUTERNAME.
    let user = std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_else(|_| "host".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("COMPUTERNAME"))
        .unwrap_or_default();
    let name: String = format!("{user}@{host}").chars().filter(|c| !c.is_control()).take(64).collect();
    let secret = c.pair(&name).map_err(crate::output::client_error)?;
    let path = Keys::open()?.store(&device, &secret, port)?;
    if g.json {
        print_json(&json!({"device": hex(&device), "key_file": path, "host_name": name}));
    } else {
        println!("paired with device {} as {name}; key stored in {} (mode 0600)", hex(&device), path.display());
    }
    Ok(())
}

/// `unpair`.
pub fn unpair(g: &Global) -> Result<()> {
    let port = g.port()?;
    let mut c = target::connect_paired(port, g.baud, g.timeout)?;
    let device = c.hello().device;
    c.call(&Request::Unpair).map_err(crate::output::client_error)?;
    Keys::open()?.forget(&device)?;
    if g.json {
        print_json(&json!({"device": hex(&device), "unpaired": true}));
    } else {
        println!("unpaired from device {}; key deleted", hex(&device));
    }
    Ok(())
}

/// `status`.
pub fn status(g: &Global) -> Result<()> {
    let mut c = target::connect_paired(g.port()?, g.baud, g.timeout)?;
    let hello = c.hello().clone();
    let Response::Status(s) = c.call(&Request::Status).map_err(crate::output::client_error)? else {
        bail!("unexpected answer to status");
    };
    if g.json {
        print_json(&json!({
            "device": hex(&hello.device), "software": s.software, "protocol": s.protocol, "model": s.model,
            "people": s.people, "templates": s.templates, "uptime_s": s.uptime_s, "frames": s.frames,
            "last_event": s.last_event, "paired_hosts": s.paired_hosts, "setup_mode": hello.setup_mode,
            "config": s.config.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        }));
    } else {
        println!("device    {}", hex(&hello.device));
        println!("software  {} (protocol {})", s.software, s.protocol);
        println!("model     {}", s.model);
        println!("gallery   {} people, {} templates", s.people, s.templates);
        println!("uptime    {} s, {} frames", s.uptime_s, s.frames);
        println!("log       {} events so far", s.last_event);
        println!("pairing   {} host(s){}", s.paired_hosts, if hello.setup_mode { ", setup mode open" } else { "" });
        for (k, v) in &s.config {
            println!("  {k} = {v}");
        }
    }
    Ok(())
}

/// The network whose shipped file (at any precision) has `model` as its id.
fn network_of(models: &Path, model: ModelId) -> Option<Network> {
    facegate_face::Embedder::find_model(models, model).ok().flatten().map(|(network, _)| network)
}

/// A pipeline whose model matches the target's (int8 or f32, with the
/// retrained last layer of `--metric` when the target's templates come from it).
pub fn pipeline_for(g: &Global, model: ModelId) -> Result<Pipeline> {
    pipeline_asked(g, model, g.network)
}

/// [`pipeline_for`], refusing a model of another network than `asked`.
pub fn pipeline_asked(g: &Global, model: ModelId, asked: Option<Network>) -> Result<Pipeline> {
    let models = g.models()?;
    let metric = match g.metric.as_deref() {
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| format!("reading the metric {}", path.display()))?;
            Some(MetricHead::from_bytes(&bytes, path)?)
        }
        None => None,
    };
    if let Some((kind, precision)) = facegate_face::Embedder::find_model(&models, model)? {
        if let Some(asked) = asked.filter(|asked| *asked != kind) {
            bail!(
                "the target holds templates of the {kind} network (model {model}), not of {asked}: templates of two networks \
                 are not comparable. Run with --network {kind}, or enrol its people again with --network {asked} into a new \
                 gallery (a device: set recognition.network = \"{asked}\" and enrol them again)"
            );
        }
        let config = PipelineConfig { network: kind, ..PipelineConfig::default() };
        return Pipeline::load(&models, precision, config).with_context(|| format!("loading models from {}", models.display()));
    }
    // Templates of a retrained last layer (dlib's network only) of the --metric file.
    if let Some(m) = metric.filter(|m| m.is_last_layer() && m.template_model() == model) {
        if let Some((Network::Dlib, precision)) = facegate_face::Embedder::find_model(&models, m.meta.base_model)? {
            let layer = LastLayer { template_model: m.template_model(), weights: m.weights };
            let config = PipelineConfig { network: Network::Dlib, ..PipelineConfig::default() };
            return Pipeline::load_with_last_layer(&models, precision, config, Some(layer))
                .with_context(|| format!("loading models from {}", models.display()));
        }
    }
    bail!(
        "no model in {} matches the target's model {model} (hint: use the host-tool release that matches the device, or --models; \
         a door running a retrained last layer needs the same file here as --metric)",
        models.display()
    )
}

/// A photo file's template under the enrolment policy for `purpose`.
fn photo_template(
    pipeline: &Pipeline,
    path: &Path,
    purpose: Purpose,
) -> Result<Result<(Embedding, enrol::CheckedFace), EnrolProblem>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(enrol::photo_template(pipeline, &bytes, purpose)?),
        Err(e) => Ok(Err(EnrolProblem::Unreadable(e.to_string()))),
    }
}

/// Templates from photos, each photo checked; refused photos are reported, not used.
pub(crate) fn templates_from_photos(
    g: &Global,
    pipeline: &Pipeline,
    photos_in: &[PathBuf],
) -> Result<(Vec<Embedding>, Vec<serde_json::Value>)> {
    let pb = bar(g, photos_in.len() as u64, "computing templates", false);
    let mut found: Vec<(usize, Embedding)> = Vec::new();
    let mut report: Vec<serde_json::Value> = Vec::new();
    for (i, path) in photos_in.iter().enumerate() {
        match photo_template(pipeline, path, Purpose::Enrol)? {
            Ok((embedding, face)) => {
                report.push(json!({"photo": path, "ok": true, "face_px": face.width, "sharpness": face.sharpness}));
                found.push((i, embedding));
            }
            Err(problem) => {
                pb.suspend(|| eprintln!("refused {}: {problem}", path.display()));
                report.push(json!({"photo": path, "ok": false, "reason": problem.to_string()}));
            }
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    // Photos of one person agree; one that matches none of the others is probably someone else.
    let embeddings: Vec<Embedding> = found.iter().map(|(_, e)| *e).collect();
    for &k in enrol::odd_ones_out(&embeddings, pipeline.embedder.network().balanced_threshold()).iter().rev() {
        let (i, _) = found.remove(k);
        eprintln!("refused {}: does not look like the same person as the other photos", photos_in[i].display());
        report[i] =
            json!({"photo": photos_in[i], "ok": false, "reason": "does not look like the same person as the other photos"});
    }
    Ok((found.into_iter().map(|(_, e)| e).collect(), report))
}

fn print_enrolled(g: &Global, results: &[EnrollResult], photos: serde_json::Value) -> Result<()> {
    let mut failed = None;
    let mut out = Vec::new();
    for r in results {
        if let Some((other, d)) = &r.similar {
            eprintln!("warning: {} resembles {other}, who is already enrolled (distance {d:.3}); is it the same person?", r.name);
        }
        match &r.outcome {
            Ok(id) => {
                if !g.json {
                    println!("{} {} (id {id})", if r.unchanged { "already enrolled:" } else { "enrolled" }, r.name);
                }
            }
            Err(e) => failed = Some(crate::output::wire_error(e.clone()).context(format!("enrolling {}", r.name))),
        }
        out.push(json!({
            "name": r.name, "id": r.outcome.as_ref().ok(), "error": r.outcome.as_ref().err().map(|e| e.to_string()),
            "unchanged": r.unchanged, "similar": r.similar.as_ref().map(|(n, d)| json!({"name": n, "distance": d})),
            "photos": photos,
        }));
    }
    if g.json {
        print_json(&if out.len() == 1 { out.remove(0) } else { json!(out) });
    }
    failed.map_or(Ok(()), Err)
}

/// `enroll NAME PHOTO…` and `enroll NAME --on-device N`.
pub fn enroll(g: &Global, name: &str, photos_in: &[PathBuf], on_device: Option<u8>, add: bool) -> Result<()> {
    let mut t = g.target()?;
    if let Some(frames) = on_device {
        if !photos_in.is_empty() {
            bail!("give photos or --on-device, not both");
        }
        let pb = spinner(g, &format!("look at the camera: capturing {frames} frames of {name}"));
        let r = t.request_slow(
            Request::EnrollOnDevice { name: name.to_string(), frames, timeout_ms: 30_000 },
            Duration::from_secs(40),
        );
        pb.finish_and_clear();
        let Response::Enrolled(results) = r? else { bail!("unexpected answer to enroll") };
        return print_enrolled(g, &results, json!([]));
    }
    if photos_in.is_empty() {
        bail!("give at least one photo (hint: three or more photos, in different light, make the best templates)");
    }
    let model = t.model();
    let pipeline = pipeline_for(g, model)?;
    let (templates, report) = templates_from_photos(g, &pipeline, photos_in)?;
    if templates.is_empty() {
        bail!(
            "none of the photos is usable; nothing was enrolled (hint: one well-lit face per photo, at least {} px wide)",
            enrol::MIN_FACE_PX
        );
    }
    let person = NewPerson { name: name.to_string(), templates: templates.iter().map(WireTemplate::from_embedding).collect() };
    let other = match (&t, g.both_networks) {
        (Target::File(_), true) => Some(other_network_templates(g, &pipeline, name, photos_in)?),
        (Target::Device(_), true) => bail!(
            "--network both enrols into a gallery file (--gallery): a device's gallery holds the templates of the network it \
             runs; give that one (`host-tool status` shows recognition.network)"
        ),
        _ => None,
    };
    let Response::Enrolled(results) = t.request(Request::Enroll { model, add, people: vec![person] })? else {
        bail!("unexpected answer to enroll");
    };
    if let (Target::File(service), Some((other_model, other_templates))) = (&t, other) {
        if results.iter().all(|r| r.outcome.is_ok()) {
            service
                .home()
                .change(|gallery| {
                    gallery.set_other_templates(name, other_model, &other_templates).map_err(facegate_provision::wire::wire_error)
                })
                .map_err(crate::output::wire_error)
                .context("keeping the other network's templates")?;
        }
    }
    print_enrolled(g, &results, json!(report))
}

/// `--network both`: the templates of the network other than `pipeline`'s
/// from the same photos; each photo must pass the enrolment gates with it too.
fn other_network_templates(g: &Global, pipeline: &Pipeline, name: &str, photos: &[PathBuf]) -> Result<(ModelId, Vec<Embedding>)> {
    network_templates(g, pipeline.embedder.network().other(), Precision::Int8, name, photos)
}

/// `name`'s templates of `network` at `precision` from `photos` (each photo
/// through the enrolment gates), with the model that made them.
pub(crate) fn network_templates(
    g: &Global,
    network: Network,
    precision: Precision,
    name: &str,
    photos: &[PathBuf],
) -> Result<(ModelId, Vec<Embedding>)> {
    let models = g.models()?;
    let pipeline = Pipeline::load(&models, precision, PipelineConfig { network, ..PipelineConfig::default() })
        .with_context(|| format!("loading the {network} network from {}", models.display()))?;
    let (templates, _) = templates_from_photos(g, &pipeline, photos)?;
    if templates.is_empty() {
        bail!("none of {name}'s photos is usable with the {network} network; nothing was enrolled");
    }
    Ok((pipeline.embedder.model_id(), templates))
}

/// `people`.
pub fn people(g: &Global) -> Result<()> {
    let mut t = g.target()?;
    let mut all = Vec::new();
    loop {
        let Response::People { people, total } = t.request(Request::People { start: all.len() as u32 })? else {
            bail!("unexpected answer to people");
        };
        let done = people.is_empty();
        all.extend(people);
        if done || all.len() as u32 >= total {
            break;
        }
    }
    if g.json {
        print_json(&json!(all
            .iter()
            .map(|p| json!({"id": p.id, "name": p.name, "templates": p.templates, "created": iso_time(p.created as i64 * 1000)}))
            .collect::<Vec<_>>()));
    } else if all.is_empty() {
        println!("nobody is enrolled");
    } else {
        let rows: Vec<Vec<String>> = all
            .iter()
            .map(|p| {
                vec![
                    p.id.to_string(),
                    p.name.clone(),
                    p.templates.to_string(),
                    iso_time(p.created as i64 * 1000)[..10].to_string(),
                ]
            })
            .collect();
        println!("{}", table(&["ID", "NAME", "TEMPLATES", "ENROLLED"], &rows));
        println!("{} people", all.len());
    }
    Ok(())
}

/// `remove NAME`.
pub fn remove(g: &Global, name: &str) -> Result<()> {
    g.target()?.request(Request::Remove { name: name.to_string() })?;
    if g.json {
        print_json(&json!({"removed": name}));
    } else {
        println!("removed {name}");
    }
    Ok(())
}

/// `rename FROM TO`.
pub fn rename(g: &Global, from: &str, to: &str) -> Result<()> {
    g.target()?.request(Request::Rename { from: from.to_string(), to: to.to_string() })?;
    if g.json {
        print_json(&json!({"renamed": from, "to": to}));
    } else {
        println!("renamed {from} to {to}");
    }
    Ok(())
}

/// One photo's answer to verify or identify: the match, or why there is none.
fn match_photo(
    t: &mut Target,
    pipeline: &Pipeline,
    photo: &Path,
    ask: &dyn Fn(ModelId, WireTemplate) -> Request,
) -> Result<Result<MatchReply, String>> {
    let embedding = match photo_template(pipeline, photo, Purpose::Probe)? {
        Ok((e, _)) => e,
        Err(problem) => return Ok(Err(problem.to_string())),
    };
    match t.request(ask(t.model(), WireTemplate::from_embedding(&embedding))) {
        Ok(Response::Match(m)) => Ok(Ok(m)),
        Ok(_) => bail!("unexpected answer"),
        Err(e) => Err(e),
    }
}

fn print_match(g: &Global, photo: &Path, m: &Result<MatchReply, String>, claimed: Option<&str>, several: bool) {
    if g.json {
        // One line per photo, in the order given.
        let (name, person, distance, accepted, threshold, error) = match m {
            Ok(m) => (
                m.name.clone(),
                if m.accepted { m.name.clone() } else { None },
                m.distance.is_finite().then_some(m.distance),
                m.accepted,
                Some(m.threshold),
                None,
            ),
            Err(why) => (None, None, None, false, None, Some(why.clone())),
        };
        print_json_line(&json!({
            "photo": photo, "person": person, "distance": distance, "error": error,
            "name": name, "accepted": accepted, "threshold": threshold,
        }));
        return;
    }
    let prefix = if several { format!("{}: ", photo.display()) } else { String::new() };
    let m = match m {
        Ok(m) => m,
        Err(why) => {
            println!("{prefix}no answer: {why}");
            return;
        }
    };
    match (claimed, &m.name) {
        (Some(n), _) if m.accepted => println!("{prefix}match: this is {n} (distance {:.3} < {:.3})", m.distance, m.threshold),
        (Some(n), _) => println!("{prefix}no match: this is not {n} (distance {:.3} ≥ {:.3})", m.distance, m.threshold),
        (None, Some(n)) if m.accepted => println!("{prefix}{n} (distance {:.3} < {:.3})", m.distance, m.threshold),
        (None, Some(n)) => println!("{prefix}not enrolled (nearest: {n} at {:.3} ≥ {:.3})", m.distance, m.threshold),
        (None, None) => println!("{prefix}not enrolled (the gallery is empty)"),
    }
}

/// verify and identify over many photos: models load once; a photo without a
/// usable face is reported and the others go on. Fails when any photo failed.
fn match_photos(
    g: &Global,
    photos: &[PathBuf],
    claimed: Option<&str>,
    ask: &dyn Fn(ModelId, WireTemplate) -> Request,
) -> Result<()> {
    if photos.is_empty() {
        bail!("give at least one photo");
    }
    let mut t = g.target()?;
    let pipeline = pipeline_for(g, t.model())?;
    let mut failed = 0;
    for photo in photos {
        let m = match_photo(&mut t, &pipeline, photo, ask)?;
        failed += usize::from(m.is_err());
        print_match(g, photo, &m, claimed, photos.len() > 1);
    }
    match failed {
        0 => Ok(()),
        n if photos.len() == 1 => bail!("{}: no usable face ({n} photo)", photos[0].display()),
        n => bail!("{n} of {} photos had no usable face", photos.len()),
    }
}

/// `verify NAME PHOTO…`.
pub fn verify(g: &Global, name: &str, photos: &[PathBuf]) -> Result<()> {
    match_photos(g, photos, Some(name), &|model, probe| Request::Verify { name: name.to_string(), model, probe })
}

/// `identify PHOTO…`.
pub fn identify(g: &Global, photos: &[PathBuf]) -> Result<()> {
    match_photos(g, photos, None, &|model, probe| Request::Identify { model, probe })
}

/// Milliseconds since the epoch of `--since`: an ISO date/time, or an age such as 30m, 2h, 7d.
pub fn parse_since(text: &str) -> Result<i64> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let unit = |c: char| match c {
        's' => Some(1_000),
        'm' => Some(60_000),
        'h' => Some(3_600_000),
        'd' => Some(86_400_000),
        _ => None,
    };
    if let Some(u) = text.chars().last().and_then(unit) {
        if let Ok(n) = text[..text.len() - 1].parse::<i64>() {
            return Ok(now - n * u);
        }
    }
    facegate_store::access_log::parse_iso_time(text)
        .with_context(|| format!("--since {text:?}: give a time such as 2026-11-28T08:00 (UTC) or 2026-11-28T09:00+01:00, or an age such as 30m, 2h, 7d"))
}

/// `log [--since T] [--follow]`.
pub fn log(g: &Global, since: Option<&str>, follow: bool) -> Result<()> {
    let since_ms = since.map(parse_since).transpose()?;
    let mut c = target::connect_paired(g.port()?, g.baud, g.timeout)?;
    let mut after = 0;
    let mut printed_any = false;
    let mut collected = Vec::new();
    loop {
        let Response::Log { events, more } =
            c.call(&Request::LogRead { after, since_ms, max: 200 }).map_err(crate::output::client_error)?
        else {
            bail!("unexpected answer to log");
        };
        for e in &events {
            after = after.max(e.seq);
            let v = log_event_json(e);
            if g.json && !follow {
                collected.push(v);
            } else if g.json {
                println!("{v}");
            } else {
                let s = |k: &str| v[k].as_str().map(str::to_string).unwrap_or_default();
                let dist = e.distance.map(|d| format!(" distance {d:.3}")).unwrap_or_default();
                let frames = if e.frames > 0 { format!(" ({} frames)", e.frames) } else { String::new() };
                println!("{:>6}  {}  {:<14} {}{dist}{frames}", e.seq, s("time"), s("kind"), s("person"));
                printed_any = true;
            }
        }
        if more {
            continue;
        }
        if !follow {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    if g.json {
        print_json(&json!(collected));
    } else if !printed_any {
        println!("no events");
    }
    Ok(())
}

/// A request to a paired device whose answer is just "done".
fn device_action(g: &Global, request: Request, json_out: serde_json::Value, text: &str) -> Result<()> {
    let mut c = target::connect_paired(g.port()?, g.baud, g.timeout)?;
    c.call(&request).map_err(crate::output::client_error)?;
    if g.json {
        print_json(&json_out);
    } else {
        println!("{text}");
    }
    Ok(())
}

/// `log clear`.
pub fn log_clear(g: &Global) -> Result<()> {
    device_action(g, Request::LogClear, json!({"cleared": true}), "access log cleared")
}

/// `config get [KEY]`.
pub fn config_get(g: &Global, key: Option<&str>) -> Result<()> {
    let mut c = target::connect_paired(g.port()?, g.baud, g.timeout)?;
    let Response::Config(entries) =
        c.call(&Request::ConfigGet { key: key.map(str::to_string) }).map_err(crate::output::client_error)?
    else {
        bail!("unexpected answer to config get");
    };
    if g.json {
        print_json(&json!(entries.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>()));
    } else {
        for (k, v) in entries {
            println!("{k} = {v}");
        }
    }
    Ok(())
}

/// `config set KEY VALUE`.
pub fn config_set(g: &Global, key: &str, value: &str) -> Result<()> {
    let mut c = target::connect_paired(g.port()?, g.baud, g.timeout)?;
    let Response::ConfigSet { persisted, restart_needed } =
        c.call(&Request::ConfigSet { key: key.to_string(), value: value.to_string() }).map_err(crate::output::client_error)?
    else {
        bail!("unexpected answer to config set");
    };
    if g.json {
        print_json(&json!({"key": key, "value": value, "persisted": persisted, "restart_needed": restart_needed}));
    } else {
        println!("{key} = {value}");
        if !persisted {
            println!("note: the device runs without a config file, so this lasts until it restarts");
        }
        if restart_needed {
            println!("note: takes effect when the device restarts");
        }
    }
    Ok(())
}

/// Writes a file atomically (temporary file, fsync, rename).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    facegate_store::atomic::replace(path, bytes, false).with_context(|| format!("writing {}", path.display()))
}

/// `backup FILE`.
pub fn backup(g: &Global, file: &Path) -> Result<()> {
    let (bytes, people) = if let Some(path) = &g.gallery {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let gallery = facegate_store::Gallery::from_bytes(&bytes, path)?;
        (bytes, gallery.people().len())
    } else {
        let mut c = target::connect_paired(g.port()?, g.baud, g.timeout)?;
        let Response::Backup { len, sha256 } = c.call(&Request::BackupBegin).map_err(crate::output::client_error)? else {
            bail!("unexpected answer to backup");
        };
        let pb = bar(g, len, "downloading gallery", true);
        let mut bytes = Vec::with_capacity(len as usize);
        while (bytes.len() as u64) < len {
            let Response::Chunk(data) = c
                .call(&Request::BackupChunk { offset: bytes.len() as u64, len: CHUNK as u32 })
                .map_err(crate::output::client_error)?
            else {
                bail!("unexpected answer to a backup chunk");
            };
            if data.is_empty() {
                bail!("the device sent no data at offset {}", bytes.len());
            }
            bytes.extend_from_slice(&data);
            pb.set_position(bytes.len() as u64);
        }
        pb.finish_and_clear();
        if <[u8; 32]>::from(Sha256::digest(&bytes)) != sha256 || bytes.len() as u64 != len {
            bail!("the download does not match the device's checksum; nothing was written (hint: retry; check the cable)");
        }
        let people = facegate_store::Gallery::from_bytes(&bytes, file)?.people().len();
        (bytes, people)
    };
    write_atomic(file, &bytes)?;
    let sha = hex(&Sha256::digest(&bytes));
    if g.json {
        print_json(&json!({"file": file, "bytes": bytes.len(), "sha256": sha, "people": people}));
    } else {
        println!("backed up {people} people ({} bytes, sha256 {sha}) to {}", bytes.len(), file.display());
    }
    Ok(())
}

/// `restore FILE`.
pub fn restore(g: &Global, file: &Path) -> Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    // Check it here first: a damaged file never leaves the laptop.
    let gallery = facegate_store::Gallery::from_bytes(&bytes, file).context("the backup file is damaged; nothing was changed")?;
    let people = gallery.people().len();
    if let Some(path) = &g.gallery {
        write_atomic(path, &bytes)?;
    } else {
        let mut c = target::connect_paired(g.port()?, g.baud, g.timeout)?;
        let sha256: [u8; 32] = Sha256::digest(&bytes).into();
        let Response::RestoreAt(mut at) =
            c.call(&Request::RestoreBegin { len: bytes.len() as u64, sha256 }).map_err(crate::output::client_error)?
        else {
            bail!("unexpected answer to restore");
        };
        if at > 0 && !g.json {
            eprintln!("resuming an interrupted upload at byte {at}");
        }
        let pb = bar(g, bytes.len() as u64, "uploading gallery", true);
        while (at as usize) < bytes.len() {
            let end = (at as usize + CHUNK).min(bytes.len());
            let Response::RestoreAt(next) = c
                .call(&Request::RestoreChunk { offset: at, data: bytes[at as usize..end].to_vec() })
                .map_err(crate::output::client_error)?
            else {
                bail!("unexpected answer to a restore chunk");
            };
            at = next;
            pb.set_position(at);
        }
        pb.finish_and_clear();
        c.call_with_timeout(&Request::RestoreCommit, Duration::from_secs(60)).map_err(crate::output::client_error)?;
    }
    if g.json {
        print_json(&json!({"restored": people, "file": file}));
    } else {
        println!("restored {people} people from {}", file.display());
    }
    Ok(())
}

/// `unlock`.
pub fn unlock(g: &Global) -> Result<()> {
    device_action(g, Request::Unlock, json!({"unlocked": true}), "door unlocked for one pulse (logged)")
}

/// `models`: where the models are looked for, which directory is used, and
/// whether every file in it matches its MANIFEST hash. Fails when one does not.
pub fn models(g: &Global) -> Result<()> {
    use facegate_face::model_files::{locate, search_path};
    let searched = search_path(g.models.as_deref());
    let dir = locate(g.models.as_deref())?;
    let files: Vec<(String, Option<String>)> =
        dir.manifest().files().map(|f| (f.to_string(), dir.read(f).err().map(|e| e.to_string()))).collect();
    let bad = files.iter().filter(|(_, p)| p.is_some()).count();
    if g.json {
        print_json(&json!({
            "dir": dir.path(),
            "searched": searched.iter().map(|c| json!({"path": c.path, "source": c.source})).collect::<Vec<_>>(),
            "files": files.iter().map(|(f, p)| json!({"file": f, "ok": p.is_none(), "problem": p})).collect::<Vec<_>>(),
        }));
    } else {
        println!("models: {}", dir.path().display());
        for (f, p) in &files {
            println!("  {f}: {}", p.as_deref().unwrap_or("ok (sha256 as in MANIFEST)"));
        }
        println!("searched, in order:");
        for c in &searched {
            println!("  {} ({})", c.path.display(), c.source);
        }
    }
    if bad > 0 {
        bail!("{bad} of {} model files do not match MANIFEST: reinstall the models", files.len());
    }
    Ok(())
}
