//! `include_quantized!`: embeds an INT8 model that `kenosis-build` produced, with its metrics.
//!
//! The build script writes `$OUT_DIR/kenosis/index.json`; this crate reads only that index, so it
//! needs no kenosis-core and kenosis-core can re-export the macro. The logic lives in [`expand`]
//! (plain functions on `proc_macro2` tokens) so it is tested without a compiler in the loop.

mod expand;
mod index;

use proc_macro::TokenStream;

/// Embeds the INT8 model that the build script made from `path` (relative to the crate root),
/// as a `kenosis_core::QuantizedModel` constant expression:
///
/// ```ignore
/// static CLS: kenosis_core::QuantizedModel = kenosis_core::include_quantized!("models/cls.onnx");
/// ```
///
/// The bytes come through `include_bytes!` of the artifact's absolute path, so rustc tracks the
/// file; the metrics are those validation measured when the model was built. A model the build
/// script does not quantize, a wrong path or an artifact built from an older model file are
/// compile errors that say what to change.
#[proc_macro]
pub fn include_quantized(input: TokenStream) -> TokenStream {
    // ok: proc macros can't use kenosis_core::env, and rustc sets these for every crate it builds.
    let env = expand::Env {
        out_dir: std::env::var_os("OUT_DIR").map(Into::into),
        manifest_dir: std::env::var_os("CARGO_MANIFEST_DIR").map(Into::into),
    };
    expand::expand(input.into(), &env).into()
}
