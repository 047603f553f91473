//! Inference-time no-ops (Identity, Dropout) removed, keeping graph output names.

use super::util::{drop_stale_value_info, is_op, rename_uses};
use crate::error::Result;
use crate::onnx::graph::subgraphs_mut;
use crate::onnx::proto::GraphProto;
use crate::onnx::Model;

/// Removes Identity nodes and inference-mode Dropout nodes (mask unused, no `training_mode`
/// input other than a constant false) in every graph, rewiring their readers to the input.
/// Where the removed node's output is a graph output, the producer's output is renamed
/// instead, so output names stay. An Identity from a graph input (or an initializer, or an
/// outer-scope value) straight to a graph output is kept: there is no producer to rename.
/// Returns the number of nodes removed.
pub fn remove_noops(model: &mut Model) -> Result<usize> {
    Ok(remove_in(model.graph_mut()))
}

fn remove_in(g: &mut GraphProto) -> usize {
    let mut count = 0;
    for n in &mut g.node {
        for sg in subgraphs_mut(n) {
            count += remove_in(sg);
        }
    }
    let mut i = 0;
    while i < g.node.len() {
        if try_remove(g, i) {
            count += 1;
        } else {
            i += 1;
        }
    }
    if count > 0 {
        drop_stale_value_info(g);
    }
    count
}

fn is_noop(g: &GraphProto, i: usize) -> bool {
    let n = &g.node[i];
    if n.input.first().is_none_or(|x| x.is_empty()) || n.output.first().is_none_or(|y| y.is_empty()) {
        return false;
    }
    if is_op(n, "Identity") {
        return n.output.len() == 1;
    }
    if !is_op(n, "Dropout") {
        return false;
    }
    let mask_used = n.output.get(1).is_some_and(|m| {
        !m.is_empty() && (g.output.iter().any(|o| &o.name == m) || g.node.iter().any(|c| c.input.contains(m)))
    });
    let training = n.input.get(2).filter(|t| !t.is_empty()).map(|t| super::util::scalar(g, t));
    let training_on = match training {
        None => false,
        Some(Some(v)) => v != 0.0,
        Some(None) => true, // fed at run time: might be training
    };
    let is_test_off = crate::onnx::graph::attr_i(n, "is_test") == Some(0);
    !mask_used && !training_on && !is_test_off
}

fn try_remove(g: &mut GraphProto, i: usize) -> bool {
    if !is_noop(g, i) {
        return false;
    }
    let x = g.node[i].input[0].clone();
    let y = g.node[i].output[0].clone();
    let y_is_output = g.output.iter().any(|o| o.name == y);
    if !y_is_output {
        g.node.remove(i);
        rename_uses(g, &y, &x);
        return true;
    }
    let x_is_output = g.output.iter().any(|o| o.name == x);
    let producer = g.node.iter().position(|n| n.output.contains(&x));
    let Some(p) = producer.filter(|_| !x_is_output) else { return false };
    g.node.remove(i);
    let p = if p > i { p - 1 } else { p };
    for o in g.node[p].output.iter_mut().filter(|o| **o == x) {
        *o = y.clone();
    }
    rename_uses(g, &x, &y);
    true
}
