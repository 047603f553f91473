// Helpers for the kenosis CLI tests (included with `mod common;`).
#![allow(dead_code)]

use kenosis_core::onnx::builder::{attr_ints, attr_t, node, ModelBuilder, Rng, D};
use kenosis_core::onnx::proto::data_type as dt;
use kenosis_core::onnx::{tensor, Model, SaveOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the built `kenosis` binary with `args`; stdin closed, stderr not a terminal.
pub fn kenosis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kenosis")).args(args).output().expect("the kenosis binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A folder beside the checkout (`shared/models`, `shared/images`), found both from a main
/// checkout (`<repo>/../shared`) and from a worktree under `wt/` (`<repo>/../../shared`).
fn shared(sub: &str) -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    ["../../shared", "../../../shared"]
        .iter()
        .map(|up| root.join(up).join(sub))
        .find(|p| p.is_dir())
        .and_then(|p| p.canonicalize().ok())
}

pub fn shared_models() -> Option<PathBuf> {
    shared("models")
}

pub fn shared_images() -> Option<PathBuf> {
    shared("images")
}

/// A small Conv → Relu → Reshape → MatMul model with a Constant weight, saved to `path`
/// (weights large enough for `cast` to convert them).
pub fn fixture(path: &Path) -> Model {
    let mut rng = Rng::new(1);
    let m = ModelBuilder::new(13)
        .input("x", dt::FLOAT, &[D::S("N"), 3.into(), 4.into(), 4.into()])
        .initializer(tensor::from_f32("w", &[64, 3, 3, 3], &rng.vec(1728, -0.5, 0.5)))
        .initializer(tensor::from_i64("shape", &[2], &[0, 1024]))
        .node(node(
            "Constant",
            "c_wm",
            &[],
            &["wm"],
            vec![attr_t("value", tensor::from_f32("wm", &[1024, 2], &rng.vec(2048, -0.2, 0.2)))],
        ))
        .node(node("Conv", "conv", &["x", "w"], &["c"], vec![attr_ints("pads", &[1, 1, 1, 1])]))
        .node(node("Relu", "relu", &["c"], &["r"], vec![]))
        .node(node("Reshape", "flat", &["r", "shape"], &["f"], vec![]))
        .node(node("MatMul", "mm", &["f", "wm"], &["y"], vec![]))
        .output("y", dt::FLOAT, &[D::S("N"), 2.into()])
        .build();
    m.save(path, &SaveOptions::default()).unwrap();
    m
}
