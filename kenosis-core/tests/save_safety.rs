//! `Model::save` file safety at the library level: external-data saves commit the model and its
//! side file together, and a failed save leaves no file (output, side file or temp) behind.

use kenosis_core::onnx::builder::{attr_ints, node, ModelBuilder, Rng, D};
use kenosis_core::onnx::proto::data_type as dt;
use kenosis_core::onnx::{tensor, Model, SaveOptions};
use std::path::Path;
use std::process::Command;

fn model() -> Model {
    let mut rng = Rng::new(5);
    ModelBuilder::new(13)
        .input("x", dt::FLOAT, &[1.into(), 32.into(), 8.into(), 8.into()])
        .initializer(tensor::from_f32("w", &[32, 32, 3, 3], &rng.vec(32 * 32 * 9, -0.1, 0.1)))
        .node(node("Conv", "conv", &["x", "w"], &["y"], vec![attr_ints("pads", &[1, 1, 1, 1])]))
        .output("y", dt::FLOAT, &[D::N(1), 32.into(), 8.into(), 8.into()])
        .build()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn external_data_save_is_whole_and_leaves_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.onnx");
    let m = model();
    let ext = SaveOptions { external_data: true, ..Default::default() };
    m.save(&p, &ext).unwrap();
    assert_eq!(listing(dir.path()), ["m.onnx", "m.onnx.data"]);
    assert_eq!(Model::load(&p).unwrap().graph().initializer, m.graph().initializer);
    // Replacing needs --force for the model and for its side file alike.
    assert!(m.save(&p, &ext).is_err());
    std::fs::remove_file(&p).unwrap();
    assert!(m.save(&p, &ext).is_err(), "an existing side file is not replaced without force");
    m.save(&p, &SaveOptions { force: true, ..ext }).unwrap();
    assert_eq!(listing(dir.path()), ["m.onnx", "m.onnx.data"]);
}

/// A 16 KiB tmpfs (tests run as root; skipped where `mount` is refused): the 36 KB side file
/// can't be written, and nothing is left.
#[test]
fn failed_save_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("tiny");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=16k", "tmpfs"]).arg(&mnt).output();
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
    let m = model();
    for external_data in [false, true] {
        let e = m.save(mnt.join("m.onnx"), &SaveOptions { external_data, ..Default::default() }).unwrap_err().to_string();
        assert!(e.contains("m.onnx") && e.contains("No space left"), "{e}");
        assert!(listing(&mnt).is_empty(), "{:?}", listing(&mnt));
    }
}
