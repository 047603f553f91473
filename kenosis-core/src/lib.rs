//! Kenosis core: everything that knows ONNX and quantization.
//!
//! With the default `runtime` feature this crate reads and rewrites ONNX models, calibrates
//! them through ONNX Runtime, quantizes them to static INT8 in QDQ form and validates the
//! result. Without it (`default-features = false`) it only defines [`QuantizedModel`] and
//! [`Metrics`] and re-exports [`include_quantized!`], for apps that embed a model built by
//! `kenosis-build`.

mod embed;

pub use embed::{Metrics, QuantizedModel};
pub use kenosis_macros::include_quantized;

#[cfg(feature = "runtime")]
pub mod cache;
#[cfg(feature = "runtime")]
pub mod calibrate;
#[cfg(feature = "runtime")]
pub mod cast;
#[cfg(feature = "runtime")]
pub mod diff;
#[cfg(feature = "runtime")]
pub mod env;
#[cfg(feature = "runtime")]
mod error;
#[cfg(feature = "runtime")]
pub mod inspect;
#[cfg(feature = "runtime")]
pub mod onnx;
#[cfg(feature = "runtime")]
pub mod quantize;
#[cfg(feature = "runtime")]
pub mod runtime;
#[cfg(feature = "runtime")]
pub mod validate;

#[cfg(feature = "runtime")]
pub use error::{Error, ErrorKind, Result};

/// The Kenosis version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
