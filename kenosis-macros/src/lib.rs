//! `include_quantized!`: embeds an INT8 model that `kenosis-build` produced, with its metrics.
use proc_macro::TokenStream;

/// Placeholder until the index reader lands.
#[proc_macro]
pub fn include_quantized(_input: TokenStream) -> TokenStream {
    "compile_error!(\"include_quantized! is not implemented yet\")".parse().unwrap_or_default()
}
