#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs ONNX Runtime into Kenosis's cache if needed,
# then runs every workspace test. Tests on the real models run when ../shared/models exists.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-ort.sh >/dev/null
cargo test --workspace --locked "$@"
