//! Default-domain opset upgrade: per-channel QDQ needs opset 13 (DequantizeLinear's `axis`),
//! and old exports sit at 11 or 12.

use super::util::{const_tensor, drop_stale_value_info, is_default_domain, make_node};
use crate::error::{Error, Result};
use crate::onnx::builder::attr_i as mk_attr_i;
use crate::onnx::graph::{all_names, attr_i, attr_ints, subgraphs_mut, topological_order, unique_name};
use crate::onnx::proto::{attribute_type as at, data_type as dt, type_proto, GraphProto, NodeProto, TensorProto};
use crate::onnx::{tensor, Model};
use std::collections::{HashMap, HashSet};

/// The newest default-domain opset [`upgrade_opset`] converts to.
pub const MAX_TARGET_OPSET: i64 = 17;
/// The oldest default-domain opset it converts from.
pub const MIN_SOURCE_OPSET: i64 = 7;

/// What [`upgrade_opset`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OpsetReport {
    /// Default-domain opset before.
    pub from: i64,
    /// Default-domain opset after (equal to `from` when nothing was needed).
    pub to: i64,
    /// Nodes rewritten (attributes moved to inputs, Softmax-family kept in their old meaning).
    pub rewritten: usize,
}

/// The IR version an opset needs at least.
pub fn min_ir_version(opset: i64) -> i64 {
    match opset {
        ..=8 => 3,
        9 => 4,
        10 => 5,
        11 => 6,
        12..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        _ => 10,
    }
}

/// Upgrades the default-domain opset to `target` (at most [`MAX_TARGET_OPSET`]), in the main
/// graph and every nested graph. Attributes that became inputs move to initializers
/// (Squeeze/Unsqueeze/ReduceSum axes and Split's split at 13, Clip's min/max and Pad's pads at
/// 11, Dropout's ratio at 12, Slice's starts/ends/axes and TopK's k at 10); removed attributes
/// are dropped (BatchNormalization spatial/is_test/consumed_inputs, Dropout is_test).
/// Softmax, LogSoftmax and Hardmax keep their pre-13 meaning (flatten to 2-D at `axis`): when
/// `axis` is the last axis that is `axis = -1`, otherwise `Flatten` + op + `Reshape` back to the
/// input's shape (read with `Shape`, so dynamic dims work). The IR version is raised when the
/// new opset needs it. A model already at `target` or newer is left as it is.
pub fn upgrade_opset(model: &mut Model, target: i64) -> Result<OpsetReport> {
    let from = model.opset("").ok_or_else(|| {
        Error::InvalidModel("the model imports no default-domain opset (opset_import has no \"\" entry)".into())
    })?;
    let mut report = OpsetReport { from, to: from, rewritten: 0 };
    if target <= from {
        return Ok(report);
    }
    if target > MAX_TARGET_OPSET {
        return Err(Error::Config(format!(
            "opset {target} is newer than Kenosis can upgrade to; choose {MAX_TARGET_OPSET} or lower"
        )));
    }
    if from < MIN_SOURCE_OPSET {
        return Err(Error::Unsupported(format!(
            "the model uses opset {from}; Kenosis upgrades from opset {MIN_SOURCE_OPSET} on. Re-export it at opset 13 or newer"
        )));
    }
    let mut proto_graph = model.graph().clone();
    let mut taken = all_names(&proto_graph);
    let cx = Upgrade { from, target };
    report.rewritten = cx.graph(&mut proto_graph, &mut taken)?;
    *model.graph_mut() = proto_graph;
    for o in model.proto.opset_import.iter_mut().filter(|o| is_default_domain(&o.domain)) {
        o.version = target;
    }
    model.proto.ir_version = model.proto.ir_version.max(min_ir_version(target));
    report.to = target;
    Ok(report)
}

struct Upgrade {
    from: i64,
    target: i64,
}

impl Upgrade {
    /// True when the upgrade crosses the version `v` at which an operator changed.
    fn crosses(&self, v: i64) -> bool {
        self.from < v && self.target >= v
    }

    fn graph(&self, g: &mut GraphProto, taken: &mut HashSet<String>) -> Result<usize> {
        let mut count = 0;
        for n in &mut g.node {
            for sg in subgraphs_mut(n) {
                count += self.graph(sg, taken)?;
            }
        }
        let ranks = infer_ranks(g);
        let elem = elem_types(g);
        let mut out = Vec::with_capacity(g.node.len());
        let mut inits = Vec::new();
        for n in std::mem::take(&mut g.node) {
            if !is_default_domain(&n.domain) {
                out.push(n);
                continue;
            }
            let mut ctx = NodeCtx { taken, inits: &mut inits, ranks: &ranks, elem: &elem, graph_inits: &g.initializer };
            let (nodes, changed) = self.node(n, &mut ctx)?;
            count += changed as usize;
            out.extend(nodes);
        }
        g.node = out;
        g.initializer.extend(inits);
        drop_stale_value_info(g);
        Ok(count)
    }

    fn node(&self, mut n: NodeProto, cx: &mut NodeCtx<'_>) -> Result<(Vec<NodeProto>, bool)> {
        let (node_name, op_type) = (n.name.clone(), n.op_type.clone());
        let refuse =
            |why: &str| Error::Node { node: node_name.clone(), op_type: op_type.clone(), reason: why.to_string() };
        let mut changed = false;
        match n.op_type.as_str() {
            "Squeeze" | "Unsqueeze" | "ReduceSum" if self.crosses(13) => {
                changed = cx.attr_to_input(&mut n, "axes", 1, AttrKind::Ints);
            }
            "Split" if self.crosses(13) => {
                changed = cx.attr_to_input(&mut n, "split", 1, AttrKind::Ints);
            }
            "Clip" if self.crosses(11) => {
                let t = cx.elem_of(n.input.first()).unwrap_or(dt::FLOAT);
                changed = cx.attr_to_input(&mut n, "min", 1, AttrKind::Float(t));
                changed |= cx.attr_to_input(&mut n, "max", 2, AttrKind::Float(t));
            }
            "Pad" if self.crosses(11) => {
                let t = cx.elem_of(n.input.first()).unwrap_or(dt::FLOAT);
                changed = cx.attr_to_input(&mut n, "pads", 1, AttrKind::Ints);
                changed |= cx.attr_to_input(&mut n, "value", 2, AttrKind::Float(t));
            }
            "Slice" if self.crosses(10) => {
                let starts = remove_attr(&mut n, "starts").map(|a| a.ints);
                let ends = remove_attr(&mut n, "ends").map(|a| a.ints);
                let axes = remove_attr(&mut n, "axes").map(|a| a.ints);
                if let (Some(s), Some(e)) = (starts, ends) {
                    n.input.truncate(1);
                    let base = n.name.clone();
                    n.input.push(cx.ints_init(&base, "starts", &s));
                    n.input.push(cx.ints_init(&base, "ends", &e));
                    if let Some(a) = axes {
                        n.input.push(cx.ints_init(&base, "axes", &a));
                    }
                    changed = true;
                }
            }
            "TopK" if self.crosses(10) => {
                if let Some(k) = remove_attr(&mut n, "k").and_then(|a| a.i) {
                    let base = n.name.clone();
                    n.input.truncate(1);
                    n.input.push(cx.ints_init(&base, "k", &[k]));
                    changed = true;
                }
            }
            "Dropout" => {
                changed |= remove_attr(&mut n, "is_test").is_some();
                if self.crosses(12) {
                    changed |= cx.attr_to_input(&mut n, "ratio", 1, AttrKind::Float(dt::FLOAT));
                }
            }
            "BatchNormalization" => {
                changed |= remove_attr(&mut n, "consumed_inputs").is_some();
                changed |= remove_attr(&mut n, "is_test").is_some();
                if self.crosses(9) {
                    if let Some(a) = remove_attr(&mut n, "spatial") {
                        if a.i == Some(0) {
                            return Err(refuse("BatchNormalization with spatial=0 has no equivalent from opset 9 on; re-export the model"));
                        }
                        changed = true;
                    }
                }
                if self.crosses(14) && n.output.len() > 1 {
                    // Opset 14 allows the statistics outputs in training mode only; in
                    // inference they are never read, so they go.
                    n.output.truncate(1);
                    changed = true;
                }
            }
            "Softmax" | "LogSoftmax" | "Hardmax" if self.crosses(13) => {
                return self.softmax(n, cx);
            }
            "Upsample" if self.crosses(10) => {
                return Err(refuse("Upsample was replaced by Resize at opset 10 and is not converted; re-export the model at opset 11 or newer"));
            }
            "Resize" if self.crosses(11) => {
                return Err(refuse("Resize changed its inputs and coordinate rules at opset 11 and is not converted; re-export the model at opset 11 or newer"));
            }
            "Scan" if self.crosses(9) => {
                return Err(refuse(
                    "Scan changed its batch semantics at opset 9 and is not converted; re-export the model",
                ));
            }
            _ => {}
        }
        Ok((vec![n], changed))
    }

    fn softmax(&self, mut n: NodeProto, cx: &mut NodeCtx<'_>) -> Result<(Vec<NodeProto>, bool)> {
        let axis = attr_i(&n, "axis").unwrap_or(1);
        let Some(x) = n.input.first().cloned() else { return Ok((vec![n], false)) };
        let rank = cx.ranks.get(&x).copied().or_else(|| n.output.first().and_then(|y| cx.ranks.get(y)).copied());
        let last = axis == -1 || rank.is_some_and(|r| r > 0 && axis == r as i64 - 1);
        if last {
            set_attr_i(&mut n, "axis", -1);
            return Ok((vec![n], true));
        }
        let Some(y) = n.output.first().cloned() else { return Ok((vec![n], false)) };
        let base = if n.name.is_empty() { y.clone() } else { n.name.clone() };
        let shape = unique_name(cx.taken, &format!("{x}_shape"));
        let flat = unique_name(cx.taken, &format!("{x}_flat2d"));
        let soft = unique_name(cx.taken, &format!("{y}_2d"));
        let mut shape_node =
            make_node("Shape", unique_name(cx.taken, &format!("{base}_shape")), vec![x.clone()], vec![shape.clone()]);
        shape_node.domain = n.domain.clone();
        let mut flatten =
            make_node("Flatten", unique_name(cx.taken, &format!("{base}_flatten")), vec![x], vec![flat.clone()]);
        flatten.attribute.push(mk_attr_i("axis", axis));
        flatten.domain = n.domain.clone();
        n.input[0] = flat;
        n.output[0] = soft.clone();
        set_attr_i(&mut n, "axis", 1);
        let mut reshape =
            make_node("Reshape", unique_name(cx.taken, &format!("{base}_reshape")), vec![soft, shape], vec![y]);
        reshape.domain = n.domain.clone();
        Ok((vec![shape_node, flatten, n, reshape], true))
    }
}

enum AttrKind {
    Ints,
    Float(i32),
}

struct NodeCtx<'a> {
    taken: &'a mut HashSet<String>,
    inits: &'a mut Vec<TensorProto>,
    ranks: &'a HashMap<String, usize>,
    elem: &'a HashMap<String, i32>,
    graph_inits: &'a [TensorProto],
}

impl NodeCtx<'_> {
    fn elem_of(&self, name: Option<&String>) -> Option<i32> {
        let name = name?;
        self.elem.get(name).copied().or_else(|| self.graph_inits.iter().find(|t| &t.name == name).map(|t| t.data_type))
    }

    fn ints_init(&mut self, base: &str, what: &str, v: &[i64]) -> String {
        let name = unique_name(self.taken, &format!("{base}_{what}"));
        self.inits.push(tensor::from_i64(&name, &[v.len() as i64], v));
        name
    }

    /// Moves attribute `attr` to input slot `slot` (padding skipped slots with ""). Returns
    /// whether the node changed.
    fn attr_to_input(&mut self, n: &mut NodeProto, attr: &str, slot: usize, kind: AttrKind) -> bool {
        let Some(a) = remove_attr(n, attr) else { return false };
        let base = if n.name.is_empty() { n.output.first().cloned().unwrap_or_default() } else { n.name.clone() };
        let name = match kind {
            AttrKind::Ints => self.ints_init(&base, attr, &a.ints),
            AttrKind::Float(t) => {
                let name = unique_name(self.taken, &format!("{base}_{attr}"));
                let v = a.f.unwrap_or(0.0);
                let t = match t {
                    dt::DOUBLE => TensorProto {
                        name: name.clone(),
                        data_type: dt::DOUBLE,
                        raw_data: f64::from(v).to_le_bytes().to_vec(),
                        ..Default::default()
                    },
                    dt::FLOAT16 => tensor::from_f16(&name, &[], &[half::f16::from_f32(v)]),
                    _ => tensor::from_f32(&name, &[], &[v]),
                };
                self.inits.push(t);
                name
            }
        };
        if n.input.len() <= slot {
            n.input.resize(slot + 1, String::new());
        }
        n.input[slot] = name;
        true
    }
}

fn remove_attr(n: &mut NodeProto, name: &str) -> Option<crate::onnx::proto::AttributeProto> {
    let i = n.attribute.iter().position(|a| a.name == name)?;
    Some(n.attribute.remove(i))
}

fn set_attr_i(n: &mut NodeProto, name: &str, v: i64) {
    match n.attribute.iter_mut().find(|a| a.name == name) {
        Some(a) => {
            a.i = Some(v);
            a.r#type = at::INT;
        }
        None => n.attribute.push(mk_attr_i(name, v)),
    }
}

fn elem_types(g: &GraphProto) -> HashMap<String, i32> {
    let mut m = HashMap::new();
    for v in g.input.iter().chain(&g.output).chain(&g.value_info) {
        if let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            m.insert(v.name.clone(), t.elem_type);
        }
    }
    m
}

/// Tensor ranks known without running the graph: declared shapes, constants, and the ops whose
/// output rank follows from their inputs' ranks. Used to tell whether a Softmax axis is the
/// last one; a missing entry only costs a Flatten/Reshape.
pub(crate) fn infer_ranks(g: &GraphProto) -> HashMap<String, usize> {
    let mut r: HashMap<String, usize> = HashMap::new();
    for v in g.input.iter().chain(&g.output).chain(&g.value_info) {
        if let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            if let Some(s) = &t.shape {
                r.insert(v.name.clone(), s.dim.len());
            }
        }
    }
    // Lengths of 1-D tensors (shape vectors), for Reshape/Expand targets built at run time.
    let mut lens: HashMap<String, usize> = HashMap::new();
    for t in &g.initializer {
        r.insert(t.name.clone(), t.dims.len());
        if let [d] = t.dims[..] {
            lens.insert(t.name.clone(), d.max(0) as usize);
        }
    }
    let order = topological_order(g).unwrap_or_else(|_| (0..g.node.len()).collect());
    for _ in 0..2 {
        for &i in &order {
            let n = &g.node[i];
            if !is_default_domain(&n.domain) {
                continue;
            }
            if let Some(len) = vector_len(g, n, &r, &lens) {
                if let Some(o) = n.output.first() {
                    lens.entry(o.clone()).or_insert(len);
                }
            }
            let got = |k: usize| n.input.get(k).and_then(|x| r.get(x)).copied();
            let len_of = |k: usize| {
                n.input
                    .get(k)
                    .and_then(|x| lens.get(x).copied())
                    .or_else(|| n.input.get(k).and_then(|x| const_tensor(g, x)).and_then(|t| tensor::len(&t).ok()))
            };

            let axes_len = || attr_ints(n, "axes").map(<[i64]>::len).or_else(|| len_of(1));
            let out: Option<usize> = match n.op_type.as_str() {
                "Constant" => n.output.first().and_then(|o| const_tensor(g, o)).map(|t| t.dims.len()),
                "Relu"
                | "Sigmoid"
                | "Tanh"
                | "Clip"
                | "HardSigmoid"
                | "HardSwish"
                | "LeakyRelu"
                | "Elu"
                | "Selu"
                | "Cast"
                | "Sqrt"
                | "Neg"
                | "Exp"
                | "Log"
                | "Abs"
                | "Erf"
                | "Identity"
                | "Dropout"
                | "Softmax"
                | "LogSoftmax"
                | "Hardmax"
                | "BatchNormalization"
                | "InstanceNormalization"
                | "LayerNormalization"
                | "LRN"
                | "Floor"
                | "Ceil"
                | "Round"
                | "Reciprocal"
                | "Sign"
                | "Softplus"
                | "Softsign"
                | "PRelu"
                | "Resize"
                | "Upsample"
                | "Pad"
                | "Conv"
                | "ConvTranspose"
                | "MaxPool"
                | "AveragePool"
                | "GlobalAveragePool"
                | "GlobalMaxPool"
                | "LpPool"
                | "Mish"
                | "Gelu"
                | "Not"
                | "Transpose"
                | "Slice"
                | "Split"
                | "Concat"
                | "Tile"
                | "CumSum"
                | "ReverseSequence"
                | "DepthToSpace"
                | "SpaceToDepth"
                | "Trilu"
                | "IsNaN"
                | "IsInf"
                | "QuantizeLinear"
                | "DequantizeLinear" => got(0),
                "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "Sum" | "Mean" | "Equal" | "Less"
                | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" | "Xor" | "Where" | "Mod" => {
                    (0..n.input.len()).map(got).try_fold(0usize, |acc, x| x.map(|x| acc.max(x)))
                }
                "MatMul" => match (got(0), got(1)) {
                    (Some(1), Some(b)) => Some(b.saturating_sub(1)),
                    (Some(a), Some(1)) => Some(a.saturating_sub(1)),
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                },
                "Flatten" | "Gemm" => Some(2),
                "Shape" => Some(1),
                "Size" => Some(0),
                "Reshape" => len_of(1),
                "Expand" => match (got(0), len_of(1)) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                },
                "Squeeze" => match (got(0), axes_len()) {
                    (Some(a), Some(k)) => a.checked_sub(k),
                    _ => None,
                },
                "Unsqueeze" => match (got(0), axes_len()) {
                    (Some(a), Some(k)) => Some(a + k),
                    _ => None,
                },
                "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL2" | "ReduceL1"
                | "ReduceSumSquare" | "ReduceLogSumExp" | "ArgMax" | "ArgMin" => {
                    let keep = attr_i(n, "keepdims").unwrap_or(1) != 0;
                    match got(0) {
                        Some(a) if keep => Some(a),
                        Some(a) if n.op_type.starts_with("Arg") => a.checked_sub(1),
                        // No axes reduces everything; axes only known at run time say nothing.
                        Some(a) => match axes_len() {
                            Some(k) => a.checked_sub(k),
                            None if n.input.get(1).is_none_or(|x| x.is_empty()) => Some(0),
                            None => None,
                        },
                        None => None,
                    }
                }
                "Gather" => match (got(0), got(1)) {
                    (Some(a), Some(b)) => (a + b).checked_sub(1),
                    _ => None,
                },
                _ => None,
            };
            if let Some(rank) = out {
                let outs: &[String] = if n.op_type == "Split" { &n.output } else { &n.output[..n.output.len().min(1)] };
                for o in outs.iter().filter(|o| !o.is_empty()) {
                    r.entry(o.clone()).or_insert(rank);
                }
            }
            // Ops that keep the shape tell the input's rank from the output's.
            let same_rank = matches!(
                n.op_type.as_str(),
                "Softmax" | "LogSoftmax" | "Hardmax" | "Identity" | "Relu" | "Sigmoid" | "Cast" | "Clip"
            );
            if same_rank {
                if let (Some(x), Some(&rank)) = (n.input.first(), n.output.first().and_then(|y| r.get(y))) {
                    r.entry(x.clone()).or_insert(rank);
                }
            }
        }
    }
    r
}

/// The length of `n`'s output when it is a 1-D vector whose length is known statically.
fn vector_len(
    g: &GraphProto,
    n: &NodeProto,
    ranks: &HashMap<String, usize>,
    lens: &HashMap<String, usize>,
) -> Option<usize> {
    let input_len = |k: usize| n.input.get(k).and_then(|x| lens.get(x)).copied();
    let ints = |k: usize| -> Option<Vec<i64>> {
        n.input.get(k).filter(|x| !x.is_empty()).and_then(|x| const_tensor(g, x)).and_then(|t| tensor::to_i64(&t).ok())
    };
    match n.op_type.as_str() {
        "Constant" => n.output.first().and_then(|o| const_tensor(g, o)).and_then(|t| match t.dims[..] {
            [d] => Some(d.max(0) as usize),
            _ => None,
        }),
        "Shape" if n.attribute.is_empty() => n.input.first().and_then(|x| ranks.get(x)).copied(),
        "Cast" | "Identity" => input_len(0),
        "Concat" if attr_i(n, "axis").is_some_and(|a| a == 0 || a == -1) => {
            (0..n.input.len()).map(input_len).try_fold(0usize, |acc, l| l.map(|l| acc + l))
        }
        "Unsqueeze" if n.input.first().and_then(|x| ranks.get(x)) == Some(&0) => Some(1),
        "Slice" => {
            let len = input_len(0)? as i64;
            let (starts, ends) = (ints(1)?, ints(2)?);
            let axes_ok = ints(3).is_none_or(|a| a == [0] || a == [-1]);
            let steps_ok = ints(4).is_none_or(|s| s == [1]);
            if starts.len() != 1 || ends.len() != 1 || !axes_ok || !steps_ok {
                return None;
            }
            let clamp = |v: i64| if v < 0 { (v + len).max(0) } else { v.min(len) };
            Some((clamp(ends[0]) - clamp(starts[0])).max(0) as usize)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::builder::{attr_ints, node, ModelBuilder, D};

    #[test]
    fn ir_version_follows_opset() {
        assert_eq!(min_ir_version(11), 6);
        assert_eq!(min_ir_version(13), 7);
        assert_eq!(min_ir_version(17), 8);
        let mut m = ModelBuilder::new(11).node(node("Relu", "r", &["x"], &["y"], vec![])).build();
        m.proto.ir_version = 6;
        upgrade_opset(&mut m, 13).unwrap();
        assert_eq!(m.proto.ir_version, 7);
    }

    #[test]
    fn refuses_what_it_cannot_convert_and_leaves_the_model() {
        let mut m = ModelBuilder::new(9).node(node("Upsample", "up", &["x", "s"], &["y"], vec![])).build();
        let before = m.clone();
        let e = upgrade_opset(&mut m, 13).unwrap_err().to_string();
        assert!(e.contains("`up`") && e.contains("Resize"), "{e}");
        assert_eq!(m, before);
        let e = upgrade_opset(&mut ModelBuilder::new(6).build(), 13).unwrap_err().to_string();
        assert!(e.contains("opset 6"), "{e}");
    }

    #[test]
    fn ranks_follow_shapes_through_common_ops() {
        let g = ModelBuilder::new(13)
            .input("x", 1, &[D::S("n"), 3.into(), 8.into(), 8.into()])
            .initializer(tensor::from_i64("shape", &[3], &[0, 3, -1]))
            .node(node("Conv", "c", &["x", "w"], &["c"], vec![]))
            .node(node("Reshape", "r", &["c", "shape"], &["r"], vec![]))
            .node(node("Unsqueeze", "u", &["r"], &["u"], vec![attr_ints("axes", &[0])]))
            .node(node("MatMul", "m", &["u", "u"], &["m"], vec![]))
            .node(node("Flatten", "f", &["m"], &["f"], vec![]))
            .graph();
        let r = infer_ranks(&g);
        assert_eq!((r["c"], r["r"], r["u"], r["m"], r["f"]), (4, 3, 4, 4, 2));
        // A shape vector built at run time: Shape -> Slice -> Concat with a constant.
        let g = ModelBuilder::new(13)
            .input("x", 1, &[D::S("n"), 3.into(), 8.into(), 8.into()])
            .initializer(tensor::from_i64("s0", &[1], &[1]))
            .initializer(tensor::from_i64("s1", &[1], &[-1]))
            .initializer(tensor::from_i64("extra", &[2], &[8, 8]))
            .node(node("Shape", "shape", &["x"], &["sh"], vec![]))
            .node(node("Slice", "slice", &["sh", "s0", "s1"], &["mid"], vec![]))
            .node(node("Concat", "cat", &["mid", "extra"], &["target"], vec![crate::onnx::builder::attr_i("axis", 0)]))
            .node(node("Reshape", "r", &["x", "target"], &["y"], vec![]))
            .node(node(
                "ReduceSum",
                "rs",
                &["y", "dyn_axes"],
                &["z"],
                vec![crate::onnx::builder::attr_i("keepdims", 0)],
            ))
            .graph();
        let r = infer_ranks(&g);
        assert_eq!(r["y"], 4, "2 sliced dims + 2 constant ones");
        assert!(!r.contains_key("z"), "axes known only at run time");
    }
}
