//! What the ground expects of the spacecraft, from the mission's TLE: its ground track and its
//! passes over the ground stations (the console's map and pass timeline).

use kestrel_thermal::config::{GroundStation, LoadedThermalMission};
use kestrel_thermal::events;
use kestrel_thermal::orbit::{Orbit, OrbitError, ecef_to_geodetic};
use serde::Serialize;

/// Longest window one request may ask for (a week of passes or track).
pub const MAX_WINDOW_MS: i64 = 7 * 86_400_000;

/// A predicted pass, in Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PredictedPass {
    pub station: String,
    pub aos_ms: i64,
    pub los_ms: i64,
    pub max_elevation_deg: f64,
}

/// One point of the ground track.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TrackPoint {
    pub time_ms: i64,
    pub latitude: f64,
    pub longitude: f64,
}

/// A ground station where the console draws it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StationSite {
    pub name: String,
    pub latitude: f64,
    pub longitude: f64,
}

#[derive(Debug, Clone)]
pub struct Predictions {
    orbit: Orbit,
    stations: Vec<GroundStation>,
}

impl Predictions {
    pub fn new(mission: &LoadedThermalMission) -> Self {
        Self { orbit: mission.orbit.clone(), stations: mission.config.thermal.ground_stations.clone() }
    }

    pub fn sites(&self) -> Vec<StationSite> {
        self.stations
            .iter()
            .map(|s| StationSite {
                name: s.name.clone(),
                latitude: *s.latitude_deg.get_ref(),
                longitude: *s.longitude_deg.get_ref(),
            })
            .collect()
    }

    /// Passes over every station that begin in [from_ms, to_ms), in time order.
    pub fn passes(&self, from_ms: i64, to_ms: i64) -> Result<Vec<PredictedPass>, OrbitError> {
        let (start, end) = (from_ms as f64 / 1000.0, to_ms as f64 / 1000.0);
        let mut passes = Vec::new();
        for station in &self.stations {
            for pass in events::passes(&self.orbit, station, start, end)? {
                passes.push(PredictedPass {
                    station: pass.station,
                    aos_ms: (pass.aos_unix * 1000.0).round() as i64,
                    los_ms: (pass.los_unix * 1000.0).round() as i64,
                    max_elevation_deg: pass.max_elevation_deg,
                });
            }
        }
        passes.sort_by_key(|p| p.aos_ms);
        Ok(passes)
    }

    /// The sub-satellite point every `step_ms` over [from_ms, to_ms].
    pub fn ground_track(&self, from_ms: i64, to_ms: i64, step_ms: i64) -> Result<Vec<TrackPoint>, OrbitError> {
        let step_ms = step_ms.max(1);
        let mut points = Vec::new();
        let mut next = Some(from_ms);
        while let Some(t) = next.filter(|t| *t <= to_ms) {
            let (latitude, longitude, _) = ecef_to_geodetic(self.orbit.ecef(t as f64 / 1000.0)?);
            points.push(TrackPoint { time_ms: t, latitude, longitude });
            next = t.checked_add(step_ms);
        }
        Ok(points)
    }

    pub fn period_ms(&self) -> i64 {
        (self.orbit.period_s() * 1000.0) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> Predictions {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../mission.toml");
        Predictions::new(&LoadedThermalMission::load(&path).expect("reference mission"))
    }

    #[test]
    fn the_track_stays_within_the_inclination_and_moves_a_whole_orbit_in_a_period() {
        let predictions = reference();
        let start = (predictions.orbit.epoch_unix() * 1000.0) as i64;
        let track = predictions.ground_track(start, start + predictions.period_ms(), 30_000).expect("track");
        assert!(track.len() > 150);
        let max_lat = track.iter().map(|p| p.latitude.abs()).fold(0.0, f64::max);
        // a sun-synchronous orbit reaches about 82 degrees: near, never past, the pole
        assert!((75.0..90.0).contains(&max_lat), "max latitude {max_lat}");
        assert!(track.iter().all(|p| (-180.0..=180.0).contains(&p.longitude)));
    }

    #[test]
    fn passes_are_in_time_order_and_inside_the_window() {
        let predictions = reference();
        let start = (predictions.orbit.epoch_unix() * 1000.0) as i64;
        let passes = predictions.passes(start, start + 86_400_000).expect("passes");
        assert!(passes.len() >= 2, "a day has passes: {passes:?}");
        assert!(passes.windows(2).all(|w| w[0].aos_ms <= w[1].aos_ms));
        assert!(passes.iter().all(|p| p.los_ms > p.aos_ms && p.aos_ms >= start - 1000));
        let names: std::collections::BTreeSet<_> = passes.iter().map(|p| p.station.as_str()).collect();
        assert_eq!(names.len(), predictions.sites().len(), "every station has a pass in a day");
    }
}
