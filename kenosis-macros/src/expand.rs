//! Parse, locate, emit: the whole macro as plain functions on `proc_macro2` tokens.

use crate::index::{index_path, normalize, Index};
use proc_macro2::{Literal, Span, TokenStream};
use quote::quote;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// What the macro reads from its environment, passed in so tests can choose it.
#[derive(Debug, Default, Clone)]
pub struct Env {
    /// `OUT_DIR`: set by Cargo only for crates with a build script.
    pub out_dir: Option<PathBuf>,
    /// `CARGO_MANIFEST_DIR`: the crate root model paths are relative to.
    pub manifest_dir: Option<PathBuf>,
}

/// Expands `include_quantized!(<input>)`, or returns a spanned `compile_error!`.
pub fn expand(input: TokenStream, env: &Env) -> TokenStream {
    match try_expand(input, env) {
        Ok(ts) => ts,
        Err(e) => e.to_compile_error(),
    }
}

fn try_expand(input: TokenStream, env: &Env) -> syn::Result<TokenStream> {
    let lit = parse_input(input)?;
    let span = lit.span();
    let written = lit.value();
    let err = |msg: String| syn::Error::new(span, msg);
    let key = normalize(&written);
    let add_call = format!("kenosis_build::quantize(\"{written}\")?;");

    let Some(manifest_dir) = &env.manifest_dir else {
        return Err(err("include_quantized! must be compiled by Cargo (CARGO_MANIFEST_DIR is not set)".into()));
    };
    let Some(out_dir) = &env.out_dir else {
        return Err(err(format!(
            "include_quantized!(\"{written}\") needs a build script that quantizes the model, and this crate has none \
             (OUT_DIR is not set). Add kenosis-build to [build-dependencies] and a build.rs with \
             `fn main() -> Result<(), kenosis_build::Error> {{ {add_call} Ok(()) }}`"
        )));
    };
    let model_path = manifest_dir.join(&written);
    let model_bytes = std::fs::read(&model_path).map_err(|e| {
        err(format!(
            "no model at {} ({e}); the path is relative to the crate root {} and must be the one build.rs quantizes",
            model_path.display(),
            manifest_dir.display()
        ))
    })?;
    let index_file = index_path(out_dir);
    let text = std::fs::read_to_string(&index_file).map_err(|_| {
        err(format!(
            "the build script did not quantize any model ({} is missing). Add `{add_call}` to build.rs \
             (with kenosis-build in [build-dependencies])",
            index_file.display()
        ))
    })?;
    let index = Index::parse(&text).map_err(|e| err(format!("{}: {e}", index_file.display())))?;
    let entry = index.get(&key).map_err(|e| err(format!("{} entry \"{key}\": {e}", index_file.display())))?;
    let Some(entry) = entry else {
        let known = index.names();
        let known = if known.is_empty() {
            "none".to_string()
        } else {
            known.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")
        };
        return Err(err(format!(
            "build.rs does not quantize \"{written}\" (it quantizes: {known}). Add `{add_call}` to build.rs, \
             or fix the path here to match the one given there"
        )));
    };
    let digest = hex(&Sha256::digest(&model_bytes));
    if !entry.model_sha256.is_empty() && entry.model_sha256 != digest {
        return Err(err(format!(
            "the INT8 model for \"{written}\" is stale: it was built from a model with SHA-256 {}, but {} now has {digest}. \
             Rebuild so build.rs runs again (`cargo clean -p <this crate>` if it does not), and if you build offline, \
             refresh the records with `kenosis prepare`",
            entry.model_sha256,
            model_path.display()
        )));
    }
    if !entry.artifact.is_file() {
        return Err(err(format!(
            "the INT8 model for \"{written}\" is missing at {}; run `cargo clean -p <this crate>` and build again",
            entry.artifact.display()
        )));
    }
    let artifact = entry.artifact.to_string_lossy().into_owned();
    let metrics = metrics_tokens(&entry.metrics).map_err(|e| {
        err(format!(
            "{}: metrics of \"{key}\": {e}; kenosis-build and kenosis-core must be the same Kenosis version",
            index_file.display()
        ))
    })?;
    Ok(quote! {
        ::kenosis_core::QuantizedModel {
            source: #written,
            bytes: ::core::include_bytes!(#artifact),
            metrics: #metrics,
        }
    })
}

/// The macro takes one string literal (a trailing comma is fine).
fn parse_input(input: TokenStream) -> syn::Result<syn::LitStr> {
    struct Arg(syn::LitStr);
    impl syn::parse::Parse for Arg {
        fn parse(input: syn::parse::ParseStream) -> syn::Result<Self> {
            if input.is_empty() {
                return Err(input.error("expected the model path, e.g. include_quantized!(\"models/cls.onnx\")"));
            }
            let lit: syn::LitStr = input
                .parse()
                .map_err(|e| syn::Error::new(e.span(), "expected the model path as a string literal, e.g. \"models/cls.onnx\""))?;
            let _ = input.parse::<Option<syn::Token![,]>>()?;
            if !input.is_empty() {
                return Err(input.error("include_quantized! takes only the model path"));
            }
            Ok(Arg(lit))
        }
    }
    syn::parse2::<Arg>(input).map(|a| a.0)
}

fn metrics_tokens(m: &Map<String, Value>) -> Result<TokenStream, String> {
    let f = |k: &str| -> Result<TokenStream, String> {
        match m.get(k) {
            Some(Value::Number(n)) => Ok(f64_tokens(n.as_f64().unwrap_or(f64::NAN))),
            // Not measured (e.g. a speed that could not be timed): NaN, which compares false.
            Some(Value::Null) => Ok(quote!(f64::NAN)),
            _ => Err(format!("`{k}` is missing or not a number")),
        }
    };
    let opt_f = |k: &str| -> Result<TokenStream, String> {
        match m.get(k) {
            None | Some(Value::Null) => Ok(quote!(::core::option::Option::None)),
            Some(Value::Number(n)) => {
                let v = f64_tokens(n.as_f64().unwrap_or(f64::NAN));
                Ok(quote!(::core::option::Option::Some(#v)))
            }
            _ => Err(format!("`{k}` is not a number")),
        }
    };
    let u = |k: &str| -> Result<u64, String> { m.get(k).and_then(Value::as_u64).ok_or(format!("`{k}` is missing or not an integer")) };
    let s = |k: &str| -> Result<String, String> {
        m.get(k).and_then(Value::as_str).map(str::to_string).ok_or(format!("`{k}` is missing or not a string"))
    };
    let (cosine_mean, cosine_min, fp32_ms, int8_ms, speedup) = (f("cosine_mean")?, f("cosine_min")?, f("fp32_ms")?, f("int8_ms")?, f("speedup")?);
    let top1 = opt_f("top1_agreement")?;
    let (fp32_bytes, int8_bytes) = (u("fp32_bytes")?, u("int8_bytes")?);
    let weight_bits = u32::try_from(u("weight_bits")?).map_err(|_| "`weight_bits` is out of range".to_string())?;
    let (verdict, key, kenosis_version, ort_version) = (s("verdict")?, s("key")?, s("kenosis_version")?, s("ort_version")?);
    let per_channel = m.get("per_channel").and_then(Value::as_bool).ok_or("`per_channel` is missing or not a bool")?;
    let mut fused: Vec<(String, u64)> = match m.get("fused") {
        Some(Value::Object(o)) => o.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0))).collect(),
        None | Some(Value::Null) => Vec::new(),
        _ => return Err("`fused` is not an object".into()),
    };
    fused.sort();
    let fused = fused.iter().map(|(k, v)| quote!((#k, #v)));
    Ok(quote! {
        ::kenosis_core::Metrics {
            cosine_mean: #cosine_mean,
            cosine_min: #cosine_min,
            top1_agreement: #top1,
            fp32_ms: #fp32_ms,
            int8_ms: #int8_ms,
            speedup: #speedup,
            fp32_bytes: #fp32_bytes,
            int8_bytes: #int8_bytes,
            fused: &[#(#fused),*],
            verdict: #verdict,
            key: #key,
            kenosis_version: #kenosis_version,
            ort_version: #ort_version,
            per_channel: #per_channel,
            weight_bits: #weight_bits,
        }
    })
}

fn f64_tokens(v: f64) -> TokenStream {
    if v.is_finite() {
        let mut lit = Literal::f64_suffixed(v);
        lit.set_span(Span::call_site());
        quote!(#lit)
    } else if v.is_nan() {
        quote!(f64::NAN)
    } else if v > 0.0 {
        quote!(f64::INFINITY)
    } else {
        quote!(f64::NEG_INFINITY)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn metrics() -> Value {
        serde_json::json!({
            "cosine_mean": 0.9991, "cosine_min": 0.998, "top1_agreement": 1.0, "fp32_ms": 1.2, "int8_ms": 1.0,
            "speedup": 1.2, "fp32_bytes": 1000, "int8_bytes": 300, "fused": {"QLinearConv": 3, "DequantizeLinear": 1},
            "verdict": "EXCELLENT", "key": "abc", "kenosis_version": "0.1.0", "ort_version": "1.31.1",
            "per_channel": true, "weight_bits": 7
        })
    }

    /// A crate dir with `models/m.onnx`, and an OUT_DIR whose index lists it.
    fn setup(model: &[u8], indexed: &[u8]) -> (tempfile::TempDir, Env) {
        let dir = tempfile::tempdir().unwrap();
        let crate_dir = dir.path().join("app");
        let out = dir.path().join("out");
        fs::create_dir_all(crate_dir.join("models")).unwrap();
        fs::create_dir_all(out.join("kenosis/k")).unwrap();
        fs::write(crate_dir.join("models/m.onnx"), model).unwrap();
        let artifact = out.join("kenosis/k/model.int8.onnx");
        fs::write(&artifact, b"int8").unwrap();
        let index = serde_json::json!({"format": 1, "models": {"models/m.onnx": {
            "artifact": artifact, "model_sha256": hex(&Sha256::digest(indexed)), "metrics": metrics()}}});
        fs::write(out.join("kenosis/index.json"), index.to_string()).unwrap();
        (dir, Env { out_dir: Some(out), manifest_dir: Some(crate_dir) })
    }

    fn run(src: &str, env: &Env) -> String {
        expand(src.parse().unwrap(), env).to_string()
    }

    #[test]
    fn expands_to_include_bytes_and_metrics() {
        let (dir, env) = setup(b"fp32", b"fp32");
        let out = run("\"./models/m.onnx\"", &env);
        let artifact = dir.path().join("out/kenosis/k/model.int8.onnx");
        assert!(out.contains("include_bytes !"), "{out}");
        assert!(out.contains(&format!("{:?}", artifact.to_string_lossy())), "{out}");
        assert!(out.contains("source : \"./models/m.onnx\""), "{out}");
        assert!(out.contains("cosine_mean : 0.9991f64"), "{out}");
        assert!(out.contains("top1_agreement : :: core :: option :: Option :: Some (1f64)"), "{out}");
        assert!(out.contains("(\"DequantizeLinear\" , 1u64) , (\"QLinearConv\" , 3u64)"), "{out}");
        assert!(out.contains("weight_bits : 7u32"), "{out}");
        assert!(!out.contains("compile_error"), "{out}");
        // A trailing comma is accepted.
        assert!(!run("\"models/m.onnx\",", &env).contains("compile_error"));
    }

    #[test]
    fn model_not_quantized_names_the_fix() {
        let (dir, env) = setup(b"fp32", b"fp32");
        fs::write(dir.path().join("app/models/other.onnx"), b"x").unwrap();
        let out = run("\"models/other.onnx\"", &env);
        assert!(out.contains("compile_error"), "{out}");
        assert!(out.contains("build.rs does not quantize"), "{out}");
        assert!(out.contains("kenosis_build :: quantize") || out.contains("kenosis_build::quantize(\\\"models/other.onnx\\\")"), "{out}");
        assert!(out.contains("\\\"models/m.onnx\\\""), "lists what is quantized: {out}");
    }

    #[test]
    fn wrong_path_says_relative_to_crate_root() {
        let (_dir, env) = setup(b"fp32", b"fp32");
        let out = run("\"models/typo.onnx\"", &env);
        assert!(out.contains("no model at") && out.contains("relative to the crate root"), "{out}");
    }

    #[test]
    fn no_build_script_says_add_one() {
        let (_dir, mut env) = setup(b"fp32", b"fp32");
        env.out_dir = None;
        let out = run("\"models/m.onnx\"", &env);
        assert!(out.contains("needs a build script") && out.contains("build-dependencies"), "{out}");
    }

    #[test]
    fn no_index_says_quantize_in_build_rs() {
        let (dir, env) = setup(b"fp32", b"fp32");
        fs::remove_file(dir.path().join("out/kenosis/index.json")).unwrap();
        let out = run("\"models/m.onnx\"", &env);
        assert!(out.contains("did not quantize any model"), "{out}");
    }

    #[test]
    fn changed_model_is_stale() {
        let (_dir, env) = setup(b"fp32 v2", b"fp32");
        let out = run("\"models/m.onnx\"", &env);
        assert!(out.contains("is stale") && out.contains("kenosis prepare"), "{out}");
    }

    #[test]
    fn missing_artifact_is_reported() {
        let (dir, env) = setup(b"fp32", b"fp32");
        fs::remove_file(dir.path().join("out/kenosis/k/model.int8.onnx")).unwrap();
        assert!(run("\"models/m.onnx\"", &env).contains("is missing at"));
    }

    #[test]
    fn bad_arguments_are_spanned_errors() {
        let env = Env::default();
        assert!(run("", &env).contains("expected the model path"));
        assert!(run("42", &env).contains("string literal"));
        assert!(run("\"a.onnx\", \"b\"", &env).contains("takes only the model path"));
    }

    #[test]
    fn non_finite_and_null_metrics() {
        let mut m = metrics();
        m["speedup"] = Value::Null;
        m["top1_agreement"] = Value::Null;
        let ts = metrics_tokens(m.as_object().unwrap()).unwrap().to_string();
        assert!(ts.contains("speedup : f64 :: NAN"), "{ts}");
        assert!(ts.contains("top1_agreement : :: core :: option :: Option :: None"), "{ts}");
        m["verdict"] = Value::Null;
        assert!(metrics_tokens(m.as_object().unwrap()).unwrap_err().contains("verdict"));
    }
}
