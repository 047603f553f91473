//! The types `include_quantized!` expands to. They need no dependency, so an app that only
//! embeds a model builds without ONNX Runtime.

/// An INT8 model embedded at compile time, with the metrics Kenosis validated it with.
#[derive(Debug, Clone, Copy)]
pub struct QuantizedModel {
    /// The model path as written in `include_quantized!`, relative to the crate.
    pub source: &'static str,
    /// The INT8 ONNX model; open it with `ort`'s `commit_from_memory`.
    pub bytes: &'static [u8],
    /// What validation measured when the model was built.
    pub metrics: Metrics,
}

/// Validation results recorded at build time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    /// Mean cosine similarity of the worst output against FP32, over the validation samples.
    pub cosine_mean: f64,
    /// Lowest cosine similarity of any output on any sample.
    pub cosine_min: f64,
    /// Share of samples where INT8 and FP32 agree on the top class; `None` if no output is
    /// classifier-shaped.
    pub top1_agreement: Option<f64>,
    /// Median FP32 latency in milliseconds (1 thread, measured during the build: noisy).
    pub fp32_ms: f64,
    /// Median INT8 latency in milliseconds.
    pub int8_ms: f64,
    /// `fp32_ms / int8_ms`.
    pub speedup: f64,
    /// Size of the FP32 model in bytes.
    pub fp32_bytes: u64,
    /// Size of the INT8 model in bytes.
    pub int8_bytes: u64,
    /// Op counts in ONNX Runtime's optimised INT8 graph (QLinearConv, DequantizeLinear, ...).
    pub fused: &'static [(&'static str, u64)],
    /// EXCELLENT, GOOD, POOR or BROKEN.
    pub verdict: &'static str,
    /// The content key the artifact was cached under.
    pub key: &'static str,
    /// Kenosis version that built the model.
    pub kenosis_version: &'static str,
    /// ONNX Runtime version that calibrated it.
    pub ort_version: &'static str,
    /// Per-channel weight scales.
    pub per_channel: bool,
    /// Weight bits (7 or 8).
    pub weight_bits: u32,
}

impl Metrics {
    /// The count of `op` in the optimised graph (0 if absent).
    pub fn fused_count(&self, op: &str) -> u64 {
        self.fused.iter().find(|(k, _)| *k == op).map_or(0, |(_, v)| *v)
    }
}
