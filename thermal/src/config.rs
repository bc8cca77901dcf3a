//! The view of the mission file that the orbit, thermal and power model reads: `[mission]`, `[thermal]`.

use std::path::Path;

use kestrel_mission::{MissionError, MissionFile, MissionInfo};
use serde::Deserialize;
use toml::Spanned;

use crate::orbit::Orbit;

#[derive(Debug, Clone, Deserialize)]
pub struct ThermalMission {
    pub mission: MissionInfo,
    pub thermal: ThermalConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThermalConfig {
    /// The spacecraft's two-line element set (line 1, line 2).
    pub tle: Spanned<[String; 2]>,
    pub ground_stations: Vec<GroundStation>,
    pub environment: Environment,
    pub nodes: Vec<Node>,
    pub conductances: Vec<Conductance>,
    pub power: PowerConfig,
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

/// The radiative environment of the orbit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// Solar constant, W/m² (1361).
    pub solar_flux_w_m2: Spanned<f64>,
    /// Fraction of sunlight the Earth reflects (about 0.3).
    pub albedo: Spanned<f64>,
    /// Earth's infrared emission at its surface, W/m² (about 237).
    pub earth_ir_w_m2: Spanned<f64>,
    /// Temperature of deep space, K.
    pub space_temperature_k: Spanned<f64>,
}

/// One lumped node of the thermal network.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub name: String,
    pub heat_capacity_j_k: Spanned<f64>,
    pub initial_temperature_c: f64,
    /// Limits the scheduler must keep the node within.
    pub min_temperature_c: f64,
    pub max_temperature_c: f64,
    /// The node's outside surface, if it has one.
    pub surface: Option<Surface>,
}

/// An outside surface: it absorbs sunlight, albedo and Earth infrared, and radiates to space.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Surface {
    pub area_m2: Spanned<f64>,
    /// Infrared emissivity, 0 to 1.
    pub emissivity: Spanned<f64>,
    /// Solar absorptivity, 0 to 1.
    pub absorptivity: Spanned<f64>,
    /// Mean fraction of the area's projection that faces the Sun when sunlit, 0 to 1.
    pub sun_view: Spanned<f64>,
    /// View factor from the surface to the Earth, 0 to 1 (a nadir plate at 786 km: 0.79).
    pub earth_view: Spanned<f64>,
}

/// A conductive link between two nodes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conductance {
    pub between: Spanned<[String; 2]>,
    pub w_k: Spanned<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerConfig {
    pub solar_array_area_m2: Spanned<f64>,
    pub solar_cell_efficiency: Spanned<f64>,
    /// Mean angle between the array's normal and the Sun, degrees.
    pub solar_incidence_deg: Spanned<f64>,
    pub battery_capacity_wh: Spanned<f64>,
    pub battery_initial_soc: Spanned<f64>,
    /// The scheduler keeps the state of charge above this.
    pub battery_min_soc: Spanned<f64>,
    pub battery_max_charge_w: Spanned<f64>,
    pub battery_max_discharge_w: Spanned<f64>,
    /// Fraction of charging power stored; the rest heats the battery.
    pub battery_charge_efficiency: Spanned<f64>,
    /// Platform load, always on, dissipated in `bus_node`.
    pub bus_load_w: Spanned<f64>,
    /// GPU power when idle and when running detection, dissipated in `payload_node`.
    pub gpu_idle_w: Spanned<f64>,
    pub gpu_active_w: Spanned<f64>,
    pub bus_node: Spanned<String>,
    pub payload_node: Spanned<String>,
    pub battery_node: Spanned<String>,
}

/// A mission file read and checked for the thermal and power model.
#[derive(Debug, Clone)]
pub struct LoadedThermalMission {
    pub file: MissionFile,
    pub config: ThermalMission,
    pub orbit: Orbit,
}

/// How long after its epoch the orbit must be propagatable for the mission file to be accepted.
pub const REQUIRED_ORBIT_DAYS: f64 = 3.0;
/// Below this height an orbit is re-entering, not flying a mission.
pub const DECAY_HEIGHT_KM: f64 = 150.0;
/// How far the TLE's epoch may be from the mission's `[mission] epoch`, days. Further, and the
/// element set is another spacecraft's or long stale: SGP4's error grows by kilometres a day, and
/// every contact, eclipse, plan and ground track predicted from it would be wrong.
pub const MAX_TLE_EPOCH_OFFSET_DAYS: f64 = 30.0;

impl LoadedThermalMission {
    pub fn load(path: &Path) -> Result<Self, MissionError> {
        let file = MissionFile::read(path)?;
        let config: ThermalMission = file.parse()?;
        let thermal = &config.thermal;
        let range = |value: &Spanned<f64>, key: &str, low: f64, high: f64| -> Result<(), MissionError> {
            let v = *value.get_ref();
            if (low..=high).contains(&v) {
                Ok(())
            } else {
                let limits = match (low.is_finite(), high.is_finite()) {
                    (true, true) => format!("within {low} to {high}"),
                    (true, false) if low == 0.0 => "at least 0".to_owned(),
                    _ => format!("at least {low}"),
                };
                Err(file.error_at(value.span(), key, format!("must be {limits}, found {v}")))
            }
        };
        let positive = |value: &Spanned<f64>, key: &str| -> Result<(), MissionError> {
            if *value.get_ref() > 0.0 {
                Ok(())
            } else {
                Err(file.error_at(value.span(), key, format!("must be above 0, found {}", value.get_ref())))
            }
        };

        let tle = &thermal.tle;
        let orbit = Orbit::from_tle(&tle.get_ref()[0], &tle.get_ref()[1])
            .map_err(|e| file.error_at(tle.span(), "thermal.tle", e.to_string()))?;
        let epoch = orbit.epoch_unix();
        let mission_epoch = config.mission.epoch_ms() as f64 / 1000.0;
        let offset_days = (epoch - mission_epoch) / 86_400.0;
        if offset_days.abs() > MAX_TLE_EPOCH_OFFSET_DAYS {
            let message = format!(
                "the TLE's epoch {} is {:.1} days {} the mission's epoch {} (`mission.epoch`); at most \
                 {MAX_TLE_EPOCH_OFFSET_DAYS} days either side are allowed: this element set is another \
                 spacecraft's or stale",
                utc_text(epoch),
                offset_days.abs(),
                if offset_days < 0.0 { "before" } else { "after" },
                config.mission.epoch,
            );
            return Err(file.error_at(tle.span(), "thermal.tle", message));
        }
        let mut t = epoch;
        while t <= epoch + REQUIRED_ORBIT_DAYS * 86_400.0 {
            let (r, _) = orbit.teme(t).map_err(|e| file.error_at(tle.span(), "thermal.tle", e.to_string()))?;
            let height_km = crate::orbit::norm(r) - crate::orbit::WGS84_A_KM;
            if height_km < DECAY_HEIGHT_KM {
                let message = format!(
                    "the orbit decays: {:.1} hours after the TLE epoch the spacecraft is {height_km:.0} km up, below {DECAY_HEIGHT_KM} km",
                    (t - epoch) / 3600.0
                );
                return Err(file.error_at(tle.span(), "thermal.tle", message));
            }
            t += 60.0;
        }

        for (i, station) in thermal.ground_stations.iter().enumerate() {
            let key = |field: &str| format!("thermal.ground_stations[{i}].{field}");
            range(&station.latitude_deg, &key("latitude_deg"), -90.0, 90.0)?;
            range(&station.longitude_deg, &key("longitude_deg"), -180.0, 180.0)?;
            range(&station.min_elevation_deg, &key("min_elevation_deg"), 0.0, 90.0)?;
        }

        let env = &thermal.environment;
        positive(&env.solar_flux_w_m2, "thermal.environment.solar_flux_w_m2")?;
        range(&env.albedo, "thermal.environment.albedo", 0.0, 1.0)?;
        range(&env.earth_ir_w_m2, "thermal.environment.earth_ir_w_m2", 0.0, f64::INFINITY)?;
        range(&env.space_temperature_k, "thermal.environment.space_temperature_k", 0.0, f64::INFINITY)?;

        for (i, node) in thermal.nodes.iter().enumerate() {
            let key = |field: &str| format!("thermal.nodes[{i}].{field}");
            positive(&node.heat_capacity_j_k, &key("heat_capacity_j_k"))?;
            if thermal.nodes[..i].iter().any(|n| n.name == node.name) {
                return Err(file.error_at(
                    node.heat_capacity_j_k.span(),
                    &key("name"),
                    format!("node `{}` is declared twice", node.name),
                ));
            }
            if let Some(s) = &node.surface {
                positive(&s.area_m2, &key("surface.area_m2"))?;
                range(&s.emissivity, &key("surface.emissivity"), 0.0, 1.0)?;
                range(&s.absorptivity, &key("surface.absorptivity"), 0.0, 1.0)?;
                range(&s.sun_view, &key("surface.sun_view"), 0.0, 1.0)?;
                range(&s.earth_view, &key("surface.earth_view"), 0.0, 1.0)?;
            }
        }
        let node_named = |name: &Spanned<String>, key: &str| -> Result<(), MissionError> {
            if thermal.nodes.iter().any(|n| &n.name == name.get_ref()) {
                Ok(())
            } else {
                Err(file.error_at(name.span(), key, format!("no node is named `{}`", name.get_ref())))
            }
        };
        for (i, link) in thermal.conductances.iter().enumerate() {
            positive(&link.w_k, &format!("thermal.conductances[{i}].w_k"))?;
            for name in link.between.get_ref() {
                if !thermal.nodes.iter().any(|n| &n.name == name) {
                    let message = format!("no node is named `{name}`");
                    return Err(file.error_at(
                        link.between.span(),
                        &format!("thermal.conductances[{i}].between"),
                        message,
                    ));
                }
            }
        }

        let p = &thermal.power;
        let key = |field: &str| format!("thermal.power.{field}");
        positive(&p.solar_array_area_m2, &key("solar_array_area_m2"))?;
        range(&p.solar_cell_efficiency, &key("solar_cell_efficiency"), 0.0, 1.0)?;
        range(&p.solar_incidence_deg, &key("solar_incidence_deg"), 0.0, 90.0)?;
        positive(&p.battery_capacity_wh, &key("battery_capacity_wh"))?;
        range(&p.battery_initial_soc, &key("battery_initial_soc"), 0.0, 1.0)?;
        range(&p.battery_min_soc, &key("battery_min_soc"), 0.0, 1.0)?;
        positive(&p.battery_max_charge_w, &key("battery_max_charge_w"))?;
        positive(&p.battery_max_discharge_w, &key("battery_max_discharge_w"))?;
        range(&p.battery_charge_efficiency, &key("battery_charge_efficiency"), 0.0, 1.0)?;
        for (value, field) in
            [(&p.bus_load_w, "bus_load_w"), (&p.gpu_idle_w, "gpu_idle_w"), (&p.gpu_active_w, "gpu_active_w")]
        {
            range(value, &key(field), 0.0, f64::INFINITY)?;
        }
        node_named(&p.bus_node, &key("bus_node"))?;
        node_named(&p.payload_node, &key("payload_node"))?;
        node_named(&p.battery_node, &key("battery_node"))?;
        Ok(Self { file, config, orbit })
    }
}

/// A Unix time as `YYYY-MM-DDTHH:MM:SSZ` (whole seconds, proleptic Gregorian).
pub fn utc_text(t_unix: f64) -> String {
    let seconds = t_unix.floor() as i64;
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    let (hour, minute, second) = (second_of_day / 3600, second_of_day / 60 % 60, second_of_day % 60);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_times_as_utc_text() {
        assert_eq!(utc_text(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_text(1_773_964_800.0), "2026-03-20T00:00:00Z");
        assert_eq!(utc_text(951_827_696.5), "2000-02-29T12:34:56Z");
        assert_eq!(utc_text(-1.0), "1969-12-31T23:59:59Z");
    }
}
