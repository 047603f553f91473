//! Validation: accuracy against FP32, latency side by side, fusion in ORT's optimised graph, verdict.
