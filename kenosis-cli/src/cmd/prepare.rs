//! `kenosis prepare [--check] [-p PACKAGE] [--manifest-path PATH]`: writes, or checks, the
//! offline records of a package whose build script quantizes models with kenosis-build.
//!
//! Like `cargo sqlx prepare`, it runs the package's own build with `KENOSIS_PREPARE` naming the
//! package folder; kenosis-build then writes one record per model into `<package>/.kenosis/`
//! (with `KENOSIS_PREPARE_CHECK=1` it instead fails the build when a record is missing or was
//! made from other inputs). `KENOSIS_PREPARE_RUN` changes on every call so Cargo reruns the
//! build script even when nothing else changed.

use crate::common::{CmdResult, Failure, Global};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Write the `.kenosis/` records that let a package build offline (KENOSIS_OFFLINE=1, or
/// without ONNX Runtime) to the same INT8 bytes; `--check` verifies them instead (for CI).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Don't write: fail when a record is missing or stale (model, calibration data, config or
    /// algorithm version changed; latency and the ONNX Runtime version are not compared).
    #[arg(long)]
    pub check: bool,
    /// The package whose build script quantizes models (needed in a workspace with several).
    #[arg(short, long, value_name = "NAME")]
    pub package: Option<String>,
    /// The Cargo.toml of the package or its workspace (default: found from the current folder).
    #[arg(long, value_name = "PATH")]
    pub manifest_path: Option<PathBuf>,
    /// More arguments for `cargo build`, after `--` (e.g. `-- --release --features x`).
    #[arg(last = true, value_name = "CARGO_ARGS")]
    pub cargo_args: Vec<String>,
}

/// Runs the command.
pub fn run(global: &Global, args: Args) -> CmdResult {
    let cargo = kenosis_core::env::var("CARGO").filter(|s| !s.is_empty()).unwrap_or_else(|| "cargo".into());
    let (name, dir) = pick_package(&cargo, &args)?;
    let records = dir.join(".kenosis");
    let before = listing(&records);

    let nonce = format!("{}-{}", std::process::id(), nanos());
    let mut cmd = Command::new(&cargo);
    cmd.arg("build").arg("-p").arg(&name);
    if let Some(m) = &args.manifest_path {
        cmd.arg("--manifest-path").arg(m);
    }
    cmd.args(&args.cargo_args).env("KENOSIS_PREPARE", &dir).env("KENOSIS_PREPARE_RUN", &nonce);
    if args.check {
        cmd.env("KENOSIS_PREPARE_CHECK", "1");
    } else {
        cmd.env_remove("KENOSIS_PREPARE_CHECK");
    }
    // Offline mode would only replay the records; preparing must calibrate.
    cmd.env_remove("KENOSIS_OFFLINE");
    if let Some(lib) = &global.ort_lib {
        cmd.env("ORT_DYLIB_PATH", lib);
    }
    global.debug(format!("running {cmd:?}"));
    let status = cmd.status().map_err(|e| Failure::Other(format!("could not run `{cargo} build`: {e}")))?;
    if !status.success() {
        return Err(if args.check {
            Failure::Other(format!(
                "the records in {} are missing or stale (see the build output above); run `kenosis prepare -p {name}` and commit them",
                records.display()
            ))
        } else {
            Failure::Other(format!("`cargo build -p {name}` failed (see above); no records were changed for models it did not reach"))
        });
    }
    let after = listing(&records);
    if args.check {
        println!("{} records in {} are up to date", after.len(), records.display());
        return Ok(());
    }
    if after.is_empty() {
        return Err(Failure::BadInput(format!(
            "the build of `{name}` wrote no records: does its build.rs call kenosis_build::quantize or Config::run?"
        )));
    }
    for (file, text) in &after {
        let state = match before.iter().find(|(f, _)| f == file) {
            None => "new",
            Some((_, old)) if old != text => "updated",
            _ => "unchanged",
        };
        println!("{state:>9}  {}", records.join(file).display());
    }
    println!("Commit {} so builds with KENOSIS_OFFLINE=1 (or without ONNX Runtime) make the same INT8 models.", records.display());
    Ok(())
}

/// The package to prepare: `-p NAME`, else the manifest's own package, else the only workspace
/// member that build-depends on kenosis-build.
fn pick_package(cargo: &str, args: &Args) -> Result<(String, PathBuf), Failure> {
    let mut cmd = Command::new(cargo);
    cmd.args(["metadata", "--no-deps", "--format-version", "1"]);
    if let Some(m) = &args.manifest_path {
        cmd.arg("--manifest-path").arg(m);
    }
    let out = cmd.output().map_err(|e| Failure::Other(format!("could not run `{cargo} metadata`: {e}")))?;
    if !out.status.success() {
        return Err(Failure::BadInput(format!("`cargo metadata` failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    let md: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| Failure::Other(format!("`cargo metadata` printed no JSON: {e}")))?;
    let packages = md["packages"].as_array().cloned().unwrap_or_default();
    let uses_kenosis = |p: &serde_json::Value| {
        p["dependencies"].as_array().is_some_and(|d| d.iter().any(|d| d["name"] == "kenosis-build" && d["kind"] == "build"))
    };
    let dir_of = |p: &serde_json::Value| -> PathBuf {
        PathBuf::from(p["manifest_path"].as_str().unwrap_or_default()).parent().map(Path::to_path_buf).unwrap_or_default()
    };
    let name_of = |p: &serde_json::Value| p["name"].as_str().unwrap_or_default().to_string();
    let chosen = if let Some(name) = &args.package {
        packages.iter().find(|p| p["name"] == name.as_str()).ok_or_else(|| {
            let names: Vec<String> = packages.iter().map(name_of).collect();
            Failure::BadInput(format!("no package `{name}` in this workspace (it has: {})", names.join(", ")))
        })?
    } else {
        let root = md["resolve"]["root"].as_str().map(str::to_string);
        let own = args.manifest_path.as_ref().and_then(|m| {
            let m = std::fs::canonicalize(m).ok()?;
            packages.iter().find(|p| p["manifest_path"].as_str().and_then(|s| std::fs::canonicalize(s).ok()) == Some(m.clone()))
        });
        let cwd = std::env::current_dir().ok().and_then(|d| std::fs::canonicalize(d).ok());
        let here = cwd.and_then(|cwd| packages.iter().find(|p| std::fs::canonicalize(dir_of(p)).ok().as_ref() == Some(&cwd)));
        let users: Vec<&serde_json::Value> = packages.iter().filter(|p| uses_kenosis(p)).collect();
        match own.or(here).or_else(|| root.and_then(|r| packages.iter().find(|p| p["id"] == r.as_str()))) {
            Some(p) => p,
            None if users.len() == 1 => users[0],
            None => {
                let names: Vec<String> = users.iter().map(|p| name_of(p)).collect();
                return Err(Failure::BadInput(format!(
                    "pick the package with -p NAME; packages that build-depend on kenosis-build: {}",
                    if names.is_empty() { "none".to_string() } else { names.join(", ") }
                )));
            }
        }
    };
    if !uses_kenosis(chosen) {
        return Err(Failure::BadInput(format!(
            "package `{}` has no build-dependency on kenosis-build, so its build writes no records",
            name_of(chosen)
        )));
    }
    Ok((name_of(chosen), dir_of(chosen)))
}

/// The record files in `dir` with their text, sorted by name.
fn listing(dir: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read_to_string(e.path()).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}
