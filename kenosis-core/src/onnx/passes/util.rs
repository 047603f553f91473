//! Small helpers the passes share: renaming tensor uses across nested graphs, reading scalar
//! constants, building nodes with fresh names.

use crate::onnx::graph::subgraphs_mut;
use crate::onnx::proto::{GraphProto, NodeProto, TensorProto};
use crate::onnx::tensor;
use std::collections::HashSet;

/// True for the default ONNX domain.
pub(crate) fn is_default_domain(domain: &str) -> bool {
    domain.is_empty() || domain == "ai.onnx"
}

/// True when `node` is the default-domain operator `op`.
pub(crate) fn is_op(node: &NodeProto, op: &str) -> bool {
    node.op_type == op && is_default_domain(&node.domain)
}

/// Renames every read of `from` to `to` in `graph`'s nodes and in the nested graphs that read
/// `from` from the outer scope (stopping where a nested graph defines its own `from`).
pub(crate) fn rename_uses(graph: &mut GraphProto, from: &str, to: &str) {
    for n in &mut graph.node {
        for i in n.input.iter_mut().filter(|i| *i == from) {
            *i = to.to_string();
        }
        for g in subgraphs_mut(n) {
            rename_free_uses(g, from, to);
        }
    }
}

fn rename_free_uses(g: &mut GraphProto, from: &str, to: &str) {
    let defines = g.input.iter().any(|v| v.name == from)
        || g.initializer.iter().any(|t| t.name == from)
        || g.node.iter().any(|n| n.output.iter().any(|o| o == from));
    if defines {
        return;
    }
    rename_uses(g, from, to);
    for o in g.output.iter_mut().filter(|o| o.name == from) {
        o.name = to.to_string();
    }
}

/// The names of `graph`'s outputs.
pub(crate) fn output_names(graph: &GraphProto) -> HashSet<String> {
    graph.output.iter().map(|v| v.name.clone()).collect()
}

/// The value of a one-element numeric tensor named `name`: an initializer of `graph` or the
/// output of a Constant node there.
pub(crate) fn scalar(graph: &GraphProto, name: &str) -> Option<f64> {
    let t = const_tensor(graph, name)?;
    let v = tensor_values_f64(&t)?;
    (v.len() == 1).then(|| v[0])
}

/// A tensor whose value is known without running the graph: an initializer or a Constant's value.
pub(crate) fn const_tensor(graph: &GraphProto, name: &str) -> Option<TensorProto> {
    if name.is_empty() {
        return None;
    }
    if let Some(t) = graph.initializer.iter().find(|t| t.name == name) {
        return Some(t.clone());
    }
    let node = graph.node.iter().find(|n| is_op(n, "Constant") && n.output.first().is_some_and(|o| o == name))?;
    super::constants::constant_value(node).ok().and_then(|v| match v {
        super::constants::ConstValue::Dense(t) => Some(t),
        super::constants::ConstValue::Sparse(_) => None,
    })
}

/// Numeric values of a tensor as f64 (floats and integers).
pub(crate) fn tensor_values_f64(t: &TensorProto) -> Option<Vec<f64>> {
    if tensor::is_float(t.data_type) {
        tensor::to_f32(t).ok().map(|v| v.into_iter().map(f64::from).collect())
    } else {
        tensor::to_i64(t).ok().map(|v| v.into_iter().map(|x| x as f64).collect())
    }
}

/// True if `a` and `b` agree to a relative tolerance fit for constants written in float32.
pub(crate) fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-5 * b.abs().max(1.0)
}

/// A node in the default domain.
pub(crate) fn make_node(op: &str, name: String, inputs: Vec<String>, outputs: Vec<String>) -> NodeProto {
    NodeProto { op_type: op.into(), name, input: inputs, output: outputs, ..Default::default() }
}

/// Drops value_info entries of tensors no node, input or initializer defines any more.
pub(crate) fn drop_stale_value_info(graph: &mut GraphProto) {
    let mut live: HashSet<&str> = HashSet::new();
    live.extend(graph.input.iter().map(|v| v.name.as_str()));
    live.extend(graph.initializer.iter().map(|t| t.name.as_str()));
    for n in &graph.node {
        live.extend(n.output.iter().map(String::as_str));
    }
    let keep: Vec<bool> = graph.value_info.iter().map(|v| live.contains(v.name.as_str())).collect();
    let mut it = keep.into_iter();
    graph.value_info.retain(|_| it.next().unwrap_or(true));
}
