//! `kenosis diff`: what changed between two models — op counts, nodes, weights and signature.
//!
//! Nodes are matched by name; nodes without a name (or with a name used twice) are matched by
//! op type and position among the nodes of that type (`Conv#3`). Weights are initializers and
//! Constant values of the main graph, matched by tensor name.

use crate::inspect::{constant_value, IoDesc};
use crate::onnx::proto::{data_type as dt, GraphProto, NodeProto, TensorProto, ValueInfoProto};
use crate::onnx::{tensor, Model};
use prost::Message;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

/// How many entries of each list [`Diff::human`] shows.
const HUMAN_LIMIT: usize = 20;

/// An op type whose count differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpCount {
    /// Count in A.
    pub a: usize,
    /// Count in B.
    pub b: usize,
}

/// A node present on one side only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRef {
    /// The matching key: the node's name, or `Op#k` for unnamed nodes.
    pub key: String,
    /// Its op type.
    pub op_type: String,
}

/// A node present on both sides that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeChange {
    /// The matching key.
    pub key: String,
    /// Op type in A.
    pub op_a: String,
    /// Op type in B.
    pub op_b: String,
    /// What differs: `op_type`, `inputs`, `outputs`, `attributes`, `domain`.
    pub changes: Vec<String>,
}

/// Node differences.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDiff {
    /// In B only.
    pub added: Vec<NodeRef>,
    /// In A only.
    pub removed: Vec<NodeRef>,
    /// In both, different.
    pub changed: Vec<NodeChange>,
}

/// A weight tensor present on both sides that differs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorChange {
    /// Tensor name.
    pub name: String,
    /// Element type in A and in B.
    pub dtype: (String, String),
    /// Dims in A and in B.
    pub shape: (Vec<i64>, Vec<i64>),
    /// Largest absolute difference of the values (compared as f64), when both are numeric with equal shapes.
    pub max_abs_diff: Option<f64>,
}

/// Weight differences.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TensorDiff {
    /// Names in B only.
    pub added: Vec<String>,
    /// Names in A only.
    pub removed: Vec<String>,
    /// In both, different.
    pub changed: Vec<TensorChange>,
}

/// A graph input or output that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoChange {
    /// Its name.
    pub name: String,
    /// As in A (`None`: B only).
    pub a: Option<IoDesc>,
    /// As in B (`None`: A only).
    pub b: Option<IoDesc>,
}

/// Signature differences.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureDiff {
    /// Inputs added, removed or changed.
    pub inputs: Vec<IoChange>,
    /// Outputs added, removed or changed.
    pub outputs: Vec<IoChange>,
}

/// Everything that differs between model A and model B.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diff {
    /// True when nothing below differs.
    pub identical: bool,
    /// Op types (main graph) whose counts differ.
    pub ops: BTreeMap<String, OpCount>,
    /// Node differences (main graph).
    pub nodes: NodeDiff,
    /// Weight differences (main graph initializers and Constant values).
    pub initializers: TensorDiff,
    /// Input and output changes.
    pub signature: SignatureDiff,
}

/// Compares two models.
pub fn diff(a: &Model, b: &Model) -> Diff {
    let (ga, gb) = (a.graph(), b.graph());
    let ops = op_diff(ga, gb);
    let nodes = node_diff(ga, gb);
    let initializers = tensor_diff(ga, gb);
    let signature =
        SignatureDiff { inputs: io_diff(&real_inputs(ga), &real_inputs(gb)), outputs: io_diff(&ga.output, &gb.output) };
    let identical = ops.is_empty()
        && nodes.added.is_empty()
        && nodes.removed.is_empty()
        && nodes.changed.is_empty()
        && initializers.added.is_empty()
        && initializers.removed.is_empty()
        && initializers.changed.is_empty()
        && signature.inputs.is_empty()
        && signature.outputs.is_empty();
    Diff { identical, ops, nodes, initializers, signature }
}

fn op_diff(a: &GraphProto, b: &GraphProto) -> BTreeMap<String, OpCount> {
    let mut m: BTreeMap<String, OpCount> = BTreeMap::new();
    for n in &a.node {
        m.entry(n.op_type.clone()).or_insert(OpCount { a: 0, b: 0 }).a += 1;
    }
    for n in &b.node {
        m.entry(n.op_type.clone()).or_insert(OpCount { a: 0, b: 0 }).b += 1;
    }
    m.retain(|_, c| c.a != c.b);
    m
}

/// Matching keys for a graph's nodes, in node order.
fn node_keys(g: &GraphProto) -> Vec<String> {
    let mut name_count: HashMap<&str, usize> = HashMap::new();
    for n in &g.node {
        *name_count.entry(n.name.as_str()).or_default() += 1;
    }
    let mut per_op: HashMap<&str, usize> = HashMap::new();
    g.node
        .iter()
        .map(|n| {
            let k = per_op.entry(n.op_type.as_str()).or_default();
            *k += 1;
            if !n.name.is_empty() && name_count.get(n.name.as_str()) == Some(&1) {
                n.name.clone()
            } else {
                format!("{}#{}", n.op_type, *k - 1)
            }
        })
        .collect()
}

fn node_diff(a: &GraphProto, b: &GraphProto) -> NodeDiff {
    let ka = node_keys(a);
    let kb = node_keys(b);
    let ib: HashMap<&str, usize> = kb.iter().enumerate().map(|(i, k)| (k.as_str(), i)).collect();
    let ia: HashMap<&str, usize> = ka.iter().enumerate().map(|(i, k)| (k.as_str(), i)).collect();
    let mut d = NodeDiff::default();
    for (i, k) in ka.iter().enumerate() {
        let na = &a.node[i];
        match ib.get(k.as_str()) {
            None => d.removed.push(NodeRef { key: k.clone(), op_type: na.op_type.clone() }),
            Some(&j) => {
                let changes = node_changes(na, &b.node[j]);
                if !changes.is_empty() {
                    d.changed.push(NodeChange {
                        key: k.clone(),
                        op_a: na.op_type.clone(),
                        op_b: b.node[j].op_type.clone(),
                        changes,
                    });
                }
            }
        }
    }
    for (j, k) in kb.iter().enumerate() {
        if !ia.contains_key(k.as_str()) {
            d.added.push(NodeRef { key: k.clone(), op_type: b.node[j].op_type.clone() });
        }
    }
    d
}

fn node_changes(a: &NodeProto, b: &NodeProto) -> Vec<String> {
    let mut c = Vec::new();
    if a.op_type != b.op_type {
        c.push("op_type".into());
    }
    if a.domain != b.domain {
        c.push("domain".into());
    }
    if a.input != b.input {
        c.push("inputs".into());
    }
    if a.output != b.output {
        c.push("outputs".into());
    }
    // Attribute order carries no meaning; compare them sorted by name, encoded.
    let enc = |n: &NodeProto| {
        let mut v: Vec<(String, Vec<u8>)> = n.attribute.iter().map(|x| (x.name.clone(), x.encode_to_vec())).collect();
        v.sort();
        v
    };
    if enc(a) != enc(b) {
        c.push("attributes".into());
    }
    c
}

/// Main-graph weights by name: initializers, then Constant values under their output name.
fn weights(g: &GraphProto) -> BTreeMap<String, &TensorProto> {
    let mut m = BTreeMap::new();
    for t in &g.initializer {
        m.insert(t.name.clone(), t);
    }
    for n in &g.node {
        if let (Some(t), Some(o)) = (constant_value(n), n.output.first()) {
            m.insert(o.clone(), t);
        }
    }
    m
}

fn values(t: &TensorProto) -> Option<Vec<f64>> {
    if tensor::is_float(t.data_type) {
        if t.data_type == dt::DOUBLE {
            return tensor::to_f64(t).ok();
        }
        return tensor::to_f32(t).ok().map(|v| v.into_iter().map(f64::from).collect());
    }
    tensor::to_i64(t).ok().map(|v| v.into_iter().map(|x| x as f64).collect())
}

fn tensor_diff(a: &GraphProto, b: &GraphProto) -> TensorDiff {
    let (wa, wb) = (weights(a), weights(b));
    let mut d = TensorDiff::default();
    for (name, ta) in &wa {
        let Some(tb) = wb.get(name) else {
            d.removed.push(name.clone());
            continue;
        };
        let same_meta = ta.data_type == tb.data_type && ta.dims == tb.dims;
        let max_abs_diff = if ta.dims == tb.dims {
            match (values(ta), values(tb)) {
                (Some(x), Some(y)) if x.len() == y.len() => Some(
                    x.iter().zip(&y).map(|(p, q)| if p == q { 0.0 } else { (p - q).abs() }).fold(0.0f64, |m, v| {
                        if v.is_nan() || v > m {
                            v
                        } else {
                            m
                        }
                    }),
                ),
                _ => None,
            }
        } else {
            None
        };
        let differs = !same_meta
            || match max_abs_diff {
                Some(m) => m != 0.0,
                None => tensor::to_raw(ta).ok() != tensor::to_raw(tb).ok() || ta.string_data != tb.string_data,
            };
        if differs {
            d.changed.push(TensorChange {
                name: name.clone(),
                dtype: (dt::name(ta.data_type).into(), dt::name(tb.data_type).into()),
                shape: (ta.dims.clone(), tb.dims.clone()),
                max_abs_diff,
            });
        }
    }
    d.added = wb.keys().filter(|k| !wa.contains_key(*k)).cloned().collect();
    d
}

fn real_inputs(g: &GraphProto) -> Vec<ValueInfoProto> {
    let inits: std::collections::HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    g.input.iter().filter(|v| !inits.contains(v.name.as_str())).cloned().collect()
}

fn io_diff(a: &[ValueInfoProto], b: &[ValueInfoProto]) -> Vec<IoChange> {
    let da: BTreeMap<String, IoDesc> = a.iter().map(|v| (v.name.clone(), IoDesc::from_value_info(v))).collect();
    let db: BTreeMap<String, IoDesc> = b.iter().map(|v| (v.name.clone(), IoDesc::from_value_info(v))).collect();
    let mut out = Vec::new();
    for (name, x) in &da {
        match db.get(name) {
            Some(y) if y == x => {}
            y => out.push(IoChange { name: name.clone(), a: Some(x.clone()), b: y.cloned() }),
        }
    }
    for (name, y) in &db {
        if !da.contains_key(name) {
            out.push(IoChange { name: name.clone(), a: None, b: Some(y.clone()) });
        }
    }
    out
}

impl Diff {
    /// A readable report; long lists are cut at 20 entries (the JSON has them all).
    pub fn human(&self) -> String {
        let mut s = String::new();
        if self.identical {
            s.push_str("no differences in ops, nodes, weights or signature\n");
            return s;
        }
        if !self.ops.is_empty() {
            let _ = writeln!(s, "ops (A → B):");
            for (op, c) in &self.ops {
                let _ = writeln!(s, "  {op}: {} → {} ({:+})", c.a, c.b, c.b as i64 - c.a as i64);
            }
        }
        let nd = &self.nodes;
        if !(nd.added.is_empty() && nd.removed.is_empty() && nd.changed.is_empty()) {
            let _ = writeln!(
                s,
                "nodes: {} added, {} removed, {} changed",
                nd.added.len(),
                nd.removed.len(),
                nd.changed.len()
            );
            list(&mut s, "+", nd.added.iter().map(|n| format!("{} ({})", n.key, n.op_type)));
            list(&mut s, "-", nd.removed.iter().map(|n| format!("{} ({})", n.key, n.op_type)));
            list(
                &mut s,
                "~",
                nd.changed.iter().map(|c| {
                    let op = if c.op_a == c.op_b { c.op_a.clone() } else { format!("{} → {}", c.op_a, c.op_b) };
                    format!("{} ({op}): {}", c.key, c.changes.join(", "))
                }),
            );
        }
        let td = &self.initializers;
        if !(td.added.is_empty() && td.removed.is_empty() && td.changed.is_empty()) {
            let _ = writeln!(
                s,
                "weights: {} added, {} removed, {} changed",
                td.added.len(),
                td.removed.len(),
                td.changed.len()
            );
            list(&mut s, "+", td.added.iter().cloned());
            list(&mut s, "-", td.removed.iter().cloned());
            list(
                &mut s,
                "~",
                td.changed.iter().map(|c| {
                    let mut line = c.name.clone();
                    if c.dtype.0 != c.dtype.1 {
                        line.push_str(&format!(" {} → {}", c.dtype.0, c.dtype.1));
                    }
                    if c.shape.0 != c.shape.1 {
                        line.push_str(&format!(" {:?} → {:?}", c.shape.0, c.shape.1));
                    }
                    if let Some(m) = c.max_abs_diff {
                        line.push_str(&format!(" max |Δ| {m:.3e}"));
                    }
                    line
                }),
            );
        }
        for (what, changes) in [("inputs", &self.signature.inputs), ("outputs", &self.signature.outputs)] {
            if !changes.is_empty() {
                let _ = writeln!(s, "{what}:");
                for c in changes {
                    let show = |d: &Option<IoDesc>| d.as_ref().map(IoDesc::human).unwrap_or_else(|| "(absent)".into());
                    let _ = writeln!(s, "  {} → {}", show(&c.a), show(&c.b));
                }
            }
        }
        s
    }
}

fn list(s: &mut String, mark: &str, items: impl ExactSizeIterator<Item = String>) {
    let n = items.len();
    for item in items.take(HUMAN_LIMIT) {
        let _ = writeln!(s, "  {mark} {item}");
    }
    if n > HUMAN_LIMIT {
        let _ = writeln!(s, "  {mark} ... and {} more", n - HUMAN_LIMIT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::builder::{attr_i, node, ModelBuilder, D};

    fn model(w: f32, extra: bool) -> Model {
        let mut b = ModelBuilder::new(13)
            .input("x", dt::FLOAT, &[D::S("N"), 4.into()])
            .initializer(tensor::from_f32("w", &[4, 4], &[w; 16]))
            .node(node("MatMul", "mm", &["x", "w"], &["y"], vec![]))
            .node(node("Relu", "", &["y"], &["z"], vec![]));
        if extra {
            b = b.node(node("Softmax", "sm", &["z"], &["out"], vec![attr_i("axis", 1)]));
        } else {
            b = b.node(node("Identity", "sm", &["z"], &["out"], vec![]));
        }
        b.output("out", dt::FLOAT, &[D::S("N"), 4.into()]).build()
    }

    #[test]
    fn identical_models() {
        let d = diff(&model(1.0, false), &model(1.0, false));
        assert!(d.identical, "{d:?}");
    }

    #[test]
    fn finds_ops_nodes_weights() {
        let d = diff(&model(1.0, false), &model(1.5, true));
        assert!(!d.identical);
        assert_eq!(d.ops["Softmax"], OpCount { a: 0, b: 1 });
        assert_eq!(d.ops["Identity"], OpCount { a: 1, b: 0 });
        assert_eq!(d.nodes.changed.len(), 1);
        assert_eq!(d.nodes.changed[0].key, "sm");
        assert!(d.nodes.changed[0].changes.contains(&"op_type".to_string()));
        assert_eq!(d.initializers.changed[0].max_abs_diff, Some(0.5));
        let json = serde_json::to_value(&d).unwrap();
        for k in ["ops", "nodes", "initializers", "signature"] {
            assert!(json.get(k).is_some(), "{k}");
        }
        assert!(d.human().contains("max |Δ| 5.000e-1"), "{}", d.human());
    }
}
