//! Static INT8 quantization: qparam math, QDQ placement, protection, and the pipeline.
//!
//! The output is a QDQ model (QuantizeLinear / DequantizeLinear around float ops) laid out so
//! that ONNX Runtime's CPU provider fuses each group into an integer kernel: UINT8 asymmetric
//! activations with explicit zero points, symmetric INT8 weights (7-bit by default on x86-64),
//! INT32 biases, Q after Relu rather than between Conv and Relu, identical qparams on both
//! sides of data-movement ops, and one DequantizeLinear per reader.
//!
//! The output opset is max(13, the model's): per-channel DequantizeLinear needs `axis`
//! (opset 13), and ORT's QDQ fusions cover 13+. Models below 13 must be upgraded by the
//! prepare passes first.
//!
//! With `target_cosine` set, [`search`] measures the result against FP32 on the calibration
//! samples and keeps the fewest leading learned layers float that reach the target (mixed
//! precision); activation ranges read only by saturating ops are narrowed first (`saturate`).
//!
//! Models whose whole network sits inside If/Loop/Scan subgraphs (silero_vad) are returned
//! unchanged with a note in the summary: Kenosis does not quantize subgraphs. A main graph with
//! no learned op anywhere is refused with [`Error::NothingToQuantize`].

mod config;
mod emit;
mod fold;
mod fp16;
pub mod plan;
pub mod qparams;
mod refuse;
mod saturate;
pub mod search;
mod summary;

pub use config::QuantizeConfig;
pub use summary::{NodeDecision, Summary};

use crate::calibrate::{self, Ranges};
use crate::error::{Error, Result};
use crate::onnx::passes::{self, PrepareOptions};
use crate::onnx::Model;
use plan::{node_label, Protect, Role};
use refuse::LEARNED_OPS;

/// The opset Kenosis's QDQ output needs at least.
pub const MIN_OPSET: i64 = 13;

/// A quantized model, the ranges it was built from, and the decisions.
#[derive(Debug, Clone)]
pub struct Quantized {
    /// The INT8 QDQ model.
    pub model: Model,
    /// The activation ranges used (storable: [`rebuild`] reproduces the model from them).
    pub ranges: Ranges,
    /// What was decided and why.
    pub summary: Summary,
}

/// Quantizes an already prepared FP32 model with known ranges: pure Rust, no ONNX Runtime,
/// deterministic. `prepared` must be the output of the prepare passes (weights as
/// initializers, BatchNorm folded, opset >= 13); `ranges` must name its tensors.
pub fn apply(prepared: &Model, ranges: &Ranges, cfg: &QuantizeConfig) -> Result<Quantized> {
    apply_with(prepared, ranges, cfg, &[])
}

/// [`apply`], keeping `searched` (node labels the accuracy search chose) float as well.
pub fn apply_with(prepared: &Model, ranges: &Ranges, cfg: &QuantizeConfig, searched: &[String]) -> Result<Quantized> {
    let graph = prepared.graph();
    refuse::check_not_quantized(graph)?;
    let (bits, bits_reason) = cfg.effective_weight_bits()?;
    let opset = prepared.opset("").unwrap_or(0);
    let mut summary = Summary {
        weight_bits: bits,
        weight_bits_reason: bits_reason,
        per_channel: cfg.per_channel,
        target_arch: cfg.effective_arch(),
        opset,
        ..Default::default()
    };
    let main_has_learned = graph.node.iter().any(|n| LEARNED_OPS.contains(&n.op_type.as_str()));
    if !main_has_learned {
        if refuse::has_learned_ops_anywhere(graph) {
            summary.notes.push(
                "the network sits inside If/Loop/Scan subgraphs, which Kenosis does not quantize; the model is left FP32"
                    .into(),
            );
            for n in &graph.node {
                summary.nodes.push(NodeDecision {
                    node: node_label(n),
                    op_type: n.op_type.clone(),
                    quantized: false,
                    reason: "model left FP32 (network inside subgraphs)".into(),
                });
                *summary.kept_float.entry(n.op_type.clone()).or_default() += 1;
            }
            return Ok(Quantized {
                model: prepared.clone(),
                ranges: ranges.clone(),
                summary,
            });
        }
        return Err(Error::NothingToQuantize(format!(
            "the graph `{}` has no Conv, ConvTranspose, Gemm or MatMul; there is no float compute worth quantizing",
            graph.name
        )));
    }
    if opset < MIN_OPSET {
        return Err(Error::Unsupported(format!(
            "the model imports opset {opset}; QDQ with per-channel weights needs opset >= {MIN_OPSET}. Run the prepare passes (opset upgrade) first"
        )));
    }
    let protect = Protect {
        exclude_nodes: cfg.exclude_nodes.iter().cloned().collect(),
        exclude_ops: cfg.exclude_ops.iter().cloned().collect(),
        searched: searched.iter().cloned().collect(),
    };
    let calibrated = ranges;
    let mut ranges = calibrated.clone();
    let narrowed = saturate::narrow_ranges(graph, &mut ranges);
    let ranges = &ranges;
    let p = plan::make_plan(graph, ranges, &protect)?;
    for (i, n) in graph.node.iter().enumerate() {
        let (quantized, reason) = match &p.roles[i] {
            Role::Quant(_) => (true, "quantized".to_string()),
            Role::Absorbed => (
                true,
                "folded into the quantized node before it (Q after the activation)".to_string(),
            ),
            Role::Float(why) => (false, why.clone()),
        };
        let counts = if quantized {
            &mut summary.quantized
        } else {
            &mut summary.kept_float
        };
        *counts.entry(n.op_type.clone()).or_default() += 1;
        summary.nodes.push(NodeDecision {
            node: node_label(n),
            op_type: n.op_type.clone(),
            quantized,
            reason,
        });
    }
    if !p.roles.iter().any(|r| matches!(r, Role::Quant(_))) {
        let why: Vec<String> = summary
            .nodes
            .iter()
            .filter(|d| LEARNED_OPS.contains(&d.op_type.as_str()))
            .take(5)
            .map(|d| format!("`{}`: {}", d.node, d.reason))
            .collect();
        return Err(Error::NothingToQuantize(format!(
            "no node can be quantized ({})",
            why.join("; ")
        )));
    }
    if !cfg.per_channel {
        let depthwise = graph
            .node
            .iter()
            .zip(&p.roles)
            .filter(|(n, r)| {
                n.op_type == "Conv"
                    && matches!(r, Role::Quant(_))
                    && crate::onnx::graph::attr_i(n, "group").unwrap_or(1) > 1
            })
            .count();
        if depthwise > 0 {
            summary.notes.push(format!(
                "{depthwise} grouped/depthwise Conv(s) get per-channel weight scales (always, for accuracy); the other Convs are per tensor unless per_channel is set"
            ));
        }
    }
    let mut model = prepared.clone();
    let stats = emit::emit(
        model.graph_mut(),
        &p,
        ranges,
        emit::WeightOpts {
            bits,
            per_channel: cfg.per_channel,
        },
    )?;
    if narrowed > 0 {
        summary.notes.push(format!(
            "{narrowed} activation range(s) narrowed to where their HardSigmoid/Clip/Relu readers saturate"
        ));
    }
    let halved = if cfg.fp16_float_layers { fp16::store_half(model.graph_mut(), &searched.iter().cloned().collect()) } else { 0 };
    if halved > 0 {
        summary.notes.push(format!(
            "{halved} weight(s) of the layers the accuracy search kept float are stored as FP16 (ONNX Runtime casts them to FP32 once, at load)"
        ));
    }
    summary.searched_float = searched.to_vec();
    summary.q_nodes = stats.q_nodes;
    summary.dq_nodes = stats.dq_nodes;
    summary.notes.extend(stats.notes);
    model.path = None;
    Ok(Quantized {
        model,
        ranges: calibrated.clone(),
        summary,
    })
}

/// Quantizes an FP32 model: prepare the graph, calibrate it through ONNX Runtime on the
/// inputs `cfg.inputs` describes, then [`apply`].
pub fn quantize(fp32: &Model, cfg: &QuantizeConfig) -> Result<Quantized> {
    quantize_with_progress(fp32, cfg, &mut |_, _, _| {})
}

/// The long-running steps of [`quantize_with_progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Calibration samples run.
    Calibrating,
    /// Accuracy-search candidates scored (only with `target_cosine`).
    Searching,
}

/// [`quantize`], calling `progress(step, done, total)` as calibration samples are run and
/// accuracy-search candidates scored.
pub fn quantize_with_progress(
    fp32: &Model,
    cfg: &QuantizeConfig,
    progress: &mut dyn FnMut(Step, usize, usize),
) -> Result<Quantized> {
    refuse::check_not_quantized(fp32.graph())?;
    cfg.canonical()?;
    let (prepared, prep_notes) = prepare(fp32)?;
    let samples = calibrate::load_samples(&prepared, &cfg.inputs)?;
    let ranges =
        calibrate::collect_ranges_with_progress(&prepared, &samples, &mut |d, t| progress(Step::Calibrating, d, t))?;
    let mut q = apply(&prepared, &ranges, cfg)?;
    if let Some(target) = cfg.target_cosine {
        let mut found = search::search(&prepared, &ranges, &samples, cfg, target, &q, &mut |d, t| {
            progress(Step::Searching, d, t)
        })?;
        if let Some(chosen) = found.model.take() {
            q = chosen;
        }
        q.summary.notes.push(found.note(samples.len().min(search::SEARCH_SAMPLES), target));
        q.summary.target_met = Some(found.met(target));
        if matches!(cfg.inputs.source, calibrate::Source::Synthetic { .. }) && found.candidates > 0 {
            q.summary.notes.push(
                "accuracy search: it scored synthetic calibration inputs (noise), so its cosine says little about real \
                 inputs; calibrate with --calibration-images or --calibration-data for a choice that holds"
                    .into(),
            );
        }
    }
    let mut notes = prep_notes;
    notes.extend(samples.notes.iter().map(|n| format!("calibration: {n}")));
    notes.append(&mut q.summary.notes);
    q.summary.notes = notes;
    Ok(q)
}

/// Rebuilds the INT8 model from stored ranges without ONNX Runtime: prepare, then [`apply_with`].
/// Byte-identical to what [`quantize`] produced from the same model, ranges and config;
/// `searched` is the quantize run's `summary.searched_float` (empty without `target_cosine`).
pub fn rebuild(fp32: &Model, ranges: &Ranges, cfg: &QuantizeConfig, searched: &[String]) -> Result<Quantized> {
    refuse::check_not_quantized(fp32.graph())?;
    let (prepared, prep_notes) = prepare(fp32)?;
    let mut q = apply_with(&prepared, ranges, cfg, searched)?;
    let mut notes = prep_notes;
    notes.append(&mut q.summary.notes);
    q.summary.notes = notes;
    Ok(q)
}

/// The graph passes quantization runs first (Constant extraction, opset >= 13, no-op removal,
/// BatchNorm folding, hard-swish fusion, de-duplication, topological order), with a note per
/// pass that changed something. Calibration ranges name the tensors of this prepared graph.
pub fn prepare(fp32: &Model) -> Result<(Model, Vec<String>)> {
    let mut m = fp32.clone();
    let opts = PrepareOptions {
        min_opset: Some(MIN_OPSET),
        ..Default::default()
    };
    let r = passes::prepare(&mut m, &opts)?;
    let reshapes = fold::fold_constant_reshapes(m.graph_mut())?;
    let biases = fold::fold_conv_add_bias(m.graph_mut())?;
    if reshapes + biases > 0 {
        passes::prune(&mut m)?;
    }
    let mut notes = Vec::new();
    let mut say = |n: usize, what: &str| {
        if n > 0 {
            notes.push(format!("prepare: {n} {what}"));
        }
    };
    say(r.constants_extracted, "Constant node(s) moved to initializers");
    say(r.casts_folded, "Cast(s) of float initializers folded");
    say(r.noops_removed, "Identity/Dropout node(s) removed");
    say(
        r.batchnorm_folded,
        "BatchNormalization node(s) folded into the Conv before",
    );
    say(
        r.hardswish_fused,
        "written-out hard-swish pattern(s) rewritten to HardSwish",
    );
    say(
        r.hardsigmoid_fused,
        "written-out hard-sigmoid pattern(s) rewritten to HardSigmoid",
    );
    say(r.initializers_merged, "identical initializer(s) merged");
    say(reshapes, "Reshape(s) of constants folded");
    say(biases, "Conv -> Add(constant) pair(s) folded into the Conv bias");
    if r.opset_to != r.opset_from {
        notes.push(format!("prepare: opset {} upgraded to {}", r.opset_from, r.opset_to));
    }
    Ok((m, notes))
}
