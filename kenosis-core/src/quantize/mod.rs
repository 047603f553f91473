//! Static INT8 quantization: qparam math, QDQ placement, protection, and the pipeline.
