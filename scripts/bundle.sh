#!/usr/bin/env bash
# Builds the flight release bundle for this machine's architecture: the `flight` binary, the ONNX
# Runtime library it loads, the models with their signed manifest and verifying key, the mission
# file, the systemd unit and an install script, as target/kestrel-flight-<version>-<arch>.tar.gz.
# Extra cargo arguments (e.g. --features cuda) are passed on to the build.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh >/dev/null
source scripts/cache-dir.sh
cargo build --release --locked -p kestrel-flight "$@"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
arch=$(uname -m)
name="kestrel-flight-$version-$arch"
stage="target/bundle/$name"
rm -rf "$stage" && mkdir -p "$stage/bin" "$stage/lib" "$stage/models" "$stage/var/flight"
cp target/release/flight "$stage/bin/"
cp "$kestrel_cache"/onnxruntime-1.31.1/libonnxruntime.so.1.31.1 "$stage/lib/"
cp models/models.toml models/model-signing.pub models/*.onnx models/*.md "$stage/models/"
cp mission.toml deploy/kestrel-flight.service "$stage/"
cat > "$stage/install.sh" <<'INSTALL'
#!/usr/bin/env bash
# Installs the bundle into /opt/kestrel and enables the service. The keys named by
# mission.toml (the link key, [link.security] key_file; the station key, [flight.downlink] station_key_file)
# must be put in place by the operator: they are not shipped.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
id kestrel >/dev/null 2>&1 || useradd --system --home /opt/kestrel --shell /usr/sbin/nologin kestrel
mkdir -p /opt/kestrel
cp -r "$here"/bin "$here"/lib "$here"/models "$here"/var "$here"/mission.toml /opt/kestrel/
chown -R kestrel:kestrel /opt/kestrel/var
install -m 0644 "$here"/kestrel-flight.service /etc/systemd/system/kestrel-flight.service
systemctl daemon-reload
systemctl enable kestrel-flight.service
echo "installed; put the link and station keys at the paths mission.toml names, then: systemctl start kestrel-flight"
INSTALL
chmod +x "$stage/install.sh"
tar -C target/bundle -czf "target/$name.tar.gz" "$name"
echo "target/$name.tar.gz"
