//! The concrete shape of every graph input, and default values for inputs with no data.
//!
//! Rules, in order, for each graph input that is not an initializer:
//! 1. A shape the user gave (`--input-shape NAME=1x3x640x640`) wins. It must have the declared
//!    rank and agree with every fixed dim.
//! 2. Fixed dims stay. A dim is dynamic when it has a name, no value, or a value of 0 or less
//!    (`-1`; a 0 would make an empty input, which exporters mean as unknown).
//! 3. Dim 0 (batch) becomes 1.
//! 4. On the primary input (the first 4-D float input, NCHW) a dynamic channel dim becomes 3.
//!    Dynamic height and width come from the model's own metadata when it states them
//!    (`imgsz`, as Ultralytics exports write it); else, if one of them is fixed, the other takes
//!    the same value; else Kenosis tries 640×640, 224×224 and 48×320 (H×W) in that order and takes
//!    the first size the model runs at in ONNX Runtime, fed default values (detectors usually run at 640, classifiers at
//!    224, text recognisers need a height near 48). A model that runs at none of them is an error
//!    that asks for `--input-shape`.
//! 5. Any other dynamic dim becomes 1; if the model does not run so, each in turn takes the
//!    smallest power of two up to 4096 it runs at (an audio model's sample count, say).
//!
//! Every guess is written to [`Samples::notes`](super::Samples::notes).

use super::InputConfig;
use crate::error::{Error, Result};
use crate::onnx::graph::GraphIndex;
use crate::onnx::proto::{data_type as dt, tensor_shape_proto::dimension::Value as DimValue, type_proto, TensorProto};
use crate::onnx::Model;
use crate::runtime::{Feed, Optimization, Session, SessionOptions};
use ndarray::ArrayD;

/// Spatial sizes tried, in order, for a primary input whose height and width are all dynamic.
const SPATIAL_CANDIDATES: [(usize, usize); 3] = [(640, 640), (224, 224), (48, 320)];

/// One graph input with its resolved shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    /// The input's name.
    pub name: String,
    /// The shape it is fed with.
    pub dims: Vec<usize>,
    /// ONNX element type ([`crate::onnx::proto::data_type`]).
    pub data_type: i32,
}

/// Shapes and defaults for every input of a model.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// Every graph input (initializers excluded), in the model's order.
    pub inputs: Vec<InputSpec>,
    /// Index into `inputs` of the primary (first 4-D float) input.
    pub primary: Option<usize>,
    /// Default value of each input, used when no data is given for it.
    pub defaults: Vec<Feed>,
    /// What each default was, for notes; indexed like `inputs`.
    pub default_notes: Vec<String>,
    /// Shape guesses made.
    pub notes: Vec<String>,
}

/// Every graph input (initializers excluded) with the shape and element type it is fed with,
/// in the model's input order: `(name, dims, data_type)`. See the module rules for dynamic dims.
pub fn input_shapes(model: &Model, cfg: &InputConfig) -> Result<Vec<(String, Vec<usize>, i32)>> {
    Ok(resolve(model, cfg)?.inputs.into_iter().map(|s| (s.name, s.dims, s.data_type)).collect())
}

/// A declared dim: `Some(v)` when fixed, `None` when dynamic.
type Declared = Vec<Option<i64>>;

fn declared_inputs(model: &Model) -> Result<Vec<(String, i32, Option<Declared>)>> {
    let g = model.graph();
    let ix = GraphIndex::new(g);
    let mut out = Vec::new();
    for v in g.input.iter().filter(|v| !ix.initializers.contains_key(&v.name)) {
        let tensor = match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(type_proto::Value::TensorType(t)) => t,
            _ => {
                return Err(Error::Unsupported(format!(
                    "input `{}` is not a tensor (sequence, map or untyped); Kenosis calibrates tensor inputs only",
                    v.name
                )))
            }
        };
        let dims = tensor.shape.as_ref().map(|s| {
            s.dim
                .iter()
                .map(|d| match d.value {
                    Some(DimValue::DimValue(x)) if x > 0 => Some(x),
                    _ => None,
                })
                .collect()
        });
        out.push((v.name.clone(), tensor.elem_type, dims));
    }
    Ok(out)
}

fn user_shape<'c>(cfg: &'c InputConfig, name: &str) -> Option<&'c [i64]> {
    cfg.shapes.iter().find(|(n, _)| n == name).map(|(_, s)| s.as_slice())
}

/// `1x3x224x224`.
pub(crate) fn fmt_dims(d: &[usize]) -> String {
    d.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("x")
}

/// A dim being resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Settled.
    Fixed(usize),
    /// The primary input's dynamic height or width.
    Spatial,
    /// Any other dynamic dim (not batch, not channels).
    Other,
}

/// Resolves shapes and defaults (see the module rules).
pub(crate) fn resolve(model: &Model, cfg: &InputConfig) -> Result<Resolved> {
    let declared = declared_inputs(model)?;
    for (name, _) in &cfg.shapes {
        if !declared.iter().any(|(n, _, _)| n == name) {
            let names: Vec<&str> = declared.iter().map(|(n, _, _)| n.as_str()).collect();
            return Err(Error::Config(format!(
                "--input-shape names `{name}`, which is not an input of the model (its inputs: {})",
                names.join(", ")
            )));
        }
    }
    let primary = declared.iter().position(|(_, t, d)| *t == dt::FLOAT && d.as_ref().is_some_and(|d| d.len() == 4));
    let mut notes = Vec::new();
    let mut slots: Vec<Vec<Slot>> = Vec::with_capacity(declared.len());
    for (i, (name, _, dims)) in declared.iter().enumerate() {
        if let Some(user) = user_shape(cfg, name) {
            slots.push(check_user_shape(name, user, dims.as_deref())?.into_iter().map(Slot::Fixed).collect());
            continue;
        }
        let Some(dims) = dims else {
            return Err(Error::Input {
                name: name.clone(),
                reason: format!(
                    "the model declares no shape for it; pass --input-shape {name}=DIMS (e.g. 1x3x224x224)"
                ),
            });
        };
        let mut guessed = Vec::new();
        let mut out = Vec::with_capacity(dims.len());
        for (k, d) in dims.iter().enumerate() {
            out.push(match *d {
                Some(v) => Slot::Fixed(v as usize),
                None if k == 0 => {
                    guessed.push("batch 1");
                    Slot::Fixed(1)
                }
                None if Some(i) == primary && k == 1 => {
                    guessed.push("3 channels");
                    Slot::Fixed(3)
                }
                None if Some(i) == primary => Slot::Spatial,
                None => Slot::Other,
            });
        }
        if !guessed.is_empty() {
            notes.push(format!("input `{name}`: dynamic dims set to {}", guessed.join(", ")));
        }
        slots.push(out);
    }

    if let Some(p) = primary {
        let fixed = |s: Slot| if let Slot::Fixed(v) = s { Some(v) } else { None };
        let (h, w) = (fixed(slots[p][2]), fixed(slots[p][3]));
        let name = &declared[p].0;
        let settled = match (h, w) {
            (Some(_), Some(_)) => None,
            (Some(h), None) => Some((h, h, "the fixed height")),
            (None, Some(w)) => Some((w, w, "the fixed width")),
            (None, None) => metadata_size(model).map(|(h, w)| (h, w, "the model's `imgsz` metadata")),
        };
        if let Some((h, w, why)) = settled {
            slots[p][2] = Slot::Fixed(h);
            slots[p][3] = Slot::Fixed(w);
            notes.push(format!(
                "input `{name}`: dynamic height and width set to {h}x{w} from {why}; pass --input-shape {name}=1x3xHxW to choose"
            ));
        }
    }
    let needs_probe = slots.iter().flatten().any(|s| !matches!(s, Slot::Fixed(_)));
    let specs = |slots: &[Vec<Slot>], hw: (usize, usize)| -> Vec<InputSpec> {
        slots
            .iter()
            .zip(&declared)
            .map(|(d, (n, t, _))| InputSpec {
                name: n.clone(),
                dims: d
                    .iter()
                    .enumerate()
                    .map(|(k, s)| match s {
                        Slot::Fixed(v) => *v,
                        Slot::Spatial => {
                            if k == 2 {
                                hw.0
                            } else {
                                hw.1
                            }
                        }
                        Slot::Other => 1,
                    })
                    .collect(),
                data_type: *t,
            })
            .collect()
    };
    let inputs = if needs_probe {
        let (inputs, probe_notes) = probe(model, &slots, primary, &specs)?;
        notes.extend(probe_notes);
        inputs
    } else {
        specs(&slots, (1, 1))
    };

    let hw = primary.map(|p| (inputs[p].dims[2], inputs[p].dims[3]));
    let mut defaults = Vec::with_capacity(inputs.len());
    let mut default_notes = Vec::with_capacity(inputs.len());
    for spec in &inputs {
        let (feed, note) = default_feed(model, spec, hw)?;
        defaults.push(feed);
        default_notes.push(note);
    }
    Ok(Resolved { inputs, primary, defaults, default_notes, notes })
}

/// Builds input specs from slots, with the primary's dynamic (H, W) set to the given size.
type SpecsFn<'a> = dyn Fn(&[Vec<Slot>], (usize, usize)) -> Vec<InputSpec> + 'a;

/// Settles the dims left dynamic by running the model in ORT (1 thread, no graph rewrites) on
/// default values: the primary's height and width take the first of [`SPATIAL_CANDIDATES`] it runs
/// at; other dynamic dims are 1, and if the model does not run so, each in turn takes the smallest
/// power of two up to 4096 that makes it run. Without ONNX Runtime, the first guesses stand unchecked.
fn probe(
    model: &Model,
    slots: &[Vec<Slot>],
    primary: Option<usize>,
    specs: &SpecsFn<'_>,
) -> Result<(Vec<InputSpec>, Vec<String>)> {
    let spatial = slots.iter().flatten().any(|s| *s == Slot::Spatial);
    let others: Vec<(usize, usize)> = slots
        .iter()
        .enumerate()
        .flat_map(|(i, d)| d.iter().enumerate().filter(|(_, s)| **s == Slot::Other).map(move |(k, _)| (i, k)))
        .collect();
    let describe = |inputs: &[InputSpec]| -> Vec<String> {
        let mut notes = Vec::new();
        if let (true, Some(p)) = (spatial, primary) {
            let s = &inputs[p];
            notes.push(format!(
                "input `{}`: dynamic height and width set to {}x{}, the first of 640x640, 224x224, 48x320 the model runs at; \
                 pass --input-shape {}=1x3xHxW to choose",
                s.name, s.dims[2], s.dims[3], s.name
            ));
        }
        for &(i, k) in &others {
            let s = &inputs[i];
            notes.push(format!(
                "input `{}`: dynamic dim {k} set to {} (the smallest size the model runs at); pass --input-shape {}=DIMS to choose",
                s.name, s.dims[k], s.name
            ));
        }
        notes
    };
    let first_hw = SPATIAL_CANDIDATES[0];
    if crate::runtime::runtime().is_err() {
        let inputs = specs(slots, first_hw);
        let mut notes = describe(&inputs);
        notes.push("ONNX Runtime was not available to check these sizes".into());
        return Ok((inputs, notes));
    }
    let opts = SessionOptions { threads: 1, optimization: Optimization::Disable, ..Default::default() };
    let mut session = Session::from_model(model, &opts)?;
    let mut last_err = String::new();
    let mut try_run = |inputs: &[InputSpec]| -> Result<bool> {
        let hw = primary.map(|p| (inputs[p].dims[2], inputs[p].dims[3]));
        let mut feeds = Vec::with_capacity(inputs.len());
        for s in inputs {
            feeds.push((s.name.clone(), default_feed(model, s, hw)?.0));
        }
        match session.run(&feeds) {
            Ok(_) => Ok(true),
            Err(e) => {
                last_err = e.to_string();
                Ok(false)
            }
        }
    };
    let hws: Vec<(usize, usize)> = if spatial { SPATIAL_CANDIDATES.to_vec() } else { vec![first_hw] };
    for &hw in &hws {
        let mut inputs = specs(slots, hw);
        if try_run(&inputs)? {
            let notes = describe(&inputs);
            return Ok((inputs, notes));
        }
        for &(i, k) in &others {
            for v in (1..=12).map(|e| 1usize << e) {
                inputs[i].dims[k] = v;
                if try_run(&inputs)? {
                    let notes = describe(&inputs);
                    return Ok((inputs, notes));
                }
            }
            inputs[i].dims[k] = 1;
        }
    }
    let inputs = specs(slots, first_hw);
    let which: Vec<String> = inputs.iter().map(|s| format!("{}={}", s.name, fmt_dims(&s.dims))).collect();
    Err(Error::Input {
        name: inputs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "),
        reason: format!(
            "the model has dynamic dims and runs at none of the sizes Kenosis tried (e.g. {}; last error: {last_err}); \
             pass --input-shape NAME=DIMS for each input with the sizes it was trained at",
            which.join(" ")
        ),
    })
}

fn check_user_shape(name: &str, user: &[i64], declared: Option<&[Option<i64>]>) -> Result<Vec<usize>> {
    let bad = |reason: String| Error::Input { name: name.to_string(), reason };
    if let Some(d) = declared {
        if d.len() != user.len() {
            return Err(bad(format!(
                "--input-shape gives {} dims but the model declares {} for it",
                user.len(),
                d.len()
            )));
        }
    }
    let mut out = Vec::with_capacity(user.len());
    for (k, &v) in user.iter().enumerate() {
        if v < 1 {
            return Err(bad(format!("--input-shape dim {k} is {v}; every dim must be 1 or more")));
        }
        if let Some(Some(fixed)) = declared.and_then(|d| d.get(k)) {
            if *fixed != v {
                return Err(bad(format!("--input-shape sets dim {k} to {v} but the model fixes it at {fixed}")));
            }
        }
        out.push(v as usize);
    }
    Ok(out)
}

/// `imgsz` metadata as Ultralytics writes it: `[320, 320]` (H, W) or `320`.
fn metadata_size(model: &Model) -> Option<(usize, usize)> {
    let v = &model.proto.metadata_props.iter().find(|p| p.key == "imgsz")?.value;
    let nums: Vec<usize> = v
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().ok())
        .collect::<Option<Vec<_>>>()?;
    match nums.as_slice() {
        [s] if *s > 0 => Some((*s, *s)),
        [h, w] if *h > 0 && *w > 0 => Some((*h, *w)),
        _ => None,
    }
}

/// The value an input takes when no data is given for it, and a note saying what it is.
///
/// `scale_factor` → 1.0; `im_shape`/`image_shape`/`img_shape`/`im_size`/`image_size`/
/// `orig_target_sizes` → the primary input's (H, W) repeated along the last dim; an integer input that
/// the main graph compares (`Equal`) with a constant → that constant (so the branch the graph
/// tests for runs); an integer input named `sr`/`sample_rate`/`sampling_rate` → 16000; any other
/// number → 0; bool → false.
pub(crate) fn default_feed(model: &Model, spec: &InputSpec, hw: Option<(usize, usize)>) -> Result<(Feed, String)> {
    let lname = spec.name.to_ascii_lowercase();
    let n = spec.dims.iter().product::<usize>();
    let is_int = matches!(spec.data_type, dt::INT64 | dt::INT32 | dt::UINT8);
    let shape_like = ["im_shape", "image_shape", "img_shape", "im_size", "image_size", "orig_target_sizes"]
        .iter()
        .any(|k| lname.contains(k));
    let (values, note): (Vec<f64>, String) = if lname.contains("scale_factor") && !is_int {
        (vec![1.0; n], "1.0 (a scale factor)".into())
    } else if let (true, Some((h, w))) = (shape_like, hw) {
        let last = spec.dims.last().copied().unwrap_or(1);
        let v = (0..n).map(|i| if last >= 2 && i % last == 1 { w as f64 } else { h as f64 }).collect();
        (v, format!("the image size {h}x{w} (an image-shape input)"))
    } else if is_int {
        if let Some(c) = compared_constant(model, &spec.name) {
            (vec![c as f64; n], format!("{c} (the constant the graph compares it with)"))
        } else if matches!(lname.as_str(), "sr" | "sample_rate" | "sampling_rate") {
            (vec![16000.0; n], "16000 (a sample rate)".into())
        } else {
            (vec![0.0; n], "0".into())
        }
    } else {
        (vec![0.0; n], if spec.data_type == dt::BOOL { "false".into() } else { "0".into() })
    };
    let shape = spec.dims.clone();
    let bad_shape = |e: ndarray::ShapeError| Error::Input { name: spec.name.clone(), reason: e.to_string() };
    let feed = match spec.data_type {
        dt::FLOAT => {
            Feed::F32(ArrayD::from_shape_vec(shape, values.iter().map(|&v| v as f32).collect()).map_err(bad_shape)?)
        }
        dt::INT64 => {
            Feed::I64(ArrayD::from_shape_vec(shape, values.iter().map(|&v| v as i64).collect()).map_err(bad_shape)?)
        }
        dt::INT32 => {
            Feed::I32(ArrayD::from_shape_vec(shape, values.iter().map(|&v| v as i32).collect()).map_err(bad_shape)?)
        }
        dt::UINT8 => {
            Feed::U8(ArrayD::from_shape_vec(shape, values.iter().map(|&v| v as u8).collect()).map_err(bad_shape)?)
        }
        dt::BOOL => Feed::Bool(ArrayD::from_shape_vec(shape, vec![false; n]).map_err(bad_shape)?),
        other => return Err(unsupported_type(&spec.name, other)),
    };
    Ok((feed, note))
}

pub(crate) fn unsupported_type(name: &str, data_type: i32) -> Error {
    Error::Unsupported(format!(
        "input `{name}` has element type {data_type}; calibration feeds float32, int64, int32, uint8 and bool inputs only"
    ))
}

/// The scalar constant an `Equal` node of the main graph compares `input` with, if any.
fn compared_constant(model: &Model, input: &str) -> Option<i64> {
    let g = model.graph();
    let ix = GraphIndex::new(g);
    for n in g.node.iter().filter(|n| n.op_type == "Equal" && n.input.len() == 2) {
        let other = if n.input[0] == input {
            &n.input[1]
        } else if n.input[1] == input {
            &n.input[0]
        } else {
            continue;
        };
        let t: Option<&TensorProto> = ix.initializer(g, other).or_else(|| {
            let p = &g.node[ix.producer_of(other)?];
            (p.op_type == "Constant")
                .then(|| p.attribute.iter().find(|a| a.name == "value").and_then(|a| a.t.as_ref()))?
        });
        if let Some(v) = t.and_then(|t| crate::onnx::tensor::to_i64(t).ok()).filter(|v| v.len() == 1) {
            return Some(v[0]);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::builder::{ModelBuilder, D};

    #[test]
    fn user_shapes_fix_dynamic_dims_and_are_checked() {
        let m = ModelBuilder::new(13).input("x", dt::FLOAT, &[D::N(0), D::N(3), D::N(8), D::N(-1)]).build();
        let cfg = InputConfig { shapes: vec![("x".into(), vec![2, 3, 8, 5])], ..Default::default() };
        assert_eq!(input_shapes(&m, &cfg).unwrap(), vec![("x".to_string(), vec![2, 3, 8, 5], dt::FLOAT)]);
        let wrong = InputConfig { shapes: vec![("x".into(), vec![1, 4, 8, 5])], ..Default::default() };
        let e = input_shapes(&m, &wrong).unwrap_err().to_string();
        assert!(e.contains("`x`") && e.contains("fixes it at 3"), "{e}");
        let unknown = InputConfig { shapes: vec![("y".into(), vec![1])], ..Default::default() };
        assert!(input_shapes(&m, &unknown).unwrap_err().to_string().contains("`y`"));
        // One spatial dim fixed: the other takes its value; batch defaults to 1.
        let r = resolve(&m, &InputConfig::default()).unwrap();
        assert_eq!(r.inputs[0].dims, vec![1, 3, 8, 8]);
        assert!(r.notes.iter().any(|n| n.contains("batch 1")), "{:?}", r.notes);
    }

    #[test]
    fn metadata_size_and_secondary_defaults() {
        let mut m = ModelBuilder::new(13)
            .input("images", dt::FLOAT, &[D::S("b"), D::N(3), D::S("h"), D::S("w")])
            .input("im_shape", dt::FLOAT, &[D::S("b"), D::N(2)])
            .input("scale_factor", dt::FLOAT, &[D::S("b"), D::N(2)])
            .input("mask", dt::FLOAT, &[D::N(4)])
            .input("sr", dt::INT64, &[])
            .build();
        m.proto
            .metadata_props
            .push(crate::onnx::proto::StringStringEntryProto { key: "imgsz".into(), value: "[320, 256]".into() });
        let r = resolve(&m, &InputConfig::default()).unwrap();
        assert_eq!(r.inputs[0].dims, vec![1, 3, 320, 256]);
        let Feed::F32(im) = &r.defaults[1] else { panic!("im_shape is float") };
        assert_eq!(im.as_slice().unwrap(), &[320.0, 256.0]);
        let Feed::F32(sf) = &r.defaults[2] else { panic!("scale_factor is float") };
        assert_eq!(sf.as_slice().unwrap(), &[1.0, 1.0]);
        let Feed::F32(mask) = &r.defaults[3] else { panic!("mask is float") };
        assert!(mask.iter().all(|&v| v == 0.0));
        let Feed::I64(sr) = &r.defaults[4] else { panic!("sr is int64") };
        assert_eq!(sr.iter().copied().collect::<Vec<_>>(), vec![16000]);
    }
}
