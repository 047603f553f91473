// Placement on small models built in code, checked in ORT's optimised graph.
mod quant_util;

use kenosis_core::onnx::builder::{attr_i, attr_ints, node, ModelBuilder, Rng, D};
use kenosis_core::onnx::proto::data_type as dt;
use kenosis_core::onnx::tensor;
use kenosis_core::onnx::Model;
use kenosis_core::quantize::{self, QuantizeConfig};
use kenosis_core::runtime::Feed;
use kenosis_core::Error;
use ndarray::ArrayD;
use quant_util::{cosine, count, fused_ops, ranges, run};

/// `b` with the weights and biases of `(name, out channels, in channels, kernel)` Convs, in order.
fn with_convs(mut b: ModelBuilder, rng: &mut Rng, convs: &[(&str, i64, i64, i64)]) -> ModelBuilder {
    for &(name, m, c, k) in convs {
        for t in conv_init(rng, name, m, c, k) {
            b = b.initializer(t);
        }
    }
    b
}

fn conv_init(rng: &mut Rng, name: &str, m: i64, c: i64, k: i64) -> Vec<kenosis_core::onnx::proto::TensorProto> {
    let fan = (c * k * k) as f32;
    let w = rng
        .vec((m * c * k * k) as usize, -1.0, 1.0)
        .into_iter()
        .map(|v| v / fan.sqrt())
        .collect::<Vec<_>>();
    vec![
        tensor::from_f32(&format!("{name}_w"), &[m, c, k, k], &w),
        tensor::from_f32(&format!("{name}_b"), &[m], &rng.vec(m as usize, -0.1, 0.1)),
    ]
}

fn conv(name: &str, x: &str, y: &str, k: i64) -> kenosis_core::onnx::proto::NodeProto {
    node(
        "Conv",
        name,
        &[x, &format!("{name}_w"), &format!("{name}_b")],
        &[y],
        vec![attr_ints("pads", &[k / 2; 4])],
    )
}

fn feeds(seed: u64, shape: &[usize], n: usize) -> Vec<Vec<(String, Feed)>> {
    let mut rng = Rng::new(seed);
    let len: usize = shape.iter().product();
    (0..n)
        .map(|_| {
            vec![(
                "x".to_string(),
                Feed::F32(ArrayD::from_shape_vec(shape.to_vec(), rng.vec(len, 0.0, 1.0)).unwrap()),
            )]
        })
        .collect()
}

fn cfg() -> QuantizeConfig {
    QuantizeConfig {
        target_arch: Some("x86_64".into()),
        ..Default::default()
    }
}

/// x -> Conv -> Relu -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> y
fn conv_relu_model() -> Model {
    let mut rng = Rng::new(1);
    let mut b = ModelBuilder::new(13)
        .input("x", dt::FLOAT, &[D::S("N"), 8.into(), 16.into(), 16.into()])
        .output("y", dt::FLOAT, &[D::S("N"), 4.into()]);
    b = with_convs(b, &mut rng, &[("c1", 8, 8, 3), ("c2", 8, 8, 3)]);
    b.initializer(tensor::from_f32("fc_w", &[4, 8], &rng.vec(32, -0.5, 0.5)))
        .initializer(tensor::from_f32("fc_b", &[4], &rng.vec(4, -0.1, 0.1)))
        .node(conv("c1", "x", "c1_out", 3))
        .node(node("Relu", "r1", &["c1_out"], &["r1_out"], vec![]))
        .node(conv("c2", "r1_out", "c2_out", 3))
        .node(node("Relu", "r2", &["c2_out"], &["r2_out"], vec![]))
        .node(node("GlobalAveragePool", "gap", &["r2_out"], &["gap_out"], vec![]))
        .node(node(
            "Flatten",
            "flat",
            &["gap_out"],
            &["flat_out"],
            vec![attr_i("axis", 1)],
        ))
        .node(node(
            "Gemm",
            "fc",
            &["flat_out", "fc_w", "fc_b"],
            &["y"],
            vec![attr_i("transB", 1)],
        ))
        .build()
}

#[test]
fn conv_relu_fuses_into_one_qlinearconv() {
    let m = conv_relu_model();
    let f = feeds(7, &[1, 8, 16, 16], 4);
    let r = ranges(&m, &f);
    let q = quantize::apply(&m, &r, &cfg()).unwrap();
    let c = fused_ops(&q.model);
    assert_eq!(count(&c, "QLinearConv"), 2, "{c:?}");
    assert_eq!(count(&c, "Relu"), 0, "Relu is folded into QLinearConv: {c:?}");
    assert_eq!(count(&c, "Conv"), 0, "{c:?}");
    // The emitted graph: Q right after each Relu, never between Conv and Relu.
    let g = q.model.graph();
    for n in g.node.iter().filter(|n| n.op_type == "Relu") {
        let conv_out = &n.input[0];
        let readers: Vec<_> = g.node.iter().filter(|m| m.input.contains(conv_out)).collect();
        assert_eq!(readers.len(), 1, "Conv output feeds only its Relu");
    }
    assert_eq!(q.summary.weight_bits, 7);
    assert!(q.summary.nodes.iter().any(|d| d.node == "r1" && d.quantized));
    // Output y stays float, produced by a float op, not a DequantizeLinear.
    let prod = g.node.iter().find(|n| n.output.iter().any(|o| o == "y")).unwrap();
    assert_ne!(prod.op_type, "DequantizeLinear");
    assert_eq!(g.output[0].name, "y");
    assert_eq!(
        tensor::to_f32(
            g.initializer
                .iter()
                .find(|t| t.name.ends_with("_scale") && t.name.starts_with("r1_out"))
                .unwrap()
        )
        .unwrap()
        .len(),
        1
    );
    // Accuracy on the fixture.
    let a = run(&m, &f[0]);
    let b = run(&q.model, &f[0]);
    let cos = cosine(&a[0].1, &b[0].1);
    assert!(cos > 0.99, "cosine {cos}");
}

#[test]
fn weights_are_int8_in_range_with_explicit_zero_points() {
    let m = conv_relu_model();
    let r = ranges(&m, &feeds(7, &[1, 8, 16, 16], 2));
    for (bits, qmax) in [(7u8, 63i8), (8, 127)] {
        for per_channel in [false, true] {
            let q = quantize::apply(
                &m,
                &r,
                &QuantizeConfig {
                    weight_bits: Some(bits),
                    per_channel,
                    ..cfg()
                },
            )
            .unwrap();
            let g = q.model.graph();
            let w = g
                .initializer
                .iter()
                .find(|t| t.name.starts_with("c1_w") && t.data_type == dt::INT8 && t.dims.len() == 4)
                .unwrap();
            let v = tensor::to_i8(w).unwrap();
            assert!(v.iter().all(|&x| x >= -qmax && x <= qmax));
            assert!(v.iter().any(|&x| x == qmax || x == -qmax));
            for n in g
                .node
                .iter()
                .filter(|n| n.op_type == "DequantizeLinear" || n.op_type == "QuantizeLinear")
            {
                assert_eq!(n.input.len(), 3, "explicit zero point on {}", n.name);
            }
            let wdq = g
                .node
                .iter()
                .find(|n| n.op_type == "DequantizeLinear" && n.input[0] == w.name)
                .unwrap();
            let axis = wdq.attribute.iter().find(|a| a.name == "axis").and_then(|a| a.i);
            assert_eq!(axis, per_channel.then_some(0));
            let bdq = g
                .node
                .iter()
                .find(|n| n.op_type == "DequantizeLinear" && n.input[0].starts_with("c1_b"))
                .unwrap();
            let bq = g.initializer.iter().find(|t| t.name == bdq.input[0]).unwrap();
            assert_eq!(bq.data_type, dt::INT32);
            let c = fused_ops(&q.model);
            assert_eq!(
                count(&c, "QLinearConv"),
                2,
                "bits {bits} per_channel {per_channel}: {c:?}"
            );
        }
    }
}

#[test]
fn concat_of_quantized_inputs_becomes_qlinearconcat() {
    let mut rng = Rng::new(2);
    let mut b = ModelBuilder::new(13)
        .input("x", dt::FLOAT, &[1.into(), 8.into(), 16.into(), 16.into()])
        .output("y", dt::FLOAT, &[1.into(), 4.into(), 16.into(), 16.into()]);
    b = with_convs(b, &mut rng, &[("a", 8, 8, 3), ("b", 8, 8, 1), ("c", 4, 16, 1)]);
    let m = b
        .node(conv("a", "x", "a_out", 3))
        .node(node("Relu", "ra", &["a_out"], &["ra_out"], vec![]))
        .node(conv("b", "x", "b_out", 1))
        .node(node(
            "Concat",
            "cat",
            &["ra_out", "b_out"],
            &["cat_out"],
            vec![attr_i("axis", 1)],
        ))
        .node(conv("c", "cat_out", "y", 1))
        .build();
    let f = feeds(3, &[1, 8, 16, 16], 3);
    let q = quantize::apply(&m, &ranges(&m, &f), &cfg()).unwrap();
    let c = fused_ops(&q.model);
    assert_eq!(count(&c, "QLinearConcat"), 1, "{c:?}");
    assert_eq!(
        count(&c, "QLinearConv"),
        2,
        "the last Conv writes the graph output and stays float: {c:?}"
    );
    let last = q.summary.nodes.iter().find(|d| d.node == "c").unwrap();
    assert!(!last.quantized && last.reason.contains("graph output"), "{last:?}");
    let cos = cosine(&run(&m, &f[0])[0].1, &run(&q.model, &f[0])[0].1);
    assert!(cos > 0.99, "cosine {cos}");
}

/// x -> Conv -> Relu -> MaxPool -> Resize(scales) -> Reshape -> Reshape -> Conv -> Relu -> Conv -> y
#[test]
fn data_movement_keeps_identical_qparams_and_non_data_inputs_stay_float() {
    let mut rng = Rng::new(4);
    let mut b = ModelBuilder::new(13)
        .input("x", dt::FLOAT, &[1.into(), 8.into(), 16.into(), 16.into()])
        .output("y", dt::FLOAT, &[1.into(), 4.into(), 16.into(), 16.into()]);
    b = with_convs(b, &mut rng, &[("a", 8, 8, 3), ("b", 8, 8, 3), ("c", 4, 8, 1)]);
    let m = b
        .initializer(tensor::from_f32("scales", &[4], &[1.0, 1.0, 2.0, 2.0]))
        .initializer(tensor::from_i64("shape1", &[3], &[1, 8, 256]))
        .initializer(tensor::from_i64("shape2", &[4], &[1, 8, 16, 16]))
        .node(conv("a", "x", "a_out", 3))
        .node(node("Relu", "ra", &["a_out"], &["ra_out"], vec![]))
        .node(node(
            "MaxPool",
            "pool",
            &["ra_out"],
            &["pool_out"],
            vec![attr_ints("kernel_shape", &[2, 2]), attr_ints("strides", &[2, 2])],
        ))
        .node(node(
            "Resize",
            "up",
            &["pool_out", "", "scales"],
            &["up_out"],
            vec![kenosis_core::onnx::builder::attr_s("mode", "nearest")],
        ))
        .node(node("Reshape", "rs1", &["up_out", "shape1"], &["rs1_out"], vec![]))
        .node(node("Reshape", "rs2", &["rs1_out", "shape2"], &["rs2_out"], vec![]))
        .node(conv("b", "rs2_out", "b_out", 3))
        .node(node("Relu", "rb", &["b_out"], &["rb_out"], vec![]))
        .node(conv("c", "rb_out", "y", 1))
        .build();
    let f = feeds(5, &[1, 8, 16, 16], 3);
    let q = quantize::apply(&m, &ranges(&m, &f), &cfg()).unwrap();
    let g = q.model.graph();
    // Each data-movement op reads a DQ and feeds a Q with the very same scale and zero point.
    for op in ["pool", "up", "rs1", "rs2"] {
        let n = g.node.iter().find(|n| n.name == op).unwrap();
        let dq = g.node.iter().find(|d| d.output[0] == n.input[0]).unwrap();
        assert_eq!(dq.op_type, "DequantizeLinear", "{op}");
        let qn = g.node.iter().find(|d| d.input[0] == n.output[0]).unwrap();
        assert_eq!(qn.op_type, "QuantizeLinear", "{op}");
        assert_eq!(dq.input[1..], qn.input[1..], "{op}: identical scale and zero point");
    }
    // Non-data inputs are untouched.
    let up = g.node.iter().find(|n| n.name == "up").unwrap();
    assert_eq!(up.input[2], "scales");
    assert_eq!(g.node.iter().find(|n| n.name == "rs1").unwrap().input[1], "shape1");
    let c = fused_ops(&q.model);
    assert_eq!(count(&c, "QLinearConv"), 2, "{c:?}");
    // Only the DQ in front of the last (float) Conv is left.
    assert_eq!(
        count(&c, "DequantizeLinear"),
        1,
        "only the float Conv reads a DQ: {c:?}"
    );
    let cos = cosine(&run(&m, &f[0])[0].1, &run(&q.model, &f[0])[0].1);
    assert!(cos > 0.99, "cosine {cos}");
}

#[test]
fn already_quantized_models_are_refused() {
    let m = conv_relu_model();
    let q = quantize::apply(&m, &ranges(&m, &feeds(1, &[1, 8, 16, 16], 1)), &cfg()).unwrap();
    let e = quantize::apply(&q.model, &Default::default(), &cfg()).unwrap_err();
    assert!(matches!(e, Error::AlreadyQuantized(_)), "{e}");
    assert!(
        e.to_string().contains("QuantizeLinear") || e.to_string().contains("DequantizeLinear"),
        "{e}"
    );
    let conv_int = ModelBuilder::new(13)
        .input("x", dt::UINT8, &[1.into(), 1.into(), 4.into(), 4.into()])
        .input("w", dt::UINT8, &[1.into(), 1.into(), 1.into(), 1.into()])
        .output("y", dt::INT32, &[1.into(), 1.into(), 4.into(), 4.into()])
        .node(node("ConvInteger", "ci", &["x", "w"], &["y"], vec![]))
        .build();
    let e = quantize::apply(&conv_int, &Default::default(), &cfg()).unwrap_err();
    assert!(
        e.to_string().contains("`ci`") && e.to_string().contains("ConvInteger"),
        "{e}"
    );
}

#[test]
fn no_float_compute_is_refused() {
    let m = ModelBuilder::new(13)
        .input("x", dt::FLOAT, &[1.into(), 4.into()])
        .output("y", dt::FLOAT, &[1.into(), 4.into()])
        .node(node("Relu", "r", &["x"], &["y"], vec![]))
        .build();
    let e = quantize::apply(&m, &Default::default(), &cfg()).unwrap_err();
    assert!(matches!(e, Error::NothingToQuantize(_)), "{e}");
}

#[test]
fn rebuild_is_byte_identical() {
    let m = conv_relu_model();
    // The full pipeline (prepare + calibrate through ORT + apply) ...
    let a = quantize::quantize(&m, &cfg()).unwrap();
    assert!(a.summary.quantized.get("Conv") == Some(&2), "{:?}", a.summary);
    // ... and a rebuild from the stored ranges, with no ORT, give the same bytes.
    let json = serde_json::to_string(&a.ranges).unwrap();
    let stored: kenosis_core::calibrate::Ranges = serde_json::from_str(&json).unwrap();
    let b = quantize::rebuild(&m, &stored, &cfg(), &[]).unwrap();
    assert_eq!(a.model.to_bytes().unwrap(), b.model.to_bytes().unwrap());
    assert_eq!(a.summary.nodes, b.summary.nodes); // notes differ: only quantize() calibrates
    let c = quantize::rebuild(&m, &stored, &cfg(), &[]).unwrap();
    assert_eq!(b.model.to_bytes().unwrap(), c.model.to_bytes().unwrap());
}

/// x -> Conv -> HardSwish -> Conv -> {HardSigmoid, Mul} -> Conv -> y
#[test]
fn hard_swish_and_hard_sigmoid_run_as_qlinear_add_and_mul() {
    let mut rng = Rng::new(6);
    let mut b = ModelBuilder::new(14)
        .input("x", dt::FLOAT, &[1.into(), 8.into(), 16.into(), 16.into()])
        .output("y", dt::FLOAT, &[1.into(), 4.into(), 16.into(), 16.into()]);
    b = with_convs(b, &mut rng, &[("a", 8, 8, 3), ("b", 8, 8, 3), ("c", 4, 8, 1)]);
    let m = b
        .node(conv("a", "x", "a_out", 3))
        .node(node("HardSwish", "hs", &["a_out"], &["hs_out"], vec![]))
        .node(conv("b", "hs_out", "b_out", 3))
        .node(node(
            "HardSigmoid",
            "hsig",
            &["b_out"],
            &["hsig_out"],
            vec![kenosis_core::onnx::builder::attr_f("alpha", 0.2)],
        ))
        .node(node("Mul", "gate", &["b_out", "hsig_out"], &["gate_out"], vec![]))
        .node(conv("c", "gate_out", "y", 1))
        .build();
    let f = feeds(8, &[1, 8, 16, 16], 3);
    let q = quantize::apply(&m, &ranges(&m, &f), &cfg()).unwrap();
    let c = fused_ops(&q.model);
    assert_eq!(count(&c, "QLinearConv"), 2, "{c:?}");
    assert_eq!(count(&c, "QLinearAdd"), 2, "{c:?}");
    assert_eq!(count(&c, "QLinearMul"), 2, "{c:?}");
    for op in ["HardSwish", "HardSigmoid", "Clip", "Add", "Mul"] {
        assert_eq!(count(&c, op), 0, "{op} left in float: {c:?}");
    }
    let a = run(&m, &f[0]);
    let b = run(&q.model, &f[0]);
    let cos = cosine(&a[0].1, &b[0].1);
    assert!(cos > 0.99, "cosine {cos}");
}

#[test]
fn first_conv_on_pixels_stays_float() {
    let mut rng = Rng::new(11);
    let mut b = ModelBuilder::new(13)
        .input("x", dt::FLOAT, &[1.into(), 3.into(), 16.into(), 16.into()])
        .output("y", dt::FLOAT, &[1.into(), 4.into(), 16.into(), 16.into()]);
    b = with_convs(b, &mut rng, &[("a", 8, 3, 3), ("b", 8, 8, 3), ("c", 4, 8, 1)]);
    let m = b
        .node(conv("a", "x", "a_out", 3))
        .node(node("Relu", "ra", &["a_out"], &["ra_out"], vec![]))
        .node(conv("b", "ra_out", "b_out", 3))
        .node(node("Relu", "rb", &["b_out"], &["rb_out"], vec![]))
        .node(conv("c", "rb_out", "y", 1))
        .build();
    let f = feeds(12, &[1, 3, 16, 16], 2);
    let q = quantize::apply(&m, &ranges(&m, &f), &cfg()).unwrap();
    let a = q.summary.nodes.iter().find(|d| d.node == "a").unwrap();
    assert!(!a.quantized && a.reason.contains("first"), "{a:?}");
    let c = fused_ops(&q.model);
    assert_eq!(count(&c, "QLinearConv"), 1, "{c:?}");
}

#[test]
fn paddle_style_bias_add_folds_into_the_conv() {
    let mut rng = Rng::new(13);
    let m = ModelBuilder::new(13)
        .input("x", dt::FLOAT, &[1.into(), 8.into(), 16.into(), 16.into()])
        .output("y", dt::FLOAT, &[1.into(), 4.into(), 16.into(), 16.into()])
        .initializer(tensor::from_f32("w1", &[8, 8, 3, 3], &rng.vec(576, -0.1, 0.1)))
        .initializer(tensor::from_f32("b1", &[8], &rng.vec(8, -0.1, 0.1)))
        .initializer(tensor::from_i64("bshape", &[4], &[1, 8, 1, 1]))
        .initializer(tensor::from_f32("w2", &[4, 8, 1, 1], &rng.vec(32, -0.3, 0.3)))
        .node(node(
            "Conv",
            "c1",
            &["x", "w1"],
            &["c1_out"],
            vec![attr_ints("pads", &[1; 4])],
        ))
        .node(node("Reshape", "rb", &["b1", "bshape"], &["b1r"], vec![]))
        .node(node("Add", "add", &["c1_out", "b1r"], &["add_out"], vec![]))
        .node(node("Relu", "relu", &["add_out"], &["relu_out"], vec![]))
        .node(node("Conv", "c2", &["relu_out", "w2"], &["y"], vec![]))
        .build();
    let q = quantize::quantize(&m, &cfg()).unwrap();
    assert!(
        q.summary.notes.iter().any(|n| n.contains("folded into the Conv bias")),
        "{:?}",
        q.summary.notes
    );
    let c = fused_ops(&q.model);
    assert_eq!(count(&c, "QLinearConv"), 1, "{c:?}");
    assert_eq!(count(&c, "QLinearAdd") + count(&c, "Add"), 0, "{c:?}");
    let f = feeds(14, &[1, 8, 16, 16], 1);
    let cos = cosine(&run(&m, &f[0])[0].1, &run(&q.model, &f[0])[0].1);
    assert!(cos > 0.99, "cosine {cos}");
}

#[test]
fn secondary_inputs_and_exclusions_stay_float() {
    let mut rng = Rng::new(15);
    let mut b = ModelBuilder::new(13)
        .input("x", dt::FLOAT, &[1.into(), 8.into(), 16.into(), 16.into()])
        .input("scale_factor", dt::FLOAT, &[1.into(), 1.into()])
        .output("y", dt::FLOAT, &[1.into(), 4.into(), 16.into(), 16.into()]);
    b = with_convs(b, &mut rng, &[("a", 8, 8, 3), ("b", 8, 8, 3), ("c", 4, 8, 1)]);
    let m = b
        .initializer(tensor::from_i64("s4", &[4], &[1, 1, 1, 1]))
        .node(conv("a", "x", "a_out", 3))
        .node(node("Relu", "ra", &["a_out"], &["ra_out"], vec![]))
        .node(node("Reshape", "sf", &["scale_factor", "s4"], &["sf4"], vec![]))
        .node(node("Mul", "scaled", &["ra_out", "sf4"], &["m_out"], vec![]))
        .node(conv("b", "m_out", "b_out", 3))
        .node(node("Relu", "rb", &["b_out"], &["rb_out"], vec![]))
        .node(conv("c", "rb_out", "y", 1))
        .build();
    let mut f = feeds(16, &[1, 8, 16, 16], 2);
    for s in &mut f {
        s.push(("scale_factor".into(), Feed::F32(ArrayD::from_elem(vec![1, 1], 1.5))));
    }
    let r = ranges(&m, &f);
    let q = quantize::apply(&m, &r, &cfg()).unwrap();
    let mul = q.summary.nodes.iter().find(|d| d.node == "scaled").unwrap();
    assert!(!mul.quantized && mul.reason.contains("non-primary"), "{mul:?}");
    // Everything downstream of the scale_factor path stays float too.
    let b_conv = q.summary.nodes.iter().find(|d| d.node == "b").unwrap();
    assert!(!b_conv.quantized && b_conv.reason.contains("non-primary"), "{b_conv:?}");
    let c = fused_ops(&q.model);
    assert_eq!(count(&c, "QLinearConv"), 1, "{c:?}");
    let m2 = conv_relu_model();
    let r2 = ranges(&m2, &feeds(17, &[1, 8, 16, 16], 2));
    let ex = quantize::apply(
        &m2,
        &r2,
        &QuantizeConfig {
            exclude_nodes: vec!["c2".into()],
            ..cfg()
        },
    )
    .unwrap();
    let d = ex.summary.nodes.iter().find(|d| d.node == "c2").unwrap();
    assert!(!d.quantized && d.reason.contains("excluded"), "{d:?}");
    assert_eq!(count(&fused_ops(&ex.model), "QLinearConv"), 1);
    let e = quantize::apply(
        &m2,
        &r2,
        &QuantizeConfig {
            exclude_ops: vec!["Conv".into(), "Gemm".into()],
            ..cfg()
        },
    )
    .unwrap_err();
    assert!(matches!(e, Error::NothingToQuantize(_)), "{e}");
}
