//! Which nodes run on 8-bit data, and why the others stay float.
//!
//! The plan is made on the prepared FP32 graph and the calibration ranges only, so it is pure
//! and deterministic. Rules, in the order they apply:
//! 1. Protection: nodes holding subgraphs, nodes the user excluded, nodes reading data derived
//!    from a non-primary input, and the detection head (nodes from which no learned
//!    Conv/ConvTranspose/Gemm/MatMul can be reached) stay float.
//!    The first Conv, reading image pixels (<= 4 channels) from the model input, stays float too: measured on
//!    PP-LCNet it is the single most sensitive layer, and with 3 input channels it is cheap.
//! 2. Learned ops (Conv, Gemm, MatMul) with initializer weights are quantized when their
//!    input and output have ranges. A Relu, or a Clip whose minimum is 0, that is the only
//!    reader of the output joins the group: Q goes after it (zero point 0), and ORT drops it.
//! 3. Other ops ORT has 8-bit kernels or data-movement rules for are quantized only when one of
//!    their data inputs already comes out of a quantized group: they extend an 8-bit region and
//!    never start one (starting one costs a QuantizeLinear for nothing).
//! 4. A group's output must not be a graph output, and every reader must read it through an
//!    explicit input (so each can get its own DequantizeLinear).

use super::refuse::LEARNED_OPS;
use crate::calibrate::Ranges;
use crate::onnx::graph::{attr_f, attr_i, subgraphs, topological_order, GraphIndex};
use crate::onnx::proto::{data_type as dt, GraphProto, NodeProto};
use crate::onnx::tensor;
use std::collections::{BTreeSet, HashSet};

/// How a quantized node is rewritten.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Conv with an initializer weight (and bias): QLinearConv.
    Conv,
    /// Gemm with an initializer B: QGemm.
    Gemm,
    /// MatMul: QLinearMatMul (B an initializer, or two activations).
    MatMul,
    /// Add, Mul: QLinearAdd / QLinearMul.
    Binary,
    /// Concat: QLinearConcat.
    Concat,
    /// Sigmoid, GlobalAveragePool, AveragePool, LeakyRelu: their QLinear kernel.
    Unary,
    /// Data movement that runs on 8-bit data when both sides share scale and zero point.
    Move,
    /// HardSigmoid(alpha, beta) = Clip(x + beta/alpha, 0, 1/alpha) * alpha, written as a QLinearAdd
    /// whose Clip ORT removes, with the `* alpha` folded into the reader's DequantizeLinear scale.
    HardSigmoid {
        /// Slope.
        alpha: f32,
        /// Offset.
        beta: f32,
    },
    /// HardSwish = x * HardSigmoid(x; 1/6, 1/2): the HardSigmoid above, then a QLinearMul.
    HardSwish,
}

/// One node's role in the rewrite.
#[derive(Debug, Clone, PartialEq)]
pub enum Role {
    /// Left as it is; the reason is reported.
    Float(String),
    /// Runs on 8-bit data.
    Quant(QNode),
    /// A Relu/Clip folded into the quantized node before it (ORT removes it).
    Absorbed,
}

/// What the rewrite needs to know about a quantized node.
#[derive(Debug, Clone, PartialEq)]
pub struct QNode {
    /// How it is rewritten.
    pub kind: Kind,
    /// Input slots holding activations, each read through its own DequantizeLinear.
    pub data_inputs: Vec<usize>,
    /// Input slots holding float initializers used as constant operands (Add/Mul).
    pub const_inputs: Vec<usize>,
    /// The weight slot (Conv, Gemm, MatMul with an initializer B).
    pub weight: Option<usize>,
    /// The bias slot (Conv, Gemm).
    pub bias: Option<usize>,
    /// Tensors that get a QuantizeLinear: the node's outputs, or the absorbed Relu's output.
    pub outputs: Vec<String>,
    /// The absorbed Relu/Clip node.
    pub absorbed: Option<usize>,
}

/// The decisions for a whole graph.
#[derive(Debug, Clone)]
pub struct Plan {
    /// One role per node, by index into `graph.node`.
    pub roles: Vec<Role>,
    /// Node indices in topological order.
    pub order: Vec<usize>,
}

/// User exclusions and protection inputs.
#[derive(Debug, Clone, Default)]
pub struct Protect {
    /// Node names kept float.
    pub exclude_nodes: BTreeSet<String>,
    /// Op types kept float.
    pub exclude_ops: BTreeSet<String>,
    /// Node names the accuracy search chose to keep float.
    pub searched: BTreeSet<String>,
}

const UNARY_OPS: &[&str] = &["Sigmoid", "GlobalAveragePool", "AveragePool", "LeakyRelu"];
const MOVE_OPS: &[&str] = &[
    "MaxPool",
    "Resize",
    "Reshape",
    "Transpose",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Split",
    "Slice",
    "Gather",
    "Expand",
    "Tile",
    "DepthToSpace",
    "SpaceToDepth",
];

/// A printable name for a node.
pub fn node_label(n: &NodeProto) -> String {
    if n.name.is_empty() {
        format!("{}:{}", n.op_type, n.output.first().map(String::as_str).unwrap_or(""))
    } else {
        n.name.clone()
    }
}

/// The primary input: the first 4-D float input, else the first float input.
pub fn primary_input(graph: &GraphProto, ix: &GraphIndex) -> Option<String> {
    let rank_of = |name: &str| -> Option<(i32, usize)> {
        let v = ix.value_info.get(name)?;
        match v.r#type.as_ref()?.value.as_ref()? {
            crate::onnx::proto::type_proto::Value::TensorType(t) => {
                Some((t.elem_type, t.shape.as_ref().map_or(0, |s| s.dim.len())))
            }
            _ => None,
        }
    };
    let floats: Vec<&String> = ix
        .inputs
        .iter()
        .filter(|n| rank_of(n).is_some_and(|(t, _)| t == dt::FLOAT))
        .collect();
    let _ = graph;
    floats
        .iter()
        .find(|n| rank_of(n).is_some_and(|(_, r)| r == 4))
        .or(floats.first())
        .map(|s| s.to_string())
}

fn float_init(graph: &GraphProto, ix: &GraphIndex, name: &str) -> bool {
    ix.initializer(graph, name).is_some_and(|t| t.data_type == dt::FLOAT)
}

/// The constant value of a scalar initializer.
fn scalar(graph: &GraphProto, ix: &GraphIndex, name: &str) -> Option<f32> {
    let t = ix.initializer(graph, name)?;
    let v = tensor::to_f32(t).ok()?;
    (v.len() == 1).then(|| v[0])
}

/// True for a Relu, or a Clip with minimum exactly 0: ORT removes it before a Q with zero point 0.
fn relu_like(graph: &GraphProto, ix: &GraphIndex, n: &NodeProto) -> bool {
    match n.op_type.as_str() {
        "Relu" => true,
        "Clip" => {
            let min = match n.input.get(1).filter(|s| !s.is_empty()) {
                Some(name) => scalar(graph, ix, name),
                None => attr_f(n, "min"),
            };
            let max_ok = match n.input.get(2).filter(|s| !s.is_empty()) {
                Some(name) => scalar(graph, ix, name).is_some(),
                None => true,
            };
            min == Some(0.0) && max_ok
        }
        _ => false,
    }
}

/// True for a Conv on image pixels: at most 4 input channels (weight dim 1 × groups).
fn pixel_channels(graph: &GraphProto, ix: &GraphIndex, n: &NodeProto) -> bool {
    let groups = attr_i(n, "group").unwrap_or(1).max(1);
    n.op_type == "Conv"
        && n.input
            .get(1)
            .and_then(|w| ix.initializer(graph, w))
            .is_some_and(|w| w.dims.get(1).is_some_and(|&c| c * groups <= 4))
}

/// Makes the plan.
pub fn make_plan(graph: &GraphProto, ranges: &Ranges, protect: &Protect) -> crate::Result<Plan> {
    let ix = GraphIndex::new(graph);
    let order = topological_order(graph)?;
    let nodes = &graph.node;
    let mut roles: Vec<Option<Role>> = vec![None; nodes.len()];
    let has_range = |t: &str| ranges.0.contains_key(t);

    // Head: nodes from which no learned op is reachable (reverse topological sweep).
    let mut reaches_learned = vec![false; nodes.len()];
    for &i in order.iter().rev() {
        let n = &nodes[i];
        let mut r = LEARNED_OPS.contains(&n.op_type.as_str());
        for o in &n.output {
            r |= ix.consumers_of(o).iter().any(|&c| reaches_learned[c]);
        }
        reaches_learned[i] = r;
    }

    // Tensors derived from non-primary inputs.
    let primary = primary_input(graph, &ix);
    let mut tainted: HashSet<String> = ix
        .inputs
        .iter()
        .filter(|n| Some(*n) != primary.as_ref())
        .cloned()
        .collect();
    for &i in &order {
        let n = &nodes[i];
        if n.input.iter().any(|t| tainted.contains(t)) {
            tainted.extend(n.output.iter().cloned());
        }
    }

    // Protection.
    for &i in &order {
        let n = &nodes[i];
        let why = if subgraphs(n).next().is_some() {
            Some("holds a subgraph; Kenosis does not quantize inside If/Loop/Scan bodies".to_string())
        } else if protect.exclude_nodes.contains(&n.name) || protect.exclude_nodes.contains(&node_label(n)) {
            Some("excluded by name".to_string())
        } else if protect.searched.contains(&node_label(n)) {
            Some("kept float by the accuracy search (target_cosine): one of the leading learned layers kept FP32 to reach the target".to_string())
        } else if protect.exclude_ops.contains(&n.op_type) {
            Some(format!("op type {} excluded", n.op_type))
        } else if let Some(t) = n.input.iter().find(|t| tainted.contains(*t)) {
            Some(format!("reads `{t}`, derived from a non-primary input"))
        } else if LEARNED_OPS.contains(&n.op_type.as_str())
            && n.input.first().is_some_and(|x| ix.inputs.contains(x))
            && pixel_channels(graph, &ix, n)
        {
            Some("first layer, reads the model input: kept float for accuracy (per-channel normalised pixels lose precision under one 8-bit scale) at little cost (few input channels)".to_string())
        } else if !reaches_learned[i] {
            Some("detection head / post-processing (after the last learned layer)".to_string())
        } else {
            None
        };
        if let Some(w) = why {
            roles[i] = Some(Role::Float(w));
        }
    }

    // Tensors whose producer group writes 8-bit data.
    let mut int8_out: HashSet<String> = HashSet::new();
    let explicit_readers = |t: &str| -> bool {
        ix.consumers_of(t)
            .iter()
            .all(|&c| nodes[c].input.iter().any(|s| s == t) && subgraphs(&nodes[c]).next().is_none())
    };

    for &i in &order {
        if roles[i].is_some() {
            continue;
        }
        let n = &nodes[i];
        let op = n.op_type.as_str();
        let act = |s: &str| !s.is_empty() && !ix.initializers.contains_key(s) && has_range(s);
        let decided: Result<QNode, String> = (|| {
            let mut q = QNode {
                kind: Kind::Move,
                data_inputs: vec![],
                const_inputs: vec![],
                weight: None,
                bias: None,
                outputs: vec![],
                absorbed: None,
            };
            let x = n.input.first().map(String::as_str).unwrap_or("");
            match op {
                "Conv" => {
                    q.kind = Kind::Conv;
                    if !act(x) {
                        return Err(format!("no calibration range for input `{x}`"));
                    }
                    let w = n.input.get(1).map(String::as_str).unwrap_or("");
                    if !float_init(graph, &ix, w) {
                        return Err(format!("weight `{w}` is not a float32 initializer"));
                    }
                    q.data_inputs = vec![0];
                    q.weight = Some(1);
                    if let Some(b) = n.input.get(2).filter(|s| !s.is_empty()) {
                        if !float_init(graph, &ix, b) {
                            return Err(format!("bias `{b}` is not a float32 initializer"));
                        }
                        q.bias = Some(2);
                    }
                }
                "Gemm" => {
                    q.kind = Kind::Gemm;
                    if attr_i(n, "transA").unwrap_or(0) != 0 {
                        return Err("transA=1 is not fused by ORT".into());
                    }
                    if attr_f(n, "alpha").unwrap_or(1.0) != 1.0 || attr_f(n, "beta").unwrap_or(1.0) != 1.0 {
                        return Err("alpha/beta other than 1".into());
                    }
                    if !act(x) {
                        return Err(format!("no calibration range for input `{x}`"));
                    }
                    let w = n.input.get(1).map(String::as_str).unwrap_or("");
                    if !float_init(graph, &ix, w) || ix.initializer(graph, w).is_some_and(|t| t.dims.len() != 2) {
                        return Err(format!("B `{w}` is not a 2-D float32 initializer"));
                    }
                    q.data_inputs = vec![0];
                    q.weight = Some(1);
                    if let Some(c) = n.input.get(2).filter(|s| !s.is_empty()) {
                        let ok = ix
                            .initializer(graph, c)
                            .is_some_and(|t| t.data_type == dt::FLOAT && t.dims.len() == 1);
                        if !ok {
                            return Err(format!("C `{c}` is not a 1-D float32 initializer"));
                        }
                        q.bias = Some(2);
                    }
                }
                "MatMul" => {
                    q.kind = Kind::MatMul;
                    let b = n.input.get(1).map(String::as_str).unwrap_or("");
                    if !act(x) {
                        return Err(format!("no calibration range for input `{x}`"));
                    }
                    if float_init(graph, &ix, b) {
                        if ix.initializer(graph, b).is_some_and(|t| t.dims.len() != 2) {
                            return Err(format!("B `{b}` is not 2-D"));
                        }
                        q.data_inputs = vec![0];
                        q.weight = Some(1);
                    } else if act(b) {
                        q.data_inputs = vec![0, 1];
                    } else {
                        return Err(format!("no calibration range for input `{b}`"));
                    }
                }
                "Add" | "Mul" => {
                    q.kind = Kind::Binary;
                    if n.input.len() != 2 {
                        return Err("needs two inputs".into());
                    }
                    for (slot, t) in n.input.iter().enumerate() {
                        if float_init(graph, &ix, t) {
                            q.const_inputs.push(slot);
                        } else if act(t) {
                            q.data_inputs.push(slot);
                        } else {
                            return Err(format!("input `{t}` has no calibration range (not float data)"));
                        }
                    }
                    if !q.data_inputs.iter().any(|&s| int8_out.contains(&n.input[s])) {
                        return Err("no input comes from a quantized node".into());
                    }
                }
                "Concat" => {
                    q.kind = Kind::Concat;
                    for (slot, t) in n.input.iter().enumerate() {
                        if !act(t) {
                            return Err(format!("input `{t}` has no calibration range"));
                        }
                        q.data_inputs.push(slot);
                    }
                    if !n.input.iter().any(|t| int8_out.contains(t)) {
                        return Err("no input comes from a quantized node".into());
                    }
                }
                "HardSigmoid" | "HardSwish" => {
                    q.kind = if op == "HardSwish" {
                        Kind::HardSwish
                    } else {
                        let alpha = attr_f(n, "alpha").unwrap_or(0.2);
                        let beta = attr_f(n, "beta").unwrap_or(0.5);
                        if !(alpha > 0.0 && alpha.is_finite() && beta.is_finite()) {
                            return Err(format!("alpha {alpha} is not positive"));
                        }
                        Kind::HardSigmoid { alpha, beta }
                    };
                    if !int8_out.contains(x) {
                        return Err("input does not come from a quantized node".into());
                    }
                    if !act(x) {
                        return Err(format!("no calibration range for input `{x}`"));
                    }
                    q.data_inputs = vec![0];
                }
                _ if UNARY_OPS.contains(&op) || MOVE_OPS.contains(&op) => {
                    q.kind = if UNARY_OPS.contains(&op) {
                        Kind::Unary
                    } else {
                        Kind::Move
                    };
                    if !int8_out.contains(x) {
                        return Err("input does not come from a quantized node".into());
                    }
                    if op == "MaxPool" && n.output.iter().filter(|s| !s.is_empty()).count() != 1 {
                        return Err("MaxPool with an Indices output".into());
                    }
                    q.data_inputs = vec![0];
                }
                _ => return Err(format!("{op} has no 8-bit kernel in ONNX Runtime's CPU provider")),
            }
            // Outputs, with a following Relu/Clip absorbed into the group.
            let outs: Vec<&String> = n.output.iter().filter(|s| !s.is_empty()).collect();
            let can_absorb = matches!(q.kind, Kind::Conv | Kind::Gemm | Kind::MatMul | Kind::Binary);
            if can_absorb && outs.len() == 1 && !ix.is_output(outs[0]) {
                let readers = ix.consumers_of(outs[0]);
                if readers.len() == 1 && roles[readers[0]].is_none() {
                    let r = &nodes[readers[0]];
                    if relu_like(graph, &ix, r) && r.input.first() == Some(outs[0]) {
                        let ro = r.output.first().cloned().unwrap_or_default();
                        if !ro.is_empty() && !ix.is_output(&ro) && has_range(&ro) && explicit_readers(&ro) {
                            q.absorbed = Some(readers[0]);
                            q.outputs = vec![ro];
                        }
                    }
                }
            }
            if q.absorbed.is_none() {
                for o in outs {
                    if ix.is_output(o) {
                        return Err(format!("its output `{o}` is a graph output (kept float)"));
                    }
                    if !matches!(q.kind, Kind::Move | Kind::HardSigmoid { .. }) && !has_range(o) {
                        return Err(format!("no calibration range for output `{o}`"));
                    }
                    if !explicit_readers(o) {
                        return Err(format!("output `{o}` is read inside a subgraph"));
                    }
                    q.outputs.push(o.clone());
                }
            }
            if q.outputs.is_empty() {
                return Err("no output to quantize".into());
            }
            Ok(q)
        })();
        match decided {
            Ok(q) => {
                int8_out.extend(q.outputs.iter().cloned());
                if let Some(a) = q.absorbed {
                    roles[a] = Some(Role::Absorbed);
                }
                roles[i] = Some(Role::Quant(q));
            }
            Err(why) => roles[i] = Some(Role::Float(why)),
        }
    }
    let roles = roles
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Role::Float("not reached".into())))
        .collect();
    Ok(Plan { roles, order })
}
