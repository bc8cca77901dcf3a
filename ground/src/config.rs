//! The view of the mission file that the ground station reads: `[mission]`, `[link]`, `[ground]`,
//! and from `[thermal]` the TLE and the ground stations (for the console's track and passes).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use kestrel_dictionary::{MissionDictionary, MissionLimits, NodeLimits};
use kestrel_link::profile::LinkProfile;
use kestrel_link::station::StationName;
use kestrel_mission::link::LinkConfig;
use kestrel_mission::{MissionError, MissionFile, MissionInfo};
use kestrel_thermal::config::LoadedThermalMission;
use serde::Deserialize;

use crate::operators::Operators;
use crate::predict::Predictions;
use toml::Spanned;

#[derive(Debug, Clone, Deserialize)]
pub struct GroundMission {
    pub mission: MissionInfo,
    pub link: LinkConfig,
    pub ground: GroundConfig,
    /// Of `[flight]`, only what the ground checks uploads with (flight owns the section's schema).
    pub flight: FlightView,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FlightView {
    pub detector: DetectorView,
    pub schedule: ScheduleView,
}

/// Of `[flight.schedule]`, the margins that are the housekeeping channels' warning levels.
#[derive(Debug, Clone, Deserialize)]
pub struct ScheduleView {
    pub margin_c: Spanned<f64>,
    pub margin_soc: Spanned<f64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DetectorView {
    /// The public key that model signatures verify with, on board and before an upload.
    pub verifying_key: Spanned<PathBuf>,
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
    /// The operators file: each operator's name and the SHA-256 of its token, which commands from
    /// the console and the API must present (`ground operator-token` adds one).
    pub operators_file: Spanned<PathBuf>,
    /// Contacts after a command's release with no report from the spacecraft before the command
    /// is reported timed out (default 3).
    #[serde(default)]
    pub command_timeout_contacts: Option<Spanned<u64>>,
    /// The stations that may deliver CADUs and relay telecommands; any other client is refused.
    pub stations: Spanned<Vec<StationEntry>>,
}

/// One `[[ground.stations]]` entry: the name a station signs on with, and its key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StationEntry {
    pub name: Spanned<String>,
    /// File holding the station's 256-bit sign-on key (64 hexadecimal digits).
    pub key_file: Spanned<PathBuf>,
}

/// A mission file read and checked for the ground station.
#[derive(Debug, Clone)]
pub struct LoadedGroundMission {
    pub file: MissionFile,
    pub config: GroundMission,
    /// The `[link]` section made ready to use, key loaded.
    pub link: LinkProfile,
    pub predictions: Predictions,
    /// Each declared station's sign-on key.
    pub station_keys: BTreeMap<StationName, [u8; 32]>,
    pub model_verifying_key: [u8; 32],
    pub operators: Operators,
    /// The mission dictionary, its channels' limits the mission file's.
    pub dictionary: MissionDictionary,
}

impl LoadedGroundMission {
    /// `ground.command_timeout_contacts`, or its default.
    pub fn timeout_contacts(&self) -> u64 {
        let configured = self.config.ground.command_timeout_contacts.as_ref();
        configured.map_or(crate::serve::DEFAULT_TIMEOUT_CONTACTS, |c| *c.get_ref())
    }
}

impl LoadedGroundMission {
    pub fn load(path: &Path) -> Result<Self, MissionError> {
        let file = MissionFile::read(path)?;
        let config: GroundMission = file.parse()?;
        let link = config.link.profile(&file)?;
        let operators_file = file.existing_file("ground.operators_file", &config.ground.operators_file)?;
        let operators = Operators::load(&operators_file)?;
        let station_keys = station_keys(&file, &config.ground.stations)?;
        if let Some(contacts) = &config.ground.command_timeout_contacts
            && *contacts.get_ref() == 0
        {
            return Err(file.error_at(contacts.span(), "ground.command_timeout_contacts", "at least 1 contact"));
        }
        let model_verifying_key =
            file.key_file("flight.detector.verifying_key", &config.flight.detector.verifying_key)?;
        let thermal = LoadedThermalMission::load(file.path())?;
        let predictions = Predictions::new(&thermal);
        let schedule = &config.flight.schedule;
        let limits = MissionLimits {
            nodes: (thermal.config.thermal.nodes.iter())
                .map(|node| NodeLimits {
                    name: node.name.clone(),
                    min_temperature_c: node.min_temperature_c,
                    max_temperature_c: node.max_temperature_c,
                })
                .collect(),
            margin_c: *schedule.margin_c.get_ref(),
            battery_min_soc: *thermal.config.thermal.power.battery_min_soc.get_ref(),
            margin_soc: *schedule.margin_soc.get_ref(),
        };
        let dictionary = MissionDictionary::new(&config.mission.name, &limits);
        Ok(Self { file, config, link, predictions, station_keys, model_verifying_key, operators, dictionary })
    }
}

fn station_keys(
    file: &MissionFile,
    stations: &Spanned<Vec<StationEntry>>,
) -> Result<BTreeMap<StationName, [u8; 32]>, MissionError> {
    if stations.get_ref().is_empty() {
        return Err(file.error_at(stations.span(), "ground.stations", "declare at least one station"));
    }
    let mut keys = BTreeMap::new();
    for (i, station) in stations.get_ref().iter().enumerate() {
        let name = StationName::new(station.name.get_ref())
            .map_err(|e| file.error_at(station.name.span(), &format!("ground.stations[{i}].name"), e.to_string()))?;
        let key = file.key_file(&format!("ground.stations[{i}].key_file"), &station.key_file)?;
        if keys.insert(name, key).is_some() {
            let message = format!("station `{}` is declared twice", station.name.get_ref());
            return Err(file.error_at(station.name.span(), &format!("ground.stations[{i}].name"), message));
        }
    }
    Ok(keys)
}
