//! Replacing a file so that a power cut leaves either the old or the new content.

use crate::disk;
use crate::{io, Result};
use std::path::{Path, PathBuf};

/// `path` with `suffix` appended to its file name.
pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// Makes a rename in `path`'s directory durable.
fn fsync_dir(path: &Path) -> Result<()> {
    let dir = disk::parent(path);
    disk::sync_dir(dir).map_err(io(dir))
}

fn write_synced_mode(path: &Path, bytes: &[u8], private: bool) -> Result<()> {
    let f = disk::create_truncated(path, private).map_err(io(path))?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io(path))?;
    }
    disk::write_at(&f, path, bytes, 0).and_then(|_| disk::sync(&f, path)).map_err(io(path))
}

/// Writes `bytes` to a temporary sibling of `path`, synced, and renames it
/// over `path`; the temporary file is removed on failure.
fn swap_in(path: &Path, suffix: &str, bytes: &[u8], private: bool) -> Result<()> {
    let tmp = sibling(path, suffix);
    write_synced_mode(&tmp, bytes, private).inspect_err(|_| {
        let _ = disk::remove(&tmp);
    })?;
    disk::rename(&tmp, path).map_err(io(path))
}

/// Like [`replace`] without a backup, for secrets: the file is readable by its owner only (0600).
pub fn replace_private(path: &Path, bytes: &[u8]) -> Result<()> {
    swap_in(path, ".tmp", bytes, true)?;
    fsync_dir(path)
}

/// Writes `bytes` to `path` atomically: temp file + fsync + rename + fsync of
/// the directory. When `backup` is set, the current content is first copied to
/// `<path>.bak` the same way, so a good previous copy always exists.
/// On any error (disk full, …) the original file is untouched.
pub fn replace(path: &Path, bytes: &[u8], backup: bool) -> Result<()> {
    if backup && path.exists() {
        let old = std::fs::read(path).map_err(io(path))?;
        swap_in(&sibling(path, ".bak"), ".tmp", &old, false)?;
    }
    swap_in(path, ".tmp", bytes, false)?;
    fsync_dir(path)
}
