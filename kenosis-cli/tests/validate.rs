//! `kenosis validate` end to end: the real binary on fixture models built in Rust, real ORT.

use kenosis_core::onnx::builder::{attr_i, attr_ints, node, ModelBuilder, Rng, D};
use kenosis_core::onnx::proto::data_type as dt;
use kenosis_core::onnx::{tensor, Model, SaveOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// x[1,3,8,8] -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> logits[1,10]; with
/// `negate` the classifier's weights and bias flip sign, and so does every logit.
fn classifier(negate: bool) -> Model {
    let mut rng = Rng::new(3);
    let sign = if negate { -1.0 } else { 1.0 };
    let fc_w: Vec<f32> = rng.vec(40, -1.0, 1.0).iter().map(|v| v * sign).collect();
    let fc_b: Vec<f32> = rng.vec(10, -0.1, 0.1).iter().map(|v| v * sign).collect();
    ModelBuilder::new(13)
        .input("x", dt::FLOAT, &[D::N(1), D::N(3), D::N(8), D::N(8)])
        .output("logits", dt::FLOAT, &[D::N(1), D::N(10)])
        .initializer(tensor::from_f32("w", &[4, 3, 3, 3], &Rng::new(4).vec(108, -1.0, 1.0)))
        .initializer(tensor::from_f32("b", &[4], &[0.01, -0.02, 0.03, 0.0]))
        .initializer(tensor::from_f32("fc_w", &[10, 4], &fc_w))
        .initializer(tensor::from_f32("fc_b", &[10], &fc_b))
        .node(node("Conv", "conv", &["x", "w", "b"], &["c"], vec![attr_ints("pads", &[1, 1, 1, 1])]))
        .node(node("Relu", "relu", &["c"], &["r"], vec![]))
        .node(node("GlobalAveragePool", "gap", &["r"], &["p"], vec![]))
        .node(node("Flatten", "flat", &["p"], &["f"], vec![]))
        .node(node("Gemm", "fc", &["f", "fc_w", "fc_b"], &["logits"], vec![attr_i("transB", 1)]))
        .build()
}

struct Fixture {
    _dir: tempfile::TempDir,
    good: PathBuf,
    bad: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("cls.onnx");
    let bad = dir.path().join("cls.broken.onnx");
    classifier(false).save(&good, &SaveOptions::default()).unwrap();
    classifier(true).save(&bad, &SaveOptions::default()).unwrap();
    Fixture { _dir: dir, good, bad }
}

fn kenosis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kenosis")).args(args).output().unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

#[test]
fn same_model_passes_and_prints_json() {
    let f = fixture();
    let o = kenosis(&["validate", p(&f.good), p(&f.good), "--runs", "3", "--json", "--min-cosine", "0.999"]);
    assert_eq!(code(&o), 0, "stderr: {}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is one JSON object");
    assert_eq!(v["cosine_mean"], 1.0);
    assert_eq!(v["top1_agreement"], 1.0);
    assert_eq!(v["outputs"][0]["name"], "logits");
    assert_eq!(v["threads"], 1);
    assert_eq!(v["passed"], true);
    assert_ne!(v["verdict"], "BROKEN");
    assert!(v["fp32_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn human_report_by_default() {
    let f = fixture();
    let o = kenosis(&["validate", p(&f.good), p(&f.good), "--runs", "2", "--threads", "2"]);
    assert_eq!(code(&o), 0, "stderr: {}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    for w in ["verdict", "accuracy", "logits", "classifier", "latency", "2 threads", "fusion"] {
        assert!(out.contains(w), "missing `{w}` in\n{out}");
    }
}

#[test]
fn broken_model_exits_4() {
    let f = fixture();
    let o = kenosis(&["validate", p(&f.good), p(&f.bad), "--runs", "2", "--json"]);
    assert_eq!(code(&o), 4, "stderr: {}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "BROKEN");
    assert_eq!(v["passed"], false);
    assert!(String::from_utf8_lossy(&o.stderr).contains("BROKEN"));
}

#[test]
fn failed_gate_exits_4() {
    let f = fixture();
    let o = kenosis(&["validate", p(&f.good), p(&f.good), "--runs", "2", "--min-speedup", "1000"]);
    assert_eq!(code(&o), 4);
    assert!(String::from_utf8_lossy(&o.stderr).contains("speedup"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn bad_input_exits_2() {
    let f = fixture();
    // Not an ONNX file.
    let junk = f._dir.path().join("junk.onnx");
    std::fs::write(&junk, b"not a model").unwrap();
    let o = kenosis(&["validate", p(&f.good), p(&junk)]);
    assert_eq!(code(&o), 2, "stderr: {}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("junk.onnx"));
    // An image folder with no images.
    let empty = f._dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = kenosis(&["validate", p(&f.good), p(&f.good), "--images", p(&empty)]);
    assert_eq!(code(&o), 2, "stderr: {}", String::from_utf8_lossy(&o.stderr));
    // Usage errors (clap) are bad input too.
    let o = kenosis(&["validate", p(&f.good), p(&f.good), "--preprocess", "half"]);
    assert_eq!(code(&o), 2, "--preprocess needs --images");
    let o = kenosis(&["validate", p(&f.good), p(&f.good), "--input-shape", "x=1xAx8"]);
    assert_eq!(code(&o), 2);
}
