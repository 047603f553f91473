//! Validation: accuracy against FP32, latency side by side, fusion in ORT's optimised graph, verdict.
//!
//! [`validate`] runs both models on the same samples and compares every output (cosine similarity
//! in f64, top-1 agreement where an output is classifier-shaped, max absolute error), times them
//! interleaved in one process, reads ORT's optimised INT8 graph to count what fused, and judges
//! the result ([`Verdict`]). [`Report::check`] applies the caller's [`Gates`].

mod fusion;
mod latency;
pub mod metrics;
mod report;

pub use fusion::{fusion_counts, op_counts, optimized_model, Fusion};
pub use latency::{measure, Timing};
pub use metrics::OutputKind;
pub use report::{Gates, OutputReport, Report, Verdict};

use crate::calibrate::{load_samples, InputConfig, Source};
use crate::error::{Error, Result};
use crate::onnx::graph::GraphIndex;
use crate::onnx::Model;
use crate::runtime::{Feed, Optimization, Session, SessionOptions};
use metrics::OutputStats;
use std::collections::BTreeMap;

/// Seed of the default synthetic validation samples: not calibration's default seed (0), so that
/// zero-config validation does not measure the INT8 model on the very samples it was calibrated on.
pub const VALIDATION_SEED: u64 = 1;

/// How to validate.
#[derive(Debug, Clone)]
pub struct ValidateOptions {
    /// The samples both models run on, loaded by [`crate::calibrate::load_samples`] from the FP32
    /// model. Default: synthetic, seeded with [`VALIDATION_SEED`].
    pub inputs: InputConfig,
    /// Timed runs per model (median taken); at least 1.
    pub runs: usize,
    /// Untimed warm-up runs per model before timing.
    pub warmup: usize,
    /// Intra-op threads for both sessions; at least 1.
    pub threads: usize,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        ValidateOptions {
            inputs: InputConfig { source: Source::Synthetic { seed: VALIDATION_SEED }, ..InputConfig::default() },
            runs: 20,
            warmup: 3,
            threads: 1,
        }
    }
}

/// Runs `fp32` and `int8` on the same samples and measures accuracy, latency, size and fusion.
///
/// Both models must have the same output names and shapes (an INT8 model made from this FP32
/// one). Each is loaded once, at ORT's default optimisation level with intra-op spinning off, and
/// the same sessions serve accuracy and timing. Needs ONNX Runtime.
pub fn validate(fp32: &Model, int8: &Model, opts: &ValidateOptions) -> Result<Report> {
    if opts.runs == 0 {
        return Err(Error::Config("validation needs at least 1 timed run".into()));
    }
    if opts.threads == 0 {
        return Err(Error::Config("validation needs at least 1 thread".into()));
    }
    let (inputs, shape_notes) = shapes_from_int8(fp32, int8, &opts.inputs);
    let mut samples = load_samples(fp32, &inputs)?;
    samples.notes.splice(0..0, shape_notes);
    if samples.feeds.is_empty() {
        return Err(Error::Calibration {
            path: None,
            reason: "no validation samples were found; add samples or use synthetic inputs".into(),
        });
    }
    let ort_version = crate::runtime::runtime()?.version.clone();
    let session_opts = SessionOptions {
        threads: opts.threads,
        optimization: Optimization::All,
        optimized_model_path: None,
        spinning: false,
    };
    let mut s_fp32 = Session::from_model(fp32, &session_opts)?;
    let mut s_int8 = Session::from_model(int8, &session_opts)?;

    let int8_outputs: Vec<String> = s_int8.outputs().iter().map(|o| o.name.clone()).collect();
    for o in s_fp32.outputs() {
        if !int8_outputs.contains(&o.name) {
            return Err(Error::InvalidModel(format!(
                "the INT8 model{} has no output `{}`, which the FP32 model has (its outputs: {}); validate an INT8 model against the FP32 model it was made from",
                model_name(int8),
                o.name,
                int8_outputs.join(", ")
            )));
        }
    }
    let int8_inputs: Vec<String> = s_int8.inputs().iter().map(|i| i.name.clone()).collect();
    let fp32_inputs: Vec<String> = s_fp32.inputs().iter().map(|i| i.name.clone()).collect();
    let pick = |sample: &[(String, Feed)], names: &[String], which: &Model| -> Result<Vec<(String, Feed)>> {
        names
            .iter()
            .map(|n| {
                sample.iter().find(|(k, _)| k == n).cloned().ok_or_else(|| Error::Input {
                    name: n.clone(),
                    reason: format!(
                        "the model{} needs it but the validation samples don't provide it",
                        model_name(which)
                    ),
                })
            })
            .collect()
    };

    let producers = producer_ops(fp32);
    let mut stats: Vec<OutputStats> = Vec::new();
    for sample in &samples.feeds {
        let f_in = pick(sample, &fp32_inputs, fp32)?;
        let q_in = pick(sample, &int8_inputs, int8)?;
        let out_f = s_fp32.run(&f_in)?;
        let out_q: BTreeMap<String, ndarray::ArrayD<f32>> = s_int8.run(&q_in)?.into_iter().collect();
        for (i, (name, a)) in out_f.iter().enumerate() {
            let Some(b) = out_q.get(name) else {
                return Err(Error::InvalidModel(format!("the INT8 model returned no `{name}`")));
            };
            if a.shape() != b.shape() {
                return Err(Error::InvalidModel(format!(
                    "output `{name}` has shape {:?} in FP32 but {:?} in INT8; the models don't compute the same thing",
                    a.shape(),
                    b.shape()
                )));
            }
            if stats.len() <= i {
                stats.push(OutputStats::new(name, a.shape(), producers.get(name).map(String::as_str)));
            }
            let shape_now_matches = a.shape() == stats[i].shape.as_slice();
            let (a, b) = (a.as_standard_layout(), b.as_standard_layout());
            let (Some(a), Some(b)) = (a.as_slice(), b.as_slice()) else {
                return Err(Error::tensor(name, "output is not contiguous"));
            };
            stats[i].add(a, b, shape_now_matches);
        }
    }

    let first = &samples.feeds[0];
    let timing = latency::measure(
        &mut s_fp32,
        &mut s_int8,
        &pick(first, &fp32_inputs, fp32)?,
        &pick(first, &int8_inputs, int8)?,
        opts.warmup,
        opts.runs,
    )?;
    drop((s_fp32, s_int8));

    let optimized = optimized_model(int8)?;
    let fused = op_counts(&optimized);
    let fusion = Fusion::from_graphs(&optimized, fp32);

    let outputs: Vec<OutputReport> = stats
        .iter()
        .map(|s| OutputReport {
            name: s.name.clone(),
            shape: s.shape.clone(),
            kind: s.kind,
            cosine_mean: s.cosine_mean(),
            cosine_min: s.cosine_min(),
            max_abs_error: s.max_abs_error,
            blank_samples: s.blank_samples(),
            top1_agreement: s.top1_agreement(),
            int8_nonfinite: s.int8_nonfinite,
            fp32_nonfinite: s.fp32_nonfinite,
        })
        .collect();
    let worst = outputs.iter().min_by(|a, b| a.cosine_mean.total_cmp(&b.cosine_mean));
    let mut notes = Vec::new();
    for o in outputs.iter().filter(|o| o.blank_samples > 0 && o.blank_samples == samples.feeds.len()) {
        notes.push(format!(
            "output `{}`: every sample is blank (FP32 ~0 everywhere) and INT8 agrees, so its cosine of 1.0 compares \
             nothing; validate on inputs where the model responds (for a detector, images with objects in them)",
            o.name
        ));
    }
    for o in outputs.iter().filter(|o| o.fp32_nonfinite > 0) {
        notes.push(format!(
            "output `{}`: {} FP32 values are NaN or infinite and were left out",
            o.name, o.fp32_nonfinite
        ));
    }
    if matches!(opts.inputs.source, Source::Synthetic { .. }) {
        notes.push(
            "accuracy measured on synthetic inputs; pass real images or data for figures that reflect deployment"
                .into(),
        );
    }
    if fusion.float_conv_fed_by_dq > 0 {
        notes.push(format!(
            "{} Conv/MatMul run in float behind a DequantizeLinear: ORT did not fuse them",
            fusion.float_conv_fed_by_dq
        ));
    }
    let mut report = Report {
        verdict: Verdict::Broken,
        verdict_reason: String::new(),
        cosine_mean: worst.map_or(0.0, |w| w.cosine_mean),
        cosine_min: outputs.iter().map(|o| o.cosine_min).fold(1.0, f64::min),
        worst_output: worst.map(|w| w.name.clone()).unwrap_or_default(),
        top1_agreement: outputs.iter().filter_map(|o| o.top1_agreement).reduce(f64::min),
        max_abs_error: outputs.iter().map(|o| o.max_abs_error).fold(0.0, f64::max),
        outputs,
        // Microsecond resolution is all the timing can claim; it also keeps the JSON readable.
        fp32_ms: round_to(timing.fp32_ms, 1e3),
        int8_ms: round_to(timing.int8_ms, 1e3),
        speedup: if timing.int8_ms > 0.0 { round_to(timing.fp32_ms / timing.int8_ms, 1e4) } else { 0.0 },
        threads: opts.threads,
        runs: opts.runs,
        warmup: opts.warmup,
        fp32_bytes: serialized_len(fp32),
        int8_bytes: serialized_len(int8),
        fused,
        fusion,
        samples: samples.feeds.len(),
        sample_notes: samples.notes,
        notes,
        ort_version,
    };
    report.judge();
    Ok(report)
}

fn round_to(x: f64, per_unit: f64) -> f64 {
    (x * per_unit).round() / per_unit
}

/// The serialized size of a model (weights held in external data included).
fn serialized_len(model: &Model) -> u64 {
    use prost::Message;
    model.proto.encoded_len() as u64
}

fn model_name(m: &Model) -> String {
    m.path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default()
}

/// Declared dims of a graph input: `Some(v)` for a fixed size, `None` for a dynamic one.
fn declared_dims(model: &Model, name: &str) -> Option<Vec<Option<i64>>> {
    use crate::onnx::proto::{tensor_shape_proto::dimension::Value, type_proto};
    let vi = model.graph().input.iter().find(|v| v.name == name)?;
    let Some(type_proto::Value::TensorType(t)) = vi.r#type.as_ref()?.value.as_ref() else { return None };
    let dims = &t.shape.as_ref()?.dim;
    Some(
        dims.iter().map(|d| if let Some(Value::DimValue(v)) = d.value { (v > 0).then_some(v) } else { None }).collect(),
    )
}

/// An INT8 model often has its input shape fixed where the FP32 one is dynamic (quantizers fix
/// it for calibration). Unless the user chose a shape, feed both models the INT8 model's.
fn shapes_from_int8(fp32: &Model, int8: &Model, cfg: &InputConfig) -> (InputConfig, Vec<String>) {
    let mut cfg = cfg.clone();
    let mut notes = Vec::new();
    for name in GraphIndex::new(fp32.graph()).inputs {
        if cfg.shapes.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let (Some(f), Some(q)) = (declared_dims(fp32, &name), declared_dims(int8, &name)) else { continue };
        let Some(fixed): Option<Vec<i64>> = q.iter().copied().collect() else { continue };
        let compatible = f.len() == fixed.len() && f.iter().zip(&fixed).all(|(a, b)| a.is_none_or(|a| a == *b));
        if compatible && f.iter().any(Option::is_none) {
            let dims = fixed.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
            notes.push(format!("input `{name}`: shape {dims} taken from the INT8 model, where it is fixed"));
            cfg.shapes.push((name, fixed));
        }
    }
    (cfg, notes)
}

/// Graph output → op type of the node that computes it, looking through ops that only reshape.
fn producer_ops(model: &Model) -> BTreeMap<String, String> {
    const PASS_THROUGH: &[&str] = &["Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze"];
    let g = model.graph();
    let ix = GraphIndex::new(g);
    let mut out = BTreeMap::new();
    for o in &g.output {
        let mut tensor = o.name.as_str();
        let mut found = None;
        for _ in 0..16 {
            let Some(n) = ix.producer_of(tensor).map(|i| &g.node[i]) else { break };
            if PASS_THROUGH.contains(&n.op_type.as_str()) {
                if let Some(i) = n.input.first() {
                    tensor = i;
                    continue;
                }
            }
            found = Some(n.op_type.clone());
            break;
        }
        if let Some(op) = found {
            out.insert(o.name.clone(), op);
        }
    }
    out
}
