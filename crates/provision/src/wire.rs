//! Store types ↔ wire types.

use facegate_protocol::message::LogEvent;
use facegate_protocol::WireError;
use facegate_store::{Event, EventKind, StoreError};

/// The wire form of a store error.
pub fn wire_error(e: StoreError) -> WireError {
    if e.is_storage_full() {
        return WireError::StorageFull;
    }
    match e {
        StoreError::NotFound(n) => WireError::NotFound(n),
        StoreError::AlreadyEnrolled(n) => WireError::AlreadyEnrolled(n),
        StoreError::Full => WireError::GalleryFull,
        StoreError::InvalidName(why) => WireError::InvalidName(why),
        StoreError::Invalid(why) => WireError::InvalidTemplate(why),
        StoreError::ModelMismatch { expected, found } => {
            WireError::ModelMismatch { device: expected.to_string(), host: found.to_string() }
        }
        other => WireError::Internal(other.to_string()),
    }
}

/// The wire form of a logged event.
pub fn log_event(e: &Event) -> LogEvent {
    LogEvent {
        seq: e.seq,
        time_ms: e.time_ms,
        kind: e.kind.code(),
        person: e.person,
        name: e.name.clone(),
        distance: e.distance,
        frames: e.frames,
        live: e.live,
    }
}

/// A logged event from its wire form; `None` for a kind this build does not know.
pub fn event_of(e: &LogEvent) -> Option<Event> {
    Some(Event {
        seq: e.seq,
        time_ms: e.time_ms,
        kind: EventKind::from_code(e.kind)?,
        person: e.person,
        name: e.name.clone(),
        distance: e.distance,
        frames: e.frames,
        live: e.live,
    })
}

/// The JSON form of an event read from a device ([`Event::to_json`]; a kind
/// from newer device software is named `unknown-kind`).
pub fn log_event_json(e: &LogEvent) -> serde_json::Value {
    match event_of(e) {
        Some(event) => event.to_json(),
        None => serde_json::json!({
            "kind": "unknown-kind", "person": e.name, "person_id": e.person, "distance": e.distance,
            "frames": e.frames, "time": facegate_store::access_log::iso_time(e.time_ms), "seq": e.seq,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_cross_the_wire_unchanged() {
        let mut e = Event::new(EventKind::Granted, 1_795_824_000_123);
        (e.seq, e.person, e.name, e.distance, e.frames, e.live) = (7, Some(3), Some("Ada".into()), Some(0.41), 3, Some(0.93));
        let wire = log_event(&e);
        assert_eq!(event_of(&wire), Some(e.clone()));
        assert_eq!(log_event_json(&wire), e.to_json());
        assert_eq!(e.to_json()["seq"], 7);
        let unknown = LogEvent { kind: 250, ..wire };
        assert_eq!(log_event_json(&unknown)["kind"], "unknown-kind");
    }

    #[test]
    fn store_errors_keep_their_meaning() {
        assert_eq!(wire_error(StoreError::NotFound("x".into())), WireError::NotFound("x".into()));
        let full = StoreError::Io { path: "g".into(), source: std::io::Error::from_raw_os_error(28) };
        assert_eq!(wire_error(full), WireError::StorageFull);
    }
}
