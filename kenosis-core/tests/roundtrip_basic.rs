mod common;

use kenosis_core::onnx::builder::{attr_ints, node, ModelBuilder, Rng, D};
use kenosis_core::onnx::proto::data_type as dt;
use kenosis_core::onnx::{tensor, Model, SaveOptions};

fn conv_model() -> Model {
    let mut rng = Rng::new(1);
    ModelBuilder::new(13)
        .input("x", dt::FLOAT, &[D::S("N"), 3.into(), 8.into(), 8.into()])
        .initializer(tensor::from_f32("w", &[4, 3, 3, 3], &rng.vec(108, -1.0, 1.0)))
        .node(node("Conv", "conv", &["x", "w"], &["y"], vec![attr_ints("pads", &[1, 1, 1, 1])]))
        .output("y", dt::FLOAT, &[D::S("N"), 4.into(), 8.into(), 8.into()])
        .build()
}

#[test]
fn save_load_and_external_data() {
    let dir = tempfile::tempdir().unwrap();
    let m = conv_model();
    let p = dir.path().join("m.onnx");
    m.save(&p, &SaveOptions::default()).unwrap();
    assert!(matches!(m.save(&p, &SaveOptions::default()), Err(kenosis_core::Error::OutputExists { .. })));
    let back = Model::load(&p).unwrap();
    assert_eq!(back.proto, m.proto);
    let q = dir.path().join("ext.onnx");
    m.save(&q, &SaveOptions { external_data: true, ..Default::default() }).unwrap();
    assert!(dir.path().join("ext.onnx.data").exists());
    let back = Model::load(&q).unwrap();
    assert_eq!(back.graph().initializer, m.graph().initializer);
    let same = SaveOptions { force: true, input: Some(p.clone()), ..Default::default() };
    assert!(matches!(back.save(&p, &same), Err(kenosis_core::Error::OverwriteInput { .. })));
}

#[test]
fn not_onnx_files_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.onnx");
    std::fs::write(&empty, b"").unwrap();
    assert!(Model::load(&empty).unwrap_err().to_string().contains("empty"));
    let junk = dir.path().join("junk.onnx");
    std::fs::write(&junk, b"\xff\xff\xff\xff garbage").unwrap();
    assert!(Model::load(&junk).unwrap_err().to_string().contains("not an ONNX model"));
    assert!(Model::load(dir.path()).unwrap_err().to_string().contains("directory"));
}
