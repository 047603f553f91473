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
