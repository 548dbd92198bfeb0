//! Where the model files are, and proof that they are the right ones.
//!
//! An installed program finds its models like any installed tool (see
//! [`search_path`]); every file it loads is checked against the sha256 that
//! `models/MANIFEST` records for it, so a damaged download, a half-copied
//! file or a model from another release is refused with its name rather than
//! giving wrong matches.

use crate::FaceError;
use facegate_core::ModelId;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The manifest's file name inside a models directory.
pub const MANIFEST_FILE: &str = "MANIFEST";

/// What `MANIFEST` records for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Lower-case hex sha256 of the file.
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// The parsed `MANIFEST`: file name → hash and size.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    entries: BTreeMap<String, ManifestEntry>,
}

impl Manifest {
    /// Parses the TOML text of a `MANIFEST`. A table header such as
    /// `[face_resnet_f32.onnx]` is, in TOML, the nested table `face_resnet_f32`
    /// → `onnx`; the file name is the dotted path down to the table that holds
    /// `sha256`.
    pub fn parse(text: &str) -> Result<Self, FaceError> {
        let bad = |why: String| FaceError::Model(format!("{MANIFEST_FILE}: {why}"));
        let root: toml::Table = text.parse().map_err(|e: toml::de::Error| bad(e.message().to_string()))?;
        let mut entries = BTreeMap::new();
        collect(&root, "", &mut entries).map_err(bad)?;
        if entries.is_empty() {
            return Err(bad("lists no files".into()));
        }
        Ok(Manifest { entries })
    }

    /// The entry for `file`, if listed.
    pub fn get(&self, file: &str) -> Option<&ManifestEntry> {
        self.entries.get(file)
    }

    /// The listed file names.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }
}

fn collect(table: &toml::Table, prefix: &str, out: &mut BTreeMap<String, ManifestEntry>) -> Result<(), String> {
    for (key, value) in table {
        let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        let Some(t) = value.as_table() else { continue };
        match t.get("sha256") {
            Some(h) => {
                let sha256 = h
                    .as_str()
                    .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                    .ok_or_else(|| format!("[{name}]: sha256 is not 64 hex digits"))?
                    .to_ascii_lowercase();
                let bytes = t
                    .get("bytes")
                    .and_then(toml::Value::as_integer)
                    .and_then(|b| u64::try_from(b).ok())
                    .ok_or_else(|| format!("[{name}]: no byte count"))?;
                out.insert(name, ManifestEntry { sha256, bytes });
            }
            None => collect(t, &name, out)?,
        }
    }
    Ok(())
}

/// A models directory whose `MANIFEST` has been read: every file read through
/// it is checked against its recorded hash.
#[derive(Debug, Clone)]
pub struct ModelDir {
    path: PathBuf,
    manifest: Manifest,
}

impl ModelDir {
    /// Opens `path`, which must hold a `MANIFEST`.
    pub fn open(path: &Path) -> Result<Self, FaceError> {
        let manifest_path = path.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&manifest_path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound if !path.is_dir() => {
                FaceError::Model(format!("{}: no such models directory", path.display()))
            }
            std::io::ErrorKind::NotFound => {
                FaceError::Model(format!("{}: no {MANIFEST_FILE} here, so not a facegate models directory", path.display()))
            }
            _ => FaceError::Io { path: manifest_path.clone(), source },
        })?;
        let manifest = Manifest::parse(&text).map_err(|e| FaceError::Model(format!("{}: {e}", path.display())))?;
        Ok(ModelDir { path: path.to_path_buf(), manifest })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The bytes of `file`, refused unless the manifest lists it with exactly
    /// this size and sha256.
    pub fn read(&self, file: &str) -> Result<Vec<u8>, FaceError> {
        let path = self.path.join(file);
        let entry = self.manifest.get(file).ok_or_else(|| FaceError::Unlisted { path: path.clone() })?;
        let bytes = std::fs::read(&path).map_err(|source| FaceError::Io { path: path.clone(), source })?;
        let found = ModelId::of_file_bytes(&bytes).to_string();
        if bytes.len() as u64 != entry.bytes || found != entry.sha256 {
            return Err(FaceError::Mismatch {
                path,
                expected: entry.sha256.clone(),
                found,
                expected_bytes: entry.bytes,
                found_bytes: bytes.len() as u64,
            });
        }
        Ok(bytes)
    }

    /// The model id (sha256) MANIFEST records for `file`, without reading it;
    /// loading the file checks that it matches.
    pub fn recorded_id(&self, file: &str) -> Result<ModelId, FaceError> {
        let entry = self.manifest.get(file).ok_or_else(|| FaceError::Unlisted { path: self.path.join(file) })?;
        entry.sha256.parse().map_err(|_| FaceError::Model(format!("{MANIFEST_FILE}: [{file}] sha256 is not an id")))
    }

    /// Checks every file the manifest lists; returns the problems (empty when all are right).
    pub fn verify_all(&self) -> Vec<FaceError> {
        self.manifest.files().filter_map(|f| self.read(f).err()).collect()
    }
}

/// One place the models may be, and why it is on the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The directory.
    pub path: PathBuf,
    /// Where it comes from (`--models`, `beside the program`, …).
    pub source: &'static str,
}

/// The places searched for models, in order:
/// 1. `explicit` (`--models` or `FACEGATE_MODELS`, resolved by the caller);
/// 2. `models/` beside the executable (a zip or tarball unpacked anywhere;
///    the Debian package's private directory);
/// 3. the platform data directory: `$XDG_DATA_HOME/facegate/models`
///    (`~/.local/share/…`), `%APPDATA%\facegate\models`,
///    `~/Library/Application Support/facegate/models`;
/// 4. `/usr/share/facegate/models` (Unix);
/// 5. the `models/` of the source tree when the program runs from a cargo
///    `target/` directory (development).
///
/// With an explicit directory nothing else is searched: a wrong `--models`
/// must be an error, not silently replaced by another copy.
pub fn search_path(explicit: Option<&Path>) -> Vec<Candidate> {
    if let Some(p) = explicit {
        return vec![Candidate { path: p.to_path_buf(), source: "--models / FACEGATE_MODELS" }];
    }
    let mut out = Vec::new();
    let exe = std::env::current_exe().ok().and_then(|e| e.canonicalize().ok());
    if let Some(dir) = exe.as_deref().and_then(Path::parent) {
        out.push(Candidate { path: dir.join("models"), source: "beside the program" });
    }
    if let Some(data) = dirs::data_dir() {
        out.push(Candidate { path: data.join("facegate").join("models"), source: "the user's data directory" });
    }
    if cfg!(unix) {
        out.push(Candidate { path: PathBuf::from("/usr/share/facegate/models"), source: "the system data directory" });
    }
    if let Some(tree) = exe.as_deref().and_then(source_tree_of) {
        out.push(Candidate { path: tree.join("models"), source: "the source tree (development build)" });
    }
    out
}

/// The workspace a program in `<tree>/target/…` was built in.
fn source_tree_of(exe: &Path) -> Option<&Path> {
    exe.ancestors().find(|a| a.file_name().is_some_and(|n| n == "target")).and_then(Path::parent)
}

/// The first directory of [`search_path`] that holds a `MANIFEST`, opened.
/// When none does, the error names every place searched.
pub fn locate(explicit: Option<&Path>) -> Result<ModelDir, FaceError> {
    let candidates = search_path(explicit);
    if explicit.is_some() {
        return ModelDir::open(&candidates[0].path);
    }
    match candidates.iter().find(|c| c.path.join(MANIFEST_FILE).is_file()) {
        Some(c) => ModelDir::open(&c.path),
        None => Err(FaceError::ModelsNotFound {
            searched: candidates.iter().map(|c| format!("{} ({})", c.path.display(), c.source)).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "# comment\n\n[a_b.onnx]\nsha256 = \"%H\"\nbytes = 5\nlicense = \"CC0\"\n";

    fn dir_with(content: &[u8], manifest: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a_b.onnx"), content).unwrap();
        std::fs::write(d.path().join(MANIFEST_FILE), manifest).unwrap();
        d
    }

    fn manifest_for(content: &[u8]) -> String {
        ONE.replace("%H", &ModelId::of_file_bytes(content).to_string())
    }

    #[test]
    fn dotted_headers_name_files() {
        let m = Manifest::parse(&manifest_for(b"hello")).unwrap();
        assert_eq!(m.files().collect::<Vec<_>>(), ["a_b.onnx"]);
        assert_eq!(m.get("a_b.onnx").unwrap().bytes, 5);
    }

    #[test]
    fn the_real_manifest_lists_every_model() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/MANIFEST")).unwrap();
        let m = Manifest::parse(&text).unwrap();
        for f in [crate::pipeline::DETECTOR_FILE, crate::pipeline::LANDMARKS_FILE, "face_resnet_int8.onnx"] {
            assert!(m.get(f).is_some(), "{f} not in MANIFEST");
        }
    }

    #[test]
    fn right_file_reads_and_changed_file_is_refused() {
        let d = dir_with(b"hello", &manifest_for(b"hello"));
        let dir = ModelDir::open(d.path()).unwrap();
        assert_eq!(dir.read("a_b.onnx").unwrap(), b"hello");
        assert!(dir.verify_all().is_empty());
        assert_eq!(dir.recorded_id("a_b.onnx").unwrap(), ModelId::of_file_bytes(b"hello"));
        assert!(matches!(dir.recorded_id("other.onnx"), Err(FaceError::Unlisted { .. })));
        std::fs::write(d.path().join("a_b.onnx"), b"hellO").unwrap();
        let e = dir.read("a_b.onnx").unwrap_err();
        assert!(matches!(e, FaceError::Mismatch { .. }), "{e}");
        assert!(e.to_string().contains("a_b.onnx"), "{e}");
        std::fs::write(d.path().join("a_b.onnx"), b"hell").unwrap();
        assert!(matches!(dir.read("a_b.onnx"), Err(FaceError::Mismatch { found_bytes: 4, .. })));
        assert_eq!(dir.verify_all().len(), 1);
    }

    #[test]
    fn unlisted_and_missing_files_are_errors() {
        let d = dir_with(b"hello", &manifest_for(b"hello"));
        std::fs::write(d.path().join("other.onnx"), b"x").unwrap();
        let dir = ModelDir::open(d.path()).unwrap();
        assert!(matches!(dir.read("other.onnx"), Err(FaceError::Unlisted { .. })));
        std::fs::remove_file(d.path().join("a_b.onnx")).unwrap();
        assert!(matches!(dir.read("a_b.onnx"), Err(FaceError::Io { .. })));
    }

    #[test]
    fn bad_manifests_are_refused() {
        for text in ["", "[x.onnx]\nsha256 = \"abc\"\nbytes = 1\n", "[x.onnx]\nsha256 = \"", "[x.onnx]\nbytes = 1\n"] {
            assert!(Manifest::parse(text).is_err(), "{text:?}");
        }
        let d = tempfile::tempdir().unwrap();
        let e = ModelDir::open(&d.path().join("nope")).unwrap_err();
        assert!(e.to_string().contains("no such models directory"), "{e}");
        let e = ModelDir::open(d.path()).unwrap_err();
        assert!(e.to_string().contains("no MANIFEST"), "{e}");
    }

    #[test]
    fn explicit_directory_is_the_only_candidate() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(search_path(Some(d.path())).len(), 1);
        assert!(locate(Some(d.path())).is_err(), "a directory without MANIFEST is not a models directory");
        let found = locate(Some(&PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models")))).unwrap();
        assert!(found.manifest().get(crate::pipeline::LANDMARKS_FILE).is_some());
        // The id recorded for a network is the one its bytes give.
        let int8 = crate::Precision::Int8.file_name();
        assert_eq!(found.recorded_id(int8).unwrap(), ModelId::of_file_bytes(&found.read(int8).unwrap()));
    }

    #[test]
    fn search_order_is_beside_data_system() {
        let c = search_path(None);
        let sources: Vec<_> = c.iter().map(|c| c.source).collect();
        assert_eq!(sources[0], "beside the program");
        assert_eq!(sources[1], "the user's data directory");
        assert!(c[1].path.ends_with(Path::new("facegate").join("models")));
        if cfg!(unix) {
            assert_eq!(c[2].path, Path::new("/usr/share/facegate/models"));
        }
        // Tests run from cargo's target/ directory, so the source tree comes last
        // and is this workspace.
        let tree = c.last().unwrap();
        assert_eq!(tree.source, "the source tree (development build)");
        assert!(tree.path.join(MANIFEST_FILE).is_file());
    }

    #[test]
    fn source_tree_is_above_target() {
        assert_eq!(source_tree_of(Path::new("/w/ws/target/release/host-tool")), Some(Path::new("/w/ws")));
        assert_eq!(source_tree_of(Path::new("/usr/bin/host-tool")), None);
    }
}
