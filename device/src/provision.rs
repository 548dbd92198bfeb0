//! The device's answers to provisioning requests: gallery changes, log, settings,
//! backup and restore, remote unlock, enrolment from the device's own camera.
//!
//! Every change is made on a copy, saved atomically, and only then swapped in:
//! a full disk or a power cut leaves the previous state, on disk and in memory.

use crate::config::{Config, LIVE_KEYS};
use crate::lock::now_ms;
use crate::shared::{LoopCommand, Shared};
use facegate_protocol::message::{model_from_hex, ModelId, NewPerson, Status};
use facegate_protocol::ops::{check_model, enroll_into, identify, log_event, people_page, verify, wire_error};
use facegate_protocol::server::{Handler, PairedHost, Pairings, SecurityEvent};
use facegate_protocol::{Request, Response, WireError, CHUNK, PROTOCOL_VERSION};
use facegate_store::{Event, EventKind, Gallery, StoreError};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest gallery file a restore accepts.
const MAX_RESTORE: u64 = 1 << 30;
/// Events per `log` page fit one frame.
const PAGE_BYTES: usize = 3200;

/// The device's handler.
pub struct DeviceHandler {
    /// Shared with the loop.
    pub shared: Arc<Shared>,
    /// Gallery file.
    pub gallery_path: PathBuf,
    /// Pairing file.
    pub pairing_path: PathBuf,
    /// Current settings.
    pub config: Config,
    /// The config file, if the device was started with one (settings persist there).
    pub config_path: Option<PathBuf>,
    /// To the frame loop.
    pub commands: Sender<LoopCommand>,
    /// The device has a camera loop that can capture (false in offline tools).
    pub can_capture: bool,
    backup: Option<Vec<u8>>,
    restore: Option<(u64, [u8; 32], Vec<u8>)>,
}

impl DeviceHandler {
    /// A handler over the device's state.
    pub fn new(
        shared: Arc<Shared>,
        gallery_path: PathBuf,
        pairing_path: PathBuf,
        config: Config,
        config_path: Option<PathBuf>,
        commands: Sender<LoopCommand>,
    ) -> Self {
        DeviceHandler {
            shared,
            gallery_path,
            pairing_path,
            config,
            config_path,
            commands,
            can_capture: true,
            backup: None,
            restore: None,
        }
    }

    fn threshold(&self) -> f32 {
        self.config.recognition.threshold
    }

    fn event(&self, kind: EventKind, name: &str) {
        let mut e = Event::new(kind, now_ms());
        e.name = Some(name.to_string());
        self.shared.emit(&e);
    }

    /// Copy, change, save, swap: the change is all or nothing, on disk and in memory.
    fn change<T>(&self, f: impl FnOnce(&mut Gallery) -> Result<T, WireError>) -> Result<T, WireError> {
        let mut next = self.shared.gallery().clone();
        let out = f(&mut next)?;
        next.save(&self.gallery_path).map_err(wire_error)?;
        self.shared.set_gallery(next);
        Ok(out)
    }

    fn enroll(&self, model: ModelId, add: bool, people: Vec<NewPerson>) -> Result<Response, WireError> {
        check_model(&self.shared.gallery(), &model)?;
        let threshold = self.threshold();
        let results = self.change(|g| Ok(enroll_into(g, add, people, threshold)))?;
        for r in results.iter().filter(|r| r.outcome.is_ok() && !r.unchanged) {
            self.event(EventKind::Enrolled, &r.name);
        }
        Ok(Response::Enrolled(results))
    }

    fn enroll_on_device(&self, name: String, frames: u8, timeout_ms: u32) -> Result<Response, WireError> {
        if !self.can_capture {
            return Err(WireError::Unavailable("no camera".into()));
        }
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
            .map_err(|_| WireError::NoFace("the camera loop did not answer".into()))?;
        if got.len() < frames as usize {
            return Err(WireError::NoFace(format!("saw {} of {frames} frames with exactly one face", got.len())));
        }
        // All captured frames must show one person: a passer-by must not be enrolled.
        let spread =
            got.iter().flat_map(|a| got.iter().map(move |b| facegate_face::matching::distance(a, b))).fold(0f32, f32::max);
        if spread > self.threshold() {
            return Err(WireError::NoFace(format!("the frames show different faces (spread {spread:.2})")));
        }
        let model = model_from_hex(self.shared.gallery().model_id()).unwrap_or([0; 32]);
        let person =
            NewPerson { name, templates: got.iter().map(facegate_protocol::message::WireTemplate::from_embedding).collect() };
        self.enroll(model, false, vec![person])
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
            last_event: self.shared.log.as_ref().map_or(0, |l| l.lock().unwrap_or_else(|p| p.into_inner()).last_seq()),
            paired_hosts: 0,
            config: vec![
                ("recognition.threshold".into(), r.threshold.to_string()),
                ("recognition.frames".into(), format!("{} of {}", r.frames_agree, r.frames_window)),
                ("recognition.min_face".into(), r.min_face.to_string()),
                ("recognition.precision".into(), r.precision.clone()),
                ("lock.pulse_ms".into(), self.config.lock.pulse_ms.to_string()),
                ("lock.relay_pin".into(), self.config.lock.relay_pin.to_string()),
            ],
        }
    }

    fn log_read(&self, after: u64, since_ms: Option<i64>, max: u16) -> Result<Response, WireError> {
        let Some(log) = &self.shared.log else {
            return Ok(Response::Log { events: Vec::new(), more: false });
        };
        let all = log.lock().unwrap_or_else(|p| p.into_inner()).events_since(after).map_err(wire_error)?;
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
        let text = match &self.config_path {
            Some(p) => std::fs::read_to_string(p).unwrap_or_default(),
            None => toml::to_string(&self.config).map_err(|e| WireError::Internal(e.to_string()))?,
        };
        let (next, text) = Config::with_setting(&text, key, value).map_err(|e| WireError::InvalidConfig(format!("{e:#}")))?;
        let persisted = match &self.config_path {
            Some(p) => {
                facegate_store::atomic::replace(p, text.as_bytes(), true).map_err(wire_error)?;
                true
            }
            None => false,
        };
        let live = LIVE_KEYS.contains(&key);
        self.config = next.clone();
        if live {
            let _ = self.commands.send(LoopCommand::Settings(Box::new(next)));
        }
        self.event(EventKind::ConfigChanged, key);
        Ok(Response::ConfigSet { persisted, restart_needed: !live })
    }

    fn restore_commit(&mut self) -> Result<Response, WireError> {
        let Some((len, sha, data)) = self.restore.take() else {
            return Err(WireError::Transfer("no upload in progress".into()));
        };
        if data.len() as u64 != len {
            let have = data.len();
            self.restore = Some((len, sha, data));
            return Err(WireError::Transfer(format!("have {have} of {len} bytes")));
        }
        if <[u8; 32]>::from(Sha256::digest(&data)) != sha {
            return Err(WireError::BadBackup("sha256 mismatch".into()));
        }
        let g = Gallery::from_bytes(&data, &self.gallery_path).map_err(|e| WireError::BadBackup(e.to_string()))?;
        let current = self.shared.gallery().model_id().to_string();
        if g.model_id() != current {
            return Err(WireError::ModelMismatch { device: current, host: g.model_id().to_string() });
        }
        facegate_store::atomic::replace(&self.gallery_path, &data, true).map_err(wire_error)?;
        let people = g.people().len() as u32;
        self.shared.set_gallery(g);
        self.event(EventKind::Restored, &format!("{people} people"));
        Ok(Response::Restored { people })
    }
}

impl Handler for DeviceHandler {
    fn software(&self) -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }

    fn model(&self) -> ModelId {
        model_from_hex(self.shared.gallery().model_id()).unwrap_or([0; 32])
    }

    fn save_pairings(&mut self, pairings: &Pairings) -> Result<(), WireError> {
        save_pairings(&self.pairing_path, pairings).map_err(wire_error)
    }

    fn handle(&mut self, request: Request, host: &PairedHost) -> Result<Response, WireError> {
        let threshold = self.threshold();
        match request {
            Request::Status => {
                let mut s = self.status();
                s.paired_hosts = load_pairings(&self.pairing_path).map_or(0, |p| p.hosts.len() as u32);
                Ok(Response::Status(s))
            }
            Request::People { start } => Ok(people_page(&self.shared.gallery(), start)),
            Request::Enroll { model, add, people } => self.enroll(model, add, people),
            Request::EnrollOnDevice { name, frames, timeout_ms } => self.enroll_on_device(name, frames, timeout_ms),
            Request::Remove { name } => {
                self.change(|g| g.remove(&name).map_err(wire_error))?;
                self.event(EventKind::Removed, &name);
                Ok(Response::Done)
            }
            Request::Rename { from, to } => {
                self.change(|g| g.rename(&from, &to).map_err(wire_error))?;
                self.event(EventKind::Renamed, &to);
                Ok(Response::Done)
            }
            Request::Verify { name, model, probe } => {
                let g = self.shared.gallery();
                check_model(&g, &model)?;
                Ok(Response::Match(verify(&g, &name, &probe.to_embedding()?, threshold)?))
            }
            Request::Identify { model, probe } => {
                let g = self.shared.gallery();
                check_model(&g, &model)?;
                Ok(Response::Match(identify(&g, &probe.to_embedding()?, threshold)))
            }
            Request::LogRead { after, since_ms, max } => self.log_read(after, since_ms, max),
            Request::LogClear => {
                if let Some(log) = &self.shared.log {
                    log.lock().unwrap_or_else(|p| p.into_inner()).clear().map_err(wire_error)?;
                }
                self.event(EventKind::LogCleared, &host.name);
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
            Request::BackupBegin => {
                let bytes = self.shared.gallery().to_bytes();
                let sha: [u8; 32] = Sha256::digest(&bytes).into();
                let len = bytes.len() as u64;
                self.backup = Some(bytes);
                Ok(Response::Backup { len, sha256: sha })
            }
            Request::BackupChunk { offset, len } => {
                let b = self.backup.as_ref().ok_or_else(|| WireError::Transfer("no backup in progress".into()))?;
                let start = usize::try_from(offset)
                    .ok()
                    .filter(|s| *s <= b.len())
                    .ok_or_else(|| WireError::Transfer("offset past the end".into()))?;
                let end = (start + (len as usize).min(CHUNK)).min(b.len());
                Ok(Response::Chunk(b[start..end].to_vec()))
            }
            Request::RestoreBegin { len, sha256 } => {
                if len > MAX_RESTORE {
                    return Err(WireError::BadBackup(format!("{len} bytes is larger than any gallery")));
                }
                match &self.restore {
                    Some((l, s, data)) if *l == len && *s == sha256 => Ok(Response::RestoreAt(data.len() as u64)),
                    _ => {
                        self.restore = Some((len, sha256, Vec::new()));
                        Ok(Response::RestoreAt(0))
                    }
                }
            }
            Request::RestoreChunk { offset, data } => {
                let (len, _, have) = self.restore.as_mut().ok_or_else(|| WireError::Transfer("no upload in progress".into()))?;
                if offset != have.len() as u64 {
                    return Err(WireError::Transfer(format!("expected offset {}, got {offset}", have.len())));
                }
                if have.len() as u64 + data.len() as u64 > *len {
                    return Err(WireError::Transfer("more data than announced".into()));
                }
                have.extend_from_slice(&data);
                Ok(Response::RestoreAt(have.len() as u64))
            }
            Request::RestoreCommit => self.restore_commit(),
            Request::Unlock => {
                self.commands
                    .send(LoopCommand::Unlock { by: host.name.clone() })
                    .map_err(|_| WireError::Unavailable("the door loop is not running".into()))?;
                Ok(Response::Done)
            }
            Request::Hello { .. } | Request::Pair { .. } | Request::Unpair => {
                Err(WireError::Internal("handled by the session".into()))
            }
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
        self.event(kind, &name);
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
