//! Tells whether a line of text is upright (0) or upside down (180), with the INT8 model that
//! build.rs quantized and validated, next to the FP32 original.
//!
//! ```text
//! cargo run -p orientation --release -- [IMAGE...]     # default: images/line.png and its 180° turn
//! ```

use kenosis_core::runtime::{Feed, Session, SessionOptions};
use kenosis_core::QuantizedModel;
use ndarray::{Array4, ArrayD};
use std::path::PathBuf;

/// The INT8 model and the metrics it was validated with, embedded at compile time.
static CLS: QuantizedModel = kenosis_core::include_quantized!("models/ch_ppocr_mobile_v2.0_cls_infer.onnx");

/// The FP32 original, only to show that both agree.
static CLS_FP32: &[u8] = include_bytes!("../models/ch_ppocr_mobile_v2.0_cls_infer.onnx");

const LABELS: [&str; 2] = ["0", "180"];
const H: u32 = 48;
const W: u32 = 192;

/// PaddleOCR's classifier input: height 48 keeping the aspect ratio (width at most 192),
/// BGR, `(x / 255 - 0.5) / 0.5`, padded on the right with zeros.
fn preprocess(img: &image::RgbImage) -> Array4<f32> {
    let ratio = img.width() as f32 / img.height().max(1) as f32;
    let w = ((H as f32 * ratio).ceil() as u32).clamp(1, W);
    let resized = image::imageops::resize(img, w, H, image::imageops::FilterType::Triangle);
    let mut x = Array4::<f32>::zeros((1, 3, H as usize, W as usize));
    for (px, py, p) in resized.enumerate_pixels() {
        for c in 0..3 {
            // BGR order: channel 0 is blue.
            let v = p.0[2 - c] as f32 / 255.0;
            x[[0, c, py as usize, px as usize]] = (v - 0.5) / 0.5;
        }
    }
    x
}

fn classify(session: &mut Session, x: &Array4<f32>) -> Result<(usize, f32), kenosis_core::Error> {
    let name = session.inputs()[0].name.clone();
    let out = session.run(&[(name, Feed::F32(x.clone().into_dyn()))])?;
    let probs: &ArrayD<f32> = &out[0].1;
    let p: Vec<f32> = probs.iter().copied().collect();
    let best = if p.get(1).copied().unwrap_or(0.0) > p.first().copied().unwrap_or(0.0) { 1 } else { 0 };
    Ok((best, p.get(best).copied().unwrap_or(0.0)))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let images = if args.is_empty() { vec![root.join("images/line.png"), root.join("images/line_180.png")] } else { args };

    let opts = SessionOptions::default();
    let mut int8 = Session::from_bytes(CLS.bytes, &opts)?;
    let mut fp32 = Session::from_bytes(CLS_FP32, &opts)?;

    let mut disagree = 0;
    for path in &images {
        let img = image::open(path).map_err(|e| format!("{}: {e}", path.display()))?.to_rgb8();
        let x = preprocess(&img);
        let (a, pa) = classify(&mut fp32, &x)?;
        let (b, pb) = classify(&mut int8, &x)?;
        if a != b {
            disagree += 1;
        }
        println!(
            "{}: FP32 {:>3} ({:.3})  INT8 {:>3} ({:.3}){}",
            path.display(),
            LABELS[a],
            pa,
            LABELS[b],
            pb,
            if a == b { "" } else { "  <- differ" }
        );
    }

    let m = &CLS.metrics;
    println!();
    println!("INT8 model embedded from {} ({} bytes)", CLS.source, CLS.bytes.len());
    println!("  verdict      {}", m.verdict);
    let top1 = m.top1_agreement.map(|t| format!("{:.1}%", t * 100.0)).unwrap_or_else(|| "n/a".into());
    println!("  cosine       {:.5} mean, {:.5} worst sample; top-1 agreement {top1}", m.cosine_mean, m.cosine_min);
    println!("  latency      FP32 {:.3} ms, INT8 {:.3} ms ({:.2}x, measured during the build)", m.fp32_ms, m.int8_ms, m.speedup);
    println!("  size         {} -> {} bytes", m.fp32_bytes, m.int8_bytes);
    println!("  fused        {} QLinearConv, {} DequantizeLinear left", m.fused_count("QLinearConv"), m.fused_count("DequantizeLinear"));
    println!(
        "  weights      {}-bit, {}",
        m.weight_bits,
        if m.per_channel { "per channel" } else { "per tensor" }
    );
    println!("  built by     Kenosis {} with ONNX Runtime {}; key {}", m.kenosis_version, m.ort_version, &m.key[..16.min(m.key.len())]);
    if disagree > 0 {
        return Err(format!("INT8 and FP32 disagree on {disagree} of {} images", images.len()).into());
    }
    Ok(())
}
