//! Every file operation the store makes, in one place, so that a power-loss
//! test can see them.
//!
//! The operations are performed as asked. When a test wraps a piece of work in
//! [`record`], each one under the test's directory is also written down
//! ([`Op`]), from whichever thread made it: what was written where, and which
//! fsync, rename and directory fsync made it durable.
//! A power-loss model (the `facegate-power-loss` crate) replays that list to
//! build every disk a power cut may leave behind. Outside [`record`] nothing is
//! kept.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// One durable-storage operation, as a power-loss model needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A new, empty file was linked under `path` (its name is durable only after its directory's fsync).
    Create {
        /// The new file.
        path: PathBuf,
    },
    /// The file's length was set (a truncation or an extension with zeros).
    SetLen {
        /// The file.
        path: PathBuf,
        /// The new length.
        len: u64,
    },
    /// Bytes were written at an offset (durable only after the file's fsync).
    Write {
        /// The file.
        path: PathBuf,
        /// Where.
        offset: u64,
        /// What.
        bytes: Vec<u8>,
    },
    /// The file's data and length were synced.
    Sync {
        /// The file.
        path: PathBuf,
    },
    /// A name was moved over another (durable only after the directory's fsync).
    Rename {
        /// The old name.
        from: PathBuf,
        /// The new name.
        to: PathBuf,
    },
    /// A name was removed.
    Remove {
        /// The file.
        path: PathBuf,
    },
    /// A directory was synced: its renames, creations and removals are durable.
    SyncDir {
        /// The directory.
        dir: PathBuf,
    },
    /// Not a disk operation: the program under test reached a point it
    /// reports (an append returned, a save was acknowledged).
    Mark(String),
}

/// A recording in progress: the operations under `root`, from any thread
/// (the access log's writer thread too), and the marks of the thread that started it.
struct Recording {
    root: PathBuf,
    owner: std::thread::ThreadId,
    ops: Vec<Op>,
}

static RECORDINGS: Mutex<Vec<Recording>> = Mutex::new(Vec::new());
/// Whether any recording runs: the one check a door pays per operation.
static RECORDING: AtomicBool = AtomicBool::new(false);

fn recordings() -> std::sync::MutexGuard<'static, Vec<Recording>> {
    RECORDINGS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `work`, returning what it returned and the operations made under
/// `root` while it ran (on any thread), with the marks it set.
pub fn record<R>(root: &Path, work: impl FnOnce() -> R) -> (R, Vec<Op>) {
    let owner = std::thread::current().id();
    recordings().push(Recording { root: root.to_path_buf(), owner, ops: Vec::new() });
    RECORDING.store(true, Ordering::SeqCst);
    let out = work();
    let mut all = recordings();
    let at = all.iter().rposition(|r| r.owner == owner && r.root == root).expect("the recording is still there");
    let ops = all.remove(at).ops;
    RECORDING.store(!all.is_empty(), Ordering::SeqCst);
    (out, ops)
}

/// Notes that the program reached `label` (an acknowledgement), when this thread records.
pub fn mark(label: impl Into<String>) {
    if RECORDING.load(Ordering::Relaxed) {
        let owner = std::thread::current().id();
        let label = label.into();
        recordings().iter_mut().filter(|r| r.owner == owner).for_each(|r| r.ops.push(Op::Mark(label.clone())));
    }
}

fn note(path: &Path, op: impl FnOnce() -> Op) {
    if RECORDING.load(Ordering::Relaxed) {
        let mut all = recordings();
        if let Some(r) = all.iter_mut().find(|r| path.starts_with(&r.root)) {
            r.ops.push(op());
        }
    }
}

/// Opens `path` for writing, created or emptied; `private` makes a new file 0600 on Unix.
pub fn create_truncated(path: &Path, private: bool) -> io::Result<File> {
    let existed = path.exists();
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
    let file = options.open(path)?;
    note(path, || match existed {
        true => Op::SetLen { path: path.to_path_buf(), len: 0 },
        false => Op::Create { path: path.to_path_buf() },
    });
    Ok(file)
}

/// Opens `path` for reading and writing, creating it empty when missing; says whether it was created.
pub fn open_or_create(path: &Path) -> io::Result<(File, bool)> {
    let existed = path.exists();
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
    if !existed {
        note(path, || Op::Create { path: path.to_path_buf() });
    }
    Ok((file, !existed))
}

/// Writes all of `bytes` at `offset` of `file` (named `path`).
pub fn write_at(file: &File, path: &Path, bytes: &[u8], offset: u64) -> io::Result<()> {
    crate::positional::write_all_at(file, bytes, offset)?;
    note(path, || Op::Write { path: path.to_path_buf(), offset, bytes: bytes.to_vec() });
    Ok(())
}

/// Sets the length of `file` (named `path`).
pub fn set_len(file: &File, path: &Path, len: u64) -> io::Result<()> {
    file.set_len(len)?;
    note(path, || Op::SetLen { path: path.to_path_buf(), len });
    Ok(())
}

/// Syncs the data and length of `file` (named `path`).
pub fn sync(file: &File, path: &Path) -> io::Result<()> {
    file.sync_all()?;
    note(path, || Op::Sync { path: path.to_path_buf() });
    Ok(())
}

/// Renames `from` over `to`.
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::rename(from, to)?;
    note(to, || Op::Rename { from: from.to_path_buf(), to: to.to_path_buf() });
    Ok(())
}

/// Removes `path`.
pub fn remove(path: &Path) -> io::Result<()> {
    std::fs::remove_file(path)?;
    note(path, || Op::Remove { path: path.to_path_buf() });
    Ok(())
}

/// The directory that holds `path` (`.` for a bare name).
pub fn parent(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Makes the creations, renames and removals in `dir` durable. Windows
/// cannot open a directory as a file through std, and NTFS journals them itself.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    if !cfg!(windows) {
        File::open(dir).and_then(|d| d.sync_all())?;
    }
    note(dir, || Op::SyncDir { dir: dir.to_path_buf() });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_recorded_only_inside_record_and_still_happen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let f = create_truncated(&path, false).unwrap();
        write_at(&f, &path, b"outside", 0).unwrap();
        let ((), ops) = record(dir.path(), || {
            write_at(&f, &path, b"in", 0).unwrap();
            sync(&f, &path).unwrap();
            mark("done");
            rename(&path, &dir.path().join("g")).unwrap();
            sync_dir(dir.path()).unwrap();
        });
        assert_eq!(
            ops,
            vec![
                Op::Write { path: path.clone(), offset: 0, bytes: b"in".to_vec() },
                Op::Sync { path: path.clone() },
                Op::Mark("done".into()),
                Op::Rename { from: path.clone(), to: dir.path().join("g") },
                Op::SyncDir { dir: dir.path().to_path_buf() },
            ]
        );
        assert_eq!(std::fs::read(dir.path().join("g")).unwrap(), b"intside");
        assert!(record(dir.path(), || ()).1.is_empty());
        let elsewhere = tempfile::tempdir().unwrap();
        assert!(record(elsewhere.path(), || write_at(&f, &path, b"x", 0).unwrap()).1.is_empty(), "only under the root");
    }
}
