//! `kenosis cast`: FP16/BF16 conversion.
