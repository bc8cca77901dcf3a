//! Finding, loading and configuring ONNX Runtime.
//!
//! `ort` is built with `load-dynamic`: the shared library is the one from the PyPI `onnxruntime`
//! wheel (fetched by `scripts/setup-onnxruntime.sh`), found at run time, never downloaded by the
//! build. Lookup order, first hit wins:
//! 1. `ORT_DYLIB_PATH` (the variable `ort` itself documents);
//! 2. `libonnxruntime.so*` next to the running executable (a release bundle);
//! 3. the Kestrel cache, `$KESTREL_CACHE_DIR/onnxruntime-1.31.1/` (default
//!    `$XDG_CACHE_HOME/kestrel`, else `~/.cache/kestrel`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::ep;
#[cfg(feature = "cuda")]
use ort::ep::ExecutionProvider;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

use crate::config::ExecutionProviderKind;
use crate::resident_weights::{self, ResidentWeights};

/// The ONNX Runtime release the set-up installs and `ort` 2.0.0-rc.15 is built against.
pub const ORT_VERSION: &str = "1.31.1";
/// Shared library file name on Linux.
pub const LIBRARY_NAME: &str = "libonnxruntime.so.1.31.1";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "the ONNX Runtime library was not found; looked at: {}. Run scripts/setup-onnxruntime.sh, or set ORT_DYLIB_PATH",
        .0.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    LibraryNotFound(Vec<PathBuf>),
    #[error("cannot load the ONNX Runtime library `{path}`: {message}")]
    Load { path: PathBuf, message: String },
    #[error("cannot load the model `{path}`: {message}")]
    Model { path: PathBuf, message: String },
    #[error("none of the execution providers {requested:?} is available: {reasons}")]
    NoProvider { requested: Vec<&'static str>, reasons: String },
}

/// The Kestrel cache folder (ONNX Runtime library and other fetched artefacts).
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KESTREL_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("kestrel");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("kestrel")
}

/// Where the set-up script puts the library and the test models that ship in the same wheel.
pub fn cached_runtime_dir() -> PathBuf {
    cache_dir().join(format!("onnxruntime-{ORT_VERSION}"))
}

/// The candidate paths of the library, in lookup order.
pub fn library_candidates() -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        candidates.push(PathBuf::from(path));
    }
    if let Some(dir) = std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_path_buf)) {
        candidates.push(dir.join(LIBRARY_NAME));
    }
    candidates.push(cached_runtime_dir().join(LIBRARY_NAME));
    candidates
}

pub fn locate_library() -> Result<PathBuf, RuntimeError> {
    let candidates = library_candidates();
    candidates.iter().find(|path| path.is_file()).cloned().ok_or(RuntimeError::LibraryNotFound(candidates))
}

/// The process's one ONNX Runtime environment (ONNX Runtime allows one per process).
pub struct OnnxRuntime {
    library: PathBuf,
    environment: Environment,
}

impl std::fmt::Debug for OnnxRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxRuntime").field("library", &self.library).finish_non_exhaustive()
    }
}

/// What a session runs on, and why the providers before it were passed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderChoice {
    pub chosen: ExecutionProviderKind,
    pub passed_over: Vec<(ExecutionProviderKind, String)>,
}

impl OnnxRuntime {
    /// Loads the library once per process and returns the shared environment.
    pub fn get() -> Result<&'static OnnxRuntime, RuntimeError> {
        static RUNTIME: OnceLock<Result<OnnxRuntime, String>> = OnceLock::new();
        RUNTIME
            .get_or_init(|| Self::start().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|message| RuntimeError::Load { path: PathBuf::from("ONNX Runtime"), message: message.clone() })
    }

    fn start() -> Result<Self, RuntimeError> {
        let library = locate_library()?;
        let load_error = |message: String| RuntimeError::Load { path: library.clone(), message };
        let environment = ort::init_from(&library)
            .map_err(|e| load_error(e.to_string()))?
            .with_name("kestrel")
            .build()
            .map_err(|e| load_error(e.to_string()))?;
        tracing::info!(library = %library.display(), "ONNX Runtime loaded");
        Ok(Self { library, environment })
    }

    pub fn library(&self) -> &Path {
        &self.library
    }

    /// The build description the loaded library reports (git commit, build type).
    pub fn build_info(&self) -> &'static str {
        ort::info()
    }

    /// A session builder on the CPU provider (arena on), for models built in memory
    /// (`ort::editor`) rather than read from a file.
    pub fn cpu_session_builder(
        &self,
        intra_threads: usize,
    ) -> Result<ort::session::builder::SessionBuilder, RuntimeError> {
        let fail = |e: ort::Error| RuntimeError::Load { path: self.library.clone(), message: e.to_string() };
        Session::builder(&self.environment)
            .map_err(fail)?
            .with_intra_threads(intra_threads)
            .map_err(|e| fail(e.into()))?
            .with_execution_providers([ep::CPU::default().with_arena_allocator(true).build()])
            .map_err(|e| fail(e.into()))
    }

    /// Builds a session for `model` on the first provider of `preference` that is available and
    /// accepts the model; each one passed over is logged with its reason, so a fallback is never
    /// silent. On the CPU provider the session computes from weights in flight's own memory
    /// (`resident_weights`), which can be checked for upsets.
    pub fn session(
        &self,
        model: &Path,
        preference: &[ExecutionProviderKind],
        intra_threads: usize,
    ) -> Result<LoadedSession, RuntimeError> {
        if !model.is_file() {
            return Err(RuntimeError::Model { path: model.to_path_buf(), message: "no such file".to_owned() });
        }
        let mut passed_over = Vec::new();
        for &kind in preference {
            let configure = |level: GraphOptimizationLevel| {
                let dispatch = provider(kind).map_err(ort::Error::new)?;
                Session::builder(&self.environment)?
                    .with_optimization_level(level)?
                    .with_intra_threads(intra_threads)?
                    // waiting threads that spin burn power between tiles and take the cores from
                    // the thread reading the next frame
                    .with_intra_op_spinning(false)?
                    // the same tile gives the same bits on every run, on a GPU too: a product
                    // recomputed after a restart must be the same bytes
                    .with_deterministic_compute(kind != ExecutionProviderKind::Cpu)?
                    .with_execution_providers([dispatch.error_on_failure()])
                    .map_err(Into::into)
            };
            let attempt = match kind {
                ExecutionProviderKind::Cpu => {
                    resident_weights::session(model, configure).map(|(session, weights)| (session, Some(weights)))
                }
                // a GPU provider copies the weights into the device's memory: the canary checks them
                ExecutionProviderKind::Cuda => configure(GraphOptimizationLevel::Level3)
                    .and_then(|mut b| b.commit_from_file(model))
                    .map(|session| (session, None))
                    .map_err(|e| e.to_string()),
            };
            match attempt {
                Ok((session, weights)) => {
                    tracing::info!(provider = kind.name(), model = %model.display(), "execution provider chosen");
                    let choice = ProviderChoice { chosen: kind, passed_over };
                    return Ok(LoadedSession { session, choice, weights });
                }
                Err(reason) => {
                    tracing::warn!(provider = kind.name(), reason = %reason, "execution provider passed over");
                    passed_over.push((kind, reason));
                }
            }
        }
        // a file that is no model fails on every provider that got as far as reading it: say so,
        // rather than that no provider is available
        let unreadable = passed_over.iter().find(|(_, reason)| reason.contains("Protobuf parsing failed"));
        if let Some((_, reason)) = unreadable {
            let message =
                format!("is not an ONNX model ONNX Runtime can read (truncated, or another kind of file): {reason}");
            return Err(RuntimeError::Model { path: model.to_path_buf(), message });
        }
        let reasons = passed_over.iter().map(|(k, r)| format!("{}: {r}", k.name())).collect::<Vec<_>>().join("; ");
        Err(RuntimeError::NoProvider { requested: preference.iter().map(|k| k.name()).collect(), reasons })
    }
}

/// A model's session, the provider it runs on, and its weights when they are in flight's memory.
#[derive(Debug)]
pub struct LoadedSession {
    pub session: Session,
    pub choice: ProviderChoice,
    pub weights: Option<ResidentWeights>,
}

/// The provider ready to register, or why it cannot run here.
fn provider(kind: ExecutionProviderKind) -> Result<ep::ExecutionProviderDispatch, String> {
    match kind {
        ExecutionProviderKind::Cpu => Ok(ep::CPU::default().with_arena_allocator(true).build()),
        ExecutionProviderKind::Cuda => cuda_provider(),
    }
}

#[cfg(feature = "cuda")]
fn cuda_provider() -> Result<ep::ExecutionProviderDispatch, String> {
    match <ep::CUDA as ExecutionProvider>::is_available() {
        // Exactly-once needs a tile's numbers not to depend on what it is batched with (a frame
        // resumed after a restart runs its remaining tiles in other batches). With TF32 and cuDNN's
        // per-shape algorithm search (ONNX Runtime's defaults), a batch of 3 moved the vessel
        // model's outputs by 1.5e-3 on an H100 and the batch check refused batching. In full FP32
        // with cuDNN's one fixed algorithm they are bit for bit those of single tiles, and batches
        // of 16 ran 1.3 to 2 times as many tiles/s as the defaults' single tiles (docs/benchmarks.md).
        Ok(true) => Ok(ep::CUDA::default()
            .with_tf32(false)
            .with_conv_algorithm_search(ep::cuda::ConvAlgorithmSearch::Default)
            .build()),
        Ok(false) => Err("the loaded ONNX Runtime library has no CUDA execution provider".to_owned()),
        Err(e) => Err(format!("cannot query the CUDA execution provider: {e}")),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_provider() -> Result<ep::ExecutionProviderDispatch, String> {
    Err("this build of flight has no `cuda` feature".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In every build, on every machine: CUDA then CPU gets a working session, on CUDA where this
    /// build has the `cuda` feature and the machine a GPU, else on the CPU with the reason CUDA
    /// was passed over.
    #[test]
    fn cuda_then_cpu_runs_on_cuda_where_it_can_and_says_why_not_elsewhere() {
        use ExecutionProviderKind::{Cpu, Cuda};
        let runtime = OnnxRuntime::get().expect("ONNX Runtime (scripts/setup.sh fetches it)");
        let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/clouds-s2.onnx");
        let loaded = runtime.session(&model, &[Cuda, Cpu], 1).expect("a session");
        let ProviderChoice { chosen, passed_over } = &loaded.choice;
        if cfg!(feature = "cuda") && Path::new("/dev/nvidia0").exists() {
            assert_eq!((*chosen, passed_over.len()), (Cuda, 0), "a GPU and a cuda build: {passed_over:?}");
            return;
        }
        assert_eq!(*chosen, Cpu);
        let [(Cuda, reason)] = &passed_over[..] else { panic!("CUDA passed over, once: {passed_over:?}") };
        let expected = if cfg!(feature = "cuda") { "CUDA" } else { "`cuda` feature" };
        assert!(reason.contains(expected), "{reason}");
        assert!(provider(Cpu).is_ok());
    }
}
