//! `$OUT_DIR/kenosis/index.json`, the file `include_quantized!` reads (format in kenosis-macros'
//! `index` module). Each build-script run starts it afresh, so it lists exactly the models this
//! run quantized.

use crate::error::{Error, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

static ENTRIES: Mutex<BTreeMap<String, Value>> = Mutex::new(BTreeMap::new());

/// Index format (kenosis-macros reads this version).
pub(crate) const FORMAT: u64 = 1;

/// Adds (or replaces) one model and rewrites the index atomically.
pub(crate) fn add(out_dir: &Path, key: &str, entry: Value) -> Result<()> {
    let mut entries = ENTRIES.lock().unwrap_or_else(|p| p.into_inner());
    entries.insert(key.to_string(), entry);
    let models: serde_json::Map<String, Value> = entries.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let text = kenosis_core::cache::pretty_json(&json!({"format": FORMAT, "models": models}));
    let dir = out_dir.join("kenosis");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let path = dir.join("index.json");
    kenosis_core::onnx::model::write_atomic(&path, text.as_bytes()).map_err(|e| Error::core(key, e))
}
