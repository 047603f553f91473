//! `[package.metadata.kenosis]` in the crate's Cargo.toml, read with cargo_metadata:
//!
//! ```toml
//! [package.metadata.kenosis]
//! per_channel = true                       # defaults for every model below
//! models = [
//!     "models/cls.onnx",
//!     { path = "models/det.onnx", calibration_images = "calib/", min_cosine = 0.995 },
//! ]
//! ```
//! Keys are the `Config` setter names.

use crate::error::{Error, Result};
use crate::settings::Settings;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// What the package's metadata says.
#[derive(Debug, Default)]
pub(crate) struct PackageMeta {
    pub defaults: Settings,
    pub models: Vec<(String, Settings)>,
    pub target_dir: Option<PathBuf>,
}

/// Reads the metadata of the package at `manifest` (its Cargo.toml).
pub(crate) fn read(manifest: &Path) -> Result<PackageMeta> {
    let meta_err = |reason: String| Error::Metadata { manifest: manifest.to_path_buf(), reason };
    let md = cargo_metadata::MetadataCommand::new()
        .manifest_path(manifest)
        .no_deps()
        .other_options(vec!["--offline".to_string()])
        .exec()
        .map_err(|e| meta_err(format!("`cargo metadata` failed: {e}")))?;
    let target_dir = Some(md.target_directory.clone().into_std_path_buf());
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let want = canon(manifest);
    let Some(pkg) = md.packages.iter().find(|p| canon(p.manifest_path.as_std_path()) == want) else {
        return Ok(PackageMeta { target_dir, ..Default::default() });
    };
    let mut out = parse(pkg.metadata.get("kenosis")).map_err(meta_err)?;
    out.target_dir = target_dir;
    Ok(out)
}

/// Parses the `kenosis` table (absent: nothing).
pub(crate) fn parse(value: Option<&Value>) -> std::result::Result<PackageMeta, String> {
    let Some(value) = value else { return Ok(PackageMeta::default()) };
    let Some(table) = value.as_object() else { return Err("must be a table".into()) };
    let mut table = table.clone();
    let models = table.remove("models");
    let defaults: Settings = serde_json::from_value(Value::Object(table)).map_err(|e| format!("{e}"))?;
    let mut list = Vec::new();
    match models {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                match item {
                    Value::String(path) => list.push((path, Settings::default())),
                    Value::Object(mut m) => {
                        let Some(Value::String(path)) = m.remove("path") else {
                            return Err(format!("models[{i}] needs `path = \"models/x.onnx\"`"));
                        };
                        let s: Settings = serde_json::from_value(Value::Object(m)).map_err(|e| format!("models[{i}] ({path}): {e}"))?;
                        list.push((path, s));
                    }
                    _ => return Err(format!("models[{i}] must be a path or a table with `path`")),
                }
            }
        }
        Some(_) => return Err("`models` must be a list of paths or tables".into()),
    }
    Ok(PackageMeta { defaults, models: list, target_dir: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_defaults_and_models() {
        let v = json!({"per_channel": true, "target_cosine": 0.995, "models": ["a.onnx", {"path": "b.onnx", "samples": 4, "input_shape": {"x": "1x3x8x8"}}]});
        let m = parse(Some(&v)).unwrap();
        assert_eq!(m.defaults.per_channel, Some(true));
        assert_eq!(m.defaults.target_cosine, Some(0.995));
        assert_eq!(m.models.len(), 2);
        assert_eq!(m.models[1].0, "b.onnx");
        assert_eq!(m.models[1].1.samples, Some(4));
        assert!(parse(None).unwrap().models.is_empty());
    }

    #[test]
    fn typos_are_errors() {
        let e = parse(Some(&json!({"per_chanel": true}))).unwrap_err();
        assert!(e.contains("per_chanel"), "{e}");
        let e = parse(Some(&json!({"models": [{"samples": 2}]}))).unwrap_err();
        assert!(e.contains("needs `path"), "{e}");
    }
}
