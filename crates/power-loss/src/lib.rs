#![warn(missing_docs)]
//! Power-loss exploration for facegate's files.
//!
//! [`explore`] runs a piece of the program (a gallery save, log appends, a
//! site apply) with the store's file operations recorded
//! ([`facegate_store::disk`]), then, at every cut point between two
//! operations, builds each disk a power cut may leave ([`model`]) and asks the
//! program's own readers whether that disk is acceptable. What "acceptable"
//! means is the caller's check: old or new and never a mix, every
//! acknowledged record present, a door that cannot read its state locked.

pub mod model;

use facegate_store::disk::{self, Op};
use model::{Disk, Files};
use std::path::Path;

/// How many unsynced changes are explored in every combination; beyond, they are sampled.
pub const EXHAUSTIVE: usize = 12;
/// Random subsets drawn per cut point when sampling.
pub const RANDOM: usize = 256;
/// Where [`Report::finish`] appends its line, for `tests/power-loss/run.sh`.
pub const REPORT_ENV: &str = "FACEGATE_POWER_LOSS_REPORT";

/// What an exploration found.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// The file (or files) explored.
    pub file: String,
    /// Points between two operations where the power was cut.
    pub cut_points: usize,
    /// Distinct disks checked, summed over the cut points.
    pub states: usize,
    /// The disks the check refused: where the cut was and why.
    pub bad: Vec<String>,
}

impl Report {
    /// Prints a summary, appends the report to `$FACEGATE_POWER_LOSS_REPORT`
    /// when set, and returns it.
    pub fn finish(self) -> Self {
        eprintln!("power loss: {}: {} cut points, {} states, {} bad", self.file, self.cut_points, self.states, self.bad.len());
        for why in self.bad.iter().take(5) {
            eprintln!("  {why}");
        }
        if let Some(path) = std::env::var_os(REPORT_ENV) {
            use std::io::Write;
            let line = serde_json::to_string(&self).expect("a report is JSON");
            let mut out = std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("the report file opens");
            writeln!(out, "{line}").expect("the report file takes a line");
        }
        self
    }

    /// Panics, naming the first bad states, unless every state was accepted.
    pub fn assert_clean(&self) {
        assert!(self.states > 0, "{}: no state was explored", self.file);
        assert!(
            self.bad.is_empty(),
            "{}: {} of {} states are bad; first: {:#?}",
            self.file,
            self.bad.len(),
            self.states,
            &self.bad[..self.bad.len().min(5)]
        );
    }
}

fn files_under(root: &Path) -> Files {
    let mut files = Files::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("the run directory lists") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).expect("a file of the run reads"));
            }
        }
    }
    files
}

/// Writes `files` (named under `from`) into the empty directory `to`. The
/// model keeps contents, not permissions: every file is laid out owner-only,
/// as the private ones are written.
fn lay_out(files: &Files, from: &Path, to: &Path) -> Result<(), String> {
    for (path, content) in files {
        let rel = path.strip_prefix(from).map_err(|_| format!("{} was written outside the run's directory", path.display()))?;
        let dest = to.join(rel);
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        std::fs::write(&dest, content).map_err(|e| e.to_string())?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic".into())
}

/// Explores the power cuts of `run` for the file(s) named `file`.
///
/// `setup` fills the run's directory (durable: it is the disk before the
/// cut); `run` does the work, calling [`disk::mark`] after each step it
/// acknowledges. At each cut point, for each disk the model allows, the disk
/// is laid out in a fresh directory and `check(dir, marks)` is called with the
/// marks reached before the cut: `Err(why)` or a panic makes the state bad.
pub fn explore(
    file: &str,
    setup: impl FnOnce(&Path),
    run: impl FnOnce(&Path),
    check: impl Fn(&Path, &[String]) -> Result<(), String>,
) -> Report {
    let root = tempfile::Builder::new().prefix("facegate-power-loss-").tempdir().expect("a scratch directory");
    let run_dir = root.path().join("run");
    std::fs::create_dir_all(&run_dir).expect("the run directory");
    setup(&run_dir);
    let before = files_under(&run_dir);
    let ((), ops) = disk::record(&run_dir, || run(&run_dir));
    let mut report = Report { file: file.to_string(), cut_points: 0, states: 0, bad: Vec::new() };
    let mut model = Disk::new(&before);
    let mut marks: Vec<String> = Vec::new();
    let state_dir = root.path().join("state");
    for at in 0..=ops.len() {
        let op = ops.get(at);
        if let Some(Op::Mark(label)) = op {
            marks.push(label.clone());
        }
        // A cut after each disk operation, and after each mark: the same
        // disk, checked again knowing one more acknowledgement.
        let after_mark = at > 0 && matches!(ops[at - 1], Op::Mark(_));
        let cut_here = matches!(op, Some(Op::Mark(_))) || !after_mark;
        report.cut_points += usize::from(cut_here);
        let cuts = if cut_here { model.cuts(EXHAUSTIVE, RANDOM, at as u64 + 1) } else { Vec::new() };
        for files in cuts {
            report.states += 1;
            let _ = std::fs::remove_dir_all(&state_dir);
            std::fs::create_dir_all(&state_dir).expect("the state directory");
            let verdict = lay_out(&files, &run_dir, &state_dir).and_then(|()| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&state_dir, &marks)))
                    .unwrap_or_else(|p| Err(format!("panicked: {}", panic_text(&*p))))
            });
            if let Err(why) = verdict {
                let names: Vec<String> = files
                    .iter()
                    .map(|(p, c)| format!("{} ({} B)", p.strip_prefix(&run_dir).unwrap_or(p).display(), c.len()))
                    .collect();
                report.bad.push(format!(
                    "cut before operation {at} (after {:?}), files [{}]: {why}",
                    marks.last(),
                    names.join(", ")
                ));
            }
        }
        if let Some(op) = op {
            model.apply(op).unwrap_or_else(|e| panic!("{file}: operation {at}: {e}"));
        }
    }
    report
}

/// The marks reached, as a check reads them: whether `label` is among them.
pub fn reached(marks: &[String], label: &str) -> bool {
    marks.iter().any(|m| m == label)
}
