//! The embedding network cut before its last layer: pooled features times the
//! last layer's weights give the whole network's embedding, for both model
//! files and mirrored chips (what training the last layer relies on).

use facegate_face::embed::{PooledEmbedder, POOLED_DIM};
use facegate_face::{Embedder, Precision, EMBEDDING_DIM};

#[test]
fn pooled_features_times_the_last_layer_are_the_embedding() {
    let chip =
        image::RgbImage::from_fn(150, 150, |x, y| image::Rgb([(x * 3 % 256) as u8, (y * 5 % 256) as u8, ((x + y) % 256) as u8]));
    for precision in [Precision::F32, Precision::Int8] {
        let bytes = std::fs::read(facegate_testkit::models().join(precision.file_name())).unwrap();
        let whole = Embedder::from_bytes(&bytes, precision).unwrap();
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
