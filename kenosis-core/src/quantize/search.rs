//! Accuracy search: how many leading learned layers to keep float so the INT8 model reaches a
//! target cosine.
//!
//! Some networks lose accuracy across many layers rather than at one (PP-OCRv4 det: 0.1%
//! random noise on every weight already drops its output cosine to 0.97), and no range or
//! weight-scale choice fixes that. What does is mixed precision, chosen by measurement. The
//! layers that cost most sit early (their error is amplified by everything after them), and
//! single-layer gains do not add up (on PP-PicoDet layout, keeping the 3rd to 26th "best" layers
//! float as well scores below keeping the first two), so the search keeps a prefix float: it
//! bisects on the number of leading learned layers (graph order) kept float for the smallest
//! one whose cosine on the calibration samples meets the target, in about log2(layers) + 1
//! scored models. Backbone float, neck and head INT8 is the typical answer for a detector.
//!
//! Every candidate runs in a one-thread ORT session, so the choice does not depend on threads.

use super::{apply_with, Quantized, QuantizeConfig};
use crate::calibrate::{Ranges, Samples};
use crate::error::{Error, Result};
use crate::onnx::Model;
use crate::runtime::{Feed, Optimization, Session, SessionOptions};
use crate::validate::metrics::OutputStats;
use ndarray::ArrayD;
use std::collections::BTreeMap;

/// The most calibration samples a search scores on (each candidate runs them all).
pub const SEARCH_SAMPLES: usize = 8;

/// What the search found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Cosine before the search (all eligible layers INT8).
    pub before: f64,
    /// Cosine of the chosen model; when the target is out of reach, the best measured (with
    /// all but the last learned layer float), and `float_nodes` is empty.
    pub after: f64,
    /// Nodes kept float: a prefix of the learned layers, in graph order.
    pub float_nodes: Vec<String>,
    /// Learned layers that were INT8 before the search.
    pub candidates: usize,
    /// The chosen model, when layers were kept float (built during the search).
    pub model: Option<Quantized>,
}

impl Outcome {
    /// True when the chosen model reaches `target` on the calibration samples.
    pub fn met(&self, target: f64) -> bool {
        self.before >= target || (!self.float_nodes.is_empty() && self.after >= target)
    }

    /// The summary note: what was measured on `samples` samples and what was kept float.
    pub fn note(&self, samples: usize, target: f64) -> String {
        if self.candidates == 0 {
            "accuracy search: no learned layer was quantized, so there was nothing to search".to_string()
        } else if self.before >= target {
            format!("accuracy search: cosine {:.5} on {samples} calibration samples already meets target {target}", self.before)
        } else if self.after >= target {
            format!(
                "accuracy search: cosine {:.5} -> {:.5} on {samples} calibration samples (target {target}) with the first {} of {} learned layers kept float (through `{}`)",
                self.before,
                self.after,
                self.float_nodes.len(),
                self.candidates,
                self.float_nodes.last().map_or("", String::as_str)
            )
        } else {
            format!(
                "accuracy search: target {target} NOT reached: {:.5} on {samples} calibration samples with all but the last of {} learned layers float (all INT8: {:.5}); the model is left all INT8. Lower the target, check the calibration data, or exclude layers by hand",
                self.after, self.candidates, self.before
            )
        }
    }
}

fn session_opts() -> SessionOptions {
    SessionOptions { threads: 1, optimization: Optimization::All, optimized_model_path: None, spinning: false }
}

type Outputs = Vec<(String, ArrayD<f32>)>;

/// The worst output's mean cosine over the samples (blank samples left out, as `validate` does).
fn score(model: &Model, feeds: &[Vec<(String, Feed)>], reference: &[Outputs]) -> Result<f64> {
    let mut s = Session::from_model(model, &session_opts())?;
    let mut stats: Vec<OutputStats> = Vec::new();
    for (feed, refs) in feeds.iter().zip(reference) {
        let got: BTreeMap<String, ArrayD<f32>> = s.run(feed)?.into_iter().collect();
        for (i, (name, a)) in refs.iter().enumerate() {
            let b = got
                .get(name)
                .ok_or_else(|| Error::InvalidModel(format!("the INT8 model returned no `{name}`")))?;
            if stats.len() <= i {
                stats.push(OutputStats::new(name, a.shape(), None));
            }
            let (a, b) = (a.as_standard_layout(), b.as_standard_layout());
            match (a.as_slice(), b.as_slice()) {
                (Some(a), Some(b)) if a.len() == b.len() => stats[i].add(a, b, false),
                _ => return Err(Error::tensor(name, "differs in size between FP32 and INT8")),
            }
        }
    }
    Ok(stats.iter().map(OutputStats::cosine_mean).fold(1.0, f64::min))
}

/// Runs the search from `base` (the model [`apply_with`] made with no searched nodes).
/// `progress(done, total)` counts scored candidates.
pub fn search(
    prepared: &Model,
    ranges: &Ranges,
    samples: &Samples,
    cfg: &QuantizeConfig,
    target: f64,
    base: &Quantized,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Outcome> {
    let feeds: Vec<Vec<(String, Feed)>> = samples.feeds.iter().take(SEARCH_SAMPLES).cloned().collect();
    let mut fp32 = Session::from_model(prepared, &session_opts())?;
    let reference: Vec<Outputs> = feeds.iter().map(|f| fp32.run(f)).collect::<Result<_>>()?;
    drop(fp32);
    let before = score(&base.model, &feeds, &reference)?;
    // Learned layers in graph (topological) order.
    let learned: Vec<String> = base
        .summary
        .nodes
        .iter()
        .filter(|d| d.quantized && super::refuse::LEARNED_OPS.contains(&d.op_type.as_str()))
        .map(|d| d.node.clone())
        .collect();
    let mut outcome = Outcome { before, after: before, float_nodes: Vec::new(), candidates: learned.len(), model: None };
    if before >= target || learned.is_empty() {
        return Ok(outcome);
    }
    // Bisection on k, the number of leading learned layers kept float: k = 0 is known to miss,
    // and at least the last layer stays INT8 (with none, there is nothing left to quantize).
    let total = usize::BITS as usize - learned.len().leading_zeros() as usize + 1;
    let mut measured = 0;
    let mut eval = |k: usize| -> Result<(f64, Quantized)> {
        let q = apply_with(prepared, ranges, cfg, &learned[..k])?;
        let s = score(&q.model, &feeds, &reference)?;
        measured += 1;
        progress(measured, total);
        Ok((s, q))
    };
    let (mut lo, mut hi) = (0usize, learned.len() - 1);
    if hi == 0 {
        progress(total, total);
        return Ok(outcome);
    }
    let (top, top_model) = eval(hi)?;
    if top < target {
        progress(total, total);
        outcome.after = top;
        return Ok(outcome);
    }
    let mut best = (top, hi, top_model);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        let (s, q) = eval(mid)?;
        if s >= target {
            hi = mid;
            best = (s, mid, q);
        } else {
            lo = mid;
        }
    }
    progress(total, total);
    outcome.after = best.0;
    outcome.float_nodes = learned[..best.1].to_vec();
    outcome.model = Some(best.2);
    Ok(outcome)
}
