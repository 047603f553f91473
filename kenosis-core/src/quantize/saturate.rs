//! Activation ranges narrowed to what their readers can tell apart.
//!
//! HardSwish is 0 for every x <= -3, HardSigmoid is constant outside [-β/α, (1-β)/α], and a
//! Clip is constant outside its bounds. When every reader of a tensor is such an op, values
//! beyond those points change nothing downstream, so quantizing them only wastes levels: a
//! PP-LCNetV3 Conv output feeding a HardSwish spans about [-60, 60], and clipping the range at
//! -3 halves its quantization step at no cost. The narrowing is exact in real arithmetic.

use crate::calibrate::Ranges;
use crate::onnx::graph::{attr_f, GraphIndex};
use crate::onnx::proto::{GraphProto, NodeProto};
use crate::onnx::tensor;

/// The interval outside which `n`'s output no longer depends on its first input, if any.
fn useful_interval(graph: &GraphProto, ix: &GraphIndex, n: &NodeProto) -> Option<(f32, f32)> {
    let scalar = |slot: usize| -> Option<Option<f32>> {
        match n.input.get(slot).filter(|s| !s.is_empty()) {
            None => Some(None),
            Some(name) => {
                let v = tensor::to_f32(ix.initializer(graph, name)?).ok()?;
                (v.len() == 1).then(|| Some(v[0]))
            }
        }
    };
    match n.op_type.as_str() {
        "HardSwish" => Some((-3.0, f32::INFINITY)),
        "Relu" => Some((0.0, f32::INFINITY)),
        "HardSigmoid" => {
            let alpha = attr_f(n, "alpha").unwrap_or(0.2);
            let beta = attr_f(n, "beta").unwrap_or(0.5);
            (alpha > 0.0).then(|| (-beta / alpha, (1.0 - beta) / alpha))
        }
        "Clip" => {
            // Opset >= 11 takes min/max as inputs; the prepared graph is opset >= 13.
            let lo = scalar(1)?.unwrap_or(f32::NEG_INFINITY);
            let hi = scalar(2)?.unwrap_or(f32::INFINITY);
            (lo <= hi).then_some((lo, hi))
        }
        _ => None,
    }
}

/// Narrows the range of every tensor whose readers all saturate (see the module docs). Graph
/// outputs and tensors read by anything else keep their calibrated range. Returns the count.
pub fn narrow_ranges(graph: &GraphProto, ranges: &mut Ranges) -> usize {
    let ix = GraphIndex::new(graph);
    let mut narrowed = 0;
    for (t, range) in ranges.0.iter_mut() {
        let readers = ix.consumers_of(t);
        if readers.is_empty() || ix.is_output(t) {
            continue;
        }
        let mut lo = f32::INFINITY;
        let mut hi = f32::NEG_INFINITY;
        let all_saturate = readers.iter().all(|&r| {
            let n = &graph.node[r];
            // Only the data input saturates; a tensor that is also a Clip bound stays as it is.
            let data_only = n.input.iter().skip(1).all(|i| i != t) && n.input.first() == Some(t);
            match useful_interval(graph, &ix, n) {
                Some((a, b)) if data_only => {
                    lo = lo.min(a);
                    hi = hi.max(b);
                    true
                }
                _ => false,
            }
        });
        if !all_saturate {
            continue;
        }
        let (a, b) = (range.0.clamp(lo, hi), range.1.clamp(lo, hi));
        if (a, b) != *range {
            *range = (a, b);
            narrowed += 1;
        }
    }
    narrowed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::builder::{node, ModelBuilder, D};
    use crate::onnx::proto::data_type as dt;

    fn ranges(v: &[(&str, f32, f32)]) -> Ranges {
        Ranges(v.iter().map(|&(n, a, b)| (n.to_string(), (a, b))).collect())
    }

    fn dims() -> [D; 2] {
        [D::N(1), D::N(4)]
    }

    #[test]
    fn hardswish_and_hardsigmoid_inputs_are_clipped() {
        let g = ModelBuilder::new(13)
            .input("x", dt::FLOAT, &dims())
            .node(node("HardSwish", "hs", &["x"], &["y"], vec![]))
            .node(node("HardSigmoid", "hsig", &["y"], &["z"], vec![]))
            .output("z", dt::FLOAT, &dims())
            .graph();
        let mut r = ranges(&[("x", -60.0, 50.0), ("y", -0.3, 50.0), ("z", 0.0, 1.0)]);
        assert_eq!(narrow_ranges(&g, &mut r), 2);
        assert_eq!(r.get("x"), Some((-3.0, 50.0)));
        // HardSigmoid defaults: alpha 0.2, beta 0.5 -> [-2.5, 2.5].
        assert_eq!(r.get("y"), Some((-0.3, 2.5)));
        assert_eq!(r.get("z"), Some((0.0, 1.0)), "a graph output keeps its range");
    }

    #[test]
    fn a_non_saturating_reader_keeps_the_range() {
        let g = ModelBuilder::new(13)
            .input("x", dt::FLOAT, &dims())
            .node(node("HardSwish", "hs", &["x"], &["y"], vec![]))
            .node(node("Add", "add", &["x", "y"], &["z"], vec![]))
            .output("z", dt::FLOAT, &dims())
            .graph();
        let mut r = ranges(&[("x", -60.0, 50.0)]);
        assert_eq!(narrow_ranges(&g, &mut r), 0);
        assert_eq!(r.get("x"), Some((-60.0, 50.0)));
    }

    #[test]
    fn clip_bounds_from_initializers() {
        let g = ModelBuilder::new(13)
            .input("x", dt::FLOAT, &dims())
            .initializer(tensor::from_f32("lo", &[], &[-1.0]))
            .initializer(tensor::from_f32("hi", &[], &[6.0]))
            .node(node("Clip", "c", &["x", "lo", "hi"], &["y"], vec![]))
            .output("y", dt::FLOAT, &dims())
            .graph();
        let mut r = ranges(&[("x", -60.0, 3.0)]);
        narrow_ranges(&g, &mut r);
        assert_eq!(r.get("x"), Some((-1.0, 3.0)));
        // All values beyond the saturation point: the range collapses onto it.
        let mut r = ranges(&[("x", -60.0, -10.0)]);
        narrow_ranges(&g, &mut r);
        assert_eq!(r.get("x"), Some((-1.0, -1.0)));
    }
}
