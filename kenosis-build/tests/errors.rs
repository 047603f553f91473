//! Errors a build script meets before any model is read.

#[test]
fn missing_out_dir_is_a_precise_error() {
    // `cargo test` sets CARGO_MANIFEST_DIR but not OUT_DIR (kenosis-build has no build script).
    assert!(std::env::var_os("OUT_DIR").is_none());
    let e = kenosis_build::quantize("models/m.onnx").unwrap_err();
    assert!(matches!(e, kenosis_build::Error::NoOutDir), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("OUT_DIR is not set") && msg.contains("build.rs") && msg.contains("kenosis quantize"), "{msg}");
    // Debug prints the same text, so `fn main() -> Result<(), Error>` shows a readable message.
    assert_eq!(format!("{e:?}"), msg);
}

#[test]
fn no_models_names_the_metadata_table() {
    let e = kenosis_build::Config::new().run().unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("[package.metadata.kenosis]") && msg.contains("models = ["), "{msg}");
}
