//! The spacecraft's orbit: SGP4 (`sgp4` crate) from the mission's TLE, and the frames around it.
//!
//! Times are UTC seconds since the Unix epoch (`f64`). SGP4 gives TEME positions; TEME is turned
//! into Earth-fixed coordinates by the Greenwich mean sidereal time (IAU 1982, as Vallado and
//! Skyfield do for TEME), UT1 taken as UTC (under a second, a few tens of metres on the ground).

use std::f64::consts::TAU;

/// WGS84 equatorial radius and flattening.
pub const WGS84_A_KM: f64 = 6378.137;
pub const WGS84_F: f64 = 1.0 / 298.257_223_563;

pub type Vec3 = [f64; 3];

pub fn dot(a: Vec3, b: Vec3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

pub fn norm(a: Vec3) -> f64 {
    dot(a, a).sqrt()
}

pub fn sub(a: Vec3, b: Vec3) -> Vec3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

/// Julian date (UTC) of a Unix time.
pub fn julian_date(t_unix: f64) -> f64 {
    t_unix / 86_400.0 + 2_440_587.5
}

/// Greenwich mean sidereal time, radians (IAU 1982).
pub fn gmst(t_unix: f64) -> f64 {
    let t = (julian_date(t_unix) - 2_451_545.0) / 36_525.0;
    let seconds = 67_310.548_41 + (876_600.0 * 3600.0 + 8_640_184.812_866) * t + 0.093_104 * t * t - 6.2e-6 * t * t * t;
    (seconds % 86_400.0 / 86_400.0 * TAU).rem_euclid(TAU)
}

/// TEME (or any true-of-date inertial vector) to Earth-fixed, rotating by GMST.
pub fn inertial_to_earth_fixed(v: Vec3, t_unix: f64) -> Vec3 {
    let (s, c) = gmst(t_unix).sin_cos();
    [c * v[0] + s * v[1], -s * v[0] + c * v[1], v[2]]
}

/// Earth-fixed position (km) of a point at geodetic latitude, longitude (degrees), height (m).
pub fn geodetic_to_ecef(latitude_deg: f64, longitude_deg: f64, height_m: f64) -> Vec3 {
    let (lat, lon) = (latitude_deg.to_radians(), longitude_deg.to_radians());
    let e2 = WGS84_F * (2.0 - WGS84_F);
    let n = WGS84_A_KM / (1.0 - e2 * lat.sin().powi(2)).sqrt();
    let h = height_m / 1000.0;
    [(n + h) * lat.cos() * lon.cos(), (n + h) * lat.cos() * lon.sin(), (n * (1.0 - e2) + h) * lat.sin()]
}

/// Geodetic latitude and longitude (degrees) and height (km) of an Earth-fixed position (km).
pub fn ecef_to_geodetic(r: Vec3) -> (f64, f64, f64) {
    let e2 = WGS84_F * (2.0 - WGS84_F);
    let p = (r[0] * r[0] + r[1] * r[1]).sqrt();
    let lon = r[1].atan2(r[0]);
    let mut lat = r[2].atan2(p * (1.0 - e2));
    let mut h = 0.0;
    for _ in 0..6 {
        let n = WGS84_A_KM / (1.0 - e2 * lat.sin().powi(2)).sqrt();
        h = p / lat.cos() - n;
        lat = r[2].atan2(p * (1.0 - e2 * n / (n + h)));
    }
    (lat.to_degrees(), lon.to_degrees(), h)
}

/// Why a TLE or a propagation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OrbitError {
    #[error("{0}")]
    Tle(String),
    #[error(
        "the orbit cannot be propagated to {minutes:.1} minutes after the TLE epoch: {reason} (the orbit has decayed or the elements are impossible)"
    )]
    Propagation { minutes: f64, reason: String },
}

/// An orbit that can be evaluated at any time.
#[derive(Debug, Clone)]
pub struct Orbit {
    constants: sgp4::Constants,
    epoch_unix: f64,
    /// Revolutions per day at epoch.
    mean_motion: f64,
}

impl Orbit {
    /// Parses and checks a TLE (line lengths, checksums, fields), naming the line at fault.
    pub fn from_tle(line1: &str, line2: &str) -> Result<Self, OrbitError> {
        let elements = sgp4::Elements::from_tle(None, line1.as_bytes(), line2.as_bytes())
            .map_err(|e| OrbitError::Tle(describe_tle_error(&e, line1, line2)))?;
        let constants = sgp4::Constants::from_elements(&elements)
            .map_err(|e| OrbitError::Tle(format!("impossible elements: {e}")))?;
        let epoch_unix = elements.datetime.and_utc().timestamp_micros() as f64 / 1e6;
        let orbit = Self { constants, epoch_unix, mean_motion: elements.mean_motion };
        // an orbit that cannot even be propagated at its epoch is refused now, not mid-mission
        orbit.teme(epoch_unix)?;
        Ok(orbit)
    }

    pub fn epoch_unix(&self) -> f64 {
        self.epoch_unix
    }

    /// TEME position (km) and velocity (km/s).
    pub fn teme(&self, t_unix: f64) -> Result<(Vec3, Vec3), OrbitError> {
        let minutes = (t_unix - self.epoch_unix) / 60.0;
        let prediction = self
            .constants
            .propagate(sgp4::MinutesSinceEpoch(minutes))
            .map_err(|e| OrbitError::Propagation { minutes, reason: e.to_string() })?;
        Ok((prediction.position, prediction.velocity))
    }

    /// Earth-fixed position (km).
    pub fn ecef(&self, t_unix: f64) -> Result<Vec3, OrbitError> {
        Ok(inertial_to_earth_fixed(self.teme(t_unix)?.0, t_unix))
    }

    /// Orbital period from the mean motion at epoch, seconds.
    pub fn period_s(&self) -> f64 {
        86_400.0 / self.mean_motion
    }
}

fn describe_tle_error(error: &sgp4::TleError, line1: &str, line2: &str) -> String {
    let text = error.to_string();
    let checksum = |line: &str| {
        let sum: u32 = line.chars().take(68).map(|c| c.to_digit(10).unwrap_or(u32::from(c == '-'))).sum();
        sum % 10
    };
    if text.contains("BadChecksum") || text.to_lowercase().contains("checksum") {
        let which = |line: &str, n: usize| {
            let expected = checksum(line);
            let found = line.chars().nth(68).map_or("nothing".to_owned(), |c| c.to_string());
            (found != expected.to_string())
                .then(|| format!("line {n} checksum is {found}, its digits sum to {expected} (mod 10)"))
        };
        let parts: Vec<String> = [which(line1, 1), which(line2, 2)].into_iter().flatten().collect();
        if !parts.is_empty() {
            return format!("bad TLE: {}", parts.join("; "));
        }
    }
    format!("bad TLE: {text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const L1: &str = "1 40697U 15028A   26079.00000000  .00000106  00000-0  56329-4 0  9992";
    const L2: &str = "2 40697  98.5659 156.2041 0001034  95.2796 264.8507 14.30820122560001";

    #[test]
    fn the_reference_orbit_is_a_786_km_sun_synchronous_orbit() {
        let orbit = Orbit::from_tle(L1, L2).expect("valid TLE");
        assert_eq!(orbit.epoch_unix(), 1_773_964_800.0);
        let (_, _, height) = ecef_to_geodetic(orbit.ecef(orbit.epoch_unix() + 1000.0).expect("propagates"));
        assert!((770.0..810.0).contains(&height), "height {height} km");
        assert!((6030.0..6060.0).contains(&orbit.period_s()), "period {} s", orbit.period_s());
    }

    #[test]
    fn a_bad_checksum_names_the_line_and_the_digits() {
        let bad = format!("{}3", &L1[..68]);
        let e = Orbit::from_tle(&bad, L2).expect_err("bad checksum").to_string();
        assert!(e.contains("line 1 checksum is 3, its digits sum to 2"), "{e}");
        let e = Orbit::from_tle(L1, &L2[..60]).expect_err("short").to_string();
        assert!(e.starts_with("bad TLE"), "{e}");
    }

    #[test]
    fn geodetic_round_trip() {
        let r = geodetic_to_ecef(78.2306, 15.3894, 500.0);
        let (lat, lon, h) = ecef_to_geodetic(r);
        assert!((lat - 78.2306).abs() < 1e-9 && (lon - 15.3894).abs() < 1e-9 && (h - 0.5).abs() < 1e-9);
    }

    #[test]
    fn gmst_matches_a_published_value() {
        // Vallado, example 3-5: 1992-08-20 12:14 UT1 -> GMST 152.578787810 deg
        let t = 714_312_840.0;
        assert!((gmst(t).to_degrees() - 152.578_787_81).abs() < 1e-6, "{}", gmst(t).to_degrees());
    }
}
