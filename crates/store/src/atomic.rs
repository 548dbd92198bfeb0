//! Replacing a file so that a power cut leaves either the old or the new content.

use crate::{io, Result};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `path` with `suffix` appended to its file name.
pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// Makes a rename in `path`'s directory durable. Windows cannot open a
/// directory as a file through std, and NTFS journals the rename itself.
fn fsync_dir(path: &Path) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if cfg!(windows) {
        return Ok(());
    }
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

fn write_synced_mode(path: &Path, bytes: &[u8], private: bool) -> Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    // On Windows the file inherits the folder's ACL: a user's profile is theirs alone.
    #[cfg(not(unix))]
    let _ = private;
    let mut f = options.open(path).map_err(io(path))?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(0o600)).map_err(io(path))?;
    }
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(io(path))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    write_synced_mode(path, bytes, false)
}

/// Like [`replace`] without a backup, for secrets: the file is readable by its owner only (0600).
pub fn replace_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = sibling(path, ".tmp");
    write_synced_mode(&tmp, bytes, true).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })?;
    fs::rename(&tmp, path).map_err(io(path))?;
    fsync_dir(path)
}

/// Writes `bytes` to `path` atomically: temp file + fsync + rename + fsync of
/// the directory. When `backup` is set, the current content is first copied to
/// `<path>.bak` the same way, so a good previous copy always exists.
/// On any error (disk full, …) the original file is untouched.
pub fn replace(path: &Path, bytes: &[u8], backup: bool) -> Result<()> {
    if backup && path.exists() {
        let old = fs::read(path).map_err(io(path))?;
        let bak = sibling(path, ".bak");
        let bak_tmp = sibling(path, ".bak.tmp");
        write_synced(&bak_tmp, &old).inspect_err(|_| {
            let _ = fs::remove_file(&bak_tmp);
        })?;
        fs::rename(&bak_tmp, &bak).map_err(io(&bak))?;
    }
    let tmp = sibling(path, ".tmp");
    write_synced(&tmp, bytes).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })?;
    fs::rename(&tmp, path).map_err(io(path))?;
    fsync_dir(path)
}
