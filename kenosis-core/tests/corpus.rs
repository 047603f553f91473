//! Corpus sweep: every model of ONNX's own backend test corpus through `inspect`, a load/save
//! round trip, `cast --to fp16`, the prepare passes and `quantize`, with no panic, no hang, and
//! either a clear refusal or an output ONNX Runtime loads.
//!
//! The corpus comes from `scripts/fetch-onnx-corpus.sh` (run here when its folder is missing).
//! Modes, from `KENOSIS_CORPUS` (comma-separated words):
//! - unset / `slice`: every `SLICE_STEP`-th model by sorted name (the CI default, ~15 s; the full sweep takes ~70 s);
//! - `full`: every model (`KENOSIS_CORPUS=full cargo test -p kenosis-core --test corpus -- --nocapture`);
//! - `required`: fail instead of skipping when the corpus or ONNX Runtime is missing;
//! - `write`: rewrite `tests/corpus-tally.json` with this run's tally (after a reviewed improvement).
//!
//! The tally of the run is printed and compared with `tests/corpus-tally.json`: fewer models
//! passing a stage, or more failures, than the file records fails the test.

use kenosis_core::cast::{cast, CastOptions, Precision};
use kenosis_core::inspect::Inspection;
use kenosis_core::onnx::passes::{prepare, PrepareOptions};
use kenosis_core::onnx::proto::{data_type as dt, TensorProto};
use kenosis_core::onnx::{tensor, Model, SaveOptions};
use kenosis_core::runtime::{Feed, Session, SessionOptions};
use kenosis_core::{env, Error};
use ndarray::{ArrayD, IxDyn};
use prost::Message;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The CI slice takes every N-th model by sorted name (so every group and most op families appear).
const SLICE_STEP: usize = 5;
/// A model taking longer than this through all stages counts as a failure (a hang).
const MODEL_TIMEOUT: Duration = Duration::from_secs(60);
/// ONNX's backend tests compare with these (onnx/backend/test/runner: rtol 1e-3, atol 1e-7).
const RTOL: f64 = 1e-3;
const ATOL: f64 = 1e-7;
/// "Close" for half-precision and INT8 outputs: reported, not enforced.
const LOOSE_RTOL: f64 = 5e-2;
const LOOSE_ATOL: f64 = 1e-2;

/// One model of the corpus.
struct Case {
    /// `group/name`, e.g. `node/test_abs`.
    name: String,
    model: PathBuf,
    /// `test_data_set_0`, when it exists.
    data: Option<PathBuf>,
}

/// What happened to one model.
#[derive(Debug, Default)]
struct Outcome {
    /// ONNX Runtime loads the original file (otherwise ORT checks are skipped for it).
    ort_loads_original: bool,
    /// Reference outputs were compared (inputs and outputs were all feedable tensors).
    ref_checked: bool,
    /// ORT's outputs on the original file match the reference within ONNX's tolerances.
    ort_matches_ref: bool,
    round_trip_ok: bool,
    /// `Some(Ok(close))` cast output loads (close: within loose tolerance); `Some(Err(reason))` refused.
    cast: Option<Result<bool, String>>,
    prepare: Option<Result<(), String>>,
    /// `Some(Ok(true))` quantized, `Some(Ok(false))` left float; `Some(Err(reason))` refused.
    quantize: Option<Result<bool, String>>,
    /// A failure (panic, unloadable output, wrong values): the reason.
    failed: Option<String>,
    notes: Vec<String>,
}

/// Counts over the sweep, stored in `tests/corpus-tally.json`.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Tally {
    total: usize,
    ort_loads_original: usize,
    ref_checked: usize,
    ort_matches_ref: usize,
    round_trip_ok: usize,
    cast_ok: usize,
    cast_close: usize,
    prepare_ok: usize,
    quantized: usize,
    left_float: usize,
    /// `stage: ErrorVariant` → models refused that way.
    refused: BTreeMap<String, usize>,
    failed: usize,
    /// The failures by name (sorted), so a new failure is visible in the diff.
    failures: Vec<String>,
}

fn corpus_dir() -> PathBuf {
    if let Some(d) = env::var("KENOSIS_CORPUS_DIR") {
        return PathBuf::from(d);
    }
    let cache = env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env::var("HOME").unwrap_or_default()).join(".cache"));
    cache.join("kenosis/onnx-corpus/1.23.2")
}

/// The corpus folder, fetching it when missing; `None` (with the reason) when it can't be had.
fn fetch_corpus() -> Result<PathBuf, String> {
    let dir = corpus_dir();
    if dir.join(".complete-wheel").exists() {
        return Ok(dir);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/fetch-onnx-corpus.sh");
    let out = std::process::Command::new("bash").arg(&script).output().map_err(|e| format!("running {}: {e}", script.display()))?;
    if !out.status.success() || !dir.join(".complete-wheel").exists() {
        return Err(format!("{} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(dir)
}

fn cases(dir: &Path) -> Vec<Case> {
    let mut v = Vec::new();
    let wheel = dir.join("wheel/onnx/backend/test/data");
    let groups = [
        ("node", dir.join("debian/node")),
        ("pytorch-converted", wheel.join("pytorch-converted")),
        ("pytorch-operator", wheel.join("pytorch-operator")),
        ("simple", wheel.join("simple")),
    ];
    for (group, gdir) in groups {
        let Ok(rd) = std::fs::read_dir(&gdir) else { continue };
        for e in rd.flatten() {
            let model = e.path().join("model.onnx");
            if model.is_file() {
                let data = e.path().join("test_data_set_0");
                v.push(Case {
                    name: format!("{group}/{}", e.file_name().to_string_lossy()),
                    model,
                    data: data.is_dir().then_some(data),
                });
            }
        }
    }
    // `light` models come with reference outputs but no inputs: load, transform and ORT-load only.
    if let Ok(rd) = std::fs::read_dir(wheel.join("light")) {
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "onnx") {
                let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                v.push(Case { name: format!("light/{stem}"), model: p, data: None });
            }
        }
    }
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// A stable refusal reason: the error's variant and its message's first clause, with the
/// model's path taken out (`Unsupported: <model> holds no float32 weights, inputs or outputs to cast`).
fn reason(e: &Error, model: &Path) -> String {
    let d = format!("{e:?}");
    let variant = d.split(|c: char| !c.is_alphanumeric()).next().unwrap_or("Error");
    let msg = e.to_string().replace(&model.display().to_string(), "<model>");
    let msg = ["unsupported: ", "invalid model: ", "nothing to quantize: ", "invalid setting: "]
        .iter()
        .find_map(|p| msg.strip_prefix(p))
        .unwrap_or(&msg);
    // Names in backticks and sample numbers vary per model: blank them so reasons group.
    let mut plain = String::new();
    for (i, part) in msg.split(';').next().unwrap_or("").split('`').enumerate() {
        plain.push_str(if i % 2 == 1 { "…" } else { part });
    }
    let plain: Vec<&str> =
        plain.split(' ').map(|w| if !w.is_empty() && w.chars().all(|c| c.is_ascii_digit()) { "N" } else { w }).collect();
    let plain = plain.join(" ");
    let first: String = plain.chars().take(70).collect();
    format!("{variant}: {}", first.trim())
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default()
}

/// Runs `f`, turning a panic into an error string.
fn guarded<T>(stage: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| format!("{stage} panicked: {}", panic_text(p)))
}

fn read_pb(path: &Path) -> Option<TensorProto> {
    TensorProto::decode(std::fs::read(path).ok()?.as_slice()).ok()
}

fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    (0..).map(|i| dir.join(format!("{prefix}_{i}.pb"))).take_while(|p| p.exists()).collect()
}

fn shape(t: &TensorProto) -> Option<Vec<usize>> {
    t.dims.iter().map(|&d| usize::try_from(d).ok()).collect()
}

fn feed(t: &TensorProto) -> Option<Feed> {
    let s = IxDyn(&shape(t)?);
    Some(match t.data_type {
        dt::FLOAT => Feed::F32(ArrayD::from_shape_vec(s, tensor::to_f32(t).ok()?).ok()?),
        dt::INT64 => Feed::I64(ArrayD::from_shape_vec(s, tensor::to_i64(t).ok()?).ok()?),
        dt::INT32 => Feed::I32(ArrayD::from_shape_vec(s, tensor::to_i32(t).ok()?).ok()?),
        dt::UINT8 => Feed::U8(ArrayD::from_shape_vec(s, tensor::to_u8(t).ok()?).ok()?),
        dt::BOOL => Feed::Bool(ArrayD::from_shape_vec(s, tensor::to_bool(t).ok()?).ok()?),
        _ => return None,
    })
}

fn values(t: &TensorProto) -> Option<Vec<f64>> {
    Some(match t.data_type {
        dt::FLOAT | dt::FLOAT16 | dt::BFLOAT16 => tensor::to_f32(t).ok()?.into_iter().map(f64::from).collect(),
        dt::DOUBLE => tensor::to_f64(t).ok()?,
        dt::INT64 => tensor::to_i64(t).ok()?.into_iter().map(|v| v as f64).collect(),
        dt::INT32 => tensor::to_i32(t).ok()?.into_iter().map(f64::from).collect(),
        dt::UINT8 => tensor::to_u8(t).ok()?.into_iter().map(f64::from).collect(),
        dt::INT8 => tensor::to_i8(t).ok()?.into_iter().map(f64::from).collect(),
        dt::BOOL => tensor::to_bool(t).ok()?.into_iter().map(|b| b as u8 as f64).collect(),
        _ => return None,
    })
}

/// Reference inputs (as feeds, by graph input name) and outputs, when every one is a plain tensor.
type Reference = (Vec<(String, Feed)>, Vec<(Vec<usize>, Vec<f64>)>);

fn reference(model: &Model, data: &Path) -> Option<Reference> {
    let g = model.graph();
    let inits: std::collections::HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    let names: Vec<&str> = g.input.iter().map(|v| v.name.as_str()).filter(|n| !inits.contains(n)).collect();
    let ins = numbered(data, "input");
    if ins.len() != names.len() {
        return None;
    }
    let mut feeds = Vec::new();
    for (p, n) in ins.iter().zip(&names) {
        feeds.push((n.to_string(), feed(&read_pb(p)?)?));
    }
    let mut outs = Vec::new();
    for p in numbered(data, "output") {
        let t = read_pb(&p)?;
        outs.push((shape(&t)?, values(&t)?));
    }
    (!outs.is_empty()).then_some((feeds, outs))
}

/// Worst `|a - b| - (atol + rtol * |b|)` over the outputs; `None` when shapes or counts differ.
fn excess(got: &[(String, ArrayD<f32>)], want: &[(Vec<usize>, Vec<f64>)], rtol: f64, atol: f64) -> Option<f64> {
    if got.len() != want.len() {
        return None;
    }
    let mut worst = f64::NEG_INFINITY;
    for ((_, g), (ws, w)) in got.iter().zip(want) {
        if g.shape() != ws.as_slice() || g.len() != w.len() {
            return None;
        }
        for (&a, &b) in g.iter().zip(w) {
            let a = f64::from(a);
            let e = if a == b || (a.is_nan() && b.is_nan()) { f64::NEG_INFINITY } else { (a - b).abs() - (atol + rtol * b.abs()) };
            worst = worst.max(if e.is_nan() { f64::INFINITY } else { e });
        }
    }
    Some(worst)
}

fn ort_opts() -> SessionOptions {
    SessionOptions { threads: 1, ..Default::default() }
}

/// Named outputs of one ORT run.
type Outputs = Vec<(String, ArrayD<f32>)>;

/// Runs `bytes` in ORT on the reference inputs; `Err` when ORT can't load or run it.
fn run(bytes: &[u8], feeds: Option<&[(String, Feed)]>) -> Result<Option<Outputs>, String> {
    let mut s = Session::from_bytes(bytes, &ort_opts()).map_err(|e| e.to_string())?;
    match feeds {
        Some(f) => s.run(f).map(Some).map_err(|e| e.to_string()),
        None => Ok(None),
    }
}

/// The quantize stage, zero-config but for 2 synthetic samples instead of 8 (speed):
/// `Ok((model, quantized))`, `quantized` false when the model was left float.
fn quantize_stage(fp32: &Model) -> Option<kenosis_core::Result<(Model, bool)>> {
    use kenosis_core::calibrate::InputConfig;
    use kenosis_core::quantize::{quantize, QuantizeConfig};
    let cfg = QuantizeConfig { inputs: InputConfig { samples: Some(2), ..Default::default() }, ..Default::default() };
    Some(quantize(fp32, &cfg).map(|q| {
        let n: usize = q.summary.quantized.values().sum();
        (q.model, n > 0)
    }))
}

fn sweep_one(case: &Case, scratch: &Path) -> Outcome {
    let mut o = Outcome::default();
    let fail = |o: &mut Outcome, why: String| {
        if o.failed.is_none() {
            o.failed = Some(why);
        }
    };
    let original = match std::fs::read(&case.model) {
        Ok(b) => b,
        Err(e) => {
            o.failed = Some(format!("reading: {e}"));
            return o;
        }
    };
    let model = match guarded("load", || Model::load(&case.model)) {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => {
            // The corpus is valid ONNX: a refusal to load is a failure of Kenosis.
            o.failed = Some(format!("load refused: {e}"));
            return o;
        }
        Err(p) => {
            o.failed = Some(p);
            return o;
        }
    };
    if let Err(p) = guarded("inspect", || Inspection::new(&model, Some(original.len() as u64)).human()) {
        fail(&mut o, p);
    }

    let refs = case.data.as_deref().and_then(|d| guarded("reference", || reference(&model, d)).ok().flatten());
    let feeds = refs.as_ref().map(|r| r.0.as_slice());
    let orig_out = match run(&original, feeds) {
        Ok(out) => {
            o.ort_loads_original = true;
            out
        }
        Err(e) => {
            o.notes.push(format!("ORT refuses the original: {}", e.lines().next().unwrap_or("")));
            None
        }
    };
    if let (Some(out), Some((_, want))) = (&orig_out, &refs) {
        o.ref_checked = true;
        o.ort_matches_ref = excess(out, want, RTOL, ATOL).is_some_and(|e| e <= 0.0);
    }
    // What a transformed model's outputs are compared with: the reference where ORT agrees with
    // it, else ORT's own outputs on the original.
    let expected: Option<Vec<(Vec<usize>, Vec<f64>)>> = match (&refs, &orig_out) {
        (Some((_, want)), _) if o.ort_matches_ref => Some(want.clone()),
        (_, Some(out)) => Some(out.iter().map(|(_, a)| (a.shape().to_vec(), a.iter().map(|&v| f64::from(v)).collect())).collect()),
        _ => None,
    };

    // Load/save round trip through a file.
    let saved = scratch.join("rt.onnx");
    match guarded("save", || model.save(&saved, &SaveOptions { force: true, ..Default::default() })) {
        Ok(Ok(())) => match guarded("reload", || Model::load(&saved)) {
            Ok(Ok(back)) if back.proto == model.proto => {
                o.round_trip_ok = true;
                if o.ort_loads_original {
                    let bytes = std::fs::read(&saved).unwrap_or_default();
                    match run(&bytes, feeds) {
                        Err(e) => fail(&mut o, format!("ORT refuses the round-tripped model: {e}")),
                        Ok(Some(out)) => {
                            if let Some(want) = &expected {
                                if !excess(&out, want, RTOL, ATOL).is_some_and(|e| e <= 0.0) {
                                    fail(&mut o, "round-tripped model's outputs differ from the reference".into());
                                }
                            }
                        }
                        Ok(None) => {}
                    }
                    if o.failed.is_some() {
                        o.round_trip_ok = false;
                    }
                }
            }
            Ok(Ok(_)) => fail(&mut o, "the reloaded model differs from the saved one".into()),
            Ok(Err(e)) => fail(&mut o, format!("reloading the saved model: {e}")),
            Err(p) => fail(&mut o, p),
        },
        Ok(Err(e)) => fail(&mut o, format!("saving: {e}")),
        Err(p) => fail(&mut o, p),
    }

    // cast --to fp16
    match guarded("cast", || cast(&model, &CastOptions { to: Precision::Fp16, half_io: false })) {
        Err(p) => fail(&mut o, p),
        Ok(Err(e)) => o.cast = Some(Err(format!("cast: {}", reason(&e, &case.model)))),
        Ok(Ok((half, report))) => {
            let mut close = false;
            if o.ort_loads_original {
                match half.to_bytes().map_err(|e| e.to_string()).and_then(|b| run(&b, feeds)) {
                    Err(e) => fail(&mut o, format!("ORT refuses the fp16 model: {}", e.lines().next().unwrap_or(""))),
                    Ok(Some(out)) => {
                        if let Some(want) = &expected {
                            close = excess(&out, want, LOOSE_RTOL, LOOSE_ATOL).is_some_and(|e| e <= 0.0);
                            let untouched = report.half_nodes == 0 && report.tensors_converted == 0;
                            if untouched && !excess(&out, want, RTOL, ATOL).is_some_and(|e| e <= 0.0) {
                                fail(&mut o, "cast left every op in float, yet the outputs changed".into());
                            }
                        }
                    }
                    Ok(None) => close = true,
                }
            }
            o.cast = Some(Ok(close));
        }
    }

    // The prepare passes on whatever loads.
    let mut prepared = model.clone();
    match guarded("prepare", || prepare(&mut prepared, &PrepareOptions::default())) {
        Err(p) => fail(&mut o, p),
        Ok(Err(e)) => o.prepare = Some(Err(format!("prepare: {}", reason(&e, &case.model)))),
        Ok(Ok(_)) => {
            o.prepare = Some(Ok(()));
            if o.ort_loads_original {
                match prepared.to_bytes().map_err(|e| e.to_string()).and_then(|b| run(&b, feeds)) {
                    Err(e) => fail(&mut o, format!("ORT refuses the prepared model: {}", e.lines().next().unwrap_or(""))),
                    Ok(Some(out)) => {
                        if let Some(want) = &expected {
                            // Passes only fold and rewrite exactly: hold them to the strict tolerance.
                            if !excess(&out, want, RTOL, 1e-5).is_some_and(|e| e <= 0.0) {
                                fail(&mut o, "the prepared model's outputs differ".into());
                            }
                        }
                    }
                    Ok(None) => {}
                }
            }
        }
    }

    // quantize with synthetic calibration
    match guarded("quantize", || quantize_stage(&model)) {
        Err(p) => fail(&mut o, p),
        Ok(None) => {}
        Ok(Some(Err(e))) => o.quantize = Some(Err(format!("quantize: {}", reason(&e, &case.model)))),
        Ok(Some(Ok((q, quantized)))) => {
            o.quantize = Some(Ok(quantized));
            if o.ort_loads_original {
                match q.to_bytes().map_err(|e| e.to_string()).and_then(|b| run(&b, feeds)) {
                    Err(e) => fail(&mut o, format!("ORT refuses the quantized model: {}", e.lines().next().unwrap_or(""))),
                    Ok(Some(out)) => {
                        if let Some(want) = &expected {
                            let strict = excess(&out, want, RTOL, ATOL).is_some_and(|e| e <= 0.0);
                            if !quantized && !strict {
                                fail(&mut o, "quantize left the model float, yet the outputs changed".into());
                            } else if !excess(&out, want, LOOSE_RTOL, LOOSE_ATOL).is_some_and(|e| e <= 0.0) {
                                o.notes.push("quantized outputs are not close to the reference".into());
                            }
                        }
                    }
                    Ok(None) => {}
                }
            }
        }
    }
    o
}

fn add(t: &mut Tally, name: &str, o: &Outcome) {
    t.total += 1;
    t.ort_loads_original += o.ort_loads_original as usize;
    t.ref_checked += o.ref_checked as usize;
    t.ort_matches_ref += o.ort_matches_ref as usize;
    t.round_trip_ok += o.round_trip_ok as usize;
    match &o.cast {
        Some(Ok(close)) => {
            t.cast_ok += 1;
            t.cast_close += *close as usize;
        }
        Some(Err(r)) => *t.refused.entry(r.clone()).or_default() += 1,
        None => {}
    }
    match &o.prepare {
        Some(Ok(())) => t.prepare_ok += 1,
        Some(Err(r)) => *t.refused.entry(r.clone()).or_default() += 1,
        None => {}
    }
    match &o.quantize {
        Some(Ok(true)) => t.quantized += 1,
        Some(Ok(false)) => t.left_float += 1,
        Some(Err(r)) => *t.refused.entry(r.clone()).or_default() += 1,
        None => {}
    }
    if let Some(why) = &o.failed {
        t.failed += 1;
        t.failures.push(format!("{name}: {why}"));
    }
}

/// Regressions of `got` against the committed `want`: each a readable line.
fn regressions(got: &Tally, want: &Tally) -> Vec<String> {
    let mut v = Vec::new();
    let mut at_least = |what: &str, g: usize, w: usize| {
        if g < w {
            v.push(format!("{what}: {g}, the committed tally says {w}"));
        }
    };
    at_least("total", got.total, want.total);
    at_least("round_trip_ok", got.round_trip_ok, want.round_trip_ok);
    at_least("cast_ok", got.cast_ok, want.cast_ok);
    at_least("prepare_ok", got.prepare_ok, want.prepare_ok);
    at_least("quantized", got.quantized, want.quantized);
    if got.failed > want.failed {
        v.push(format!("failed: {}, the committed tally says {}", got.failed, want.failed));
    }
    for f in &got.failures {
        let name = f.split(':').next().unwrap_or(f);
        if !want.failures.iter().any(|w| w.split(':').next() == Some(name)) {
            v.push(format!("new failure: {f}"));
        }
    }
    v
}

#[test]
fn corpus_sweep() {
    let mode = env::var("KENOSIS_CORPUS").unwrap_or_default();
    let words: Vec<&str> = mode.split(',').map(str::trim).collect();
    let required = words.contains(&"required");
    let full = words.contains(&"full");
    if words.contains(&"off") {
        println!("corpus sweep: skipped (KENOSIS_CORPUS=off)");
        return;
    }
    let skip = |why: String| {
        assert!(!required, "corpus sweep: {why} (KENOSIS_CORPUS=required)");
        println!("corpus sweep: SKIPPED: {why}");
    };
    let dir = match fetch_corpus() {
        Ok(d) => d,
        Err(e) => return skip(format!("the ONNX test corpus is not available: {e}")),
    };
    if let Err(e) = kenosis_core::runtime::runtime() {
        return skip(format!("ONNX Runtime is missing: {e}"));
    }
    let all = cases(&dir);
    let has_node = all.iter().any(|c| c.name.starts_with("node/"));
    let key = format!("{}{}", if full { "full" } else { "slice" }, if has_node { "" } else { "-without-node" });
    let picked: Vec<Case> = if full { all } else { all.into_iter().step_by(SLICE_STEP).collect() };
    let scratch = tempfile::tempdir().expect("temp dir");
    let start = Instant::now();
    let mut tally = Tally::default();
    let mut slowest = (Duration::ZERO, String::new());
    for (i, case) in picked.into_iter().enumerate() {
        let (tx, rx) = mpsc::channel();
        let dir = scratch.path().join(i.to_string());
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let name = case.name.clone();
        let t0 = Instant::now();
        // A thread per model: a hang is cut off at MODEL_TIMEOUT and counted (the thread is left behind).
        let spawned = std::thread::Builder::new().name(name.clone()).spawn(move || {
            let _ = tx.send(sweep_one(&case, &dir));
        });
        let outcome = match spawned {
            Err(e) => Outcome { failed: Some(format!("spawning a thread: {e}")), ..Default::default() },
            Ok(_) => rx.recv_timeout(MODEL_TIMEOUT).unwrap_or_else(|e| Outcome {
                failed: Some(match e {
                    mpsc::RecvTimeoutError::Timeout => format!("timed out after {MODEL_TIMEOUT:?}"),
                    mpsc::RecvTimeoutError::Disconnected => "the worker thread died".into(),
                }),
                ..Default::default()
            }),
        };
        let took = t0.elapsed();
        if took > slowest.0 {
            slowest = (took, name.clone());
        }
        for n in &outcome.notes {
            if env::flag("KENOSIS_CORPUS_VERBOSE") {
                println!("  {name}: {n}");
            }
        }
        add(&mut tally, &name, &outcome);
    }
    tally.failures.sort();
    println!("corpus sweep ({key}, {} models, {:.1?}; slowest {} in {:.1?}):", tally.total, start.elapsed(), slowest.1, slowest.0);
    println!("{}", serde_json::to_string_pretty(&tally).unwrap_or_default());

    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus-tally.json");
    let mut committed: BTreeMap<String, Tally> =
        std::fs::read_to_string(&file).ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default();
    if words.contains(&"write") {
        committed.insert(key.clone(), tally.clone());
        let text = serde_json::to_string_pretty(&committed).expect("tally json") + "\n";
        std::fs::write(&file, text).expect("writing the tally");
        println!("wrote {} [{key}]", file.display());
        return;
    }
    match committed.get(&key) {
        Some(want) => {
            let r = regressions(&tally, want);
            assert!(r.is_empty(), "corpus sweep regressed against {} [{key}]:\n{}", file.display(), r.join("\n"));
        }
        None => println!("no committed tally for [{key}] in {}; nothing to compare", file.display()),
    }
}
