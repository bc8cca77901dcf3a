//! The view of the mission file that the ground station reads: `[mission]`, `[link]`, `[ground]`,
//! and from `[thermal]` the TLE and the ground stations (for the console's track and passes).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use kestrel_link::config::LinkConfig;
use kestrel_link::mission::{MissionError, MissionFile, MissionInfo};
use kestrel_link::profile::LinkProfile;
use kestrel_thermal::config::LoadedThermalMission;
use serde::Deserialize;

use crate::predict::Predictions;
use toml::Spanned;

#[derive(Debug, Clone, Deserialize)]
pub struct GroundMission {
    pub mission: MissionInfo,
    pub link: LinkConfig,
    pub ground: GroundConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroundConfig {
    /// TCP address where stations deliver CADU streams.
    pub cadu_listen: SocketAddr,
    /// TCP address of the HTTP API and the operator console.
    pub http_listen: SocketAddr,
    /// The embedded archive's folder; `--store postgres://...` replaces it with a shared archive.
    pub archive_dir: PathBuf,
    /// File holding the operator token that commands from the console and the API must present.
    pub operator_token_file: Spanned<PathBuf>,
}

/// A mission file read and checked for the ground station.
#[derive(Debug, Clone)]
pub struct LoadedGroundMission {
    pub file: MissionFile,
    pub config: GroundMission,
    /// The `[link]` section made ready to use, key loaded.
    pub link: LinkProfile,
    pub predictions: Predictions,
}

impl LoadedGroundMission {
    pub fn load(path: &Path) -> Result<Self, MissionError> {
        let file = MissionFile::read(path)?;
        let config: GroundMission = file.parse()?;
        let link = config.link.profile(&file)?;
        file.existing_file("ground.operator_token_file", &config.ground.operator_token_file)?;
        let predictions = Predictions::new(&LoadedThermalMission::load(file.path())?);
        Ok(Self { file, config, link, predictions })
    }
}
