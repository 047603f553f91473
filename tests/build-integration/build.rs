//! Quantizes two fixture models built in Rust (kenosis-build/tests/fixtures.rs) and the real
//! PP-OCR classifier from the example, the way a user's build script does.

use kenosis_build::{Config, Preprocess};

fn main() -> Result<(), kenosis_build::Error> {
    // Zero-config.
    kenosis_build::quantize("fixtures/tiny_classifier.onnx")?;
    // Settings from [package.metadata.kenosis].
    Config::new().run()?;
    // A real model with real calibration images.
    Config::new()
        .model("../../examples/orientation/models/ch_ppocr_mobile_v2.0_cls_infer.onnx")
        // Depthwise convs (MobileNetV3) need one scale per channel.
        .per_channel()
        .calibration_images("../../examples/orientation/calib")
        .preprocess(Preprocess::Half)
        .bgr()
        .input_shape("x", [1, 3, 48, 192])
        .run()?;
    Ok(())
}
