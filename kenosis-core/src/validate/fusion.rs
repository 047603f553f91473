//! What ONNX Runtime actually runs: its optimised graph, written to a temp file and counted.
//!
//! ORT fuses DQ → op → Q groups into QLinear kernels while it builds a session; only the graph it
//! writes afterwards tells which groups fused. Kenosis reads that graph at the extended level:
//! it holds every QDQ fusion (QLinearConv, QLinearAdd, ...) but none of the layout rewrites of
//! level "all" (NCHWc convolutions, reorder nodes), which depend on the CPU and would blur the
//! counts.

use crate::error::{Error, Result};
use crate::onnx::graph::for_each_graph;
use crate::onnx::Model;
use crate::runtime::{Optimization, Session, SessionOptions};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

/// Float ops that do the heavy lifting and should have become an integer kernel.
const FLOAT_COMPUTE: &[&str] =
    &["Conv", "ConvTranspose", "MatMul", "Gemm", "FusedConv", "FusedGemm", "FusedMatMul", "NchwcConv"];

/// Integer kernels other than QLinearConv that ORT runs fused QDQ groups with.
const OTHER_INTEGER: &[&str] = &["QGemm", "MatMulIntegerToFloat", "QAttention", "ConvInteger", "MatMulInteger"];

/// ORT's optimised graph of `model` at the extended level, read back as a [`Model`].
pub fn optimized_model(model: &Model) -> Result<Model> {
    let dir = TempDir::new()?;
    let path = dir.0.join("optimized.onnx");
    let opts = SessionOptions {
        threads: 1,
        optimization: Optimization::Extended,
        optimized_model_path: Some(path.clone()),
        spinning: false,
    };
    let session = Session::from_model(model, &opts)?;
    drop(session);
    if !path.exists() {
        return Err(Error::Ort {
            context: "writing the optimised graph".into(),
            message: format!("ONNX Runtime wrote nothing to {}", path.display()),
        });
    }
    let mut optimized = Model::load(&path)?;
    optimized.path = None;
    Ok(optimized)
}

/// Op type → node count over the whole graph, subgraphs (If/Loop/Scan bodies) included.
pub fn op_counts(model: &Model) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for_each_graph(model.graph(), &mut |g| {
        for n in &g.node {
            *counts.entry(n.op_type.clone()).or_insert(0) += 1;
        }
    });
    counts
}

/// Op type → count in ONNX Runtime's optimised graph of `int8` (so `DequantizeLinear` is the
/// number of DQ nodes left unfused). Needs ONNX Runtime.
pub fn fusion_counts(int8: &Model) -> Result<BTreeMap<String, u64>> {
    Ok(op_counts(&optimized_model(int8)?))
}

/// The fusion figures a person checks first, derived from ORT's optimised INT8 graph.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fusion {
    /// QLinearConv nodes: convolutions that run on integer kernels.
    pub qlinear_conv: u64,
    /// Conv nodes in the FP32 model, to read `qlinear_conv` against.
    pub fp32_conv: u64,
    /// Other integer kernels: every `QLinear*` op except QLinearConv, plus QGemm,
    /// MatMulIntegerToFloat and the like.
    pub qlinear_other: u64,
    /// DequantizeLinear nodes left in the optimised graph (each one is a float island's border).
    pub dequantize_linear: u64,
    /// Conv/ConvTranspose/MatMul/Gemm (also ORT's fused float variants) with an input produced by
    /// a DequantizeLinear: compute that was meant to run in INT8 and runs in float.
    pub float_conv_fed_by_dq: u64,
    /// The names of those nodes (sorted), so a user can find them.
    pub float_conv_fed_by_dq_nodes: Vec<String>,
    /// Op type → count of float nodes (anything but Q/DQ) reading a DequantizeLinear output:
    /// where the graph leaves INT8 for a float island (HardSwish, Resize, the detection head...).
    pub float_ops_fed_by_dq: BTreeMap<String, u64>,
}

impl Fusion {
    /// Derives the figures from ORT's optimised graph of the INT8 model and the FP32 model.
    pub fn from_graphs(optimized_int8: &Model, fp32: &Model) -> Fusion {
        let counts = op_counts(optimized_int8);
        let get = |op: &str| counts.get(op).copied().unwrap_or(0);
        let qlinear_other = counts
            .iter()
            .filter(|(op, _)| {
                (op.starts_with("QLinear") && *op != "QLinearConv") || OTHER_INTEGER.contains(&op.as_str())
            })
            .map(|(_, c)| c)
            .sum();
        let mut fed = Vec::new();
        let mut islands = BTreeMap::new();
        for_each_graph(optimized_int8.graph(), &mut |g| {
            let dq_outputs: HashSet<&str> = g
                .node
                .iter()
                .filter(|n| n.op_type == "DequantizeLinear")
                .flat_map(|n| n.output.iter().map(String::as_str))
                .collect();
            for n in g.node.iter().filter(|n| !matches!(n.op_type.as_str(), "QuantizeLinear" | "DequantizeLinear")) {
                if !n.input.iter().any(|i| dq_outputs.contains(i.as_str())) {
                    continue;
                }
                *islands.entry(n.op_type.clone()).or_insert(0) += 1;
                if FLOAT_COMPUTE.contains(&n.op_type.as_str()) {
                    let name = if n.name.is_empty() {
                        format!("{} -> {}", n.op_type, n.output.join(","))
                    } else {
                        n.name.clone()
                    };
                    fed.push(name);
                }
            }
        });
        fed.sort();
        let fp32_counts = op_counts(fp32);
        Fusion {
            qlinear_conv: get("QLinearConv"),
            fp32_conv: fp32_counts.get("Conv").copied().unwrap_or(0),
            qlinear_other,
            dequantize_linear: get("DequantizeLinear"),
            float_conv_fed_by_dq: fed.len() as u64,
            float_conv_fed_by_dq_nodes: fed,
            float_ops_fed_by_dq: islands,
        }
    }
}

/// A private temp folder removed on drop (kenosis-core has no tempfile dependency outside tests).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir();
        for _ in 0..16 {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let dir = base.join(format!(
                "kenosis-validate-{}-{}-{nanos}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(TempDir(dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(&dir, e)),
            }
        }
        Err(Error::io(
            &base,
            std::io::Error::other("could not create a unique temp folder; set TMPDIR to a writable folder"),
        ))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
