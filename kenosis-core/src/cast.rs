//! `kenosis cast`: FP32 → FP16 or BF16.
//!
//! What ONNX Runtime's CPU provider can run in half precision decides the result. Measured on
//! ORT 1.31 (x86_64; `tests/cast.rs` checks it): its CPU kernels for Conv, ConvTranspose,
//! MatMul, Gemm, Add/Sub/Mul/Div, Relu, Sigmoid, HardSigmoid, HardSwish, Softmax,
//! GlobalAveragePool, Resize, BatchNormalization and the other compute ops are float32 only;
//! given FP16 inputs ORT silently wraps each of them in Casts. Only data movement (Reshape,
//! Transpose, Concat, Slice, Gather, ...) and Clip/Max/Min have FP16 kernels, and for BF16
//! only data movement does. So:
//!
//! - **FP16**: float weights (initializers and Constant values) are stored as FP16 and Cast to
//!   FP32 right before the ops that need FP32, which then run as before. Data-movement ops on
//!   FP16 tensors stay FP16. The file is about half the size and the outputs match FP32 to
//!   within FP16 rounding of the weights. Runtimes with FP16 kernels (GPU providers) fold the
//!   Casts away as well, but the compute stays FP32 as written.
//! - **BF16**: a storage format. Weights are stored as BF16 (same size as FP16, FP32's exponent
//!   range, 8 bits of mantissa) and Cast to FP32 before use; on ORT's CPU provider the model
//!   runs at FP32 speed with slightly larger weight rounding than FP16. BF16 Cast needs
//!   opset 13, so older models are first upgraded with [`crate::onnx::passes::upgrade_opset`].
//!
//! Float tensors holding values beyond FP16's range (±65504) stay FP32.
//!
//! Graph inputs and outputs stay FP32 (Casts at the edges) unless `half_io` is set. Non-float
//! tensors (int64 shapes, indices, bools) are never touched, nor are float tensors under
//! [`SMALL_TENSOR`] elements that only FP32 ops read (Resize scales, Clip bounds, biases,
//! BatchNorm parameters): rounding them saves little space and can cost accuracy. Subgraphs (If/Loop/Scan bodies) are converted the same way; tensors they
//! read from the outer graph stay FP32.

use crate::error::{Error, Result};
use crate::inspect::constant_value;
use crate::onnx::graph::{all_names, for_each_graph, implicit_inputs, subgraphs_mut, topological_order, unique_name};
use crate::onnx::proto::{data_type as dt, type_proto, GraphProto, NodeProto, TensorProto, ValueInfoProto};
use crate::onnx::{builder, tensor, Model};
use half::{bf16, f16};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The half-precision format to cast to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// IEEE half precision.
    Fp16,
    /// bfloat16 (storage only on ORT's CPU provider).
    Bf16,
}

impl Precision {
    /// The ONNX data type.
    pub fn data_type(self) -> i32 {
        match self {
            Precision::Fp16 => dt::FLOAT16,
            Precision::Bf16 => dt::BFLOAT16,
        }
    }

    /// `fp16` or `bf16`, also the default output suffix.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp16 => "fp16",
            Precision::Bf16 => "bf16",
        }
    }

    /// Ops that ORT's CPU provider runs natively in this format at some opset (see the module docs).
    pub fn native_ops(self) -> &'static [&'static str] {
        match self {
            Precision::Fp16 => FP16_NATIVE_OPS,
            Precision::Bf16 => BF16_NATIVE_OPS,
        }
    }

    /// True when ORT's CPU provider has a kernel of this format for `op` at default-domain `opset`.
    pub fn runs_natively(self, op: &str, opset: i64) -> bool {
        let from_12 = self == Precision::Fp16 && FP16_NATIVE_FROM_OPSET_12.contains(&op);
        self.native_ops().contains(&op) && (opset >= 12 || !from_12)
    }
}

/// Ops with real FP16 CPU kernels in ORT 1.31 that Kenosis keeps in FP16 when their data input is FP16.
pub const FP16_NATIVE_OPS: &[&str] = &[
    "Identity",
    "Flatten",
    "Transpose",
    "Concat",
    "Reshape",
    "Squeeze",
    "Unsqueeze",
    "Expand",
    "Slice",
    "Gather",
    "Clip",
    "Max",
    "Min",
];

/// Of [`FP16_NATIVE_OPS`], those whose FP16 kernels exist only from opset 12.
pub const FP16_NATIVE_FROM_OPSET_12: &[&str] = &["Clip", "Max", "Min"];

/// Ops with real BF16 CPU kernels in ORT 1.31 that Kenosis keeps in BF16 when their data input is BF16.
pub const BF16_NATIVE_OPS: &[&str] =
    &["Identity", "Flatten", "Transpose", "Concat", "Reshape", "Squeeze", "Unsqueeze", "Slice", "Gather"];

/// Float tensors with fewer elements stay FP32 unless a half-precision op reads them: biases,
/// BatchNorm parameters and small depthwise kernels are a few percent of the bytes, and some
/// models are very sensitive to their rounding (PP-OCRv4's detector loses 0.006 of cosine to
/// one 144-element depthwise kernel in FP16).
pub const SMALL_TENSOR: usize = 1024;

/// How to cast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CastOptions {
    /// Target format.
    pub to: Precision,
    /// Make graph inputs and outputs half precision too (the caller feeds and reads FP16/BF16).
    pub half_io: bool,
}

/// What a cast did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CastReport {
    /// `fp16` or `bf16`.
    pub to: String,
    /// Float tensors now stored in half precision.
    pub tensors_converted: usize,
    /// Their elements.
    pub elements_converted: u64,
    /// Values beyond FP16's range clamped to ±65504 (only where a half-precision op needs them).
    pub values_clamped: u64,
    /// Nodes running in half precision.
    pub half_nodes: usize,
    /// Op type → nodes left in FP32 (most ops have no half kernel on ORT's CPU provider).
    pub fp32_ops: BTreeMap<String, usize>,
    /// Cast nodes added.
    pub casts_added: usize,
    /// Anything the user should know.
    pub notes: Vec<String>,
}

impl CastReport {
    /// A short readable summary.
    pub fn human(&self) -> String {
        let mut s = format!(
            "{} float tensors ({} values) stored as {}, {} nodes in {}, {} Cast nodes added\n",
            self.tensors_converted, self.elements_converted, self.to, self.half_nodes, self.to, self.casts_added
        );
        let kept: usize = self.fp32_ops.values().sum();
        if kept > 0 {
            let mut v: Vec<(&String, &usize)> = self.fp32_ops.iter().collect();
            v.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
            let list: Vec<String> = v.iter().take(12).map(|(o, n)| format!("{o} {n}")).collect();
            s.push_str(&format!(
                "{kept} nodes run in FP32 (ORT's CPU provider has no {} kernel for most ops): {}{}\n",
                self.to,
                list.join(", "),
                if v.len() > 12 { ", ..." } else { "" }
            ));
        }
        for n in &self.notes {
            s.push_str(&format!("note: {n}\n"));
        }
        s
    }
}

/// Converts `model` to half precision as described in the module docs.
pub fn cast(model: &Model, opts: &CastOptions) -> Result<(Model, CastReport)> {
    let mut out = model.clone();
    let mut report = CastReport { to: opts.to.name().into(), ..Default::default() };
    let what = model.path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "the model".into());
    if !has_float(out.graph()) {
        return Err(Error::Unsupported(format!(
            "{what} holds no float32 weights, inputs or outputs to cast; is it already in half precision?"
        )));
    }
    if opts.to == Precision::Bf16 {
        ensure_opset_13(&mut out, &what, &mut report)?;
    }
    let opset = out.opset("").unwrap_or(1);
    let mut ctx = Ctx { to: opts.to, opset, taken: all_names(out.graph()), report: &mut report };
    let graph = out.graph_mut();
    cast_graph(graph, &mut ctx, opts.half_io, true)?;
    let mut seen = HashSet::new();
    report.notes.retain(|n| seen.insert(n.clone()));
    Ok((out, report))
}

fn has_float(g: &GraphProto) -> bool {
    let mut found = false;
    for_each_graph(g, &mut |g| {
        found |= g.initializer.iter().any(|t| t.data_type == dt::FLOAT)
            || g.node.iter().any(|n| constant_value(n).is_some_and(|t| t.data_type == dt::FLOAT))
            || g.input.iter().chain(&g.output).any(|v| elem_type(v) == Some(dt::FLOAT));
    });
    found
}

fn ensure_opset_13(model: &mut Model, what: &str, report: &mut CastReport) -> Result<()> {
    let from = model.opset("").unwrap_or(1);
    if from >= 13 {
        return Ok(());
    }
    let r = crate::onnx::passes::upgrade_opset(model, 13).map_err(|e| {
        Error::Unsupported(format!(
            "{what} uses opset {from} and BF16 needs opset 13, but the upgrade failed: {e}. Cast to fp16 instead, \
             which works at any opset"
        ))
    })?;
    report.notes.push(format!(
        "the default opset went from {from} to 13 (BF16 Casts need it; {} nodes rewritten to keep their meaning)",
        r.rewritten
    ));
    Ok(())
}

struct Ctx<'r> {
    to: Precision,
    opset: i64,
    taken: HashSet<String>,
    report: &'r mut CastReport,
}

impl Ctx<'_> {
    fn suffix(&self) -> &'static str {
        self.to.name()
    }

    /// False when FP16 can't hold the tensor's values (BatchNorm variances of 1e8 exist in real
    /// models); such tensors keep float32, since clamping them would change the results.
    fn fits(&mut self, t: &TensorProto) -> Result<bool> {
        if self.to != Precision::Fp16 {
            return Ok(true);
        }
        let limit = f16::MAX.to_f32();
        let largest = tensor::to_f32(t)?.iter().filter(|x| x.is_finite()).fold(0.0f32, |m, x| m.max(x.abs()));
        if largest <= limit {
            return Ok(true);
        }
        self.report.notes.push(format!(
            "`{}` stays float32: it holds values up to {largest:e}, beyond FP16's range (±65504)",
            t.name
        ));
        Ok(false)
    }

    /// `t`'s values in the target format, same name, dims and doc.
    fn convert(&mut self, t: &TensorProto) -> Result<TensorProto> {
        let v = tensor::to_f32(t)?;
        let mut out = match self.to {
            Precision::Fp16 => {
                let mut clamped = 0u64;
                let h: Vec<f16> = v
                    .iter()
                    .map(|&x| {
                        if x.is_finite() && x.abs() > f16::MAX.to_f32() {
                            clamped += 1;
                            f16::from_f32(x.clamp(f16::MIN.to_f32(), f16::MAX.to_f32()))
                        } else {
                            f16::from_f32(x)
                        }
                    })
                    .collect();
                if clamped > 0 {
                    self.report.values_clamped += clamped;
                }
                tensor::from_f16(&t.name, &t.dims, &h)
            }
            Precision::Bf16 => {
                tensor::from_bf16(&t.name, &t.dims, &v.iter().map(|&x| bf16::from_f32(x)).collect::<Vec<_>>())
            }
        };
        out.doc_string = t.doc_string.clone();
        out.metadata_props = t.metadata_props.clone();
        self.report.tensors_converted += 1;
        self.report.elements_converted += v.len() as u64;
        Ok(out)
    }
}

fn elem_type(v: &ValueInfoProto) -> Option<i32> {
    match v.r#type.as_ref()?.value.as_ref()? {
        type_proto::Value::TensorType(t) => Some(t.elem_type),
        _ => None,
    }
}

fn set_elem_type(v: &mut ValueInfoProto, to: i32) {
    if let Some(type_proto::Value::TensorType(t)) = v.r#type.as_mut().and_then(|t| t.value.as_mut()) {
        t.elem_type = to;
    }
}

/// Indices of the inputs that share the data type of input 0, for the native ops.
fn typed_inputs(op: &str, n_inputs: usize) -> Vec<usize> {
    match op {
        "Concat" | "Max" | "Min" => (0..n_inputs).collect(),
        "Clip" => (0..n_inputs.min(3)).collect(),
        _ => vec![0],
    }
}

fn is_default_domain(n: &NodeProto) -> bool {
    n.domain.is_empty() || n.domain == "ai.onnx"
}

fn cast_node(name: &str, input: &str, output: &str, to: i32) -> NodeProto {
    builder::node("Cast", name, &[input], &[output], vec![builder::attr_i("to", to as i64)])
}

/// Converts one graph; `top` marks the main graph (whose inputs/outputs `half_io` applies to).
fn cast_graph(g: &mut GraphProto, ctx: &mut Ctx, half_io: bool, top: bool) -> Result<()> {
    for n in &mut g.node {
        for sg in subgraphs_mut(n) {
            cast_graph(sg, ctx, false, false)?;
        }
    }
    let to = ctx.to.data_type();
    let half_io = half_io && top;

    // Tensors that must keep their FP32 type: read by subgraphs from outside, or the graph's outputs.
    let mut pinned: HashSet<String> = g.node.iter().flat_map(implicit_inputs).collect();
    let listed_inputs: HashSet<String> = g.input.iter().map(|v| v.name.clone()).collect();
    if !half_io {
        pinned.extend(g.output.iter().map(|v| v.name.clone()));
    }

    let mut half: HashSet<String> = HashSet::new();
    // Small FP32 constants by name, so a half op that reads one gets a converted copy, not a Cast.
    let mut small: HashMap<String, TensorProto> = HashMap::new();
    for i in 0..g.initializer.len() {
        let t = &g.initializer[i];
        if t.data_type != dt::FLOAT || listed_inputs.contains(&t.name) {
            continue;
        }
        if pinned.contains(&t.name) || tensor::len(t)? < SMALL_TENSOR {
            small.insert(t.name.clone(), t.clone());
            continue;
        }
        if !ctx.fits(t)? {
            continue;
        }
        let c = ctx.convert(t)?;
        half.insert(c.name.clone());
        g.initializer[i] = c;
    }
    for n in &mut g.node {
        let Some(t) = constant_value(n) else { continue };
        let Some(out) = n.output.first().cloned() else { continue };
        if t.data_type != dt::FLOAT {
            continue;
        }
        if pinned.contains(&out) || tensor::len(t)? < SMALL_TENSOR {
            small.insert(out, t.clone());
            continue;
        }
        if !ctx.fits(t)? {
            continue;
        }
        let c = ctx.convert(t)?;
        if let Some(a) = n.attribute.iter_mut().find(|a| a.name == "value") {
            a.t = Some(c);
        }
        half.insert(out);
    }
    let mut notes = Vec::new();
    if half_io {
        for v in &mut g.input {
            if elem_type(v) == Some(dt::FLOAT) && !g.initializer.iter().any(|t| t.name == v.name) {
                if pinned.contains(&v.name) {
                    notes.push(format!("input `{}` stays float32: a subgraph reads it directly", v.name));
                    continue;
                }
                set_elem_type(v, to);
                half.insert(v.name.clone());
            }
        }
    }

    // Which nodes run in half precision: native ops whose data input already is half.
    let mut half_node = vec![false; g.node.len()];
    for i in topological_order(g)? {
        let n = &g.node[i];
        if n.op_type == "Constant" || !is_default_domain(n) || !ctx.to.runs_natively(&n.op_type, ctx.opset) {
            continue;
        }
        let data_half = n.input.first().is_some_and(|x| half.contains(x));
        if data_half && n.output.len() == 1 && !n.output.iter().any(|o| pinned.contains(o)) {
            half_node[i] = true;
            half.insert(n.output[0].clone());
        }
    }

    // Rewrite inputs, adding Casts (or converted copies of small constants) where types meet.
    let old_nodes = std::mem::take(&mut g.node);
    let mut nodes = Vec::with_capacity(old_nodes.len());
    let mut cache: HashMap<(String, bool), String> = HashMap::new();
    let mut new_inits = Vec::new();
    for (i, mut n) in old_nodes.into_iter().enumerate() {
        if half_node[i] {
            ctx.report.half_nodes += 1;
            for j in typed_inputs(&n.op_type, n.input.len()) {
                let x = n.input[j].clone();
                if x.is_empty() || half.contains(&x) {
                    continue;
                }
                let key = (x.clone(), true);
                if let Some(y) = cache.get(&key) {
                    n.input[j] = y.clone();
                    continue;
                }
                let base = format!("{x}_{}", ctx.suffix());
                let y = unique_name(&mut ctx.taken, &base);
                let small_copy = match small.get(&x) {
                    Some(t) if ctx.fits(t)? => Some(t),
                    _ => None,
                };
                if let Some(t) = small_copy {
                    let mut c = ctx.convert(t)?;
                    c.name = y.clone();
                    new_inits.push(c);
                } else {
                    let cn = unique_name(&mut ctx.taken, &format!("Cast_{y}"));
                    nodes.push(cast_node(&cn, &x, &y, to));
                    ctx.report.casts_added += 1;
                }
                cache.insert(key, y.clone());
                n.input[j] = y;
            }
        } else {
            if n.op_type != "Constant" {
                *ctx.report.fp32_ops.entry(n.op_type.clone()).or_default() += 1;
            }
            for j in 0..n.input.len() {
                let x = n.input[j].clone();
                if !half.contains(&x) {
                    continue;
                }
                let key = (x.clone(), false);
                let y = match cache.get(&key) {
                    Some(y) => y.clone(),
                    None => {
                        let y = unique_name(&mut ctx.taken, &format!("{x}_fp32"));
                        let cn = unique_name(&mut ctx.taken, &format!("Cast_{y}"));
                        nodes.push(cast_node(&cn, &x, &y, dt::FLOAT));
                        ctx.report.casts_added += 1;
                        cache.insert(key, y.clone());
                        y
                    }
                };
                n.input[j] = y;
            }
        }
        nodes.push(n);
    }
    g.initializer.extend(new_inits);

    // With half_io, outputs computed in FP32 get a final Cast; the output keeps its name.
    if half_io {
        let outputs: Vec<String> =
            g.output.iter().filter(|v| elem_type(v) == Some(dt::FLOAT)).map(|v| v.name.clone()).collect();
        for y in outputs {
            if !half.contains(&y) {
                if pinned.contains(&y) || listed_inputs.contains(&y) {
                    notes.push(format!(
                        "output `{y}` stays float32: a subgraph or the caller's input is the same tensor"
                    ));
                    continue;
                }
                let y32 = unique_name(&mut ctx.taken, &format!("{y}_fp32"));
                for n in &mut nodes {
                    for s in n.input.iter_mut().chain(n.output.iter_mut()) {
                        if *s == y {
                            *s = y32.clone();
                        }
                    }
                }
                for t in &mut g.initializer {
                    if t.name == y {
                        t.name = y32.clone();
                    }
                }
                let cn = unique_name(&mut ctx.taken, &format!("Cast_{y}"));
                nodes.push(cast_node(&cn, &y32, &y, to));
                ctx.report.casts_added += 1;
                half.insert(y.clone());
            }
            if let Some(v) = g.output.iter_mut().find(|v| v.name == y) {
                set_elem_type(v, to);
            }
        }
    }
    g.node = nodes;
    for v in &mut g.value_info {
        if half.contains(&v.name) && elem_type(v) == Some(dt::FLOAT) {
            set_elem_type(v, to);
        }
    }
    ctx.report.notes.extend(notes);
    Ok(())
}
