//! Writes the FP32 conv stacks that bench/run.sh uses to measure this CPU's kernel limit:
//! the speedup of fully fused QLinearConv layers over the same FP32 layers.
//!
//! `cargo run --release -p kenosis-cli --example conv_stack -- OUT_DIR`

use kenosis_core::onnx::builder::{attr_ints, node, ModelBuilder, Rng, D};
use kenosis_core::onnx::proto::data_type as dt;
use kenosis_core::onnx::{tensor, SaveOptions};

fn stack(name: &str, channels: i64, size: i64, kernel: i64, layers: usize, dir: &std::path::Path) -> kenosis_core::Result<()> {
    let mut rng = Rng::new(7);
    let pad = kernel / 2;
    let mut b = ModelBuilder::new(13).input("x", dt::FLOAT, &[1.into(), channels.into(), size.into(), size.into()]);
    let mut prev = "x".to_string();
    for i in 0..layers {
        let (w, bias, y, r) = (format!("w{i}"), format!("b{i}"), format!("c{i}"), format!("r{i}"));
        let fan_in = (channels * kernel * kernel) as f32;
        let bound = (6.0 / fan_in).sqrt();
        let n = (channels * channels * kernel * kernel) as usize;
        b = b
            .initializer(tensor::from_f32(&w, &[channels, channels, kernel, kernel], &rng.vec(n, -bound, bound)))
            .initializer(tensor::from_f32(&bias, &[channels], &rng.vec(channels as usize, -0.1, 0.1)))
            .node(node("Conv", &format!("conv{i}"), &[&prev, &w, &bias], &[&y], vec![attr_ints("pads", &[pad; 4])]))
            .node(node("Relu", &format!("relu{i}"), &[&y], &[&r], vec![]));
        prev = r;
    }
    b = b.node(node("Identity", "out", &[&prev], &["y"], vec![])).output("y", dt::FLOAT, &[D::N(1), channels.into(), size.into(), size.into()]);
    b.build().save(dir.join(format!("{name}.fp32.onnx")), &SaveOptions { force: true, ..Default::default() })
}

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "kernel".into()));
    let run = || -> kenosis_core::Result<()> {
        std::fs::create_dir_all(&dir).map_err(|e| kenosis_core::Error::Io { path: dir.clone(), source: e })?;
        stack("conv3x3_c32_112", 32, 112, 3, 6, &dir)?;
        stack("conv3x3_c64_56", 64, 56, 3, 8, &dir)?;
        stack("conv1x1_c128_56", 128, 56, 1, 8, &dir)?;
        stack("conv1x1_c256_28", 256, 28, 1, 8, &dir)?;
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("conv_stack: {e}");
        std::process::exit(1);
    }
    println!("{}", dir.display());
}
