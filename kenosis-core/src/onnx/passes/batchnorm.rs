//! BatchNormalization folded into the Conv (or ConvTranspose) before it: one integer conv
//! instead of a conv and a float BN island.

use super::util::{drop_stale_value_info, is_op, output_names};
use crate::error::Result;
use crate::onnx::graph::{all_names, attr_f, attr_i, subgraphs_mut, unique_name, GraphIndex};
use crate::onnx::proto::{data_type as dt, GraphProto, TensorProto};
use crate::onnx::{tensor, Model};
use std::collections::HashSet;

/// Folds every BatchNormalization that reads a Conv/ConvTranspose output used by nothing else
/// into that conv's weight and bias (computed in f64), in every graph. A BN anywhere else
/// (after an Add, in training mode, with non-constant statistics) stays. Returns the number
/// folded.
pub fn fold_batchnorm(model: &mut Model) -> Result<usize> {
    let g = model.graph_mut();
    let mut taken = all_names(g);
    fold_in(g, &mut taken)
}

fn fold_in(g: &mut GraphProto, taken: &mut HashSet<String>) -> Result<usize> {
    let mut count = 0;
    for n in &mut g.node {
        for sg in subgraphs_mut(n) {
            count += fold_in(sg, taken)?;
        }
    }
    // Candidates never overlap (each BN has its own conv), so one index serves them all:
    // folding only rewrites initializers in place or appends new ones.
    let ix = GraphIndex::new(g);
    let outputs = output_names(g);
    let found: Vec<(usize, usize)> = (0..g.node.len()).filter_map(|i| candidate(g, &ix, &outputs, i)).collect();
    let mut folded = vec![false; g.node.len()];
    for &(bn, conv) in &found {
        fold_one(g, &ix, bn, conv, taken)?;
        folded[bn] = true;
        count += 1;
    }
    let mut it = folded.into_iter();
    g.node.retain(|_| !it.next().unwrap_or(false));
    if count > 0 {
        drop_stale_value_info(g);
    }
    Ok(count)
}

fn candidate(g: &GraphProto, ix: &GraphIndex, outputs: &HashSet<String>, i: usize) -> Option<(usize, usize)> {
    let bn = &g.node[i];
    if !is_op(bn, "BatchNormalization") || bn.input.len() != 5 || attr_i(bn, "training_mode").unwrap_or(0) != 0 {
        return None;
    }
    if bn.output.iter().skip(1).any(|o| !o.is_empty() && (outputs.contains(o) || !ix.consumers_of(o).is_empty())) {
        return None;
    }
    let x = &bn.input[0];
    let c = ix.producer_of(x)?;
    let conv = &g.node[c];
    if !(is_op(conv, "Conv") || is_op(conv, "ConvTranspose")) || conv.output.len() != 1 || outputs.contains(x) {
        return None;
    }
    if ix.consumers_of(x) != [i] {
        return None;
    }
    // Initializers that are also graph inputs can be replaced at run time: not constants.
    let fixed = |name: &str| !g.input.iter().any(|v| v.name == name);
    let f32_init = |name: &str| ix.initializer(g, name).filter(|t| t.data_type == dt::FLOAT && fixed(name));
    let w = f32_init(conv.input.get(1)?)?;
    if w.dims.len() < 2 {
        return None;
    }
    if let Some(b) = conv.input.get(2).filter(|b| !b.is_empty()) {
        f32_init(b)?;
    }
    let channels = out_channels(conv, w)?;
    for s in &bn.input[1..] {
        let t = ix.initializer(g, s).filter(|t| tensor::is_float(t.data_type) && fixed(s))?;
        if tensor::len(t).ok()? != channels {
            return None;
        }
    }
    Some((i, c))
}

fn out_channels(conv: &crate::onnx::proto::NodeProto, w: &TensorProto) -> Option<usize> {
    if conv.op_type == "Conv" {
        usize::try_from(w.dims[0]).ok()
    } else {
        let group = usize::try_from(attr_i(conv, "group").unwrap_or(1)).ok()?;
        usize::try_from(w.dims[1]).ok()?.checked_mul(group)
    }
}

fn fold_one(
    g: &mut GraphProto,
    ix: &GraphIndex,
    bn_i: usize,
    conv_i: usize,
    taken: &mut HashSet<String>,
) -> Result<()> {
    let bn = g.node[bn_i].clone();
    let conv = g.node[conv_i].clone();
    let stat = |k: usize| -> Result<Vec<f64>> {
        let t = ix.initializer(g, &bn.input[k]).ok_or_else(|| crate::Error::tensor(&bn.input[k], "missing"))?;
        Ok(tensor::to_f32(t)?.into_iter().map(f64::from).collect())
    };
    let (scale, beta, mean, var) = (stat(1)?, stat(2)?, stat(3)?, stat(4)?);
    let eps = f64::from(attr_f(&bn, "epsilon").unwrap_or(1e-5));
    let factor: Vec<f64> = scale.iter().zip(&var).map(|(s, v)| s / (v + eps).sqrt()).collect();

    let w_name = conv.input[1].clone();
    let w = ix.initializer(g, &w_name).cloned().ok_or_else(|| crate::Error::tensor(&w_name, "missing"))?;
    let wv = tensor::to_f32(&w)?;
    let channels = factor.len();
    let per_elem = wv.len() / w.dims[0].max(1) as usize; // elements per dim-0 slice
    let new_w: Vec<f32> = if conv.op_type == "Conv" {
        wv.iter().enumerate().map(|(k, &v)| (f64::from(v) * factor[k / per_elem.max(1)]) as f32).collect()
    } else {
        // ConvTranspose weight: [C_in, C_out / group, k...]; output channel = group * (C_out/group) + j.
        let group = attr_i(&conv, "group").unwrap_or(1).max(1) as usize;
        let cin = w.dims[0].max(1) as usize;
        let cout_g = w.dims[1].max(1) as usize;
        let inner = per_elem / cout_g;
        let cin_g = cin / group;
        wv.iter()
            .enumerate()
            .map(|(k, &v)| {
                let i = k / per_elem;
                let j = (k % per_elem) / inner;
                let o = (i / cin_g.max(1)) * cout_g + j;
                (f64::from(v) * factor[o.min(channels - 1)]) as f32
            })
            .collect()
    };
    let old_b: Vec<f64> = match conv.input.get(2).filter(|b| !b.is_empty()) {
        Some(b) => {
            let t = ix.initializer(g, b).ok_or_else(|| crate::Error::tensor(b, "missing"))?;
            tensor::to_f32(t)?.into_iter().map(f64::from).collect()
        }
        None => vec![0.0; channels],
    };
    let new_b: Vec<f32> = (0..channels).map(|c| ((old_b[c] - mean[c]) * factor[c] + beta[c]) as f32).collect();

    let sole_user = |name: &str| ix.consumers_of(name) == [conv_i] && !g.input.iter().any(|v| v.name == name);
    let w_out = if sole_user(&w_name) { w_name.clone() } else { unique_name(taken, &format!("{w_name}_bn")) };
    let b_out = match conv.input.get(2).filter(|b| !b.is_empty() && sole_user(b)) {
        Some(b) => b.clone(),
        None => unique_name(taken, &format!("{}_bias", bn.output[0])),
    };
    put_initializer(g, tensor::from_f32(&w_out, &w.dims, &new_w));
    put_initializer(g, tensor::from_f32(&b_out, &[channels as i64], &new_b));
    let c = &mut g.node[conv_i];
    c.input[1] = w_out;
    if c.input.len() < 3 {
        c.input.resize(3, String::new());
    }
    c.input[2] = b_out;
    c.output[0] = bn.output[0].clone();
    Ok(())
}

/// Replaces the initializer of that name in place, or appends it.
fn put_initializer(g: &mut GraphProto, t: TensorProto) {
    match g.initializer.iter_mut().find(|x| x.name == t.name) {
        Some(slot) => *slot = t,
        None => g.initializer.push(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::builder::{node, ModelBuilder};

    fn model(scale_is_input: bool, training: bool) -> Model {
        let mut b = ModelBuilder::new(14)
            .input("x", dt::FLOAT, &[1.into(), 2.into(), 3.into(), 3.into()])
            .output("y", dt::FLOAT, &[1.into(), 2.into(), 3.into(), 3.into()])
            .initializer(tensor::from_f32("w", &[2, 2, 1, 1], &[1.0, 0.0, 0.0, 1.0]))
            .initializer(tensor::from_f32("s", &[2], &[2.0, 0.5]))
            .initializer(tensor::from_f32("b", &[2], &[0.0, 1.0]))
            .initializer(tensor::from_f32("m", &[2], &[0.0, 0.0]))
            .initializer(tensor::from_f32("v", &[2], &[1.0, 1.0]));
        if scale_is_input {
            b = b.input("s", dt::FLOAT, &[2.into()]);
        }
        let mut bn = node("BatchNormalization", "bn", &["c", "s", "b", "m", "v"], &["y"], vec![]);
        if training {
            bn.attribute.push(crate::onnx::builder::attr_i("training_mode", 1));
        }
        b.node(node("Conv", "conv", &["x", "w"], &["c"], vec![])).node(bn).build()
    }

    #[test]
    fn folds_constant_statistics_only() {
        let mut m = model(false, false);
        assert_eq!(fold_batchnorm(&mut m).unwrap(), 1);
        let g = m.graph();
        assert_eq!(g.node.len(), 1);
        assert_eq!(g.node[0].output, vec!["y"]);
        let w = tensor::to_f32(g.initializer.iter().find(|t| t.name == "w").unwrap()).unwrap();
        let eps = 1e-5f64;
        let f0 = (2.0 / (1.0 + eps).sqrt()) as f32;
        assert_eq!(w[0], f0);
        assert_eq!(w[3], (0.5 / (1.0 + eps).sqrt()) as f32);
        let bias = g.initializer.iter().find(|t| t.name == g.node[0].input[2]).unwrap();
        assert_eq!(tensor::to_f32(bias).unwrap(), vec![0.0, 1.0]);
        // Scale fed at run time, or training mode: left alone.
        assert_eq!(fold_batchnorm(&mut model(true, false)).unwrap(), 0);
        assert_eq!(fold_batchnorm(&mut model(false, true)).unwrap(), 0);
    }
}
