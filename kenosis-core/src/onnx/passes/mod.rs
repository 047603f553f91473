//! Graph passes that prepare a model for quantization.
