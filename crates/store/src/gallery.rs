//! The gallery: enrolled people and their face templates, in one checksummed file.
//!
//! Format (`FGGL` v2): magic, version u32, body length u64, CRC-32 of the body
//! u32, then the body (postcard): model id, next person id, people (id, name,
//! created, templates as one byte string of little-endian f16). Version 3
//! adds, after the people, templates of other embedding networks (model id,
//! then person id and f16 bytes per person who has them): it is written only
//! when there are such templates, so a gallery of one network stays version 2.
//! Version 1, with templates as lists of f32, is still read.

use crate::atomic::{replace, sibling};
use crate::{io, Result, StoreError};
use facegate_core::matching::{identify, Identification, TemplateScore};
use facegate_core::{quantize_i8, Embedding, ModelId, EMBEDDING_DIM};
use half::f16;
use serde::{Deserialize, Serialize};
use std::path::Path;

const MAGIC: &[u8; 4] = b"FGGL";
/// 2: f16 templates; 1 (f32 templates) is still read.
const VERSION: u32 = 2;
/// 3: version 2 and other networks' templates.
const VERSION_OTHERS: u32 = 3;
/// Most other networks one gallery keeps templates of.
const MAX_OTHERS: usize = 4;
const HEADER: usize = 4 + 4 + 8 + 4;

/// Longest accepted name, in bytes.
pub const MAX_NAME: usize = 64;
/// Most templates one person may have.
pub const MAX_TEMPLATES: usize = 16;
/// Largest magnitude accepted in a template component.
const MAX_COMPONENT: f32 = 100.0;
/// Most people in one gallery.
pub const MAX_PEOPLE: usize = 100_000;

/// One enrolled person.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    /// Stable id (never reused).
    pub id: u32,
    /// Display name, unique in the gallery.
    pub name: String,
    /// Enrolment time, seconds since the Unix epoch.
    pub created: u64,
    /// Face templates, kept in f16: half the memory of f32 (10,000 people ×
    /// 5 templates: 12.8 MB instead of 25.6), and the rounding moves a distance
    /// by < 1e-3, below the int8 step templates already take on the serial link.
    templates: Vec<StoredTemplate>,
}

/// A template as held in memory.
type StoredTemplate = [f16; EMBEDDING_DIM];

fn stored(t: &Embedding) -> StoredTemplate {
    t.map(f16::from_f32)
}

fn expanded(t: &StoredTemplate) -> Embedding {
    t.map(f16::to_f32)
}

impl Person {
    /// The person's templates.
    pub fn templates(&self) -> Vec<Embedding> {
        self.templates.iter().map(expanded).collect()
    }

    /// Template `k` (panics when out of range, like indexing).
    pub fn template(&self, k: usize) -> Embedding {
        expanded(&self.templates[k])
    }

    /// How many templates the person has.
    pub fn template_count(&self) -> usize {
        self.templates.len()
    }

    /// Euclidean distance from `probe` to the person's nearest template
    /// (the nearest-template rule), computed on the stored templates.
    pub fn distance(&self, probe: &Embedding) -> f32 {
        self.templates.iter().map(|t| squared_distance(t, probe)).fold(f32::INFINITY, f32::min).sqrt()
    }
}

fn squared_distance(t: &StoredTemplate, probe: &Embedding) -> f32 {
    t.iter().zip(probe).map(|(a, b)| (a.to_f32() - b).powi(2)).sum()
}

/// Version 1 of the file: templates as lists of f32 (read, never written).
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct PersonRecordV1 {
    id: u32,
    name: String,
    created: u64,
    templates: Vec<Vec<f32>>,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct BodyV1 {
    model_id: String,
    next_id: u32,
    people: Vec<PersonRecordV1>,
}

/// Version 2: each person's templates as one run of little-endian f16 bytes,
/// written straight from memory (and read back by [`BodyReader`]), so neither
/// saving nor loading makes an f32 copy of the gallery.
#[derive(Serialize)]
struct PersonRecord<'a> {
    id: u32,
    name: &'a str,
    created: u64,
    templates: F16Bytes,
}

/// The version 2 body (postcard): people are encoded one at a time, so at most one
/// person's template bytes exist besides the output.
#[derive(Serialize)]
struct BodyOut<'a> {
    model_id: &'a str,
    next_id: u32,
    people: PeopleOut<'a>,
}

struct PeopleOut<'a>(&'a [Person]);

impl Serialize for PeopleOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|p| PersonRecord {
            id: p.id,
            name: &p.name,
            created: p.created,
            templates: F16Bytes(p.templates.iter().flatten().flat_map(|h| h.to_le_bytes()).collect()),
        }))
    }
}

/// Template bytes, serialised as one byte string.
struct F16Bytes(Vec<u8>);

impl Serialize for F16Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

/// Reads a version 2 body as a stream, checksumming as it goes, so loading
/// needs no copy of the file in memory (13 MB for 10,000 people × 5).
/// Every length is bounded before anything is allocated for it.
struct BodyReader<R> {
    input: R,
    crc: crc32fast::Hasher,
    left: u64,
}

impl<R: std::io::Read> BodyReader<R> {
    fn fill(&mut self, buf: &mut [u8]) -> std::result::Result<(), String> {
        if buf.len() as u64 > self.left {
            return Err("the body ends early".into());
        }
        self.input.read_exact(buf).map_err(|e| format!("reading: {e}"))?;
        self.crc.update(buf);
        self.left -= buf.len() as u64;
        Ok(())
    }

    /// A LEB128 varint (postcard's integer encoding) of at most `max` value.
    fn varint(&mut self, max: u64) -> std::result::Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let mut b = [0u8];
            self.fill(&mut b)?;
            value |= u64::from(b[0] & 0x7f) << shift;
            if b[0] & 0x80 == 0 {
                return if value <= max { Ok(value) } else { Err(format!("value {value} above {max}")) };
            }
        }
        Err("overlong integer".into())
    }

    fn bytes(&mut self, max: usize) -> std::result::Result<Vec<u8>, String> {
        let n = self.varint(max as u64)? as usize;
        let mut v = vec![0u8; n];
        self.fill(&mut v)?;
        Ok(v)
    }

    fn string(&mut self, max: usize) -> std::result::Result<String, String> {
        String::from_utf8(self.bytes(max)?).map_err(|_| "a name is not UTF-8".to_string())
    }

    fn templates(&mut self) -> std::result::Result<Vec<StoredTemplate>, String> {
        let raw = self.bytes(MAX_TEMPLATES * TEMPLATE_BYTES)?;
        if raw.is_empty() || raw.len() % TEMPLATE_BYTES != 0 {
            return Err("template of the wrong length".into());
        }
        let templates: Vec<StoredTemplate> = raw
            .chunks_exact(TEMPLATE_BYTES)
            .map(|t| std::array::from_fn(|i| f16::from_le_bytes([t[2 * i], t[2 * i + 1]])))
            .collect();
        if templates.iter().flatten().any(|v| !v.is_finite()) {
            return Err("template with a non-finite value".into());
        }
        Ok(templates)
    }

    fn others(&mut self) -> std::result::Result<Vec<OtherTemplates>, String> {
        let n = self.varint(MAX_OTHERS as u64)? as usize;
        let mut others = Vec::with_capacity(n);
        for _ in 0..n {
            let model = ModelId::from_hex(&self.string(256)?).map_err(|e| e.to_string())?;
            let count = self.varint(MAX_PEOPLE as u64)? as usize;
            let mut by_person = std::collections::BTreeMap::new();
            for _ in 0..count {
                let id = self.varint(u32::MAX.into())? as u32;
                by_person.insert(id, self.templates()?);
            }
            others.push(OtherTemplates { model, by_person });
        }
        Ok(others)
    }

    fn person(&mut self) -> std::result::Result<Person, String> {
        let id = self.varint(u32::MAX.into())? as u32;
        let name = self.string(MAX_NAME)?;
        let created = self.varint(u64::MAX)?;
        Ok(Person { id, name, created, templates: self.templates()? })
    }

    fn body(&mut self, with_others: bool) -> std::result::Result<Body, String> {
        let model_id = self.string(256)?;
        let next_id = self.varint(u32::MAX.into())? as u32;
        let n = self.varint(MAX_PEOPLE as u64)? as usize;
        let mut people = Vec::with_capacity(n);
        for _ in 0..n {
            people.push(self.person()?);
        }
        let others = if with_others { self.others()? } else { Vec::new() };
        if self.left != 0 {
            return Err(format!("{} bytes after the last person", self.left));
        }
        Ok((model_id, next_id, people, others))
    }

    /// Decodes the body; a checksum mismatch is reported before any decoding error.
    fn read(mut self, expected_crc: u32, with_others: bool) -> std::result::Result<Body, String> {
        let decoded = self.body(with_others);
        if decoded.is_err() {
            // Checksum the rest so damage is named as such.
            let mut sink = [0u8; 8192];
            while self.left > 0 {
                let n = self.left.min(sink.len() as u64) as usize;
                if self.fill(&mut sink[..n]).is_err() {
                    break;
                }
            }
        }
        if self.left == 0 && self.crc.finalize() != expected_crc {
            return Err("checksum mismatch".into());
        }
        decoded
    }
}

const TEMPLATE_BYTES: usize = EMBEDDING_DIM * 2;

/// A decoded body: model id, next id, people, other networks' templates.
type Body = (String, u32, Vec<Person>, Vec<OtherTemplates>);

/// Templates of another embedding network than the gallery's, kept beside the
/// searched ones so that a door can switch networks without calling everyone
/// back. Never searched: [`Gallery::switch_to`] makes them the searched set.
#[derive(Debug, Clone, PartialEq)]
struct OtherTemplates {
    model: ModelId,
    /// By person id.
    by_person: std::collections::BTreeMap<u32, Vec<StoredTemplate>>,
}

/// The version 3 tail: other networks' templates (postcard, after the people).
struct OthersOut<'a>(&'a [OtherTemplates]);

impl Serialize for OthersOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|o| {
            let people: Vec<(u32, F16Bytes)> = o
                .by_person
                .iter()
                .map(|(id, t)| (*id, F16Bytes(t.iter().flatten().flat_map(|h| h.to_le_bytes()).collect())))
                .collect();
            (o.model.to_hex(), people)
        }))
    }
}

/// The gallery in memory, with an int8 copy of all templates for fast search.
#[derive(Debug, Clone, PartialEq)]
pub struct Gallery {
    model_id: ModelId,
    next_id: u32,
    people: Vec<Person>,
    /// For each template in search order: its person's index in `people` and its index there.
    owner: Vec<(u32, u16)>,
    /// int8 copies of all templates back to back (per-template scale), for a
    /// cache-friendly first pass; exact distances come from `people`.
    coarse: Vec<i8>,
    /// Per template: scale/127 and Σq², for the int8 distance.
    coarse_terms: Vec<(f32, f32)>,
    /// Other networks' templates (not searched).
    others: Vec<OtherTemplates>,
}

/// Outcome of [`Gallery::enroll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enrolled {
    /// The person's id.
    pub id: u32,
    /// They were already enrolled with exactly these templates.
    pub unchanged: bool,
}

/// Templates re-checked exactly after the int8 pass.
const RECHECK: usize = 16;

fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(StoreError::InvalidName(format!("names must be 1–{MAX_NAME} bytes of printable text")));
    }
    Ok(())
}

fn check_templates(templates: &[Embedding]) -> Result<()> {
    if templates.is_empty() || templates.len() > MAX_TEMPLATES {
        return Err(StoreError::Invalid(format!("a person needs 1–{MAX_TEMPLATES} templates")));
    }
    if templates.iter().flatten().any(|v| !v.is_finite()) {
        return Err(StoreError::Invalid("template contains a non-finite value".into()));
    }
    // Real components are well below 1; anything near f16's range is not an embedding.
    if templates.iter().flatten().any(|v| v.abs() > MAX_COMPONENT) {
        return Err(StoreError::Invalid(format!("template value beyond ±{MAX_COMPONENT}: not an embedding")));
    }
    Ok(())
}

/// Integer dot product (i8 × i8 → i32), which compilers turn into multiply-add SIMD.
#[inline]
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(x, y)| *x as i16 as i32 * *y as i16 as i32).sum()
}

impl Gallery {
    /// An empty gallery for templates of `model_id`.
    pub fn new(model_id: ModelId) -> Self {
        Gallery {
            model_id,
            next_id: 1,
            people: Vec::new(),
            owner: Vec::new(),
            coarse: Vec::new(),
            coarse_terms: Vec::new(),
            others: Vec::new(),
        }
    }

    /// The embedding model the templates were made with.
    pub fn model_id(&self) -> ModelId {
        self.model_id
    }

    /// Everyone enrolled, in enrolment order.
    pub fn people(&self) -> &[Person] {
        &self.people
    }

    /// Total number of templates.
    pub fn template_count(&self) -> usize {
        self.owner.len()
    }

    /// The person with this name.
    pub fn by_name(&self, name: &str) -> Option<&Person> {
        self.people.iter().find(|p| p.name == name)
    }

    /// The person with this id.
    pub fn by_id(&self, id: u32) -> Option<&Person> {
        self.people.iter().find(|p| p.id == id)
    }

    fn reindex(&mut self) {
        self.owner.clear();
        self.coarse.clear();
        self.coarse_terms.clear();
        for i in 0..self.people.len() {
            self.index_person(i);
        }
    }

    /// Appends person `i`'s templates to the search index.
    fn index_person(&mut self, i: usize) {
        for (k, t) in self.people[i].templates.iter().enumerate() {
            self.owner.push((i as u32, k as u16));
            let mut q = [0i8; EMBEDDING_DIM];
            let step = quantize_i8(&expanded(t), &mut q);
            let q2 = dot_i8(&q, &q) as f32;
            self.coarse.extend_from_slice(&q);
            self.coarse_terms.push((step, q2));
        }
    }

    /// A copy with every template mapped through `f` (a trained metric
    /// head): searching it with a mapped probe compares in the learnt metric.
    /// People, ids and order are unchanged, so results name the same people.
    pub fn mapped(&self, f: impl Fn(&Embedding) -> Embedding) -> Gallery {
        let mut out = self.clone();
        for person in &mut out.people {
            person.templates.iter_mut().for_each(|t| *t = stored(&f(&expanded(t))));
        }
        out.reindex();
        out
    }

    /// Refuses templates of another model than the gallery's.
    pub fn check_model(&self, model_id: ModelId) -> Result<()> {
        if model_id != self.model_id {
            return Err(StoreError::ModelMismatch { expected: self.model_id, found: model_id });
        }
        Ok(())
    }

    /// Enrols a new person; refuses templates of another model and duplicate names.
    pub fn add_person(&mut self, name: &str, templates: Vec<Embedding>, model_id: ModelId, created: u64) -> Result<u32> {
        self.check_model(model_id)?;
        check_name(name)?;
        check_templates(&templates)?;
        if self.by_name(name).is_some() {
            return Err(StoreError::AlreadyEnrolled(name.to_string()));
        }
        if self.people.len() >= MAX_PEOPLE {
            return Err(StoreError::Full);
        }
        let id = self.next_id;
        self.next_id += 1;
        let templates = templates.iter().map(stored).collect();
        self.people.push(Person { id, name: name.to_string(), created, templates });
        self.index_person(self.people.len() - 1);
        Ok(id)
    }

    /// Enrols `name`, idempotently: a repeated enrolment with the very same
    /// templates (a retry after a lost reply) succeeds without change.
    pub fn enroll(&mut self, name: &str, templates: Vec<Embedding>, model_id: ModelId, created: u64) -> Result<Enrolled> {
        if let Some(p) = self.by_name(name) {
            if model_id == self.model_id && p.templates.iter().copied().eq(templates.iter().map(stored)) {
                return Ok(Enrolled { id: p.id, unchanged: true });
            }
        }
        self.add_person(name, templates, model_id, created).map(|id| Enrolled { id, unchanged: false })
    }

    /// Adds templates to someone already enrolled (more photos); returns their count.
    pub fn add_templates(&mut self, name: &str, templates: Vec<Embedding>, model_id: ModelId) -> Result<usize> {
        self.check_model(model_id)?;
        let i = self.people.iter().position(|p| p.name == name).ok_or_else(|| StoreError::NotFound(name.to_string()))?;
        let mut all = self.people[i].templates();
        all.extend(templates);
        check_templates(&all)?;
        let n = all.len();
        self.people[i].templates = all.iter().map(stored).collect();
        self.reindex();
        Ok(n)
    }

    /// The enrolled person nearest to any of `templates` when nearer than
    /// `threshold`, other than `except`: enrolling the same face twice under two
    /// names is almost always a mistake.
    pub fn similar(&self, templates: &[Embedding], threshold: f32, except: Option<&str>) -> Option<(&Person, f32)> {
        let mut best: Option<(&Person, f32)> = None;
        for p in self.people.iter().filter(|p| Some(p.name.as_str()) != except) {
            for t in templates {
                let d = p.distance(t);
                if d < threshold && best.is_none_or(|(_, b)| d < b) {
                    best = Some((p, d));
                }
            }
        }
        best
    }

    /// Removes a person by name, with their other networks' templates; returns their id.
    pub fn remove(&mut self, name: &str) -> Result<u32> {
        let i = self.people.iter().position(|p| p.name == name).ok_or_else(|| StoreError::NotFound(name.to_string()))?;
        let id = self.people.remove(i).id;
        for other in &mut self.others {
            other.by_person.remove(&id);
        }
        self.others.retain(|o| !o.by_person.is_empty());
        self.reindex();
        Ok(id)
    }

    /// The models of the other networks this gallery keeps templates of, and
    /// how many of its people have templates of each.
    pub fn other_models(&self) -> Vec<(ModelId, usize)> {
        self.others.iter().map(|o| (o.model, o.by_person.len())).collect()
    }

    /// Keeps `templates` of another network's `model` for `name` (replacing
    /// any they had): not searched until [`switch_to`](Self::switch_to) that model.
    pub fn set_other_templates(&mut self, name: &str, model: ModelId, templates: &[Embedding]) -> Result<()> {
        if model == self.model_id {
            return Err(StoreError::Invalid("these are the gallery's own network's templates, not another's".into()));
        }
        check_templates(templates)?;
        let id = self.by_name(name).ok_or_else(|| StoreError::NotFound(name.to_string()))?.id;
        let at = match self.others.iter().position(|o| o.model == model) {
            Some(at) => at,
            None if self.others.len() >= MAX_OTHERS => {
                return Err(StoreError::Invalid(format!("a gallery keeps templates of at most {MAX_OTHERS} other networks")))
            }
            None => {
                self.others.push(OtherTemplates { model, by_person: Default::default() });
                self.others.len() - 1
            }
        };
        self.others[at].by_person.insert(id, templates.iter().map(stored).collect());
        Ok(())
    }

    /// Makes `model`'s templates the searched ones, keeping the current ones
    /// beside. Refused, changing nothing, unless everyone enrolled has
    /// templates of `model`: a door never searches a mix of two networks.
    pub fn switch_to(&mut self, model: ModelId) -> Result<()> {
        if model == self.model_id {
            return Ok(());
        }
        let Some(at) = self.others.iter().position(|o| o.model == model) else {
            return Err(StoreError::ModelMismatch { expected: self.model_id, found: model });
        };
        let missing: Vec<&str> =
            self.people.iter().filter(|p| !self.others[at].by_person.contains_key(&p.id)).map(|p| p.name.as_str()).collect();
        if !missing.is_empty() {
            return Err(StoreError::TemplatesMissing { model, missing: missing.len(), first: missing[0].to_string() });
        }
        let mut other = self.others.remove(at);
        let mut previous = OtherTemplates { model: self.model_id, by_person: Default::default() };
        for p in &mut self.people {
            let theirs = other.by_person.remove(&p.id).expect("checked above");
            previous.by_person.insert(p.id, std::mem::replace(&mut p.templates, theirs));
        }
        self.others.push(previous);
        self.model_id = model;
        self.reindex();
        Ok(())
    }

    /// Renames a person.
    pub fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        check_name(to)?;
        if self.by_name(to).is_some() {
            return Err(StoreError::AlreadyEnrolled(to.to_string()));
        }
        let p = self.people.iter_mut().find(|p| p.name == from).ok_or_else(|| StoreError::NotFound(from.to_string()))?;
        p.name = to.to_string();
        Ok(())
    }

    /// 1:K search with the nearest-template rule; allocation-free.
    /// The index in the result is into [`people`](Self::people).
    ///
    /// A first pass over int8 copies of the templates (a quarter of the memory
    /// traffic) keeps the nearest candidates, whose distances are then computed
    /// in f32 from the stored f16 templates, so the result is the nearest person unless the
    /// int8 error (≈1e-3 in distance) reorders more than 16 templates.
    pub fn identify(&self, probe: &Embedding, threshold: f32) -> Identification {
        let mut qp = [0i8; EMBEDDING_DIM];
        let probe_step = quantize_i8(probe, &mut qp);
        let p2 = dot_i8(&qp, &qp) as f32 * probe_step * probe_step;
        // Keep the RECHECK smallest approximate distances (index, d²), unsorted.
        let mut best = [(usize::MAX, f32::INFINITY); RECHECK];
        let mut worst = 0usize;
        for (i, (q, (step, q2))) in self.coarse.chunks_exact(EMBEDDING_DIM).zip(&self.coarse_terms).enumerate() {
            let dot = dot_i8(&qp, q) as f32 * probe_step;
            let d2 = p2 - 2.0 * step * dot + step * step * q2;
            if d2 < best[worst].1 {
                best[worst] = (i, d2);
                worst = (0..RECHECK).max_by(|a, b| best[*a].1.total_cmp(&best[*b].1)).unwrap_or(0);
            }
        }
        let (mut best_person, mut best_d2, mut second_d2) = (u32::MAX, f32::INFINITY, f32::INFINITY);
        let mut candidates = best;
        candidates.sort_by(|a, b| a.1.total_cmp(&b.1));
        for (i, _) in candidates.iter().filter(|c| c.0 != usize::MAX) {
            let (owner, k) = self.owner[*i];
            let d2 = squared_distance(&self.people[owner as usize].templates[k as usize], probe);
            if d2 < best_d2 {
                if owner != best_person {
                    second_d2 = best_d2;
                }
                best_person = owner;
                best_d2 = d2;
            } else if owner != best_person && d2 < second_d2 {
                second_d2 = d2;
            }
        }
        let (d, second) = (best_d2.sqrt(), second_d2.sqrt());
        if d < threshold {
            Identification::Known { index: best_person as usize, distance: d, margin: second - d }
        } else {
            Identification::Unknown { nearest: d }
        }
    }

    /// 1:K search with any template rule (see [`TemplateScore`]).
    pub fn identify_with(&self, probe: &Embedding, threshold: f32, score: TemplateScore) -> Identification {
        match score {
            TemplateScore::Min => self.identify(probe, threshold),
            TemplateScore::Mean => {
                let templates: Vec<Vec<Embedding>> = self.people.iter().map(Person::templates).collect();
                identify(probe, templates.iter().map(|t| &t[..]), threshold, score)
            }
        }
    }

    /// Serialises the gallery (header, checksum, body).
    pub fn to_bytes(&self) -> Vec<u8> {
        let model_id = self.model_id.to_hex();
        let body = BodyOut { model_id: &model_id, next_id: self.next_id, people: PeopleOut(&self.people) };
        let mut out = Vec::with_capacity(HEADER + self.template_count() * (TEMPLATE_BYTES + 1) + self.people.len() * 64);
        out.extend_from_slice(MAGIC);
        let version = if self.others.is_empty() { VERSION } else { VERSION_OTHERS };
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&[0; 12]); // length and checksum, filled in below
        let mut out = postcard::to_extend(&body, out).expect("in-memory serialisation cannot fail");
        if !self.others.is_empty() {
            out = postcard::to_extend(&OthersOut(&self.others), out).expect("in-memory serialisation cannot fail");
        }
        let len = (out.len() - HEADER) as u64;
        let crc = crc32fast::hash(&out[HEADER..]);
        out[8..16].copy_from_slice(&len.to_le_bytes());
        out[16..20].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses and validates a gallery file's bytes; `path` is for messages.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        Self::read_from(&mut &bytes[..], bytes.len() as u64, path)
    }

    /// Loads a gallery file. A damaged file is refused (never repaired or
    /// overwritten here); its previous good copy is `<file>.bak`.
    pub fn load(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(io(path))?;
        let size = file.metadata().map_err(io(path))?.len();
        Self::read_from(&mut std::io::BufReader::with_capacity(64 * 1024, file), size, path)
    }

    /// Reads a gallery of `size` bytes from `input`.
    fn read_from(input: &mut impl std::io::Read, size: u64, path: &Path) -> Result<Self> {
        let format = |why: &str| StoreError::Format { path: path.to_path_buf(), why: why.to_string() };
        let corrupt = |why: &str| StoreError::Corrupt {
            path: path.to_path_buf(),
            why: why.to_string(),
            backup: sibling(path, ".bak").display().to_string(),
        };
        let mut header = [0u8; HEADER];
        if size < HEADER as u64 {
            let mut start = Vec::new();
            input.read_to_end(&mut start).map_err(io(path))?;
            return Err(if MAGIC.starts_with(&start[..start.len().min(4)]) && !start.is_empty() {
                corrupt("truncated header")
            } else {
                format("not a facegate gallery")
            });
        }
        input.read_exact(&mut header).map_err(io(path))?;
        if &header[..4] != MAGIC {
            return Err(format("not a facegate gallery"));
        }
        let version = u32::from_le_bytes(header[4..8].try_into().expect("4"));
        if ![1, VERSION, VERSION_OTHERS].contains(&version) {
            return Err(format(&format!("gallery version {version}, this build reads 1 to {VERSION_OTHERS}")));
        }
        let len = u64::from_le_bytes(header[8..16].try_into().expect("8"));
        let crc = u32::from_le_bytes(header[16..20].try_into().expect("4"));
        let body_len = size - HEADER as u64;
        if body_len != len {
            return Err(corrupt(&format!("body is {body_len} bytes, header says {len}")));
        }
        let (model_id, next_id, people, others) = if version == 1 {
            let mut body = Vec::with_capacity(len as usize);
            input.read_to_end(&mut body).map_err(io(path))?;
            let (model_id, next_id, people) = Self::v1_body(&body, crc).map_err(|why| corrupt(&why))?;
            (model_id, next_id, people, Vec::new())
        } else {
            let reader = BodyReader { input, crc: crc32fast::Hasher::new(), left: len };
            reader.read(crc, version == VERSION_OTHERS).map_err(|why| corrupt(&why))?
        };
        let model_id = ModelId::from_hex(&model_id).map_err(|e| format(&e.to_string()))?;
        // Other templates of people no longer enrolled, or of the gallery's own model, are damage.
        let known: std::collections::HashSet<u32> = people.iter().map(|p| p.id).collect();
        if others.iter().any(|o| o.model == model_id || o.by_person.keys().any(|id| !known.contains(id))) {
            return Err(corrupt("other networks' templates name an unknown person or the gallery's own model"));
        }
        let mut g = Gallery { people, next_id, others, ..Gallery::new(model_id) };
        g.reindex();
        Ok(g)
    }

    /// Decodes a version 1 body (f32 templates).
    fn v1_body(body: &[u8], crc: u32) -> std::result::Result<(String, u32, Vec<Person>), String> {
        if crc32fast::hash(body) != crc {
            return Err("checksum mismatch".into());
        }
        let body: BodyV1 = postcard::from_bytes(body).map_err(|e| format!("undecodable body: {e}"))?;
        let mut people = Vec::with_capacity(body.people.len());
        for r in body.people {
            let templates = r
                .templates
                .iter()
                .map(|t| {
                    <Embedding>::try_from(&t[..]).map(|t| stored(&t)).map_err(|_| "template of the wrong length".to_string())
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            people.push(Person { id: r.id, name: r.name, created: r.created, templates });
        }
        Ok((body.model_id, body.next_id, people))
    }

    /// Saves atomically, keeping the previous file as `<file>.bak`.
    pub fn save(&self, path: &Path) -> Result<()> {
        replace(path, &self.to_bytes(), true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL_A: ModelId = ModelId::from_bytes([0xa; 32]);
    const MODEL_B: ModelId = ModelId::from_bytes([0xb; 32]);

    fn emb(seed: f32) -> Embedding {
        std::array::from_fn(|i| ((i as f32 * 0.37 + seed).sin()) * 0.1)
    }

    fn sample() -> Gallery {
        let mut g = Gallery::new(MODEL_A);
        g.add_person("Ada", vec![emb(1.0), emb(1.1)], MODEL_A, 10).unwrap();
        g.add_person("Bob", vec![emb(5.0)], MODEL_A, 20).unwrap();
        g
    }

    #[test]
    fn enrolment_is_idempotent_and_typed() {
        let mut g = sample();
        let before = g.clone();
        assert_eq!(g.enroll("Ada", vec![emb(1.0), emb(1.1)], MODEL_A, 99).unwrap(), Enrolled { id: 1, unchanged: true });
        assert_eq!(g, before, "a retried enrolment changes nothing");
        assert!(matches!(g.enroll("Ada", vec![emb(2.0)], MODEL_A, 99), Err(StoreError::AlreadyEnrolled(_))));
        assert!(matches!(g.remove("Zed"), Err(StoreError::NotFound(_))));
        assert!(matches!(g.enroll("Cy", vec![emb(2.0)], MODEL_B, 99), Err(StoreError::ModelMismatch { .. })));
        assert_eq!(g, before);
        assert_eq!(g.add_templates("Bob", vec![emb(5.1)], MODEL_A).unwrap(), 2);
        assert!(g.add_templates("Bob", vec![emb(5.2); MAX_TEMPLATES], MODEL_A).is_err(), "cap on templates");
        assert_eq!(g.by_name("Bob").unwrap().templates.len(), 2);
        let (p, d) = g.similar(&[emb(5.0)], 0.1, None).unwrap();
        assert!(p.name == "Bob" && d < 1e-3, "{} at {d}", p.name);
        assert!(g.similar(&[emb(5.0)], 0.1, Some("Bob")).is_none());
    }

    #[test]
    fn a_gallery_switches_networks_only_when_everyone_has_the_others_templates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("both.fg");
        let mut g = sample();
        let one_network = g.to_bytes();
        assert_eq!(u32::from_le_bytes(one_network[4..8].try_into().unwrap()), VERSION, "one network: still version 2");
        g.set_other_templates("Ada", MODEL_B, &[emb(7.0)]).unwrap();
        assert!(g.set_other_templates("Ada", MODEL_A, &[emb(7.0)]).is_err(), "the gallery's own model is not another");
        assert!(matches!(g.set_other_templates("Zed", MODEL_B, &[emb(7.0)]), Err(StoreError::NotFound(_))));
        // Bob has no templates of B: no switch, nothing changed.
        let before = g.clone();
        assert!(
            matches!(g.switch_to(MODEL_B), Err(StoreError::TemplatesMissing { missing: 1, ref first, .. }) if first == "Bob")
        );
        assert_eq!(g, before);
        assert!(matches!(g.switch_to(ModelId::from_bytes([0xc; 32])), Err(StoreError::ModelMismatch { .. })));
        g.set_other_templates("Bob", MODEL_B, &[emb(8.0), emb(8.1)]).unwrap();
        g.save(&path).unwrap();
        let mut loaded = Gallery::load(&path).unwrap();
        assert_eq!(loaded, g, "version 3 round trip");
        assert_eq!(loaded.other_models(), vec![(MODEL_B, 2)]);
        // Switched: B is searched, A kept beside; a probe of A's finds nobody.
        loaded.switch_to(MODEL_B).unwrap();
        assert_eq!(loaded.model_id(), MODEL_B);
        assert!(matches!(loaded.identify(&emb(8.0), 0.01), Identification::Known { index: 1, .. }));
        assert!(matches!(loaded.identify(&emb(5.0), 0.01), Identification::Unknown { .. }));
        assert_eq!(loaded.other_models(), vec![(MODEL_A, 2)]);
        loaded.switch_to(MODEL_A).unwrap();
        assert_eq!(loaded.by_name("Ada").unwrap().templates(), g.by_name("Ada").unwrap().templates());
        // Removing a person removes their other templates too.
        loaded.remove("Bob").unwrap();
        assert_eq!(loaded.other_models(), vec![(MODEL_B, 1)]);
        // A tail naming someone not enrolled is damage.
        let mut bad = sample();
        bad.others.push(OtherTemplates { model: MODEL_B, by_person: [(99, vec![stored(&emb(1.0))])].into() });
        let e = Gallery::from_bytes(&bad.to_bytes(), &path).unwrap_err().to_string();
        assert!(e.contains("unknown person"), "{e}");
    }

    #[test]
    fn round_trip_and_file_replacement_with_backup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gallery.fg");
        let g = sample();
        g.save(&path).unwrap();
        assert_eq!(Gallery::load(&path).unwrap(), g);
        let mut g2 = g.clone();
        g2.remove("Bob").unwrap();
        g2.save(&path).unwrap();
        assert_eq!(Gallery::load(&path).unwrap(), g2);
        assert_eq!(Gallery::load(&sibling(&path, ".bak")).unwrap(), g, "previous copy kept");
    }

    #[test]
    fn damage_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g");
        let bytes = sample().to_bytes();
        for (what, damaged) in [
            ("flipped bit", {
                let mut b = bytes.clone();
                b[HEADER + 5] ^= 0x10;
                b
            }),
            ("truncated", bytes[..bytes.len() - 7].to_vec()),
            ("short header", bytes[..10].to_vec()),
        ] {
            std::fs::write(&path, &damaged).unwrap();
            let err = Gallery::load(&path).unwrap_err();
            assert!(matches!(err, StoreError::Corrupt { .. }), "{what}: {err}");
            assert!(err.to_string().contains(".bak"), "{what}: message names the backup: {err}");
        }
        std::fs::write(&path, b"hello").unwrap();
        assert!(matches!(Gallery::load(&path), Err(StoreError::Format { .. })));
        // Every single-byte change of the body and every truncation is refused,
        // and the streaming reader names a changed body by its checksum.
        for i in HEADER..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x41;
            match Gallery::from_bytes(&b, &path) {
                Err(StoreError::Corrupt { why, .. }) => assert_eq!(why, "checksum mismatch", "byte {i}"),
                other => panic!("byte {i} changed: {other:?}"),
            }
        }
        for n in 0..bytes.len() {
            assert!(Gallery::from_bytes(&bytes[..n], &path).is_err(), "cut at {n}");
        }
    }

    #[test]
    fn enrolment_rules() {
        let mut g = sample();
        assert!(matches!(g.add_person("Cy", vec![emb(9.0)], MODEL_B, 0), Err(StoreError::ModelMismatch { .. })));
        assert!(g.add_person("Ada", vec![emb(9.0)], MODEL_A, 0).is_err(), "duplicate name");
        assert!(g.add_person("", vec![emb(9.0)], MODEL_A, 0).is_err());
        assert!(g.add_person("Eve", vec![], MODEL_A, 0).is_err());
        let mut nan = emb(2.0);
        nan[3] = f32::NAN;
        assert!(g.add_person("Eve", vec![nan], MODEL_A, 0).is_err());
        assert_eq!(g.people().len(), 2, "nothing changed");
        g.rename("Bob", "Robert").unwrap();
        assert!(g.by_name("Robert").is_some() && g.by_name("Bob").is_none());
    }

    #[test]
    fn identify_finds_the_nearest_person_with_margin() {
        let g = sample();
        match g.identify(&emb(1.05), 0.6) {
            Identification::Known { index, distance, margin } => {
                assert_eq!(g.people()[index].name, "Ada");
                assert!(distance < 0.2 && margin > 0.0);
            }
            other => panic!("{other:?}"),
        }
        // Same answer as the generic implementation, also in a crowd of near look-alikes.
        let mut crowd = Gallery::new(MODEL_A);
        for i in 0..300 {
            let t = emb(1.0 + i as f32 * 0.002);
            crowd.add_person(&format!("p{i}"), vec![t, emb(40.0 + i as f32)], MODEL_A, 0).unwrap();
        }
        let crowd_templates: Vec<Vec<Embedding>> = crowd.people().iter().map(Person::templates).collect();
        for probe in [emb(1.0), emb(1.3), emb(1.55), emb(60.0)] {
            let generic =
                facegate_core::matching::identify(&probe, crowd_templates.iter().map(|t| &t[..]), 0.6, TemplateScore::Min);
            assert_eq!(crowd.identify(&probe, 0.6), generic);
        }
        let g_templates: Vec<Vec<Embedding>> = g.people().iter().map(Person::templates).collect();
        let generic = facegate_core::matching::identify(&emb(1.05), g_templates.iter().map(|t| &t[..]), 0.6, TemplateScore::Min);
        assert_eq!(g.identify(&emb(1.05), 0.6), generic);
        assert!(matches!(g.identify(&emb(1.05), 0.0), Identification::Unknown { .. }));
        assert!(matches!(Gallery::new(MODEL_A).identify(&emb(1.0), 0.6), Identification::Unknown { .. }));
    }

    #[test]
    fn f16_storage_moves_distances_by_less_than_a_thousandth() {
        // Embedding-like vectors: components of ±0.05–0.2, norms near 1.
        let a = emb(3.0).map(|v| v * 1.4);
        let mut g = Gallery::new(MODEL_A);
        g.add_person("a", vec![a], MODEL_A, 0).unwrap();
        for seed in [3.01f32, 3.2, 5.0, 9.0] {
            let probe = emb(seed).map(|v| v * 1.4);
            let exact = facegate_core::distance(&probe, &a);
            let stored = facegate_core::distance(&probe, &g.people()[0].template(0));
            assert!((exact - stored).abs() < 1e-3, "{exact} vs {stored}");
        }
        // Values f16 cannot hold are refused, not turned into infinities.
        let mut huge = a;
        huge[7] = 1e6;
        assert!(matches!(g.add_person("b", vec![huge], MODEL_A, 0), Err(StoreError::Invalid(_))));
    }

    #[test]
    fn version_1_files_still_load() {
        let v1 = BodyV1 {
            model_id: MODEL_A.to_hex(),
            next_id: 8,
            people: vec![PersonRecordV1 {
                id: 7,
                name: "Ada".into(),
                created: 5,
                templates: vec![emb(1.0).to_vec(), emb(2.0).to_vec()],
            }],
        };
        let body = postcard::to_stdvec(&v1).unwrap();
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        bytes.extend_from_slice(&body);
        let g = Gallery::from_bytes(&bytes, Path::new("old.fg")).unwrap();
        let ada = g.by_name("Ada").unwrap();
        assert_eq!((ada.id, ada.created, ada.template_count()), (7, 5, 2));
        assert!(facegate_core::distance(&ada.template(1), &emb(2.0)) < 1e-3);
        // Saved again, it is version 2, reads back equal, and the next id survives.
        let again = g.to_bytes();
        assert_eq!(u32::from_le_bytes(again[4..8].try_into().unwrap()), VERSION);
        let mut g2 = Gallery::from_bytes(&again, Path::new("new.fg")).unwrap();
        assert_eq!(g2, g);
        assert_eq!(g2.add_person("Bo", vec![emb(3.0)], MODEL_A, 0).unwrap(), 8);
        // A template cut short is refused as corrupt, not misread.
        let mut bad = v1;
        bad.people[0].templates[0].pop();
        let body = postcard::to_stdvec(&bad).unwrap();
        let mut bytes = bytes[..8].to_vec();
        bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        bytes.extend_from_slice(&body);
        assert!(matches!(Gallery::from_bytes(&bytes, Path::new("bad.fg")), Err(StoreError::Corrupt { .. })));
    }
}
