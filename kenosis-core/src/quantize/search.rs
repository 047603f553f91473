//! Accuracy search: which learned layers to keep float so the INT8 model reaches a target cosine.
//!
//! Some networks lose accuracy across many layers rather than at one (PP-OCRv4 det: 0.1%
//! random noise on every weight already drops its output cosine to 0.97), and no range or
//! weight-scale choice fixes that. What does is mixed precision, chosen by measurement: each
//! learned layer is kept float on its own and the gain in output cosine on the calibration
//! samples is measured; then the layers are kept float in order of gain until the target is
//! met, or a quarter of them are float (past that the model loses most of its speed).
//!
//! Each candidate runs in a one-thread ORT session; candidates are spread over worker threads
//! and their results are combined by index, so the choice does not depend on the thread count.

use super::{apply_with, Quantized, QuantizeConfig};
use crate::calibrate::{Ranges, Samples};
use crate::error::{Error, Result};
use crate::onnx::Model;
use crate::runtime::{Feed, Optimization, Session, SessionOptions};
use crate::validate::metrics::OutputStats;
use ndarray::ArrayD;
use std::collections::BTreeMap;

/// The most calibration samples a search scores on (each candidate runs them all).
pub const SEARCH_SAMPLES: usize = 4;

/// What the search found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Cosine before the search (all eligible layers INT8).
    pub before: f64,
    /// Cosine of the chosen model.
    pub after: f64,
    /// Nodes kept float, in the order chosen.
    pub float_nodes: Vec<String>,
    /// Candidates measured.
    pub candidates: usize,
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

/// Scores `configs` (each a list of float nodes) over worker threads; results in input order.
fn score_all(
    prepared: &Model,
    ranges: &Ranges,
    cfg: &QuantizeConfig,
    sets: &[Vec<String>],
    feeds: &[Vec<(String, Feed)>],
    reference: &[Outputs],
    progress: &(dyn Fn() + Sync),
) -> Result<Vec<f64>> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 2).min(sets.len().max(1));
    let mut results: Vec<Option<Result<f64>>> = (0..sets.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                scope.spawn(move || {
                    let mut out = Vec::new();
                    for (i, set) in sets.iter().enumerate().filter(|(i, _)| i % workers == w) {
                        let r = apply_with(prepared, ranges, cfg, set).and_then(|q| score(&q.model, feeds, reference));
                        progress();
                        out.push((i, r));
                    }
                    out
                })
            })
            .collect();
        for h in handles {
            if let Ok(v) = h.join() {
                v.into_iter().for_each(|(i, r)| results[i] = Some(r));
            }
        }
    });
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(Error::Ort { context: "accuracy search".into(), message: "a worker thread stopped".into() })))
        .collect()
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
    let candidates: Vec<String> = base
        .summary
        .nodes
        .iter()
        .filter(|d| d.quantized && super::refuse::LEARNED_OPS.contains(&d.op_type.as_str()))
        .map(|d| d.node.clone())
        .collect();
    let mut outcome = Outcome { before, after: before, float_nodes: Vec::new(), candidates: candidates.len() };
    if before >= target || candidates.is_empty() {
        return Ok(outcome);
    }
    let cap = candidates.len().div_ceil(4);
    let total = candidates.len() + cap;
    let done = std::sync::atomic::AtomicUsize::new(0);
    let tick = || {
        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    };
    let singles: Vec<Vec<String>> = candidates.iter().map(|c| vec![c.clone()]).collect();
    let mut gains = Vec::with_capacity(singles.len());
    for chunk in singles.chunks(4) {
        gains.extend(score_all(prepared, ranges, cfg, chunk, &feeds, &reference, &tick)?);
        progress(done.load(std::sync::atomic::Ordering::Relaxed), total);
    }
    // Largest gain first; ties in graph order, so the choice is deterministic.
    let mut ranked: Vec<(usize, f64)> =
        gains.iter().enumerate().filter(|(_, &g)| g > before).map(|(i, &g)| (i, g)).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut chosen: Vec<String> = Vec::new();
    let mut best = (before, 0usize);
    for &(i, _) in ranked.iter().take(cap) {
        chosen.push(candidates[i].clone());
        let s = score_all(prepared, ranges, cfg, std::slice::from_ref(&chosen), &feeds, &reference, &tick)?[0];
        progress(done.load(std::sync::atomic::Ordering::Relaxed), total);
        if s > best.0 {
            best = (s, chosen.len());
        }
        if s >= target {
            break;
        }
    }
    progress(total, total);
    chosen.truncate(best.1);
    outcome.after = best.0;
    outcome.float_nodes = chosen;
    Ok(outcome)
}
