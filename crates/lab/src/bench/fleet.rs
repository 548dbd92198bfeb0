//! `host-tool bench fleet`: a site pushed to many doors on this machine
//! through a real broker. Starts its own mosquitto (TLS) and `device`
//! processes (replay sources, simulated locks), publishes a site of P people
//! to D doors, and measures how long until every door applied it, the bytes
//! through the broker, and the doors' events collected back (once each after
//! de-duplication by (door, seq)).

use anyhow::{bail, Context, Result};
use facegate_face::Network;
use facegate_localbroker::broker::Broker;
use facegate_localbroker::doors::{collect, DoorReplay, RunningDoor};
use facegate_site::{Access, AdminKey, DataKey, Door, DoorSecrets, Group, PersonRecord, Rules, SiteState};
use facegate_site_admin::broker::Link;
use facegate_site_admin::SiteConfig;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `bench fleet` options.
#[derive(clap::Args)]
pub struct FleetArgs {
    /// Doors (device processes) on this machine.
    #[arg(long, default_value_t = 10)]
    doors: usize,
    /// People in the site.
    #[arg(long, default_value_t = 1000)]
    people: usize,
    /// Templates per person.
    #[arg(long, default_value_t = 3)]
    templates: usize,
    /// Seconds the doors run after converging, raising events.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// A photo with a face for every door's camera (e.g. an LFW photo): each
    /// door then logs strangers, the events collected back. Without it the
    /// doors log only their site updates.
    #[arg(long)]
    face: Option<PathBuf>,
    /// Restart the broker (clean stop, same store) halfway through the event phase.
    #[arg(long)]
    restart_broker: bool,
    /// Kill the broker (SIGKILL: its unsaved last second lost) right after it
    /// took the site, while the doors are still applying it; restart it and
    /// repair it as `host-tool sync` does.
    #[arg(long)]
    kill_broker: bool,
    /// The device program (default: `device` next to this program).
    #[arg(long)]
    device: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// A site for the benches: everyone in one group that every door lets in,
/// templates synthetic.
pub(crate) struct BenchSite {
    admin: AdminKey,
    data: DataKey,
    state: SiteState,
}

impl BenchSite {
    /// `people` people with `templates` templates each (`seed` varies them)
    /// of `network` (the doors' default precision) for the doors `doors`.
    pub(crate) fn new(
        models: &Path,
        network: Network,
        doors: &[String],
        people: usize,
        templates: usize,
        seed: usize,
    ) -> Result<Self> {
        let (admin, data) = (AdminKey::generate()?, DataKey::generate()?);
        let model = facegate_face::Embedder::model_id_of(models, network, facegate_face::Precision::Int8)?;
        let mut rules = Rules { time_zone: "UTC".into(), ..Rules::default() };
        rules.groups.insert("staff".into(), Group::default());
        for n in doors {
            rules.doors.insert(n.clone(), Door { groups: ["staff".to_string()].into(), schedule: None });
        }
        let state = SiteState { name: "bench".into(), version: 0, model, rules, people: BTreeMap::new() };
        let mut site = BenchSite { admin, data, state };
        site.set_people(people, templates, seed)?;
        Ok(site)
    }

    /// Replaces everybody: person `p`'s templates are made from `p + seed`.
    pub(crate) fn set_people(&mut self, people: usize, templates: usize, seed: usize) -> Result<()> {
        let access = Access { groups: ["staff".to_string()].into(), ..Access::default() };
        self.state.people.clear();
        for p in 0..people {
            let t: Vec<_> = (0..templates).map(|k| super::fixtures::synthetic(p + seed, k)).collect();
            let id = format!("p-{p:06}");
            self.state
                .people
                .insert(id.clone(), PersonRecord::new("bench", &id, &format!("Person {p}"), access.clone(), &t, &self.data)?);
        }
        Ok(())
    }

    /// The signed messages of `version`, issued now.
    pub(crate) fn messages(&mut self, version: u64, previous: [u8; 32]) -> Result<Vec<(String, Vec<u8>)>> {
        self.state.version = version;
        let issued_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
        Ok(self.state.messages(&self.admin, &self.data, &BTreeMap::new(), issued_at, previous)?)
    }

    /// Door `door`'s secrets, with its broker password.
    pub(crate) fn secrets(&self, door: &str, password: &str) -> DoorSecrets {
        DoorSecrets {
            site: "bench".into(),
            door: door.to_string(),
            site_public_key: facegate_core::hex(&self.admin.public().to_bytes()),
            data_key: facegate_core::hex(&self.data.to_bytes()),
            username: door.to_string(),
            password: password.to_string(),
            min_version: 1,
        }
    }

    /// The administrator's site file for `broker`.
    pub(crate) fn config(&self, broker: &Broker, admin_password: &str) -> SiteConfig {
        SiteConfig {
            name: "bench".into(),
            broker: broker.url(),
            ca_file: broker.ca.display().to_string(),
            username: "admin".into(),
            password: admin_password.to_string(),
            admin_key: facegate_core::hex(&self.admin.to_bytes()),
            data_key: facegate_core::hex(&self.data.to_bytes()),
            console_password: String::new(),
        }
    }
}

/// The broker's `$SYS` byte counters (received + sent), once they are published.
fn broker_bytes(sys: &Mutex<Vec<(String, Value)>>) -> Option<u64> {
    let seen = sys.lock().unwrap_or_else(|p| p.into_inner());
    let last = |name: &str| seen.iter().rev().find(|(t, _)| t == name).and_then(|(_, v)| v.as_u64());
    Some(last("$SYS/broker/bytes/received")? + last("$SYS/broker/bytes/sent")?)
}

/// Waits for the next `$SYS` publication (every second) and returns the byte total.
fn fresh_broker_bytes(sys: &Mutex<Vec<(String, Value)>>) -> Result<u64> {
    let n = sys.lock().unwrap_or_else(|p| p.into_inner()).len();
    let deadline = Instant::now() + Duration::from_secs(5);
    while sys.lock().unwrap_or_else(|p| p.into_inner()).len() < n + 2 {
        if Instant::now() > deadline {
            bail!("the broker publishes no $SYS byte counters");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    broker_bytes(sys).context("no $SYS byte counters")
}

/// Runs the benchmark.
pub fn run(models: &Path, network: Network, args: FleetArgs) -> Result<()> {
    let device = super::fixtures::device_program(args.device.clone())?;
    let work = std::env::temp_dir().join(format!("facegate-bench-fleet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let result = measure(models, network, &device, &work, &args);
    let _ = std::fs::remove_dir_all(&work);
    let figures = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        println!(
            "{} doors, {} people × {} templates: converged in {:.2} s, {} bytes through the broker",
            args.doors, args.people, args.templates, figures["converged_s"], figures["broker_bytes"]
        );
        println!(
            "events: {} sent, {} collected, {} lost, {} duplicates dropped ({:.0} per second collected)",
            figures["events_sent"],
            figures["events_collected"],
            figures["events_lost"],
            figures["events_duplicated"],
            figures["events_per_s"].as_f64().unwrap_or(0.0)
        );
        if let Some(ms) = figures["frame_loop_longest_gallery_wait_ms"].as_f64() {
            println!("longest gallery wait in any door's frame loop, sync included: {ms:.3} ms");
        }
    }
    Ok(())
}

fn measure(models: &Path, network: Network, device: &Path, work: &Path, args: &FleetArgs) -> Result<Value> {
    let names: Vec<String> = (0..args.doors).map(|i| format!("door-{i:02}")).collect();
    let passwords: Vec<String> = names.iter().map(|n| format!("pw-{n}-{}", std::process::id())).collect();
    let admin_password = format!("admin-{}", std::process::id());
    let mut users: Vec<(&str, &str)> = vec![("admin", admin_password.as_str())];
    users.extend(names.iter().map(String::as_str).zip(passwords.iter().map(String::as_str)));
    let mut broker = Broker::start(&work.join("broker"), &users).map_err(anyhow::Error::msg)?;

    let mut site = BenchSite::new(models, network, &names, args.people, args.templates, 0)?;
    let messages = site.messages(1, [0; 32])?;

    // The doors, started before the site exists.
    let approach = work.join("approach");
    super::fixtures::approach_frames(&approach, args.face.as_deref())?;
    let mut doors: Vec<RunningDoor> = Vec::new();
    for (n, pw) in names.iter().zip(&passwords) {
        let dir = work.join(n);
        std::fs::create_dir_all(&dir)?;
        let secrets = site.secrets(n, pw);
        std::fs::write(dir.join("fleet.toml"), secrets.to_toml())?;
        let replay = DoorReplay { fps: 5, network: Some(network.as_str()) };
        doors.push(RunningDoor::start(device, models, &dir, &broker, &approach, replay, &["--stats"]));
    }
    let config = site.config(&broker, &admin_password);
    let status = collect(&broker, "admin", &admin_password, "facegate/bench/doors/+/status");
    let sys = collect(&broker, "admin", &admin_password, "$SYS/broker/bytes/#");
    // Events as `host-tool log` collects them: a persistent session, every copy counted.
    let raw: Arc<Mutex<Vec<Value>>> = Arc::new(Mutex::new(Vec::new()));
    {
        let (config, raw) = (config.clone(), raw.clone());
        let mut log = Link::connect(&config, "bench-log", false)?;
        std::thread::spawn(move || {
            let _ = log.events_raw(None, true, |e| raw.lock().unwrap_or_else(|p| p.into_inner()).push(e.clone()));
        });
    }
    let latest = |door: &str| -> Option<Value> {
        let s = status.lock().unwrap_or_else(|p| p.into_inner());
        s.iter().rev().find(|(t, _)| t.ends_with(&format!("/{door}/status"))).map(|(_, v)| v.clone())
    };
    let wait_all = |what: &str, secs: u64, ok: &dyn Fn(&Value) -> bool| -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !names.iter().all(|n| latest(n).is_some_and(|s| ok(&s))) {
            if Instant::now() > deadline {
                bail!("not every door {what} within {secs} s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    };
    wait_all("came online", 120, &|s| s["online"] == true)?;

    // The sync: publish, then wait for every door's status to say version 1.
    let bytes_before = fresh_broker_bytes(&sys)?;
    let started = Instant::now();
    let mut admin_link = Link::connect(&config, "bench-admin", true)?;
    admin_link.publish_retained(&messages, true)?;
    let published_s = started.elapsed().as_secs_f64();
    let mut repaired = None;
    // A killed broker's counters restart at zero: count what it had last reported (≤ 1 s old) before.
    let mut bytes_before_kill = 0;
    if args.kill_broker {
        drop(admin_link);
        bytes_before_kill = broker_bytes(&sys).unwrap_or(bytes_before).saturating_sub(bytes_before);
        broker.kill();
        broker.restart();
        let mut link = Link::connect(&config, "bench-repair", true)?;
        repaired = Some(link.publish_missing(&messages, true)?);
    }
    wait_all("applied the site", 300, &|s| s["version"] == 1)?;
    let converged_s = started.elapsed().as_secs_f64();
    let bytes_after = fresh_broker_bytes(&sys)?;

    // Events: the doors run on (seeing the face, if given), the broker maybe restarted.
    let events_started = Instant::now();
    let half = Duration::from_secs(args.seconds / 2);
    std::thread::sleep(half);
    if args.restart_broker {
        broker.stop();
        std::thread::sleep(Duration::from_secs(1));
        broker.restart();
    }
    std::thread::sleep(Duration::from_secs(args.seconds).saturating_sub(half));
    let printed: Vec<Vec<Value>> = doors.iter().map(|d| d.events.lock().unwrap_or_else(|p| p.into_inner()).clone()).collect();
    // The frame loops' longest gallery wait, sync included (printed by `--stats` on exit).
    let mut longest_gallery_wait_ms: Option<f64> = None;
    for d in doors {
        let stderr = d.stop();
        let wait = stderr.lines().rev().find_map(|l| super::fixtures::stats_figure(l, "longest gallery wait", " ms"));
        longest_gallery_wait_ms = match (longest_gallery_wait_ms, wait) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    // Every door's log up to its last event before stopping.
    let sent: HashMap<String, u64> = names
        .iter()
        .zip(&printed)
        .map(|(n, events)| (n.clone(), events.iter().filter_map(|e| e["seq"].as_u64()).max().unwrap_or(0)))
        .collect();
    let events_sent: u64 = sent.values().sum();
    let unique = |raw: &[Value]| -> HashSet<(String, u64)> {
        raw.iter().map(|e| (e["door"].as_str().unwrap_or_default().to_string(), e["seq"].as_u64().unwrap_or(0))).collect()
    };
    // Collected once nothing new arrives for two seconds (or 60 s at most).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = (0, Instant::now());
    loop {
        let got = unique(&raw.lock().unwrap_or_else(|p| p.into_inner())).len();
        if got != last.0 {
            last = (got, Instant::now());
        }
        let all = names.iter().all(|n| {
            let r = raw.lock().unwrap_or_else(|p| p.into_inner());
            (1..=sent[n]).all(|s| r.iter().any(|e| e["door"] == n.as_str() && e["seq"] == s))
        });
        if all || last.1.elapsed() > Duration::from_secs(2) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let raw = raw.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let collected = unique(&raw);
    let wanted = names.iter().map(|n| (1..=sent[n]).filter(|s| collected.contains(&(n.clone(), *s))).count() as u64).sum::<u64>();
    let events_s = events_started.elapsed().as_secs_f64();
    Ok(json!({
        "doors": args.doors,
        "people": args.people,
        "templates": args.templates,
        "messages": messages.len(),
        "published_s": published_s,
        "converged_s": converged_s,
        "broker_bytes": if args.kill_broker { bytes_before_kill + bytes_after } else { bytes_after.saturating_sub(bytes_before) },
        "events_sent": events_sent,
        "events_collected": wanted,
        "events_lost": events_sent - wanted,
        "events_duplicated": raw.len() - collected.len(),
        "events_per_s": collected.len() as f64 / events_s,
        "broker_restarted": args.restart_broker,
        "broker_killed_mid_sync": args.kill_broker,
        "messages_republished": repaired,
        "frame_loop_longest_gallery_wait_ms": longest_gallery_wait_ms,
    }))
}
