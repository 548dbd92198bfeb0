//! What a door says about itself (`doors/<door>/status`, retained) and what
//! the administrator's tool takes from it. A status is written by a door's
//! login, so the tool reads it as untrusted input: bounded in size, every
//! number and text in range, or refused whole.

use crate::SiteError;
use serde::{Deserialize, Serialize};

/// The largest status taken (a real one is about 400 bytes).
pub const MAX_STATUS_BYTES: usize = 4096;

/// The largest sequence number taken: JSON numbers stay exact below 2^53, and
/// a door writing a million events a day would need 25,000 years to get there.
pub const MAX_SEQ: u64 = 1 << 53;

/// A version the door holds the manifest of, but not every record yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    /// The version announced.
    pub version: u64,
    /// How many of its records the door still lacks.
    pub missing: u64,
}

/// A door's status. Every field but `online` may be missing (the broker's
/// last will says only `{"door", "online": false}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DoorStatus {
    /// The door's name, as it says (the topic's door is the one that counts).
    pub door: String,
    /// Connected to the broker.
    pub online: bool,
    /// The site version applied.
    pub version: u64,
    /// The digest (hex) of the manifest applied: two copies of the site at
    /// one version number differ here.
    pub manifest: Option<String>,
    /// A newer version being received.
    pub pending: Option<Pending>,
    /// People in the gallery.
    pub people: u64,
    /// People of the site this door admits but cannot recognise: they have
    /// no templates of its network.
    pub without_templates: u64,
    /// Templates in the gallery.
    pub templates: u64,
    /// The embedding model (hex id).
    pub model: String,
    /// Free bytes where the gallery is.
    pub free_bytes: u64,
    /// The oldest event its log holds.
    pub events_first: u64,
    /// The newest event its log holds.
    pub events_last: u64,
    /// Every event up to here was delivered.
    pub events_delivered: u64,
    /// Events the log lost before they were sent.
    pub events_lost: u64,
    /// Why the site cannot be applied, if so.
    pub error: Option<String>,
    /// When the door wrote this (RFC 3339).
    pub time: String,
}

fn invalid(why: impl Into<String>) -> SiteError {
    SiteError::Invalid(format!("door status: {}", why.into()))
}

impl DoorStatus {
    /// Reads a status as received, refusing it whole when it is too large,
    /// does not parse, or holds a value out of range.
    pub fn from_json(bytes: &[u8]) -> Result<Self, SiteError> {
        if bytes.len() > MAX_STATUS_BYTES {
            return Err(invalid(format!("{} bytes (at most {MAX_STATUS_BYTES})", bytes.len())));
        }
        let status: DoorStatus = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        status.check()?;
        Ok(status)
    }

    /// The JSON form (what a door publishes).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a status serialises")
    }

    fn check(&self) -> Result<(), SiteError> {
        let seqs = [("events_first", self.events_first), ("events_last", self.events_last)];
        let seqs = seqs.into_iter().chain([("events_delivered", self.events_delivered), ("events_lost", self.events_lost)]);
        for (name, value) in seqs {
            if value > MAX_SEQ {
                return Err(invalid(format!("{name} {value} is beyond 2^53")));
            }
        }
        if self.events_first > self.events_last.saturating_add(1) {
            return Err(invalid(format!("events_first {} after events_last {}", self.events_first, self.events_last)));
        }
        if self.events_delivered > self.events_last {
            return Err(invalid(format!("events_delivered {} beyond events_last {}", self.events_delivered, self.events_last)));
        }
        let texts = [("door", self.door.as_str(), 64), ("model", &self.model, 64), ("time", &self.time, 40)];
        let optional = [("manifest", self.manifest.as_deref(), 64), ("error", self.error.as_deref(), 512)];
        let optional = optional.into_iter().filter_map(|(n, t, max)| t.map(|t| (n, t, max)));
        for (name, text, max) in texts.into_iter().chain(optional) {
            if text.len() > max || text.chars().any(char::is_control) {
                return Err(invalid(format!("{name}: {} bytes or a control character (at most {max})", text.len())));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> DoorStatus {
        DoorStatus {
            door: "front".into(),
            online: true,
            version: 3,
            events_first: 1,
            events_last: 40,
            events_delivered: 40,
            time: "2026-12-07T08:00:00.000Z".into(),
            ..DoorStatus::default()
        }
    }

    #[test]
    fn a_status_round_trips_and_the_last_will_is_read() {
        let s = status();
        assert_eq!(DoorStatus::from_json(s.to_json().as_bytes()).unwrap(), s);
        let will = DoorStatus::from_json(br#"{"door": "front", "online": false}"#).unwrap();
        assert!(!will.online && will.version == 0);
    }

    #[test]
    fn out_of_range_oversized_or_unknown_is_refused_whole() {
        let far = DoorStatus { events_first: 1 << 62, events_last: 1 << 62, ..status() };
        assert!(DoorStatus::from_json(far.to_json().as_bytes()).unwrap_err().to_string().contains("2^53"));
        let inverted = DoorStatus { events_first: 50, events_last: 10, ..status() };
        assert!(DoorStatus::from_json(inverted.to_json().as_bytes()).is_err());
        let beyond = DoorStatus { events_delivered: 41, ..status() };
        assert!(DoorStatus::from_json(beyond.to_json().as_bytes()).is_err());
        let long = DoorStatus { error: Some("x".repeat(600)), ..status() };
        assert!(DoorStatus::from_json(long.to_json().as_bytes()).is_err());
        let control = DoorStatus { door: "front\u{1b}[2J".into(), ..status() };
        assert!(DoorStatus::from_json(control.to_json().as_bytes()).is_err(), "no terminal escapes");
        let padded = format!("{}{}", status().to_json(), " ".repeat(MAX_STATUS_BYTES));
        assert!(DoorStatus::from_json(padded.as_bytes()).unwrap_err().to_string().contains("bytes"));
        assert!(DoorStatus::from_json(br#"{"online": true, "extra": 1}"#).is_err());
        assert!(DoorStatus::from_json(br#"{"online": true, "version": -1}"#).is_err());
        assert!(DoorStatus::from_json(b"[1, 2]").is_err());
    }
}
