#!/usr/bin/env bash
# Installs ONNX Runtime 1.31.1's CPU library into Kenosis's cache folder:
#   $XDG_CACHE_HOME/kenosis/onnxruntime/1.31.1/ (else ~/.cache/kenosis/onnxruntime/1.31.1/)
# It downloads the official `onnxruntime` wheel from PyPI with pip (download only, no Python
# code of the package runs), unpacks just the library and checks its SHA-256. Idempotent: a
# library already in place with the right hash is left alone. Prints the library's path.
set -euo pipefail

VERSION=1.31.1
# SHA-256 of onnxruntime/capi/libonnxruntime.so.1.31.1 in the manylinux x86_64 wheel.
SHA256_LINUX_X86_64=fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) lib=libonnxruntime.so.$VERSION; want=$SHA256_LINUX_X86_64; platform=manylinux_2_28_x86_64 ;;
  *) echo "install-ort.sh: no pinned build for $(uname -s)-$(uname -m); set ORT_DYLIB_PATH to your own ONNX Runtime library" >&2; exit 1 ;;
esac

dir="${XDG_CACHE_HOME:-$HOME/.cache}/kenosis/onnxruntime/$VERSION"
target="$dir/$lib"

sha() { sha256sum "$1" | cut -d' ' -f1; }

if [ -f "$target" ] && [ "$(sha "$target")" = "$want" ]; then
  echo "$target"
  exit 0
fi

pip=""
for p in pip3 pip "python3 -m pip"; do
  if $p --version >/dev/null 2>&1; then pip=$p; break; fi
done
[ -n "$pip" ] || { echo "install-ort.sh: pip is needed to download the onnxruntime wheel (apt-get install python3-pip)" >&2; exit 1; }

mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# The library is the same in every CPython build of the wheel; pin one so the hash is stable.
$pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 --implementation cp \
  --platform "$platform" "onnxruntime==$VERSION" -d "$tmp" >&2
wheel=$(ls "$tmp"/onnxruntime-"$VERSION"-*.whl)

if command -v unzip >/dev/null 2>&1; then
  unzip -p "$wheel" "onnxruntime/capi/$lib" > "$tmp/$lib"
else
  # A wheel is a zip file; bsdtar reads zip too.
  bsdtar -xOf "$wheel" "onnxruntime/capi/$lib" > "$tmp/$lib"
fi

got=$(sha "$tmp/$lib")
if [ "$got" != "$want" ]; then
  echo "install-ort.sh: $lib has SHA-256 $got, expected $want; not installing it" >&2
  exit 1
fi
chmod 755 "$tmp/$lib"
mv -f "$tmp/$lib" "$target"   # same folder, so the rename is atomic
echo "$target"
