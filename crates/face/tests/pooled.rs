//! The embedding network cut before its last layer: pooled features times the
//! last layer's weights give the whole network's embedding, for both model
//! files and mirrored chips (what training the last layer relies on); an
//! embedder with a replaced last layer runs it (what the door relies on).

use facegate_face::embed::{PooledEmbedder, POOLED_DIM};
use facegate_face::{Embedder, LastLayer, Precision, EMBEDDING_DIM};

#[test]
fn pooled_features_times_the_last_layer_are_the_embedding() {
    let chip =
        image::RgbImage::from_fn(150, 150, |x, y| image::Rgb([(x * 3 % 256) as u8, (y * 5 % 256) as u8, ((x + y) % 256) as u8]));
    for precision in [Precision::F32, Precision::Int8] {
        let bytes = std::fs::read(facegate_testkit::models().join(precision.file_name())).unwrap();
        let whole = Embedder::from_bytes(&bytes, facegate_face::Network::Dlib, precision).unwrap();
        let cut = PooledEmbedder::from_bytes(&bytes).unwrap();
        assert_eq!(cut.model_id(), whole.model_id());
        for mirrored in [false, true] {
            let e = whole.embed_chip(&chip, mirrored).unwrap();
            let p = cut.pooled_chip(&chip, mirrored).unwrap();
            let w = cut.last_layer();
            let product: Vec<f32> =
                (0..EMBEDDING_DIM).map(|j| (0..POOLED_DIM).map(|i| p[i] * w[i * EMBEDDING_DIM + j]).sum()).collect();
            let worst = e.iter().zip(&product).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-4, "{precision:?} mirrored {mirrored}: max |Δ| {worst}");
            assert!(p.iter().all(|v| *v >= 0.0), "pooled after a ReLU");
        }
    }
}

#[test]
fn an_embedder_with_a_replaced_last_layer_runs_that_layer_under_its_own_id() {
    let chip = image::RgbImage::from_fn(150, 150, |x, y| image::Rgb([(x * 7 % 256) as u8, (y * 2 % 256) as u8, (x ^ y) as u8]));
    let bytes = std::fs::read(facegate_testkit::models().join(Precision::Int8.file_name())).unwrap();
    let whole = Embedder::from_bytes(&bytes, facegate_face::Network::Dlib, Precision::Int8).unwrap();
    let network = PooledEmbedder::from_bytes(&bytes).unwrap().last_layer().to_vec();
    // The network's own layer, transposed to W (128 × 256), doubled.
    let doubled: Vec<f32> =
        (0..EMBEDDING_DIM * POOLED_DIM).map(|k| 2.0 * network[(k % POOLED_DIM) * EMBEDDING_DIM + k / POOLED_DIM]).collect();
    let id = facegate_face::ModelId::of_file_bytes(b"a retrained layer");
    let layer = LastLayer { weights: doubled, template_model: id };
    let replaced = Embedder::with_last_layer(&bytes, Precision::Int8, layer.clone()).unwrap();
    assert_eq!(replaced.model_id(), id, "templates carry the layer's id");
    assert_eq!(replaced.network_id(), whole.model_id());
    for mirrored in [false, true] {
        let (e, r) = (whole.embed_chip(&chip, mirrored).unwrap(), replaced.embed_chip(&chip, mirrored).unwrap());
        let worst = e.iter().zip(&r).map(|(a, b)| (2.0 * a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-4, "mirrored {mirrored}: max |Δ| {worst}");
    }
    // A layer of the wrong shape, or with a NaN, is refused.
    let short = LastLayer { weights: vec![0.0; 128 * 128], ..layer.clone() };
    assert!(Embedder::with_last_layer(&bytes, Precision::Int8, short).is_err());
    let mut nan = layer;
    nan.weights[5] = f32::NAN;
    assert!(Embedder::with_last_layer(&bytes, Precision::Int8, nan).is_err());
}
