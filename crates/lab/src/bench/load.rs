//! `host-tool bench load`: the whole door under load at once, as a busy site
//! door has it. The real `device` program runs on a replay at the camera's
//! rate with a simulated lock, joined to a site through a real mosquitto,
//! its serial link on a pseudo-terminal paced at 115,200 baud. Meanwhile:
//! people are enrolled over the serial link, then removed, over and over; the
//! site's people are synced through the broker and published again with new
//! templates every minute; the access log is read over the serial link
//! after every request, while the door's site link sends every event to the
//! broker. A reference run of the same door with frames only comes first.
//!
//! Reported: the frame loop's longest turn (`longest_stall_ms`, against the
//! reference), events the door numbered that its log or the broker lack
//! (`events_lost`), memory growth between the first and the last cycle's
//! end after warm-up, when the gallery holds the site's people alone
//! (`rss_growth_kb`), and the access log's append and
//! fsync per event on this disk.

use super::fixtures::{stats_figure, synthetic};
use super::fleet::BenchSite;
use anyhow::{bail, Context, Result};
use facegate_face::Network;
use facegate_localbroker::broker::Broker;
use facegate_localbroker::doors::{collect, RunningDoor};
use facegate_protocol::link::Link as SerialLink;
use facegate_protocol::message::{NewPerson, WireTemplate};
use facegate_protocol::{Client, ClientError, Request, Response, MAX_FRAME};
use facegate_site_admin::broker::Link;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The serial line's rate, emulated on both ends.
const BAUD: u32 = 115_200;
/// Events asked for per log read: small pages, so reading never holds the line long.
const LOG_PAGE: u16 = 50;
/// How often the site publishes its people again, with new templates.
const RESYNC: Duration = Duration::from_secs(60);

/// `bench load` options.
#[derive(clap::Args)]
pub struct LoadArgs {
    /// Minutes under load.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Minutes of the reference run (frames only) before it (default: a tenth, 0.5 to 1).
    #[arg(long)]
    reference_minutes: Option<f64>,
    /// People enrolled over the serial link per cycle, and people in the site.
    #[arg(long, default_value_t = 1000)]
    people: usize,
    /// Templates per person.
    #[arg(long, default_value_t = 3)]
    templates: usize,
    /// The camera's rate.
    #[arg(long, default_value_t = 10)]
    fps: u32,
    /// A photo with a face for the camera (e.g. an LFW image): every frame is
    /// then detected, embedded and searched, and the door logs a stranger at
    /// every cooldown. Without it, frames are empty.
    #[arg(long)]
    face: Option<PathBuf>,
    /// The device program (default: `device` next to this program).
    #[arg(long)]
    device: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs the benchmark.
pub fn run(models: &Path, network: Network, args: LoadArgs) -> Result<()> {
    let device = super::fixtures::device_program(args.device.clone())?;
    if !args.minutes.is_finite()
        || args.minutes <= 0.0
        || args.people == 0
        || !(1..=16).contains(&args.templates)
        || args.fps == 0
    {
        bail!("--minutes, --people and --fps must be positive, --templates 1–16");
    }
    let work = std::env::temp_dir().join(format!("facegate-bench-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let reference_minutes = args.reference_minutes.unwrap_or((args.minutes / 10.0).clamp(0.5, 1.0));
    let result = (|| -> Result<Value> {
        eprintln!("reference: {reference_minutes} min, frames only");
        let reference = run_door(models, network, &device, &work.join("reference"), &args, reference_minutes, false)?;
        eprintln!("load: {} min", args.minutes);
        let loaded = run_door(models, network, &device, &work.join("load"), &args, args.minutes, true)?;
        let fsync = log_append_ms(&work.join("fsync"))?;
        Ok(figures(&args, &reference, &loaded, fsync))
    })();
    let _ = std::fs::remove_dir_all(&work);
    let figures = result?;
    super::fixtures::print_figures(&figures, args.json)
}

fn figures(args: &LoadArgs, reference: &Run, loaded: &Run, fsync_ms: f64) -> Value {
    let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b.filter(|b| *b > 0.0)?);
    json!({
        "minutes": args.minutes,
        "fps": args.fps,
        "people": args.people,
        "templates": args.templates,
        "longest_stall_ms": loaded.longest_turn_ms,
        "reference_longest_stall_ms": reference.longest_turn_ms,
        "stall_ratio": ratio(loaded.longest_turn_ms, reference.longest_turn_ms),
        "mean_turn_ms": loaded.mean_turn_ms,
        "reference_mean_turn_ms": reference.mean_turn_ms,
        "longest_gallery_wait_ms": loaded.gallery_wait_ms,
        "frames": loaded.frames,
        "frames_per_s": loaded.fps,
        "reference_frames_per_s": reference.fps,
        "events_numbered": loaded.numbered,
        "events_lost": loaded.lost_in_log + loaded.lost_at_broker,
        "events_lost_in_log": loaded.lost_in_log,
        "events_lost_at_broker": loaded.lost_at_broker,
        "events_read_over_serial": loaded.read,
        "log_reads": loaded.log_reads,
        "rss_warm_kb": loaded.rss.first().copied(),
        "rss_end_kb": loaded.rss.last().copied(),
        "rss_growth_kb": loaded.rss_growth_kb(),
        "rss_samples_kb": loaded.rss,
        "rss_trend_kb_per_hour": loaded.rss_trend_kb_per_hour(),
        "reference_rss_growth_kb": reference.rss_growth_kb(),
        "serial_enrolled": loaded.enrolled,
        "serial_removed": loaded.removed,
        "serial_removed_by_site_sync": loaded.removed_by_site,
        "serial_cycles": loaded.cycles,
        "site_versions_published": loaded.versions_published,
        "site_version_applied": loaded.version_applied,
        "log_append_fsync_ms_per_event": fsync_ms,
    })
}

/// What one run of the door gave.
#[derive(Default)]
struct Run {
    longest_turn_ms: Option<f64>,
    mean_turn_ms: Option<f64>,
    gallery_wait_ms: Option<f64>,
    frames: Option<u64>,
    fps: Option<f64>,
    numbered: u64,
    lost_in_log: u64,
    lost_at_broker: u64,
    read: usize,
    log_reads: u64,
    rss: Vec<u64>,
    /// When each of `rss` was taken, seconds into the run.
    rss_at: Vec<f64>,
    enrolled: usize,
    removed: usize,
    removed_by_site: usize,
    cycles: usize,
    versions_published: u64,
    version_applied: Option<u64>,
}

impl Run {
    /// Growth from the first cycle's end after warm-up to the last (the same gallery, later).
    fn rss_growth_kb(&self) -> Option<i64> {
        match self.rss.as_slice() {
            [first, .., last] => Some(*last as i64 - *first as i64),
            _ => None,
        }
    }

    /// The least-squares trend of the samples, kB per hour: growth that
    /// the swing between two samples (a site version being applied or not)
    /// would hide.
    fn rss_trend_kb_per_hour(&self) -> Option<f64> {
        let n = self.rss.len().min(self.rss_at.len());
        if n < 3 {
            return None;
        }
        let (t, m) = (&self.rss_at[..n], &self.rss[..n]);
        let mean_t = t.iter().sum::<f64>() / n as f64;
        let mean_m = m.iter().map(|&k| k as f64).sum::<f64>() / n as f64;
        let cov: f64 = t.iter().zip(m).map(|(t, &k)| (t - mean_t) * (k as f64 - mean_m)).sum();
        let var: f64 = t.iter().map(|t| (t - mean_t).powi(2)).sum();
        (var > 0.0).then(|| cov / var * 3600.0)
    }

    fn sample_rss(&mut self, pid: u32, started: Instant) {
        if let Some(kb) = rss_kb(pid) {
            self.rss.push(kb);
            self.rss_at.push(started.elapsed().as_secs_f64());
        }
    }
}

/// The door process's resident memory, from /proc.
fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()
}

/// Reads the door's log over serial from `after` until no more are waiting; returns the newest seq seen.
fn read_log<P: facegate_protocol::link::Port>(
    c: &mut Client<P>,
    after: u64,
    seen: &mut BTreeSet<u64>,
    reads: &mut u64,
    all: bool,
) -> Result<u64> {
    let mut after = after;
    loop {
        let Response::Log { events, more } = c.call(&Request::LogRead { after, since_ms: None, max: LOG_PAGE })? else {
            bail!("the door answered a log read with something else");
        };
        *reads += 1;
        for e in &events {
            seen.insert(e.seq);
            after = after.max(e.seq);
        }
        if !(more && all) {
            return Ok(after);
        }
    }
}

fn run_door(
    models: &Path,
    network: Network,
    device: &Path,
    dir: &Path,
    args: &LoadArgs,
    minutes: f64,
    loaded: bool,
) -> Result<Run> {
    std::fs::create_dir_all(dir)?;
    let (door_name, door_password, admin_password) =
        ("load", format!("door-{}", std::process::id()), format!("admin-{}", std::process::id()));
    let broker = Broker::start(&dir.join("broker"), &[("admin", admin_password.as_str()), (door_name, door_password.as_str())])
        .map_err(anyhow::Error::msg)?;
    let mut site = BenchSite::new(models, network, &[door_name.to_string()], args.people, args.templates, 0)?;
    std::fs::write(dir.join("fleet.toml"), site.secrets(door_name, &door_password).to_toml())?;
    let approach = dir.join("approach");
    super::fixtures::approach_frames(&approach, args.face.as_deref())?;
    let d = dir.display();
    let seconds = (minutes * 60.0).ceil() as u64;
    let config = format!(
        "[camera]\nfps = {}\n[recognition]\nnetwork = \"{network}\"\ncooldown_ms = 1500\n[liveness]\nmode = \"off\"\n\
         [serial]\nsetup_window_s = {}\n\
         [fleet]\nenabled = true\nbroker = \"{}\"\nca_file = \"{}\"\nkeep_alive_s = 5\n\
         [paths]\nmodels = \"{}\"\ngallery = \"{d}/gallery.fg\"\nlog = \"{d}/access.log\"\npairing = \"{d}/pairing.fg\"\n\
         fleet_secrets = \"{d}/fleet.toml\"\nsite = \"{d}/site.fgsite\"\n",
        args.fps,
        seconds + 600,
        broker.url(),
        broker.ca.display(),
        models.display()
    );
    std::fs::write(dir.join("facegate.toml"), &config)?;
    // The door's status and events as the site receives them, from before it starts.
    let status = collect(&broker, "admin", &admin_password, "facegate/bench/doors/+/status");
    let events = collect(&broker, "admin", &admin_password, "facegate/bench/doors/+/events");
    let delivered = || -> BTreeSet<u64> {
        events.lock().unwrap_or_else(|p| p.into_inner()).iter().filter_map(|(_, e)| e["seq"].as_u64()).collect()
    };
    let baud = BAUD.to_string();
    let door = RunningDoor::start_with_config(
        device,
        &dir.join("facegate.toml"),
        &approach,
        &["--stats", "--serial", "pty", "--setup", "--emulate-baud", &baud],
    );
    let pid = door.id();
    let port =
        wait_for(Duration::from_secs(120), || door.stderr().lines().find_map(|l| l.strip_prefix("serial: ").map(str::to_string)))
            .with_context(|| format!("the door did not open its serial link: {}", door.stderr()))?;
    let applied = || status.lock().unwrap_or_else(|p| p.into_inner()).iter().rev().find_map(|(_, s)| s["version"].as_u64());
    let online = || status.lock().unwrap_or_else(|p| p.into_inner()).iter().rev().any(|(_, s)| s["online"] == true);
    wait_for(Duration::from_secs(120), || online().then_some(())).context("the door did not come online at the broker")?;
    let config_site = site.config(&broker, &admin_password);
    std::env::set_var("FACEGATE_HOME", dir.join("home"));
    let serial =
        serialport::new(&port, BAUD).timeout(Duration::from_millis(200)).open().with_context(|| format!("opening {port}"))?;
    let mut line = SerialLink::new(serial);
    line.emulate_baud(BAUD);
    let mut c = Client::connect(line, facegate_protocol::auth::random_bytes(), Duration::from_secs(30))?;
    c.pair("bench-load")?;
    let model = c.hello().model;

    let mut run = Run::default();
    let (mut seen, mut after) = (BTreeSet::new(), 0u64);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(minutes * 60.0);
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let mut syncer = None;
    if loaded {
        // The site: its people, then new templates every minute.
        let (stop, published, config_site) = (stop.clone(), published.clone(), config_site.clone());
        let (people, templates) = (args.people, args.templates);
        syncer = Some(std::thread::spawn(move || -> Result<()> {
            let mut version = 0;
            while !stop.load(Ordering::Relaxed) {
                version += 1;
                site.set_people(people, templates, version as usize * 7919)?;
                let messages = site.messages(version, [0; 32])?;
                // Connected for each publication: an idle link would miss its keep-alives while the next one is sealed.
                Link::connect(&config_site, "bench-load-admin", true)?.publish_retained(&messages, true)?;
                published.store(version, Ordering::Relaxed);
                let next = Instant::now() + RESYNC;
                while Instant::now() < next && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            Ok(())
        }));
        // Serial: enrol everybody (as many per frame as fit), then remove them
        // one by one, reading the log after every request.
        'cycles: while Instant::now() < deadline {
            let names: Vec<String> = (0..args.people).map(|i| format!("serial-{}-{i:05}", run.cycles)).collect();
            let mut next = 0;
            while next < names.len() {
                let mut batch = Vec::new();
                let mut size = 64;
                while next < names.len() {
                    let p = NewPerson {
                        name: names[next].clone(),
                        templates: (0..args.templates)
                            .map(|k| WireTemplate::from_embedding(&synthetic(next + 100_000, k)))
                            .collect(),
                    };
                    let bytes = facegate_protocol::message::to_bytes(&p).len();
                    if size + bytes > MAX_FRAME - 64 && !batch.is_empty() {
                        break;
                    }
                    size += bytes;
                    batch.push(p);
                    next += 1;
                }
                let Response::Enrolled(results) = c.call(&Request::Enroll { model, add: false, people: batch })? else {
                    bail!("the door answered an enrolment with something else");
                };
                run.enrolled += results.iter().filter(|r| r.outcome.is_ok()).count();
                after = read_log(&mut c, after, &mut seen, &mut run.log_reads, false)?;
                if Instant::now() >= deadline {
                    break 'cycles;
                }
            }
            for name in names {
                match c.call(&Request::Remove { name }) {
                    Ok(Response::Done) => run.removed += 1,
                    Ok(other) => bail!("the door answered a removal with {other:?}"),
                    // Gone already: the site's sync replaced the gallery with the site's people.
                    Err(ClientError::Device(_)) => run.removed_by_site += 1,
                    Err(e) => return Err(e.into()),
                }
                after = read_log(&mut c, after, &mut seen, &mut run.log_reads, false)?;
                if Instant::now() >= deadline {
                    break 'cycles;
                }
            }
            run.cycles += 1;
            // The same state at every cycle's end: the serial people gone,
            // the site's people in (once its first version is applied).
            if applied().unwrap_or(0) >= 1 {
                run.sample_rss(pid, started);
            }
        }
    } else {
        // Frames only; memory after warm-up and at the end.
        std::thread::sleep(Duration::from_secs(5).min(deadline.saturating_duration_since(Instant::now())));
        run.sample_rss(pid, started);
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        run.sample_rss(pid, started);
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(s) = syncer {
        s.join().map_err(|_| anyhow::anyhow!("the site's publisher panicked"))??;
    }
    run.versions_published = published.load(Ordering::Relaxed);
    // Every event numbered so far, from the log over serial and from the broker.
    let printed =
        door.events.lock().unwrap_or_else(|p| p.into_inner()).iter().filter_map(|e| e["seq"].as_u64()).max().unwrap_or(0);
    read_log(&mut c, after, &mut seen, &mut run.log_reads, true)?;
    let all_delivered = || {
        let got = delivered();
        (1..=printed).all(|s| got.contains(&s)).then_some(())
    };
    let _ = wait_for(Duration::from_secs(30), all_delivered);
    run.numbered = printed;
    run.read = seen.range(1..=printed).count();
    run.lost_in_log = (1..=printed).filter(|s| !seen.contains(s)).count() as u64;
    let got = delivered();
    let missing: Vec<u64> = (1..=printed).filter(|s| !got.contains(s)).collect();
    run.lost_at_broker = missing.len() as u64;
    if !missing.is_empty() {
        eprintln!("events the broker never got: {:?}", &missing[..missing.len().min(20)]);
    }
    run.version_applied = applied();
    drop(c);
    let stderr = door.stop();
    let stats = stderr.lines().rev().find(|l| l.contains("longest turn")).map(str::to_string);
    let figure = |key: &str, unit: &str| stats_figure(stats.as_deref()?, key, unit);
    run.longest_turn_ms = figure("longest turn", "ms");
    run.mean_turn_ms = figure("(mean", "ms");
    run.gallery_wait_ms = figure("longest gallery wait", "ms");
    run.fps = figure("s =", "fps");
    run.frames = stats.as_deref().and_then(|s| s.split_whitespace().next()?.parse().ok());
    if stats.is_none() {
        bail!("the door printed no loop figures; its messages:\n{stderr}");
    }
    Ok(run)
}

/// Polls `ready` every 50 ms until it gives a value or `limit` passes.
fn wait_for<T>(limit: Duration, mut ready: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = ready() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("nothing within {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The access log's append (a written and synced record) on this disk, ms per event.
fn log_append_ms(dir: &Path) -> Result<f64> {
    std::fs::create_dir_all(dir)?;
    let mut log = facegate_store::AccessLog::open(&dir.join("access.log"), 1000)?;
    let n = 200;
    let started = Instant::now();
    for k in 0..n {
        log.append(&facegate_store::Event::new(facegate_store::EventKind::Denied, k as i64))?;
    }
    Ok(started.elapsed().as_secs_f64() * 1000.0 / n as f64)
}
