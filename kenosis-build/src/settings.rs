//! One model's settings, as `Config`'s setters or `[package.metadata.kenosis]` give them, and
//! the effective values the pipeline and the content key are made from.

use crate::error::{Error, Result};
use kenosis_core::calibrate::{InputConfig, Preprocess, Source};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// The gate on cosine similarity when none is set: builds fail when the worst output's mean
/// cosine against FP32 drops below this. 0.99 passes every model Kenosis quantizes well and
/// catches a broken calibration; raise it for models that must stay closer.
pub const DEFAULT_MIN_COSINE: f64 = 0.99;

/// Timed validation runs per model in a build (median taken).
pub const DEFAULT_VALIDATION_RUNS: usize = 10;

/// A shape for `input_shape`: `"1x3x48x192"` or `[1, 3, 48, 192]` in Cargo.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Dims {
    List(Vec<i64>),
    Text(String),
}

impl Dims {
    fn parse(&self, input: &str) -> std::result::Result<Vec<i64>, String> {
        match self {
            Dims::List(v) => Ok(v.clone()),
            Dims::Text(t) => t
                .split(['x', 'X', ','])
                .map(|d| d.trim().parse::<i64>().map_err(|_| format!("input_shape `{input}` = \"{t}\": write it like \"1x3x48x192\"")))
                .collect(),
        }
    }
}

/// Settings; `None` falls back to the next layer (builder -> Cargo.toml defaults -> built-in).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Settings {
    pub per_channel: Option<bool>,
    pub calibration_images: Option<String>,
    pub calibration_data: Option<String>,
    pub samples: Option<usize>,
    pub input_shape: Option<BTreeMap<String, Dims>>,
    pub preprocess: Option<String>,
    pub mean: Option<[f32; 3]>,
    pub std: Option<[f32; 3]>,
    pub bgr: Option<bool>,
    pub weight_bits: Option<u8>,
    pub exclude_node: Option<Vec<String>>,
    pub exclude_op: Option<Vec<String>>,
    pub target_cosine: Option<f64>,
    pub fp16_float_layers: Option<bool>,
    pub min_cosine: Option<f64>,
    pub min_top1_agreement: Option<f64>,
    pub min_speedup: Option<f64>,
    pub validation_runs: Option<usize>,
}

impl Settings {
    /// `self`, with unset fields taken from `base`.
    pub fn or(&self, base: &Settings) -> Settings {
        fn pick<T: Clone>(a: &Option<T>, b: &Option<T>) -> Option<T> {
            a.clone().or_else(|| b.clone())
        }
        Settings {
            per_channel: pick(&self.per_channel, &base.per_channel),
            calibration_images: pick(&self.calibration_images, &base.calibration_images),
            calibration_data: pick(&self.calibration_data, &base.calibration_data),
            samples: pick(&self.samples, &base.samples),
            input_shape: pick(&self.input_shape, &base.input_shape),
            preprocess: pick(&self.preprocess, &base.preprocess),
            mean: pick(&self.mean, &base.mean),
            std: pick(&self.std, &base.std),
            bgr: pick(&self.bgr, &base.bgr),
            weight_bits: pick(&self.weight_bits, &base.weight_bits),
            exclude_node: pick(&self.exclude_node, &base.exclude_node),
            exclude_op: pick(&self.exclude_op, &base.exclude_op),
            target_cosine: pick(&self.target_cosine, &base.target_cosine),
            fp16_float_layers: pick(&self.fp16_float_layers, &base.fp16_float_layers),
            min_cosine: pick(&self.min_cosine, &base.min_cosine),
            min_top1_agreement: pick(&self.min_top1_agreement, &base.min_top1_agreement),
            min_speedup: pick(&self.min_speedup, &base.min_speedup),
            validation_runs: pick(&self.validation_runs, &base.validation_runs),
        }
    }

    /// The effective settings for `model`, checked.
    pub fn resolve(&self, model: &str, target_arch: &str) -> Result<Resolved> {
        let bad = |reason: String| Error::Config { model: model.to_string(), reason };
        let source = match (&self.calibration_images, &self.calibration_data) {
            (Some(_), Some(_)) => {
                return Err(bad("calibration_images and calibration_data are both set; calibrate from one of them".into()))
            }
            (Some(dir), None) => {
                let named = match self.preprocess.as_deref() {
                    None | Some("unit") => Preprocess::Unit,
                    Some("half") => Preprocess::Half,
                    Some("imagenet") => Preprocess::Imagenet,
                    Some(other) => return Err(bad(format!("preprocess \"{other}\": use \"unit\", \"half\" or \"imagenet\", or set mean and std"))),
                };
                let preprocess = if self.mean.is_some() || self.std.is_some() {
                    let (m, s) = named.mean_std();
                    let std = self.std.unwrap_or(s);
                    if std.iter().any(|&v| v == 0.0 || !v.is_finite()) {
                        return Err(bad(format!("std {std:?} has a zero or non-finite value")));
                    }
                    Preprocess::Custom { mean: self.mean.unwrap_or(m), std }
                } else {
                    named
                };
                KeySource::Images { dir: dir.clone(), preprocess, bgr: self.bgr.unwrap_or(false) }
            }
            (None, Some(dir)) => KeySource::Data { dir: dir.clone() },
            (None, None) => {
                if self.preprocess.is_some() || self.mean.is_some() || self.std.is_some() || self.bgr.is_some() {
                    return Err(bad("preprocess, mean, std and bgr apply to calibration_images; set calibration_images too".into()));
                }
                KeySource::Synthetic
            }
        };
        if let Some(b) = self.weight_bits {
            if b != 7 && b != 8 {
                return Err(bad(format!("weight_bits {b}: use 7 (x86-64 without VNNI) or 8")));
            }
        }
        if self.samples == Some(0) {
            return Err(bad("samples = 0: calibrate with at least 1 sample".into()));
        }
        let mut shapes = Vec::new();
        for (name, d) in self.input_shape.iter().flatten() {
            shapes.push((name.clone(), d.parse(name).map_err(bad)?));
        }
        let sorted = |v: &Option<Vec<String>>| {
            let mut v = v.clone().unwrap_or_default();
            v.sort();
            v.dedup();
            v
        };
        let runs = self.validation_runs.unwrap_or(DEFAULT_VALIDATION_RUNS).max(1);
        Ok(Resolved {
            per_channel: self.per_channel.unwrap_or(false),
            source,
            samples: self.samples,
            shapes,
            weight_bits: self.weight_bits,
            target_arch: target_arch.to_string(),
            exclude_nodes: sorted(&self.exclude_node),
            exclude_ops: sorted(&self.exclude_op),
            target_cosine: self.target_cosine,
            fp16_float_layers: self.fp16_float_layers.unwrap_or(false),
            runs,
            warmup: 2,
            gates: kenosis_core::validate::Gates {
                min_cosine: Some(self.min_cosine.unwrap_or(DEFAULT_MIN_COSINE)).filter(|v| *v > 0.0),
                min_top1_agreement: self.min_top1_agreement.filter(|v| *v > 0.0),
                min_speedup: self.min_speedup.filter(|v| *v > 0.0),
            },
        })
    }
}

/// The calibration source with its folder as written (relative to the crate root), so the key
/// is the same in every checkout.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum KeySource {
    Synthetic,
    Images { dir: String, preprocess: Preprocess, bgr: bool },
    Data { dir: String },
}

/// Effective settings of one model.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub per_channel: bool,
    pub source: KeySource,
    pub samples: Option<usize>,
    pub shapes: Vec<(String, Vec<i64>)>,
    pub weight_bits: Option<u8>,
    pub target_arch: String,
    pub exclude_nodes: Vec<String>,
    pub exclude_ops: Vec<String>,
    pub target_cosine: Option<f64>,
    pub fp16_float_layers: bool,
    pub runs: usize,
    pub warmup: usize,
    pub gates: kenosis_core::validate::Gates,
}

impl Resolved {
    /// The calibration folder as written, if any.
    pub fn calibration_dir(&self) -> Option<&str> {
        match &self.source {
            KeySource::Synthetic => None,
            KeySource::Images { dir, .. } | KeySource::Data { dir } => Some(dir),
        }
    }

    /// Weight bits as the quantizer will choose them: 7 for x86-64 targets unless set.
    pub fn effective_weight_bits(&self) -> u8 {
        self.weight_bits.unwrap_or(if self.target_arch == "x86_64" { 7 } else { 8 })
    }

    /// The config part of the content key: everything that shapes the INT8 bytes or the report,
    /// with paths as written. Gates are left out: they judge the result, they don't change it.
    pub fn key_config(&self) -> Value {
        let calibration = match &self.source {
            KeySource::Synthetic => json!({"source": "synthetic", "seed": 0}),
            KeySource::Images { dir, preprocess, bgr } => {
                json!({"source": "images", "dir": dir, "preprocess": preprocess, "bgr": bgr})
            }
            KeySource::Data { dir } => json!({"source": "data", "dir": dir}),
        };
        let shapes: BTreeMap<&str, &Vec<i64>> = self.shapes.iter().map(|(n, d)| (n.as_str(), d)).collect();
        // The quantizer's own canonical form covers every setting it has, now and later.
        // Its inputs hold absolute folders; `calibration` below has them as written instead.
        let cfg = crate::pipeline::quantize_config(self, Path::new(""));
        let mut quantize = cfg.canonical().ok().and_then(|c| serde_json::to_value(c).ok()).unwrap_or(Value::Null);
        if let Some(m) = quantize.as_object_mut() {
            m.remove("inputs");
        }
        json!({
            "quantize": quantize,
            "calibration": calibration,
            "samples": self.samples,
            "input_shapes": shapes,
            "validation": {"runs": self.runs, "warmup": self.warmup, "threads": 1},
        })
    }

    /// The calibration and validation inputs, folders resolved against the crate root.
    pub fn input_config(&self, manifest_dir: &Path) -> InputConfig {
        let source = match &self.source {
            KeySource::Synthetic => Source::Synthetic { seed: 0 },
            KeySource::Images { dir, preprocess, bgr } => {
                Source::Images { dir: manifest_dir.join(dir), preprocess: *preprocess, bgr: *bgr }
            }
            KeySource::Data { dir } => Source::Data { dir: manifest_dir.join(dir) },
        };
        InputConfig { source, samples: self.samples, shapes: self.shapes.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_and_defaults() {
        let builder = Settings { per_channel: Some(true), min_cosine: Some(0.995), ..Default::default() };
        let toml = Settings { per_channel: Some(false), samples: Some(4), ..Default::default() };
        let s = toml.or(&builder);
        assert_eq!(s.per_channel, Some(false));
        assert_eq!(s.samples, Some(4));
        assert_eq!(s.min_cosine, Some(0.995));
        let r = Settings::default().resolve("m.onnx", "x86_64").unwrap();
        assert_eq!(r.gates.min_cosine, Some(DEFAULT_MIN_COSINE));
        assert_eq!(r.gates.min_speedup, None, "the speed gate is opt-in");
        assert_eq!(r.effective_weight_bits(), 7);
        assert_eq!(Settings::default().resolve("m.onnx", "aarch64").unwrap().effective_weight_bits(), 8);
    }

    #[test]
    fn key_config_is_relative_and_ignores_gates() {
        let s = Settings {
            calibration_images: Some("calib/".into()),
            preprocess: Some("half".into()),
            exclude_op: Some(vec!["Softmax".into(), "Add".into()]),
            ..Default::default()
        };
        let a = s.resolve("m.onnx", "x86_64").unwrap();
        let b = Settings { min_cosine: Some(0.5), ..s.clone() }.resolve("m.onnx", "x86_64").unwrap();
        assert_eq!(a.key_config(), b.key_config());
        let k = a.key_config();
        assert_eq!(k["calibration"]["dir"], "calib/");
        assert_eq!(k["calibration"]["preprocess"], "half");
        assert_eq!(k["quantize"]["exclude_ops"], json!(["Add", "Softmax"]));
        assert_eq!(k["quantize"]["weight_bits"], 7);
        assert!(k["quantize"].get("inputs").is_none());
        assert_ne!(k, s.resolve("m.onnx", "aarch64").unwrap().key_config());
    }

    #[test]
    fn bad_settings_name_the_fix() {
        let both = Settings { calibration_images: Some("a".into()), calibration_data: Some("b".into()), ..Default::default() };
        assert!(both.resolve("m.onnx", "x86_64").unwrap_err().to_string().contains("both set"));
        let bits = Settings { weight_bits: Some(4), ..Default::default() };
        assert!(bits.resolve("m.onnx", "x86_64").unwrap_err().to_string().contains("use 7"));
        let pre = Settings { preprocess: Some("half".into()), ..Default::default() };
        assert!(pre.resolve("m.onnx", "x86_64").unwrap_err().to_string().contains("set calibration_images"));
        let shape = Settings { input_shape: Some([("x".to_string(), Dims::Text("1x3xQ".into()))].into()), ..Default::default() };
        assert!(shape.resolve("m.onnx", "x86_64").unwrap_err().to_string().contains("1x3x48x192"));
        let shape = Settings { input_shape: Some([("x".to_string(), Dims::Text("1x3x48x192".into()))].into()), ..Default::default() };
        assert_eq!(shape.resolve("m.onnx", "x86_64").unwrap().shapes, vec![("x".to_string(), vec![1, 3, 48, 192])]);
    }
}
