//! What a site publishes, and where.
//!
//! Under `facegate/<site>/`, all retained, all signed by the admin key:
//! - `people/<id>`: one [`SealedPerson`] per person (everything but the id
//!   sealed, opened only by the doors that admit them); an empty retained
//!   message clears a removed person;
//! - `manifest`: the [`Manifest`], the site's whole state but the faces:
//!   its version, the rules, and the digest of every person's record. A door
//!   applies a version only when it holds exactly the records the manifest
//!   lists, so a door that was away drops whoever was removed meanwhile.
//!
//! Doors publish under `doors/<door>/`: `status` (retained, with the broker's
//! last will saying offline) and `events` (at least once, each with its
//! sequence number).

use crate::keys::DataKey;
use crate::replica::SitePerson;
use crate::rules::{Access, Rules};
use crate::SiteError;
use facegate_core::{Embedding, ModelId, EMBEDDING_DIM};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The topics of one site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    base: String,
}

/// Whether `name` may be a site, door or person id: a topic level that needs
/// no escaping (letters, digits, `-`, `_`, `.`; 1–64 characters).
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn check_name(what: &str, name: &str) -> Result<(), SiteError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(SiteError::Invalid(format!("{what} {name:?}: use 1–64 letters, digits, '-', '_' or '.'")))
    }
}

impl Topics {
    /// The topics of site `site`.
    pub fn new(site: &str) -> Result<Self, SiteError> {
        check_name("site name", site)?;
        Ok(Topics { base: format!("facegate/{site}") })
    }

    /// The manifest's topic.
    pub fn manifest(&self) -> String {
        format!("{}/manifest", self.base)
    }

    /// A person's record topic.
    pub fn person(&self, id: &str) -> String {
        format!("{}/people/{id}", self.base)
    }

    /// Every person's record (a subscription filter).
    pub fn people(&self) -> String {
        format!("{}/people/+", self.base)
    }

    /// The person id of a record topic.
    pub fn person_of<'a>(&self, topic: &'a str) -> Option<&'a str> {
        topic.strip_prefix(self.base.as_str())?.strip_prefix("/people/").filter(|id| valid_name(id))
    }

    /// A door's status topic (retained; the last will says offline).
    pub fn status(&self, door: &str) -> String {
        format!("{}/doors/{door}/status", self.base)
    }

    /// A door's events topic.
    pub fn events(&self, door: &str) -> String {
        format!("{}/doors/{door}/events", self.base)
    }

    /// Where a collector asks a door to send its events again from a
    /// sequence number (`{"from": N}`): repairs what a broker lost in a crash.
    pub fn resend(&self, door: &str) -> String {
        format!("{}/doors/{door}/resend", self.base)
    }

    /// Every door's status (a subscription filter).
    pub fn all_status(&self) -> String {
        format!("{}/doors/+/status", self.base)
    }

    /// Every door's events (a subscription filter).
    pub fn all_events(&self) -> String {
        format!("{}/doors/+/events", self.base)
    }

    /// The door named in a door topic.
    pub fn door_of<'a>(&self, topic: &'a str) -> Option<&'a str> {
        topic.strip_prefix(self.base.as_str())?.strip_prefix("/doors/")?.split('/').next()
    }
}

/// One person as the administrator keeps them (published as a [`SealedPerson`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonRecord {
    /// Stable id (the topic level); names can change.
    pub id: String,
    /// Display name, as events show it.
    pub name: String,
    /// Groups and validity window.
    pub access: Access,
    /// The templates, sealed with the site's data key (see [`PersonRecord::templates`]).
    pub sealed_templates: Vec<u8>,
}

fn template_context(site: &str, id: &str) -> Vec<u8> {
    format!("facegate templates\0{site}\0{id}").into_bytes()
}

/// Most other networks a person carries templates of (a door's gallery keeps
/// as many).
pub const MAX_OTHER_NETWORKS: usize = 4;

/// A person's templates of another embedding network than the site's: kept
/// so that a door running that network searches them, and a site can switch
/// networks without calling everyone back.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkTemplates {
    /// The model that made them.
    pub model: ModelId,
    /// The templates.
    pub templates: Vec<Embedding>,
}

fn flatten(templates: &[Embedding]) -> Vec<f32> {
    templates.iter().flatten().copied().collect()
}

fn unflatten(id: &str, flat: &[f32]) -> Result<Vec<Embedding>, SiteError> {
    if flat.is_empty() || !flat.len().is_multiple_of(EMBEDDING_DIM) || flat.iter().any(|v| !v.is_finite()) {
        return Err(SiteError::Invalid(format!("person {id:?}: templates of {} values", flat.len())));
    }
    Ok(flat.chunks_exact(EMBEDDING_DIM).map(|c| c.try_into().expect("128 values")).collect())
}

/// The other networks' templates as they travel: a postcard tail after the
/// site network's, absent when there are none, so a record of one network
/// has the bytes it had before networks could be mixed (and an older reader,
/// which stops after the site network's templates, still reads a newer one).
fn others_tail(others: &[NetworkTemplates]) -> Vec<u8> {
    if others.is_empty() {
        return Vec::new();
    }
    let wire: Vec<(ModelId, Vec<f32>)> = others.iter().map(|o| (o.model, flatten(&o.templates))).collect();
    postcard::to_allocvec(&wire).expect("templates serialise")
}

fn read_others_tail(id: &str, own: Option<ModelId>, tail: &[u8]) -> Result<Vec<NetworkTemplates>, SiteError> {
    if tail.is_empty() {
        return Ok(Vec::new());
    }
    let wire: Vec<(ModelId, Vec<f32>)> = postcard::from_bytes(tail).map_err(|_| SiteError::Unsealable)?;
    let others = wire
        .into_iter()
        .map(|(model, flat)| Ok(NetworkTemplates { model, templates: unflatten(id, &flat)? }))
        .collect::<Result<Vec<_>, SiteError>>()?;
    check_others(id, own, &others)?;
    Ok(others)
}

/// At most [`MAX_OTHER_NETWORKS`], none empty, none given twice nor the
/// site's own (`own`, when known).
fn check_others(id: &str, own: Option<ModelId>, others: &[NetworkTemplates]) -> Result<(), SiteError> {
    if others.len() > MAX_OTHER_NETWORKS {
        return Err(SiteError::Invalid(format!(
            "person {id:?}: templates of {} other networks (at most {MAX_OTHER_NETWORKS})",
            others.len()
        )));
    }
    for (k, o) in others.iter().enumerate() {
        if o.templates.is_empty() {
            return Err(SiteError::Invalid(format!("person {id:?}: no template of model {}", o.model)));
        }
        if Some(o.model) == own || others[..k].iter().any(|p| p.model == o.model) {
            return Err(SiteError::Invalid(format!("person {id:?}: templates of model {} given twice", o.model)));
        }
    }
    Ok(())
}

/// The site network's templates, then the others' tail.
fn templates_bytes(own: &[Embedding], others: &[NetworkTemplates]) -> Vec<u8> {
    let mut bytes = postcard::to_allocvec(&flatten(own)).expect("templates serialise");
    bytes.extend(others_tail(others));
    bytes
}

fn read_templates_bytes(id: &str, bytes: &[u8]) -> Result<(Vec<Embedding>, Vec<NetworkTemplates>), SiteError> {
    let (flat, tail): (Vec<f32>, &[u8]) = postcard::take_from_bytes(bytes).map_err(|_| SiteError::Unsealable)?;
    Ok((unflatten(id, &flat)?, read_others_tail(id, None, tail)?))
}

impl PersonRecord {
    /// A record whose templates are sealed for `site` with `data`.
    pub fn new(
        site: &str,
        id: &str,
        name: &str,
        access: Access,
        templates: &[Embedding],
        data: &DataKey,
    ) -> Result<Self, SiteError> {
        Self::with_others(site, id, name, access, templates, &[], data)
    }

    /// A record with templates of the site's network and of `others`.
    pub fn with_others(
        site: &str,
        id: &str,
        name: &str,
        access: Access,
        templates: &[Embedding],
        others: &[NetworkTemplates],
        data: &DataKey,
    ) -> Result<Self, SiteError> {
        check_name("person id", id)?;
        if templates.is_empty() {
            return Err(SiteError::Invalid(format!("person {id:?} has no template")));
        }
        check_others(id, None, others)?;
        let sealed_templates = data.seal(&template_context(site, id), &templates_bytes(templates, others))?;
        Ok(PersonRecord { id: id.into(), name: name.into(), access, sealed_templates })
    }

    /// The templates of the site's network, opened with the site's data key.
    pub fn templates(&self, site: &str, data: &DataKey) -> Result<Vec<Embedding>, SiteError> {
        Ok(self.all_templates(site, data)?.0)
    }

    /// The templates of the site's network and of the other networks.
    pub fn all_templates(&self, site: &str, data: &DataKey) -> Result<(Vec<Embedding>, Vec<NetworkTemplates>), SiteError> {
        let plain = data.open(&template_context(site, &self.id), &self.sealed_templates)?;
        read_templates_bytes(&self.id, &plain)
    }

    /// The record's bytes, as signed.
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a record serialises")
    }

    /// A record from its bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SiteError> {
        postcard::from_bytes(bytes).map_err(|e| SiteError::Invalid(format!("person record: {e}")))
    }
}

/// A person as published on `people/<id>`: their name, access and
/// templates sealed with a key of their own, and that key sealed with the
/// key of each door that admits one of their groups. A door opens the people
/// it lets in and learns of the others only an opaque id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SealedPerson {
    /// Stable id (the topic level).
    pub id: String,
    /// Door → the person's key, sealed with that door's key.
    pub keys: BTreeMap<String, Vec<u8>>,
    /// Name, access and templates, sealed with the person's key.
    pub sealed: Vec<u8>,
}

/// What a door learns of a person it admits.
#[derive(Serialize, Deserialize)]
struct PersonBody {
    name: String,
    access: Access,
    templates: Vec<f32>,
}

fn person_context(site: &str, id: &str) -> Vec<u8> {
    format!("facegate person\0{site}\0{id}").into_bytes()
}

fn person_key_context(site: &str, id: &str, door: &str) -> Vec<u8> {
    format!("facegate person key\0{site}\0{id}\0{door}").into_bytes()
}

impl SealedPerson {
    /// `record` sealed for the doors of `doors` (door → its key), its
    /// templates opened with the site's `data` key. The same input gives the
    /// same bytes (the person's key and every nonce are derived).
    pub fn seal<'a>(
        site: &str,
        record: &PersonRecord,
        data: &DataKey,
        doors: impl IntoIterator<Item = (&'a str, &'a DataKey)>,
    ) -> Result<Self, SiteError> {
        let (own, others) = record.all_templates(site, data)?;
        let body = PersonBody { name: record.name.clone(), access: record.access.clone(), templates: flatten(&own) };
        let mut body = postcard::to_allocvec(&body).map_err(|e| SiteError::Invalid(e.to_string()))?;
        body.extend(others_tail(&others));
        let mut h = Sha256::new();
        h.update(b"facegate person key\0");
        h.update(data.to_bytes());
        h.update(person_context(site, &record.id));
        h.update(&body);
        let person_key = DataKey::from_bytes(h.finalize().into());
        let sealed = person_key.seal_deterministic(&person_context(site, &record.id), &body)?;
        let keys = doors
            .into_iter()
            .map(|(door, key)| {
                let wrapped = key.seal_deterministic(&person_key_context(site, &record.id, door), &person_key.to_bytes())?;
                Ok((door.to_string(), wrapped))
            })
            .collect::<Result<_, SiteError>>()?;
        Ok(SealedPerson { id: record.id.clone(), keys, sealed })
    }

    /// The person as `door` (holding `key`) sees them: `None` when the
    /// record is not sealed for that door; an error when it is and does not
    /// open (the door's key is not the one the site holds for it). `model`
    /// is the site's network: no other network's templates may repeat it.
    pub fn open_for(&self, site: &str, door: &str, key: &DataKey, model: ModelId) -> Result<Option<SitePerson>, SiteError> {
        let Some(wrapped) = self.keys.get(door) else { return Ok(None) };
        let person_key: [u8; 32] =
            key.open(&person_key_context(site, &self.id, door), wrapped)?.try_into().map_err(|_| SiteError::Unsealable)?;
        let body = DataKey::from_bytes(person_key).open(&person_context(site, &self.id), &self.sealed)?;
        let (body, tail): (PersonBody, &[u8]) = postcard::take_from_bytes(&body).map_err(|_| SiteError::Unsealable)?;
        Ok(Some(SitePerson {
            id: self.id.clone(),
            name: body.name,
            access: body.access,
            templates: unflatten(&self.id, &body.templates)?,
            others: read_others_tail(&self.id, Some(model), tail)?,
        }))
    }

    /// The record's bytes, as signed.
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("a record serialises")
    }

    /// A record from its bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SiteError> {
        postcard::from_bytes(bytes).map_err(|e| SiteError::Invalid(format!("person record: {e}")))
    }
}

/// The site's whole state but the faces, at one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The site's name.
    pub site: String,
    /// Grows by one with every change; a door never goes back.
    pub version: u64,
    /// When it was issued (Unix seconds).
    pub issued_at: i64,
    /// The embedding model every template was made with; a door running
    /// another model cannot use them and says so.
    pub model: ModelId,
    /// Groups, doors, schedules and time zone.
    pub rules: Rules,
    /// Every person: id → sha256 of their signed record message.
    pub people: BTreeMap<String, [u8; 32]>,
    /// The digest of the manifest message this version follows (zero for
    /// the first): the administrator's tool refuses to publish from a copy
    /// of the site state that is not the newest (restored from a backup).
    pub previous: [u8; 32],
    /// The other networks some people also carry templates of: a door
    /// running one of them searches those people's. Travels as a tail after
    /// the rest, absent when empty (an older door reads the manifest as before).
    #[serde(skip)]
    pub others: Vec<ModelId>,
}

impl Manifest {
    /// The manifest's bytes, as signed.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = postcard::to_allocvec(self).expect("a manifest serialises");
        if !self.others.is_empty() {
            bytes.extend(postcard::to_allocvec(&self.others).expect("model ids serialise"));
        }
        bytes
    }

    /// A manifest from its bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SiteError> {
        let invalid = |e: postcard::Error| SiteError::Invalid(format!("manifest: {e}"));
        let (mut manifest, tail): (Manifest, &[u8]) = postcard::take_from_bytes(bytes).map_err(invalid)?;
        if !tail.is_empty() {
            manifest.others = postcard::from_bytes(tail).map_err(invalid)?;
            if manifest.others.len() > MAX_OTHER_NETWORKS || manifest.others.contains(&manifest.model) {
                return Err(SiteError::Invalid(format!("manifest: {} other networks", manifest.others.len())));
            }
        }
        Ok(manifest)
    }

    /// Whether the site holds templates of `model` (its own network's, or
    /// some people's of another).
    pub fn holds(&self, model: ModelId) -> bool {
        self.model == model || self.others.contains(&model)
    }
}

/// The digest a manifest lists for a signed record message.
pub fn digest(message: &[u8]) -> [u8; 32] {
    Sha256::digest(message).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_travel_sealed_and_come_back_bit_for_bit() {
        let data = DataKey::generate().unwrap();
        let t: Vec<Embedding> = (0..3).map(|k| std::array::from_fn(|i| ((i * 7 + k) as f32).sin() * 0.1)).collect();
        let r = PersonRecord::new("hq", "p-001", "Ada", Access::default(), &t, &data).unwrap();
        let back = PersonRecord::from_bytes(&r.to_bytes()).unwrap();
        assert_eq!(back.templates("hq", &data).unwrap(), t);
        let plain: Vec<u8> = t[0][..8].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert!(!r.to_bytes().windows(plain.len()).any(|w| w == plain), "no plain template in the record");
        assert!(back.templates("other-site", &data).is_err(), "sealed for one site");
        let moved = PersonRecord { id: "p-002".into(), ..back.clone() };
        assert!(moved.templates("hq", &data).is_err(), "sealed for one person");
        assert!(PersonRecord::new("hq", "p 1", "Bad", Access::default(), &t, &data).is_err(), "a topic level with a space");
        assert!(PersonRecord::new("hq", "p-003", "Nobody", Access::default(), &[], &data).is_err());
        assert!(PersonRecord::from_bytes(b"\xff\xff garbage").is_err());
    }

    fn templates(seed: usize) -> Vec<Embedding> {
        (0..2).map(|k| std::array::from_fn(|i| ((i * 5 + k * 3 + seed) as f32).cos() * 0.1)).collect()
    }

    #[test]
    fn other_networks_travel_in_a_tail_that_older_readers_skip() {
        let (data, door) = (DataKey::generate().unwrap(), DataKey::generate().unwrap());
        let (site_model, other) = (ModelId::from_bytes([1; 32]), ModelId::from_bytes([2; 32]));
        let own = templates(0);
        let others = vec![NetworkTemplates { model: other, templates: templates(9) }];
        // One network: the bytes sealed are exactly what they were before networks could be mixed.
        assert_eq!(templates_bytes(&own, &[]), postcard::to_allocvec(&flatten(&own)).unwrap());
        let both = templates_bytes(&own, &others);
        let older: Vec<f32> = postcard::from_bytes(&both).unwrap();
        assert_eq!(older, flatten(&own), "an older reader takes the site network's templates and stops");
        let r = PersonRecord::with_others("hq", "p-1", "Ada", Access::default(), &own, &others, &data).unwrap();
        assert_eq!(r.all_templates("hq", &data).unwrap(), (own.clone(), others.clone()));
        assert_eq!(r.templates("hq", &data).unwrap(), own);
        // Published: the door finds both networks' templates.
        let sealed = SealedPerson::seal("hq", &r, &data, [("front", &door)]).unwrap();
        let seen = sealed.open_for("hq", "front", &door, site_model).unwrap().unwrap();
        assert_eq!((seen.templates.clone(), seen.others.clone()), (own.clone(), others.clone()));
        assert_eq!(seen.templates_of(site_model, other), Some(&others[0].templates[..]));
        assert_eq!(seen.templates_of(site_model, ModelId::from_bytes([3; 32])), None);
        // A door whose site network is the "other" one refuses the record: one network twice.
        assert!(sealed.open_for("hq", "front", &door, other).is_err());
        // Given twice, empty, or too many: refused.
        let twice = [others.clone(), others.clone()].concat();
        assert!(PersonRecord::with_others("hq", "p-1", "Ada", Access::default(), &own, &twice, &data).is_err());
        let empty = [NetworkTemplates { model: other, templates: vec![] }];
        assert!(PersonRecord::with_others("hq", "p-1", "Ada", Access::default(), &own, &empty, &data).is_err());
        let many: Vec<NetworkTemplates> = (0..=MAX_OTHER_NETWORKS as u8)
            .map(|k| NetworkTemplates { model: ModelId::from_bytes([10 + k; 32]), templates: templates(k as usize) })
            .collect();
        assert!(PersonRecord::with_others("hq", "p-1", "Ada", Access::default(), &own, &many, &data).is_err());
    }

    #[test]
    fn a_manifest_lists_other_networks_in_a_tail_that_older_doors_skip() {
        let mut m = Manifest {
            site: "hq".into(),
            version: 3,
            issued_at: 1_800_000_000,
            model: ModelId::from_bytes([1; 32]),
            rules: Rules::default(),
            people: BTreeMap::new(),
            previous: [0; 32],
            others: Vec::new(),
        };
        assert_eq!(m.to_bytes(), postcard::to_allocvec(&m).unwrap(), "one network: the bytes of before");
        m.others = vec![ModelId::from_bytes([2; 32])];
        let bytes = m.to_bytes();
        assert_eq!(Manifest::from_bytes(&bytes).unwrap(), m);
        assert!(m.holds(ModelId::from_bytes([2; 32])) && !m.holds(ModelId::from_bytes([3; 32])));
        // An older door's reader (the struct without its tail) still reads it.
        let older: Manifest = postcard::from_bytes(&bytes).unwrap();
        assert_eq!((older.version, older.model, older.others.len()), (3, m.model, 0));
        // The site's own network listed again as another, or a damaged tail: refused.
        m.others = vec![m.model];
        assert!(Manifest::from_bytes(&m.to_bytes()).is_err());
        let mut damaged = bytes.clone();
        damaged.push(0xff);
        damaged[bytes.len() - 33] = 0x7f;
        assert!(Manifest::from_bytes(&damaged).is_err());
    }

    #[test]
    fn topics_name_and_parse_their_levels() {
        let t = Topics::new("hq").unwrap();
        assert_eq!(t.person_of(&t.person("p-1")), Some("p-1"));
        assert_eq!(t.person_of("facegate/other/people/p-1"), None);
        assert_eq!(t.person_of("facegate/hq/people/a/b"), None);
        assert_eq!(t.door_of(&t.status("front")), Some("front"));
        assert_eq!(t.door_of(&t.events("lab")), Some("lab"));
        assert!(Topics::new("a/b").is_err() && Topics::new("#").is_err() && Topics::new("").is_err());
    }
}
