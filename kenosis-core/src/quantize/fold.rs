//! Small rewrites the quantizer needs beyond the shared prepare passes: a Conv bias that an
//! exporter wrote as `Conv -> Add(Reshape(bias))` (PaddlePaddle) becomes the Conv's own bias,
//! so the Conv fuses alone instead of paying a QLinearAdd per layer.

use crate::error::Result;
use crate::onnx::graph::{all_names, unique_name, GraphIndex};
use crate::onnx::proto::{data_type as dt, GraphProto};
use crate::onnx::tensor;

/// Replaces `Reshape(float initializer, int64 initializer)` by an initializer. Returns the count.
pub fn fold_constant_reshapes(g: &mut GraphProto) -> Result<usize> {
    let ix = GraphIndex::new(g);
    let mut new_inits = Vec::new();
    let mut drop = Vec::new();
    for (i, n) in g.node.iter().enumerate() {
        if n.op_type != "Reshape" || n.input.len() < 2 || n.output.len() != 1 || ix.is_output(&n.output[0]) {
            continue;
        }
        let (Some(data), Some(shape)) = (ix.initializer(g, &n.input[0]), ix.initializer(g, &n.input[1])) else {
            continue;
        };
        if data.data_type != dt::FLOAT {
            continue;
        }
        let Ok(shape) = tensor::to_i64(shape) else { continue };
        let Ok(count) = tensor::len(data) else { continue };
        let mut dims: Vec<i64> = shape
            .iter()
            .enumerate()
            .map(|(k, &d)| {
                if d == 0 {
                    data.dims.get(k).copied().unwrap_or(0)
                } else {
                    d
                }
            })
            .collect();
        let known: i64 = dims.iter().filter(|&&d| d > 0).product();
        if let Some(p) = dims.iter().position(|&d| d == -1) {
            if known <= 0 || count as i64 % known != 0 {
                continue;
            }
            dims[p] = count as i64 / known;
        }
        if dims.iter().any(|&d| d < 0) || dims.iter().product::<i64>() != count as i64 {
            continue;
        }
        let Ok(v) = tensor::to_f32(data) else { continue };
        new_inits.push(tensor::from_f32(&n.output[0], &dims, &v));
        drop.push(i);
    }
    let k = drop.len();
    let mut idx = 0usize;
    g.node.retain(|_| {
        let keep = !drop.contains(&idx);
        idx += 1;
        keep
    });
    g.initializer.extend(new_inits);
    Ok(k)
}

/// Folds `Conv -> Add(per-channel constant)` into the Conv's bias when the Add is the Conv's
/// only reader. Returns the count.
pub fn fold_conv_add_bias(g: &mut GraphProto) -> Result<usize> {
    let mut folded = 0;
    loop {
        let ix = GraphIndex::new(g);
        let mut found = None;
        for (i, n) in g.node.iter().enumerate() {
            if n.op_type != "Conv" || n.output.len() != 1 || ix.is_output(&n.output[0]) {
                continue;
            }
            let Some(w) = n.input.get(1).and_then(|w| ix.initializer(g, w)) else {
                continue;
            };
            let m = w.dims.first().copied().unwrap_or(0);
            let readers = ix.consumers_of(&n.output[0]);
            if readers.len() != 1 || g.node[readers[0]].op_type != "Add" {
                continue;
            }
            let add = &g.node[readers[0]];
            let Some(other) = add.input.iter().find(|s| **s != n.output[0]) else {
                continue;
            };
            let Some(c) = ix.initializer(g, other) else { continue };
            let rank = w.dims.len();
            let channel_axis_ok = c.data_type == dt::FLOAT
                && c.dims.iter().product::<i64>() == m
                && rank >= 3
                && c.dims.len() <= rank
                && c.dims.len() >= rank - 1
                && c.dims[c.dims.len() - (rank - 1)] == m;
            if !channel_axis_ok || add.input.iter().filter(|s| **s == n.output[0]).count() != 1 {
                continue;
            }
            let Ok(cv) = tensor::to_f32(c) else { continue };
            let old = match n.input.get(2).filter(|s| !s.is_empty()) {
                Some(b) => match ix.initializer(g, b).map(tensor::to_f32) {
                    Some(Ok(v)) if v.len() == m as usize => v,
                    _ => continue,
                },
                None => vec![0.0; m as usize],
            };
            let bias: Vec<f32> = old.iter().zip(&cv).map(|(a, b)| a + b).collect();
            found = Some((i, readers[0], bias, m));
            break;
        }
        let Some((ci, ai, bias, m)) = found else {
            return Ok(folded);
        };
        let mut taken = all_names(g);
        let conv_name = if g.node[ci].name.is_empty() {
            "conv".to_string()
        } else {
            g.node[ci].name.clone()
        };
        let bname = unique_name(&mut taken, &format!("{conv_name}_bias"));
        g.initializer.push(tensor::from_f32(&bname, &[m], &bias));
        let add_out = g.node[ai].output[0].clone();
        let conv = &mut g.node[ci];
        conv.input.truncate(2);
        conv.input.push(bname);
        conv.output[0] = add_out;
        g.node.remove(ai);
        folded += 1;
    }
}
