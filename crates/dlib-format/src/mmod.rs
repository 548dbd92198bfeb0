//! `mmod_human_face_detector.dat`: dlib's CNN face detector (max-margin object
//! detection loss over a small fully convolutional network on an image pyramid).
//!
//! Framing, as for the ResNet: the loss record (`loss_mmod_` and its options),
//! nested layer versions, the input record (`input_rgb_image_pyramid` with the
//! channel means), then the layer records in forward order. The batch-norm
//! layers were saved in training form (`bn_con2`); dlib turns them into fixed
//! affine layers when it loads the net for detection, and so does this parser.

use crate::reader::Reader;
use crate::resnet::{layer, layer_records, nesting_depth, Layer};
use crate::Result;

/// The parsed detector.
#[derive(Debug, Clone)]
pub struct MmodDetector {
    /// Sliding-window width and height in pixels of the pyramid level (80×80).
    pub window: [usize; 2],
    /// Non-max suppression: intersection over bounding box above this suppresses.
    pub nms_iou: f64,
    /// Non-max suppression: a box covered by more than this share suppresses.
    pub nms_covered: f64,
    /// Mean subtracted from R, G, B before dividing by 256.
    pub input_mean: [f32; 3],
    /// Layer records, input side first (convolutions, affine, relu).
    pub layers: Vec<Layer>,
}

/// Parses the whole file; every byte must be accounted for.
pub fn parse(bytes: &[u8]) -> Result<MmodDetector> {
    let mut r = Reader::new(bytes);
    r.expect_int(1, "loss layer version")?;
    r.expect_string("loss_mmod_")?;
    let version = r.int()?;
    let window = match version {
        1 => [r.size()?, r.size()?],
        2..=4 => {
            let windows = r.size()?;
            if windows != 1 {
                return Err(r.unexpected(format!("{windows} detector windows; a face detector has one")));
            }
            let window_version = r.int()?;
            let w = [r.size()?, r.size()?];
            if window_version == 2 {
                r.string()?; // label
            }
            w
        }
        v => return Err(r.unexpected(format!("mmod_options version {v}"))),
    };
    let _loss_per_false_alarm = r.float()?;
    let _loss_per_missed_target = r.float()?;
    let _truth_match_iou = r.float()?;
    let (nms_iou, nms_covered) = (r.float()?, r.float()?);
    let _ignore = (r.float()?, r.float()?);
    if version >= 3 {
        let pyramid = r.int()?;
        if pyramid != 1 {
            return Err(r.unexpected("a detector that does not assume an image pyramid"));
        }
    }
    if version >= 4 {
        let regression = r.bool()?;
        let _lambda = r.float()?;
        if regression {
            return Err(r.unexpected("bounding-box regression is not supported"));
        }
    }
    let depth = nesting_depth(&mut r)?;
    r.expect_string("input_rgb_image_pyramid")?;
    let input_mean = [r.float()? as f32, r.float()? as f32, r.float()? as f32];
    let layers =
        layer_records(&mut r, |r| if r.peek_string()?.as_deref() == Some("bn_con2") { batch_norm(r) } else { layer(r) })?;
    if layers.len() != depth + 1 {
        return Err(r.unexpected(format!("{} layer records for {} nesting levels", layers.len(), depth + 1)));
    }
    Ok(MmodDetector { window, nms_iou, nms_covered, input_mean, layers })
}

/// A `bn_con2` record as the affine layer dlib runs at inference:
/// gamma / sqrt(running variance + eps), beta − that · running mean.
fn batch_norm(r: &mut Reader) -> Result<Layer> {
    r.expect_string("bn_con2")?;
    let params = r.tensor()?;
    let gamma_dims = r.alias_tensor()?;
    let _beta_dims = r.alias_tensor()?;
    let _batch_means = r.tensor()?;
    let _batch_invstds = r.tensor()?;
    let running_means = r.tensor()?;
    let running_variances = r.tensor()?;
    let _num_updates = r.int()?;
    let _window = r.int()?;
    for _ in 0..4 {
        r.float()?; // learning-rate and weight-decay multipliers
    }
    let eps = r.float()? as f32;
    let k = gamma_dims[1];
    if params.data.len() != 2 * k || running_means.data.len() != k || running_variances.data.len() != k {
        return Err(r.unexpected(format!("bn_con2 shapes: {} parameters, {k} channels", params.data.len())));
    }
    let gamma: Vec<f32> =
        params.data[..k].iter().zip(&running_variances.data).map(|(g, v)| g * (1.0 / (v + eps).sqrt())).collect();
    let beta = params.data[k..].iter().zip(&gamma).zip(&running_means.data).map(|((b, g), m)| b - g * m).collect();
    Ok(Layer::Affine { gamma, beta })
}
