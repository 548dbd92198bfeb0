//! A gallery file and its copy in memory.

use crate::wire::wire_error;
use facegate_core::ModelId;
use facegate_protocol::WireError;
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
    current: RwLock<Gallery>,
}

impl GalleryHome {
    /// A home for an already loaded gallery.
    pub fn new(path: &Path, gallery: Gallery) -> Self {
        GalleryHome { path: path.to_path_buf(), current: RwLock::new(gallery) }
    }

    /// Loads `path`, or starts an empty gallery for `model` when there is no
    /// file. A damaged file, or one of another model, is an error: it is never
    /// overwritten here.
    pub fn open(path: &Path, model: ModelId) -> Result<Self, StoreError> {
        let gallery = if path.exists() { Gallery::load(path)? } else { Gallery::new(model) };
        if gallery.model_id() != model {
            return Err(StoreError::ModelMismatch { expected: model, found: gallery.model_id() });
        }
        Ok(GalleryHome::new(path, gallery))
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
        next.save(&self.path).map_err(wire_error)?;
        self.swap(next);
        Ok(out)
    }

    /// Replaces the file with `bytes` (already checked to be `gallery`) and swaps it in.
    pub fn replace(&self, bytes: &[u8], gallery: Gallery) -> Result<(), WireError> {
        facegate_store::atomic::replace(&self.path, bytes, true).map_err(wire_error)?;
        self.swap(gallery);
        Ok(())
    }

    fn swap(&self, next: Gallery) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = next;
    }
}
