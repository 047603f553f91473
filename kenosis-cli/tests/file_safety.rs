//! File safety of every command that writes a model: the input is never modified, outputs are
//! atomic, an existing output is replaced only whole and only with --force, and an unwritable
//! output (a directory in its place, a missing folder, a full file system, a file-size limit)
//! gives a clear error, a non-zero exit and no partial or temporary file.

mod common;

use common::{kenosis, stderr};
use kenosis_core::onnx::builder::{attr_ints, node, ModelBuilder, Rng, D};
use kenosis_core::onnx::proto::data_type as dt;
use kenosis_core::onnx::{tensor, Model, SaveOptions};
use sha2::{Digest, Sha256};
use std::fs;
use std::path::Path;
use std::process::Command;

/// The commands that write a model: arguments before `-o OUT`. Add a writing command here and
/// every test below covers it.
const WRITERS: &[&[&str]] =
    &[&["cast", "{in}", "--to", "fp16"], &["cast", "{in}", "--to", "bf16"], &["quantize", "{in}", "--samples", "2"]];

fn args<'a>(w: &[&'a str], input: &'a str, out: &'a str, force: bool) -> Vec<&'a str> {
    let mut v: Vec<&str> = w.iter().map(|a| if *a == "{in}" { input } else { a }).collect();
    v.extend(["-o", out]);
    if force {
        v.push("--force");
    }
    v
}

/// A Conv → Relu → Conv model with 150 KB of weights, so outputs don't fit in a few KB.
fn big_fixture(path: &Path) {
    let mut rng = Rng::new(9);
    ModelBuilder::new(13)
        .input("x", dt::FLOAT, &[1.into(), 64.into(), 8.into(), 8.into()])
        .initializer(tensor::from_f32("w", &[64, 64, 3, 3], &rng.vec(64 * 64 * 9, -0.1, 0.1)))
        .initializer(tensor::from_f32("w2", &[8, 64, 1, 1], &rng.vec(8 * 64, -0.1, 0.1)))
        .node(node("Conv", "conv", &["x", "w"], &["c"], vec![attr_ints("pads", &[1, 1, 1, 1])]))
        .node(node("Relu", "relu", &["c"], &["r"], vec![]))
        .node(node("Conv", "head", &["r", "w2"], &["y"], vec![]))
        .output("y", dt::FLOAT, &[D::N(1), 8.into(), 8.into(), 8.into()])
        .build()
        .save(path, &SaveOptions::default())
        .unwrap();
}

fn sha(p: &Path) -> Vec<u8> {
    Sha256::digest(fs::read(p).unwrap()).to_vec()
}

/// Names in `dir` (temp files included), sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn existing_outputs_are_replaced_only_whole_and_only_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("model.onnx");
    big_fixture(&input);
    let before = sha(&input);
    let out = dir.path().join("out.onnx");
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    for w in WRITERS {
        fs::write(&out, b"previous output").unwrap();
        let r = kenosis(&args(w, i, o, false));
        assert_eq!(r.status.code(), Some(2), "{w:?}: {}", stderr(&r));
        assert!(stderr(&r).contains("already exists") && stderr(&r).contains("--force"), "{}", stderr(&r));
        assert_eq!(fs::read(&out).unwrap(), b"previous output", "{w:?}: left alone without --force");
        let r = kenosis(&args(w, i, o, true));
        assert!(r.status.success(), "{w:?}: {}", stderr(&r));
        Model::load(&out).unwrap_or_else(|e| panic!("{w:?}: the replaced output is a whole model: {e}"));
        assert_eq!(listing(dir.path()), ["model.onnx", "out.onnx"], "{w:?}: no temp file left");
        // Over the input itself, with --force, spelled another way: refused.
        let same = dir.path().join(".").join("model.onnx");
        let r = kenosis(&args(w, i, same.to_str().unwrap(), true));
        assert_eq!(r.status.code(), Some(2), "{w:?}");
        assert_eq!(sha(&input), before, "{w:?}: the input model is never modified");
    }
}

#[test]
fn unwritable_outputs_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("model.onnx");
    big_fixture(&input);
    let before = sha(&input);
    let i = input.to_str().unwrap();
    let blocker = dir.path().join("taken.onnx");
    fs::create_dir(&blocker).unwrap();
    let missing = dir.path().join("no/such/folder/out.onnx");
    for w in WRITERS {
        for force in [false, true] {
            let r = kenosis(&args(w, i, blocker.to_str().unwrap(), force));
            assert_eq!(r.status.code(), Some(2), "{w:?}: {}", stderr(&r));
            assert!(stderr(&r).contains("taken.onnx") && stderr(&r).contains("directory"), "{}", stderr(&r));
            assert!(listing(&blocker).is_empty(), "the directory is left as it was");
            let r = kenosis(&args(w, i, missing.to_str().unwrap(), force));
            assert_eq!(r.status.code(), Some(2), "{w:?}: {}", stderr(&r));
            assert!(stderr(&r).contains("does not exist"), "{}", stderr(&r));
        }
    }
    assert_eq!(listing(dir.path()), ["model.onnx", "taken.onnx"]);
    assert_eq!(sha(&input), before);
}

/// A file-size limit (RLIMIT_FSIZE via `ulimit -f`): the write fails with EFBIG instead of the
/// process dying of SIGXFSZ, and the temp file is removed.
#[test]
fn file_size_limit_gives_a_clear_error_and_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("model.onnx");
    big_fixture(&input);
    let before = sha(&input);
    let out_dir = dir.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("out.onnx");
    for w in WRITERS {
        let a = args(w, input.to_str().unwrap(), out.to_str().unwrap(), false);
        let r = Command::new("sh")
            .arg("-c")
            .arg("ulimit -f 16; exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_kenosis"))
            .args(&a)
            .output()
            .unwrap();
        let err = stderr(&r);
        assert!(r.status.code().is_some(), "{w:?}: killed by a signal instead of reporting an error: {:?} {err}", r.status);
        assert!(!r.status.success(), "{w:?}: {err}");
        assert!(err.contains("out.onnx") && err.contains("too large"), "{w:?}: {err}");
        assert!(listing(&out_dir).is_empty(), "{w:?}: no partial or temp file: {:?}", listing(&out_dir));
    }
    assert_eq!(sha(&input), before);
}

/// A full file system: a 32 KiB tmpfs (tests run as root; skipped where `mount` is refused).
#[test]
fn full_file_system_gives_a_clear_error_and_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("model.onnx");
    big_fixture(&input);
    let before = sha(&input);
    let mnt = dir.path().join("tiny");
    fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=32k", "tmpfs"]).arg(&mnt).output();
    if !mounted.as_ref().is_ok_and(|o| o.status.success()) {
        println!("skipped: can't mount a tmpfs here ({mounted:?})");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Unmount(&mnt);
    let out = mnt.join("out.onnx");
    for w in WRITERS {
        let r = kenosis(&args(w, input.to_str().unwrap(), out.to_str().unwrap(), false));
        let err = stderr(&r);
        assert!(!r.status.success(), "{w:?}: {err}");
        assert!(err.contains("out.onnx") && err.contains("No space left"), "{w:?}: {err}");
        assert!(listing(&mnt).is_empty(), "{w:?}: no partial or temp file: {:?}", listing(&mnt));
    }
    assert_eq!(sha(&input), before);
}

/// `quantize --ranges-out` is a second output: it follows the same rules (never the input,
/// --force to replace, no directory in its place), checked before any work.
#[test]
fn ranges_out_follows_the_output_rules() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("model.onnx");
    big_fixture(&input);
    let before = sha(&input);
    let i = input.to_str().unwrap();
    let out = dir.path().join("out.onnx");
    let o = out.to_str().unwrap();
    for force in [false, true] {
        let mut a = vec!["quantize", i, "-o", o, "--samples", "2", "--ranges-out", i];
        if force {
            a.push("--force");
        }
        let r = kenosis(&a);
        assert_eq!(r.status.code(), Some(2), "{a:?}: {}", stderr(&r));
        assert_eq!(sha(&input), before, "{a:?}: the input model is never modified");
        assert!(!out.exists(), "{a:?}: nothing written when an output is refused");
    }
    let r = kenosis(&["quantize", i, "-o", o, "--samples", "2", "--ranges-out", dir.path().to_str().unwrap(), "--force"]);
    assert_eq!(r.status.code(), Some(2), "{}", stderr(&r));
    assert!(!out.exists());
}

#[test]
fn ranges_out_is_not_the_model_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("model.onnx");
    big_fixture(&input);
    let out = dir.path().join("out.onnx");
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    let r = kenosis(&["quantize", i, "-o", o, "--samples", "2", "--ranges-out", o, "--force"]);
    assert_eq!(r.status.code(), Some(2), "{}", stderr(&r));
    assert!(stderr(&r).contains("also the model output"), "{}", stderr(&r));
    assert!(!out.exists());
}
