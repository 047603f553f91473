mod common;

use kenosis_core::calibrate::{Preprocess, Source};
use kenosis_core::onnx::builder::{attr_i, attr_ints, node, ModelBuilder, Rng, D};
use kenosis_core::onnx::proto::data_type as dt;
use kenosis_core::onnx::tensor;
use kenosis_core::onnx::Model;
use kenosis_core::validate::metrics::{argmax, cosine, max_abs_error, output_kind, top1_matches};
use kenosis_core::validate::{self, fusion_counts, Gates, OutputKind, ValidateOptions, Verdict};

// ---------- metrics ----------

#[test]
fn cosine_basics() {
    assert!((cosine(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]) - 1.0).abs() < 1e-12);
    assert!((cosine(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]) - 1.0).abs() < 1e-12, "scale does not matter");
    assert!((cosine(&[1.0, 0.0], &[0.0, 1.0])).abs() < 1e-12);
    assert!((cosine(&[1.0, 2.0], &[-1.0, -2.0]) + 1.0).abs() < 1e-12);
    // 45 degrees.
    assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-12);
}

#[test]
fn cosine_of_zero_outputs() {
    assert_eq!(cosine(&[0.0; 4], &[0.0; 4]), 1.0, "both zero: identical");
    assert_eq!(cosine(&[0.0; 4], &[0.0, 1.0, 0.0, 0.0]), 0.0, "one zero: nothing shared");
    assert_eq!(cosine(&[0.0, 1e-3, 0.0, 0.0], &[0.0; 4]), 0.0);
    assert_eq!(cosine(&[], &[]), 1.0);
}

#[test]
fn cosine_is_computed_in_f64() {
    // 1e6 values of 1e-20 square to 1e-40, below f32's normal range: f32 sums would go to zero.
    let a = vec![1e-20f32; 1_000_000];
    assert!((cosine(&a, &a) - 1.0).abs() < 1e-9);
    let big = vec![1e20f32; 1000];
    assert!((cosine(&big, &big) - 1.0).abs() < 1e-9, "f32 would overflow to inf");
}

#[test]
fn cosine_skips_non_finite_pairs() {
    assert!((cosine(&[1.0, f32::NAN, 2.0], &[1.0, 5.0, 2.0]) - 1.0).abs() < 1e-12);
    assert_eq!(max_abs_error(&[1.0, f32::INFINITY], &[1.5, 0.0]), 0.5);
}

#[test]
fn top1_and_argmax() {
    assert_eq!(argmax(&[0.1, 0.7, 0.2]), Some(1));
    assert_eq!(argmax(&[0.5, 0.5]), Some(0), "first on ties");
    assert_eq!(argmax(&[f32::NAN, 0.1]), Some(1));
    assert_eq!(argmax(&[]), None);
    // Two rows of three classes: first agrees, second doesn't.
    let a = [0.1, 0.8, 0.1, 0.6, 0.3, 0.1];
    let b = [0.2, 0.7, 0.1, 0.3, 0.6, 0.1];
    assert_eq!(top1_matches(&a, &b, 3), (1, 2));
    assert_eq!(top1_matches(&a, &a, 3), (2, 2));
}

#[test]
fn classifier_shapes() {
    assert_eq!(output_kind(&[1, 1000], None), (OutputKind::Classifier, Some(1000)));
    assert_eq!(output_kind(&[1, 2], Some("Softmax")), (OutputKind::Classifier, Some(2)));
    assert_eq!(output_kind(&[1, 1], None).0, OutputKind::Tensor, "one class is a score, not a decision");
    assert_eq!(output_kind(&[1, 40, 6625], Some("Softmax")), (OutputKind::PerPosition, Some(6625)));
    assert_eq!(output_kind(&[1, 22, 2100], Some("Concat")).0, OutputKind::Tensor, "YOLO boxes are not classes");
    assert_eq!(output_kind(&[1, 7600, 10], Some("Softmax")).0, OutputKind::Tensor, "too many positions");
    assert_eq!(output_kind(&[1, 1, 640, 640], Some("Sigmoid")).0, OutputKind::Tensor);
    assert_eq!(output_kind(&[], None).0, OutputKind::Tensor);
}

// ---------- fixtures ----------

/// x[1,3,8,8] -> Conv(4) -> Relu -> GlobalAveragePool -> Flatten -> Gemm(10) -> logits[1,10].
fn classifier(seed: u64) -> Model {
    classifier_with_input(seed, &[D::N(1), D::N(3), D::N(8), D::N(8)])
}

fn classifier_with_input(seed: u64, input: &[D]) -> Model {
    let mut rng = Rng::new(seed);
    ModelBuilder::new(13)
        .input("x", dt::FLOAT, input)
        .output("logits", dt::FLOAT, &[D::N(1), D::N(10)])
        .initializer(tensor::from_f32("w", &[4, 3, 3, 3], &rng.vec(108, -1.0, 1.0)))
        .initializer(tensor::from_f32("b", &[4], &rng.vec(4, -0.1, 0.1)))
        .initializer(tensor::from_f32("fc_w", &[10, 4], &rng.vec(40, -1.0, 1.0)))
        .initializer(tensor::from_f32("fc_b", &[10], &rng.vec(10, -0.1, 0.1)))
        .node(node("Conv", "conv", &["x", "w", "b"], &["c"], vec![attr_ints("pads", &[1, 1, 1, 1])]))
        .node(node("Relu", "relu", &["c"], &["r"], vec![]))
        .node(node("GlobalAveragePool", "gap", &["r"], &["p"], vec![]))
        .node(node("Flatten", "flat", &["p"], &["f"], vec![]))
        .node(node("Gemm", "fc", &["f", "fc_w", "fc_b"], &["logits"], vec![attr_i("transB", 1)]))
        .build()
}

/// The same model with the classifier's weights and bias negated: every logit flips sign.
fn negated(m: &Model) -> Model {
    let mut m = m.clone();
    for t in &mut m.graph_mut().initializer {
        if t.name.starts_with("fc_") {
            let v: Vec<f32> = tensor::to_f32(t).unwrap().iter().map(|x| -x).collect();
            *t = tensor::from_f32(&t.name.clone(), &t.dims.clone(), &v);
        }
    }
    m
}

// Input scale and zero point cover the synthetic samples' [-1, 1).
const XS: f32 = 2.0 / 255.0;
const WS: f32 = 0.01;
const YS: f32 = 0.1;

/// Integer weights of the QDQ Conv fixture and the float weights they stand for.
fn conv_weights() -> (Vec<i8>, Vec<i32>) {
    let mut rng = Rng::new(7);
    let w: Vec<i8> = (0..8 * 4 * 9).map(|_| (rng.uniform(-60.0, 60.0)) as i8).collect();
    let b: Vec<i32> = (0..8).map(|_| rng.uniform(-500.0, 500.0) as i32).collect();
    (w, b)
}

/// x -> Q -> DQ, DQ(w int8), DQ(bias int32) -> Conv -> [Q -> DQ] -> y. With `q_after` false the
/// Conv's output is the graph output and ORT can't fuse it.
fn qdq_conv(q_after: bool) -> Model {
    let (w, b) = conv_weights();
    let mut mb = ModelBuilder::new(13)
        .input("x", dt::FLOAT, &[D::N(1), D::N(4), D::N(8), D::N(8)])
        .output("y", dt::FLOAT, &[D::N(1), D::N(8), D::N(8), D::N(8)])
        .initializer(tensor::from_f32("xs", &[], &[XS]))
        .initializer(tensor::from_u8("xz", &[], &[128]))
        .initializer(tensor::from_i8("wq", &[8, 4, 3, 3], &w))
        .initializer(tensor::from_f32("ws", &[], &[WS]))
        .initializer(tensor::from_i8("wz", &[], &[0]))
        .initializer(tensor::from_i32("bq", &[8], &b))
        .initializer(tensor::from_f32("bs", &[], &[XS * WS]))
        .initializer(tensor::from_i32("bz", &[], &[0]))
        .node(node("QuantizeLinear", "q_x", &["x", "xs", "xz"], &["xq"], vec![]))
        .node(node("DequantizeLinear", "dq_x", &["xq", "xs", "xz"], &["xd"], vec![]))
        .node(node("DequantizeLinear", "dq_w", &["wq", "ws", "wz"], &["wd"], vec![]))
        .node(node("DequantizeLinear", "dq_b", &["bq", "bs", "bz"], &["bd"], vec![]));
    let conv_out = if q_after { "c" } else { "y" };
    mb = mb.node(node("Conv", "conv", &["xd", "wd", "bd"], &[conv_out], vec![attr_ints("pads", &[1, 1, 1, 1])]));
    if q_after {
        mb = mb
            .initializer(tensor::from_f32("ys", &[], &[YS]))
            .initializer(tensor::from_u8("yz", &[], &[128]))
            .node(node("QuantizeLinear", "q_y", &["c", "ys", "yz"], &["cq"], vec![]))
            .node(node("DequantizeLinear", "dq_y", &["cq", "ys", "yz"], &["y"], vec![]));
    }
    mb.build()
}

/// The float model the QDQ fixture approximates.
fn float_conv() -> Model {
    let (w, b) = conv_weights();
    let wf: Vec<f32> = w.iter().map(|&q| q as f32 * WS).collect();
    let bf: Vec<f32> = b.iter().map(|&q| q as f32 * XS * WS).collect();
    ModelBuilder::new(13)
        .input("x", dt::FLOAT, &[D::N(1), D::N(4), D::N(8), D::N(8)])
        .output("y", dt::FLOAT, &[D::N(1), D::N(8), D::N(8), D::N(8)])
        .initializer(tensor::from_f32("w", &[8, 4, 3, 3], &wf))
        .initializer(tensor::from_f32("b", &[8], &bf))
        .node(node("Conv", "conv", &["x", "w", "b"], &["y"], vec![attr_ints("pads", &[1, 1, 1, 1])]))
        .build()
}

fn quick() -> ValidateOptions {
    ValidateOptions { runs: 5, warmup: 1, ..ValidateOptions::default() }
}

// ---------- validate ----------

#[test]
fn a_model_against_itself_is_exact() {
    let m = classifier(1);
    let r = validate::validate(&m, &m, &quick()).unwrap();
    assert_eq!(r.outputs.len(), 1);
    let o = &r.outputs[0];
    assert_eq!(o.name, "logits");
    assert_eq!(o.kind, OutputKind::Classifier);
    assert!((r.cosine_mean - 1.0).abs() < 1e-9, "{r:?}");
    assert!((r.cosine_min - 1.0).abs() < 1e-9);
    assert_eq!(r.max_abs_error, 0.0);
    assert_eq!(r.top1_agreement, Some(1.0));
    assert_ne!(r.verdict, Verdict::Broken, "{}", r.human());
    assert!(r.fp32_ms > 0.0 && r.int8_ms > 0.0 && r.speedup > 0.0);
    assert_eq!(r.fp32_bytes, r.int8_bytes);
    assert!(r.samples > 0);
    assert_eq!(
        r.fused.get("Conv").copied().unwrap_or(0) + r.fused.get("FusedConv").copied().unwrap_or(0),
        1,
        "{:?}",
        r.fused
    );
    assert!(r.check(&Gates { min_cosine: Some(0.999), min_top1_agreement: Some(1.0), min_speedup: None }).is_empty());
    let fails = r.check(&Gates { min_speedup: Some(1000.0), ..Gates::default() });
    assert_eq!(fails.len(), 1, "{fails:?}");
    assert!(fails[0].contains("speedup"), "{fails:?}");
}

#[test]
fn a_broken_copy_is_broken() {
    let m = classifier(1);
    let bad = negated(&m);
    let r = validate::validate(&m, &bad, &quick()).unwrap();
    assert!(r.cosine_mean < -0.99, "negated logits: cosine -1, got {}", r.cosine_mean);
    assert_eq!(r.verdict, Verdict::Broken, "{}", r.human());
    assert!(r.verdict_reason.contains("logits"), "{}", r.verdict_reason);
    assert_eq!(r.top1_agreement.map(|t| t < 0.5), Some(true), "negation moves the arg-max");
    let fails = r.check(&Gates::default());
    assert!(!fails.is_empty() && fails[0].contains("BROKEN"), "{fails:?}");
}

#[test]
fn a_fixed_int8_input_shape_is_used_for_both() {
    let dynamic = classifier_with_input(1, &[D::S("N"), D::N(3), D::S("H"), D::S("W")]);
    let fixed = classifier(1);
    let r = validate::validate(&dynamic, &fixed, &quick()).unwrap();
    assert!((r.cosine_mean - 1.0).abs() < 1e-9);
    assert!(r.sample_notes.iter().any(|n| n.contains("1x3x8x8 taken from the INT8 model")), "{:?}", r.sample_notes);
    // A shape the user chose wins (and here the INT8 model refuses it).
    let mut opts = quick();
    opts.inputs.shapes = vec![("x".into(), vec![1, 3, 16, 16])];
    assert!(validate::validate(&dynamic, &fixed, &opts).is_err());
}

#[test]
fn mismatched_outputs_are_refused() {
    let m = classifier(1);
    let r = validate::validate(&m, &float_conv(), &quick());
    assert!(r.is_err());
}

#[test]
fn zero_runs_is_a_config_error() {
    let m = classifier(1);
    let e = validate::validate(&m, &m, &ValidateOptions { runs: 0, ..quick() }).unwrap_err();
    assert_eq!(e.kind(), kenosis_core::ErrorKind::BadInput);
}

#[test]
fn qdq_conv_fuses_into_one_qlinearconv() {
    let counts = fusion_counts(&qdq_conv(true)).unwrap();
    assert_eq!(counts.get("QLinearConv"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("Conv"), None, "{counts:?}");
    // The input's Q and the output's DQ stay; the weight and bias DQs fold into the kernel.
    assert_eq!(counts.get("QuantizeLinear"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("DequantizeLinear"), Some(&1), "{counts:?}");
}

#[test]
fn conv_without_q_after_stays_float() {
    let opt = validate::optimized_model(&qdq_conv(false)).unwrap();
    let f = validate::Fusion::from_graphs(&opt, &float_conv());
    assert_eq!(f.qlinear_conv, 0, "{f:?}");
    assert_eq!(f.fp32_conv, 1);
    assert_eq!(f.float_conv_fed_by_dq, 1, "{f:?}");
    assert_eq!(f.float_conv_fed_by_dq_nodes, vec!["conv".to_string()]);
    assert_eq!(f.float_ops_fed_by_dq.get("Conv"), Some(&1), "{f:?}");
}

#[test]
fn qdq_model_against_its_float_original() {
    let r = validate::validate(&float_conv(), &qdq_conv(true), &quick()).unwrap();
    assert_eq!(r.fusion.qlinear_conv, 1, "{:?}", r.fused);
    assert_eq!(r.fusion.fp32_conv, 1);
    assert_eq!(r.fusion.float_conv_fed_by_dq, 0);
    assert_eq!(r.fusion.dequantize_linear, 1);
    assert!(r.fusion.float_ops_fed_by_dq.is_empty(), "{:?}", r.fusion);
    assert_eq!(r.top1_agreement, None, "a [1,8,8,8] map is no classifier");
    assert!(r.cosine_mean > 0.99 && r.cosine_mean < 1.0, "{}", r.human());
    assert!(r.int8_bytes < r.fp32_bytes);
    assert_ne!(r.verdict, Verdict::Broken, "{}", r.human());
}

#[test]
fn json_has_the_documented_fields() {
    let m = classifier(2);
    let r = validate::validate(&m, &m, &quick()).unwrap();
    let v = serde_json::to_value(&r).unwrap();
    for k in [
        "outputs",
        "cosine_mean",
        "cosine_min",
        "top1_agreement",
        "fp32_ms",
        "int8_ms",
        "speedup",
        "fp32_bytes",
        "int8_bytes",
        "fused",
        "verdict",
        "verdict_reason",
        "threads",
        "samples",
        "sample_notes",
    ] {
        assert!(v.get(k).is_some(), "missing `{k}` in {v}");
    }
    let o = &v["outputs"][0];
    for k in ["name", "cosine_mean", "cosine_min", "max_abs_error", "top1_agreement"] {
        assert!(o.get(k).is_some(), "missing outputs[0].`{k}` in {o}");
    }
    assert!(v["verdict"].is_string());
    assert!(v["fused"].is_object());
    assert_eq!(v["threads"], 1);
    // No classifier: top1_agreement is an explicit null.
    let r2 = validate::validate(&float_conv(), &qdq_conv(true), &quick()).unwrap();
    let v2 = serde_json::to_value(&r2).unwrap();
    assert!(v2.get("top1_agreement").is_some_and(|t| t.is_null()), "{v2}");
    // Round trip.
    let back: validate::Report = serde_json::from_value(v).unwrap();
    assert_eq!(back.verdict, r.verdict);
}

#[test]
fn human_report_is_aligned_and_complete() {
    let r = validate::validate(&float_conv(), &qdq_conv(true), &quick()).unwrap();
    let h = r.human();
    println!("{h}");
    for word in ["verdict", "accuracy", "latency", "size", "fusion", "QLinearConv 1 of 1 Conv"] {
        assert!(h.contains(word), "missing `{word}` in\n{h}");
    }
    // Every line starts with the same two-space margin and labels share one column.
    for line in h.lines() {
        assert!(line.starts_with("  "), "{line:?}");
        assert!(line.len() >= 12 && line.as_bytes()[11] == b' ', "label column is 9 wide: {line:?}");
    }
}

// ---------- real models ----------

#[test]
fn real_classifier_against_itself() {
    let Some(dir) = common::shared_models() else { return };
    let m = Model::load(dir.join("ch_ppocr_mobile_v2.0_cls_infer.onnx")).unwrap();
    let mut opts = quick();
    opts.inputs.shapes = vec![("x".into(), vec![1, 3, 48, 192])];
    if let Some(images) = common::shared_images() {
        opts.inputs.source = Source::Images { dir: images, preprocess: Preprocess::Half, bgr: true };
    }
    let r = validate::validate(&m, &m, &opts).unwrap();
    println!("{}", r.human());
    assert!(r.samples >= 1);
    assert!((r.cosine_mean - 1.0).abs() < 1e-6);
    assert_eq!(r.top1_agreement, Some(1.0));
    assert_eq!(r.outputs[0].kind, OutputKind::Classifier);
    assert_ne!(r.verdict, Verdict::Broken);
}

// ---------- verdict rules ----------

fn figures(cos: f64, cos_min: f64, top1: Option<f64>, speedup: f64) -> validate::Report {
    let mut r = validate::Report {
        verdict: Verdict::Broken,
        verdict_reason: String::new(),
        outputs: vec![validate::OutputReport {
            name: "y".into(),
            shape: vec![1, 10],
            kind: if top1.is_some() { OutputKind::Classifier } else { OutputKind::Tensor },
            cosine_mean: cos,
            cosine_min: cos_min,
            max_abs_error: 0.1,
            blank_samples: 0,
            top1_agreement: top1,
            int8_nonfinite: 0,
            fp32_nonfinite: 0,
        }],
        cosine_mean: cos,
        cosine_min: cos_min,
        worst_output: "y".into(),
        top1_agreement: top1,
        max_abs_error: 0.1,
        fp32_ms: 10.0 * speedup,
        int8_ms: 10.0,
        speedup,
        threads: 1,
        runs: 20,
        warmup: 3,
        fp32_bytes: 4000,
        int8_bytes: 1000,
        fused: Default::default(),
        fusion: Default::default(),
        samples: 8,
        sample_notes: vec![],
        notes: vec![],
        ort_version: "1.31.1".into(),
    };
    r.judge();
    r
}

#[test]
fn verdict_rules() {
    let v = |cos, min, top1, sp| figures(cos, min, top1, sp).verdict;
    assert_eq!(v(0.999, 0.995, Some(1.0), 1.10), Verdict::Excellent);
    assert_eq!(v(0.999, 0.995, None, 1.10), Verdict::Excellent, "no classifier: cosine and speed decide");
    assert_eq!(v(0.999, 0.995, Some(1.0), 1.00), Verdict::Good, "not faster");
    assert_eq!(v(0.999, 0.98, Some(1.0), 1.10), Verdict::Good, "one bad sample");
    assert_eq!(v(0.990, 0.985, Some(1.0), 1.10), Verdict::Good);
    assert_eq!(v(0.999, 0.995, Some(0.97), 1.10), Verdict::Good);
    assert_eq!(v(0.999, 0.995, Some(1.0), 0.90), Verdict::Poor, "slower than FP32");
    assert_eq!(v(0.970, 0.95, Some(1.0), 1.10), Verdict::Poor);
    assert_eq!(v(0.999, 0.995, Some(0.90), 1.10), Verdict::Poor);
    assert_eq!(v(0.850, 0.60, None, 1.10), Verdict::Broken);
    assert_eq!(v(0.999, 0.995, Some(0.60), 1.10), Verdict::Broken);
    let r = figures(0.970, 0.95, Some(1.0), 0.5);
    assert!(r.verdict_reason.contains("0.9700") && r.verdict_reason.contains("slower"), "{}", r.verdict_reason);
    let r = figures(0.999, 0.995, Some(1.0), 1.0);
    assert!(r.verdict_reason.contains("not faster"), "{}", r.verdict_reason);
    // Every sample blank: a cosine of 1.0 compares nothing, so not EXCELLENT.
    let mut r = figures(1.0, 1.0, None, 1.10);
    r.outputs[0].blank_samples = r.samples;
    r.judge();
    assert_eq!(r.verdict, Verdict::Good);
    assert!(r.verdict_reason.contains("blank"), "{}", r.verdict_reason);
}

#[test]
fn gates() {
    let r = figures(0.990, 0.985, None, 1.10);
    assert!(r.check(&Gates::default()).is_empty());
    assert!(r.check(&Gates { min_cosine: Some(0.99), min_speedup: Some(1.1), ..Gates::default() }).is_empty());
    assert_eq!(r.check(&Gates { min_cosine: Some(0.995), ..Gates::default() }).len(), 1);
    let fails = r.check(&Gates { min_top1_agreement: Some(0.9), ..Gates::default() });
    assert!(fails.len() == 1 && fails[0].contains("classifier-shaped"), "{fails:?}");
    let all = r.check(&Gates { min_cosine: Some(0.999), min_top1_agreement: Some(0.9), min_speedup: Some(2.0) });
    assert_eq!(all.len(), 3, "{all:?}");
    let broken = figures(0.5, 0.1, None, 1.0);
    assert_eq!(broken.check(&Gates::default()).len(), 1);
}

#[test]
fn nan_outputs_are_broken() {
    let m = classifier(1);
    let mut nan = m.clone();
    for t in &mut nan.graph_mut().initializer {
        if t.name == "fc_b" {
            let mut v = tensor::to_f32(t).unwrap();
            v[3] = f32::NAN;
            *t = tensor::from_f32("fc_b", &[10], &v);
        }
    }
    let r = validate::validate(&m, &nan, &quick()).unwrap();
    assert_eq!(r.outputs[0].int8_nonfinite, r.samples as u64, "one NaN logit per sample");
    assert_eq!(r.verdict, Verdict::Broken, "{}", r.human());
    assert!(r.verdict_reason.contains("NaN"), "{}", r.verdict_reason);
    assert!(r.cosine_mean.is_finite() && r.cosine_mean > 0.9, "the finite values still agree");
    serde_json::to_string(&r).unwrap();
}
