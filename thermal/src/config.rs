//! The view of the mission file that the orbit, thermal and power model reads: `[mission]`, `[thermal]`.

use std::path::Path;

use kestrel_link::mission::{MissionError, MissionFile, MissionInfo};
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Clone, Deserialize)]
pub struct ThermalMission {
    pub mission: MissionInfo,
    pub thermal: ThermalConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThermalConfig {
    /// The spacecraft's two-line element set (line 1, line 2).
    pub tle: [String; 2],
    pub ground_stations: Vec<GroundStation>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroundStation {
    pub name: String,
    pub latitude_deg: Spanned<f64>,
    pub longitude_deg: Spanned<f64>,
    pub altitude_m: f64,
    /// Passes count only above this elevation.
    pub min_elevation_deg: Spanned<f64>,
}

/// A mission file read and checked for the thermal and power model.
#[derive(Debug, Clone)]
pub struct LoadedThermalMission {
    pub file: MissionFile,
    pub config: ThermalMission,
}

impl LoadedThermalMission {
    pub fn load(path: &Path) -> Result<Self, MissionError> {
        let file = MissionFile::read(path)?;
        let config: ThermalMission = file.parse()?;
        for (i, station) in config.thermal.ground_stations.iter().enumerate() {
            let key = |field: &str| format!("thermal.ground_stations[{i}].{field}");
            let limits = [
                ("latitude_deg", &station.latitude_deg, -90.0, 90.0),
                ("longitude_deg", &station.longitude_deg, -180.0, 180.0),
                ("min_elevation_deg", &station.min_elevation_deg, 0.0, 90.0),
            ];
            for (field, value, low, high) in limits {
                if !(low..=high).contains(value.get_ref()) {
                    let message = format!(
                        "must be within {low} to {high} degrees, found {}",
                        value.get_ref()
                    );
                    return Err(file.error_at(value.span(), &key(field), message));
                }
            }
        }
        Ok(Self { file, config })
    }
}
