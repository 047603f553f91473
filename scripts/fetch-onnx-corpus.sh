#!/usr/bin/env bash
# Fetches ONNX's own operator test corpus for Kenosis's corpus sweep (kenosis-core/tests/corpus.rs)
# into $XDG_CACHE_HOME/kenosis/onnx-corpus/1.23.2/ (else ~/.cache/kenosis/onnx-corpus/1.23.2/):
#   wheel/onnx/backend/test/data/{pytorch-converted,pytorch-operator,simple,light,...}
#       from the `onnx==1.23.2` wheel on PyPI (pip only downloads it; no Python code runs).
#   debian/node/   the per-operator `node` tests, which the 1.23.2 wheel no longer ships, from
#       Debian's `libonnx-testdata` package (onnx 1.12.0; `apt-get download` only, nothing installed).
# Each archive is checked by its SHA-256 before anything is unpacked. Idempotent: a complete
# folder (marker file `.complete-*`) is left alone. The node part is optional: when apt can't
# fetch it, the script says so and the sweep runs on the wheel's models. Prints the folder.
set -euo pipefail

VERSION=1.23.2
# SHA-256 of onnx-1.23.2-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl.
WHEEL_SHA256=c03ecf6b835d136108eeaeeafbd0026fc7b3cf98661409fbc6b63d5a29361348
DEB_VERSION=1.12.0-2
# SHA-256 of libonnx-testdata_1.12.0-2_all.deb (Debian 12).
DEB_SHA256=7dc0912e02f79ece102331411a751b091bc0e191c9fb1287f8cdfbe5530f6027

dir="${XDG_CACHE_HOME:-$HOME/.cache}/kenosis/onnx-corpus/$VERSION"
mkdir -p "$dir"
sha() { sha256sum "$1" | cut -d' ' -f1; }

if [ ! -f "$dir/.complete-wheel" ]; then
  pip=""
  for p in pip3 pip "python3 -m pip"; do
    if $p --version >/dev/null 2>&1; then pip=$p; break; fi
  done
  [ -n "$pip" ] || { echo "fetch-onnx-corpus.sh: pip is needed to download the onnx wheel (apt-get install python3-pip)" >&2; exit 1; }
  tmp=$(mktemp -d "$dir/.fetch.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  # The test data is the same in every build of the wheel; pin one so the hash is stable.
  $pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 --implementation cp \
    --platform manylinux_2_28_x86_64 "onnx==$VERSION" -d "$tmp" >&2
  wheel=$(ls "$tmp"/onnx-"$VERSION"-*.whl)
  got=$(sha "$wheel")
  if [ "$got" != "$WHEEL_SHA256" ]; then
    echo "fetch-onnx-corpus.sh: $(basename "$wheel") has SHA-256 $got, expected $WHEEL_SHA256; not unpacking it" >&2
    exit 1
  fi
  rm -rf "$dir/wheel"
  mkdir -p "$tmp/wheel"
  unzip -q "$wheel" 'onnx/backend/test/data/*' -d "$tmp/wheel"
  mv "$tmp/wheel" "$dir/wheel"
  touch "$dir/.complete-wheel"
  rm -rf "$tmp"
  trap - EXIT
fi

if [ ! -f "$dir/.complete-node" ]; then
  tmp=$(mktemp -d "$dir/.fetch.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  if (cd "$tmp" && apt-get download "libonnx-testdata=$DEB_VERSION" >/dev/null 2>&1) ||
     { apt-get update >/dev/null 2>&1 && (cd "$tmp" && apt-get download "libonnx-testdata=$DEB_VERSION" >/dev/null 2>&1); }; then
    deb=$(ls "$tmp"/libonnx-testdata_*.deb)
    got=$(sha "$deb")
    if [ "$got" != "$DEB_SHA256" ]; then
      echo "fetch-onnx-corpus.sh: $(basename "$deb") has SHA-256 $got, expected $DEB_SHA256; not unpacking it" >&2
      exit 1
    fi
    dpkg-deb -x "$deb" "$tmp/x"
    rm -rf "$dir/debian"
    mkdir -p "$dir/debian"
    mv "$tmp/x/usr/share/libonnx-testdata/data/node" "$dir/debian/node"
    touch "$dir/.complete-node"
  else
    echo "fetch-onnx-corpus.sh: could not download Debian's libonnx-testdata $DEB_VERSION; the sweep runs without the node tests" >&2
  fi
  rm -rf "$tmp"
  trap - EXIT
fi

echo "$dir"
