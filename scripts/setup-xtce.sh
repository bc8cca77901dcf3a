#!/usr/bin/env bash
# What the XTCE export's test validates with: the XTCE 1.2 schema (SpaceSystem.xsd, OMG namespace
# http://www.omg.org/spec/XTCE/20180204) as the PyPI package space-packet-parser 6.2.0 ships it
# (BSD-3-Clause), and the XML Schema validator `xmlschema` 4.3.2 (PyPI, MIT) in a venv, both in the
# Kestrel cache. Prints nothing when they are there already.
set -euo pipefail
source "$(dirname "$0")/cache-dir.sh"
dest=$kestrel_cache/xtce-1.2
if [ -f "$dest/SpaceSystem.xsd" ] && [ -x "$dest/venv/bin/python" ] && "$dest/venv/bin/python" -c 'import xmlschema' 2>/dev/null; then
  exit 0
fi
mkdir -p "$dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "setup-xtce: fetching the XTCE 1.2 schema (space-packet-parser 6.2.0) and xmlschema 4.3.2 from PyPI" >&2
python3 -m pip download --quiet --disable-pip-version-check --no-deps "space-packet-parser==6.2.0" -d "$tmp"
python3 - "$tmp" "$dest" <<'PY'
import glob, sys, zipfile
tmp, dest = sys.argv[1:]
wheel, = glob.glob(f"{tmp}/space_packet_parser-6.2.0-*.whl")
with zipfile.ZipFile(wheel) as z:
    data = z.read("space_packet_parser/xtce/schemas/SpaceSystem.xsd")
with open(f"{dest}/SpaceSystem.xsd", "wb") as f:
    f.write(data)
PY
python3 -m venv "$dest/venv"
"$dest/venv/bin/python" -m pip install --quiet --disable-pip-version-check "xmlschema==4.3.2"
