//! FP16/BF16 casting: which ops ORT's CPU provider runs in half precision (the lists in
//! `cast.rs` come from here), and cast results that ORT loads and runs close to FP32.

use kenosis_core::cast::{cast, CastOptions, Precision, BF16_NATIVE_OPS, FP16_NATIVE_OPS};
use kenosis_core::onnx::builder::{attr_g, attr_i, attr_ints, attr_t, node, ModelBuilder, Rng, D};
use kenosis_core::onnx::proto::{data_type as dt, type_proto, GraphProto, ModelProto, TensorProto};
use kenosis_core::onnx::{tensor, Model};
use kenosis_core::runtime::{Feed, Optimization, Session, SessionOptions};
use ndarray::ArrayD;
use prost::Message;

fn half_tensor(t: i32, name: &str, dims: &[i64]) -> TensorProto {
    let n: i64 = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|i| (i % 7) as f32 * 0.25 - 0.5).collect();
    match t {
        dt::FLOAT16 => tensor::from_f16(name, dims, &v.iter().map(|&x| half::f16::from_f32(x)).collect::<Vec<_>>()),
        _ => tensor::from_bf16(name, dims, &v.iter().map(|&x| half::bf16::from_f32(x)).collect::<Vec<_>>()),
    }
}

/// A one-node model computing `op` entirely in type `t`.
fn one_op(op: &str, t: i32, opset: i64) -> Model {
    let b = ModelBuilder::new(opset).input("x", t, &[1.into(), 4.into(), 8.into(), 8.into()]).output("y", t, &[]);
    let i64s = |name: &str, v: &[i64]| tensor::from_i64(name, &[v.len() as i64], v);
    let axes_input = opset >= 13;
    match op {
        "Identity" | "Flatten" => b.node(node(op, "n", &["x"], &["y"], vec![])),
        "Transpose" => b.node(node(op, "n", &["x"], &["y"], vec![attr_ints("perm", &[0, 2, 3, 1])])),
        "Concat" => b.node(node(op, "n", &["x", "x"], &["y"], vec![attr_i("axis", 1)])),
        "Max" | "Min" => {
            b.initializer(half_tensor(t, "b", &[1, 4, 8, 8])).node(node(op, "n", &["x", "b"], &["y"], vec![]))
        }
        "Clip" => b.initializer(half_tensor(t, "lo", &[])).initializer(half_tensor(t, "hi", &[])).node(node(
            op,
            "n",
            &["x", "lo", "hi"],
            &["y"],
            vec![],
        )),
        "Reshape" => b.initializer(i64s("s", &[1, -1])).node(node(op, "n", &["x", "s"], &["y"], vec![])),
        "Squeeze" | "Unsqueeze" if axes_input => {
            b.initializer(i64s("a", &[0])).node(node(op, "n", &["x", "a"], &["y"], vec![]))
        }
        "Squeeze" | "Unsqueeze" => b.node(node(op, "n", &["x"], &["y"], vec![attr_ints("axes", &[0])])),
        "Expand" => b.initializer(i64s("s", &[2, 4, 8, 8])).node(node(op, "n", &["x", "s"], &["y"], vec![])),
        "Slice" => b
            .initializer(i64s("st", &[0]))
            .initializer(i64s("en", &[2]))
            .initializer(i64s("ax", &[1]))
            .node(node(op, "n", &["x", "st", "en", "ax"], &["y"], vec![])),
        "Gather" => b.initializer(i64s("i", &[0, 1])).node(node(op, "n", &["x", "i"], &["y"], vec![attr_i("axis", 1)])),
        "Conv" => b.initializer(half_tensor(t, "w", &[4, 4, 3, 3])).node(node(op, "n", &["x", "w"], &["y"], vec![])),
        "MatMul" => b.initializer(half_tensor(t, "w", &[8, 8])).node(node(op, "n", &["x", "w"], &["y"], vec![])),
        "Add" | "Mul" => b.initializer(half_tensor(t, "b", &[8])).node(node(op, "n", &["x", "b"], &["y"], vec![])),
        "Resize" => b.initializer(tensor::from_f32("sc", &[4], &[1.0, 1.0, 2.0, 2.0])).node(node(
            op,
            "n",
            &["x", "", "sc"],
            &["y"],
            vec![],
        )),
        "BatchNormalization" => b
            .initializer(half_tensor(t, "s", &[4]))
            .initializer(half_tensor(t, "bb", &[4]))
            .initializer(half_tensor(t, "m", &[4]))
            .initializer(half_tensor(t, "v", &[4]))
            .node(node(op, "n", &["x", "s", "bb", "m", "v"], &["y"], vec![])),
        _ => b.node(node(op, "n", &["x"], &["y"], vec![])),
    }
    .build()
}

/// Whether ORT runs the model's nodes in their own type: it loads, and ORT's optimised graph
/// has no Cast it inserted (its fallback for ops without a kernel of that type).
fn runs_natively(m: &Model) -> Result<bool, String> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("opt.onnx");
    let opts = SessionOptions {
        optimization: Optimization::Basic,
        optimized_model_path: Some(p.clone()),
        ..Default::default()
    };
    Session::from_model(m, &opts).map_err(|e| e.to_string())?;
    let opt = ModelProto::decode(&*std::fs::read(&p).unwrap()).unwrap();
    Ok(!opt.graph.unwrap().node.iter().any(|n| n.op_type == "Cast"))
}

#[test]
fn native_half_ops_have_cpu_kernels() {
    kenosis_core::runtime::runtime().expect("ONNX Runtime: run scripts/install-ort.sh");
    for (t, ops) in [(dt::FLOAT16, FP16_NATIVE_OPS), (dt::BFLOAT16, BF16_NATIVE_OPS)] {
        // BF16 types exist from opset 13; FP16 models may be older.
        let opsets: &[i64] = if t == dt::FLOAT16 { &[11, 12, 13, 17] } else { &[13, 17] };
        for &opset in opsets {
            for op in ops {
                let to = if t == dt::FLOAT16 { Precision::Fp16 } else { Precision::Bf16 };
                let r = runs_natively(&one_op(op, t, opset));
                assert_eq!(r, Ok(to.runs_natively(op, opset)), "{op} at opset {opset} in {}", dt::name(t));
            }
        }
    }
}

#[test]
fn compute_ops_are_float32_only_on_cpu() {
    // If this fails, ORT gained half kernels: extend FP16_NATIVE_OPS / BF16_NATIVE_OPS.
    kenosis_core::runtime::runtime().expect("ONNX Runtime: run scripts/install-ort.sh");
    let ops = [
        "Conv",
        "MatMul",
        "Add",
        "Mul",
        "Relu",
        "Sigmoid",
        "HardSigmoid",
        "HardSwish",
        "Softmax",
        "GlobalAveragePool",
        "Resize",
        "BatchNormalization",
    ];
    for t in [dt::FLOAT16, dt::BFLOAT16] {
        for op in ops {
            let r = runs_natively(&one_op(op, t, 17));
            assert_ne!(r, Ok(true), "{op} in {} now has a CPU kernel", dt::name(t));
        }
    }
}

fn elem(v: &kenosis_core::onnx::proto::ValueInfoProto) -> i32 {
    match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t.elem_type,
        _ => 0,
    }
}

/// Conv → Relu → Clip → Resize → Reshape → MatMul, plus a Constant weight reshaped and added.
fn fixture(opset: i64) -> Model {
    let mut rng = Rng::new(7);
    let lo = tensor::from_f32("lo", &[], &[0.0]);
    let hi = tensor::from_f32("hi", &[], &[6.0]);
    ModelBuilder::new(opset)
        .input("x", dt::FLOAT, &[D::S("N"), 3.into(), 8.into(), 8.into()])
        .initializer(tensor::from_f32("w", &[64, 3, 3, 3], &rng.vec(1728, -0.5, 0.5)))
        .initializer(tensor::from_f32("b", &[64], &rng.vec(64, -0.1, 0.1)))
        .initializer(tensor::from_f32("roi", &[0], &[]))
        .initializer(tensor::from_f32("scales", &[4], &[1.0, 1.0, 2.0, 2.0]))
        .initializer(tensor::from_i64("shape", &[3], &[0, 64, 256]))
        .initializer(tensor::from_f32("wm", &[256, 16], &rng.vec(4096, -0.1, 0.1)))
        .initializer(tensor::from_i64("shape2", &[3], &[1, 64, 16]))
        .node(node("Constant", "c_lo", &[], &["lo_c"], vec![attr_t("value", lo)]))
        .node(node("Constant", "c_hi", &[], &["hi_c"], vec![attr_t("value", hi)]))
        .node(node(
            "Constant",
            "c_w2",
            &[],
            &["w2"],
            vec![attr_t("value", tensor::from_f32("w2", &[64, 16], &rng.vec(1024, -1.0, 1.0)))],
        ))
        .node(node("Conv", "conv", &["x", "w", "b"], &["c"], vec![attr_ints("pads", &[1, 1, 1, 1])]))
        .node(node("Relu", "relu", &["c"], &["r"], vec![]))
        .node(node("Clip", "clip", &["r", "lo_c", "hi_c"], &["k"], vec![]))
        .node(node("Resize", "resize", &["k", "roi", "scales"], &["z"], vec![]))
        .node(node("Reshape", "flat", &["z", "shape"], &["y1"], vec![]))
        .node(node("MatMul", "mm", &["y1", "wm"], &["y"], vec![]))
        .node(node("Reshape", "w2r", &["w2", "shape2"], &["t"], vec![]))
        .node(node("Add", "add", &["y", "t"], &["out"], vec![]))
        .output("out", dt::FLOAT, &[D::S("N"), 64.into(), 16.into()])
        .build()
}

fn run(m: &Model, x: &ArrayD<f32>) -> Vec<f32> {
    let mut s = Session::from_model(m, &SessionOptions::default()).unwrap();
    s.run(&[("x".into(), Feed::F32(x.clone()))]).unwrap().into_iter().flat_map(|(_, a)| a.into_iter()).collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn fp16_and_bf16_run_close_to_fp32() {
    kenosis_core::runtime::runtime().expect("ONNX Runtime: run scripts/install-ort.sh");
    let m = fixture(13);
    let x = ArrayD::from_shape_vec(vec![2, 3, 8, 8], Rng::new(3).vec(384, 0.0, 1.0)).unwrap();
    let want = run(&m, &x);
    for (to, min_cos) in [(Precision::Fp16, 0.9999), (Precision::Bf16, 0.999)] {
        let (h, report) = cast(&m, &CastOptions { to, half_io: false }).unwrap();
        let g = h.graph();
        let init = |n: &str| g.initializer.iter().find(|t| t.name == n).unwrap();
        assert_eq!(init("w").data_type, to.data_type());
        assert_eq!(init("wm").data_type, to.data_type());
        assert_eq!(init("scales").data_type, dt::FLOAT, "Resize scales stay float32");
        assert_eq!(init("shape").data_type, dt::INT64);
        assert_eq!(init("b").data_type, dt::FLOAT, "tiny tensors read only by FP32 ops stay float32");
        assert_eq!(elem(&g.input[0]), dt::FLOAT);
        assert_eq!(elem(&g.output[0]), dt::FLOAT);
        // The Constant weight's Reshape runs in half precision; Add gets it through a Cast.
        let w2r = g.node.iter().find(|n| n.name == "w2r").unwrap();
        assert_eq!(w2r.input[0], "w2");
        let add = g.node.iter().find(|n| n.name == "add").unwrap();
        assert_ne!(add.input[1], "t");
        assert_eq!(report.half_nodes, 1);
        assert!(h.to_bytes().unwrap().len() < m.to_bytes().unwrap().len() * 6 / 10);
        let got = run(&h, &x);
        let c = cosine(&want, &got);
        assert!(c >= min_cos, "{to:?}: cosine {c}");
        // Deterministic: the same input gives the same bytes.
        assert_eq!(cast(&m, &CastOptions { to, half_io: false }).unwrap().0.to_bytes().unwrap(), h.to_bytes().unwrap());
    }
}

#[test]
fn half_io_declares_half_inputs_and_outputs() {
    kenosis_core::runtime::runtime().expect("ONNX Runtime: run scripts/install-ort.sh");
    for to in [Precision::Fp16, Precision::Bf16] {
        let (h, _) = cast(&fixture(13), &CastOptions { to, half_io: true }).unwrap();
        assert_eq!(elem(&h.graph().input[0]), to.data_type());
        assert_eq!(elem(&h.graph().output[0]), to.data_type());
        let s = Session::from_model(&h, &SessionOptions::default()).unwrap();
        assert_eq!(s.inputs()[0].data_type, to.data_type());
        assert_eq!(s.outputs()[0].data_type, to.data_type());
        assert_eq!(s.outputs()[0].name, "out");
    }
}

#[test]
fn bf16_upgrades_old_opsets_to_13() {
    kenosis_core::runtime::runtime().expect("ONNX Runtime: run scripts/install-ort.sh");
    // Softmax changed meaning at 13: the upgrade keeps the old one, and the result still matches.
    let mut m = fixture(11);
    m.graph_mut().node.push(node("Softmax", "sm", &["out"], &["p"], vec![attr_i("axis", 1)]));
    m.graph_mut().output[0].name = "p".into();
    let x = ArrayD::from_shape_vec(vec![2, 3, 8, 8], Rng::new(3).vec(384, 0.0, 1.0)).unwrap();
    let want = run(&m, &x);
    let (h, report) = cast(&m, &CastOptions { to: Precision::Bf16, half_io: false }).unwrap();
    assert_eq!(h.opset(""), Some(13));
    assert!(report.notes.iter().any(|n| n.contains("from 11 to 13")), "{report:?}");
    let c = cosine(&want, &run(&h, &x));
    assert!(c >= 0.999, "cosine {c}");
    // FP16 works at any opset and leaves it alone.
    let (h, _) = cast(&fixture(11), &CastOptions { to: Precision::Fp16, half_io: false }).unwrap();
    assert_eq!(h.opset(""), Some(11));
    Session::from_model(&h, &SessionOptions::default()).unwrap();
}

#[test]
fn subgraph_weights_are_cast_and_outer_tensors_stay_float() {
    kenosis_core::runtime::runtime().expect("ONNX Runtime: run scripts/install-ort.sh");
    let mut rng = Rng::new(11);
    let branch = |name: &str, rng: &mut Rng| -> GraphProto {
        let w = tensor::from_f32("w", &[1024, 3, 1, 1], &rng.vec(3072, -1.0, 1.0));
        let mut g = ModelBuilder::new(13)
            .node(node("Constant", &format!("{name}_w"), &[], &[&format!("{name}_wv")], vec![attr_t("value", w)]))
            .node(node("Conv", &format!("{name}_conv"), &["x", &format!("{name}_wv")], &[&format!("{name}_y")], vec![]))
            .output(&format!("{name}_y"), dt::FLOAT, &[])
            .graph();
        g.name = name.into();
        g
    };
    let m = ModelBuilder::new(13)
        .input("x", dt::FLOAT, &[1.into(), 3.into(), 4.into(), 4.into()])
        .node(node("Constant", "cond", &[], &["c"], vec![attr_t("value", tensor::from_bool("c", &[], &[true]))]))
        .node(node(
            "If",
            "if",
            &["c"],
            &["y"],
            vec![attr_g("then_branch", branch("then", &mut rng)), attr_g("else_branch", branch("else", &mut rng))],
        ))
        .output("y", dt::FLOAT, &[])
        .build();
    let x = ArrayD::from_shape_vec(vec![1, 3, 4, 4], Rng::new(5).vec(48, 0.0, 1.0)).unwrap();
    let want = run(&m, &x);
    let (h, report) = cast(&m, &CastOptions { to: Precision::Fp16, half_io: false }).unwrap();
    assert_eq!(report.tensors_converted, 2, "{report:?}");
    let got = run(&h, &x);
    assert!(cosine(&want, &got) > 0.9999);
}

#[test]
fn nothing_to_cast_is_an_error() {
    let m = ModelBuilder::new(13)
        .input("x", dt::INT64, &[4.into()])
        .node(node("Identity", "i", &["x"], &["y"], vec![]))
        .output("y", dt::INT64, &[4.into()])
        .build();
    let e = cast(&m, &CastOptions { to: Precision::Fp16, half_io: false }).unwrap_err();
    assert!(matches!(e, kenosis_core::Error::Unsupported(_)), "{e}");
}

#[test]
fn values_beyond_fp16_range_keep_float32() {
    kenosis_core::runtime::runtime().expect("ONNX Runtime: run scripts/install-ort.sh");
    let c = 1024;
    let mut rng = Rng::new(2);
    // A BatchNorm whose variance is ~1e8, as in a real PaddleOCR export; clamping it to 65504
    // would blow its output up by ~40x.
    let m = ModelBuilder::new(13)
        .input("x", dt::FLOAT, &[1.into(), (c as i64).into(), 4.into(), 4.into()])
        .initializer(tensor::from_f32("s", &[c as i64], &rng.vec(c, 0.5, 1.5)))
        .initializer(tensor::from_f32("b", &[c as i64], &rng.vec(c, -1.0, 1.0)))
        .initializer(tensor::from_f32("mean", &[c as i64], &rng.vec(c, -1e3, 1e3)))
        .initializer(tensor::from_f32("var", &[c as i64], &rng.vec(c, 1e7, 1e8)))
        .node(node("BatchNormalization", "bn", &["x", "s", "b", "mean", "var"], &["y"], vec![]))
        .output("y", dt::FLOAT, &[])
        .build();
    let (h, report) = cast(&m, &CastOptions { to: Precision::Fp16, half_io: false }).unwrap();
    let var = h.graph().initializer.iter().find(|t| t.name == "var").unwrap();
    assert_eq!(var.data_type, dt::FLOAT);
    assert!(report.notes.iter().any(|n| n.contains("`var`") && n.contains("65504")), "{report:?}");
    let s = h.graph().initializer.iter().find(|t| t.name == "s").unwrap();
    assert_eq!(s.data_type, dt::FLOAT16);
    let x = ArrayD::from_shape_vec(vec![1, c, 4, 4], Rng::new(9).vec(c * 16, -1e4, 1e4)).unwrap();
    let mut s32 = Session::from_model(&m, &SessionOptions::default()).unwrap();
    let want: Vec<f32> = s32.run(&[("x".into(), Feed::F32(x.clone()))]).unwrap().remove(0).1.into_iter().collect();
    let mut s16 = Session::from_model(&h, &SessionOptions::default()).unwrap();
    let got: Vec<f32> = s16.run(&[("x".into(), Feed::F32(x))]).unwrap().remove(0).1.into_iter().collect();
    assert!(cosine(&want, &got) > 0.9999);
}
