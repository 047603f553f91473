//! Graph passes that prepare a model for quantization.
//!
//! Each pass works on a [`Model`] in place, in the main graph and in nested graphs (If/Loop/Scan
//! bodies), and keeps the model's graph input and output names, their dynamic dims and the
//! model's metadata_props. [`prepare`] runs them in the order the quantizer needs.
//!
//! Shared weights: [`dedup_initializers`] merges identical tensors; a quantizer that wants
//! per-consumer scales calls [`unshare_weights`] for the op types it quantizes.

mod batchnorm;
mod casts;
mod constants;
mod dedup;
mod hardswish;
mod noops;
mod opset;
mod prune;
mod util;

pub use batchnorm::fold_batchnorm;
pub use casts::fold_casts;
pub use constants::{extract_constants, ConstantsReport};
pub use dedup::{dedup_initializers, unshare_weights};
pub use hardswish::{fuse_hardswish, HardSwishReport};
pub use noops::remove_noops;
pub use opset::{min_ir_version, upgrade_opset, OpsetReport, MAX_TARGET_OPSET, MIN_SOURCE_OPSET};
pub use prune::{prune, PruneReport};

use crate::error::Result;
use crate::onnx::graph::{for_each_graph_mut, sort_topologically};
use crate::onnx::Model;

/// What [`prepare`] runs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PrepareOptions {
    /// Upgrade the default-domain opset to at least this (13 for per-channel QDQ); `None` keeps
    /// it. At 14 or newer, hard-swish becomes the single `HardSwish` op, below that
    /// `HardSigmoid` + `Mul`.
    pub min_opset: Option<i64>,
    /// Fold BatchNormalization into the Conv before it.
    pub fold_batchnorm: bool,
    /// Rewrite written-out hard-swish / hard-sigmoid to one op.
    pub fuse_hardswish: bool,
    /// Merge identical initializers.
    pub dedup: bool,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        PrepareOptions { min_opset: None, fold_batchnorm: true, fuse_hardswish: true, dedup: true }
    }
}

/// What [`prepare`] did, pass by pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PrepareReport {
    /// Constant nodes turned into initializers.
    pub constants_extracted: usize,
    /// Constant nodes kept (their output is a graph output).
    pub constants_kept: usize,
    /// Casts of float initializers folded into float32 initializers.
    pub casts_folded: usize,
    /// Default-domain opset before.
    pub opset_from: i64,
    /// Default-domain opset after.
    pub opset_to: i64,
    /// Nodes the opset upgrade rewrote.
    pub opset_rewritten: usize,
    /// Identity and Dropout nodes removed.
    pub noops_removed: usize,
    /// BatchNormalization nodes folded into convs.
    pub batchnorm_folded: usize,
    /// Hard-swish patterns rewritten.
    pub hardswish_fused: usize,
    /// Hard-sigmoid patterns rewritten.
    pub hardsigmoid_fused: usize,
    /// Initializers merged into an identical one.
    pub initializers_merged: usize,
    /// Dead nodes removed.
    pub nodes_pruned: usize,
    /// Unused initializers removed.
    pub initializers_pruned: usize,
}

impl PrepareReport {
    /// One line for people: what changed, passes that did nothing left out.
    pub fn human(&self) -> String {
        let mut parts = Vec::new();
        let mut say = |n: usize, what: &str| {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        };
        say(self.constants_extracted, "Constant nodes to initializers");
        say(self.casts_folded, "weight Casts folded");
        say(self.noops_removed, "Identity/Dropout removed");
        say(self.batchnorm_folded, "BatchNorm folded");
        say(self.hardswish_fused, "hard-swish fused");
        say(self.hardsigmoid_fused, "hard-sigmoid fused");
        say(self.initializers_merged, "duplicate initializers merged");
        say(self.nodes_pruned, "dead nodes pruned");
        say(self.initializers_pruned, "unused initializers pruned");
        if self.opset_to != self.opset_from {
            parts.push(format!("opset {} -> {}", self.opset_from, self.opset_to));
        }
        if parts.is_empty() {
            "nothing to change".into()
        } else {
            parts.join(", ")
        }
    }
}

/// Runs the passes in order: extract constants, fold casts, upgrade the opset (when
/// `min_opset` asks for more than the model has), remove no-ops, fold BatchNormalization, fuse
/// hard-swish, merge identical initializers, sort every graph topologically, prune what nothing
/// uses. On error the model is left as it was.
pub fn prepare(model: &mut Model, opts: &PrepareOptions) -> Result<PrepareReport> {
    let mut work = model.clone();
    let report = prepare_in_place(&mut work, opts)?;
    *model = work;
    Ok(report)
}

fn prepare_in_place(model: &mut Model, opts: &PrepareOptions) -> Result<PrepareReport> {
    let mut r = PrepareReport::default();
    let c = extract_constants(model)?;
    r.constants_extracted = c.extracted;
    r.constants_kept = c.kept;
    r.casts_folded = fold_casts(model)?;
    // A model importing no default domain has no standard op to upgrade.
    let from = model.opset("");
    r.opset_from = from.unwrap_or(0);
    r.opset_to = r.opset_from;
    if let Some(min) = opts.min_opset.filter(|&m| from.is_some_and(|f| m > f)) {
        let o = upgrade_opset(model, min)?;
        r.opset_to = o.to;
        r.opset_rewritten = o.rewritten;
    }
    r.noops_removed = remove_noops(model)?;
    if opts.fold_batchnorm {
        r.batchnorm_folded = fold_batchnorm(model)?;
    }
    if opts.fuse_hardswish {
        let h = fuse_hardswish(model)?;
        r.hardswish_fused = h.hardswish;
        r.hardsigmoid_fused = h.hardsigmoid;
    }
    if opts.dedup {
        r.initializers_merged = dedup_initializers(model)?;
    }
    let mut sorted = Ok(());
    for_each_graph_mut(model.graph_mut(), &mut |g| {
        if sorted.is_ok() {
            sorted = sort_topologically(g);
        }
    });
    sorted?;
    let p = prune(model)?;
    r.nodes_pruned = p.nodes;
    r.initializers_pruned = p.initializers;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::builder::{attr_f, node, ModelBuilder};

    #[test]
    fn a_failed_prepare_leaves_the_model_alone() {
        let mut m = ModelBuilder::new(9)
            .input("x", 1, &[1.into(), 1.into(), 2.into(), 2.into()])
            .output("y", 1, &[1.into(), 1.into(), 4.into(), 4.into()])
            .node(node("Constant", "k", &[], &["k"], vec![attr_f("value_float", 2.0)]))
            .node(node("Upsample", "up", &["x", "k"], &["y"], vec![]))
            .build();
        let before = m.clone();
        let e = prepare(&mut m, &PrepareOptions { min_opset: Some(13), ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("`up`"), "{e}");
        assert_eq!(m, before);
        // Without an upgrade the same model prepares fine.
        let r = prepare(&mut m, &PrepareOptions::default()).unwrap();
        assert_eq!((r.constants_extracted, r.opset_from, r.opset_to), (1, 9, 9));
        assert_eq!(r.human(), "1 Constant nodes to initializers");
        let again = prepare(&mut m, &PrepareOptions::default()).unwrap();
        assert_eq!(again.human(), "nothing to change");
    }

    #[test]
    fn options_read_from_partial_json() {
        let o: PrepareOptions = serde_json::from_str(r#"{"min_opset": 13}"#).unwrap();
        assert_eq!(o, PrepareOptions { min_opset: Some(13), ..Default::default() });
    }
}
