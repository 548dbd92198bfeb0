//! Parses the real dlib files when FACEGATE_DLIB_MODELS points at them.
use std::path::PathBuf;

fn model(name: &str) -> Option<Vec<u8>> {
    let Some(dir) = std::env::var_os("FACEGATE_DLIB_MODELS") else {
        eprintln!("SKIPPED: FACEGATE_DLIB_MODELS not set");
        return None;
    };
    Some(std::fs::read(PathBuf::from(dir).join(name)).expect("model file"))
}

#[test]
fn resnet_has_108_layers() {
    let Some(bytes) = model("dlib_face_recognition_resnet_model_v1.dat") else { return };
    let net = facegate_dlib::resnet::parse(&bytes).unwrap();
    assert_eq!(net.layers.len(), 108);
    assert_eq!(net.input_size, [150, 150]);
    assert!((net.input_mean[0] - 122.782).abs() < 1e-3);
    assert!((net.loss_threshold - 0.6).abs() < 1e-6);
}

#[test]
fn shape_predictor_has_15_cascades_of_500_trees() {
    let Some(bytes) = model("shape_predictor_5_face_landmarks.dat") else { return };
    let sp = facegate_dlib::shape_predictor::parse(&bytes).unwrap();
    assert_eq!(sp.initial_shape.len(), 10);
    assert_eq!(sp.cascades.len(), 15);
    for c in &sp.cascades {
        assert_eq!(c.trees.len(), 500);
        assert_eq!(c.anchors.len(), 800);
        assert!(c.trees.iter().all(|t| t.splits.len() == 15 && t.leaves.len() == 16));
    }
}

#[test]
fn hog_detector_has_five_10x10_filters() {
    let Some(dir) = std::env::var_os("FACEGATE_DLIB_HOG") else {
        eprintln!("SKIPPED: FACEGATE_DLIB_HOG not set");
        return;
    };
    let det = facegate_dlib::hog_detector::parse(&std::fs::read(dir).unwrap()).unwrap();
    assert_eq!(det.filters.len(), 5);
    assert!(det.filters.iter().all(|f| f.len() == 3101));
    assert_eq!((det.cell_size, det.padding, det.window), (8, 0, [80, 80]));
}
