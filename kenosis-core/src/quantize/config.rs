//! What the user asks of the quantizer. Serialized canonically: the build cache hashes its JSON.

use crate::calibrate::InputConfig;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Settings of one quantization. `Default` is the zero-config choice.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuantizeConfig {
    /// One weight scale per output channel for every Conv (axis 0) instead of one per tensor. Grouped and
    /// depthwise Convs get per-channel scales even when this is false.
    pub per_channel: bool,
    /// Weight bits: 7 (values -64..63, used as ±63) or 8 (±127). `None`: 7 for x86-64 targets,
    /// whose non-VNNI integer kernels saturate with full-range weights, else 8.
    pub weight_bits: Option<u8>,
    /// The CPU architecture the model will run on (`x86_64`, `aarch64`...). `None`: the
    /// architecture Kenosis itself was compiled for. Never read from the running CPU.
    pub target_arch: Option<String>,
    /// Node names to keep in float.
    pub exclude_nodes: Vec<String>,
    /// Op types to keep in float.
    pub exclude_ops: Vec<String>,
    /// Calibration inputs (synthetic by default).
    pub inputs: InputConfig,
    /// When set, the quantized model's cosine similarity to FP32 is measured on the calibration
    /// samples, and if it is below this, the smallest run of leading learned layers (graph order)
    /// is kept float that reaches it (see [`super::search`]).
    pub target_cosine: Option<f64>,
    /// With `target_cosine`: store the weights of the layers the search keeps float as FP16
    /// (ONNX Runtime casts them back to FP32 at load: same speed, about half their size). The
    /// search scores the rounding too. Off by default: it still cost 0.0001-0.003 of held-out
    /// cosine on the PP-OCR and PP-PicoDet models.
    pub fp16_float_layers: bool,
}

impl QuantizeConfig {
    /// The target architecture this config resolves to.
    pub fn effective_arch(&self) -> String {
        self.target_arch
            .clone()
            .unwrap_or_else(|| std::env::consts::ARCH.to_string())
    }

    /// The weight bits this config resolves to, and why.
    pub fn effective_weight_bits(&self) -> Result<(u8, String)> {
        match self.weight_bits {
            Some(b @ (7 | 8)) => Ok((b, format!("{b}-bit weights as configured"))),
            Some(b) => Err(Error::Config(format!(
                "weight_bits is {b}; use 7 (x86 CPUs without VNNI) or 8 (VNNI/AMX, ARM)"
            ))),
            None => {
                let arch = self.effective_arch();
                if matches!(arch.as_str(), "x86_64" | "x86" | "amd64") {
                    Ok((7, format!("7-bit weights: default for target {arch}, where integer kernels without VNNI saturate with full-range weights; set weight_bits 8 for VNNI/AMX")))
                } else {
                    Ok((8, format!("8-bit weights: default for target {arch}")))
                }
            }
        }
    }

    /// The canonical form: exclusion lists sorted and de-duplicated, defaults resolved, so that
    /// equivalent configs hash the same.
    pub fn canonical(&self) -> Result<QuantizeConfig> {
        if let Some(t) = self.target_cosine {
            if !(t > 0.0 && t <= 1.0) {
                return Err(Error::Config(format!("target_cosine is {t}; use a value in (0, 1], e.g. 0.995")));
            }
        }
        let mut c = self.clone();
        c.weight_bits = Some(self.effective_weight_bits()?.0);
        c.target_arch = Some(self.effective_arch());
        c.exclude_nodes.sort();
        c.exclude_nodes.dedup();
        c.exclude_ops.sort();
        c.exclude_ops.dedup();
        Ok(c)
    }

    /// Canonical JSON (stable field order, no whitespace).
    pub fn canonical_json(&self) -> Result<String> {
        serde_json::to_string(&self.canonical()?)
            .map_err(|e| Error::Config(format!("serializing the quantize config: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_bits_follow_the_target_not_the_cpu() {
        let x86 = QuantizeConfig {
            target_arch: Some("x86_64".into()),
            ..Default::default()
        };
        assert_eq!(x86.effective_weight_bits().unwrap().0, 7);
        let arm = QuantizeConfig {
            target_arch: Some("aarch64".into()),
            ..Default::default()
        };
        assert_eq!(arm.effective_weight_bits().unwrap().0, 8);
        let forced = QuantizeConfig {
            target_arch: Some("x86_64".into()),
            weight_bits: Some(8),
            ..Default::default()
        };
        assert_eq!(forced.effective_weight_bits().unwrap().0, 8);
        let bad = QuantizeConfig {
            weight_bits: Some(4),
            ..Default::default()
        };
        assert!(bad
            .effective_weight_bits()
            .unwrap_err()
            .to_string()
            .contains("weight_bits is 4"));
    }

    #[test]
    fn canonical_json_ignores_list_order() {
        let a = QuantizeConfig {
            exclude_ops: vec!["Sigmoid".into(), "Add".into()],
            target_arch: Some("x86_64".into()),
            ..Default::default()
        };
        let b = QuantizeConfig {
            exclude_ops: vec!["Add".into(), "Sigmoid".into(), "Add".into()],
            target_arch: Some("x86_64".into()),
            weight_bits: Some(7),
            ..Default::default()
        };
        assert_eq!(a.canonical_json().unwrap(), b.canonical_json().unwrap());
        let back: QuantizeConfig = serde_json::from_str(&a.canonical_json().unwrap()).unwrap();
        assert_eq!(back, b.canonical().unwrap());
    }
}
