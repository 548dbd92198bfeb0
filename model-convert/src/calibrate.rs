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

/// Runs the f32 network on the face chip of every `every`th LFW photo and
/// returns each probe's lowest and highest value.
pub fn activation_ranges(net: &ResNet, lfw: &Path, models: &Path, every: usize) -> Result<ActivationRanges> {
    ensure!(every > 0, "--every must be at least 1");
    let (model, probes) = resnet::build_with_probes(net, Precision::F32, None, &[])?;
    let bytes = prost::Message::encode_to_vec(&model);
    let mut graph = tract_onnx::onnx().model_for_read(&mut &bytes[..])?.with_input_fact(0, f32::fact([1, 3, 150, 150]).into())?;
    let names: Vec<&str> = probes.iter().map(|(_, tensor)| tensor.as_str()).collect();
    graph.select_outputs_by_name(names)?;
    let plan = graph.into_optimized()?.into_runnable()?;

    let config = PipelineConfig { min_face: 40, ..PipelineConfig::door() };
    let pipeline = Pipeline::load(models, facegate_face::Precision::F32, config).context("loading the chip pipeline")?;
    let dataset = facegate_lfw::Dataset::open(lfw).with_context(|| format!("opening {}", lfw.display()))?;
    let mut ranges: BTreeMap<String, (f32, f32)> = BTreeMap::new();
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
            let (lo, hi) = view.as_slice::<f32>()?.iter().fold((f32::MAX, f32::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
            let entry = ranges.entry(label.clone()).or_insert((lo, hi));
            *entry = (entry.0.min(lo), entry.1.max(hi));
        }
        chips += 1;
    }
    ensure!(chips > 0, "no face found in the sampled LFW photos");
    eprintln!("calibrated on {chips} face chips");
    Ok(ActivationRanges(ranges))
}
