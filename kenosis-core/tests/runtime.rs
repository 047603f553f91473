mod common;

use kenosis_core::onnx::Model;
use kenosis_core::runtime::{self, Feed, Session, SessionOptions};
use ndarray::ArrayD;

#[test]
fn loads_ort_and_runs_a_real_model() {
    let info = runtime::runtime().expect("ONNX Runtime: run scripts/install-ort.sh");
    assert!(info.version.starts_with("1."), "{info:?}");
    let Some(dir) = common::shared_models() else { return };
    let model = Model::load(dir.join("ch_ppocr_mobile_v2.0_cls_infer.onnx")).unwrap();
    let mut s = Session::from_model(&model, &SessionOptions::default()).unwrap();
    assert_eq!(s.inputs()[0].name, "x");
    let x = ArrayD::from_elem(vec![1, 3, 48, 192], 0.5f32);
    let out = s.run(&[("x".into(), Feed::F32(x))]).unwrap();
    assert_eq!(out[0].1.shape(), &[1, 2]);
    let sum: f32 = out[0].1.iter().sum();
    assert!((sum - 1.0).abs() < 1e-4, "softmax sums to 1, got {sum}");
}

#[test]
fn a_graph_input_that_is_also_an_output_is_copied_safely() {
    use kenosis_core::onnx::builder::{node, ModelBuilder, D};
    use kenosis_core::onnx::proto::data_type as dt;
    let model = ModelBuilder::new(13)
        .input("x", dt::FLOAT, &[D::N(2)])
        .node(node("Neg", "neg", &["x"], &["y"], vec![]))
        .output("y", dt::FLOAT, &[D::N(2)])
        .output("x", dt::FLOAT, &[D::N(2)])
        .build();
    let mut s = Session::from_model(&model, &SessionOptions::default()).unwrap();
    for _ in 0..3 {
        let x = ArrayD::from_shape_vec(vec![2], vec![1.5f32, -2.0]).unwrap();
        let out = s.run(&[("x".into(), Feed::F32(x))]).unwrap();
        assert_eq!(out[1].0, "x");
        assert_eq!(out[1].1.as_slice().unwrap(), &[1.5, -2.0]);
        assert_eq!(out[0].1.as_slice().unwrap(), &[-1.5, 2.0]);
    }
}
