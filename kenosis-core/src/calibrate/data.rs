//! Data folders: one `.bin` (raw little-endian, C order, the input's full shape) or `.npy` file
//! per sample; one sub-folder per input, named by [`folder_name`], when the model has several.

use super::shapes::{fmt_dims, unsupported_type, InputSpec, Resolved};
use super::{folder_name, npy, Samples};
use crate::error::{Error, Result};
use crate::onnx::proto::data_type as dt;
use crate::onnx::tensor::elem_size;
use crate::runtime::Feed;
use ndarray::ArrayD;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

fn calib_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Calibration { path: Some(path.to_path_buf()), reason: reason.into() }
}

/// The `.bin`/`.npy` files of `dir` by file stem, in file-name order.
fn list_samples(dir: &Path) -> Result<BTreeMap<OsString, PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| calib_err(dir, format!("can't read the data folder: {e}")))?;
    let mut out: BTreeMap<OsString, PathBuf> = BTreeMap::new();
    for entry in rd {
        let p = entry.map_err(|e| calib_err(dir, format!("can't list the data folder: {e}")))?.path();
        let ext = p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        if !p.is_file() || !matches!(ext.as_deref(), Some("bin" | "npy")) {
            continue;
        }
        let Some(stem) = p.file_stem().map(OsString::from) else { continue };
        if let Some(prev) = out.get(&stem) {
            return Err(calib_err(
                &p,
                format!("two samples share the name `{}` ({}); keep one", stem.to_string_lossy(), prev.display()),
            ));
        }
        out.insert(stem, p);
    }
    Ok(out)
}

/// Reads one sample file for `spec`.
pub(crate) fn read_sample(path: &Path, spec: &InputSpec) -> Result<Feed> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let esize = elem_size(spec.data_type).ok_or_else(|| unsupported_type(&spec.name, spec.data_type))?;
    let n: usize = spec.dims.iter().product();
    let payload: &[u8] = if ext.as_deref() == Some("npy") {
        let h = npy::parse_header(&bytes).map_err(|why| calib_err(path, why))?;
        let want = npy::descr_of(spec.data_type).ok_or_else(|| unsupported_type(&spec.name, spec.data_type))?;
        if !want.contains(&h.descr.as_str()) {
            return Err(calib_err(
                path,
                format!(
                    "holds `{}` values but input `{}` takes `{}`; save it with .astype() to that type (little-endian)",
                    h.descr, spec.name, want[0]
                ),
            ));
        }
        if h.fortran_order {
            return Err(calib_err(path, "is in Fortran order; save a C-order array (numpy.ascontiguousarray)"));
        }
        if h.shape != spec.dims {
            return Err(calib_err(
                path,
                format!(
                    "has shape {:?} but input `{}` is fed as {:?}; reshape the array, or pass --input-shape {}={} if the model's dims are dynamic",
                    h.shape,
                    spec.name,
                    spec.dims,
                    spec.name,
                    fmt_dims(&h.shape)
                ),
            ));
        }
        &bytes[h.data_offset..]
    } else {
        &bytes
    };
    let want = n * esize;
    if payload.len() != want {
        return Err(calib_err(
            path,
            format!(
                "holds {} data bytes but input `{}` ({} of element type {}) needs exactly {want}",
                payload.len(),
                spec.name,
                fmt_dims(&spec.dims),
                spec.data_type
            ),
        ));
    }
    let shape = spec.dims.clone();
    let shape_err = |e: ndarray::ShapeError| calib_err(path, e.to_string());
    Ok(match spec.data_type {
        dt::FLOAT => Feed::F32(
            ArrayD::from_shape_vec(
                shape,
                payload.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            )
            .map_err(shape_err)?,
        ),
        dt::INT64 => Feed::I64(
            ArrayD::from_shape_vec(
                shape,
                payload
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
            )
            .map_err(shape_err)?,
        ),
        dt::INT32 => Feed::I32(
            ArrayD::from_shape_vec(
                shape,
                payload.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            )
            .map_err(shape_err)?,
        ),
        dt::UINT8 => Feed::U8(ArrayD::from_shape_vec(shape, payload.to_vec()).map_err(shape_err)?),
        dt::BOOL => {
            Feed::Bool(ArrayD::from_shape_vec(shape, payload.iter().map(|&b| b != 0).collect()).map_err(shape_err)?)
        }
        other => return Err(unsupported_type(&spec.name, other)),
    })
}

/// Samples from `dir`. A single-input model reads the files of `dir` itself. A model with
/// several inputs reads one sub-folder per input; inputs without a sub-folder take their
/// defaults, and when no sub-folder matches, files directly in `dir` feed the primary input.
pub(crate) fn load(resolved: &Resolved, dir: &Path, cap: Option<usize>) -> Result<Samples> {
    if !dir.is_dir() {
        return Err(calib_err(dir, "is not a folder; --calibration-data takes a folder of .bin/.npy samples"));
    }
    let inputs = &resolved.inputs;
    // (input index, its folder)
    let mut sources: Vec<(usize, PathBuf)> = Vec::new();
    if inputs.len() == 1 {
        sources.push((0, dir.to_path_buf()));
    } else {
        for (i, s) in inputs.iter().enumerate() {
            let sub = dir.join(folder_name(&s.name));
            if sub.is_dir() {
                sources.push((i, sub));
            }
        }
        if sources.is_empty() {
            let target = resolved.primary.ok_or_else(|| {
                let names: Vec<String> = inputs.iter().map(|s| folder_name(&s.name)).collect();
                calib_err(
                    dir,
                    format!(
                        "the model has several inputs; put each one's samples in a sub-folder named after it ({})",
                        names.join(", ")
                    ),
                )
            })?;
            sources.push((target, dir.to_path_buf()));
        }
    }
    let lists: Vec<BTreeMap<OsString, PathBuf>> =
        sources.iter().map(|(_, d)| list_samples(d)).collect::<Result<_>>()?;
    // Pair by stem: every folder must hold every stem any folder holds.
    let mut stems: Vec<&OsString> = lists.iter().flat_map(|l| l.keys()).collect();
    stems.sort();
    stems.dedup();
    if stems.is_empty() {
        let (_, d) = &sources[0];
        return Err(calib_err(d, "the folder holds no .bin or .npy samples"));
    }
    for stem in &stems {
        for ((_, d), l) in sources.iter().zip(&lists) {
            if !l.contains_key(*stem) {
                let s = stem.to_string_lossy();
                let have = sources
                    .iter()
                    .zip(&lists)
                    .find_map(|(_, l)| l.get(*stem))
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                return Err(calib_err(
                    &d.join(format!("{s}.bin")),
                    format!("is missing (nor is there {s}.npy); samples pair across inputs by file name and {have} has no partner here"),
                ));
            }
        }
    }
    if let Some(cap) = cap {
        stems.truncate(cap);
    }
    let mut feeds = Vec::with_capacity(stems.len());
    let mut files = Vec::new();
    for stem in &stems {
        let mut sample: Vec<(String, Feed)> = Vec::with_capacity(inputs.len());
        for (i, spec) in inputs.iter().enumerate() {
            let feed = match sources.iter().position(|(k, _)| *k == i) {
                Some(s) => {
                    let path = &lists[s][*stem];
                    files.push(path.clone());
                    read_sample(path, spec)?
                }
                None => resolved.defaults[i].clone(),
            };
            sample.push((spec.name.clone(), feed));
        }
        feeds.push(sample);
    }
    let mut notes = Vec::new();
    for (i, d) in &sources {
        notes.push(format!(
            "input `{}`: {} samples of {} from {}",
            inputs[*i].name,
            stems.len(),
            fmt_dims(&inputs[*i].dims),
            d.display()
        ));
    }
    for (i, s) in inputs.iter().enumerate().filter(|(i, _)| !sources.iter().any(|(k, _)| k == i)) {
        notes.push(format!("input `{}` ({}): no data, fed {}", s.name, fmt_dims(&s.dims), resolved.default_notes[i]));
    }
    Ok(Samples { feeds, notes, files })
}
