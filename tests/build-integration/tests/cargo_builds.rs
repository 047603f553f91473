//! Real `cargo build`s of scratch crates in temp folders that use kenosis-build and
//! include_quantized! by path: caching, reproducibility, offline records, corruption, races and
//! the macro's compile errors. They share one target folder (`target/kenosis-scratch`) so the
//! dependencies compile once.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn scratch_target() -> PathBuf {
    let base = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).ok().filter(|p| p.is_absolute()).unwrap_or_else(|| workspace().join("target"));
    base.join("kenosis-scratch")
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

const BUILD_RS: &str = "fn main() -> Result<(), kenosis_build::Error> {\n    kenosis_build::quantize(\"models/m.onnx\")?;\n    Ok(())\n}\n";
const MAIN_RS: &str = "static M: kenosis_core::QuantizedModel = kenosis_core::include_quantized!(\"models/m.onnx\");\n\
fn main() {\n    let out = std::env::args().nth(1).expect(\"output path\");\n    std::fs::write(out, M.bytes).expect(\"write\");\n}\n";

struct Scratch {
    dir: tempfile::TempDir,
    /// Package names in this scratch workspace.
    names: Vec<String>,
}

fn manifest(name: &str, build_script: bool) -> String {
    let ws = workspace();
    let mut s = format!(
        "[package]\nname = \"{name}\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n[dependencies]\n\
         kenosis-core = {{ path = \"{}\", default-features = false }}\n",
        ws.join("kenosis-core").display()
    );
    if build_script {
        s.push_str(&format!("\n[build-dependencies]\nkenosis-build = {{ path = \"{}\" }}\n", ws.join("kenosis-build").display()));
    }
    s
}

impl Scratch {
    /// A crate `name` with `models/m.onnx` (the fixture classifier), `build_rs` (None: no build
    /// script) and `main_rs`.
    fn new(name: &str, build_rs: Option<&str>, main_rs: &str) -> Scratch {
        Scratch::workspace(&[name], build_rs, main_rs)
    }

    /// Several such crates in one scratch workspace (one per name).
    fn workspace(names: &[&str], build_rs: Option<&str>, main_rs: &str) -> Scratch {
        // Cargo gives a package the same OUT_DIR wherever it lives, so names are unique per run:
        // a build from an earlier run must never stand in for this one.
        let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_000;
        let owned: Vec<String> = names.iter().map(|n| format!("{n}_{run}_{}", std::process::id())).collect();
        let names: Vec<&str> = owned.iter().map(String::as_str).collect();
        let names = names.as_slice();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let single = names.len() == 1;
        let members: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
        if single {
            let mut m = manifest(names[0], build_rs.is_some());
            m.push_str("\n[workspace]\n");
            std::fs::write(root.join("Cargo.toml"), m).unwrap();
        } else {
            std::fs::write(root.join("Cargo.toml"), format!("[workspace]\nresolver = \"2\"\nmembers = [{}]\n", members.join(", "))).unwrap();
        }
        for n in names {
            let pkg = if single { root.to_path_buf() } else { root.join(n) };
            std::fs::create_dir_all(pkg.join("src")).unwrap();
            std::fs::create_dir_all(pkg.join("models")).unwrap();
            if !single {
                std::fs::write(pkg.join("Cargo.toml"), manifest(n, build_rs.is_some())).unwrap();
            }
            std::fs::copy(workspace().join("tests/build-integration/fixtures/tiny_classifier.onnx"), pkg.join("models/m.onnx")).unwrap();
            if let Some(b) = build_rs {
                std::fs::write(pkg.join("build.rs"), b).unwrap();
            }
            std::fs::write(pkg.join("src/main.rs"), main_rs).unwrap();
        }
        // The workspace's lock file pins the same versions, so nothing is resolved online.
        std::fs::copy(workspace().join("Cargo.lock"), root.join("Cargo.lock")).unwrap();
        Scratch { dir, names: names.iter().map(|s| s.to_string()).collect() }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn cmd(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut c = Command::new(cargo());
        c.args(args).arg("--offline").arg("--manifest-path").arg(self.root().join("Cargo.toml"));
        c.env("CARGO_TARGET_DIR", scratch_target());
        for v in ["KENOSIS_OFFLINE", "KENOSIS_PREPARE", "KENOSIS_PREPARE_CHECK", "KENOSIS_PREPARE_RUN", "KENOSIS_CACHE_DIR", "OUT_DIR"] {
            c.env_remove(v);
        }
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }

    /// `cargo build`; returns (success, stderr).
    fn build(&self, env: &[(&str, &str)]) -> (bool, String) {
        let out: Output = self.cmd(&["build", "--workspace"], env).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), stderr)
    }

    fn build_ok(&self, env: &[(&str, &str)]) -> String {
        let (ok, stderr) = self.build(env);
        assert!(ok, "cargo build failed:\n{stderr}");
        stderr
    }

    /// Removes the packages' build outputs, so the next build runs their build scripts again.
    fn clean(&self) {
        for n in &self.names {
            let st = self.cmd(&["clean", "-p", n], &[]).output().unwrap();
            assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
        }
    }

    /// The INT8 bytes the built binary `name` embedded.
    fn embedded(&self, name: &str) -> Vec<u8> {
        let out = self.root().join(format!("{name}.bytes"));
        let exe = scratch_target().join("debug").join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
        let st = Command::new(&exe).arg(&out).status().unwrap();
        assert!(st.success(), "{} failed", exe.display());
        std::fs::read(out).unwrap()
    }
}

/// The entries (non-hidden folders) of a cache folder.
fn entries(cache: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(cache)
        .map(|rd| rd.flatten().filter(|e| !e.file_name().to_string_lossy().starts_with('.')).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn ort_available() -> bool {
    match kenosis_core::runtime::runtime() {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipping: {e}");
            false
        }
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn cache_hits_reproducible_bytes_and_corrupt_entries() {
    if !ort_available() {
        return;
    }
    let app = Scratch::new("kenosis_scratch_cache", Some(BUILD_RS), MAIN_RS);
    let caches = tempfile::tempdir().unwrap();
    let c1 = caches.path().join("one");
    let first = app.build_ok(&[("KENOSIS_CACHE_DIR", s(&c1))]);
    assert!(first.contains("calibrated and validated"), "{first}");
    assert!(first.contains("kenosis: models/m.onnx:") && first.contains("cosine"), "one summary line per model:\n{first}");
    let bytes = app.embedded(&app.names[0]);
    assert_eq!(entries(&c1).len(), 1);

    // Second build from a clean package: a cache hit, no calibration, same bytes.
    app.clean();
    let second = app.build_ok(&[("KENOSIS_CACHE_DIR", s(&c1))]);
    assert!(second.contains("cache hit, no calibration"), "{second}");
    assert!(!second.contains("calibrated and validated"), "{second}");
    assert_eq!(app.embedded(&app.names[0]), bytes);

    // A corrupted entry is detected, not used, and rebuilt.
    let entry = entries(&c1).remove(0);
    let model = entry.join("model.int8.onnx");
    let mut data = std::fs::read(&model).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x5a;
    std::fs::write(&model, &data).unwrap();
    app.clean();
    let third = app.build_ok(&[("KENOSIS_CACHE_DIR", s(&c1))]);
    assert!(third.contains("corrupt cache entry"), "{third}");
    assert!(third.contains("calibrated and validated"), "{third}");
    assert_eq!(app.embedded(&app.names[0]), bytes);
    assert_eq!(std::fs::read(&model).unwrap(), bytes, "the entry was rebuilt whole");

    // A truncated entry (as a killed build could leave without the atomic rename) is rebuilt too.
    std::fs::write(entry.join("record.json"), b"{\"format\"").unwrap();
    app.clean();
    let fourth = app.build_ok(&[("KENOSIS_CACHE_DIR", s(&c1))]);
    assert!(fourth.contains("corrupt cache entry"), "{fourth}");

    // Two clean builds with separate fresh caches calibrate twice and give identical bytes.
    let c2 = caches.path().join("two");
    app.clean();
    let fifth = app.build_ok(&[("KENOSIS_CACHE_DIR", s(&c2))]);
    assert!(fifth.contains("calibrated and validated"), "{fifth}");
    assert_eq!(app.embedded(&app.names[0]), bytes);
    assert_eq!(entries(&c2).iter().map(|e| e.file_name()).collect::<Vec<_>>(), entries(&c1).iter().map(|e| e.file_name()).collect::<Vec<_>>());
}

#[test]
fn offline_builds_from_committed_records() {
    if !ort_available() {
        return;
    }
    let app = Scratch::new("kenosis_scratch_offline", Some(BUILD_RS), MAIN_RS);
    let caches = tempfile::tempdir().unwrap();
    let c1 = caches.path().join("online");
    let root = app.root().to_path_buf();

    // What `kenosis prepare` does: build with KENOSIS_PREPARE naming the package.
    app.build_ok(&[("KENOSIS_CACHE_DIR", s(&c1)), ("KENOSIS_PREPARE", s(&root)), ("KENOSIS_PREPARE_RUN", "1")]);
    let record = root.join(".kenosis/models__m.onnx.json");
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(text.ends_with("}\n") && text.contains("\n  \"format\": 1,"), "pretty, sorted, trailing newline:\n{text}");
    for field in ["\"key_inputs\"", "\"ranges\"", "\"ort_version\"", "\"report\"", "\"summary\"", "\"algorithm_version\""] {
        assert!(text.contains(field), "record lacks {field}");
    }
    let online = app.embedded(&app.names[0]);

    // --check passes on fresh records.
    app.build_ok(&[("KENOSIS_CACHE_DIR", s(&c1)), ("KENOSIS_PREPARE", s(&root)), ("KENOSIS_PREPARE_CHECK", "1"), ("KENOSIS_PREPARE_RUN", "2")]);

    // Offline, with no ONNX Runtime reachable: same bytes from the record.
    let no_ort = [("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so"), ("XDG_CACHE_HOME", "/nonexistent")];
    let c2 = caches.path().join("offline");
    app.clean();
    let mut env = vec![("KENOSIS_CACHE_DIR", s(&c2)), ("KENOSIS_OFFLINE", "1")];
    env.extend(no_ort);
    let off = app.build_ok(&env);
    assert!(off.contains("rebuilt from .kenosis/ record"), "{off}");
    assert!(!off.contains("differs from the one the record was made with"), "{off}");
    assert_eq!(app.embedded(&app.names[0]), online);
    assert!(entries(&c2).is_empty(), "an offline build runs no ONNX Runtime and fills no cache");

    // No KENOSIS_OFFLINE, but no ONNX Runtime either: the record is used.
    app.clean();
    let mut env = vec![("KENOSIS_CACHE_DIR", s(&c2))];
    env.extend(no_ort);
    let (ok, fallback) = app.build(&env);
    if !fallback.contains("calibrated and validated") {
        // (skipped when the system loader finds an ONNX Runtime anyway)
        assert!(ok, "{fallback}");
        assert!(fallback.contains("no ONNX Runtime") && fallback.contains("rebuilt from .kenosis/ record"), "{fallback}");
        assert_eq!(app.embedded(&app.names[0]), online);
    }

    // Changed settings make the record stale: --check and offline builds say to run kenosis prepare.
    std::fs::write(root.join("build.rs"), BUILD_RS.replace("kenosis_build::quantize(\"models/m.onnx\")", "kenosis_build::Config::new().model(\"models/m.onnx\").samples(3).run()")).unwrap();
    let (ok, check) = app.build(&[("KENOSIS_CACHE_DIR", s(&c1)), ("KENOSIS_PREPARE", s(&root)), ("KENOSIS_PREPARE_CHECK", "1"), ("KENOSIS_PREPARE_RUN", "3")]);
    assert!(!ok && check.contains("is stale") && check.contains("config `samples`: 3 now, null in the record"), "{check}");
    assert!(check.contains("kenosis prepare"), "{check}");
    let mut env = vec![("KENOSIS_CACHE_DIR", s(&c2)), ("KENOSIS_OFFLINE", "1")];
    env.extend(no_ort);
    let (ok, stale) = app.build(&env);
    assert!(!ok && stale.contains("is stale") && stale.contains("kenosis prepare"), "{stale}");

    // No record at all.
    std::fs::remove_dir_all(root.join(".kenosis")).unwrap();
    let (ok, none) = app.build(&env);
    assert!(!ok && none.contains("no offline record") && none.contains("kenosis prepare"), "{none}");
}

#[test]
fn racing_builds_share_one_cache() {
    if !ort_available() {
        return;
    }
    let names = ["kenosis_scratch_race_a", "kenosis_scratch_race_b"];
    let ws = Scratch::workspace(&names, Some(BUILD_RS), MAIN_RS);
    let caches = tempfile::tempdir().unwrap();
    let cache = caches.path().join("shared");
    // Cargo runs both build scripts at once (-j 2), on the same model and settings.
    let out = ws.build_ok(&[("KENOSIS_CACHE_DIR", s(&cache)), ("CARGO_BUILD_JOBS", "2")]);
    assert_eq!(out.matches("kenosis: models/m.onnx:").count(), 2, "{out}");
    let names = [ws.names[0].as_str(), ws.names[1].as_str()];
    let a = ws.embedded(names[0]);
    assert_eq!(ws.embedded(names[1]), a);

    // And a harder race: the compiled build script run by four processes at the same moment on
    // an empty cache, as four cargo invocations would.
    let script = newest_build_script(names[0]);
    let race_cache = caches.path().join("race");
    let children: Vec<_> = (0..4)
        .map(|i| {
            let out_dir = caches.path().join(format!("out{i}"));
            std::fs::create_dir_all(&out_dir).unwrap();
            let child = Command::new(&script)
                .current_dir(ws.root().join(names[0]))
                .env("OUT_DIR", &out_dir)
                .env("CARGO_MANIFEST_DIR", ws.root().join(names[0]))
                .env("CARGO_CFG_TARGET_ARCH", std::env::consts::ARCH)
                .env("CARGO_PKG_NAME", names[0])
                .env("CARGO", cargo())
                .env("KENOSIS_CACHE_DIR", &race_cache)
                .env_remove("KENOSIS_OFFLINE")
                .env_remove("KENOSIS_PREPARE")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            (out_dir, child)
        })
        .collect();
    for (out_dir, child) in children {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        let index: serde_json::Value = serde_json::from_slice(&std::fs::read(out_dir.join("kenosis/index.json")).unwrap()).unwrap();
        let artifact = index["models"]["models/m.onnx"]["artifact"].as_str().unwrap();
        assert_eq!(std::fs::read(artifact).unwrap(), a);
    }
    let whole = entries(&race_cache);
    assert_eq!(whole.len(), 1, "{whole:?}");
    let leftovers: Vec<_> = std::fs::read_dir(&race_cache).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with('.')).collect();
    assert!(leftovers.is_empty(), "temp folders left behind: {leftovers:?}");
}

fn newest_build_script(pkg: &str) -> PathBuf {
    let build = scratch_target().join("debug/build");
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&build)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("{pkg}-")))
        .map(|e| e.path().join(format!("build-script-build{}", std::env::consts::EXE_SUFFIX)))
        .filter(|p| p.is_file())
        .map(|p| (p.metadata().and_then(|m| m.modified()).unwrap(), p))
        .collect();
    found.sort();
    found.pop().expect("the build script was compiled").1
}

#[test]
fn macro_errors_say_the_fix() {
    // No build script at all.
    let bare = Scratch::new("kenosis_scratch_nobuild", None, MAIN_RS);
    let (ok, err) = bare.build(&[]);
    assert!(!ok, "{err}");
    assert!(err.contains("needs a build script") && err.contains("[build-dependencies]"), "{err}");
    assert!(err.contains("src/main.rs:1:"), "spanned at the macro call: {err}");

    // A model the build script doesn't quantize, and a path with a typo.
    let main = "static A: kenosis_core::QuantizedModel = kenosis_core::include_quantized!(\"models/other.onnx\");\n\
                static B: kenosis_core::QuantizedModel = kenosis_core::include_quantized!(\"models/typo.onnx\");\n\
                fn main() { println!(\"{} {}\", A.bytes.len(), B.bytes.len()); }\n";
    let wrong = Scratch::new("kenosis_scratch_wrong", Some(BUILD_RS), main);
    std::fs::copy(wrong.root().join("models/m.onnx"), wrong.root().join("models/other.onnx")).unwrap();
    if !ort_available() {
        return;
    }
    let caches = tempfile::tempdir().unwrap();
    let (ok, err) = wrong.build(&[("KENOSIS_CACHE_DIR", s(caches.path()))]);
    assert!(!ok, "{err}");
    assert!(err.contains("build.rs does not quantize \"models/other.onnx\" (it quantizes: \"models/m.onnx\")"), "{err}");
    assert!(err.contains("kenosis_build::quantize(\"models/other.onnx\")"), "{err}");
    assert!(err.contains("src/main.rs:1:"), "{err}");
    assert!(err.contains("no model at") && err.contains("relative to the crate root"), "{err}");
    assert!(err.contains("src/main.rs:2:"), "{err}");

    // A failed gate fails the build with the report and what to change.
    let strict = BUILD_RS.replace("kenosis_build::quantize(\"models/m.onnx\")", "kenosis_build::Config::new().model(\"models/m.onnx\").min_cosine(1.5).run()");
    std::fs::write(wrong.root().join("build.rs"), strict).unwrap();
    std::fs::write(wrong.root().join("src/main.rs"), MAIN_RS).unwrap();
    let (ok, err) = wrong.build(&[("KENOSIS_CACHE_DIR", s(caches.path()))]);
    assert!(!ok, "{err}");
    assert!(err.contains("fails its quality gates") && err.contains("below the required 1.5"), "{err}");
    assert!(err.contains("verdict") && err.contains("To fix:"), "the whole report and the fix: {err}");
}
