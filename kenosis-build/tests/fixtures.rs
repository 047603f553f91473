//! The small models the build integration tests quantize, built in code. They are committed in
//! tests/build-integration/fixtures/ (a build script can't make the files its crate's
//! `include_quantized!` paths name); this test fails when the committed files differ from what
//! the code builds. `KENOSIS_REGEN_FIXTURES=1 cargo test -p kenosis-build --test fixtures` rewrites them.

use kenosis_core::onnx::builder::{attr_i, attr_ints, node, ModelBuilder, Rng, D};
use kenosis_core::onnx::proto::data_type::FLOAT;
use kenosis_core::onnx::tensor::from_f32;
use kenosis_core::onnx::Model;
use std::path::PathBuf;

fn conv(b: ModelBuilder, rng: &mut Rng, name: &str, input: &str, output: &str, cin: i64, cout: i64) -> ModelBuilder {
    let w = rng.vec((cout * cin * 9) as usize, -0.5, 0.5);
    let bias = rng.vec(cout as usize, -0.1, 0.1);
    b.initializer(from_f32(&format!("{name}.w"), &[cout, cin, 3, 3], &w))
        .initializer(from_f32(&format!("{name}.b"), &[cout], &bias))
        .node(node(
            "Conv",
            name,
            &[input, &format!("{name}.w"), &format!("{name}.b")],
            &[output],
            vec![attr_ints("pads", &[1, 1, 1, 1]), attr_ints("kernel_shape", &[3, 3])],
        ))
}

/// Conv-Relu-Conv-Relu-GlobalAveragePool-Flatten-Gemm: a 4-class classifier on 3x16x16.
pub fn tiny_classifier() -> Model {
    let mut rng = Rng::new(11);
    let mut b = ModelBuilder::new(13).input("x", FLOAT, &[D::N(1), D::N(3), D::N(16), D::N(16)]).output("logits", FLOAT, &[D::N(1), D::N(4)]);
    b = conv(b, &mut rng, "conv1", "x", "c1", 3, 8);
    b = b.node(node("Relu", "relu1", &["c1"], &["r1"], vec![]));
    b = conv(b, &mut rng, "conv2", "r1", "c2", 8, 8);
    b = b.node(node("Relu", "relu2", &["c2"], &["r2"], vec![]));
    b = b.node(node("GlobalAveragePool", "gap", &["r2"], &["g"], vec![]));
    b = b.node(node("Flatten", "flatten", &["g"], &["f"], vec![attr_i("axis", 1)]));
    let w = rng.vec(4 * 8, -0.8, 0.8);
    b.initializer(from_f32("fc.w", &[4, 8], &w))
        .initializer(from_f32("fc.b", &[4], &[0.01, -0.02, 0.03, 0.0]))
        .node(node("Gemm", "fc", &["f", "fc.w", "fc.b"], &["logits"], vec![attr_i("transB", 1)]))
        .build()
}

/// A stem conv, then two Conv branches added and a third concatenated: Add and Concat placement.
pub fn two_branch() -> Model {
    let mut rng = Rng::new(12);
    let mut b = ModelBuilder::new(13).input("x", FLOAT, &[D::N(1), D::N(3), D::N(16), D::N(16)]).output("y", FLOAT, &[D::N(1), D::N(8), D::N(16), D::N(16)]);
    // A stem first: Kenosis keeps a conv that reads the model input in float.
    b = conv(b, &mut rng, "stem", "x", "st", 3, 4);
    b = b.node(node("Relu", "relu_stem", &["st"], &["x1"], vec![]));
    b = conv(b, &mut rng, "a", "x1", "ya", 4, 4);
    b = conv(b, &mut rng, "b", "x1", "yb", 4, 4);
    b = b.node(node("Add", "add", &["ya", "yb"], &["s"], vec![]));
    b = b.node(node("Relu", "relu", &["s"], &["rs"], vec![]));
    b = conv(b, &mut rng, "c", "x1", "yc", 4, 4);
    b = b.node(node("Relu", "relu_c", &["yc"], &["rc"], vec![]));
    b.node(node("Concat", "cat", &["rs", "rc"], &["y"], vec![attr_i("axis", 1)])).build()
}

#[test]
fn committed_fixtures_match_the_code() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/build-integration/fixtures");
    let regen = kenosis_core::env::flag("KENOSIS_REGEN_FIXTURES");
    for (name, model) in [("tiny_classifier.onnx", tiny_classifier()), ("two_branch.onnx", two_branch())] {
        let bytes = model.to_bytes().unwrap();
        let path = dir.join(name);
        if regen {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; run with KENOSIS_REGEN_FIXTURES=1", path.display()));
        assert!(committed == bytes, "{} differs from the code; run with KENOSIS_REGEN_FIXTURES=1", path.display());
        Model::from_bytes(&committed).unwrap();
    }
}
