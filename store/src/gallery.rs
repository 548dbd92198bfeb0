//! The gallery: enrolled people and their face templates, in one checksummed file.
//!
//! Format (`FGGL` v1): magic, version u32, body length u64, CRC-32 of the body
//! u32, then the body (postcard): model id, next person id, people.

use crate::atomic::{replace, sibling};
use crate::{io, Result, StoreError};
use facegate_face::matching::{quantize_i8, Identification, TemplateScore};
use facegate_face::{Embedding, EMBEDDING_DIM};
use serde::{Deserialize, Serialize};
use std::path::Path;

const MAGIC: &[u8; 4] = b"FGGL";
const VERSION: u32 = 1;
const HEADER: usize = 4 + 4 + 8 + 4;

/// Longest accepted name, in bytes.
pub const MAX_NAME: usize = 64;
/// Most templates one person may have.
pub const MAX_TEMPLATES: usize = 16;
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
    /// Face templates (embeddings).
    pub templates: Vec<Embedding>,
}

#[derive(Serialize, Deserialize)]
struct PersonRecord {
    id: u32,
    name: String,
    created: u64,
    templates: Vec<Vec<f32>>,
}

#[derive(Serialize, Deserialize)]
struct Body {
    model_id: String,
    next_id: u32,
    people: Vec<PersonRecord>,
}

/// The gallery in memory, with an int8 copy of all templates for fast search.
#[derive(Debug, Clone, PartialEq)]
pub struct Gallery {
    model_id: String,
    next_id: u32,
    people: Vec<Person>,
    /// For each template in search order: its person's index in `people` and its index there.
    owner: Vec<(u32, u16)>,
    /// int8 copies of all templates back to back (per-template scale), for a
    /// cache-friendly first pass; exact distances come from `people`.
    coarse: Vec<i8>,
    /// Per template: scale/127 and Σq², for the int8 distance.
    coarse_terms: Vec<(f32, f32)>,
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
    Ok(())
}

/// Integer dot product (i8 × i8 → i32), which compilers turn into multiply-add SIMD.
#[inline]
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(x, y)| *x as i16 as i32 * *y as i16 as i32).sum()
}

impl Gallery {
    /// An empty gallery for templates of `model_id`.
    pub fn new(model_id: &str) -> Self {
        Gallery {
            model_id: model_id.to_string(),
            next_id: 1,
            people: Vec::new(),
            owner: Vec::new(),
            coarse: Vec::new(),
            coarse_terms: Vec::new(),
        }
    }

    /// The embedding model the templates were made with.
    pub fn model_id(&self) -> &str {
        &self.model_id
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
            let step = quantize_i8(t, &mut q);
            let q2 = dot_i8(&q, &q) as f32;
            self.coarse.extend_from_slice(&q);
            self.coarse_terms.push((step, q2));
        }
    }

    /// Enrols a new person; refuses templates of another model and duplicate names.
    pub fn add_person(&mut self, name: &str, templates: Vec<Embedding>, model_id: &str, created: u64) -> Result<u32> {
        if model_id != self.model_id {
            return Err(StoreError::ModelMismatch { expected: self.model_id.clone(), found: model_id.to_string() });
        }
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
        self.people.push(Person { id, name: name.to_string(), created, templates });
        self.index_person(self.people.len() - 1);
        Ok(id)
    }

    /// Enrols `name`, idempotently: a repeated enrolment with the very same
    /// templates (a retry after a lost reply) succeeds without change.
    pub fn enroll(&mut self, name: &str, templates: Vec<Embedding>, model_id: &str, created: u64) -> Result<Enrolled> {
        if let Some(p) = self.by_name(name) {
            if model_id == self.model_id && p.templates == templates {
                return Ok(Enrolled { id: p.id, unchanged: true });
            }
        }
        self.add_person(name, templates, model_id, created).map(|id| Enrolled { id, unchanged: false })
    }

    /// Adds templates to someone already enrolled (more photos); returns their count.
    pub fn add_templates(&mut self, name: &str, templates: Vec<Embedding>, model_id: &str) -> Result<usize> {
        if model_id != self.model_id {
            return Err(StoreError::ModelMismatch { expected: self.model_id.clone(), found: model_id.to_string() });
        }
        let i = self.people.iter().position(|p| p.name == name).ok_or_else(|| StoreError::NotFound(name.to_string()))?;
        let mut all = self.people[i].templates.clone();
        all.extend(templates);
        check_templates(&all)?;
        let n = all.len();
        self.people[i].templates = all;
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
                if let Some(d) = facegate_face::matching::person_distance(t, &p.templates, TemplateScore::Min) {
                    if d < threshold && best.is_none_or(|(_, b)| d < b) {
                        best = Some((p, d));
                    }
                }
            }
        }
        best
    }

    /// Removes a person by name; returns their id.
    pub fn remove(&mut self, name: &str) -> Result<u32> {
        let i = self.people.iter().position(|p| p.name == name).ok_or_else(|| StoreError::NotFound(name.to_string()))?;
        let id = self.people.remove(i).id;
        self.reindex();
        Ok(id)
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
    /// exactly in f32, so the result is the exact nearest person unless the
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
            let t = &self.people[owner as usize].templates[k as usize];
            let d2: f32 = t.iter().zip(probe).map(|(a, b)| (a - b) * (a - b)).sum();
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
                facegate_face::matching::identify(probe, self.people.iter().map(|p| &p.templates[..]), threshold, score)
            }
        }
    }

    /// Serialises the gallery (header, checksum, body).
    pub fn to_bytes(&self) -> Vec<u8> {
        let body = Body {
            model_id: self.model_id.clone(),
            next_id: self.next_id,
            people: self
                .people
                .iter()
                .map(|p| PersonRecord {
                    id: p.id,
                    name: p.name.clone(),
                    created: p.created,
                    templates: p.templates.iter().map(|t| t.to_vec()).collect(),
                })
                .collect(),
        };
        let body = postcard::to_stdvec(&body).expect("in-memory serialisation cannot fail");
        let mut out = Vec::with_capacity(HEADER + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Parses and validates a gallery file's bytes; `path` is for messages.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let format = |why: &str| StoreError::Format { path: path.to_path_buf(), why: why.to_string() };
        let corrupt = |why: &str| StoreError::Corrupt {
            path: path.to_path_buf(),
            why: why.to_string(),
            backup: sibling(path, ".bak").display().to_string(),
        };
        if bytes.len() < HEADER || &bytes[..4] != MAGIC {
            return Err(if bytes.len() < HEADER && bytes.starts_with(&MAGIC[..bytes.len().min(4)]) {
                corrupt("truncated header")
            } else {
                format("not a facegate gallery")
            });
        }
        let version = u32::from_le_bytes(bytes[4..8].try_into().expect("4"));
        if version != VERSION {
            return Err(format(&format!("gallery version {version}, this build reads {VERSION}")));
        }
        let len = u64::from_le_bytes(bytes[8..16].try_into().expect("8"));
        let crc = u32::from_le_bytes(bytes[16..20].try_into().expect("4"));
        let body = &bytes[HEADER..];
        if body.len() as u64 != len {
            return Err(corrupt(&format!("body is {} bytes, header says {len}", body.len())));
        }
        if crc32fast::hash(body) != crc {
            return Err(corrupt("checksum mismatch"));
        }
        let body: Body = postcard::from_bytes(body).map_err(|e| corrupt(&format!("undecodable body: {e}")))?;
        let mut people = Vec::with_capacity(body.people.len());
        for r in body.people {
            let templates = r
                .templates
                .iter()
                .map(|t| <[f32; EMBEDDING_DIM]>::try_from(&t[..]).map_err(|_| corrupt("template of the wrong length")))
                .collect::<Result<Vec<_>>>()?;
            people.push(Person { id: r.id, name: r.name, created: r.created, templates });
        }
        let mut g = Gallery { people, next_id: body.next_id, ..Gallery::new(&body.model_id) };
        g.reindex();
        Ok(g)
    }

    /// Loads a gallery file. A damaged file is refused (never repaired or
    /// overwritten here); its previous good copy is `<file>.bak`.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(io(path))?;
        Self::from_bytes(&bytes, path)
    }

    /// Saves atomically, keeping the previous file as `<file>.bak`.
    pub fn save(&self, path: &Path) -> Result<()> {
        replace(path, &self.to_bytes(), true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emb(seed: f32) -> Embedding {
        std::array::from_fn(|i| ((i as f32 * 0.37 + seed).sin()) * 0.1)
    }

    fn sample() -> Gallery {
        let mut g = Gallery::new("model-a");
        g.add_person("Ada", vec![emb(1.0), emb(1.1)], "model-a", 10).unwrap();
        g.add_person("Bob", vec![emb(5.0)], "model-a", 20).unwrap();
        g
    }

    #[test]
    fn enrolment_is_idempotent_and_typed() {
        let mut g = sample();
        let before = g.clone();
        assert_eq!(g.enroll("Ada", vec![emb(1.0), emb(1.1)], "model-a", 99).unwrap(), Enrolled { id: 1, unchanged: true });
        assert_eq!(g, before, "a retried enrolment changes nothing");
        assert!(matches!(g.enroll("Ada", vec![emb(2.0)], "model-a", 99), Err(StoreError::AlreadyEnrolled(_))));
        assert!(matches!(g.remove("Zed"), Err(StoreError::NotFound(_))));
        assert!(matches!(g.enroll("Cy", vec![emb(2.0)], "model-b", 99), Err(StoreError::ModelMismatch { .. })));
        assert_eq!(g, before);
        assert_eq!(g.add_templates("Bob", vec![emb(5.1)], "model-a").unwrap(), 2);
        assert!(g.add_templates("Bob", vec![emb(5.2); MAX_TEMPLATES], "model-a").is_err(), "cap on templates");
        assert_eq!(g.by_name("Bob").unwrap().templates.len(), 2);
        let (p, d) = g.similar(&[emb(5.0)], 0.1, None).unwrap();
        assert_eq!((p.name.as_str(), d), ("Bob", 0.0));
        assert!(g.similar(&[emb(5.0)], 0.1, Some("Bob")).is_none());
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
    }

    #[test]
    fn enrolment_rules() {
        let mut g = sample();
        assert!(matches!(g.add_person("Cy", vec![emb(9.0)], "model-b", 0), Err(StoreError::ModelMismatch { .. })));
        assert!(g.add_person("Ada", vec![emb(9.0)], "model-a", 0).is_err(), "duplicate name");
        assert!(g.add_person("", vec![emb(9.0)], "model-a", 0).is_err());
        assert!(g.add_person("Eve", vec![], "model-a", 0).is_err());
        let mut nan = emb(2.0);
        nan[3] = f32::NAN;
        assert!(g.add_person("Eve", vec![nan], "model-a", 0).is_err());
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
        let mut crowd = Gallery::new("model-a");
        for i in 0..300 {
            let t = emb(1.0 + i as f32 * 0.002);
            crowd.add_person(&format!("p{i}"), vec![t, emb(40.0 + i as f32)], "model-a", 0).unwrap();
        }
        for probe in [emb(1.0), emb(1.3), emb(1.55), emb(60.0)] {
            let generic = facegate_face::matching::identify(
                &probe,
                crowd.people().iter().map(|p| &p.templates[..]),
                0.6,
                TemplateScore::Min,
            );
            assert_eq!(crowd.identify(&probe, 0.6), generic);
        }
        let generic =
            facegate_face::matching::identify(&emb(1.05), g.people().iter().map(|p| &p.templates[..]), 0.6, TemplateScore::Min);
        assert_eq!(g.identify(&emb(1.05), 0.6), generic);
        assert!(matches!(g.identify(&emb(1.05), 0.0), Identification::Unknown { .. }));
        assert!(matches!(Gallery::new("m").identify(&emb(1.0), 0.6), Identification::Unknown { .. }));
    }
}
