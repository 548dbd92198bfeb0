//! Doors of a site on this machine: `device` processes on looping replays
//! with simulated locks, following a [`Broker`], their JSON events collected.

use crate::broker::Broker;
use serde_json::Value;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a door started by [`RunningDoor::start`] runs its replay.
#[derive(Debug, Clone, Copy)]
pub struct DoorReplay {
    /// Frames per second of the replay.
    pub fps: u32,
    /// The embedding network ("sface" or "dlib"); `None`: the device's default.
    pub network: Option<&'static str>,
}

/// A running door and the JSON events it printed so far.
pub struct RunningDoor {
    child: Child,
    /// Every JSON event it printed so far.
    pub events: Arc<Mutex<Vec<Value>>>,
    stderr: std::path::PathBuf,
}

impl RunningDoor {
    /// Starts the `device` program in `dir` (which holds the door's
    /// `fleet.toml` secrets) with the models of `models`, on a looping replay
    /// of `approach` as `replay` says, following `broker`, with `extra`
    /// arguments to `device run` (e.g. `--stats`, `--clock-start T`).
    pub fn start(
        device: &Path,
        models: &Path,
        dir: &Path,
        broker: &Broker,
        approach: &Path,
        replay: DoorReplay,
        extra: &[&str],
    ) -> RunningDoor {
        let DoorReplay { fps, network } = replay;
        let d = dir.display();
        let network = network.map(|n| format!("network = \"{n}\"\n")).unwrap_or_default();
        let config = format!(
            "[camera]\nfps = {fps}\n[recognition]\n{network}cooldown_ms = 1500\n[liveness]\nmode = \"off\"\n\
             [fleet]\nenabled = true\nbroker = \"{}\"\nca_file = \"{}\"\nkeep_alive_s = 5\n\
             [paths]\nmodels = \"{}\"\ngallery = \"{d}/gallery.fg\"\nlog = \"{d}/access.log\"\npairing = \"{d}/pairing.fg\"\n\
             fleet_secrets = \"{d}/fleet.toml\"\nsite = \"{d}/site.fgsite\"\n",
            broker.url(),
            broker.ca.display(),
            models.display()
        );
        std::fs::write(dir.join("facegate.toml"), config).unwrap();
        Self::start_with_config(device, &dir.join("facegate.toml"), approach, extra)
    }

    /// Starts the `device` program with the config file `config` (and `extra`
    /// arguments) on a looping replay of `approach`; its stderr goes beside the config.
    pub fn start_with_config(device: &Path, config: &Path, approach: &Path, extra: &[&str]) -> RunningDoor {
        let stderr = config.with_extension("stderr.log");
        let mut child = Command::new(device)
            .args(["run", "--lock", "sim", "--events-json", "--replay-loop", "--config"])
            .arg(config)
            .arg("--source")
            .arg(format!("replay:{}", approach.display()))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let (out, sink) = (child.stdout.take().unwrap(), events.clone());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = line.parse::<Value>() {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        RunningDoor { child, events, stderr }
    }

    /// Waits up to `secs` for an event with `kind` (and `person`, if given).
    pub fn wait_for(&self, kind: &str, person: Option<&str>, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let found = self
                .events
                .lock()
                .unwrap()
                .iter()
                .find(|e| e["kind"] == kind && person.is_none_or(|p| e["person"] == p))
                .cloned();
            if let Some(e) = found {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no {kind} event within {secs} s; events: {:?}\nstderr: {}",
                self.events.lock().unwrap(),
                std::fs::read_to_string(&self.stderr).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// What it wrote on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// How many events of `kind` it printed.
    pub fn kinds(&self, kind: &str) -> usize {
        self.events.lock().unwrap().iter().filter(|e| e["kind"] == kind).count()
    }

    /// SIGTERM, as systemd stops the unit; the door says offline on its way
    /// out. Returns all it wrote on stderr (with `--stats`, its loop figures).
    pub fn stop(mut self) -> String {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
        self.stderr()
    }
}

impl Drop for RunningDoor {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Everything published on `filter` from now on, collected in the background.
pub fn collect(broker: &Broker, user: &str, password: &str, filter: &str) -> Arc<Mutex<Vec<(String, Value)>>> {
    let (client, mut connection) = broker.client(&format!("collector-{filter}"), user, password);
    client.subscribe(filter, rumqttc::QoS::AtLeastOnce).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let filter = filter.to_string();
    std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                // Reconnected after a broker restart: a clean session subscribes again.
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack))) if !ack.session_present => {
                    let _ = client.try_subscribe(filter.clone(), rumqttc::QoS::AtLeastOnce);
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    if let Ok(v) = serde_json::from_slice::<Value>(&p.payload) {
                        sink.lock().unwrap().push((p.topic.clone(), v));
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
                _ => {}
            }
        }
    });
    seen
}

/// Waits until `done`, failing the test after `secs`.
pub fn wait_until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(100));
    }
}
