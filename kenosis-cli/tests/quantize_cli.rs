// `kenosis quantize` end to end on a fixture built in code.
mod common;

use common::{kenosis, stderr, stdout};
use kenosis_core::onnx::builder::{attr_ints, node, ModelBuilder, Rng, D};
use kenosis_core::onnx::proto::data_type as dt;
use kenosis_core::onnx::{tensor, Model, SaveOptions};

fn fixture(path: &std::path::Path) {
    let mut rng = Rng::new(3);
    let mut b = ModelBuilder::new(13)
        .input("x", dt::FLOAT, &[D::S("N"), 8.into(), 8.into(), 8.into()])
        .output("y", dt::FLOAT, &[D::S("N"), 4.into(), 8.into(), 8.into()]);
    for (name, m, c, k) in [("a", 8i64, 8i64, 3i64), ("b", 8, 8, 3), ("c", 4, 8, 1)] {
        b = b
            .initializer(tensor::from_f32(
                &format!("{name}_w"),
                &[m, c, k, k],
                &rng.vec((m * c * k * k) as usize, -0.2, 0.2),
            ))
            .initializer(tensor::from_f32(
                &format!("{name}_b"),
                &[m],
                &rng.vec(m as usize, -0.1, 0.1),
            ));
    }
    let pads = |k: i64| vec![attr_ints("pads", &[k / 2; 4])];
    b.node(node("Conv", "a", &["x", "a_w", "a_b"], &["a_out"], pads(3)))
        .node(node("Relu", "ra", &["a_out"], &["ra_out"], vec![]))
        .node(node("Conv", "b", &["ra_out", "b_w", "b_b"], &["b_out"], pads(3)))
        .node(node("Relu", "rb", &["b_out"], &["rb_out"], vec![]))
        .node(node("Conv", "c", &["rb_out", "c_w", "c_b"], &["y"], vec![]))
        .build()
        .save(path, &SaveOptions::default())
        .unwrap();
}

#[test]
fn quantizes_and_refuses_its_own_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.onnx");
    fixture(&input);
    let out = dir.path().join("m.int8.onnx");
    let ranges = dir.path().join("ranges.json");
    let o = kenosis(&[
        "quantize",
        input.to_str().unwrap(),
        "--samples",
        "2",
        "--target-arch",
        "x86_64",
        "--ranges-out",
        ranges.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("7-bit"), "{}", stdout(&o));
    let q = Model::load(&out).unwrap();
    assert!(q.graph().node.iter().any(|n| n.op_type == "QuantizeLinear"));
    assert!(std::fs::read_to_string(&ranges).unwrap().contains("ra_out"));
    // The input is never overwritten, an existing output needs --force, a quantized model is refused.
    let again = kenosis(&["quantize", input.to_str().unwrap(), "--samples", "2"]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    let refused = kenosis(&[
        "quantize",
        out.to_str().unwrap(),
        "-o",
        dir.path().join("x.onnx").to_str().unwrap(),
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("already quantized"), "{}", stderr(&refused));
    assert!(!dir.path().join("x.onnx").exists());
}

#[test]
fn target_cosine_reports_its_search_and_rejects_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.onnx");
    fixture(&input);
    let out = dir.path().join("m.int8.onnx");
    let run = |extra: &[&str]| {
        let mut a = vec!["quantize", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--force", "--samples", "2", "--json"];
        a.extend_from_slice(extra);
        kenosis(&a)
    };
    let args = |t: &str| run(&["--target-cosine", t]);
    // Met already: no layer kept float, and the summary says so.
    let o = args("0.5");
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let s: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(s["searched_float"], serde_json::json!([]));
    assert_eq!(s["target_met"], serde_json::json!(true));
    assert!(s["notes"].to_string().contains("already meets target 0.5"), "{}", s["notes"]);
    // With --validate, the JSON carries the report too.
    let v = run(&["--validate"]);
    let s: serde_json::Value = serde_json::from_str(&stdout(&v)).unwrap();
    assert!(s["validation"]["cosine_mean"].as_f64().is_some(), "{s}");
    assert!(s["validation"]["verdict"].is_string(), "{s}");
    // Out of reach: the model is written all INT8, the run fails like a gate (exit 4).
    let far = args("1");
    assert_eq!(far.status.code(), Some(4), "{}", stderr(&far));
    assert!(stderr(&far).contains("--target-cosine 1 was not reached"), "{}", stderr(&far));
    let s: serde_json::Value = serde_json::from_str(&stdout(&far)).unwrap();
    assert_eq!(s["target_met"], serde_json::json!(false));
    assert!(out.exists());
    // Out of (0, 1], negative numbers included: bad input, nothing written.
    std::fs::remove_file(&out).unwrap();
    let neg = args("-1");
    assert_eq!(neg.status.code(), Some(2), "{}", stderr(&neg));
    assert!(stderr(&neg).contains("target_cosine is -1"), "{}", stderr(&neg));
    let bad = args("1.5");
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("target_cosine is 1.5"), "{}", stderr(&bad));
    assert!(!out.exists());
}
