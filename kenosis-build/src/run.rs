//! One model through the build: content key, cache or offline record, pipeline, gates, outputs.

use crate::error::{Error, Result};
use crate::paths;
use crate::pipeline;
use crate::settings::Resolved;
use crate::{Artifact, Origin};
use kenosis_core::cache::{self, Cache, FileDigest, KeyInputs, Lookup, Record};
use kenosis_core::onnx::Model;
use kenosis_core::validate::Report;
use kenosis_core::env;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const INT8_FILE: &str = "model.int8.onnx";
const REPORT_FILE: &str = "report.json";
const RECORD_FILE: &str = "record.json";

/// What `kenosis prepare` asked for, through `KENOSIS_PREPARE=<package dir>`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Prepare {
    /// Write the records into `.kenosis/`.
    Write,
    /// Fail when a record is missing or stale (`KENOSIS_PREPARE_CHECK=1`).
    Check,
}

/// The build script's surroundings, read once per `run`.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub manifest_dir: PathBuf,
    pub out_dir: PathBuf,
    pub target_arch: String,
    pub offline: bool,
    pub prepare: Option<Prepare>,
    pub shared: Option<Cache>,
}

impl Ctx {
    /// Reads Cargo's variables and Kenosis's own; `target_dir` is cargo_metadata's, if read.
    pub fn from_env(target_dir: Option<&Path>) -> Result<Ctx> {
        let out_dir = env::var("OUT_DIR").filter(|s| !s.is_empty()).map(PathBuf::from).ok_or(Error::NoOutDir)?;
        let manifest_dir = manifest_dir()?;
        let target_arch = env::var("CARGO_CFG_TARGET_ARCH").ok_or(Error::NotInBuildScript { var: "CARGO_CFG_TARGET_ARCH" })?;
        let offline = env::flag("KENOSIS_OFFLINE");
        let prepare = env::var("KENOSIS_PREPARE").filter(|s| !s.is_empty()).and_then(|dir| {
            let same = std::fs::canonicalize(&dir).ok() == std::fs::canonicalize(&manifest_dir).ok();
            // Re-read on every prepare run, so Cargo reruns this script even when nothing else changed.
            let _ = env::var("KENOSIS_PREPARE_RUN");
            same.then(|| if env::flag("KENOSIS_PREPARE_CHECK") { Prepare::Check } else { Prepare::Write })
        });
        let shared = shared_cache_dir(&out_dir, target_dir).map(Cache::new);
        Ok(Ctx { manifest_dir, out_dir, target_arch, offline, prepare, shared })
    }
}

pub(crate) fn manifest_dir() -> Result<PathBuf> {
    env::var("CARGO_MANIFEST_DIR").map(PathBuf::from).ok_or(Error::NotInBuildScript { var: "CARGO_MANIFEST_DIR" })
}

/// `KENOSIS_CACHE_DIR`, else `<target dir>/kenosis-cache` (an absolute `CARGO_TARGET_DIR`, the
/// target folder above OUT_DIR, or cargo_metadata's).
fn shared_cache_dir(out_dir: &Path, target_dir: Option<&Path>) -> Option<PathBuf> {
    if let Some(d) = env::var("KENOSIS_CACHE_DIR").filter(|s| !s.is_empty()) {
        return Some(PathBuf::from(d));
    }
    let target = env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| paths::target_dir_above(out_dir))
        .or_else(|| target_dir.map(Path::to_path_buf))?;
    Some(target.join("kenosis-cache"))
}

fn directive(s: &str) {
    println!("cargo:{s}");
}

fn warn(msg: &str) {
    for line in msg.lines() {
        directive(&format!("warning={line}"));
    }
}

/// Builds one model; returns where its INT8 model is and how it was obtained.
pub(crate) fn build(ctx: &Ctx, written: &str, r: &Resolved) -> Result<Artifact> {
    let norm = paths::normalize(written);
    let model_path = ctx.manifest_dir.join(written);
    directive(&format!("rerun-if-changed={}", model_path.display()));
    let model_bytes = std::fs::read(&model_path).map_err(|e| Error::Config {
        model: written.to_string(),
        reason: format!("can't read the model at {} ({e}); model paths are relative to the crate root", model_path.display()),
    })?;

    let mut calibration = Vec::new();
    if let Some(dir) = r.calibration_dir() {
        let abs = ctx.manifest_dir.join(dir);
        directive(&format!("rerun-if-changed={}", abs.display()));
        let files = paths::files_under(&abs).map_err(|e| Error::Config {
            model: written.to_string(),
            reason: format!("can't read the calibration folder {} ({e}); it is relative to the crate root", abs.display()),
        })?;
        for (rel, file) in files {
            directive(&format!("rerun-if-changed={}", file.display()));
            calibration.push(FileDigest::of_file(rel, &file).map_err(|e| Error::core(written, e))?);
        }
    }
    let inputs = KeyInputs::new(FileDigest::of_bytes(norm.clone(), &model_bytes), calibration, r.key_config());
    let key = inputs.key();
    let records_dir = ctx.manifest_dir.join(".kenosis");
    let record_path = records_dir.join(paths::record_name(&norm));
    if records_dir.is_dir() {
        directive(&format!("rerun-if-changed={}", records_dir.display()));
    }
    if ctx.prepare == Some(Prepare::Check) {
        check_record(written, &record_path, &inputs)?;
    }

    let fp32 = Model::load(&model_path).map_err(|e| Error::core(written, e))?;
    let (origin, dir_key, int8, record) = if ctx.offline {
        let (int8, rec) = from_record(&ctx.manifest_dir, written, &fp32, r, &inputs, &record_path, "KENOSIS_OFFLINE is set")?;
        (Origin::Record, key.clone(), int8, rec)
    } else {
        match kenosis_core::runtime::runtime() {
            Ok(rt) => {
                let local = inputs.local_key(&rt.version);
                let (origin, int8, rec) = online(ctx, written, &fp32, r, &inputs, &local, &rt.version)?;
                (origin, local, int8, rec)
            }
            Err(e) if record_path.is_file() => {
                warn(&format!("kenosis: {written}: no ONNX Runtime ({}); rebuilding from the offline record", first_line(&e.to_string())));
                let (int8, rec) = from_record(&ctx.manifest_dir, written, &fp32, r, &inputs, &record_path, "no ONNX Runtime")?;
                (Origin::Record, key.clone(), int8, rec)
            }
            Err(e) => return Err(Error::core(written, e)),
        }
    };

    let report_json = cache::pretty_json(&record.report);
    let out_cache = Cache::new(ctx.out_dir.join("kenosis"));
    let entry = out_cache
        .store(&dir_key, &inputs, &[(INT8_FILE, &int8), (REPORT_FILE, report_json.as_bytes())])
        .map_err(|e| Error::core(written, e))?;
    let artifact = entry.join(INT8_FILE);

    let report: Report = serde_json::from_value(record.report.clone()).map_err(|e| Error::Config {
        model: written.to_string(),
        reason: format!("the stored report can't be read ({e}); delete the cache entry or rerun `kenosis prepare`"),
    })?;
    let failures = report.check(&r.gates);
    if !failures.is_empty() {
        return Err(Error::Gate { model: written.to_string(), failures, report: Box::new(report) });
    }
    if ctx.prepare == Some(Prepare::Write) {
        let text = record.to_pretty();
        if std::fs::read_to_string(&record_path).ok().as_deref() != Some(text.as_str()) {
            record.save(&record_path).map_err(|e| Error::core(written, e))?;
        }
    }

    let metrics = metrics(&report, &record, r, &key);
    let entry_json = json!({
        "artifact": artifact.to_string_lossy(),
        "model_sha256": inputs.model.sha256,
        "metrics": metrics,
    });
    crate::index::add(&ctx.out_dir, &norm, entry_json)?;
    warn(&summary_line(written, &report, origin));
    Ok(Artifact { source: written.to_string(), path: artifact, key, origin, report })
}

/// Shared cache hit, or calibrate + quantize + validate and fill the cache.
fn online(
    ctx: &Ctx,
    written: &str,
    fp32: &Model,
    r: &Resolved,
    inputs: &KeyInputs,
    local: &str,
    ort_version: &str,
) -> Result<(Origin, Vec<u8>, Record)> {
    if let Some(shared) = &ctx.shared {
        match shared.lookup(local, inputs) {
            Lookup::Hit(dir) => match read_hit(&dir) {
                Some((int8, rec)) => return Ok((Origin::CacheHit, int8, rec)),
                None => {
                    warn(&format!("kenosis: {written}: cache entry {} is unreadable or from another Kenosis version; rebuilding it", dir.display()));
                    shared.discard(&dir);
                }
            },
            Lookup::Corrupt(why) => {
                warn(&format!("kenosis: {written}: corrupt cache entry, rebuilding it ({why})"));
                shared.discard(&shared.entry_dir(local));
            }
            Lookup::Miss => {}
        }
    }
    // Every file of the calibration folder already has its rerun-if-changed (see `build`).
    let q = pipeline::quantize(fp32, r, &ctx.manifest_dir).map_err(|e| Error::core(written, e))?;
    let int8 = q.model.to_bytes().map_err(|e| Error::core(written, e))?;
    let report = pipeline::validate(fp32, &q.model, r, &ctx.manifest_dir).map_err(|e| Error::core(written, e))?;
    let record = Record {
        format: cache::FORMAT,
        key: inputs.key(),
        key_inputs: inputs.clone(),
        ranges: exact_json(&q.ranges),
        int8: FileDigest::of_bytes(INT8_FILE, &int8),
        ort_version: ort_version.to_string(),
        kenosis_version: kenosis_core::VERSION.to_string(),
        summary: relative(exact_json(&q.summary), &ctx.manifest_dir),
        report: relative(exact_json(&report), &ctx.manifest_dir),
    };
    if let Some(shared) = &ctx.shared {
        let report_json = cache::pretty_json(&record.report);
        let record_json = record.to_pretty();
        let files: [(&str, &[u8]); 3] =
            [(INT8_FILE, &int8), (REPORT_FILE, report_json.as_bytes()), (RECORD_FILE, record_json.as_bytes())];
        if let Err(e) = shared.store(local, inputs, &files) {
            // A read-only or full cache costs the next build time, not this one its result.
            warn(&format!("kenosis: {written}: could not fill the shared cache ({e}); set KENOSIS_CACHE_DIR to a writable folder"));
        }
    }
    Ok((Origin::Calibrated, int8, record))
}

fn read_hit(dir: &Path) -> Option<(Vec<u8>, Record)> {
    let int8 = cache::read_entry_file(dir, INT8_FILE).ok()?;
    let text = cache::read_entry_file(dir, RECORD_FILE).ok()?;
    let rec: Record = serde_json::from_slice(&text).ok()?;
    // An entry from a Kenosis whose report had other fields is rebuilt, not an error.
    serde_json::from_value::<Report>(rec.report.clone()).ok()?;
    Some((int8, rec))
}

/// Rebuilds from the committed record, without ONNX Runtime.
fn from_record(
    manifest_dir: &Path,
    written: &str,
    fp32: &Model,
    r: &Resolved,
    inputs: &KeyInputs,
    record_path: &Path,
    why: &str,
) -> Result<(Vec<u8>, Record)> {
    let rec = load_matching(written, record_path, inputs, why)?;
    let ranges = serde_json::from_value(rec.ranges.clone()).map_err(|e| Error::Config {
        model: written.to_string(),
        reason: format!("{}: the ranges can't be read ({e}); run `kenosis prepare`", record_path.display()),
    })?;
    let q = pipeline::rebuild(fp32, &ranges, &searched_float(&rec.summary), r, manifest_dir).map_err(|e| Error::core(written, e))?;
    let int8 = q.model.to_bytes().map_err(|e| Error::core(written, e))?;
    let got = FileDigest::of_bytes(INT8_FILE, &int8);
    if got.sha256 != rec.int8.sha256 {
        warn(&format!(
            "kenosis: {written}: the rebuilt INT8 model (sha256 {}) differs from the one the record was made with ({}); \
             the metrics in the record may not describe it. Run `kenosis prepare` with this Kenosis version",
            got.sha256, rec.int8.sha256
        ));
    }
    Ok((int8, rec))
}

fn load_matching(written: &str, record_path: &Path, inputs: &KeyInputs, why: &str) -> Result<Record> {
    if !record_path.is_file() {
        return Err(Error::NoRecord { model: written.to_string(), record: record_path.to_path_buf(), why: why.to_string() });
    }
    let rec = Record::load(record_path).map_err(|e| Error::core(written, e))?;
    let changes = inputs.diff(&rec.key_inputs);
    if !changes.is_empty() {
        return Err(Error::StaleRecord { model: written.to_string(), record: record_path.to_path_buf(), changes });
    }
    Ok(rec)
}

fn check_record(written: &str, record_path: &Path, inputs: &KeyInputs) -> Result<()> {
    load_matching(written, record_path, inputs, "`kenosis prepare --check` found no record").map(|_| ())
}

/// The layers the accuracy search kept float, from a record's summary (none in older records).
fn searched_float(summary: &Value) -> Vec<String> {
    serde_json::from_value::<kenosis_core::quantize::Summary>(summary.clone())
        .map(|s| s.searched_float)
        .unwrap_or_default()
}

/// `v` with the crate folder cut from the paths in its notes, so records read the same in every checkout.
fn relative(v: Value, manifest_dir: &Path) -> Value {
    let prefix = format!("{}/", manifest_dir.display());
    let text = v.to_string().replace(&prefix, "");
    serde_json::from_str(&text).unwrap_or(v)
}

/// Serializes through text so f32 values keep their shortest form (and their exact bits).
fn exact_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_string(v).ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(Value::Null)
}

fn metrics(report: &Report, record: &Record, r: &Resolved, key: &str) -> Value {
    let weight_bits = record.summary.get("weight_bits").and_then(Value::as_u64).unwrap_or(u64::from(r.effective_weight_bits()));
    let per_channel = record.summary.get("per_channel").and_then(Value::as_bool).unwrap_or(r.per_channel);
    json!({
        "cosine_mean": report.cosine_mean,
        "cosine_min": report.cosine_min,
        "top1_agreement": report.top1_agreement,
        "fp32_ms": report.fp32_ms,
        "int8_ms": report.int8_ms,
        "speedup": report.speedup,
        "fp32_bytes": report.fp32_bytes,
        "int8_bytes": report.int8_bytes,
        "fused": report.fused,
        "verdict": report.verdict.to_string(),
        "key": key,
        "kenosis_version": record.kenosis_version,
        "ort_version": record.ort_version,
        "per_channel": per_channel,
        "weight_bits": weight_bits,
    })
}

fn summary_line(written: &str, report: &Report, origin: Origin) -> String {
    let kb = |b: u64| format!("{:.0} KB", b as f64 / 1024.0);
    let top1 = report.top1_agreement.map(|t| format!(", top-1 {:.1}%", t * 100.0)).unwrap_or_default();
    let how = match origin {
        Origin::Calibrated => "calibrated and validated",
        Origin::CacheHit => "cache hit, no calibration",
        Origin::Record => "rebuilt from .kenosis/ record, no ONNX Runtime",
    };
    format!(
        "kenosis: {written}: {} cosine {:.4} (min {:.4}){top1}, speedup {:.2}x (timed during the build: noisy), {} -> {} [{how}]",
        report.verdict,
        report.cosine_mean,
        report.cosine_min,
        report.speedup,
        kb(report.fp32_bytes),
        kb(report.int8_bytes),
    )
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searched_layers_come_back_from_the_record_summary() {
        let summary = kenosis_core::quantize::Summary {
            searched_float: vec!["p2o.Conv.0".into(), "p2o.Conv.1".into()],
            ..Default::default()
        };
        let v = serde_json::to_value(&summary).unwrap();
        assert_eq!(searched_float(&v), summary.searched_float);
        // A record written before the search existed has no such field.
        let mut old = v.clone();
        old.as_object_mut().unwrap().remove("searched_float");
        assert!(searched_float(&old).is_empty());
    }
}
