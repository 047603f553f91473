//! Quantizes the PP-OCR text direction classifier at build time, calibrated on real text crops.

fn main() -> Result<(), kenosis_build::Error> {
    kenosis_build::Config::new()
        .model("models/ch_ppocr_mobile_v2.0_cls_infer.onnx")
        // Depthwise convs (MobileNetV3) need one scale per channel.
        .per_channel()
        .calibration_images("calib/")
        // PaddleOCR's preprocessing for this model: (x / 255 - 0.5) / 0.5, BGR, 48x192.
        .preprocess(kenosis_build::Preprocess::Half)
        .bgr()
        .input_shape("x", [1, 3, 48, 192])
        .min_cosine(0.995)
        .run()?;
    Ok(())
}
