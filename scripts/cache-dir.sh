# Sourced by the scripts: the Kestrel cache folder, as flight/src/onnx_runtime.rs's cache_dir() finds it.
if [ -n "${KESTREL_CACHE_DIR:-}" ]; then kestrel_cache=$KESTREL_CACHE_DIR
elif [ -n "${XDG_CACHE_HOME:-}" ]; then kestrel_cache=$XDG_CACHE_HOME/kestrel
else kestrel_cache=$HOME/.cache/kestrel; fi
