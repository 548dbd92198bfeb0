//! Embeddings cached once per photo: every view the photo pipeline averages
//! (jittered chips, plain and mirrored), so training never runs the network.
//!
//! The cache is append-only and resumable: each record carries its length and
//! a checksum; a torn last record (power cut, Ctrl-C) is cut off on open and
//! its photo embedded again.

use crate::TrainError;
use facegate_core::EMBEDDING_DIM;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"FGFEAT1\n";
/// Bytes of a record's checksum (a sha256 prefix).
const SUM: usize = 8;

/// The views of one photo, each a vector of `D` values: embeddings (the
/// default), or the network's pooled features for training its last layer.
#[derive(Debug, Clone, PartialEq)]
pub struct PhotoFeatures<const D: usize = EMBEDDING_DIM> {
    /// Relative path, `Person/file.jpg`; the folder names the person.
    pub name: String,
    /// Whether a face was detected (else the fallback box was used).
    pub detected: bool,
    /// One vector per view, in the pipeline's order (plain chip first).
    pub views: Vec<[f32; D]>,
}

impl<const D: usize> PhotoFeatures<D> {
    /// The person: the folder part of the name.
    pub fn person(&self) -> &str {
        self.name.split('/').next().unwrap_or(&self.name)
    }

    /// The mean of the views: the photo pipeline's embedding (or its pooled features).
    pub fn mean(&self) -> [f32; D] {
        let mut sum = [0f32; D];
        for v in &self.views {
            sum.iter_mut().zip(v).for_each(|(s, x)| *s += x);
        }
        sum.map(|s| s / self.views.len().max(1) as f32)
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.name.len() + self.views.len() * D * 4);
        out.extend_from_slice(&(self.name.len() as u16).to_le_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out.push(u8::from(self.detected));
        out.push(self.views.len() as u8);
        for v in &self.views {
            v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let name_len = u16::from_le_bytes(bytes.get(..2)?.try_into().ok()?) as usize;
        let name = std::str::from_utf8(bytes.get(2..2 + name_len)?).ok()?.to_string();
        let rest = bytes.get(2 + name_len..)?;
        let (&detected, rest) = rest.split_first()?;
        let (&count, rest) = rest.split_first()?;
        if rest.len() != count as usize * D * 4 {
            return None;
        }
        let views = rest
            .chunks_exact(D * 4)
            .map(|c| std::array::from_fn(|i| f32::from_le_bytes(c[4 * i..4 * i + 4].try_into().expect("4 bytes"))))
            .collect();
        Some(PhotoFeatures { name, detected: detected != 0, views })
    }
}

fn checksum(payload: &[u8]) -> [u8; SUM] {
    Sha256::digest(payload)[..SUM].try_into().expect("prefix")
}

/// A feature cache file: what made it (`key`: model id and pipeline settings)
/// and the photos embedded so far.
pub struct FeatureCache<const D: usize = EMBEDDING_DIM> {
    path: PathBuf,
    key: String,
    file: std::fs::File,
    photos: BTreeMap<String, PhotoFeatures<D>>,
}

impl<const D: usize> FeatureCache<D> {
    /// Opens (or creates) the cache at `path` for features made as `key`
    /// describes. A cache made with another key is refused; a torn last
    /// record is dropped.
    pub fn open(path: &Path, key: &str) -> Result<Self, TrainError> {
        let io = |source| TrainError::Io(path.to_path_buf(), source);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = std::fs::OpenOptions::new().read(true).append(true).create(true).open(path).map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        // The width of a view is part of what made the cache (embeddings: implied).
        let key = if D == EMBEDDING_DIM { key.to_string() } else { format!("{key} dim {D}") };
        let key = key.as_str();
        let header = [MAGIC.as_slice(), key.as_bytes(), b"\n"].concat();
        if bytes.is_empty() {
            file.write_all(&header).map_err(io)?;
            file.sync_all().map_err(io)?;
            return Ok(FeatureCache { path: path.to_path_buf(), key: key.to_string(), file, photos: BTreeMap::new() });
        }
        let corrupt = |why: &str| TrainError::Corrupt { path: path.to_path_buf(), why: why.to_string() };
        if !bytes.starts_with(MAGIC) {
            return Err(corrupt("not a facegate feature cache"));
        }
        let line_end = bytes[MAGIC.len()..].iter().position(|b| *b == b'\n').ok_or_else(|| corrupt("header cut short"))?;
        let found = String::from_utf8_lossy(&bytes[MAGIC.len()..MAGIC.len() + line_end]).into_owned();
        if found != key {
            return Err(TrainError::CacheMismatch { path: path.to_path_buf(), expected: key.to_string(), found });
        }
        let mut photos = BTreeMap::new();
        let mut at = MAGIC.len() + line_end + 1;
        while let Some(len) = bytes.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize) {
            let Some(record) = bytes.get(at + 4..at + 4 + len + SUM) else { break };
            let (payload, sum) = record.split_at(len);
            let Some(photo) = (checksum(payload) == sum).then(|| PhotoFeatures::decode(payload)).flatten() else { break };
            photos.insert(photo.name.clone(), photo);
            at += 4 + len + SUM;
        }
        if at < bytes.len() {
            // A torn tail: keep what is whole, embed the rest again.
            file.set_len(at as u64).map_err(io)?;
        }
        Ok(FeatureCache { path: path.to_path_buf(), key: key.to_string(), file, photos })
    }

    /// The settings the cache was made with.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether the photo is cached.
    pub fn contains(&self, name: &str) -> bool {
        self.photos.contains_key(name)
    }

    /// Appends one photo (written through to the file).
    pub fn add(&mut self, photo: PhotoFeatures<D>) -> Result<(), TrainError> {
        let payload = photo.encode();
        let mut record = Vec::with_capacity(payload.len() + 4 + SUM);
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&payload);
        record.extend_from_slice(&checksum(&payload));
        self.file.write_all(&record).map_err(|source| TrainError::Io(self.path.clone(), source))?;
        self.photos.insert(photo.name.clone(), photo);
        Ok(())
    }

    /// Flushes the file to disk.
    pub fn sync(&self) -> Result<(), TrainError> {
        self.file.sync_data().map_err(|source| TrainError::Io(self.path.clone(), source))
    }

    /// Every cached photo, by name.
    pub fn photos(&self) -> &BTreeMap<String, PhotoFeatures<D>> {
        &self.photos
    }

    /// Consumes the cache, keeping the photos.
    pub fn into_photos(self) -> BTreeMap<String, PhotoFeatures<D>> {
        self.photos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo(name: &str, seed: f32) -> PhotoFeatures {
        PhotoFeatures { name: name.into(), detected: true, views: vec![[seed; EMBEDDING_DIM], [seed + 1.0; EMBEDDING_DIM]] }
    }

    #[test]
    fn records_survive_reopening_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.fgfeat");
        let mut c = FeatureCache::open(&path, "model x").unwrap();
        c.add(photo("A/A_1.jpg", 0.5)).unwrap();
        c.add(photo("B/B_1.jpg", -0.25)).unwrap();
        drop(c);
        let whole = std::fs::metadata(&path).unwrap().len();
        // A power cut in the middle of the next record.
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[200, 1, 0, 0, 7, 7, 7]).unwrap();
        drop(f);
        let c = FeatureCache::open(&path, "model x").unwrap();
        assert_eq!(c.photos().len(), 2);
        assert_eq!(c.photos()["A/A_1.jpg"], photo("A/A_1.jpg", 0.5));
        assert_eq!(c.photos()["B/B_1.jpg"].mean(), [0.25; EMBEDDING_DIM]);
        assert_eq!(c.photos()["B/B_1.jpg"].person(), "B");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole, "torn tail cut off");
    }

    #[test]
    fn a_cache_of_other_settings_or_a_foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.fgfeat");
        FeatureCache::open(&path, "model x").unwrap().add(photo("A/A_1.jpg", 1.0)).unwrap();
        assert!(matches!(FeatureCache::<EMBEDDING_DIM>::open(&path, "model y"), Err(TrainError::CacheMismatch { .. })));
        // Pooled features of the same model are other features.
        assert!(matches!(FeatureCache::<256>::open(&path, "model x"), Err(TrainError::CacheMismatch { .. })));
        let other = dir.path().join("o");
        std::fs::write(&other, b"hello").unwrap();
        assert!(matches!(FeatureCache::<EMBEDDING_DIM>::open(&other, "model x"), Err(TrainError::Corrupt { .. })));
        assert_eq!(std::fs::read(&other).unwrap(), b"hello", "a foreign file is left alone");
    }
}
