//! The prepare passes (with and without an opset upgrade) on whatever loads.
#![no_main]

use kenosis_core::onnx::passes::{prepare, PrepareOptions};
use kenosis_core::onnx::Model;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Model::from_bytes(data) {
        for min_opset in [None, Some(13)] {
            let mut p = m.clone();
            if prepare(&mut p, &PrepareOptions { min_opset, ..Default::default() }).is_ok() {
                let _ = p.to_bytes().map(|b| Model::from_bytes(&b));
            }
        }
    }
});
