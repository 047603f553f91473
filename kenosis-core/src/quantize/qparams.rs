//! Quantization parameters: asymmetric UINT8 activations, symmetric INT8 weights (per tensor or
//! per channel, 7 or 8 bits) and INT32 biases. Every scale is computed in f64 and stored as f32;
//! integer values are computed against the stored f32 scale, so what ORT reads is what we meant.

/// Scale and zero point of a UINT8 activation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActParams {
    /// Step between two integer values.
    pub scale: f32,
    /// The integer that represents 0.0 exactly.
    pub zero_point: u8,
}

/// Ranges narrower than this are treated as a single value.
const DEGENERATE: f64 = 1e-30;

/// UINT8 asymmetric parameters for values observed in `[min, max]`.
///
/// The range is widened to include 0 (zero padding and ReLU must be exact), and the zero point
/// is rounded ("nudged") to an integer so that 0.0 maps to an integer exactly. A degenerate range
/// (all values equal to 0) gets scale 1. Non-finite bounds are treated as 0; callers reject them first.
pub fn activation(min: f32, max: f32) -> ActParams {
    let lo = if min.is_finite() { (min as f64).min(0.0) } else { 0.0 };
    let hi = if max.is_finite() { (max as f64).max(0.0) } else { 0.0 };
    if hi - lo < DEGENERATE {
        return ActParams {
            scale: 1.0,
            zero_point: 0,
        };
    }
    let scale = ((hi - lo) / 255.0) as f32;
    if scale == 0.0 || !scale.is_finite() {
        return ActParams {
            scale: 1.0,
            zero_point: 0,
        };
    }
    let zp = (-lo / scale as f64).round_ties_even().clamp(0.0, 255.0);
    // With zero point 0 the top of the quantized range must not pass `max` by an f32 ulp:
    // ORT drops a Clip(0, max) before Q only if the Q range lies inside it.
    let scale = if zp == 0.0 && scale as f64 * 255.0 > hi {
        scale.next_down()
    } else {
        scale
    };
    ActParams {
        scale,
        zero_point: zp as u8,
    }
}

/// Symmetric weight range for `bits` (7: ±63, 8: ±127). The zero point is 0.
pub fn weight_qmax(bits: u8) -> i32 {
    if bits <= 7 {
        63
    } else {
        127
    }
}

/// Symmetric INT8 weights: one scale per channel (or one for the tensor).
#[derive(Debug, Clone, PartialEq)]
pub struct WeightQuant {
    /// Quantized values, same layout as the input.
    pub values: Vec<i8>,
    /// One scale per channel along `axis`, or a single scale when `axis` is `None`.
    pub scales: Vec<f32>,
    /// The channel axis, `None` for per-tensor.
    pub axis: Option<usize>,
}

fn sym_scale(absmax: f64, qmax: i32) -> f32 {
    let s = (absmax / qmax as f64) as f32;
    if s > 0.0 && s.is_finite() {
        s
    } else {
        1.0 // all-zero channel: any scale represents it exactly
    }
}

fn quantize_sym(v: f32, scale: f32, qmax: i32) -> i8 {
    let q = (v as f64 / scale as f64).round_ties_even();
    q.clamp(-qmax as f64, qmax as f64) as i8
}

/// Splits a tensor of shape `dims` into (outer, channels, inner) around `axis`.
fn layout(dims: &[i64], axis: usize) -> (usize, usize, usize) {
    let d = |r: &[i64]| r.iter().map(|&x| x.max(0) as usize).product::<usize>();
    (d(&dims[..axis]), dims[axis].max(0) as usize, d(&dims[axis + 1..]))
}

/// Quantizes weights symmetrically. `axis: Some(a)` gives one scale per index along `a`
/// (0 for Conv and Gemm with transB=1, 1 for ConvTranspose and MatMul/Gemm with transB=0).
/// `axis` must be < `dims.len()` and `values.len()` must equal the product of `dims`.
pub fn weights(values: &[f32], dims: &[i64], axis: Option<usize>, bits: u8) -> WeightQuant {
    let qmax = weight_qmax(bits);
    match axis {
        Some(a) if a < dims.len() => {
            let (outer, ch, inner) = layout(dims, a);
            let mut absmax = vec![0f64; ch];
            for o in 0..outer {
                for (c, m) in absmax.iter_mut().enumerate() {
                    let start = (o * ch + c) * inner;
                    for &v in &values[start..start + inner] {
                        *m = m.max((v as f64).abs());
                    }
                }
            }
            let scales: Vec<f32> = absmax.iter().map(|&m| sym_scale(m, qmax)).collect();
            let mut wq = WeightQuant {
                values: vec![0; values.len()],
                scales,
                axis: Some(a),
            };
            requantize(&mut wq, values, dims, qmax);
            wq
        }
        _ => {
            let absmax = values.iter().fold(0f64, |m, &v| m.max((v as f64).abs()));
            let scale = sym_scale(absmax, qmax);
            WeightQuant {
                values: values.iter().map(|&v| quantize_sym(v, scale, qmax)).collect(),
                scales: vec![scale],
                axis: None,
            }
        }
    }
}

fn requantize(wq: &mut WeightQuant, values: &[f32], dims: &[i64], qmax: i32) {
    match wq.axis {
        Some(a) => {
            let (outer, ch, inner) = layout(dims, a);
            for o in 0..outer {
                for c in 0..ch {
                    let start = (o * ch + c) * inner;
                    let scale = wq.scales[c];
                    for (q, &v) in wq.values[start..start + inner]
                        .iter_mut()
                        .zip(&values[start..start + inner])
                    {
                        *q = quantize_sym(v, scale, qmax);
                    }
                }
            }
        }
        None => {
            for (q, &v) in wq.values.iter_mut().zip(values) {
                *q = quantize_sym(v, wq.scales[0], qmax);
            }
        }
    }
}

/// The largest |int32 bias| Kenosis writes: half of i32's range, so that adding the
/// accumulated products inside the integer kernel can't overflow.
pub const BIAS_LIMIT: f64 = (i32::MAX / 2) as f64;

/// An INT32 bias and the weight scales it forced.
#[derive(Debug, Clone, PartialEq)]
pub struct BiasQuant {
    /// Quantized bias, one value per output channel.
    pub values: Vec<i32>,
    /// Bias scales (input scale × weight scale), one per channel or one for the tensor.
    pub scales: Vec<f32>,
    /// Channels whose weight scale was enlarged so the bias fits in [`BIAS_LIMIT`].
    pub enlarged: Vec<usize>,
}

/// Quantizes a bias to INT32 with scale = `input_scale` × weight scale (per channel when the
/// weights are), zero point 0. Where |bias / scale| would pass [`BIAS_LIMIT`], that channel's
/// weight scale is enlarged until it fits and the weights are requantized (`w_values`/`w_dims`
/// are the float weights), which costs that channel some weight precision but keeps the bias exact.
pub fn bias(
    b: &[f32],
    input_scale: f32,
    wq: &mut WeightQuant,
    w_values: &[f32],
    w_dims: &[i64],
    bits: u8,
) -> BiasQuant {
    let per_channel = wq.scales.len() > 1 || (wq.axis.is_some() && b.len() == wq.scales.len());
    let mut enlarged = Vec::new();
    for (c, &bv) in b.iter().enumerate() {
        let wi = if per_channel { c.min(wq.scales.len() - 1) } else { 0 };
        let s = input_scale as f64 * wq.scales[wi] as f64;
        if (bv as f64 / s).abs() > BIAS_LIMIT {
            // Smallest weight scale that fits, with a little slack for f32 rounding.
            let need = ((bv as f64).abs() / (BIAS_LIMIT * input_scale as f64) * (1.0 + 1e-6)) as f32;
            if need > wq.scales[wi] {
                wq.scales[wi] = need;
                if !enlarged.contains(&wi) {
                    enlarged.push(wi);
                }
            }
        }
    }
    if !enlarged.is_empty() {
        let qmax = weight_qmax(bits);
        requantize(wq, w_values, w_dims, qmax);
    }
    let scales: Vec<f32> = if per_channel {
        wq.scales.iter().map(|&s| input_scale * s).collect()
    } else {
        vec![input_scale * wq.scales[0]]
    };
    let values = b
        .iter()
        .enumerate()
        .map(|(c, &bv)| {
            let s = scales[if per_channel { c.min(scales.len() - 1) } else { 0 }] as f64;
            if s > 0.0 {
                (bv as f64 / s).round_ties_even().clamp(-BIAS_LIMIT, BIAS_LIMIT) as i32
            } else {
                0
            }
        })
        .collect();
    BiasQuant {
        values,
        scales,
        enlarged,
    }
}

/// Quantizes a float value as ORT's QuantizeLinear does (round half to even, saturate).
pub fn quantize_u8(v: f32, p: ActParams) -> u8 {
    ((v as f64 / p.scale as f64).round_ties_even() + p.zero_point as f64).clamp(0.0, 255.0) as u8
}

/// Dequantizes a UINT8 value.
pub fn dequantize_u8(q: u8, p: ActParams) -> f32 {
    (q as i32 - p.zero_point as i32) as f32 * p.scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_exact_after_nudging() {
        for &(lo, hi) in &[
            (-1.3f32, 2.7f32),
            (-0.01, 100.0),
            (-5.0, 0.2),
            (-3.3, 3.3),
            (0.5, 0.9),
            (-7.0, -2.0),
        ] {
            let p = activation(lo, hi);
            let q = quantize_u8(0.0, p);
            assert_eq!(dequantize_u8(q, p), 0.0, "range [{lo}, {hi}] -> {p:?}");
            assert_eq!(q, p.zero_point);
            // The whole observed range stays representable to within half a step.
            for v in [lo, hi] {
                let back = dequantize_u8(quantize_u8(v, p), p);
                assert!((back - v).abs() <= p.scale * 0.5 + 1e-6, "{v} -> {back} with {p:?}");
            }
        }
    }

    #[test]
    fn range_is_extended_to_include_zero() {
        let p = activation(2.0, 10.0); // all positive: treated as [0, 10]
        assert_eq!(p.zero_point, 0);
        assert!((p.scale - 10.0 / 255.0).abs() < 1e-8);
        let n = activation(-8.0, -1.0); // all negative: treated as [-8, 0]
        assert_eq!(n.zero_point, 255);
    }

    #[test]
    fn relu_outputs_get_zero_point_zero() {
        let p = activation(0.0, 6.0);
        assert_eq!(p.zero_point, 0);
        // ORT drops a Clip(0, 6) before Q when the Q range lies inside [0, 6].
        assert!(255.0 * p.scale <= 6.0);
        assert!(255.0 * activation(0.0, 1.0).scale <= 1.0);
    }

    #[test]
    fn degenerate_ranges() {
        assert_eq!(
            activation(0.0, 0.0),
            ActParams {
                scale: 1.0,
                zero_point: 0
            }
        );
        let c = activation(3.0, 3.0); // constant 3: [0, 3]
        assert_eq!(c.zero_point, 0);
        assert!((dequantize_u8(quantize_u8(3.0, c), c) - 3.0).abs() < 1e-6);
        assert_eq!(
            activation(f32::NAN, f32::INFINITY),
            ActParams {
                scale: 1.0,
                zero_point: 0
            }
        );
    }

    #[test]
    fn symmetric_weights_7_and_8_bits() {
        let w = [-2.0f32, -1.1, 0.0, 0.5, 2.0];
        let q8 = weights(&w, &[5], None, 8);
        assert_eq!(q8.values, vec![-127, -70, 0, 32, 127]);
        assert!((q8.scales[0] - 2.0 / 127.0).abs() < 1e-9);
        let q7 = weights(&w, &[5], None, 7);
        assert_eq!(q7.values, vec![-63, -35, 0, 16, 63]);
        assert!(q7.values.iter().all(|&v| (-64..=63).contains(&v)));
        assert_eq!(weight_qmax(7), 63);
        assert_eq!(weight_qmax(8), 127);
    }

    #[test]
    fn per_channel_axis_0_and_1() {
        // Shape [2, 3]: axis 0 has 2 channels (rows), axis 1 has 3 (columns).
        let w = [1.0f32, -2.0, 4.0, 0.1, 0.2, -0.4];
        let a0 = weights(&w, &[2, 3], Some(0), 8);
        assert_eq!(a0.scales.len(), 2);
        assert!((a0.scales[0] - 4.0 / 127.0).abs() < 1e-9 && (a0.scales[1] - 0.4 / 127.0).abs() < 1e-9);
        assert_eq!(a0.values[2], 127);
        assert_eq!(a0.values[5], -127);
        let a1 = weights(&w, &[2, 3], Some(1), 8);
        assert_eq!(a1.scales.len(), 3);
        assert!((a1.scales[0] - 1.0 / 127.0).abs() < 1e-9);
        assert!((a1.scales[2] - 4.0 / 127.0).abs() < 1e-9);
        assert_eq!(a1.values[0], 127);
        assert_eq!(a1.values[3], 13); // 0.1 / (1/127) = 12.7
                                      // An all-zero channel gets scale 1 and stays exact.
        let z = weights(&[0.0, 0.0, 1.0, 1.0], &[2, 2], Some(0), 7);
        assert_eq!(z.scales[0], 1.0);
        assert_eq!(z.values, vec![0, 0, 63, 63]);
    }

    #[test]
    fn bias_scale_is_input_times_weight_scale() {
        let w = [0.5f32, -0.25, 1.0, 2.0];
        let mut wq = weights(&w, &[2, 2], Some(0), 8);
        let b = bias(&[0.1, -3.0], 0.02, &mut wq, &w, &[2, 2], 8);
        assert!(b.enlarged.is_empty());
        assert_eq!(b.scales.len(), 2);
        assert_eq!(b.scales[0], 0.02f32 * (0.5f32 / 127.0));
        let back = b.values[1] as f64 * b.scales[1] as f64;
        assert!((back + 3.0).abs() < b.scales[1] as f64);
        // Per tensor: one bias scale.
        let mut wt = weights(&w, &[2, 2], None, 8);
        let bt = bias(&[0.1, -3.0], 0.02, &mut wt, &w, &[2, 2], 8);
        assert_eq!(bt.scales.len(), 1);
    }

    #[test]
    fn bias_saturation_enlarges_the_weight_scale() {
        // Tiny weights and a tiny input scale: bias / (sx * sw) would be ~1e13, far past i32.
        let w = [1e-6f32, -1e-6, 0.5, 0.25];
        let mut wq = weights(&w, &[2, 2], Some(0), 7);
        let before = wq.scales.clone();
        let b = bias(&[50.0, 0.01], 1e-4, &mut wq, &w, &[2, 2], 7);
        assert_eq!(b.enlarged, vec![0]);
        assert!(wq.scales[0] > before[0]);
        assert_eq!(wq.scales[1], before[1]);
        assert!(b.values.iter().all(|&v| (v as f64).abs() <= BIAS_LIMIT));
        // The bias is still represented closely.
        let back = b.values[0] as f64 * b.scales[0] as f64;
        assert!((back - 50.0).abs() / 50.0 < 1e-6, "{back}");
        // Weights were requantized against the new scale and stay in the 7-bit range.
        assert!(wq.values.iter().all(|&v| (-63..=63).contains(&v)));
    }
}
