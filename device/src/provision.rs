//! The device's answers to provisioning requests. Gallery requests go to the
//! shared [`GalleryService`] (the same code as the host tool's offline mode);
//! here are the rest: status, log, settings, remote unlock, pairing, and
//! enrolment from the device's own camera.

use crate::config::{Config, LIVE_KEYS};
use crate::shared::{LoopCommand, Shared};
use facegate_face::enrol::capture_spread;
use facegate_protocol::message::{ModelId, NewPerson, Status, WireTemplate};
use facegate_protocol::server::{Handler, PairedHost, Pairings, SecurityEvent};
use facegate_protocol::{Request, Response, WireError, PROTOCOL_VERSION};
use facegate_provision::wire::{log_event, wire_error};
use facegate_provision::{Change, GalleryService, Handled};
use facegate_store::{EventKind, StoreError};
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Settings (by section) that decide who the door answers to: a paired host
/// changes them only in setup mode, at the device.
const AUTHORITY_KEYS: &[&str] = &["fleet.", "paths.", "serial."];

/// Events per `log` page fit one frame.
const PAGE_BYTES: usize = 3200;

/// The device's handler.
pub struct DeviceHandler {
    /// Shared with the loop.
    pub shared: Arc<Shared>,
    /// Gallery requests.
    pub gallery: GalleryService,
    /// Pairing file.
    pub pairing_path: PathBuf,
    /// Current settings.
    pub config: Config,
    /// The config file, if the device was started with one (settings persist there).
    pub config_path: Option<PathBuf>,
    /// To the frame loop.
    pub commands: Sender<LoopCommand>,
    /// Where a site's secrets go when the door joins one.
    pub fleet_secrets: PathBuf,
}

impl DeviceHandler {
    /// A handler over the device's state.
    pub fn new(
        shared: Arc<Shared>,
        pairing_path: PathBuf,
        config: Config,
        config_path: Option<PathBuf>,
        commands: Sender<LoopCommand>,
        fleet_secrets: PathBuf,
    ) -> Self {
        let gallery = GalleryService::new(shared.gallery.clone(), config.recognition.threshold());
        DeviceHandler { shared, gallery, pairing_path, config, config_path, commands, fleet_secrets }
    }

    /// Joins a site: checks everything first, then writes the secrets (0600)
    /// and the broker's CA, then turns the link on in the settings. The link
    /// starts with the next start of the door.
    fn fleet_join(&mut self, secrets: &str, broker: &str, ca_pem: &str) -> Result<Response, WireError> {
        let invalid = |e: facegate_site::SiteError| WireError::InvalidConfig(e.to_string());
        let parsed = facegate_site::DoorSecrets::from_toml(secrets).map_err(invalid)?;
        facegate_site::mqtt::host_port(broker).map_err(invalid)?;
        let ca_path = facegate_store::atomic::sibling(&self.fleet_secrets, ".ca.pem");
        if !ca_pem.is_empty() {
            facegate_store::atomic::replace(&ca_path, ca_pem.as_bytes(), false).map_err(wire_error)?;
            facegate_site::mqtt::tls(&ca_path.display().to_string()).map_err(invalid)?;
        }
        facegate_store::atomic::replace_private(&self.fleet_secrets, secrets.as_bytes()).map_err(wire_error)?;
        let ca_file = if ca_pem.is_empty() { String::new() } else { ca_path.display().to_string() };
        // One save: a power cut leaves the settings before or after the join, never a mix.
        let done = self.config_set_all(&[
            ("fleet.broker", &format!("{broker:?}")),
            ("fleet.ca_file", &format!("{ca_file:?}")),
            ("fleet.enabled", "true"),
        ])?;
        self.shared.events.named(EventKind::ConfigChanged, &format!("joined site {} as door {}", parsed.site, parsed.door));
        Ok(done)
    }

    fn log_changes(&self, changes: &[Change]) {
        for c in changes {
            self.shared.events.named(c.kind, &c.name);
        }
    }

    fn enroll_on_device(&self, name: String, frames: u8, timeout_ms: u32) -> Result<Response, WireError> {
        if !(1..=16).contains(&frames) {
            return Err(WireError::InvalidTemplate("capture 1–16 frames".into()));
        }
        if self.shared.gallery().by_name(&name).is_some() {
            return Err(WireError::AlreadyEnrolled(name));
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let timeout = Duration::from_millis(timeout_ms.clamp(1000, 120_000) as u64);
        self.commands
            .send(LoopCommand::Capture { frames: frames as usize, deadline: Instant::now() + timeout, reply: tx })
            .map_err(|_| WireError::Unavailable("the camera loop is not running".into()))?;
        let got = rx
            .recv_timeout(timeout + Duration::from_secs(5))
            .map_err(|_| WireError::NoFace("the camera loop did not answer".into()))?
            .map_err(|short| WireError::NoFace(short.to_string()))?;
        // Anyone may step into an unattended capture: every pair of frames must agree.
        let spread = capture_spread(&got);
        if spread > self.gallery.threshold {
            return Err(WireError::NoFace(format!("the frames show different faces (spread {spread:.2})")));
        }
        let model = self.shared.gallery().model_id();
        let person = NewPerson { name, templates: got.iter().map(WireTemplate::from_embedding).collect() };
        let (results, changes) = self.gallery.enroll(model, false, vec![person])?;
        self.log_changes(&changes);
        Ok(Response::Enrolled(results))
    }

    fn status(&self) -> Status {
        let g = self.shared.gallery();
        let r = &self.config.recognition;
        Status {
            software: env!("CARGO_PKG_VERSION").to_string(),
            protocol: PROTOCOL_VERSION,
            model: g.model_id().to_string(),
            people: g.people().len() as u32,
            templates: g.template_count() as u32,
            uptime_s: self.shared.started.elapsed().as_secs(),
            frames: self.shared.frame_count(),
            last_event: self.shared.events.last_seq(),
            paired_hosts: load_pairings(&self.pairing_path).map_or(0, |p| p.hosts.len() as u32),
            config: vec![
                ("recognition.threshold".into(), r.threshold().to_string()),
                ("recognition.frames".into(), format!("{} of {}", r.frames_agree, r.frames_window)),
                ("recognition.min_face".into(), r.min_face.to_string()),
                ("recognition.detector".into(), r.detector.kind().as_str().into()),
                ("recognition.precision".into(), r.precision.as_str().into()),
                ("lock.pulse_ms".into(), self.config.lock.pulse_ms.to_string()),
                ("lock.relay_pin".into(), self.config.lock.relay_pin.to_string()),
            ],
        }
    }

    fn log_read(&self, after: u64, since_ms: Option<i64>, max: u16) -> Result<Response, WireError> {
        let Some(log) = self.shared.events.log() else {
            return Ok(Response::Log { events: Vec::new(), more: false });
        };
        let all = log.events_since(after).map_err(wire_error)?;
        drop(log);
        let mut events = Vec::new();
        let mut bytes = 0;
        let mut rest = all.iter().filter(|e| since_ms.is_none_or(|t| e.time_ms >= t)).peekable();
        while let Some(e) = rest.next_if(|_| events.len() < max.max(1) as usize && bytes < PAGE_BYTES) {
            bytes += 48 + e.name.as_ref().map_or(0, String::len);
            events.push(log_event(e));
        }
        Ok(Response::Log { events, more: rest.peek().is_some() })
    }

    fn config_set(&mut self, key: &str, value: &str) -> Result<Response, WireError> {
        self.config_set_all(&[(key, value)])
    }

    /// Sets `settings` in order and saves them in one atomic replacement.
    fn config_set_all(&mut self, settings: &[(&str, &str)]) -> Result<Response, WireError> {
        let mut text = match &self.config_path {
            Some(p) => std::fs::read_to_string(p).unwrap_or_default(),
            None => toml::to_string(&self.config).map_err(|e| WireError::Internal(e.to_string()))?,
        };
        let mut next = self.config.clone();
        for (key, value) in settings {
            (next, text) = Config::with_setting(&text, key, value).map_err(|e| WireError::InvalidConfig(format!("{e:#}")))?;
        }
        let persisted = match &self.config_path {
            Some(p) => {
                facegate_store::atomic::replace(p, text.as_bytes(), true).map_err(wire_error)?;
                true
            }
            None => false,
        };
        let live = settings.iter().all(|(key, _)| LIVE_KEYS.contains(key));
        self.gallery.threshold = next.recognition.threshold();
        self.config = next.clone();
        if live {
            let _ = self.commands.send(LoopCommand::Settings(Box::new(next)));
        }
        for (key, _) in settings {
            self.shared.events.named(EventKind::ConfigChanged, key);
        }
        Ok(Response::ConfigSet { persisted, restart_needed: !live })
    }
}

impl Handler for DeviceHandler {
    fn software(&self) -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }

    fn model(&self) -> ModelId {
        self.shared.gallery().model_id()
    }

    fn save_pairings(&mut self, pairings: &Pairings) -> Result<(), WireError> {
        save_pairings(&self.pairing_path, pairings).map_err(wire_error)
    }

    /// Beyond joining a site (the server's own rule): settings that change
    /// who decides (the site link, the files the door trusts, the serial
    /// link), and on a site door every gallery write (its people are the site's).
    fn needs_setup_mode(&self, request: &Request) -> bool {
        match request {
            Request::ConfigSet { key, .. } => AUTHORITY_KEYS.iter().any(|section| key.starts_with(section)),
            Request::Enroll { .. }
            | Request::EnrollOnDevice { .. }
            | Request::Remove { .. }
            | Request::Rename { .. }
            | Request::RestoreBegin { .. }
            | Request::RestoreChunk { .. }
            | Request::RestoreCommit => self.config.fleet.enabled,
            _ => false,
        }
    }

    fn handle(&mut self, request: Request, host: &PairedHost) -> Result<Response, WireError> {
        let request = match self.gallery.handle(request) {
            Handled::Answered { reply, changes } => {
                self.log_changes(&changes);
                return reply;
            }
            Handled::NotGallery(request) => request,
        };
        match request {
            Request::Status => Ok(Response::Status(self.status())),
            Request::EnrollOnDevice { name, frames, timeout_ms } => self.enroll_on_device(name, frames, timeout_ms),
            Request::LogRead { after, since_ms, max } => self.log_read(after, since_ms, max),
            Request::LogClear => {
                if let Some(mut log) = self.shared.events.log() {
                    log.clear().map_err(wire_error)?;
                }
                self.shared.events.named(EventKind::LogCleared, &host.name);
                Ok(Response::Done)
            }
            Request::ConfigGet { key } => {
                let all = self.config.entries();
                match key {
                    None => Ok(Response::Config(all)),
                    Some(k) => match all.into_iter().find(|(name, _)| *name == k) {
                        Some(entry) => Ok(Response::Config(vec![entry])),
                        None => Err(WireError::InvalidConfig(format!("unknown setting {k:?}"))),
                    },
                }
            }
            Request::ConfigSet { key, value } => self.config_set(&key, &value),
            Request::FleetJoin { secrets, broker, ca_pem } => self.fleet_join(&secrets, &broker, &ca_pem),
            Request::Unlock => {
                self.commands
                    .send(LoopCommand::Unlock { by: host.name.clone() })
                    .map_err(|_| WireError::Unavailable("the door loop is not running".into()))?;
                Ok(Response::Done)
            }
            _ => Err(WireError::Internal("handled by the session".into())),
        }
    }

    fn security_event(&mut self, what: SecurityEvent, host_name: Option<&str>) {
        let (kind, name) = match &what {
            SecurityEvent::Paired => (EventKind::Paired, host_name.unwrap_or("?").to_string()),
            SecurityEvent::Unpaired => (EventKind::Unpaired, host_name.unwrap_or("?").to_string()),
            SecurityEvent::Refused(e) => {
                let why = match e {
                    WireError::BadMac => "bad-mac",
                    WireError::Replay { .. } => "replay",
                    WireError::NotPaired => "not-paired",
                    WireError::NotInSetupMode => "pair-outside-setup",
                    _ => "refused",
                };
                (EventKind::Refused, format!("{why} {}", host_name.unwrap_or("")).trim().to_string())
            }
        };
        self.shared.events.named(kind, &name);
    }
}

/// Loads the pairing file (`None` when absent or damaged).
pub fn load_pairings(path: &std::path::Path) -> Option<Pairings> {
    std::fs::read(path).ok().and_then(|b| Pairings::from_bytes(&b))
}

/// Saves the pairing file atomically with owner-only permissions.
pub fn save_pairings(path: &std::path::Path, pairings: &Pairings) -> Result<(), StoreError> {
    facegate_store::atomic::replace_private(path, &pairings.to_bytes())
}

/// Loads the pairing file, or makes a new identity; a damaged file is an error
/// (refusing to start beats silently unpairing every host).
pub fn open_pairings(path: &std::path::Path) -> anyhow::Result<Pairings> {
    if !path.exists() {
        let p = Pairings::new_random();
        save_pairings(path, &p)?;
        return Ok(p);
    }
    load_pairings(path).ok_or_else(|| {
        anyhow::anyhow!("{} is damaged; `device unpair --all` makes a new one (hosts must pair again)", path.display())
    })
}
