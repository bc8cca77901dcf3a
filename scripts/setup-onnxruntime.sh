#!/usr/bin/env bash
# Puts the ONNX Runtime shared library (and the small test models shipped in the same wheel) in the
# Kestrel cache, from the PyPI `onnxruntime` wheel. `ort` is built with `load-dynamic` and never
# downloads anything itself; the binaries find the library as flight/src/onnx_runtime.rs documents.
#
# With --gpu: the same release from the `onnxruntime-gpu` wheel (x86-64, CUDA 13), with its CUDA
# execution provider, in a folder of its own; point ORT_DYLIB_PATH at it and build flight with
# `--features cuda` (docs/deployment.md says which CUDA libraries it needs).
set -euo pipefail

version=1.31.1
source "$(dirname "$0")/cache-dir.sh"
# the package, and `last`: the file written last (the set-up is complete when it is there)
case "$#-${1:-}" in
  0-) package=onnxruntime last=models/sigmoid.onnx ;;
  1---gpu) package=onnxruntime-gpu last=libonnxruntime_providers_cuda.so ;;
  *) echo "setup-onnxruntime: unknown arguments: $* (usage: setup-onnxruntime.sh [--gpu])" >&2; exit 2 ;;
esac
dest=$kestrel_cache/$package-$version

if [ -f "$dest/libonnxruntime.so.$version" ] && [ -f "$dest/$last" ]; then
  exit 0
fi

case "$(uname -m)-$package" in
  x86_64-*) platform=manylinux_2_28_x86_64 ;;
  aarch64-onnxruntime) platform=manylinux_2_28_aarch64 ;;
  *) echo "setup-onnxruntime: no $package wheel for $(uname -m) on PyPI" >&2; exit 1 ;;
esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "setup-onnxruntime: fetching $package $version ($platform) from PyPI"
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.11 --platform "$platform" "$package==$version" -d "$tmp"

mkdir -p "$dest/models"
python3 - "$tmp" "$dest" "$version" "$package" <<'PY'
import glob, os, sys, zipfile
tmp, dest, version, package = sys.argv[1:]
wheels = glob.glob(os.path.join(tmp, f"{package.replace('-', '_')}-*.whl"))
if len(wheels) != 1:
    sys.exit(f"setup-onnxruntime: expected one wheel in {tmp}, found {wheels}")
wanted = {
    f"onnxruntime/capi/libonnxruntime.so.{version}": f"libonnxruntime.so.{version}",
    "onnxruntime/capi/libonnxruntime_providers_shared.so": "libonnxruntime_providers_shared.so",
    "onnxruntime/datasets/mul_1.onnx": "models/mul_1.onnx",
    "onnxruntime/datasets/sigmoid.onnx": "models/sigmoid.onnx",
}
if package == "onnxruntime-gpu":
    wanted["onnxruntime/capi/libonnxruntime_providers_cuda.so"] = "libonnxruntime_providers_cuda.so"
with zipfile.ZipFile(wheels[0]) as wheel:
    names = set(wheel.namelist())
    for member, target in wanted.items():
        if member not in names:
            sys.exit(f"setup-onnxruntime: {member} is not in {wheels[0]}")
        path = os.path.join(dest, target)
        with wheel.open(member) as src, open(path + ".part", "wb") as out:
            out.write(src.read())
        os.replace(path + ".part", path)
PY
echo "setup-onnxruntime: ONNX Runtime $version ($package) is in $dest"
