//! Calibration inputs (synthetic, raw files, images) and activation-range collection through ONNX Runtime.
