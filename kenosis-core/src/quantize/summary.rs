//! What the quantizer decided, for the report and the build record.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One node's fate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeDecision {
    /// Node name (or `<op>:<first output>` for unnamed nodes).
    pub node: String,
    /// Its op type.
    pub op_type: String,
    /// True if it runs on 8-bit data (or is folded into a neighbour that does).
    pub quantized: bool,
    /// Why.
    pub reason: String,
}

/// The decisions of one quantization (serde; deterministic).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Weight bits used (7 or 8).
    pub weight_bits: u8,
    /// Why that many.
    pub weight_bits_reason: String,
    /// Per-channel weight scales.
    pub per_channel: bool,
    /// The target architecture the defaults were chosen for.
    pub target_arch: String,
    /// Opset of the output model.
    pub opset: i64,
    /// Op type -> nodes quantized.
    pub quantized: BTreeMap<String, usize>,
    /// Op type -> nodes kept in float.
    pub kept_float: BTreeMap<String, usize>,
    /// QuantizeLinear / DequantizeLinear nodes written.
    pub q_nodes: usize,
    /// DequantizeLinear nodes written.
    pub dq_nodes: usize,
    /// Every node of the main graph, in graph order.
    pub nodes: Vec<NodeDecision>,
    /// Learned nodes the accuracy search kept float (empty without `target_cosine`). A rebuild
    /// from stored ranges needs them to make the same bytes.
    #[serde(default)]
    pub searched_float: Vec<String>,
    /// Whether the accuracy search reached `target_cosine` on the calibration samples (`None`
    /// without a target). When it did not, the model is all INT8.
    #[serde(default)]
    pub target_met: Option<bool>,
    /// Things the user should know (saturation guards, subgraphs left float, ...).
    pub notes: Vec<String>,
}
