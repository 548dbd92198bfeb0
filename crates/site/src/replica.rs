//! Both ends of a site's state on the broker: what the administrator
//! publishes ([`SiteState::messages`]) and a door's copy built from what it
//! receives ([`Replica`]).
//!
//! A door applies a version only when it holds the signed manifest and
//! exactly the signed records it lists. So duplicate, reordered or replayed
//! messages change nothing (an older version is never applied again), a
//! message signed with another key is refused, and a door back from an
//! outage converges on the retained state, removals included.

use crate::keys::{AdminKey, DataKey, SitePublicKey};
use crate::records::{digest, Manifest, NetworkTemplates, PersonRecord, SealedPerson, Topics};
use crate::rules::{Access, DoorsKnow, Rules};
use crate::SiteError;
use facegate_core::{Embedding, ModelId};
use std::collections::{BTreeMap, HashMap};

/// The administrator's view: the whole site at one version.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SiteState {
    /// The site's name.
    pub name: String,
    /// The current version.
    pub version: u64,
    /// The site's embedding network: every person has templates of it (some
    /// also of others, in their records).
    pub model: ModelId,
    /// Groups, doors, schedules, time zone.
    pub rules: Rules,
    /// Every person's record by id (templates already sealed).
    pub people: BTreeMap<String, PersonRecord>,
}

impl SiteState {
    /// The retained messages that bring a broker to this state: every
    /// person's signed record, sealed for the doors that admit them, then
    /// the signed manifest that lists them and names the manifest it follows
    /// (`previous`). A door's key is its own in `door_keys`, or the site's
    /// data key for a door that joined before doors had keys. Sealing and
    /// signing are deterministic, so publishing twice sends the same bytes.
    pub fn messages(
        &self,
        admin: &AdminKey,
        data: &DataKey,
        door_keys: &BTreeMap<String, DataKey>,
        issued_at: i64,
        previous: [u8; 32],
    ) -> Result<Vec<(String, Vec<u8>)>, SiteError> {
        self.messages_known_by(DoorsKnow::Admitted, admin, data, door_keys, issued_at, previous)
    }

    /// As [`SiteState::messages`], each record sealed for the doors `know` says.
    pub fn messages_known_by(
        &self,
        know: DoorsKnow,
        admin: &AdminKey,
        data: &DataKey,
        door_keys: &BTreeMap<String, DataKey>,
        issued_at: i64,
        previous: [u8; 32],
    ) -> Result<Vec<(String, Vec<u8>)>, SiteError> {
        self.rules.validate()?;
        let topics = Topics::new(&self.name)?;
        let mut out = Vec::with_capacity(self.people.len() + 1);
        let mut listed = BTreeMap::new();
        let others = self.networks(data)?.into_iter().skip(1).map(|(model, _)| model).collect();
        for (id, record) in &self.people {
            let topic = topics.person(id);
            let doors = self.rules.doors_knowing(&record.access, know).map(|d| (d, door_keys.get(d).unwrap_or(data)));
            let sealed = SealedPerson::seal(&self.name, record, data, doors)?;
            let message = admin.sign(&topic, &sealed.to_bytes());
            listed.insert(id.clone(), digest(&message));
            out.push((topic, message));
        }
        let manifest = Manifest {
            site: self.name.clone(),
            version: self.version,
            issued_at,
            model: self.model,
            rules: self.rules.clone(),
            people: listed,
            previous,
            others,
        };
        out.push((topics.manifest(), admin.sign(&topics.manifest(), &manifest.to_bytes())));
        Ok(out)
    }
}

impl SiteState {
    /// The networks the site holds templates of, each with the ids of the
    /// people who have them: the site's own first (everybody), then the
    /// others in the order people first brought them.
    pub fn networks(&self, data: &DataKey) -> Result<Vec<(ModelId, Vec<String>)>, SiteError> {
        let mut networks: Vec<(ModelId, Vec<String>)> = vec![(self.model, self.people.keys().cloned().collect())];
        for (id, record) in &self.people {
            for other in record.all_templates(&self.name, data)?.1 {
                if other.model == self.model {
                    return Err(SiteError::Invalid(format!("person {id:?}: the site network's templates given twice")));
                }
                match networks.iter_mut().find(|(model, _)| *model == other.model) {
                    Some((_, ids)) => ids.push(id.clone()),
                    None => networks.push((other.model, vec![id.clone()])),
                }
            }
        }
        if networks.len() > 1 + crate::records::MAX_OTHER_NETWORKS {
            return Err(SiteError::Invalid(format!("templates of {} networks in one site", networks.len())));
        }
        Ok(networks)
    }
}

/// One person of an applied version, templates opened.
#[derive(Debug, Clone, PartialEq)]
pub struct SitePerson {
    /// Stable id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Groups and validity window.
    pub access: Access,
    /// Templates of the site's network.
    pub templates: Vec<Embedding>,
    /// Templates of other networks, when the person was enrolled with them too.
    pub others: Vec<NetworkTemplates>,
}

impl SitePerson {
    /// The person's templates of `model`, where `site_model` is the site's
    /// network: `None` when they were not enrolled with it.
    pub fn templates_of(&self, site_model: ModelId, model: ModelId) -> Option<&[Embedding]> {
        if model == site_model {
            return Some(&self.templates);
        }
        self.others.iter().find(|o| o.model == model).map(|o| o.templates.as_slice())
    }

    /// Every network's templates of the person: the site's (`site_model`), then the others.
    pub fn all_templates(&self, site_model: ModelId) -> impl Iterator<Item = (ModelId, &[Embedding])> {
        std::iter::once((site_model, self.templates.as_slice()))
            .chain(self.others.iter().map(|o| (o.model, o.templates.as_slice())))
    }
}

/// A complete version, ready to apply in one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The version.
    pub version: u64,
    /// When the administrator issued it (Unix seconds).
    pub issued_at: i64,
    /// The digest of its signed manifest message.
    pub manifest: [u8; 32],
    /// The site's embedding network: every person has templates of it.
    pub model: ModelId,
    /// Other networks some people also have templates of.
    pub others: Vec<ModelId>,
    /// The rules.
    pub rules: Rules,
    /// Everybody, by id.
    pub people: Vec<SitePerson>,
}

/// What a message did to a [`Replica`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A newer manifest, now waiting for its records.
    Manifest(u64),
    /// A manifest at or below what is applied or pending: ignored.
    StaleManifest(u64),
    /// A person's record, held.
    Person(String),
    /// A person's record cleared (removed from the site).
    Cleared(String),
    /// A topic this replica does not follow.
    Ignored,
}

/// What a door holds against a replayed old site, beside the version it
/// applied (a door without a copy has only these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Freshness {
    /// No version below this is applied: the site's version when the door
    /// joined (handed over in its secrets).
    pub min_version: u64,
    /// The newest `issued_at` the door applied: a manifest issued before it
    /// is refused, and the door's clock is never read as earlier (a Pi has
    /// no battery clock).
    pub newest_issued_at: i64,
    /// A manifest issued longer ago than this (seconds) is refused.
    pub max_age_s: Option<i64>,
}

/// A door's copy of the site, built from verified messages.
pub struct Replica {
    topics: Topics,
    site: String,
    door: String,
    public: SitePublicKey,
    key: DataKey,
    applied: u64,
    freshness: Freshness,
    manifest: Option<([u8; 32], Manifest)>,
    people: HashMap<String, ([u8; 32], SealedPerson)>,
}

fn system_now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

impl Replica {
    /// The replica of `site` at `door`: verifying with `public`, opening
    /// the records sealed for the door with its `key`, with `applied` the
    /// version the door already holds.
    pub fn new(site: &str, door: &str, public: SitePublicKey, key: DataKey, applied: u64) -> Result<Self, SiteError> {
        Ok(Replica {
            topics: Topics::new(site)?,
            site: site.into(),
            door: door.into(),
            public,
            key,
            applied,
            freshness: Freshness::default(),
            manifest: None,
            people: HashMap::new(),
        })
    }

    /// The same replica, refusing what `freshness` rules out.
    pub fn with_freshness(mut self, freshness: Freshness) -> Self {
        self.freshness = freshness;
        self
    }

    /// The door's clock as the site vouches for it: the system's, but never
    /// before the newest manifest applied (Unix seconds).
    pub fn clock_floor_now(&self) -> i64 {
        system_now_s().max(self.freshness.newest_issued_at)
    }

    /// The site's topics.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// The version applied.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Takes one message from the broker. A message that is not signed by
    /// the site's key, or does not decode, is refused with an error and
    /// changes nothing.
    pub fn receive(&mut self, topic: &str, payload: &[u8]) -> Result<Received, SiteError> {
        if topic == self.topics.manifest() {
            let manifest = Manifest::from_bytes(self.public.open(topic, payload)?)?;
            if manifest.site != self.site {
                return Err(SiteError::Invalid(format!("a manifest of site {:?} on {topic}", manifest.site)));
            }
            let newest = self.manifest.as_ref().map_or(self.applied, |(_, m)| m.version.max(self.applied));
            if manifest.version <= newest {
                return Ok(Received::StaleManifest(manifest.version));
            }
            self.check_fresh(&manifest)?;
            manifest.rules.validate()?;
            let version = manifest.version;
            self.manifest = Some((digest(payload), manifest));
            return Ok(Received::Manifest(version));
        }
        let Some(id) = self.topics.person_of(topic) else { return Ok(Received::Ignored) };
        if payload.is_empty() {
            self.people.remove(id);
            return Ok(Received::Cleared(id.to_string()));
        }
        let record = SealedPerson::from_bytes(self.public.open(topic, payload)?)?;
        if record.id != id {
            return Err(SiteError::Invalid(format!("the record of {:?} arrived on {topic}", record.id)));
        }
        self.people.insert(id.to_string(), (digest(payload), record));
        Ok(Received::Person(id.to_string()))
    }

    /// A correctly signed manifest that is still not taken: below the
    /// door's floor, issued before what it applied, or too old.
    fn check_fresh(&self, m: &Manifest) -> Result<(), SiteError> {
        let f = &self.freshness;
        if m.version < f.min_version {
            return Err(SiteError::Refused(format!(
                "site version {} is older than version {}, which this door joined at (an old site replayed?)",
                m.version, f.min_version
            )));
        }
        if m.issued_at < f.newest_issued_at {
            return Err(SiteError::Refused(format!(
                "site version {} was issued before the version this door applied (an old site replayed?)",
                m.version
            )));
        }
        if let Some(max) = f.max_age_s {
            let age = self.clock_floor_now() - m.issued_at;
            if age > max {
                return Err(SiteError::Refused(format!(
                    "site version {} was issued {} h ago (at most {} h): `host-tool --site SITE.toml sync` issues it again",
                    m.version,
                    age / 3600,
                    max / 3600
                )));
            }
        }
        Ok(())
    }

    /// The pending manifest's version and how many of its records are not
    /// held yet (in their listed form); `None` when nothing newer is pending.
    pub fn pending(&self) -> Option<(u64, usize)> {
        let (_, m) = self.manifest.as_ref().filter(|(_, m)| m.version > self.applied)?;
        let missing = m.people.iter().filter(|(id, d)| self.people.get(*id).is_none_or(|(held, _)| held != *d)).count();
        Some((m.version, missing))
    }

    /// The pending version when every record it lists is held: opened and
    /// ready to apply. `Ok(None)` while something is missing or nothing is
    /// pending; an error when a listed record cannot be opened (the door's
    /// data key is not the site's).
    pub fn complete(&self) -> Result<Option<Snapshot>, SiteError> {
        match self.pending() {
            Some((_, 0)) => {}
            _ => return Ok(None),
        }
        let (manifest, m) = self.manifest.as_ref().expect("pending");
        // Only the people sealed for this door: the others it cannot open.
        let mut people = Vec::new();
        for id in m.people.keys() {
            let (_, r) = &self.people[id];
            if let Some(person) = r.open_for(&self.site, &self.door, &self.key, m.model)? {
                people.push(person);
            }
        }
        Ok(Some(Snapshot {
            version: m.version,
            issued_at: m.issued_at,
            manifest: *manifest,
            model: m.model,
            others: m.others.clone(),
            rules: m.rules.clone(),
            people,
        }))
    }

    /// Records that `snapshot` is applied (after the door saved it).
    pub fn mark_applied(&mut self, snapshot: &Snapshot) {
        self.applied = self.applied.max(snapshot.version);
        self.freshness.newest_issued_at = self.freshness.newest_issued_at.max(snapshot.issued_at);
    }
}
