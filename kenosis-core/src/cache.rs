//! Content keys and records for the build cache and offline builds.
//!
//! A key is the SHA-256 of the canonical JSON of [`KeyInputs`]: the model bytes, the calibration
//! bytes (sorted by name), the effective config and [`ALGORITHM_VERSION`]. The local cache adds
//! the ONNX Runtime version ([`KeyInputs::local_key`]); offline [`Record`]s are matched without
//! it. Cache entries ([`Cache`]) are folders written through a temp folder and one rename, with a
//! manifest of every file's SHA-256 that is checked on every read, so a torn or edited entry is
//! seen as corrupt and rebuilt, never used.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Bumped only when the INT8 bytes made from the same inputs would change. Not the crate
/// version: a Kenosis upgrade that keeps the output must keep committed records valid.
pub const ALGORITHM_VERSION: u32 = 2;

/// The record and manifest format.
pub const FORMAT: u32 = 1;

/// The manifest file inside every cache entry.
pub const MANIFEST: &str = "manifest.json";

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `value` with every object's keys in sorted order, whatever map type serde_json was built with.
pub fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = serde_json::Map::new();
            for k in keys {
                out.insert(k.clone(), sorted(&m[k]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        v => v.clone(),
    }
}

/// Compact JSON with sorted keys: the canonical text keys are hashed over.
pub fn canonical_json(value: &Value) -> String {
    sorted(value).to_string()
}

/// Pretty JSON with sorted keys and a trailing newline: the form committed records take.
pub fn pretty_json(value: &Value) -> String {
    let mut s = serde_json::to_string_pretty(&sorted(value)).unwrap_or_default();
    s.push('\n');
    s
}

/// A file that goes into a key: its path as the user wrote it, size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// Path as written (model) or relative to the calibration folder (calibration files), `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
}

impl FileDigest {
    /// Hashes `file`, recording it under `name`.
    pub fn of_file(name: impl Into<String>, file: &Path) -> Result<FileDigest> {
        let data = fs::read(file).map_err(|e| Error::io(file, e))?;
        Ok(FileDigest::of_bytes(name, &data))
    }

    /// Digest of bytes already in memory.
    pub fn of_bytes(name: impl Into<String>, data: &[u8]) -> FileDigest {
        FileDigest { path: name.into(), bytes: data.len() as u64, sha256: sha256_hex(data) }
    }
}

/// Everything a content key is computed from, kept in plain text in records and manifests so
/// a stale record says exactly what changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyInputs {
    /// [`ALGORITHM_VERSION`] when the key was made.
    pub algorithm_version: u32,
    /// The FP32 model.
    pub model: FileDigest,
    /// Calibration files, sorted by path.
    pub calibration: Vec<FileDigest>,
    /// The effective config as canonical JSON (paths relative to the crate, defaults filled in).
    pub config: Value,
}

impl KeyInputs {
    /// Key inputs for the current algorithm; sorts the calibration files and the config's keys.
    pub fn new(model: FileDigest, mut calibration: Vec<FileDigest>, config: Value) -> KeyInputs {
        calibration.sort_by(|a, b| a.path.cmp(&b.path));
        KeyInputs { algorithm_version: ALGORITHM_VERSION, model, calibration, config: sorted(&config) }
    }

    fn canonical(&self) -> String {
        canonical_json(&serde_json::to_value(self).unwrap_or(Value::Null))
    }

    /// The content key: matches records whatever ONNX Runtime made them.
    pub fn key(&self) -> String {
        sha256_hex(self.canonical().as_bytes())
    }

    /// The local cache key: the content key plus the ONNX Runtime version that calibrates.
    pub fn local_key(&self, ort_version: &str) -> String {
        sha256_hex(format!("{}\nort {ort_version}", self.canonical()).as_bytes())
    }

    /// What differs from `other` (a record's inputs), one line per difference; empty if none.
    pub fn diff(&self, other: &KeyInputs) -> Vec<String> {
        let mut out = Vec::new();
        if self.algorithm_version != other.algorithm_version {
            out.push(format!(
                "algorithm version {} now, {} in the record (this Kenosis makes different INT8 bytes)",
                self.algorithm_version, other.algorithm_version
            ));
        }
        if self.model != other.model {
            out.push(format!(
                "model {}: sha256 {} ({} bytes) now, {} ({} bytes) in the record",
                self.model.path, self.model.sha256, self.model.bytes, other.model.sha256, other.model.bytes
            ));
        }
        let now: BTreeMap<&str, &FileDigest> = self.calibration.iter().map(|f| (f.path.as_str(), f)).collect();
        let then: BTreeMap<&str, &FileDigest> = other.calibration.iter().map(|f| (f.path.as_str(), f)).collect();
        for (p, f) in &now {
            match then.get(p) {
                None => out.push(format!("calibration file {p} is new")),
                Some(g) if g != f => out.push(format!("calibration file {p} changed (sha256 {} now, {} in the record)", f.sha256, g.sha256)),
                _ => {}
            }
        }
        for p in then.keys().filter(|p| !now.contains_key(*p)) {
            out.push(format!("calibration file {p} is gone"));
        }
        let (a, b) = (sorted(&self.config), sorted(&other.config));
        if a != b {
            let mut keys: Vec<String> = Vec::new();
            if let (Value::Object(x), Value::Object(y)) = (&a, &b) {
                for k in x.keys().chain(y.keys()) {
                    if x.get(k) != y.get(k) && !keys.contains(k) {
                        keys.push(k.clone());
                    }
                }
            }
            for k in &keys {
                out.push(format!(
                    "config `{k}`: {} now, {} in the record",
                    a.get(k).map_or("unset".into(), Value::to_string),
                    b.get(k).map_or("unset".into(), Value::to_string)
                ));
            }
            if keys.is_empty() {
                out.push(format!("config {a} now, {b} in the record"));
            }
        }
        out
    }
}

/// One model's offline record, committed in the package's `.kenosis/` folder: everything
/// `quantize::rebuild` needs to make the same INT8 bytes without ONNX Runtime, and the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// [`FORMAT`].
    pub format: u32,
    /// The content key ([`KeyInputs::key`]).
    pub key: String,
    /// What the key was computed from, in plain text; checked on load.
    pub key_inputs: KeyInputs,
    /// Activation ranges from calibration (tensor -> [min, max]).
    pub ranges: Value,
    /// The INT8 model the record rebuilds: an offline build checks it made these bytes.
    pub int8: FileDigest,
    /// The ONNX Runtime version that calibrated and validated.
    pub ort_version: String,
    /// The Kenosis version that wrote the record (informative; not matched).
    pub kenosis_version: String,
    /// The quantizer's summary of what it did (counts, decisions).
    pub summary: Value,
    /// The validation report (latency in it is informative; never matched).
    pub report: Value,
}

impl Record {
    /// Pretty JSON with sorted keys and a trailing newline.
    pub fn to_pretty(&self) -> String {
        pretty_json(&serde_json::to_value(self).unwrap_or(Value::Null))
    }

    /// Reads a record; a file that is not one is an error naming it.
    pub fn load(path: &Path) -> Result<Record> {
        let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let rec: Record = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: not a Kenosis record ({e}); regenerate it with `kenosis prepare`", path.display())))?;
        if rec.format != FORMAT {
            return Err(Error::Config(format!(
                "{}: record format {}, this Kenosis reads {FORMAT}; regenerate it with `kenosis prepare`",
                path.display(),
                rec.format
            )));
        }
        if rec.key != rec.key_inputs.key() {
            return Err(Error::Config(format!(
                "{}: the key {} does not match the key inputs stored with it (edited by hand?); regenerate it with `kenosis prepare`",
                path.display(),
                rec.key
            )));
        }
        Ok(rec)
    }

    /// Writes the record atomically, creating its folder.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        crate::onnx::model::write_atomic(path, self.to_pretty().as_bytes())
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    key: String,
    key_inputs: KeyInputs,
    /// File name -> its digest.
    files: BTreeMap<String, FileDigest>,
}

/// What [`Cache::lookup`] found.
#[derive(Debug)]
pub enum Lookup {
    /// A whole, checked entry.
    Hit(PathBuf),
    /// No entry for the key.
    Miss,
    /// An entry that failed its checks; the reason says which. Rebuild it.
    Corrupt(String),
}

/// A folder of entries `<root>/<key>/`, each holding files and a manifest.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// A cache rooted at `root` (created on first store).
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    /// The cache's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of entry `key`.
    pub fn entry_dir(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Looks up `key`, checking the manifest, every file's SHA-256 and that the entry was made
    /// from `inputs`.
    pub fn lookup(&self, key: &str, inputs: &KeyInputs) -> Lookup {
        let dir = self.entry_dir(key);
        if !dir.exists() {
            return Lookup::Miss;
        }
        match check_entry(&dir, key, inputs) {
            Ok(()) => Lookup::Hit(dir),
            Err(why) => Lookup::Corrupt(format!("{}: {why}", dir.display())),
        }
    }

    /// Stores `files` under `key` through a temp folder and one rename. If another build stored
    /// a whole entry first, that one is kept; a corrupt one in the way is replaced.
    pub fn store(&self, key: &str, inputs: &KeyInputs, files: &[(&str, &[u8])]) -> Result<PathBuf> {
        fs::create_dir_all(&self.root).map_err(|e| Error::io(&self.root, e))?;
        self.sweep_old_temps();
        let dest = self.entry_dir(key);
        let tmp = self.root.join(format!(".tmp-{key}-{}-{}", std::process::id(), unique()));
        let written = write_entry(&tmp, key, inputs, files);
        if let Err(e) = written {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        for _attempt in 0..3 {
            match fs::rename(&tmp, &dest) {
                Ok(()) => return Ok(dest),
                Err(_) if dest.exists() => {
                    if check_entry(&dest, key, inputs).is_ok() {
                        // Another build won the race with the same content.
                        let _ = fs::remove_dir_all(&tmp);
                        return Ok(dest);
                    }
                    self.discard(&dest);
                }
                Err(e) => {
                    let _ = fs::remove_dir_all(&tmp);
                    return Err(Error::io(&dest, e));
                }
            }
        }
        let _ = fs::remove_dir_all(&tmp);
        Err(Error::io(&dest, std::io::Error::other("could not replace a corrupt cache entry; delete the folder and build again")))
    }

    /// Moves an entry out of the way (one rename, so readers never see it half-deleted) and deletes it.
    pub fn discard(&self, dir: &Path) {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let trash = self.root.join(format!(".trash-{name}-{}-{}", std::process::id(), unique()));
        if fs::rename(dir, &trash).is_ok() {
            let _ = fs::remove_dir_all(&trash);
        }
    }

    /// Removes temp and trash folders left by builds killed more than an hour ago.
    fn sweep_old_temps(&self) {
        let Ok(rd) = fs::read_dir(&self.root) else { return };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !(name.starts_with(".tmp-") || name.starts_with(".trash-")) {
                continue;
            }
            let old = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|d| d.as_secs() > 3600);
            if old {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

fn write_entry(tmp: &Path, key: &str, inputs: &KeyInputs, files: &[(&str, &[u8])]) -> Result<()> {
    fs::create_dir_all(tmp).map_err(|e| Error::io(tmp, e))?;
    let mut digests = BTreeMap::new();
    for (name, data) in files {
        let p = tmp.join(name);
        write_synced(&p, data)?;
        digests.insert(name.to_string(), FileDigest::of_bytes(*name, data));
    }
    let manifest = Manifest { format: FORMAT, key: key.to_string(), key_inputs: inputs.clone(), files: digests };
    let text = pretty_json(&serde_json::to_value(&manifest).unwrap_or(Value::Null));
    // The manifest goes last: an entry without one is never whole.
    write_synced(&tmp.join(MANIFEST), text.as_bytes())
}

fn write_synced(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = fs::File::create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(data).and_then(|_| f.sync_all()).map_err(|e| Error::io(path, e))
}

fn check_entry(dir: &Path, key: &str, inputs: &KeyInputs) -> std::result::Result<(), String> {
    let text = fs::read_to_string(dir.join(MANIFEST)).map_err(|e| format!("no readable manifest ({e})"))?;
    let m: Manifest = serde_json::from_str(&text).map_err(|e| format!("manifest is not valid ({e})"))?;
    if m.format != FORMAT || m.key != key {
        return Err(format!("manifest is for key {} (format {}), expected {key}", m.key, m.format));
    }
    let diff = inputs.diff(&m.key_inputs);
    if !diff.is_empty() {
        return Err(format!("made from other inputs: {}", diff.join("; ")));
    }
    for (name, want) in &m.files {
        let data = fs::read(dir.join(name)).map_err(|e| format!("{name}: {e}"))?;
        let got = FileDigest::of_bytes(name.as_str(), &data);
        if got.sha256 != want.sha256 || got.bytes != want.bytes {
            return Err(format!("{name} has sha256 {} ({} bytes), the manifest says {} ({} bytes)", got.sha256, got.bytes, want.sha256, want.bytes));
        }
    }
    Ok(())
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos() as u64).unwrap_or(0);
    t ^ N.fetch_add(1, Ordering::Relaxed).rotate_left(32)
}

/// Reads an entry's file after [`Cache::lookup`] returned a hit.
pub fn read_entry_file(dir: &Path, name: &str) -> Result<Vec<u8>> {
    let p = dir.join(name);
    fs::read(&p).map_err(|e| Error::io(p, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inputs() -> KeyInputs {
        KeyInputs::new(
            FileDigest::of_bytes("models/m.onnx", b"model"),
            vec![FileDigest::of_bytes("b.png", b"b"), FileDigest::of_bytes("a.png", b"a")],
            json!({"per_channel": true, "weight_bits": null, "inputs": {"z": 1, "a": 2}}),
        )
    }

    #[test]
    fn keys_are_stable_and_sorted() {
        let a = inputs();
        assert_eq!(a.calibration[0].path, "a.png");
        // Key order in the config does not matter; values do.
        let b = KeyInputs::new(
            FileDigest::of_bytes("models/m.onnx", b"model"),
            vec![FileDigest::of_bytes("a.png", b"a"), FileDigest::of_bytes("b.png", b"b")],
            json!({"inputs": {"a": 2, "z": 1}, "weight_bits": null, "per_channel": true}),
        );
        assert_eq!(a.key(), b.key());
        assert_eq!(a.key().len(), 64);
        assert_ne!(a.key(), a.local_key("1.31.1"));
        assert_ne!(a.local_key("1.31.1"), a.local_key("1.30.0"));
        let mut c = a.clone();
        c.config = json!({"per_channel": false, "weight_bits": null, "inputs": {"z": 1, "a": 2}});
        assert_ne!(a.key(), c.key());
        assert_eq!(c.diff(&a), vec!["config `per_channel`: false now, true in the record".to_string()]);
        let mut d = a.clone();
        d.calibration[1] = FileDigest::of_bytes("b.png", b"B");
        assert_ne!(a.key(), d.key());
        assert!(d.diff(&a)[0].starts_with("calibration file b.png changed"));
        // A known key pins the canonical form: changing it invalidates every committed record.
        assert_eq!(canonical_json(&json!({"b": [1, {"d": 1, "c": 2}], "a": null})), r#"{"a":null,"b":[1,{"c":2,"d":1}]}"#);
    }

    #[test]
    fn records_round_trip_pretty_and_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let inp = inputs();
        let rec = Record {
            format: FORMAT,
            key: inp.key(),
            key_inputs: inp,
            ranges: json!({"x": [0.0, 1.0]}),
            int8: FileDigest::of_bytes("model.int8.onnx", b"int8"),
            ort_version: "1.31.1".into(),
            kenosis_version: crate::VERSION.into(),
            summary: json!({}),
            report: json!({"cosine_mean": 0.999}),
        };
        let p = dir.path().join(".kenosis/m.json");
        rec.save(&p).unwrap();
        let text = fs::read_to_string(&p).unwrap();
        assert!(text.ends_with("}\n"));
        assert!(text.find("\"format\"").unwrap() < text.find("\"key\"").unwrap());
        assert_eq!(Record::load(&p).unwrap(), rec);
        // A hand edit of the key inputs is caught.
        fs::write(&p, text.replace("\"per_channel\": true", "\"per_channel\": false")).unwrap();
        assert!(Record::load(&p).unwrap_err().to_string().contains("does not match the key inputs"));
    }

    #[test]
    fn entries_are_checked_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("c"));
        let inp = inputs();
        let key = inp.local_key("1.31.1");
        assert!(matches!(cache.lookup(&key, &inp), Lookup::Miss));
        let entry = cache.store(&key, &inp, &[("model.int8.onnx", b"int8 bytes"), ("report.json", b"{}")]).unwrap();
        assert!(matches!(cache.lookup(&key, &inp), Lookup::Hit(_)));
        assert_eq!(read_entry_file(&entry, "model.int8.onnx").unwrap(), b"int8 bytes");

        // Edited file: corrupt.
        fs::write(entry.join("model.int8.onnx"), b"int8 bytez").unwrap();
        match cache.lookup(&key, &inp) {
            Lookup::Corrupt(why) => assert!(why.contains("model.int8.onnx has sha256"), "{why}"),
            other => panic!("{other:?}"),
        }
        // Storing again replaces the corrupt entry.
        cache.store(&key, &inp, &[("model.int8.onnx", b"int8 bytes"), ("report.json", b"{}")]).unwrap();
        assert!(matches!(cache.lookup(&key, &inp), Lookup::Hit(_)));

        // Truncated (no manifest, as after a kill mid-write): corrupt, never a hit.
        fs::remove_file(entry.join(MANIFEST)).unwrap();
        assert!(matches!(cache.lookup(&key, &inp), Lookup::Corrupt(_)));
        // Missing file listed in the manifest.
        cache.store(&key, &inp, &[("model.int8.onnx", b"int8 bytes")]).unwrap();
        fs::remove_file(entry.join("model.int8.onnx")).unwrap();
        assert!(matches!(cache.lookup(&key, &inp), Lookup::Corrupt(_)));
        // An entry made from other inputs under this key.
        let mut other = inp.clone();
        other.model = FileDigest::of_bytes("models/m.onnx", b"other");
        cache.store(&key, &other, &[("x", b"x")]).unwrap();
        assert!(matches!(cache.lookup(&key, &inp), Lookup::Corrupt(w) if w.contains("other inputs")));
    }

    #[test]
    fn racing_stores_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("c");
        let inp = inputs();
        let key = inp.local_key("1.31.1");
        let payload = vec![7u8; 1 << 20];
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let cache = Cache::new(&root);
                    let d = cache.store(&key, &inp, &[("model.int8.onnx", &payload)]).unwrap();
                    assert_eq!(fs::read(d.join("model.int8.onnx")).unwrap(), payload);
                });
            }
        });
        assert!(matches!(Cache::new(&root).lookup(&key, &inp), Lookup::Hit(_)));
        let leftovers: Vec<_> = fs::read_dir(&root).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with('.')).collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
