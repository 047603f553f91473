"""Peer measurement only: quantizes a model with ONNX Runtime's own Python quantizer
(QDQ, U8 activations, S8 weights, MinMax), fed the same calibration images Kenosis uses.
Kenosis itself runs no Python; bench/run.sh calls this to have a reference in the same run."""
import argparse, os, sys, time
import numpy as np
from PIL import Image
import onnxruntime
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

PRE = {
    "unit": (np.zeros(3), np.ones(3)),
    "half": (np.full(3, 0.5), np.full(3, 0.5)),
    "imagenet": (np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])),
}

def load(path, h, w, pre, bgr):
    img = Image.open(path).convert("RGB").resize((w, h), Image.BILINEAR)
    x = np.asarray(img, dtype=np.float32) / 255.0
    if bgr:
        x = x[:, :, ::-1]
    mean, std = PRE[pre]
    x = (x - mean) / std
    return x.transpose(2, 0, 1)[None].astype(np.float32)

class Reader(CalibrationDataReader):
    def __init__(self, name, files, h, w, pre, bgr):
        self.items = iter([{name: load(f, h, w, pre, bgr)} for f in files])
    def get_next(self):
        return next(self.items, None)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model"); ap.add_argument("out")
    ap.add_argument("--images", required=True); ap.add_argument("--shape", required=True, help="HxW")
    ap.add_argument("--preprocess", default="unit"); ap.add_argument("--bgr", action="store_true")
    ap.add_argument("--samples", type=int, default=8); ap.add_argument("--per-channel", action="store_true")
    a = ap.parse_args()
    h, w = (int(v) for v in a.shape.split("x"))
    files = sorted(os.path.join(a.images, f) for f in os.listdir(a.images) if f.lower().endswith((".png", ".jpg", ".jpeg")))[: a.samples]
    name = onnxruntime.InferenceSession(a.model, providers=["CPUExecutionProvider"]).get_inputs()[0].name
    t = time.time()
    quantize_static(a.model, a.out, Reader(name, files, h, w, a.preprocess, a.bgr),
                    quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=a.per_channel)
    print(f"{time.time() - t:.2f}")

if __name__ == "__main__":
    sys.exit(main())
