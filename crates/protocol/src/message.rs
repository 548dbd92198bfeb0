//! What travels inside a frame: envelopes, requests, responses, typed errors.
//!
//! Everything is encoded with postcard. Enums are append-only: a new request
//! gets a new variant at the end, so an older device answers
//! [`WireError::UnknownRequest`] instead of misreading it.

pub use facegate_core::ModelId;
use facegate_core::{quantize_i8, Embedding, EMBEDDING_DIM};
use serde::{Deserialize, Serialize};

/// A host's identity (random, made once per laptop).
pub type HostId = [u8; 16];
/// A device's identity (random, made on its first start).
pub type DeviceId = [u8; 16];

/// Proof that a request comes from a paired host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auth {
    /// Which paired host.
    pub host: HostId,
    /// Must exceed every counter the device accepted from this host before.
    pub counter: u64,
    /// HMAC-SHA256 (made and checked by the `auth` module).
    pub mac: [u8; 32],
}

/// Host → device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestFrame {
    /// Protocol version (first, so any version can read it).
    pub version: u16,
    /// Echoed in the response.
    pub id: u32,
    /// Absent only for [`Request::Hello`] and [`Request::Pair`].
    pub auth: Option<Auth>,
    /// postcard-encoded [`Request`]; the MAC covers these exact bytes.
    pub body: Vec<u8>,
}

/// Device → host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseFrame {
    /// The device's protocol version.
    pub version: u16,
    /// The request's id (0 when the request could not be read).
    pub id: u32,
    /// HMAC over the response, bound to the request's counter (authenticated requests only).
    pub mac: Option<[u8; 32]>,
    /// postcard-encoded `Result<Response, WireError>`.
    pub body: Vec<u8>,
}

/// A face template on the wire: int8 values and their step, a quarter of the
/// f32 size (bulk enrolment must fit a 115,200 baud line). The rounding moves a
/// distance by about 1e-3, a fifth of what the int8 model itself moves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireTemplate {
    /// Quantisation step (`value = q × step`), as f32 bits.
    pub step: u32,
    /// The values, [`EMBEDDING_DIM`] of them.
    pub q: Vec<i8>,
}

impl WireTemplate {
    /// Quantises an embedding.
    pub fn from_embedding(e: &Embedding) -> Self {
        let mut q = vec![0i8; EMBEDDING_DIM];
        let step = quantize_i8(e, &mut q);
        WireTemplate { step: step.to_bits(), q }
    }

    /// The embedding, after checking the shape and range.
    pub fn to_embedding(&self) -> Result<Embedding, WireError> {
        let step = f32::from_bits(self.step);
        if self.q.len() != EMBEDDING_DIM {
            return Err(WireError::InvalidTemplate(format!("{} values, expected {EMBEDDING_DIM}", self.q.len())));
        }
        // Descriptors have components well below 1; a step outside this range is not one.
        if !(step.is_finite() && step > 0.0 && step < 0.1) {
            return Err(WireError::InvalidTemplate(format!("step {step} is not a descriptor's")));
        }
        Ok(std::array::from_fn(|i| self.q[i] as f32 * step))
    }
}

/// One person to enrol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewPerson {
    /// Unique display name.
    pub name: String,
    /// 1–16 templates.
    pub templates: Vec<WireTemplate>,
}

/// Host → device requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Version handshake (unauthenticated): who are you, am I paired?
    Hello {
        /// The asking host.
        host: HostId,
    },
    /// Pair this host (unauthenticated, setup mode only).
    Pair {
        /// The host's id.
        host: HostId,
        /// A name for logs (e.g. the laptop's user and hostname).
        name: String,
    },
    /// Forget this host's pairing.
    Unpair,
    /// Versions, model, gallery size, uptime, settings summary.
    Status,
    /// A page of the enrolled people, from index `start`.
    People {
        /// Index of the first person.
        start: u32,
    },
    /// Enrol people (several per frame for bulk enrolment).
    Enroll {
        /// Model the templates were made with.
        model: ModelId,
        /// Add the templates to people already enrolled instead of refusing the name.
        add: bool,
        /// The people.
        people: Vec<NewPerson>,
    },
    /// The device captures `frames` face frames from its camera and enrols them.
    EnrollOnDevice {
        /// Name to enrol.
        name: String,
        /// Frames to capture (1–16).
        frames: u8,
        /// Give up after this long without enough faces.
        timeout_ms: u32,
    },
    /// Remove a person.
    Remove {
        /// Their name.
        name: String,
    },
    /// Rename a person.
    Rename {
        /// Current name.
        from: String,
        /// New name.
        to: String,
    },
    /// 1:1: is this probe the named person?
    Verify {
        /// Claimed person.
        name: String,
        /// Model of the probe.
        model: ModelId,
        /// The probe.
        probe: WireTemplate,
    },
    /// 1:K: who is this?
    Identify {
        /// Model of the probe.
        model: ModelId,
        /// The probe.
        probe: WireTemplate,
    },
    /// Events after sequence number `after`.
    LogRead {
        /// Last sequence number already seen (0: from the start).
        after: u64,
        /// Only events at or after this time (ms since the epoch).
        since_ms: Option<i64>,
        /// At most this many.
        max: u16,
    },
    /// Erase the access log.
    LogClear,
    /// Settings as `key = value` lines (one key, or all).
    ConfigGet {
        /// `section.key`, or all.
        key: Option<String>,
    },
    /// Change a setting; the device validates it.
    ConfigSet {
        /// `section.key`.
        key: String,
        /// TOML value (`0.5`, `true`, `"int8"`; bare words are taken as strings).
        value: String,
    },
    /// Snapshot the gallery for download.
    BackupBegin,
    /// A piece of the snapshot.
    BackupChunk {
        /// Byte offset.
        offset: u64,
        /// Bytes wanted (≤ [`crate::CHUNK`]).
        len: u32,
    },
    /// Start (or resume) uploading a gallery file.
    RestoreBegin {
        /// Its size.
        len: u64,
        /// Its sha256.
        sha256: [u8; 32],
    },
    /// A piece of the upload.
    RestoreChunk {
        /// Byte offset (must equal what the device has).
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Check the upload and replace the gallery with it atomically.
    RestoreCommit,
    /// Unlock the door for one pulse (logged).
    Unlock,
    /// Join a site (setup mode only, so someone stands at the door): the
    /// site's keys and this door's broker login never cross a network.
    FleetJoin {
        /// The door's site secrets as TOML (`facegate_site::DoorSecrets`).
        secrets: String,
        /// The broker, `mqtts://host:port`.
        broker: String,
        /// PEM of the broker's CA (empty: the door trusts its system's roots).
        ca_pem: String,
    },
}

/// Number of [`Request`] variants this build knows.
pub const REQUEST_KINDS: u32 = 22;

/// The device's answer to [`Request::Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceHello {
    /// Device identity (host keys are stored per device).
    pub device: DeviceId,
    /// The device program's version.
    pub software: String,
    /// Model id of the device's gallery.
    pub model: ModelId,
    /// Whether the asking host is paired.
    pub paired: bool,
    /// The counter the next authenticated request must exceed.
    pub counter_floor: u64,
    /// Pairing is open.
    pub setup_mode: bool,
}

/// Device status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The device program's version.
    pub software: String,
    /// Protocol version.
    pub protocol: u16,
    /// Embedding model id (hex).
    pub model: String,
    /// Enrolled people.
    pub people: u32,
    /// Templates.
    pub templates: u32,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Frames processed.
    pub frames: u64,
    /// Events in the log (latest sequence number).
    pub last_event: u64,
    /// Paired hosts.
    pub paired_hosts: u32,
    /// A few settings, `key = value`.
    pub config: Vec<(String, String)>,
}

/// One enrolled person, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonInfo {
    /// Gallery id.
    pub id: u32,
    /// Name.
    pub name: String,
    /// Number of templates.
    pub templates: u8,
    /// Enrolment time, seconds since the epoch.
    pub created: u64,
}

/// What happened to one person of an [`Request::Enroll`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollResult {
    /// The person's name.
    pub name: String,
    /// Their id, or why they were refused.
    pub outcome: Result<u32, WireError>,
    /// Already enrolled with exactly these templates (a retry): nothing changed.
    pub unchanged: bool,
    /// Someone else enrolled whom these templates resemble, and how closely.
    pub similar: Option<(String, f32)>,
}

/// Answer to verify and identify.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchReply {
    /// The named (verify) or nearest (identify) person; `None` with an empty gallery.
    pub name: Option<String>,
    /// Their distance.
    pub distance: f32,
    /// Below the device's threshold.
    pub accepted: bool,
    /// The device's threshold.
    pub threshold: f32,
}

/// One access-log event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEvent {
    /// Sequence number.
    pub seq: u64,
    /// ms since the epoch.
    pub time_ms: i64,
    /// `facegate_store::EventKind` code.
    pub kind: u8,
    /// Person id.
    pub person: Option<u32>,
    /// Name (person or host).
    pub name: Option<String>,
    /// Face distance.
    pub distance: Option<f32>,
    /// Frames behind a decision.
    pub frames: u16,
    /// Fused live score of those frames, when liveness ran (since version 2).
    pub live: Option<f32>,
}

/// Device → host responses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// To Hello.
    Hello(DeviceHello),
    /// To Pair: the shared secret (only ever sent in setup mode).
    Paired {
        /// Device identity.
        device: DeviceId,
        /// The secret.
        secret: [u8; 32],
    },
    /// Done, nothing to report.
    Done,
    /// To Status.
    Status(Status),
    /// To People.
    People {
        /// This page.
        people: Vec<PersonInfo>,
        /// Total enrolled.
        total: u32,
    },
    /// To Enroll / EnrollOnDevice.
    Enrolled(Vec<EnrollResult>),
    /// To Verify / Identify.
    Match(MatchReply),
    /// To LogRead.
    Log {
        /// Events, oldest first.
        events: Vec<LogEvent>,
        /// More are waiting.
        more: bool,
    },
    /// To ConfigGet: `key = value` lines.
    Config(Vec<(String, String)>),
    /// To ConfigSet.
    ConfigSet {
        /// Written to the device's config file.
        persisted: bool,
        /// Takes effect only after a restart (camera, lock pins, paths).
        restart_needed: bool,
    },
    /// To BackupBegin.
    Backup {
        /// Snapshot size.
        len: u64,
        /// Its sha256.
        sha256: [u8; 32],
    },
    /// To BackupChunk.
    Chunk(Vec<u8>),
    /// To RestoreBegin and RestoreChunk: bytes the device holds (resume from there).
    RestoreAt(u64),
    /// To RestoreCommit.
    Restored {
        /// People in the restored gallery.
        people: u32,
    },
}

/// Errors on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum WireError {
    /// The frame arrived damaged or could not be read.
    #[error("the device could not read the request: {0}")]
    Malformed(String),
    /// The device does not know this request (older software).
    #[error("the device does not know this request")]
    UnknownRequest,
    /// Protocol versions differ.
    #[error("protocol version mismatch: device speaks {device}, host speaks {host}")]
    VersionMismatch {
        /// The device's version.
        device: u16,
        /// The host's version.
        host: u16,
    },
    /// This host is not paired with the device.
    #[error("this host is not paired with the device")]
    NotPaired,
    /// The MAC does not match: wrong key, or a forged request.
    #[error("authentication failed (bad MAC)")]
    BadMac,
    /// The counter did not increase: a replayed or stale request.
    #[error("replayed request (counter {counter} ≤ {floor})")]
    Replay {
        /// The request's counter.
        counter: u64,
        /// The last accepted counter.
        floor: u64,
    },
    /// Pairing needs setup mode.
    #[error("the device is not in setup mode")]
    NotInSetupMode,
    /// The device is doing something else that conflicts.
    #[error("the device is busy: {0}")]
    Busy(String),
    /// No space left on the device's storage; nothing was changed.
    #[error("the device's storage is full; nothing was changed")]
    StorageFull,
    /// Templates of another model.
    #[error("templates are from model {host}, the device uses model {device}")]
    ModelMismatch {
        /// The device's model (hex).
        device: String,
        /// The templates' model (hex).
        host: String,
    },
    /// A template is malformed.
    #[error("invalid template: {0}")]
    InvalidTemplate(String),
    /// A name is empty, too long, or has control characters.
    #[error("invalid name: {0}")]
    InvalidName(String),
    /// Nobody of that name.
    #[error("no one named {0:?} is enrolled")]
    NotFound(String),
    /// The name is taken.
    #[error("{0:?} is already enrolled")]
    AlreadyEnrolled(String),
    /// The gallery is full.
    #[error("the gallery is full")]
    GalleryFull,
    /// A setting was refused.
    #[error("invalid setting: {0}")]
    InvalidConfig(String),
    /// A transfer was out of step (wrong offset, no transfer started).
    #[error("transfer out of step: {0}")]
    Transfer(String),
    /// A restored file failed its checks.
    #[error("the uploaded file was refused: {0}")]
    BadBackup(String),
    /// The device saw no usable face in time.
    #[error("no usable face: {0}")]
    NoFace(String),
    /// The request is not possible in this mode (e.g. no camera in offline mode).
    #[error("not available: {0}")]
    Unavailable(String),
    /// Anything else; the device stays locked.
    #[error("device error: {0}")]
    Internal(String),
}

impl WireError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self {
            WireError::Malformed(_) => "line noise or a baud-rate mismatch: check --baud and the cable",
            WireError::UnknownRequest => "update the device software to match this host-tool",
            WireError::VersionMismatch { .. } => "install matching versions of device and host-tool",
            WireError::NotPaired => "pair first: start the device in setup mode (`device run --setup` or hold the setup button at boot), then `host-tool pair`",
            WireError::BadMac => "the stored key does not match the device's: run `host-tool pair` again in setup mode",
            WireError::Replay { .. } => "another program may be using this pairing; retry",
            WireError::NotInSetupMode => "restart the device with `--setup`, or hold the setup button while it boots",
            WireError::StorageFull => "free space on the device (old logs, backups), then retry",
            WireError::ModelMismatch { .. } => "use the host-tool whose models match the device (`host-tool status` shows the device's model)",
            WireError::NotFound(_) => "`host-tool people` lists who is enrolled",
            WireError::AlreadyEnrolled(_) => "choose another name, `--add` to add photos, or `remove` first",
            WireError::BadBackup(_) => "the device kept its gallery; check the file with `host-tool people --gallery FILE`",
            WireError::NoFace(_) => "stand about a metre in front of the camera, facing it, in good light",
            _ => return None,
        })
    }
}

/// Encodes a value (in-memory postcard cannot fail for these types).
pub fn to_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("postcard encoding of protocol types")
}

/// Reads a request body: [`WireError::UnknownRequest`] for variants this build
/// does not know, [`WireError::Malformed`] for anything else that does not parse.
pub fn decode_request(body: &[u8]) -> Result<Request, WireError> {
    let (tag, _) = postcard::take_from_bytes::<u32>(body).map_err(|e| WireError::Malformed(e.to_string()))?;
    if tag >= REQUEST_KINDS {
        return Err(WireError::UnknownRequest);
    }
    match postcard::from_bytes::<Request>(body) {
        Ok(r) => Ok(r),
        Err(e) => Err(WireError::Malformed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_tags_are_counted_right() {
        let last = to_bytes(&Request::FleetJoin { secrets: String::new(), broker: String::new(), ca_pem: String::new() });
        assert_eq!(last, vec![(REQUEST_KINDS - 1) as u8, 0, 0, 0], "REQUEST_KINDS must follow the enum");
        assert_eq!(decode_request(&[REQUEST_KINDS as u8]), Err(WireError::UnknownRequest));
        assert!(matches!(decode_request(&[5, 200]), Err(WireError::Malformed(_))));
        assert!(matches!(decode_request(&[]), Err(WireError::Malformed(_))));
    }

    #[test]
    fn templates_survive_the_wire_within_a_thousandth() {
        use facegate_core::distance;
        let e: Embedding = std::array::from_fn(|i| ((i as f32 * 1.7).sin()) * 0.12);
        let back = WireTemplate::from_embedding(&e).to_embedding().unwrap();
        // The error vector is ~step·√(128/12) long but nearly orthogonal to any
        // difference between faces, so distances move far less.
        assert!(distance(&e, &back) < 5e-3);
        for k in 1..20 {
            let other: Embedding = std::array::from_fn(|i| ((i as f32 * 0.9 + k as f32).cos()) * 0.05 + e[i]);
            let moved = (distance(&other, &back) - distance(&other, &e)).abs();
            assert!(moved < 1e-3, "{moved}");
        }
        let mut bad = WireTemplate::from_embedding(&e);
        bad.q.pop();
        assert!(bad.to_embedding().is_err());
        bad = WireTemplate { step: f32::NAN.to_bits(), q: vec![0; EMBEDDING_DIM] };
        assert!(bad.to_embedding().is_err());
    }
}
