//! The calls into kenosis-core's pipeline: the same functions `kenosis quantize` and
//! `kenosis validate` run.

use crate::settings::Resolved;
use kenosis_core::calibrate::Ranges;
use kenosis_core::onnx::Model;
use kenosis_core::quantize::{self, QuantizeConfig, Quantized};
use kenosis_core::validate::{self, Report, ValidateOptions};
use kenosis_core::Result;
use std::path::Path;

/// The quantizer's config for these settings; calibration folders resolved against `manifest_dir`.
pub(crate) fn quantize_config(r: &Resolved, manifest_dir: &Path) -> QuantizeConfig {
    QuantizeConfig {
        per_channel: r.per_channel,
        weight_bits: r.weight_bits,
        target_arch: Some(r.target_arch.clone()),
        exclude_nodes: r.exclude_nodes.clone(),
        exclude_ops: r.exclude_ops.clone(),
        target_cosine: r.target_cosine,
        fp16_float_layers: r.fp16_float_layers,
        inputs: r.input_config(manifest_dir),
    }
}

/// Prepares, calibrates (needs ONNX Runtime) and quantizes.
pub(crate) fn quantize(fp32: &Model, r: &Resolved, manifest_dir: &Path) -> Result<Quantized> {
    quantize::quantize(fp32, &quantize_config(r, manifest_dir))
}

/// Rebuilds the INT8 model from recorded ranges (and the layers the accuracy search kept
/// float), without ONNX Runtime.
pub(crate) fn rebuild(
    fp32: &Model,
    ranges: &Ranges,
    searched: &[String],
    r: &Resolved,
    manifest_dir: &Path,
) -> Result<Quantized> {
    quantize::rebuild(fp32, ranges, &quantize_config(r, manifest_dir), searched)
}

/// Validates on the calibration inputs, 1 thread.
pub(crate) fn validate(fp32: &Model, int8: &Model, r: &Resolved, manifest_dir: &Path) -> Result<Report> {
    let opts = ValidateOptions { inputs: r.input_config(manifest_dir), runs: r.runs, warmup: r.warmup, threads: 1 };
    validate::validate(fp32, int8, &opts)
}
