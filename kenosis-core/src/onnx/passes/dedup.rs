//! Identical initializers merged into one, and the opposite for the quantizer: a weight read by
//! several quantizable nodes copied so each can get its own scales.
//!
//! The pipeline runs [`dedup_initializers`] in `prepare` (fewer, smaller files), and the
//! quantizer calls [`unshare_weights`] for the op types it quantizes per consumer (Conv, Gemm,
//! MatMul, ...), so a weight that two Convs share is quantized once for each of them.

use super::util::{output_names, rename_uses};
use crate::error::Result;
use crate::onnx::graph::{all_names, subgraphs_mut, unique_name};
use crate::onnx::proto::{data_type as dt, GraphProto};
use crate::onnx::{tensor, Model};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Merges initializers with the same data type, dims and bytes into the first of them in file
/// order, rewiring readers (nested graphs included), in every graph separately. Initializers
/// that are graph inputs (overridable at run time) or graph outputs are never merged. Returns
/// the number of initializers removed.
pub fn dedup_initializers(model: &mut Model) -> Result<usize> {
    dedup_in(model.graph_mut())
}

fn dedup_in(g: &mut GraphProto) -> Result<usize> {
    let mut count = 0;
    for n in &mut g.node {
        for sg in subgraphs_mut(n) {
            count += dedup_in(sg)?;
        }
    }
    let mut protected = output_names(g);
    protected.extend(g.input.iter().map(|v| v.name.clone()));
    let mut first: BTreeMap<(i32, Vec<i64>, Vec<u8>), String> = BTreeMap::new();
    let mut renames: Vec<(String, String)> = Vec::new();
    for t in &g.initializer {
        if protected.contains(&t.name) || t.data_type == dt::STRING || tensor::elem_size(t.data_type).is_none() {
            continue;
        }
        // A tensor whose data doesn't match its shape is left alone here; the passes that read
        // its values report it.
        let Ok(raw) = tensor::to_raw(t) else { continue };
        let key = (t.data_type, t.dims.clone(), raw);
        match first.get(&key) {
            Some(keep) => renames.push((t.name.clone(), keep.clone())),
            None => {
                first.insert(key, t.name.clone());
            }
        }
    }
    if renames.is_empty() {
        return Ok(count);
    }
    let dropped: HashSet<&str> = renames.iter().map(|(d, _)| d.as_str()).collect();
    let mut keep: Vec<bool> = g.initializer.iter().map(|t| !dropped.contains(t.name.as_str())).collect();
    let mut it = keep.drain(..);
    g.initializer.retain(|_| it.next().unwrap_or(true));
    for (from, to) in &renames {
        rename_uses(g, from, to);
    }
    let dropped: HashSet<String> = renames.iter().map(|(d, _)| d.clone()).collect();
    g.value_info.retain(|v| !dropped.contains(&v.name));
    Ok(count + renames.len())
}

/// Gives each node of `op_types` its own copy of every initializer it reads that an earlier
/// input slot (of any node, or earlier in the same node) already reads. The first reader in
/// node order keeps the original name; copies are named `<name>_<k>`. Main graph only.
/// Returns the number of copies made.
pub fn unshare_weights(model: &mut Model, op_types: &[&str]) -> Result<usize> {
    let g = model.graph_mut();
    let mut taken = all_names(g);
    let index: HashMap<String, usize> = g.initializer.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
    let inputs: HashSet<String> = g.input.iter().map(|v| v.name.clone()).collect();
    let mut seen: HashSet<String> = HashSet::new();
    let mut copies = Vec::new();
    for n in &mut g.node {
        let wanted = op_types.contains(&n.op_type.as_str()) && super::util::is_default_domain(&n.domain);
        for inp in n.input.iter_mut().filter(|i| !i.is_empty()) {
            let Some(&ti) = index.get(inp.as_str()) else { continue };
            if !seen.insert(inp.clone()) && wanted && !inputs.contains(inp.as_str()) {
                let name = unique_name(&mut taken, &format!("{inp}_1"));
                copies.push((ti, name.clone()));
                *inp = name;
            }
        }
    }
    for (ti, name) in &copies {
        let mut t = g.initializer[*ti].clone();
        t.name = name.clone();
        g.initializer.push(t);
    }
    Ok(copies.len())
}
