//! Calibration inputs (synthetic, raw files, images) and activation-range collection through ONNX Runtime.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Observed activation range per float tensor: name -> (min, max).
// Interim definition matching the shared contract until the calibrate module lands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ranges(pub BTreeMap<String, (f32, f32)>);
