//! Property tests on the fuzzed entry points (model loading, inspect, cast, the prepare passes),
//! bounded to a few hundred cases so CI runs them in seconds; `fuzz/` runs the same entry points
//! for longer. Inputs that once crashed live in `tests/regressions/` and are replayed here.

mod common;

use kenosis_core::cast::{cast, CastOptions, Precision};
use kenosis_core::inspect::Inspection;
use kenosis_core::onnx::builder::{attr_f, attr_i, attr_ints, attr_t, node, ModelBuilder, Rng, D};
use kenosis_core::onnx::passes::{prepare, PrepareOptions};
use kenosis_core::onnx::proto::{data_type as dt, TensorProto};
use kenosis_core::onnx::{tensor, Model};
use proptest::prelude::*;
use std::path::Path;

/// Everything the fuzz targets run on a loaded model; none of it may panic.
fn exercise(m: &Model) {
    let _ = Inspection::new(m, None).human();
    let _ = cast(m, &CastOptions { to: Precision::Fp16, half_io: false });
    for min_opset in [None, Some(13)] {
        let mut p = m.clone();
        if prepare(&mut p, &PrepareOptions { min_opset, ..Default::default() }).is_ok() {
            // What prepare returns must survive another round of everything.
            let _ = p.to_bytes().map(|b| Model::from_bytes(&b));
            let _ = Inspection::new(&p, None).human();
        }
    }
}

fn load_and_exercise(bytes: &[u8]) {
    if let Ok(m) = Model::from_bytes(bytes) {
        exercise(&m);
    }
}

/// A small fixture with the patterns the passes rewrite: Constant weights, BatchNorm after
/// Conv, a written-out hard-swish, Identity, a Cast of a constant.
fn fixture() -> Model {
    let mut rng = Rng::new(3);
    ModelBuilder::new(11)
        .input("x", dt::FLOAT, &[D::S("N"), 3.into(), 8.into(), 8.into()])
        .node(node("Constant", "cw", &[], &["w"], vec![attr_t("value", tensor::from_f32("w", &[4, 3, 3, 3], &rng.vec(108, -1.0, 1.0)))]))
        .initializer(tensor::from_f32("s", &[4], &rng.vec(4, 0.5, 1.5)))
        .initializer(tensor::from_f32("b", &[4], &rng.vec(4, -0.5, 0.5)))
        .initializer(tensor::from_f32("m", &[4], &rng.vec(4, -0.5, 0.5)))
        .initializer(tensor::from_f32("v", &[4], &rng.vec(4, 0.5, 1.5)))
        .initializer(tensor::from_f32("three", &[], &[3.0]))
        .initializer(tensor::from_f32("six", &[], &[6.0]))
        .initializer(tensor::from_f32("zero", &[], &[0.0]))
        .node(node("Conv", "conv", &["x", "w"], &["c"], vec![attr_ints("pads", &[1, 1, 1, 1])]))
        .node(node("BatchNormalization", "bn", &["c", "s", "b", "m", "v"], &["y"], vec![attr_f("epsilon", 1e-5)]))
        .node(node("Identity", "id", &["y"], &["y1"], vec![]))
        .node(node("Add", "add3", &["y1", "three"], &["a"], vec![]))
        .node(node("Clip", "clip", &["a", "zero", "six"], &["cl"], vec![]))
        .node(node("Mul", "mul", &["y1", "cl"], &["mu"], vec![]))
        .node(node("Div", "div", &["mu", "six"], &["hs"], vec![]))
        .node(node("Cast", "cast", &["hs"], &["z"], vec![attr_i("to", dt::FLOAT as i64)]))
        .output("z", dt::FLOAT, &[D::S("N"), 4.into(), 8.into(), 8.into()])
        .build()
}

fn fixture_bytes() -> Vec<u8> {
    fixture().to_bytes().unwrap()
}

const OPS: &[&str] =
    &["Conv", "BatchNormalization", "Relu", "Add", "Mul", "Div", "Clip", "Identity", "Dropout", "Cast", "Constant", "Reshape", "If"];

/// A random small graph: nodes of the ops the passes care about, wired to random earlier
/// tensors (or to names that don't exist), with initializers of random (sometimes lying) shapes.
fn random_model(seed: u64, nodes: usize, opset: i64) -> Model {
    let mut rng = Rng::new(seed);
    let mut pick = |n: usize| (rng.next_u64() % n.max(1) as u64) as usize;
    let mut names = vec!["x".to_string()];
    let mut b = ModelBuilder::new(opset).input("x", dt::FLOAT, &[1.into(), 3.into(), 4.into(), 4.into()]);
    for i in 0..4 {
        let dims: Vec<i64> = (0..pick(5)).map(|_| [1, 3, 4, 0, -1, 1 << 40][pick(6)]).collect();
        let n = tensor::numel("t", &dims).unwrap_or(0).min(64);
        let mut t = tensor::from_f32(&format!("init{i}"), &dims, &vec![0.5; n]);
        if pick(4) == 0 {
            t.raw_data.truncate(t.raw_data.len() / 2);
        }
        if pick(6) == 0 {
            t.data_type = [dt::FLOAT16, dt::INT64, dt::UNDEFINED, 999][pick(4)];
        }
        names.push(t.name.clone());
        b = b.initializer(t);
    }
    for i in 0..nodes {
        let op = OPS[pick(OPS.len())];
        let arity = pick(6);
        let ins: Vec<String> = (0..arity).map(|_| if pick(10) == 0 { "missing".into() } else { names[pick(names.len())].clone() }).collect();
        let out = format!("t{i}");
        let ins_ref: Vec<&str> = ins.iter().map(String::as_str).collect();
        let mut attrs = Vec::new();
        match op {
            "Constant" => attrs.push(attr_t("value", TensorProto { name: out.clone(), dims: vec![pick(3) as i64], data_type: dt::FLOAT, raw_data: vec![0; pick(12)], ..Default::default() })),
            "Cast" => attrs.push(attr_i("to", [dt::FLOAT, dt::FLOAT16, dt::INT64, 0][pick(4)] as i64)),
            "Clip" if pick(2) == 0 => attrs.push(attr_f("max", 6.0)),
            "BatchNormalization" => attrs.push(attr_f("epsilon", [1e-5, 0.0, -1.0, f32::NAN][pick(4)])),
            "If" => attrs.push(kenosis_core::onnx::builder::attr_g("then_branch", fixture().graph().clone())),
            _ => {}
        }
        b = b.node(node(op, &format!("n{i}"), &ins_ref, &[&out], attrs));
        names.push(out);
    }
    let last = names.last().cloned().unwrap_or_default();
    b.output(&last, dt::FLOAT, &[]).build()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        load_and_exercise(&bytes);
    }

    #[test]
    fn mutated_models_never_panic(edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8)) {
        let mut b = fixture_bytes();
        for (at, byte, kind) in edits {
            let i = at % (b.len() + 1);
            match kind {
                0 if i < b.len() => b[i] = byte,
                1 => b.insert(i, byte),
                _ if i < b.len() => { b.remove(i); }
                _ => {}
            }
        }
        load_and_exercise(&b);
    }

    #[test]
    fn random_graphs_never_panic(seed in any::<u64>(), nodes in 1usize..14, opset in prop_oneof![Just(7i64), Just(11), Just(13), Just(17), Just(22)]) {
        let m = random_model(seed, nodes, opset);
        exercise(&m);
        load_and_exercise(&m.to_bytes().unwrap());
    }
}

#[test]
fn prepare_keeps_the_fixture_loadable() {
    let m = fixture();
    let mut p = m.clone();
    let r = prepare(&mut p, &PrepareOptions { min_opset: Some(13), ..Default::default() }).unwrap();
    assert_eq!(r.batchnorm_folded, 1);
    assert!(Model::from_bytes(&p.to_bytes().unwrap()).is_ok());
}

/// Replays every file in `tests/regressions/` (inputs that once crashed a fuzz target or a
/// property test) through the same entry points.
#[test]
fn replay_regressions() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    let replayed = files.iter().filter(|p| p.extension().is_some_and(|x| x != "md")).count();
    for f in files.iter().filter(|p| p.extension().is_some_and(|x| x != "md")) {
        let bytes = std::fs::read(f).unwrap();
        let r = std::panic::catch_unwind(|| load_and_exercise(&bytes));
        assert!(r.is_ok(), "{} panics again", f.display());
    }
    assert!(replayed > 0, "no regression inputs in {}", dir.display());
}

