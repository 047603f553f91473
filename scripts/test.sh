#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs ONNX Runtime into Kenosis's cache and fetches
# ONNX's operator test corpus if needed, then runs every workspace test. Tests on the real models
# run when ../shared/models exists; the corpus sweep skips (and says so) if the corpus can't be had.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-ort.sh >/dev/null
bash scripts/fetch-onnx-corpus.sh >/dev/null || echo "test.sh: ONNX test corpus unavailable; the corpus sweep will skip" >&2
cargo test --workspace --locked "$@"
