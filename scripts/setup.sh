#!/usr/bin/env bash
# Everything the demo and the tests need that is not in the repository, fetched or made once:
# the ONNX Runtime library, and development keys for the reference mission (never fly these).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

"$root/scripts/setup-onnxruntime.sh"

mkdir -p "$root/keys"
chmod 700 "$root/keys"
for secret in link.key operator.token station-kestrel-bench.key; do
  if [ ! -f "$root/keys/$secret" ]; then
    (umask 077; python3 -c 'import secrets; print(secrets.token_hex(32))' > "$root/keys/$secret")
    echo "setup: made a development secret keys/$secret"
  fi
done

# the development operator: keys/operator.token is its token, keys/operators.toml its hash
if [ ! -f "$root/keys/operators.toml" ]; then
  python3 - "$root/keys" <<'PY'
import hashlib, sys
keys = sys.argv[1]
token = open(f"{keys}/operator.token").read().strip()
with open(f"{keys}/operators.toml", "w") as f:
    f.write("# Operators who may command: each name with the SHA-256 of its token (`ground operator-token`).\n")
    f.write(f'\n[[operator]]\nname = "dev-operator"\ntoken_sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"\n')
PY
  echo "setup: made keys/operators.toml (operator dev-operator, token keys/operator.token)"
fi

"$root/scripts/setup-xtce.sh"

# Third-party reference data is read from $KESTREL_DATA (default: shared/data beside the
# repository), never committed; the cloudy/clear series is written out as band files once.
data=${KESTREL_DATA:-$root/../shared/data}
if [ ! -d "$data/satellite/sen2ships" ]; then
  echo "setup: the reference data folder $data/satellite is missing (set KESTREL_DATA to the shared data folder;" \
    "upstream: ShipDetectionExperts/sen2ships, sentinel-hub/eo-learn and rasterio's test data on GitHub)" >&2
  exit 1
fi
dates=$root/var/reference/sentinel2-cloudy-clear
if [ ! -f "$dates/date-4/B11.tif" ]; then
  python3 "$root/scripts/cloudy_clear_bands.py" "$data/satellite/sentinel2-cloudy-clear" "$dates"
fi
