//! Dead nodes and unused initializers removed.

use super::util::drop_stale_value_info;
use crate::error::Result;
use crate::onnx::graph::{subgraphs_mut, GraphIndex};
use crate::onnx::proto::GraphProto;
use crate::onnx::Model;
use std::collections::HashSet;

/// What [`prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PruneReport {
    /// Nodes whose outputs nothing reads.
    pub nodes: usize,
    /// Initializers nothing reads (initializers listed as graph inputs stay).
    pub initializers: usize,
}

/// Removes, in every graph (nested graphs first), nodes none of whose outputs is read or is a
/// graph output, then initializers nothing reads, and value_info of tensors that are gone.
/// Graph inputs and outputs are never touched.
pub fn prune(model: &mut Model) -> Result<PruneReport> {
    let mut report = PruneReport::default();
    prune_in(model.graph_mut(), &mut report);
    Ok(report)
}

fn prune_in(g: &mut GraphProto, report: &mut PruneReport) {
    for n in &mut g.node {
        for sg in subgraphs_mut(n) {
            prune_in(sg, report);
        }
    }
    let outputs: HashSet<String> = g.output.iter().map(|v| v.name.clone()).collect();
    loop {
        let ix = GraphIndex::new(g);
        let dead: Vec<bool> = g
            .node
            .iter()
            .map(|n| n.output.iter().all(|o| o.is_empty() || (!outputs.contains(o) && ix.consumers_of(o).is_empty())))
            .collect();
        let n_dead = dead.iter().filter(|d| **d).count();
        if n_dead == 0 {
            break;
        }
        report.nodes += n_dead;
        let mut it = dead.into_iter();
        g.node.retain(|_| !it.next().unwrap_or(false));
    }
    let ix = GraphIndex::new(g);
    let inputs: HashSet<String> = g.input.iter().map(|v| v.name.clone()).collect();
    let before = g.initializer.len();
    g.initializer
        .retain(|t| inputs.contains(&t.name) || outputs.contains(&t.name) || !ix.consumers_of(&t.name).is_empty());
    report.initializers += before - g.initializer.len();
    let before = g.sparse_initializer.len();
    g.sparse_initializer.retain(|s| {
        let name = s.values.as_ref().map(|v| v.name.as_str()).unwrap_or_default();
        inputs.contains(name) || outputs.contains(name) || !ix.consumers_of(name).is_empty()
    });
    report.initializers += before - g.sparse_initializer.len();
    drop_stale_value_info(g);
}
