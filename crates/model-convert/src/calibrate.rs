//! Activation ranges of the f32 embedding network on real face chips: the
//! scales of the int8-activation model. Chips come from LFW photos through
//! facegate's own detector, landmarks and alignment, as at the door.

use crate::resnet::{self, ActivationRanges, Precision};
use anyhow::{ensure, Context, Result};
use facegate_dlib::resnet::ResNet;
use facegate_face::decode::{decode_image, DEFAULT_MAX_PIXELS};
use facegate_face::embed::chip_input;
use facegate_face::{Pipeline, PipelineConfig};
use std::collections::BTreeMap;
use std::path::Path;
use tract_onnx::prelude::*;

/// Values kept per chip and probe for the percentiles (evenly strided).
const SAMPLES_PER_CHIP: usize = 4096;

/// Runs the f32 network on the face chip of every `every`th LFW photo and
/// returns each probe's range: its lowest and highest value at `percentile`
/// 100, else the values `percentile` % of a strided sample lies above and below.
pub fn activation_ranges(net: &ResNet, lfw: &Path, models: &Path, every: usize, percentile: f64) -> Result<ActivationRanges> {
    ensure!(every > 0, "--every must be at least 1");
    ensure!((50.0..=100.0).contains(&percentile), "--percentile must be between 50 and 100");
    let (model, probes) = resnet::build_with_probes(net, Precision::F32, None, &[])?;
    let bytes = prost::Message::encode_to_vec(&model);
    let mut graph = tract_onnx::onnx().model_for_read(&mut &bytes[..])?.with_input_fact(0, f32::fact([1, 3, 150, 150]).into())?;
    let names: Vec<&str> = probes.iter().map(|(_, tensor)| tensor.as_str()).collect();
    graph.select_outputs_by_name(names)?;
    let plan = graph.into_optimized()?.into_runnable()?;

    // dlib's chips: the grids are for dlib's network, whatever the default network is.
    let config = PipelineConfig { network: facegate_face::Network::Dlib, min_face: 40, ..PipelineConfig::door() };
    let pipeline = Pipeline::load(models, facegate_face::Precision::F32, config).context("loading the chip pipeline")?;
    let dataset = facegate_lfw::Dataset::open(lfw).with_context(|| format!("opening {}", lfw.display()))?;
    let mut ranges: BTreeMap<String, (f32, f32)> = BTreeMap::new();
    let mut samples: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    let mut chips = 0;
    for rel in dataset.names()?.iter().step_by(every) {
        let img = decode_image(&dataset.read(rel)?, DEFAULT_MAX_PIXELS).with_context(|| rel.clone())?;
        let faces = pipeline.faces(&img);
        let boxes =
            faces.iter().map(|f| (f.detection.rect.left, f.detection.rect.top, f.detection.rect.right, f.detection.rect.bottom));
        let Some(i) = facegate_lfw::centred_box(boxes, img.width(), img.height()) else { continue };
        let outputs = plan.run(tvec!(chip_input(&faces[i].chip, false)?.into_tvalue()))?;
        for ((label, _), out) in probes.iter().zip(outputs) {
            let view = out.try_as_plain_ram()?;
            let values = view.as_slice::<f32>()?;
            let (lo, hi) = values.iter().fold((f32::MAX, f32::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
            let entry = ranges.entry(label.clone()).or_insert((lo, hi));
            *entry = (entry.0.min(lo), entry.1.max(hi));
            if percentile < 100.0 {
                let step = values.len().div_ceil(SAMPLES_PER_CHIP).max(1);
                samples.entry(label.clone()).or_default().extend(values.iter().step_by(step));
            }
        }
        chips += 1;
    }
    ensure!(chips > 0, "no face found in the sampled LFW photos");
    for (label, mut values) in samples {
        *ranges.get_mut(&label).expect("sampled probes have ranges") = percentile_range(&mut values, percentile);
    }
    eprintln!("calibrated on {chips} face chips");
    Ok(ActivationRanges(ranges))
}

/// The values `percentile` % of `values` lies below and above (nearest rank;
/// `values` is sorted in place), widened to hold 0: a ReLU's grid starts there.
fn percentile_range(values: &mut [f32], percentile: f64) -> (f32, f32) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    values.sort_by(f32::total_cmp);
    let at = |q: f64| values[((q / 100.0) * (values.len() - 1) as f64).round() as usize];
    (at(100.0 - percentile).min(0.0), at(percentile).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::percentile_range;

    #[test]
    fn percentile_ranges_drop_rare_outliers_and_keep_zero() {
        // 0..=9999 plus two outliers: at 99.9 % the outliers fall outside.
        let mut v: Vec<f32> = (0..10_000).map(|i| i as f32).chain([-1e6, 1e6]).collect();
        let (lo, hi) = percentile_range(&mut v, 99.9);
        assert!(lo == 0.0 && (9_980.0..=9_995.0).contains(&hi), "({lo}, {hi})");
        assert_eq!(percentile_range(&mut v, 100.0), (-1e6, 1e6), "100 keeps the extremes");
        // A range entirely above zero still starts at 0.
        let mut above: Vec<f32> = (1..100).map(|i| i as f32).collect();
        assert_eq!(percentile_range(&mut above, 100.0), (0.0, 99.0));
        assert_eq!(percentile_range(&mut [], 99.0), (0.0, 0.0));
    }
}
