//! Gallery operations behind the provisioning requests, shared by the device
//! and by the host tool's offline mode (`--gallery FILE`), so both behave alike.

use crate::message::{model_hex, EnrollResult, LogEvent, MatchReply, ModelId, NewPerson, PersonInfo};
use crate::{Response, WireError};
use facegate_face::Embedding;
use facegate_store::{Event, Gallery, StoreError};
use std::time::{SystemTime, UNIX_EPOCH};

/// People per page fit one frame.
const PAGE_BYTES: usize = 3200;

/// Maps store errors to wire errors.
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
        StoreError::ModelMismatch { expected, found } => WireError::ModelMismatch { device: expected, host: found },
        other => WireError::Internal(other.to_string()),
    }
}

/// Checks that templates come from the gallery's model.
pub fn check_model(gallery: &Gallery, model: &ModelId) -> Result<(), WireError> {
    let host = model_hex(model);
    if host != gallery.model_id() {
        return Err(WireError::ModelMismatch { device: gallery.model_id().to_string(), host });
    }
    Ok(())
}

/// The embeddings of a person on the wire.
pub fn templates_of(p: &NewPerson) -> Result<Vec<Embedding>, WireError> {
    p.templates.iter().map(|t| t.to_embedding()).collect()
}

/// Applies an enrolment to `gallery` (a working copy); one result per person.
pub fn enroll_into(gallery: &mut Gallery, add: bool, people: Vec<NewPerson>, threshold: f32) -> Vec<EnrollResult> {
    let model = gallery.model_id().to_string();
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    people
        .into_iter()
        .map(|p| {
            let mut r = EnrollResult {
                name: p.name.clone(),
                outcome: Err(WireError::Internal(String::new())),
                unchanged: false,
                similar: None,
            };
            let templates = match templates_of(&p) {
                Ok(t) => t,
                Err(e) => {
                    r.outcome = Err(e);
                    return r;
                }
            };
            r.similar = gallery.similar(&templates, threshold, Some(&p.name)).map(|(q, d)| (q.name.clone(), d));
            r.outcome = if add && gallery.by_name(&p.name).is_some() {
                gallery.add_templates(&p.name, templates, &model).map(|_| gallery.by_name(&p.name).map_or(0, |q| q.id))
            } else {
                gallery.enroll(&p.name, templates, &model, created).map(|e| {
                    r.unchanged = e.unchanged;
                    e.id
                })
            }
            .map_err(wire_error);
            r
        })
        .collect()
}

/// A page of people starting at `start`, sized to fit a frame.
pub fn people_page(gallery: &Gallery, start: u32) -> Response {
    let mut people = Vec::new();
    let mut bytes = 0;
    for p in gallery.people().iter().skip(start as usize) {
        let info = PersonInfo { id: p.id, name: p.name.clone(), templates: p.template_count() as u8, created: p.created };
        bytes += p.name.len() + 24;
        people.push(info);
        if bytes > PAGE_BYTES {
            break;
        }
    }
    Response::People { people, total: gallery.people().len() as u32 }
}

/// 1:1 check of a probe against a named person.
pub fn verify(gallery: &Gallery, name: &str, probe: &Embedding, threshold: f32) -> Result<MatchReply, WireError> {
    let p = gallery.by_name(name).ok_or_else(|| WireError::NotFound(name.to_string()))?;
    let distance = p.distance(probe);
    Ok(MatchReply { name: Some(p.name.clone()), distance, accepted: distance < threshold, threshold })
}

/// 1:K: the nearest person and whether they are near enough.
pub fn identify(gallery: &Gallery, probe: &Embedding, threshold: f32) -> MatchReply {
    let nearest = gallery.people().iter().map(|p| (p, p.distance(probe))).min_by(|a, b| a.1.total_cmp(&b.1));
    match nearest {
        Some((p, d)) => MatchReply { name: Some(p.name.clone()), distance: d, accepted: d < threshold, threshold },
        None => MatchReply { name: None, distance: f32::INFINITY, accepted: false, threshold },
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
    }
}

/// The JSON form of an event, the same on the device's `--events-json` stream
/// and in `host-tool log --json`: kind, person, person_id, distance, frames,
/// time (ISO 8601 UTC), seq.
pub fn event_json(e: &LogEvent) -> serde_json::Value {
    let kind = facegate_store::EventKind::from_code(e.kind).map_or("unknown-kind", |k| k.as_str());
    serde_json::json!({
        "kind": kind,
        "person": e.name,
        "person_id": e.person,
        "distance": e.distance,
        "frames": e.frames,
        "time": facegate_store::access_log::iso_time(e.time_ms),
        "seq": e.seq,
    })
}
