//! Malformed and hostile models: each gets an error naming the problem, with no panic, no
//! unbounded allocation and no read outside the model's folder. Whatever does load goes on
//! through inspect, cast and the prepare passes, which must not panic either.

mod common;

use kenosis_core::calibrate::{load_samples, InputConfig};
use kenosis_core::cast::{cast, CastOptions, Precision};
use kenosis_core::inspect::Inspection;
use kenosis_core::onnx::builder::{attr_g, attr_ints, node, ModelBuilder, Rng, D};
use kenosis_core::onnx::passes::{prepare, PrepareOptions};
use kenosis_core::onnx::proto::{data_location, data_type as dt, GraphProto, ModelProto, StringStringEntryProto, TensorProto};
use kenosis_core::onnx::{tensor, Model};
use kenosis_core::Error;
use prost::Message;
use std::path::Path;

/// The small real model when ../shared/models has it, else a fixture of the same kind
/// (Conv + BatchNorm + Constant nodes).
fn real_or_fixture() -> Vec<u8> {
    if let Some(p) = common::shared_models().map(|d| d.join("ch_ppocr_mobile_v2.0_cls_infer.onnx")).filter(|p| p.exists()) {
        return std::fs::read(p).unwrap();
    }
    fixture().to_bytes().unwrap()
}

fn fixture() -> Model {
    let mut rng = Rng::new(7);
    let c = 8;
    ModelBuilder::new(11)
        .input("x", dt::FLOAT, &[D::S("N"), 3.into(), 16.into(), 16.into()])
        .initializer(tensor::from_f32("w", &[c, 3, 3, 3], &rng.vec(c as usize * 27, -1.0, 1.0)))
        .initializer(tensor::from_f32("s", &[c], &rng.vec(c as usize, 0.5, 1.5)))
        .initializer(tensor::from_f32("b", &[c], &rng.vec(c as usize, -0.5, 0.5)))
        .initializer(tensor::from_f32("m", &[c], &rng.vec(c as usize, -0.5, 0.5)))
        .initializer(tensor::from_f32("v", &[c], &rng.vec(c as usize, 0.5, 1.5)))
        .node(node("Conv", "conv", &["x", "w"], &["c"], vec![attr_ints("pads", &[1, 1, 1, 1])]))
        .node(node("BatchNormalization", "bn", &["c", "s", "b", "m", "v"], &["y"], vec![]))
        .node(node("Relu", "relu", &["y"], &["z"], vec![]))
        .output("z", dt::FLOAT, &[D::S("N"), c.into(), 16.into(), 16.into()])
        .build()
}

/// Everything a user can run on a loaded model; none of it may panic. Errors are fine.
fn exercise(m: &Model) {
    let _ = Inspection::new(m, None).human();
    let _ = cast(m, &CastOptions { to: Precision::Fp16, half_io: false });
    let _ = prepare(&mut m.clone(), &PrepareOptions { min_opset: Some(13), ..Default::default() });
}

#[test]
fn empty_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.onnx");
    std::fs::write(&p, b"").unwrap();
    let e = Model::load(&p).unwrap_err().to_string();
    assert!(e.contains("empty.onnx") && e.contains("empty"), "{e}");
}

#[test]
fn truncated_model_at_300_offsets() {
    let bytes = real_or_fixture();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cut.onnx");
    let step = (bytes.len() / 300).max(1);
    let (mut errors, mut loaded) = (0, 0);
    for cut in (0..bytes.len()).step_by(step) {
        std::fs::write(&p, &bytes[..cut]).unwrap();
        match Model::load(&p) {
            Err(e) => {
                let s = e.to_string();
                assert!(s.contains("cut.onnx") && s.contains("not an ONNX model"), "cut at {cut}: {s}");
                errors += 1;
            }
            // A cut that falls between two fields is valid protobuf: a smaller model, which the
            // rest of Kenosis must handle (or refuse) like any other.
            Ok(m) => {
                exercise(&m);
                loaded += 1;
            }
        }
    }
    assert!(errors > loaded, "{errors} cuts refused, {loaded} loaded");
}

#[test]
fn seeded_random_bytes() {
    let mut rng = Rng::new(42);
    for i in 0..500 {
        let len = (rng.next_u64() % 4096) as usize;
        let mut b: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        if i % 2 == 0 && !b.is_empty() {
            // Half the buffers start like a model (field 1, ir_version) so decoding gets further.
            b[0] = 0x08;
        }
        match Model::from_bytes(&b) {
            Err(e) => assert!(matches!(e, Error::NotOnnx { .. } | Error::InvalidModel(_)), "{e:?}"),
            Ok(m) => exercise(&m),
        }
    }
}

#[test]
fn valid_protobuf_that_is_not_a_model() {
    let t = tensor::from_f32("t", &[2], &[1.0, 2.0]).encode_to_vec();
    let g = fixture().graph().encode_to_vec();
    let no_graph = ModelProto { ir_version: 8, ..Default::default() }.encode_to_vec();
    for (what, b) in [("tensor", t), ("graph", g), ("model without graph", no_graph)] {
        let e = Model::from_bytes(&b).unwrap_err().to_string();
        assert!(e.contains("not an ONNX model"), "{what}: {e}");
    }
}

fn with_weight(w: TensorProto) -> Model {
    let mut m = fixture();
    m.graph_mut().initializer[0] = w;
    m
}

#[test]
fn raw_data_length_not_matching_dims() {
    // Over 1024 elements, so cast converts it (smaller tensors stay FP32 untouched).
    let bad = TensorProto { name: "w".into(), dims: vec![64, 3, 3, 3], data_type: dt::FLOAT, raw_data: vec![0; 13], ..Default::default() };
    let e = tensor::to_f32(&bad).unwrap_err().to_string();
    assert!(e.contains("`w`") && e.contains("13 bytes"), "{e}");
    let m = Model::from_bytes(&with_weight(bad).to_bytes().unwrap()).unwrap();
    exercise(&m);
    // The passes may leave a tensor they can't read alone (they then skip the rewrite); the
    // commands that must read it refuse, naming it.
    let _ = prepare(&mut m.clone(), &PrepareOptions::default());
    let e = cast(&m, &CastOptions { to: Precision::Fp16, half_io: false }).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("`w`"), "{e}");
    if kenosis_core::runtime::runtime().is_ok() {
        let e = kenosis_core::quantize::quantize(&m, &Default::default()).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains("'w'") || e.contains("`w`"), "{e}");
        println!("quantize: {e}");
    }
}

#[test]
fn negative_and_enormous_dims_error_without_allocating() {
    for dims in [vec![-1, 3, 3, 3], vec![1 << 40, 1 << 40], vec![1 << 31, 1 << 31], vec![i64::MAX, 2], vec![1 << 20, 1 << 20, 4]] {
        let w = TensorProto { name: "w".into(), dims: dims.clone(), data_type: dt::FLOAT, ..Default::default() };
        assert!(tensor::to_f32(&w).is_err(), "{dims:?}");
        let m = with_weight(w);
        exercise(&m);
        let e = cast(&m, &CastOptions { to: Precision::Fp16, half_io: false }).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains("`w`"), "{dims:?}: {e}");
    }
}

#[test]
fn enormous_input_dims_refused_by_calibration() {
    for dims in [[1i64, 3, 1 << 20, 1 << 20], [1, 3, 1 << 40, 1 << 40], [1 << 62, 1 << 62, 4, 4]] {
        let mut m = fixture();
        m.graph_mut().input[0] = kenosis_core::onnx::builder::value_info("x", dt::FLOAT, &dims.map(D::from));
        exercise(&m);
        let e = load_samples(&m, &InputConfig::default()).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains("`x`"), "{dims:?}: {e}");
    }
}

/// A model whose main graph holds an If whose branch holds an If ... `depth` levels deep.
fn nested(depth: usize) -> Model {
    let mut g = GraphProto {
        name: "leaf".into(),
        node: vec![node("Identity", "id", &["x"], &["y"], vec![])],
        output: vec![kenosis_core::onnx::builder::value_info("y", dt::FLOAT, &[1.into()])],
        ..Default::default()
    };
    let leaf = g.clone();
    for i in 0..depth {
        let iff =
            node("If", &format!("if{i}"), &["c"], &["y"], vec![attr_g("then_branch", g), attr_g("else_branch", leaf.clone())]);
        g = GraphProto {
            name: format!("g{i}"),
            node: vec![iff],
            output: vec![kenosis_core::onnx::builder::value_info("y", dt::FLOAT, &[1.into()])],
            ..Default::default()
        };
    }
    let mut m = ModelBuilder::new(13).input("c", dt::BOOL, &[]).input("x", dt::FLOAT, &[1.into()]).build();
    let main = m.graph_mut();
    main.node = g.node;
    main.output = g.output;
    m
}

#[test]
fn deep_subgraph_nesting() {
    // prost stops at 100 nested messages; each If level costs three (graph, node, attribute).
    let mut deepest_ok = 0;
    for depth in [1, 10, 30, 31, 32, 33, 40, 200] {
        let bytes = nested(depth).to_bytes().unwrap();
        match Model::from_bytes(&bytes) {
            Ok(m) => {
                deepest_ok = depth;
                exercise(&m);
            }
            Err(e) => {
                let s = e.to_string();
                assert!(s.contains("nested") && s.contains("subgraph"), "depth {depth}: {s}");
            }
        }
    }
    assert!((30..60).contains(&deepest_ok), "deepest nesting that loads: {deepest_ok}");
}

fn external(location: &str) -> Model {
    let mut m = fixture();
    let w = &mut m.graph_mut().initializer[0];
    w.raw_data.clear();
    w.data_location = data_location::EXTERNAL;
    w.external_data = vec![StringStringEntryProto { key: "location".into(), value: location.into() }];
    m
}

fn load_with(dir: &Path, location: &str) -> String {
    let p = dir.join("m.onnx");
    std::fs::write(&p, external(location).proto.encode_to_vec()).unwrap();
    Model::load(&p).map(|_| ()).unwrap_err().to_string()
}

#[test]
fn external_data_cannot_escape_the_model_folder() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    // A secret beside the folder, of exactly the right size, so only the path check stops it.
    let secret = root.path().join("secret.bin");
    std::fs::write(&secret, vec![7u8; 8 * 27 * 4]).unwrap();
    for loc in ["../secret.bin", "sub/../../secret.bin", secret.to_str().unwrap(), "/etc/passwd"] {
        let e = load_with(&dir, loc);
        assert!(e.contains("`w`") && e.contains("leaves the model's folder"), "{loc}: {e}");
    }
    std::os::unix::fs::symlink(&secret, dir.join("link.bin")).unwrap();
    std::os::unix::fs::symlink(root.path(), dir.join("up")).unwrap();
    for loc in ["link.bin", "up/secret.bin"] {
        let e = load_with(&dir, loc);
        assert!(e.contains("`w`") && e.contains("outside the model's folder"), "{loc}: {e}");
    }
    // Inside the folder but wrong: missing, too short, a folder, odd offsets.
    std::fs::write(dir.join("short.bin"), [0u8; 10]).unwrap();
    std::fs::create_dir(dir.join("folder")).unwrap();
    let e = load_with(&dir, "missing.bin");
    assert!(e.contains("missing.bin"), "{e}");
    let e = load_with(&dir, "folder");
    assert!(e.contains("folder"), "{e}");
    let p = dir.join("m.onnx");
    for (k, v, want) in [("offset", "-1", "not a byte count"), ("length", "18446744073709551615", "which has 10"), ("offset", "11", "which has 10")] {
        let mut m = external("short.bin");
        m.graph_mut().initializer[0].external_data.push(StringStringEntryProto { key: k.into(), value: v.into() });
        std::fs::write(&p, m.proto.encode_to_vec()).unwrap();
        let e = Model::load(&p).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains("`w`") && e.contains(want), "{k}={v}: {e}");
    }
    // The same model from memory: no folder to read from, so external data is refused outright.
    let e = Model::from_bytes(&external("w.bin").proto.encode_to_vec()).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("external"), "{e}");
}
