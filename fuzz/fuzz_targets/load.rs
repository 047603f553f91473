//! Model loading from arbitrary bytes, then inspect and an FP16 cast of whatever loads.
#![no_main]

use kenosis_core::cast::{cast, CastOptions, Precision};
use kenosis_core::inspect::Inspection;
use kenosis_core::onnx::Model;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Model::from_bytes(data) {
        let _ = Inspection::new(&m, Some(data.len() as u64)).human();
        let _ = cast(&m, &CastOptions { to: Precision::Fp16, half_io: false });
        let _ = m.to_bytes();
    }
});
