//! What a disk may hold after a power cut, given the operations made before it.
//!
//! The rules (after SQLite's crash VFS, ALICE and CrashMonkey):
//! - a file's data and length are durable once the file is synced; before,
//!   any subset of its writes may have reached the disk, each write torn into
//!   the 512-byte sectors it covers (so also reordered);
//! - a creation, rename or removal is durable once its directory is synced;
//!   before, any subset of them may have happened (in their order);
//! - a sector never written reads as zeros.

use facegate_store::disk::Op;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The size of a sector: the unit a write is torn in.
pub const SECTOR: u64 = 512;

/// A change to one file not yet synced.
#[derive(Debug, Clone)]
enum Pending {
    Len(u64),
    Sector { offset: u64, bytes: Vec<u8> },
}

/// A change to a directory not yet synced.
#[derive(Debug, Clone)]
enum DirChange {
    Link(PathBuf, usize),
    Rename(PathBuf, PathBuf),
    Unlink(PathBuf),
}

impl DirChange {
    fn dir(&self) -> &Path {
        match self {
            DirChange::Link(p, _) | DirChange::Rename(_, p) | DirChange::Unlink(p) => facegate_store::disk::parent(p),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct File {
    durable: Vec<u8>,
    pending: Vec<Pending>,
}

/// The files a disk holds: name → content.
pub type Files = BTreeMap<PathBuf, Vec<u8>>;

/// The disk as the operations so far left it: what is durable and what is pending.
#[derive(Debug, Clone, Default)]
pub struct Disk {
    files: Vec<File>,
    durable_names: BTreeMap<PathBuf, usize>,
    names: BTreeMap<PathBuf, usize>,
    pending_dir: Vec<DirChange>,
}

/// One of the choices a power cut makes: an unsynced change kept or lost.
#[derive(Debug, Clone, Copy)]
enum Unsynced {
    Dir(usize),
    File(usize, usize),
}

fn apply(content: &mut Vec<u8>, change: &Pending) {
    match change {
        Pending::Len(len) => content.resize(*len as usize, 0),
        Pending::Sector { offset, bytes } => {
            let end = *offset as usize + bytes.len();
            if content.len() < end {
                content.resize(end, 0);
            }
            content[*offset as usize..end].copy_from_slice(bytes);
        }
    }
}

impl Disk {
    /// A disk whose files are all durable.
    pub fn new(files: &Files) -> Self {
        let mut disk = Disk::default();
        for (path, content) in files {
            disk.files.push(File { durable: content.clone(), pending: Vec::new() });
            disk.durable_names.insert(path.clone(), disk.files.len() - 1);
        }
        disk.names = disk.durable_names.clone();
        disk
    }

    fn file(&mut self, path: &Path) -> Result<&mut File, String> {
        let id = *self.names.get(path).ok_or_else(|| format!("{} is not open in the model", path.display()))?;
        Ok(&mut self.files[id])
    }

    /// Applies one operation. An operation on a file the model does not know is an error.
    pub fn apply(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::Create { path } => {
                self.files.push(File::default());
                self.names.insert(path.clone(), self.files.len() - 1);
                self.pending_dir.push(DirChange::Link(path.clone(), self.files.len() - 1));
            }
            Op::SetLen { path, len } => self.file(path)?.pending.push(Pending::Len(*len)),
            Op::Write { path, offset, bytes } => {
                let file = self.file(path)?;
                let (mut at, end) = (*offset, offset + bytes.len() as u64);
                while at < end {
                    let next = ((at / SECTOR + 1) * SECTOR).min(end);
                    let piece = bytes[(at - offset) as usize..(next - offset) as usize].to_vec();
                    file.pending.push(Pending::Sector { offset: at, bytes: piece });
                    at = next;
                }
            }
            Op::Sync { path } => {
                let file = self.file(path)?;
                for change in std::mem::take(&mut file.pending) {
                    apply(&mut file.durable, &change);
                }
            }
            Op::Rename { from, to } => {
                let id = self.names.remove(from).ok_or_else(|| format!("renaming {}: no such file", from.display()))?;
                self.names.insert(to.clone(), id);
                self.pending_dir.push(DirChange::Rename(from.clone(), to.clone()));
            }
            Op::Remove { path } => {
                self.names.remove(path).ok_or_else(|| format!("removing {}: no such file", path.display()))?;
                self.pending_dir.push(DirChange::Unlink(path.clone()));
            }
            Op::SyncDir { dir } => {
                let (now, later): (Vec<_>, Vec<_>) =
                    std::mem::take(&mut self.pending_dir).into_iter().partition(|c| c.dir() == dir);
                for change in &now {
                    change_names(&mut self.durable_names, change);
                }
                self.pending_dir = later;
            }
            Op::Mark(_) => {}
        }
        Ok(())
    }

    fn unsynced(&self) -> Vec<Unsynced> {
        let mut all: Vec<Unsynced> = (0..self.pending_dir.len()).map(Unsynced::Dir).collect();
        for (id, file) in self.files.iter().enumerate() {
            all.extend((0..file.pending.len()).map(|k| Unsynced::File(id, k)));
        }
        all
    }

    /// The files on the disk when exactly the unsynced changes `kept` reached it.
    fn after_cut(&self, unsynced: &[Unsynced], kept: &[bool]) -> Files {
        let mut names = self.durable_names.clone();
        let mut contents: Vec<Vec<u8>> = self.files.iter().map(|f| f.durable.clone()).collect();
        for (choice, keep) in unsynced.iter().zip(kept) {
            if !keep {
                continue;
            }
            match *choice {
                Unsynced::Dir(k) => change_names(&mut names, &self.pending_dir[k]),
                Unsynced::File(id, k) => apply(&mut contents[id], &self.files[id].pending[k]),
            }
        }
        names.into_iter().map(|(path, id)| (path, contents[id].clone())).collect()
    }

    /// The distinct disks a power cut now may leave: every subset of the
    /// unsynced changes when there are at most `exhaustive` of them, else a
    /// systematic sample (none, all, each prefix and suffix, each one alone and
    /// each one left out) and `random` random subsets.
    pub fn cuts(&self, exhaustive: usize, random: usize, seed: u64) -> Vec<Files> {
        let unsynced = self.unsynced();
        let n = unsynced.len();
        let mut choices: Vec<Vec<bool>> = Vec::new();
        if n <= exhaustive {
            choices.extend((0..1u64 << n).map(|mask| (0..n).map(|k| mask >> k & 1 == 1).collect()));
        } else {
            for k in 0..=n {
                choices.push((0..n).map(|j| j < k).collect());
                choices.push((0..n).map(|j| j >= k).collect());
            }
            for k in 0..n {
                choices.push((0..n).map(|j| j == k).collect());
                choices.push((0..n).map(|j| j != k).collect());
            }
            let mut state = seed | 1;
            for _ in 0..random {
                choices.push(
                    (0..n)
                        .map(|_| {
                            // xorshift64: reproducible without a dependency.
                            state ^= state << 13;
                            state ^= state >> 7;
                            state ^= state << 17;
                            state & 1 == 1
                        })
                        .collect(),
                );
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        choices.iter().map(|kept| self.after_cut(&unsynced, kept)).filter(|files| seen.insert(files.clone())).collect()
    }
}

fn change_names(names: &mut BTreeMap<PathBuf, usize>, change: &DirChange) {
    match change {
        DirChange::Link(path, id) => {
            names.insert(path.clone(), *id);
        }
        DirChange::Rename(from, to) => {
            // A rename of a name whose creation did not reach the disk did not either.
            if let Some(id) = names.remove(from) {
                names.insert(to.clone(), id);
            }
        }
        DirChange::Unlink(path) => {
            names.remove(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str) -> PathBuf {
        PathBuf::from("/d").join(name)
    }

    fn disk(ops: &[Op]) -> Disk {
        let mut disk = Disk::new(&Files::from([(p("f"), b"old".to_vec())]));
        for op in ops {
            disk.apply(op).unwrap();
        }
        disk
    }

    fn contents(cuts: &[Files], name: &str) -> std::collections::BTreeSet<Option<Vec<u8>>> {
        cuts.iter().map(|files| files.get(&p(name)).cloned()).collect()
    }

    #[test]
    fn an_unsynced_write_may_be_lost_or_torn_at_sectors_a_synced_one_stays() {
        let write = Op::Write { path: p("f"), offset: 0, bytes: vec![7; 600] };
        let cuts = disk(std::slice::from_ref(&write)).cuts(12, 0, 1);
        let seen = contents(&cuts, "f");
        assert!(seen.contains(&Some(b"old".to_vec())), "lost");
        assert!(seen.contains(&Some(vec![7; 600])), "whole");
        let mut torn = vec![0u8; 600];
        torn[512..].fill(7);
        torn[..3].copy_from_slice(b"old");
        assert!(seen.contains(&Some(torn)), "the second sector alone");
        assert_eq!(seen.len(), 4);
        let synced = disk(&[write, Op::Sync { path: p("f") }]).cuts(12, 0, 1);
        assert_eq!(contents(&synced, "f"), [Some(vec![7; 600])].into());
    }

    #[test]
    fn a_rename_is_durable_only_once_its_directory_is_synced() {
        let ops = [
            Op::Create { path: p("f.tmp") },
            Op::Write { path: p("f.tmp"), offset: 0, bytes: b"new".to_vec() },
            Op::Sync { path: p("f.tmp") },
            Op::Rename { from: p("f.tmp"), to: p("f") },
        ];
        let cuts = disk(&ops).cuts(12, 0, 1);
        assert_eq!(contents(&cuts, "f"), [Some(b"old".to_vec()), Some(b"new".to_vec())].into());
        assert!(contents(&cuts, "f.tmp").contains(&Some(b"new".to_vec())), "the temporary file may stay");
        let mut synced = disk(&ops);
        synced.apply(&Op::SyncDir { dir: p("") }).unwrap();
        let cuts = synced.cuts(12, 0, 1);
        assert_eq!(contents(&cuts, "f"), [Some(b"new".to_vec())].into());
        assert_eq!(contents(&cuts, "f.tmp"), [None].into());
    }

    #[test]
    fn many_unsynced_changes_are_sampled_not_enumerated() {
        let write = Op::Write { path: p("f"), offset: 0, bytes: vec![1; 40 * 512] };
        let cuts = disk(&[write]).cuts(12, 50, 7);
        assert!(cuts.len() > 100 && cuts.len() < 300, "{}", cuts.len());
        assert!(contents(&cuts, "f").contains(&Some(vec![1; 40 * 512])));
    }
}
