#![warn(missing_docs)]
//! LFW for tests and benchmarks: read images from the official `lfw.tgz` or an
//! unpacked directory, parse `pairs.txt`, and score distances with the View 2
//! protocol (threshold chosen on nine folds, applied to the tenth).
//!
//! Images stay where the user keeps them; nothing here writes them anywhere.

pub mod protocol;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

pub use protocol::{
    compare_paired, enrolment_study, evaluate, mcnemar_exact, operating_points, Evaluation, OperatingPoint, PairedComparison,
    PairsDiffer,
};

/// Errors while reading LFW.
#[derive(Debug, thiserror::Error)]
pub enum LfwError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// pairs.txt is not in the official format.
    #[error("pairs.txt line {line}: {why}")]
    Pairs {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// An image named by pairs.txt is not in the dataset.
    #[error("image {0} is not in the dataset")]
    Missing(String),
}

/// One pair of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// Relative path of the first image, `Name/Name_0001.jpg`.
    pub a: String,
    /// Relative path of the second image.
    pub b: String,
    /// Same person?
    pub same: bool,
    /// Fold index 0..folds.
    pub fold: usize,
}

/// Relative image path for person `name`, image number `n` (1-based).
pub fn image_path(name: &str, n: u32) -> String {
    format!("{name}/{name}_{n:04}.jpg")
}

/// Parses the official pairs.txt (first line: folds and pairs per half-fold).
pub fn parse_pairs(text: &str) -> Result<Vec<Pair>, LfwError> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or(LfwError::Pairs { line: 1, why: "empty file".into() })?;
    let nums: Vec<usize> = header.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    let [folds, per] = nums[..] else { return Err(LfwError::Pairs { line: 1, why: "expected `folds pairs`".into() }) };
    let mut pairs = Vec::with_capacity(folds * per * 2);
    for (i, (ln, line)) in lines.enumerate() {
        let bad = |why: &str| LfwError::Pairs { line: ln + 1, why: why.to_string() };
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |s: &str| s.parse::<u32>().map_err(|_| bad("image number is not a number"));
        let fold = i / (2 * per);
        let same = i % (2 * per) < per;
        let pair = match (same, f.len()) {
            (true, 3) => Pair { a: image_path(f[0], num(f[1])?), b: image_path(f[0], num(f[2])?), same, fold },
            (false, 4) => Pair { a: image_path(f[0], num(f[1])?), b: image_path(f[2], num(f[3])?), same, fold },
            _ => return Err(bad(if same { "expected `name i j`" } else { "expected `name1 i name2 j`" })),
        };
        pairs.push(pair);
    }
    if pairs.len() != folds * per * 2 {
        return Err(LfwError::Pairs {
            line: 1,
            why: format!("header promises {} pairs, file has {}", folds * per * 2, pairs.len()),
        });
    }
    Ok(pairs)
}

/// The LFW images, from a directory (containing `Name/…jpg`, or `lfw/Name/…`) or `lfw.tgz`.
pub enum Dataset {
    /// Unpacked directory.
    Dir(PathBuf),
    /// Archive read into memory once: relative path → JPEG bytes.
    Archive(HashMap<String, Vec<u8>>),
}

impl Dataset {
    /// Opens a directory or a `.tgz`.
    pub fn open(path: &Path) -> Result<Self, LfwError> {
        let io = |source| LfwError::Io { path: path.to_path_buf(), source };
        if path.is_dir() {
            let inner = path.join("lfw");
            return Ok(Dataset::Dir(if inner.is_dir() { inner } else { path.to_path_buf() }));
        }
        let file = std::fs::File::open(path).map_err(io)?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
        let mut images = HashMap::new();
        for entry in archive.entries().map_err(io)? {
            let mut entry = entry.map_err(io)?;
            let name = entry.path().map_err(io)?.to_string_lossy().into_owned();
            if let Some(rel) = name.strip_prefix("lfw/").filter(|r| r.ends_with(".jpg")) {
                let mut bytes = Vec::with_capacity(entry.size() as usize);
                entry.read_to_end(&mut bytes).map_err(io)?;
                images.insert(rel.to_string(), bytes);
            }
        }
        Ok(Dataset::Archive(images))
    }

    /// Every image's relative path (`Name/Name_0001.jpg`), sorted.
    pub fn names(&self) -> Result<Vec<String>, LfwError> {
        let mut names: Vec<String> = match self {
            Dataset::Archive(map) => map.keys().cloned().collect(),
            Dataset::Dir(dir) => {
                let io = |source| LfwError::Io { path: dir.clone(), source };
                let mut out = Vec::new();
                for person in std::fs::read_dir(dir).map_err(io)? {
                    let person = person.map_err(io)?.path();
                    if !person.is_dir() {
                        continue;
                    }
                    for f in std::fs::read_dir(&person).map_err(io)? {
                        let f = f.map_err(io)?.path();
                        if let (Some(p), Some(n)) = (person.file_name(), f.file_name()) {
                            if f.extension().is_some_and(|e| ["jpg", "jpeg", "png"].iter().any(|x| e.eq_ignore_ascii_case(x))) {
                                out.push(format!("{}/{}", p.to_string_lossy(), n.to_string_lossy()));
                            }
                        }
                    }
                }
                out
            }
        };
        names.sort();
        Ok(names)
    }

    /// The bytes of one image by relative path.
    pub fn read(&self, rel: &str) -> Result<Vec<u8>, LfwError> {
        match self {
            Dataset::Dir(dir) => std::fs::read(dir.join(rel)).map_err(|_| LfwError::Missing(rel.to_string())),
            Dataset::Archive(map) => map.get(rel).cloned().ok_or_else(|| LfwError::Missing(rel.to_string())),
        }
    }
}

/// Where the shared LFW copy is: `$FACEGATE_LFW_DIR`, else `<workspace>/../shared/datasets/lfw`.
/// Returns the `(images, pairs.txt)` paths, or `None` when absent.
pub fn locate(workspace: &Path) -> Option<(PathBuf, PathBuf)> {
    let dir = std::env::var_os("FACEGATE_LFW_DIR").map(PathBuf::from).unwrap_or_else(|| workspace.join("../shared/datasets/lfw"));
    let pairs = dir.join("pairs.txt");
    let images = if dir.join("lfw.tgz").is_file() { dir.join("lfw.tgz") } else { dir.join("lfw") };
    (pairs.is_file() && images.exists()).then_some((images, pairs))
}

/// For tests: the shared LFW copy opened, with its pairs.txt path, or `None`
/// after saying loudly on stderr that `what` was skipped.
pub fn open_or_skip(workspace: &Path, what: &str) -> Option<(Dataset, PathBuf)> {
    match locate(workspace) {
        Some((images, pairs)) => Some((Dataset::open(&images).expect("the shared LFW copy opens"), pairs)),
        None => {
            eprintln!("SKIPPED: LFW not found (../shared/datasets/lfw or $FACEGATE_LFW_DIR); {what} not run");
            None
        }
    }
}

/// Index of the box (left, top, right, bottom) nearest the image centre:
/// LFW labels the centred face when a photo shows several.
pub fn centred_box(boxes: impl IntoIterator<Item = (i64, i64, i64, i64)>, width: u32, height: u32) -> Option<usize> {
    let (cx, cy) = (width as f64 / 2.0, height as f64 / 2.0);
    let off = |(l, t, r, b): (i64, i64, i64, i64)| ((l + r) as f64 / 2.0 - cx).powi(2) + ((t + b) as f64 / 2.0 - cy).powi(2);
    boxes.into_iter().enumerate().min_by(|a, b| off(a.1).total_cmp(&off(b.1))).map(|(i, _)| i)
}

/// The face LFW labels, as a box: the detection nearest the centre, else the
/// [`fallback_box`]; the flag says whether a detection was used.
pub fn labelled_box(boxes: &[(i64, i64, i64, i64)], width: u32, height: u32) -> ((i64, i64, i64, i64), bool) {
    match centred_box(boxes.iter().copied(), width, height) {
        Some(i) => (boxes[i], true),
        None => (fallback_box(width, height), false),
    }
}

/// The box used when no face is found: LFW's faces are centred and about 46 % of
/// the image wide (dlib's HOG box is typically (67,67)–(182,182) on 250×250).
pub fn fallback_box(width: u32, height: u32) -> (i64, i64, i64, i64) {
    let (w, h) = (width as f64, height as f64);
    ((0.268 * w) as i64, (0.268 * h) as i64, (0.728 * w) as i64, (0.728 * h) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_follow_the_official_layout() {
        let text = "2\t1\nA\t1\t2\nB\t1\tC\t3\nD\t2\t4\nE\t1\tF\t1\n";
        let p = parse_pairs(text).unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(p[0], Pair { a: "A/A_0001.jpg".into(), b: "A/A_0002.jpg".into(), same: true, fold: 0 });
        assert!(!p[1].same && p[1].b == "C/C_0003.jpg");
        assert_eq!((p[2].fold, p[2].same), (1, true));
        assert!(parse_pairs("2\t1\nA\t1\t2\n").is_err(), "too few pairs");
        assert!(parse_pairs("1\t1\nA\tx\t2\nB\t1\tC\t1\n").is_err(), "bad number");
    }
}
