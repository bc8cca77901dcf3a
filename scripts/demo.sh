#!/usr/bin/env bash
# Runs the reference mission's demo on a fresh machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

scripts/setup.sh
cargo build --release --workspace --bins --locked
bin=target/release
source scripts/cache-dir.sh

echo "== checking mission.toml with every binary"
"$bin/flight" check --mission mission.toml
"$bin/ground" check --mission mission.toml
"$bin/thermal" check --mission mission.toml
"$bin/radiation-sim" check --mission mission.toml

echo "== loading ONNX Runtime and running a model through ort"
"$bin/flight" model-check --mission mission.toml --model "$kestrel_cache/onnxruntime-1.31.1/models/sigmoid.onnx"

cat <<'MSG'
== demo done
What ran: the mission file was checked by flight, ground, thermal and radiation-sim, and flight
loaded ONNX Runtime (the PyPI library, through ort's load-dynamic) and ran one inference of the
sigmoid test model that ships in the onnxruntime wheel. The mission itself (ingest, detection,
downlink, ground archive) is not built yet: see the open issues.
MSG
