//! Activation ranges: the min/max of every float tensor of the main graph over the samples.
//!
//! Each float tensor gets a `ReduceMin` and a `ReduceMax` node (all axes, `keepdims=0`) added
//! inside the graph, and those scalars are the only graph outputs, so a run copies two floats
//! per tensor out of ONNX Runtime instead of every activation. Sessions run with one intra-op
//! thread and no graph rewrites (the graph as written, so every named tensor exists); samples
//! are spread over worker threads with one session each, and min/max combine in any order, so
//! the result does not depend on the number of threads. A reduction that is not finite (the
//! tensor holds NaN or ±inf, or is empty) is redone for that sample from the tensor itself,
//! ignoring non-finite values. `Constant` nodes' ranges are read from the model, and outputs
//! of ops that only move values (Reshape, Transpose, Concat, ...) take their inputs' ranges,
//! so neither is reduced at run time.

use super::Samples;
use crate::error::{Error, Result};
use crate::onnx::builder::{attr_i, node, value_info};
use crate::onnx::graph::{all_names, unique_name, GraphIndex};
use crate::onnx::proto::{data_type as dt, ValueInfoProto};
use crate::onnx::Model;
use crate::runtime::{Feed, Optimization, Session, SessionOptions};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

/// Tensor name → (min, max) over all samples, finite values only.
///
/// Serialized as a JSON object of `[min, max]` pairs; f32 values print in their shortest
/// round-tripping form, so parsing the JSON gives back the same bits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ranges(pub BTreeMap<String, (f32, f32)>);

impl Ranges {
    /// The range of `tensor`, if it was recorded.
    pub fn get(&self, tensor: &str) -> Option<(f32, f32)> {
        self.0.get(tensor).copied()
    }
}

/// How [`collect_ranges_opts`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectOptions {
    /// Worker threads, each with its own one-thread session (at least 1). Does not change the result.
    pub workers: usize,
}

impl Default for CollectOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        CollectOptions { workers: cores.clamp(1, 2) }
    }
}

/// Ranges and what was noticed while collecting them.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    /// The ranges.
    pub ranges: Ranges,
    /// Tensors with non-finite values, empty tensors, tensors never seen finite.
    pub notes: Vec<String>,
}

/// Runs `model` (FP32) on every sample and records the min/max of every float tensor produced by
/// a main-graph node, and of the float graph inputs. Needs ONNX Runtime.
pub fn collect_ranges(model: &Model, samples: &Samples) -> Result<Ranges> {
    Ok(collect_ranges_opts(model, samples, &CollectOptions::default(), &mut |_, _| {})?.ranges)
}

/// [`collect_ranges`], calling `progress(done, total)` after each sample.
pub fn collect_ranges_with_progress(
    model: &Model,
    samples: &Samples,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Ranges> {
    Ok(collect_ranges_opts(model, samples, &CollectOptions::default(), progress)?.ranges)
}

/// The float tensors of the main graph to record.
#[derive(Debug, Default)]
struct Plan {
    /// Float graph inputs, then node outputs in node order, measured through ORT.
    measured: Vec<String>,
    /// Ranges of `Constant` nodes' float values, read from the model (empty ones are left out).
    constants: BTreeMap<String, (f32, f32)>,
    /// Constants holding NaN or infinities.
    nonfinite_constants: Vec<String>,
    /// Tensors whose range is the union of other tensors' ranges, in topological order.
    derived: Vec<(String, Vec<String>)>,
}

/// Ops whose output holds exactly the values of their data input, rearranged: its range is the
/// input's, so it is not reduced again. (Concat's output is the union of its inputs' values.)
const SAME_VALUES: [&str; 6] = ["Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose"];

/// The finite (min, max) of a float `Constant` node's `value`, or `None` when it is not one;
/// `Some(None)` for an empty or all non-finite constant.
fn constant_range(n: &crate::onnx::proto::NodeProto) -> Option<(Option<(f32, f32)>, bool)> {
    if n.op_type != "Constant" || (!n.domain.is_empty() && n.domain != "ai.onnx") {
        return None;
    }
    let t = n.attribute.iter().find(|a| a.name == "value")?.t.as_ref()?;
    if t.data_type != dt::FLOAT {
        return None;
    }
    let v = crate::onnx::tensor::to_f32(t).ok()?;
    let (mut lo, mut hi, mut bad) = (f32::INFINITY, f32::NEG_INFINITY, false);
    for x in v {
        if x.is_finite() {
            lo = lo.min(x);
            hi = hi.max(x);
        } else {
            bad = true;
        }
    }
    Some(((lo <= hi).then_some((lo, hi)), bad))
}

fn plan(model: &Model) -> Result<Plan> {
    let g = model.graph();
    let ix = GraphIndex::new(g);
    let mut plan = Plan::default();
    let mut names: Vec<String> = ix.inputs.clone();
    let mut seen: std::collections::HashSet<String> = names.iter().cloned().collect();
    for n in &g.node {
        if let (Some((range, bad)), [out]) = (constant_range(n), n.output.as_slice()) {
            if seen.insert(out.clone()) {
                if let Some(r) = range {
                    plan.constants.insert(out.clone(), r);
                }
                if bad {
                    plan.nonfinite_constants.push(format!("`{out}`"));
                }
            }
            continue;
        }
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            if seen.insert(o.clone()) {
                names.push(o.clone());
            }
        }
    }
    let mut types: Vec<Option<i32>> =
        names.iter().map(|t| ix.elem_type(g, t).filter(|&t| t != dt::UNDEFINED)).collect();
    let unknown: Vec<usize> = (0..names.len()).filter(|&i| types[i].is_none()).collect();
    if !unknown.is_empty() {
        // Let ONNX Runtime infer the types: list them as untyped outputs of a copy.
        let mut probe = model.clone();
        probe.graph_mut().output =
            unknown.iter().map(|&i| ValueInfoProto { name: names[i].clone(), ..Default::default() }).collect();
        let s = Session::from_model(&probe, &session_options())?;
        let by_name: BTreeMap<&str, i32> = s.outputs().iter().map(|o| (o.name.as_str(), o.data_type)).collect();
        for &i in &unknown {
            types[i] = by_name.get(names[i].as_str()).copied();
        }
    }
    let floats: Vec<String> =
        names.into_iter().zip(types).filter(|(_, t)| *t == Some(dt::FLOAT)).map(|(n, _)| n).collect();
    // Every float tensor of the main graph is in the plan (measured, constant or derived), so a
    // node's output can be derived when all its data inputs are.
    let mut known: std::collections::HashSet<&str> = floats.iter().map(String::as_str).collect();
    known.extend(
        g.node.iter().filter(|n| constant_range(n).is_some()).flat_map(|n| n.output.iter().map(String::as_str)),
    );
    let mut derived = std::collections::HashSet::new();
    for i in crate::onnx::graph::topological_order(g)? {
        let n = &g.node[i];
        let default_domain = n.domain.is_empty() || n.domain == "ai.onnx";
        let (Some(out), true) = (n.output.first().filter(|o| known.contains(o.as_str())), default_domain) else {
            continue;
        };
        let sources: Vec<String> = if SAME_VALUES.contains(&n.op_type.as_str()) {
            n.input.first().into_iter().cloned().collect()
        } else if n.op_type == "Concat" {
            n.input.iter().filter(|s| !s.is_empty()).cloned().collect()
        } else {
            continue;
        };
        if !sources.is_empty() && sources.iter().all(|s| known.contains(s.as_str())) && derived.insert(out.clone()) {
            plan.derived.push((out.clone(), sources));
        }
    }
    plan.measured = floats.into_iter().filter(|t| !derived.contains(t)).collect();
    Ok(plan)
}

fn session_options() -> SessionOptions {
    SessionOptions { threads: 1, optimization: Optimization::Disable, optimized_model_path: None, spinning: false }
}

/// The model with a ReduceMin/ReduceMax pair per tensor as its only outputs, in `tensors` order
/// (min then max).
fn reduce_model(model: &Model, tensors: &[String]) -> Model {
    let mut m = model.clone();
    let mut taken = all_names(m.graph());
    let g = m.graph_mut();
    let mut outputs = Vec::with_capacity(tensors.len() * 2);
    for t in tensors {
        for op in ["ReduceMin", "ReduceMax"] {
            let suffix = if op == "ReduceMin" { "min" } else { "max" };
            let out = unique_name(&mut taken, &format!("{t}__kenosis_{suffix}"));
            let name = unique_name(&mut taken, &format!("{t}__kenosis_{op}"));
            g.node.push(node(op, &name, &[t], &[&out], vec![attr_i("keepdims", 0)]));
            outputs.push(value_info(&out, dt::FLOAT, &[]));
        }
    }
    g.output = outputs;
    m
}

/// [`collect_ranges`] with options and a progress callback; also returns notes.
pub fn collect_ranges_opts(
    model: &Model,
    samples: &Samples,
    opts: &CollectOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Collected> {
    if samples.is_empty() {
        return Err(Error::Calibration {
            path: None,
            reason: "no calibration samples to run; give at least one image or data file, or --samples 1 or more"
                .into(),
        });
    }
    let Plan { measured: tensors, constants, nonfinite_constants, derived } = plan(model)?;
    let total = samples.len();
    let finish = |mut c: Collected| {
        c.ranges.0.extend(constants.iter().map(|(k, v)| (k.clone(), *v)));
        for (out, sources) in &derived {
            let union = sources.iter().filter_map(|s| c.ranges.get(s)).reduce(|(alo, ahi), (blo, bhi)| {
                (if blo < alo { blo } else { alo }, if bhi > ahi { bhi } else { ahi })
            });
            if let Some(r) = union {
                c.ranges.0.insert(out.clone(), r);
            }
        }
        if !nonfinite_constants.is_empty() {
            c.notes.push(format!("NaN or infinite values ignored in constants {}", nonfinite_constants.join(", ")));
        }
        if c.ranges.0.is_empty() {
            c.notes.push("the main graph has no float tensors to record".into());
        }
        c
    };
    if tensors.is_empty() {
        progress(total, total);
        return Ok(finish(Collected::default()));
    }
    let reduce = reduce_model(model, &tensors).to_bytes()?;
    let workers = opts.workers.clamp(1, total);
    let (tx, rx) = mpsc::channel::<()>();
    // Set when a worker fails, so the others stop instead of running their remaining samples.
    let failed = AtomicBool::new(false);
    let results: Vec<Result<Acc>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let tx = tx.clone();
                let (reduce, tensors, failed) = (&reduce, &tensors, &failed);
                scope.spawn(move || -> Result<Acc> {
                    let work = || -> Result<Acc> {
                        let mut session = Session::from_bytes(reduce, &session_options())?;
                        let mut acc = Acc::new(tensors.len());
                        for (i, feeds) in samples.feeds.iter().enumerate().skip(w).step_by(workers) {
                            if failed.load(Ordering::Relaxed) {
                                break;
                            }
                            run_sample(model, &mut session, tensors, feeds, i, &mut acc)?;
                            let _ = tx.send(());
                        }
                        Ok(acc)
                    };
                    let r = work();
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        drop(tx);
        let mut done = 0;
        while rx.recv().is_ok() {
            done += 1;
            progress(done, total);
        }
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::Calibration {
                        path: None,
                        reason: "a calibration worker thread panicked (a bug in Kenosis; please report it)".into(),
                    })
                })
            })
            .collect()
    });
    let mut acc = Acc::new(tensors.len());
    for r in results {
        acc.merge(&r?);
    }
    Ok(finish(acc.finish(&tensors)))
}

/// Running min/max per tensor, plus which tensors needed care.
#[derive(Debug, Clone)]
struct Acc {
    lo: Vec<f32>,
    hi: Vec<f32>,
    /// Samples in which the tensor held non-finite values, or was empty.
    nonfinite: Vec<usize>,
    empty: Vec<usize>,
}

impl Acc {
    fn new(n: usize) -> Acc {
        Acc { lo: vec![f32::INFINITY; n], hi: vec![f32::NEG_INFINITY; n], nonfinite: vec![0; n], empty: vec![0; n] }
    }
    fn add(&mut self, i: usize, lo: f32, hi: f32) {
        if lo < self.lo[i] {
            self.lo[i] = lo;
        }
        if hi > self.hi[i] {
            self.hi[i] = hi;
        }
    }
    /// Adds one sample's values of tensor `i`, finite ones only.
    fn add_values(&mut self, i: usize, values: impl Iterator<Item = f32>) {
        let (mut lo, mut hi, mut any, mut bad) = (f32::INFINITY, f32::NEG_INFINITY, false, false);
        for x in values {
            any = true;
            if x.is_finite() {
                lo = lo.min(x);
                hi = hi.max(x);
            } else {
                bad = true;
            }
        }
        if !any {
            self.empty[i] += 1;
        }
        if bad {
            self.nonfinite[i] += 1;
        }
        self.add(i, lo, hi);
    }
    fn merge(&mut self, o: &Acc) {
        for i in 0..self.lo.len() {
            self.add(i, o.lo[i], o.hi[i]);
            self.nonfinite[i] += o.nonfinite[i];
            self.empty[i] += o.empty[i];
        }
    }
    fn finish(self, tensors: &[String]) -> Collected {
        let mut ranges = BTreeMap::new();
        let (mut nonfinite, mut never) = (Vec::new(), Vec::new());
        for (i, t) in tensors.iter().enumerate() {
            if self.nonfinite[i] > 0 {
                nonfinite.push(format!("`{t}` ({} samples)", self.nonfinite[i]));
            }
            if self.lo[i] <= self.hi[i] {
                ranges.insert(t.clone(), (self.lo[i], self.hi[i]));
            } else {
                never.push(format!("`{t}`"));
            }
        }
        let mut notes = Vec::new();
        if !nonfinite.is_empty() {
            notes.push(format!("NaN or infinite values ignored in the ranges of {}", nonfinite.join(", ")));
        }
        if !never.is_empty() {
            notes.push(format!("no range for {} (empty or never finite in any sample)", never.join(", ")));
        }
        Collected { ranges: Ranges(ranges), notes }
    }
}

fn run_sample(
    model: &Model,
    session: &mut Session,
    tensors: &[String],
    feeds: &[(String, Feed)],
    index: usize,
    acc: &mut Acc,
) -> Result<()> {
    let out = session.run(feeds).map_err(|e| with_sample(e, index))?;
    if out.len() != tensors.len() * 2 {
        return Err(Error::Calibration {
            path: None,
            reason: format!(
                "ONNX Runtime returned {} values for {} range reductions (a bug in Kenosis; please report it)",
                out.len(),
                tensors.len() * 2
            ),
        });
    }
    let mut redo = Vec::new();
    for (i, pair) in out.chunks_exact(2).enumerate() {
        let (lo, hi) = (pair[0].1.iter().next().copied(), pair[1].1.iter().next().copied());
        match (lo, hi) {
            (Some(lo), Some(hi)) if lo.is_finite() && hi.is_finite() && lo <= hi => acc.add(i, lo, hi),
            _ => redo.push(i),
        }
    }
    if !redo.is_empty() {
        exact_ranges(model, tensors, &redo, feeds, index, acc)?;
    }
    Ok(())
}

/// Reads the tensors in `redo` themselves for one sample and records their finite min/max.
/// Graph inputs are read from the feeds: listing an input as an output would alias its buffer.
fn exact_ranges(
    model: &Model,
    tensors: &[String],
    redo: &[usize],
    feeds: &[(String, Feed)],
    index: usize,
    acc: &mut Acc,
) -> Result<()> {
    let mut from_ort = Vec::new();
    for &i in redo {
        match feeds.iter().find(|(n, _)| *n == tensors[i]) {
            Some((_, Feed::F32(a))) => acc.add_values(i, a.iter().copied()),
            Some(_) => {}
            None => from_ort.push(i),
        }
    }
    if from_ort.is_empty() {
        return Ok(());
    }
    let mut m = model.clone();
    m.graph_mut().output =
        from_ort.iter().map(|&i| ValueInfoProto { name: tensors[i].clone(), ..Default::default() }).collect();
    let mut s = Session::from_model(&m, &session_options())?;
    let out = s.run(feeds).map_err(|e| with_sample(e, index))?;
    for (&i, (_, v)) in from_ort.iter().zip(&out) {
        acc.add_values(i, v.iter().copied());
    }
    Ok(())
}

fn with_sample(e: Error, index: usize) -> Error {
    match e {
        Error::Ort { context, message } => Error::Ort {
            context: format!("{context} on calibration sample {index}"),
            message: format!("{message}\nIf the input shape is wrong, pass --input-shape NAME=DIMS"),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_round_trip_through_json_bit_for_bit() {
        let mut m = BTreeMap::new();
        m.insert("a".to_string(), (-0.1f32, 1.0e-38f32));
        m.insert("b".to_string(), (f32::MIN_POSITIVE, 3.4028235e38f32));
        m.insert("c".to_string(), (-1.0f32 / 3.0, 0.7f32));
        let r = Ranges(m);
        let s = serde_json::to_string(&r).unwrap();
        let back: Ranges = serde_json::from_str(&s).unwrap();
        for (k, (lo, hi)) in &r.0 {
            let (blo, bhi) = back.0[k];
            assert_eq!((lo.to_bits(), hi.to_bits()), (blo.to_bits(), bhi.to_bits()), "{k}: {s}");
        }
    }

    #[test]
    fn acc_ignores_unseen_and_merges_in_any_order() {
        let mut a = Acc::new(2);
        a.add(0, -1.0, 2.0);
        let mut b = Acc::new(2);
        b.add(0, -3.0, 1.0);
        let (mut ab, mut ba) = (a.clone(), b.clone());
        ab.merge(&b);
        ba.merge(&a);
        let names = vec!["x".to_string(), "y".to_string()];
        let (r1, r2) = (ab.finish(&names), ba.finish(&names));
        assert_eq!(r1.ranges, r2.ranges);
        assert_eq!(r1.ranges.get("x"), Some((-3.0, 2.0)));
        assert_eq!(r1.ranges.get("y"), None);
        assert!(r1.notes.iter().any(|n| n.contains("`y`")));
    }
}
