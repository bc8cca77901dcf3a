//! When things happen along the orbit: eclipse entries and exits, and ground-station passes
//! (acquisition of signal, maximum elevation, loss of signal) over each station's elevation mask.
//! Found by sampling, then bisection to a millisecond.

use serde::Serialize;

use crate::config::GroundStation;
use crate::orbit::{Orbit, OrbitError, Vec3, dot, geodetic_to_ecef, norm, sub};
use crate::sun;

/// Step of the coarse search: shorter than any eclipse or pass of interest.
const SAMPLE_S: f64 = 20.0;
const PRECISION_S: f64 = 1e-3;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EclipseTransition {
    pub unix: f64,
    /// True when the satellite comes out into sunlight.
    pub sunlit: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pass {
    pub station: String,
    pub aos_unix: f64,
    pub los_unix: f64,
    pub max_elevation_unix: f64,
    pub max_elevation_deg: f64,
}

impl Pass {
    pub fn duration_s(&self) -> f64 {
        self.los_unix - self.aos_unix
    }
}

/// First time in (a, b] where `f` differs from `f(a)`, given that it does at `b`.
fn bisect(mut a: f64, mut b: f64, f: &impl Fn(f64) -> Result<bool, OrbitError>) -> Result<f64, OrbitError> {
    let start = f(a)?;
    while b - a > PRECISION_S {
        let mid = 0.5 * (a + b);
        if f(mid)? == start {
            a = mid;
        } else {
            b = mid;
        }
    }
    Ok(b)
}

/// Times in [start, end] where `f` changes value, with its new value.
fn transitions(
    start: f64,
    end: f64,
    f: &impl Fn(f64) -> Result<bool, OrbitError>,
) -> Result<Vec<(f64, bool)>, OrbitError> {
    let mut out = Vec::new();
    let mut t = start;
    let mut value = f(t)?;
    while t < end {
        let next = (t + SAMPLE_S).min(end);
        let next_value = f(next)?;
        if next_value != value {
            out.push((bisect(t, next, f)?, next_value));
        }
        t = next;
        value = next_value;
    }
    Ok(out)
}

/// Eclipse entries and exits (the Sun's centre behind the Earth) between two times.
pub fn eclipses(orbit: &Orbit, start: f64, end: f64) -> Result<Vec<EclipseTransition>, OrbitError> {
    let sunlit = |t: f64| orbit.teme(t).map(|(r, _)| sun::centre_visible(r, sun::position(t)));
    Ok(transitions(start, end, &sunlit)?.into_iter().map(|(unix, sunlit)| EclipseTransition { unix, sunlit }).collect())
}

/// Elevation of the satellite above a station's horizon (the ellipsoid normal), degrees.
pub fn elevation_deg(orbit: &Orbit, station: &Vec3, up: &Vec3, t: f64) -> Result<f64, OrbitError> {
    let range = sub(orbit.ecef(t)?, *station);
    Ok((dot(range, *up) / norm(range)).asin().to_degrees())
}

/// Passes over a station between two times: those whose AOS and LOS both fall inside.
pub fn passes(orbit: &Orbit, station: &GroundStation, start: f64, end: f64) -> Result<Vec<Pass>, OrbitError> {
    let (lat, lon) = (*station.latitude_deg.get_ref(), *station.longitude_deg.get_ref());
    let position = geodetic_to_ecef(lat, lon, station.altitude_m);
    let (lat_r, lon_r) = (lat.to_radians(), lon.to_radians());
    let up = [lat_r.cos() * lon_r.cos(), lat_r.cos() * lon_r.sin(), lat_r.sin()];
    let mask = *station.min_elevation_deg.get_ref();
    let elevation = |t: f64| elevation_deg(orbit, &position, &up, t);
    let visible = |t: f64| elevation(t).map(|e| e >= mask);
    let mut passes = Vec::new();
    let mut aos = None;
    for (t, rising) in transitions(start, end, &visible)? {
        match (rising, aos) {
            (true, _) => aos = Some(t),
            (false, Some(aos_unix)) => {
                let (max_elevation_unix, max_elevation_deg) = culmination(aos_unix, t, &elevation)?;
                passes.push(Pass {
                    station: station.name.clone(),
                    aos_unix,
                    los_unix: t,
                    max_elevation_unix,
                    max_elevation_deg,
                });
                aos = None;
            }
            (false, None) => {}
        }
    }
    Ok(passes)
}

/// Time and value of the highest elevation between AOS and LOS (golden-section search).
fn culmination(
    mut a: f64,
    mut b: f64,
    elevation: &impl Fn(f64) -> Result<f64, OrbitError>,
) -> Result<(f64, f64), OrbitError> {
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    while b - a > PRECISION_S {
        let c = b - ratio * (b - a);
        let d = a + ratio * (b - a);
        if elevation(c)? > elevation(d)? {
            b = d;
        } else {
            a = c;
        }
    }
    let t = 0.5 * (a + b);
    Ok((t, elevation(t)?))
}
