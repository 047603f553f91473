//! The kenosis binary on fixture models: every command, bad input, and the output path rules.

mod common;

use common::{fixture, kenosis, stderr, stdout};
use std::fs;

const BAD_INPUT: i32 = 2;

#[test]
fn version_and_help() {
    let o = kenosis(&["--version"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o).trim(), format!("kenosis {}", env!("CARGO_PKG_VERSION")));
    for cmd in ["inspect", "cast", "diff"] {
        let o = kenosis(&[cmd, "--help"]);
        assert!(o.status.success(), "{cmd}");
        assert!(stdout(&o).contains("Usage: kenosis"), "{cmd}");
    }
    let cast_help = stdout(&kenosis(&["cast", "--help"]));
    assert!(cast_help.contains("BF16 is a storage format"), "{cast_help}");
    assert!(cast_help.contains("--half-io") && cast_help.contains("--force"), "{cast_help}");
}

/// Every command, given a file that isn't a readable ONNX model, exits 2 naming the file.
#[test]
fn bad_model_files_exit_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.onnx");
    fixture(&good);
    let missing = dir.path().join("missing.onnx");
    let empty = dir.path().join("empty.onnx");
    fs::write(&empty, b"").unwrap();
    let junk = dir.path().join("junk.onnx");
    fs::write(&junk, b"\xff\xfe this is not a protobuf at all \x00\x01\x02").unwrap();
    let folder = dir.path().join("folder.onnx");
    fs::create_dir(&folder).unwrap();
    let g = good.to_str().unwrap();
    for (bad, why) in
        [(&missing, "no such file"), (&empty, "empty"), (&junk, "not an ONNX model"), (&folder, "directory")]
    {
        let b = bad.to_str().unwrap();
        let out = dir.path().join("out.onnx");
        let o_str = out.to_str().unwrap();
        let runs: Vec<Vec<&str>> = vec![
            vec!["inspect", b],
            vec!["inspect", b, "--json"],
            vec!["cast", b, "--to", "fp16", "-o", o_str],
            vec!["diff", b, g],
            vec!["diff", g, b],
        ];
        for args in runs {
            let o = kenosis(&args);
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(BAD_INPUT), "{args:?}: {err}");
            assert!(err.contains(b), "{args:?} must name the file: {err}");
            assert!(err.contains(why), "{args:?}: {err}");
            assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{err}");
            assert!(stdout(&o).is_empty(), "{args:?}: errors go to stderr only");
            assert!(!out.exists());
        }
    }
}

#[test]
fn inspect_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.onnx");
    fixture(&p);
    let o = kenosis(&["inspect", p.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for want in ["IR version:  8", "ai.onnx 13", "x: float32 [N, 3, 4, 4]", "Conv 1", "quantized:   no", "3776"] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let o = kenosis(&["inspect", "--json", p.to_str().unwrap()]);
    assert!(o.status.success());
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("one JSON object");
    assert_eq!(j["ops"]["Conv"], 1);
    assert_eq!(j["ops"]["Constant"], 1);
    assert_eq!(j["params"], 1728 + 2048);
    assert_eq!(j["bytes"], fs::metadata(&p).unwrap().len());
    assert_eq!(j["opset"]["ai.onnx"], 13);
    assert_eq!(j["inputs"][0]["name"], "x");
    assert_eq!(j["inputs"][0]["shape"][0], "N");
    assert_eq!(j["outputs"][0]["shape"][1], 2);
    assert_eq!(j["quantized"], false);
}

#[test]
fn cast_output_rules() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("model.onnx");
    fixture(&input);
    let original = fs::read(&input).unwrap();
    let i = input.to_str().unwrap();

    // Default OUT sits beside IN with a suffix.
    let o = kenosis(&["cast", i, "--to", "fp16"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let default_out = dir.path().join("model.fp16.onnx");
    assert!(default_out.exists());
    assert!(stdout(&o).contains("model.fp16.onnx"));
    let first = fs::read(&default_out).unwrap();

    // An existing OUT needs --force, and stays as it was without it.
    fs::write(&default_out, b"keep me").unwrap();
    let o = kenosis(&["cast", i, "--to", "fp16"]);
    assert_eq!(o.status.code(), Some(BAD_INPUT));
    assert!(stderr(&o).contains("already exists") && stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(fs::read(&default_out).unwrap(), b"keep me");
    let o = kenosis(&["cast", i, "--to", "fp16", "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(fs::read(&default_out).unwrap(), first, "same input, same bytes");

    // Never over IN, however it is spelled, --force or not.
    let respelled = dir.path().join(".").join("model.onnx");
    for out in [i, respelled.to_str().unwrap()] {
        for force in [false, true] {
            let mut args = vec!["cast", i, "--to", "bf16", "-o", out];
            if force {
                args.push("--force");
            }
            let o = kenosis(&args);
            assert_eq!(o.status.code(), Some(BAD_INPUT), "{args:?}");
            assert!(stderr(&o).contains("refusing to write over the input"), "{}", stderr(&o));
        }
    }
    assert_eq!(fs::read(&input).unwrap(), original, "the input model is untouched");

    // -o into a folder that does not exist, or onto a directory.
    let o = kenosis(&["cast", i, "--to", "fp16", "-o", dir.path().join("nope/out.onnx").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(BAD_INPUT));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    let o = kenosis(&["cast", i, "--to", "fp16", "-o", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(BAD_INPUT));

    // BF16 with an explicit OUT; -q silences everything but the result line.
    let bf = dir.path().join("b.onnx");
    let o = kenosis(&["-q", "cast", i, "--to", "bf16", "-o", bf.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "quiet: {}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 1);
    let j: serde_json::Value =
        serde_json::from_str(&stdout(&kenosis(&["inspect", "--json", bf.to_str().unwrap()]))).unwrap();
    assert_eq!(j["initializer_dtypes"]["bfloat16"], 1, "{j}");
    // Without a terminal, progress is plain lines on stderr.
    let o = kenosis(&["cast", i, "--to", "bf16", "-o", bf.to_str().unwrap(), "--force"]);
    assert!(stderr(&o).lines().any(|l| l.starts_with("casting to bf16")), "{}", stderr(&o));
    assert!(!stderr(&o).contains('\r'), "no bar redraws off a terminal");
}

#[test]
fn cast_bad_flags_and_missing_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.onnx");
    fixture(&input);
    let i = input.to_str().unwrap();
    let o = kenosis(&["cast", i, "--to", "fp8"]);
    assert_eq!(o.status.code(), Some(BAD_INPUT), "clap usage errors are bad input");
    let o = kenosis(&["cast", i]);
    assert_eq!(o.status.code(), Some(BAD_INPUT), "--to is required");
    // No runtime anywhere (empty cache, no ORT_DYLIB_PATH) and a wrong --ort-lib: exit 3,
    // with the places tried.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_kenosis"))
        .args(["--ort-lib", "/nonexistent/libonnxruntime.so", "cast", i, "--to", "fp16"])
        .env("XDG_CACHE_HOME", dir.path())
        .env("HOME", dir.path())
        .env_remove("ORT_DYLIB_PATH")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("/nonexistent/libonnxruntime.so"), "{}", stderr(&o));
    assert!(!dir.path().join("m.fp16.onnx").exists());
}

#[test]
fn diff_reports_changes() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.onnx");
    fixture(&a);
    let a_s = a.to_str().unwrap();
    let o = kenosis(&["diff", a_s, a_s]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("no differences"));
    let b = dir.path().join("a.fp16.onnx");
    assert!(kenosis(&["cast", a_s, "--to", "fp16"]).status.success());
    let o = kenosis(&["diff", a_s, b.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["identical"], false);
    assert!(j["ops"]["Cast"]["b"].as_u64().unwrap() >= 2, "{}", j["ops"]);
    let changed = j["initializers"]["changed"].as_array().unwrap();
    let w = changed.iter().find(|c| c["name"] == "w").expect("w changed type");
    assert_eq!(w["dtype"][1], "float16");
    let d = w["max_abs_diff"].as_f64().unwrap();
    assert!(d > 0.0 && d < 1e-3, "fp16 rounding of weights in [-0.5, 0.5]: {d}");
    assert!(j["signature"]["inputs"].as_array().unwrap().is_empty());
    assert!(j["nodes"]["added"].as_array().unwrap().iter().all(|n| n["op_type"] == "Cast"));
    let text = stdout(&kenosis(&["diff", a_s, b.to_str().unwrap()]));
    assert!(text.contains("Cast: 0 →") && text.contains("max |Δ|"), "{text}");
}
