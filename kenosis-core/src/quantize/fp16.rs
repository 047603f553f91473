//! FP16 storage for the weights of the layers the accuracy search keeps float (opt-in:
//! `QuantizeConfig::fp16_float_layers`).
//!
//! A detector whose backbone stays float would otherwise keep most of its FP32 file size. Its
//! float weights are stored as FP16 with a Cast to FP32 in front: ONNX Runtime folds the Cast
//! when it loads the model, so the layers run the same FP32 kernels at the same speed, and the
//! search scores this very model, so the rounding (at most 2^-11 relative) counts against the
//! target like any other. Weights outside FP16's range, or not finite, stay FP32.

use super::plan::node_label;
use crate::onnx::builder::{attr_i, node};
use crate::onnx::graph::{all_names, unique_name, GraphIndex};
use crate::onnx::proto::{data_type as dt, GraphProto};
use crate::onnx::tensor;
use half::f16;
use std::collections::BTreeSet;

/// Weights with fewer elements stay FP32: they save little.
const MIN_ELEMENTS: usize = 256;

/// Stores the weight of every node in `labels` as FP16 behind a Cast. Returns the count.
pub fn store_half(graph: &mut GraphProto, labels: &BTreeSet<String>) -> usize {
    let ix = GraphIndex::new(graph);
    let mut taken = all_names(graph);
    let mut weights: Vec<String> = Vec::new();
    for n in graph.node.iter().filter(|n| labels.contains(&node_label(n))) {
        let Some(w) = n.input.get(1) else { continue };
        let sole_reader = ix.consumers_of(w).len() == 1 && !ix.is_output(w);
        if sole_reader && !weights.contains(w) {
            weights.push(w.clone());
        }
    }
    let mut casts = Vec::new();
    for w in weights {
        let Some(pos) = graph.initializer.iter().position(|t| t.name == w) else { continue };
        let t = &graph.initializer[pos];
        if t.data_type != dt::FLOAT {
            continue;
        }
        let Ok(v) = tensor::to_f32(t) else { continue };
        let max = f64::from(f16::MAX.to_f32());
        if v.len() < MIN_ELEMENTS || v.iter().any(|x| !x.is_finite() || f64::from(x.abs()) > max) {
            continue;
        }
        let half_name = unique_name(&mut taken, &format!("{w}_fp16"));
        let cast_name = unique_name(&mut taken, &format!("{w}_Cast"));
        let h: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
        graph.initializer[pos] = tensor::from_f16(&half_name, &t.dims.clone(), &h);
        casts.push(node("Cast", &cast_name, &[&half_name], &[&w], vec![attr_i("to", i64::from(dt::FLOAT))]));
    }
    let count = casts.len();
    // Casts of initializers first: the graph stays topologically sorted.
    graph.node.splice(0..0, casts);
    count
}
