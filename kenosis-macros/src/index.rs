//! Reading the index kenosis-build writes to `$OUT_DIR/kenosis/index.json`.
//!
//! Format 1:
//! ```json
//! { "format": 1,
//!   "models": { "models/cls.onnx": { "artifact": "/abs/out/kenosis/<key>/model.int8.onnx",
//!                                    "model_sha256": "<hex>", "metrics": { ... } } } }
//! ```
//! Model paths are keys as written in build.rs, normalized by [`normalize`] (kenosis-build has
//! the same function; their tests share cases).

use serde_json::Value;
use std::path::{Path, PathBuf};

/// The index's location under `OUT_DIR`.
pub fn index_path(out_dir: &Path) -> PathBuf {
    out_dir.join("kenosis").join("index.json")
}

/// The index format this macro reads.
pub const FORMAT: u64 = 1;

/// Normalizes a model path as written: `/` separators, no `.` parts, `a/../` folded.
pub fn normalize(path: &str) -> String {
    let unified = path.replace('\\', "/");
    let absolute = unified.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in unified.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            ".." if absolute => {}
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    if absolute {
        format!("/{joined}")
    } else {
        joined
    }
}

/// One model's entry.
#[derive(Debug)]
pub struct Entry {
    pub artifact: PathBuf,
    pub model_sha256: String,
    pub metrics: serde_json::Map<String, Value>,
}

/// The parsed index: normalized path -> entry.
#[derive(Debug)]
pub struct Index {
    pub models: serde_json::Map<String, Value>,
}

impl Index {
    /// Parses the index text; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Index, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON ({e})"))?;
        let format = v.get("format").and_then(Value::as_u64).unwrap_or(0);
        if format != FORMAT {
            return Err(format!(
                "index format {format}, this kenosis-macros reads format {FORMAT}; use the same Kenosis version for kenosis-build and kenosis-core"
            ));
        }
        let models = v.get("models").and_then(Value::as_object).cloned().ok_or("no `models` object")?;
        Ok(Index { models })
    }

    /// The sorted model paths the index holds.
    pub fn names(&self) -> Vec<&str> {
        self.models.keys().map(String::as_str).collect()
    }

    /// The entry for a normalized path.
    pub fn get(&self, key: &str) -> Result<Option<Entry>, String> {
        let Some(e) = self.models.get(key) else { return Ok(None) };
        let artifact = e.get("artifact").and_then(Value::as_str).ok_or("entry has no `artifact`")?;
        let model_sha256 = e.get("model_sha256").and_then(Value::as_str).unwrap_or_default().to_string();
        let metrics = e.get("metrics").and_then(Value::as_object).cloned().ok_or("entry has no `metrics`")?;
        Ok(Some(Entry { artifact: PathBuf::from(artifact), model_sha256, metrics }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same cases are in kenosis-build's `paths` tests; keep them in sync.
    pub const CASES: &[(&str, &str)] = &[
        ("models/cls.onnx", "models/cls.onnx"),
        ("./models/cls.onnx", "models/cls.onnx"),
        ("models//cls.onnx", "models/cls.onnx"),
        ("models\\cls.onnx", "models/cls.onnx"),
        ("a/b/../cls.onnx", "a/cls.onnx"),
        ("../shared/m.onnx", "../shared/m.onnx"),
        ("../../x/./m.onnx", "../../x/m.onnx"),
        ("/abs/./m.onnx", "/abs/m.onnx"),
        ("/../m.onnx", "/m.onnx"),
    ];

    #[test]
    fn normalizes_paths() {
        for (input, want) in CASES {
            assert_eq!(normalize(input), *want, "{input}");
        }
    }

    #[test]
    fn rejects_other_formats() {
        assert!(Index::parse("{\"format\": 2, \"models\": {}}").unwrap_err().contains("format 2"));
        assert!(Index::parse("nope").unwrap_err().contains("not valid JSON"));
        let idx = Index::parse("{\"format\": 1, \"models\": {\"a.onnx\": {\"artifact\": \"/x\", \"metrics\": {}}}}").unwrap();
        assert_eq!(idx.names(), vec!["a.onnx"]);
        assert!(idx.get("a.onnx").unwrap().is_some());
        assert!(idx.get("b.onnx").unwrap().is_none());
    }
}
