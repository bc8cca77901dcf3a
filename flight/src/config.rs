//! The view of the mission file that the flight software reads: `[mission]`, `[link]`, `[flight]`.

use std::path::{Path, PathBuf};

use kestrel_link::config::LinkConfig;
use kestrel_link::mission::{MissionError, MissionFile, MissionInfo};
use kestrel_link::profile::LinkProfile;
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Clone, Deserialize)]
pub struct FlightMission {
    pub mission: MissionInfo,
    pub link: LinkConfig,
    pub flight: FlightConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlightConfig {
    /// Where the camera driver hands frames over (by atomic rename).
    pub spool_dir: PathBuf,
    /// Where the checkpoint database lives.
    pub state_dir: PathBuf,
    pub inference: InferenceConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceConfig {
    /// ONNX Runtime execution providers in order of preference; the first available one runs.
    pub execution_providers: Spanned<Vec<ExecutionProviderKind>>,
    /// Threads ONNX Runtime uses inside one operator; 0 lets ONNX Runtime choose.
    pub intra_threads: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionProviderKind {
    Cuda,
    Cpu,
}

impl ExecutionProviderKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Cuda => "cuda",
            Self::Cpu => "cpu",
        }
    }
}

/// A mission file read and checked for flight: every mistake found here, not in orbit.
#[derive(Debug, Clone)]
pub struct LoadedFlightMission {
    pub file: MissionFile,
    pub config: FlightMission,
    /// The `[link]` section made ready to use, key loaded.
    pub link: LinkProfile,
}

impl LoadedFlightMission {
    pub fn load(path: &Path) -> Result<Self, MissionError> {
        let file = MissionFile::read(path)?;
        let config: FlightMission = file.parse()?;
        let link = config.link.profile(&file)?;
        let providers = &config.flight.inference.execution_providers;
        if providers.get_ref().is_empty() {
            return Err(file.error_at(
                providers.span(),
                "flight.inference.execution_providers",
                "needs at least one execution provider, e.g. [\"cpu\"]",
            ));
        }
        Ok(Self { file, config, link })
    }

    /// A path from the `[flight]` section, resolved against the mission file's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.file.resolve(path)
    }
}
