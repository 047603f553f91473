//! Written-out hard-swish and hard-sigmoid (PaddlePaddle exports spell them as
//! Add -> Clip -> Mul -> Div) rewritten to one ONNX op, so the quantizer sees one float island
//! instead of four ops with a quantize/dequantize pair between each.

use super::util::{close, const_tensor, drop_stale_value_info, is_op, make_node, output_names, scalar};
use crate::error::Result;
use crate::onnx::builder::attr_f;
use crate::onnx::graph::{all_names, attr_f as get_f, subgraphs_mut, unique_name, GraphIndex};
use crate::onnx::proto::{GraphProto, NodeProto};
use crate::onnx::Model;
use std::collections::HashSet;

/// What [`fuse_hardswish`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HardSwishReport {
    /// Hard-swish patterns rewritten (to `HardSwish`, or to `HardSigmoid` + `Mul` below opset 14).
    pub hardswish: usize,
    /// Hard-sigmoid patterns (`Clip(x + 3, 0, 6) / 6`) rewritten to `HardSigmoid`.
    pub hardsigmoid: usize,
}

/// Recognises, in every graph:
/// - `x * Clip(x + 3, 0, 6) / 6` (the division also as a multiplication by 1/6) and
///   `x * HardSigmoid(x)` with alpha 1/6, beta 0.5: hard-swish;
/// - `Clip(x + 3, 0, 6) / 6` (or `* 1/6`): hard-sigmoid,
///
/// and rewrites hard-swish to `HardSwish(x)` when the model's default opset is 14 or newer,
/// else to `Mul(x, HardSigmoid(x))`; hard-sigmoid becomes `HardSigmoid(x, alpha = 1/6,
/// beta = 0.5)`. ONNX Runtime has no integer HardSwish kernel, so this makes one float op where
/// there were four. A hard-sigmoid chain that turns out to be part of a hard-swish counts once,
/// as hard-swish.
pub fn fuse_hardswish(model: &mut Model) -> Result<HardSwishReport> {
    let native = model.opset("").unwrap_or(0) >= 14;
    let g = model.graph_mut();
    let mut taken = all_names(g);
    let mut report = HardSwishReport::default();
    fuse_in(g, native, &mut taken, &mut report);
    Ok(report)
}

fn fuse_in(g: &mut GraphProto, native: bool, taken: &mut HashSet<String>, report: &mut HardSwishReport) {
    for n in &mut g.node {
        for sg in subgraphs_mut(n) {
            fuse_in(sg, native, taken, report);
        }
    }
    let before = (report.hardswish, report.hardsigmoid);
    // Hard-sigmoid chains first, then x * HardSigmoid(x) (which also catches the chains whose
    // division came after the multiplication, matched directly below).
    let chains = find_chains(g);
    let made = apply(g, chains, native, taken, report);
    // Below opset 14, x * HardSigmoid(x) is already the form written.
    if native {
        let pairs = find_hsig_muls(g);
        let made_here = pairs.iter().filter(|m| made.contains(&g.node[m.nodes[0]].name)).count();
        report.hardsigmoid -= made_here;
        apply(g, pairs, native, taken, report);
    }
    if (report.hardswish, report.hardsigmoid) != before {
        drop_stale_value_info(g);
    }
}

/// A matched pattern: the nodes it replaces, its input, its output, and what it computes.
struct Match {
    nodes: Vec<usize>,
    x: String,
    y: String,
    swish: bool,
    name: String,
}

/// The single consumer of `t`, when `t` is no graph output and exactly one node reads it.
fn only_consumer(g: &GraphProto, ix: &GraphIndex, outputs: &HashSet<String>, t: &str) -> Option<usize> {
    if outputs.contains(t) {
        return None;
    }
    match ix.consumers_of(t) {
        [c] if g.node[*c].input.iter().filter(|i| *i == t).count() == 1 => Some(*c),
        _ => None,
    }
}

/// The other input of a two-input node, and whether `t` is one of them.
fn other_input<'n>(n: &'n NodeProto, t: &str) -> Option<&'n str> {
    match n.input.as_slice() {
        [a, b] if a == t => Some(b),
        [a, b] if b == t => Some(a),
        _ => None,
    }
}

/// `Clip` bounds from inputs (opset 11+) or attributes (older).
fn clip_bounds(g: &GraphProto, clip: &NodeProto) -> Option<(f64, f64)> {
    let lo = match clip.input.get(1).filter(|s| !s.is_empty()) {
        Some(name) => scalar(g, name)?,
        None => f64::from(get_f(clip, "min")?),
    };
    let hi = match clip.input.get(2).filter(|s| !s.is_empty()) {
        Some(name) => scalar(g, name)?,
        None => f64::from(get_f(clip, "max")?),
    };
    Some((lo, hi))
}

/// The value of a constant of at most one dimension (so broadcasting it changes no shape).
fn operand(g: &GraphProto, name: &str) -> Option<f64> {
    const_tensor(g, name).filter(|t| t.dims.len() <= 1)?;
    scalar(g, name)
}

/// True if node `n` divides `t` by 6 or multiplies it by 1/6.
fn is_sixth(g: &GraphProto, n: &NodeProto, t: &str) -> bool {
    if is_op(n, "Div") && n.input.len() == 2 && n.input[0] == t {
        return operand(g, &n.input[1]).is_some_and(|v| close(v, 6.0));
    }
    is_op(n, "Mul") && other_input(n, t).and_then(|c| operand(g, c)).is_some_and(|v| close(v, 1.0 / 6.0))
}

/// Every written-out chain; matches never share a node, since each intermediate has one reader.
fn find_chains(g: &GraphProto) -> Vec<Match> {
    let ix = GraphIndex::new(g);
    let outputs = output_names(g);
    let mut found = Vec::new();
    for (ai, add) in g.node.iter().enumerate() {
        if !is_op(add, "Add") || add.input.len() != 2 || add.output.len() != 1 {
            continue;
        }
        // x + 3, with x the non-constant side.
        let Some(x) = add.input.iter().find(|i| scalar(g, i).is_none()).cloned() else { continue };
        let Some(three) = other_input(add, &x) else { continue };
        if !operand(g, three).is_some_and(|v| close(v, 3.0)) {
            continue;
        }
        let Some(ci) = only_consumer(g, &ix, &outputs, &add.output[0]) else { continue };
        let clip = &g.node[ci];
        if !is_op(clip, "Clip") || clip.input.first() != Some(&add.output[0]) || clip.output.len() != 1 {
            continue;
        }
        let Some((lo, hi)) = clip_bounds(g, clip) else { continue };
        if !(close(lo, 0.0) && close(hi, 6.0)) {
            continue;
        }
        let Some(ni) = only_consumer(g, &ix, &outputs, &clip.output[0]) else { continue };
        let next = &g.node[ni];
        let name = if clip.name.is_empty() { add.name.clone() } else { clip.name.clone() };
        // Clip(x+3)/6 -> hard-sigmoid.
        if is_sixth(g, next, &clip.output[0]) && next.output.len() == 1 {
            found.push(Match { nodes: vec![ai, ci, ni], x, y: next.output[0].clone(), swish: false, name });
            continue;
        }
        // x * Clip(x+3) / 6 -> hard-swish.
        if is_op(next, "Mul") && other_input(next, &clip.output[0]) == Some(x.as_str()) && next.output.len() == 1 {
            let Some(di) = only_consumer(g, &ix, &outputs, &next.output[0]) else { continue };
            let div = &g.node[di];
            if is_sixth(g, div, &next.output[0]) && div.output.len() == 1 {
                found.push(Match { nodes: vec![ai, ci, ni, di], x, y: div.output[0].clone(), swish: true, name });
            }
        }
    }
    found
}

fn find_hsig_muls(g: &GraphProto) -> Vec<Match> {
    let ix = GraphIndex::new(g);
    let outputs = output_names(g);
    let mut found = Vec::new();
    for (hi, hs) in g.node.iter().enumerate() {
        if !is_op(hs, "HardSigmoid") || hs.input.len() != 1 || hs.output.len() != 1 {
            continue;
        }
        let alpha = f64::from(get_f(hs, "alpha").unwrap_or(0.2));
        let beta = f64::from(get_f(hs, "beta").unwrap_or(0.5));
        if !(close(alpha, 1.0 / 6.0) && close(beta, 0.5)) {
            continue;
        }
        let x = &hs.input[0];
        let Some(mi) = only_consumer(g, &ix, &outputs, &hs.output[0]) else { continue };
        let mul = &g.node[mi];
        if is_op(mul, "Mul") && other_input(mul, &hs.output[0]) == Some(x.as_str()) && mul.output.len() == 1 {
            let name = if hs.name.is_empty() { mul.name.clone() } else { hs.name.clone() };
            found.push(Match { nodes: vec![hi, mi], x: x.clone(), y: mul.output[0].clone(), swish: true, name });
        }
    }
    found
}

fn hsig_node(name: String, x: String, y: String) -> NodeProto {
    let mut n = make_node("HardSigmoid", name, vec![x], vec![y]);
    n.attribute = vec![attr_f("alpha", 1.0 / 6.0), attr_f("beta", 0.5)];
    n
}

fn replacement(m: &Match, native: bool, taken: &mut HashSet<String>, report: &mut HardSwishReport) -> Vec<NodeProto> {
    let base = if m.name.is_empty() { m.y.clone() } else { m.name.clone() };
    let (x, y) = (m.x.clone(), m.y.clone());
    if !m.swish {
        report.hardsigmoid += 1;
        return vec![hsig_node(unique_name(taken, &format!("{base}_hardsigmoid")), x, y)];
    }
    report.hardswish += 1;
    if native {
        return vec![make_node("HardSwish", unique_name(taken, &format!("{base}_hardswish")), vec![x], vec![y])];
    }
    let h = unique_name(taken, &format!("{x}_hardsigmoid"));
    vec![
        hsig_node(unique_name(taken, &format!("{base}_hardsigmoid")), x.clone(), h.clone()),
        make_node("Mul", unique_name(taken, &format!("{base}_mul")), vec![x, h], vec![y]),
    ]
}

/// Replaces each match by its new nodes, placed where the pattern's last node (the one making
/// its output) was. Returns the names of the nodes it made.
fn apply(
    g: &mut GraphProto,
    matches: Vec<Match>,
    native: bool,
    taken: &mut HashSet<String>,
    report: &mut HardSwishReport,
) -> HashSet<String> {
    let mut made = HashSet::new();
    if matches.is_empty() {
        return made;
    }
    let mut at: std::collections::HashMap<usize, Vec<NodeProto>> = std::collections::HashMap::new();
    let mut gone: HashSet<usize> = HashSet::new();
    for m in &matches {
        if m.nodes.iter().any(|i| gone.contains(i)) {
            continue; // cannot happen (see find_chains), but never rewrite a node twice
        }
        let last = m.nodes.iter().copied().max().unwrap_or(0);
        let nodes = replacement(m, native, taken, report);
        made.extend(nodes.iter().map(|n| n.name.clone()));
        at.insert(last, nodes);
        gone.extend(m.nodes.iter().copied());
    }
    let mut out = Vec::with_capacity(g.node.len());
    for (i, n) in std::mem::take(&mut g.node).into_iter().enumerate() {
        if let Some(new_nodes) = at.remove(&i) {
            out.extend(new_nodes);
        } else if !gone.contains(&i) {
            out.push(n);
        }
    }
    g.node = out;
    made
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::builder::{node, ModelBuilder, D};
    use crate::onnx::tensor;

    fn chain(three_dims: &[i64], shared_add: bool) -> Model {
        let mut b = ModelBuilder::new(14)
            .input("x", 1, &[D::S("n"), 4.into()])
            .output("y", 1, &[D::S("n"), 4.into()])
            .initializer(tensor::from_f32("three", three_dims, &[3.0]))
            .initializer(tensor::from_f32("zero", &[], &[0.0]))
            .initializer(tensor::from_f32("six", &[], &[6.0]))
            .node(node("Add", "a", &["x", "three"], &["a"], vec![]))
            .node(node("Clip", "c", &["a", "zero", "six"], &["c"], vec![]))
            .node(node("Mul", "m", &["x", "c"], &["m"], vec![]))
            .node(node("Div", "d", &["m", "six"], &["y"], vec![]));
        if shared_add {
            b = b.output("a", 1, &[D::S("n"), 4.into()]);
        }
        b.build()
    }

    #[test]
    fn fuses_only_when_shapes_and_uses_allow() {
        let mut m = chain(&[1], false);
        assert_eq!(fuse_hardswish(&mut m).unwrap().hardswish, 1);
        assert_eq!(m.graph().node.len(), 1);
        assert_eq!((m.graph().node[0].input[0].as_str(), m.graph().node[0].output[0].as_str()), ("x", "y"));
        // A [1, 1, 1] constant would broadcast x to rank 3: not the same op.
        let mut m = chain(&[1, 1, 1], false);
        assert_eq!(fuse_hardswish(&mut m).unwrap(), HardSwishReport::default());
        // An intermediate that is also a graph output must stay.
        let mut m = chain(&[1], true);
        assert_eq!(fuse_hardswish(&mut m).unwrap(), HardSwishReport::default());
        assert_eq!(m.graph().node.len(), 4);
        // x * (Clip(x + 3, 0, 6) / 6): a hard-sigmoid chain, then x * HardSigmoid(x); counted once.
        let mut m = chain(&[1], false);
        let g = m.graph_mut();
        g.node[2] = node("Div", "d", &["c", "six"], &["h"], vec![]);
        g.node[3] = node("Mul", "m", &["h", "x"], &["y"], vec![]);
        let r = fuse_hardswish(&mut m).unwrap();
        assert_eq!(r, HardSwishReport { hardswish: 1, hardsigmoid: 0 });
        assert_eq!(m.graph().node.len(), 1);
        assert_eq!(m.graph().node[0].op_type, "HardSwish");
    }
}
