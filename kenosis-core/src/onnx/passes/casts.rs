//! Weights that arrive through a Cast from an fp16 (or bf16, f64) initializer become float32
//! initializers, so the quantizer sees them as weights.

use super::util::{is_op, output_names};
use crate::error::Result;
use crate::onnx::graph::{attr_i, subgraphs_mut};
use crate::onnx::proto::{data_type as dt, GraphProto};
use crate::onnx::{tensor, Model};

/// Folds `Cast(to=float32)` of a float initializer into a float32 initializer named after the
/// Cast's output, in every graph. The source initializer stays if something else reads it
/// (pruning drops it otherwise). Returns the number of Casts folded.
pub fn fold_casts(model: &mut Model) -> Result<usize> {
    fold_in(model.graph_mut())
}

fn fold_in(g: &mut GraphProto) -> Result<usize> {
    let mut count = 0;
    for n in &mut g.node {
        for sg in subgraphs_mut(n) {
            count += fold_in(sg)?;
        }
    }
    let outputs = output_names(g);
    let mut new_inits = Vec::new();
    let mut keep = Vec::with_capacity(g.node.len());
    for n in &g.node {
        let foldable = is_op(n, "Cast")
            && attr_i(n, "to") == Some(dt::FLOAT as i64)
            && n.output.len() == 1
            && !outputs.contains(&n.output[0]);
        let src = foldable
            .then(|| n.input.first().and_then(|i| g.initializer.iter().find(|t| &t.name == i)))
            .flatten()
            .filter(|t| tensor::is_float(t.data_type));
        match src {
            Some(t) => {
                let values = tensor::to_f32(t)?;
                new_inits.push(tensor::from_f32(&n.output[0], &t.dims, &values));
                keep.push(false);
                count += 1;
            }
            None => keep.push(true),
        }
    }
    let mut it = keep.into_iter();
    g.node.retain(|_| it.next().unwrap_or(true));
    g.initializer.extend(new_inits);
    Ok(count)
}
