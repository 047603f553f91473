//! Calibration and validation data that doesn't fit the model: each error names the file and
//! exits 2 (bad input), through both commands that take sample data: `kenosis quantize`
//! (calibration) and `kenosis validate`.

mod common;

use common::{fixture, kenosis, stderr};
use std::fs;

#[test]
fn data_that_does_not_fit_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.onnx");
    fixture(&model);
    let m = model.to_str().unwrap();

    // A raw f32 file of the wrong size (the input [1,3,4,4] needs 192 bytes).
    let data = dir.path().join("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("a.bin"), vec![0u8; 192]).unwrap();
    fs::write(data.join("short.bin"), vec![0u8; 100]).unwrap();
    // An image folder with a file that isn't an image, and an empty folder.
    let images = dir.path().join("images");
    fs::create_dir(&images).unwrap();
    fs::write(images.join("broken.png"), b"not a png at all").unwrap();
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();

    let cases: [(&[&str], &str); 4] = [
        (&["--data", data.to_str().unwrap()], "short.bin"),
        (&["--images", images.to_str().unwrap()], "broken.png"),
        (&["--images", empty.to_str().unwrap()], "empty"),
        (&["--data", empty.to_str().unwrap()], "empty"),
    ];
    let out = dir.path().join("out.onnx");
    let quantize_cases = [
        (vec!["--calibration-data", data.to_str().unwrap()], "short.bin"),
        (vec!["--calibration-images", images.to_str().unwrap()], "broken.png"),
        (vec!["--calibration-images", empty.to_str().unwrap()], "empty"),
        (vec!["--calibration-data", empty.to_str().unwrap()], "empty"),
    ];
    for (extra, needle) in quantize_cases {
        let mut args = vec!["quantize", m, "-o", out.to_str().unwrap()];
        args.extend_from_slice(&extra);
        let o = kenosis(&args);
        let err = stderr(&o);
        if o.status.code() == Some(3) {
            println!("skipped: ONNX Runtime is missing ({err})");
            return;
        }
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(needle), "{extra:?} must name {needle}: {err}");
        assert!(!out.exists(), "nothing written");
    }
    for (extra, needle) in cases {
        let mut args = vec!["validate", m, m, "--runs", "1"];
        args.extend_from_slice(extra);
        let o = kenosis(&args);
        let err = stderr(&o);
        if o.status.code() == Some(3) {
            println!("skipped: ONNX Runtime is missing ({err})");
            return;
        }
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(needle), "{extra:?} must name {needle}: {err}");
        assert!(!err.contains("panicked") && !err.contains("internal error"), "{err}");
    }
}
