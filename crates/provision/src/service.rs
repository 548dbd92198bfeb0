//! Gallery requests → gallery operations → responses.

use crate::home::GalleryHome;
use crate::wire::wire_error;
use crate::{Request, Response};
use facegate_core::{Embedding, Identification, ModelId};
use facegate_protocol::message::{EnrollResult, MatchReply, NewPerson, PersonInfo};
use facegate_protocol::{WireError, CHUNK};
use facegate_store::{EventKind, Gallery};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// People per page fit one frame.
const PAGE_BYTES: usize = 3200;
/// Largest gallery file a restore accepts.
const MAX_RESTORE: u64 = 1 << 30;

/// Something that changed the gallery, for the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `Enrolled`, `Removed`, `Renamed` or `Restored`.
    pub kind: EventKind,
    /// Who (or, for a restore, how many people).
    pub name: String,
}

/// What [`GalleryService::handle`] did with a request.
#[derive(Debug)]
pub enum Handled {
    /// A gallery request, answered; `changes` lists what to log.
    Answered {
        /// The answer.
        reply: Result<Response, WireError>,
        /// What changed (empty for reads and refusals).
        changes: Vec<Change>,
    },
    /// Not a gallery request: handed back to the caller.
    NotGallery(Request),
}

/// An upload in progress: announced length and sha256, bytes so far.
struct Upload {
    len: u64,
    sha256: [u8; 32],
    data: Vec<u8>,
}

/// The gallery requests of the provisioning protocol, answered alike on the
/// device and in the host tool's offline mode.
pub struct GalleryService {
    home: Arc<GalleryHome>,
    /// Distance threshold for verify, identify and the similarity warning.
    pub threshold: f32,
    backup: Option<Vec<u8>>,
    restore: Option<Upload>,
}

fn answered(reply: Result<Response, WireError>) -> Handled {
    Handled::Answered { reply, changes: Vec::new() }
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl GalleryService {
    /// A service over `home`.
    pub fn new(home: Arc<GalleryHome>, threshold: f32) -> Self {
        GalleryService { home, threshold, backup: None, restore: None }
    }

    /// The gallery it serves.
    pub fn home(&self) -> &Arc<GalleryHome> {
        &self.home
    }

    /// Answers a gallery request, or hands any other request back.
    pub fn handle(&mut self, request: Request) -> Handled {
        match request {
            Request::People { start } => answered(Ok(self.people_page(start))),
            Request::Enroll { model, add, people } => match self.enroll(model, add, people) {
                Ok((results, changes)) => Handled::Answered { reply: Ok(Response::Enrolled(results)), changes },
                Err(e) => answered(Err(e)),
            },
            Request::Remove { name } => self.change_one(EventKind::Removed, name.clone(), |g| g.remove(&name).map(drop)),
            Request::Rename { from, to } => self.change_one(EventKind::Renamed, to.clone(), |g| g.rename(&from, &to)),
            Request::Verify { name, model, probe } => {
                answered(probe.to_embedding().and_then(|p| self.verify(&name, model, &p)).map(Response::Match))
            }
            Request::Identify { model, probe } => {
                answered(probe.to_embedding().and_then(|p| self.identify(model, &p)).map(Response::Match))
            }
            Request::BackupBegin => answered(Ok(self.backup_begin())),
            Request::BackupChunk { offset, len } => answered(self.backup_chunk(offset, len)),
            Request::RestoreBegin { len, sha256 } => answered(self.restore_begin(len, sha256)),
            Request::RestoreChunk { offset, data } => answered(self.restore_chunk(offset, data)),
            Request::RestoreCommit => match self.restore_commit() {
                Ok(people) => Handled::Answered {
                    reply: Ok(Response::Restored { people }),
                    changes: vec![Change { kind: EventKind::Restored, name: format!("{people} people") }],
                },
                Err(e) => answered(Err(e)),
            },
            other => Handled::NotGallery(other),
        }
    }

    fn change_one(&self, kind: EventKind, name: String, f: impl FnOnce(&mut Gallery) -> facegate_store::Result<()>) -> Handled {
        match self.home.change(|g| f(g).map_err(wire_error)) {
            Ok(()) => Handled::Answered { reply: Ok(Response::Done), changes: vec![Change { kind, name }] },
            Err(e) => answered(Err(e)),
        }
    }

    fn check_model(&self, model: ModelId) -> Result<(), WireError> {
        self.home.read().check_model(model).map_err(wire_error)
    }

    /// Enrols people (or, with `add`, adds templates to people already
    /// enrolled) in one atomic change; one result per person.
    pub fn enroll(
        &self,
        model: ModelId,
        add: bool,
        people: Vec<NewPerson>,
    ) -> Result<(Vec<EnrollResult>, Vec<Change>), WireError> {
        self.check_model(model)?;
        let threshold = self.threshold;
        let created = now_s();
        let results: Vec<EnrollResult> =
            self.home.change(|g| Ok(people.into_iter().map(|p| enroll_one(g, model, add, p, threshold, created)).collect()))?;
        let changes = results
            .iter()
            .filter(|r| r.outcome.is_ok() && !r.unchanged)
            .map(|r| Change { kind: EventKind::Enrolled, name: r.name.clone() })
            .collect();
        Ok((results, changes))
    }

    /// A page of people starting at `start`, sized to fit a frame.
    pub fn people_page(&self, start: u32) -> Response {
        let gallery = self.home.read();
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

    /// 1:1: is `probe` the person called `name`?
    pub fn verify(&self, name: &str, model: ModelId, probe: &Embedding) -> Result<MatchReply, WireError> {
        self.check_model(model)?;
        let (probe, gallery) = (self.home.map_probe(probe), self.home.matching());
        let p = gallery.by_name(name).ok_or_else(|| WireError::NotFound(name.to_string()))?;
        let distance = p.distance(&probe);
        Ok(MatchReply { name: Some(p.name.clone()), distance, accepted: distance < self.threshold, threshold: self.threshold })
    }

    /// 1:K: the nearest person, and whether they are near enough (open set).
    pub fn identify(&self, model: ModelId, probe: &Embedding) -> Result<MatchReply, WireError> {
        self.check_model(model)?;
        let (probe, gallery) = (self.home.map_probe(probe), self.home.matching());
        // The gallery's one search, asked for the nearest person whatever the distance.
        let nearest = match gallery.identify(&probe, f32::INFINITY) {
            Identification::Known { index, distance, .. } => Some((gallery.people()[index].name.clone(), distance)),
            Identification::Unknown { .. } => None,
        };
        let threshold = self.threshold;
        Ok(match nearest {
            Some((name, d)) => MatchReply { name: Some(name), distance: d, accepted: d < threshold, threshold },
            None => MatchReply { name: None, distance: f32::INFINITY, accepted: false, threshold },
        })
    }

    fn backup_begin(&mut self) -> Response {
        let bytes = self.home.read().to_bytes();
        let sha256: [u8; 32] = Sha256::digest(&bytes).into();
        let len = bytes.len() as u64;
        self.backup = Some(bytes);
        Response::Backup { len, sha256 }
    }

    fn backup_chunk(&self, offset: u64, len: u32) -> Result<Response, WireError> {
        let b = self.backup.as_ref().ok_or_else(|| WireError::Transfer("no backup in progress".into()))?;
        let start = usize::try_from(offset)
            .ok()
            .filter(|s| *s <= b.len())
            .ok_or_else(|| WireError::Transfer("offset past the end".into()))?;
        let end = (start + (len as usize).min(CHUNK)).min(b.len());
        Ok(Response::Chunk(b[start..end].to_vec()))
    }

    /// Starts an upload, or resumes the one with the same length and sha256.
    fn restore_begin(&mut self, len: u64, sha256: [u8; 32]) -> Result<Response, WireError> {
        if len > MAX_RESTORE {
            return Err(WireError::BadBackup(format!("{len} bytes is larger than any gallery")));
        }
        match &self.restore {
            Some(u) if u.len == len && u.sha256 == sha256 => Ok(Response::RestoreAt(u.data.len() as u64)),
            _ => {
                self.restore = Some(Upload { len, sha256, data: Vec::new() });
                Ok(Response::RestoreAt(0))
            }
        }
    }

    fn restore_chunk(&mut self, offset: u64, data: Vec<u8>) -> Result<Response, WireError> {
        let u = self.restore.as_mut().ok_or_else(|| WireError::Transfer("no upload in progress".into()))?;
        if offset != u.data.len() as u64 {
            return Err(WireError::Transfer(format!("expected offset {}, got {offset}", u.data.len())));
        }
        if u.data.len() as u64 + data.len() as u64 > u.len {
            return Err(WireError::Transfer("more data than announced".into()));
        }
        u.data.extend_from_slice(&data);
        Ok(Response::RestoreAt(u.data.len() as u64))
    }

    /// Checks the upload (length, sha256, gallery checksum, model) and
    /// replaces the gallery with it atomically; returns the people in it.
    fn restore_commit(&mut self) -> Result<u32, WireError> {
        let u = self.restore.take().ok_or_else(|| WireError::Transfer("no upload in progress".into()))?;
        if u.data.len() as u64 != u.len {
            let have = u.data.len();
            let len = u.len;
            self.restore = Some(u);
            return Err(WireError::Transfer(format!("have {have} of {len} bytes")));
        }
        if <[u8; 32]>::from(Sha256::digest(&u.data)) != u.sha256 {
            return Err(WireError::BadBackup("sha256 mismatch".into()));
        }
        let g = Gallery::from_bytes(&u.data, self.home.path()).map_err(|e| WireError::BadBackup(e.to_string()))?;
        let current = self.home.read().model_id();
        if g.model_id() != current {
            return Err(WireError::ModelMismatch { device: current.to_string(), host: g.model_id().to_string() });
        }
        let people = g.people().len() as u32;
        self.home.replace(&u.data, g)?;
        Ok(people)
    }
}

/// Enrols (or adds to) one person on the working copy.
fn enroll_one(g: &mut Gallery, model: ModelId, add: bool, p: NewPerson, threshold: f32, created: u64) -> EnrollResult {
    let mut r =
        EnrollResult { name: p.name.clone(), outcome: Err(WireError::Internal(String::new())), unchanged: false, similar: None };
    let templates = match p.templates.iter().map(|t| t.to_embedding()).collect::<Result<Vec<_>, _>>() {
        Ok(t) => t,
        Err(e) => {
            r.outcome = Err(e);
            return r;
        }
    };
    r.similar = g.similar(&templates, threshold, Some(&p.name)).map(|(q, d)| (q.name.clone(), d));
    r.outcome = if add && g.by_name(&p.name).is_some() {
        g.add_templates(&p.name, templates, model).map(|_| g.by_name(&p.name).map_or(0, |q| q.id))
    } else {
        g.enroll(&p.name, templates, model, created).map(|e| {
            r.unchanged = e.unchanged;
            e.id
        })
    }
    .map_err(wire_error);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use facegate_protocol::message::WireTemplate;

    const MODEL: ModelId = ModelId::from_bytes([1; 32]);

    fn emb(seed: f32) -> Embedding {
        std::array::from_fn(|i| ((i as f32 * 0.37 + seed).sin()) * 0.1)
    }

    fn person(name: &str, seeds: &[f32]) -> NewPerson {
        NewPerson { name: name.into(), templates: seeds.iter().map(|s| WireTemplate::from_embedding(&emb(*s))).collect() }
    }

    fn reply(h: Handled) -> (Result<Response, WireError>, Vec<Change>) {
        match h {
            Handled::Answered { reply, changes } => (reply, changes),
            Handled::NotGallery(r) => panic!("{r:?} was not handled"),
        }
    }

    #[test]
    fn changes_are_saved_swapped_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.fg");
        let home = Arc::new(GalleryHome::open(&path, MODEL).unwrap());
        let mut s = GalleryService::new(home.clone(), 0.5);
        let (r, changes) = reply(s.handle(Request::Enroll { model: MODEL, add: false, people: vec![person("Ada", &[1.0])] }));
        assert!(matches!(r, Ok(Response::Enrolled(ref v)) if v[0].outcome.is_ok()), "{r:?}");
        assert_eq!(changes, vec![Change { kind: EventKind::Enrolled, name: "Ada".into() }]);
        assert_eq!(Gallery::load(&path).unwrap(), *home.read(), "saved as swapped in");
        // A retry changes nothing and logs nothing.
        let (_, changes) = reply(s.handle(Request::Enroll { model: MODEL, add: false, people: vec![person("Ada", &[1.0])] }));
        assert!(changes.is_empty());
        // Another model is refused before anything happens.
        let other = ModelId::from_bytes([2; 32]);
        let (r, _) = reply(s.handle(Request::Enroll { model: other, add: false, people: vec![person("Bob", &[5.0])] }));
        assert!(matches!(r, Err(WireError::ModelMismatch { .. })));
        let (r, changes) = reply(s.handle(Request::Rename { from: "Ada".into(), to: "Ada L".into() }));
        assert_eq!((r.unwrap(), changes[0].kind), (Response::Done, EventKind::Renamed));
        let (r, changes) = reply(s.handle(Request::Remove { name: "Nobody".into() }));
        assert!(matches!(r, Err(WireError::NotFound(_))) && changes.is_empty());
        assert!(matches!(s.handle(Request::Status), Handled::NotGallery(Request::Status)));
    }

    #[test]
    fn identify_names_the_nearest_even_when_too_far() {
        let dir = tempfile::tempdir().unwrap();
        let home = Arc::new(GalleryHome::open(&dir.path().join("g.fg"), MODEL).unwrap());
        let s = GalleryService::new(home, 0.2);
        assert_eq!(s.identify(MODEL, &emb(1.0)).unwrap().name, None, "empty gallery");
        s.enroll(MODEL, false, vec![person("Ada", &[1.0]), person("Bob", &[5.0])]).unwrap();
        let near = s.identify(MODEL, &emb(1.01)).unwrap();
        assert!(near.accepted && near.name.as_deref() == Some("Ada"));
        let far = s.identify(MODEL, &emb(1.6)).unwrap();
        assert!(!far.accepted && far.name.is_some() && far.distance >= 0.2, "{far:?}");
        let v = s.verify("Bob", MODEL, &emb(1.01)).unwrap();
        assert!(!v.accepted && v.name.as_deref() == Some("Bob"));
    }

    #[test]
    fn restore_checks_everything_before_replacing() {
        let dir = tempfile::tempdir().unwrap();
        let home = Arc::new(GalleryHome::open(&dir.path().join("g.fg"), MODEL).unwrap());
        let mut s = GalleryService::new(home.clone(), 0.5);
        let mut other = Gallery::new(MODEL);
        other.add_person("Cy", vec![emb(3.0)], MODEL, 0).unwrap();
        let bytes = other.to_bytes();
        let sha256: [u8; 32] = Sha256::digest(&bytes).into();
        let begin = Request::RestoreBegin { len: bytes.len() as u64, sha256 };
        assert_eq!(reply(s.handle(begin.clone())).0.unwrap(), Response::RestoreAt(0));
        let half = bytes.len() / 2;
        reply(s.handle(Request::RestoreChunk { offset: 0, data: bytes[..half].to_vec() })).0.unwrap();
        assert!(reply(s.handle(Request::RestoreCommit)).0.is_err(), "incomplete");
        assert_eq!(reply(s.handle(begin)).0.unwrap(), Response::RestoreAt(half as u64), "resumes");
        reply(s.handle(Request::RestoreChunk { offset: half as u64, data: bytes[half..].to_vec() })).0.unwrap();
        let (r, changes) = reply(s.handle(Request::RestoreCommit));
        assert_eq!(r.unwrap(), Response::Restored { people: 1 });
        assert_eq!(changes[0].kind, EventKind::Restored);
        assert_eq!(*home.read(), other);
        // A damaged upload is refused and the gallery kept.
        let mut bad = bytes.clone();
        bad[30] ^= 1;
        let sha256: [u8; 32] = Sha256::digest(&bad).into();
        reply(s.handle(Request::RestoreBegin { len: bad.len() as u64, sha256 })).0.unwrap();
        reply(s.handle(Request::RestoreChunk { offset: 0, data: bad })).0.unwrap();
        assert!(matches!(reply(s.handle(Request::RestoreCommit)).0, Err(WireError::BadBackup(_))));
        assert_eq!(*home.read(), other);
    }
}
