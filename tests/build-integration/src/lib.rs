//! The models this crate's build script quantized, embedded with `include_quantized!`.

use kenosis_core::{include_quantized, QuantizedModel};

/// The zero-config fixture classifier.
pub static TINY: QuantizedModel = include_quantized!("fixtures/tiny_classifier.onnx");
/// The fixture from `[package.metadata.kenosis]` (per-channel, 4 samples).
pub static TWO_BRANCH: QuantizedModel = include_quantized!("./fixtures/two_branch.onnx");
/// The real PP-OCR text direction classifier, calibrated on text crops.
pub static CLS: QuantizedModel = include_quantized!("../../examples/orientation/models/ch_ppocr_mobile_v2.0_cls_infer.onnx");
