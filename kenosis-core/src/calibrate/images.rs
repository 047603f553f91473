//! Image folders: png/jpg files, stretched to the primary input's H×W with bilinear filtering.

use super::shapes::{fmt_dims, Resolved};
use super::{Preprocess, Samples};
use crate::error::{Error, Result};
use crate::runtime::Feed;
use image::imageops::FilterType;
use ndarray::ArrayD;
use std::path::{Path, PathBuf};

fn calib_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Calibration { path: Some(path.to_path_buf()), reason: reason.into() }
}

/// The png/jpg/jpeg files of `dir`, sorted by file name.
pub(crate) fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| calib_err(dir, format!("can't read the image folder: {e}")))?;
    let mut files = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| calib_err(dir, format!("can't list the image folder: {e}")))?;
        let p = entry.path();
        let ext = p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        if p.is_file() && matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg")) {
            files.push(p);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    if files.is_empty() {
        return Err(calib_err(dir, "the folder holds no .png or .jpg images; add some or use synthetic calibration"));
    }
    Ok(files)
}

/// One image as a `[1, C, H, W]`-ordered float buffer (C = 3, or 1 for grayscale models).
pub(crate) fn image_to_chw(
    path: &Path,
    channels: usize,
    h: usize,
    w: usize,
    pre: &Preprocess,
    bgr: bool,
) -> Result<Vec<f32>> {
    let img = image::open(path)
        .map_err(|e| calib_err(path, format!("can't read the image ({e}); fix or remove the file")))?;
    let (mean, std) = pre.mean_std();
    if std.iter().any(|&s| s == 0.0 || !s.is_finite()) || mean.iter().any(|m| !m.is_finite()) {
        return Err(Error::Config(format!("--std must be non-zero and finite (got mean {mean:?}, std {std:?})")));
    }
    let (w32, h32) = (u32::try_from(w), u32::try_from(h));
    let (Ok(w32), Ok(h32)) = (w32, h32) else {
        return Err(calib_err(path, format!("the input size {h}x{w} is too large for an image")));
    };
    let plane = h * w;
    let mut out = vec![0f32; channels * plane];
    if channels == 1 {
        let g = image::imageops::resize(&img.to_luma8(), w32, h32, FilterType::Triangle);
        for (i, p) in g.pixels().enumerate() {
            out[i] = (p.0[0] as f32 / 255.0 - mean[0]) / std[0];
        }
    } else {
        let rgb = image::imageops::resize(&img.to_rgb8(), w32, h32, FilterType::Triangle);
        for (i, p) in rgb.pixels().enumerate() {
            for c in 0..3 {
                let src = if bgr { 2 - c } else { c };
                out[c * plane + i] = (p.0[src] as f32 / 255.0 - mean[c]) / std[c];
            }
        }
    }
    Ok(out)
}

/// Samples from the images of `dir` for the primary input; other inputs take their defaults.
pub(crate) fn load(
    resolved: &Resolved,
    dir: &Path,
    pre: &Preprocess,
    bgr: bool,
    cap: Option<usize>,
) -> Result<Samples> {
    let Some(p) = resolved.primary else {
        return Err(calib_err(
            dir,
            "the model has no 4-D float (NCHW) input to feed images to; use --calibration-data",
        ));
    };
    let spec = &resolved.inputs[p];
    let (n, c, h, w) = (spec.dims[0], spec.dims[1], spec.dims[2], spec.dims[3]);
    if c != 3 && c != 1 {
        return Err(Error::Input {
            name: spec.name.clone(),
            reason: format!("it takes {c} channels; images feed 1 or 3. Use --calibration-data for this model"),
        });
    }
    let mut files = list_images(dir)?;
    if let Some(cap) = cap {
        files.truncate(cap);
    }
    // A batch larger than 1 takes consecutive images.
    let per = n.max(1);
    let mut feeds = Vec::new();
    for chunk in files.chunks(per) {
        let mut buf = Vec::with_capacity(per * c * h * w);
        for f in chunk {
            buf.extend(image_to_chw(f, c, h, w, pre, bgr)?);
        }
        if chunk.len() < per {
            // Pad the last batch by repeating its first image.
            let first = buf[..c * h * w].to_vec();
            while buf.len() < per * c * h * w {
                buf.extend_from_slice(&first);
            }
        }
        let arr = ArrayD::from_shape_vec(spec.dims.clone(), buf)
            .map_err(|e| Error::Input { name: spec.name.clone(), reason: e.to_string() })?;
        let mut sample = Vec::with_capacity(resolved.inputs.len());
        for (i, s) in resolved.inputs.iter().enumerate() {
            let feed = if i == p { Feed::F32(arr.clone()) } else { resolved.defaults[i].clone() };
            sample.push((s.name.clone(), feed));
        }
        feeds.push(sample);
    }
    let mut notes = vec![format!(
        "input `{}`: {} image{} from {} stretched to {}, {}, {:?}",
        spec.name,
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        dir.display(),
        fmt_dims(&spec.dims),
        if bgr { "BGR" } else { "RGB" },
        pre
    )];
    for (i, s) in resolved.inputs.iter().enumerate().filter(|(i, _)| *i != p) {
        notes.push(format!("input `{}` ({}): no data, fed {}", s.name, fmt_dims(&s.dims), resolved.default_notes[i]));
    }
    Ok(Samples { feeds, notes, files })
}
