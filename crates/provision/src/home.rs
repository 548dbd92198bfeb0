//! A gallery file and its copy in memory.

use crate::wire::wire_error;
use facegate_core::{Embedding, ModelId};
use facegate_protocol::WireError;
use facegate_site::DataKey;
use facegate_store::{Gallery, StoreError};
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard};

/// The gallery in memory and the file it is saved to. Readers (the frame
/// loop) only ever take the read lock; a change is made on a copy, saved
/// atomically and then swapped in, so the lock is held for a pointer swap,
/// never for disk I/O, and a full disk or a power cut leaves the old gallery,
/// on disk and in memory.
pub struct GalleryHome {
    path: PathBuf,
    /// The key that seals the file at rest, if any.
    seal: Option<DataKey>,
    current: RwLock<Gallery>,
    /// A trained metric head, applied to templates and probes alike.
    metric: Option<Metric>,
    /// The gallery with the metric applied to every template (searched when a metric is set).
    mapped: RwLock<Gallery>,
}

/// A trained metric: maps an embedding into the space where distances are compared.
pub type Metric = std::sync::Arc<dyn Fn(&Embedding) -> Embedding + Send + Sync>;

impl GalleryHome {
    /// A home for an already loaded gallery.
    pub fn new(path: &Path, gallery: Gallery) -> Self {
        let empty = Gallery::new(gallery.model_id());
        GalleryHome {
            path: path.to_path_buf(),
            seal: None,
            current: RwLock::new(gallery),
            metric: None,
            mapped: RwLock::new(empty),
        }
    }

    /// Searches in a trained metric from now on: templates stay raw in the
    /// file (no re-enrolment), a mapped copy is kept for searching.
    pub fn with_metric(mut self, metric: Metric) -> Self {
        let mapped = self.read().mapped(|e| metric(e));
        *self.mapped.get_mut().unwrap_or_else(|p| p.into_inner()) = mapped;
        self.metric = Some(metric);
        self
    }

    /// A probe in the space [`GalleryHome::matching`] searches: mapped by the metric when one is set.
    pub fn map_probe(&self, probe: &Embedding) -> Embedding {
        self.metric.as_ref().map_or(*probe, |m| m(probe))
    }

    /// The gallery to search with a probe from [`GalleryHome::map_probe`]:
    /// the mapped copy with a metric, the gallery itself without.
    pub fn matching(&self) -> RwLockReadGuard<'_, Gallery> {
        match self.metric {
            Some(_) => self.mapped.read().unwrap_or_else(|p| p.into_inner()),
            None => self.read(),
        }
    }

    /// Loads `path`, or starts an empty gallery for `model` when there is no
    /// file. A damaged file, or one of another model, is an error: it is never
    /// overwritten here.
    pub fn open(path: &Path, model: ModelId) -> Result<Self, StoreError> {
        Self::open_sealed(path, model, None)
    }

    /// As [`GalleryHome::open`], the file sealed at rest with `seal`: a
    /// sealed file opens only with its key, and a plain one is sealed at
    /// once (its previous copy too). Without a key, a sealed file is an error.
    pub fn open_sealed(path: &Path, model: ModelId, seal: Option<DataKey>) -> Result<Self, StoreError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(StoreError::Io { path: path.to_path_buf(), source: e }),
        };
        let was_plain = bytes.as_ref().is_some_and(|b| !at_rest::is_sealed(b));
        let mut gallery = match bytes {
            Some(b) => Gallery::from_bytes(&at_rest::open(&b, seal.as_ref(), path)?, path)?,
            None => Gallery::new(model),
        };
        // A gallery enrolled with both networks searches the one running here;
        // a mismatch names the file's model as expected and `model` as found.
        gallery.switch_to(model)?;
        let home = GalleryHome { seal, ..GalleryHome::new(path, gallery) };
        if was_plain && home.seal.is_some() {
            home.write(&home.read().to_bytes())?;
            // The plain file is now the previous copy: sealed too.
            let backup = facegate_store::atomic::sibling(path, ".bak");
            let sealed = std::fs::read(path).map_err(|e| StoreError::Io { path: path.to_path_buf(), source: e })?;
            facegate_store::atomic::replace(&backup, &sealed, false)?;
        }
        Ok(home)
    }

    /// Saves `bytes` (a gallery's) atomically, sealed when a key is set.
    fn write(&self, bytes: &[u8]) -> Result<(), StoreError> {
        match &self.seal {
            Some(key) => facegate_store::atomic::replace(&self.path, &at_rest::seal(bytes, key)?, true),
            None => facegate_store::atomic::replace(&self.path, bytes, true),
        }
    }

    /// The gallery file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The gallery for reading (a poisoned lock still holds a consistent
    /// gallery: writers only swap whole galleries).
    pub fn read(&self) -> RwLockReadGuard<'_, Gallery> {
        self.current.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Copy, change, save, swap: all or nothing, on disk and in memory.
    pub fn change<T>(&self, f: impl FnOnce(&mut Gallery) -> Result<T, WireError>) -> Result<T, WireError> {
        let mut next = self.read().clone();
        let out = f(&mut next)?;
        self.write(&next.to_bytes()).map_err(wire_error)?;
        self.swap(next);
        Ok(out)
    }

    /// Replaces the file with `bytes` (already checked to be `gallery`) and swaps it in.
    pub fn replace(&self, bytes: &[u8], gallery: Gallery) -> Result<(), WireError> {
        self.write(bytes).map_err(wire_error)?;
        self.swap(gallery);
        Ok(())
    }

    /// Swaps `next` in. The old galleries are freed after the locks are
    /// released (a thousand people are thousands of allocations: the frame
    /// loop must not wait for them), and the freed memory is handed back to
    /// the system, so the door's resident size follows its gallery.
    fn swap(&self, next: Gallery) {
        let old_mapped = self.metric.as_ref().map(|metric| {
            let mapped = next.mapped(|e| metric(e));
            std::mem::replace(&mut *self.mapped.write().unwrap_or_else(|p| p.into_inner()), mapped)
        });
        let old = std::mem::replace(&mut *self.current.write().unwrap_or_else(|p| p.into_inner()), next);
        drop((old, old_mapped));
        trim_heap();
    }
}

/// Returns free memory at the top of glibc's heaps to the system.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The gallery file sealed at rest: a magic, then the gallery's bytes
/// encrypted and authenticated (XChaCha20-Poly1305) with the door's key.
pub mod at_rest {
    use facegate_site::DataKey;
    use facegate_store::StoreError;
    use std::path::Path;

    const MAGIC: &[u8; 8] = b"FGSEALD1";
    const CONTEXT: &[u8] = b"facegate gallery at rest";

    /// Whether `bytes` are a sealed gallery file.
    pub fn is_sealed(bytes: &[u8]) -> bool {
        bytes.starts_with(MAGIC)
    }

    /// `gallery` (a gallery's bytes) sealed with `key`.
    pub fn seal(gallery: &[u8], key: &DataKey) -> Result<Vec<u8>, StoreError> {
        let sealed = key
            .seal(CONTEXT, gallery)
            .map_err(|e| StoreError::Io { path: "gallery".into(), source: std::io::Error::other(e.to_string()) })?;
        Ok([MAGIC.as_slice(), &sealed].concat())
    }

    /// A gallery file's bytes, opened when sealed (with `key`), as they are when plain.
    pub fn open(bytes: &[u8], key: Option<&DataKey>, path: &Path) -> Result<Vec<u8>, StoreError> {
        let Some(sealed) = bytes.strip_prefix(MAGIC) else { return Ok(bytes.to_vec()) };
        let why = |why: &str| StoreError::Format { path: path.to_path_buf(), why: why.into() };
        let key = key.ok_or_else(|| why("the gallery is sealed: set paths.gallery_key to its key's source"))?;
        key.open(CONTEXT, sealed)
            .map_err(|_| why("the sealed gallery does not open with this device's key (another device's card, or damage)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use facegate_core::Identification;
    use std::sync::Arc;

    fn emb(x: f32, y: f32) -> Embedding {
        let mut e = [0f32; facegate_core::EMBEDDING_DIM];
        (e[0], e[1]) = (x, y);
        e
    }

    /// A model, a gallery file's path in `dir`, and a gallery of Ada at `(x, y)`.
    pub(super) fn ada(dir: &Path, x: f32, y: f32) -> (ModelId, PathBuf, Gallery) {
        let model = ModelId::of_file_bytes(b"m");
        let mut g = Gallery::new(model);
        g.add_person("Ada Lovelace", vec![emb(x, y)], model, 0).unwrap();
        (model, dir.join("g.fg"), g)
    }

    #[test]
    fn a_metric_searches_mapped_templates_and_follows_every_change() {
        let dir = tempfile::tempdir().unwrap();
        let (model, path, g) = ada(dir.path(), 0.0, 0.0);
        // A metric that ignores the second coordinate (say, lighting).
        let home = GalleryHome::new(&path, g).with_metric(Arc::new(|e: &Embedding| {
            let mut m = *e;
            m[1] = 0.0;
            m
        }));
        let probe = emb(0.1, 0.9);
        assert!(matches!(home.read().identify(&probe, 0.5), Identification::Unknown { .. }), "raw: too far");
        let found = home.matching().identify(&home.map_probe(&probe), 0.5);
        assert!(matches!(found, Identification::Known { index: 0, distance, .. } if (distance - 0.1).abs() < 1e-3), "{found:?}");
        // A person enrolled later is searched in the metric too; the file keeps raw templates.
        home.change(|g| g.add_person("Bob", vec![emb(5.0, 3.0)], model, 0).map(|_| ()).map_err(wire_error)).unwrap();
        let found = home.matching().identify(&home.map_probe(&emb(5.0, 0.0)), 0.5);
        assert!(matches!(found, Identification::Known { index: 1, .. }), "{found:?}");
        assert_eq!(Gallery::load(&path).unwrap().people()[1].template(0)[1], 3.0);
    }
}

#[cfg(test)]
mod sealing {
    use super::*;

    #[test]
    fn a_sealed_gallery_opens_only_with_its_key_and_a_plain_one_is_sealed_with_its_copy() {
        let dir = tempfile::tempdir().unwrap();
        let (model, path, g) = super::tests::ada(dir.path(), 0.25, 0.25);
        g.save(&path).unwrap();
        g.save(&path).unwrap(); // a plain previous copy too
        let key = DataKey::generate().unwrap();
        let home = GalleryHome::open_sealed(&path, model, Some(key.clone())).unwrap();
        assert_eq!(home.read().people().len(), 1);
        let name = b"Ada Lovelace";
        for file in [path.clone(), facegate_store::atomic::sibling(&path, ".bak")] {
            let bytes = std::fs::read(&file).unwrap();
            assert!(at_rest::is_sealed(&bytes), "{} sealed", file.display());
            assert!(!bytes.windows(name.len()).any(|w| w == name), "no name in {}", file.display());
        }
        home.change(|g| g.add_person("Bob", vec![[0.5; facegate_core::EMBEDDING_DIM]], model, 0).map(|_| ()).map_err(wire_error))
            .unwrap();
        assert!(at_rest::is_sealed(&std::fs::read(&path).unwrap()), "changes are saved sealed");
        assert_eq!(GalleryHome::open_sealed(&path, model, Some(key)).unwrap().read().people().len(), 2);
        let other = GalleryHome::open_sealed(&path, model, Some(DataKey::generate().unwrap()));
        assert!(other.err().unwrap().to_string().contains("does not open"), "another card's key");
        assert!(GalleryHome::open(&path, model).err().unwrap().to_string().contains("gallery_key"), "no key");
    }
}
