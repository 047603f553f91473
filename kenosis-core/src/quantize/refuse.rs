//! Models Kenosis refuses to quantize, with the reason.

use crate::error::{Error, Result};
use crate::inspect::QUANTIZED_OPS;
use crate::onnx::graph::for_each_graph;
use crate::onnx::proto::GraphProto;

/// `Error::AlreadyQuantized` naming the first quantized op and its node (subgraphs included).
pub fn check_not_quantized(graph: &GraphProto) -> Result<()> {
    let mut found: Option<String> = None;
    for_each_graph(graph, &mut |g| {
        if found.is_some() {
            return;
        }
        if let Some(n) = g.node.iter().find(|n| QUANTIZED_OPS.contains(&n.op_type.as_str())) {
            let name = if n.name.is_empty() {
                n.output.first().cloned().unwrap_or_default()
            } else {
                n.name.clone()
            };
            found = Some(format!("node `{name}` is a {}", n.op_type));
        }
    });
    match found {
        Some(what) => Err(Error::AlreadyQuantized(what)),
        None => Ok(()),
    }
}

/// The ops whose weights Kenosis quantizes (and which mark a model as having float compute).
pub const LEARNED_OPS: &[&str] = &["Conv", "ConvTranspose", "Gemm", "MatMul"];

/// True if `graph` or any nested subgraph holds a learned op.
pub fn has_learned_ops_anywhere(graph: &GraphProto) -> bool {
    let mut any = false;
    for_each_graph(graph, &mut |g| {
        any |= g.node.iter().any(|n| LEARNED_OPS.contains(&n.op_type.as_str()))
    });
    any
}
