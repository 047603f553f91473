//! The validation report: what was measured, the verdict, the human block and the gates.

use super::fusion::Fusion;
use super::metrics::OutputKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Cosine (the worst output's mean) below this: BROKEN.
pub const BROKEN_COSINE: f64 = 0.90;
/// Top-1 agreement below this: BROKEN. Lower than the cosine bars suggest, because a few
/// samples near a decision boundary (a 2-class model on off-domain images) move it in big steps.
pub const BROKEN_TOP1: f64 = 0.70;
/// Cosine below this: POOR.
pub const POOR_COSINE: f64 = 0.98;
/// Top-1 agreement below this: POOR.
pub const POOR_TOP1: f64 = 0.95;
/// Speedup below this: POOR (slower than FP32 by more than timing noise).
pub const POOR_SPEEDUP: f64 = 0.97;
/// Cosine at or above this (and every sample's cosine at or above [`EXCELLENT_COSINE_MIN`]): may be EXCELLENT.
pub const EXCELLENT_COSINE: f64 = 0.995;
/// The worst sample's cosine needed for EXCELLENT.
pub const EXCELLENT_COSINE_MIN: f64 = 0.99;
/// Top-1 agreement needed for EXCELLENT.
pub const EXCELLENT_TOP1: f64 = 0.99;
/// Speedup needed for EXCELLENT: faster than FP32.
pub const EXCELLENT_SPEEDUP: f64 = 1.0;

/// The overall judgement of an INT8 model against its FP32 original.
///
/// Decided from the worst output's mean cosine, the worst sample's cosine, top-1 agreement
/// (when an output is classifier-shaped) and the speedup, first rule that matches:
/// - `BROKEN`: any INT8 output value is NaN/inf where FP32 is finite, cosine < 0.90, or top-1 < 70%.
/// - `POOR`: cosine < 0.98, top-1 < 95%, or speedup < 0.97 (slower than FP32 beyond timing noise).
/// - `EXCELLENT`: cosine >= 0.995, every sample's cosine >= 0.99, top-1 >= 99% and speedup > 1.0.
/// - `GOOD`: everything else (accurate and not slower, but short of one EXCELLENT bar).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// The INT8 model's outputs don't match FP32: don't ship it.
    Broken,
    /// Usable with care: noticeably less accurate, or slower than FP32.
    Poor,
    /// Accurate and at least as fast.
    Good,
    /// As accurate as FP32 for practical purposes, and faster.
    Excellent,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Broken => "BROKEN",
            Verdict::Poor => "POOR",
            Verdict::Good => "GOOD",
            Verdict::Excellent => "EXCELLENT",
        })
    }
}

/// Accuracy figures of one model output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputReport {
    /// The output's name.
    pub name: String,
    /// Its shape on the validation samples.
    pub shape: Vec<usize>,
    /// How it was read (classifier, per-position classifier, plain tensor).
    pub kind: OutputKind,
    /// Mean over samples of the cosine similarity between FP32 and INT8.
    pub cosine_mean: f64,
    /// The lowest per-sample cosine.
    pub cosine_min: f64,
    /// The largest absolute difference of any value on any sample.
    pub max_abs_error: f64,
    /// Samples left out of the cosine figures: FP32 output blank (peak below 0.1% of the
    /// output's largest value over the samples) and INT8 within 1% of that value there.
    #[serde(default)]
    pub blank_samples: usize,
    /// Fraction of rows (classifier) or positions (per-position) whose arg-max agrees; `null`
    /// for plain tensors.
    pub top1_agreement: Option<f64>,
    /// INT8 values that are NaN or infinite where FP32 is finite.
    pub int8_nonfinite: u64,
    /// FP32 values that are NaN or infinite (left out of the metrics).
    pub fp32_nonfinite: u64,
}

/// Everything `validate` measured, with the verdict. Serialises to the JSON `kenosis validate
/// --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The verdict.
    pub verdict: Verdict,
    /// Why: the figures that decided it.
    pub verdict_reason: String,
    /// Per-output accuracy, in the FP32 model's output order.
    pub outputs: Vec<OutputReport>,
    /// The lowest per-output `cosine_mean` (the worst output's).
    pub cosine_mean: f64,
    /// The lowest per-output `cosine_min` (the worst sample of any output).
    pub cosine_min: f64,
    /// The output with the lowest `cosine_mean`.
    pub worst_output: String,
    /// The lowest top-1 agreement over classifier-shaped outputs; `null` when there are none.
    pub top1_agreement: Option<f64>,
    /// The largest absolute error over all outputs.
    pub max_abs_error: f64,
    /// Median FP32 latency in ms at `threads`.
    pub fp32_ms: f64,
    /// Median INT8 latency in ms at `threads`.
    pub int8_ms: f64,
    /// `fp32_ms / int8_ms`: above 1 means INT8 is faster.
    pub speedup: f64,
    /// Intra-op threads both sessions ran with.
    pub threads: usize,
    /// Timed runs per model.
    pub runs: usize,
    /// Untimed warm-up runs per model.
    pub warmup: usize,
    /// Serialized size of the FP32 model.
    pub fp32_bytes: u64,
    /// Serialized size of the INT8 model.
    pub int8_bytes: u64,
    /// Op type → count in ONNX Runtime's optimised INT8 graph (extended level, subgraphs included).
    pub fused: BTreeMap<String, u64>,
    /// Fusion figures derived from `fused` and the graph.
    pub fusion: Fusion,
    /// Number of validation samples.
    pub samples: usize,
    /// Where the samples came from and which input defaults were used.
    pub sample_notes: Vec<String>,
    /// Anything else a reader should know.
    pub notes: Vec<String>,
    /// The ONNX Runtime version that ran both models.
    pub ort_version: String,
}

/// Quality gates a caller can demand on top of the verdict.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Gates {
    /// Minimum `cosine_mean` (of the worst output).
    pub min_cosine: Option<f64>,
    /// Minimum `top1_agreement`; fails when no output is classifier-shaped.
    pub min_top1_agreement: Option<f64>,
    /// Minimum `speedup`.
    pub min_speedup: Option<f64>,
}

impl Report {
    /// Sets `verdict` and `verdict_reason` from the figures (rules on [`Verdict`]).
    pub fn judge(&mut self) {
        let cos = self.cosine_mean;
        let top1 = self.top1_agreement;
        let nonfinite: u64 = self.outputs.iter().map(|o| o.int8_nonfinite).sum();
        let worst = &self.worst_output;
        let mut broken = Vec::new();
        if nonfinite > 0 {
            broken.push(format!("{nonfinite} INT8 output values are NaN or infinite where FP32 is finite"));
        }
        if cos < BROKEN_COSINE {
            broken.push(format!("output `{worst}` cosine {cos:.4} < {BROKEN_COSINE}"));
        }
        if let Some(t) = top1.filter(|&t| t < BROKEN_TOP1) {
            broken.push(format!("top-1 agreement {} < {}", pct(t), pct(BROKEN_TOP1)));
        }
        if !broken.is_empty() {
            self.verdict = Verdict::Broken;
            self.verdict_reason = broken.join("; ");
            return;
        }
        let mut poor = Vec::new();
        if cos < POOR_COSINE {
            poor.push(format!("output `{worst}` cosine {cos:.4} < {POOR_COSINE}"));
        }
        if let Some(t) = top1.filter(|&t| t < POOR_TOP1) {
            poor.push(format!("top-1 agreement {} < {}", pct(t), pct(POOR_TOP1)));
        }
        if self.speedup < POOR_SPEEDUP {
            poor.push(format!("INT8 is slower than FP32 ({:.2}x)", self.speedup));
        }
        if !poor.is_empty() {
            self.verdict = Verdict::Poor;
            self.verdict_reason = poor.join("; ");
            return;
        }
        let mut short = Vec::new();
        if cos < EXCELLENT_COSINE {
            short.push(format!("cosine {cos:.4} < {EXCELLENT_COSINE}"));
        }
        if self.cosine_min < EXCELLENT_COSINE_MIN {
            short.push(format!("worst sample cosine {:.4} < {EXCELLENT_COSINE_MIN}", self.cosine_min));
        }
        if let Some(t) = top1.filter(|&t| t < EXCELLENT_TOP1) {
            short.push(format!("top-1 agreement {} < {}", pct(t), pct(EXCELLENT_TOP1)));
        }
        if self.speedup <= EXCELLENT_SPEEDUP {
            short.push(format!("not faster than FP32 ({:.2}x)", self.speedup));
        }
        for o in self.outputs.iter().filter(|o| self.samples > 0 && o.blank_samples >= self.samples) {
            short.push(format!("every sample of `{}` is blank, so nothing was compared", o.name));
        }
        let summary = {
            let mut s = format!("cosine {cos:.4}");
            if let Some(t) = top1 {
                s.push_str(&format!(", top-1 {}", pct(t)));
            }
            s.push_str(&format!(", {:.2}x FP32 speed", self.speedup));
            s
        };
        if short.is_empty() {
            self.verdict = Verdict::Excellent;
            self.verdict_reason = summary;
        } else {
            self.verdict = Verdict::Good;
            self.verdict_reason = format!("{summary}; short of EXCELLENT: {}", short.join(", "));
        }
    }

    /// The failures of this report against `gates`; empty when it passes. A BROKEN verdict is
    /// always a failure.
    pub fn check(&self, gates: &Gates) -> Vec<String> {
        let mut fails = Vec::new();
        if self.verdict == Verdict::Broken {
            fails.push(format!("verdict BROKEN: {}", self.verdict_reason));
        }
        if let Some(min) = gates.min_cosine {
            if self.cosine_mean.is_nan() || self.cosine_mean < min {
                fails.push(format!(
                    "cosine_mean {:.5} (output `{}`) is below the required {min}",
                    self.cosine_mean, self.worst_output
                ));
            }
        }
        if let Some(min) = gates.min_top1_agreement {
            match self.top1_agreement {
                Some(t) if t >= min => {}
                Some(t) => fails.push(format!("top-1 agreement {} is below the required {}", pct(t), pct(min))),
                None => fails.push(format!(
                    "a top-1 agreement of {} was required, but no output is classifier-shaped ([N, C], or [N, T, C] from a Softmax)",
                    pct(min)
                )),
            }
        }
        if let Some(min) = gates.min_speedup {
            if self.speedup.is_nan() || self.speedup < min {
                fails.push(format!(
                    "speedup {:.2}x (FP32 {:.2} ms, INT8 {:.2} ms at {} thread{}) is below the required {min}x",
                    self.speedup,
                    self.fp32_ms,
                    self.int8_ms,
                    self.threads,
                    if self.threads == 1 { "" } else { "s" }
                ));
            }
        }
        fails
    }

    /// The report as an aligned block for a terminal.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let label = |s: &mut String, l: &str| {
            let _ = write!(s, "  {l:<9} ");
        };
        label(&mut s, "verdict");
        let _ = writeln!(s, "{}  {}", self.verdict, self.verdict_reason);

        label(&mut s, "samples");
        let _ = writeln!(s, "{}", self.samples);
        for n in &self.sample_notes {
            let _ = writeln!(s, "{:12}{n}", "");
        }

        // Accuracy table.
        let name_w = self.outputs.iter().map(|o| o.name.chars().count()).max().unwrap_or(0).max("output".len());
        let shape_of = |o: &OutputReport| o.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
        let shape_w = self.outputs.iter().map(|o| shape_of(o).len()).max().unwrap_or(0).max("shape".len());
        label(&mut s, "accuracy");
        let _ = writeln!(
            s,
            "{:<name_w$}  {:<shape_w$}  {:<12}  {:>11}  {:>10}  {:>11}  {:>6}",
            "output", "shape", "kind", "cosine mean", "cosine min", "max abs err", "top-1"
        );
        for o in &self.outputs {
            let kind = match o.kind {
                OutputKind::Classifier => "classifier",
                OutputKind::PerPosition => "per-position",
                OutputKind::Tensor => "tensor",
            };
            let top1 = o.top1_agreement.map(pct).unwrap_or_else(|| "-".into());
            let _ = write!(
                s,
                "{:12}{:<name_w$}  {:<shape_w$}  {kind:<12}  {:>11.6}  {:>10.6}  {:>11}  {top1:>6}",
                "",
                o.name,
                shape_of(o),
                o.cosine_mean,
                o.cosine_min,
                sci(o.max_abs_error)
            );
            if o.int8_nonfinite > 0 {
                let _ = write!(s, "  ({} INT8 values NaN/inf)", o.int8_nonfinite);
            }
            if o.blank_samples > 0 {
                let _ = write!(
                    s,
                    "  ({} blank sample{} left out: FP32 ~0 there, INT8 agrees)",
                    o.blank_samples,
                    if o.blank_samples == 1 { "" } else { "s" }
                );
            }
            s.push('\n');
        }

        label(&mut s, "latency");
        let _ = writeln!(
            s,
            "FP32 {:>9.3} ms   INT8 {:>9.3} ms   {:.2}x {}",
            self.fp32_ms,
            self.int8_ms,
            self.speedup,
            match self.speedup {
                x if x >= 1.005 => "faster",
                x if x < 0.995 => "(slower)",
                _ => "(same speed)",
            }
        );
        let _ = writeln!(
            s,
            "{:12}median of {} runs after {} warm-up, {} thread{}, interleaved, ONNX Runtime {}",
            "",
            self.runs,
            self.warmup,
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            self.ort_version
        );

        label(&mut s, "size");
        let ratio = if self.int8_bytes > 0 { self.fp32_bytes as f64 / self.int8_bytes as f64 } else { 0.0 };
        let change = if ratio >= 1.0 || ratio == 0.0 {
            format!("{ratio:.2}x smaller")
        } else {
            format!("{:.2}x larger", 1.0 / ratio)
        };
        let _ = writeln!(s, "FP32 {:>9}      INT8 {:>9}      {change}", bytes(self.fp32_bytes), bytes(self.int8_bytes));

        let f = &self.fusion;
        label(&mut s, "fusion");
        let _ = writeln!(
            s,
            "QLinearConv {} of {} Conv   other integer ops {}   DequantizeLinear left {}   float Conv/MatMul fed by DQ {}",
            f.qlinear_conv, f.fp32_conv, f.qlinear_other, f.dequantize_linear, f.float_conv_fed_by_dq
        );
        if !f.float_ops_fed_by_dq.is_empty() {
            let mut ops: Vec<(&String, &u64)> = f.float_ops_fed_by_dq.iter().collect();
            ops.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let shown: Vec<String> = ops.iter().take(6).map(|(op, n)| format!("{op} {n}")).collect();
            let more = if ops.len() > 6 { format!(" and {} more op types", ops.len() - 6) } else { String::new() };
            let _ = writeln!(s, "{:12}float ops behind a DQ: {}{more}", "", shown.join(", "));
        }
        if !f.float_conv_fed_by_dq_nodes.is_empty() {
            let shown: Vec<&str> = f.float_conv_fed_by_dq_nodes.iter().take(5).map(String::as_str).collect();
            let more = f.float_conv_fed_by_dq_nodes.len().saturating_sub(shown.len());
            let _ = write!(s, "{:12}unfused: {}", "", shown.join(", "));
            if more > 0 {
                let _ = write!(s, " and {more} more");
            }
            s.push('\n');
        }

        if !self.notes.is_empty() {
            label(&mut s, "notes");
            for (i, n) in self.notes.iter().enumerate() {
                if i > 0 {
                    let _ = write!(s, "{:12}", "");
                }
                let _ = writeln!(s, "{n}");
            }
        }
        s
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn sci(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if (1e-3..1e4).contains(&x) {
        format!("{x:.4}")
    } else {
        format!("{x:.3e}")
    }
}

fn bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e6 {
        format!("{:.2} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} kB", n / 1e3)
    } else {
        format!("{n} B")
    }
}
