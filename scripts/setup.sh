#!/usr/bin/env bash
# Everything the demo and the tests need that is not in the repository, fetched or made once:
# the ONNX Runtime library, and development keys for the reference mission (never fly these).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

"$root/scripts/setup-onnxruntime.sh"

mkdir -p "$root/keys"
chmod 700 "$root/keys"
for secret in link.key operator.token; do
  if [ ! -f "$root/keys/$secret" ]; then
    (umask 077; python3 -c 'import secrets; print(secrets.token_hex(32))' > "$root/keys/$secret")
    echo "setup: made a development secret keys/$secret"
  fi
done
