#!/usr/bin/env bash
# Interop check: models trained and exported with Ultralytics run in `flight-tools detect` as they run in
# Ultralytics (box for box on a frame no bigger than a tile, and mAP@0.5 over a tiled frame).
#
# Ultralytics is AGPL: it is installed, and everything it makes (exports, runs, datasets) is written,
# outside the repository, under the Kestrel cache ($kestrel_cache/ultralytics-interop: a venv, the
# exports, a signed manifest and mission of their own, results.json). The check only imports it.
#
#   scripts/ultralytics-interop.sh                     # every model, then the trained one
#   scripts/ultralytics-interop.sh --only rtdetr,obb   # just those (names: --list)
#   scripts/ultralytics-interop.sh --help
#
# Environment: FLIGHT_TOOLS (default target/debug/flight-tools, built if missing), KESTREL_CACHE_DIR,
# TORCH_INDEX_URL (e.g. a CPU-only wheel index for torch, when pip can reach one).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/cache-dir.sh"
work=$kestrel_cache/ultralytics-interop
venv=$work/venv
mkdir -p "$work"

start=$(date +%s)
if ! "$venv/bin/python" -c 'import ultralytics, onnx, onnxslim, onnxruntime, torch
assert ultralytics.__version__ == "8.4.190", ultralytics.__version__
assert onnxruntime.__version__ == "1.31.1", onnxruntime.__version__' 2>/dev/null; then
  echo "ultralytics-interop: installing the venv at $venv (torch is several GB)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "$venv/bin/pip" install --quiet torch torchvision --index-url "$TORCH_INDEX_URL"
  fi
  "$venv/bin/pip" install --quiet ultralytics==8.4.190 onnx onnxslim onnxruntime==1.31.1
  echo "ultralytics-interop: venv installed in $(($(date +%s) - start)) s" >&2
fi

flight_tools=${FLIGHT_TOOLS:-$root/target/debug/flight-tools}
if [ ! -x "$flight_tools" ]; then
  (cd "$root" && cargo build -p kestrel-tools --bin flight-tools)
fi

# never from the repository's folder: Ultralytics writes beside where it runs
cd "$work"
exec "$venv/bin/python" "$root/scripts/ultralytics_interop.py" --repo "$root" --flight-tools "$flight_tools" --work "$work" "$@"
