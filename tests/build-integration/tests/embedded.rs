//! The models build.rs quantized, as the app sees them through `include_quantized!`.

use kenosis_build_integration::{CLS, TINY, TWO_BRANCH};
use kenosis_core::onnx::builder::Rng;
use kenosis_core::onnx::Model;
use kenosis_core::runtime::{Feed, Session, SessionOptions};
use kenosis_core::QuantizedModel;
use ndarray::ArrayD;

fn op_count(bytes: &[u8], op: &str) -> usize {
    let m = Model::from_bytes(bytes).expect("embedded bytes parse as ONNX");
    m.graph().node.iter().filter(|n| n.op_type == op).count()
}

#[test]
fn embedded_models_are_validated_qdq_models() {
    for (m, per_channel) in [(&TINY, false), (&TWO_BRANCH, true), (&CLS, true)] {
        let name = m.source;
        assert!(op_count(m.bytes, "QuantizeLinear") > 0, "{name}: no QuantizeLinear");
        assert!(op_count(m.bytes, "DequantizeLinear") > 0, "{name}: no DequantizeLinear");
        let x = &m.metrics;
        assert_eq!(x.int8_bytes as usize, m.bytes.len(), "{name}: int8_bytes is the embedded size");
        assert!(x.cosine_mean >= kenosis_build_min_cosine() && x.cosine_mean <= 1.0 + 1e-9, "{name}: cosine {}", x.cosine_mean);
        assert!(x.cosine_min <= x.cosine_mean + 1e-12, "{name}");
        assert_ne!(x.verdict, "BROKEN", "{name}");
        assert_eq!(x.key.len(), 64, "{name}: key is a SHA-256");
        assert_eq!(x.kenosis_version, kenosis_core::VERSION);
        assert!(x.ort_version.starts_with("1."), "{name}: {}", x.ort_version);
        assert_eq!(x.per_channel, per_channel, "{name}");
        assert_eq!(x.weight_bits, if cfg!(target_arch = "x86_64") { 7 } else { 8 }, "{name}");
        assert!(x.fp32_ms > 0.0 && x.int8_ms > 0.0 && (x.speedup - x.fp32_ms / x.int8_ms).abs() < 0.05 * x.speedup, "{name}: {x:?}");
    }
    // The classifiers have a top-1 figure; the feature-map model has none.
    assert!(TINY.metrics.top1_agreement.is_some());
    assert!(TWO_BRANCH.metrics.top1_agreement.is_none());
    // The real model passed its gate, fused, and shrank.
    let c = &CLS.metrics;
    assert!(c.cosine_mean >= 0.99, "{c:?}");
    assert!(c.top1_agreement.is_some_and(|t| t >= 0.95), "{c:?}");
    assert!(c.fused_count("QLinearConv") > 0, "{c:?}");
    assert!(c.int8_bytes * 2 < c.fp32_bytes, "{c:?}");
    assert_eq!(c.fp32_bytes, 585_532);
    // Different inputs, different keys.
    assert_ne!(TINY.metrics.key, TWO_BRANCH.metrics.key);
}

fn kenosis_build_min_cosine() -> f64 {
    0.99 // kenosis_build::DEFAULT_MIN_COSINE, the gate these builds passed
}

fn cosine(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b.iter()) {
        ab += *x as f64 * *y as f64;
        aa += *x as f64 * *x as f64;
        bb += *y as f64 * *y as f64;
    }
    ab / (aa.sqrt() * bb.sqrt()).max(1e-30)
}

fn run(bytes: &[u8], shape: &[usize], seed: u64, lo: f32, hi: f32) -> ArrayD<f32> {
    let mut s = Session::from_bytes(bytes, &SessionOptions::default()).unwrap();
    let n: usize = shape.iter().product();
    let x = ArrayD::from_shape_vec(shape.to_vec(), Rng::new(seed).vec(n, lo, hi)).unwrap();
    let name = s.inputs()[0].name.clone();
    s.run(&[(name, Feed::F32(x))]).unwrap().remove(0).1
}

fn check_close(m: &QuantizedModel, fp32: &[u8], shape: &[usize], lo: f32, hi: f32) {
    for seed in 0..3 {
        let a = run(fp32, shape, 100 + seed, lo, hi);
        let b = run(m.bytes, shape, 100 + seed, lo, hi);
        assert_eq!(a.shape(), b.shape());
        let c = cosine(&a, &b);
        assert!(c >= 0.98, "{}: cosine {c} on seed {seed}", m.source);
    }
}

#[test]
fn embedded_int8_runs_in_ort_close_to_fp32() {
    if let Err(e) = kenosis_core::runtime::runtime() {
        eprintln!("skipping: {e}");
        return;
    }
    check_close(&TINY, include_bytes!("../fixtures/tiny_classifier.onnx"), &[1, 3, 16, 16], 0.0, 1.0);
    check_close(&TWO_BRANCH, include_bytes!("../fixtures/two_branch.onnx"), &[1, 3, 16, 16], 0.0, 1.0);
    check_close(
        &CLS,
        include_bytes!("../../../examples/orientation/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
        &[1, 3, 48, 192],
        -1.0,
        1.0,
    );
}
